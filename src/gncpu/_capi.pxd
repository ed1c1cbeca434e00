# The C API of gncpu's C++ core (cpp/include/gncpu/gncpu.h).
from libc.stdint cimport int64_t, uint16_t


cdef extern from "gncpu/gncpu.h" nogil:
    ctypedef enum gncpu_status:
        GNCPU_OK
        GNCPU_ERR_NULL_POINTER
        GNCPU_ERR_BAD_SHAPE
        GNCPU_ERR_BAD_GROUPS
        GNCPU_ERR_BAD_EPS
        GNCPU_ERR_BAD_ISA
        GNCPU_ERR_BAD_ACTIVATION
        GNCPU_ERR_OUT_OF_MEMORY

    ctypedef enum gncpu_activation:
        GNCPU_ACT_NONE
        GNCPU_ACT_SILU
        GNCPU_ACT_RELU
        GNCPU_ACT_GELU

    int GNCPU_ISA_COUNT

    gncpu_status gncpu_group_norm_f32(const float* x, float* y, int64_t batch,
                                      int64_t channels, int64_t spatial,
                                      int64_t num_groups, const float* weight,
                                      const float* bias, double eps,
                                      gncpu_activation activation, float* mean_out,
                                      float* rstd_out, int num_threads)
    gncpu_status gncpu_group_norm_f64(const double* x, double* y, int64_t batch,
                                      int64_t channels, int64_t spatial,
                                      int64_t num_groups, const double* weight,
                                      const double* bias, double eps,
                                      gncpu_activation activation, double* mean_out,
                                      double* rstd_out, int num_threads)
    gncpu_status gncpu_group_norm_f16(const uint16_t* x, uint16_t* y, int64_t batch,
                                      int64_t channels, int64_t spatial,
                                      int64_t num_groups, const float* weight,
                                      const float* bias, double eps,
                                      gncpu_activation activation, float* mean_out,
                                      float* rstd_out, int num_threads)
    gncpu_status gncpu_group_norm_bf16(const uint16_t* x, uint16_t* y, int64_t batch,
                                       int64_t channels, int64_t spatial,
                                       int64_t num_groups, const float* weight,
                                       const float* bias, double eps,
                                       gncpu_activation activation, float* mean_out,
                                       float* rstd_out, int num_threads)
    const char* gncpu_status_message(gncpu_status status)
    void gncpu_parallel_copy(void* dst, const void* src, size_t nbytes, int num_threads)

    const char* gncpu_isa_name(int isa)
    int gncpu_isa_compiled(int isa)
    int gncpu_isa_supported(int isa)
    int gncpu_active_isa()
    gncpu_status gncpu_set_isa(int isa)

    int gncpu_openmp_enabled()
    int gncpu_omp_max_threads()
    int gncpu_in_forked_child()
    void gncpu_set_tuning(int64_t cache_budget_bytes, int64_t min_elements_per_thread,
                          int64_t streaming_threshold_bytes)
    int64_t gncpu_cache_budget_bytes()

cdef extern from *:
    """
    #ifndef GNCPU_BUILD_COMPILER
    #define GNCPU_BUILD_COMPILER "unknown"
    #endif
    #ifndef GNCPU_BUILD_FLAGS
    #define GNCPU_BUILD_FLAGS ""
    #endif
    """
    const char* GNCPU_BUILD_COMPILER
    const char* GNCPU_BUILD_FLAGS


cdef extern from *:
    """
    /* One call site for every (dtype, layout): kind 0 float32, 1 float64,
     * 2 float16, 3 bfloat16; weight, bias and the statistics are float for
     * the 16-bit kinds. */
    static gncpu_status gncpu_dispatch(int kind, int channels_last, const void* x, void* y,
                                       int64_t batch, int64_t channels, int64_t spatial,
                                       int64_t groups, const void* w, const void* b,
                                       double eps, gncpu_activation act, void* mean,
                                       void* rstd, int threads) {
        switch (kind * 2 + (channels_last ? 1 : 0)) {
    #define GNCPU_CASE(k, fn, S, C) \
        case k: return fn((const S*)x, (S*)y, batch, channels, spatial, groups, (const C*)w, \
                          (const C*)b, eps, act, (C*)mean, (C*)rstd, threads);
            GNCPU_CASE(0, gncpu_group_norm_f32, float, float)
            GNCPU_CASE(1, gncpu_group_norm_nhwc_f32, float, float)
            GNCPU_CASE(2, gncpu_group_norm_f64, double, double)
            GNCPU_CASE(3, gncpu_group_norm_nhwc_f64, double, double)
            GNCPU_CASE(4, gncpu_group_norm_f16, uint16_t, float)
            GNCPU_CASE(5, gncpu_group_norm_nhwc_f16, uint16_t, float)
            GNCPU_CASE(6, gncpu_group_norm_bf16, uint16_t, float)
            GNCPU_CASE(7, gncpu_group_norm_nhwc_bf16, uint16_t, float)
    #undef GNCPU_CASE
        }
        return GNCPU_ERR_BAD_SHAPE;
    }
    """
    gncpu_status gncpu_dispatch(int kind, int channels_last, const void* x, void* y,
                                int64_t batch, int64_t channels, int64_t spatial, int64_t groups,
                                const void* w, const void* b, double eps, gncpu_activation act,
                                void* mean, void* rstd, int threads) nogil
