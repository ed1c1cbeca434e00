// The GroupNorm algorithm: scheduling, statistics, scale/offset.  Compiled for
// the baseline CPU; the hot loops are the active ISA's (kernel_loops.inl).
// cpp/README.md explains the design; the comments here say why each piece is
// the way it is.
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <atomic>
#include <new>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

#include "cpu_features.h"
#include "dispatch.h"
#include "gncpu/gncpu.h"

namespace gncpu {
namespace {

// Statistics are taken over fixed blocks of a group, then combined in block
// order.  The blocks do not depend on the thread count, which is what makes
// the output bitwise identical whatever the number of threads.  8 KiB keeps a
// block in L1 between its two passes.
constexpr int64_t kBlockBytes = 8 * 1024;

// Rows (channels) whose scale and offset are prepared per kernel call; they
// live on the stack, so no call allocates.
constexpr int64_t kRowsPerCall = 256;

// Below this many elements per thread, waking a team costs more than it saves.
constexpr int64_t kDefaultMinElementsPerThread = 32 * 1024;

std::atomic<int64_t> g_cache_budget_override{0};
std::atomic<int64_t> g_min_elements_override{0};
std::atomic<int64_t> g_streaming_override{0};

int64_t cache_budget_bytes() {
    const int64_t forced = g_cache_budget_override.load(std::memory_order_relaxed);
    if (forced > 0) return forced;
    // Half of L2: the other half holds the output lines being written.
    static const int64_t budget = l2_cache_bytes() / 2;
    return budget;
}

// Above this many bytes of x + y the output cannot stay cached anyway: write it
// with non-temporal stores.  Below it, the next layer reads y from cache, and
// streaming would push it out (measured: 1.4x -> 1.1x of a copy on a 64 MiB
// tensor, slower on cache-sized ones).  The L3 a server part or a VM reports
// is shared by every core of the socket (480 MiB on a Xeon whose 2-vCPU VM
// keeps about 64 MiB: streaming wins from ~80 MiB of x + y, 1.6x -> 1.1x of a
// copy at 128 MiB), hence the cap.
constexpr int64_t kMaxStreamingThresholdBytes = int64_t{64} << 20;

int64_t streaming_threshold_bytes() {
    const int64_t forced = g_streaming_override.load(std::memory_order_relaxed);
    if (forced > 0) return forced;
    static const int64_t threshold = std::min(l3_cache_bytes(), kMaxStreamingThresholdBytes);
    return threshold;
}

// Whether an output of `elements` values of S is written with streaming stores.
template <class S>
bool streams_output(int64_t elements) {
    return 2 * elements * static_cast<int64_t>(sizeof(S)) > streaming_threshold_bytes();
}

int64_t min_elements_per_thread() {
    const int64_t forced = g_min_elements_override.load(std::memory_order_relaxed);
    return forced > 0 ? forced : kDefaultMinElementsPerThread;
}

// libgomp is not fork-safe (GCC PR 60035): a child forked after the parent
// used its thread pool hangs in the next parallel region.  multiprocessing
// forks by default on Linux, so a forked child runs gncpu serially instead.
std::atomic<bool> g_in_forked_child{false};

#if defined(__unix__) || defined(__APPLE__)
void mark_forked_child() { g_in_forked_child.store(true, std::memory_order_relaxed); }
const int g_fork_handler_registered = pthread_atfork(nullptr, nullptr, mark_forked_child);
#endif

int threads_for(int64_t work_elements, int requested) {
#if defined(_OPENMP)
    if (g_in_forked_child.load(std::memory_order_relaxed)) return 1;
    int64_t threads = requested < 1 ? 1 : requested;
    const int64_t useful = work_elements / min_elements_per_thread();
    if (threads > useful) threads = useful < 1 ? 1 : useful;
    return static_cast<int>(threads);
#else
    (void)work_elements;
    (void)requested;
    return 1;
#endif
}

gncpu_status check_arguments(const void* x, const void* y, int64_t batch, int64_t channels,
                             int64_t spatial, int64_t num_groups, double eps, int activation) {
    if (activation < 0 || activation >= kActivationCount) return GNCPU_ERR_BAD_ACTIVATION;
    if (batch < 0 || channels < 0 || spatial < 0) return GNCPU_ERR_BAD_SHAPE;
    if (num_groups <= 0 || channels % num_groups != 0) return GNCPU_ERR_BAD_GROUPS;
    if (!(eps >= 0.0) || isinf(eps)) return GNCPU_ERR_BAD_EPS;
    if (channels != 0 && batch > INT64_MAX / channels) return GNCPU_ERR_BAD_SHAPE;
    if (spatial != 0 && batch * channels > INT64_MAX / spatial) return GNCPU_ERR_BAD_SHAPE;
    if (batch * channels * spatial == 0) return GNCPU_OK;
    if (x == nullptr || y == nullptr) return GNCPU_ERR_NULL_POINTER;
    return GNCPU_OK;
}

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

template <class S, class C>
struct Problem {
    const S* x;       // values as stored: float, double, or 16-bit patterns
    S* y;
    const C* weight;  // may be null: all ones
    const C* bias;    // may be null: all zeros
    double eps;
    int64_t spatial;
    int64_t groups_per_example;
    int64_t channels_per_group;
    int64_t group_size;        // channels_per_group * spatial, contiguous
    int64_t total_groups;      // batch * groups_per_example
    int64_t block_len;         // elements per statistics block
    int64_t blocks_per_group;
    // normalize_rows for the activation, or its streaming twin for outputs
    // larger than the LLC.
    typename KernelsFor<S, C>::NormalizeRows normalize_rows;
    C* mean_out;  // may be null
    C* rstd_out;  // may be null

    int64_t block_size(int64_t block) const {
        const int64_t begin = block * block_len;
        const int64_t left = group_size - begin;
        return left < block_len ? left : block_len;
    }
};

struct GroupStats {
    double mean;
    double rstd;
};

// Chan, Golub & LeVeque's pairwise update, in double.
struct MomentsAccumulator {
    double count = 0.0;
    double mean = 0.0;
    double m2 = 0.0;

    void add(const BlockMoments& block, int64_t block_count) {
        const double n = static_cast<double>(block_count);
        if (count == 0.0) {
            count = n;
            mean = block.mean;
            m2 = block.m2;
            return;
        }
        const double total = count + n;
        const double delta = block.mean - mean;
        mean += delta * (n / total);
        m2 += block.m2 + delta * delta * (count * n / total);
        count = total;
    }

    GroupStats finish(double eps) const {
        const double variance = m2 / count;
        return GroupStats{mean, 1.0 / sqrt(variance + eps)};
    }
};

template <class S, class C>
GroupStats stats_from_blocks(const Problem<S, C>& p, const BlockMoments* blocks) {
    MomentsAccumulator acc;
    for (int64_t b = 0; b < p.blocks_per_group; ++b) acc.add(blocks[b], p.block_size(b));
    return acc.finish(p.eps);
}

template <class S, class C>
GroupStats stats_of_group(const KernelsFor<S, C>& k, const Problem<S, C>& p, int64_t group) {
    const S* x = p.x + group * p.group_size;
    MomentsAccumulator acc;
    for (int64_t b = 0; b < p.blocks_per_group; ++b) {
        const int64_t n = p.block_size(b);
        acc.add(k.block_moments(x + b * p.block_len, n), n);
    }
    return acc.finish(p.eps);
}

// Writes y over elements [begin, end) of one group.  The mean is held as
// center + residual: center = mean rounded to C, and the residual goes into
// the per-channel offset.  Computing (x - center) * scale + offset keeps the
// subtraction exact when |x| >> std, where folding the mean into the offset
// (x * scale + (bias - mean * scale)) would cancel catastrophically.
template <class S, class C>
void normalize_span(const Problem<S, C>& p, int64_t group,
                    const GroupStats& stats, int64_t begin, int64_t end) {
    const int64_t base = group * p.group_size;
    const int64_t first_channel = (group % p.groups_per_example) * p.channels_per_group;
    const C center = static_cast<C>(stats.mean);
    const double residual = stats.mean - static_cast<double>(center);
    const int64_t row_len = p.spatial;
    if (begin == 0 && p.mean_out) p.mean_out[group] = static_cast<C>(stats.mean);
    if (begin == 0 && p.rstd_out) p.rstd_out[group] = static_cast<C>(stats.rstd);

    C scale[kRowsPerCall];
    C offset[kRowsPerCall];
    auto prepare = [&](int64_t row, int64_t rows) {
        for (int64_t r = 0; r < rows; ++r) {
            const int64_t c = first_channel + row + r;
            const double a = stats.rstd * (p.weight ? static_cast<double>(p.weight[c]) : 1.0);
            const double b = p.bias ? static_cast<double>(p.bias[c]) : 0.0;
            scale[r] = static_cast<C>(a);
            offset[r] = static_cast<C>(b - residual * a);
        }
    };

    int64_t pos = begin;
    while (pos < end) {
        const int64_t row = pos / row_len;
        const int64_t col = pos - row * row_len;
        if (col != 0 || end - pos < row_len) {  // a cut row at either end of the span
            const int64_t len = (row_len - col < end - pos) ? row_len - col : end - pos;
            prepare(row, 1);
            p.normalize_rows(p.x + base + pos, p.y + base + pos, 1, len, center, scale, offset);
            pos += len;
            continue;
        }
        int64_t rows = (end - pos) / row_len;
        if (rows > kRowsPerCall) rows = kRowsPerCall;
        prepare(row, rows);
        p.normalize_rows(p.x + base + pos, p.y + base + pos, rows, row_len, center, scale, offset);
        pos += rows * row_len;
    }
}

// Groups too large for one core's cache, or too few to keep every thread busy,
// are cut at block boundaries and spread over all threads, one batch of
// groups at a time: every thread takes the moments of its blocks, all meet at
// a barrier, then each normalises the same blocks, still in its own cache.
template <class S, class C>
void run_split(const KernelsFor<S, C>& k, const Problem<S, C>& p, int threads,
               int64_t groups_per_batch, BlockMoments* scratch) {
    const int64_t batches = (p.total_groups + groups_per_batch - 1) / groups_per_batch;
    const int64_t slot_stride = groups_per_batch * p.blocks_per_group;
    (void)threads;  // unused without OpenMP
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads)
#endif
    {
        const TeamPosition me = team_position();
        const int64_t tid = me.index, team = me.size;
        for (int64_t batch = 0; batch < batches; ++batch) {
            const int64_t g0 = batch * groups_per_batch;
            const int64_t g1 = g0 + groups_per_batch < p.total_groups ? g0 + groups_per_batch
                                                                      : p.total_groups;
            const int64_t blocks = (g1 - g0) * p.blocks_per_group;
            // Two slot sets, alternating: a thread may start the next batch's
            // moments while another still reads this batch's.
            BlockMoments* slots = scratch + (batch & 1) * slot_stride;
            const int64_t lo = blocks * tid / team;
            const int64_t hi = blocks * (tid + 1) / team;

            for (int64_t b = lo; b < hi; ++b) {
                const int64_t group = g0 + b / p.blocks_per_group;
                const int64_t block = b % p.blocks_per_group;
                slots[b] = k.block_moments(p.x + group * p.group_size + block * p.block_len,
                                           p.block_size(block));
            }
#if defined(_OPENMP)
#pragma omp barrier
#endif
            for (int64_t b = lo; b < hi;) {
                const int64_t local_group = b / p.blocks_per_group;
                const int64_t group_first_block = local_group * p.blocks_per_group;
                const int64_t group_end_block = group_first_block + p.blocks_per_group;
                const int64_t stop = hi < group_end_block ? hi : group_end_block;
                const GroupStats stats = stats_from_blocks(p, slots + group_first_block);
                const int64_t begin = (b - group_first_block) * p.block_len;
                int64_t end = (stop - group_first_block) * p.block_len;
                if (end > p.group_size) end = p.group_size;
                normalize_span(p, g0 + local_group, stats, begin, end);
                b = stop;
            }
        }
    }
}

template <class S, class C>
void process_group_range(const KernelsFor<S, C>& k, const Problem<S, C>& p, int64_t first,
                         int64_t last) {
    // Statistics, then the normalisation while the group is still in L2.
    // (Tried and measured: interleaving the next group's statistics with this
    // group's normalisation is 10-20% slower, two streams thrash L1/L2; taking
    // the statistics of several small groups before normalising them gained
    // nothing measurable.)
    for (int64_t g = first; g < last; ++g) {
        const GroupStats stats = stats_of_group(k, p, g);
        normalize_span(p, g, stats, 0, p.group_size);
    }
}

template <class S, class C>
void run_whole_groups(const KernelsFor<S, C>& k, const Problem<S, C>& p, int threads) {
    if (threads <= 1) {
        process_group_range(k, p, 0, p.total_groups);
        return;
    }
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads)
    {
        // Contiguous ranges of groups, as schedule(static) would give.
        const TeamPosition me = team_position();
        process_group_range(k, p, p.total_groups * me.index / me.size,
                            p.total_groups * (me.index + 1) / me.size);
    }
#endif
}

template <class S, class C>
gncpu_status group_norm(const KernelsFor<S, C>& k, const S* x, S* y, int64_t batch,
                        int64_t channels, int64_t spatial, int64_t num_groups,
                        const C* weight, const C* bias, double eps, int activation,
                        C* mean_out, C* rstd_out, int num_threads) {
    const gncpu_status status =
        check_arguments(x, y, batch, channels, spatial, num_groups, eps, activation);
    const int64_t total = batch * channels * spatial;
    if (status != GNCPU_OK || total == 0) return status;

    Problem<S, C> p;
    p.x = x;
    p.y = y;
    p.weight = weight;
    p.bias = bias;
    p.eps = eps;
    p.spatial = spatial;
    p.groups_per_example = num_groups;
    p.channels_per_group = channels / num_groups;
    p.group_size = p.channels_per_group * spatial;
    p.total_groups = batch * num_groups;
    p.block_len = kBlockBytes / static_cast<int64_t>(sizeof(S));
    p.blocks_per_group = (p.group_size + p.block_len - 1) / p.block_len;
    const bool streaming = streams_output<S>(total);
    p.normalize_rows = streaming ? k.normalize_rows_streaming[activation]
                                 : k.normalize_rows[activation];
    p.mean_out = mean_out;
    p.rstd_out = rstd_out;

    const int threads = threads_for(total, num_threads);
    const int64_t group_bytes = p.group_size * static_cast<int64_t>(sizeof(S));
    const int64_t budget = cache_budget_bytes();
    const bool groups_fit = group_bytes <= budget;
    // Whole groups per thread need no barrier; use them when every thread
    // gets the same number of groups, or enough that the remainder is small.
    const bool balanced = p.total_groups % threads == 0 || p.total_groups >= 8 * threads;
    if (threads == 1 || (groups_fit && balanced)) {
        run_whole_groups(k, p, threads);
        return GNCPU_OK;
    }

    int64_t groups_per_batch = (threads * budget) / group_bytes;
    if (groups_per_batch < 1) groups_per_batch = 1;
    if (groups_per_batch > p.total_groups) groups_per_batch = p.total_groups;
    // A grow-only buffer per calling thread: no allocation once warmed up.
    thread_local std::vector<BlockMoments> scratch;
    const size_t needed = static_cast<size_t>(2 * groups_per_batch * p.blocks_per_group);
    try {
        if (scratch.size() < needed) scratch.resize(needed);
    } catch (const std::bad_alloc&) {
        run_whole_groups(k, p, threads);  // needs no scratch; same result
        return GNCPU_OK;
    }
    run_split(k, p, threads, groups_per_batch, scratch.data());
    return GNCPU_OK;
}

// ---------------------------------------------------------------------------
// Channels-last (NHWC): x[n, s, c].  A group is a band of channels_per_group
// columns over all spatial rows.  Rows are cut into fixed blocks (their
// number depends on the channel count only, never on the thread count); per
// block the kernel sums deviations per channel, the driver turns them into
// per-channel moments (re-summing the block about the found means when a
// first-row center was poor, as block_moments does), folds the channels of
// each group in channel order, and combines blocks in block order.
// 64 Ki elements per block (the kernel itself flushes its float lanes into
// double sums every 64 rows, so a block's length does not cost accuracy);
// large blocks amortise the per-channel work of each block.
constexpr int64_t kNhwcBlockElements = 64 * 1024;

template <class S, class C>
struct NhwcProblem {
    const S* x;
    S* y;
    const C* weight;
    const C* bias;
    double eps;
    int64_t batch, spatial, channels, groups, channels_per_group;
    int64_t rows_per_block, blocks_per_example;
    typename KernelsFor<S, C>::NhwcNormalize normalize;
    C* mean_out;
    C* rstd_out;

    int64_t block_rows(int64_t block) const {
        const int64_t left = spatial - block * rows_per_block;
        return left < rows_per_block ? left : rows_per_block;
    }
};

// Per-thread, grow-only: the channel arrays of the block and of the example.
template <class C>
struct NhwcScratch {
    std::vector<C> center, example_center, scale, offset;
    std::vector<double> dev, sq, mean, m2;
    void resize(int64_t channels) {
        const size_t n = static_cast<size_t>(channels);
        if (center.size() >= n) return;
        const size_t padded = n + static_cast<size_t>(kNhwcParamPad);  // see NhwcNormalize
        center.resize(n), example_center.resize(padded), scale.resize(padded), offset.resize(padded);
        dev.resize(n), sq.resize(n), mean.resize(n), m2.resize(n);
    }
};

template <class S, class C>
void nhwc_block_moments(const KernelsFor<S, C>& k, const NhwcProblem<S, C>& p, int64_t example,
                        int64_t block, NhwcScratch<C>& w, BlockMoments* out) {
    const int64_t rows = p.block_rows(block);
    const S* x = p.x + (example * p.spatial + block * p.rows_per_block) * p.channels;
    const double inv_rows = 1.0 / static_cast<double>(rows);
    k.nhwc_channel_sums(x, rows, p.channels, nullptr, w.center.data(), w.dev.data(), w.sq.data());
    for (int pass = 0; pass < 2; ++pass) {
        bool poor_center = false;
        for (int64_t c = 0; c < p.channels; ++c) {
            const double shift = w.dev[c] * inv_rows;
            const double m2 = w.sq[c] - w.dev[c] * shift;
            w.mean[c] = static_cast<double>(w.center[c]) + shift;
            w.m2[c] = m2 < 0.0 ? 0.0 : m2;
            poor_center |= static_cast<double>(rows) * shift * shift > 16.0 * w.m2[c];
        }
        if (!poor_center || pass == 1) break;
        for (int64_t c = 0; c < p.channels; ++c) w.center[c] = static_cast<C>(w.mean[c]);
        k.nhwc_channel_sums(x, rows, p.channels, w.center.data(), w.center.data(), w.dev.data(),
                            w.sq.data());
    }
    // Every channel of the block has the same count, so the group's moments
    // are the mean of the channel means and M2 = sum M2_c + rows * sum
    // (mean_c - mean)^2: Chan's formula for equal counts, without a division
    // per channel (those divisions dominated channels-last at first).
    const double inv_cpg = 1.0 / static_cast<double>(p.channels_per_group);
    for (int64_t g = 0; g < p.groups; ++g) {
        const int64_t c0 = g * p.channels_per_group, c1 = c0 + p.channels_per_group;
        double sum_mean = 0.0, sum_m2 = 0.0;
        for (int64_t c = c0; c < c1; ++c) sum_mean += w.mean[c], sum_m2 += w.m2[c];
        const double mean = sum_mean * inv_cpg;
        double spread = 0.0;
        for (int64_t c = c0; c < c1; ++c) spread += (w.mean[c] - mean) * (w.mean[c] - mean);
        out[g] = BlockMoments{mean, sum_m2 + static_cast<double>(rows) * spread};
    }
}

// Per-channel center, scale and offset of one example, from its blocks' moments.
template <class S, class C>
void nhwc_prepare_example(const NhwcProblem<S, C>& p, int64_t example,
                          const BlockMoments* blocks, NhwcScratch<C>& w) {
    for (int64_t g = 0; g < p.groups; ++g) {
        MomentsAccumulator acc;
        for (int64_t b = 0; b < p.blocks_per_example; ++b)
            acc.add(blocks[b * p.groups + g], p.block_rows(b) * p.channels_per_group);
        const GroupStats stats = acc.finish(p.eps);
        const C center = static_cast<C>(stats.mean);
        const double residual = stats.mean - static_cast<double>(center);
        if (p.mean_out) p.mean_out[example * p.groups + g] = static_cast<C>(stats.mean);
        if (p.rstd_out) p.rstd_out[example * p.groups + g] = static_cast<C>(stats.rstd);
        for (int64_t c = g * p.channels_per_group; c < (g + 1) * p.channels_per_group; ++c) {
            const double a = stats.rstd * (p.weight ? static_cast<double>(p.weight[c]) : 1.0);
            const double b = p.bias ? static_cast<double>(p.bias[c]) : 0.0;
            w.example_center[c] = center;
            w.scale[c] = static_cast<C>(a);
            w.offset[c] = static_cast<C>(b - residual * a);
        }
    }
    for (int64_t i = p.channels; i < p.channels + kNhwcParamPad; ++i) {  // wrap around
        w.example_center[i] = w.example_center[i % p.channels];
        w.scale[i] = w.scale[i % p.channels];
        w.offset[i] = w.offset[i % p.channels];
    }
}

template <class S, class C>
void run_channels_last(const KernelsFor<S, C>& k, const NhwcProblem<S, C>& p, int threads,
                       int64_t examples_per_batch, BlockMoments* scratch) {
    const int64_t batches = (p.batch + examples_per_batch - 1) / examples_per_batch;
    const int64_t slot_stride = examples_per_batch * p.blocks_per_example * p.groups;
    (void)threads;  // unused without OpenMP
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads)
#endif
    {
        const TeamPosition me = team_position();
        const int64_t tid = me.index, team = me.size;
        thread_local NhwcScratch<C> w;
        w.resize(p.channels);
        for (int64_t batch = 0; batch < batches; ++batch) {
            const int64_t e0 = batch * examples_per_batch;
            const int64_t e1 = e0 + examples_per_batch < p.batch ? e0 + examples_per_batch : p.batch;
            const int64_t units = (e1 - e0) * p.blocks_per_example;
            BlockMoments* slots = scratch + (batch & 1) * slot_stride;
            const int64_t lo = units * tid / team, hi = units * (tid + 1) / team;
            for (int64_t u = lo; u < hi; ++u) {
                nhwc_block_moments(k, p, e0 + u / p.blocks_per_example, u % p.blocks_per_example,
                                   w, slots + u * p.groups);
            }
#if defined(_OPENMP)
#pragma omp barrier
#endif
            int64_t prepared = -1;
            for (int64_t u = lo; u < hi; ++u) {
                const int64_t local = u / p.blocks_per_example, block = u % p.blocks_per_example;
                if (local != prepared) {
                    nhwc_prepare_example(p, e0 + local, slots + local * p.blocks_per_example * p.groups,
                                         w);
                    prepared = local;
                }
                const int64_t offset = ((e0 + local) * p.spatial + block * p.rows_per_block) * p.channels;
                p.normalize(p.x + offset, p.y + offset, p.block_rows(block), p.channels,
                            w.example_center.data(), w.scale.data(), w.offset.data());
            }
        }
    }
}

template <class S, class C>
gncpu_status group_norm_nhwc(const KernelsFor<S, C>& k, const S* x, S* y, int64_t batch,
                             int64_t channels, int64_t spatial, int64_t num_groups,
                             const C* weight, const C* bias, double eps, int activation,
                             C* mean_out, C* rstd_out, int num_threads) {
    const gncpu_status status =
        check_arguments(x, y, batch, channels, spatial, num_groups, eps, activation);
    if (status != GNCPU_OK || batch * channels * spatial == 0) return status;
    NhwcProblem<S, C> p;
    p.x = x;
    p.y = y;
    p.weight = weight;
    p.bias = bias;
    p.eps = eps;
    p.batch = batch;
    p.spatial = spatial;
    p.channels = channels;
    p.groups = num_groups;
    p.channels_per_group = channels / num_groups;
    p.rows_per_block = kNhwcBlockElements / channels;
    if (p.rows_per_block < 1) p.rows_per_block = 1;
    p.blocks_per_example = (spatial + p.rows_per_block - 1) / p.rows_per_block;
    p.normalize = streams_output<S>(batch * channels * spatial)
                      ? k.nhwc_normalize_streaming[activation]
                      : k.nhwc_normalize[activation];
    p.mean_out = mean_out;
    p.rstd_out = rstd_out;

    const int64_t total = batch * channels * spatial;
    const int threads = threads_for(total, num_threads);
    const int64_t example_bytes = spatial * channels * static_cast<int64_t>(sizeof(S));
    int64_t examples_per_batch = (threads * cache_budget_bytes()) / example_bytes;
    if (examples_per_batch < 1) examples_per_batch = 1;
    if (examples_per_batch > batch) examples_per_batch = batch;
    thread_local std::vector<BlockMoments> scratch;
    const size_t needed =
        static_cast<size_t>(2 * examples_per_batch * p.blocks_per_example * num_groups);
    try {
        if (scratch.size() < needed) scratch.resize(needed);
    } catch (const std::bad_alloc&) {
        return GNCPU_ERR_OUT_OF_MEMORY;
    }
    run_channels_last(k, p, threads, examples_per_batch, scratch.data());
    return GNCPU_OK;
}

}  // namespace
}  // namespace gncpu

extern "C" {

// Every (layout, dtype) entry point: the same arguments, one driver each.
#define GNCPU_ENTRY(name, driver, table, Stored, Compute)                                   \
    gncpu_status name(const Stored* x, Stored* y, int64_t batch, int64_t channels,          \
                      int64_t spatial, int64_t num_groups, const Compute* weight,           \
                      const Compute* bias, double eps, gncpu_activation activation,         \
                      Compute* mean_out, Compute* rstd_out, int num_threads) {              \
        return gncpu::driver(gncpu::active_kernels().table, x, y, batch, channels, spatial, \
                             num_groups, weight, bias, eps, static_cast<int>(activation),   \
                             mean_out, rstd_out, num_threads);                              \
    }
GNCPU_ENTRY(gncpu_group_norm_f32, group_norm, f32, float, float)
GNCPU_ENTRY(gncpu_group_norm_f64, group_norm, f64, double, double)
GNCPU_ENTRY(gncpu_group_norm_f16, group_norm, f16, uint16_t, float)
GNCPU_ENTRY(gncpu_group_norm_bf16, group_norm, bf16, uint16_t, float)
GNCPU_ENTRY(gncpu_group_norm_nhwc_f32, group_norm_nhwc, f32, float, float)
GNCPU_ENTRY(gncpu_group_norm_nhwc_f64, group_norm_nhwc, f64, double, double)
GNCPU_ENTRY(gncpu_group_norm_nhwc_f16, group_norm_nhwc, f16, uint16_t, float)
GNCPU_ENTRY(gncpu_group_norm_nhwc_bf16, group_norm_nhwc, bf16, uint16_t, float)
#undef GNCPU_ENTRY

const char* gncpu_status_message(gncpu_status status) {
    switch (status) {
        case GNCPU_OK: return "ok";
        case GNCPU_ERR_NULL_POINTER: return "null data pointer for a non-empty tensor";
        case GNCPU_ERR_BAD_SHAPE: return "negative or overflowing tensor size";
        case GNCPU_ERR_BAD_GROUPS: return "num_groups must be positive and divide channels";
        case GNCPU_ERR_BAD_EPS: return "eps must be finite and non-negative";
        case GNCPU_ERR_BAD_ISA: return "ISA not compiled in or not supported by this CPU";
        case GNCPU_ERR_BAD_ACTIVATION: return "unknown activation";
        case GNCPU_ERR_OUT_OF_MEMORY: return "out of memory for the statistics scratch";
    }
    return "unknown status";
}

void gncpu_parallel_copy(void* dst, const void* src, size_t nbytes, int num_threads) {
    const int threads = gncpu::threads_for(static_cast<int64_t>(nbytes / 4), num_threads);
    char* d = static_cast<char*>(dst);
    const char* s = static_cast<const char*>(src);
    if (threads <= 1) {
        memcpy(d, s, nbytes);
        return;
    }
    // Cache-line-aligned chunks, one per thread, as the kernels split work.
    const size_t chunk = ((nbytes + threads - 1) / threads + 63) & ~static_cast<size_t>(63);
#if defined(_OPENMP)
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
    for (int t = 0; t < threads; ++t) {
        const size_t begin = chunk * static_cast<size_t>(t);
        if (begin >= nbytes) continue;
        const size_t len = nbytes - begin < chunk ? nbytes - begin : chunk;
        memcpy(d + begin, s + begin, len);
    }
}

int gncpu_openmp_enabled(void) {
#if defined(_OPENMP)
    return 1;
#else
    return 0;
#endif
}

int gncpu_omp_max_threads(void) {
#if defined(_OPENMP)
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void gncpu_set_tuning(int64_t cache_budget_bytes, int64_t min_elements_per_thread,
                      int64_t streaming_threshold_bytes) {
    gncpu::g_cache_budget_override.store(cache_budget_bytes > 0 ? cache_budget_bytes : 0);
    gncpu::g_min_elements_override.store(min_elements_per_thread > 0 ? min_elements_per_thread : 0);
    gncpu::g_streaming_override.store(streaming_threshold_bytes > 0 ? streaming_threshold_bytes : 0);
}

int64_t gncpu_cache_budget_bytes(void) { return gncpu::cache_budget_bytes(); }

int gncpu_in_forked_child(void) {
    return gncpu::g_in_forked_child.load(std::memory_order_relaxed) ? 1 : 0;
}

}  // extern "C"
