// From block moments to the numbers the kernels apply, written once for
// every layout: Chan's combination of blocks, and the affine fold with the
// mean held as center + residual.  Compiled for the baseline CPU (never
// include this from a kernel_<isa>.cpp).  cpp/README.md has the math.
#ifndef GNCPU_MOMENTS_H
#define GNCPU_MOMENTS_H

#include <math.h>
#include <stdint.h>

#include <limits>
#include <type_traits>

#include "kernel_table.h"

namespace gncpu {

struct GroupStats {
    double mean;
    double rstd;  // 1 / sqrt(var + eps)
    double m2;    // sum of squared deviations: no deviation exceeds sqrt(m2)
};

// Chan, Golub & LeVeque's pairwise update, in double.  Blocks are always
// added in block order, so the result does not depend on who computed them.
struct MomentsAccumulator {
    double count = 0.0;
    double mean = 0.0;
    double m2 = 0.0;

    void add(const BlockMoments& block, int64_t block_count) {
        const double n = static_cast<double>(block_count);
        if (count == 0.0) {
            count = n;
            mean = block.mean;
            m2 = block.m2;
            return;
        }
        const double total = count + n;
        const double delta = block.mean - mean;
        mean += delta * (n / total);
        m2 += block.m2 + delta * delta * (count * n / total);
        count = total;
    }

    GroupStats finish(double eps) const {
        const double variance = m2 / count;
        return GroupStats{mean, 1.0 / sqrt(variance + eps), m2};
    }
};

// When float32 lanes cannot be trusted, and the exact path (in double,
// kernels/exact.inl) runs instead.  Never for ordinary data: these are the
// groups that used to come out as bias (spreads past ~1e19), NaN or -0.98
// instead of -1 (spreads below ~1e-19 with eps = 0).
//
// Block moments: float lanes square deviations, so past ~1.8e19 they overflow
// (a non-finite mean or M2; NaN and Inf inputs land here too and stay so), and
// below ~1e-19 the squares are float subnormals, then zero.  A spread that
// small matters only when eps does not hide it.
inline bool float_moments_unreliable(const BlockMoments& m, int64_t count, double eps) {
    if (!(fabs(m.mean) <= 1.7e308) || !(m.m2 <= 1.7e308)) return true;
    return eps < 1e-20 && m.m2 < 1e-28 * static_cast<double>(count);
}

// float64's own limits: squared deviations overflow past ~1.3e154 (a
// spread of [1e154, -1e154] gave NaN) and lose their precision below
// ~1e-154 (subnormal squares: with eps = 0, spreads below ~1e-162 gave NaN).
// Such groups are measured again by scaled_stats.  NaN/Inf input lands here
// too, and scaled_stats hands it back as it was.
inline bool double_moments_unreliable(const GroupStats& s, int64_t count, double eps) {
    if (!(s.m2 <= 1.7e308)) return true;
    return eps < 1e-250 && s.m2 < 1e-280 * static_cast<double>(count);
}

// A group's statistics from its values x[r * row_stride + i] (r < rows,
// i < len), in double, each pass scaled by powers of two (exact): the
// values by 2^-e0 (their largest magnitude in [0.5, 1)), the deviations by
// 2^-e1 likewise, so neither a sum nor a square can overflow or underflow,
// and eps is compared at the deviations' scale.  Finite input only; the
// statistics computed the plain way are returned for anything else.
// Rare and not vectorised (the scaled passes read the group four times).
template <class T>
GroupStats scaled_stats(const T* x, int64_t rows, int64_t len, int64_t row_stride, double eps,
                        const GroupStats& plain) {
    double largest = 0.0;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < len; ++i) largest = fmax(largest, fabs(static_cast<double>(x[r * row_stride + i])));
    if (!(largest <= 1.7976931348623157e308) || largest == 0.0) return plain;
    int e0 = 0, e1 = 0;
    frexp(largest, &e0);
    const double n = static_cast<double>(rows * len);
    double sum = 0.0;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < len; ++i) sum += ldexp(static_cast<double>(x[r * row_stride + i]), -e0);
    const double mean = sum / n;
    double widest = 0.0;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < len; ++i)
            widest = fmax(widest, fabs(ldexp(static_cast<double>(x[r * row_stride + i]), -e0) - mean));
    if (widest > 0.0) frexp(widest, &e1);
    double sum_sq = 0.0;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < len; ++i) {
            const double u = ldexp(ldexp(static_cast<double>(x[r * row_stride + i]), -e0) - mean, -e1);
            sum_sq += u * u;
        }
    const int spread = e0 + e1;  // deviation = u * 2^spread
    // rstd * 2^spread = 1 / sqrt(var_u + eps / 4^spread), or 2^spread / sqrt(eps)
    // where eps swamps the deviations beyond double's range.
    const double eps_u = ldexp(eps, -2 * spread);
    const double k = isinf(eps_u) ? ldexp(1.0 / sqrt(eps), spread) : 1.0 / sqrt(sum_sq / n + eps_u);
    return GroupStats{ldexp(mean, e0), ldexp(k, -spread), ldexp(sum_sq, 2 * spread)};
}

// Whether a dtype is computed in float lanes (float32, and the 16-bit dtypes
// widened to float), whose range the exact path in double backs up; float64
// is computed in double throughout, with its own range limits.
template <class C>
constexpr bool kFloatLanes = std::is_same<C, float>::value;

// The magnitudes float lanes are trusted with, in both directions: inside
// [kFloatLaneMin, kFloatLaneMax], a product of two (or a sum of ~1e8 such
// values) stays clear of float's overflow (3.4e38) and subnormals (1.2e-38).
// Outside, an item goes to the exact path in double.
constexpr double kFloatLaneMin = 1e-30;
constexpr double kFloatLaneMax = 1e30;

inline bool in_float_lanes(double magnitude) {
    return magnitude >= kFloatLaneMin && magnitude <= kFloatLaneMax;  // NaN: false
}

// Normalising: (x - center) * scale + offset in float needs the deviations
// (at most sqrt(M2)) well inside float's range, and each channel's scale
// rstd * weight[c] too (a weight of 1e15 on rstd 1e25 overflows it; a tiny
// one flushes it to zero and leaves bias), and their products.
template <class C>
inline bool float_normalize_unreliable(const GroupStats& s, const C* weight,
                                       int64_t first_channel, int64_t count) {
    if (!(in_float_lanes(s.rstd) && s.m2 <= 1e74)) return true;
    const double spread = sqrt(s.m2);
    for (int64_t c = first_channel; weight && c < first_channel + count; ++c) {
        const double a = fabs(s.rstd * static_cast<double>(weight[c]));
        if (a != 0.0 && !(in_float_lanes(a) && a * spread <= 1e37)) return true;
    }
    return false;
}

// A double rounded to C, out-of-range values to +-inf (a plain conversion of
// an out-of-range double to float is undefined behaviour).
template <class C>
inline C saturate(double v) {
    const double largest = static_cast<double>(std::numeric_limits<C>::max());
    if (v > largest) return std::numeric_limits<C>::infinity();
    if (v < -largest) return -std::numeric_limits<C>::infinity();
    return static_cast<C>(v);  // NaN stays NaN
}

// The mean is applied as center + residual: center = the mean rounded to C,
// and the residual goes into the per-channel offset.  Computing
// (x - center) * scale + offset keeps the subtraction exact when |x| >> std,
// where folding the mean into the offset (x * scale + (bias - mean * scale))
// would cancel catastrophically.
template <class C>
inline C group_center(const GroupStats& stats) {
    return static_cast<C>(stats.mean);
}

// scale[i] and offset[i] of channels first_channel + i, i < count; weight and
// bias may be null (ones, zeros).
template <class C>
inline void fold_affine(const GroupStats& stats, const C* weight, const C* bias,
                        int64_t first_channel, int64_t count, C* scale, C* offset) {
    const double residual = stats.mean - static_cast<double>(group_center<C>(stats));
    for (int64_t i = 0; i < count; ++i) {
        const int64_t c = first_channel + i;
        const double a = stats.rstd * (weight ? static_cast<double>(weight[c]) : 1.0);
        const double b = bias ? static_cast<double>(bias[c]) : 0.0;
        scale[i] = saturate<C>(a);
        offset[i] = saturate<C>(b - residual * a);
    }
}

// The exact path's parameters, in double: y = (x - mean) * scale + offset.
template <class C>
inline void fold_affine_exact(const GroupStats& stats, const C* weight, const C* bias,
                              int64_t first_channel, int64_t count, double* scale,
                              double* offset) {
    for (int64_t i = 0; i < count; ++i) {
        const int64_t c = first_channel + i;
        scale[i] = stats.rstd * (weight ? static_cast<double>(weight[c]) : 1.0);
        offset[i] = bias ? static_cast<double>(bias[c]) : 0.0;
    }
}

}  // namespace gncpu

#endif  // GNCPU_MOMENTS_H
