"""Pure-NumPy GroupNorm in float64: the oracle the tests compare against.

Same signatures as gncpu.group_norm and gncpu.group_norm_backward (without
``out``) and the same semantics, written for clarity, not speed.  The inputs
(float16 and bfloat16 included) are cast to float64 first and everything is
returned in float64: it is the exact answer for the given input values, to
compare with.
"""

import math

import numpy as np

_erf = np.frompyfunc(math.erf, 1, 1)  # NumPy has no erf; math.erf maps inf/nan as C's erf
_erfc = np.frompyfunc(math.erfc, 1, 1)


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


def _exponent(a):
    """Per group (last axis), the e with max|a| < 2**e (0 for all zeros):
    scaling by 2**-e is exact, and brings the largest magnitude into [0.5, 1)."""
    with np.errstate(invalid="ignore"):
        return np.frexp(np.abs(a).max(axis=-1))[1]


def _normalize_groups(grouped, eps):
    """(x - mean) / sqrt(var + eps) per group (last axis), and the mean and
    rstd, for any finite float64 values, 1e-300 ... 1e308 and subnormals
    included: each group is scaled by powers of two (exact) so that neither
    its sum, nor its squared deviations, nor eps relative to them overflow or
    underflow.  Scaled data gives the same y (up to eps's share).  Groups
    holding inf or NaN take the plain formula (NaN, as the kernels give)."""
    finite = np.isfinite(grouped).all(axis=-1)
    safe = np.where(finite[..., None], grouped, 0.0)
    e0 = _exponent(safe)[..., None]
    scaled = np.ldexp(safe, -e0)                      # |scaled| < 1
    scaled_mean = scaled.mean(axis=-1, keepdims=True)
    dev = scaled - scaled_mean                        # |dev| < 2
    e1 = _exponent(dev)[..., None]
    u = np.ldexp(dev, -e1)                            # the deviations, |u| < 1
    var_u = np.square(u).mean(axis=-1, keepdims=True)
    spread = e0 + e1                                  # dev = u * 2**spread
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        # k = 2**spread / sqrt(var + eps) = 1 / sqrt(var_u + eps / 4**spread)
        eps_u = np.ldexp(np.full(var_u.shape, float(eps)), -2 * spread)
        k = np.where(np.isinf(eps_u), np.ldexp(1.0 / np.sqrt(float(eps)), spread),
                     1.0 / np.sqrt(var_u + eps_u))
        y = u * k
        mean = np.ldexp(scaled_mean, e0)[..., 0]
        rstd = np.ldexp(k, -spread)[..., 0]
    if not finite.all():
        with np.errstate(invalid="ignore", over="ignore"):
            plain_mean = grouped.mean(axis=-1)
            plain_var = np.square(grouped - plain_mean[..., None]).mean(axis=-1)
            plain_y = (grouped - plain_mean[..., None]) / np.sqrt(plain_var + eps)[..., None]
        y = np.where(finite[..., None], y, plain_y)
        mean = np.where(finite, mean, plain_mean)
        rstd = np.where(finite, rstd, 1.0 / np.sqrt(plain_var + eps))
    return y, mean, rstd


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
        y, mean, rstd = _normalize_groups(x.reshape(n, num_groups, -1), eps)
        y = y.reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * np.asarray(weight, dtype=np.float64).reshape(per_channel)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64).reshape(per_channel)
    y = _ACTIVATIONS[activation](y)
    return (y, mean, rstd) if return_stats else y


# The activations' derivatives.  Where a formula reads inf * 0 at v = +-inf
# they return the limit (1 at +inf, 0 at -inf); NaN gives NaN (but see ReLU's).

def _sigmoid(v):
    # exp of a non-positive number only: no overflow, no warning.
    e = np.exp(-np.abs(v))
    return np.where(v >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _silu_derivative(v):
    # s (1 + v (1 - s)), with 1 - s taken as sigmoid(-v): no cancellation for large v.
    with np.errstate(invalid="ignore"):
        slope = _sigmoid(v) * (1.0 + v * _sigmoid(-v))
    return np.where(np.isinf(v), (v > 0).astype(np.float64), slope)


def _gelu_derivative(v):
    # Phi(v) + v phi(v); Phi as erfc(-v / sqrt 2) / 2 keeps its relative
    # accuracy for negative v, where 1 + erf would cancel.
    with np.errstate(over="ignore", invalid="ignore"):  # v**2 past 1e308: phi is 0
        cdf = 0.5 * _erfc(-v / math.sqrt(2.0)).astype(np.float64)
        slope = cdf + v * np.exp(-0.5 * np.square(v)) / math.sqrt(2.0 * math.pi)
    return np.where(np.isinf(v), (v > 0).astype(np.float64), slope)


_DERIVATIVES = {
    None: lambda v: np.ones_like(v),
    "silu": _silu_derivative,
    # 0 where v <= 0 (v == 0 included), else 1; NaN passes the gradient
    # through, as PyTorch's relu backward (threshold_backward) does.
    "relu": lambda v: np.where(v <= 0.0, 0.0, 1.0),
    "gelu": _gelu_derivative,
}


def _per_channel(p, default, channels, name):
    p = np.full(channels, default) if p is None else np.asarray(p).astype(np.float64)
    if p.shape != (channels,):
        raise ValueError(f"{name} must have shape ({channels},), got {p.shape}")
    return p


def group_norm_backward(grad_out, x, mean, rstd, num_groups, weight=None, bias=None, *,
                        activation=None, channels_last=False):
    """The gradients (dx, dweight, dbias) of group_norm, float64.

    ``mean`` and ``rstd`` are the statistics the forward pass saved (shape
    (N, num_groups), as group_norm's ``return_stats=True`` gives them); they
    are used as given, never recomputed.  With x_hat = (x - mean) * rstd,
    z = x_hat * weight[c] + bias[c] and dz = grad_out * act'(z)::

        dbias[c]   = sum over n, spatial of dz
        dweight[c] = sum over n, spatial of dz * x_hat
        dx = rstd * (weight[c] * dz - mean_g(weight * dz)
                     - x_hat * mean_g(weight * dz * x_hat))

    where mean_g averages over the (example, group)'s C/num_groups channels x
    all spatial positions: the gradient through x_hat, less its projections
    on the directions the mean and the variance remove.  act' is 1 without
    an activation; SiLU's s (1 + z (1 - s)) with s = sigmoid(z); ReLU's 1 for
    z > 0 else 0 (NaN gives 1, as in PyTorch); GELU's Phi(z) + z phi(z).

    weight None means ones (dweight is then None), bias None zeros (dbias is
    then None).  grad_out and x are (N, C, *spatial), or with
    ``channels_last=True`` (N, *spatial, C), and dx comes in x's layout.
    With no elements dx is empty and dweight, dbias are zeros.
    """
    grad_out = np.asarray(grad_out).astype(np.float64)
    x = np.asarray(x).astype(np.float64)
    if x.ndim < 2:
        raise ValueError(f"x must have shape (N, C, *spatial), got shape {x.shape}")
    if grad_out.shape != x.shape:
        raise ValueError(f"grad_out must have x's shape {x.shape}, got {grad_out.shape}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}: "
                         "expected None, 'silu', 'relu' or 'gelu'")
    if channels_last:
        dx, dweight, dbias = group_norm_backward(
            np.moveaxis(grad_out, -1, 1), np.moveaxis(x, -1, 1), mean, rstd, num_groups,
            weight, bias, activation=activation)
        return np.moveaxis(dx, 1, -1), dweight, dbias

    n, c = x.shape[:2]
    if num_groups <= 0 or c % num_groups or num_groups > max(c, 1):
        raise ValueError(f"num_groups ({num_groups}) must divide the number of channels ({c}), "
                         "and be 1 when there are none")
    mean = np.asarray(mean).astype(np.float64)
    rstd = np.asarray(rstd).astype(np.float64)
    for name, stat in (("mean", mean), ("rstd", rstd)):
        if stat.shape != (n, num_groups):
            raise ValueError(f"{name} must have shape {(n, num_groups)}, got {stat.shape}")
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    w = _per_channel(weight, 1.0, c, "weight").reshape(per_channel)
    b = _per_channel(bias, 0.0, c, "bias").reshape(per_channel)

    if x.size == 0:
        dx = np.zeros(x.shape)
        dweight, dbias = np.zeros(c), np.zeros(c)
    else:
        def per_group(a):  # (N, G, C/G * spatial): a group's values side by side
            return a.reshape(n, num_groups, -1)

        x_hat = ((per_group(x) - mean[..., None]) * rstd[..., None]).reshape(x.shape)
        z = x_hat * w + b
        if activation == "relu":  # where, not a product: an infinite gradient at z <= 0 gives 0
            dz = np.where(z <= 0.0, 0.0, grad_out)
        else:
            dz = grad_out * _DERIVATIVES[activation](z)
        summed = (0,) + tuple(range(2, x.ndim))  # all but the channel axis
        dbias = dz.sum(axis=summed)
        dweight = (dz * x_hat).sum(axis=summed)
        w_dz, x_hat = per_group(w * dz), per_group(x_hat)
        dx = rstd[..., None] * (w_dz - w_dz.mean(axis=-1, keepdims=True)
                                - x_hat * (w_dz * x_hat).mean(axis=-1, keepdims=True))
        dx = dx.reshape(x.shape)
    return (dx,
            None if weight is None else dweight,
            None if bias is None else dbias)
