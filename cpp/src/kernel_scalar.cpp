// Portable kernel: plain C++ lanes.  Runs on any CPU; the compiler may
// auto-vectorise it for the baseline ISA (SSE2 on x86-64), never beyond.
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <utility>

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
    static constexpr bool non_temporal = false;  // stream() is a plain store
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
    static V first_lanes(int k, V a, V b) {  // lanes [0, k) of a, the rest of b
        for (int i = k; i < N; ++i) a.lane[i] = b.lane[i];
        return a;
    }
    // For the float32 activation math (see kernels/activations.inl).
    static V mul(V a, V b) {
        for (int i = 0; i < N; ++i) a.lane[i] *= b.lane[i];
        return a;
    }
    static V div(V a, V b) {
        for (int i = 0; i < N; ++i) a.lane[i] /= b.lane[i];
        return a;
    }
    // x86 semantics: the second operand when either is NaN.
    static V max(V a, V b) {
        for (int i = 0; i < N; ++i) a.lane[i] = a.lane[i] > b.lane[i] ? a.lane[i] : b.lane[i];
        return a;
    }
    static V min(V a, V b) {
        for (int i = 0; i < N; ++i) a.lane[i] = a.lane[i] < b.lane[i] ? a.lane[i] : b.lane[i];
        return a;
    }
    static V neg_mul_sub(V a, V b, V c) {  // -(a*b) - c
        for (int i = 0; i < N; ++i) c.lane[i] = -(a.lane[i] * b.lane[i]) - c.lane[i];
        return c;
    }
    // a, with 0 where z <= 0 (NaN z keeps a): ReLU's derivative.
    static V zero_where_nonpositive(V z, V a) {
        for (int i = 0; i < N; ++i) a.lane[i] = z.lane[i] <= T(0) ? T(0) : a.lane[i];
        return a;
    }
    // 16-bit storage: exact software conversions (the codecs are defined in
    // kernels/codecs.inl, which this file includes below).
    struct H {
        uint16_t lane[N];
    };
    static void store16(uint16_t* p, H h) {
        for (int i = 0; i < N; ++i) p[i] = h.lane[i];
    }
    static void stream16(uint16_t* p, H h) { store16(p, h); }
    static V load_half(const uint16_t* p);
    static H to_half(V v);
    static V load_bf16(const uint16_t* p);
    struct U {
        uint32_t lane[N];
    };
    static U as_bits(V v) {
        U r;
        memcpy(r.lane, v.lane, sizeof(r.lane));
        return r;
    }
    static U bits_set1(uint32_t value) {
        U r;
        for (int i = 0; i < N; ++i) r.lane[i] = value;
        return r;
    }
    static U bits_add(U a, U b) {
        for (int i = 0; i < N; ++i) a.lane[i] += b.lane[i];
        return a;
    }
    static U bits_and(U a, U b) {
        for (int i = 0; i < N; ++i) a.lane[i] &= b.lane[i];
        return a;
    }
    static U bits_or(U a, U b) {
        for (int i = 0; i < N; ++i) a.lane[i] |= b.lane[i];
        return a;
    }
    static U bits_shr16(U a) {
        for (int i = 0; i < N; ++i) a.lane[i] >>= 16;
        return a;
    }
    static U select_nan(V v, U if_nan, U otherwise) {
        for (int i = 0; i < N; ++i) otherwise.lane[i] = v.lane[i] != v.lane[i] ? if_nan.lane[i] : otherwise.lane[i];
        return otherwise;
    }
    static H high_halves(U a) {
        H r;
        for (int i = 0; i < N; ++i) r.lane[i] = static_cast<uint16_t>(a.lane[i] >> 16);
        return r;
    }
    // 2^n from t = n + 0x1.8p23 + 127 (n integral in [-126, 127]): the low mantissa
    // bits of t hold n + 127, which the shift moves into the exponent field.
    static V pow2_biased(V t) {  // float lanes only
        static_assert(sizeof(T) == 4, "float32 activation math");
        V r;
        for (int i = 0; i < N; ++i) {
            uint32_t bits;
            memcpy(&bits, &t.lane[i], sizeof(bits));
            bits <<= 23;
            memcpy(&r.lane[i], &bits, sizeof(bits));
        }
        return r;
    }
};
using F32 = PortableLanes<float, 8>;
using F64 = PortableLanes<double, 4>;

// Orders streaming (non-temporal) stores before the call returns.
inline void fence_streams() {}

#include "kernels/loops.inl"

template <class Scalar, int N>
typename PortableLanes<Scalar, N>::V PortableLanes<Scalar, N>::load_half(const uint16_t* p) {
    V r;
    for (int i = 0; i < N; ++i) r.lane[i] = half_bits_to_float(p[i]);
    return r;
}
template <class Scalar, int N>
typename PortableLanes<Scalar, N>::H PortableLanes<Scalar, N>::to_half(V v) {
    H r;
    for (int i = 0; i < N; ++i) r.lane[i] = float_to_half_bits(v.lane[i]);
    return r;
}
template <class Scalar, int N>
typename PortableLanes<Scalar, N>::V PortableLanes<Scalar, N>::load_bf16(const uint16_t* p) {
    V r;
    for (int i = 0; i < N; ++i) r.lane[i] = bf16_bits_to_float(p[i]);
    return r;
}

}  // namespace
}  // namespace scalar_isa

// constexpr: the compiler must initialise it at compile time, so no code of
// this file runs (at load or otherwise) until the dispatcher calls it.
constexpr KernelTable kernel_table_scalar = scalar_isa::make_kernel_table("scalar");

}  // namespace gncpu
