# cython: language_level=3, boundscheck=False, wraparound=False
"""NumPy bindings of gncpu's C++ core: one pipeline from Python arguments to
the C API's gncpu_problem.

    parse    Python objects -> a gncpu_problem's values (types checked here;
             every value is validated by the C core, gncpu_check_problem)
    plan     the buffers: the output (cached, or out=), a copy of x when it
             cannot be read as it is, the statistics
    execute  gncpu_group_norm, without the GIL for anything but tiny tensors

Nothing the caller passed is written before every argument has been checked.
"""

import numbers
import operator
import sys

import numpy as np

cimport numpy as cnp
from libc.stdint cimport int64_t

from gncpu._capi cimport *
from gncpu._stats import GroupStats

cnp.import_array()

include "_buffers.pxi"

# Set from gncpu.__init__ at import (see _threads.default_num_threads).
cdef int _num_threads = 1
# True once the user called set_num_threads: gncpu.torch then stops following
# torch.get_num_threads() (the raw entries' num_threads argument).
cdef bint _threads_chosen = False
# Past this, a thread count is a mistake rather than a machine.
cdef int _MAX_THREADS = 4096
# Smaller tensors take about a microsecond, less than releasing and taking
# back the GIL costs; they run serially anyway (see runtime.cpp).
cdef int64_t _RELEASE_GIL_ELEMENTS = 32 * 1024
# Larger num_groups cannot be a divisor of any tensor's channel count.
cdef object _MAX_GROUPS = 2**62

include "_parse.pxi"


# -------------------------------------------------------------------- plan

cdef inline bint _is_native_c_array(cnp.ndarray a):
    """C-contiguous, aligned and in native byte order: the kernels read it as is."""
    return cnp.PyArray_ISCARRAY_RO(a) and not cnp.PyArray_ISBYTESWAPPED(a)


cdef inline bint _overlaps(cnp.ndarray a, cnp.ndarray b):
    cdef char* a0 = <char*>cnp.PyArray_DATA(a)
    cdef char* b0 = <char*>cnp.PyArray_DATA(b)
    return a0 < b0 + cnp.PyArray_NBYTES(b) and b0 < a0 + cnp.PyArray_NBYTES(a)


cdef _check_out(object out, cnp.ndarray x, object dtype):
    if not cnp.PyArray_Check(out):
        hint = "; for tensors use gncpu.torch.group_norm" if _is_torch_tensor(out) else ""
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}{hint}")
    cdef cnp.ndarray o = out
    if o.dtype != dtype:
        raise TypeError(f"out must have dtype {dtype}, got {o.dtype}")
    if out.shape != (<object>x).shape:
        raise ValueError(f"out must have shape {(<object>x).shape}, got {out.shape}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(o):
        raise ValueError("out must be C-contiguous")
    if not cnp.PyArray_ISWRITEABLE(o):
        raise ValueError("out is read-only")


cdef class _Call:
    """One group_norm call: its C problem and the arrays behind its pointers."""
    cdef gncpu_problem problem
    cdef cnp.ndarray x, y, target, mean, rstd, given_mean, given_rstd, moments_mean, moments_m2
    cdef object weight, bias, native, param_dtype, eps
    cdef bint want_stats, moved_axis, stats_only

    cdef parse(self, object x, object num_groups, object weight, object bias, object eps,
               object activation, object return_stats, object channels_last, object out):
        cdef gncpu_problem* p = &self.problem
        cdef cnp.ndarray xa = _as_float_array(x)
        cdef int ndim = xa.ndim
        if ndim < 2:
            raise ValueError(
                f"x must have shape (N, C, *spatial), got shape {(<object>xa).shape}")
        cdef bint nhwc = channels_last is not False and _as_flag(channels_last, "channels_last")
        if not nhwc and out is None and _has_channels_last_strides(xa):
            xa = np.moveaxis(xa, 1, -1)  # a C-contiguous (N, *spatial, C) view, no copy
            nhwc = self.moved_axis = True
        cdef _Geometry g = _geometry(xa, nhwc, num_groups)
        p.dtype, p.layout, p.batch, p.channels = g.dtype, g.layout, g.batch, g.channels
        p.spatial, p.num_groups = g.spatial, g.num_groups
        p.eps = _as_eps(eps)
        self.param_dtype = _parameter_dtype(p.dtype)
        self.native = _native_dtype(xa, p.dtype)
        shape = (<object>xa).shape
        self.weight = _as_param(weight, p.channels, self.param_dtype, "weight", shape, nhwc)
        self.bias = _as_param(bias, p.channels, self.param_dtype, "bias", shape, nhwc)
        p.activation = _as_activation(activation)
        self.want_stats = _as_flag(return_stats, "return_stats")
        p.num_threads = _num_threads
        # The pointers come with the plan; every value is checked now.
        cdef gncpu_status status = gncpu_check_problem(p)
        if status != GNCPU_OK and status != GNCPU_ERR_NULL_POINTER:
            _raise_invalid(status, p, eps, shape)
        self.x = xa

    cdef take_stats(self, object stats):
        """stats=: a GroupStats or a (mean, rstd) pair for x's (N, num_groups)."""
        cdef gncpu_problem* p = &self.problem
        expected = (p.batch, p.num_groups)
        if isinstance(stats, GroupStats):
            stats._check_fits(p.batch, p.channels, p.num_groups)
            mean, rstd = stats.mean_rstd(self.eps)
        elif isinstance(stats, tuple) and len(stats) == 2:
            mean = _as_param_array(stats[0], expected, np.float64, "stats mean")
            rstd = _as_param_array(stats[1], expected, np.float64, "stats rstd")
        else:
            raise TypeError("stats must be a gncpu.GroupStats or a (mean, rstd) pair, "
                            f"got {type(stats).__name__}")
        self.given_mean = np.ascontiguousarray(mean, dtype=np.float64)
        self.given_rstd = np.ascontiguousarray(rstd, dtype=np.float64)
        p.given_mean = <const double*>cnp.PyArray_DATA(self.given_mean)
        p.given_rstd = <const double*>cnp.PyArray_DATA(self.given_rstd)

    cdef plan(self, object out):
        cdef gncpu_problem* p = &self.problem
        cdef cnp.ndarray xa = self.x
        if self.stats_only:
            if not _is_native_c_array(xa):
                self.x = np.array(xa, dtype=self.native, order="C", copy=True)
            p.x = cnp.PyArray_DATA(self.x)
            p.y = NULL
            self.moments_mean = np.empty((p.batch, p.num_groups), np.float64)
            self.moments_m2 = np.empty((p.batch, p.num_groups), np.float64)
            p.moments_mean = <double*>cnp.PyArray_DATA(self.moments_mean)
            p.moments_m2 = <double*>cnp.PyArray_DATA(self.moments_m2)
            return
        if out is None:
            self.y = _new_output(xa.ndim, xa.shape, _STORAGE_TYPENUM[<int>p.dtype])
            if self.y.dtype is not self.native:  # (a storage type NumPy lacks)
                self.y = self.y.view(self.native)
        else:
            _check_out(out, xa, self.native)
            self.y = out
            if not cnp.PyArray_ISALIGNED(self.y):  # computed aside, then copied in
                self.target = self.y
                self.y = np.empty_like(out)
        if not _is_native_c_array(xa):
            # Strided, Fortran-ordered, byte-swapped or misaligned: one copy.
            self.x = np.array(xa, dtype=self.native, order="C", copy=True)
        elif cnp.PyArray_DATA(xa) != cnp.PyArray_DATA(self.y) and _overlaps(xa, self.y):
            # Partial overlap would read values already overwritten; exact
            # aliasing (out=x) is safe and stays in place.
            self.x = xa.copy()
        p.x = cnp.PyArray_DATA(self.x)
        p.y = cnp.PyArray_DATA(self.y)
        p.weight = NULL if self.weight is None else cnp.PyArray_DATA(<cnp.ndarray>self.weight)
        p.bias = NULL if self.bias is None else cnp.PyArray_DATA(<cnp.ndarray>self.bias)
        if self.want_stats:
            self.mean = np.empty((p.batch, p.num_groups), self.param_dtype)
            self.rstd = np.empty((p.batch, p.num_groups), self.param_dtype)
            p.mean = cnp.PyArray_DATA(self.mean)
            p.rstd = cnp.PyArray_DATA(self.rstd)

    cdef object execute(self):
        cdef gncpu_status status
        if self.problem.batch * self.problem.channels * self.problem.spatial >= _RELEASE_GIL_ELEMENTS:
            with nogil:
                status = gncpu_group_norm(&self.problem)
        else:
            status = gncpu_group_norm(&self.problem)
        if status != GNCPU_OK:
            _raise_invalid(status, &self.problem, self.eps)
        if self.stats_only:
            cpg = self.problem.channels // self.problem.num_groups
            count = float(cpg * self.problem.spatial)
            return GroupStats(np.full((self.problem.batch, self.problem.num_groups), count),
                              self.moments_mean, self.moments_m2, cpg if cpg > 0 else None)
        cdef cnp.ndarray y = self.y
        if self.target is not None:
            self.target[...] = y
            y = self.target
        result = np.moveaxis(y, -1, 1) if self.moved_axis else y
        return (result, self.mean, self.rstd) if self.want_stats else result


# -------------------------------------------------------------- group_norm

def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5, *, out=None,
               activation=None, return_stats=False, channels_last=False, stats=None):
    """Group Normalization of ``x``, shape (N, C, *spatial).

    Statistics are taken per (example, group) over C/num_groups channels x
    all spatial positions, with the population variance::

        y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c]

    x: float32, float64, float16 or bfloat16 (ml_dtypes) array_like (what
        np.asarray reads, or a DLPack producer; torch tensors go to
        gncpu.torch.group_norm instead, a TypeError says so); 16-bit
        values are computed in float32.  The result has x's dtype.
    num_groups: a positive integer dividing C.
    weight, bias: None (ones, zeros) or 1-D of length C, any real dtype.
    eps: finite and non-negative.
    out: a C-contiguous, writable array of x's shape and dtype (``out=x``
        works in place); the function then returns it.
    activation: None, "silu", "relu" or "gelu", applied in the same pass.
    return_stats: also return each group's mean and 1/sqrt(var + eps), shape
        (N, num_groups), float32 (float64 for float64 x).
    channels_last: x is (N, *spatial, C).  An NCHW-shaped view of
        channels-last memory is recognised without this flag.
    stats: normalise with these statistics instead of measuring x's (x is
        then read once): a gncpu.GroupStats merged from the pieces of a
        larger tensor (see group_norm_stats), or a (mean, rstd) pair of
        (N, num_groups) arrays.  eps applies to a GroupStats' variance.

    ValueError for values out of range, TypeError for wrong types; nothing is
    written when either is raised.  See docs/api.md for the full contract.
    """
    cdef _Call call = _Call.__new__(_Call)
    call.eps = eps
    call.parse(x, num_groups, weight, bias, eps, activation, return_stats, channels_last, out)
    if stats is not None:
        call.take_stats(stats)
    call.plan(out)
    return call.execute()


def group_norm_stats(x, num_groups, *, channels_last=False):
    """The statistics of ``x``, shape (N, C, *spatial), per (example, group):
    a gncpu.GroupStats of float64 counts, means and M2 (sums of squared
    deviations), from one read of x.

    For tensors normalised in pieces (tiles of an image, chunks of a volume,
    patches held by different processes): measure every piece, merge the
    results (GroupStats.merge), then normalise each piece with
    group_norm(piece, num_groups, ..., stats=merged).  Pieces may split the
    spatial axes and the batch anywhere; along channels, a piece must hold
    whole groups (pass its own num_groups).  x, num_groups and channels_last
    are as for group_norm.
    """
    cdef _Call call = _Call.__new__(_Call)
    call.eps = 1e-5
    call.stats_only = True
    call.parse(x, num_groups, None, None, 1e-5, None, False, channels_last, None)
    call.plan(None)
    return call.execute()


def _check_layer(num_groups, num_channels, eps, activation):
    """GroupNorm's arguments, checked as group_norm checks them."""
    if num_channels > _MAX_GROUPS:  # not representable in the C problem
        raise ValueError(f"num_channels ({num_channels}) is too large")
    cdef gncpu_problem p
    p.dtype = GNCPU_F32
    p.layout = GNCPU_NCHW
    p.batch = p.spatial = 0
    p.channels = num_channels
    p.num_groups = _as_groups(num_groups, p.channels)
    p.eps = _as_eps(eps)
    p.activation = _as_activation(activation)
    p.x = p.y = p.weight = p.bias = p.mean = p.rstd = NULL
    p.moments_mean = p.moments_m2 = NULL
    p.given_mean = p.given_rstd = NULL
    p.num_threads = 1
    cdef gncpu_status status = gncpu_check_problem(&p)
    if status != GNCPU_OK:
        _raise_invalid(status, &p, eps)


# ------------------------------------------------------------ raw pointers

cdef inline int _raw_threads(int asked):
    if asked <= 0 or _threads_chosen:
        return _num_threads
    return asked if asked <= _MAX_THREADS else _MAX_THREADS


def _group_norm_raw(int dtype, int layout, int64_t batch, int64_t channels, int64_t spatial,
                    num_groups, eps, activation, size_t x, size_t y, size_t weight=0,
                    size_t bias=0, size_t mean=0, size_t rstd=0, int num_threads=0,
                    size_t moments_mean=0, size_t moments_m2=0, size_t given_mean=0,
                    size_t given_rstd=0):
    """group_norm on memory given by address, for bindings that own their
    buffers (gncpu.torch): no NumPy.  dtype and layout are gncpu_dtype and
    gncpu_layout codes; weight, bias, mean and rstd are addresses of the
    parameter type (double for GNCPU_F64, else float) or 0.  With x = y = 0
    the values are only checked.  num_threads > 0 is the caller's thread count
    (torch's), used unless the user chose gncpu's with set_num_threads.
    moments_mean/moments_m2 (with y = 0: statistics alone) and
    given_mean/given_rstd are addresses of (batch, num_groups) doubles, as the
    C API's fields.  Raises what group_norm raises for the same values;
    nothing is written when it does."""
    cdef gncpu_problem p
    p.dtype = <gncpu_dtype>dtype
    p.layout = <gncpu_layout>layout
    p.batch = batch
    p.channels = channels
    p.spatial = spatial
    p.num_groups = _as_groups(num_groups, channels)
    p.eps = _as_eps(eps)
    p.activation = _as_activation(activation)
    p.x = <const void*>x
    p.y = <void*>y
    p.weight = <const void*>weight
    p.bias = <const void*>bias
    p.mean = <void*>mean
    p.rstd = <void*>rstd
    p.moments_mean = <double*>moments_mean
    p.moments_m2 = <double*>moments_m2
    p.given_mean = <const double*>given_mean
    p.given_rstd = <const double*>given_rstd
    p.num_threads = _raw_threads(num_threads)
    cdef gncpu_status status = gncpu_check_problem(&p)
    if status != GNCPU_OK:
        if status == GNCPU_ERR_NULL_POINTER and x == 0 and y == 0:
            return
        _raise_invalid(status, &p, eps)
    if x == 0 and y == 0:
        return
    if batch * channels * spatial >= _RELEASE_GIL_ELEMENTS:  # (no overflow: checked)
        with nogil:
            status = gncpu_group_norm(&p)
    else:
        status = gncpu_group_norm(&p)
    if status != GNCPU_OK:
        _raise_invalid(status, &p, eps)


include "_backward.pxi"
include "_runtime.pxi"
