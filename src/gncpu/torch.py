"""gncpu for PyTorch: a real operator, a module and a model-wide swap.

    >>> import torch, gncpu.torch
    >>> y = gncpu.torch.group_norm(torch.randn(1, 320, 64, 64), 32, activation="silu")

``torch.ops.gncpu.group_norm(x, num_groups, weight, bias, eps, activation)``
is registered with ``torch.library`` (with a fake kernel, so that
``torch.compile(fullgraph=True)`` traces it, and with autograd, whose
backward is gncpu's kernel too: ``torch.ops.gncpu.group_norm_backward``, with
a fake kernel of its own, so that compiled training graphs trace it).  It
reads the tensor's memory directly through gncpu's C API (no NumPy), float32,
float64, float16 and bfloat16, contiguous or channels-last; the output's (and
dx's) memory format is the one torch's own GroupNorm gives (the input's
suggested memory format).

Importing this module imports torch; ``import gncpu`` alone never does.
"""

from typing import List, Optional, Tuple

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


def _as_kernel_param(p, channels, pdtype, name):
    """weight or bias as the kernel reads it: None, or a contiguous CPU tensor
    of the parameter type (as it is in the common case: a few attribute reads)."""
    if p is None or (isinstance(p, _Tensor) and p.dtype is pdtype and p.is_cpu and p.ndim == 1
                     and p.shape[0] == channels and p.is_contiguous()):
        return p
    return _param(p, channels, pdtype, name)


def _in_kernel_layout(x, shape, channels, spatial):
    """(x, its memory format, the gncpu_layout code): x as is when it is
    contiguous or channels-last (the format torch's GroupNorm gives its
    output), otherwise copied once into the one torch suggests."""
    if x.is_contiguous() and not (len(shape) in (4, 5) and (channels == 1 or spatial == 1)):
        return x, _CONTIGUOUS, _NCHW  # (shapes that are channels-last too go the long way)
    memory_format = _memory_format(x)
    if not x.is_contiguous(memory_format=memory_format):
        x = x.contiguous(memory_format=memory_format)  # other strides: one copy
    return x, memory_format, _NCHW if memory_format is _CONTIGUOUS else _NHWC


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
    weight = _as_kernel_param(weight, channels, pdtype, "weight")
    bias = _as_kernel_param(bias, channels, pdtype, "bias")
    x, memory_format, layout = _in_kernel_layout(x, shape, channels, spatial)
    if with_stats:  # every value checked before allocating (num_groups sizes the statistics)
        _raw(dtype, layout, batch, channels, spatial, num_groups, eps, activation, 0, 0)
        mean = torch.empty((batch, num_groups), dtype=pdtype)
        rstd = torch.empty((batch, num_groups), dtype=pdtype)
        y = _new_like(x, memory_format)
        _raw(dtype, layout, batch, channels, spatial, num_groups, eps, activation,
             x.data_ptr(), y.data_ptr(),
             0 if weight is None else weight.data_ptr(), 0 if bias is None else bias.data_ptr(),
             mean.data_ptr(), rstd.data_ptr())
        return y, mean, rstd
    y = _new_like(x, memory_format)
    _raw(dtype, layout, batch, channels, spatial, num_groups, eps, activation,
         x.data_ptr(), y.data_ptr(),
         0 if weight is None else weight.data_ptr(), 0 if bias is None else bias.data_ptr())
    return y, None, None


_cached_buffer = _core._cached_buffer
_from_numpy = torch.from_numpy


def _new_like(x, memory_format):
    """An uninitialised tensor like x in memory_format.  Large ones (4 MiB and
    up) come from gncpu's output cache, as NumPy outputs do: torch's
    allocator hands a freed 32 MiB block back to the OS, and every call then
    pays its page faults (a 1x512x128x128 backward: 18 ms instead of 2.5)."""
    buffer = _cached_buffer(x.numel() * x.element_size())
    if buffer is None:
        return _empty_like(x, memory_format=memory_format)
    flat = _from_numpy(buffer).view(x.dtype)
    shape = x.shape
    if memory_format is _CONTIGUOUS:
        return flat.view(shape)
    # Channels-last: (N, *spatial, C) in memory, seen as (N, C, *spatial).
    nd = len(shape)
    return flat.view((shape[0],) + tuple(shape[2:]) + (shape[1],)).permute(0, nd - 1, *range(1, nd - 1))


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

_raw_backward = _core._group_norm_backward_raw
_empty = torch.empty
_zeros = torch.zeros
_is_compiling = torch.compiler.is_compiling
_grad_enabled = torch.is_grad_enabled
_dispatch_modes = torch._C._len_torch_dispatch_stack
_function_modes = torch._C._is_torch_function_mode_enabled
_functorch_active = torch._C._are_functorch_transforms_active


def _backward_kernel(grad_y, x, mean, rstd, num_groups, weight, bias, activation, output_mask):
    """dx, dweight, dbias computed by gncpu's backward kernel; an output whose
    output_mask entry is False is an empty tensor and costs nothing.  dx has
    x's dtype and the memory format torch's GroupNorm backward gives (x's
    suggested one); dweight and dbias are computed in the parameter type, then
    given weight's and bias's dtype.  Nothing is written but the results."""
    dtype = _DTYPE_CODES.get(x.dtype) if isinstance(x, _Tensor) else None
    if dtype is None or not x.is_cpu or x.layout is not _STRIDED or x.ndim < 2:
        _check_input(x)  # raises
    shape = x.shape
    if not (isinstance(grad_y, _Tensor) and grad_y.dtype is x.dtype and grad_y.shape == shape
            and grad_y.is_cpu and grad_y.layout is _STRIDED):
        _check_grad(grad_y, x)  # raises
    batch, channels = shape[0], shape[1]
    rows = batch * channels
    spatial = x.numel() // rows if rows else _spatial(x)
    pdtype = _FLOAT64 if dtype == 1 else _FLOAT32
    need_x, need_weight, need_bias = output_mask
    weight_dtype = pdtype if weight is None else _grad_dtype(weight, pdtype)
    bias_dtype = pdtype if bias is None else _grad_dtype(bias, pdtype)
    weight = _as_kernel_param(weight, channels, pdtype, "weight")
    bias = _as_kernel_param(bias, channels, pdtype, "bias")
    stats_shape = (batch, num_groups)
    if not (isinstance(mean, _Tensor) and mean.dtype is pdtype and mean.is_cpu
            and mean.shape == stats_shape and mean.is_contiguous()):
        mean = _stats(mean, stats_shape, pdtype, "mean", x, num_groups, activation)
    if not (isinstance(rstd, _Tensor) and rstd.dtype is pdtype and rstd.is_cpu
            and rstd.shape == stats_shape and rstd.is_contiguous()):
        rstd = _stats(rstd, stats_shape, pdtype, "rstd", x, num_groups, activation)
    x, memory_format, layout = _in_kernel_layout(x, shape, channels, spatial)
    # grad_y in x's layout: read where it lies, or copied once (an expanded
    # gradient, another memory format), and then that copy takes dx in place.
    if grad_y.is_contiguous(memory_format=memory_format):
        grad_x = _new_like(x, memory_format) if need_x else None
    else:
        grad_y = grad_y.contiguous(memory_format=memory_format)
        grad_x = grad_y if need_x else None
    empty = rows == 0 or spatial == 0  # the sums are zeros; the kernel only checks
    new = _zeros if empty else _empty
    grad_weight = new(channels, dtype=pdtype) if need_weight else None
    grad_bias = new(channels, dtype=pdtype) if need_bias else None
    _raw_backward(dtype, layout, batch, channels, spatial, num_groups, activation,
                  0 if empty else grad_y.data_ptr(), 0 if empty else x.data_ptr(),
                  mean.data_ptr(), rstd.data_ptr(),
                  0 if weight is None else weight.data_ptr(),
                  0 if bias is None else bias.data_ptr(),
                  0 if grad_x is None else grad_x.data_ptr(),
                  0 if grad_weight is None else grad_weight.data_ptr(),
                  0 if grad_bias is None else grad_bias.data_ptr())
    if grad_x is None:
        grad_x = _empty(0, dtype=x.dtype)
    if grad_weight is None:
        grad_weight = _empty(0, dtype=weight_dtype)
    elif weight_dtype is not pdtype:
        grad_weight = grad_weight.to(weight_dtype)
    if grad_bias is None:
        grad_bias = _empty(0, dtype=bias_dtype)
    elif bias_dtype is not pdtype:
        grad_bias = grad_bias.to(bias_dtype)
    return grad_x, grad_weight, grad_bias


def _grad_dtype(p, pdtype):
    """A parameter's gradient's dtype: its own, or the parameter type for an
    integer one (which cannot require grad; asked for anyway, it gets one)."""
    return p.dtype if isinstance(p, _Tensor) and p.dtype.is_floating_point else pdtype


def _check_grad(grad_y, x):
    if not isinstance(grad_y, _Tensor):
        raise TypeError(f"grad_y must be a torch.Tensor, got {type(grad_y).__name__}")
    if grad_y.dtype != x.dtype:
        raise TypeError(f"grad_y must have x's dtype ({x.dtype}), got {grad_y.dtype}")
    if grad_y.device.type != "cpu":
        raise ValueError(f"grad_y must be a CPU tensor, got device {grad_y.device}")
    if grad_y.layout != torch.strided:
        raise ValueError(f"grad_y must be a strided (dense) tensor, got layout {grad_y.layout}")
    if grad_y.shape != x.shape:
        raise ValueError(f"grad_y must have x's shape {tuple(x.shape)}, "
                         f"got {tuple(grad_y.shape)}")


def _check_values(x, num_groups, activation):
    """The kernel's ValueError/TypeError for num_groups or activation (checked
    before the statistics' shape, which num_groups decides)."""
    _raw_backward(_DTYPE_CODES[x.dtype], _NCHW, x.shape[0], x.shape[1], _spatial(x),
                  num_groups, activation, 0, 0, 0, 0)


def _stats(t, stats_shape, dtype, name, x, num_groups, activation):
    """mean or rstd, checked, as a contiguous CPU tensor of the parameter type."""
    _check_values(x, num_groups, activation)
    if not isinstance(t, _Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.dtype.is_floating_point:
        raise TypeError(f"{name} must be floating point, got dtype {t.dtype}")
    if t.device.type != "cpu":
        raise ValueError(f"{name} must be a CPU tensor, got device {t.device}")
    if t.shape != stats_shape:
        raise ValueError(f"{name} must have shape {stats_shape}, got {tuple(t.shape)}")
    return t.to(dtype).contiguous()


@torch.library.custom_op("gncpu::group_norm_backward", mutates_args=(), device_types="cpu")
def _group_norm_backward(
    grad_y: torch.Tensor,
    x: torch.Tensor,
    mean: torch.Tensor,
    rstd: torch.Tensor,
    num_groups: int,
    weight: Optional[torch.Tensor],
    bias: Optional[torch.Tensor],
    activation: Optional[str],
    output_mask: List[bool],
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradients of group_norm_with_stats's y with respect to x, weight and
    bias, by gncpu's kernel, from its statistics: (dx, dweight, dbias), each
    an empty tensor where output_mask says it is not wanted."""
    return _backward_kernel(grad_y, x, mean, rstd, num_groups, weight, bias, activation,
                            output_mask)


@_group_norm_backward.register_fake
def _group_norm_backward_fake(grad_y, x, mean, rstd, num_groups, weight, bias, activation,
                              output_mask):
    _check_input(x)
    _check_grad(grad_y, x)
    channels = x.shape[1]
    _check_param(weight, channels, "weight")
    _check_param(bias, channels, "bias")
    if all(isinstance(s, int) for s in x.shape):  # concrete sizes: the real checks
        _check_values(x, num_groups, activation)
    pdtype = _param_dtype(x.dtype)
    need_x, need_weight, need_bias = output_mask
    grad_x = torch.empty_like(x, memory_format=_memory_format(x)) if need_x else x.new_empty(0)
    weight_dtype = pdtype if weight is None else _grad_dtype(weight, pdtype)
    bias_dtype = pdtype if bias is None else _grad_dtype(bias, pdtype)
    grad_weight = x.new_empty(channels if need_weight else 0, dtype=weight_dtype)
    grad_bias = x.new_empty(channels if need_bias else 0, dtype=bias_dtype)
    return grad_x, grad_weight, grad_bias


def _setup_context(ctx, inputs, output):
    x, num_groups, weight, bias, eps, activation = inputs
    _, mean, rstd = output
    ctx.save_for_backward(x, weight, bias, mean, rstd)
    ctx.num_groups = num_groups
    ctx.activation = activation
    ctx.mark_non_differentiable(mean, rstd)


_backward_op = torch.ops.gncpu.group_norm_backward.default


def _backward(ctx, grad_y, grad_mean, grad_rstd):
    x, weight, bias, mean, rstd = ctx.saved_tensors
    need_x, _, need_weight, need_bias = ctx.needs_input_grad[:4]
    mask = [need_x, need_weight and weight is not None, need_bias and bias is not None]
    # Tracing (AOTAutograd calls this with fake tensors), modes, transforms
    # and a double backward (grad mode on: the operator then says it has no
    # formula of its own) need the operator; a plain eager backward calls its
    # kernel directly (the same values, ~25 µs sooner).
    if (type(grad_y) is not _Tensor or type(x) is not _Tensor or _grad_enabled()
            or _is_compiling() or _dispatch_modes() or _function_modes() or _functorch_active()):
        dx, dw, db = _backward_op(grad_y, x, mean, rstd, ctx.num_groups, weight, bias,
                                  ctx.activation, mask)
    else:
        dx, dw, db = _backward_kernel(grad_y, x, mean, rstd, ctx.num_groups, weight, bias,
                                      ctx.activation, mask)
    need_x, need_weight, need_bias = mask
    return (dx if need_x else None), None, (dw if need_weight else None), \
        (db if need_bias else None), None, None


_group_norm_with_stats.register_autograd(_backward, setup_context=_setup_context)


# -------------------------------------------------------------- public API

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
