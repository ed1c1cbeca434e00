"""What gncpu.torch accepts: dtypes, layouts, argument checks and the memory
format an output gets.  Imports torch and gncpu._core, nothing of gncpu.torch."""

import operator

import numpy as np
import torch
from torch._prims_common import suggest_memory_format as _suggest_memory_format

from gncpu import _core

# The C API's codes and parameter types in torch's terms (from _core's tables).
# (A dtype torch has no name for is one gncpu.torch does not offer.)
DTYPE_CODES = {getattr(torch, name): code for name, code in _core.DTYPE_CODES.items()
               if isinstance(getattr(torch, name, None), torch.dtype)}
NCHW, NHWC = _core.LAYOUT_CODES["nchw"], _core.LAYOUT_CODES["nhwc"]
PARAMETER_DTYPES = {code: getattr(torch, name) for code, name in _core.PARAMETER_DTYPES.items()}
_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}
_INTEGER_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def memory_format(x):
    """torch's own choice for GroupNorm's output: ``x.suggest_memory_format()``
    (channels-last for 4-D/5-D tensors whose strides are channels-last,
    contiguous otherwise).  Checked the cheap way first."""
    channels_last = _CHANNELS_LAST.get(x.dim())
    if channels_last is None:
        return torch.contiguous_format
    if x.is_contiguous():
        if not x.is_contiguous(memory_format=channels_last):
            return torch.contiguous_format
    elif x.is_contiguous(memory_format=channels_last):
        return channels_last
    # Both (size-1 dimensions) or neither: the strides decide, as in torch.
    return _suggest_memory_format(x)


def param_dtype(dtype):
    """The C core's parameter and statistics type for input of dtype."""
    return PARAMETER_DTYPES[DTYPE_CODES[dtype]]


def spatial_size(x):
    spatial = 1
    for size in x.shape[2:]:
        spatial *= size
    return spatial


def _check_dense(t, name, devices=("cpu",)):
    if t.layout != torch.strided:
        raise ValueError(f"{name} must be a strided (dense) tensor, got layout {t.layout}"
                         + (" (call .to_dense() first)" if t.layout != torch._mkldnn
                            else " (call .to_dense() first; mkldnn tensors are not supported)"))
    if t.device.type not in devices:
        raise ValueError(f"{name} must be a CPU tensor, got device {t.device}")


def _numpy_hint(x):
    return ("; for NumPy arrays use gncpu.group_norm" if isinstance(x, np.ndarray) else "")


def check_input(x, devices=("cpu",)):
    """x as the kernels take it; devices adds "meta" for shape inference."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}{_numpy_hint(x)}")
    if x.dtype not in DTYPE_CODES:
        raise TypeError(f"x has dtype {x.dtype}; gncpu supports "
                        + ", ".join(map(str, DTYPE_CODES)))
    _check_dense(x, "x", devices)
    if x.dim() < 2:
        raise ValueError(f"x must have shape (N, C, *spatial), got shape {tuple(x.shape)}")


def check_param(p, channels, name, devices=("cpu",)):
    if p is None:
        return
    if not isinstance(p, torch.Tensor):
        raise TypeError(f"{name} must be None or a torch.Tensor, got {type(p).__name__}")
    if not (p.dtype.is_floating_point or p.dtype in _INTEGER_DTYPES):
        raise TypeError(f"{name} must be real-valued, got dtype {p.dtype}")
    _check_dense(p, name, devices)
    if p.dim() != 1 or p.shape[0] != channels:
        raise ValueError(f"{name} must have shape ({channels},), got {tuple(p.shape)}")


def check_grad(grad_y, x, devices=("cpu",)):
    if not isinstance(grad_y, torch.Tensor):
        raise TypeError(f"grad_y must be a torch.Tensor, got {type(grad_y).__name__}")
    if grad_y.dtype != x.dtype:
        raise TypeError(f"grad_y must have x's dtype ({x.dtype}), got {grad_y.dtype}")
    _check_dense(grad_y, "grad_y", devices)
    if grad_y.shape != x.shape:
        raise ValueError(f"grad_y must have x's shape {tuple(x.shape)}, "
                         f"got {tuple(grad_y.shape)}")


def check_stats(t, stats_shape, name, devices=("cpu",)):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.dtype.is_floating_point:
        raise TypeError(f"{name} must be floating point, got dtype {t.dtype}")
    _check_dense(t, name, devices)
    if tuple(t.shape) != tuple(stats_shape):
        raise ValueError(f"{name} must have shape {tuple(stats_shape)}, got {tuple(t.shape)}")


def same_device(name, t, x):
    """ValueError unless t (a tensor or None) is on x's device: a CPU kernel
    never reads a meta tensor's (absent) memory."""
    if t is not None and t.device != x.device:
        raise ValueError(f"{name} is on {t.device} but x is on {x.device}")


def as_scalars(num_groups, eps):
    """num_groups as an int and eps as a float, from any integer or real type
    (NumPy scalars included), as the operator's schema needs them; TypeError
    as the eager path raises for anything else."""
    if isinstance(num_groups, bool) or isinstance(num_groups, torch.Tensor):
        raise TypeError(f"num_groups must be an integer, got {type(num_groups).__name__}")
    try:
        num_groups = operator.index(num_groups)
    except TypeError:
        raise TypeError(f"num_groups must be an integer, got {type(num_groups).__name__}") from None
    if isinstance(eps, (bool, torch.Tensor, str, bytes)):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__}")
    try:
        eps = float(eps)
    except (TypeError, ValueError):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__}") from None
    return num_groups, eps


def check_types(x, num_groups, weight, bias, eps, activation):
    """TypeError (as the eager path raises) for what the operator's schema
    would refuse with a RuntimeError; returns num_groups and eps as the schema
    takes them."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}{_numpy_hint(x)}")
    for p, name in ((weight, "weight"), (bias, "bias")):
        if p is not None and not isinstance(p, torch.Tensor):
            raise TypeError(f"{name} must be None or a torch.Tensor, got {type(p).__name__}")
    if activation is not None and not isinstance(activation, str):
        raise TypeError(f"activation must be None or a str, got {type(activation).__name__}")
    return as_scalars(num_groups, eps)
