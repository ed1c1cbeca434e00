"""Property-based tests (hypothesis): random inputs against the oracle, and
random garbage arguments that may only raise TypeError or ValueError."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gncpu
from gncpu import reference

from conftest import TOLERANCE, max_error

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def group_norm_cases(draw):
    groups = draw(st.integers(1, 6))
    channels = groups * draw(st.integers(1, 5))
    batch = draw(st.integers(0, 3))
    spatial = draw(st.lists(st.integers(0, 9), min_size=0, max_size=3))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    # |mean| up to 1e4 standard deviations, std over twelve decades.
    std = 10.0 ** draw(st.floats(-4, 4))
    mean = std * draw(st.floats(-1e4, 1e4))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    shape = (batch, channels, *spatial)
    x = (mean + std * rng.standard_normal(shape)).astype(dtype)
    layout = draw(st.sampled_from(["c", "fortran", "reversed", "padded"]))
    if layout == "fortran":
        x = np.asfortranarray(x)
    elif layout == "reversed":
        x = x[::-1]
    elif layout == "padded":  # a strided view into a larger buffer
        big = np.zeros((batch, channels * 2, *spatial), dtype)
        big[:, ::2] = x
        x = big[:, ::2]
    affine = draw(st.booleans())
    weight = rng.uniform(0.5, 1.5, channels).astype(dtype) if affine else None
    bias = rng.standard_normal(channels).astype(dtype) if affine else None
    eps = draw(st.sampled_from([1e-5, 1e-3, 0.1]))
    activation = draw(st.sampled_from([None, None, "relu", "silu", "gelu"]))
    return x, groups, weight, bias, eps, activation


@SETTINGS
@given(group_norm_cases(), st.sampled_from(gncpu.supported_isas()))
def test_random_inputs_match_oracle(case, isa):
    x, groups, weight, bias, eps, activation = case
    before = gncpu.isa()
    gncpu.set_isa(isa)
    try:
        y = gncpu.group_norm(x, groups, weight, bias, eps, activation=activation)
    finally:
        gncpu.set_isa(before)
    assert y.shape == x.shape and y.dtype == x.dtype
    if x.size == 0:
        return
    expected = reference.group_norm(x, groups, weight, bias, eps, activation=activation)
    # Unit-scale outputs (eps small against the variance) get the issue's
    # absolute bounds; with eps comparable to the variance the output is
    # smaller and the bound is relative to the largest value.
    scale = max(1.0, float(np.max(np.abs(expected))))
    # float64: scaled by |mean|/std, up to 1e4 here (see TOLERANCE).
    tolerance = (TOLERANCE[np.float32] if x.dtype == np.float32
                 else TOLERANCE[np.float64] * 1e4) * scale
    assert max_error(y, expected) <= tolerance


GARBAGE = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.just(10**400),
    st.floats(allow_nan=True),
    st.text(max_size=5), st.binary(max_size=5),
    st.lists(st.integers(-3, 3), max_size=4),
    st.lists(st.lists(st.floats(-1, 1), max_size=3), max_size=3),
    st.sampled_from([np.ones(3, np.int8), np.ones((2, 2), complex), np.array(["a"]),
                     np.ones(4, object), np.float32(1.0), np.ones((2, 4, 3), np.float32),
                     np.ones((2, 4), np.float16), {"a": 1}, (1, 2), object(), slice(1)]),
)


@SETTINGS
@given(x=GARBAGE, num_groups=GARBAGE, weight=GARBAGE, bias=GARBAGE, eps=GARBAGE,
       activation=GARBAGE, return_stats=GARBAGE)
def test_garbage_arguments_raise_only_type_or_value_errors(x, num_groups, weight, bias, eps,
                                                           activation, return_stats):
    out = np.full((2, 4, 3), -7.0, np.float32)
    try:
        gncpu.group_norm(x, num_groups, weight, bias, eps, activation=activation,
                         return_stats=return_stats, out=out)
    except (TypeError, ValueError):
        assert np.all(out == -7.0), "an error path wrote into out"


@SETTINGS
@given(num_groups=GARBAGE, num_channels=GARBAGE, eps=GARBAGE, activation=GARBAGE)
def test_garbage_module_arguments(num_groups, num_channels, eps, activation):
    try:
        gncpu.GroupNorm(num_groups, num_channels, eps=eps, activation=activation)
    except (TypeError, ValueError):
        pass


@SETTINGS
@given(st.one_of(GARBAGE, st.integers(-5, 5000)))
def test_garbage_thread_counts(n):
    before = gncpu.get_num_threads()
    try:
        gncpu.set_num_threads(n)
    except (TypeError, ValueError):
        assert gncpu.get_num_threads() == before
    finally:
        gncpu.set_num_threads(before)
