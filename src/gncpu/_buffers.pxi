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
cdef size_t _cache_limit = 256 << 20
cdef size_t _cached_bytes = 0
cdef list _free_buffers = []   # [(nbytes, address)], most recently freed last


cdef class _OutputBuffer:
    """Owns one aligned allocation; the base object of the arrays using it."""
    cdef void* data
    cdef size_t nbytes

    def __dealloc__(self):
        global _cached_bytes
        if self.data == NULL:
            return
        # _free_buffers is None while the module is torn down.
        if _free_buffers is None or self.nbytes > _cache_limit:
            gncpu_aligned_free(self.data)
            self.data = NULL
            return
        # Make room by freeing the buffers freed longest ago: the cache follows
        # the shapes in use now.
        while _free_buffers and (_cached_bytes + self.nbytes > _cache_limit
                                 or len(_free_buffers) >= _MAX_CACHED_BUFFERS):
            size, address = _free_buffers.pop(0)
            _cached_bytes -= size
            gncpu_aligned_free(<void*><size_t>address)
        _free_buffers.append((self.nbytes, <size_t>self.data))
        _cached_bytes += self.nbytes
        self.data = NULL


cdef void* _take_cached(size_t nbytes):
    global _cached_bytes
    cdef Py_ssize_t i
    for i in range(len(_free_buffers) - 1, -1, -1):
        size, address = _free_buffers[i]
        if size == nbytes:
            del _free_buffers[i]
            _cached_bytes -= nbytes
            return <void*><size_t>address
    return NULL


cdef cnp.ndarray _new_output(int ndim, cnp.npy_intp* shape, int typenum):
    """An uninitialised C-contiguous array, from the cache when it is large."""
    cdef size_t nbytes = cnp.PyArray_MultiplyList(shape, ndim) * cnp.PyArray_DescrFromType(typenum).itemsize
    if nbytes < _MIN_CACHED_BYTES or _cache_limit == 0:
        return cnp.PyArray_EMPTY(ndim, shape, typenum, 0)
    cdef void* data = _take_cached(nbytes)
    if data == NULL:
        data = gncpu_aligned_alloc(nbytes)
        if data == NULL:
            return cnp.PyArray_EMPTY(ndim, shape, typenum, 0)
    cdef _OutputBuffer owner = _OutputBuffer.__new__(_OutputBuffer)
    owner.data = data
    owner.nbytes = nbytes
    cdef cnp.ndarray arr = cnp.PyArray_SimpleNewFromData(ndim, shape, typenum, data)
    cnp.set_array_base(arr, owner)
    return arr


def _release_cached():
    global _cached_bytes
    while _free_buffers:
        _, address = _free_buffers.pop()
        gncpu_aligned_free(<void*><size_t>address)
    _cached_bytes = 0


def set_output_cache_limit(nbytes):
    """Bytes of freed large output buffers gncpu keeps for reuse (default 256 MiB).

    Only outputs of 4 MiB or more are cached, at most 8 of them; 0 turns the
    cache off and frees what it holds."""
    global _cache_limit
    value = _as_integer(nbytes, "the limit (bytes)")
    if value < 0:
        raise ValueError(f"the limit must be >= 0, got {value}")
    _cache_limit = min(value, 2**62)
    if _cached_bytes > _cache_limit:
        _release_cached()


def output_cache_info():
    """{'limit': bytes, 'cached_bytes': bytes, 'cached_buffers': count}."""
    return {"limit": _cache_limit, "cached_bytes": _cached_bytes,
            "cached_buffers": len(_free_buffers)}
