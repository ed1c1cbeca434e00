// The backward pass's loops, both layouts: per row (NCHW) or per channel
// (NHWC), the sums of dz and dz * (x - center), dz = dy * act'(z); then
//   dx = rstd * (weight * dz + slope * (x - center) + offset)
// with z = (x - center) * scale + shift recomputed from x (never stored);
// kernel_table.h has the parameters.
// The deviation x - center is formed first, as in the forward: far from zero
// (|mean| = 1e4 std) it is exact where x * slope + (offset - center * slope)
// would cancel away the digits that matter.

// dz of one vector, and its contribution to the two sums.
template <class L, int kAct>
struct GradLanes {
    using V = typename L::V;
    static V dz(V dev, V dy, V scale, V shift) {
        if constexpr (kAct == GNCPU_ACT_NONE) {
            return dy;
        } else {
            return activation_grad<L, kAct>(L::mul_add(dev, scale, shift), dy);
        }
    }
    // Parameters of one vector's lanes.
    struct Params {
        V weight, scale, shift, rstd, slope, offset;
    };
    static V dx(V dev, V dy, const Params& p) {
        const V inner = L::mul_add(p.slope, dev, p.offset);
        return L::mul(p.rstd, L::mul_add(p.weight, dz(dev, dy, p.scale, p.shift), inner));
    }
};

// NCHW, first sweep: out[r] = (sum dz, sum dz * (x - center), sum (x - center))
// over row r.
// Four chains per sum (as centered_moments); a row's last values go through
// one partial vector whose unused lanes are zeroed after dz.
template <class S, int kAct>
void nchw_grad_row_sums(const typename S::Stored* x, const typename S::Stored* dy, int64_t rows,
                        int64_t row_len, const NchwGradParams<typename S::Lanes::T>& params,
                        GradSums* out) {
    using L = typename S::Lanes;
    using V = typename L::V;
    using G = GradLanes<L, kAct>;
    constexpr int64_t W = L::width;
    const V center_v = L::set1(params.center);
    const typename L::T* scale = params.scale;
    const typename L::T* shift = params.shift;
    for (int64_t r = 0; r < rows; ++r) {
        const typename S::Stored* xr = x + r * row_len;
        const typename S::Stored* dyr = dy + r * row_len;
        const V sc = L::set1(kAct == GNCPU_ACT_NONE ? typename L::T(0) : scale[r]);
        const V sh = L::set1(kAct == GNCPU_ACT_NONE ? typename L::T(0) : shift[r]);
        V s0 = L::zero(), s1 = L::zero(), s2 = L::zero(), s3 = L::zero();
        V p0 = L::zero(), p1 = L::zero(), p2 = L::zero(), p3 = L::zero();
        V e = L::zero();  // sum of deviations: one chain (its adds are off the critical path)
        int64_t i = 0;
        for (; i + 4 * W <= row_len; i += 4 * W) {
            const V d0 = L::sub(S::load(xr + i), center_v);
            const V d1 = L::sub(S::load(xr + i + W), center_v);
            const V d2 = L::sub(S::load(xr + i + 2 * W), center_v);
            const V d3 = L::sub(S::load(xr + i + 3 * W), center_v);
            const V g0 = G::dz(d0, S::load(dyr + i), sc, sh);
            const V g1 = G::dz(d1, S::load(dyr + i + W), sc, sh);
            const V g2 = G::dz(d2, S::load(dyr + i + 2 * W), sc, sh);
            const V g3 = G::dz(d3, S::load(dyr + i + 3 * W), sc, sh);
            s0 = L::add(s0, g0), s1 = L::add(s1, g1), s2 = L::add(s2, g2), s3 = L::add(s3, g3);
            p0 = L::mul_add(g0, d0, p0), p1 = L::mul_add(g1, d1, p1);
            p2 = L::mul_add(g2, d2, p2), p3 = L::mul_add(g3, d3, p3);
            e = L::add(e, L::add(L::add(d0, d1), L::add(d2, d3)));
        }
        for (; i + W <= row_len; i += W) {
            const V d = L::sub(S::load(xr + i), center_v);
            const V g = G::dz(d, S::load(dyr + i), sc, sh);
            s0 = L::add(s0, g);
            p0 = L::mul_add(g, d, p0);
            e = L::add(e, d);
        }
        if (i < row_len) {
            const int n = static_cast<int>(row_len - i);
            const V d = L::first_lanes(n, L::sub(load_partial<S>(xr + i, n), center_v), L::zero());
            const V g = L::first_lanes(n, G::dz(d, load_partial<S>(dyr + i, n), sc, sh), L::zero());
            s1 = L::add(s1, g);
            p1 = L::mul_add(g, d, p1);
            e = L::add(e, d);
        }
        out[r].dz = lanes_sum<L>(L::add(L::add(s0, s1), L::add(s2, s3)));
        out[r].dz_dev = lanes_sum<L>(L::add(L::add(p0, p1), L::add(p2, p3)));
        out[r].dev = lanes_sum<L>(e);
    }
}

// NCHW, second sweep: dx over rows * row_len values, walked by walk_rows
// (walk.inl) as the forward's normalisation is.
template <class S, int kAct>
struct GradRowsOp {
    using L = typename S::Lanes;
    using V = typename L::V;
    using Params = typename GradLanes<L, kAct>::Params;
    const typename S::Stored* x;
    const typename S::Stored* dy;
    NchwGradParams<typename L::T> p;
    V center;

    GNCPU_INLINE Params params(int64_t r) const {
        const bool act = kAct != GNCPU_ACT_NONE;
        return {L::set1(p.weight[r]), act ? L::set1(p.scale[r]) : L::zero(),
                act ? L::set1(p.shift[r]) : L::zero(), L::set1(p.rstd), L::set1(p.slope),
                L::set1(p.offset)};
    }
    static GNCPU_INLINE Params mixed(int k, const Params& a, const Params& b) {
        return {L::first_lanes(k, a.weight, b.weight), L::first_lanes(k, a.scale, b.scale),
                L::first_lanes(k, a.shift, b.shift), a.rstd, a.slope, a.offset};
    }
    GNCPU_INLINE V at(int64_t i, const Params& q) const {
        return GradLanes<L, kAct>::dx(L::sub(S::load(x + i), center), S::load(dy + i), q);
    }
    GNCPU_INLINE V at_partial(int64_t i, int64_t n, const Params& q) const {
        return GradLanes<L, kAct>::dx(L::sub(load_partial<S>(x + i, n), center),
                                      load_partial<S>(dy + i, n), q);
    }
};

template <class S, bool kStream, int kAct>
void nchw_grad_rows(const typename S::Stored* x, const typename S::Stored* dy,
                    typename S::Stored* dx, int64_t rows, int64_t row_len,
                    const NchwGradParams<typename S::Lanes::T>& params) {
    walk_rows<S, kStream>(dx, rows, row_len,
                          GradRowsOp<S, kAct>{x, dy, params, S::Lanes::set1(params.center)});
}

// NHWC, first sweep: per channel of `rows` rows, the sums of dz,
// dz * (x - center[c]) and x - center[c], walked by walk_channel_sums
// (walk.inl; run_dz, run_dz_dev and run_dev are its float running sums).
template <class S, int kAct>
struct GradChannelSumsOp {
    using L = typename S::Lanes;
    using T = typename L::T;
    using V = typename L::V;
    struct Strip {
        V center, scale, shift;
    };
    static constexpr int kSums = 3;  // dz, dz * dev, dev
    const typename S::Stored* x;
    const typename S::Stored* dy;
    NhwcGradParams<T> p;
    T* run[kSums];
    GradSums* out;

    GNCPU_INLINE Strip strip(int64_t c) const {  // (the parameters are padded past the last channel)
        const bool act = kAct != GNCPU_ACT_NONE;
        return {L::load(p.center + c), act ? L::load(p.scale + c) : L::zero(),
                act ? L::load(p.shift + c) : L::zero()};
    }
    GNCPU_INLINE void add(V* acc, const Strip& k, int64_t at, int64_t width) const {
        const bool full = width == L::width;
        const V d = L::sub(full ? S::load(x + at) : load_partial<S>(x + at, width), k.center);
        const V g = GradLanes<L, kAct>::dz(d, full ? S::load(dy + at) : load_partial<S>(dy + at, width),
                                           k.scale, k.shift);
        acc[0] = L::add(acc[0], g);
        acc[1] = L::mul_add(g, d, acc[1]);
        acc[2] = L::add(acc[2], d);
    }
    void flush(int64_t channels) const {
        for (int64_t c = 0; c < channels; ++c) {
            out[c].dz += static_cast<double>(run[0][c]);
            out[c].dz_dev += static_cast<double>(run[1][c]);
            out[c].dev += static_cast<double>(run[2][c]);
            run[0][c] = T(0), run[1][c] = T(0), run[2][c] = T(0);
        }
    }
};

template <class S, int kAct>
void nhwc_grad_channel_sums(const typename S::Stored* x, const typename S::Stored* dy,
                            int64_t rows, int64_t channels,
                            const NhwcGradParams<typename S::Lanes::T>& params, GradSums* out,
                            typename S::Lanes::T* run_dz, typename S::Lanes::T* run_dz_dev,
                            typename S::Lanes::T* run_dev) {
    for (int64_t c = 0; c < channels; ++c) out[c] = GradSums{0.0, 0.0, 0.0};
    walk_channel_sums<S, 2>(rows, channels,
                            GradChannelSumsOp<S, kAct>{x, dy, params, {run_dz, run_dz_dev, run_dev}, out});
}

// NHWC, second sweep: dx over rows * channels values, walked by
// walk_channels (walk.inl) as the forward's normalisation is.
template <class S, int kAct>
struct GradChannelsOp {
    using L = typename S::Lanes;
    using V = typename L::V;
    const typename S::Stored* x;
    const typename S::Stored* dy;
    NhwcGradParams<typename L::T> p;

    GNCPU_INLINE V lanes(V xv, V dyv, int64_t c) const {
        const bool act = kAct != GNCPU_ACT_NONE;
        const typename GradLanes<L, kAct>::Params q{
            L::load(p.weight + c), act ? L::load(p.scale + c) : L::zero(),
            act ? L::load(p.shift + c) : L::zero(), L::load(p.rstd + c), L::load(p.slope + c),
            L::load(p.offset + c)};
        return GradLanes<L, kAct>::dx(L::sub(xv, L::load(p.center + c)), dyv, q);
    }
    GNCPU_INLINE V at(int64_t e, int64_t c) const { return lanes(S::load(x + e), S::load(dy + e), c); }
    GNCPU_INLINE V at_partial(int64_t e, int64_t n, int64_t c) const {
        return lanes(load_partial<S>(x + e, n), load_partial<S>(dy + e, n), c);
    }
};

template <class S, bool kStream, int kAct>
void nhwc_grad_run(const typename S::Stored* x, const typename S::Stored* dy,
                   typename S::Stored* dx, int64_t rows, int64_t channels,
                   const NhwcGradParams<typename S::Lanes::T>& p) {
    walk_channels<S, kStream>(dx, rows, channels, GradChannelsOp<S, kAct>{x, dy, p});
}
