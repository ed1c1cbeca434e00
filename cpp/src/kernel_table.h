// The contract between the driver (group_norm.cpp, compiled for the baseline
// CPU) and the per-ISA kernels (kernel_<isa>.cpp, each compiled with its own
// flags).
//
// This header is included by every ISA's translation unit, so it must hold
// plain data only: an inline function defined here would be emitted once per
// TU and the linker could keep the AVX-512 copy for everybody (the SIGILL trap).
#ifndef GNCPU_KERNEL_TABLE_H
#define GNCPU_KERNEL_TABLE_H

#include <stdint.h>

namespace gncpu {

// Mean and sum of squared deviations (M2) of one block of values.
struct BlockMoments {
    double mean;
    double m2;
};

// None, SiLU, ReLU, GELU: the values of gncpu_activation.
constexpr int kActivationCount = 4;
// Widest vector of any kernel, in elements: the channels-last parameter arrays
// carry this many wrapped-around entries past the last channel.
constexpr int64_t kNhwcParamPad = 16;

// Kernels for values held as Stored (float, double, or the 16 bits of a
// float16/bfloat16) and computed as Compute (float or double).
template <class Stored, class Compute>
struct KernelsFor {
    // Moments of x[0..n), n >= 1.  Must be a pure function of the block's
    // values: the driver relies on it for thread-count-independent results.
    BlockMoments (*block_moments)(const Stored* x, int64_t n);

    // y[r*row_len + i] = act((x[r*row_len + i] - center) * scale[r] + offset[r])
    // for r < rows, i < row_len, one function per activation (indexed by
    // gncpu_activation).  Each element's result must not depend on where the
    // row starts or ends (tiles may cut a row anywhere), so tails use the
    // same lane arithmetic as full vectors.
    using NormalizeRows = void (*)(const Stored* x, Stored* y, int64_t rows, int64_t row_len,
                                   Compute center, const Compute* scale,
                                   const Compute* offset);
    NormalizeRows normalize_rows[kActivationCount];

    // The same, bitwise, with non-temporal stores where the ISA has them: for
    // outputs larger than the last-level cache.
    NormalizeRows normalize_rows_streaming[kActivationCount];

    // Channels-last: per-channel sums of deviations from `center` (the first
    // row when null; the centers used are written to center_used) and of
    // their squares over `rows` rows of `channels` values.
    void (*nhwc_channel_sums)(const Stored* x, int64_t rows, int64_t channels,
                              const Compute* center, Compute* center_used, double* dev,
                              double* sq);
    // Channels-last normalisation with per-channel center, scale and offset,
    // each holding channels + kNhwcParamPad entries, entry i for channel
    // i % channels: the kernel walks rows * channels values as one run, and a
    // vector that crosses a row's end reads its parameters past `channels`.
    using NhwcNormalize = void (*)(const Stored* x, Stored* y, int64_t rows, int64_t channels,
                                   const Compute* center, const Compute* scale,
                                   const Compute* offset);
    NhwcNormalize nhwc_normalize[kActivationCount];
    NhwcNormalize nhwc_normalize_streaming[kActivationCount];  // non-temporal stores
};

struct KernelTable {
    const char* name;
    KernelsFor<float, float> f32;
    KernelsFor<double, double> f64;
    KernelsFor<uint16_t, float> f16;   // IEEE binary16
    KernelsFor<uint16_t, float> bf16;  // bfloat16
};

// One per ISA compiled in; constant-initialised, so looking one up runs no
// code compiled for an ISA the CPU may lack.
extern const KernelTable kernel_table_scalar;
extern const KernelTable kernel_table_avx2;
extern const KernelTable kernel_table_avx512;
extern const KernelTable kernel_table_neon;

}  // namespace gncpu

#endif  // GNCPU_KERNEL_TABLE_H
