"""gncpu for Dask arrays (the ``dask`` extra: ``pip install "gncpu[dask]"``):
GroupNorm of an array in chunks, exact for any chunking.

Every chunk's statistics are measured by gncpu's kernels (one read, in double
lanes), merged by Chan's formula in a tree, and every chunk is normalised with
the merged statistics of its examples and groups: the result is the whole
array's GroupNorm, whatever the chunks.  Chunks along channels are first
aligned to whole groups (a rechunk of that axis when needed).

    >>> import dask.array as da, gncpu.dask
    >>> x = da.random.standard_normal((2, 64, 512, 512), chunks=(1, 64, 128, 128))
    >>> y = gncpu.dask.group_norm(x, 32, activation="silu")   # lazy
    >>> y.mean().compute()

group_norm builds one graph, statistics then normalisation: Dask then holds
every chunk of x between the two.  For an array larger than memory, take the
statistics first (``stats = gncpu.dask.group_norm_stats(x).compute()``) and
pass ``stats=stats``: x is then read twice, chunk by chunk, in bounded memory.
"""

from __future__ import annotations

from typing import Any, List, Optional

import dask
import dask.array as da
import numpy as np

from . import _core
from ._stats import GroupStats
from ._types import ActivationName

__all__ = ["group_norm", "group_norm_stats"]


def _channel_axis(x: da.Array, channels_last: bool) -> int:
    if x.ndim < 2:
        raise ValueError(f"x must have shape (N, C, *spatial), got shape {x.shape}")
    return x.ndim - 1 if channels_last else 1


def _whole_groups(x: da.Array, num_groups: int, axis: int) -> da.Array:
    """x with its channel chunks on group boundaries (rechunked when needed)."""
    channels = x.shape[axis]
    if isinstance(num_groups, bool) or not isinstance(num_groups, (int, np.integer)):
        raise TypeError(f"num_groups must be an int, got {type(num_groups).__name__}")
    if num_groups <= 0 or channels % num_groups != 0:
        raise ValueError(f"num_groups ({num_groups}) must be positive and divide the number of "
                         f"channels ({channels})")
    per_group = channels // num_groups
    if per_group == 0 or all(c % per_group == 0 for c in x.chunks[axis]):
        return x
    groups_per_chunk = max(1, round(max(x.chunks[axis]) / per_group))
    return x.rechunk({axis: groups_per_chunk * per_group})


def _block_stats(block: np.ndarray, per_group: int, channels_last: bool) -> GroupStats:
    channels = block.shape[-1 if channels_last else 1]
    return _core.group_norm_stats(block, channels // per_group, channels_last=channels_last)


def _merged(parts: List[Any]) -> Any:
    """Chan's merge of delayed GroupStats, pairwise in a balanced tree."""
    while len(parts) > 1:
        parts = [dask.delayed(GroupStats.merge)(parts[i], parts[i + 1]) if i + 1 < len(parts)
                 else parts[i] for i in range(0, len(parts), 2)]
    return parts[0]


def _stats_of(x: da.Array, num_groups: int, channels_last: bool) -> Any:
    axis = _channel_axis(x, channels_last)
    x = _whole_groups(x, num_groups, axis)
    per_group = x.shape[axis] // num_groups
    if per_group == 0:  # no channels: no values in any group
        return dask.delayed(GroupStats.empty)(x.shape[0], num_groups)
    blocks = x.to_delayed()
    by_example = []
    for n in range(blocks.shape[0]):
        by_channels = []
        for c in range(blocks.shape[axis]):
            index: List[Any] = [slice(None)] * x.ndim
            index[0], index[axis] = n, c
            # (an array of the spatial blocks; a lone Delayed for (N, C) arrays)
            spatial_blocks = np.asarray(blocks[tuple(index)], dtype=object).ravel()
            pieces = [dask.delayed(_block_stats)(b, per_group, channels_last)
                      for b in spatial_blocks]
            by_channels.append(_merged(pieces))
        by_example.append(dask.delayed(GroupStats.concatenate)(by_channels, axis=1))
    return dask.delayed(GroupStats.concatenate)(by_example, axis=0)


def group_norm_stats(x: da.Array, num_groups: int, *, channels_last: bool = False) -> Any:
    """The statistics of a Dask array, per (example, group): a dask Delayed
    whose ``compute()`` gives a gncpu.GroupStats (float64 counts, means and
    M2), measured chunk by chunk and merged in a tree."""
    if not isinstance(x, da.Array):
        raise TypeError(f"x must be a dask array, got {type(x).__name__}; for NumPy arrays "
                        "use gncpu.group_norm_stats")
    return _stats_of(x, num_groups, channels_last)


def _normalise_block(block: np.ndarray, stats: GroupStats, weight: Optional[np.ndarray],
                     bias: Optional[np.ndarray], eps: float, activation: Optional[ActivationName],
                     channels_last: bool, per_group: int, block_info: Any = None) -> np.ndarray:
    location = block_info[0]["array-location"]
    n0, n1 = location[0]
    c0, c1 = location[-1 if channels_last else 1]
    return _core.group_norm(
        block, (c1 - c0) // per_group, None if weight is None else weight[c0:c1],
        None if bias is None else bias[c0:c1], eps, activation=activation,
        channels_last=channels_last, stats=stats[n0:n1, c0 // per_group:c1 // per_group])


def group_norm(x: da.Array, num_groups: int, weight: Any = None, bias: Any = None,
               eps: float = 1e-5, *, activation: Optional[ActivationName] = None,
               channels_last: bool = False, stats: Optional[GroupStats] = None) -> da.Array:
    """GroupNorm of a Dask array of shape (N, C, *spatial) ((N, *spatial, C)
    with channels_last), as gncpu.group_norm computes it for the whole array,
    returned lazily with x's chunks (channel chunks aligned to whole groups).
    stats: the whole array's statistics when already computed
    (group_norm_stats(x).compute()): x is then read once more, chunk by chunk."""
    if not isinstance(x, da.Array):
        raise TypeError(f"x must be a dask array, got {type(x).__name__}; for NumPy arrays "
                        "use gncpu.group_norm")
    axis = _channel_axis(x, channels_last)
    x = _whole_groups(x, num_groups, axis)
    channels = x.shape[axis]
    _core._check_layer(num_groups, channels, eps, activation)
    params = []
    for p, name in ((weight, "weight"), (bias, "bias")):
        if p is not None:
            p = np.asarray(p)
            if p.shape != (channels,):
                raise ValueError(f"{name} must have shape ({channels},), got {p.shape}")
        params.append(p)
    if channels == 0:  # nothing to normalise
        empty: da.Array = da.map_blocks(np.copy, x, dtype=x.dtype)
        return empty
    if stats is None:
        given: Any = _stats_of(x, num_groups, channels_last)
    elif isinstance(stats, GroupStats):
        stats._check_fits(x.shape[0], channels, num_groups)
        given = stats
    else:
        raise TypeError(f"stats must be a gncpu.GroupStats, got {type(stats).__name__}")
    result: da.Array = da.map_blocks(_normalise_block, x, given, params[0], params[1], eps,
                                     activation, channels_last, channels // num_groups,
                                     dtype=x.dtype)
    return result
