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

_FLOAT32 = np.dtype(np.float32)
_FLOAT64 = np.dtype(np.float64)
_FLOAT16 = np.dtype(np.float16)

# Activation names as the C core spells them; None is the Python spelling of
# GNCPU_ACT_NONE.
_ACTIVATIONS = {gncpu_activation_name(i).decode(): i for i in range(1, GNCPU_ACT_COUNT)}


# ------------------------------------------------------------------- parse

cdef int _dtype_of(cnp.ndarray x) except -2:
    """x's gncpu_dtype, or -1 when gncpu has no kernel for it."""
    cdef int typenum = cnp.PyArray_TYPE(x)
    if typenum == cnp.NPY_FLOAT32:
        return GNCPU_F32
    if typenum == cnp.NPY_FLOAT64:
        return GNCPU_F64
    if typenum == cnp.NPY_FLOAT16:
        return GNCPU_F16
    dtype = x.dtype
    if dtype.kind == "V" and dtype.itemsize == 2 and dtype.name == "bfloat16":  # ml_dtypes
        return GNCPU_BF16
    return -1


def _is_real_dtype(dtype):
    """Integers and floats, ml_dtypes' bfloat16 included (NumPy calls it kind "V")."""
    return dtype.kind in "fiu" or (dtype.kind == "V" and dtype.name == "bfloat16")


cdef object _torch_tensor_type():
    """torch.Tensor if torch is imported, else None (then nothing is a tensor)."""
    torch = sys.modules.get("torch")
    return getattr(torch, "Tensor", None)


cdef bint _is_torch_tensor(object obj):
    tensor_type = _torch_tensor_type()
    return tensor_type is not None and isinstance(obj, tensor_type)


cpdef object _array_from(object obj, str name):
    """An ndarray of obj's values as NumPy reads array-likes (__array__, the
    array interface, the buffer protocol, sequences), or through DLPack when
    that is all obj offers."""
    if _is_torch_tensor(obj):
        # A parameter (weight, bias, mean, rstd): its values, wherever torch
        # holds them; NumPy has no bfloat16, and they become float32 or
        # float64 anyway.
        obj = obj.detach().cpu()
        if obj.dtype == sys.modules["torch"].bfloat16:
            obj = obj.float()
        return obj.resolve_conj().resolve_neg().numpy()
    if (hasattr(obj, "__dlpack__") and not hasattr(obj, "__array__")
            and not hasattr(obj, "__array_interface__") and not hasattr(obj, "__array_struct__")):
        try:
            return np.from_dlpack(obj)
        except (BufferError, RuntimeError, TypeError, ValueError) as error:
            raise TypeError(f"NumPy cannot read {name} ({type(obj).__name__}) through "
                            f"DLPack: {error}") from None
    return np.asarray(obj)


cdef cnp.ndarray _as_float_array(object x, str name="x"):
    if not cnp.PyArray_Check(x) and _is_torch_tensor(x):
        raise TypeError(
            f"{name} is a torch.Tensor; gncpu.group_norm and group_norm_backward take NumPy "
            "arrays. Use gncpu.torch.group_norm(x, num_groups, weight, bias, eps, "
            "activation=...): it returns a tensor, with autograd and torch.compile; or pass "
            f"{name}.numpy() for an ndarray")
    cdef cnp.ndarray arr = x if cnp.PyArray_Check(x) else _array_from(x, name)
    if _dtype_of(arr) >= 0:
        return arr
    if arr.dtype.kind in "iub":
        raise TypeError(
            f"{name} must be a floating-point array (float16, bfloat16, float32 or float64), "
            f"got dtype {arr.dtype}: convert it first, e.g. {name}.astype(np.float32)")
    if arr.dtype.kind != "f":
        raise TypeError(
            f"{name} must be a floating-point array (float16, bfloat16, float32 or float64), "
            f"got dtype {arr.dtype}")
    raise TypeError(f"{name} has dtype {arr.dtype}; gncpu supports float16, bfloat16 "
                    f"(ml_dtypes), float32 and float64: convert it first, e.g. "
                    f"{name}.astype(np.float32)")


cdef object _as_integer(object value, str what):
    """A Python int from an integer-like value (not a bool), else TypeError."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what} must be an integer, got a bool")
    try:
        return operator.index(value)
    except TypeError:
        hint = ""
        if isinstance(value, numbers.Real) and float(value).is_integer():
            hint = f" ({value!r}; pass {int(value)})"
        raise TypeError(f"{what} must be an integer, got {type(value).__name__}{hint}") from None


cdef int64_t _as_groups(object num_groups, int64_t channels) except? -1:
    if type(num_groups) is int and 0 < num_groups <= _MAX_GROUPS:
        return num_groups
    groups = _as_integer(num_groups, "num_groups")
    if groups > _MAX_GROUPS:  # not representable in the C problem
        raise ValueError(
            f"num_groups ({groups}) must divide the number of channels ({channels})")
    return max(groups, -1)  # the core's check reports every other bad value


cdef double _as_eps(object eps) except? -1.0:
    if type(eps) is float:
        return eps
    if isinstance(eps, (str, bytes)) or not isinstance(eps, numbers.Real):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__}")
    try:
        return float(eps)
    except OverflowError:  # an int beyond the float range
        return float("inf")  # rejected by the core's check


cdef bint _as_flag(object value, str name) except -1:
    if value is True or value is False or isinstance(value, np.bool_):
        return bool(value)
    raise TypeError(f"{name} must be a bool, got {type(value).__name__}")


cdef gncpu_activation _as_activation(object activation) except *:
    if activation is None:
        return GNCPU_ACT_NONE
    if not isinstance(activation, str):
        raise TypeError(
            f"activation must be None or a str, got {type(activation).__name__}")
    try:
        return <gncpu_activation><int>_ACTIVATIONS[activation]
    except KeyError:
        raise ValueError(
            f"unknown activation {activation!r}{_activation_hint(activation)}; expected None, "
            + ", ".join(repr(name) for name in _ACTIVATIONS)) from None


# Other names users write for the activations gncpu has.
_ACTIVATION_ALIASES = {"swish": "silu"}


def _activation_hint(str name):
    """' (did you mean ...?)' when name is one gncpu knows in another case or
    under another name, else ''."""
    key = name.strip().lower()
    key = _ACTIVATION_ALIASES.get(key, key)
    if key in _ACTIVATIONS:
        return f" (did you mean {key!r}?)"
    if "gelu" in key and "tanh" in key:
        return " (gncpu's 'gelu' is the exact, erf form; it has no tanh approximation)"
    return ""


cdef object _as_param(object p, int64_t channels, object dtype, str name,
                      object x_shape=None, bint channels_last=False):
    """weight/bias as a C-contiguous native array of the parameter dtype, or None
    (x_shape: for a hint when x's other layout would fit p)."""
    if p is None:
        return None
    if (cnp.PyArray_Check(p) and (<cnp.ndarray>p).dtype is dtype and (<cnp.ndarray>p).ndim == 1
            and (<cnp.ndarray>p).shape[0] == channels and cnp.PyArray_ISCARRAY_RO(<cnp.ndarray>p)):
        return p
    try:
        return _as_param_array(p, (channels,), dtype, name)
    except ValueError as error:
        hint = _layout_hint(x_shape, channels_last, param_shape=np.shape(p))
        if not hint:
            raise
        raise ValueError(f"{error}{hint}") from None


cdef object _as_param_array(object p, tuple shape, object dtype, str name):
    """A real array_like of `shape` as a C-contiguous native array of dtype."""
    arr = _array_from(p, name)
    if not _is_real_dtype(arr.dtype):
        raise TypeError(f"{name} must be a real-valued array, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    try:
        with np.errstate(over="raise", invalid="ignore"):
            return np.require(arr, dtype=dtype, requirements=["C", "A"])
    except FloatingPointError:  # a finite value past the parameter type's range
        raise ValueError(f"{name} has values beyond the range of {dtype} "
                         f"(largest magnitude {np.max(np.abs(arr))!r})") from None


cdef bint _has_channels_last_strides(cnp.ndarray x):
    """An (N, C, *spatial) array laid out as (N, *spatial, C): the NCHW view of
    a channels-last tensor.  Such input goes to the channels-last kernel as it
    is, instead of being copied into NCHW order."""
    if x.ndim < 3 or cnp.PyArray_IS_C_CONTIGUOUS(x) or x.shape[1] < 2:
        return False
    return np.moveaxis(x, 1, -1).flags.c_contiguous


def _layout_hint(shape, bint channels_last, groups=None, param_shape=None):
    """A hint to pass or drop channels_last when x's other layout would have
    the channel count the call needs (divisible by groups, or param_shape's
    length), else ''."""
    if shape is None or len(shape) < 3:
        return ""
    fits = (lambda c: c % groups == 0) if groups else (lambda c: param_shape == (c,))
    if channels_last:
        if fits(shape[1]):
            return (f"; x would have {shape[1]} channels as (N, C, *spatial): "
                    "if that is its layout, drop channels_last=True")
    elif fits(shape[len(shape) - 1]):
        return (f"; x would have {shape[len(shape) - 1]} channels as (N, *spatial, C): "
                "if it is channels-last, pass channels_last=True")
    return ""


cdef _raise_invalid(gncpu_status status, const gncpu_problem* p, object eps, object shape=None):
    """The exception for a status of gncpu_check_problem, in the caller's terms
    (shape: x's, for a hint when the other layout would fit)."""
    cdef int64_t groups = p.num_groups
    if status == GNCPU_ERR_BAD_GROUPS:
        if p.num_groups <= 0:
            raise ValueError(f"num_groups must be positive, got {p.num_groups}")
        if p.channels == 0:
            raise ValueError(f"num_groups must be 1 for an input with no channels, "
                             f"got {p.num_groups}")
        hint = _layout_hint(shape, p.layout == GNCPU_NHWC, groups=groups)
        raise ValueError(
            f"num_groups ({p.num_groups}) must divide the number of channels ({p.channels})"
            + hint)
    if status == GNCPU_ERR_BAD_EPS:
        raise ValueError(f"eps must be finite and non-negative, got {eps!r}")
    message = gncpu_status_message(status).decode()
    if status == GNCPU_ERR_OUT_OF_MEMORY:
        raise MemoryError(message)
    if status in (GNCPU_ERR_BAD_SHAPE, GNCPU_ERR_BAD_ACTIVATION, GNCPU_ERR_BAD_ISA):
        raise ValueError(message)
    raise RuntimeError(f"gncpu internal error: {message}")


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


# The storage NumPy allocates for each gncpu_dtype (bfloat16: NumPy has no
# type number for it, so its outputs are uint16 buffers viewed as bfloat16).
cdef int[4] _STORAGE_TYPENUM = [cnp.NPY_FLOAT32, cnp.NPY_FLOAT64, cnp.NPY_FLOAT16,
                                cnp.NPY_UINT16]


cdef class _Call:
    """One group_norm call: its C problem and the arrays behind its pointers."""
    cdef gncpu_problem problem
    cdef cnp.ndarray x, y, target, mean, rstd
    cdef object weight, bias, native, param_dtype, eps
    cdef bint want_stats, moved_axis

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
        p.dtype = <gncpu_dtype>_dtype_of(xa)
        p.layout = GNCPU_NHWC if nhwc else GNCPU_NCHW
        p.batch = xa.shape[0]
        p.channels = xa.shape[ndim - 1] if nhwc else xa.shape[1]
        p.spatial = 1
        cdef int d
        for d in range(1, ndim - 1) if nhwc else range(2, ndim):
            p.spatial *= xa.shape[d]
        p.num_groups = _as_groups(num_groups, p.channels)
        p.eps = _as_eps(eps)
        if p.dtype == GNCPU_F64:
            self.native = self.param_dtype = _FLOAT64
        else:
            self.param_dtype = _FLOAT32
            self.native = (_FLOAT32 if p.dtype == GNCPU_F32 else
                           _FLOAT16 if p.dtype == GNCPU_F16 else
                           xa.dtype.newbyteorder("="))
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

    cdef plan(self, object out):
        cdef gncpu_problem* p = &self.problem
        cdef cnp.ndarray xa = self.x
        if out is None:
            self.y = _new_output(xa.ndim, xa.shape, _STORAGE_TYPENUM[<int>p.dtype])
            if p.dtype == GNCPU_BF16:
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
        cdef cnp.ndarray y = self.y
        if self.target is not None:
            self.target[...] = y
            y = self.target
        result = np.moveaxis(y, -1, 1) if self.moved_axis else y
        return (result, self.mean, self.rstd) if self.want_stats else result


# -------------------------------------------------------------- group_norm

def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5, *, out=None,
               activation=None, return_stats=False, channels_last=False):
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

    ValueError for values out of range, TypeError for wrong types; nothing is
    written when either is raised.  See docs/api.md for the full contract.
    """
    cdef _Call call = _Call.__new__(_Call)
    call.eps = eps
    call.parse(x, num_groups, weight, bias, eps, activation, return_stats, channels_last, out)
    call.plan(out)
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
                    size_t bias=0, size_t mean=0, size_t rstd=0, int num_threads=0):
    """group_norm on memory given by address, for bindings that own their
    buffers (gncpu.torch): no NumPy.  dtype and layout are gncpu_dtype and
    gncpu_layout codes; weight, bias, mean and rstd are addresses of the
    parameter type (double for GNCPU_F64, else float) or 0.  With x = y = 0
    the values are only checked.  num_threads > 0 is the caller's thread count
    (torch's), used unless the user chose gncpu's with set_num_threads.
    Raises what group_norm raises for the same values; nothing is written
    when it does."""
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
