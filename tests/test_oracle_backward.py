"""The backward oracle itself: gncpu.reference.group_norm_backward against a
hand-computed example, closed forms, central differences of the forward
oracle and PyTorch's autograd (all float64)."""

import math

import numpy as np
import pytest

from gncpu import reference

from conftest import (BACKWARD_RTOL, FINITE_DIFFERENCE_RTOL, FINITE_DIFFERENCE_STEP, ORACLE_RTOL,
                      random_affine, random_input, relative_error)

ACTIVATIONS = [None, "silu", "relu", "gelu"]

# One sample of two groups of two channels, two positions each, and a second
# sample that is twice the first.  Sample 0: group 0 holds 1, 3, 1, 3 (mean 2,
# rstd 1 with eps = 0), group 1 holds 10, 10, 14, 14 (mean 12, rstd 1/2), so
# x_hat is -1, 1 / -1, 1 / -1, -1 / 1, 1 per channel; sample 1 has the same
# x_hat with means 4, 24 and rstd 1/2, 1/4.
X = np.array([[[1.0, 3.0], [1.0, 3.0], [10.0, 10.0], [14.0, 14.0]]])
X = np.concatenate([X, 2 * X])
MEAN = np.array([[2.0, 12.0], [4.0, 24.0]])
RSTD = np.array([[1.0, 0.5], [0.5, 0.25]])
WEIGHT = np.array([1.0, 2.0, 3.0, 0.5])
BIAS = np.array([0.0, 1.0, -1.0, 2.0])  # z = -1, 1 / -1, 3 / -4, -4 / 2.5, 2.5
GRAD_OUT = np.array([[[1.0, 2.0], [0.0, -1.0], [2.0, 2.0], [1.0, -3.0]]] * 2)

# By hand, sample 0 (sample 1: the same dz and x_hat, so the same sums, and dx
# scaled by its rstd, half of sample 0's).
#   No activation, dz = grad_out.  dbias = sum of dz = 3, -1, 4, -2 per sample;
#   dweight = sum of dz x_hat = 1, -1, -4, -2.  Group 0: weight dz = 1, 2 / 0, -2,
#   its mean 1/4, the mean of weight dz x_hat -1/4, so dx = 1 * (weight dz - 1/4
#   + x_hat / 4) = 1/2, 2 / -1/2, -2.  Group 1: weight dz = 6, 6 / 1/2, -3/2,
#   mean 11/4; weight dz x_hat mean -13/4: dx = 1/2 * (weight dz - 11/4
#   + 13/4 x_hat) = 0, 0 / 1/2, -1/2.
#   ReLU: z > 0 at channel 0's, 1's second positions and channel 3's two, so
#   dz = 0, 2 / 0, -1 / 0, 0 / 1, -3.  dbias = 2, -1, 0, -2; dweight = 2, -1, 0, -2.
#   Group 0: weight dz = 0, 2 / 0, -2, both means 0: dx = weight dz.  Group 1:
#   weight dz = 0, 0 / 1/2, -3/2, both means -1/4: dx = 1/2 * (weight dz + 1/4
#   + x_hat / 4) = 0, 0 / 1/2, -1/2.
HAND_COMPUTED = {  # activation: (dx of sample 0, dweight, dbias), two samples summed
    None: ([[0.5, 2.0], [-0.5, -2.0], [0.0, 0.0], [0.5, -0.5]],
           [2.0, -2.0, -8.0, -4.0], [6.0, -2.0, 8.0, -4.0]),
    "relu": ([[0.0, 2.0], [0.0, -2.0], [0.0, 0.0], [0.5, -0.5]],
             [4.0, -2.0, 0.0, -4.0], [4.0, -2.0, 0.0, -4.0]),
}


@pytest.mark.parametrize("activation", sorted(HAND_COMPUTED, key=str))
def test_tiny_hand_computed_example(activation):
    dx0, dweight, dbias = (np.array(a) for a in HAND_COMPUTED[activation])
    _, mean, rstd = reference.group_norm(X, 2, WEIGHT, BIAS, eps=0.0, return_stats=True)
    np.testing.assert_array_equal(mean, MEAN)
    np.testing.assert_array_equal(rstd, RSTD)
    grads = reference.group_norm_backward(GRAD_OUT, X, MEAN, RSTD, 2, WEIGHT, BIAS,
                                          activation=activation)
    np.testing.assert_array_equal(grads[0], np.stack([dx0, dx0 / 2]))
    np.testing.assert_array_equal(grads[1], dweight)
    np.testing.assert_array_equal(grads[2], dbias)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, "bfloat16"])
def test_float64_out_for_any_input(dtype):
    if dtype == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    args = [a.astype(dtype) for a in (GRAD_OUT, X, MEAN, RSTD)]  # all exact in 16 bits
    grads = reference.group_norm_backward(*args, 2, WEIGHT.astype(dtype), BIAS.astype(dtype))
    expected = reference.group_norm_backward(GRAD_OUT, X, MEAN, RSTD, 2, WEIGHT, BIAS)
    for got, want in zip(grads, expected):
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, want)


def test_array_like_input():
    expected = reference.group_norm_backward(GRAD_OUT, X, MEAN, RSTD, 2, WEIGHT, BIAS)
    grads = reference.group_norm_backward(GRAD_OUT.tolist(), X.tolist(), MEAN.tolist(),
                                          RSTD.tolist(), 2, WEIGHT.tolist(), BIAS.tolist())
    for got, want in zip(grads, expected):
        np.testing.assert_array_equal(got, want)


def test_the_statistics_are_used_as_given():
    """Other statistics than x's own give other gradients, by the formula with
    those values: x_hat = (x - mean) * rstd, nothing recomputed."""
    mean, rstd = MEAN + 0.5, RSTD * 3.0
    dx, dweight, dbias = reference.group_norm_backward(GRAD_OUT, X, mean, rstd, 2, WEIGHT)
    assert dbias is None
    x_hat = (X.reshape(2, 2, 4) - mean[..., None]) * rstd[..., None]
    w_dz = (GRAD_OUT * WEIGHT[:, None]).reshape(2, 2, 4)
    expected = rstd[..., None] * (w_dz - w_dz.mean(-1, keepdims=True)
                                  - x_hat * (w_dz * x_hat).mean(-1, keepdims=True))
    np.testing.assert_allclose(dx, expected.reshape(X.shape), rtol=ORACLE_RTOL, atol=0)
    np.testing.assert_allclose(dweight, (GRAD_OUT * x_hat.reshape(X.shape)).sum(axis=(0, 2)),
                               rtol=ORACLE_RTOL)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dx_is_orthogonal_to_what_normalisation_removes(rng, activation):
    """With the exact statistics and eps = 0, y does not change when a group is
    shifted or scaled, so dx sums to zero over each group and is orthogonal
    to x - mean there."""
    x = random_input(rng, (3, 12, 5, 4), np.float64, mean=2.0)
    grad_out = random_input(rng, x.shape, np.float64)
    weight, bias = random_affine(rng, 12, np.float64)
    _, mean, rstd = reference.group_norm(x, 4, eps=0.0, return_stats=True)
    dx, _, _ = reference.group_norm_backward(grad_out, x, mean, rstd, 4, weight, bias,
                                             activation=activation)
    dx, centred = dx.reshape(3, 4, -1), x.reshape(3, 4, -1) - mean[..., None]
    # Zero up to the rounding of 60-term sums (measured: 1.3e-16 of the terms).
    for terms in (dx, dx * centred):
        assert np.all(np.abs(terms.sum(axis=-1)) <= 10 * ORACLE_RTOL * np.abs(terms).sum(axis=-1))


def _silu_derivative(v):
    if math.isinf(v):
        return 1.0 if v > 0 else 0.0
    e = math.exp(-abs(v))  # s and 1 - s without cancellation (or overflow)
    s, one_minus_s = (1 / (1 + e), e / (1 + e)) if v >= 0 else (e / (1 + e), 1 / (1 + e))
    return s + v * s * one_minus_s


def _gelu_derivative(v):
    if math.isinf(v):
        return 1.0 if v > 0 else 0.0
    density = math.exp(-v * v / 2) / math.sqrt(2 * math.pi)
    return 0.5 * (1 + math.erf(v / math.sqrt(2))) + v * density


DERIVATIVES = {
    "silu": _silu_derivative,
    "relu": lambda v: 1.0 if v > 0 else 0.0,
    "gelu": _gelu_derivative,
}
POINTS = [-math.inf, -1e4, -800.0, -100.0, -30.0, -1.0, -0.5, -1e-8, 0.0, 1e-8, 0.5, 1.0, 30.0,
          100.0, 800.0, 1e4, math.inf]


def _gradients_at(points, activation):
    """Weight 0 makes each channel's pre-activation exactly its bias; with
    grad_out = 1 over 2 samples x 2 positions, dbias is 4 act'(bias)."""
    bias = np.array(points)
    x = np.tile([-1.0, 1.0], (2, bias.size, 1))
    _, mean, rstd = reference.group_norm(x, bias.size, return_stats=True)
    return reference.group_norm_backward(np.ones(x.shape), x, mean, rstd, bias.size,
                                         np.zeros(bias.size), bias, activation=activation)


@pytest.mark.parametrize("activation", sorted(DERIVATIVES))
def test_activation_derivatives_follow_their_formulas(activation):
    """The limits at +-inf, not inf * 0; NaN gives NaN, but for ReLU, whose
    gradient passes through NaN as in PyTorch; no overflow warning for large
    |z| (NumPy's warnings raised here)."""
    with np.errstate(all="raise", under="ignore"):  # underflow is silent by default
        dx, dweight, dbias = _gradients_at(POINTS + [math.nan], activation)
    expected = [DERIVATIVES[activation](v) for v in POINTS]
    # Values below 1e-15 (GELU's at -30: 1e-195) are compared absolutely: the
    # formula's 1 + erf loses them, the oracle's erfc does not.
    np.testing.assert_allclose(dbias[:-1] / 4, expected, rtol=ORACLE_RTOL, atol=ORACLE_RTOL)
    if activation == "relu":
        assert dbias[-1] == 4.0
    else:
        assert math.isnan(dbias[-1])
    np.testing.assert_array_equal(dx[:, :-1], 0.0)  # weight 0: nothing reaches x
    np.testing.assert_array_equal(dweight[:-1], 0.0)  # act' times x_hat = -1, 1


def _numerical_gradient(f, a, step=FINITE_DIFFERENCE_STEP):
    """Central differences of f() with respect to each element of a, in place."""
    grad = np.empty_like(a)
    for i in np.ndindex(a.shape):
        saved = a[i]
        a[i] = saved + step
        plus = f()
        a[i] = saved - step
        minus = f()
        a[i] = saved
        grad[i] = (plus - minus) / (2 * step)
    return grad


FD_CASES = [  # NCHW shape, groups, weight, bias
    ((2, 6, 3), 3, True, True),
    ((2, 4, 2, 3), 1, True, False),     # G = 1
    ((1, 4, 5), 4, False, True),        # G = C
    ((3, 2, 2, 2), 2, False, False),    # G = C, no affine
    ((2, 6), 2, True, True),            # no spatial dims
]


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape,groups,use_weight,use_bias", FD_CASES)
def test_matches_finite_differences(rng, shape, groups, use_weight, use_bias, activation,
                                    channels_last):
    """The gradients of sum(grad_out * group_norm(x)).  The forward oracle
    recomputes the statistics for every step; the backward is fed the exact
    float64 ones of the unperturbed x, which is what the derivative holds."""
    eps = 1e-3
    channels = shape[1]
    if channels_last:
        shape = (shape[0],) + shape[2:] + (channels,)
    weight, bias = random_affine(rng, channels, np.float64)
    weight = weight if use_weight else None
    bias = bias if use_bias else None
    while True:
        x = random_input(rng, shape, np.float64, mean=1.0, std=2.0)
        y, mean, rstd = reference.group_norm(x, groups, weight, bias, eps, return_stats=True,
                                             channels_last=channels_last)
        # ReLU's kink: keep every z further from 0 than a step can move it.
        if activation != "relu" or np.abs(y).min() > 1e-2:
            break
    grad_out = random_input(rng, shape, np.float64)

    def loss():
        return np.sum(grad_out * reference.group_norm(x, groups, weight, bias, eps,
                                                      activation=activation,
                                                      channels_last=channels_last))

    dx, dweight, dbias = reference.group_norm_backward(
        grad_out, x, mean, rstd, groups, weight, bias, activation=activation,
        channels_last=channels_last)
    assert dx.shape == x.shape
    assert relative_error(dx, _numerical_gradient(loss, x)) <= FINITE_DIFFERENCE_RTOL
    for name, param, grad in [("weight", weight, dweight), ("bias", bias, dbias)]:
        if param is None:
            assert grad is None, name
        else:
            assert grad.shape == (channels,), name
            assert relative_error(grad, _numerical_gradient(loss, param)) \
                <= FINITE_DIFFERENCE_RTOL, name


@pytest.mark.parametrize("activation", [None, "relu"])
def test_channels_last_is_the_transposed_nchw_answer(rng, activation):
    x = random_input(rng, (2, 5, 3, 6), np.float64)
    grad_out = random_input(rng, x.shape, np.float64)
    weight, bias = random_affine(rng, 6, np.float64)
    _, mean, rstd = reference.group_norm(x, 3, channels_last=True, return_stats=True)
    dx, dweight, dbias = reference.group_norm_backward(grad_out, x, mean, rstd, 3, weight, bias,
                                                       activation=activation, channels_last=True)
    nchw = [np.ascontiguousarray(np.moveaxis(a, -1, 1)) for a in (grad_out, x)]
    expected = reference.group_norm_backward(*nchw, mean, rstd, 3, weight, bias,
                                             activation=activation)
    np.testing.assert_array_equal(dx, np.moveaxis(expected[0], 1, -1))
    np.testing.assert_array_equal(dweight, expected[1])
    np.testing.assert_array_equal(dbias, expected[2])


def test_empty_input():
    for shape, groups in [((0, 8, 4, 4), 4), ((2, 8, 0, 4), 4), ((2, 8, 0), 2), ((2, 0, 5), 1)]:
        x = np.zeros(shape, np.float32)
        nan_stats = np.full((shape[0], groups), np.nan)
        channels = shape[1]
        dx, dweight, dbias = reference.group_norm_backward(
            x, x, nan_stats, nan_stats, groups, np.ones(channels), np.ones(channels),
            activation="silu")
        assert dx.shape == shape and dx.dtype == np.float64
        np.testing.assert_array_equal(dweight, np.zeros(channels))
        np.testing.assert_array_equal(dbias, np.zeros(channels))
        assert reference.group_norm_backward(x, x, nan_stats, nan_stats, groups)[1:] == (None, None)
    x = np.zeros((2, 0, 6))
    dx, dweight, _ = reference.group_norm_backward(x, x, np.zeros((2, 3)), np.ones((2, 3)), 3,
                                                   np.ones(6), channels_last=True)
    assert dx.shape == (2, 0, 6)
    np.testing.assert_array_equal(dweight, np.zeros(6))


# --------------------------------------------------------- against PyTorch


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape,groups,use_weight,use_bias", [
    ((2, 8, 5, 3), 4, True, True),
    ((3, 6, 7), 1, True, False),
    ((2, 6, 2, 2, 3), 6, False, True),
    ((2, 4, 9), 2, False, False),
])
def test_matches_torch_autograd(rng, shape, groups, use_weight, use_bias, activation,
                                channels_last):
    """torch.nn.functional.group_norm (and its activation) in float64: torch
    takes its own statistics, the oracle the forward oracle's, a few float64
    roundings apart."""
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    act = {None: lambda v: v, "silu": functional.silu, "relu": functional.relu,
           "gelu": functional.gelu}[activation]
    x = random_input(rng, shape, np.float64, mean=-1.0, std=3.0)
    grad_out = random_input(rng, shape, np.float64)
    weight, bias = random_affine(rng, shape[1], np.float64)
    weight = weight if use_weight else None
    bias = bias if use_bias else None

    x_t = torch.tensor(x, requires_grad=True)
    params = [None if p is None else torch.tensor(p, requires_grad=True) for p in (weight, bias)]
    # torch 2.13's backward fails ("tensor does not have a device") for a bias
    # without a weight: hand it ones that need no gradient instead.
    weight_t = torch.ones(shape[1], dtype=torch.float64) if weight is None else params[0]
    y_t = act(functional.group_norm(x_t, groups, weight_t, params[1], eps=1e-5))
    y_t.backward(torch.tensor(grad_out))

    if channels_last:  # the same problem, handed over as (N, *spatial, C)
        x, grad_out = (np.ascontiguousarray(np.moveaxis(a, 1, -1)) for a in (x, grad_out))
    _, mean, rstd = reference.group_norm(x, groups, eps=1e-5, return_stats=True,
                                         channels_last=channels_last)
    dx, dweight, dbias = reference.group_norm_backward(
        grad_out, x, mean, rstd, groups, weight, bias, activation=activation,
        channels_last=channels_last)
    if channels_last:
        dx = np.moveaxis(dx, -1, 1)
    assert relative_error(dx, x_t.grad.numpy()) <= BACKWARD_RTOL[np.float64]
    for name, param, grad in [("weight", params[0], dweight), ("bias", params[1], dbias)]:
        if param is None:
            assert grad is None, name
        else:
            assert relative_error(grad, param.grad.numpy()) <= BACKWARD_RTOL[np.float64], name


@pytest.mark.parametrize("activation", sorted(DERIVATIVES))
def test_activation_derivatives_match_torch(activation):
    """Finite points and NaN (torch has NaN at +-inf for SiLU and GELU, where
    the oracle takes the limits); ReLU passes the gradient through NaN.
    torch's SiLU' cancels in 1 - s (3e-15 off at z = 30): float64's bound."""
    torch = pytest.importorskip("torch")
    act = getattr(torch.nn.functional, activation)
    points = [v for v in POINTS if math.isfinite(v)] + [math.nan]
    z = torch.tensor(points, dtype=torch.float64, requires_grad=True)
    act(z).backward(torch.ones_like(z))
    with np.errstate(invalid="ignore"):
        _, _, dbias = _gradients_at(points, activation)
    np.testing.assert_allclose(dbias / 4, z.grad.numpy(), rtol=0, atol=BACKWARD_RTOL[np.float64])


# ----------------------------------------------------------- bad arguments


def _call(**changes):
    args = dict(grad_out=GRAD_OUT, x=X, mean=MEAN, rstd=RSTD, num_groups=2, weight=WEIGHT,
                bias=BIAS)
    args.update(changes)
    return reference.group_norm_backward(**args)


@pytest.mark.parametrize("changes,match", [
    (dict(num_groups=3), "divide"),
    (dict(num_groups=0), "divide"),
    (dict(num_groups=-2), "divide"),
    (dict(activation="swish"), "activation"),
    (dict(activation="SiLU"), "activation"),
    (dict(grad_out=GRAD_OUT[:, :, :1]), "grad_out"),
    (dict(grad_out=GRAD_OUT[0]), "grad_out"),
    (dict(x=np.ones(8), grad_out=np.ones(8)), r"\(N, C, \*spatial\)"),
    (dict(mean=MEAN[:, :1]), "mean"),
    (dict(mean=MEAN.T[:1]), "mean"),
    (dict(rstd=RSTD.ravel()), "rstd"),
    (dict(rstd=RSTD[:1]), "rstd"),
    (dict(weight=WEIGHT[:3]), "weight"),
    (dict(bias=np.zeros((4, 1))), "bias"),
    (dict(channels_last=True, num_groups=4), "divide"),  # read as (N, spatial, C = 2)
])
def test_bad_arguments(changes, match):
    with pytest.raises(ValueError, match=match):
        _call(**changes)


def test_no_channels_takes_one_group_only():
    x = np.zeros((1, 0, 5))
    _call(grad_out=x, x=x, mean=np.zeros((1, 1)), rstd=np.zeros((1, 1)), num_groups=1,
          weight=None, bias=None)
    with pytest.raises(ValueError, match="divide"):
        _call(grad_out=x, x=x, mean=np.zeros((1, 2)), rstd=np.zeros((1, 2)), num_groups=2,
              weight=None, bias=None)


def test_relu_backward_zeroes_an_infinite_gradient_where_z_is_not_positive():
    """ReLU's backward selects (as PyTorch's threshold_backward): an infinite
    gradient where z <= 0 gives 0, not inf * 0 = NaN."""
    x = np.array([1.0, 2.0, -3.0]).reshape(1, 1, 3)
    grad = np.array([1.0, 2.0, np.inf]).reshape(1, 1, 3)
    _, mean, rstd = reference.group_norm(x, 1, return_stats=True)
    dx, _, _ = reference.group_norm_backward(grad, x, mean, rstd, 1, activation="relu")
    assert np.isfinite(dx).all()
    finite = reference.group_norm_backward(np.array([1.0, 2.0, 0.0]).reshape(1, 1, 3), x, mean,
                                           rstd, 1, activation="relu")[0]
    np.testing.assert_allclose(dx, finite)
