# Python arguments -> the C problem's values (included by _core.pyx): each
# argument's type and form, the hints that errors carry, and the tables of
# the C API's codes that gncpu.torch and the tests read.


# ------------------------------------------------------------------ tables
# Each fact of the C API once, read from its header through _capi.pxd.

# gncpu_dtype codes by NumPy/torch dtype name ("float32": GNCPU_F32, ...).
DTYPE_CODES = {gncpu_dtype_name(i).decode(): i for i in range(GNCPU_DTYPE_COUNT)}
# gncpu_layout codes: x[n][c][s] and x[n][s][c].
LAYOUT_CODES = {"nchw": GNCPU_NCHW, "nhwc": GNCPU_NHWC}
# The parameter type (weight, bias, mean, rstd) per gncpu_dtype code: double
# for float64 input, float for every other dtype (gncpu.h).
PARAMETER_DTYPES = {code: "float64" if code == GNCPU_F64 else "float32"
                    for code in DTYPE_CODES.values()}
# The activations' names, as the C core spells them (None is GNCPU_ACT_NONE).
ACTIVATION_NAMES = tuple(gncpu_activation_name(i).decode() for i in range(1, GNCPU_ACT_COUNT))

_FLOAT32 = np.dtype(np.float32)
_FLOAT64 = np.dtype(np.float64)
_FLOAT16 = np.dtype(np.float16)
# The storage NumPy allocates for each gncpu_dtype, by code (bfloat16: NumPy
# has no type number for it, so its outputs are uint16 buffers viewed as
# ml_dtypes' bfloat16).
cdef int[4] _STORAGE_TYPENUM = [cnp.NPY_FLOAT32, cnp.NPY_FLOAT64, cnp.NPY_FLOAT16,
                                cnp.NPY_UINT16]
# PARAMETER_DTYPES as NumPy dtypes, indexed by code (_as_param compares them by identity).
_PARAMETER_NP = tuple(_FLOAT64 if PARAMETER_DTYPES[code] == "float64" else _FLOAT32
                      for code in range(GNCPU_DTYPE_COUNT))

_ACTIVATIONS = {name: i for i, name in enumerate(ACTIVATION_NAMES, start=1)}


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
        return DTYPE_CODES["bfloat16"]
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
    if status in (GNCPU_ERR_BAD_SHAPE, GNCPU_ERR_BAD_ACTIVATION, GNCPU_ERR_BAD_STATS):
        raise ValueError(message)
    raise RuntimeError(f"gncpu internal error: {message}")


# ---------------------------------------------------------------- geometry

cdef struct _Geometry:
    gncpu_dtype dtype
    gncpu_layout layout
    int64_t batch
    int64_t channels
    int64_t spatial
    int64_t num_groups


cdef _Geometry _geometry(cnp.ndarray xa, bint nhwc, object num_groups) except *:
    """What the forward and backward problems both say of x (a float array of
    ndim >= 2 that gncpu has a kernel for)."""
    cdef _Geometry g
    cdef int ndim = xa.ndim
    cdef int d
    g.dtype = <gncpu_dtype>_dtype_of(xa)
    g.layout = GNCPU_NHWC if nhwc else GNCPU_NCHW
    g.batch = xa.shape[0]
    g.channels = xa.shape[ndim - 1] if nhwc else xa.shape[1]
    g.spatial = 1
    for d in range(1, ndim - 1) if nhwc else range(2, ndim):
        g.spatial *= xa.shape[d]
    g.num_groups = _as_groups(num_groups, g.channels)
    return g


cdef inline object _parameter_dtype(gncpu_dtype dtype):
    return _PARAMETER_NP[<int>dtype]


cdef object _native_dtype(cnp.ndarray xa, gncpu_dtype dtype):
    """The dtype the kernels read x as: x's, in native byte order."""
    if dtype == GNCPU_F32:
        return _FLOAT32
    if dtype == GNCPU_F64:
        return _FLOAT64
    if dtype == GNCPU_F16:
        return _FLOAT16
    return xa.dtype.newbyteorder("=")  # ml_dtypes' bfloat16
