"""Statistics that merge, for tensors: gncpu.torch.group_norm_stats, the
stats= path of gncpu.torch.group_norm, and distributed_group_norm (patch
parallelism over torch.distributed).  Inference only: statistics given as
data are constants, and a graph through them is not recorded (autograd, a
tracer or torch.compile asking for one get a RuntimeError that says so)."""

import numpy as np
import torch
import torch.autograd.forward_ad as _forward_ad

from .._stats import GroupStats
from . import _kernels
from ._checks import check_input

_f64 = torch.float64


def _eager_only(what):
    """A RuntimeError where the kernel call would be invisible: a tracer, a
    dispatch or function mode (make_fx, FakeTensorMode), functorch transforms,
    forward-mode AD, torch.compile."""
    if (torch.compiler.is_compiling() or torch._C._get_tracing_state() is not None
            or torch._C._len_torch_dispatch_stack() or torch._C._is_torch_function_mode_enabled()
            or torch._C._are_functorch_transforms_active() or _forward_ad._current_level >= 0):
        raise RuntimeError(f"{what} runs eagerly on tensors' memory; it cannot be traced, "
                           "compiled, transformed (torch.func) or run under a tensor mode")


def _prepared(x):
    """(x in the kernel's layout, dtype code, layout code, batch, channels, spatial)."""
    _eager_only("gncpu.torch.group_norm_stats")
    check_input(x)
    dtype = _kernels.DTYPE_CODES[x.dtype]
    shape = x.shape
    batch, channels = shape[0], shape[1]
    spatial = x.numel() // (batch * channels) if batch * channels else _kernels.spatial_size(x)
    x, _, layout = _kernels._in_kernel_layout(x.detach(), shape, channels, spatial)
    return x, dtype, layout, batch, channels, spatial


def group_norm_stats(x, num_groups):
    """The statistics of a CPU tensor ``x`` of shape (N, C, *spatial), per
    (example, group): a gncpu.GroupStats (float64 counts, means and M2), from
    one read of x, in double lanes.  As gncpu.group_norm_stats, for tensors
    (contiguous or channels-last; x is read as data, never differentiated)."""
    x, dtype, layout, batch, channels, spatial = _prepared(x)
    _kernels._raw(dtype, layout, batch, channels, spatial, num_groups, 1e-5, None, 0, 0)
    mean = torch.empty((batch, num_groups), dtype=_f64)
    m2 = torch.empty((batch, num_groups), dtype=_f64)
    _kernels._raw(dtype, layout, batch, channels, spatial, num_groups, 1e-5, None, x.data_ptr(), 0,
                  num_threads=_kernels._torch_threads(), moments_mean=mean.data_ptr(),
                  moments_m2=m2.data_ptr())
    cpg = channels // num_groups if channels else 0
    count = np.full((batch, num_groups), float(cpg * spatial))
    return GroupStats(count, mean.numpy(), m2.numpy(), cpg if cpg > 0 else None)


def _as_given(stats, x, num_groups, eps):
    """stats as (mean, rstd): contiguous float64 tensors of shape (N, num_groups)."""
    batch, channels = x.shape[0], x.shape[1]
    expected = (batch, num_groups)
    if isinstance(stats, GroupStats):
        stats._check_fits(batch, channels, num_groups)
        mean, rstd = stats.mean_rstd(eps)
        return torch.from_numpy(np.ascontiguousarray(mean)), torch.from_numpy(np.ascontiguousarray(rstd))
    if isinstance(stats, tuple) and len(stats) == 2:
        pair = []
        for value, name in zip(stats, ("mean", "rstd")):
            t = torch.as_tensor(value).detach()
            if t.is_complex() or t.dtype == torch.bool:
                raise TypeError(f"stats {name} must be real numbers, got {t.dtype}")
            if tuple(t.shape) != expected:
                raise ValueError(f"stats {name} must have shape {expected}, got {tuple(t.shape)}")
            pair.append(t.to(device="cpu", dtype=_f64).contiguous())
        return pair[0], pair[1]
    raise TypeError("stats must be a gncpu.GroupStats or a (mean, rstd) pair, "
                    f"got {type(stats).__name__}")


def group_norm_with_stats(x, num_groups, weight, bias, eps, activation, stats):
    """gncpu.torch.group_norm(..., stats=): x normalised with given statistics."""
    if torch.is_grad_enabled() and any(getattr(t, "requires_grad", False) for t in (x, weight, bias)):
        raise RuntimeError("gncpu.torch.group_norm(..., stats=...) is for inference: the given "
                           "statistics are constants and no gradient flows through them; call it "
                           "under torch.no_grad() or with tensors that do not require grad")
    _eager_only("gncpu.torch.group_norm(..., stats=...)")
    check_input(x)
    mean, rstd = _as_given(stats, x, num_groups, eps)
    return _kernels.forward(x, num_groups, weight, bias, eps, activation, False,
                            given=(mean, rstd))[0]


def distributed_group_norm(x_local, num_groups, weight=None, bias=None, eps=1e-5, group=None, *,
                           activation=None):
    """GroupNorm over a tensor split into spatial patches across the ranks of
    a torch.distributed process group (gloo on CPU): each rank passes its
    patch (N, C, *patch), the same examples and channels on every rank.  The
    patches' statistics are all-gathered (one float64 tensor of 3 x N x G per
    rank), merged in rank order (Chan), and every rank normalises its patch
    exactly as the whole tensor would be.  Every rank must call it (a
    collective); inference only, as stats=."""
    import torch.distributed as dist

    local = group_norm_stats(x_local, num_groups)
    size = dist.get_world_size(group)
    mine = torch.from_numpy(local.to_array())
    gathered = [torch.empty_like(mine) for _ in range(size)]
    dist.all_gather(gathered, mine, group=group)
    merged = GroupStats.from_array(gathered[0].numpy(), local.channels_per_group)
    for other in gathered[1:]:
        merged = merged.merge(GroupStats.from_array(other.numpy(), local.channels_per_group))
    return group_norm_with_stats(x_local, num_groups, weight, bias, eps, activation, merged)
