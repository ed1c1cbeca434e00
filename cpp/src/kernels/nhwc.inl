// Channels-last (NHWC): each example is `rows` spatial positions of `channels`
// contiguous values.  Per channel of a block of rows: the mean and M2, from
// the sums (in double) of deviations from a center (the block's first row when
// `center` is null, which it then writes to center_used) and of their squares,
// walked by walk_channel_sums (walk.inl; run_dev and run_sq are its float
// running sums).  Returns whether some channel's center lay more than 4
// standard deviations from its mean (see block_moments in nchw.inl): then the
// caller sums again about the means found.  The per-channel loops are here,
// compiled for the ISA, because with 1280 channels and 51 rows per block they
// cost as much as the sums themselves when compiled for the baseline CPU.
template <class S>
struct ChannelMomentsOp {
    using L = typename S::Lanes;
    using T = typename L::T;
    using V = typename L::V;
    using Strip = V;  // the centers
    static constexpr int kSums = 2;  // deviations, squares
    const typename S::Stored* x;
    const T* center;
    int64_t full_vectors_end;
    T* run[kSums];
    double* sums[kSums];
    // The centers of the last, partial vector, zero past the last channel
    // (center has only `channels` entries).
    T tail_center[L::width];

    GNCPU_INLINE V strip(int64_t c) const { return c < full_vectors_end ? L::load(center + c) : L::load(tail_center); }
    GNCPU_INLINE void add(V* acc, const V& k, int64_t at, int64_t width) const {
        const V e = L::sub(width == L::width ? S::load(x + at) : load_partial<S>(x + at, width), k);
        acc[0] = L::add(acc[0], e);
        acc[1] = L::mul_add(e, e, acc[1]);
    }
    void flush(int64_t channels) const {
        for (int j = 0; j < kSums; ++j) {
            for (int64_t c = 0; c < channels; ++c) {
                sums[j][c] += static_cast<double>(run[j][c]);
                run[j][c] = T(0);
            }
        }
    }
};

template <class S>
bool nhwc_channel_moments(const typename S::Stored* x, int64_t rows, int64_t channels,
                          const typename S::Lanes::T* center, typename S::Lanes::T* center_used,
                          double* mean, double* m2, typename S::Lanes::T* run_dev,
                          typename S::Lanes::T* run_sq) {
    using L = typename S::Lanes;
    if (center == nullptr) {
        for (int64_t c = 0; c < channels; ++c) center_used[c] = S::to_compute(x[c]);
        center = center_used;
    } else if (center != center_used) {
        for (int64_t c = 0; c < channels; ++c) center_used[c] = center[c];
    }
    double* dev = mean;  // the sums, until the last loop turns them into moments
    double* sq = m2;
    for (int64_t c = 0; c < channels; ++c) dev[c] = 0.0, sq[c] = 0.0;
    ChannelMomentsOp<S> op{x, center, channels / L::width * L::width, {run_dev, run_sq}, {dev, sq}, {}};
    for (int64_t c = op.full_vectors_end; c < channels; ++c) op.tail_center[c - op.full_vectors_end] = center[c];
    walk_channel_sums<S, 4>(rows, channels, op);
    // The corrected two-pass formula; the clamp keeps rounding from making a
    // constant channel's M2 negative (NaN passes through: NaN < 0 is false).
    const double inv_rows = 1.0 / static_cast<double>(rows);
    int poor_centers = 0;
    for (int64_t c = 0; c < channels; ++c) {
        const double shift = dev[c] * inv_rows;
        const double m = sq[c] - dev[c] * shift;
        mean[c] = static_cast<double>(center[c]) + shift;
        m2[c] = m < 0.0 ? 0.0 : m;
        poor_centers |= static_cast<double>(rows) * shift * shift > 16.0 * m2[c];
    }
    return poor_centers != 0;
}

// y = act((x - center[c]) * scale[c] + offset[c]) over rows of `channels`
// values, walked by walk_channels (walk.inl): the per-channel arrays stay in L1.
template <class S, int kAct>
struct NormalizeChannelsOp {
    using L = typename S::Lanes;
    using V = typename L::V;
    const typename S::Stored* x;
    const typename L::T* center;
    const typename L::T* scale;
    const typename L::T* offset;

    GNCPU_INLINE V at(int64_t e, int64_t c) const {
        return normalize_lanes<L, kAct>(S::load(x + e), L::load(center + c), L::load(scale + c),
                                        L::load(offset + c));
    }
    GNCPU_INLINE V at_partial(int64_t e, int64_t n, int64_t c) const {
        return normalize_lanes<L, kAct>(load_partial<S>(x + e, n), L::load(center + c),
                                        L::load(scale + c), L::load(offset + c));
    }
};

template <class S, bool kStream, int kAct>
void nhwc_normalize(const typename S::Stored* x, typename S::Stored* y, int64_t rows,
                    int64_t channels, const typename S::Lanes::T* center,
                    const typename S::Lanes::T* scale, const typename S::Lanes::T* offset) {
    walk_channels<S, kStream>(y, rows, channels, NormalizeChannelsOp<S, kAct>{x, center, scale, offset});
}
