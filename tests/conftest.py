import numpy as np
import pytest

try:
    import ml_dtypes
except ImportError:  # the bfloat16 tests skip themselves
    ml_dtypes = None

import gncpu
from gncpu import _core


@pytest.fixture(params=gncpu.supported_isas())
def isa(request):
    """Runs the test once per kernel this CPU supports."""
    previous = gncpu.isa()
    gncpu.set_isa(request.param)
    yield request.param
    gncpu.set_isa(previous)


@pytest.fixture
def restore_threads():
    previous = gncpu.get_num_threads()
    yield
    gncpu.set_num_threads(previous)


@pytest.fixture(params=["default", "split", "streaming"])
def schedule(request):
    """Runs the test under each scheduling path.

    'split' shrinks the cache budget and the per-thread minimum so that small
    test tensors take the path that cuts groups across threads, with an uneven
    thread count so that batches hold several groups."""
    threads = gncpu.get_num_threads()
    if request.param == "split":
        _core._set_tuning(cache_budget_bytes=4096, min_elements_per_thread=64)
        gncpu.set_num_threads(3)
    elif request.param == "streaming":  # non-temporal stores, as for huge outputs
        _core._set_tuning(streaming_threshold_bytes=1)
    yield request.param
    _core._set_tuning(0, 0, 0)
    gncpu.set_num_threads(threads)


@pytest.fixture
def rng():
    return np.random.default_rng(20261123)


def random_input(rng, shape, dtype=np.float32, mean=0.0, std=1.0):
    return (mean + std * rng.standard_normal(shape)).astype(dtype)


def random_affine(rng, channels, dtype=np.float32):
    weight = rng.uniform(0.5, 1.5, channels).astype(dtype)
    bias = rng.standard_normal(channels).astype(dtype)
    return weight, bias


# Every bound the tests hold gncpu to, against gncpu.reference.group_norm (the
# float64 oracle, the only place an expected value is computed).

# Unit-scale outputs, absolute: float32 within 1e-5 of the oracle, float64
# within 1e-12 (scaled by |mean|/std where the input's offset limits any
# float64 computation, the oracle's included).  16-bit outputs of a few units:
# float16 1e-2, bfloat16 2e-2, about one of their ulps there (the exact rule
# is assert_within_one_ulp below).
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12, np.float16: 1e-2}
if ml_dtypes is not None:
    TOLERANCE[ml_dtypes.bfloat16] = 2e-2

# Fused activations, absolute per unit of output: float32 uses vectorised
# exp/erf (README: within 2e-6 of the oracle), float64 libm.
ACTIVATION_TOLERANCE = {np.float32: 2e-6, np.float64: 1e-12}

# Relative bounds (returned statistics, outputs far from unit scale), by the
# result's dtype (statistics of 16-bit input are float32); where the value is
# near zero the same number serves as the absolute bound.  rstd, which goes
# through a square root and a division, gets 10 times this.
RTOL = {np.float32: 1e-6, np.float64: 1e-12}

# Two float32 kernels (ISAs) on the same input agree to within this.
KERNEL_AGREEMENT = 2e-6

# The oracle against closed forms computed another way (tests/test_oracle.py):
# a few float64 roundings apart.
ORACLE_RTOL = 1e-15

# The backward pass against reference.group_norm_backward fed the statistics
# the kernel saved: dx, dweight and dbias each relative to its own largest
# magnitude.  dx is a difference of terms as large as the largest of it
# (weight * dz less its projections on the mean and the variance directions)
# and the parameter gradients are sums over N x spatial of terms of either
# sign, so the rounding error is a fraction of the largest term, not of each
# result (where even the largest result cancels far below its terms, as with
# one channel or groups of one or two values, tests/test_backward.py measures
# against the terms' size).  float32 1e-5 and float64 1e-12, as for the
# forward pass; the float32 parameter gradients of 16-bit input are held to
# float32's bound.
BACKWARD_RTOL = {np.float32: 1e-5, np.float64: 1e-12}

# The backward oracle against central differences of the forward oracle, in
# float64 with this step: the truncation (step**2 / 6 times the third
# derivative) and the rounding of f (1e-16 * |f| / step) each leave about
# 1e-10 of the largest gradient (measured: 1.3e-10 on unit-scale data, eps 1e-3).
FINITE_DIFFERENCE_STEP = 1e-5
FINITE_DIFFERENCE_RTOL = 1e-8

# 16-bit outputs: within 1 ulp of the oracle rounded to the format.  The
# arithmetic is float32, so an output that cancels to nearly zero
# ((x - mean) * a + b ~ 0) carries float32's absolute error, about 1e-7 of the
# terms, which is more than a float16 ulp down there: that is the floor.
CANCELLATION_FLOOR = 1e-6


def max_error(actual, expected):
    return float(np.max(np.abs(actual.astype(np.float64) - expected), initial=0.0))


def relative_error(actual, expected):
    """max |actual - expected| over the largest |expected| (the plain maximum
    error where expected is all zeros)."""
    scale = float(np.max(np.abs(expected), initial=0.0))
    error = max_error(actual, expected)
    return error / scale if scale > 0 else error


def ulp(values, dtype):
    """The spacing of a 16-bit dtype above each value (float64 array)."""
    dtype = np.dtype(dtype)
    finfo = ml_dtypes.finfo(dtype) if dtype.kind == "V" else np.finfo(dtype)
    magnitude = np.maximum(np.abs(values), float(finfo.smallest_normal))
    exponent = np.floor(np.log2(magnitude))
    return 2.0 ** (exponent - finfo.nmant)


# The bound 16-bit outputs can be promised (issue #22): the kernel computes
# y32 = (x - center) * scale + offset in float32 and rounds once.  x - center
# is exact; scale = rstd w carries rstd's error (statistics summed in float
# lanes over the group, then a square root and a division: a few 2^-24) and
# its rounding to float; offset its rounding; the product and the sum round
# once each.  Budget: |y32 - y| <= 8 * 2^-24 * (|x^ w| + |b|) =: e (4 * 2^-24
# was exceeded by 0.1% once: rstd's own error is not negligible).  Rounding y32 to the format adds half an ulp of y32, which is at
# most half an ulp of |y| + e.  So |y16 - y| <= e + ulp(|y| + e) / 2: within
# one ulp of y rounded where e is small, and the cancellation floor below
# where y is near 0 and e exceeds the format's ulp there.
FLOAT32_TERMS_ERROR = 8 * 2.0 ** -24


def assert_within_derived_bound(y, expected, terms):
    """16-bit y against the float64 expected y, with `terms` = |x^ w| + |b|
    per value (see FLOAT32_TERMS_ERROR)."""
    e = FLOAT32_TERMS_ERROR * np.asarray(terms, np.float64)
    allowed = e + 0.5 * ulp(np.abs(expected) + e, y.dtype)
    difference = np.abs(y.astype(np.float64) - expected)
    assert np.all(difference <= allowed), float((difference / allowed).max())


def assert_within_one_ulp(y, expected, floor=CANCELLATION_FLOOR):
    """y (16-bit) within 1 ulp of the float64 expected rounded to y's format,
    or within floor of it (floor=0: the plain 1-ulp rule)."""
    rounded = expected.astype(y.dtype).astype(np.float64)
    difference = np.abs(y.astype(np.float64) - rounded)
    allowed = np.maximum(ulp(rounded, y.dtype), floor)
    assert np.all(difference <= allowed), float((difference / allowed).max())
