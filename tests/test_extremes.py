"""Extreme magnitudes: every finite input gets the answer of the float64
oracle, whatever its spread (float32 squares overflow past ~1.8e19 and fall
into subnormals below ~1e-19) and whatever eps (0 included)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gncpu
from gncpu import reference

from conftest import TOLERANCE, random_input

ml_dtypes = pytest.importorskip("ml_dtypes")
LAYOUTS = [False, True]  # channels_last


def two_valued(low, high, channels_last, dtype=np.float32):
    """One group (C = 1 or spatial = 1 ...) of 64 values alternating low, high."""
    values = np.tile(np.array([low, high], np.float32), 32).astype(dtype)
    return values.reshape(1, 64, 1) if channels_last else values.reshape(1, 1, 64)


def assert_matches_oracle(y, expected, tolerance=TOLERANCE[np.float32]):
    """Equal NaN patterns; elsewhere within tolerance of the oracle, relative
    to its magnitude past 1."""
    y = np.asarray(y).astype(np.float64)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    finite = ~np.isnan(expected)
    error = np.abs(y[finite] - expected[finite]) / np.maximum(1.0, np.abs(expected[finite]))
    assert error.max(initial=0.0) <= tolerance


@pytest.mark.parametrize("channels_last", LAYOUTS)
@pytest.mark.parametrize("low,high", [(-1e18, 1e18), (-1e20, 1e20), (-1e37, 1e37),
                                      (-3e38, 3e38), (3.0e38, 3.1e38), (-3.4e38, 3.4e38)])
def test_large_spread(isa, schedule, channels_last, low, high):
    """Used to return bias (rstd = 0) from a spread of ~1e19, NaN at 1e37."""
    x = two_valued(low, high, channels_last)
    y = gncpu.group_norm(x, 1, channels_last=channels_last)
    assert_matches_oracle(y, reference.group_norm(x, 1, channels_last=channels_last))
    assert np.allclose(np.abs(y), 1.0, rtol=1e-6)


@pytest.mark.parametrize("channels_last", LAYOUTS)
def test_deviations_past_float_range(isa, channels_last):
    """-3e38 among three 3e38: x - mean = -4.5e38 does not fit a float32."""
    values = np.array([-3e38, 3e38, 3e38, 3e38] * 16, np.float32)
    x = values.reshape((1, 64, 1) if channels_last else (1, 1, 64))
    y = gncpu.group_norm(x, 1, channels_last=channels_last)
    assert_matches_oracle(y, reference.group_norm(x, 1, channels_last=channels_last))


@pytest.mark.parametrize("channels_last", LAYOUTS)
@pytest.mark.parametrize("value", [1e-15, 1e-22, 1e-30, 1e-38, 1e-40, 1e-45])
def test_tiny_spread_with_eps_zero(isa, schedule, channels_last, value):
    """Used to give NaN from ~1e-19 down (and -0.984 for 1e-22) with eps = 0."""
    x = two_valued(-value, value, channels_last)
    y = gncpu.group_norm(x, 1, eps=0.0, channels_last=channels_last)
    assert_matches_oracle(y, reference.group_norm(x, 1, eps=0.0, channels_last=channels_last))
    assert np.all(np.abs(y) == 1.0)


@pytest.mark.parametrize("channels_last", LAYOUTS)
def test_constant_group_with_eps_zero_is_nan(isa, channels_last):
    """0 / 0, as in the oracle."""
    x = two_valued(2.5, 2.5, channels_last)
    assert np.isnan(gncpu.group_norm(x, 1, eps=0.0, channels_last=channels_last)).all()


@pytest.mark.parametrize("dtype", [np.dtype(ml_dtypes.bfloat16), np.dtype(np.float16)],
                         ids=lambda d: d.name)
@pytest.mark.parametrize("channels_last", LAYOUTS)
def test_16bit_extremes(isa, channels_last, dtype):
    large = 3e38 if dtype.name == "bfloat16" else 6e4
    for low, high, eps in [(-large, large, 1e-5), (-1e-7, 1e-7, 0.0)]:
        x = two_valued(low, high, channels_last, dtype)
        y = gncpu.group_norm(x, 1, eps=eps, channels_last=channels_last)
        expected = reference.group_norm(x, 1, eps=eps, channels_last=channels_last)
        np.testing.assert_array_equal(y, expected.astype(dtype))  # the oracle rounded


@pytest.mark.parametrize("activation", [None, "silu", "relu", "gelu"])
@pytest.mark.parametrize("channels_last", LAYOUTS)
def test_exact_path_applies_the_activation_and_affine(isa, schedule, rng, channels_last,
                                                      activation):
    x = random_input(rng, (2, 8, 5, 7), std=1e25)  # past the float squares' range
    if channels_last:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    weight = rng.uniform(0.5, 1.5, 8).astype(np.float32)
    bias = rng.standard_normal(8).astype(np.float32)
    y = gncpu.group_norm(x, 4, weight, bias, activation=activation, channels_last=channels_last)
    expected = reference.group_norm(x, 4, weight, bias, activation=activation,
                                    channels_last=channels_last)
    assert_matches_oracle(y, expected)


def test_channels_last_as_accurate_as_nchw(isa):
    """Channels-last sums each channel down the rows: it was up to ~27 ulp off
    (6.4e-6) on plain N(0, 1) data where NCHW is within 2e-7."""
    x = np.random.default_rng(481).standard_normal((1, 64, 2)).astype(np.float32)
    y = gncpu.group_norm(x, 1, channels_last=True)
    assert np.abs(y - reference.group_norm(x, 1, channels_last=True)).max() <= 1e-6
    worst = {False: 0.0, True: 0.0}
    for seed in range(100):
        rng = np.random.default_rng(seed)
        for shape, groups in (((2, 300, 8), 2), ((1, 1000, 4), 1)):
            nhwc = rng.standard_normal(shape).astype(np.float32)
            expected = reference.group_norm(nhwc, groups, channels_last=True)
            worst[True] = max(worst[True], np.abs(
                gncpu.group_norm(nhwc, groups, channels_last=True) - expected).max())
            nchw = np.ascontiguousarray(np.moveaxis(nhwc, -1, 1))
            worst[False] = max(worst[False], np.abs(
                gncpu.group_norm(nchw, groups) - np.moveaxis(expected, -1, 1)).max())
    assert worst[True] <= 1.5 * worst[False] + 1e-7, worst


# Decades of spread each dtype can hold: float32/bfloat16 from the subnormals
# to the maximum, float16 likewise in its own range, float64 as far as its
# squares stay finite (past that the float64 oracle overflows too).
SPREAD_DECADES = {"float32": (-44, 37), "bfloat16": (-44, 37), "float16": (-7, 4),
                  "float64": (-150, 150)}


@st.composite
def extreme_cases(draw):
    groups = draw(st.integers(1, 4))
    channels = groups * draw(st.integers(1, 4))
    shape = (draw(st.integers(1, 2)), channels, draw(st.integers(1, 40)))
    dtype = draw(st.sampled_from(sorted(SPREAD_DECADES)))
    scale = 10.0 ** draw(st.floats(*SPREAD_DECADES[dtype]))
    offset = scale * draw(st.sampled_from([0.0, 1.0, -30.0, 1e4]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    with np.errstate(over="ignore", under="ignore"):
        x = (offset + scale * rng.standard_normal(shape)).astype(
            ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype)
    channels_last = draw(st.booleans())
    if channels_last:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    eps = draw(st.sampled_from([0.0, 1e-5]))
    return x, groups, eps, channels_last


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(extreme_cases(), st.sampled_from(gncpu.supported_isas()))
def test_extreme_magnitudes_match_oracle(case, isa):
    """Every ISA, dtype and layout: the oracle's answer (rounded to x's dtype)."""
    x, groups, eps, channels_last = case
    before = gncpu.isa()
    gncpu.set_isa(isa)
    try:
        y = gncpu.group_norm(x, groups, eps=eps, channels_last=channels_last)
    finally:
        gncpu.set_isa(before)
    with np.errstate(all="ignore"):
        expected = reference.group_norm(x, groups, eps=eps, channels_last=channels_last)
    if x.dtype.itemsize == 2:  # 16 bits: within one ulp of the rounded oracle
        with np.errstate(all="ignore"):
            expected = np.where(np.isnan(expected), np.nan,
                                expected.astype(x.dtype).astype(np.float64))
        assert_matches_oracle(y, expected, tolerance=TOLERANCE[x.dtype.type])
    else:  # float64's own rounding of x - mean grows with |mean| / std, the oracle's too
        with np.errstate(all="ignore"):
            offset_ratio = float(np.abs(x).max() / max(float(x.astype(np.float64).std()), 1e-300))
        tolerance = TOLERANCE[x.dtype.type] * (max(1.0, offset_ratio) if x.dtype == np.float64 else 1.0)
        assert_matches_oracle(y, expected, tolerance=tolerance)


@pytest.mark.parametrize("channels_last", LAYOUTS)
@pytest.mark.parametrize("weight_value", [1e15, 1e-35, 3e38])
def test_weight_pushing_the_scale_out_of_float_range(isa, channels_last, weight_value):
    """rstd 1e25 with weight 1e15 is a scale of 1e40 (past float32), and a tiny
    weight one below its normal range; the outputs themselves are representable."""
    x = (np.random.default_rng(5).standard_normal((1, 2, 64)) * 1e-25).astype(np.float32)
    if channels_last:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    weight = np.full(2, weight_value, np.float32)
    if weight_value == 3e38:  # with an ordinary spread: rstd ~1, the scale near float's max
        x = np.random.default_rng(5).standard_normal(x.shape).astype(np.float32)
        weight = np.array([3e38, 1e-3], np.float32)
    y = gncpu.group_norm(x, 1, weight, eps=0.0, channels_last=channels_last)
    expected = reference.group_norm(x, 1, weight, eps=0.0, channels_last=channels_last)
    with np.errstate(over="ignore"):
        representable = np.abs(expected) <= np.finfo(np.float32).max
    y64 = y.astype(np.float64)
    assert np.all(np.isfinite(y64[representable]))
    error = np.abs(y64[representable] - expected[representable]) / np.maximum(1.0, np.abs(expected[representable]))
    assert error.max() <= 1e-5


# ------------------------------------------------ float64's own range limits

FLOAT64_SCALES = [1e-300, 1e-250, 1e-200, 1e-162, 1e-100, 1.0, 1e100, 1e154, 1e200, 1e250, 1e300]


@pytest.mark.parametrize("channels_last", LAYOUTS)
@pytest.mark.parametrize("scale", FLOAT64_SCALES)
def test_float64_any_magnitude_is_the_same_data_scaled(isa, schedule, rng, channels_last, scale):
    """float64 squares overflow past ~1.3e154 and go subnormal below ~1e-154:
    [1e154, -1e154, 0.5e154] gave NaN, spreads below ~1e-162 with eps = 0 too.
    Every finite magnitude from 1e-300 to 1e300 now gives the unit-scale
    answer (the oracle's, which is exact there too), with eps = 0 and with
    the default eps where it cannot matter."""
    unit = rng.standard_normal((2, 8, 37))
    x = unit * scale
    if channels_last:
        x, unit = np.ascontiguousarray(np.moveaxis(x, 1, -1)), np.moveaxis(unit, 1, -1)
    eps = 0.0 if scale < 1e10 else 1e-5
    y, mean, rstd = gncpu.group_norm(x, 4, eps=eps, channels_last=channels_last,
                                     return_stats=True)
    expected = reference.group_norm(unit, 4, eps=0.0, channels_last=channels_last)
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-12)
    want = reference.group_norm(x, 4, eps=eps, channels_last=channels_last, return_stats=True)
    np.testing.assert_allclose(mean, want[1], rtol=1e-12, atol=1e-14 * scale)
    np.testing.assert_allclose(rstd, want[2], rtol=1e-12)


@pytest.mark.parametrize("channels_last", LAYOUTS)
def test_float64_issue_example(isa, channels_last):
    values = np.array([1e154, -1e154, 0.5e154])
    x = values.reshape((1, 3, 1) if channels_last else (1, 1, 3))
    y = gncpu.group_norm(x, 1, channels_last=channels_last)
    np.testing.assert_allclose(y.ravel(), [0.98058068, -1.37281295, 0.39223227], rtol=1e-8)
