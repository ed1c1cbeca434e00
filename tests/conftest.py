import numpy as np
import pytest

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


# Unit-scale outputs: float32 within 1e-5 of the float64 oracle, float64 within
# 1e-12 (scaled by |mean|/std where the input's offset limits any float64
# computation, the oracle's included).
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}


def max_error(actual, expected):
    return float(np.max(np.abs(actual.astype(np.float64) - expected), initial=0.0))
