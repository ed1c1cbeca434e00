"""Pure-NumPy GroupNorm in float64: the oracle the tests compare against.

Same signature as gncpu.group_norm (without ``out``).  Always returns float64:
it is the exact answer for the given input values, to compare with.
"""

import numpy as np


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"x must have shape (N, C, *spatial), got shape {x.shape}")
    n, c = x.shape[:2]
    if num_groups <= 0 or c % num_groups:
        raise ValueError(f"num_groups ({num_groups}) must divide the number of channels ({c})")
    if x.size == 0:
        return np.zeros(x.shape, dtype=np.float64)
    grouped = x.astype(np.float64).reshape(n, num_groups, -1)
    mean = grouped.mean(axis=-1, keepdims=True)
    var = np.square(grouped - mean).mean(axis=-1, keepdims=True)
    y = ((grouped - mean) / np.sqrt(var + eps)).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * np.asarray(weight, dtype=np.float64).reshape(per_channel)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64).reshape(per_channel)
    return y
