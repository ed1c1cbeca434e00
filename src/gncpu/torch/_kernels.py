"""gncpu's C kernels on torch tensors' memory: the forward (y and each group's
statistics) and the backward (dx, dweight, dbias).  No autograd, no
dispatcher: the registered operators (_ops.py) and the eager fast path
(_functional.py) both call these.

Outputs are ordinary tensors from torch's allocator, never views of a
buffer gncpu keeps.  The thread count follows ``torch.get_num_threads()``
unless the user chose gncpu's with ``gncpu.set_num_threads``.
"""

import torch

from .. import _core
from ._checks import (DTYPE_CODES, NCHW, NHWC, PARAMETER_DTYPES, check_grad, check_input,
                      check_param, check_stats, memory_format, spatial_size)

# Bound once: the eager path reads them on every call (a microsecond matters
# for small tensors).
_Tensor = torch.Tensor
_STRIDED = torch.strided
_CONTIGUOUS = torch.contiguous_format
_empty = torch.empty
_empty_like = torch.empty_like
_zeros = torch.zeros
_torch_threads = torch.get_num_threads
_raw = _core._group_norm_raw
_raw_backward = _core._group_norm_backward_raw
_NAN = float("nan")


def _as_param(p, dtype, name):
    """p as a contiguous tensor of the C core's parameter type (float32, or
    float64 for float64 input), its negative bit resolved; no copy when it
    already is one.  A finite value past that type's range is a ValueError,
    as for NumPy input (a conversion would make it inf, the result silently
    wrong)."""
    p = p.resolve_neg()
    if p.dtype != dtype:
        converted = p.to(dtype)
        if p.dtype.is_floating_point and not bool(
                torch.equal(torch.isinf(converted), torch.isinf(p))):
            raise ValueError(f"{name} has values beyond the range of {dtype} "
                             f"(largest magnitude {p.abs().max().item()!r})")
        p = converted
    return p if p.is_contiguous() else p.contiguous()


def kernel_param(p, channels, pdtype, name):
    """weight or bias as the kernel reads it: None, or a contiguous CPU tensor
    of the parameter type (as it is in the common case: a few attribute reads)."""
    if p is None or (isinstance(p, _Tensor) and p.dtype is pdtype and p.is_cpu and p.ndim == 1
                     and p.shape[0] == channels and p.is_contiguous() and not p.is_neg()):
        return p
    check_param(p, channels, name)
    return _as_param(p, pdtype, name)


def _in_kernel_layout(x, shape, channels, spatial):
    """(x, its memory format, the gncpu_layout code): x as is when it is
    contiguous or channels-last (the format torch's GroupNorm gives its
    output), otherwise copied once into the one torch suggests.  A tensor
    with its negative bit set is materialised (the kernel reads raw memory)."""
    if x.is_neg():
        x = x.resolve_neg()
    if x.is_contiguous() and not (len(shape) in (4, 5) and (channels == 1 or spatial == 1)):
        return x, _CONTIGUOUS, NCHW  # (shapes that are channels-last too go the long way)
    fmt = memory_format(x)
    if not x.is_contiguous(memory_format=fmt):
        x = x.contiguous(memory_format=fmt)  # other strides: one copy
    return x, fmt, NCHW if fmt is _CONTIGUOUS else NHWC


def forward(x, num_groups, weight, bias, eps, activation, with_stats, given=None):
    """(y, mean, rstd) computed by gncpu on x's memory; mean and rstd, shape
    (N, G) of the parameter type, are None unless with_stats.  x, weight and
    bias are never written.  The common case, a contiguous or channels-last
    CPU tensor with parameters of the parameter type, costs a few attribute
    reads.  given: None, or (mean, rstd) contiguous float64 (N, G) tensors to
    normalise with instead of measuring x's (_stats.py)."""
    dtype = DTYPE_CODES.get(x.dtype) if isinstance(x, _Tensor) else None
    if dtype is None or not x.is_cpu or x.layout is not _STRIDED or x.ndim < 2:
        check_input(x)  # raises
    shape = x.shape
    batch, channels = shape[0], shape[1]
    rows = batch * channels
    spatial = x.numel() // rows if rows else spatial_size(x)
    pdtype = PARAMETER_DTYPES[dtype]
    weight = kernel_param(weight, channels, pdtype, "weight")
    bias = kernel_param(bias, channels, pdtype, "bias")
    x, fmt, layout = _in_kernel_layout(x, shape, channels, spatial)
    threads = _torch_threads()
    if not with_stats:
        y = _empty_like(x, memory_format=fmt)
        if given is not None:
            _raw(dtype, layout, batch, channels, spatial, num_groups, eps, activation, 0, 0)
            _raw(dtype, layout, batch, channels, spatial, num_groups, eps, activation,
                 x.data_ptr(), y.data_ptr(), 0 if weight is None else weight.data_ptr(),
                 0 if bias is None else bias.data_ptr(), 0, 0, threads,
                 given_mean=given[0].data_ptr(), given_rstd=given[1].data_ptr())
            return y, None, None
        _raw(dtype, layout, batch, channels, spatial, num_groups, eps, activation,
             x.data_ptr(), y.data_ptr(),
             0 if weight is None else weight.data_ptr(), 0 if bias is None else bias.data_ptr(),
             0, 0, threads)
        return y, None, None
    # Every value checked before allocating (num_groups sizes the statistics).
    _raw(dtype, layout, batch, channels, spatial, num_groups, eps, activation, 0, 0)
    mean = _empty((batch, num_groups), dtype=pdtype)
    rstd = _empty((batch, num_groups), dtype=pdtype)
    y = _empty_like(x, memory_format=fmt)
    _raw(dtype, layout, batch, channels, spatial, num_groups, eps, activation,
         x.data_ptr(), y.data_ptr(),
         0 if weight is None else weight.data_ptr(), 0 if bias is None else bias.data_ptr(),
         mean.data_ptr(), rstd.data_ptr(), threads)
    if spatial == 0:  # no values: the statistics are NaN, as NumPy's mean of nothing
        mean.fill_(_NAN)
        rstd.fill_(_NAN)
    return y, mean, rstd


def grad_dtype(p, pdtype):
    """A parameter's gradient's dtype: its own, or the parameter type for an
    integer one (which cannot require grad; asked for anyway, it gets one)."""
    return p.dtype if isinstance(p, _Tensor) and p.dtype.is_floating_point else pdtype


def check_values(x, num_groups, activation):
    """The kernel's ValueError/TypeError for num_groups or activation (checked
    before the statistics' shape, which num_groups decides)."""
    _raw_backward(DTYPE_CODES[x.dtype], NCHW, x.shape[0], x.shape[1], spatial_size(x),
                  num_groups, activation, 0, 0, 0, 0)


def _kernel_stats(t, stats_shape, pdtype, name, x, num_groups, activation):
    """mean or rstd as the kernel reads it: a contiguous CPU tensor of the
    parameter type."""
    if (isinstance(t, _Tensor) and t.dtype is pdtype and t.is_cpu and t.shape == stats_shape
            and t.is_contiguous() and not t.is_neg()):
        return t
    check_values(x, num_groups, activation)
    check_stats(t, stats_shape, name)
    return t.resolve_neg().to(pdtype).contiguous()


def backward(grad_y, x, mean, rstd, num_groups, weight, bias, activation, output_mask):
    """dx, dweight, dbias computed by gncpu's backward kernel; an output whose
    output_mask entry is False is an empty tensor and costs nothing.  dx has
    x's dtype and the memory format torch's GroupNorm backward gives (x's
    suggested one); dweight and dbias are computed in the parameter type, then
    given weight's and bias's dtype.  Nothing is written but the results."""
    dtype = DTYPE_CODES.get(x.dtype) if isinstance(x, _Tensor) else None
    if dtype is None or not x.is_cpu or x.layout is not _STRIDED or x.ndim < 2:
        check_input(x)  # raises
    shape = x.shape
    if not (isinstance(grad_y, _Tensor) and grad_y.dtype is x.dtype and grad_y.shape == shape
            and grad_y.is_cpu and grad_y.layout is _STRIDED):
        check_grad(grad_y, x)  # raises
    batch, channels = shape[0], shape[1]
    rows = batch * channels
    spatial = x.numel() // rows if rows else spatial_size(x)
    pdtype = PARAMETER_DTYPES[dtype]
    need_x, need_weight, need_bias = output_mask
    weight_dtype = pdtype if weight is None else grad_dtype(weight, pdtype)
    bias_dtype = pdtype if bias is None else grad_dtype(bias, pdtype)
    weight = kernel_param(weight, channels, pdtype, "weight")
    bias = kernel_param(bias, channels, pdtype, "bias")
    stats_shape = (batch, num_groups)
    mean = _kernel_stats(mean, stats_shape, pdtype, "mean", x, num_groups, activation)
    rstd = _kernel_stats(rstd, stats_shape, pdtype, "rstd", x, num_groups, activation)
    x, fmt, layout = _in_kernel_layout(x, shape, channels, spatial)
    # grad_y in x's layout: read where it lies, or copied once (an expanded
    # gradient, another memory format, a negative view), and then that copy
    # takes dx in place.
    if grad_y.is_contiguous(memory_format=fmt) and not grad_y.is_neg():
        grad_x = _empty_like(x, memory_format=fmt) if need_x else None
    else:
        grad_y = grad_y.resolve_neg().contiguous(memory_format=fmt)
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
                  0 if grad_bias is None else grad_bias.data_ptr(),
                  _torch_threads())
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
