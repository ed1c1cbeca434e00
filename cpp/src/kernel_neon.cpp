// NEON lanes (4 x float, 2 x double).  Advanced SIMD is part of every AArch64
// CPU, so this file needs no special flags and is always runnable there.
#include <arm_neon.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

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
    static void stream(T* p, V v) { vst1q_f32(p, v); }  // no portable NT store
    static V add(V a, V b) { return vaddq_f32(a, b); }
    static V sub(V a, V b) { return vsubq_f32(a, b); }
    static V mul_add(V a, V b, V c) { return vfmaq_f32(c, a, b); }
    // 16-bit storage (fcvt for binary16; shifts and rounding for bfloat16).
    static V load_half(const uint16_t* p) {
        return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
    }
    static void store_half(uint16_t* p, V v) { vst1_u16(p, vreinterpret_u16_f16(vcvt_f16_f32(v))); }
    static void stream_half(uint16_t* p, V v) { store_half(p, v); }
    static V load_bf16(const uint16_t* p) {
        return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
    }
    static void store_bf16(uint16_t* p, V v) {
        const uint32x4_t bits = vreinterpretq_u32_f32(v);
        const uint32x4_t lsb = vandq_u32(vshrq_n_u32(bits, 16), vdupq_n_u32(1));
        const uint32x4_t rounded = vaddq_u32(bits, vaddq_u32(vdupq_n_u32(0x7fff), lsb));
        const uint32x4_t quiet_nan = vorrq_u32(bits, vdupq_n_u32(0x00400000));
        const uint32x4_t is_number = vceqq_f32(v, v);
        vst1_u16(p, vshrn_n_u32(vbslq_u32(is_number, rounded, quiet_nan), 16));
    }
    static void stream_bf16(uint16_t* p, V v) { store_bf16(p, v); }
    static V mul(V a, V b) { return vmulq_f32(a, b); }
    static V div(V a, V b) { return vdivq_f32(a, b); }
    // x86 semantics (the second operand when either is NaN), so every ISA
    // rounds and propagates NaN the same way.
    static V max(V a, V b) { return vbslq_f32(vcgtq_f32(a, b), a, b); }
    static V min(V a, V b) { return vbslq_f32(vcltq_f32(a, b), a, b); }
    static V neg_mul_sub(V a, V b, V c) { return vfmsq_f32(vnegq_f32(c), a, b); }  // -(a*b) - c
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
    static void stream(T* p, V v) { vst1q_f64(p, v); }
    static V add(V a, V b) { return vaddq_f64(a, b); }
    static V sub(V a, V b) { return vsubq_f64(a, b); }
    static V mul_add(V a, V b, V c) { return vfmaq_f64(c, a, b); }
};

// Orders streaming (non-temporal) stores before the call returns.
inline void fence_streams() {}

#include "kernel_loops.inl"

}  // namespace
}  // namespace neon_isa

// Constant-initialised: no code of this file runs until the dispatcher calls it.
extern const KernelTable kernel_table_neon;
const KernelTable kernel_table_neon = GNCPU_KERNEL_TABLE_INIT(neon_isa, "neon");

}  // namespace gncpu
