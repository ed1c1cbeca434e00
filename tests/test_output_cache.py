"""Reuse of freed large output buffers."""

import gc

import numpy as np
import pytest

import gncpu

pytestmark = pytest.mark.smoke

LARGE = (1, 16, 256, 256)  # 4 MiB of float32: the smallest cached size


@pytest.fixture
def cache():
    before = gncpu.output_cache_info()
    gncpu.set_output_cache_limit(0)
    gncpu.set_output_cache_limit(256 << 20)
    yield
    gncpu.set_output_cache_limit(None if before["adaptive"] else before["limit"])


def test_freed_output_is_reused(cache, rng):
    x = rng.standard_normal(LARGE).astype(np.float32)
    y = gncpu.group_norm(x, 4)
    address = y.ctypes.data
    expected = y.copy()
    del y
    gc.collect()
    assert gncpu.output_cache_info()["cached_buffers"] == 1
    z = gncpu.group_norm(x, 4)
    assert z.ctypes.data == address
    assert gncpu.output_cache_info()["cached_buffers"] == 0
    np.testing.assert_array_equal(z, expected)
    assert z.flags.writeable and z.flags.c_contiguous and z.flags.owndata is False


@pytest.mark.parametrize("dtype,channels_last", [("float16", False), ("bfloat16", False),
                                                  ("float32", True), ("float64", False)])
def test_every_dtype_and_layout_reuses_outputs(cache, rng, dtype, channels_last):
    """The 16-bit and channels-last paths draw from the same cache: a fresh
    allocation per call costs more in page faults than the kernel itself."""
    if dtype == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    x = rng.standard_normal((1, 32, 256, 256)).astype(dtype)  # >= 4 MiB in 16 bits
    if channels_last:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    y = gncpu.group_norm(x, 4, channels_last=channels_last)
    address, expected = y.ctypes.data, y.copy()
    del y
    gc.collect()
    z = gncpu.group_norm(x, 4, channels_last=channels_last)
    assert z.ctypes.data == address
    assert z.dtype == x.dtype and z.shape == x.shape and z.flags.c_contiguous
    np.testing.assert_array_equal(z, expected)


def test_live_views_keep_their_buffer(cache, rng):
    x = rng.standard_normal(LARGE).astype(np.float32)
    y = gncpu.group_norm(x, 4)
    view = y[0, 1:3]
    snapshot = view.copy()
    del y
    gc.collect()
    assert gncpu.output_cache_info()["cached_buffers"] == 0
    other = gncpu.group_norm(x * 2.0 + 1.0, 4)  # must not land in view's memory
    np.testing.assert_array_equal(view, snapshot)
    assert not np.shares_memory(view, other)


def test_small_outputs_are_not_cached(cache, rng):
    y = gncpu.group_norm(rng.standard_normal((2, 8, 16, 16)).astype(np.float32), 4)
    del y
    gc.collect()
    assert gncpu.output_cache_info()["cached_buffers"] == 0


def test_limit_zero_disables_and_frees(cache, rng):
    y = gncpu.group_norm(rng.standard_normal(LARGE).astype(np.float32), 4)
    del y
    gc.collect()
    assert gncpu.output_cache_info()["cached_bytes"] > 0
    gncpu.set_output_cache_limit(0)
    assert gncpu.output_cache_info() == {"limit": 0, "adaptive": False, "cached_bytes": 0,
                                         "cached_buffers": 0}
    y = gncpu.group_norm(rng.standard_normal(LARGE).astype(np.float32), 4)
    del y
    gc.collect()
    assert gncpu.output_cache_info()["cached_buffers"] == 0


@pytest.mark.parametrize("bad,error", [(-1, ValueError), (1.5, TypeError), ("1", TypeError),
                                       (True, TypeError)])
def test_limit_validation(cache, bad, error):
    with pytest.raises(error):
        gncpu.set_output_cache_limit(bad)


def test_cache_follows_the_shapes_in_use(cache, rng):
    """A full cache makes room for a newly freed buffer (oldest out first)."""
    gncpu.set_output_cache_limit(12 << 20)
    for channels in (16, 24):  # 4 MiB and 6 MiB outputs fill 10 of 12 MiB
        y = gncpu.group_norm(rng.standard_normal((1, channels, 256, 256)).astype(np.float32), 4)
        del y
        gc.collect()
    assert gncpu.output_cache_info()["cached_buffers"] == 2
    x = rng.standard_normal((1, 32, 256, 256)).astype(np.float32)  # 8 MiB
    y = gncpu.group_norm(x, 4)
    address = y.ctypes.data
    del y
    gc.collect()
    info = gncpu.output_cache_info()
    assert info["cached_bytes"] <= 12 << 20
    assert gncpu.group_norm(x, 4).ctypes.data == address


def test_adaptive_limit_holds_two_of_the_largest_outputs(rng):
    """The default limit grows with the outputs a model asks for: two 6 MiB
    outputs stay cached above an (8 MiB, for the test) floor."""
    from gncpu import _core
    before = gncpu.output_cache_info()
    gncpu.set_output_cache_limit(0)
    try:
        gncpu.set_output_cache_limit(None)
        _core._set_adaptive_base(8 << 20)
        x = rng.standard_normal((1, 24, 256, 256)).astype(np.float32)  # 6 MiB
        a, b = gncpu.group_norm(x, 4), gncpu.group_norm(x, 4)
        addresses = {a.ctypes.data, b.ctypes.data}
        del a, b
        gc.collect()
        info = gncpu.output_cache_info()
        assert info["adaptive"] and info["limit"] == 12 << 20 and info["cached_buffers"] == 2
        c, d = gncpu.group_norm(x, 4), gncpu.group_norm(x, 4)
        assert {c.ctypes.data, d.ctypes.data} == addresses
    finally:
        _core._set_adaptive_base(256 << 20)
        gncpu.set_output_cache_limit(0)
        gncpu.set_output_cache_limit(None if before["adaptive"] else before["limit"])


def test_a_slightly_larger_buffer_serves_a_request(cache, rng):
    """Shapes in a model differ by a few channels: a cached buffer up to a
    quarter larger is reused; a much larger one is not."""
    y = gncpu.group_norm(rng.standard_normal((1, 24, 256, 256)).astype(np.float32), 4)  # 6 MiB
    address = y.ctypes.data
    del y
    gc.collect()
    x = rng.standard_normal((1, 20, 256, 256)).astype(np.float32)  # 5 MiB
    z = gncpu.group_norm(x, 4)
    assert z.ctypes.data == address and z.nbytes == 5 << 20
    del z
    gc.collect()
    small = gncpu.group_norm(rng.standard_normal((1, 16, 256, 256)).astype(np.float32), 4)
    assert small.ctypes.data != address  # 4 MiB from a 6 MiB buffer would waste half
