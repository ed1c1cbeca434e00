"""The oracle itself: gncpu.reference.group_norm against hand-computed answers
and the formulas it stands for."""

import math
import subprocess
import sys

import numpy as np
import pytest

from gncpu import reference

from conftest import ORACLE_RTOL, random_affine, random_input

# Two samples, two groups of two channels; the second sample is twice the first.
# Sample 0: group 0 holds 1, 3, 1, 3 (mean 2, var 1), group 1 holds 10, 10, 14, 14
# (mean 12, var 4).  Sample 1: means 4 and 24, variances 4 and 16.
TINY = np.array([[[1.0, 3.0], [1.0, 3.0], [10.0, 10.0], [14.0, 14.0]]])
TINY = np.concatenate([TINY, 2 * TINY])
WEIGHT = np.array([1.0, 2.0, 3.0, 0.5])
BIAS = np.array([0.0, 1.0, -1.0, 2.0])
# (x - mean) * rstd is -1, 1 / -1, 1 / -1, -1 / 1, 1 in both samples, then * weight + bias.
TINY_Y = np.array([[[-1.0, 1.0], [-1.0, 3.0], [-4.0, -4.0], [2.5, 2.5]]] * 2)
TINY_MEAN = np.array([[2.0, 12.0], [4.0, 24.0]])
TINY_RSTD = np.array([[1.0, 0.5], [0.5, 0.25]])  # eps = 0


def test_tiny_hand_computed_example():
    y, mean, rstd = reference.group_norm(TINY, 2, WEIGHT, BIAS, eps=0.0, return_stats=True)
    np.testing.assert_array_equal(y, TINY_Y)
    np.testing.assert_array_equal(mean, TINY_MEAN)
    np.testing.assert_array_equal(rstd, TINY_RSTD)
    np.testing.assert_array_equal(reference.group_norm(TINY, 2, WEIGHT, BIAS, 0.0), TINY_Y)


def test_eps_and_defaults():
    y, _, rstd = reference.group_norm(TINY[:1], 2, return_stats=True)  # eps = 1e-5
    np.testing.assert_allclose(rstd, [[1 / math.sqrt(1 + 1e-5), 1 / math.sqrt(4 + 1e-5)]],
                               rtol=ORACLE_RTOL)
    np.testing.assert_allclose(y[0, 0], [-1 / math.sqrt(1 + 1e-5), 1 / math.sqrt(1 + 1e-5)],
                               rtol=ORACLE_RTOL)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, "bfloat16"])
def test_float64_out_for_any_input(dtype):
    if dtype == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    x = TINY.astype(dtype)
    y, mean, rstd = reference.group_norm(x, 2, WEIGHT.astype(dtype), BIAS.astype(dtype),
                                         eps=0.0, return_stats=True)
    assert y.dtype == mean.dtype == rstd.dtype == np.float64
    np.testing.assert_array_equal(y, TINY_Y)  # every value here is exact in 16 bits
    np.testing.assert_array_equal(mean, TINY_MEAN)


def test_array_like_input():
    np.testing.assert_array_equal(reference.group_norm(TINY.tolist(), 2, eps=0.0),
                                  reference.group_norm(TINY, 2, eps=0.0))


@pytest.mark.parametrize("activation", [None, "silu", "relu", "gelu"])
@pytest.mark.parametrize("shape,groups", [((2, 5, 6, 8), 4), ((3, 7, 6), 3), ((2, 6), 2)])
def test_channels_last_is_the_transposed_nchw_answer(rng, activation, shape, groups):
    x = random_input(rng, shape, np.float32, mean=2.0)
    weight, bias = random_affine(rng, shape[-1])
    y, mean, rstd = reference.group_norm(x, groups, weight, bias, activation=activation,
                                         return_stats=True, channels_last=True)
    nchw = np.ascontiguousarray(np.moveaxis(x, -1, 1))
    y_nchw, mean_nchw, rstd_nchw = reference.group_norm(nchw, groups, weight, bias,
                                                        activation=activation, return_stats=True)
    assert y.shape == x.shape
    np.testing.assert_array_equal(y, np.moveaxis(y_nchw, 1, -1))
    np.testing.assert_array_equal(mean, mean_nchw)
    np.testing.assert_array_equal(rstd, rstd_nchw)


def test_return_stats_shapes_and_values(rng):
    x = random_input(rng, (3, 12, 5, 4), np.float64, mean=7.0, std=3.0)
    y, mean, rstd = reference.group_norm(x, 4, eps=1e-3, return_stats=True)
    assert mean.shape == rstd.shape == (3, 4)
    grouped = x.reshape(3, 4, -1)
    np.testing.assert_allclose(mean, grouped.mean(axis=-1), rtol=ORACLE_RTOL)
    np.testing.assert_allclose(rstd, 1 / np.sqrt(grouped.var(axis=-1) + 1e-3), rtol=ORACLE_RTOL)
    np.testing.assert_array_equal(y, reference.group_norm(x, 4, eps=1e-3))
    # The stats describe the input, before weight, bias and activation.
    _, mean2, rstd2 = reference.group_norm(x, 4, np.full(12, 3.0), np.ones(12), 1e-3,
                                           activation="gelu", return_stats=True)
    np.testing.assert_array_equal(mean2, mean)
    np.testing.assert_array_equal(rstd2, rstd)


def _silu(v):
    if v == -math.inf:  # the limit: the formula reads -inf * 0
        return -0.0
    return v / (1 + math.exp(-v)) if v >= 0 else v * math.exp(v) / (1 + math.exp(v))


def _gelu(v):
    return -0.0 if v == -math.inf else 0.5 * v * (1 + math.erf(v / math.sqrt(2)))


FORMULAS = {
    "silu": _silu,
    "relu": lambda v: max(v, 0.0),
    "gelu": _gelu,
}
POINTS = [-math.inf, -1e4, -800.0, -100.0, -30.0, -1.0, -0.5, -1e-8, 0.0, 1e-8, 0.5, 1.0, 30.0,
          100.0, 800.0, 1e4, math.inf]


@pytest.mark.parametrize("activation", sorted(FORMULAS))
def test_activations_follow_their_formulas(activation):
    """With weight 0 the pre-activation is exactly the bias; |v| large enough
    to overflow exp() raises no warning (NumPy's warnings raised here)."""
    bias = np.array(POINTS + [math.nan])
    x = np.tile([-1.0, 1.0], (2, bias.size, 1))
    with np.errstate(all="raise", under="ignore"):  # underflow is silent by default
        y = reference.group_norm(x, bias.size, np.zeros(bias.size), bias, activation=activation)
    expected = [FORMULAS[activation](v) for v in POINTS]
    for n in range(2):
        for values in y[n].T:
            np.testing.assert_allclose(values[:-1], expected, rtol=ORACLE_RTOL, atol=0)
            assert math.isnan(values[-1])  # NaN stays NaN


def test_empty_input():
    for shape, groups in [((0, 8, 4, 4), 4), ((2, 8, 0, 4), 4), ((2, 8, 0), 2), ((2, 0, 5), 1)]:
        y, mean, rstd = reference.group_norm(np.zeros(shape, np.float32), groups,
                                             return_stats=True)
        assert y.shape == shape and y.dtype == np.float64
        assert mean.shape == rstd.shape == (shape[0], groups)
        assert np.isnan(mean).all() and np.isnan(rstd).all()
        assert reference.group_norm(np.zeros(shape), groups).shape == shape
    y, mean, rstd = reference.group_norm(np.zeros((2, 0, 6)), 3, return_stats=True,
                                         channels_last=True)
    assert y.shape == (2, 0, 6) and mean.shape == (2, 3) and np.isnan(mean).all()


@pytest.mark.parametrize("bad", ["swish", "SiLU", "", "tanh"])
def test_unknown_activation(bad):
    with pytest.raises(ValueError, match="activation"):
        reference.group_norm(TINY, 2, activation=bad)


@pytest.mark.parametrize("x,groups", [(np.ones(8), 1), (np.ones((2, 6, 3)), 4),
                                      (np.ones((2, 6, 3)), 0)])
def test_bad_shapes(x, groups):
    with pytest.raises(ValueError):
        reference.group_norm(x, groups)


def test_reachable_as_gncpu_reference():
    code = "import gncpu; print(gncpu.reference.group_norm([[1.0, 3.0]], 1, eps=0.0))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[[-1.", "1.]]"]


# ---------------------------------------------- any finite float64 magnitude

UNIT_DATA = np.array([0.98, -1.37, 0.39, 0.0, -0.11, 2.5])


@pytest.mark.parametrize("power", [-1070, -1000, -997, -538, -300, 0, 300, 511, 700, 1000, 1020])
def test_forward_is_scale_invariant_over_the_whole_float64_range(power):
    """With eps = 0 GroupNorm does not depend on the data's scale: the same
    data times 2**power (squares that underflow or overflow, subnormals)
    gives the answer of the data at unit scale, and the statistics scale."""
    x = np.ldexp(UNIT_DATA, power).reshape(1, 2, 3)
    unit = np.ldexp(x, -power)  # exactly the data x holds (subnormals round), at unit scale
    y, mean, rstd = reference.group_norm(x, 2, eps=0.0, return_stats=True)
    unit_y, unit_mean, unit_rstd = reference.group_norm(unit, 2, eps=0.0, return_stats=True)
    np.testing.assert_allclose(y, unit_y, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(mean, np.ldexp(unit_mean, power), rtol=1e-14,
                               atol=np.ldexp(1e-15, power))
    if -1000 < power < 1000:  # (rstd = 2**-power / std representable)
        np.testing.assert_allclose(rstd, np.ldexp(unit_rstd, -power), rtol=1e-14)


@pytest.mark.parametrize("spread", [1e-30, 1e-162, 1e-200, 1e-300])
def test_tiny_spreads_with_eps_zero_are_normalized(spread):
    x = (1.0 + 0 * UNIT_DATA + UNIT_DATA * spread).reshape(1, 1, 6) if spread > 1e-15 else \
        (UNIT_DATA * spread).reshape(1, 1, 6)
    y = reference.group_norm(x, 1, eps=0.0)
    assert np.isfinite(y).all()
    expected = (UNIT_DATA - UNIT_DATA.mean()) / UNIT_DATA.std()
    np.testing.assert_allclose(y.ravel(), expected, rtol=1e-13, atol=1e-14)


def test_eps_dominating_a_tiny_spread_gives_dev_over_sqrt_eps():
    x = (UNIT_DATA * 1e-200).reshape(1, 1, 6)
    y = reference.group_norm(x, 1, eps=1e-5)
    expected = (UNIT_DATA - UNIT_DATA.mean()) * 1e-200 / np.sqrt(1e-5)
    np.testing.assert_allclose(y.ravel(), expected, rtol=1e-13)


def test_non_finite_groups_give_nan_and_leave_the_others_alone():
    x = np.array([[np.inf, 1.0, 2.0], [1.0, 2.0, 3.0]]).reshape(1, 2, 3)
    y = reference.group_norm(x, 2)
    assert np.isnan(y[0, 0]).all() and np.isfinite(y[0, 1]).all()
