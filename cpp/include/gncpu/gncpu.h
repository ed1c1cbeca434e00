/* gncpu: Group Normalization on the CPU.  C API on raw pointers.
 *
 * All tensors are C-contiguous NCHW buffers: `batch` examples, each of
 * `channels` channels of `spatial` contiguous values (spatial = the product of
 * every dimension after the channel one).  Statistics are computed per
 * (example, group) over channels/num_groups channels x spatial positions.
 *
 * Every entry point validates its arguments and writes nothing unless it
 * returns GNCPU_OK.  `y` may equal `x` (in place) but must not overlap it
 * otherwise.
 */
#ifndef GNCPU_GNCPU_H
#define GNCPU_GNCPU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum gncpu_status {
    GNCPU_OK = 0,
    GNCPU_ERR_NULL_POINTER = 1,   /* x or y is NULL while the tensor is not empty */
    GNCPU_ERR_BAD_SHAPE = 2,      /* a negative size */
    GNCPU_ERR_BAD_GROUPS = 3,     /* num_groups <= 0 or not dividing channels */
    GNCPU_ERR_BAD_EPS = 4,        /* eps negative, NaN or infinite */
    GNCPU_ERR_BAD_ISA = 5,        /* set_isa: not compiled in or not runnable here */
    GNCPU_ERR_BAD_ACTIVATION = 6, /* not a gncpu_activation */
    GNCPU_ERR_OUT_OF_MEMORY = 7   /* channels-last scratch could not be allocated */
} gncpu_status;

/* Applied to the normalised, scaled and shifted value, in the same pass. */
typedef enum gncpu_activation {
    GNCPU_ACT_NONE = 0,
    GNCPU_ACT_SILU = 1,   /* y * sigmoid(y), as in Stable Diffusion's ResNet blocks */
    GNCPU_ACT_RELU = 2,   /* max(y, 0) */
    GNCPU_ACT_GELU = 3,   /* 0.5 y (1 + erf(y / sqrt 2)) */
    GNCPU_ACT_COUNT = 4
} gncpu_activation;

/* Instruction-set bundles, named as the kernels that use them. */
typedef enum gncpu_isa {
    GNCPU_ISA_SCALAR = 0,  /* portable C++, any CPU */
    GNCPU_ISA_AVX2 = 1,    /* AVX2 + FMA (Haswell, Zen and later) */
    GNCPU_ISA_AVX512 = 2,  /* AVX-512 F/BW/DQ/VL (Skylake-SP, Zen 4 and later) */
    GNCPU_ISA_NEON = 3,    /* Advanced SIMD, every AArch64 CPU */
    GNCPU_ISA_COUNT = 4
} gncpu_isa;

/* weight, bias: NULL (ones, zeros) or `channels` values.
 * mean_out, rstd_out: NULL, or batch * num_groups values each (row-major
 * (batch, group)) that receive each group's mean and 1/sqrt(var + eps). */
gncpu_status gncpu_group_norm_f32(const float* x, float* y, int64_t batch,
                                  int64_t channels, int64_t spatial,
                                  int64_t num_groups, const float* weight,
                                  const float* bias, double eps,
                                  gncpu_activation activation,
                                  float* mean_out, float* rstd_out,
                                  int num_threads);
gncpu_status gncpu_group_norm_f64(const double* x, double* y, int64_t batch,
                                  int64_t channels, int64_t spatial,
                                  int64_t num_groups, const double* weight,
                                  const double* bias, double eps,
                                  gncpu_activation activation,
                                  double* mean_out, double* rstd_out,
                                  int num_threads);
/* 16-bit storage, computed in float32: x and y hold IEEE binary16 (f16) or
 * bfloat16 (bf16) bit patterns; weight, bias and the statistics are float. */
gncpu_status gncpu_group_norm_f16(const uint16_t* x, uint16_t* y, int64_t batch,
                                  int64_t channels, int64_t spatial,
                                  int64_t num_groups, const float* weight,
                                  const float* bias, double eps,
                                  gncpu_activation activation,
                                  float* mean_out, float* rstd_out,
                                  int num_threads);
gncpu_status gncpu_group_norm_bf16(const uint16_t* x, uint16_t* y, int64_t batch,
                                   int64_t channels, int64_t spatial,
                                   int64_t num_groups, const float* weight,
                                   const float* bias, double eps,
                                   gncpu_activation activation,
                                   float* mean_out, float* rstd_out,
                                   int num_threads);
/* Channels-last (NHWC): x and y hold `batch` examples of `spatial` positions
 * of `channels` contiguous values, x[n][s][c].  Same arguments and results
 * as the NCHW functions above (the result equals theirs transposed). */
#define GNCPU_DECLARE_NHWC(suffix, Stored, Compute)                                      gncpu_status gncpu_group_norm_nhwc_##suffix(                                             const Stored* x, Stored* y, int64_t batch, int64_t channels, int64_t spatial,         int64_t num_groups, const Compute* weight, const Compute* bias, double eps,          gncpu_activation activation, Compute* mean_out, Compute* rstd_out,                   int num_threads);
GNCPU_DECLARE_NHWC(f32, float, float)
GNCPU_DECLARE_NHWC(f64, double, double)
GNCPU_DECLARE_NHWC(f16, uint16_t, float)
GNCPU_DECLARE_NHWC(bf16, uint16_t, float)
#undef GNCPU_DECLARE_NHWC

const char* gncpu_status_message(gncpu_status status);

/* Copies nbytes with the same threading policy as the kernels: the floor
 * that benchmarks compare against. */
void gncpu_parallel_copy(void* dst, const void* src, size_t nbytes,
                         int num_threads);

/* Runtime dispatch.  The active ISA is chosen when the library loads (the
 * best one the CPU and OS support) and can be changed with gncpu_set_isa. */
const char* gncpu_isa_name(int isa);        /* NULL when out of range */
int gncpu_isa_compiled(int isa);            /* built into this binary */
int gncpu_isa_supported(int isa);           /* compiled and runnable here */
int gncpu_active_isa(void);
gncpu_status gncpu_set_isa(int isa);

/* Threads. */
int gncpu_openmp_enabled(void);
int gncpu_omp_max_threads(void);            /* 1 without OpenMP */
/* 1 in a process forked after this library loaded: OpenMP runtimes are not
 * fork-safe, so such a process computes serially (correct, not parallel). */
int gncpu_in_forked_child(void);

/* Scheduling knobs, for tests that must reach every code path on a small
 * machine.  Zero restores the default.  Not for production use. */
void gncpu_set_tuning(int64_t cache_budget_bytes,
                      int64_t min_elements_per_thread,
                      int64_t streaming_threshold_bytes);
int64_t gncpu_cache_budget_bytes(void);

#ifdef __cplusplus
}
#endif
#endif /* GNCPU_GNCPU_H */
