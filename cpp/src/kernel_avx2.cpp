// AVX2 + FMA lanes (8 x float, 4 x double).  Only this file is compiled with
// -mavx2 -mfma; the dispatcher calls into it only after cpuid and xgetbv say
// the CPU and OS support it.
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <utility>

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
    static constexpr bool non_temporal = true;
    static void stream(T* p, V v) { _mm256_stream_ps(p, v); }  // p 32-byte aligned
    static V add(V a, V b) { return _mm256_add_ps(a, b); }
    static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
    static V mul_add(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
    static V first_lanes(int k, V a, V b) {  // lanes [0, k) of a, the rest of b
        const V lane = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
        return _mm256_blendv_ps(b, a, _mm256_cmp_ps(lane, _mm256_set1_ps(static_cast<float>(k)), _CMP_LT_OQ));
    }
    // 16-bit storage (F16C for binary16; integer lanes for bfloat16).
    using H = __m128i;
    static void store16(uint16_t* p, H h) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), h); }
    static void stream16(uint16_t* p, H h) {  // p 16-byte aligned
        _mm_stream_si128(reinterpret_cast<__m128i*>(p), h);
    }
    static V load_half(const uint16_t* p) {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    }
    static H to_half(V v) { return _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
    static V load_bf16(const uint16_t* p) {
        const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
    }
    using U = __m256i;
    static U as_bits(V v) { return _mm256_castps_si256(v); }
    static U bits_set1(uint32_t v) { return _mm256_set1_epi32(static_cast<int>(v)); }
    static U bits_add(U a, U b) { return _mm256_add_epi32(a, b); }
    static U bits_and(U a, U b) { return _mm256_and_si256(a, b); }
    static U bits_or(U a, U b) { return _mm256_or_si256(a, b); }
    static U bits_shr16(U a) { return _mm256_srli_epi32(a, 16); }
    static U select_nan(V v, U if_nan, U otherwise) {
        return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(otherwise),
                                                     _mm256_castsi256_ps(if_nan),
                                                     _mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
    }
    static H high_halves(U a) {
        // packus works within 128-bit halves: pack, then gather the two halves.
        const __m256i high = _mm256_srli_epi32(a, 16);
        return _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi32(high, high), 0x08));
    }
    static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
    static V div(V a, V b) { return _mm256_div_ps(a, b); }
    // x86 semantics: the second operand when either is NaN.
    static V max(V a, V b) { return _mm256_max_ps(a, b); }
    static V min(V a, V b) { return _mm256_min_ps(a, b); }
    static V neg_mul_sub(V a, V b, V c) { return _mm256_fnmsub_ps(a, b, c); }  // -(a*b) - c
    // a, with 0 where z <= 0 (NaN z keeps a): ReLU's derivative.
    static V zero_where_nonpositive(V z, V a) {
        return _mm256_and_ps(_mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_NLE_UQ), a);
    }
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
    static constexpr bool non_temporal = true;
    static void stream(T* p, V v) { _mm256_stream_pd(p, v); }
    static V add(V a, V b) { return _mm256_add_pd(a, b); }
    static V sub(V a, V b) { return _mm256_sub_pd(a, b); }
    static V mul_add(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
    // The float lanes of v as two double vectors (statistics in double, kernels/wide.inl).
    static void widen(F32::V v, V& lo, V& hi) {
        lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
        hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
    }
    static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
    static V first_lanes(int k, V a, V b) {
        const V lane = _mm256_setr_pd(0, 1, 2, 3);
        return _mm256_blendv_pd(b, a, _mm256_cmp_pd(lane, _mm256_set1_pd(static_cast<double>(k)), _CMP_LT_OQ));
    }
};

// Orders streaming (non-temporal) stores before the call returns.
inline void fence_streams() { _mm_sfence(); }

#include "kernels/loops.inl"

}  // namespace
}  // namespace avx2_isa

// constexpr: the compiler must initialise it at compile time, so no code of
// this file runs (at load or otherwise) until the dispatcher calls it.
constexpr KernelTable kernel_table_avx2 = avx2_isa::make_kernel_table("avx2");

}  // namespace gncpu
