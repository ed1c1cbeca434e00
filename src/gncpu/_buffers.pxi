# Output buffers for large results, kept for reuse once freed.
#
# A fresh large allocation comes from the operating system as untouched pages,
# and the first write to each page faults and zeroes it: for a 32 MiB output
# that costs as much as the normalisation itself.  Inference calls the same
# shapes over and over, so freed output buffers are kept (up to a byte limit)
# and handed out again.  A buffer goes back to the cache only when the last
# array or view using it is collected (it is their base object), so a reused
# buffer never aliases live data.  Everything here runs with the GIL held.


cdef extern from *:
    """
    #include <stdlib.h>
    #if defined(_WIN32)
    #include <malloc.h>
    static void* gncpu_aligned_alloc(size_t n) { return _aligned_malloc(n, 4096); }
    static void gncpu_aligned_free(void* p) { _aligned_free(p); }
    #else
    #if defined(__linux__)
    #include <sys/mman.h>
    #endif
    static void* gncpu_aligned_alloc(size_t n) {
        void* p = NULL;
        if (posix_memalign(&p, 4096, n) != 0) return NULL;
    #if defined(__linux__) && defined(MADV_HUGEPAGE)
        /* As NumPy does for large arrays: fewer page faults on first touch. */
        madvise(p, n, MADV_HUGEPAGE);
    #endif
        return p;
    }
    static void gncpu_aligned_free(void* p) { free(p); }
    #endif
    """
    void* gncpu_aligned_alloc(size_t n) nogil
    void gncpu_aligned_free(void* p) nogil

# Outputs smaller than this come from NumPy's allocator, which reuses them.
cdef size_t _MIN_CACHED_BYTES = 4 << 20
cdef int _MAX_CACHED_BUFFERS = 8
# The adaptive limit (the default): at least this, and room for two of the
# largest outputs asked for so far (a VAE decoder's 256 MiB tensors never fit
# a fixed 256 MiB: each such call paid ~0.3 s of page faults), but never more
# than a quarter of the machine's memory.
cdef size_t _ADAPTIVE_BASE = 256 << 20
cdef bint _adaptive = True
cdef size_t _fixed_limit = 0
cdef size_t _largest_request = 0
cdef size_t _cached_bytes = 0
cdef list _free_buffers = []   # [(nbytes, address)], most recently freed last
# A cached buffer up to this fraction larger than a request serves it (shapes
# in a model differ by a few rows or channels).
cdef size_t _SIZE_SLACK_DIVISOR = 4


def _memory_cap():
    """A quarter of the memory this process may use: the machine's, or its
    cgroup's limit (a container) when that is smaller; 4 GiB when unknown."""
    import os
    total = 0
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                limit = int(f.read().strip())
        except (OSError, ValueError):  # absent, or "max"
            continue
        if limit > 0 and (total <= 0 or limit < total):
            total = limit
    return total // 4 if total > 0 else 4 << 30


cdef size_t _physical_cap = min(_memory_cap(), 2**62)


cdef size_t _limit():
    if not _adaptive:
        return _fixed_limit
    return min(max(_ADAPTIVE_BASE, 2 * _largest_request), _physical_cap)


cdef class _OutputBuffer:
    """Owns one aligned allocation; the base object of the arrays using it."""
    cdef void* data
    cdef size_t nbytes

    def __dealloc__(self):
        global _cached_bytes
        if self.data == NULL:
            return
        # _free_buffers is None while the module is torn down.
        if _free_buffers is None or self.nbytes > _limit():
            gncpu_aligned_free(self.data)
            self.data = NULL
            return
        # Make room by freeing the buffers freed longest ago: the cache follows
        # the shapes in use now.
        while _free_buffers and (_cached_bytes + self.nbytes > _limit()
                                 or len(_free_buffers) >= _MAX_CACHED_BUFFERS):
            size, address = _free_buffers.pop(0)
            _cached_bytes -= size
            gncpu_aligned_free(<void*><size_t>address)
        _free_buffers.append((self.nbytes, <size_t>self.data))
        _cached_bytes += self.nbytes
        self.data = NULL


cdef void* _take_cached(size_t nbytes, size_t* taken_bytes):
    """The smallest cached buffer that holds nbytes with little to spare."""
    global _cached_bytes
    cdef Py_ssize_t i, best = -1
    cdef size_t size, best_size = 0
    for i in range(len(_free_buffers) - 1, -1, -1):
        size = _free_buffers[i][0]
        if nbytes <= size <= nbytes + nbytes // _SIZE_SLACK_DIVISOR and (
                best < 0 or size < best_size):
            best, best_size = i, size
    if best < 0:
        return NULL
    _, address = _free_buffers.pop(best)
    _cached_bytes -= best_size
    taken_bytes[0] = best_size
    return <void*><size_t>address


cdef cnp.ndarray _new_output(int ndim, cnp.npy_intp* shape, int typenum):
    """An uninitialised C-contiguous array, from the cache when it is large."""
    global _largest_request
    cdef size_t nbytes = cnp.PyArray_MultiplyList(shape, ndim) * cnp.PyArray_DescrFromType(typenum).itemsize
    if nbytes < _MIN_CACHED_BYTES or _limit() == 0:
        return cnp.PyArray_EMPTY(ndim, shape, typenum, 0)
    _largest_request = max(_largest_request, nbytes)
    cdef size_t allocated = nbytes
    cdef void* data = _take_cached(nbytes, &allocated)
    if data == NULL:
        data = gncpu_aligned_alloc(nbytes)
        if data == NULL:
            return cnp.PyArray_EMPTY(ndim, shape, typenum, 0)
    cdef _OutputBuffer owner = _OutputBuffer.__new__(_OutputBuffer)
    owner.data = data
    owner.nbytes = allocated
    cdef cnp.ndarray arr = cnp.PyArray_SimpleNewFromData(ndim, shape, typenum, data)
    cnp.set_array_base(arr, owner)
    return arr


def _cached_buffer(size_t nbytes):
    """nbytes of uninitialised memory as a 1-D uint8 array from the output
    cache (back to it when the array, or a tensor made from it, is freed), or
    None for a size the cache does not serve (below 4 MiB, or the cache off).
    For bindings that allocate their own outputs (gncpu.torch)."""
    if nbytes < _MIN_CACHED_BYTES or _limit() == 0:
        return None
    cdef cnp.npy_intp shape[1]
    shape[0] = <cnp.npy_intp>nbytes
    return _new_output(1, shape, cnp.NPY_UINT8)


def _release_cached():
    global _cached_bytes
    while _free_buffers:
        _, address = _free_buffers.pop()
        gncpu_aligned_free(<void*><size_t>address)
    _cached_bytes = 0


def set_output_cache_limit(nbytes):
    """Bytes of freed large output buffers gncpu keeps for reuse.

    None (the default) adapts: at least 256 MiB, and room for two of the
    largest outputs requested so far, up to a quarter of the machine's memory.
    A number fixes the limit; 0 turns the cache off and frees what it holds.
    Only outputs of 4 MiB or more are cached, at most 8 of them."""
    global _adaptive, _fixed_limit
    if nbytes is None:
        _adaptive = True
    else:
        value = _as_integer(nbytes, "the limit (bytes)")
        if value < 0:
            raise ValueError(f"the limit must be >= 0 or None, got {value}")
        _adaptive = False
        _fixed_limit = min(value, 2**62)
    if _cached_bytes > _limit():
        _release_cached()


def output_cache_info():
    """{'limit': bytes now, 'adaptive': bool, 'cached_bytes': bytes, 'cached_buffers': count}."""
    return {"limit": _limit(), "adaptive": bool(_adaptive), "cached_bytes": _cached_bytes,
            "cached_buffers": len(_free_buffers)}


def _set_adaptive_base(nbytes):
    """The adaptive limit's floor (default 256 MiB), for tests; also forgets
    the largest output seen."""
    global _ADAPTIVE_BASE, _largest_request
    _ADAPTIVE_BASE = nbytes
    _largest_request = 0
