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
    // Float lanes sum runs of kRowsPerPartial rows, the runs are summed in
    // float, and every kRowsPerFlush rows go into double sums: two short
    // chains instead of one of 64, which left channels-last up to ~27 ulp off
    // (a center 4 sigma from the mean makes every deviation large).
    constexpr int64_t kRowsPerPartial = 8;
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
            for (int64_t s0 = r0; s0 < r1; s0 += kRowsPerPartial) {
                const int64_t s1 = s0 + kRowsPerPartial < r1 ? s0 + kRowsPerPartial : r1;
                V pd0 = L::zero(), pd1 = L::zero(), pd2 = L::zero(), pd3 = L::zero();
                V pq0 = L::zero(), pq1 = L::zero(), pq2 = L::zero(), pq3 = L::zero();
                for (int64_t r = s0; r < s1; ++r) {
                    const typename S::Stored* xr = x + r * channels + c;
                    const V e0 = L::sub(S::load(xr), k[0]), e1 = L::sub(S::load(xr + W), k[1]);
                    const V e2 = L::sub(S::load(xr + 2 * W), k[2]), e3 = L::sub(S::load(xr + 3 * W), k[3]);
                    pd0 = L::add(pd0, e0);
                    pd1 = L::add(pd1, e1);
                    pd2 = L::add(pd2, e2);
                    pd3 = L::add(pd3, e3);
                    pq0 = L::mul_add(e0, e0, pq0);
                    pq1 = L::mul_add(e1, e1, pq1);
                    pq2 = L::mul_add(e2, e2, pq2);
                    pq3 = L::mul_add(e3, e3, pq3);
                }
                d[0] = L::add(d[0], pd0), d[1] = L::add(d[1], pd1);
                d[2] = L::add(d[2], pd2), d[3] = L::add(d[3], pd3);
                q[0] = L::add(q[0], pq0), q[1] = L::add(q[1], pq1);
                q[2] = L::add(q[2], pq2), q[3] = L::add(q[3], pq3);
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
            for (int64_t s0 = r0; s0 < r1; s0 += kRowsPerPartial) {
                const int64_t s1 = s0 + kRowsPerPartial < r1 ? s0 + kRowsPerPartial : r1;
                V pd = L::zero(), pq = L::zero();
                for (int64_t r = s0; r < s1; ++r) {
                    const V e = L::sub(load_partial<S>(x + r * channels + c, width), k);
                    pd = L::add(pd, e);
                    pq = L::mul_add(e, e, pq);
                }
                d[0] = L::add(d[0], pd);
                q[0] = L::add(q[0], pq);
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

