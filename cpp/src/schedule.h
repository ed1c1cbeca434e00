// The one scheduler: statistics of fixed blocks, combined in block order,
// then the normalisation, for every layout (layout_nchw.h, layout_nhwc.h).
// Compiled for the baseline CPU; the hot loops are the active ISA's.
//
// A Layout cuts the tensor into *items* whose statistics are independent
// (NCHW: one group; NHWC: one example, all of its groups), and each item into
// fixed *blocks* that depend on the sizes only, never on the thread count:
// that is what makes the output bitwise identical for any number of threads.
// It provides:
//   Worker                    per-thread scratch, allocated before anything is written
//   items, blocks_per_item    the cut
//   groups_per_item()         BlockMoments per block (NCHW 1, NHWC num_groups)
//   item_bytes()              bytes of x per item, for the cache budget
//   block_count(b)            values behind each of block b's moments
//   reserve(Worker&)          may throw std::bad_alloc
//   block_moments(Worker&, item, block, BlockMoments* out)
//   prepare(Worker&, item, const GroupStats*)   per-channel parameters of an item
//   normalize(Worker&, item, first_block, end_block)
// and the members of Tensors below.
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

// The problem's pointers, typed: values held as S, parameters and statistics as C.
template <class S, class C>
struct Tensors {
    const S* x;
    S* y;
    const C* weight;  // may be null: all ones
    const C* bias;    // may be null: all zeros
    C* mean_out;      // may be null
    C* rstd_out;      // may be null
    double eps;

    explicit Tensors(const gncpu_problem& p)
        : x(static_cast<const S*>(p.x)), y(static_cast<S*>(p.y)),
          weight(static_cast<const C*>(p.weight)), bias(static_cast<const C*>(p.bias)),
          mean_out(static_cast<C*>(p.mean)), rstd_out(static_cast<C*>(p.rstd)), eps(p.eps) {}
};

// Whether an output of `elements` values of S is written with streaming
// stores (the threshold is explained in runtime.cpp).
template <class S>
bool streams_output(int64_t elements) {
    return 2 * elements * static_cast<int64_t>(sizeof(S)) > streaming_threshold_bytes();
}

// Each on its own cache lines (see CacheLineAllocator).
template <class Layout>
struct alignas(kCacheLineBytes) ThreadState {
    typename Layout::Worker layout;
    ThreadVector<MomentsAccumulator> accumulators;  // one per group of the item
    ThreadVector<BlockMoments> block;               // one block's moments
    ThreadVector<GroupStats> stats;

    void reserve(const Layout& layout_policy) {
        layout_policy.reserve(layout);
        const size_t groups = static_cast<size_t>(layout_policy.groups_per_item());
        if (stats.size() < groups) accumulators.resize(groups), block.resize(groups), stats.resize(groups);
    }
};

// The statistics of `item` from its accumulators, then its normalisation over
// [first_block, end_block).  The thread that covers block 0 writes the statistics.
template <class Layout>
void normalize_item(const Layout& L, ThreadState<Layout>& s, int64_t item, int64_t first_block,
                    int64_t end_block) {
    const int64_t groups = L.groups_per_item();
    for (int64_t g = 0; g < groups; ++g) s.stats[g] = s.accumulators[g].finish(L.eps);
    if (first_block == 0) {
        for (int64_t g = 0; g < groups; ++g) {
            using C = typename Layout::Compute;
            if (L.mean_out) L.mean_out[item * groups + g] = saturate<C>(s.stats[g].mean);
            if (L.rstd_out) L.rstd_out[item * groups + g] = saturate<C>(s.stats[g].rstd);
        }
    }
    L.prepare(s.layout, item, s.stats.data());
    L.normalize(s.layout, item, first_block, end_block);
}

// A whole item on one thread: statistics, then the normalisation while the
// item is still in L2.  (Tried and measured: interleaving the next group's
// statistics with this group's normalisation is 10-20% slower, two streams
// thrash L1/L2; taking the statistics of several small groups before
// normalising them gained nothing measurable.)
template <class Layout>
void process_item(const Layout& L, ThreadState<Layout>& s, int64_t item) {
    const int64_t groups = L.groups_per_item();
    for (int64_t g = 0; g < groups; ++g) s.accumulators[g] = MomentsAccumulator{};
    for (int64_t b = 0; b < L.blocks_per_item; ++b) {
        L.block_moments(s.layout, item, b, s.block.data());
        const int64_t count = L.block_count(b);
        for (int64_t g = 0; g < groups; ++g) s.accumulators[g].add(s.block[g], count);
    }
    normalize_item(L, s, item, 0, L.blocks_per_item);
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

// Items too large for one core's cache, or too few to keep every thread busy,
// are cut at block boundaries and spread over all threads, one batch of items
// at a time: every thread takes the moments of its blocks, all meet at a
// barrier, then each normalises the same blocks, still in its own cache.
template <class Layout>
void run_batches(const Layout& L, int threads, int64_t items_per_batch, BlockMoments* scratch,
                 ThreadState<Layout>* states) {
    const int64_t groups = L.groups_per_item();
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
            // moments while another still reads this batch's.
            BlockMoments* slots = scratch + (batch & 1) * slot_stride;
            const int64_t lo = units * me.index / me.size;
            const int64_t hi = units * (me.index + 1) / me.size;
            for (int64_t u = lo; u < hi; ++u) {
                L.block_moments(s.layout, i0 + u / L.blocks_per_item, u % L.blocks_per_item,
                                slots + u * groups);
            }
#if defined(_OPENMP)
            const int64_t wait_began = clock.wait_begins();
#pragma omp barrier
            clock.wait_ends(me, wait_began);
#endif
            for (int64_t u = lo; u < hi;) {
                const int64_t local = u / L.blocks_per_item;
                const int64_t first = local * L.blocks_per_item;
                const int64_t stop = hi < first + L.blocks_per_item ? hi : first + L.blocks_per_item;
                const BlockMoments* item_slots = slots + first * groups;
                for (int64_t g = 0; g < groups; ++g) s.accumulators[g] = MomentsAccumulator{};
                for (int64_t b = 0; b < L.blocks_per_item; ++b) {
                    const int64_t count = L.block_count(b);
                    for (int64_t g = 0; g < groups; ++g)
                        s.accumulators[g].add(item_slots[b * groups + g], count);
                }
                normalize_item(L, s, i0 + local, u - first, stop - first);
                u = stop;
            }
        }
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
    thread_local std::vector<BlockMoments> slots;
    const size_t needed =
        static_cast<size_t>(2 * items_per_batch * L.blocks_per_item * L.groups_per_item());
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
