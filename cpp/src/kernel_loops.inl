// The kernel loops, written once for every ISA.
//
// Included by kernel_<isa>.cpp *inside an anonymous namespace*, after that
// file has defined two lane types, F32 and F64, each providing:
//   T, V, width, zero(), set1(T), load(const T*), store(T*, V),
//   stream(T*, V) (a non-temporal store to a width-aligned address, or a plain
//   store where the ISA has none), add(V, V), sub(V, V), mul_add(a, b, c) = a*b + c,
// and a function fence_streams() that orders streaming stores.  F32 also
// provides, for the fused activations: mul, div, max, min (x86 semantics: the
// second operand when either is NaN), round (to nearest) and pow2 (2^n for
// integral n).
// Everything here therefore has internal linkage in each ISA's object, and it
// must not call inline library templates (std::min and friends), which would
// be shared between objects compiled for different ISAs.
//
// Why the statistics are computed the way they are: see cpp/README.md.

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
template <class L>
inline typename L::V load_partial(const typename L::T* p, int64_t n) {
    alignas(64) typename L::T buf[L::width];
    for (int64_t i = 0; i < L::width; ++i) buf[i] = i < n ? p[i] : typename L::T(0);
    return L::load(buf);
}

template <class L>
inline void store_partial(typename L::T* p, typename L::V v, int64_t n) {
    alignas(64) typename L::T buf[L::width];
    L::store(buf, v);
    for (int64_t i = 0; i < n; ++i) p[i] = buf[i];
}

// Sums of deviations from `center`, vector lanes in T, reduced in double.
// The rounding error of these sums scales with the spread of the data about
// the center, not with its offset (a float32 E[x^2]-E[x]^2 is NaN-prone at mean
// 1e4), as long as the center is close to the mean: see block_moments.
template <class L>
BlockMoments centered_moments(const typename L::T* x, int64_t n, typename L::T center,
                              double inv_count) {
    using V = typename L::V;
    constexpr int64_t W = L::width;
    const V center_v = L::set1(center);
    // Four independent accumulators per sum: an FMA has 4 cycles of latency,
    // and with fewer chains the loop waits on them instead of on memory.
    V dev0 = L::zero(), dev1 = L::zero(), dev2 = L::zero(), dev3 = L::zero();
    V sq0 = L::zero(), sq1 = L::zero(), sq2 = L::zero(), sq3 = L::zero();
    int64_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W) {
        const V d0 = L::sub(L::load(x + i), center_v);
        const V d1 = L::sub(L::load(x + i + W), center_v);
        const V d2 = L::sub(L::load(x + i + 2 * W), center_v);
        const V d3 = L::sub(L::load(x + i + 3 * W), center_v);
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
        const V d0 = L::sub(L::load(x + i), center_v);
        dev0 = L::add(dev0, d0);
        sq0 = L::mul_add(d0, d0, sq0);
    }
    double dev = lanes_sum<L>(L::add(L::add(dev0, dev1), L::add(dev2, dev3)));
    double sq = lanes_sum<L>(L::add(L::add(sq0, sq1), L::add(sq2, sq3)));
    for (; i < n; ++i) {
        const double d = static_cast<double>(x[i]) - static_cast<double>(center);
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
template <class L>
BlockMoments block_moments(const typename L::T* x, int64_t n) {
    using T = typename L::T;
    constexpr double kMaxShiftRatio = 16.0;
    // One division per block: small groups are latency-bound on these.
    const double inv_count = 1.0 / static_cast<double>(n);
    const T center = x[0];
    const BlockMoments first = centered_moments<L>(x, n, center, inv_count);
    const double shift = first.mean - static_cast<double>(center);
    if (!(static_cast<double>(n) * shift * shift > kMaxShiftRatio * first.m2)) return first;
    return centered_moments<L>(x, n, static_cast<T>(first.mean), inv_count);
}

// Activations fused into the normalisation (values match gncpu_activation).
enum Activation : int { kIdentity = 0, kSilu = 1, kRelu = 2, kGelu = 3 };

// exp for float32 lanes: x = n*ln2 + r, |r| <= ln2/2, exp(r) by a degree-6
// polynomial (Cephes' expf coefficients, about 1 ulp), times 2^n.  The
// clamps take the constant first so that a NaN passes through.
template <class L>
inline typename L::V exp_f32(typename L::V x) {
    using V = typename L::V;
    x = L::max(L::set1(-87.33654f), L::min(L::set1(88.37626f), x));
    const V n = L::round(L::mul(x, L::set1(1.44269504088896341f)));
    V r = L::mul_add(n, L::set1(-0.693359375f), x);
    r = L::mul_add(n, L::set1(2.12194440e-4f), r);
    V p = L::set1(1.9875691500e-4f);
    p = L::mul_add(p, r, L::set1(1.3981999507e-3f));
    p = L::mul_add(p, r, L::set1(8.3334519073e-3f));
    p = L::mul_add(p, r, L::set1(4.1665795894e-2f));
    p = L::mul_add(p, r, L::set1(1.6666665459e-1f));
    p = L::mul_add(p, r, L::set1(5.0000001201e-1f));
    p = L::mul_add(L::mul(p, r), r, L::add(r, L::set1(1.0f)));
    return L::mul(p, L::pow2(n));
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
    const V e = exp_f32<L>(L::sub(L::zero(), L::mul(a, a)));
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
            return L::div(v, L::add(L::set1(1.0f), exp_f32<L>(L::sub(L::zero(), v))));
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
// The head up to the first aligned address goes through a partial vector:
// the same lane arithmetic, so every element's value is the same either way.
template <class L, bool kStream, int kAct>
void normalize_rows(const typename L::T* x, typename L::T* y, int64_t rows,
                    int64_t row_len, typename L::T center,
                    const typename L::T* scale, const typename L::T* offset) {
    using T = typename L::T;
    using V = typename L::V;
    constexpr int64_t W = L::width;
    constexpr uintptr_t kAlign = sizeof(T) * W;
    const V center_v = L::set1(center);
    for (int64_t r = 0; r < rows; ++r) {
        const T* xr = x + r * row_len;
        T* yr = y + r * row_len;
        const V scale_v = L::set1(scale[r]);
        const V offset_v = L::set1(offset[r]);
        int64_t i = 0;
        if (kStream) {
            const uintptr_t misalign = reinterpret_cast<uintptr_t>(yr) % kAlign;
            if (misalign % sizeof(T) == 0 && misalign != 0) {
                int64_t head = static_cast<int64_t>((kAlign - misalign) / sizeof(T));
                if (head > row_len) head = row_len;
                store_partial<L>(yr, normalize_lanes<L, kAct>(load_partial<L>(xr, head), center_v,
                                                        scale_v, offset_v), head);
                i = head;
            }
            if (reinterpret_cast<uintptr_t>(yr + i) % kAlign == 0) {
                for (; i + W <= row_len; i += W) {
                    L::stream(yr + i, normalize_lanes<L, kAct>(L::load(xr + i), center_v, scale_v,
                                                         offset_v));
                }
            }
        }
        for (; i + 4 * W <= row_len; i += 4 * W) {
            const V x0 = L::load(xr + i), x1 = L::load(xr + i + W);
            const V x2 = L::load(xr + i + 2 * W), x3 = L::load(xr + i + 3 * W);
            L::store(yr + i, normalize_lanes<L, kAct>(x0, center_v, scale_v, offset_v));
            L::store(yr + i + W, normalize_lanes<L, kAct>(x1, center_v, scale_v, offset_v));
            L::store(yr + i + 2 * W, normalize_lanes<L, kAct>(x2, center_v, scale_v, offset_v));
            L::store(yr + i + 3 * W, normalize_lanes<L, kAct>(x3, center_v, scale_v, offset_v));
        }
        for (; i + W <= row_len; i += W) {
            L::store(yr + i, normalize_lanes<L, kAct>(L::load(xr + i), center_v, scale_v, offset_v));
        }
        if (i < row_len) {
            const V v = load_partial<L>(xr + i, row_len - i);
            store_partial<L>(yr + i, normalize_lanes<L, kAct>(v, center_v, scale_v, offset_v),
                             row_len - i);
        }
    }
    if (kStream) fence_streams();
}

// The table each ISA exports, as a constant expression (see kernel_table.h).
#define GNCPU_NORMALIZERS(ns, lanes, stream)                                            \
    {                                                                                   \
        &ns::normalize_rows<ns::lanes, stream, ns::kIdentity>,                          \
            &ns::normalize_rows<ns::lanes, stream, ns::kSilu>,                          \
            &ns::normalize_rows<ns::lanes, stream, ns::kRelu>,                          \
            &ns::normalize_rows<ns::lanes, stream, ns::kGelu>                           \
    }
#define GNCPU_KERNEL_TABLE_INIT(ns, isa_name)                                           \
    {                                                                                   \
        isa_name,                                                                       \
            {&ns::block_moments<ns::F32>, GNCPU_NORMALIZERS(ns, F32, false),            \
             GNCPU_NORMALIZERS(ns, F32, true)},                                         \
            {&ns::block_moments<ns::F64>, GNCPU_NORMALIZERS(ns, F64, false),            \
             GNCPU_NORMALIZERS(ns, F64, true)}                                          \
    }
