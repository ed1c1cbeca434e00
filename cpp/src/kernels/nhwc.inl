// Channels-last (NHWC): each example is `rows` spatial positions of `channels`
// contiguous values.  Per channel of a block of rows: the mean and M2, from
// the sums (in double) of deviations from a center (the block's first row when
// `center` is null, which it then writes to center_used) and of their squares.
// Returns whether some channel's center lay more than 4 standard deviations
// from its mean (see block_moments in nchw.inl): then the caller sums again
// about the means found.  The per-channel loops are here, compiled for the
// ISA, because with 1280 channels and 51 rows per block they cost as much as
// the sums themselves when compiled for the baseline CPU.
//
// The rows are walked in bands of kRowsPerPartial: within a band, column
// strips four vectors wide are summed down the band in registers, then added
// to float running sums (run_dev, run_sq: caller scratch of channels +
// kNhwcParamPad values), which go into the double sums every kRowsPerFlush
// rows.  A band is a few KiB, so the strips after the first find it in L1, and
// memory sees kRowsPerPartial sequential streams: strips walked down a whole
// block (256 rows of 1 KiB for 256 channels) made as many streams as rows,
// which the prefetchers could not follow (statistics at 0.35x a copy's speed,
// FPN channels-last 2.6x a copy).  The float chains are as before: 8-row
// partials, summed in float up to 64 rows (one chain of 64 left channels-last
// up to ~27 ulp off when a center 4 sigma from the mean makes every deviation
// large).
template <class S>
bool nhwc_channel_moments(const typename S::Stored* x, int64_t rows, int64_t channels,
                          const typename S::Lanes::T* center, typename S::Lanes::T* center_used,
                          double* mean, double* m2, typename S::Lanes::T* run_dev,
                          typename S::Lanes::T* run_sq) {
    using L = typename S::Lanes;
    using T = typename L::T;
    using V = typename L::V;
    using Stored = typename S::Stored;
    constexpr int64_t W = L::width;
    constexpr int64_t kRowsPerPartial = 8;
    constexpr int64_t kRowsPerFlush = 64;
    if (center == nullptr) {
        for (int64_t c = 0; c < channels; ++c) center_used[c] = S::to_compute(x[c]);
        center = center_used;
    } else if (center != center_used) {
        for (int64_t c = 0; c < channels; ++c) center_used[c] = center[c];
    }
    // Past the last channel: zero centers for the partial strip (its lanes
    // beyond `channels` load zeros), and zero running sums, all within the pad.
    static_assert(W <= kNhwcParamPad, "the running sums are padded for the widest vector");
    const int64_t padded = (channels + W - 1) / W * W;
    double* dev = mean;  // the sums, until the last loop turns them into moments
    double* sq = m2;
    for (int64_t c = 0; c < channels; ++c) dev[c] = 0.0, sq[c] = 0.0;
    for (int64_t c = 0; c < padded; ++c) run_dev[c] = T(0), run_sq[c] = T(0);
    const int64_t full_strips_end = channels / (4 * W) * (4 * W);
    const int64_t full_vectors_end = channels / W * W;
    alignas(64) T tail_center[L::width] = {};
    for (int64_t c = full_vectors_end; c < channels; ++c) tail_center[c - full_vectors_end] = center[c];
    const auto add_to = [](T* p, V v) { L::store(p, L::add(L::load(p), v)); };
    for (int64_t r0 = 0; r0 < rows; r0 += kRowsPerFlush) {
        const int64_t r1 = r0 + kRowsPerFlush < rows ? r0 + kRowsPerFlush : rows;
        for (int64_t s0 = r0; s0 < r1; s0 += kRowsPerPartial) {
            const int64_t s1 = s0 + kRowsPerPartial < r1 ? s0 + kRowsPerPartial : r1;
            const Stored* band = x + s0 * channels;
            int64_t c = 0;
            for (; c < full_strips_end; c += 4 * W) {
                const V k0 = L::load(center + c), k1 = L::load(center + c + W);
                const V k2 = L::load(center + c + 2 * W), k3 = L::load(center + c + 3 * W);
                V pd0 = L::zero(), pd1 = L::zero(), pd2 = L::zero(), pd3 = L::zero();
                V pq0 = L::zero(), pq1 = L::zero(), pq2 = L::zero(), pq3 = L::zero();
                for (int64_t r = 0; r < s1 - s0; ++r) {
                    const Stored* xr = band + r * channels + c;
                    const V e0 = L::sub(S::load(xr), k0), e1 = L::sub(S::load(xr + W), k1);
                    const V e2 = L::sub(S::load(xr + 2 * W), k2), e3 = L::sub(S::load(xr + 3 * W), k3);
                    pd0 = L::add(pd0, e0);
                    pd1 = L::add(pd1, e1);
                    pd2 = L::add(pd2, e2);
                    pd3 = L::add(pd3, e3);
                    pq0 = L::mul_add(e0, e0, pq0);
                    pq1 = L::mul_add(e1, e1, pq1);
                    pq2 = L::mul_add(e2, e2, pq2);
                    pq3 = L::mul_add(e3, e3, pq3);
                }
                add_to(run_dev + c, pd0), add_to(run_dev + c + W, pd1);
                add_to(run_dev + c + 2 * W, pd2), add_to(run_dev + c + 3 * W, pd3);
                add_to(run_sq + c, pq0), add_to(run_sq + c + W, pq1);
                add_to(run_sq + c + 2 * W, pq2), add_to(run_sq + c + 3 * W, pq3);
            }
            for (; c < channels; c += W) {  // strips one vector (or part of one) wide
                const int64_t width = channels - c < W ? channels - c : W;
                const V k = width == W ? L::load(center + c) : L::load(tail_center);
                V pd = L::zero(), pq = L::zero();
                for (int64_t r = s0; r < s1; ++r) {
                    const Stored* xr = x + r * channels + c;
                    const V e = L::sub(width == W ? S::load(xr) : load_partial<S>(xr, width), k);
                    pd = L::add(pd, e);
                    pq = L::mul_add(e, e, pq);
                }
                add_to(run_dev + c, pd);
                add_to(run_sq + c, pq);
            }
        }
        for (int64_t c = 0; c < channels; ++c) {
            dev[c] += static_cast<double>(run_dev[c]);
            sq[c] += static_cast<double>(run_sq[c]);
            run_dev[c] = T(0);
            run_sq[c] = T(0);
        }
    }
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

