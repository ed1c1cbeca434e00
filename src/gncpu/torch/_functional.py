"""gncpu.torch.group_norm: the public function, and how each way of calling
it reaches the kernel.

- A plain eager call (a torch.Tensor, no autograd needed, no tracer, mode,
  functorch transform or forward-mode AD) goes straight to the kernel: the
  least overhead per call.
- ``__torch_function__`` first: FX proxies (``torch.fx.symbolic_trace``
  records a call of this function), tensor subclasses, function modes.
- During ``torch.onnx.export`` (either exporter) it is written with torch's
  own ops, ``F.group_norm`` and the activation, which every ONNX exporter
  knows (GroupNormalization or its decomposition); the model ONNX Runtime
  runs computes the same function.
- Forward-mode AD and functorch transforms (``torch.func.jvp``, ``jacfwd``,
  ``grad``, ``vmap``...) go through an ``autograd.Function`` with a jvp
  rule (the custom operator has none).
- Everything else (autograd, ``torch.jit.trace``, ``torch.compile``,
  ``torch.export``) calls ``torch.ops.gncpu.group_norm``.
"""

import torch
import torch.autograd.forward_ad as _forward_ad
import torch.nn.functional as F

from . import _kernels, _ops, _stats
from ._activations import ACTIVATIONS
from ._checks import check_input, check_param, check_types

_Tensor = torch.Tensor
_is_compiling = torch.compiler.is_compiling
_tracing_state = torch._C._get_tracing_state
_grad_enabled = torch.is_grad_enabled
_dispatch_modes = torch._C._len_torch_dispatch_stack
_function_modes = torch._C._is_torch_function_mode_enabled
_functorch_active = torch._C._are_functorch_transforms_active
_has_torch_function = torch.overrides.has_torch_function
_handle_torch_function = torch.overrides.handle_torch_function
_kernel_forward = _kernels.forward
_DEVICES = ("cpu", "meta")  # meta: shape inference, as F.group_norm does


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5, *, activation=None, stats=None):
    """Group Normalization of a CPU tensor ``x`` of shape (N, C, *spatial), as
    ``torch.nn.functional.group_norm``, then ``activation`` (None, "silu",
    "relu" or "gelu") fused into the same pass.

    float32, float64, float16 or bfloat16 (16-bit input computed in float32);
    weight and bias of any real dtype.  The result is an ordinary tensor of
    x's dtype in the memory format torch's GroupNorm gives.  Differentiable in
    x, weight and bias (reverse and forward mode).  ``torch.ops.gncpu.group_norm``
    is the same operator.

    stats: normalise with given statistics instead of measuring x's (a
    gncpu.GroupStats merged from the pieces of a larger tensor, see
    group_norm_stats, or a (mean, rstd) pair of (N, num_groups) tensors):
    eager inference only, no autograd through it.
    """
    if stats is not None:
        return _stats.group_norm_with_stats(x, num_groups, weight, bias, eps, activation, stats)
    if (type(x) is _Tensor and x.is_cpu and not (
            _is_compiling() or _tracing_state() is not None or _dispatch_modes()
            or _function_modes() or _functorch_active() or _forward_ad._current_level >= 0
            or _grad_enabled() and (x.requires_grad or getattr(weight, "requires_grad", False)
                                    or getattr(bias, "requires_grad", False)))):
        return _kernel_forward(x, num_groups, weight, bias, eps, activation, False)[0]
    return _general(x, num_groups, weight, bias, eps, activation)


group_norm.__module__ = "gncpu.torch"  # where FX code and pickles find it


def _general(x, num_groups, weight, bias, eps, activation):
    tensors = (x, weight, bias)
    compiling = _is_compiling()
    if not compiling and _has_torch_function(tensors):
        return _handle_torch_function(group_norm, tensors, x, num_groups, weight, bias, eps,
                                      activation=activation)
    if torch.onnx.is_in_onnx_export():  # (torch.export under the dynamo exporter: compiling)
        num_groups, eps = check_types(x, num_groups, weight, bias, eps, activation)
        return composite(x, num_groups, weight, bias, eps, activation)
    if not compiling:
        num_groups, eps = check_types(x, num_groups, weight, bias, eps, activation)
        if _tracing_state() is None:  # (a traced size would make these checks warn)
            # the dispatcher's errors for CUDA or sparse tensors would say less
            check_input(x, _DEVICES)
            check_param(weight, x.shape[1], "weight", _DEVICES)
            check_param(bias, x.shape[1], "bias", _DEVICES)
    # Forward-mode AD and torch.func need the jvp rule and a Function torch.func
    # can transform, also under torch.compile (which then graph-breaks on it).
    if _forward_ad._current_level >= 0 or _functorch_active():
        return _GroupNormFunction.apply(x, num_groups, weight, bias, eps, activation)[0]
    return torch.ops.gncpu.group_norm(x, num_groups, weight, bias, eps, activation)


# ----------------------------------------------------- torch's own ops (ONNX)

def composite(x, num_groups, weight, bias, eps, activation):
    """The same function in torch's own ops (what ONNX exporters know)."""
    if activation is not None and activation not in ACTIVATIONS:
        raise ValueError(f"activation must be None or one of {tuple(ACTIVATIONS)}, "
                         f"got {activation!r}")
    weight = None if weight is None else weight.to(x.dtype)
    bias = None if bias is None else bias.to(x.dtype)
    y = F.group_norm(x, num_groups, weight, bias, eps)
    return y if activation is None else ACTIVATIONS[activation].function(y)


# --------------------------------------------- forward-mode AD, functorch


def _tangent(x, num_groups, weight, bias, activation, mean, rstd, tx, tw, tb):
    """The tangent of y from those of x, weight and bias (each may be None):
    d xhat = rstd (dx - mean(dx) - xhat mean(xhat dx)) per group, then through
    the affine map and the activation.  Computed in the statistics' type."""
    dtype = mean.dtype
    batch, channels = x.shape[0], x.shape[1]
    per_channel = (1, channels, 1)
    xhat = (x.to(dtype).reshape(batch, num_groups, -1) - mean.unsqueeze(-1)) * rstd.unsqueeze(-1)
    dz = None
    if tx is not None:
        t = tx.to(dtype).reshape(batch, num_groups, -1)
        dxhat = rstd.unsqueeze(-1) * (t - t.mean(-1, keepdim=True)
                                      - xhat * (xhat * t).mean(-1, keepdim=True))
        dz = dxhat.reshape(batch, channels, -1)
        if weight is not None:
            dz = dz * weight.to(dtype).reshape(per_channel)
    xhat = xhat.reshape(batch, channels, -1)
    if tw is not None:
        term = xhat * tw.to(dtype).reshape(per_channel)
        dz = term if dz is None else dz + term
    if tb is not None:
        term = tb.to(dtype).reshape(per_channel).expand_as(xhat)
        dz = term if dz is None else dz + term
    if dz is None:
        dz = torch.zeros_like(xhat)
    if activation is not None:
        z = xhat if weight is None else xhat * weight.to(dtype).reshape(per_channel)
        if bias is not None:
            z = z + bias.to(dtype).reshape(per_channel)
        dz = dz * ACTIVATIONS[activation].derivative(z)
    return dz.reshape(x.shape).to(x.dtype)


class _GroupNormFunction(torch.autograd.Function):
    """group_norm_with_stats with a jvp rule, for forward-mode AD and
    functorch transforms; its vmap rule comes from the operators' own."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, num_groups, weight, bias, eps, activation):
        # This Function is the autograd of the call: the operator's own
        # formula (a Function torch.func cannot transform) must not record.
        with torch.no_grad():
            return _ops.group_norm_with_stats(x, num_groups, weight, bias, eps, activation)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, num_groups, weight, bias, eps, activation = inputs
        _, mean, rstd = output
        ctx.save_for_backward(x, weight, bias, mean, rstd)
        ctx.save_for_forward(x, weight, bias, mean, rstd)
        ctx.num_groups = num_groups
        ctx.activation = activation
        ctx.mark_non_differentiable(mean, rstd)

    @staticmethod
    def backward(ctx, grad_y, grad_mean, grad_rstd):
        dx, dw, db = _ops.backward_formula(ctx, grad_y, _backward_function)
        return dx, None, dw, db, None, None

    @staticmethod
    def jvp(ctx, tx, _num_groups, tw, tb, _eps, _activation):
        x, weight, bias, mean, rstd = ctx.saved_tensors
        ty = _tangent(x, ctx.num_groups, weight, bias, ctx.activation, mean, rstd, tx, tw, tb)
        return ty, None, None


class _GroupNormBackwardFunction(torch.autograd.Function):
    """group_norm_backward for torch.func: transformable (vmap through the
    operator's rule), and a clear error for a second derivative, which gncpu
    does not compute."""

    generate_vmap_rule = True

    @staticmethod
    def forward(grad_y, x, mean, rstd, num_groups, weight, bias, activation, need_x,
                need_weight, need_bias):
        with torch.no_grad():
            return _ops.group_norm_backward(grad_y, x, mean, rstd, num_groups, weight, bias,
                                            activation, [need_x, need_weight, need_bias])

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(_NO_SECOND_DERIVATIVE)

    @staticmethod
    def jvp(ctx, *tangents):
        raise RuntimeError(_NO_SECOND_DERIVATIVE)


_NO_SECOND_DERIVATIVE = _ops.NO_SECOND_DERIVATIVE


def _backward_function(grad_y, x, mean, rstd, num_groups, weight, bias, activation, mask):
    # (the mask as three flags: a list would be taken apart by torch.func's pytrees)
    return _GroupNormBackwardFunction.apply(grad_y, x, mean, rstd, num_groups, weight, bias,
                                            activation, *mask)
