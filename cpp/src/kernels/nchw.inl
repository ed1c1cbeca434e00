// NCHW loops: a group is channels_per_group contiguous rows of `spatial`
// values.  Why the statistics are computed this way: see cpp/README.md.

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

