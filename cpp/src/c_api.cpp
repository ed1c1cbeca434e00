// The C API's entry points, forward and backward: the only place that
// validates a problem, and the one lookup from (dtype, layout, activation) to
// the active ISA's kernels.  Everything below it may assume valid input.
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <new>
#include <vector>

#include "dispatch.h"
#include "gncpu/gncpu.h"
#include "kernel_table.h"
#include "layout_nchw.h"
#include "layout_nchw_grad.h"
#include "layout_nhwc.h"
#include "layout_nhwc_grad.h"
#include "runtime.h"
#include "schedule.h"

namespace gncpu {
namespace {

bool in_range(int value, int count) { return value >= 0 && value < count; }

// The enum fields of a problem come from C, where an enum object may hold any
// int; in C++ loading one outside its enumerators' range is undefined (UBSan's
// -fsanitize=enum stops there), so validation reads the int it holds.
template <class Enum>
int enum_value(const Enum& field) {
    static_assert(sizeof(Enum) == sizeof(int), "a C enum is an int here");
    int value;
    memcpy(&value, &field, sizeof value);
    return value;
}

bool overlaps(const void* a, size_t a_bytes, const void* b, size_t b_bytes) {
    const uintptr_t a0 = reinterpret_cast<uintptr_t>(a), b0 = reinterpret_cast<uintptr_t>(b);
    return a != nullptr && b != nullptr && a0 < b0 + b_bytes && b0 < a0 + a_bytes;
}

size_t dtype_size(int dtype) {
    switch (dtype) {
#define GNCPU_DTYPE_SIZE(value, field, Stored, Compute, storage) \
    case value: return sizeof(Stored);
        GNCPU_DTYPE_LIST(GNCPU_DTYPE_SIZE)
#undef GNCPU_DTYPE_SIZE
    }
    return 0;
}

// What both directions check of a problem P's values (not its pointers).
template <class P>
gncpu_status validate_values(const P* p) {
    if (!in_range(enum_value(p->dtype), GNCPU_DTYPE_COUNT)) return GNCPU_ERR_BAD_DTYPE;
    if (!in_range(enum_value(p->layout), GNCPU_LAYOUT_COUNT)) return GNCPU_ERR_BAD_LAYOUT;
    if (!in_range(enum_value(p->activation), GNCPU_ACT_COUNT)) return GNCPU_ERR_BAD_ACTIVATION;
    if (p->batch < 0 || p->channels < 0 || p->spatial < 0) return GNCPU_ERR_BAD_SHAPE;
    // With no channels any count divides; more groups than max(channels, 1)
    // would only ask for that many empty statistics (2**28 of them: 2 GiB).
    if (p->num_groups <= 0 || p->channels % p->num_groups != 0 ||
        p->num_groups > (p->channels > 1 ? p->channels : 1))
        return GNCPU_ERR_BAD_GROUPS;
    if (p->channels != 0 && p->batch > INT64_MAX / p->channels) return GNCPU_ERR_BAD_SHAPE;
    if (p->spatial != 0 && p->batch * p->channels > INT64_MAX / p->spatial) return GNCPU_ERR_BAD_SHAPE;
    return GNCPU_OK;
}

gncpu_status validate(const gncpu_problem* p) {
    if (p == nullptr) return GNCPU_ERR_NULL_POINTER;
    const gncpu_status values = validate_values(p);
    if (values != GNCPU_OK) return values;
    if (!(p->eps >= 0.0) || isinf(p->eps)) return GNCPU_ERR_BAD_EPS;
    const bool given = p->given_mean != nullptr || p->given_rstd != nullptr;
    if (given && (p->given_mean == nullptr || p->given_rstd == nullptr ||
                  p->moments_mean != nullptr || p->moments_m2 != nullptr))
        return GNCPU_ERR_BAD_STATS;
    if (p->batch * p->channels * p->spatial == 0) return GNCPU_OK;
    // y may be NULL only to measure statistics.
    const bool measures = p->mean || p->rstd || p->moments_mean || p->moments_m2;
    if (p->x == nullptr || (p->y == nullptr && (given || !measures))) return GNCPU_ERR_NULL_POINTER;
    const size_t bytes = static_cast<size_t>(p->batch * p->channels * p->spatial) * dtype_size(p->dtype);
    if (p->x != p->y && overlaps(p->x, bytes, p->y, bytes)) return GNCPU_ERR_OVERLAP;
    return GNCPU_OK;
}

size_t param_size(int dtype) { return dtype == GNCPU_F64 ? sizeof(double) : sizeof(float); }

// An input read while grad_x is written must not overlap it; x and grad_y may
// be grad_x exactly (each value is read just before its own is written).
// The small inputs inside grad_x are copied aside instead (BackwardBuffers).
gncpu_status validate(const gncpu_backward_problem* p) {
    if (p == nullptr) return GNCPU_ERR_NULL_POINTER;
    const gncpu_status values = validate_values(p);
    if (values != GNCPU_OK) return values;
    const size_t param_bytes = static_cast<size_t>(p->channels) * param_size(p->dtype);
    if (overlaps(p->grad_weight, param_bytes, p->grad_bias, param_bytes)) return GNCPU_ERR_OVERLAP;
    if (p->batch * p->channels * p->spatial == 0) return GNCPU_OK;
    if (p->x == nullptr || p->grad_y == nullptr || p->mean == nullptr || p->rstd == nullptr)
        return GNCPU_ERR_NULL_POINTER;
    const size_t bytes = static_cast<size_t>(p->batch * p->channels * p->spatial) * dtype_size(p->dtype);
    if (p->grad_x != p->x && overlaps(p->grad_x, bytes, p->x, bytes)) return GNCPU_ERR_OVERLAP;
    if (p->grad_x != p->grad_y && overlaps(p->grad_x, bytes, p->grad_y, bytes)) return GNCPU_ERR_OVERLAP;
    if (overlaps(p->grad_weight, param_bytes, p->grad_x, bytes) ||
        overlaps(p->grad_bias, param_bytes, p->grad_x, bytes))
        return GNCPU_ERR_OVERLAP;
    return GNCPU_OK;
}

// The problem as it runs: weight and bias copied aside when they lie inside
// y (they would be overwritten before every group has read them), and the
// statistics computed aside when they lie inside x, y, weight or bias (they
// would be written while those are still being read).
template <class C>
struct PrivateBuffers {
    std::vector<C> weight, bias, mean, rstd;
    std::vector<double> given_mean, given_rstd, moments_mean, moments_m2;

    // Redirects p's pointers where needed; may throw std::bad_alloc.
    void redirect(gncpu_problem& p, size_t value_bytes) {
        const size_t param_bytes = static_cast<size_t>(p.channels) * sizeof(C);
        const size_t stats_bytes = static_cast<size_t>(p.batch * p.num_groups) * sizeof(C);
        const size_t y_bytes = static_cast<size_t>(p.batch * p.channels * p.spatial) * value_bytes;
        const void* inputs[] = {p.x, p.y, p.weight, p.bias};
        const size_t input_bytes[] = {y_bytes, y_bytes, param_bytes, param_bytes};
        if (p.weight && overlaps(p.weight, param_bytes, p.y, y_bytes)) {
            weight.assign(static_cast<const C*>(p.weight), static_cast<const C*>(p.weight) + p.channels);
            p.weight = weight.data();
        }
        if (p.bias && overlaps(p.bias, param_bytes, p.y, y_bytes)) {
            bias.assign(static_cast<const C*>(p.bias), static_cast<const C*>(p.bias) + p.channels);
            p.bias = bias.data();
        }
        bool stats_alias = false;
        for (int i = 0; i < 4; ++i) {
            stats_alias |= p.mean && overlaps(p.mean, stats_bytes, inputs[i], input_bytes[i]);
            stats_alias |= p.rstd && overlaps(p.rstd, stats_bytes, inputs[i], input_bytes[i]);
        }
        const size_t groups = static_cast<size_t>(p.batch * p.num_groups);
        const size_t moments_bytes = groups * sizeof(double);
        for (int i = 0; i < 4; ++i) {
            stats_alias |= p.moments_mean && overlaps(p.moments_mean, moments_bytes, inputs[i], input_bytes[i]);
            stats_alias |= p.moments_m2 && overlaps(p.moments_m2, moments_bytes, inputs[i], input_bytes[i]);
        }
        if (stats_alias) {
            if (p.mean) mean.resize(groups), p.mean = mean.data();
            if (p.rstd) rstd.resize(groups), p.rstd = rstd.data();
            if (p.moments_mean) moments_mean.resize(groups), p.moments_mean = moments_mean.data();
            if (p.moments_m2) moments_m2.resize(groups), p.moments_m2 = moments_m2.data();
        }
        // Given statistics are read by every thread while y, mean and rstd are written.
        const auto written_over = [&](const double* given) {
            return overlaps(given, moments_bytes, p.y, y_bytes) ||
                   overlaps(given, moments_bytes, p.mean, stats_bytes) ||
                   overlaps(given, moments_bytes, p.rstd, stats_bytes);
        };
        if (p.given_mean && written_over(p.given_mean)) {
            given_mean.assign(p.given_mean, p.given_mean + groups);
            p.given_mean = given_mean.data();
        }
        if (p.given_rstd && written_over(p.given_rstd)) {
            given_rstd.assign(p.given_rstd, p.given_rstd + groups);
            p.given_rstd = given_rstd.data();
        }
    }

    // Copies the statistics computed aside to where the caller wants them.
    void deliver(const gncpu_problem& caller) const {
        if (!mean.empty()) memcpy(caller.mean, mean.data(), mean.size() * sizeof(C));
        if (!rstd.empty()) memcpy(caller.rstd, rstd.data(), rstd.size() * sizeof(C));
        const size_t bytes = moments_mean.size() * sizeof(double);
        if (!moments_mean.empty()) memcpy(caller.moments_mean, moments_mean.data(), bytes);
        if (!moments_m2.empty()) memcpy(caller.moments_m2, moments_m2.data(), bytes);
    }
};

// Statistics of empty groups are undefined: NaN, as 0/0 would give.
// Moments of empty groups: mean 0 and M2 0 over a count of 0, the identity
// of Chan's combination.
// Given statistics come back as given.
template <class C>
void write_empty_stats(const gncpu_problem& p) {
    const int64_t count = p.batch * p.num_groups;
    for (int64_t i = 0; p.mean && i < count; ++i)
        static_cast<C*>(p.mean)[i] = p.given_mean ? saturate<C>(p.given_mean[i]) : static_cast<C>(NAN);
    for (int64_t i = 0; p.rstd && i < count; ++i)
        static_cast<C*>(p.rstd)[i] = p.given_rstd ? saturate<C>(p.given_rstd[i]) : static_cast<C>(NAN);
    for (int64_t i = 0; p.moments_mean && i < count; ++i) p.moments_mean[i] = 0.0;
    for (int64_t i = 0; p.moments_m2 && i < count; ++i) p.moments_m2[i] = 0.0;
}

// The backward problem as it runs: weight, bias and the statistics copied
// aside when they lie inside grad_x (read by every item while others write),
// and the per-(example, channel) sums of the parameters' gradients.
template <class C>
struct BackwardBuffers {
    std::vector<C> weight, bias, mean, rstd;
    std::vector<double> sums_dz, sums_dz_xhat;

    void redirect(gncpu_backward_problem& p, size_t value_bytes) {
        const size_t dx_bytes = static_cast<size_t>(p.batch * p.channels * p.spatial) * value_bytes;
        const auto aside = [&](const void*& ptr, std::vector<C>& copy, int64_t count) {
            if (ptr && overlaps(ptr, static_cast<size_t>(count) * sizeof(C), p.grad_x, dx_bytes)) {
                copy.assign(static_cast<const C*>(ptr), static_cast<const C*>(ptr) + count);
                ptr = copy.data();
            }
        };
        aside(p.weight, weight, p.channels);
        aside(p.bias, bias, p.channels);
        aside(p.mean, mean, p.batch * p.num_groups);
        aside(p.rstd, rstd, p.batch * p.num_groups);
        sums_dz.resize(static_cast<size_t>(p.batch * p.channels));
        sums_dz_xhat.resize(static_cast<size_t>(p.batch * p.channels));
    }

    // grad_weight and grad_bias: the sums over the batch, in example order.
    void deliver(const gncpu_backward_problem& p) const {
        C* grad_weight = static_cast<C*>(p.grad_weight);
        C* grad_bias = static_cast<C*>(p.grad_bias);
        for (int64_t c = 0; c < p.channels; ++c) {
            double dw = 0.0, db = 0.0;
            for (int64_t n = 0; n < p.batch; ++n) {
                dw += sums_dz_xhat[n * p.channels + c];
                db += sums_dz[n * p.channels + c];
            }
            if (grad_weight) grad_weight[c] = saturate<C>(dw);
            if (grad_bias) grad_bias[c] = saturate<C>(db);
        }
    }
};

// What `run` needs to know of a direction: its problem, its buffers
// (redirect, deliver), what it writes for an empty tensor, and its layouts.
template <class Stored, class C>
struct Forward {
    using Problem = gncpu_problem;
    using Buffers = PrivateBuffers<C>;
    static void empty(const Problem& p) { write_empty_stats<C>(p); }
    static NchwLayout<Stored, C> nchw(const KernelsFor<Stored, C>& k, const Problem& q, Buffers&) {
        return NchwLayout<Stored, C>(k.nchw, q);
    }
    static NhwcLayout<Stored, C> nhwc(const KernelsFor<Stored, C>& k, const Problem& q, Buffers&) {
        return NhwcLayout<Stored, C>(k.nhwc, q);
    }
};

template <class Stored, class C>
struct Backward {
    using Problem = gncpu_backward_problem;
    using Buffers = BackwardBuffers<C>;
    static void empty(const Problem& p) {  // sums over nothing
        for (int64_t c = 0; c < p.channels; ++c) {
            if (p.grad_weight) static_cast<C*>(p.grad_weight)[c] = C(0);
            if (p.grad_bias) static_cast<C*>(p.grad_bias)[c] = C(0);
        }
    }
    static NchwGradLayout<Stored, C> nchw(const KernelsFor<Stored, C>& k, const Problem& q, Buffers& b) {
        return NchwGradLayout<Stored, C>(k, q, b.sums_dz.data(), b.sums_dz_xhat.data());
    }
    static NhwcGradLayout<Stored, C> nhwc(const KernelsFor<Stored, C>& k, const Problem& q, Buffers& b) {
        return NhwcGradLayout<Stored, C>(k, q, b.sums_dz.data(), b.sums_dz_xhat.data());
    }
};

// One call in direction D: the buffers it needs aside, the scheduler over the
// layout the problem names, and the results delivered where the caller wants
// them (only when every item succeeded).
template <template <class, class> class D, class Stored, class C>
gncpu_status run(const KernelsFor<Stored, C>& kernels, const typename D<Stored, C>::Problem& caller) {
    using Direction = D<Stored, C>;
    const int64_t total = caller.batch * caller.channels * caller.spatial;
    if (total == 0) {
        Direction::empty(caller);
        return GNCPU_OK;
    }
    typename Direction::Problem q = caller;
    typename Direction::Buffers buffers;
    try {
        buffers.redirect(q, sizeof(Stored));
    } catch (const std::bad_alloc&) {
        return GNCPU_ERR_OUT_OF_MEMORY;
    }
    const int threads = team_size_now(threads_for(total, q.num_threads));
    gncpu_status status = GNCPU_ERR_BAD_LAYOUT;
    switch (q.layout) {
        case GNCPU_NCHW: status = schedule(Direction::nchw(kernels, q, buffers), threads); break;
        case GNCPU_NHWC: status = schedule(Direction::nhwc(kernels, q, buffers), threads); break;
        case GNCPU_LAYOUT_COUNT: break;
    }
    if (status == GNCPU_OK) buffers.deliver(caller);
    return status;
}

// The entry points: the problem validated, then run on the active ISA's
// kernels for its dtype.
template <template <class, class> class D, class Problem>
gncpu_status validated_run(const Problem* problem) {
    const gncpu_status status = validate(problem);
    if (status != GNCPU_OK) return status;
    // Read once: a concurrent gncpu_set_isa never mixes two ISAs in one call.
    const KernelTable& table = active_kernels();
    switch (problem->dtype) {
#define GNCPU_DTYPE_CASE(value, field, Stored, Compute, storage) \
    case value: return run<D>(*table.field, *problem);
        GNCPU_DTYPE_LIST(GNCPU_DTYPE_CASE)
#undef GNCPU_DTYPE_CASE
        case GNCPU_DTYPE_COUNT: break;
    }
    return GNCPU_ERR_BAD_DTYPE;
}

}  // namespace
}  // namespace gncpu

extern "C" {

gncpu_status gncpu_check_problem(const gncpu_problem* problem) {
    return gncpu::validate(problem);
}

gncpu_status gncpu_group_norm(const gncpu_problem* problem) {
    return gncpu::validated_run<gncpu::Forward>(problem);
}

gncpu_status gncpu_check_backward_problem(const gncpu_backward_problem* problem) {
    return gncpu::validate(problem);
}

gncpu_status gncpu_group_norm_backward(const gncpu_backward_problem* problem) {
    return gncpu::validated_run<gncpu::Backward>(problem);
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
        case GNCPU_ERR_OVERLAP: return "an output overlaps an input other than exactly";
        case GNCPU_ERR_BAD_STATS:
            return "given statistics need both a mean and an rstd, and cannot be measured too";
    }
    return "unknown status";
}

const char* gncpu_activation_name(int activation) {
    switch (activation) {
#define GNCPU_NAME_CASE(id, name) \
    case GNCPU_ACT_##id: return #name;
        GNCPU_ACTIVATION_NAMES(GNCPU_NAME_CASE)
#undef GNCPU_NAME_CASE
    }
    return nullptr;
}

const char* gncpu_dtype_name(int dtype) {
    switch (dtype) {
#define GNCPU_NAME_CASE(id, name) \
    case GNCPU_##id: return #name;
        GNCPU_DTYPE_NAMES(GNCPU_NAME_CASE)
#undef GNCPU_NAME_CASE
    }
    return nullptr;
}

}  // extern "C"
