// Portable kernel: one lane, plain C++.  Runs on any CPU; the compiler may
// auto-vectorise it for the baseline ISA (SSE2 on x86-64), never beyond.
#include <stdint.h>

#include "kernel_table.h"

namespace gncpu {
namespace scalar_isa {
namespace {

template <class Scalar>
struct OneLane {
    using T = Scalar;
    using V = Scalar;
    static constexpr int width = 1;
    static V zero() { return V(0); }
    static V set1(T v) { return v; }
    static V load(const T* p) { return *p; }
    static void store(T* p, V v) { *p = v; }
    static V add(V a, V b) { return a + b; }
    static V sub(V a, V b) { return a - b; }
    // Two roundings: the build passes -ffp-contract=off so this stays the same
    // whether or not the target has FMA.
    static V mul_add(V a, V b, V c) { return a * b + c; }
};
using F32 = OneLane<float>;
using F64 = OneLane<double>;

#include "kernel_loops.inl"

}  // namespace
}  // namespace scalar_isa

// Constant-initialised: no code of this file runs until the dispatcher calls it.
extern const KernelTable kernel_table_scalar;
const KernelTable kernel_table_scalar = GNCPU_KERNEL_TABLE_INIT(scalar_isa, "scalar");

}  // namespace gncpu
