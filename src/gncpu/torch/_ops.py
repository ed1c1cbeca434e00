"""The operators gncpu registers with torch.library:

- ``gncpu::group_norm_with_stats(x, num_groups, weight, bias, eps, activation)
  -> (y, mean, rstd)``: the kernel, with a fake kernel (shape inference on
  meta and fake tensors: torch.compile, torch.export), an autograd formula
  and a vmap rule;
- ``gncpu::group_norm(...) -> y``: the public operator, a composite of the
  one above (so autograd, fake tensors and compilers all go through it);
- ``gncpu::group_norm_backward(grad_y, x, mean, rstd, num_groups, weight,
  bias, activation, output_mask) -> (dx, dweight, dbias)``: the backward
  kernel, with a fake kernel and a vmap rule, so that compiled training
  graphs hold it.
"""

from typing import List, Optional, Tuple

import torch

from . import _kernels
from ._checks import (DTYPE_CODES, NCHW, check_grad, check_input, check_param, check_stats,
                      memory_format, param_dtype, same_device, spatial_size)

_SHAPE_INFERENCE_DEVICES = ("cpu", "meta")


def _concrete(x):
    return all(isinstance(s, int) for s in x.shape)


# ----------------------------------------------------------------- forward

@torch.library.custom_op("gncpu::group_norm_with_stats", mutates_args=(), device_types="cpu")
def group_norm_with_stats(
    x: torch.Tensor,
    num_groups: int,
    weight: Optional[torch.Tensor],
    bias: Optional[torch.Tensor],
    eps: float,
    activation: Optional[str],
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """GroupNorm (and a fused activation) with each group's mean and
    1/sqrt(var + eps), shape (N, num_groups), float32 (float64 for float64 x)."""
    return _kernels.forward(x, num_groups, weight, bias, eps, activation, True)


@group_norm_with_stats.register_fake
def _group_norm_with_stats_fake(x, num_groups, weight, bias, eps, activation):
    check_input(x, _SHAPE_INFERENCE_DEVICES)
    channels = x.shape[1]
    for p, name in ((weight, "weight"), (bias, "bias")):
        check_param(p, channels, name, _SHAPE_INFERENCE_DEVICES)
        same_device(name, p, x)
    if _concrete(x):  # concrete sizes: the real checks
        _kernels._raw(DTYPE_CODES[x.dtype], NCHW, x.shape[0], channels, spatial_size(x),
                      num_groups, eps, activation, 0, 0)
    y = torch.empty_like(x, memory_format=memory_format(x))
    pdtype = param_dtype(x.dtype)
    mean = x.new_empty((x.shape[0], num_groups), dtype=pdtype)
    rstd = x.new_empty((x.shape[0], num_groups), dtype=pdtype)
    return y, mean, rstd


torch.library.define(
    "gncpu::group_norm",
    "(Tensor x, int num_groups, Tensor? weight=None, Tensor? bias=None, float eps=1e-05, "
    "str? activation=None) -> Tensor",
)


@torch.library.impl("gncpu::group_norm", "CompositeImplicitAutograd")
def _group_norm_op(x, num_groups, weight=None, bias=None, eps=1e-5, activation=None):
    return torch.ops.gncpu.group_norm_with_stats(x, num_groups, weight, bias, eps, activation)[0]


# ---------------------------------------------------------------- backward

@torch.library.custom_op("gncpu::group_norm_backward", mutates_args=(), device_types="cpu")
def group_norm_backward(
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
    return _kernels.backward(grad_y, x, mean, rstd, num_groups, weight, bias, activation,
                             output_mask)


@group_norm_backward.register_fake
def _group_norm_backward_fake(grad_y, x, mean, rstd, num_groups, weight, bias, activation,
                              output_mask):
    devices = _SHAPE_INFERENCE_DEVICES
    check_input(x, devices)
    check_grad(grad_y, x, devices)
    channels = x.shape[1]
    for p, name in ((weight, "weight"), (bias, "bias")):
        check_param(p, channels, name, devices)
        same_device(name, p, x)
    if _concrete(x):  # concrete sizes: the real checks
        _kernels.check_values(x, num_groups, activation)
    for t, name in ((grad_y, "grad_y"), (mean, "mean"), (rstd, "rstd")):
        if name != "grad_y":
            check_stats(t, (x.shape[0], num_groups), name, devices)
        same_device(name, t, x)
    pdtype = param_dtype(x.dtype)
    need_x, need_weight, need_bias = output_mask
    grad_x = torch.empty_like(x, memory_format=memory_format(x)) if need_x else x.new_empty(0)
    weight_dtype = pdtype if weight is None else _kernels.grad_dtype(weight, pdtype)
    bias_dtype = pdtype if bias is None else _kernels.grad_dtype(bias, pdtype)
    grad_weight = x.new_empty(channels if need_weight else 0, dtype=weight_dtype)
    grad_bias = x.new_empty(channels if need_bias else 0, dtype=bias_dtype)
    return grad_x, grad_weight, grad_bias


# ---------------------------------------------------------------- autograd

def _setup_context(ctx, inputs, output):
    x, num_groups, weight, bias, eps, activation = inputs
    _, mean, rstd = output
    ctx.save_for_backward(x, weight, bias, mean, rstd)
    ctx.num_groups = num_groups
    ctx.activation = activation
    ctx.mark_non_differentiable(mean, rstd)


_backward_op = torch.ops.gncpu.group_norm_backward.default
_Tensor = torch.Tensor
_is_compiling = torch.compiler.is_compiling
_grad_enabled = torch.is_grad_enabled
_dispatch_modes = torch._C._len_torch_dispatch_stack
_function_modes = torch._C._is_torch_function_mode_enabled
_functorch_active = torch._C._are_functorch_transforms_active


def backward_formula(ctx, grad_y, operator=None):
    """(dx, dweight, dbias), each None where autograd does not ask for it;
    ``operator`` (the registered one by default) computes them where the
    kernel cannot be called directly."""
    x, weight, bias, mean, rstd = ctx.saved_tensors
    need_x, _, need_weight, need_bias = ctx.needs_input_grad[:4]
    mask = [need_x, need_weight and weight is not None, need_bias and bias is not None]
    # Tracing (AOTAutograd calls this with fake tensors), modes, transforms
    # and a double backward (grad mode on: the operator then says it has no
    # formula of its own) need the operator; a plain eager backward calls its
    # kernel directly (the same values, ~25 µs sooner).
    if (type(grad_y) is not _Tensor or type(x) is not _Tensor or _grad_enabled()
            or _is_compiling() or _dispatch_modes() or _function_modes() or _functorch_active()):
        dx, dw, db = (operator or _backward_op)(grad_y, x, mean, rstd, ctx.num_groups, weight,
                                                bias, ctx.activation, mask)
    else:
        dx, dw, db = _kernels.backward(grad_y, x, mean, rstd, ctx.num_groups, weight, bias,
                                       ctx.activation, mask)
    need_x, need_weight, need_bias = mask
    return (dx if need_x else None), (dw if need_weight else None), (db if need_bias else None)


def _backward(ctx, grad_y, grad_mean, grad_rstd):
    dx, dw, db = backward_formula(ctx, grad_y)
    return dx, None, dw, db, None, None


group_norm_with_stats.register_autograd(_backward, setup_context=_setup_context)

NO_SECOND_DERIVATIVE = (
    "gncpu.torch computes first derivatives only: a second derivative (torch.func.hessian, "
    "grad of grad, create_graph=True then backward) is not supported; use "
    "torch.nn.functional.group_norm for it")


def _no_second_derivative(ctx, grad_x, grad_weight, grad_bias):
    raise RuntimeError(NO_SECOND_DERIVATIVE)


group_norm_backward.register_autograd(_no_second_derivative)


# -------------------------------------------------------------------- vmap
# GroupNorm's statistics are per example, so a vmapped dimension of the
# per-example tensors folds into the batch: one kernel call for the whole
# vmap.  A batched weight or bias (a per-member parameter) is computed member
# by member.

def _fold(t, dim, size):
    """t with its vmapped dimension moved to the front and merged into the batch."""
    t = t.movedim(dim, 0)
    return t.reshape((size * t.shape[1],) + tuple(t.shape[2:]))


def _unfold(t, size):
    return t.reshape((size, t.shape[0] // size) + tuple(t.shape[1:]))


def _member(t, dim, i):
    return t if dim is None else t.select(dim, i)


def _group_norm_with_stats_vmap(info, in_dims, x, num_groups, weight, bias, eps, activation):
    x_dim, _, weight_dim, bias_dim, _, _ = in_dims
    size = info.batch_size
    if x_dim is None and weight_dim is None and bias_dim is None:
        outputs = torch.ops.gncpu.group_norm_with_stats(x, num_groups, weight, bias, eps,
                                                        activation)
        return outputs, (None, None, None)
    if weight_dim is None and bias_dim is None:
        y, mean, rstd = torch.ops.gncpu.group_norm_with_stats(
            _fold(x, x_dim, size), num_groups, weight, bias, eps, activation)
        return (_unfold(y, size), _unfold(mean, size), _unfold(rstd, size)), (0, 0, 0)
    outputs = [torch.ops.gncpu.group_norm_with_stats(
        _member(x, x_dim, i), num_groups, _member(weight, weight_dim, i),
        _member(bias, bias_dim, i), eps, activation) for i in range(size)]
    return tuple(torch.stack(out) for out in zip(*outputs)), (0, 0, 0)


def _group_norm_backward_vmap(info, in_dims, grad_y, x, mean, rstd, num_groups, weight, bias,
                              activation, output_mask):
    g_dim, x_dim, mean_dim, rstd_dim, _, weight_dim, bias_dim, _, _ = in_dims
    size = info.batch_size
    if weight_dim is None and bias_dim is None:
        # Per-example tensors: every one is folded (an unbatched one expanded).
        def folded(t, dim):
            if dim is None:
                t, dim = t.unsqueeze(0).expand((size,) + tuple(t.shape)), 0
            return _fold(t, dim, size)
        # dweight and dbias sum over the batch, so over the vmapped members
        # too: computed member by member instead (each member's own sum).
        if not (output_mask[1] or output_mask[2]):
            dx, dw, db = torch.ops.gncpu.group_norm_backward(
                folded(grad_y, g_dim), folded(x, x_dim), folded(mean, mean_dim),
                folded(rstd, rstd_dim), num_groups, weight, bias, activation, output_mask)
            return (_unfold(dx, size) if output_mask[0] else dx, dw, db), \
                (0 if output_mask[0] else None, None, None)
    outputs = [torch.ops.gncpu.group_norm_backward(
        _member(grad_y, g_dim, i), _member(x, x_dim, i), _member(mean, mean_dim, i),
        _member(rstd, rstd_dim, i), num_groups, _member(weight, weight_dim, i),
        _member(bias, bias_dim, i), activation, output_mask) for i in range(size)]
    return tuple(torch.stack(out) for out in zip(*outputs)), (0, 0, 0)


group_norm_with_stats.register_vmap(_group_norm_with_stats_vmap)
group_norm_backward.register_vmap(_group_norm_backward_vmap)
