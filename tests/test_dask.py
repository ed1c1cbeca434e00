"""gncpu.dask: GroupNorm of chunked arrays equals the whole array's, for any
chunking, on the threaded scheduler and on a LocalCluster of worker
processes."""

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
import gncpu  # noqa: E402
import gncpu.dask as gd  # noqa: E402
from gncpu import GroupStats  # noqa: E402


def data(shape, offset=0.0, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 2 + offset).astype(np.float32)
    w = rng.standard_normal(shape[1]).astype(np.float32)
    b = rng.standard_normal(shape[1]).astype(np.float32)
    return x, w, b


@pytest.mark.parametrize("chunks", [(1, 24, 8, 10), (2, 6, 5, 20), (1, 5, 16, 7)])  # 5: not groups
@pytest.mark.parametrize("activation", [None, "silu"])
def test_any_chunking_gives_the_whole_arrays_group_norm(chunks, activation):
    x, w, b = data((2, 24, 16, 20), offset=1e4)
    expected = gncpu.group_norm(x, 6, w, b, activation=activation)
    y = gd.group_norm(da.from_array(x, chunks=chunks), 6, w, b, activation=activation)
    assert isinstance(y, da.Array) and y.shape == x.shape and y.dtype == x.dtype
    out = y.compute(scheduler="threads")
    assert np.abs(out - expected).max() <= 2e-6 * np.abs(expected).max()
    stats = gd.group_norm_stats(da.from_array(x, chunks=chunks), 6).compute()
    whole = gncpu.group_norm_stats(x, 6)
    np.testing.assert_array_equal(stats.count, whole.count)
    np.testing.assert_allclose(stats.mean, whole.mean, rtol=1e-14)
    np.testing.assert_allclose(stats.m2, whole.m2, rtol=1e-12)


def test_channels_last_and_given_stats():
    x, w, b = data((1, 16, 12, 12), offset=-300.0)
    nhwc = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    expected = gncpu.group_norm(nhwc, 4, w, b, channels_last=True)
    arr = da.from_array(nhwc, chunks=(1, 5, 12, 8))
    stats = gd.group_norm_stats(arr, 4, channels_last=True).compute()
    assert isinstance(stats, GroupStats)
    for s in (None, stats):
        out = gd.group_norm(arr, 4, w, b, channels_last=True, stats=s).compute()
        assert np.abs(out - expected).max() <= 2e-6 * np.abs(expected).max()


def test_bad_input():
    x, w, _ = data((1, 8, 4, 4))
    arr = da.from_array(x, chunks=2)
    with pytest.raises(TypeError, match="gncpu.group_norm"):
        gd.group_norm(x, 4)
    with pytest.raises(ValueError, match="divide"):
        gd.group_norm(arr, 3)
    with pytest.raises(ValueError, match="weight"):
        gd.group_norm(arr, 4, w[:3])
    with pytest.raises(ValueError, match="num_groups is 4"):
        gd.group_norm(arr, 4, stats=gncpu.group_norm_stats(x, 2))
    with pytest.raises(ValueError, match="example"):
        gd.group_norm(arr, 4, stats=gncpu.group_norm_stats(np.concatenate([x, x]), 4))
    with pytest.raises(ValueError):
        gd.group_norm(arr, 4, activation="tanh")


def test_a_local_cluster_of_worker_processes():
    distributed = pytest.importorskip("distributed")
    x, w, b = data((2, 16, 20, 20), offset=50.0)
    expected = gncpu.group_norm(x, 8, w, b, activation="silu")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        y = gd.group_norm(da.from_array(x, chunks=(1, 16, 7, 20)), 8, w, b, activation="silu")
        out = client.compute(y).result()
    assert np.abs(out - expected).max() <= 2e-6 * np.abs(expected).max()


def test_two_dimensional_and_channelless_arrays():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 10)).astype(np.float32) + 5
    out = gd.group_norm(da.from_array(x, chunks=(2, 5)), 5).compute()
    np.testing.assert_allclose(out, gncpu.group_norm(x, 5), atol=2e-6 * 4)
    empty = da.zeros((2, 0, 4), dtype=np.float32)
    assert gd.group_norm(empty, 1).compute().shape == (2, 0, 4)
    stats = gd.group_norm_stats(empty, 1).compute()
    assert stats.shape == (2, 1) and np.all(stats.count == 0)
