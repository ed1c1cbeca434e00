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
