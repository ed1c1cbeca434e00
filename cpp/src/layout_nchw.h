// NCHW for the scheduler (schedule.h): an item is one group, a contiguous run
// of channels_per_group rows of `spatial` values, cut into fixed 8 KiB blocks.
#ifndef GNCPU_LAYOUT_NCHW_H
#define GNCPU_LAYOUT_NCHW_H

#include <stdint.h>

#include <vector>

#include "schedule.h"

namespace gncpu {

// 8 KiB keeps a block in L1 while block_moments re-reads it (see cpp/README.md).
constexpr int64_t kNchwBlockBytes = 8 * 1024;

// Calls each(pos, row, rows, len) over the values [pos, end) of a group's run
// of rows of `spatial` values, in order: a row cut by either end alone (rows =
// 1, len its values in the span), the whole rows between in one call.  Both
// directions' second sweeps walk their blocks' spans this way.
template <class Each>
void for_row_spans(int64_t pos, int64_t end, int64_t spatial, Each&& each) {
    while (pos < end) {
        const int64_t row = pos / spatial;
        const int64_t col = pos - row * spatial;
        int64_t rows = 1, len = spatial - col;
        if (col != 0 || end - pos < spatial) {
            if (len > end - pos) len = end - pos;
        } else {
            rows = (end - pos) / spatial;
            len = spatial;
        }
        each(pos, row, rows, len);
        pos += rows * len;
    }
}

// What both directions share: an item is one group, channels_per_group
// contiguous rows of `spatial` values.
struct NchwGroups {
    int64_t spatial, groups_per_example, channels_per_group, group_size, items;

    template <class Problem>
    explicit NchwGroups(const Problem& p)
        : spatial(p.spatial),
          groups_per_example(p.num_groups),
          channels_per_group(p.channels / p.num_groups),
          group_size(channels_per_group * p.spatial),
          items(p.batch * p.num_groups) {}

    int64_t first_channel(int64_t group) const {
        return (group % groups_per_example) * channels_per_group;
    }
};

template <class Stored, class C>
struct NchwLayout : Tensors<Stored, C>, NchwGroups {
    using Compute = C;
    using Partial = BlockMoments;
    using Accumulator = MomentsAccumulator;
    struct Worker {
        GroupStats stats;
        C center;
        ThreadVector<C> scale, offset;  // per channel of the group
        // The exact path (moments.h): double parameters, when `exact`.
        bool exact;
        double exact_center;
        ThreadVector<double> exact_scale, exact_offset;
    };

    const NchwKernels<Stored, C>& kernels;
    typename NchwKernels<Stored, C>::Normalize normalize_rows;  // for the activation and streaming
    typename NchwKernels<Stored, C>::ExactNormalize exact_normalize_rows;
    int64_t block_len, blocks_per_item;

    NchwLayout(const NchwKernels<Stored, C>& k, const gncpu_problem& p)
        : Tensors<Stored, C>(p),
          NchwGroups(p),
          kernels(k),
          block_len(kNchwBlockBytes / static_cast<int64_t>(sizeof(Stored))),
          blocks_per_item((group_size + block_len - 1) / block_len) {
        normalize_rows = k.normalize[streams_output<Stored>(p.batch * p.channels * p.spatial)]
                                    [p.activation];
        exact_normalize_rows = k.exact_normalize[p.activation];
    }

    static constexpr int64_t partials_per_block() { return 1; }
    static constexpr int64_t accumulators_per_item() { return 1; }
    int64_t item_bytes() const { return group_size * static_cast<int64_t>(sizeof(Stored)); }
    int64_t block_count(int64_t block) const {
        const int64_t left = group_size - block * block_len;
        return left < block_len ? left : block_len;
    }

    void reserve(Worker& w) const {
        const size_t n = static_cast<size_t>(channels_per_group);
        // Each checked on its own: after a failed allocation every array is
        // still as large as it says.
        grow(w.scale, n), grow(w.offset, n);
        if (kFloatLanes<C>) grow(w.exact_scale, n), grow(w.exact_offset, n);
    }

    void block_partials(Worker&, int64_t group, int64_t block, BlockMoments* out) const {
        const Stored* x = this->x + group * group_size + block * block_len;
        if (this->y == nullptr) {  // statistics alone: in double lanes (kernels/wide.inl)
            *out = kernels.wide_block_moments(x, block_count(block));
            return;
        }
        *out = kernels.block_moments(x, block_count(block));
        if (kFloatLanes<C> && float_moments_unreliable(*out, block_count(block), this->eps))
            *out = kernels.exact_block_moments(x, block_count(block));
    }

    void accumulate(MomentsAccumulator* acc, int64_t block, const BlockMoments* partial) const {
        acc[0].add(partial[0], block_count(block));
    }

    void begin_item(Worker& w, int64_t group, const MomentsAccumulator* acc, bool owner) const {
        w.stats = acc[0].finish(this->eps);
        if constexpr (!kFloatLanes<C>) {  // float64 input: its own range limits (moments.h)
            if (double_moments_unreliable(w.stats, group_size, this->eps))
                w.stats = scaled_stats(this->x + group * group_size, 1, group_size, 0, this->eps,
                                       w.stats);
        }
        if (owner) this->write_stats(group, 1, &w.stats);
        if (this->y) prepare(w, group, &w.stats);
    }

    void begin_given(Worker& w, int64_t group, bool owner) const {
        w.stats = this->given(group, group_size);
        if (owner) this->write_stats(group, 1, &w.stats);
        prepare(w, group, &w.stats);
    }

    void prepare(Worker& w, int64_t group, const GroupStats* stats) const {
        const int64_t c0 = first_channel(group);
        w.exact = kFloatLanes<C> &&
                  float_normalize_unreliable(stats[0], this->weight, c0, channels_per_group);
        if (w.exact) {
            w.exact_center = stats[0].mean;
            fold_affine_exact(stats[0], this->weight, this->bias, c0, channels_per_group,
                              w.exact_scale.data(), w.exact_offset.data());
            return;
        }
        w.center = group_center<C>(stats[0]);
        fold_affine(stats[0], this->weight, this->bias, c0, channels_per_group,
                    w.scale.data(), w.offset.data());
    }

    void finish_blocks(Worker& w, int64_t group, int64_t first_block, int64_t end_block) const {
        if (this->y == nullptr) return;  // statistics only
        const int64_t base = group * group_size;
        const int64_t end = end_block * block_len < group_size ? end_block * block_len : group_size;
        const auto span = [&](int64_t pos, int64_t row, int64_t rows, int64_t len) {
            if (w.exact) {
                exact_normalize_rows(this->x + base + pos, this->y + base + pos, rows, len,
                                     w.exact_center, w.exact_scale.data() + row,
                                     w.exact_offset.data() + row);
            } else {
                normalize_rows(this->x + base + pos, this->y + base + pos, rows, len, w.center,
                               w.scale.data() + row, w.offset.data() + row);
            }
        };
        for_row_spans(first_block * block_len, end, spatial, span);
    }
};

}  // namespace gncpu

#endif  // GNCPU_LAYOUT_NCHW_H
