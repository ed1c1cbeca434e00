// The exact path, in double, for the rare groups float32 lanes cannot
// handle: deviations past ~1.8e19 square past float's range, deviations
// below ~1e-19 square into its subnormals (which matters only when eps is as
// tiny), and scales or deviations that leave float's range when normalising.
// The layouts decide when (moments.h); ordinary data never comes here.

// Moments of x[i * stride], i < n: two passes in double.
template <class S>
BlockMoments exact_moments(const typename S::Stored* x, int64_t n, int64_t stride) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(S::to_compute(x[i * stride]));
    const double mean = sum / static_cast<double>(n);
    double m2 = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        const double d = static_cast<double>(S::to_compute(x[i * stride])) - mean;
        m2 += d * d;
    }
    return BlockMoments{mean, m2};
}

template <class S>
BlockMoments exact_block_moments(const typename S::Stored* x, int64_t n) {
    return exact_moments<S>(x, n, 1);
}

// Per-channel moments of `rows` rows of `channels` values.
template <class S>
void exact_channel_moments(const typename S::Stored* x, int64_t rows, int64_t channels,
                           double* mean, double* m2) {
    for (int64_t c = 0; c < channels; ++c) {
        const BlockMoments m = exact_moments<S>(x + c, rows, channels);
        mean[c] = m.mean;
        m2[c] = m.m2;
    }
}

// A double rounded to the lanes' type, out-of-range values to +-inf (a plain
// conversion of an out-of-range double to float is undefined behaviour).
template <class T>
inline T to_lane(double v) {
    if (sizeof(T) == sizeof(double)) return static_cast<T>(v);
    if (v > 3.4028234663852886e38) return static_cast<T>(HUGE_VALF);
    if (v < -3.4028234663852886e38) return static_cast<T>(-HUGE_VALF);
    return static_cast<T>(v);  // NaN stays NaN
}

// y[i] = act(value(i)) for i < n, computed in double, rounded once to the
// compute type and stored through the storage policy (a vector at a time, so
// 16-bit formats round as everywhere else).  Each chunk is read before it is
// written: y may be x.
template <class S, int kAct, class Value>
void exact_store(typename S::Stored* y, int64_t n, const Value& value) {
    using L = typename S::Lanes;
    using T = typename L::T;
    alignas(64) T lanes[L::width];
    for (int64_t i = 0; i < n; i += L::width) {
        const int64_t len = n - i < L::width ? n - i : L::width;
        for (int64_t k = 0; k < L::width; ++k)
            lanes[k] = k < len ? to_lane<T>(Activation<kAct>::scalar(value(i + k))) : T(0);
        store_partial<S>(y + i, L::load(lanes), len);
    }
}

// NCHW rows: y = act((x - center) * scale[r] + offset[r]), in double.
template <class S, int kAct>
void exact_normalize_rows(const typename S::Stored* x, typename S::Stored* y, int64_t rows,
                          int64_t row_len, double center, const double* scale,
                          const double* offset) {
    for (int64_t r = 0; r < rows; ++r) {
        const typename S::Stored* xr = x + r * row_len;
        exact_store<S, kAct>(y + r * row_len, row_len, [&](int64_t i) {
            return (static_cast<double>(S::to_compute(xr[i])) - center) * scale[r] + offset[r];
        });
    }
}

// NHWC rows: y = act((x - center[c]) * scale[c] + offset[c]), in double.
template <class S, int kAct>
void exact_normalize_nhwc(const typename S::Stored* x, typename S::Stored* y, int64_t rows,
                          int64_t channels, const double* center, const double* scale,
                          const double* offset) {
    for (int64_t r = 0; r < rows; ++r) {
        const typename S::Stored* xr = x + r * channels;
        exact_store<S, kAct>(y + r * channels, channels, [&](int64_t c) {
            return (static_cast<double>(S::to_compute(xr[c])) - center[c]) * scale[c] + offset[c];
        });
    }
}

// The backward pass in double (see KernelsFor::exact_grad).
template <class S, int kAct>
void exact_grad(const typename S::Stored* x, const typename S::Stored* dy, typename S::Stored* dx,
                int64_t outer, int64_t inner, bool channel_is_outer, const ExactGradParams& p,
                GradSums* sums) {
    const auto dz_of = [&](double dev, double g, int64_t c) {
        if (kAct == GNCPU_ACT_NONE) return g;
        const double z = dev * p.scale[c] + p.shift[c];
        if (kAct == GNCPU_ACT_RELU) return z <= 0.0 ? 0.0 : g;  // a select, as the lanes
        return g * Activation<kAct>::grad_scalar(z);
    };
    for (int64_t o = 0; o < outer; ++o) {
        const typename S::Stored* xo = x + o * inner;
        const typename S::Stored* dyo = dy + o * inner;
        if (dx == nullptr) {
            for (int64_t i = 0; i < inner; ++i) {
                const int64_t c = channel_is_outer ? o : i;
                const double dev = static_cast<double>(S::to_compute(xo[i])) - p.center[c];
                const double dz = dz_of(dev, static_cast<double>(S::to_compute(dyo[i])), c);
                sums[c].dz += dz;
                sums[c].dz_dev += dz * dev;
                sums[c].dev += dev;
            }
            continue;
        }
        exact_store<S, GNCPU_ACT_NONE>(dx + o * inner, inner, [&](int64_t i) {
            const int64_t c = channel_is_outer ? o : i;
            const double dev = static_cast<double>(S::to_compute(xo[i])) - p.center[c];
            const double dz = dz_of(dev, static_cast<double>(S::to_compute(dyo[i])), c);
            return p.rstd[c] * (p.weight[c] * dz + p.slope[c] * dev + p.offset[c]);
        });
    }
}
