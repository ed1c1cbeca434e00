// The backward pass for the scheduler (schedule.h): what both layouts share.
// The first sweep sums, per (example, channel), dz and dz * (x - mean); the
// owner of each item keeps those sums for grad_weight and grad_bias (summed
// over the batch afterwards, in example order), and every thread that takes
// part of the item's second sweep folds them, per group, into the constants
// of dx (cpp/README.md has the math; dev = x - mean, x^ = dev rstd):
//   dx = rstd w dz - rstd mean(w dz) - x^ rstd mean(w dz x^)
//      = rstd (w[c] dz + slope dev + offset),
//   slope = -rstd^2 sum(w dz dev) / n,  offset = -sum(w dz) / n.
//
// The residual of the given mean.  The statistics the forward hands over
// are rounded to the parameter type: a float32 mean of values near 1e4 std
// is off by up to ~3e-4 std, and x - mean would carry that into every term.
// The first sweep also sums dev = x - center (the kernels form it exactly),
// so r = sum dev / n, the residual of the given mean, is known before dx
// and the parameters' gradients are formed, and corrects them as if the
// deviations were dev' = dev - r: sum dz dev' = sum dz dev - r sum dz, and
// dx's offset becomes offset - slope r.  z = dev' scale + shift, the
// activation's input, is needed in the first sweep itself: with an
// activation, where the rounding can matter (|mean| rstd > 3,
// wants_residual), each group's mean is measured again from x before it (as
// the forward measures it), and z's shift becomes shift - r scale.  The
// result stays a function of (dy, x, statistics), the same for any thread
// count; without an activation it costs one vector add per vector of x.
#ifndef GNCPU_LAYOUT_GRAD_H
#define GNCPU_LAYOUT_GRAD_H

#include <math.h>
#include <stdint.h>

#include "gncpu/gncpu.h"
#include "kernel_table.h"
#include "moments.h"
#include "schedule.h"

namespace gncpu {

struct GradAccumulator {
    double dz = 0.0;
    double dz_dev = 0.0;
    double dev = 0.0;
    void add(const GradSums& s) { dz += s.dz, dz_dev += s.dz_dev, dev += s.dev; }
};

// Whether a group's mean, given rounded to C, is worth correcting: its
// rounding (half an ulp of |mean|) moves x^ by |mean| rstd 2^-24 for float32,
// 2^-53 for float64; corrected where that could exceed ~2e-7 (float32) or
// ~1e-13 (float64) of the result.
template <class C>
inline bool wants_residual(double mean, double rstd) {
    return fabs(mean) * rstd > (kFloatLanes<C> ? 3.0 : 1e3);
}

// sum (x - center) over x[r * row_stride + i], r < rows, i < len, in double:
// for float64 input, whose mean cannot be measured finer than the given one
// (each x - center is exact where x is within a factor 2 of center, which is
// where the residual matters).  Scalar: taken only for offset groups.
template <class T>
double deviation_sum(const T* x, int64_t rows, int64_t len, int64_t row_stride, double center) {
    double sum = 0.0;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < len; ++i) sum += static_cast<double>(x[r * row_stride + i]) - center;
    return sum;
}

// A measured residual of the given mean, or 0 where x held non-finite values
// (the sums carry those to the result themselves).
inline double usable_residual(double r) { return fabs(r) <= 1e300 ? r : 0.0; }

// The constants of one group's dx, and the residual of its given mean.
struct GroupGrad {
    double slope;
    double offset;
    double residual;
};

// The exact path's per-channel parameters (double) and sums, in a worker.
struct ExactGradChannels {
    ThreadVector<double> center, rstd, slope, offset, weight, scale, shift;
    ThreadVector<GradSums> sums;

    void reserve(size_t n) {
        grow(center, n), grow(rstd, n), grow(slope, n), grow(offset, n);
        grow(weight, n), grow(scale, n), grow(shift, n), grow(sums, n);
    }
    ExactGradParams params(int64_t first = 0) const {
        return {center.data() + first, rstd.data() + first, slope.data() + first,
                offset.data() + first, weight.data() + first, scale.data() + first,
                shift.data() + first};
    }
};

// The problem's pointers, typed: values held as Stored, parameters and statistics as C.
template <class Stored, class C>
struct GradTensors {
    const Stored* x;
    const Stored* dy;
    Stored* dx;  // null: only the parameters' gradients are wanted
    const C* mean;
    const C* rstd;
    const C* weight;  // may be null: all ones
    const C* bias;    // may be null: all zeros
    int64_t channels;
    // Per (example, channel): sum dz and sum dz * x^, written by each item's owner.
    double* sums_dz;
    double* sums_dz_xhat;
    int activation;
    typename KernelsFor<Stored, C>::ExactGrad exact_grad;  // for the activation
    static constexpr bool kTakesGivenStats = false;  // (always given, as mean and rstd)

    GradTensors(const KernelsFor<Stored, C>& k, const gncpu_backward_problem& p, double* dz_sums,
                double* dz_xhat_sums)
        : x(static_cast<const Stored*>(p.x)), dy(static_cast<const Stored*>(p.grad_y)),
          dx(static_cast<Stored*>(p.grad_x)), mean(static_cast<const C*>(p.mean)),
          rstd(static_cast<const C*>(p.rstd)), weight(static_cast<const C*>(p.weight)),
          bias(static_cast<const C*>(p.bias)), channels(p.channels), sums_dz(dz_sums),
          sums_dz_xhat(dz_xhat_sums), activation(p.activation),
          exact_grad(k.exact_grad[p.activation]) {}

    // The per-channel parameters (kernel_table.h) of channels [c0, c0 + count)
    // in a group whose rstd is `rstd_g` and mean's residual `residual`:
    // weight, and z's scale and shift.
    void fold_grad_params(double rstd_g, double residual, int64_t c0, int64_t count, C* weight_out,
                       C* scale, C* shift) const {
        for (int64_t i = 0; i < count; ++i) {
            weight_out[i] = weight ? weight[c0 + i] : C(1);
            const double a = rstd_g * static_cast<double>(weight_out[i]);
            scale[i] = saturate<C>(a);
            shift[i] = saturate<C>((bias ? static_cast<double>(bias[c0 + i]) : 0.0) - residual * a);
        }
    }

    // The exact path's parameters of channels [c0, c0 + count) (entries i of
    // e's arrays from `first` on), before the sums: center, rstd, weight, z's scale and shift.
    void fold_exact(ExactGradChannels& e, int64_t first, double mean_g, double rstd_g, int64_t c0,
                    int64_t count) const {
        for (int64_t i = 0; i < count; ++i) {
            const double w = weight ? static_cast<double>(weight[c0 + i]) : 1.0;
            e.center[first + i] = mean_g, e.rstd[first + i] = rstd_g, e.weight[first + i] = w;
            e.scale[first + i] = rstd_g * w;
            e.shift[first + i] = bias ? static_cast<double>(bias[c0 + i]) : 0.0;
            e.sums[first + i] = GradSums{0.0, 0.0, 0.0};
        }
    }

    // The constants of one group's dx from its channel sums (anything with
    // .dz and .dz_dev; acc[i] is channel c0 + i's).
    // The sums are about the center the kernels were given; their sum of
    // deviations gives the residual that corrects them (see the top).
    template <class Sums>
    GroupGrad group_grad(double rstd_g, int64_t c0, int64_t count, double values,
                         const Sums* acc) const {
        double sum_w_dz = 0.0, sum_w_dz_dev = 0.0, sum_dev = 0.0;
        for (int64_t i = 0; i < count; ++i) {
            const double w = weight ? static_cast<double>(weight[c0 + i]) : 1.0;
            sum_w_dz += w * acc[i].dz;
            sum_w_dz_dev += w * acc[i].dz_dev;
            sum_dev += acc[i].dev;
        }
        const double residual = usable_residual(sum_dev / values);
        sum_w_dz_dev -= residual * sum_w_dz;
        const double slope = -rstd_g * rstd_g * sum_w_dz_dev / values;
        return GroupGrad{slope, -sum_w_dz / values - slope * residual, residual};
    }

    // The sums the parameters' gradients are made of, kept by an item's owner.
    template <class Sums>
    void keep_sums(int64_t example, double rstd_g, double residual, int64_t c0, int64_t count,
                   const Sums* acc) const {
        for (int64_t i = 0; i < count; ++i) {
            sums_dz[example * channels + c0 + i] = acc[i].dz;
            sums_dz_xhat[example * channels + c0 + i] = (acc[i].dz_dev - residual * acc[i].dz) * rstd_g;
        }
    }
};

// Whether float lanes can be trusted with a group's dx, from its float sums
// and the parameters they give: a sum that overflowed float (or non-finite
// input, which the exact path keeps as NaN/inf), or a parameter of z or dx
// beyond float's range or in its subnormals, sends the item to the exact
// path (in double).  Never for ordinary data.
inline bool fits_float(double v) { return v == 0.0 || in_float_lanes(fabs(v)); }

template <class C>
bool float_grad_unreliable(double rstd_g, const C* weight, int64_t c0, int64_t count,
                           const GradAccumulator* acc, const GroupGrad& grad) {
    if (!kFloatLanes<C>) return false;
    if (!fits_float(rstd_g) || !fits_float(grad.slope) || !fits_float(grad.offset)) return true;
    for (int64_t i = 0; i < count; ++i) {
        if (!(fabs(acc[i].dz) <= kFloatLaneMax && fabs(acc[i].dz_dev) <= kFloatLaneMax)) return true;
        if (weight && !fits_float(rstd_g * static_cast<double>(weight[c0 + i]))) return true;
    }
    return false;
}

// x + dy + dx bytes above which dx is written with streaming stores.
template <class Stored>
bool streams_grad(int64_t elements) {
    return 3 * elements * static_cast<int64_t>(sizeof(Stored)) > streaming_threshold_bytes();
}

}  // namespace gncpu

#endif  // GNCPU_LAYOUT_GRAD_H
