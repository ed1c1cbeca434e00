// The C API's forward entry point: the only place that validates a problem,
// and the one lookup from (dtype, layout, activation) to the active ISA's
// kernels.  Everything below it may assume valid input.
#include <math.h>
#include <stdint.h>

#include "dispatch.h"
#include "gncpu/gncpu.h"
#include "kernel_table.h"
#include "layout_nchw.h"
#include "layout_nhwc.h"
#include "runtime.h"
#include "schedule.h"

namespace gncpu {
namespace {

bool in_range(int value, int count) { return value >= 0 && value < count; }

gncpu_status validate(const gncpu_problem* p) {
    if (p == nullptr) return GNCPU_ERR_NULL_POINTER;
    if (!in_range(p->dtype, GNCPU_DTYPE_COUNT)) return GNCPU_ERR_BAD_DTYPE;
    if (!in_range(p->layout, GNCPU_LAYOUT_COUNT)) return GNCPU_ERR_BAD_LAYOUT;
    if (!in_range(p->activation, GNCPU_ACT_COUNT)) return GNCPU_ERR_BAD_ACTIVATION;
    if (p->batch < 0 || p->channels < 0 || p->spatial < 0) return GNCPU_ERR_BAD_SHAPE;
    if (p->num_groups <= 0 || p->channels % p->num_groups != 0) return GNCPU_ERR_BAD_GROUPS;
    if (!(p->eps >= 0.0) || isinf(p->eps)) return GNCPU_ERR_BAD_EPS;
    if (p->channels != 0 && p->batch > INT64_MAX / p->channels) return GNCPU_ERR_BAD_SHAPE;
    if (p->spatial != 0 && p->batch * p->channels > INT64_MAX / p->spatial) return GNCPU_ERR_BAD_SHAPE;
    if (p->batch * p->channels * p->spatial == 0) return GNCPU_OK;
    if (p->x == nullptr || p->y == nullptr) return GNCPU_ERR_NULL_POINTER;
    return GNCPU_OK;
}

// Statistics of empty groups are undefined: NaN, as 0/0 would give.
template <class C>
void write_empty_stats(const gncpu_problem& p) {
    const int64_t count = p.batch * p.num_groups;
    for (int64_t i = 0; p.mean && i < count; ++i) static_cast<C*>(p.mean)[i] = static_cast<C>(NAN);
    for (int64_t i = 0; p.rstd && i < count; ++i) static_cast<C*>(p.rstd)[i] = static_cast<C>(NAN);
}

template <class S, class C>
gncpu_status run(const KernelsFor<S, C>& kernels, const gncpu_problem& p) {
    const int64_t total = p.batch * p.channels * p.spatial;
    if (total == 0) {
        write_empty_stats<C>(p);
        return GNCPU_OK;
    }
    const int threads = threads_for(total, p.num_threads);
    switch (p.layout) {
        case GNCPU_NCHW: return schedule(NchwLayout<S, C>(kernels.nchw, p), threads);
        case GNCPU_NHWC: return schedule(NhwcLayout<S, C>(kernels.nhwc, p), threads);
        case GNCPU_LAYOUT_COUNT: break;
    }
    return GNCPU_ERR_BAD_LAYOUT;
}

}  // namespace
}  // namespace gncpu

extern "C" {

gncpu_status gncpu_check_problem(const gncpu_problem* problem) {
    return gncpu::validate(problem);
}

gncpu_status gncpu_group_norm(const gncpu_problem* problem) {
    const gncpu_status status = gncpu::validate(problem);
    if (status != GNCPU_OK) return status;
    // Read once: a concurrent gncpu_set_isa never mixes two ISAs in one call.
    const gncpu::KernelTable& table = gncpu::active_kernels();
    switch (problem->dtype) {
#define GNCPU_DTYPE_CASE(value, field, Stored, Compute, storage) \
    case value: return gncpu::run(table.field, *problem);
        GNCPU_DTYPE_LIST(GNCPU_DTYPE_CASE)
#undef GNCPU_DTYPE_CASE
        case GNCPU_DTYPE_COUNT: break;
    }
    return GNCPU_ERR_BAD_DTYPE;
}

const char* gncpu_status_message(gncpu_status status) {
    switch (status) {
        case GNCPU_OK: return "ok";
        case GNCPU_ERR_NULL_POINTER: return "null pointer for a non-empty tensor";
        case GNCPU_ERR_BAD_SHAPE: return "negative or overflowing tensor size";
        case GNCPU_ERR_BAD_GROUPS: return "num_groups must be positive and divide channels";
        case GNCPU_ERR_BAD_EPS: return "eps must be finite and non-negative";
        case GNCPU_ERR_BAD_ISA: return "ISA not compiled in or not supported by this CPU";
        case GNCPU_ERR_BAD_ACTIVATION: return "unknown activation";
        case GNCPU_ERR_OUT_OF_MEMORY: return "out of memory for the per-thread scratch";
        case GNCPU_ERR_BAD_DTYPE: return "unknown dtype";
        case GNCPU_ERR_BAD_LAYOUT: return "unknown layout";
    }
    return "unknown status";
}

const char* gncpu_activation_name(int activation) {
    switch (activation) {
        case GNCPU_ACT_NONE: return "none";
        case GNCPU_ACT_SILU: return "silu";
        case GNCPU_ACT_RELU: return "relu";
        case GNCPU_ACT_GELU: return "gelu";
    }
    return nullptr;
}

const char* gncpu_dtype_name(int dtype) {
    switch (dtype) {
        case GNCPU_F32: return "float32";
        case GNCPU_F64: return "float64";
        case GNCPU_F16: return "float16";
        case GNCPU_BF16: return "bfloat16";
    }
    return nullptr;
}

}  // extern "C"
