// Portable kernel: plain C++ lanes.  Runs on any CPU; the compiler may
// auto-vectorise it for the baseline ISA (SSE2 on x86-64), never beyond.
#include <stdint.h>

#include "kernel_table.h"

namespace gncpu {
namespace scalar_isa {
namespace {

// A fixed number of lanes held in an array: the same accumulation structure
// as the AVX2 kernel (so the same accuracy), and loops the compiler can
// vectorise for the baseline ISA (SSE2 on x86-64, NEON on AArch64).
template <class Scalar, int N>
struct PortableLanes {
    using T = Scalar;
    struct V {
        T lane[N];
    };
    static constexpr int width = N;
    static V zero() { return set1(T(0)); }
    static V set1(T value) {
        V r;
        for (int i = 0; i < N; ++i) r.lane[i] = value;
        return r;
    }
    static V load(const T* p) {
        V r;
        for (int i = 0; i < N; ++i) r.lane[i] = p[i];
        return r;
    }
    static void store(T* p, V v) {
        for (int i = 0; i < N; ++i) p[i] = v.lane[i];
    }
    static void stream(T* p, V v) { store(p, v); }
    static V add(V a, V b) {
        for (int i = 0; i < N; ++i) a.lane[i] += b.lane[i];
        return a;
    }
    static V sub(V a, V b) {
        for (int i = 0; i < N; ++i) a.lane[i] -= b.lane[i];
        return a;
    }
    // Two roundings: the build passes -ffp-contract=off so this stays the same
    // whether or not the target has FMA.
    static V mul_add(V a, V b, V c) {
        for (int i = 0; i < N; ++i) c.lane[i] = a.lane[i] * b.lane[i] + c.lane[i];
        return c;
    }
};
using F32 = PortableLanes<float, 8>;
using F64 = PortableLanes<double, 4>;

// Orders streaming (non-temporal) stores before the call returns.
inline void fence_streams() {}

#include "kernel_loops.inl"

}  // namespace
}  // namespace scalar_isa

// Constant-initialised: no code of this file runs until the dispatcher calls it.
extern const KernelTable kernel_table_scalar;
const KernelTable kernel_table_scalar = GNCPU_KERNEL_TABLE_INIT(scalar_isa, "scalar");

}  // namespace gncpu
