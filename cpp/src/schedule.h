// The one scheduler: two sweeps over fixed blocks, the first's results
// combined in block order between them, for every layout and both directions
// (forward: statistics, then the normalisation; backward: per-channel sums of
// the gradient, then dx).  Compiled for the baseline CPU; the hot loops are
// the active ISA's.
//
// A Layout cuts the tensor into *items* whose results are independent (NCHW:
// one group; NHWC: one example, all of its groups), and each item into fixed
// *blocks* that depend on the sizes only, never on the thread count: that is
// what makes the output bitwise identical for any number of threads.
// It provides:
//   Partial, Accumulator      what the first sweep yields per block, and its
//                             combination over an item's blocks
//   Worker                    per-thread scratch, allocated before anything is written
//   items, blocks_per_item    the cut
//   partials_per_block()      Partial entries per block
//   accumulators_per_item()
//   item_bytes()              bytes the second sweep reads again, for the cache budget
//   reserve(Worker&)          may throw std::bad_alloc
//   block_partials(Worker&, item, block, Partial* out)     the first sweep of a block
//   accumulate(Accumulator*, block, const Partial*)         called in block order
//   begin_item(Worker&, item, const Accumulator*, bool owner)
//                             the item's results (written by the owner, the
//                             thread that covers block 0) and the parameters
//                             of its second sweep
//   finish_blocks(Worker&, item, first_block, end_block)   the second sweep
#ifndef GNCPU_SCHEDULE_H
#define GNCPU_SCHEDULE_H

#include <stdint.h>

#include <new>
#include <vector>

#include "gncpu/gncpu.h"
#include "kernel_table.h"
#include "moments.h"
#include "runtime.h"

namespace gncpu {

// Threads whose finish times the contention back-off compares (runtime.h).
constexpr int kMaxTeamWatch = 64;

// The problem's pointers, typed: values held as Stored, parameters and statistics as C.
template <class Stored, class C>
struct Tensors {
    const Stored* x;
    Stored* y;        // null: statistics only
    const C* weight;  // may be null: all ones
    const C* bias;    // may be null: all zeros
    C* mean_out;      // may be null
    C* rstd_out;      // may be null
    double* moments_mean_out;  // may be null
    double* moments_m2_out;    // may be null
    const double* given_mean;  // with given_rstd, the statistics to use (not measured)
    const double* given_rstd;
    double eps;

    explicit Tensors(const gncpu_problem& p)
        : x(static_cast<const Stored*>(p.x)), y(static_cast<Stored*>(p.y)),
          weight(static_cast<const C*>(p.weight)), bias(static_cast<const C*>(p.bias)),
          mean_out(static_cast<C*>(p.mean)), rstd_out(static_cast<C*>(p.rstd)),
          moments_mean_out(p.moments_mean), moments_m2_out(p.moments_m2),
          given_mean(p.given_mean), given_rstd(p.given_rstd), eps(p.eps) {}

    static constexpr bool kTakesGivenStats = true;  // (the backward's statistics are always given)
    bool stats_given() const { return given_mean != nullptr; }

    // An item's statistics, (item, group) order, where the caller wants them.
    void write_stats(int64_t item, int64_t groups, const GroupStats* stats) const {
        for (int64_t g = 0; g < groups; ++g) {
            const int64_t i = item * groups + g;
            if (mean_out) mean_out[i] = saturate<C>(stats[g].mean);
            if (rstd_out) rstd_out[i] = saturate<C>(stats[g].rstd);
            if (moments_mean_out) moments_mean_out[i] = stats[g].mean;
            if (moments_m2_out) moments_m2_out[i] = stats[g].m2;
        }
    }

    // Group `index`'s given statistics, for `count` values: M2 is not given,
    // and count / rstd^2 (at least M2, as var + eps >= var) bounds its
    // deviations where the layouts ask (float_normalize_unreliable).
    GroupStats given(int64_t index, int64_t count) const {
        const double rstd = given_rstd[index];
        return GroupStats{given_mean[index], rstd, static_cast<double>(count) / (rstd * rstd)};
    }
};

// Whether an output of `elements` values of Stored is written with streaming
// stores (the threshold is explained in runtime.cpp).
template <class Stored>
bool streams_output(int64_t elements) {
    return 2 * elements * static_cast<int64_t>(sizeof(Stored)) > streaming_threshold_bytes();
}

// Each on its own cache lines (see CacheLineAllocator).
template <class Layout>
struct alignas(kCacheLineBytes) ThreadState {
    typename Layout::Worker layout;
    ThreadVector<typename Layout::Accumulator> accumulators;  // one item's
    ThreadVector<typename Layout::Partial> block;              // one block's

    void reserve(const Layout& layout_policy) {
        layout_policy.reserve(layout);
        grow(accumulators, static_cast<size_t>(layout_policy.accumulators_per_item()));
        grow(block, static_cast<size_t>(layout_policy.partials_per_block()));
    }

    void clear_accumulators(const Layout& layout_policy) {
        using Accumulator = typename Layout::Accumulator;
        for (int64_t a = 0; a < layout_policy.accumulators_per_item(); ++a) accumulators[a] = Accumulator{};
    }
};

// A whole item on one thread: the first sweep, then the second while the
// item is still in L2.  (Tried and measured on the forward: interleaving the
// next group's statistics with this group's normalisation is 10-20% slower,
// two streams thrash L1/L2; taking the statistics of several small groups
// before normalising them gained nothing measurable.)
template <class Layout>
void process_item(const Layout& L, ThreadState<Layout>& s, int64_t item) {
    s.clear_accumulators(L);
    for (int64_t b = 0; b < L.blocks_per_item; ++b) {
        L.block_partials(s.layout, item, b, s.block.data());
        L.accumulate(s.accumulators.data(), b, s.block.data());
    }
    L.begin_item(s.layout, item, s.accumulators.data(), true);
    L.finish_blocks(s.layout, item, 0, L.blocks_per_item);
}

// How long each thread of a team waited for the others (at the barriers and
// at the end of the region), for the contention back-off (runtime.h).
struct TeamClock {
    int64_t started_ns = monotonic_ns();
    int64_t finished_ns[kMaxTeamWatch] = {};
    int64_t waited_ns[kMaxTeamWatch] = {};
    int team = 1;

    bool watched(const TeamPosition& me) const { return me.index < kMaxTeamWatch; }
    // Around a barrier: returns when the wait began.
    int64_t wait_begins() const { return monotonic_ns(); }
    void wait_ends(const TeamPosition& me, int64_t began_ns) {
        if (watched(me)) waited_ns[me.index] += monotonic_ns() - began_ns;
    }
    void finish(const TeamPosition& me) {
        if (watched(me)) finished_ns[me.index] = monotonic_ns();
        if (me.index == 0) team = me.size < kMaxTeamWatch ? static_cast<int>(me.size) : kMaxTeamWatch;
    }
    void report() const {
        if (team <= 1) return;
        int64_t last = finished_ns[0];
        for (int t = 1; t < team; ++t) last = finished_ns[t] > last ? finished_ns[t] : last;
        int64_t longest_wait = 0;
        for (int t = 0; t < team; ++t) {
            const int64_t waited = waited_ns[t] + (last - finished_ns[t]);
            longest_wait = waited > longest_wait ? waited : longest_wait;
        }
        report_team_wait(last - started_ns, longest_wait);
    }
};

template <class Layout>
void run_whole_items(const Layout& L, int threads, ThreadState<Layout>* states) {
    if (threads <= 1) {
        for (int64_t item = 0; item < L.items; ++item) process_item(L, states[0], item);
        return;
    }
#if defined(_OPENMP)
    TeamClock clock;
    const FloatingPointModes caller_modes = FloatingPointModes::of_this_thread();
#pragma omp parallel num_threads(threads)
    {
        const ScopedFloatingPointModes modes(caller_modes);
        // Contiguous ranges of items, as schedule(static) would give.
        const TeamPosition me = team_position();
        for (int64_t item = L.items * me.index / me.size; item < L.items * (me.index + 1) / me.size;
             ++item) {
            process_item(L, states[me.index], item);
        }
        clock.finish(me);
    }
    clock.report();
#endif
}

// Calls each(item, b0, b1) for the blocks [lo, hi) of a run of items of
// blocks_per_item blocks each: once per item they touch, in order, with the
// item's blocks [b0, b1) among them (b0 == 0: the span holds its first block,
// and its thread writes the item's statistics out).
template <class Each>
void for_item_spans(int64_t lo, int64_t hi, int64_t blocks_per_item, Each&& each) {
    for (int64_t u = lo; u < hi;) {
        const int64_t item = u / blocks_per_item;
        const int64_t first = item * blocks_per_item;
        const int64_t stop = hi < first + blocks_per_item ? hi : first + blocks_per_item;
        each(item, u - first, stop - first);
        u = stop;
    }
}

// Items too large for one core's cache, or too few to keep every thread busy,
// are cut at block boundaries and spread over all threads, one batch of items
// at a time: every thread takes the first sweep of its blocks, all meet at a
// barrier, then each takes the second sweep of the same blocks, still in its
// own cache.
template <class Layout>
void run_batches(const Layout& L, int threads, int64_t items_per_batch,
                 typename Layout::Partial* scratch, ThreadState<Layout>* states) {
    using Partial = typename Layout::Partial;
    const int64_t groups = L.partials_per_block();
    const int64_t batches = (L.items + items_per_batch - 1) / items_per_batch;
    const int64_t slot_stride = items_per_batch * L.blocks_per_item * groups;
    (void)threads;  // unused without OpenMP
    TeamClock clock;
    const FloatingPointModes caller_modes = FloatingPointModes::of_this_thread();
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads)
#endif
    {
        const ScopedFloatingPointModes modes(caller_modes);
        const TeamPosition me = team_position();
        ThreadState<Layout>& s = states[me.index];
        for (int64_t batch = 0; batch < batches; ++batch) {
            const int64_t i0 = batch * items_per_batch;
            const int64_t i1 = i0 + items_per_batch < L.items ? i0 + items_per_batch : L.items;
            const int64_t units = (i1 - i0) * L.blocks_per_item;
            // Two slot sets, alternating: a thread may start the next batch's
            // first sweep while another still reads this batch's results.
            Partial* slots = scratch + (batch & 1) * slot_stride;
            const int64_t lo = units * me.index / me.size;
            const int64_t hi = units * (me.index + 1) / me.size;
            for (int64_t u = lo; u < hi; ++u) {
                L.block_partials(s.layout, i0 + u / L.blocks_per_item, u % L.blocks_per_item,
                                 slots + u * groups);
            }
#if defined(_OPENMP)
            const int64_t wait_began = clock.wait_begins();
#pragma omp barrier
            clock.wait_ends(me, wait_began);
#endif
            for_item_spans(lo, hi, L.blocks_per_item, [&](int64_t local, int64_t b0, int64_t b1) {
                const Partial* item_slots = slots + local * L.blocks_per_item * groups;
                s.clear_accumulators(L);
                for (int64_t b = 0; b < L.blocks_per_item; ++b)
                    L.accumulate(s.accumulators.data(), b, item_slots + b * groups);
                L.begin_item(s.layout, i0 + local, s.accumulators.data(), b0 == 0);
                L.finish_blocks(s.layout, i0 + local, b0, b1);
            });
        }
        clock.finish(me);
    }
    clock.report();
}

// With the statistics given there is no first sweep: the blocks of every
// item, in order, are cut into one contiguous range per thread, and each
// thread normalises its ranges (the thread holding an item's first block
// writes its statistics out).
template <class Layout>
void run_given_stats(const Layout& L, int threads, ThreadState<Layout>* states) {
    const int64_t units = L.items * L.blocks_per_item;
    (void)threads;  // unused without OpenMP
    TeamClock clock;
    const FloatingPointModes caller_modes = FloatingPointModes::of_this_thread();
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads) if (threads > 1)
#endif
    {
        const ScopedFloatingPointModes modes(caller_modes);
        const TeamPosition me = team_position();
        ThreadState<Layout>& s = states[me.index];
        for_item_spans(units * me.index / me.size, units * (me.index + 1) / me.size,
                       L.blocks_per_item, [&](int64_t item, int64_t b0, int64_t b1) {
                           L.begin_given(s.layout, item, b0 == 0);
                           L.finish_blocks(s.layout, item, b0, b1);
                       });
        clock.finish(me);
    }
    clock.report();
}

// Runs a layout's problem on up to `threads` threads.  Per-thread scratch is
// allocated before anything is written: if it cannot be, nothing is written
// and the call fails with GNCPU_ERR_OUT_OF_MEMORY.  The shared slots of the
// batched schedule are optional: without them, whole items per thread give
// the same result.
template <class Layout>
gncpu_status schedule(const Layout& L, int threads) {
    // Grow-only per calling thread: no allocation once warmed up.
    thread_local std::vector<ThreadState<Layout>> states;
    try {
        if (states.size() < static_cast<size_t>(threads)) states.resize(static_cast<size_t>(threads));
        for (int t = 0; t < threads; ++t) states[t].reserve(L);
    } catch (const std::bad_alloc&) {
        return GNCPU_ERR_OUT_OF_MEMORY;
    }
    if constexpr (Layout::kTakesGivenStats) {
        if (L.stats_given()) {
            run_given_stats(L, threads, states.data());
            return GNCPU_OK;
        }
    }
    const int64_t budget = cache_budget_bytes();
    // Whole items per thread need no barrier; use them when every thread gets
    // the same number of items, or enough that the remainder is small.
    const bool items_fit = L.item_bytes() <= budget;
    const bool balanced = L.items % threads == 0 || L.items >= 8 * threads;
    if (threads == 1 || (items_fit && balanced)) {
        run_whole_items(L, threads, states.data());
        return GNCPU_OK;
    }
    // (A forced budget may be huge: no int64 overflow.)
    int64_t items_per_batch = budget > INT64_MAX / threads ? L.items : (threads * budget) / L.item_bytes();
    if (items_per_batch < 1) items_per_batch = 1;
    if (items_per_batch > L.items) items_per_batch = L.items;
    thread_local std::vector<typename Layout::Partial> slots;
    const size_t needed =
        static_cast<size_t>(2 * items_per_batch * L.blocks_per_item * L.partials_per_block());
    try {
        if (slots.size() < needed) slots.resize(needed);
    } catch (const std::bad_alloc&) {
        run_whole_items(L, threads, states.data());
        return GNCPU_OK;
    }
    run_batches(L, threads, items_per_batch, slots.data(), states.data());
    return GNCPU_OK;
}

}  // namespace gncpu

#endif  // GNCPU_SCHEDULE_H
