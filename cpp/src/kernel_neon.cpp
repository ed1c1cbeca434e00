// NEON lanes (4 x float, 2 x double).  Advanced SIMD is part of every AArch64
// CPU, so this file needs no special flags and is always runnable there.
#include <arm_neon.h>
#include <stdint.h>

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
