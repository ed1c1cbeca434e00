// AVX2 + FMA lanes (8 x float, 4 x double).  Only this file is compiled with
// -mavx2 -mfma; the dispatcher calls into it only after cpuid and xgetbv say
// the CPU and OS support it.
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernel_table.h"

namespace gncpu {
namespace avx2_isa {
namespace {

struct F32 {
    using T = float;
    using V = __m256;
    static constexpr int width = 8;
    static V zero() { return _mm256_setzero_ps(); }
    static V set1(T v) { return _mm256_set1_ps(v); }
    static V load(const T* p) { return _mm256_loadu_ps(p); }
    static void store(T* p, V v) { _mm256_storeu_ps(p, v); }
    static void stream(T* p, V v) { _mm256_stream_ps(p, v); }  // p 32-byte aligned
    static V add(V a, V b) { return _mm256_add_ps(a, b); }
    static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
    static V mul_add(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
    // 16-bit storage (F16C for binary16; shifts and rounding for bfloat16).
    static V load_half(const uint16_t* p) {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    }
    static __m128i to_half(V v) {
        return _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    }
    static void store_half(uint16_t* p, V v) { store16(p, to_half(v)); }
    static void stream_half(uint16_t* p, V v) { stream16(p, to_half(v)); }
    static V load_bf16(const uint16_t* p) {
        const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
    }
    static __m128i to_bf16(V v) {
        const __m256i bits = _mm256_castps_si256(v);
        const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
        __m256i rounded = _mm256_add_epi32(bits, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb));
        const __m256i quiet_nan = _mm256_or_si256(bits, _mm256_set1_epi32(0x00400000));
        const __m256 is_nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
        rounded = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(rounded),
                                                       _mm256_castsi256_ps(quiet_nan), is_nan));
        const __m256i high = _mm256_srli_epi32(rounded, 16);
        // packus works within 128-bit halves: pack, then gather the two halves.
        const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(high, high), 0x08);
        return _mm256_castsi256_si128(packed);
    }
    static void store_bf16(uint16_t* p, V v) { store16(p, to_bf16(v)); }
    static void stream_bf16(uint16_t* p, V v) { stream16(p, to_bf16(v)); }
    static void store16(uint16_t* p, __m128i h) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), h); }
    static void stream16(uint16_t* p, __m128i h) {  // p 16-byte aligned
        _mm_stream_si128(reinterpret_cast<__m128i*>(p), h);
    }
    static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
    static V div(V a, V b) { return _mm256_div_ps(a, b); }
    // x86 semantics: the second operand when either is NaN.
    static V max(V a, V b) { return _mm256_max_ps(a, b); }
    static V min(V a, V b) { return _mm256_min_ps(a, b); }
    static V neg_mul_sub(V a, V b, V c) { return _mm256_fnmsub_ps(a, b, c); }  // -(a*b) - c
    // 2^n from t = n + 0x1.8p23 + 127 (n integral in [-126, 127]): the low mantissa
    // bits of t hold n + 127, which the shift moves into the exponent field.
    static V pow2_biased(V t) {
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(t), 23));
    }
};

struct F64 {
    using T = double;
    using V = __m256d;
    static constexpr int width = 4;
    static V zero() { return _mm256_setzero_pd(); }
    static V set1(T v) { return _mm256_set1_pd(v); }
    static V load(const T* p) { return _mm256_loadu_pd(p); }
    static void store(T* p, V v) { _mm256_storeu_pd(p, v); }
    static void stream(T* p, V v) { _mm256_stream_pd(p, v); }
    static V add(V a, V b) { return _mm256_add_pd(a, b); }
    static V sub(V a, V b) { return _mm256_sub_pd(a, b); }
    static V mul_add(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
};

// Orders streaming (non-temporal) stores before the call returns.
inline void fence_streams() { _mm_sfence(); }

#include "kernel_loops.inl"

}  // namespace
}  // namespace avx2_isa

// Constant-initialised: no code of this file runs until the dispatcher calls it.
extern const KernelTable kernel_table_avx2;
const KernelTable kernel_table_avx2 = GNCPU_KERNEL_TABLE_INIT(avx2_isa, "avx2");

}  // namespace gncpu
