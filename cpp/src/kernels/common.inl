// Helpers every loop uses: the horizontal sum and partial vectors.

// What a loop calls per vector or per row, and the walkers (walk.inl), are
// inlined by force: past GCC's growth limits for a file this size it left
// some as calls, and each call stalled the loop (centered_moments called
// rather than inlined made NCHW rows of 49 values 3x slower, lanes_sum and the
// walkers' per-vector operations the backward up to 1.9x).
#if defined(_MSC_VER)
#define GNCPU_INLINE __forceinline
#else
#define GNCPU_INLINE inline __attribute__((always_inline))
#endif

// Pairwise, in double: a short dependency chain (log2(width) adds), and a
// fixed order, so the result never depends on anything but the lanes.
template <class L>
GNCPU_INLINE double lanes_sum(typename L::V v) {
    alignas(64) typename L::T lanes[L::width];
    L::store(lanes, v);
    double partial[L::width];
    // Unrolled (GCC left these as loops: ~80 instructions a sum, a third of a
    // 1x32x8x8 call, which takes 64 of them).
#pragma GCC unroll 16
    for (int i = 0; i < L::width; ++i) partial[i] = static_cast<double>(lanes[i]);
#pragma GCC unroll 4
    for (int step = 1; step < L::width; step *= 2) {
#pragma GCC unroll 8
        for (int i = 0; i + step < L::width; i += 2 * step) partial[i] += partial[i + step];
    }
    return partial[0];
}

// Tails go through a full-width vector so that every element sees exactly the
// same lane arithmetic wherever a row happens to be cut.
template <class S>
GNCPU_INLINE typename S::Lanes::V load_partial(const typename S::Stored* p, int64_t n) {
    alignas(64) typename S::Stored buf[S::Lanes::width];
    for (int64_t i = 0; i < S::Lanes::width; ++i) buf[i] = i < n ? p[i] : typename S::Stored(0);
    return S::load(buf);
}

template <class S>
GNCPU_INLINE void store_partial(typename S::Stored* p, typename S::Lanes::V v, int64_t n) {
    alignas(64) typename S::Stored buf[S::Lanes::width];
    S::store(buf, v);
    for (int64_t i = 0; i < n; ++i) p[i] = buf[i];
}
