"""Fused activations and returned statistics."""

import numpy as np
import pytest

import gncpu
from gncpu import reference

from conftest import (ACTIVATION_TOLERANCE, RTOL, TOLERANCE, max_error, random_affine,
                      random_input)

ACTIVATIONS = ["gelu", "relu", "silu"]


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", [pytest.param(np.float32, marks=pytest.mark.smoke), np.float64])
def test_fused_activation_matches_oracle(isa, schedule, rng, activation, dtype):
    x = random_input(rng, (2, 16, 19, 13), dtype, mean=1.0, std=3.0)
    weight, bias = random_affine(rng, 16, dtype)
    y = gncpu.group_norm(x, 4, weight, bias, activation=activation)
    expected = reference.group_norm(x, 4, weight, bias, activation=activation)
    assert y.dtype == dtype
    assert max_error(y, expected) <= ACTIVATION_TOLERANCE[dtype] * 4  # outputs of several units


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_extremes(isa, activation):
    """Large, tiny and non-finite pre-activations: no overflow, NaN stays NaN."""
    # With G=C=1 and 2 values per group, each group normalises to -1, +1; the
    # bias then puts the pre-activation exactly where we want it.
    bias = np.array([-1e4, -100.0, -88.0, -30.0, 0.0, 30.0, 88.0, 100.0, 1e4], np.float32)
    x = np.tile(np.array([-1.0, 1.0], np.float32), (1, bias.size, 1))
    y = gncpu.group_norm(x, bias.size, None, bias, eps=0.0, activation=activation)
    expected = reference.group_norm(x, bias.size, None, bias, eps=0.0, activation=activation)
    assert np.all(np.isfinite(y))
    assert np.allclose(y, expected, rtol=RTOL[np.float32], atol=RTOL[np.float32])
    nan_input = x.copy()
    nan_input[0, 3, 0] = np.nan
    assert np.isnan(gncpu.group_norm(nan_input, bias.size, activation=activation)[0, 3]).all()


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_near_float32_max(isa, activation):
    """Pre-activations at +-3e38: finite results where the math is finite (GELU
    used to overflow from ~1.7e38)."""
    bias = np.array([-3e38, -1.7e38, 1.7e38, 3e38], np.float32)
    x = np.tile(np.array([-1.0, 1.0], np.float32), (1, bias.size, 1))
    y = gncpu.group_norm(x, bias.size, None, bias, eps=0.0, activation=activation)
    expected = reference.group_norm(x, bias.size, None, bias, eps=0.0, activation=activation)
    assert np.all(np.isfinite(y))
    # SiLU of -3e38 is -0 in float64 and under 1e-36 in float32 (see activations.inl).
    assert np.allclose(y, expected, rtol=RTOL[np.float32], atol=1e-36)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_at_infinity_and_nan(isa, activation, dtype):
    """Pre-activations of -inf, +inf (an infinite bias) and NaN: the limits
    (-inf gives 0 for every activation), as the oracle says."""
    bias = np.array([-np.inf, np.inf, np.nan], dtype)
    x = np.tile(np.array([-1.0, 1.0], dtype), (1, bias.size, 1))
    y = gncpu.group_norm(x, bias.size, None, bias, activation=activation)
    expected = reference.group_norm(x, bias.size, None, bias, activation=activation)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    finite = ~np.isnan(expected)
    np.testing.assert_allclose(y[finite], expected[finite], rtol=0, atol=1e-36)


@pytest.mark.smoke
@pytest.mark.parametrize("activation", ["silu", "gelu"])
def test_activation_math_within_a_few_ulp(isa, rng, activation):
    """The vectorised float32 exp/erf, alone: each output against the float64
    activation of gncpu's own float32 pre-activation (the same run without
    the activation), so normalisation rounding does not enter.  SiLU: within
    4 ulp over |z| < 80 (a one-float ln2 in exp's reduction gave 70 ulp on the
    scalar kernel); GELU: 5e-7 absolute (its erf is Abramowitz-Stegun 7.1.26,
    1.5e-7 absolute)."""
    channels = 1000
    bias = np.linspace(-80.0, 80.0, channels).astype(np.float32)
    x = rng.standard_normal((1, channels, 64)).astype(np.float32)
    weight = np.ones(channels, np.float32)
    z = gncpu.group_norm(x, channels, weight, bias).astype(np.float64)
    y = gncpu.group_norm(x, channels, weight, bias, activation=activation).astype(np.float64)
    # The oracle's activation of exactly z: each value a channel of its own,
    # weight 0, bias z.
    values = z.size
    expected = reference.group_norm(np.zeros((1, values, 1)), values, np.zeros(values), z.ravel(),
                                    activation=activation).reshape(z.shape)
    inside = np.abs(z) < 80
    if activation == "silu":
        ulp = np.spacing(np.abs(expected).astype(np.float32)).astype(np.float64)
        assert np.max(np.abs(y - expected)[inside] / ulp[inside]) <= 4.0
    else:
        assert np.max(np.abs(y - expected)[inside]) <= 5e-7


@pytest.mark.smoke
def test_activation_is_bitwise_deterministic(isa, restore_threads, rng):
    x = random_input(rng, (1, 8, 100, 100), mean=-2.0)
    results = []
    for threads in (1, 2, 3):
        gncpu.set_num_threads(threads)
        results.append(gncpu.group_norm(x, 2, activation="silu"))
    assert all(np.array_equal(results[0], r) for r in results[1:])


@pytest.mark.parametrize("bad,error", [("swish", ValueError), ("SiLU", ValueError),
                                       ("", ValueError), (1, TypeError), (np.exp, TypeError)])
def test_unknown_activation(bad, error):
    out = np.full((2, 4, 3), -7.0, np.float32)
    with pytest.raises(error, match="activation"):
        gncpu.group_norm(np.ones((2, 4, 3), np.float32), 2, activation=bad, out=out)
    assert np.all(out == -7.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_return_stats(isa, schedule, rng, dtype):
    x = random_input(rng, (3, 12, 9, 7), dtype, mean=50.0, std=2.0)
    y, mean, rstd = gncpu.group_norm(x, 4, return_stats=True, eps=1e-3)
    stats_dtype = np.float64 if dtype == np.float64 else np.float32
    assert mean.shape == rstd.shape == (3, 4)
    assert mean.dtype == rstd.dtype == stats_dtype and y.dtype == dtype
    _, expected_mean, expected_rstd = reference.group_norm(x, 4, return_stats=True, eps=1e-3)
    assert np.allclose(mean, expected_mean, rtol=RTOL[stats_dtype], atol=0)
    assert np.allclose(rstd, expected_rstd, rtol=RTOL[stats_dtype] * 10, atol=0)
    np.testing.assert_array_equal(y, gncpu.group_norm(x, 4, eps=1e-3))


def test_return_stats_with_out_and_empty(rng):
    x = random_input(rng, (2, 8, 5))
    out = np.empty_like(x)
    y, mean, rstd = gncpu.group_norm(x, 4, out=out, return_stats=True)
    assert y is out
    y, mean, rstd = gncpu.group_norm(np.zeros((2, 8, 0), np.float32), 4, return_stats=True)
    assert y.shape == (2, 8, 0) and mean.shape == (2, 4) and np.isnan(mean).all()
    with pytest.raises(TypeError, match="return_stats"):
        gncpu.group_norm(x, 4, return_stats="yes")


def test_module_activation_and_state_dict(rng):
    layer = gncpu.GroupNorm(4, 8, activation="silu")
    state = {"weight": rng.uniform(0.5, 1.5, 8), "bias": rng.standard_normal(8)}
    layer.load_state_dict(state)
    assert layer.weight.dtype == np.float32
    x = random_input(rng, (2, 8, 5, 5))
    expected = reference.group_norm(x, 4, layer.weight, layer.bias, activation="silu")
    assert max_error(layer(x), expected) <= TOLERANCE[np.float32]
    saved = layer.state_dict()
    assert set(saved) == {"weight", "bias"}
    saved["weight"][:] = 0  # a copy: the layer keeps its own
    assert np.all(layer.weight != 0)
    assert "silu" in repr(layer)


def test_module_state_dict_from_torch_style_mapping(rng):
    torch = pytest.importorskip("torch")
    reference_layer = torch.nn.GroupNorm(4, 8)
    with torch.no_grad():
        reference_layer.weight.uniform_(0.5, 1.5)
        reference_layer.bias.normal_()
    layer = gncpu.GroupNorm(4, 8)
    layer.load_state_dict({k: v.numpy() for k, v in reference_layer.state_dict().items()})
    x = random_input(rng, (2, 8, 6, 6))
    expected = reference_layer(torch.from_numpy(x)).detach().numpy()
    assert max_error(layer(x), expected.astype(np.float64)) <= TOLERANCE[np.float32]


@pytest.mark.parametrize("state,error", [
    ({"weight": np.ones(8)}, ValueError),                           # missing bias
    ({"weight": np.ones(8), "bias": np.zeros(8), "x": 1}, ValueError),
    ({"weight": np.ones(7), "bias": np.zeros(8)}, ValueError),      # wrong shape
    ({"weight": np.ones(8), "bias": np.array(["a"] * 8)}, TypeError),
    ([("weight", np.ones(8))], TypeError),
])
def test_module_load_state_dict_is_all_or_nothing(state, error):
    layer = gncpu.GroupNorm(4, 8)
    with pytest.raises(error):
        layer.load_state_dict(state)
    np.testing.assert_array_equal(layer.weight, np.ones(8))
    np.testing.assert_array_equal(layer.bias, np.zeros(8))


def test_module_without_affine_state_dict():
    layer = gncpu.GroupNorm(2, 4, affine=False)
    assert layer.state_dict() == {}
    layer.load_state_dict({})
    with pytest.raises(ValueError):
        layer.load_state_dict({"weight": np.ones(4), "bias": np.zeros(4)})
    with pytest.raises(ValueError):
        gncpu.GroupNorm(2, 4, activation="tanh")
