"""A module-like GroupNorm, shaped like torch.nn.GroupNorm."""

import operator

import numpy as np

from ._core import group_norm


def _positive_int(value, name):
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got a bool")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if number <= 0:
        raise ValueError(f"{name} must be positive, got {number}")
    return number


class GroupNorm:
    """Callable GroupNorm layer holding float32 ``weight`` and ``bias``.

    ``GroupNorm(32, 320)(x)`` equals ``group_norm(x, 32, layer.weight,
    layer.bias, layer.eps)``.  With ``affine=False`` weight and bias are None.
    """

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True):
        self.num_groups = _positive_int(num_groups, "num_groups")
        self.num_channels = _positive_int(num_channels, "num_channels")
        if self.num_channels % self.num_groups:
            raise ValueError(
                f"num_channels ({self.num_channels}) must be divisible by "
                f"num_groups ({self.num_groups})")
        # Validated like group_norm's eps, by a zero-size call.
        group_norm(np.empty((0, self.num_channels), np.float32), self.num_groups, eps=eps)
        self.eps = float(eps)
        self.affine = bool(affine)
        if self.affine:
            self.weight = np.ones(self.num_channels, dtype=np.float32)
            self.bias = np.zeros(self.num_channels, dtype=np.float32)
        else:
            self.weight = None
            self.bias = None

    def __call__(self, x, out=None):
        shape = np.shape(x)
        if len(shape) >= 2 and shape[1] != self.num_channels:
            raise ValueError(
                f"expected input with {self.num_channels} channels (shape (N, "
                f"{self.num_channels}, ...)), got shape {tuple(shape)}")
        return group_norm(x, self.num_groups, self.weight, self.bias, self.eps, out=out)

    def __repr__(self):
        return (f"GroupNorm({self.num_groups}, {self.num_channels}, eps={self.eps}, "
                f"affine={self.affine})")
