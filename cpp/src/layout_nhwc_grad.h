// The backward pass, channels-last (NHWC), for the scheduler (schedule.h): an
// item is one example, `spatial` rows of `channels` values of x and dy, cut
// into the forward's fixed blocks of rows; each block yields one GradSums per
// channel.  Every parameter is per channel, wrapped around past the last one
// (kNhwcParamPad), as the forward's.
#ifndef GNCPU_LAYOUT_NHWC_GRAD_H
#define GNCPU_LAYOUT_NHWC_GRAD_H

#include <stdint.h>

#include "layout_grad.h"
#include "layout_nhwc.h"

namespace gncpu {

template <class Stored, class C>
struct NhwcGradLayout : GradTensors<Stored, C>, NhwcBlocks {
    using Partial = GradSums;
    using Accumulator = GradAccumulator;
    struct Worker {
        ThreadVector<C> center, weight, scale, shift, rstd, slope, offset, run_dz, run_dz_dev, run_dev;
        ThreadVector<double> residual;  // per group, in z's shift (layout_grad.h)
        // Scratch of the forward's channel_moments, for the residuals.
        ThreadVector<C> m_center, m_run_dev, m_run_sq;
        ThreadVector<double> m_mean, m_m2, m_sum;
        int64_t params_of = -1;  // the example center ... rstd are for
        bool exact;              // this example on the exact path
        ExactGradChannels exact_channels;
        NhwcGradParams<C> params() const {
            return {center.data(), rstd.data(), slope.data(), offset.data(),
                    weight.data(), scale.data(), shift.data()};
        }
    };

    typename NhwcGradKernels<Stored, C>::ChannelSums channel_sums;
    typename NhwcGradKernels<Stored, C>::Run grad_run;
    const NhwcKernels<Stored, C>& moments;  // the forward's, for the residuals

    NhwcGradLayout(const KernelsFor<Stored, C>& k, const gncpu_backward_problem& p, double* sums_dz,
                   double* sums_dz_xhat)
        : GradTensors<Stored, C>(k, p, sums_dz, sums_dz_xhat),
          NhwcBlocks(p),
          channel_sums(k.nhwc_grad.channel_sums[p.activation]),
          grad_run(k.nhwc_grad.grad_run[streams_grad<Stored>(p.batch * p.channels * p.spatial)]
                                       [p.activation]),
          moments(k.nhwc) {}

    int64_t partials_per_block() const { return channels; }
    int64_t accumulators_per_item() const { return channels; }
    int64_t item_bytes() const { return 2 * spatial * channels * static_cast<int64_t>(sizeof(Stored)); }

    void reserve(Worker& w) const {
        const size_t padded = static_cast<size_t>(channels + kNhwcParamPad);  // see NhwcKernels
        grow(w.center, padded), grow(w.weight, padded), grow(w.scale, padded), grow(w.shift, padded);
        grow(w.rstd, padded), grow(w.slope, padded), grow(w.offset, padded);
        grow(w.run_dz, padded), grow(w.run_dz_dev, padded), grow(w.run_dev, padded);
        grow(w.residual, static_cast<size_t>(groups));
        grow(w.m_center, padded), grow(w.m_run_dev, padded), grow(w.m_run_sq, padded);
        grow(w.m_mean, padded), grow(w.m_m2, padded), grow(w.m_sum, padded);
        if (kFloatLanes<C>) w.exact_channels.reserve(static_cast<size_t>(channels));
        w.params_of = -1;  // (the scratch outlives the call)
    }

    static void wrap(ThreadVector<C>& v, int64_t channels) {
        for (int64_t i = channels; i < channels + kNhwcParamPad; ++i) v[i] = v[i % channels];
    }

    // Each group's mean(x) - given mean, for the groups that want it:
    // per-channel means by the forward's channel_moments over its blocks of
    // rows (about the means again when a center was poor; in double when
    // float lanes cannot hold the block), averaged in block order.
    void measure_residuals(Worker& w, int64_t example) const {
        if constexpr (!kFloatLanes<C>) {  // float64: a mean of x would round as the given one
            const double values = static_cast<double>(spatial * channels_per_group);
            for (int64_t g = 0; g < groups; ++g) {
                if (w.residual[g] == 0.0) continue;
                const double r = deviation_sum(this->x + example * spatial * channels + g * channels_per_group,
                                               spatial, channels_per_group, channels,
                                               static_cast<double>(this->mean[example * groups + g])) / values;
                w.residual[g] = usable_residual(r);
            }
            return;
        }
        for (int64_t c = 0; c < channels; ++c) w.m_sum[c] = 0.0;
        for (int64_t r0 = 0; r0 < spatial; r0 += rows_per_block) {
            const int64_t rows = spatial - r0 < rows_per_block ? spatial - r0 : rows_per_block;
            const Stored* x = this->x + (example * spatial + r0) * channels;
            measure_channels(moments, x, rows, channels, w.m_center.data(), w.m_mean.data(),
                             w.m_m2.data(), w.m_run_dev.data(), w.m_run_sq.data());
            bool unreliable = false;
            for (int64_t c = 0; kFloatLanes<C> && c < channels && !unreliable; ++c)
                unreliable = float_moments_unreliable(BlockMoments{w.m_mean[c], w.m_m2[c]}, rows, 0.0);
            if (unreliable) moments.exact_channel_moments(x, rows, channels, w.m_mean.data(), w.m_m2.data());
            for (int64_t c = 0; c < channels; ++c) w.m_sum[c] += w.m_mean[c] * static_cast<double>(rows);
        }
        const double values = static_cast<double>(spatial * channels_per_group);
        for (int64_t g = 0; g < groups; ++g) {
            if (w.residual[g] == 0.0) continue;  // (marked 1.0 when wanted)
            double sum = 0.0;
            for (int64_t c = g * channels_per_group; c < (g + 1) * channels_per_group; ++c) sum += w.m_sum[c];
            const double r = sum / values - static_cast<double>(this->mean[example * groups + g]);
            w.residual[g] = usable_residual(r);
        }
    }

    void prepare_channels(Worker& w, int64_t example) const {
        if (w.params_of == example) return;
        w.params_of = example;
        bool any = false;
        for (int64_t g = 0; g < groups; ++g) {
            const bool wanted =
                this->activation != GNCPU_ACT_NONE &&
                wants_residual<C>(static_cast<double>(this->mean[example * groups + g]),
                                  static_cast<double>(this->rstd[example * groups + g]));
            w.residual[g] = wanted ? 1.0 : 0.0;
            any = any || wanted;
        }
        if (any && spatial > 0) measure_residuals(w, example);
        else for (int64_t g = 0; g < groups; ++g) w.residual[g] = 0.0;
        for (int64_t g = 0; g < groups; ++g) {
            const int64_t c0 = g * channels_per_group;
            const C mean = this->mean[example * groups + g], rstd = this->rstd[example * groups + g];
            for (int64_t c = c0; c < c0 + channels_per_group; ++c) w.center[c] = mean, w.rstd[c] = rstd;
            this->fold_grad_params(static_cast<double>(rstd), w.residual[g], c0, channels_per_group,
                                w.weight.data() + c0, w.scale.data() + c0, w.shift.data() + c0);
        }
        wrap(w.center, channels), wrap(w.rstd, channels), wrap(w.weight, channels);
        wrap(w.scale, channels), wrap(w.shift, channels);
    }

    void block_partials(Worker& w, int64_t example, int64_t block, GradSums* out) const {
        prepare_channels(w, example);
        const int64_t offset = block_offset(example, block);
        channel_sums(this->x + offset, this->dy + offset, block_rows(block), channels, w.params(),
                     out, w.run_dz.data(), w.run_dz_dev.data(), w.run_dev.data());
    }

    void accumulate(GradAccumulator* acc, int64_t, const GradSums* partials) const {
        for (int64_t c = 0; c < channels; ++c) acc[c].add(partials[c]);
    }

    void begin_item(Worker& w, int64_t example, const GradAccumulator* acc, bool owner) const {
        prepare_channels(w, example);
        const double values = static_cast<double>(channels_per_group * spatial);
        w.exact = false;
        for (int64_t g = 0; g < groups && kFloatLanes<C> && !w.exact; ++g) {
            const int64_t c0 = g * channels_per_group;
            const double rstd_g = static_cast<double>(this->rstd[example * groups + g]);
            w.exact = float_grad_unreliable(
                rstd_g, this->weight, c0, channels_per_group, acc + c0,
                this->group_grad(rstd_g, c0, channels_per_group, values, acc + c0));
        }
        if (w.exact) {  // the example again, in double (every thread that takes part of it)
            ExactGradChannels& e = w.exact_channels;
            for (int64_t g = 0; g < groups; ++g) {
                const int64_t c0 = g * channels_per_group;
                const double rstd_g = static_cast<double>(this->rstd[example * groups + g]);
                const double residual =
                    this->group_grad(rstd_g, c0, channels_per_group, values, acc + c0).residual;
                this->fold_exact(e, c0, static_cast<double>(this->mean[example * groups + g]) + residual,
                                 static_cast<double>(this->rstd[example * groups + g]),
                                 g * channels_per_group, channels_per_group);
            }
            const int64_t offset = example * spatial * channels;
            this->exact_grad(this->x + offset, this->dy + offset, nullptr, spatial, channels,
                             false, e.params(), e.sums.data());
        }
        for (int64_t g = 0; g < groups; ++g) {
            const int64_t c0 = g * channels_per_group;
            const double rstd_g = static_cast<double>(this->rstd[example * groups + g]);
            const GradSums* exact_sums = w.exact_channels.sums.data() + c0;
            const GroupGrad grad =
                w.exact ? this->group_grad(rstd_g, c0, channels_per_group, values, exact_sums)
                        : this->group_grad(rstd_g, c0, channels_per_group, values, acc + c0);
            if (owner && w.exact)
                this->keep_sums(example, rstd_g, grad.residual, c0, channels_per_group, exact_sums);
            if (owner && !w.exact)
                this->keep_sums(example, rstd_g, grad.residual, c0, channels_per_group, acc + c0);
            for (int64_t c = c0; c < c0 + channels_per_group; ++c) {
                if (w.exact) {
                    w.exact_channels.slope[c] = grad.slope, w.exact_channels.offset[c] = grad.offset;
                } else {
                    w.slope[c] = saturate<C>(grad.slope), w.offset[c] = saturate<C>(grad.offset);
                }
            }
        }
        if (!w.exact) wrap(w.slope, channels), wrap(w.offset, channels);
    }

    void finish_blocks(Worker& w, int64_t example, int64_t first_block, int64_t end_block) const {
        if (this->dx == nullptr) return;
        const int64_t offset = block_offset(example, first_block);
        const int64_t rows = span_rows(first_block, end_block);
        if (w.exact) {
            this->exact_grad(this->x + offset, this->dy + offset, this->dx + offset, rows,
                             channels, false, w.exact_channels.params(), nullptr);
            return;
        }
        grad_run(this->x + offset, this->dy + offset, this->dx + offset, rows, channels,
                 w.params());
    }
};

}  // namespace gncpu

#endif  // GNCPU_LAYOUT_NHWC_GRAD_H
