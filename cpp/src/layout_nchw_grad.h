// The backward pass, NCHW, for the scheduler (schedule.h): an item is one
// group, channels_per_group contiguous rows of `spatial` values of x and dy.
// A block is whole rows (as many as fit in 16 KiB of x) or, for rows longer
// than that, one piece of a row: each block's sums then belong to rows
// (channels) it holds whole, one GradSums per row.
#ifndef GNCPU_LAYOUT_NCHW_GRAD_H
#define GNCPU_LAYOUT_NCHW_GRAD_H

#include <stdint.h>

#include "layout_grad.h"
#include "layout_nchw.h"

namespace gncpu {

// Bytes of x per block: the parallel grain of a split group (x and dy stream
// through L1 once in the first sweep, so this is not an L1 budget).
constexpr int64_t kNchwGradBlockBytes = 16 * 1024;

template <class Stored, class C>
struct NchwGradLayout : GradTensors<Stored, C>, NchwGroups {
    using Partial = GradSums;
    using Accumulator = GradAccumulator;
    struct Worker {
        ThreadVector<C> weight, scale, shift;  // per channel of the group
        int64_t params_of = -1;                // the group they are for
        double z_residual;                     // in z's shift (layout_grad.h)
        NchwGradParams<C> params;
        bool exact;                            // this group on the exact path
        ExactGradChannels exact_channels;
    };

    typename NchwGradKernels<Stored, C>::RowSums row_sums;
    typename NchwGradKernels<Stored, C>::Rows grad_rows;
    const NchwKernels<Stored, C>& moments;  // the forward's, for the residual
    int64_t piece_len, pieces_per_row, rows_per_block, blocks_per_item;

    NchwGradLayout(const KernelsFor<Stored, C>& k, const gncpu_backward_problem& p, double* sums_dz,
                   double* sums_dz_xhat)
        : GradTensors<Stored, C>(k, p, sums_dz, sums_dz_xhat),
          NchwGroups(p),
          row_sums(k.nchw_grad.row_sums[p.activation]),
          grad_rows(k.nchw_grad.grad_rows[streams_grad<Stored>(p.batch * p.channels * p.spatial)]
                                         [p.activation]),
          moments(k.nchw),
          piece_len(kNchwGradBlockBytes / static_cast<int64_t>(sizeof(Stored))),
          pieces_per_row(p.spatial > piece_len ? (p.spatial + piece_len - 1) / piece_len : 1),
          rows_per_block(p.spatial > piece_len ? 1 : piece_len / p.spatial),
          blocks_per_item(pieces_per_row > 1
                              ? channels_per_group * pieces_per_row
                              : (channels_per_group + rows_per_block - 1) / rows_per_block) {}

    int64_t partials_per_block() const { return rows_per_block; }
    int64_t accumulators_per_item() const { return channels_per_group; }
    int64_t item_bytes() const { return 2 * group_size * static_cast<int64_t>(sizeof(Stored)); }

    void reserve(Worker& w) const {
        const size_t n = static_cast<size_t>(channels_per_group);
        grow(w.weight, n), grow(w.scale, n), grow(w.shift, n);
        if (kFloatLanes<C>) w.exact_channels.reserve(n);
        w.params_of = -1;  // (the scratch outlives the call)
    }

    // Where block b starts and ends in its group's run of values.
    int64_t block_begin(int64_t b) const {
        if (pieces_per_row > 1) return (b / pieces_per_row) * spatial + (b % pieces_per_row) * piece_len;
        return b * rows_per_block * spatial;
    }
    int64_t block_end(int64_t b) const {
        if (pieces_per_row > 1) {
            const int64_t end = (b % pieces_per_row + 1) * piece_len;
            return (b / pieces_per_row) * spatial + (end < spatial ? end : spatial);
        }
        const int64_t rows = (b + 1) * rows_per_block;
        return (rows < channels_per_group ? rows : channels_per_group) * spatial;
    }

    // mean(x) - the given mean, measured as the forward measures the mean
    // (its blocks, its kernel, Chan's combination in block order).
    double residual_of(int64_t group) const {
        const Stored* x = this->x + group * group_size;
        if constexpr (!kFloatLanes<C>) {  // float64: a mean of x would round as the given one
            return deviation_sum(x, group_size, 1, 1, static_cast<double>(this->mean[group])) /
                   static_cast<double>(group_size);
        }
        const int64_t block = kNchwBlockBytes / static_cast<int64_t>(sizeof(Stored));  // (as the forward)
        MomentsAccumulator acc;
        for (int64_t at = 0; at < group_size; at += block) {
            const int64_t count = group_size - at < block ? group_size - at : block;
            BlockMoments m = moments.block_moments(x + at, count);
            if (kFloatLanes<C> && float_moments_unreliable(m, count, 0.0))
                m = moments.exact_block_moments(x + at, count);
            acc.add(m, count);
        }
        return acc.mean - static_cast<double>(this->mean[group]);
    }

    void prepare_channels(Worker& w, int64_t group) const {
        if (w.params_of == group) return;
        w.params_of = group;
        const double mean_g = static_cast<double>(this->mean[group]);
        const double rstd_g = static_cast<double>(this->rstd[group]);
        w.z_residual = this->activation != GNCPU_ACT_NONE && wants_residual<C>(mean_g, rstd_g) &&
                               group_size > 0
                           ? usable_residual(residual_of(group))
                           : 0.0;
        this->fold_grad_params(rstd_g, w.z_residual, first_channel(group),
                            channels_per_group, w.weight.data(), w.scale.data(), w.shift.data());
        w.params.center = this->mean[group];
        w.params.rstd = this->rstd[group];
    }

    // The parameters from row `row` of the group on.
    NchwGradParams<C> from_row(const Worker& w, int64_t row) const {
        NchwGradParams<C> p = w.params;
        p.weight = w.weight.data() + row, p.scale = w.scale.data() + row, p.shift = w.shift.data() + row;
        return p;
    }

    void block_partials(Worker& w, int64_t group, int64_t block, GradSums* out) const {
        prepare_channels(w, group);
        const int64_t begin = block_begin(block), end = block_end(block);
        const int64_t base = group * group_size + begin;
        const int64_t row = begin / spatial;
        const bool piece = pieces_per_row > 1;
        row_sums(this->x + base, this->dy + base, piece ? 1 : (end - begin) / spatial,
                 piece ? end - begin : spatial, from_row(w, row), out);
    }

    void accumulate(GradAccumulator* acc, int64_t block, const GradSums* partials) const {
        if (pieces_per_row > 1) {
            acc[block / pieces_per_row].add(partials[0]);
            return;
        }
        const int64_t first = block * rows_per_block;
        for (int64_t r = first; r < first + rows_per_block && r < channels_per_group; ++r)
            acc[r].add(partials[r - first]);
    }

    void begin_item(Worker& w, int64_t group, const GradAccumulator* acc, bool owner) const {
        prepare_channels(w, group);
        const int64_t example = group / groups_per_example;
        const int64_t c0 = first_channel(group);
        const double rstd_g = static_cast<double>(this->rstd[group]);
        const double values = static_cast<double>(group_size);
        GroupGrad grad = this->group_grad(rstd_g, c0, channels_per_group, values, acc);
        w.exact = float_grad_unreliable(rstd_g, this->weight, c0, channels_per_group, acc, grad);
        if (w.exact) {  // the group again, in double (every thread that takes part of it)
            ExactGradChannels& e = w.exact_channels;
            this->fold_exact(e, 0, static_cast<double>(this->mean[group]) + grad.residual, rstd_g,
                             c0, channels_per_group);
            this->exact_grad(this->x + group * group_size, this->dy + group * group_size, nullptr,
                             channels_per_group, spatial, true, e.params(), e.sums.data());
            grad = this->group_grad(rstd_g, c0, channels_per_group, values, e.sums.data());
            if (owner)
                this->keep_sums(example, rstd_g, grad.residual, c0, channels_per_group, e.sums.data());
            for (int64_t i = 0; i < channels_per_group; ++i) e.slope[i] = grad.slope, e.offset[i] = grad.offset;
            return;
        }
        if (owner) this->keep_sums(example, rstd_g, grad.residual, c0, channels_per_group, acc);
        w.params.slope = saturate<C>(grad.slope);
        w.params.offset = saturate<C>(grad.offset);
    }

    void finish_blocks(Worker& w, int64_t group, int64_t first_block, int64_t end_block) const {
        if (this->dx == nullptr) return;
        const int64_t base = group * group_size;
        const int64_t end = block_end(end_block - 1);
        const auto span = [&](int64_t pos, int64_t row, int64_t rows, int64_t len) {
            if (w.exact) {
                this->exact_grad(this->x + base + pos, this->dy + base + pos, this->dx + base + pos,
                                 rows, len, true, w.exact_channels.params(row), nullptr);
            } else {
                grad_rows(this->x + base + pos, this->dy + base + pos, this->dx + base + pos, rows,
                          len, from_row(w, row));
            }
        };
        for_row_spans(block_begin(first_block), end, spatial, span);
    }
};

}  // namespace gncpu

#endif  // GNCPU_LAYOUT_NCHW_GRAD_H
