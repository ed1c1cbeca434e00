// Statistics as data (group_norm_stats): the moments in double lanes, so
// that statistics merged from the pieces of a tensor equal the whole
// tensor's to double rounding (~1e-15), where float lanes differ by ~1e-8 of
// the spread with each cut of the blocks.  Each vector of float lanes (the
// 16-bit formats are widened to float first) becomes two vectors of double
// lanes (F64::widen); a deviation from the center and its square are then
// exact or nearly so, and the sums are double.  float64 input is loaded as it
// is.  Only the statistics-only pass runs these: the forward keeps float lanes.

// The 2 * F64::width values from p (n of them, zeros past n, when partial) as
// two vectors of double lanes.
template <class S>
GNCPU_INLINE void load_doubles(const typename S::Stored* p, F64::V& lo, F64::V& hi) {
    if constexpr (sizeof(typename S::Lanes::T) == sizeof(double)) {
        lo = S::load(p), hi = S::load(p + F64::width);
    } else {
        F64::widen(S::load(p), lo, hi);
    }
}

template <class S>
GNCPU_INLINE void load_doubles_partial(const typename S::Stored* p, int64_t n, F64::V& lo,
                                       F64::V& hi) {
    if constexpr (sizeof(typename S::Lanes::T) == sizeof(double)) {
        lo = load_partial<S>(p, n < F64::width ? n : F64::width);
        hi = n > F64::width ? load_partial<S>(p + F64::width, n - F64::width) : F64::zero();
    } else {
        F64::widen(load_partial<S>(p, n), lo, hi);
    }
}

// Sums of x - center and of its square over x[0..n), in double lanes.
template <class S>
GNCPU_INLINE BlockMoments wide_centered_moments(const typename S::Stored* x, int64_t n,
                                                double center, double inv_count) {
    using D = F64;
    constexpr int64_t kStep = 2 * D::width;
    const D::V c = D::set1(center);
    D::V dev0 = D::zero(), dev1 = D::zero(), sq0 = D::zero(), sq1 = D::zero();
    int64_t i = 0;
    for (; i + kStep <= n; i += kStep) {
        D::V lo, hi;
        load_doubles<S>(x + i, lo, hi);
        lo = D::sub(lo, c), hi = D::sub(hi, c);
        dev0 = D::add(dev0, lo), dev1 = D::add(dev1, hi);
        sq0 = D::mul_add(lo, lo, sq0), sq1 = D::mul_add(hi, hi, sq1);
    }
    double dev = lanes_sum<D>(D::add(dev0, dev1)), sq = lanes_sum<D>(D::add(sq0, sq1));
    for (; i < n; ++i) {
        const double d = static_cast<double>(S::to_compute(x[i])) - center;
        dev += d;
        sq += d * d;
    }
    const double m2 = sq - dev * dev * inv_count;  // the corrected two-pass formula
    return BlockMoments{center + dev * inv_count, m2 < 0.0 ? 0.0 : m2};
}

// As block_moments (nchw.inl): about the first value, again about the mean
// found when that value lay more than 4 standard deviations from it.
template <class S>
BlockMoments wide_block_moments(const typename S::Stored* x, int64_t n) {
    const double inv_count = 1.0 / static_cast<double>(n);
    const double center = static_cast<double>(S::to_compute(x[0]));
    const BlockMoments first = wide_centered_moments<S>(x, n, center, inv_count);
    const double shift = first.mean - center;
    if (!(static_cast<double>(n) * shift * shift > 16.0 * first.m2)) return first;
    return wide_centered_moments<S>(x, n, first.mean, inv_count);
}

// Channels-last: per channel of `rows` rows of `channels` values, the mean
// and M2, about the first row (again about the means when one lay more than 4
// standard deviations from its channel's).  The rows are read in bands of
// kBand: down a band each strip of channels is summed in registers, then
// added into per-channel double sums in L1 (row by row, those loads and
// stores cost 1.56x a read of x with 32 channels, against 1.22x; the same
// with 128 or 512).  center, dev and sq: scratch of channels + kNhwcParamPad
// doubles.
template <class S>
void wide_channel_moments(const typename S::Stored* x, int64_t rows, int64_t channels,
                          double* center, double* mean, double* m2, double* dev, double* sq) {
    using D = F64;
    constexpr int64_t kStep = 2 * D::width;
    constexpr int64_t kBand = 8;
    static_assert(kStep <= kNhwcParamPad, "the scratch is padded for the widest step");
    const int64_t padded = (channels + kStep - 1) / kStep * kStep;
    for (int64_t c = 0; c < padded; ++c) center[c] = c < channels ? static_cast<double>(S::to_compute(x[c])) : 0.0;
    for (int pass = 0; pass < 2; ++pass) {
        for (int64_t c = 0; c < padded; ++c) dev[c] = 0.0, sq[c] = 0.0;
        for (int64_t r0 = 0; r0 < rows; r0 += kBand) {
            const int64_t r1 = r0 + kBand < rows ? r0 + kBand : rows;
            for (int64_t c = 0; c < channels; c += kStep) {
                const bool full = c + kStep <= channels;
                const D::V k_lo = D::load(center + c), k_hi = D::load(center + c + D::width);
                D::V dev_lo = D::zero(), dev_hi = D::zero(), sq_lo = D::zero(), sq_hi = D::zero();
                for (int64_t r = r0; r < r1; ++r) {
                    D::V lo, hi;
                    if (full) load_doubles<S>(x + r * channels + c, lo, hi);
                    else load_doubles_partial<S>(x + r * channels + c, channels - c, lo, hi);
                    lo = D::sub(lo, k_lo), hi = D::sub(hi, k_hi);  // (zeros past the end)
                    dev_lo = D::add(dev_lo, lo), dev_hi = D::add(dev_hi, hi);
                    sq_lo = D::mul_add(lo, lo, sq_lo), sq_hi = D::mul_add(hi, hi, sq_hi);
                }
                D::store(dev + c, D::add(D::load(dev + c), dev_lo));
                D::store(dev + c + D::width, D::add(D::load(dev + c + D::width), dev_hi));
                D::store(sq + c, D::add(D::load(sq + c), sq_lo));
                D::store(sq + c + D::width, D::add(D::load(sq + c + D::width), sq_hi));
            }
        }
        const double inv_rows = 1.0 / static_cast<double>(rows);
        bool poor_center = false;
        for (int64_t c = 0; c < channels; ++c) {
            const double shift = dev[c] * inv_rows;
            const double m = sq[c] - dev[c] * shift;
            mean[c] = center[c] + shift;
            m2[c] = m < 0.0 ? 0.0 : m;
            poor_center = poor_center || static_cast<double>(rows) * shift * shift > 16.0 * m2[c];
        }
        if (!poor_center) return;
        for (int64_t c = 0; c < channels; ++c) center[c] = mean[c];
    }
}
