"""Group statistics as data: GroupStats, which merge across the pieces of a
tensor (tiles, chunks, processes) by Chan's formula.  gncpu.group_norm_stats
measures a piece; gncpu.group_norm(..., stats=) normalises a piece with them."""

from __future__ import annotations

import numbers
from typing import Any, Optional, Tuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

_Float64Array = NDArray[np.float64]


def _plane(value: ArrayLike, name: str, shape: Optional[Tuple[int, ...]] = None) -> _Float64Array:
    try:
        array = np.array(value, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as error:
        raise TypeError(f"GroupStats {name} must be real numbers: {error}") from None
    if shape is not None:
        try:
            array = np.array(np.broadcast_to(array, shape))
        except ValueError:
            raise ValueError(f"GroupStats {name} has shape {array.shape}, "
                             f"the statistics {shape}") from None
    if array.ndim != 2:
        raise ValueError(f"GroupStats {name} must be 2-D (examples, groups), got shape {array.shape}")
    return array


def _joined(a: Optional[int], b: Optional[int]) -> Optional[int]:
    """The channels per group of statistics combined from pieces of a and b."""
    if a is not None and b is not None and a != b:
        raise ValueError(f"cannot combine statistics of groups of {a} and of {b} channels")
    return a if a is not None else b


class GroupStats:
    """Per (example, group): the number of values, their mean and their M2
    (sum of squared deviations from the mean), in float64, shape (N, G).

    ``gncpu.group_norm_stats`` measures them for one piece of a tensor;
    ``a.merge(b)`` combines the statistics of two pieces of the same
    examples and groups (Chan, Golub & LeVeque's pairwise formula: exact to
    float64 rounding, whatever the offset of the data); ``gncpu.group_norm(
    piece, num_groups, ..., stats=merged)`` normalises each piece as the whole
    tensor would be.  Pieces may split the spatial axes anywhere and the batch
    anywhere; along channels they must hold whole groups (``channels_per_group``
    says how many channels a group has, when known).  A piece with no values
    (count 0) is the identity of ``merge``.

    Statistics of other examples or other groups are joined with
    ``GroupStats.concatenate`` and taken apart by indexing: ``stats[1:3]``
    (examples), ``stats[:, 4:8]`` (groups).  ``to_array()`` and
    ``GroupStats.from_array()`` carry them as one float64 array (for an
    all-gather); they pickle.
    """

    __slots__ = ("count", "mean", "m2", "channels_per_group")

    count: _Float64Array
    mean: _Float64Array
    m2: _Float64Array
    channels_per_group: Optional[int]

    def __init__(self, count: ArrayLike, mean: ArrayLike, m2: ArrayLike,
                 channels_per_group: Optional[int] = None) -> None:
        mean_a = _plane(mean, "mean")
        count_a = _plane(count, "count", mean_a.shape)
        m2_a = _plane(m2, "m2", mean_a.shape)
        if not np.all(np.isfinite(count_a)) or np.any(count_a < 0) or \
                np.any(count_a != np.floor(count_a)):
            raise ValueError("GroupStats count must hold finite non-negative whole numbers")
        if np.any(m2_a < 0):
            raise ValueError("GroupStats m2 (a sum of squares) must not be negative")
        empty = count_a == 0
        mean_a[empty] = 0.0
        m2_a[empty] = 0.0
        if channels_per_group is not None:
            if isinstance(channels_per_group, bool) or \
                    not isinstance(channels_per_group, numbers.Integral):
                raise TypeError("channels_per_group must be an int or None, "
                                f"got {type(channels_per_group).__name__}")
            if channels_per_group <= 0:
                raise ValueError(f"channels_per_group must be positive, got {channels_per_group}")
            channels_per_group = int(channels_per_group)
        self.count, self.mean, self.m2 = count_a, mean_a, m2_a
        self.channels_per_group = channels_per_group

    @classmethod
    def empty(cls, batch: int, groups: int, channels_per_group: Optional[int] = None) -> GroupStats:
        """Statistics of no values: the identity of ``merge``."""
        zeros = np.zeros((batch, groups))
        return cls(zeros, zeros, zeros, channels_per_group)

    @property
    def shape(self) -> Tuple[int, int]:
        """(examples, groups)."""
        return (int(self.mean.shape[0]), int(self.mean.shape[1]))

    def merge(self, other: GroupStats) -> GroupStats:
        """The statistics of both pieces' values together (Chan's formula)."""
        if not isinstance(other, GroupStats):
            raise TypeError(f"merge takes a GroupStats, got {type(other).__name__}")
        if other.shape != self.shape:
            raise ValueError(f"cannot merge statistics of shape {self.shape} and {other.shape}: "
                             "pieces of the same examples and groups have the same shape")
        cpg = _joined(self.channels_per_group, other.channels_per_group)
        na, nb = self.count, other.count
        n = na + nb
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = other.mean - self.mean
            mean = np.where(nb == 0, self.mean,
                            np.where(na == 0, other.mean, self.mean + delta * (nb / n)))
            m2 = np.where(nb == 0, self.m2,
                          np.where(na == 0, other.m2,
                                   self.m2 + other.m2 + delta * delta * (na * (nb / n))))
        return GroupStats(n, mean, m2, cpg)

    @staticmethod
    def concatenate(pieces: Any, axis: int = 0) -> GroupStats:
        """Statistics of different examples (axis 0) or different groups
        (axis 1, pieces split along channels), side by side."""
        pieces = list(pieces)
        if not pieces or not all(isinstance(p, GroupStats) for p in pieces):
            raise TypeError("concatenate takes a non-empty sequence of GroupStats")
        if axis not in (0, 1):
            raise ValueError(f"axis must be 0 (examples) or 1 (groups), got {axis!r}")
        cpg = pieces[0].channels_per_group
        for p in pieces[1:]:
            cpg = _joined(cpg, p.channels_per_group)
        try:
            count, mean, m2 = (np.concatenate([getattr(p, name) for p in pieces], axis=axis)
                               for name in ("count", "mean", "m2"))
        except ValueError as error:
            raise ValueError(f"cannot concatenate these statistics: {error}") from None
        return GroupStats(count, mean, m2, cpg)

    def __getitem__(self, index: Any) -> GroupStats:
        """Examples (``stats[a:b]``) or examples and groups (``stats[:, g0:g1]``),
        by slices: the result stays 2-D."""
        parts = index if isinstance(index, tuple) else (index,)
        if len(parts) > 2 or not all(isinstance(p, slice) for p in parts):
            raise TypeError("GroupStats is indexed by slices: stats[a:b] or stats[a:b, g0:g1]")
        return GroupStats(self.count[index], self.mean[index], self.m2[index],
                          self.channels_per_group)

    def _check_fits(self, batch: int, channels: int, num_groups: int) -> None:
        """ValueError unless these are statistics for a piece of `batch`
        examples and `channels` channels in num_groups groups."""
        cpg = self.channels_per_group
        if cpg is not None and channels % cpg != 0:
            raise ValueError(
                f"x has {channels} channels, not whole groups of {cpg} (the statistics' "
                f"channels_per_group): a piece split along channels must hold whole groups")
        if cpg is not None and channels // cpg != num_groups:
            raise ValueError(f"x's {channels} channels hold {channels // cpg} groups of {cpg} "
                             f"channels (the statistics'), but num_groups is {num_groups}")
        if self.shape != (batch, num_groups):
            raise ValueError(f"stats are for {self.shape[0]} example(s) x {self.shape[1]} "
                             f"group(s); x needs {batch} x {num_groups}")

    def to_array(self) -> _Float64Array:
        """count, mean and m2 stacked: a float64 array of shape (3, N, G)."""
        return np.stack([self.count, self.mean, self.m2])

    @classmethod
    def from_array(cls, array: ArrayLike, channels_per_group: Optional[int] = None) -> GroupStats:
        """The inverse of ``to_array``: from an array of shape (3, N, G)."""
        a = np.asarray(array)
        if a.ndim != 3 or a.shape[0] != 3:
            raise ValueError(f"GroupStats.from_array takes shape (3, N, G), got {a.shape}")
        return cls(a[0], a[1], a[2], channels_per_group)

    def mean_rstd(self, eps: float = 1e-5) -> Tuple[_Float64Array, _Float64Array]:
        """Each group's mean and 1/sqrt(var + eps), population variance, float64
        (NaN for groups of no values)."""
        if not isinstance(eps, numbers.Real) or not (0.0 <= float(eps) < float("inf")):
            raise ValueError(f"eps must be finite and non-negative, got {eps!r}")
        with np.errstate(invalid="ignore", divide="ignore"):
            var = self.m2 / self.count
            rstd = 1.0 / np.sqrt(var + float(eps))
            mean = np.where(self.count == 0, np.nan, self.mean)
        return mean, rstd

    def __reduce__(self) -> Tuple[Any, ...]:
        return (GroupStats, (self.count, self.mean, self.m2, self.channels_per_group))

    def __repr__(self) -> str:
        n, g = self.shape
        cpg = "" if self.channels_per_group is None else f", {self.channels_per_group} channels each"
        return f"<GroupStats of {n} example(s) x {g} group(s){cpg}, {int(self.count.sum())} values>"
