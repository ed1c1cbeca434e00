// The kernel loops, written once for every ISA.
//
// Included by kernel_<isa>.cpp *inside an anonymous namespace*, after that
// file has defined two lane types, F32 and F64, each providing:
//   T, V, width, zero(), set1(T), load(const T*), store(T*, V),
//   stream(T*, V) (a non-temporal store to a width-aligned address, or a plain
//   store where the ISA has none), add(V, V), sub(V, V), mul_add(a, b, c) = a*b + c,
// and a function fence_streams() that orders streaming stores.  F32 also
// provides, for the fused activations: mul, div, max, min (x86 semantics: the
// second operand when either is NaN), neg_mul_sub(a, b, c) = -(a*b) - c and
// pow2_biased (2^n from n + 1.5 * 2^23 + 127, see exp_neg_f32); and, for
// 16-bit storage, load_half/store_half (IEEE binary16) and load_bf16/store_bf16
// (bfloat16), converting width values to/from float (round to nearest even),
// and stream_half/stream_bf16, their non-temporal stores (16-bit-vector
// aligned; a plain store where the ISA has none).
//
// The loops are written over a *storage* policy S: how values are held in
// memory (S::Stored) and the lanes they are computed in (S::Lanes).  float32
// and float64 are held as they are computed; float16 and bfloat16 are held in
// 16 bits and computed in float32 lanes.
// Everything here therefore has internal linkage in each ISA's object, and it
// must not call inline library templates (std::min and friends), which would
// be shared between objects compiled for different ISAs.
//
// Why the statistics are computed the way they are: see cpp/README.md.

// Exact scalar conversions for the 16-bit formats (tails, the first value of
// a block, and the portable kernel).
inline float half_bits_to_float(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exponent = (h >> 10) & 0x1fu;
    const uint32_t mantissa = h & 0x3ffu;
    uint32_t bits;
    if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in float
        const float value = static_cast<float>(mantissa) * 5.9604644775390625e-08f;
        memcpy(&bits, &value, sizeof(bits));
        bits |= sign;
    } else if (exponent == 31) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else {
        bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof(f));
    return f;
}

inline uint16_t float_to_half_bits(float f) {  // round to nearest even
    uint32_t x;
    memcpy(&x, &f, sizeof(x));
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t magnitude = x & 0x7fffffffu;
    if (magnitude >= 0x7f800000u) return static_cast<uint16_t>(sign | (magnitude > 0x7f800000u ? 0x7e00u : 0x7c00u));
    if (magnitude >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520: inf
    if (magnitude < 0x38800000u) {  // below 2^-14: a subnormal half (or zero)
        float a;
        memcpy(&a, &magnitude, sizeof(a));
        const float units = a * 16777216.0f;                    // in units of 2^-24, exact
        const float rounded = (units + 8388608.0f) - 8388608.0f;  // to nearest even integer
        return static_cast<uint16_t>(sign | static_cast<uint32_t>(rounded));
    }
    uint32_t half = (magnitude - 0x38000000u) >> 13;
    const uint32_t rest = magnitude & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // may carry into the exponent
    return static_cast<uint16_t>(sign | half);
}

inline float bf16_bits_to_float(uint16_t b) {
    const uint32_t bits = static_cast<uint32_t>(b) << 16;
    float f;
    memcpy(&f, &bits, sizeof(f));
    return f;
}

inline uint16_t float_to_bf16_bits(float f) {  // round to nearest even; NaN stays NaN
    uint32_t x;
    memcpy(&x, &f, sizeof(x));
    if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return static_cast<uint16_t>(x >> 16);
}

// Values held as they are computed (float32, float64).
template <class L>
struct NativeStorage {
    using Stored = typename L::T;
    using Lanes = L;
    static typename L::V load(const Stored* p) { return L::load(p); }
    static void store(Stored* p, typename L::V v) { L::store(p, v); }
    static void stream(Stored* p, typename L::V v) { L::stream(p, v); }
    static typename L::T to_compute(Stored v) { return v; }
};

// IEEE float16 held in 16 bits, computed in float32 lanes.
template <class L>
struct HalfStorage {
    using Stored = uint16_t;
    using Lanes = L;
    static typename L::V load(const Stored* p) { return L::load_half(p); }
    static void store(Stored* p, typename L::V v) { L::store_half(p, v); }
    static void stream(Stored* p, typename L::V v) { L::stream_half(p, v); }
    static float to_compute(Stored v) { return half_bits_to_float(v); }
};

// bfloat16 held in 16 bits, computed in float32 lanes.
template <class L>
struct BFloat16Storage {
    using Stored = uint16_t;
    using Lanes = L;
    static typename L::V load(const Stored* p) { return L::load_bf16(p); }
    static void store(Stored* p, typename L::V v) { L::store_bf16(p, v); }
    static void stream(Stored* p, typename L::V v) { L::stream_bf16(p, v); }
    static float to_compute(Stored v) { return bf16_bits_to_float(v); }
};

using F32Storage = NativeStorage<F32>;
using F64Storage = NativeStorage<F64>;
using F16Storage = HalfStorage<F32>;
using BF16Storage = BFloat16Storage<F32>;

// Pairwise, in double: a short dependency chain (log2(width) adds), and a
// fixed order, so the result never depends on anything but the lanes.
template <class L>
inline double lanes_sum(typename L::V v) {
    alignas(64) typename L::T lanes[L::width];
    L::store(lanes, v);
    double partial[L::width];
    for (int i = 0; i < L::width; ++i) partial[i] = static_cast<double>(lanes[i]);
    for (int step = 1; step < L::width; step *= 2) {
        for (int i = 0; i + step < L::width; i += 2 * step) partial[i] += partial[i + step];
    }
    return partial[0];
}

// Tails go through a full-width vector so that every element sees exactly the
// same lane arithmetic wherever a row happens to be cut.
template <class S>
inline typename S::Lanes::V load_partial(const typename S::Stored* p, int64_t n) {
    alignas(64) typename S::Stored buf[S::Lanes::width];
    for (int64_t i = 0; i < S::Lanes::width; ++i) buf[i] = i < n ? p[i] : typename S::Stored(0);
    return S::load(buf);
}

template <class S>
inline void store_partial(typename S::Stored* p, typename S::Lanes::V v, int64_t n) {
    alignas(64) typename S::Stored buf[S::Lanes::width];
    S::store(buf, v);
    for (int64_t i = 0; i < n; ++i) p[i] = buf[i];
}

// Sums of deviations from `center`, vector lanes in T, reduced in double.
// The rounding error of these sums scales with the spread of the data about
// the center, not with its offset (a float32 E[x^2]-E[x]^2 is NaN-prone at mean
// 1e4), as long as the center is close to the mean: see block_moments.
template <class S>
BlockMoments centered_moments(const typename S::Stored* x, int64_t n,
                              typename S::Lanes::T center, double inv_count) {
    using L = typename S::Lanes;
    using V = typename L::V;
    constexpr int64_t W = L::width;
    const V center_v = L::set1(center);
    // Four independent accumulators per sum: an FMA has 4 cycles of latency,
    // and with fewer chains the loop waits on them instead of on memory.
    V dev0 = L::zero(), dev1 = L::zero(), dev2 = L::zero(), dev3 = L::zero();
    V sq0 = L::zero(), sq1 = L::zero(), sq2 = L::zero(), sq3 = L::zero();
    int64_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W) {
        const V d0 = L::sub(S::load(x + i), center_v);
        const V d1 = L::sub(S::load(x + i + W), center_v);
        const V d2 = L::sub(S::load(x + i + 2 * W), center_v);
        const V d3 = L::sub(S::load(x + i + 3 * W), center_v);
        dev0 = L::add(dev0, d0);
        dev1 = L::add(dev1, d1);
        dev2 = L::add(dev2, d2);
        dev3 = L::add(dev3, d3);
        sq0 = L::mul_add(d0, d0, sq0);
        sq1 = L::mul_add(d1, d1, sq1);
        sq2 = L::mul_add(d2, d2, sq2);
        sq3 = L::mul_add(d3, d3, sq3);
    }
    for (; i + W <= n; i += W) {
        const V d0 = L::sub(S::load(x + i), center_v);
        dev0 = L::add(dev0, d0);
        sq0 = L::mul_add(d0, d0, sq0);
    }
    double dev = lanes_sum<L>(L::add(L::add(dev0, dev1), L::add(dev2, dev3)));
    double sq = lanes_sum<L>(L::add(L::add(sq0, sq1), L::add(sq2, sq3)));
    for (; i < n; ++i) {
        const double d = static_cast<double>(S::to_compute(x[i])) - static_cast<double>(center);
        dev += d;
        sq += d * d;
    }
    BlockMoments moments;
    moments.mean = static_cast<double>(center) + dev * inv_count;
    // Corrected two-pass formula; the clamp keeps rounding from making a
    // constant block's M2 negative (NaN passes through: NaN < 0 is false).
    const double m2 = sq - dev * dev * inv_count;
    moments.m2 = m2 < 0.0 ? 0.0 : m2;
    return moments;
}

// One streaming pass per block in the common case, with the block's first
// value as the center (nothing to wait for before the loop starts).  The error
// of M2 is about eps * n*(mean-center)^2, so the pass is kept when
// n*(mean-center)^2 <= kMaxShiftRatio * M2, i.e. the first value lies within
// 4 standard deviations of the block's mean.  Otherwise (an outlier first) the
// block, now in L1, is summed again about the mean just found: the exact
// two-pass result.  The choice depends on the block's values only, so results
// stay independent of the thread count.  A constant block gives M2 == 0 and
// mean == x exactly; a NaN anywhere makes both NaN.
template <class S>
BlockMoments block_moments(const typename S::Stored* x, int64_t n) {
    using T = typename S::Lanes::T;
    constexpr double kMaxShiftRatio = 16.0;
    // One division per block: small groups are latency-bound on these.
    const double inv_count = 1.0 / static_cast<double>(n);
    const T center = S::to_compute(x[0]);
    const BlockMoments first = centered_moments<S>(x, n, center, inv_count);
    const double shift = first.mean - static_cast<double>(center);
    if (!(static_cast<double>(n) * shift * shift > kMaxShiftRatio * first.m2)) return first;
    return centered_moments<S>(x, n, static_cast<T>(first.mean), inv_count);
}

// Activations fused into the normalisation (values match gncpu_activation).
enum Activation : int { kIdentity = 0, kSilu = 1, kRelu = 2, kGelu = 3 };

// exp(-x) for float32 lanes (the activations need the negative exponent; the
// sign is folded into the constants).  -x = n*ln2 + r, |r| <= ln2/2, exp(r)
// by a degree-6 polynomial (Cephes' expf coefficients, about 1 ulp), times
// 2^n.  Rounding to the integer n is adding 1.5 * 2^23 (+127, the exponent
// bias), which leaves n + 127 in the low mantissa bits for pow2_biased.  The
// clamps take the constant first so that a NaN passes through, and keep the
// result finite and below 2^128.
template <class L>
inline typename L::V exp_neg_f32(typename L::V x) {
    using V = typename L::V;
    const V shifter = L::set1(12582912.0f + 127.0f);  // 0x1.8p23 + 127
    x = L::max(L::set1(-88.37626f), L::min(L::set1(87.33654f), x));
    const V t = L::mul_add(x, L::set1(-1.44269504088896341f), shifter);
    const V n = L::sub(t, shifter);
    V r = L::neg_mul_sub(n, L::set1(0.693359375f), x);  // -x - n * ln2 (high part)
    r = L::mul_add(n, L::set1(2.12194440e-4f), r);      // ... - n * ln2 (low part)
    V p = L::set1(1.9875691500e-4f);
    p = L::mul_add(p, r, L::set1(1.3981999507e-3f));
    p = L::mul_add(p, r, L::set1(8.3334519073e-3f));
    p = L::mul_add(p, r, L::set1(4.1665795894e-2f));
    p = L::mul_add(p, r, L::set1(1.6666665459e-1f));
    p = L::mul_add(p, r, L::set1(5.0000001201e-1f));
    p = L::mul_add(L::mul(p, r), r, L::add(r, L::set1(1.0f)));
    return L::mul(p, L::pow2_biased(t));
}

// erf(a) for a >= 0 (Abramowitz & Stegun 7.1.26, absolute error <= 1.5e-7).
template <class L>
inline typename L::V erf_nonnegative_f32(typename L::V a) {
    using V = typename L::V;
    const V one = L::set1(1.0f);
    const V t = L::div(one, L::mul_add(L::set1(0.3275911f), a, one));
    V p = L::set1(1.061405429f);
    p = L::mul_add(p, t, L::set1(-1.453152027f));
    p = L::mul_add(p, t, L::set1(1.421413741f));
    p = L::mul_add(p, t, L::set1(-0.284496736f));
    p = L::mul_add(p, t, L::set1(0.254829592f));
    const V e = exp_neg_f32<L>(L::mul(a, a));
    return L::sub(one, L::mul(L::mul(p, t), e));
}

// float64 activations go through libm per lane: exact to double rounding,
// and exp/erf are real library functions (no inline code shared between ISAs).
inline double activate_f64(double v, int activation) {
    switch (activation) {
        case kSilu: return v / (1.0 + exp(-v));
        case kRelu: return v < 0.0 ? 0.0 : v;  // NaN stays NaN
        case kGelu: return 0.5 * v * (1.0 + erf(v * 0.70710678118654752440));
        default: return v;
    }
}

template <class L, int kAct>
inline typename L::V activate(typename L::V v) {
    using T = typename L::T;
    if (kAct == kIdentity) return v;
    if constexpr (sizeof(T) == 4) {
        if (kAct == kRelu) return L::max(L::zero(), v);
        if (kAct == kSilu) {  // v * sigmoid(v) = v / (1 + exp(-v))
            return L::div(v, L::add(L::set1(1.0f), exp_neg_f32<L>(v)));
        }
        // GELU (erf form): 0.5 * v * (1 + erf(v / sqrt 2)) = 0.5 * (v + |v| erf(|v| / sqrt 2))
        const typename L::V magnitude = L::max(v, L::sub(L::zero(), v));
        const typename L::V e = erf_nonnegative_f32<L>(L::mul(magnitude, L::set1(0.70710678f)));
        return L::mul(L::set1(0.5f), L::mul_add(magnitude, e, v));
    } else {
        alignas(64) T lanes[L::width];
        L::store(lanes, v);
        for (int i = 0; i < L::width; ++i) lanes[i] = static_cast<T>(activate_f64(lanes[i], kAct));
        return L::load(lanes);
    }
}

template <class L, int kAct>
inline typename L::V normalize_lanes(typename L::V v, typename L::V center,
                                     typename L::V scale, typename L::V offset) {
    return activate<L, kAct>(L::mul_add(L::sub(v, center), scale, offset));
}

// kStream: the output is larger than the last-level cache, so it is written
// with non-temporal stores (no read-for-ownership of y, no eviction of x).
// Either way the head up to the first vector-aligned y goes through a partial
// vector, so the stores after it are aligned: a misaligned 64-byte store
// splits a cache line every time (an out= buffer from np.empty sits 16 bytes
// past a page: 1.3-1.6x slower on a Xeon with AVX-512).  The partial vector
// does the same lane arithmetic, so every element's value is the same either
// way.
template <class S, bool kStream, int kAct>
void normalize_rows(const typename S::Stored* x, typename S::Stored* y, int64_t rows,
                    int64_t row_len, typename S::Lanes::T center,
                    const typename S::Lanes::T* scale, const typename S::Lanes::T* offset) {
    using L = typename S::Lanes;
    using Stored = typename S::Stored;
    using V = typename L::V;
    constexpr int64_t W = L::width;
    constexpr uintptr_t kAlign = sizeof(Stored) * W;
    const V center_v = L::set1(center);
    for (int64_t r = 0; r < rows; ++r) {
        const Stored* xr = x + r * row_len;
        Stored* yr = y + r * row_len;
        const V scale_v = L::set1(scale[r]);
        const V offset_v = L::set1(offset[r]);
        int64_t i = 0;
        const uintptr_t misalign = reinterpret_cast<uintptr_t>(yr) % kAlign;
        // Short rows: a partial head would cost more than the split stores.
        if ((kStream || row_len >= 4 * W) && misalign != 0 && misalign % sizeof(Stored) == 0) {
            int64_t head = static_cast<int64_t>((kAlign - misalign) / sizeof(Stored));
            if (head > row_len) head = row_len;
            store_partial<S>(yr, normalize_lanes<L, kAct>(load_partial<S>(xr, head), center_v,
                                                          scale_v, offset_v), head);
            i = head;
        }
        if (kStream && reinterpret_cast<uintptr_t>(yr + i) % kAlign == 0) {
            for (; i + W <= row_len; i += W) {
                S::stream(yr + i, normalize_lanes<L, kAct>(S::load(xr + i), center_v,
                                                           scale_v, offset_v));
            }
        }
        for (; i + 4 * W <= row_len; i += 4 * W) {
            const V x0 = S::load(xr + i), x1 = S::load(xr + i + W);
            const V x2 = S::load(xr + i + 2 * W), x3 = S::load(xr + i + 3 * W);
            S::store(yr + i, normalize_lanes<L, kAct>(x0, center_v, scale_v, offset_v));
            S::store(yr + i + W, normalize_lanes<L, kAct>(x1, center_v, scale_v, offset_v));
            S::store(yr + i + 2 * W, normalize_lanes<L, kAct>(x2, center_v, scale_v, offset_v));
            S::store(yr + i + 3 * W, normalize_lanes<L, kAct>(x3, center_v, scale_v, offset_v));
        }
        for (; i + W <= row_len; i += W) {
            S::store(yr + i, normalize_lanes<L, kAct>(S::load(xr + i), center_v, scale_v, offset_v));
        }
        if (i < row_len) {
            const V v = load_partial<S>(xr + i, row_len - i);
            store_partial<S>(yr + i, normalize_lanes<L, kAct>(v, center_v, scale_v, offset_v),
                             row_len - i);
        }
    }
    if (kStream) fence_streams();
}

// ---------------------------------------------------------------------------
// Channels-last (NHWC): each example is `rows` spatial positions of `channels`
// contiguous values.  The statistics walk column strips down a block of rows,
// four vectors of channels at a time in registers, so each cache line is read
// once; per channel they return the sums of deviations from a center (the
// block's first row when `center` is null, which it then writes to
// center_used) and of their squares, in double.
template <class S>
void nhwc_channel_sums(const typename S::Stored* x, int64_t rows, int64_t channels,
                       const typename S::Lanes::T* center, typename S::Lanes::T* center_used,
                       double* dev, double* sq) {
    using L = typename S::Lanes;
    using T = typename L::T;
    using V = typename L::V;
    constexpr int64_t W = L::width;
    // Float lanes take at most this many rows before they are added into the
    // double sums: as short an accumulation as the NCHW blocks' (64 values).
    constexpr int64_t kRowsPerFlush = 64;
    if (center == nullptr) {
        for (int64_t c = 0; c < channels; ++c) center_used[c] = S::to_compute(x[c]);
        center = center_used;
    } else if (center != center_used) {
        for (int64_t c = 0; c < channels; ++c) center_used[c] = center[c];
    }
    for (int64_t c = 0; c < channels; ++c) dev[c] = 0.0, sq[c] = 0.0;
    alignas(64) T lanes[8][L::width];
    auto flush = [&](int64_t c, int count, const V* d, const V* q, int64_t width) {
        for (int v = 0; v < count; ++v) {
            L::store(lanes[2 * v], d[v]);
            L::store(lanes[2 * v + 1], q[v]);
            for (int64_t i = 0; i < width && i < L::width; ++i) {
                dev[c + v * W + i] += static_cast<double>(lanes[2 * v][i]);
                sq[c + v * W + i] += static_cast<double>(lanes[2 * v + 1][i]);
            }
        }
    };
    int64_t c = 0;
    for (; c + 4 * W <= channels; c += 4 * W) {
        const V k[4] = {L::load(center + c), L::load(center + c + W), L::load(center + c + 2 * W),
                        L::load(center + c + 3 * W)};
        for (int64_t r0 = 0; r0 < rows; r0 += kRowsPerFlush) {
            const int64_t r1 = r0 + kRowsPerFlush < rows ? r0 + kRowsPerFlush : rows;
            V d[4] = {L::zero(), L::zero(), L::zero(), L::zero()};
            V q[4] = {L::zero(), L::zero(), L::zero(), L::zero()};
            for (int64_t r = r0; r < r1; ++r) {
                const typename S::Stored* xr = x + r * channels + c;
                const V e0 = L::sub(S::load(xr), k[0]), e1 = L::sub(S::load(xr + W), k[1]);
                const V e2 = L::sub(S::load(xr + 2 * W), k[2]), e3 = L::sub(S::load(xr + 3 * W), k[3]);
                d[0] = L::add(d[0], e0);
                d[1] = L::add(d[1], e1);
                d[2] = L::add(d[2], e2);
                d[3] = L::add(d[3], e3);
                q[0] = L::mul_add(e0, e0, q[0]);
                q[1] = L::mul_add(e1, e1, q[1]);
                q[2] = L::mul_add(e2, e2, q[2]);
                q[3] = L::mul_add(e3, e3, q[3]);
            }
            flush(c, 4, d, q, W);
        }
    }
    for (; c < channels; c += W) {  // the last strip, a vector (or part of one) wide
        const int64_t width = channels - c < W ? channels - c : W;
        alignas(64) T k_lanes[L::width] = {};
        for (int64_t i = 0; i < width; ++i) k_lanes[i] = center[c + i];
        const V k = L::load(k_lanes);
        for (int64_t r0 = 0; r0 < rows; r0 += kRowsPerFlush) {
            const int64_t r1 = r0 + kRowsPerFlush < rows ? r0 + kRowsPerFlush : rows;
            V d[1] = {L::zero()}, q[1] = {L::zero()};
            for (int64_t r = r0; r < r1; ++r) {
                const V e = L::sub(load_partial<S>(x + r * channels + c, width), k);
                d[0] = L::add(d[0], e);
                q[0] = L::mul_add(e, e, q[0]);
            }
            flush(c, 1, d, q, width);
        }
    }
}

// The body of nhwc_normalize from value e (channel c) to the end: kStream
// writes with non-temporal stores, which need y + e vector-aligned.
template <class S, int kAct, bool kStream>
void nhwc_normalize_run(const typename S::Stored* x, typename S::Stored* y, int64_t e,
                        int64_t total, int64_t c, int64_t channels,
                        const typename S::Lanes::T* center, const typename S::Lanes::T* scale,
                        const typename S::Lanes::T* offset) {
    using L = typename S::Lanes;
    using V = typename L::V;
    constexpr int64_t W = L::width;
    const auto put = [](typename S::Stored* p, V v) {
        if (kStream) S::stream(p, v); else S::store(p, v);
    };
    const auto next_channel = [channels](int64_t ch) {
        ch += W;
        while (ch >= channels) ch -= channels;
        return ch;
    };
    for (; e + 2 * W <= total; e += 2 * W) {
        const int64_t c1 = next_channel(c);
        const V x0 = S::load(x + e), x1 = S::load(x + e + W);
        put(y + e, normalize_lanes<L, kAct>(x0, L::load(center + c), L::load(scale + c),
                                            L::load(offset + c)));
        put(y + e + W, normalize_lanes<L, kAct>(x1, L::load(center + c1), L::load(scale + c1),
                                                L::load(offset + c1)));
        c = next_channel(c1);
    }
    for (; e + W <= total; e += W, c = next_channel(c)) {
        put(y + e, normalize_lanes<L, kAct>(S::load(x + e), L::load(center + c),
                                            L::load(scale + c), L::load(offset + c)));
    }
    if (e < total) {
        store_partial<S>(y + e, normalize_lanes<L, kAct>(load_partial<S>(x + e, total - e),
                                                         L::load(center + c), L::load(scale + c),
                                                         L::load(offset + c)),
                         total - e);
    }
}

// y = act((x - center[c]) * scale[c] + offset[c]) over rows of `channels`
// values, walked as one run of rows * channels values whose channel index c
// wraps at `channels`: the parameter arrays repeat their first entries past
// the last channel (kNhwcParamPad), so a vector that straddles two rows needs
// no special case, and the per-channel arrays stay in L1.  The run starts with
// a partial vector up to the first vector-aligned y, so every other store is
// aligned: a misaligned 64-byte store splits a cache line each time (2.7x
// slower on a Xeon with AVX-512 for an out= buffer from np.empty).  kStream:
// non-temporal stores, for outputs that cannot stay cached.
template <class S, bool kStream, int kAct>
void nhwc_normalize(const typename S::Stored* x, typename S::Stored* y, int64_t rows,
                    int64_t channels, const typename S::Lanes::T* center,
                    const typename S::Lanes::T* scale, const typename S::Lanes::T* offset) {
    using L = typename S::Lanes;
    using Stored = typename S::Stored;
    constexpr int64_t W = L::width;
    constexpr uintptr_t kAlign = sizeof(Stored) * W;
    static_assert(W <= kNhwcParamPad, "parameter arrays are padded for the widest vector");
    const int64_t total = rows * channels;
    int64_t e = 0, c = 0;
    const uintptr_t misalign = reinterpret_cast<uintptr_t>(y) % kAlign;
    if (misalign != 0 && misalign % sizeof(Stored) == 0) {
        int64_t head = static_cast<int64_t>((kAlign - misalign) / sizeof(Stored));
        if (head > total) head = total;
        store_partial<S>(y, normalize_lanes<L, kAct>(load_partial<S>(x, head), L::load(center),
                                                     L::load(scale), L::load(offset)),
                         head);
        e = head;
        c = head % channels;
    }
    if (kStream && reinterpret_cast<uintptr_t>(y + e) % kAlign == 0) {
        nhwc_normalize_run<S, kAct, true>(x, y, e, total, c, channels, center, scale, offset);
        fence_streams();
    } else {
        nhwc_normalize_run<S, kAct, false>(x, y, e, total, c, channels, center, scale, offset);
    }
}

// The table each ISA exports, as a constant expression (see kernel_table.h).
#define GNCPU_NORMALIZERS(ns, storage, stream)                                          \
    {                                                                                   \
        &ns::normalize_rows<ns::storage, stream, ns::kIdentity>,                        \
            &ns::normalize_rows<ns::storage, stream, ns::kSilu>,                        \
            &ns::normalize_rows<ns::storage, stream, ns::kRelu>,                        \
            &ns::normalize_rows<ns::storage, stream, ns::kGelu>                         \
    }
#define GNCPU_NHWC_NORMALIZERS(ns, storage, stream)                                     \
    {                                                                                   \
        &ns::nhwc_normalize<ns::storage, stream, ns::kIdentity>,                        \
            &ns::nhwc_normalize<ns::storage, stream, ns::kSilu>,                        \
            &ns::nhwc_normalize<ns::storage, stream, ns::kRelu>,                        \
            &ns::nhwc_normalize<ns::storage, stream, ns::kGelu>                         \
    }
#define GNCPU_KERNELS(ns, storage)                                                      \
    {                                                                                   \
        &ns::block_moments<ns::storage>, GNCPU_NORMALIZERS(ns, storage, false),         \
            GNCPU_NORMALIZERS(ns, storage, true), &ns::nhwc_channel_sums<ns::storage>,  \
            GNCPU_NHWC_NORMALIZERS(ns, storage, false),                                 \
            GNCPU_NHWC_NORMALIZERS(ns, storage, true)                                   \
    }
#define GNCPU_KERNEL_TABLE_INIT(ns, isa_name)                                           \
    {                                                                                   \
        isa_name, GNCPU_KERNELS(ns, F32Storage), GNCPU_KERNELS(ns, F64Storage),         \
            GNCPU_KERNELS(ns, F16Storage), GNCPU_KERNELS(ns, BF16Storage)               \
    }
