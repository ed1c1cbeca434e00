// Activations fused into the normalisation: one specialisation of Activation
// per gncpu_activation value (at -inf each returns its limit, 0, where the
// formulas read -inf * 0), each with
//   lanes<L>(v)  float32 lanes (vectorised exp/erf, see exp_neg_f32), and
//   scalar(v)    float64, through libm per lane: exact to double rounding, and
//                exp/erf stay real library functions (no inline code shared
//                between ISAs);
// and for the backward pass
//   grad_lanes<L>(z, dy)  dy * act'(z) in float32 lanes, and
//   grad_scalar(z)        act'(z) in float64.
// At +-inf the derivatives return their limits (1 and 0) where the formulas
// read inf * 0; ReLU's is 0 at z <= 0 and 1 elsewhere, NaN included (as
// PyTorch's threshold_backward).

// exp(-x) for float32 lanes and x >= -88.37626 or NaN (the callers have that
// bound already; the activations need the negative exponent, so the sign is
// folded into the constants).  -x = n*ln2 + r, |r| <= ln2/2, exp(r) by a
// degree-5 polynomial in Horner form (our minimax fit for relative error,
// 1.05e-7; 1.3 ulp in float32 with FMA), times 2^n.  The fused activations are
// compute-bound, each instruction here about 5% of SiLU's time, hence the
// short polynomial and the single clamp (the division after this is not the
// bottleneck: it runs in its own unit, and on Zen 4 an estimate refined by a
// Newton step measured slower).  ln2 is split in two (Cody and Waite) so that
// n * ln2 is exact without FMA (the scalar kernel has none): in one float, r
// would be off by up to 70 ulp there.  Rounding to the integer n is adding
// 1.5 * 2^23 (+127, the exponent bias), which leaves n + 127 in the low
// mantissa bits for pow2_biased.  The clamp takes the constant first so that a
// NaN passes through; with the caller's bound it keeps n in [-126, 127] and the
// result finite, below 2^128.  All of this under round-to-nearest, the default:
// the kernels run in the caller's MXCSR/FPCR modes, and under a directed
// rounding mode |r| reaches ln2 (relative error up to 2e-4) and n 128.
template <class L>
inline typename L::V exp_neg_f32(typename L::V x) {
    using V = typename L::V;
    const V shifter = L::set1(12582912.0f + 127.0f);  // 0x1.8p23 + 127
    x = L::min(L::set1(87.33654f), x);
    const V t = L::mul_add(x, L::set1(-1.44269504088896341f), shifter);
    const V n = L::sub(t, shifter);
    V r = L::neg_mul_sub(n, L::set1(0.693359375f), x);  // -x - n * ln2 (high part)
    r = L::mul_add(n, L::set1(2.12194440e-4f), r);      // ... - n * ln2 (low part)
    const V one = L::set1(1.0f);
    V p = L::set1(8.31250381e-3f);
    p = L::mul_add(p, r, L::set1(4.18900959e-2f));
    p = L::mul_add(p, r, L::set1(1.66671142e-1f));
    p = L::mul_add(p, r, L::set1(4.99992311e-1f));
    p = L::mul_add(p, r, one);
    p = L::mul_add(p, r, one);
    return L::mul(p, L::pow2_biased(t));
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
    const V e = exp_neg_f32<L>(L::mul(a, a));
    return L::sub(one, L::mul(L::mul(p, t), e));
}

template <int kActivation>
struct Activation;

template <>
struct Activation<GNCPU_ACT_NONE> {
    template <class L>
    static typename L::V lanes(typename L::V v) { return v; }
    static double scalar(double v) { return v; }
    static double grad_scalar(double) { return 1.0; }
};

template <>
struct Activation<GNCPU_ACT_SILU> {  // v * sigmoid(v) = v / (1 + exp(-v))
    // v is clamped at -88.37626 (exp_neg_f32's bound) for both the numerator
    // and the exponent: below it the result is under 1e-36 in magnitude
    // either way, where v itself would give -3e38 / 2.5e38 = -1.2 for
    // v = -3e38 (NaN passes the max).
    template <class L>
    static typename L::V lanes(typename L::V v) {
        const typename L::V bounded = L::max(L::set1(-88.37626f), v);
        return L::div(bounded, L::add(L::set1(1.0f), exp_neg_f32<L>(bounded)));
    }
    static double scalar(double v) { return v == -INFINITY ? -0.0 : v / (1.0 + exp(-v)); }

    // s (1 + z (1 - s)), s = sigmoid(z).  z is clamped to +-88.37626 in both
    // places: beyond it s is 1 (or below 1e-38) and the product its limit,
    // where z itself would give inf * 0 (or -3e38 * 4e-39 = -1.2).
    template <class L>
    static typename L::V grad_lanes(typename L::V z, typename L::V dy) {
        using V = typename L::V;
        const V bounded = L::min(L::set1(88.37626f), L::max(L::set1(-88.37626f), z));
        const V one = L::set1(1.0f);
        const V s = L::div(one, L::add(one, exp_neg_f32<L>(bounded)));
        return L::mul(dy, L::mul(s, L::mul_add(bounded, L::sub(one, s), one)));
    }
    static double grad_scalar(double z) {
        if (isinf(z)) return z > 0.0 ? 1.0 : 0.0;
        const double s = 1.0 / (1.0 + exp(-z));
        return s * (1.0 + z * (1.0 - s));
    }
};

template <>
struct Activation<GNCPU_ACT_RELU> {
    template <class L>
    static typename L::V lanes(typename L::V v) { return L::max(L::zero(), v); }
    static double scalar(double v) { return v < 0.0 ? 0.0 : v; }  // NaN stays NaN

    template <class L>
    static typename L::V grad_lanes(typename L::V z, typename L::V dy) {
        return L::zero_where_nonpositive(z, dy);
    }
    static double grad_scalar(double z) { return z <= 0.0 ? 0.0 : 1.0; }
};

template <>
struct Activation<GNCPU_ACT_GELU> {  // erf form, as PyTorch's default
    // 0.5 * v * (1 + erf(v / sqrt 2)) = 0.5 v + 0.5 |v| erf(|v| / sqrt 2): halved
    // first, so that v + |v| cannot overflow near the float32 maximum.
    // -inf goes in as the most negative float, so the limit 0 comes out, not
    // -inf + inf (NaN passes the max).
    template <class L>
    static typename L::V lanes(typename L::V v) {
        v = L::max(L::set1(-3.40282347e38f), v);
        const typename L::V magnitude = L::max(v, L::sub(L::zero(), v));
        const typename L::V e = erf_nonnegative_f32<L>(L::mul(magnitude, L::set1(0.70710678f)));
        const typename L::V half = L::set1(0.5f);
        return L::mul_add(L::mul(half, magnitude), e, L::mul(half, v));
    }
    static double scalar(double v) {
        return v == -INFINITY ? -0.0 : 0.5 * v * (1.0 + erf(v * 0.70710678118654752440));
    }

    // Phi(z) + z phi(z).  z is clamped to +-14 (Phi is then 0 or 1 in float32,
    // z phi(z) below 1e-37); Phi from erf of |z|: (1 - e) / 2 is the lower
    // tail, plus e where z > 0.
    template <class L>
    static typename L::V grad_lanes(typename L::V z, typename L::V dy) {
        using V = typename L::V;
        const V bounded = L::min(L::set1(14.0f), L::max(L::set1(-14.0f), z));
        const V magnitude = L::max(bounded, L::sub(L::zero(), bounded));
        const V e = erf_nonnegative_f32<L>(L::mul(magnitude, L::set1(0.70710678f)));
        const V half = L::set1(0.5f);
        const V cdf = L::add(L::sub(half, L::mul(half, e)), L::zero_where_nonpositive(z, e));
        const V pdf = L::mul(L::set1(0.39894228f),
                             exp_neg_f32<L>(L::mul(half, L::mul(bounded, bounded))));
        return L::mul(dy, L::mul_add(bounded, pdf, cdf));
    }
    static double grad_scalar(double z) {
        if (isinf(z)) return z > 0.0 ? 1.0 : 0.0;
        return 0.5 * (1.0 + erf(z * 0.70710678118654752440)) +
               z * exp(-0.5 * z * z) * 0.39894228040143267794;
    }
};

template <class L, int kAct>
inline typename L::V activate(typename L::V v) {
    using T = typename L::T;
    if constexpr (kAct == GNCPU_ACT_NONE) {
        return v;
    } else if constexpr (sizeof(T) == 4) {
        return Activation<kAct>::template lanes<L>(v);
    } else {
        alignas(64) T lanes[L::width];
        L::store(lanes, v);
        for (int i = 0; i < L::width; ++i) lanes[i] = static_cast<T>(Activation<kAct>::scalar(lanes[i]));
        return L::load(lanes);
    }
}

// dy * act'(z): dy itself without an activation.
template <class L, int kAct>
inline typename L::V activation_grad(typename L::V z, typename L::V dy) {
    using T = typename L::T;
    if constexpr (kAct == GNCPU_ACT_NONE) {
        return dy;
    } else if constexpr (sizeof(T) == 4) {
        return Activation<kAct>::template grad_lanes<L>(z, dy);
    } else {
        alignas(64) T zs[L::width], dys[L::width];
        L::store(zs, z);
        L::store(dys, dy);
        for (int i = 0; i < L::width; ++i) {
            // (ReLU: a select, so that dy = inf or NaN where z <= 0 gives 0.)
            dys[i] = kAct == GNCPU_ACT_RELU ? (zs[i] <= 0.0 ? T(0) : dys[i])
                                            : static_cast<T>(dys[i] * Activation<kAct>::grad_scalar(zs[i]));
        }
        return L::load(dys);
    }
}

template <class L, int kAct>
inline typename L::V normalize_lanes(typename L::V v, typename L::V center,
                                     typename L::V scale, typename L::V offset) {
    return activate<L, kAct>(L::mul_add(L::sub(v, center), scale, offset));
}
