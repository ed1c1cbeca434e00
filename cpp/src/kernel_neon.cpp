// NEON lanes (4 x float, 2 x double).  Advanced SIMD is part of every AArch64
// CPU, so this file needs no special flags and is always runnable there.
#include <arm_neon.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <utility>

#include "kernel_table.h"

namespace gncpu {
namespace neon_isa {
namespace {

struct F32 {
    using T = float;
    using V = float32x4_t;
    static constexpr int width = 4;
    static V zero() { return vdupq_n_f32(0.0f); }
    static V set1(T v) { return vdupq_n_f32(v); }
    static V load(const T* p) { return vld1q_f32(p); }
    static void store(T* p, V v) { vst1q_f32(p, v); }
    static constexpr bool non_temporal = false;  // no portable NT store: stream() stores
    static void stream(T* p, V v) { vst1q_f32(p, v); }
    static V add(V a, V b) { return vaddq_f32(a, b); }
    static V sub(V a, V b) { return vsubq_f32(a, b); }
    static V mul_add(V a, V b, V c) { return vfmaq_f32(c, a, b); }
    static V first_lanes(int k, V a, V b) {  // lanes [0, k) of a, the rest of b
        const float lane[4] = {0, 1, 2, 3};
        return vbslq_f32(vcltq_f32(vld1q_f32(lane), vdupq_n_f32(static_cast<float>(k))), a, b);
    }
    // 16-bit storage (fcvt for binary16; integer lanes for bfloat16).
    using H = uint16x4_t;
    static void store16(uint16_t* p, H h) { vst1_u16(p, h); }
    static void stream16(uint16_t* p, H h) { vst1_u16(p, h); }  // no portable NT store
    static V load_half(const uint16_t* p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
    static H to_half(V v) { return vreinterpret_u16_f16(vcvt_f16_f32(v)); }
    static V load_bf16(const uint16_t* p) { return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16)); }
    using U = uint32x4_t;
    static U as_bits(V v) { return vreinterpretq_u32_f32(v); }
    static U bits_set1(uint32_t v) { return vdupq_n_u32(v); }
    static U bits_add(U a, U b) { return vaddq_u32(a, b); }
    static U bits_and(U a, U b) { return vandq_u32(a, b); }
    static U bits_or(U a, U b) { return vorrq_u32(a, b); }
    static U bits_shr16(U a) { return vshrq_n_u32(a, 16); }
    static U select_nan(V v, U if_nan, U otherwise) { return vbslq_u32(vceqq_f32(v, v), otherwise, if_nan); }
    static H high_halves(U a) { return vshrn_n_u32(a, 16); }
    static V mul(V a, V b) { return vmulq_f32(a, b); }
    static V div(V a, V b) { return vdivq_f32(a, b); }
    // x86 semantics (the second operand when either is NaN), so every ISA
    // rounds and propagates NaN the same way.
    static V max(V a, V b) { return vbslq_f32(vcgtq_f32(a, b), a, b); }
    static V min(V a, V b) { return vbslq_f32(vcltq_f32(a, b), a, b); }
    static V neg_mul_sub(V a, V b, V c) { return vfmsq_f32(vnegq_f32(c), a, b); }  // -(a*b) - c
    // a, with 0 where z <= 0 (NaN z keeps a): ReLU's derivative.
    static V zero_where_nonpositive(V z, V a) {
        return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(a), vcleq_f32(z, vdupq_n_f32(0.0f))));
    }
    // 2^n from t = n + 0x1.8p23 + 127 (n integral in [-126, 127]): the low mantissa
    // bits of t hold n + 127, which the shift moves into the exponent field.
    static V pow2_biased(V t) {
        return vreinterpretq_f32_u32(vshlq_n_u32(vreinterpretq_u32_f32(t), 23));
    }
};

struct F64 {
    using T = double;
    using V = float64x2_t;
    static constexpr int width = 2;
    static V zero() { return vdupq_n_f64(0.0); }
    static V set1(T v) { return vdupq_n_f64(v); }
    static V load(const T* p) { return vld1q_f64(p); }
    static void store(T* p, V v) { vst1q_f64(p, v); }
    static constexpr bool non_temporal = false;
    static void stream(T* p, V v) { vst1q_f64(p, v); }
    static V add(V a, V b) { return vaddq_f64(a, b); }
    static V sub(V a, V b) { return vsubq_f64(a, b); }
    static V mul_add(V a, V b, V c) { return vfmaq_f64(c, a, b); }
    // The float lanes of v as two double vectors (statistics in double, kernels/wide.inl).
    static void widen(F32::V v, V& lo, V& hi) {
        lo = vcvt_f64_f32(vget_low_f32(v));
        hi = vcvt_high_f64_f32(v);
    }
    static V mul(V a, V b) { return vmulq_f64(a, b); }
    static V first_lanes(int k, V a, V b) {
        const double lane[2] = {0, 1};
        return vbslq_f64(vcltq_f64(vld1q_f64(lane), vdupq_n_f64(static_cast<double>(k))), a, b);
    }
};

// Orders streaming (non-temporal) stores before the call returns.
inline void fence_streams() {}

#include "kernels/loops.inl"

}  // namespace
}  // namespace neon_isa

// constexpr: the compiler must initialise it at compile time, so no code of
// this file runs (at load or otherwise) until the dispatcher calls it.
constexpr KernelTable kernel_table_neon = neon_isa::make_kernel_table("neon");

}  // namespace gncpu
