// AVX-512 lanes (16 x float, 8 x double).  Only this file is compiled with
// -mavx512f/bw/dq/vl; the dispatcher calls into it only after cpuid and xgetbv
// say the CPU and OS support the whole bundle.
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*(), which trips
// -Wmaybe-uninitialized wherever they are inlined (GCC bug 105593), and
// -Wuninitialized where whole kernels inline into one function (the C++
// kernel test's build).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <utility>

#include "kernel_table.h"

namespace gncpu {
namespace avx512_isa {
namespace {

struct F32 {
    using T = float;
    using V = __m512;
    static constexpr int width = 16;
    static V zero() { return _mm512_setzero_ps(); }
    static V set1(T v) { return _mm512_set1_ps(v); }
    static V load(const T* p) { return _mm512_loadu_ps(p); }
    static void store(T* p, V v) { _mm512_storeu_ps(p, v); }
    static void stream(T* p, V v) { _mm512_stream_ps(p, v); }  // p 64-byte aligned
    static V add(V a, V b) { return _mm512_add_ps(a, b); }
    static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
    static V mul_add(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
    static V first_lanes(int k, V a, V b) {  // lanes [0, k) of a, the rest of b
        return _mm512_mask_blend_ps(static_cast<__mmask16>((1u << k) - 1), b, a);
    }
    // 16-bit storage (vcvtph2ps for binary16; integer lanes for bfloat16).
    using H = __m256i;
    static void store16(uint16_t* p, H h) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), h); }
    static void stream16(uint16_t* p, H h) {  // p 32-byte aligned
        _mm256_stream_si256(reinterpret_cast<__m256i*>(p), h);
    }
    static V load_half(const uint16_t* p) {
        return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    }
    static H to_half(V v) { return _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
    static V load_bf16(const uint16_t* p) {
        const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
        return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
    }
    using U = __m512i;
    static U as_bits(V v) { return _mm512_castps_si512(v); }
    static U bits_set1(uint32_t v) { return _mm512_set1_epi32(static_cast<int>(v)); }
    static U bits_add(U a, U b) { return _mm512_add_epi32(a, b); }
    static U bits_and(U a, U b) { return _mm512_and_si512(a, b); }
    static U bits_or(U a, U b) { return _mm512_or_si512(a, b); }
    static U bits_shr16(U a) { return _mm512_srli_epi32(a, 16); }
    static U select_nan(V v, U if_nan, U otherwise) {
        return _mm512_mask_blend_epi32(_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), otherwise, if_nan);
    }
    static H high_halves(U a) { return _mm512_cvtepi32_epi16(_mm512_srli_epi32(a, 16)); }
    static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
    static V div(V a, V b) { return _mm512_div_ps(a, b); }
    // x86 semantics: the second operand when either is NaN.
    static V max(V a, V b) { return _mm512_max_ps(a, b); }
    static V min(V a, V b) { return _mm512_min_ps(a, b); }
    static V neg_mul_sub(V a, V b, V c) { return _mm512_fnmsub_ps(a, b, c); }  // -(a*b) - c
    // 2^n from t = n + 0x1.8p23 + 127 (n integral in [-126, 127]): the low mantissa
    // bits of t hold n + 127, which the shift moves into the exponent field.
    static V pow2_biased(V t) {
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_castps_si512(t), 23));
    }
};

struct F64 {
    using T = double;
    using V = __m512d;
    static constexpr int width = 8;
    static V zero() { return _mm512_setzero_pd(); }
    static V set1(T v) { return _mm512_set1_pd(v); }
    static V load(const T* p) { return _mm512_loadu_pd(p); }
    static void store(T* p, V v) { _mm512_storeu_pd(p, v); }
    static void stream(T* p, V v) { _mm512_stream_pd(p, v); }
    static V add(V a, V b) { return _mm512_add_pd(a, b); }
    static V sub(V a, V b) { return _mm512_sub_pd(a, b); }
    static V mul_add(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
    static V first_lanes(int k, V a, V b) {
        return _mm512_mask_blend_pd(static_cast<__mmask8>((1u << k) - 1), b, a);
    }
};

// Orders streaming (non-temporal) stores before the call returns.
inline void fence_streams() { _mm_sfence(); }

#include "kernels/loops.inl"

}  // namespace
}  // namespace avx512_isa

// constexpr: the compiler must initialise it at compile time, so no code of
// this file runs (at load or otherwise) until the dispatcher calls it.
constexpr KernelTable kernel_table_avx512 = avx512_isa::make_kernel_table("avx512");

}  // namespace gncpu
