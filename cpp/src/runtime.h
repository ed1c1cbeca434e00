// Threads, tuning knobs and fork safety: what the scheduler asks of the
// machine, in one place (runtime.cpp holds the measurements behind each knob).
#ifndef GNCPU_RUNTIME_H
#define GNCPU_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include <new>
#include <vector>

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

// Beside other busy processes a team's threads do not all run at once: the
// OS deschedules one, and its teammates wait for it at a barrier or at the
// end of the parallel region (measured: 8 ms calls instead of 0.25 ms beside
// a second process running 2-thread calls on 2 cores).  The scheduler reports
// the longest time one of its threads waited for the others; three calls in a
// row whose team waited most of the call make the next calls run on one
// thread for a while (20 ms, doubling up to 1 s while it keeps happening),
// then a team is tried again.  Results do not depend on the thread count, so nor on this.
int team_size_now(int threads);
int64_t monotonic_ns();
void report_team_wait(int64_t region_ns, int64_t longest_wait_ns);

// The calling thread's floating-point modes (x86 MXCSR, AArch64 FPCR: flush-
// to-zero, denormals-are-zero, rounding), put on each team thread for the
// length of a parallel region and restored after: a caller running with
// flush-to-zero (torch.set_flush_denormal) would otherwise get blocks computed
// by the caller and by its helpers under different rules, and results that
// depend on the thread count.  The modes are never changed otherwise.
struct FloatingPointModes {
    uint64_t bits = 0;
    static FloatingPointModes of_this_thread();
    void apply() const;
};

// Puts `modes` on this thread until the end of the scope.
class ScopedFloatingPointModes {
  public:
    explicit ScopedFloatingPointModes(const FloatingPointModes& modes)
        : saved_(FloatingPointModes::of_this_thread()), changed_(saved_.bits != modes.bits) {
        if (changed_) modes.apply();
    }
    ~ScopedFloatingPointModes() {
        if (changed_) saved_.apply();
    }
    ScopedFloatingPointModes(const ScopedFloatingPointModes&) = delete;
    ScopedFloatingPointModes& operator=(const ScopedFloatingPointModes&) = delete;

  private:
    FloatingPointModes saved_;
    bool changed_;
};

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

// An allocator of whole cache lines.  Per-thread scratch is allocated by the
// calling thread, one piece after another: with malloc's packing, the small
// arrays of two threads would share lines, and every write would bounce the
// line between cores (measured: 1x320x64x64 on 2 threads 1.5x slower).
constexpr size_t kCacheLineBytes = 64;

template <class T>
struct CacheLineAllocator {
    using value_type = T;
    CacheLineAllocator() = default;
    template <class U>
    CacheLineAllocator(const CacheLineAllocator<U>&) {}
    T* allocate(size_t n) {
        const size_t bytes = (n * sizeof(T) + kCacheLineBytes - 1) / kCacheLineBytes * kCacheLineBytes;
        return static_cast<T*>(::operator new(bytes, std::align_val_t{kCacheLineBytes}));
    }
    void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t{kCacheLineBytes}); }
    template <class U>
    bool operator==(const CacheLineAllocator<U>&) const { return true; }
    template <class U>
    bool operator!=(const CacheLineAllocator<U>&) const { return false; }
};

// The vector type of every per-thread scratch array.
template <class T>
using ThreadVector = std::vector<T, CacheLineAllocator<T>>;

// Grows v to at least n elements (grow-only scratch); may throw std::bad_alloc.
template <class T>
inline void grow(ThreadVector<T>& v, size_t n) {
    if (v.size() < n) v.resize(n);
}

}  // namespace gncpu

#endif  // GNCPU_RUNTIME_H
