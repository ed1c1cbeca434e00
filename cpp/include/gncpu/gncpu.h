/* gncpu: Group Normalization on the CPU.  A C API on raw pointers.
 *
 * One entry point, gncpu_group_norm, takes a gncpu_problem: what the tensor
 * holds (dtype), how it is laid out (layout), its sizes, the pointers and the
 * options.  Any binding (NumPy, PyTorch, plain C) fills one in and calls it;
 * nothing else is needed to reach the kernels.
 *
 * A tensor holds `batch` examples of `channels` channels and `spatial`
 * positions (spatial = the product of every dimension that is neither the
 * batch nor the channel one), C-contiguous in one of two layouts:
 *   GNCPU_NCHW: x[n][c][s]  (each channel's positions contiguous)
 *   GNCPU_NHWC: x[n][s][c]  (each position's channels contiguous: channels-last)
 * Statistics are taken per (example, group) over channels/num_groups channels
 * x all spatial positions, with the population variance:
 *   y = act((x - mean) / sqrt(var + eps) * weight[c] + bias[c])
 * The result is the same in both layouts (the NHWC one is its transpose).
 *
 * Every call validates the whole problem first and writes nothing unless it
 * returns GNCPU_OK.  `y` may equal `x` (in place) but must not overlap it
 * otherwise.  weight, bias, mean and rstd may lie anywhere, inside x or y
 * included: the parameters are read before y is written, and the statistics
 * are written after x is read.
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
    GNCPU_ERR_NULL_POINTER = 1,   /* problem, x or y is NULL while the tensor is not empty */
    GNCPU_ERR_BAD_SHAPE = 2,      /* a negative size, or one whose element count overflows */
    GNCPU_ERR_BAD_GROUPS = 3,     /* num_groups <= 0, not dividing channels, or > 1 with no channels */
    GNCPU_ERR_BAD_EPS = 4,        /* eps negative, NaN or infinite */
    GNCPU_ERR_BAD_ISA = 5,        /* set_isa: not compiled in or not runnable here */
    GNCPU_ERR_BAD_ACTIVATION = 6, /* not a gncpu_activation */
    GNCPU_ERR_OUT_OF_MEMORY = 7,  /* per-thread scratch could not be allocated */
    GNCPU_ERR_BAD_DTYPE = 8,      /* not a gncpu_dtype */
    GNCPU_ERR_BAD_LAYOUT = 9,     /* not a gncpu_layout */
    GNCPU_ERR_OVERLAP = 10,       /* an output overlaps an input other than exactly (in place) */
    GNCPU_ERR_BAD_STATS = 11      /* given statistics: given_mean without given_rstd (or the
                                     reverse), or with moments_mean/moments_m2 */
} gncpu_status;

/* How x and y hold their values.  The 16-bit formats are computed in float32.
 * weight, bias, mean and rstd have the *parameter type*: double for
 * GNCPU_F64, float for every other dtype.  X(ID, name) lists give the enum
 * (GNCPU_<ID>, in the list's order: entries are only ever appended) and the
 * names (gncpu_dtype_name). */
#define GNCPU_DTYPE_NAMES(X)                                             \
    X(F32, float32)   /* 0: float */                                     \
    X(F64, float64)   /* 1: double */                                    \
    X(F16, float16)   /* 2: IEEE binary16 bit patterns (uint16_t) */     \
    X(BF16, bfloat16) /* 3: bfloat16 bit patterns (uint16_t) */
typedef enum gncpu_dtype {
#define GNCPU_DTYPE_ENUMERATOR(id, name) GNCPU_##id,
    GNCPU_DTYPE_NAMES(GNCPU_DTYPE_ENUMERATOR)
#undef GNCPU_DTYPE_ENUMERATOR
    GNCPU_DTYPE_COUNT
} gncpu_dtype;

typedef enum gncpu_layout {
    GNCPU_NCHW = 0,  /* x[n][c][s] */
    GNCPU_NHWC = 1,  /* x[n][s][c], channels-last */
    GNCPU_LAYOUT_COUNT = 2
} gncpu_layout;

/* Applied to the normalised, scaled and shifted value, in the same pass; the
 * list gives the enum (GNCPU_ACT_<ID>) and gncpu_activation_name, as above. */
#define GNCPU_ACTIVATION_NAMES(X)                                                  \
    X(NONE, none) /* 0 */                                                          \
    X(SILU, silu) /* 1: v * sigmoid(v), as in Stable Diffusion's ResNet blocks */ \
    X(RELU, relu) /* 2: max(v, 0) */                                               \
    X(GELU, gelu) /* 3: 0.5 v (1 + erf(v / sqrt 2)) */
typedef enum gncpu_activation {
#define GNCPU_ACTIVATION_ENUMERATOR(id, name) GNCPU_ACT_##id,
    GNCPU_ACTIVATION_NAMES(GNCPU_ACTIVATION_ENUMERATOR)
#undef GNCPU_ACTIVATION_ENUMERATOR
    GNCPU_ACT_COUNT
} gncpu_activation;

typedef struct gncpu_problem {
    gncpu_dtype dtype;
    gncpu_layout layout;
    int64_t batch;
    int64_t channels;
    int64_t spatial;
    int64_t num_groups;
    const void* x;       /* batch * channels * spatial values of dtype */
    void* y;             /* the same; may equal x */
    const void* weight;  /* NULL (all ones) or `channels` values of the parameter type */
    const void* bias;    /* NULL (all zeros) or `channels` values of the parameter type */
    void* mean;          /* NULL, or batch * num_groups values of the parameter type */
    void* rstd;          /* that receive each group's mean and 1/sqrt(var + eps), (n, g) order */
    double eps;
    gncpu_activation activation;
    int num_threads;     /* at most this many; values below 1 mean 1 */
    /* Statistics as data, for tensors normalised in pieces (tiles, chunks,
     * processes): measure each piece's moments, merge them (Chan), then
     * normalise each piece with the merged statistics.  NULL when unused. */
    double* moments_mean;      /* batch * num_groups doubles that receive each group's */
    double* moments_m2;        /* mean and sum of squared deviations (M2), (n, g) order */
    const double* given_mean;  /* batch * num_groups means and 1/sqrt(var + eps) to */
    const double* given_rstd;  /* normalise with instead of measuring x: x is read once */
} gncpu_problem;

/* Validates `problem`, then computes y (and mean/rstd, moments_mean/m2 when
 * asked).  y may be NULL to measure statistics only (then x is read once and
 * weight, bias and activation are not used). */
gncpu_status gncpu_group_norm(const gncpu_problem* problem);

/* The backward pass: the gradients of a loss with respect to x, weight and
 * bias from its gradient with respect to y = act(z), z = (x - mean) * rstd *
 * weight[c] + bias[c], with the statistics the forward returned (used as
 * given, never recomputed).  Per example and group, over its channels x
 * positions (x^ = (x - mean) * rstd, dz = grad_y * act'(z)):
 *   grad_bias[c]   = sum over examples and positions of dz
 *   grad_weight[c] = sum over examples and positions of dz * x^
 *   grad_x = rstd * (weight[c] * dz - mean(weight * dz) - x^ * mean(weight * dz * x^))
 * grad_weight and grad_bias are summed over the batch in a fixed order: every
 * result is bitwise the same for any thread count.  grad_x may equal grad_y
 * or x (in place) but must not overlap either otherwise; grad_x, grad_weight
 * and grad_bias must not overlap each other. */
typedef struct gncpu_backward_problem {
    gncpu_dtype dtype;
    gncpu_layout layout;
    int64_t batch;
    int64_t channels;
    int64_t spatial;
    int64_t num_groups;
    const void* grad_y;   /* batch * channels * spatial values of dtype */
    const void* x;        /* the same: the forward's input */
    const void* mean;     /* batch * num_groups values of the parameter type, */
    const void* rstd;     /* (n, g) order, as gncpu_group_norm wrote them */
    const void* weight;   /* NULL (all ones) or `channels` values of the parameter type */
    const void* bias;     /* NULL (all zeros) or the same; read only with an activation */
    void* grad_x;         /* NULL (not wanted) or batch * channels * spatial values of dtype */
    void* grad_weight;    /* NULL (not wanted) or `channels` values of the parameter type */
    void* grad_bias;      /* NULL (not wanted) or the same */
    gncpu_activation activation;
    int num_threads;      /* at most this many; values below 1 mean 1 */
} gncpu_backward_problem;

/* Validates `problem`, then computes the gradients asked for.  Writes nothing
 * unless it returns GNCPU_OK. */
gncpu_status gncpu_group_norm_backward(const gncpu_backward_problem* problem);

/* The validation alone (see gncpu_check_problem). */
gncpu_status gncpu_check_backward_problem(const gncpu_backward_problem* problem);

/* The validation alone: GNCPU_OK exactly when gncpu_group_norm would run.
 * Lets a binding refuse bad arguments before it allocates anything: the
 * pointers are checked last, so GNCPU_ERR_NULL_POINTER (or GNCPU_ERR_OVERLAP)
 * means every value is valid. */
gncpu_status gncpu_check_problem(const gncpu_problem* problem);

const char* gncpu_status_message(gncpu_status status);
const char* gncpu_activation_name(int activation);  /* "none", "silu"...; NULL out of range */
const char* gncpu_dtype_name(int dtype);            /* "float32"...; NULL out of range */

/* Copies nbytes with the same threading policy as the kernels: the floor
 * that benchmarks compare against. */
void gncpu_parallel_copy(void* dst, const void* src, size_t nbytes, int num_threads);
/* dst = a XOR b, byte-wise: two buffers read and one written, the backward
 * pass's floor (x and grad_y read once, grad_x written once), same threading. */
void gncpu_parallel_xor(void* dst, const void* a, const void* b, size_t nbytes, int num_threads);

/* Runtime dispatch.  ISAs are numbered 0 .. gncpu_isa_count() - 1, from the
 * portable kernel up to the most preferred; the active one is chosen when the
 * library loads (the best the CPU and OS support) and changed by
 * gncpu_set_isa. */
int gncpu_isa_count(void);
const char* gncpu_isa_name(int isa);  /* "scalar", "avx2", ...; NULL out of range */
int gncpu_isa_compiled(int isa);      /* built into this binary */
int gncpu_isa_supported(int isa);     /* compiled and runnable here */
int gncpu_active_isa(void);
gncpu_status gncpu_set_isa(int isa);

/* Threads. */
int gncpu_openmp_enabled(void);
/* 1 in a process forked after this library loaded: OpenMP runtimes are not
 * fork-safe, so such a process computes serially (correct, not parallel). */
int gncpu_in_forked_child(void);

/* Scheduling knobs, for tests that must reach every code path on a small
 * machine.  Zero restores the default (and ends a contention back-off).  Not
 * for production use. */
void gncpu_set_tuning(int64_t cache_budget_bytes, int64_t min_elements_per_thread,
                      int64_t streaming_threshold_bytes);
int64_t gncpu_cache_budget_bytes(void);
/* Bytes of x + y above which outputs are written with streaming stores, and
 * the cache sizes behind it (as read from the OS). */
int64_t gncpu_streaming_threshold_bytes(void);
int64_t gncpu_l2_cache_bytes(void);
int64_t gncpu_l3_cache_bytes(void);
/* The contention back-off (runtime.h): nanoseconds left during which calls run
 * on one thread, and a team's wait to report as if a call had measured it. */
int64_t gncpu_single_thread_ns_left(void);
void gncpu_note_team_wait(int64_t region_ns, int64_t longest_wait_ns);

#ifdef __cplusplus
}
#endif
#endif /* GNCPU_GNCPU_H */
