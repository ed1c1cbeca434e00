# Threads, ISAs, build information, and the helpers tests and the bench use:
# everything of gncpu's runtime but the computation itself.  Included by
# _core.pyx (it shares that module's globals).


# ------------------------------------------------------------------ threads

from gncpu import _threads

def set_num_threads(n):
    """Set the number of threads gncpu's kernels may use (>= 1).  From then on
    gncpu.torch uses it too, instead of following torch.get_num_threads().
    None restores the default (OMP_NUM_THREADS, else the usable CPUs) and
    lets gncpu.torch follow torch again."""
    global _threads_chosen
    if n is None:
        _set_num_threads(_threads.default_num_threads())
        _threads_chosen = False
        return
    _set_num_threads(n)
    _threads_chosen = True


def _set_num_threads(n):
    """set_num_threads without marking the count as the user's choice (the
    default gncpu sets at import)."""
    global _num_threads
    value = _as_integer(n, "the thread count")
    if value < 1 or value > _MAX_THREADS:
        raise ValueError(f"the thread count must be in [1, {_MAX_THREADS}], got {value}")
    _num_threads = value


def _threads_for(asked):
    """The thread count a raw call asking for `asked` threads gets (tests)."""
    return _raw_threads(asked)


def _num_threads_chosen():
    """Whether the user called set_num_threads."""
    return _threads_chosen


def get_num_threads():
    """The number of threads gncpu's kernels may use."""
    return _num_threads


def openmp_enabled():
    """True when this build of gncpu was compiled with OpenMP."""
    return bool(gncpu_openmp_enabled())


# --------------------------------------------------------------------- ISAs

def _isa_names(predicate):
    return tuple(gncpu_isa_name(i).decode() for i in range(gncpu_isa_count()) if predicate(i))


def compiled_isas():
    """The kernels built into this binary, whether or not this CPU runs them."""
    return _isa_names(gncpu_isa_compiled)


def supported_isas():
    """The kernels this build has and this CPU can run; "scalar" is always one."""
    return _isa_names(gncpu_isa_supported)


def isa():
    """The name of the kernel in use."""
    return gncpu_isa_name(gncpu_active_isa()).decode()


def set_isa(name):
    """Switch to the kernel ``name``; ValueError unless it is in supported_isas()."""
    if not isinstance(name, str):
        raise TypeError(f"ISA name must be a str, got {type(name).__name__}")
    for i in range(gncpu_isa_count()):
        if gncpu_isa_name(i).decode() == name:
            if gncpu_set_isa(i) == GNCPU_OK:
                return
            break
    raise ValueError(
        f"ISA {name!r} is not supported here; supported: {', '.join(supported_isas())}")


def build_info():
    """How this binary was built and what it runs here."""
    return {
        "compiler": GNCPU_BUILD_COMPILER.decode(),
        "flags": GNCPU_BUILD_FLAGS.decode(),
        "openmp": openmp_enabled(),
        "compiled_isas": compiled_isas(),
        "supported_isas": supported_isas(),
        "active_isa": isa(),
        "cache_budget_bytes": gncpu_cache_budget_bytes(),
        # Outputs whose x + y pass this are written with streaming stores;
        # the cache sizes behind the two budgets, as the OS reports them.
        "streaming_threshold_bytes": gncpu_streaming_threshold_bytes(),
        "l2_cache_bytes": gncpu_l2_cache_bytes(),
        "l3_cache_bytes": gncpu_l3_cache_bytes(),
        # True in a process forked after gncpu loaded: it runs serially there.
        "forked_child": bool(gncpu_in_forked_child()),
        # Environment variables that were ignored or clamped, and why.
        "environment_notes": list(_threads.environment_notes),
    }


# ------------------------------------------------------- for tests and bench

def _parallel_copy(cnp.ndarray dst, cnp.ndarray src):
    """dst[...] = src with the kernels' threading: the benchmark floor."""
    if not (cnp.PyArray_IS_C_CONTIGUOUS(dst) and cnp.PyArray_IS_C_CONTIGUOUS(src)):
        raise ValueError("both arrays must be C-contiguous")
    if cnp.PyArray_NBYTES(dst) != cnp.PyArray_NBYTES(src) or not cnp.PyArray_ISWRITEABLE(dst):
        raise ValueError("dst must be writable and as large as src")
    cdef void* d = cnp.PyArray_DATA(dst)
    cdef const void* s = cnp.PyArray_DATA(src)
    cdef size_t n = cnp.PyArray_NBYTES(src)
    cdef int threads = _num_threads
    with nogil:
        gncpu_parallel_copy(d, s, n, threads)


def _parallel_xor(cnp.ndarray dst, cnp.ndarray a, cnp.ndarray b):
    """dst = a ^ b byte-wise with the kernels' threading: the backward's floor
    (two tensors read, one written)."""
    for arr in (dst, a, b):
        if not cnp.PyArray_IS_C_CONTIGUOUS(arr) or cnp.PyArray_NBYTES(arr) != cnp.PyArray_NBYTES(dst):
            raise ValueError("the arrays must be C-contiguous and equally large")
        if <size_t>cnp.PyArray_DATA(arr) % 8:
            raise ValueError("the arrays must be 8-byte aligned")
    if not cnp.PyArray_ISWRITEABLE(dst):
        raise ValueError("dst must be writable")
    cdef void* d = cnp.PyArray_DATA(dst)
    cdef const void* pa = cnp.PyArray_DATA(a)
    cdef const void* pb = cnp.PyArray_DATA(b)
    cdef size_t n = cnp.PyArray_NBYTES(dst)
    cdef int threads = _num_threads
    with nogil:
        gncpu_parallel_xor(d, pa, pb, n, threads)


def _set_tuning(cache_budget_bytes=0, min_elements_per_thread=0, streaming_threshold_bytes=0):
    """Force scheduling thresholds (0 = default): lets tests reach every path."""
    gncpu_set_tuning(cache_budget_bytes, min_elements_per_thread, streaming_threshold_bytes)


def _contention(region_ns=None, longest_wait_ns=None):
    """Nanoseconds left in the single-thread back-off; with arguments, first
    reports a team's wait as a call would (for tests of the policy)."""
    if region_ns is not None:
        gncpu_note_team_wait(region_ns, longest_wait_ns)
    return gncpu_single_thread_ns_left()
