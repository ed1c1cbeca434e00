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

// N values of T as one vector.  With GCC, a vector extension type: the
// compiler lowers its operators to the baseline ISA's registers (SSE2 pairs on
// x86-64, NEON on AArch64), and the file compiles in ~60% of the time the
// array form takes (its per-lane loops had to be unrolled and re-vectorised:
// this file was the longest of the build).  Elsewhere (clang, MSVC), an array
// with the same operators.  Either way each lane is one IEEE operation in the
// same order, so the values are the same (GNCPU_PORTABLE_ARRAYS picks the
// array form with GCC too, to test it).
#if defined(__GNUC__) && !defined(__clang__) && !defined(GNCPU_PORTABLE_ARRAYS)
// (Every function here has internal linkage, so GCC's -Wpsabi note that a
// 32-byte vector argument's ABI differs without AVX is moot: the build passes
// -Wno-psabi for this file.)
template <class T, int N>
struct PortableVectorOf {
    typedef T type __attribute__((vector_size(N * sizeof(T))));
};
template <class T, int N>
using PortableVector = typename PortableVectorOf<T, N>::type;
#else
template <class T, int N>
struct PortableVector {
    T lane[N];
    T& operator[](int i) { return lane[i]; }
    const T& operator[](int i) const { return lane[i]; }
#define GNCPU_LANEWISE(op)                                             \
    friend PortableVector operator op(PortableVector a, PortableVector b) { \
        for (int i = 0; i < N; ++i) a.lane[i] = a.lane[i] op b.lane[i];    \
        return a;                                                          \
    }
    GNCPU_LANEWISE(+)
    GNCPU_LANEWISE(-)
    GNCPU_LANEWISE(*)
    GNCPU_LANEWISE(/)
#undef GNCPU_LANEWISE
    friend PortableVector operator-(PortableVector a) {
        for (int i = 0; i < N; ++i) a.lane[i] = -a.lane[i];
        return a;
    }
};
#endif

// The portable lanes: the same accumulation structure as the AVX2 kernel (so
// the same accuracy).
template <class Scalar, int N>
struct PortableLanes {
    using T = Scalar;
    using V = PortableVector<T, N>;
    static constexpr int width = N;
    static V zero() { return set1(T(0)); }
    static V set1(T value) {
        V r;
        for (int i = 0; i < N; ++i) r[i] = value;
        return r;
    }
    static V load(const T* p) {
        V r;
        memcpy(&r, p, sizeof(r));
        return r;
    }
    static void store(T* p, V v) { memcpy(p, &v, sizeof(v)); }
    static constexpr bool non_temporal = false;  // stream() is a plain store
    static void stream(T* p, V v) { store(p, v); }
    static V add(V a, V b) { return a + b; }
    static V sub(V a, V b) { return a - b; }
    // Two roundings: the build passes -ffp-contract=off so this stays the same
    // whether or not the target has FMA.
    static V mul_add(V a, V b, V c) { return a * b + c; }
    static V first_lanes(int k, V a, V b) {  // lanes [0, k) of a, the rest of b
        for (int i = k; i < N; ++i) a[i] = b[i];
        return a;
    }
    // The lanes of a vector twice as wide, as two of these (statistics in
    // double, kernels/wide.inl).
    template <class Narrow>
    static void widen(Narrow v, V& lo, V& hi) {
        for (int i = 0; i < N; ++i) lo[i] = static_cast<T>(v[i]), hi[i] = static_cast<T>(v[i + N]);
    }
    // For the float32 activation math (see kernels/activations.inl).
    static V mul(V a, V b) { return a * b; }
    static V div(V a, V b) { return a / b; }
    // x86 semantics: the second operand when either is NaN.
    static V max(V a, V b) {
        for (int i = 0; i < N; ++i) a[i] = a[i] > b[i] ? a[i] : b[i];
        return a;
    }
    static V min(V a, V b) {
        for (int i = 0; i < N; ++i) a[i] = a[i] < b[i] ? a[i] : b[i];
        return a;
    }
    static V neg_mul_sub(V a, V b, V c) { return -(a * b) - c; }  // -(a*b) - c
    // a, with 0 where z <= 0 (NaN z keeps a): ReLU's derivative.
    static V zero_where_nonpositive(V z, V a) {
        for (int i = 0; i < N; ++i) a[i] = z[i] <= T(0) ? T(0) : a[i];
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
        memcpy(r.lane, &v, sizeof(r.lane));
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
        for (int i = 0; i < N; ++i) otherwise.lane[i] = v[i] != v[i] ? if_nan.lane[i] : otherwise.lane[i];
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
        uint32_t bits[N];
        memcpy(bits, &t, sizeof(bits));
        for (int i = 0; i < N; ++i) bits[i] <<= 23;
        V r;
        memcpy(&r, bits, sizeof(r));
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
    for (int i = 0; i < N; ++i) r[i] = half_bits_to_float(p[i]);
    return r;
}
template <class Scalar, int N>
typename PortableLanes<Scalar, N>::H PortableLanes<Scalar, N>::to_half(V v) {
    H r;
    for (int i = 0; i < N; ++i) r.lane[i] = float_to_half_bits(v[i]);
    return r;
}
template <class Scalar, int N>
typename PortableLanes<Scalar, N>::V PortableLanes<Scalar, N>::load_bf16(const uint16_t* p) {
    V r;
    for (int i = 0; i < N; ++i) r[i] = bf16_bits_to_float(p[i]);
    return r;
}

}  // namespace
}  // namespace scalar_isa

// constexpr: the compiler must initialise it at compile time, so no code of
// this file runs (at load or otherwise) until the dispatcher calls it.
constexpr KernelTable kernel_table_scalar = scalar_isa::make_kernel_table("scalar");

}  // namespace gncpu
