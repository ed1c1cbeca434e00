"""The backward pass against the true gradient at any offset (issue #22).

The statistics the forward hands over are rounded to float32 for float32
input; a float32 mean of values near 1e4 std is off by ~3e-4 std.  The
truth here is float64 (gncpu.reference) on the same float32 values with
float64 statistics measured from them, so a kernel that trusted the
rounded mean would be off by up to 6e-2 at 1e6 std; gncpu measures the
residual of the mean it is given (cpp/src/layout_grad.h)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gncpu
from gncpu import reference

ACTIVATIONS = [None, "silu", "relu", "gelu"]
OFFSETS = [0.0, 1e2, 1e3, 1e4, 1e5, 1e6]


def away_from_zero(u):
    """Standard normal values pushed away from 0 (ReLU's kink stays far from
    every value: rounding never flips which side a value falls on)."""
    return u + 0.3 * np.sign(u)


def case(rng, offset, spread=1.0, shape=(2, 8, 37), dtype=np.float32):
    u = away_from_zero(rng.standard_normal(shape))
    x = (offset + spread * u).astype(dtype)
    channels = shape[1]
    weight = rng.uniform(0.5, 1.5, channels).astype(dtype)
    bias = (0.1 * rng.standard_normal(channels)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    return x, dy, weight, bias


def relative_errors(got, want):
    return [float(np.abs(np.asarray(g, np.float64) - w).max() / max(np.abs(w).max(), 1e-300))
            for g, w in zip(got, want)]


def check(x, dy, weight, bias, groups, activation, channels_last, eps, bound, offset=0.0):
    """gncpu's backward, from the statistics its own forward returned,
    against float64 on the same values with exact statistics: the truth is
    computed on x - offset (exact: every value is within a factor 2 of a
    nonzero offset), as GroupNorm's gradient does not change with a shift."""
    _, mean, rstd = gncpu.group_norm(x, groups, weight, bias, eps, activation=activation,
                                     return_stats=True, channels_last=channels_last)
    got = gncpu.group_norm_backward(dy, x, mean, rstd, groups, weight, bias,
                                    activation=activation, channels_last=channels_last)
    x64 = x.astype(np.float64) - offset
    _, mean64, rstd64 = reference.group_norm(x64, groups, weight, bias, eps, activation=activation,
                                             return_stats=True, channels_last=channels_last)
    want = reference.group_norm_backward(dy.astype(np.float64), x64, mean64, rstd64, groups,
                                         weight, bias, activation=activation,
                                         channels_last=channels_last)
    errors = relative_errors(got, want)
    assert max(errors) <= bound, dict(zip(["dx", "dweight", "dbias"], errors))


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("offset", OFFSETS)
def test_float32_backward_at_any_offset(isa, rng, offset, activation, channels_last):
    x, dy, weight, bias = case(rng, offset)
    if channels_last:
        x, dy = np.ascontiguousarray(np.moveaxis(x, 1, -1)), np.ascontiguousarray(np.moveaxis(dy, 1, -1))
    check(x, dy, weight, bias, 4, activation, channels_last, 1e-5, 2e-6, offset)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("activation", [None, "silu"])
@pytest.mark.parametrize("spread,center", [(1e-6, 1.0), (1e-12, 0.0), (1e-20, 0.0),
                                           (1e-30, 0.0)])
def test_float32_backward_eps_zero_tiny_spreads(isa, rng, spread, center, activation,
                                                channels_last):
    x, dy, weight, bias = case(rng, center, spread)
    if channels_last:
        x, dy = np.ascontiguousarray(np.moveaxis(x, 1, -1)), np.ascontiguousarray(np.moveaxis(dy, 1, -1))
    check(x, dy, weight, bias, 4, activation, channels_last, 0.0, 1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("offset", [0.0, 1e3, 1e6])
def test_float64_backward_at_any_offset(isa, rng, offset, activation, channels_last):
    x, dy, weight, bias = case(rng, offset, dtype=np.float64)
    if channels_last:
        x, dy = np.ascontiguousarray(np.moveaxis(x, 1, -1)), np.ascontiguousarray(np.moveaxis(dy, 1, -1))
    # Channels-last float64 at 1e6 std: the forward's rstd is itself off by
    # ~5e-12 there (its per-channel means are combined as differences of
    # values near 1e6), which the backward inherits; short of 1e-12 (#22).
    bound = 5e-12 if channels_last and offset >= 1e6 else 1e-12
    check(x, dy, weight, bias, 4, activation, channels_last, 1e-5, bound, offset)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(log_offset=st.floats(-3, 6), log_spread=st.floats(-3, 3), seed=st.integers(0, 2**32 - 1),
       activation=st.sampled_from(ACTIVATIONS), channels_last=st.booleans(),
       groups=st.sampled_from([1, 2, 8]), spatial=st.integers(1, 300))
def test_property_float32_backward_offset_and_scale(log_offset, log_spread, seed, activation,
                                                   channels_last, groups, spatial):
    """Any offset up to 1e6 spreads and any scale: within 2e-6 of the truth
    (groups of at least a few values: one value has no spread)."""
    rng = np.random.default_rng(seed)
    spread = 10.0 ** log_spread
    x, dy, weight, bias = case(rng, spread * 10.0 ** log_offset, spread, (2, 8, spatial))
    if channels_last:
        x, dy = np.ascontiguousarray(np.moveaxis(x, 1, -1)), np.ascontiguousarray(np.moveaxis(dy, 1, -1))
    if 8 // groups * spatial < 4:
        return
    check(x, dy, weight, bias, groups, activation, channels_last, 1e-5 * spread ** 2, 2e-6)
