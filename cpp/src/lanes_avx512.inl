// AVX-512 lanes (16 x float, 8 x double), shared by the avx512 and avx512bf16
// kernels: each includes this inside its own anonymous namespace (see
// kernels/loops.inl for the contract), after <immintrin.h>.  With
// -mavx512bf16 (__AVX512BF16__) F32 also rounds to bfloat16 in hardware.

struct F32 {
    using T = float;
    using V = __m512;
    static constexpr int width = 16;
    static V zero() { return _mm512_setzero_ps(); }
    static V set1(T v) { return _mm512_set1_ps(v); }
    static V load(const T* p) { return _mm512_loadu_ps(p); }
    static void store(T* p, V v) { _mm512_storeu_ps(p, v); }
    static constexpr bool non_temporal = true;
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
    // a, with 0 where z <= 0 (NaN z keeps a): ReLU's derivative.
    static V zero_where_nonpositive(V z, V a) {
        return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_NLE_UQ), a);
    }
    // 2^n from t = n + 0x1.8p23 + 127 (n integral in [-126, 127]): the low mantissa
    // bits of t hold n + 127, which the shift moves into the exponent field.
    static V pow2_biased(V t) {
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_castps_si512(t), 23));
    }
#if defined(__AVX512BF16__)
    // AVX-512 BF16 (the avx512bf16 bundle): vcvtneps2bf16 rounds to nearest
    // even and quiets a NaN as codecs.inl's integer rule does, in one
    // instruction instead of eight, but reads subnormal inputs as zero, so
    // to_bf16 takes the integer rule for a vector holding one.  The test is on
    // the bits (exponent 0, mantissa not): vfpclassps follows the caller's
    // MXCSR.DAZ, under which it sees no subnormal at all.
    static bool any_subnormal(V v) {
        const __m512i bits = _mm512_castps_si512(v);
        const __mmask16 nonzero = _mm512_test_epi32_mask(bits, _mm512_set1_epi32(0x7fffffff));
        return _mm512_mask_testn_epi32_mask(nonzero, bits, _mm512_set1_epi32(0x7f800000)) != 0;
    }
    static H round_bf16(V v) { return (__m256i)_mm512_cvtneps_pbh(v); }
#endif
};

struct F64 {
    using T = double;
    using V = __m512d;
    static constexpr int width = 8;
    static V zero() { return _mm512_setzero_pd(); }
    static V set1(T v) { return _mm512_set1_pd(v); }
    static V load(const T* p) { return _mm512_loadu_pd(p); }
    static void store(T* p, V v) { _mm512_storeu_pd(p, v); }
    static constexpr bool non_temporal = true;
    static void stream(T* p, V v) { _mm512_stream_pd(p, v); }
    static V add(V a, V b) { return _mm512_add_pd(a, b); }
    static V sub(V a, V b) { return _mm512_sub_pd(a, b); }
    static V mul_add(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
    // The float lanes of v as two double vectors (statistics in double, kernels/wide.inl).
    static void widen(F32::V v, V& lo, V& hi) {
        lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
        hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    }
    static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
    static V first_lanes(int k, V a, V b) {
        return _mm512_mask_blend_pd(static_cast<__mmask8>((1u << k) - 1), b, a);
    }
};

// Orders streaming (non-temporal) stores before the call returns.
inline void fence_streams() { _mm_sfence(); }
