// Channels-last (NHWC) for the scheduler (schedule.h): an item is one example,
// `spatial` rows of `channels` values, in which a group is a band of
// channels_per_group columns.  Rows are cut into fixed blocks (their number
// depends on the channel count only, never on the thread count); per block the
// kernel sums deviations per channel, and block_partials turns them into
// per-group moments (re-summing the block about the found means when a
// first-row center was poor, as the NCHW layout does).
#ifndef GNCPU_LAYOUT_NHWC_H
#define GNCPU_LAYOUT_NHWC_H

#include <stdint.h>

#include <vector>

#include "schedule.h"

namespace gncpu {

// 64 Ki elements per block (the kernel itself flushes its float lanes into
// double sums every 64 rows, so a block's length does not cost accuracy);
// large blocks amortise the per-channel work of each block.
constexpr int64_t kNhwcBlockElements = 64 * 1024;

// What both directions share: an item is one example, `spatial` rows of
// `channels` values cut into blocks of rows_per_block rows.
struct NhwcBlocks {
    int64_t spatial, channels, groups, channels_per_group, rows_per_block;
    int64_t items, blocks_per_item;

    template <class Problem>
    explicit NhwcBlocks(const Problem& p)
        : spatial(p.spatial),
          channels(p.channels),
          groups(p.num_groups),
          channels_per_group(p.channels / p.num_groups),
          rows_per_block(kNhwcBlockElements / p.channels > 0 ? kNhwcBlockElements / p.channels : 1),
          items(p.batch),
          blocks_per_item((p.spatial + rows_per_block - 1) / rows_per_block) {}

    int64_t block_rows(int64_t block) const {
        const int64_t left = spatial - block * rows_per_block;
        return left < rows_per_block ? left : rows_per_block;
    }
    // Where block `block` of an example starts, in values from the tensor's start.
    int64_t block_offset(int64_t example, int64_t block) const {
        return (example * spatial + block * rows_per_block) * channels;
    }
    // The rows of blocks [first_block, end_block).
    int64_t span_rows(int64_t first_block, int64_t end_block) const {
        const int64_t end = end_block * rows_per_block < spatial ? end_block * rows_per_block : spatial;
        return end - first_block * rows_per_block;
    }
};

// Per-channel mean and M2 of a block of rows by the kernel: about the
// block's first row, and again about the means found where a center was poor
// (see nhwc_channel_moments).  center, run_dev and run_sq are scratch.
template <class Stored, class C>
void measure_channels(const NhwcKernels<Stored, C>& k, const Stored* x, int64_t rows,
                      int64_t channels, C* center, double* mean, double* m2, C* run_dev,
                      C* run_sq) {
    if (k.channel_moments(x, rows, channels, nullptr, center, mean, m2, run_dev, run_sq)) {
        for (int64_t c = 0; c < channels; ++c) center[c] = static_cast<C>(mean[c]);
        k.channel_moments(x, rows, channels, center, center, mean, m2, run_dev, run_sq);
    }
}

template <class Stored, class C>
struct NhwcLayout : Tensors<Stored, C>, NhwcBlocks {
    using Compute = C;
    using Partial = BlockMoments;  // one per group
    using Accumulator = MomentsAccumulator;
    // The channel arrays of the block and of the example.
    struct Worker {
        ThreadVector<GroupStats> stats;
        ThreadVector<C> center, example_center, scale, offset, run_dev, run_sq;
        ThreadVector<double> mean, m2;
        ThreadVector<double> wide_center, wide_dev, wide_sq;  // statistics alone
        // The exact path (moments.h): double parameters, when `exact`.
        bool exact;
        ThreadVector<double> exact_center, exact_scale, exact_offset;
    };

    const NhwcKernels<Stored, C>& kernels;
    typename NhwcKernels<Stored, C>::Normalize normalize_run;  // for the activation and streaming
    typename NhwcKernels<Stored, C>::ExactNormalize exact_normalize_run;

    NhwcLayout(const NhwcKernels<Stored, C>& k, const gncpu_problem& p)
        : Tensors<Stored, C>(p), NhwcBlocks(p), kernels(k) {
        normalize_run = k.normalize[streams_output<Stored>(p.batch * p.channels * p.spatial)]
                                   [p.activation];
        exact_normalize_run = k.exact_normalize[p.activation];
    }

    int64_t partials_per_block() const { return groups; }
    int64_t accumulators_per_item() const { return groups; }
    int64_t item_bytes() const { return spatial * channels * static_cast<int64_t>(sizeof(Stored)); }
    int64_t block_count(int64_t block) const { return block_rows(block) * channels_per_group; }

    void reserve(Worker& w) const {
        // Each checked on its own: after a failed allocation every array is
        // still as large as it says.
        const size_t n = static_cast<size_t>(channels);
        const size_t padded = n + static_cast<size_t>(kNhwcParamPad);  // see NhwcKernels
        grow(w.center, n), grow(w.example_center, padded), grow(w.scale, padded);
        grow(w.offset, padded), grow(w.run_dev, padded), grow(w.run_sq, padded);
        grow(w.mean, n), grow(w.m2, n), grow(w.stats, static_cast<size_t>(groups));
        if (this->y == nullptr) grow(w.wide_center, padded), grow(w.wide_dev, padded), grow(w.wide_sq, padded);
        if (kFloatLanes<C>) grow(w.exact_center, n), grow(w.exact_scale, n), grow(w.exact_offset, n);
    }

    void block_partials(Worker& w, int64_t example, int64_t block, BlockMoments* out) const {
        const int64_t rows = block_rows(block);
        const Stored* x = this->x + block_offset(example, block);
        if (this->y == nullptr) {  // statistics alone: in double lanes (kernels/wide.inl)
            kernels.wide_channel_moments(x, rows, channels, w.wide_center.data(), w.mean.data(),
                                         w.m2.data(), w.wide_dev.data(), w.wide_sq.data());
            group_moments_from_channels(w, rows, out);
            return;
        }
        measure_channels(kernels, x, rows, channels, w.center.data(), w.mean.data(), w.m2.data(),
                         w.run_dev.data(), w.run_sq.data());
        group_moments_from_channels(w, rows, out);
        if (!kFloatLanes<C>) return;
        for (int64_t g = 0; g < groups; ++g) {
            if (float_moments_unreliable(out[g], block_count(block), this->eps)) {
                kernels.exact_channel_moments(x, rows, channels, w.mean.data(), w.m2.data());
                group_moments_from_channels(w, rows, out);
                return;
            }
        }
    }

    // Every channel of the block has the same count, so the group's moments
    // are the mean of the channel means and M2 = sum M2_c + rows * sum
    // (mean_c - mean)^2: Chan's formula for equal counts, without a division
    // per channel (those divisions dominated channels-last at first).
    void group_moments_from_channels(const Worker& w, int64_t rows, BlockMoments* out) const {
        const double inv_cpg = 1.0 / static_cast<double>(channels_per_group);
        for (int64_t g = 0; g < groups; ++g) {
            const int64_t c0 = g * channels_per_group, c1 = c0 + channels_per_group;
            double sum_mean = 0.0, sum_m2 = 0.0;
            for (int64_t c = c0; c < c1; ++c) sum_mean += w.mean[c], sum_m2 += w.m2[c];
            const double mean = sum_mean * inv_cpg;
            double spread = 0.0;
            for (int64_t c = c0; c < c1; ++c) spread += (w.mean[c] - mean) * (w.mean[c] - mean);
            out[g] = BlockMoments{mean, sum_m2 + static_cast<double>(rows) * spread};
        }
    }

    void accumulate(MomentsAccumulator* acc, int64_t block, const BlockMoments* partials) const {
        const int64_t count = block_count(block);
        for (int64_t g = 0; g < groups; ++g) acc[g].add(partials[g], count);
    }

    void begin_item(Worker& w, int64_t example, const MomentsAccumulator* acc, bool owner) const {
        for (int64_t g = 0; g < groups; ++g) {
            w.stats[g] = acc[g].finish(this->eps);
            if constexpr (!kFloatLanes<C>) {  // float64 input: its own range limits (moments.h)
                if (double_moments_unreliable(w.stats[g], spatial * channels_per_group, this->eps)) {
                    w.stats[g] = scaled_stats(
                        this->x + example * spatial * channels + g * channels_per_group, spatial,
                        channels_per_group, channels, this->eps, w.stats[g]);
                }
            }
        }
        if (owner) this->write_stats(example, groups, w.stats.data());
        if (this->y) prepare(w, example, w.stats.data());
    }

    void begin_given(Worker& w, int64_t example, bool owner) const {
        for (int64_t g = 0; g < groups; ++g)
            w.stats[g] = this->given(example * groups + g, spatial * channels_per_group);
        if (owner) this->write_stats(example, groups, w.stats.data());
        prepare(w, example, w.stats.data());
    }

    // Per-channel center, scale and offset, wrapped around past the last channel.
    void prepare(Worker& w, int64_t, const GroupStats* stats) const {
        w.exact = false;
        for (int64_t g = 0; kFloatLanes<C> && g < groups; ++g) {
            w.exact = w.exact || float_normalize_unreliable(stats[g], this->weight,
                                                            g * channels_per_group,
                                                            channels_per_group);
        }
        if (w.exact) {  // every group of the example, so that one run covers its rows
            for (int64_t g = 0; g < groups; ++g) {
                const int64_t c0 = g * channels_per_group;
                for (int64_t c = c0; c < c0 + channels_per_group; ++c) w.exact_center[c] = stats[g].mean;
                fold_affine_exact(stats[g], this->weight, this->bias, c0, channels_per_group,
                                  w.exact_scale.data() + c0, w.exact_offset.data() + c0);
            }
            return;
        }
        for (int64_t g = 0; g < groups; ++g) {
            const int64_t c0 = g * channels_per_group;
            const C center = group_center<C>(stats[g]);
            for (int64_t c = c0; c < c0 + channels_per_group; ++c) w.example_center[c] = center;
            fold_affine(stats[g], this->weight, this->bias, c0, channels_per_group,
                        w.scale.data() + c0, w.offset.data() + c0);
        }
        for (int64_t i = channels; i < channels + kNhwcParamPad; ++i) {
            w.example_center[i] = w.example_center[i % channels];
            w.scale[i] = w.scale[i % channels];
            w.offset[i] = w.offset[i % channels];
        }
    }

    void finish_blocks(Worker& w, int64_t example, int64_t first_block, int64_t end_block) const {
        if (this->y == nullptr) return;  // statistics only
        const int64_t offset = block_offset(example, first_block);
        const int64_t rows = span_rows(first_block, end_block);
        if (w.exact) {
            exact_normalize_run(this->x + offset, this->y + offset, rows, channels,
                                w.exact_center.data(), w.exact_scale.data(), w.exact_offset.data());
            return;
        }
        normalize_run(this->x + offset, this->y + offset, rows, channels,
                      w.example_center.data(), w.scale.data(), w.offset.data());
    }
};

}  // namespace gncpu

#endif  // GNCPU_LAYOUT_NHWC_H
