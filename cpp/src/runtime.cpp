// Threads, tuning knobs and fork safety (see runtime.h), and the C API's
// runtime entry points.
#include "runtime.h"

#include <string.h>

#include <algorithm>
#include <atomic>
#include <chrono>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#include <xmmintrin.h>  // _mm_getcsr / _mm_setcsr: SSE, part of every x86-64
#endif

#include "cpu_features.h"
#include "gncpu/gncpu.h"

namespace gncpu {
namespace {

// Below this many elements per thread, waking a team costs more than it saves.
constexpr int64_t kDefaultMinElementsPerThread = 32 * 1024;

// Above this many bytes of x + y the output cannot stay cached anyway: write it
// with non-temporal stores.  Below it, the next layer reads y from cache, and
// streaming would push it out (measured: 1.4x -> 1.1x of a copy on a 64 MiB
// tensor, slower on cache-sized ones).  The L3 a server part or a VM reports
// is shared by every core of the socket (480 MiB on a Xeon whose 2-vCPU VM
// keeps about 64 MiB: streaming wins from ~80 MiB of x + y, 1.6x -> 1.1x of a
// copy at 128 MiB), hence the cap.
constexpr int64_t kMaxStreamingThresholdBytes = int64_t{64} << 20;

// Test overrides (gncpu_set_tuning); zero means the default.
std::atomic<int64_t> g_cache_budget_override{0};
std::atomic<int64_t> g_min_elements_override{0};
std::atomic<int64_t> g_streaming_override{0};

// libgomp is not fork-safe (GCC PR 60035): a child forked after the parent
// used its thread pool hangs in the next parallel region.  multiprocessing
// forks by default on Linux, so a forked child runs gncpu serially instead.
std::atomic<bool> g_in_forked_child{false};

#if defined(__unix__) || defined(__APPLE__)
void mark_forked_child() { g_in_forked_child.store(true, std::memory_order_relaxed); }
const int g_fork_handler_registered = pthread_atfork(nullptr, nullptr, mark_forked_child);
#endif

int64_t min_elements_per_thread() {
    const int64_t forced = g_min_elements_override.load(std::memory_order_relaxed);
    return forced > 0 ? forced : kDefaultMinElementsPerThread;
}

// Contention back-off (see runtime.h).  A team counts as contended when one
// of its threads waited for the others more than half the region's time, and
// more than kContendedWaitNs (a descheduled teammate costs a time slice, ms):
// a balanced team waits a few percent.
constexpr int64_t kContendedWaitNs = 500 * 1000;
constexpr int64_t kFirstBackoffNs = 20 * 1000 * 1000;
constexpr int64_t kMaxBackoffNs = 1000 * 1000 * 1000;
constexpr int kContendedCallsToBackOff = 3;
std::atomic<int64_t> g_single_thread_until_ns{0};
std::atomic<int64_t> g_backoff_ns{0};
std::atomic<int> g_contended_calls{0};  // in a row

}  // namespace

FloatingPointModes FloatingPointModes::of_this_thread() {
    FloatingPointModes modes;
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
    modes.bits = _mm_getcsr() & ~0x3fu;  // the modes, not the sticky exception flags
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
    uint64_t fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    modes.bits = fpcr;
#endif
    return modes;
}

void FloatingPointModes::apply() const {
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
    _mm_setcsr(static_cast<unsigned>((_mm_getcsr() & 0x3fu) | bits));
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
    __asm__ volatile("msr fpcr, %0" : : "r"(bits));
#endif
}

int64_t monotonic_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

int team_size_now(int threads) {
    if (threads <= 1) return threads;
    const int64_t until = g_single_thread_until_ns.load(std::memory_order_relaxed);
    return until != 0 && monotonic_ns() < until ? 1 : threads;
}

void report_team_wait(int64_t region_ns, int64_t longest_wait_ns) {
    if (longest_wait_ns > kContendedWaitNs && 2 * longest_wait_ns > region_ns) {
        // One or two such calls can be a hypervisor's hiccup; three in a row are not.
        if (g_contended_calls.fetch_add(1, std::memory_order_relaxed) + 1 < kContendedCallsToBackOff)
            return;
        int64_t backoff = g_backoff_ns.load(std::memory_order_relaxed) * 2;
        backoff = backoff < kFirstBackoffNs ? kFirstBackoffNs : backoff;
        backoff = backoff > kMaxBackoffNs ? kMaxBackoffNs : backoff;
        g_backoff_ns.store(backoff, std::memory_order_relaxed);
        g_single_thread_until_ns.store(monotonic_ns() + backoff, std::memory_order_relaxed);
    } else {
        // A balanced team: the next back-off, if any, starts from half the
        // last one, not from scratch (beside a neighbour that itself backs off
        // now and then, a reset made every retry cost three stalls).
        g_contended_calls.store(0, std::memory_order_relaxed);
        g_backoff_ns.store(g_backoff_ns.load(std::memory_order_relaxed) / 2, std::memory_order_relaxed);
    }
}

int64_t cache_budget_bytes() {
    const int64_t forced = g_cache_budget_override.load(std::memory_order_relaxed);
    if (forced > 0) return forced;
    // Half of L2: the other half holds the output lines being written.
    static const int64_t budget = l2_cache_bytes() / 2;
    return budget;
}

int64_t streaming_threshold_bytes() {
    const int64_t forced = g_streaming_override.load(std::memory_order_relaxed);
    if (forced > 0) return forced;
    static const int64_t threshold = std::min(l3_cache_bytes(), kMaxStreamingThresholdBytes);
    return threshold;
}

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

}  // namespace gncpu

extern "C" {

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

void gncpu_parallel_xor(void* dst, const void* a, const void* b, size_t nbytes, int num_threads) {
    const int threads = gncpu::threads_for(static_cast<int64_t>(nbytes / 4), num_threads);
    // Whole 64-bit words (the tail byte-wise; callers pass 8-byte-aligned
    // buffers, as NumPy allocates), in cache-line-aligned chunks per thread;
    // the compiler vectorises the loop for the baseline ISA, which a
    // memory-bound loop does not outrun (bench/backward.py also takes 1.5
    // copies as the floor where that is faster).
    const size_t words = nbytes / 8;
    const size_t chunk = ((words + threads - 1) / threads + 7) & ~static_cast<size_t>(7);
    const auto run = [&](size_t begin, size_t end) {
        uint64_t* __restrict d = static_cast<uint64_t*>(dst);
        const uint64_t* __restrict x = static_cast<const uint64_t*>(a);
        const uint64_t* __restrict y = static_cast<const uint64_t*>(b);
        for (size_t i = begin; i < end; ++i) d[i] = x[i] ^ y[i];
    };
#if defined(_OPENMP)
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#endif
    for (int t = 0; t < threads; ++t) {
        const size_t begin = chunk * static_cast<size_t>(t);
        if (begin < words) run(begin, words - begin < chunk ? words : begin + chunk);
    }
    for (size_t i = words * 8; i < nbytes; ++i)
        static_cast<unsigned char*>(dst)[i] = static_cast<const unsigned char*>(a)[i] ^ static_cast<const unsigned char*>(b)[i];
}

int gncpu_openmp_enabled(void) {
#if defined(_OPENMP)
    return 1;
#else
    return 0;
#endif
}

int gncpu_in_forked_child(void) {
    return gncpu::g_in_forked_child.load(std::memory_order_relaxed) ? 1 : 0;
}

void gncpu_set_tuning(int64_t cache_budget_bytes, int64_t min_elements_per_thread,
                      int64_t streaming_threshold_bytes) {
    gncpu::g_cache_budget_override.store(cache_budget_bytes > 0 ? cache_budget_bytes : 0);
    gncpu::g_min_elements_override.store(min_elements_per_thread > 0 ? min_elements_per_thread : 0);
    gncpu::g_streaming_override.store(streaming_threshold_bytes > 0 ? streaming_threshold_bytes : 0);
    // A clean slate for the contention back-off too.
    gncpu::g_single_thread_until_ns.store(0);
    gncpu::g_backoff_ns.store(0);
    gncpu::g_contended_calls.store(0);
}

int64_t gncpu_cache_budget_bytes(void) { return gncpu::cache_budget_bytes(); }
int64_t gncpu_streaming_threshold_bytes(void) { return gncpu::streaming_threshold_bytes(); }
int64_t gncpu_l2_cache_bytes(void) { return gncpu::l2_cache_bytes(); }
int64_t gncpu_l3_cache_bytes(void) { return gncpu::l3_cache_bytes(); }

int64_t gncpu_single_thread_ns_left(void) {
    const int64_t left = gncpu::g_single_thread_until_ns.load() - gncpu::monotonic_ns();
    return left > 0 ? left : 0;
}

void gncpu_note_team_wait(int64_t region_ns, int64_t longest_wait_ns) {
    gncpu::report_team_wait(region_ns, longest_wait_ns);
}

}  // extern "C"
