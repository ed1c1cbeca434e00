"""Pure-NumPy GroupNorm in float64: the oracle the tests compare against.

Same signature as gncpu.group_norm (without ``out``) and the same semantics,
written for clarity, not speed.  The input (float16 and bfloat16 included) is
cast to float64 first and everything is returned in float64: it is the exact
answer for the given input values, to compare with.
"""

import math

import numpy as np

_erf = np.frompyfunc(math.erf, 1, 1)  # NumPy has no erf; math.erf maps inf/nan as C's erf


# At v = -inf both formulas read -inf * 0; the activations' limit there is -0,
# which is what they return (gncpu's kernels too).

def _silu(v):
    # exp(-v) overflows to inf below v = -709, where v / inf = -0 is the answer.
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(v == -np.inf, -0.0, v / (1.0 + np.exp(-v)))


def _gelu(v):  # the erf form, PyTorch's default
    with np.errstate(invalid="ignore"):
        return np.where(v == -np.inf, -0.0,
                        0.5 * v * (1.0 + _erf(v / math.sqrt(2.0)).astype(np.float64)))


_ACTIVATIONS = {
    None: lambda v: v,
    "silu": _silu,
    "relu": lambda v: np.maximum(v, 0.0),  # NaN stays NaN
    "gelu": _gelu,
}


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5, *, activation=None,
               return_stats=False, channels_last=False):
    """y = act((x - mean) / sqrt(var + eps) * weight[c] + bias[c]), float64.

    mean and var (population) are taken per (sample, group) over C/num_groups
    channels x all spatial positions.  x is (N, C, *spatial), or with
    ``channels_last=True`` (N, *spatial, C): the NCHW answer with the channel
    axis moved back to the end.  ``return_stats=True`` returns (y, mean, rstd),
    the statistics of shape (N, num_groups) with rstd = 1 / sqrt(var + eps);
    NaN for empty groups.
    """
    x = np.asarray(x).astype(np.float64)
    if x.ndim < 2:
        raise ValueError(f"x must have shape (N, C, *spatial), got shape {x.shape}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}: "
                         "expected None, 'silu', 'relu' or 'gelu'")
    if channels_last:
        y, mean, rstd = group_norm(np.moveaxis(x, -1, 1), num_groups, weight, bias, eps,
                                   activation=activation, return_stats=True)
        y = np.moveaxis(y, 1, -1)
        return (y, mean, rstd) if return_stats else y

    n, c = x.shape[:2]
    if num_groups <= 0 or c % num_groups or num_groups > max(c, 1):
        raise ValueError(f"num_groups ({num_groups}) must divide the number of channels ({c}), "
                         "and be 1 when there are none")
    if x.size == 0:
        y = np.zeros(x.shape, dtype=np.float64)
        mean, rstd = np.full((n, num_groups), np.nan), np.full((n, num_groups), np.nan)
    else:
        grouped = x.reshape(n, num_groups, -1)
        mean = grouped.mean(axis=-1)
        var = np.square(grouped - mean[..., None]).mean(axis=-1)
        rstd = 1.0 / np.sqrt(var + eps)
        y = ((grouped - mean[..., None]) / np.sqrt(var + eps)[..., None]).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * np.asarray(weight, dtype=np.float64).reshape(per_channel)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64).reshape(per_channel)
    y = _ACTIVATIONS[activation](y)
    return (y, mean, rstd) if return_stats else y
