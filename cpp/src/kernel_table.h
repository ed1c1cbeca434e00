// The contract between the scheduler (compiled for the baseline CPU) and the
// per-ISA kernels (kernel_<isa>.cpp, each compiled with its own flags): one
// table per ISA, indexed by dtype, then layout, then streaming and activation.
//
// This header is included by every ISA's translation unit, so it must hold
// plain data only: an inline function defined here would be emitted once per
// TU and the linker could keep the AVX-512 copy for everybody (the SIGILL trap).
#ifndef GNCPU_KERNEL_TABLE_H
#define GNCPU_KERNEL_TABLE_H

#include <stdint.h>

#include "gncpu/gncpu.h"
#include "isa_list.h"

// Every dtype, written once: X(enum value, table field, Stored, Compute,
// storage policy).  Values are held in memory as Stored and computed as
// Compute; the storage policy (kernels/codecs.inl) converts between them.
#define GNCPU_DTYPE_LIST(X)                               \
    X(GNCPU_F32, f32, float, float, F32Storage)           \
    X(GNCPU_F64, f64, double, double, F64Storage)         \
    X(GNCPU_F16, f16, uint16_t, float, F16Storage)        \
    X(GNCPU_BF16, bf16, uint16_t, float, BF16Storage)

namespace gncpu {

// Mean and sum of squared deviations (M2) of one block of values.
struct BlockMoments {
    double mean;
    double m2;
};

// Widest vector of any kernel, in elements: the channels-last parameter arrays
// carry this many wrapped-around entries past the last channel.
constexpr int64_t kNhwcParamPad = 16;

// NCHW: a group is one contiguous run of channels_per_group rows of `spatial`.
template <class Stored, class Compute>
struct NchwKernels {
    // Moments of x[0..n), n >= 1.  Must be a pure function of the block's
    // values: the scheduler relies on it for thread-count-independent results.
    BlockMoments (*block_moments)(const Stored* x, int64_t n);

    // y[r*row_len + i] = act((x[r*row_len + i] - center) * scale[r] + offset[r])
    // for r < rows, i < row_len.  Each element's result must not depend on
    // where the row starts or ends (blocks may cut a row anywhere), so tails
    // use the same lane arithmetic as full vectors.
    using Normalize = void (*)(const Stored* x, Stored* y, int64_t rows, int64_t row_len,
                               Compute center, const Compute* scale, const Compute* offset);
    // [streaming][activation]: streaming = non-temporal stores where the ISA
    // has them, bitwise the same values, for outputs larger than the caches.
    Normalize normalize[2][GNCPU_ACT_COUNT];

    // The exact path (kernels/exact.inl), in double, for groups the float
    // lanes cannot handle: the moments of a block, and the rows normalised
    // with double parameters.
    BlockMoments (*exact_block_moments)(const Stored* x, int64_t n);
    using ExactNormalize = void (*)(const Stored* x, Stored* y, int64_t rows, int64_t row_len,
                                    double center, const double* scale, const double* offset);
    ExactNormalize exact_normalize[GNCPU_ACT_COUNT];

    // Moments of x[0..n) in double lanes, for statistics alone
    // (kernels/wide.inl): pieces of a tensor then merge to double rounding.
    BlockMoments (*wide_block_moments)(const Stored* x, int64_t n);
};

// NHWC: an example is `rows` positions of `channels` contiguous values.
template <class Stored, class Compute>
struct NhwcKernels {
    // Per-channel mean and M2 of a block of rows, from sums of deviations
    // about `center` (the first row when null; the centers used are written to
    // center_used).  True when some center was more than 4 standard
    // deviations from its channel's mean: sum again about the means.
    // run_dev, run_sq: scratch of channels + kNhwcParamPad values each.
    bool (*channel_moments)(const Stored* x, int64_t rows, int64_t channels,
                            const Compute* center, Compute* center_used, double* mean,
                            double* m2, Compute* run_dev, Compute* run_sq);

    // y = act((x - center[c]) * scale[c] + offset[c]) with per-channel
    // parameters, each holding channels + kNhwcParamPad entries, entry i for
    // channel i % channels: the kernel walks rows * channels values as one
    // run, and a vector that crosses a row's end reads past `channels`.
    using Normalize = void (*)(const Stored* x, Stored* y, int64_t rows, int64_t channels,
                               const Compute* center, const Compute* scale,
                               const Compute* offset);
    Normalize normalize[2][GNCPU_ACT_COUNT];  // [streaming][activation]

    // The exact path, in double: per-channel moments, and rows normalised
    // with per-channel double parameters (`channels` entries, no padding).
    void (*exact_channel_moments)(const Stored* x, int64_t rows, int64_t channels, double* mean,
                                  double* m2);
    using ExactNormalize = void (*)(const Stored* x, Stored* y, int64_t rows, int64_t channels,
                                    const double* center, const double* scale,
                                    const double* offset);
    ExactNormalize exact_normalize[GNCPU_ACT_COUNT];

    // Per-channel mean and M2 in double lanes, for statistics alone
    // (kernels/wide.inl); center, dev, sq: scratch of channels +
    // kNhwcParamPad doubles each.
    void (*wide_channel_moments)(const Stored* x, int64_t rows, int64_t channels, double* center,
                                 double* mean, double* m2, double* dev, double* sq);
};

// The backward pass's first sweep, per channel: the sums of dz and of
// dz * (x - center), dz = dy * act'(z).
struct GradSums {
    double dz;
    double dz_dev;
    double dev;  // sum (x - center): the residual of the given mean (layout_grad.h)
};

// The parameters of the backward's second sweep, for a run of values:
//   z  = (x - center) * scale + shift      (the activation's input; scale =
//        rstd * weight, shift = bias; neither is read without an activation)
//   dx = rstd * (weight * dz + slope * (x - center) + offset)
// NCHW: center, rstd, slope and offset are the group's, the arrays hold one
// entry per row.  NHWC: every entry is per channel, channels + kNhwcParamPad
// entries wrapped around (see NhwcKernels).  rstd multiplies last so that
// weight * dz + offset, which cancels where dz is flat, is formed unscaled.
template <class Compute>
struct NchwGradParams {
    Compute center, rstd, slope, offset;
    const Compute* weight;
    const Compute* scale;
    const Compute* shift;
};
template <class Compute>
struct NhwcGradParams {
    const Compute *center, *rstd, *slope, *offset, *weight, *scale, *shift;
};

// Backward, NCHW: rows of one group.
template <class Stored, class Compute>
struct NchwGradKernels {
    // out[r] = the GradSums of row r < rows (about p.center, per-row scale and
    // shift; the rest of p is not read).
    using RowSums = void (*)(const Stored* x, const Stored* dy, int64_t rows, int64_t row_len,
                             const NchwGradParams<Compute>& p, GradSums* out);
    RowSums row_sums[GNCPU_ACT_COUNT];
    // dx, walked as one run (as NchwKernels::normalize, whose rules it
    // follows); dx may be x or dy.
    using Rows = void (*)(const Stored* x, const Stored* dy, Stored* dx, int64_t rows,
                          int64_t row_len, const NchwGradParams<Compute>& p);
    Rows grad_rows[2][GNCPU_ACT_COUNT];  // [streaming][activation]
};

// Backward, NHWC.
template <class Stored, class Compute>
struct NhwcGradKernels {
    // out[c] = the GradSums of channel c over `rows` rows (about p.center,
    // with p.scale and p.shift); run_dz, run_dz_dev, run_dev: scratch of channels +
    // kNhwcParamPad values each.
    using ChannelSums = void (*)(const Stored* x, const Stored* dy, int64_t rows,
                                 int64_t channels, const NhwcGradParams<Compute>& p,
                                 GradSums* out, Compute* run_dz, Compute* run_dz_dev,
                                 Compute* run_dev);
    ChannelSums channel_sums[GNCPU_ACT_COUNT];
    using Run = void (*)(const Stored* x, const Stored* dy, Stored* dx, int64_t rows,
                         int64_t channels, const NhwcGradParams<Compute>& p);
    Run grad_run[2][GNCPU_ACT_COUNT];  // [streaming][activation]
};

// The backward's exact path (kernels/exact.inl), in double, for the items
// float lanes cannot handle (layout_grad.h says which): `outer` runs of
// `inner` contiguous values, the channel of a value being its run's index
// (channel_is_outer, NCHW rows) or its index in the run (NHWC rows).  Every
// parameter is per channel.  With dx null: sums[channel] += the GradSums of
// its values; otherwise dx (sums unused).
struct ExactGradParams {
    const double *center, *rstd, *slope, *offset, *weight, *scale, *shift;
};

template <class Stored, class Compute>
struct KernelsFor {
    NchwKernels<Stored, Compute> nchw;
    NhwcKernels<Stored, Compute> nhwc;
    NchwGradKernels<Stored, Compute> nchw_grad;
    NhwcGradKernels<Stored, Compute> nhwc_grad;
    using ExactGrad = void (*)(const Stored* x, const Stored* dy, Stored* dx, int64_t outer,
                               int64_t inner, bool channel_is_outer, const ExactGradParams& p,
                               GradSums* sums);
    ExactGrad exact_grad[GNCPU_ACT_COUNT];
};

// One ISA's kernels, a pointer per dtype.  Null: that ISA's kernel file does
// not build the dtype because it would compile to the same code as the ISA
// below it (avx512bf16 differs from avx512 in bfloat16 alone); the dispatcher
// then uses the next ISA down the list that builds it (dispatch.cpp).
struct KernelTable {
    const char* name;
#define GNCPU_TABLE_FIELD(value, field, Stored, Compute, storage) \
    const KernelsFor<Stored, Compute>* field;
    GNCPU_DTYPE_LIST(GNCPU_TABLE_FIELD)
#undef GNCPU_TABLE_FIELD
};

// One per ISA compiled in; constant-initialised, so looking one up runs no
// code compiled for an ISA the CPU may lack.
#define GNCPU_DECLARE_TABLE(id, name, arch, gnu_flags, msvc_flags, needs) \
    extern const KernelTable kernel_table_##name;
GNCPU_ISA_LIST(GNCPU_DECLARE_TABLE)
#undef GNCPU_DECLARE_TABLE

}  // namespace gncpu

#endif  // GNCPU_KERNEL_TABLE_H
