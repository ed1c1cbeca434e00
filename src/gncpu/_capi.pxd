# The C API of gncpu's C++ core (cpp/include/gncpu/gncpu.h).
from libc.stdint cimport int64_t


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
        GNCPU_ERR_BAD_DTYPE
        GNCPU_ERR_BAD_LAYOUT
        GNCPU_ERR_OVERLAP
        GNCPU_ERR_BAD_STATS

    ctypedef enum gncpu_dtype:
        GNCPU_F32
        GNCPU_F64
        GNCPU_F16
        GNCPU_DTYPE_COUNT

    ctypedef enum gncpu_layout:
        GNCPU_NCHW
        GNCPU_NHWC

    ctypedef enum gncpu_activation:
        GNCPU_ACT_NONE
        GNCPU_ACT_COUNT

    ctypedef struct gncpu_problem:
        gncpu_dtype dtype
        gncpu_layout layout
        int64_t batch
        int64_t channels
        int64_t spatial
        int64_t num_groups
        const void* x
        void* y
        const void* weight
        const void* bias
        void* mean
        void* rstd
        double eps
        gncpu_activation activation
        int num_threads
        double* moments_mean
        double* moments_m2
        const double* given_mean
        const double* given_rstd

    gncpu_status gncpu_group_norm(const gncpu_problem* problem)
    gncpu_status gncpu_check_problem(const gncpu_problem* problem)

    ctypedef struct gncpu_backward_problem:
        gncpu_dtype dtype
        gncpu_layout layout
        int64_t batch
        int64_t channels
        int64_t spatial
        int64_t num_groups
        const void* grad_y
        const void* x
        const void* mean
        const void* rstd
        const void* weight
        const void* bias
        void* grad_x
        void* grad_weight
        void* grad_bias
        gncpu_activation activation
        int num_threads

    gncpu_status gncpu_group_norm_backward(const gncpu_backward_problem* problem)
    gncpu_status gncpu_check_backward_problem(const gncpu_backward_problem* problem)
    const char* gncpu_status_message(gncpu_status status)
    const char* gncpu_activation_name(int activation)
    const char* gncpu_dtype_name(int dtype)
    void gncpu_parallel_copy(void* dst, const void* src, size_t nbytes, int num_threads)
    void gncpu_parallel_xor(void* dst, const void* a, const void* b, size_t nbytes, int num_threads)

    int gncpu_isa_count()
    const char* gncpu_isa_name(int isa)
    int gncpu_isa_compiled(int isa)
    int gncpu_isa_supported(int isa)
    int gncpu_active_isa()
    gncpu_status gncpu_set_isa(int isa)

    int gncpu_openmp_enabled()
    int gncpu_in_forked_child()
    void gncpu_set_tuning(int64_t cache_budget_bytes, int64_t min_elements_per_thread,
                          int64_t streaming_threshold_bytes)
    int64_t gncpu_cache_budget_bytes()
    int64_t gncpu_streaming_threshold_bytes()
    int64_t gncpu_l2_cache_bytes()
    int64_t gncpu_l3_cache_bytes()
    int64_t gncpu_single_thread_ns_left()
    void gncpu_note_team_wait(int64_t region_ns, int64_t longest_wait_ns)

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
