// The walkers: how a sweep that writes one value for each value of x moves
// through memory, written once for the forward's normalisation (nchw.inl,
// nhwc.inl) and the backward's dx (backward.inl).  What one vector is comes
// from an operation Op, taken by value so that its pointers are locals (read
// through a reference, GCC reloads each one after every store to `out`: it
// cannot rule out aliasing).
//
// Both walkers start with a partial vector up to the first vector-aligned
// output, so that every other store is aligned whatever buffer the caller
// passed and however long the rows: a misaligned 64-byte store splits a cache
// line every time (an out= buffer from np.empty sits 16 bytes past a line; 2.7x
// slower on a Xeon with AVX-512), and per-row partial vectors made NCHW rows of
// 64 values 3x slower.  kStream: non-temporal stores, for outputs larger than
// the last-level cache.  Every lane does the same arithmetic wherever the run
// is cut, so each value is the same either way.

// The first values of a run, up to the first vector-aligned output: how many
// (0 when `out` is aligned, or not even aligned to its element, where no head
// can help).
template <class S>
GNCPU_INLINE int64_t aligning_head(const typename S::Stored* out) {
    constexpr uintptr_t kAlign = sizeof(typename S::Stored) * S::Lanes::width;
    const uintptr_t misalign = reinterpret_cast<uintptr_t>(out) % kAlign;
    if (misalign == 0 || misalign % sizeof(typename S::Stored) != 0) return 0;
    return static_cast<int64_t>((kAlign - misalign) / sizeof(typename S::Stored));
}

template <class S, bool kStream>
GNCPU_INLINE void put_vector(typename S::Stored* p, typename S::Lanes::V v) {
    if (kStream) S::stream(p, v); else S::store(p, v);
}

// NCHW: out[r*row_len + i] for r < rows, i < row_len, walked as one run of
// rows * row_len values; a vector that crosses from row r to r + 1 takes its
// first lanes' parameters from row r and the others' from r + 1 (rows are at
// least a vector long there, so a vector crosses at most one end).  Op:
//   Params, the per-row constants as vectors; params(r); and
//   static mixed(k, a, b): lanes [0, k) of a and the rest of b;
//   at(i, p): the output vector of values [i, i + width);
//   at_partial(i, n, p): the same for the n < width values from i.
template <class S, bool kStream, class Op>
GNCPU_INLINE void walk_rows(typename S::Stored* out, int64_t rows, int64_t row_len, Op op) {
    using L = typename S::Lanes;
    using V = typename L::V;
    using P = typename Op::Params;
    constexpr int64_t W = L::width;
    if (row_len < W) {  // one row at a time, each with its own partial vector
        for (int64_t r = 0; r < rows; ++r)
            store_partial<S>(out + r * row_len, op.at_partial(r * row_len, row_len, op.params(r)),
                             row_len);
        return;
    }
    const int64_t total = rows * row_len;
    int64_t i = aligning_head<S>(out), r = 0, row_end = row_len;
    P p = op.params(0);
    if (i != 0) store_partial<S>(out, op.at_partial(0, i, p), i);  // i < W <= row_len: in row 0
    if (kStream && reinterpret_cast<uintptr_t>(out + i) % (sizeof(*out) * W) != 0) {
        walk_rows<S, false>(out, rows, row_len, op);  // streaming needs alignment
        return;
    }
    while (i + W <= total) {
        for (; i + 2 * W <= row_end; i += 2 * W) {
            const V v0 = op.at(i, p), v1 = op.at(i + W, p);
            put_vector<S, kStream>(out + i, v0);
            put_vector<S, kStream>(out + i + W, v1);
        }
        for (; i + W <= row_end; i += W) put_vector<S, kStream>(out + i, op.at(i, p));
        if (row_end == total) break;
        // The next row starts here or inside the next vector.
        const P next = op.params(r + 1);
        if (i < row_end && i + W <= total) {
            put_vector<S, kStream>(out + i, op.at(i, Op::mixed(static_cast<int>(row_end - i), p, next)));
            i += W;
        }
        ++r;
        row_end += row_len;
        p = next;
    }
    if (i < total) store_partial<S>(out + i, op.at_partial(i, total - i, p), total - i);  // last row
    if (kStream) fence_streams();
}

// Channels-last: out over rows of `channels` values, walked as one run of
// `total` values whose channel index c wraps at `channels`: the per-channel
// arrays repeat their first entries past the last channel (kNhwcParamPad), so
// a vector that straddles two rows needs no special case.  Op:
//   at(e, c): the output vector of values [e, e + width), c the channel of e;
//   at_partial(e, n, c): the same for the n < width values from e.
template <class S, bool kStream, class Op>
GNCPU_INLINE void walk_channels_from(typename S::Stored* out, int64_t e, int64_t total, int64_t c,
                        int64_t channels, Op op) {
    constexpr int64_t W = S::Lanes::width;
    const auto next_channel = [channels](int64_t ch) {
        ch += W;
        while (ch >= channels) ch -= channels;
        return ch;
    };
    for (; e + 2 * W <= total; e += 2 * W) {
        const int64_t c1 = next_channel(c);
        const typename S::Lanes::V v0 = op.at(e, c), v1 = op.at(e + W, c1);
        put_vector<S, kStream>(out + e, v0);
        put_vector<S, kStream>(out + e + W, v1);
        c = next_channel(c1);
    }
    for (; e + W <= total; e += W, c = next_channel(c)) put_vector<S, kStream>(out + e, op.at(e, c));
    if (e < total) store_partial<S>(out + e, op.at_partial(e, total - e, c), total - e);
}

template <class S, bool kStream, class Op>
GNCPU_INLINE void walk_channels(typename S::Stored* out, int64_t rows, int64_t channels, Op op) {
    static_assert(S::Lanes::width <= kNhwcParamPad, "parameter arrays are padded for the widest vector");
    const int64_t total = rows * channels;
    int64_t head = aligning_head<S>(out);
    if (head > total) head = total;
    if (head != 0) store_partial<S>(out, op.at_partial(0, head, 0), head);
    if (kStream && reinterpret_cast<uintptr_t>(out + head) % (sizeof(*out) * S::Lanes::width) == 0) {
        walk_channels_from<S, true>(out, head, total, head % channels, channels, op);
        fence_streams();
    } else {
        walk_channels_from<S, false>(out, head, total, head % channels, channels, op);
    }
}

// Channels-last sums: per channel over `rows` rows of `channels` values, the
// Op::kSums sums Op adds up, walked in bands of kRowsPerPartial rows: within a
// band, column strips kStripVectors vectors wide are summed down the band in
// registers, then added to float running sums (Op::run: caller scratch of
// channels + kNhwcParamPad values each), which Op::flush moves into double sums
// every kRowsPerFlush rows.  A band is a few KiB, so the strips after the
// first find it in L1, and memory sees kRowsPerPartial sequential streams:
// strips walked down a whole block (256 rows of 1 KiB for 256 channels) made as
// many streams as rows, which the prefetchers could not follow (statistics at
// 0.35x a copy's speed, FPN channels-last 2.6x a copy).  The float chains:
// 8-row partials, summed in float up to 64 rows (one chain of 64 left
// channels-last up to ~27 ulp off when a center 4 sigma from the mean makes
// every deviation large).  Op:
//   kSums; run[kSums]; Strip, the constants of one vector of channels: strip(c)
//   (the last vector may be partial); add(acc, strip, at, width): the vector
//   of `width` values from value `at` added into acc[kSums]; flush(channels).
template <class S, int kStripVectors, class Op>
GNCPU_INLINE void walk_channel_sums(int64_t rows, int64_t channels, Op op) {
    using L = typename S::Lanes;
    using V = typename L::V;
    constexpr int64_t W = L::width;
    constexpr int K = Op::kSums;
    constexpr int64_t kRowsPerPartial = 8;
    constexpr int64_t kRowsPerFlush = 64;
    constexpr int64_t kStrip = kStripVectors * W;
    static_assert(W <= kNhwcParamPad, "the running sums are padded for the widest vector");
    // Lanes past the last channel land in the padding.
    const int64_t padded = (channels + W - 1) / W * W;
    for (int j = 0; j < K; ++j)
        for (int64_t c = 0; c < padded; ++c) op.run[j][c] = typename L::T(0);
    const int64_t full_strips_end = channels / kStrip * kStrip;
    const auto add_to = [](typename L::T* p, V v) { L::store(p, L::add(L::load(p), v)); };
    for (int64_t r0 = 0; r0 < rows; r0 += kRowsPerFlush) {
        const int64_t r1 = r0 + kRowsPerFlush < rows ? r0 + kRowsPerFlush : rows;
        for (int64_t s0 = r0; s0 < r1; s0 += kRowsPerPartial) {
            const int64_t s1 = s0 + kRowsPerPartial < r1 ? s0 + kRowsPerPartial : r1;
            int64_t c = 0;
            for (; c < full_strips_end; c += kStrip) {
                typename Op::Strip k[kStripVectors];
                V acc[kStripVectors][K];
#pragma GCC unroll 4
                for (int v = 0; v < kStripVectors; ++v) {
                    k[v] = op.strip(c + v * W);
#pragma GCC unroll 4
                    for (int j = 0; j < K; ++j) acc[v][j] = L::zero();
                }
                for (int64_t r = s0; r < s1; ++r) {
#pragma GCC unroll 4
                    for (int v = 0; v < kStripVectors; ++v) op.add(acc[v], k[v], r * channels + c + v * W, W);
                }
#pragma GCC unroll 4
                for (int v = 0; v < kStripVectors; ++v) {
#pragma GCC unroll 4
                    for (int j = 0; j < K; ++j) add_to(op.run[j] + c + v * W, acc[v][j]);
                }
            }
            for (; c < channels; c += W) {  // strips one vector (or part of one) wide
                const int64_t width = channels - c < W ? channels - c : W;
                const typename Op::Strip k = op.strip(c);
                V acc[K];
#pragma GCC unroll 4
                for (int j = 0; j < K; ++j) acc[j] = L::zero();
                for (int64_t r = s0; r < s1; ++r) op.add(acc, k, r * channels + c, width);
#pragma GCC unroll 4
                for (int j = 0; j < K; ++j) add_to(op.run[j] + c, acc[j]);
            }
        }
        op.flush(channels);
    }
}
