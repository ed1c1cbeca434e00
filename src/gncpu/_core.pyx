# cython: language_level=3, boundscheck=False, wraparound=False
"""NumPy bindings of gncpu's C++ core.

Everything is validated here, before any memory is written; the C++ core
validates again (defence in depth) and its status becomes an exception.
"""

import numbers
import operator

import numpy as np

cimport numpy as cnp
from libc.stdint cimport int64_t, uint16_t

from gncpu._capi cimport *

cnp.import_array()

include "_buffers.pxi"

# Set from gncpu.__init__ at import (see _threads.default_num_threads).
cdef int _num_threads = 1
# Past this, a thread count is a mistake rather than a machine.
cdef int _MAX_THREADS = 4096
# Smaller tensors take about a microsecond, less than releasing and taking
# back the GIL costs; they run serially anyway (see group_norm.cpp).
cdef int64_t _RELEASE_GIL_ELEMENTS = 32 * 1024


# --------------------------------------------------------------------- helpers

cdef inline bint _is_native_float_array(object a, int typenum):
    """a is an ndarray of typenum, C-contiguous, aligned, native byte order."""
    return (cnp.PyArray_Check(a)
            and cnp.PyArray_TYPE(<cnp.ndarray>a) == typenum
            and cnp.PyArray_ISCARRAY_RO(<cnp.ndarray>a)
            and not cnp.PyArray_ISBYTESWAPPED(<cnp.ndarray>a))


cdef object _bfloat16_dtype = None  # ml_dtypes.bfloat16, once seen


cdef bint _is_bfloat16(object dtype):
    global _bfloat16_dtype
    if dtype.itemsize != 2 or dtype.kind != "V" or dtype.name != "bfloat16":
        return False
    _bfloat16_dtype = dtype
    return True


cdef cnp.ndarray _as_float_array(object x):
    if cnp.PyArray_Check(x):
        typenum = cnp.PyArray_TYPE(<cnp.ndarray>x)
        if typenum == cnp.NPY_FLOAT32 or typenum == cnp.NPY_FLOAT64:
            return <cnp.ndarray>x  # the common case, without Python-level checks
    cdef cnp.ndarray arr = x if cnp.PyArray_Check(x) else np.asarray(x)
    if _is_bfloat16(arr.dtype):
        return arr
    if arr.dtype.kind != "f":
        raise TypeError(
            f"x must be a floating-point array (float16, bfloat16, float32 or float64), "
            f"got dtype {arr.dtype}")
    if arr.dtype.itemsize not in (2, 4, 8):
        raise TypeError(f"x has dtype {arr.dtype}; gncpu supports float16, bfloat16 "
                        "(ml_dtypes), float32 and float64")
    return arr


cdef object _as_integer(object value, str what):
    """A Python int from an integer-like value (not a bool), else TypeError."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what} must be an integer, got a bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {type(value).__name__}") from None


cdef int64_t _as_groups(object num_groups, int64_t channels) except -1:
    cdef int64_t fast
    if type(num_groups) is int and 0 < num_groups <= 2**62:
        fast = num_groups
        if channels % fast == 0:
            return fast
    groups = _as_integer(num_groups, "num_groups")
    if groups <= 0:
        raise ValueError(f"num_groups must be positive, got {groups}")
    if groups > 2**62 or channels % groups != 0:
        raise ValueError(
            f"num_groups ({groups}) must divide the number of channels ({channels})")
    return groups


cdef double _as_eps(object eps) except? -1.0:
    cdef double value
    if type(eps) is float:
        value = eps
        if value >= 0.0 and value != float("inf"):
            return value
    if isinstance(eps, (str, bytes)) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__}")
    try:
        value = float(eps)
    except OverflowError:  # an int beyond the float range
        raise ValueError(f"eps must be finite and non-negative, got {eps!r}") from None
    if not (value >= 0.0) or value == float("inf"):
        raise ValueError(f"eps must be finite and non-negative, got {eps!r}")
    return value


cdef object _as_param(object p, int64_t channels, int typenum, str name):
    """weight/bias as a C-contiguous native array of x's dtype, or None."""
    if p is None:
        return None
    if (_is_native_float_array(p, typenum) and (<cnp.ndarray>p).ndim == 1
            and (<cnp.ndarray>p).shape[0] == channels):
        return p
    arr = np.asarray(p)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a real-valued array, got dtype {arr.dtype}")
    if arr.ndim != 1 or arr.shape[0] != channels:
        raise ValueError(f"{name} must have shape ({channels},), got {arr.shape}")
    return np.require(arr, dtype=cnp.PyArray_DescrFromType(typenum), requirements=["C", "A"])


cdef _check_out(object out, cnp.ndarray x, object dtype):
    if not cnp.PyArray_Check(out):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    cdef cnp.ndarray o = out
    if o.dtype != dtype:
        raise TypeError(f"out must have dtype {np.dtype(dtype)}, got {o.dtype}")
    if out.shape != (<object>x).shape:
        raise ValueError(f"out must have shape {(<object>x).shape}, got {out.shape}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(o):
        raise ValueError("out must be C-contiguous")
    if not cnp.PyArray_ISWRITEABLE(o):
        raise ValueError("out is read-only")


cdef bint _as_flag(object value, str name) except -1:
    if value is True or value is False or isinstance(value, np.bool_):
        return bool(value)
    raise TypeError(f"{name} must be a bool, got {type(value).__name__}")


cdef inline bint _overlaps(cnp.ndarray a, cnp.ndarray b):
    cdef char* a0 = <char*>cnp.PyArray_DATA(a)
    cdef char* b0 = <char*>cnp.PyArray_DATA(b)
    cdef Py_ssize_t n = cnp.PyArray_NBYTES(a)
    return a0 < b0 + cnp.PyArray_NBYTES(b) and b0 < a0 + n


_ACTIVATIONS = {"silu": GNCPU_ACT_SILU, "relu": GNCPU_ACT_RELU, "gelu": GNCPU_ACT_GELU}


cdef gncpu_activation _as_activation(object activation) except *:
    if activation is None:
        return GNCPU_ACT_NONE
    if not isinstance(activation, str):
        raise TypeError(
            f"activation must be None or a str, got {type(activation).__name__}")
    try:
        return _ACTIVATIONS[activation]
    except KeyError:
        raise ValueError(
            f"unknown activation {activation!r}; expected None, "
            + ", ".join(repr(name) for name in _ACTIVATIONS)) from None


cdef _raise_status(gncpu_status status):
    message = gncpu_status_message(status).decode()
    if status == GNCPU_ERR_BAD_ISA:
        raise ValueError(message)
    if status in (GNCPU_ERR_BAD_GROUPS, GNCPU_ERR_BAD_EPS, GNCPU_ERR_BAD_SHAPE,
                  GNCPU_ERR_BAD_ACTIVATION):
        raise ValueError(message)
    if status == GNCPU_ERR_OUT_OF_MEMORY:
        raise MemoryError(message)
    raise RuntimeError(f"gncpu internal error: {message}")


# ---------------------------------------------------------------- group_norm

def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5, *, out=None,
               activation=None, return_stats=False, channels_last=False):
    """Group Normalization of ``x`` with shape (N, C, *spatial).

    See gncpu.group_norm's docstring (in __init__.pyi / the README) for the
    full contract.
    """
    cdef cnp.ndarray xa = _as_float_array(x)
    cdef int ndim = xa.ndim
    if ndim < 2:
        raise ValueError(
            f"x must have shape (N, C, *spatial), got shape {(<object>xa).shape}")

    cdef int itemsize = cnp.PyArray_ITEMSIZE(xa)
    if channels_last is not False:
        if _as_flag(channels_last, "channels_last"):
            return _group_norm_general(xa, True, num_groups, weight, bias, eps, out,
                                       activation, return_stats)
    if itemsize == 2 or (ndim >= 3 and _has_channels_last_strides(xa) and out is None):
        return _group_norm_general(xa, False, num_groups, weight, bias, eps, out, activation,
                                   return_stats)

    cdef int typenum = cnp.NPY_FLOAT32 if itemsize == 4 else cnp.NPY_FLOAT64
    cdef int64_t batch = xa.shape[0]
    cdef int64_t channels = xa.shape[1]
    cdef int64_t spatial = 1
    cdef int d
    for d in range(2, ndim):
        spatial *= xa.shape[d]
    cdef int64_t groups = _as_groups(num_groups, channels)
    cdef double eps_value = _as_eps(eps)
    w = _as_param(weight, channels, typenum, "weight")
    b = _as_param(bias, channels, typenum, "bias")
    cdef gncpu_activation act = _as_activation(activation)
    cdef bint want_stats = _as_flag(return_stats, "return_stats")

    native = cnp.PyArray_DescrFromType(typenum)
    cdef cnp.ndarray y
    cdef cnp.ndarray target = None  # set when out cannot be written directly
    if out is None:
        y = _new_output(ndim, xa.shape, typenum)
    else:
        _check_out(out, xa, native)
        y = out
        if not cnp.PyArray_ISALIGNED(y):
            target = y
            y = cnp.PyArray_EMPTY(ndim, xa.shape, typenum, 0)

    if not _is_native_float_array(xa, typenum):
        # Strided, Fortran-ordered, byte-swapped or misaligned: one copy.
        xa = np.array(xa, dtype=native, order="C", copy=True)
    elif (cnp.PyArray_DATA(xa) != cnp.PyArray_DATA(y)) and _overlaps(xa, y):
        # Partial overlap would read values already overwritten; exact
        # aliasing (out=x) is safe and stays in place.
        xa = xa.copy()

    cdef cnp.ndarray mean = None
    cdef cnp.ndarray rstd = None
    cdef void* mean_p = NULL
    cdef void* rstd_p = NULL
    if want_stats:
        mean = np.empty((batch, groups), dtype=native)
        rstd = np.empty((batch, groups), dtype=native)
        mean_p = cnp.PyArray_DATA(mean)
        rstd_p = cnp.PyArray_DATA(rstd)

    if batch * channels * spatial == 0:
        if want_stats:  # statistics of empty groups are undefined
            mean.fill(np.nan)
            rstd.fill(np.nan)
        result = y if target is None else target
        return (result, mean, rstd) if want_stats else result

    cdef gncpu_status status
    cdef int threads = _num_threads
    cdef const void* wp = NULL if w is None else cnp.PyArray_DATA(<cnp.ndarray>w)
    cdef const void* bp = NULL if b is None else cnp.PyArray_DATA(<cnp.ndarray>b)
    cdef void* xp = cnp.PyArray_DATA(xa)
    cdef void* yp = cnp.PyArray_DATA(y)
    if batch * channels * spatial >= _RELEASE_GIL_ELEMENTS:
        with nogil:
            status = _run(typenum, xp, yp, batch, channels, spatial, groups, wp, bp,
                          eps_value, act, mean_p, rstd_p, threads)
    else:
        status = _run(typenum, xp, yp, batch, channels, spatial, groups, wp, bp,
                      eps_value, act, mean_p, rstd_p, threads)
    if status != GNCPU_OK:
        _raise_status(status)
    if target is not None:
        target[...] = y
        y = target
    return (y, mean, rstd) if want_stats else y


cdef inline gncpu_status _run(int typenum, void* xp, void* yp, int64_t batch,
                              int64_t channels, int64_t spatial, int64_t groups,
                              const void* wp, const void* bp, double eps,
                              gncpu_activation act, void* mean_p, void* rstd_p,
                              int threads) noexcept nogil:
    if typenum == cnp.NPY_FLOAT32:
        return gncpu_group_norm_f32(<const float*>xp, <float*>yp, batch, channels, spatial,
                                    groups, <const float*>wp, <const float*>bp, eps, act,
                                    <float*>mean_p, <float*>rstd_p, threads)
    return gncpu_group_norm_f64(<const double*>xp, <double*>yp, batch, channels, spatial,
                                groups, <const double*>wp, <const double*>bp, eps, act,
                                <double*>mean_p, <double*>rstd_p, threads)


cdef bint _has_channels_last_strides(cnp.ndarray x):
    """An (N, C, *spatial) array laid out as (N, *spatial, C): the NCHW view of
    a channels-last tensor.  Such input goes to the channels-last kernel as it
    is, instead of being copied into NCHW order."""
    if cnp.PyArray_IS_C_CONTIGUOUS(x) or x.shape[1] < 2:
        return False
    return np.moveaxis(x, 1, -1).flags.c_contiguous


def _group_norm_general(cnp.ndarray xa, bint channels_last, num_groups, weight, bias, eps,
                        out, activation, return_stats):
    """Every dtype (float32, float64, float16, bfloat16) and both layouts.

    channels_last=True: xa is (N, *spatial, C).  Otherwise xa is (N, C,
    *spatial); when its strides are channels-last, the channels-last kernel
    runs on it in place and the result has the same memory layout."""
    cdef bint strided_nhwc = (not channels_last and out is None and xa.ndim >= 3
                              and _has_channels_last_strides(xa))
    if strided_nhwc:
        xa = np.moveaxis(xa, 1, -1)  # a C-contiguous (N, *spatial, C) view, no copy
    cdef bint nhwc = channels_last or strided_nhwc
    dtype = xa.dtype
    cdef int kind
    if dtype.kind == "V":
        kind, native, stats_dtype = 3, _bfloat16_dtype, np.dtype(np.float32)
    elif dtype.itemsize == 2:
        kind, native, stats_dtype = 2, np.dtype(np.float16), np.dtype(np.float32)
    elif dtype.itemsize == 4:
        kind, native, stats_dtype = 0, np.dtype(np.float32), np.dtype(np.float32)
    else:
        kind, native, stats_dtype = 1, np.dtype(np.float64), np.dtype(np.float64)
    param_typenum = cnp.NPY_FLOAT64 if kind == 1 else cnp.NPY_FLOAT32

    cdef int ndim = xa.ndim
    shape = (<object>xa).shape
    cdef int64_t batch = shape[0]
    cdef int64_t channels = shape[ndim - 1] if nhwc else shape[1]
    cdef int64_t spatial = 1
    cdef int d
    for d in range(1, ndim - 1) if nhwc else range(2, ndim):
        spatial *= shape[d]
    cdef int64_t groups = _as_groups(num_groups, channels)
    cdef double eps_value = _as_eps(eps)
    w = _as_param(weight, channels, param_typenum, "weight")
    b = _as_param(bias, channels, param_typenum, "bias")
    cdef gncpu_activation act = _as_activation(activation)
    cdef bint want_stats = _as_flag(return_stats, "return_stats")
    if out is not None:
        _check_out(out, xa, native)
    # One aligned, native-order, C-contiguous copy unless x already is one;
    # and one when out overlaps x other than exactly.
    if not (xa.flags.c_contiguous and xa.flags.aligned and dtype.isnative):
        xa = np.array(xa, dtype=native, order="C", copy=True)
    elif out is not None and np.may_share_memory(xa, out):
        if cnp.PyArray_DATA(xa) != cnp.PyArray_DATA(<cnp.ndarray>out):
            xa = xa.copy()
    cdef cnp.ndarray target = None
    cdef cnp.ndarray y
    if out is None:
        y = _new_output_of(xa, kind)
    else:
        y = out
        if not y.flags.aligned:
            target = y
            y = np.empty(shape, dtype=native)
    cdef cnp.ndarray mean = np.empty((batch, groups), stats_dtype) if want_stats else None
    cdef cnp.ndarray rstd = np.empty((batch, groups), stats_dtype) if want_stats else None
    if batch * channels * spatial == 0:
        if want_stats:
            mean.fill(np.nan)
            rstd.fill(np.nan)
    else:
        _call_kernel(kind, nhwc, xa, y, batch, channels, spatial, groups, w, b, eps_value, act,
                     mean, rstd)
    if target is not None:
        target[...] = y
        y = target
    result = np.moveaxis(y, -1, 1) if strided_nhwc else y
    return (result, mean, rstd) if want_stats else result


cdef cnp.ndarray _new_output_of(cnp.ndarray xa, int kind):
    """An output shaped like xa, for dtype kind 0-3, from the buffer cache when
    large (bfloat16 is a view of uint16 storage: NumPy has no type number for it)."""
    cdef int typenum = (cnp.NPY_FLOAT32, cnp.NPY_FLOAT64, cnp.NPY_FLOAT16, cnp.NPY_UINT16)[kind]
    y = _new_output(xa.ndim, xa.shape, typenum)
    return y.view(_bfloat16_dtype) if kind == 3 else y


cdef _call_kernel(int kind, bint nhwc, cnp.ndarray xa, cnp.ndarray y, int64_t batch,
                  int64_t channels, int64_t spatial, int64_t groups, object w, object b,
                  double eps, gncpu_activation act, cnp.ndarray mean, cnp.ndarray rstd):
    cdef const void* xp = cnp.PyArray_DATA(xa)
    cdef void* yp = cnp.PyArray_DATA(y)
    cdef const void* wp = NULL
    cdef const void* bp = NULL
    cdef void* mean_p = NULL
    cdef void* rstd_p = NULL
    if w is not None:
        wp = cnp.PyArray_DATA(<cnp.ndarray>w)
    if b is not None:
        bp = cnp.PyArray_DATA(<cnp.ndarray>b)
    if mean is not None:
        mean_p = cnp.PyArray_DATA(mean)
        rstd_p = cnp.PyArray_DATA(rstd)
    cdef int threads = _num_threads
    cdef gncpu_status status
    with nogil:
        status = gncpu_dispatch(kind, nhwc, xp, yp, batch, channels, spatial, groups, wp, bp,
                                eps, act, mean_p, rstd_p, threads)
    if status != GNCPU_OK:
        _raise_status(status)


# ------------------------------------------------------------------ threads

def set_num_threads(n):
    """Set the number of threads gncpu's kernels may use (>= 1)."""
    global _num_threads
    value = _as_integer(n, "the thread count")
    if value < 1 or value > _MAX_THREADS:
        raise ValueError(f"the thread count must be in [1, {_MAX_THREADS}], got {value}")
    _num_threads = value


def get_num_threads():
    """The number of threads gncpu's kernels may use."""
    return _num_threads


def openmp_enabled():
    """True when this build of gncpu was compiled with OpenMP."""
    return bool(gncpu_openmp_enabled())


def _omp_max_threads():
    return gncpu_omp_max_threads()


# --------------------------------------------------------------------- ISAs

def _isa_names(predicate):
    return tuple(gncpu_isa_name(i).decode() for i in range(GNCPU_ISA_COUNT) if predicate(i))


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
    for i in range(GNCPU_ISA_COUNT):
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
        # True in a process forked after gncpu loaded: it runs serially there.
        "forked_child": bool(gncpu_in_forked_child()),
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


def _set_tuning(cache_budget_bytes=0, min_elements_per_thread=0, streaming_threshold_bytes=0):
    """Force scheduling thresholds (0 = default): lets tests reach every path."""
    gncpu_set_tuning(cache_budget_bytes, min_elements_per_thread, streaming_threshold_bytes)
