// Threads, tuning knobs and fork safety: what the scheduler asks of the
// machine, in one place (runtime.cpp holds the measurements behind each knob).
#ifndef GNCPU_RUNTIME_H
#define GNCPU_RUNTIME_H

#include <stdint.h>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace gncpu {

// Bytes of x one thread keeps in cache between the statistics and the
// normalisation of the same values.
int64_t cache_budget_bytes();

// Above this many bytes of x + y the output is written with non-temporal stores.
int64_t streaming_threshold_bytes();

// How many threads to use for `work_elements` values when `requested` are
// allowed: fewer for small tensors, one in a forked child.
int threads_for(int64_t work_elements, int requested);

// This thread's index in its team and the team's size, inside a parallel
// region: the team may be smaller than asked for, so work is split by these.
struct TeamPosition {
    int64_t index;
    int64_t size;
};

inline TeamPosition team_position() {
#if defined(_OPENMP)
    return TeamPosition{omp_get_thread_num(), omp_get_num_threads()};
#else
    return TeamPosition{0, 1};
#endif
}

}  // namespace gncpu

#endif  // GNCPU_RUNTIME_H
