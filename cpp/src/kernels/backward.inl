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

// NCHW, second sweep: dx over rows * row_len values walked as one run, with
// the same alignment and row-crossing rules as normalize_rows (nchw.inl):
// every store but the first is aligned, and a vector that crosses into the
// next row takes that row's parameters in its last lanes.
template <class S, bool kStream, int kAct>
void nchw_grad_rows(const typename S::Stored* x, const typename S::Stored* dy,
                    typename S::Stored* dx, int64_t rows, int64_t row_len,
                    const NchwGradParams<typename S::Lanes::T>& params) {
    using L = typename S::Lanes;
    using Stored = typename S::Stored;
    using V = typename L::V;
    using G = GradLanes<L, kAct>;
    using P = typename G::Params;
    constexpr int64_t W = L::width;
    constexpr uintptr_t kAlign = sizeof(Stored) * W;
    const V center_v = L::set1(params.center);
    const auto row_params = [&](int64_t r) {
        const bool act = kAct != GNCPU_ACT_NONE;
        return P{L::set1(params.weight[r]), act ? L::set1(params.scale[r]) : L::zero(),
                 act ? L::set1(params.shift[r]) : L::zero(), L::set1(params.rstd),
                 L::set1(params.slope), L::set1(params.offset)};
    };
    const auto value = [&](const V& xv, const V& dyv, const P& p) {
        return G::dx(L::sub(xv, center_v), dyv, p);
    };
    if (row_len < W) {  // one row at a time, each with its own partial vector
        for (int64_t r = 0; r < rows; ++r) {
            const int64_t o = r * row_len;
            store_partial<S>(dx + o, value(load_partial<S>(x + o, row_len),
                                           load_partial<S>(dy + o, row_len), row_params(r)),
                             row_len);
        }
        return;
    }
    const auto put = [](Stored* p, V v) {
        if (kStream) S::stream(p, v); else S::store(p, v);
    };
    const int64_t total = rows * row_len;
    int64_t i = 0, r = 0, row_end = row_len;
    P p = row_params(0);
    const uintptr_t misalign = reinterpret_cast<uintptr_t>(dx) % kAlign;
    if (misalign != 0 && misalign % sizeof(Stored) == 0) {  // head < W <= row_len: in row 0
        const int64_t head = static_cast<int64_t>((kAlign - misalign) / sizeof(Stored));
        store_partial<S>(dx, value(load_partial<S>(x, head), load_partial<S>(dy, head), p), head);
        i = head;
    }
    if (kStream && reinterpret_cast<uintptr_t>(dx + i) % kAlign != 0) {
        nchw_grad_rows<S, false, kAct>(x, dy, dx, rows, row_len, params);
        return;
    }
    while (i + W <= total) {
        for (; i + 2 * W <= row_end; i += 2 * W) {
            const V x0 = S::load(x + i), x1 = S::load(x + i + W);
            const V y0 = S::load(dy + i), y1 = S::load(dy + i + W);
            put(dx + i, value(x0, y0, p));
            put(dx + i + W, value(x1, y1, p));
        }
        for (; i + W <= row_end; i += W) put(dx + i, value(S::load(x + i), S::load(dy + i), p));
        if (row_end == total) break;
        const P next = row_params(r + 1);
        if (i < row_end && i + W <= total) {
            const int k = static_cast<int>(row_end - i);
            const P mixed{L::first_lanes(k, p.weight, next.weight), L::first_lanes(k, p.scale, next.scale),
                          L::first_lanes(k, p.shift, next.shift), p.rstd, p.slope, p.offset};
            put(dx + i, value(S::load(x + i), S::load(dy + i), mixed));
            i += W;
        }
        ++r;
        row_end += row_len;
        p = next;
    }
    if (i < total) {  // fewer than W values left, all in the last row
        store_partial<S>(dx + i, value(load_partial<S>(x + i, total - i),
                                       load_partial<S>(dy + i, total - i), p),
                         total - i);
    }
    if (kStream) fence_streams();
}

// NHWC, first sweep: per channel of `rows` rows, the sums of dz,
// dz * (x - center[c]) and x - center[c], walked in bands of rows as nhwc_channel_moments
// (nhwc.inl), whose comments explain the bands and the float running sums.
template <class S, int kAct>
void nhwc_grad_channel_sums(const typename S::Stored* x, const typename S::Stored* dy,
                            int64_t rows, int64_t channels,
                            const NhwcGradParams<typename S::Lanes::T>& params, GradSums* out,
                            typename S::Lanes::T* run_dz, typename S::Lanes::T* run_dz_dev,
                            typename S::Lanes::T* run_dev) {
    using L = typename S::Lanes;
    using T = typename L::T;
    using V = typename L::V;
    using Stored = typename S::Stored;
    using G = GradLanes<L, kAct>;
    constexpr int64_t W = L::width;
    constexpr int64_t kRowsPerPartial = 8;
    constexpr int64_t kRowsPerFlush = 64;
    static_assert(W <= kNhwcParamPad, "the running sums are padded for the widest vector");
    const T* center = params.center;
    const T* scale = params.scale;
    const T* shift = params.shift;
    const int64_t padded = (channels + W - 1) / W * W;
    for (int64_t c = 0; c < channels; ++c) out[c] = GradSums{0.0, 0.0, 0.0};
    for (int64_t c = 0; c < padded; ++c) run_dz[c] = T(0), run_dz_dev[c] = T(0), run_dev[c] = T(0);
    const int64_t full_strips_end = channels / (2 * W) * (2 * W);
    const auto add_to = [](T* p, V v) { L::store(p, L::add(L::load(p), v)); };
    const auto param = [](const T* p, int64_t c) {
        return kAct == GNCPU_ACT_NONE ? L::zero() : L::load(p + c);
    };
    for (int64_t r0 = 0; r0 < rows; r0 += kRowsPerFlush) {
        const int64_t r1 = r0 + kRowsPerFlush < rows ? r0 + kRowsPerFlush : rows;
        for (int64_t s0 = r0; s0 < r1; s0 += kRowsPerPartial) {
            const int64_t s1 = s0 + kRowsPerPartial < r1 ? s0 + kRowsPerPartial : r1;
            int64_t c = 0;
            for (; c < full_strips_end; c += 2 * W) {  // strips two vectors wide
                const V k0 = L::load(center + c), k1 = L::load(center + c + W);
                const V sc0 = param(scale, c), sc1 = param(scale, c + W);
                const V sh0 = param(shift, c), sh1 = param(shift, c + W);
                V s0v = L::zero(), s1v = L::zero(), p0 = L::zero(), p1 = L::zero();
                V e0 = L::zero(), e1 = L::zero();
                for (int64_t r = s0; r < s1; ++r) {
                    const Stored* xr = x + r * channels + c;
                    const Stored* yr = dy + r * channels + c;
                    const V d0 = L::sub(S::load(xr), k0), d1 = L::sub(S::load(xr + W), k1);
                    const V g0 = G::dz(d0, S::load(yr), sc0, sh0);
                    const V g1 = G::dz(d1, S::load(yr + W), sc1, sh1);
                    s0v = L::add(s0v, g0), s1v = L::add(s1v, g1);
                    p0 = L::mul_add(g0, d0, p0), p1 = L::mul_add(g1, d1, p1);
                    e0 = L::add(e0, d0), e1 = L::add(e1, d1);
                }
                add_to(run_dz + c, s0v), add_to(run_dz + c + W, s1v);
                add_to(run_dz_dev + c, p0), add_to(run_dz_dev + c + W, p1);
                add_to(run_dev + c, e0), add_to(run_dev + c + W, e1);
            }
            for (; c < channels; c += W) {  // strips one vector (or part of one) wide
                const int64_t width = channels - c < W ? channels - c : W;
                const V k = L::load(center + c), sc = param(scale, c), sh = param(shift, c);
                V sv = L::zero(), pv = L::zero(), ev = L::zero();
                for (int64_t r = s0; r < s1; ++r) {
                    const Stored* xr = x + r * channels + c;
                    const Stored* yr = dy + r * channels + c;
                    const V d = L::sub(width == W ? S::load(xr) : load_partial<S>(xr, width), k);
                    const V g = G::dz(d, width == W ? S::load(yr) : load_partial<S>(yr, width), sc, sh);
                    sv = L::add(sv, g);
                    pv = L::mul_add(g, d, pv);
                    ev = L::add(ev, d);
                }
                add_to(run_dz + c, sv);  // (lanes past `channels` land in the padding)
                add_to(run_dz_dev + c, pv);
                add_to(run_dev + c, ev);
            }
        }
        for (int64_t c = 0; c < channels; ++c) {
            out[c].dz += static_cast<double>(run_dz[c]);
            out[c].dz_dev += static_cast<double>(run_dz_dev[c]);
            out[c].dev += static_cast<double>(run_dev[c]);
            run_dz[c] = T(0);
            run_dz_dev[c] = T(0);
            run_dev[c] = T(0);
        }
    }
}

// NHWC, second sweep: dx over rows * channels values walked as one run with
// the channel index wrapping (as nhwc_normalize_run, nhwc.inl).
template <class S, int kAct>
inline typename S::Lanes::V nhwc_grad_lanes(typename S::Lanes::V xv, typename S::Lanes::V dyv,
                                            const NhwcGradParams<typename S::Lanes::T>& p,
                                            int64_t c) {
    using L = typename S::Lanes;
    using G = GradLanes<L, kAct>;
    const bool act = kAct != GNCPU_ACT_NONE;
    const typename G::Params lanes{L::load(p.weight + c), act ? L::load(p.scale + c) : L::zero(),
                                   act ? L::load(p.shift + c) : L::zero(), L::load(p.rstd + c),
                                   L::load(p.slope + c), L::load(p.offset + c)};
    return G::dx(L::sub(xv, L::load(p.center + c)), dyv, lanes);
}

template <class S, int kAct, bool kStream>
void nhwc_grad_run_from(const typename S::Stored* x, const typename S::Stored* dy,
                        typename S::Stored* dx, int64_t e, int64_t total, int64_t c,
                        int64_t channels, const NhwcGradParams<typename S::Lanes::T>& p) {
    using L = typename S::Lanes;
    using V = typename L::V;
    constexpr int64_t W = L::width;
    const auto put = [](typename S::Stored* q, V v) {
        if (kStream) S::stream(q, v); else S::store(q, v);
    };
    const auto next_channel = [channels](int64_t ch) {
        ch += W;
        while (ch >= channels) ch -= channels;
        return ch;
    };
    // The parameters' pointers as locals: read through p, GCC reloads each
    // from memory after every store to dx (it cannot rule out aliasing).
    const NhwcGradParams<typename L::T> q = p;
    for (; e + W <= total; e += W, c = next_channel(c))
        put(dx + e, nhwc_grad_lanes<S, kAct>(S::load(x + e), S::load(dy + e), q, c));
    if (e < total) {
        store_partial<S>(dx + e, nhwc_grad_lanes<S, kAct>(load_partial<S>(x + e, total - e),
                                                          load_partial<S>(dy + e, total - e), p, c),
                         total - e);
    }
}

template <class S, bool kStream, int kAct>
void nhwc_grad_run(const typename S::Stored* x, const typename S::Stored* dy,
                   typename S::Stored* dx, int64_t rows, int64_t channels,
                   const NhwcGradParams<typename S::Lanes::T>& p) {
    using L = typename S::Lanes;
    using Stored = typename S::Stored;
    constexpr int64_t W = L::width;
    constexpr uintptr_t kAlign = sizeof(Stored) * W;
    const int64_t total = rows * channels;
    int64_t e = 0, c = 0;
    const uintptr_t misalign = reinterpret_cast<uintptr_t>(dx) % kAlign;
    if (misalign != 0 && misalign % sizeof(Stored) == 0) {  // a partial vector up to alignment
        int64_t head = static_cast<int64_t>((kAlign - misalign) / sizeof(Stored));
        if (head > total) head = total;
        store_partial<S>(dx, nhwc_grad_lanes<S, kAct>(load_partial<S>(x, head),
                                                      load_partial<S>(dy, head), p, 0),
                         head);
        e = head;
        c = head % channels;
    }
    if (kStream && reinterpret_cast<uintptr_t>(dx + e) % kAlign == 0) {
        nhwc_grad_run_from<S, kAct, true>(x, dy, dx, e, total, c, channels, p);
        fence_streams();
    } else {
        nhwc_grad_run_from<S, kAct, false>(x, dy, dx, e, total, c, channels, p);
    }
}
