// NCHW loops: a group is channels_per_group contiguous rows of `spatial`
// values.  Why the statistics are computed this way: see cpp/README.md.

// Sums of deviations from `center`, vector lanes in T, reduced in double.
// The rounding error of these sums scales with the spread of the data about
// the center, not with its offset (a float32 E[x^2]-E[x]^2 is NaN-prone at mean
// 1e4), as long as the center is close to the mean: see block_moments.
template <class S>
GNCPU_INLINE BlockMoments centered_moments(const typename S::Stored* x, int64_t n,
                              typename S::Lanes::T center, double inv_count) {
    using L = typename S::Lanes;
    using V = typename L::V;
    constexpr int64_t W = L::width;
    const V center_v = L::set1(center);
    // Each float lane adds at most 64 vectors (per chain) before its sums go
    // into double: a block of 16-bit values holds twice float32's count, and
    // summed in one run its squares lost 5x the accuracy (rstd off by ~29 *
    // 2^-24, against ~5.7); NEON's 4 lanes made the chains twice as long as
    // AVX2's.  A float32 block on AVX2 or AVX-512, and any float64 block, is
    // one run: the same operations as without runs.  (A multiple of 4 W:
    // tails come last.)
    constexpr int64_t kRun = 64 * 4 * W;
    double dev = 0.0, sq = 0.0;
    int64_t i = 0;
    for (int64_t start = 0; start < n; start += kRun) {
        const int64_t stop = n - start < kRun ? n : start + kRun;
        // Four independent accumulators per sum: an FMA has 4 cycles of latency,
        // and with fewer chains the loop waits on them instead of on memory.
        V dev0 = L::zero(), dev1 = L::zero(), dev2 = L::zero(), dev3 = L::zero();
        V sq0 = L::zero(), sq1 = L::zero(), sq2 = L::zero(), sq3 = L::zero();
        for (; i + 4 * W <= stop; i += 4 * W) {
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
        for (; i + W <= stop; i += W) {
            const V d0 = L::sub(S::load(x + i), center_v);
            dev0 = L::add(dev0, d0);
            sq0 = L::mul_add(d0, d0, sq0);
        }
        dev += lanes_sum<L>(L::add(L::add(dev0, dev1), L::add(dev2, dev3)));
        sq += lanes_sum<L>(L::add(L::add(sq0, sq1), L::add(sq2, sq3)));
    }
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

// y[r*row_len + i] = act((x[...] - center) * scale[r] + offset[r]), walked by
// walk_rows (walk.inl).
template <class S, int kAct>
struct NormalizeRowsOp {
    using L = typename S::Lanes;
    using V = typename L::V;
    struct Params {
        V scale, offset;
    };
    const typename S::Stored* x;
    V center;
    const typename L::T* scale;
    const typename L::T* offset;

    GNCPU_INLINE Params params(int64_t r) const { return {L::set1(scale[r]), L::set1(offset[r])}; }
    static GNCPU_INLINE Params mixed(int k, const Params& a, const Params& b) {
        return {L::first_lanes(k, a.scale, b.scale), L::first_lanes(k, a.offset, b.offset)};
    }
    GNCPU_INLINE V at(int64_t i, const Params& p) const {
        return normalize_lanes<L, kAct>(S::load(x + i), center, p.scale, p.offset);
    }
    GNCPU_INLINE V at_partial(int64_t i, int64_t n, const Params& p) const {
        return normalize_lanes<L, kAct>(load_partial<S>(x + i, n), center, p.scale, p.offset);
    }
};

template <class S, bool kStream, int kAct>
void normalize_rows(const typename S::Stored* x, typename S::Stored* y, int64_t rows,
                    int64_t row_len, typename S::Lanes::T center,
                    const typename S::Lanes::T* scale, const typename S::Lanes::T* offset) {
    walk_rows<S, kStream>(y, rows, row_len,
                          NormalizeRowsOp<S, kAct>{x, S::Lanes::set1(center), scale, offset});
}
