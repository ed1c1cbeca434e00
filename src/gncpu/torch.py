"""gncpu for PyTorch: a real operator, a module and a model-wide swap.

    >>> import torch, gncpu.torch
    >>> y = gncpu.torch.group_norm(torch.randn(1, 320, 64, 64), 32, activation="silu")

``torch.ops.gncpu.group_norm(x, num_groups, weight, bias, eps, activation)``
is registered with ``torch.library`` (with a fake kernel, so that
``torch.compile(fullgraph=True)`` traces it, and with autograd).  It reads the
tensor's memory directly through gncpu's C API (no NumPy), float32, float64,
float16 and bfloat16, contiguous or channels-last; the output's memory format
is the one torch's own GroupNorm gives (the input's suggested memory format).

Importing this module imports torch; ``import gncpu`` alone never does.
"""

import math
from typing import Optional, Tuple

import torch
from torch import nn
from torch._prims_common import suggest_memory_format as _suggest_memory_format

from . import _core

__all__ = ["GroupNorm", "group_norm", "replace_group_norm"]

# gncpu_dtype codes (cpp/include/gncpu/gncpu.h).
_DTYPE_CODES = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
_NCHW, _NHWC = 0, 1
_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


# ------------------------------------------------------------------ layout

def _memory_format(x):
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


def _check_input(x):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _DTYPE_CODES:
        raise TypeError(f"x has dtype {x.dtype}; gncpu supports torch.float16, "
                        "torch.bfloat16, torch.float32 and torch.float64")
    if x.device.type != "cpu":
        raise ValueError(f"x must be a CPU tensor, got device {x.device}")
    if x.layout != torch.strided:
        raise ValueError(f"x must be a strided (dense) tensor, got layout {x.layout}")
    if x.dim() < 2:
        raise ValueError(f"x must have shape (N, C, *spatial), got shape {tuple(x.shape)}")


def _param_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_param(p, channels, name):
    if p is None:
        return
    if not isinstance(p, torch.Tensor):
        raise TypeError(f"{name} must be None or a torch.Tensor, got {type(p).__name__}")
    if not (p.dtype.is_floating_point or p.dtype in (torch.int8, torch.int16, torch.int32,
                                                     torch.int64, torch.uint8)):
        raise TypeError(f"{name} must be real-valued, got dtype {p.dtype}")
    if p.device.type != "cpu":
        raise ValueError(f"{name} must be a CPU tensor, got device {p.device}")
    if p.dim() != 1 or p.shape[0] != channels:
        raise ValueError(f"{name} must have shape ({channels},), got {tuple(p.shape)}")


def _as_param(p, dtype, name="weight"):
    """p as a contiguous tensor of the C core's parameter type (float32, or
    float64 for float64 input); no copy when it already is one.  A finite
    value past that type's range is a ValueError, as for NumPy input (a
    conversion would make it inf and the result silently wrong)."""
    if p.dtype != dtype:
        converted = p.to(dtype)
        if p.dtype.is_floating_point and not bool(
                torch.equal(torch.isinf(converted), torch.isinf(p))):
            raise ValueError(f"{name} has values beyond the range of {dtype} "
                             f"(largest magnitude {p.abs().max().item()!r})")
        p = converted
    return p if p.is_contiguous() else p.contiguous()


def _spatial(x):
    spatial = 1
    for size in x.shape[2:]:
        spatial *= size
    return spatial


# ----------------------------------------------------------------- forward

# Bound once: the eager path below reads them on every call.
_Tensor = torch.Tensor
_STRIDED = torch.strided
_CONTIGUOUS = torch.contiguous_format
_FLOAT32, _FLOAT64 = torch.float32, torch.float64
_empty_like = torch.empty_like
_raw = _core._group_norm_raw


def _forward(x, num_groups, weight, bias, eps, activation, with_stats):
    """The real kernel: y (and each group's mean and rstd, shape (N, G) of the
    parameter type) computed by gncpu on x's memory.  x, weight and bias are
    never written.  Written for the per-call cost (a microsecond matters for
    small tensors): the common case, a contiguous or channels-last CPU tensor
    with parameters of the parameter type, costs a few attribute reads."""
    dtype = _DTYPE_CODES.get(x.dtype) if isinstance(x, _Tensor) else None
    if dtype is None or not x.is_cpu or x.layout is not _STRIDED or x.ndim < 2:
        _check_input(x)  # raises
    shape = x.shape
    batch, channels = shape[0], shape[1]
    rows = batch * channels
    spatial = x.numel() // rows if rows else _spatial(x)
    pdtype = _FLOAT64 if dtype == 1 else _FLOAT32
    if weight is not None and not (
            isinstance(weight, _Tensor) and weight.dtype is pdtype and weight.is_cpu and weight.ndim == 1
            and weight.shape[0] == channels and weight.is_contiguous()):
        weight = _param(weight, channels, pdtype, "weight")
    if bias is not None and not (
            isinstance(bias, _Tensor) and bias.dtype is pdtype and bias.is_cpu and bias.ndim == 1
            and bias.shape[0] == channels and bias.is_contiguous()):
        bias = _param(bias, channels, pdtype, "bias")
    if x.is_contiguous() and not (len(shape) in (4, 5) and (channels == 1 or spatial == 1)):
        memory_format = _CONTIGUOUS  # (shapes that are channels-last too go the long way)
    else:
        memory_format = _memory_format(x)
        if not x.is_contiguous(memory_format=memory_format):
            x = x.contiguous(memory_format=memory_format)  # other strides: one copy
    layout = _NCHW if memory_format is _CONTIGUOUS else _NHWC
    if with_stats:  # every value checked before allocating (num_groups sizes the statistics)
        _raw(dtype, layout, batch, channels, spatial, num_groups, eps, activation, 0, 0)
        mean = torch.empty((batch, num_groups), dtype=pdtype)
        rstd = torch.empty((batch, num_groups), dtype=pdtype)
        y = _empty_like(x, memory_format=memory_format)
        _raw(dtype, layout, batch, channels, spatial, num_groups, eps, activation,
             x.data_ptr(), y.data_ptr(),
             0 if weight is None else weight.data_ptr(), 0 if bias is None else bias.data_ptr(),
             mean.data_ptr(), rstd.data_ptr())
        return y, mean, rstd
    y = _empty_like(x, memory_format=memory_format)
    _raw(dtype, layout, batch, channels, spatial, num_groups, eps, activation,
         x.data_ptr(), y.data_ptr(),
         0 if weight is None else weight.data_ptr(), 0 if bias is None else bias.data_ptr())
    return y, None, None


def _param(p, channels, dtype, name):
    """p, checked, as a contiguous CPU tensor of dtype."""
    _check_param(p, channels, name)
    return _as_param(p, dtype, name)


@torch.library.custom_op("gncpu::group_norm_with_stats", mutates_args=(), device_types="cpu")
def _group_norm_with_stats(
    x: torch.Tensor,
    num_groups: int,
    weight: Optional[torch.Tensor],
    bias: Optional[torch.Tensor],
    eps: float,
    activation: Optional[str],
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """GroupNorm (and a fused activation) with each group's mean and
    1/sqrt(var + eps), shape (N, num_groups), float32 (float64 for float64 x)."""
    return _forward(x, num_groups, weight, bias, eps, activation, True)


@_group_norm_with_stats.register_fake
def _group_norm_with_stats_fake(x, num_groups, weight, bias, eps, activation):
    _check_input(x)
    channels = x.shape[1]
    _check_param(weight, channels, "weight")
    _check_param(bias, channels, "bias")
    if all(isinstance(s, int) for s in x.shape):  # concrete sizes: the real checks
        _core._group_norm_raw(_DTYPE_CODES[x.dtype], _NCHW, x.shape[0], channels,
                              _spatial(x), num_groups, eps, activation, 0, 0)
    y = torch.empty_like(x, memory_format=_memory_format(x))
    pdtype = _param_dtype(x.dtype)
    mean = x.new_empty((x.shape[0], num_groups), dtype=pdtype)
    rstd = x.new_empty((x.shape[0], num_groups), dtype=pdtype)
    return y, mean, rstd


# The public operator returns y alone; it decomposes into the one above, so
# autograd, fake tensors and torch.compile all go through that one.
torch.library.define(
    "gncpu::group_norm",
    "(Tensor x, int num_groups, Tensor? weight=None, Tensor? bias=None, float eps=1e-05, "
    "str? activation=None) -> Tensor",
)


@torch.library.impl("gncpu::group_norm", "CompositeImplicitAutograd")
def _group_norm_op(x, num_groups, weight=None, bias=None, eps=1e-5, activation=None):
    return torch.ops.gncpu.group_norm_with_stats(x, num_groups, weight, bias, eps, activation)[0]


# ---------------------------------------------------------------- autograd

def _activation_grad(z, activation):
    """d act(z) / dz."""
    if activation == "silu":
        s = torch.sigmoid(z)
        return s * (1 + z * (1 - s))
    if activation == "relu":
        return (z > 0).to(z.dtype)
    if activation == "gelu":  # the erf form
        cdf = 0.5 * (1 + torch.erf(z * (1 / math.sqrt(2))))
        return cdf + z * torch.exp(-0.5 * z * z) * (1 / math.sqrt(2 * math.pi))
    raise ValueError(f"unknown activation {activation!r}")


def _backward_fallback(grad_y, x, weight, bias, mean, rstd, num_groups, activation, mask):
    """Gradients for x, weight and bias by torch's own GroupNorm backward
    (aten.native_group_norm_backward) fed with gncpu's statistics, in the
    parameter type (float32 for 16-bit input), after the fused activation's
    derivative.  Until gncpu has backward kernels of its own."""
    pdtype = mean.dtype
    batch, channels = x.shape[0], x.shape[1]
    spatial = _spatial(x)
    memory_format = _memory_format(x)
    xp = x.contiguous(memory_format=memory_format).to(pdtype)
    grad = grad_y.to(pdtype).contiguous(memory_format=memory_format)
    w = None if weight is None else weight.to(pdtype)
    if activation is not None:
        # z, the value the activation was applied to, recomputed from the statistics.
        per_group = channels // num_groups
        shape = (batch, channels) + (1,) * (x.dim() - 2)
        scale = rstd.repeat_interleave(per_group, dim=1)
        shift = -mean.repeat_interleave(per_group, dim=1) * scale
        if w is not None:
            scale = scale * w
            shift = shift * w
        if bias is not None:
            shift = shift + bias.to(pdtype)
        z = xp * scale.reshape(shape) + shift.reshape(shape)
        grad = (grad * _activation_grad(z, activation)).contiguous(memory_format=memory_format)
    dx, dw, db = torch.ops.aten.native_group_norm_backward(
        grad, xp, mean, rstd, w, batch, channels, spatial, num_groups,
        [mask[0], mask[1] and w is not None, mask[2]])
    return (None if dx is None else dx.to(x.dtype),
            None if dw is None else dw.to(weight.dtype),
            None if db is None else db.to(bias.dtype))


def _setup_context(ctx, inputs, output):
    x, num_groups, weight, bias, eps, activation = inputs
    _, mean, rstd = output
    ctx.save_for_backward(x, weight, bias, mean, rstd)
    ctx.num_groups = num_groups
    ctx.activation = activation
    ctx.mark_non_differentiable(mean, rstd)


def _backward(ctx, grad_y, grad_mean, grad_rstd):
    x, weight, bias, mean, rstd = ctx.saved_tensors
    need_x, _, need_weight, need_bias = ctx.needs_input_grad[:4]
    dx, dw, db = _backward_fallback(
        grad_y, x, weight, bias, mean, rstd, ctx.num_groups, ctx.activation,
        (need_x, need_weight and weight is not None, need_bias and bias is not None))
    return dx, None, dw, db, None, None


_group_norm_with_stats.register_autograd(_backward, setup_context=_setup_context)


# -------------------------------------------------------------- public API

_is_compiling = torch.compiler.is_compiling
_grad_enabled = torch.is_grad_enabled
_dispatch_modes = torch._C._len_torch_dispatch_stack
_function_modes = torch._C._is_torch_function_mode_enabled
_functorch_active = torch._C._are_functorch_transforms_active


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5, *, activation=None):
    """Group Normalization of a CPU tensor ``x`` of shape (N, C, *spatial), as
    ``torch.nn.functional.group_norm``, then ``activation`` (None, "silu",
    "relu" or "gelu") fused into the same pass.

    float32, float64, float16 or bfloat16 (16-bit input computed in float32);
    weight and bias of any real dtype.  The result has x's dtype and the
    memory format torch's GroupNorm gives.  Differentiable in x, weight and
    bias.  ``torch.ops.gncpu.group_norm`` is the same operator.
    """
    # Autograd, tracing (torch.compile, export, fake tensors), tensor
    # subclasses, dispatch and function modes and functorch transforms need
    # the registered operator; a plain eager call goes straight to the kernel
    # (the same values, a few microseconds sooner).
    if (_is_compiling() or type(x) is not _Tensor or _dispatch_modes() or _function_modes()
            or _functorch_active()
            or _grad_enabled() and (x.requires_grad
                                    or getattr(weight, "requires_grad", False)
                                    or getattr(bias, "requires_grad", False))):
        if not _is_compiling():
            _check_types(x, num_groups, weight, bias, eps, activation)
        return torch.ops.gncpu.group_norm(x, num_groups, weight, bias, eps, activation)
    return _forward(x, num_groups, weight, bias, eps, activation, False)[0]


def _check_types(x, num_groups, weight, bias, eps, activation):
    """TypeError (as the eager path raises) for what the operator's schema
    would refuse with a RuntimeError."""
    if not isinstance(x, _Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if isinstance(num_groups, bool) or not isinstance(num_groups, int):
        raise TypeError(f"num_groups must be an integer, got {type(num_groups).__name__}")
    for p, name in ((weight, "weight"), (bias, "bias")):
        if p is not None and not isinstance(p, _Tensor):
            raise TypeError(f"{name} must be None or a torch.Tensor, got {type(p).__name__}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__}")
    if activation is not None and not isinstance(activation, str):
        raise TypeError(f"activation must be None or a str, got {type(activation).__name__}")


class GroupNorm(nn.GroupNorm):
    """``torch.nn.GroupNorm`` computed by gncpu, with an optional fused
    activation ("silu", "relu" or "gelu").  Same parameters, same state_dict.

    ``forward(input, activation=None)``: an ``activation`` given to the call
    is applied after the norm (the module's own must then be None); this is
    how :func:`replace_group_norm` fuses the activation a block applies next.
    """

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, activation=None,
                 device=None, dtype=None):
        _core._check_layer(num_groups, num_channels, eps, activation)
        super().__init__(num_groups, num_channels, eps, affine, device=device, dtype=dtype)
        self.activation = activation

    def forward(self, input, activation=None):
        own = self.activation
        if activation is None:
            activation = own
        elif own is not None:
            raise ValueError(f"this GroupNorm already applies {own!r}; "
                             f"cannot apply {activation!r} as well")
        return group_norm(input, self.num_groups, self.weight, self.bias, self.eps,
                          activation=activation)

    def extra_repr(self):
        text = super().extra_repr()
        return text + f", activation={self.activation!r}" if self.activation else text


def replace_group_norm(model, fuse_activation=True):
    """Swaps every ``torch.nn.GroupNorm`` in ``model`` (the model itself
    included) for :class:`GroupNorm`, in place: the same module objects and
    parameters, now computed by gncpu.  Returns how many were swapped.

    Subclasses of nn.GroupNorm are left alone (they may compute something
    else).  With ``fuse_activation``, a SiLU, ReLU or GELU module applied
    right after a swapped norm is fused into it where that is provably safe:
    see ``gncpu/_torch_fusion.py`` and the README.
    """
    from ._torch_fusion import fuse_activations

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    swapped = 0
    for module in model.modules():
        if type(module) is nn.GroupNorm:
            module.__class__ = GroupNorm  # no new object: references and hooks stay valid
            module.activation = None
            swapped += 1
    if fuse_activation:
        fuse_activations(model)
    return swapped
