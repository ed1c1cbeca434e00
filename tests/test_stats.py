"""Statistics as data: group_norm_stats, GroupStats and group_norm(..., stats=).
A tensor normalised in pieces (tiles, chunks, batch slices, whole groups of
channels) with merged statistics equals the tensor normalised whole."""

import pickle

import numpy as np
import pytest

import gncpu
from gncpu import GroupStats, reference

ml_dtypes = pytest.importorskip("ml_dtypes")

ACTIVATIONS = [None, "silu", "relu", "gelu"]


def data(shape, offset=0.0, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 2.0 + offset).astype(dtype)
    w = rng.standard_normal(shape[1]).astype(np.float32 if dtype != np.float64 else dtype)
    b = rng.standard_normal(shape[1]).astype(w.dtype)
    return x, w, b


def exact_moments(x, groups, channels_last=False):
    """count, mean, M2 per (n, g) in float64 from NumPy (two passes)."""
    if channels_last:
        x = np.moveaxis(x, -1, 1)
    v = np.asarray(x, np.float64).reshape(x.shape[0], groups, -1)
    mean = v.mean(-1)
    return v.shape[-1], mean, ((v - mean[..., None]) ** 2).sum(-1)


def cuts(length, pieces):
    edges = np.linspace(0, length, pieces + 1).astype(int)
    edges[1] = max(1, edges[1] - 1)  # uneven
    return list(zip(edges[:-1], edges[1:]))


def merged(pieces):
    total = pieces[0]
    for p in pieces[1:]:
        total = total.merge(p)
    return total


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, ml_dtypes.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_stats_are_the_groups_moments(dtype, channels_last):
    x, _, _ = data((2, 12, 9, 7), offset=3.0, dtype=dtype)
    if channels_last:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    s = gncpu.group_norm_stats(x, 4, channels_last=channels_last)
    count, mean, m2 = exact_moments(x, 4, channels_last)
    assert isinstance(s, GroupStats) and s.shape == (2, 4) and s.channels_per_group == 3
    assert s.count.dtype == s.mean.dtype == s.m2.dtype == np.float64
    np.testing.assert_array_equal(s.count, np.full((2, 4), count))
    tol = 1e-12  # double lanes, whatever the storage
    np.testing.assert_allclose(s.mean, mean, rtol=tol, atol=tol * 4)
    np.testing.assert_allclose(s.m2, m2, rtol=tol)
    m, r = s.mean_rstd(1e-5)
    _, ref_mean, ref_rstd = reference.group_norm(np.moveaxis(x, -1, 1) if channels_last else x, 4,
                                                 return_stats=True)
    np.testing.assert_allclose(m, ref_mean, rtol=tol, atol=tol * 4)
    np.testing.assert_allclose(r, ref_rstd, rtol=tol)


@pytest.mark.smoke
@pytest.mark.parametrize("offset", [0.0, 2e4])  # 1e4 standard deviations
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_tiles_normalised_with_merged_stats_equal_the_whole(offset, activation):
    x, w, b = data((2, 32, 24, 20), offset=offset)
    whole = gncpu.group_norm(x, 8, w, b, activation=activation)
    rows, cols = cuts(24, 3), cuts(20, 2)
    tiles = [[x[:, :, r0:r1, c0:c1] for c0, c1 in cols] for r0, r1 in rows]
    stats = merged([gncpu.group_norm_stats(t, 8) for row in tiles for t in row])
    count, mean, m2 = exact_moments(x, 8)
    np.testing.assert_array_equal(stats.count, count)
    np.testing.assert_allclose(stats.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(stats.m2, m2, rtol=1e-12)
    out = np.block([[gncpu.group_norm(t, 8, w, b, activation=activation, stats=stats)
                     for t in row] for row in tiles])
    assert np.abs(out - whole).max() <= 2e-6 * max(1.0, np.abs(whole).max())
    # against the float64 oracle too, whatever the offset
    expected = reference.group_norm(x, 8, w, b, activation=activation)
    assert np.abs(out - expected).max() <= 4e-6 * max(1.0, np.abs(expected).max())


@pytest.mark.parametrize("activation", [None, "silu"])
def test_channels_last_tiles(activation):
    x, w, b = data((1, 16, 10, 13), offset=-500.0)
    nhwc = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    whole = gncpu.group_norm(nhwc, 4, w, b, activation=activation, channels_last=True)
    pieces = [nhwc[:, r0:r1] for r0, r1 in cuts(10, 3)]
    stats = merged([gncpu.group_norm_stats(p, 4, channels_last=True) for p in pieces])
    out = np.concatenate([gncpu.group_norm(p, 4, w, b, activation=activation, channels_last=True,
                                           stats=stats) for p in pieces], axis=1)
    assert np.abs(out - whole).max() <= 2e-6 * max(1.0, np.abs(whole).max())


def test_batch_pieces_and_channel_pieces_on_group_boundaries():
    x, w, b = data((4, 24, 6, 6), offset=10.0)
    whole = gncpu.group_norm(x, 6, w, b)
    stats = gncpu.group_norm_stats(x, 6)
    # batch pieces: the statistics of those examples
    out = np.concatenate([gncpu.group_norm(x[a:z], 6, w, b, stats=stats[a:z])
                          for a, z in [(0, 1), (1, 4)]])
    np.testing.assert_array_equal(out, gncpu.group_norm(x, 6, w, b, stats=stats))
    np.testing.assert_allclose(out, whole, atol=2e-6 * np.abs(whole).max())
    # channel pieces holding whole groups (4 channels each)
    parts = [(0, 8), (8, 20), (20, 24)]
    by_channels = [gncpu.group_norm_stats(x[:, c0:c1], (c1 - c0) // 4) for c0, c1 in parts]
    joined = GroupStats.concatenate(by_channels, axis=1)
    np.testing.assert_array_equal(joined.mean, stats.mean)
    np.testing.assert_array_equal(joined.m2, stats.m2)
    out = np.concatenate([gncpu.group_norm(x[:, c0:c1], (c1 - c0) // 4, w[c0:c1], b[c0:c1],
                                           stats=stats[:, c0 // 4:c1 // 4]) for c0, c1 in parts],
                         axis=1)
    np.testing.assert_allclose(out, whole, atol=2e-6 * np.abs(whole).max())
    with pytest.raises(ValueError, match="whole groups"):
        gncpu.group_norm(x[:, 0:6], 1, stats=stats[:, 0:1])


@pytest.mark.smoke
def test_given_stats_normalise_as_one_call_on_any_thread_count():
    """Statistics measured alone (in double lanes) normalise as one call does,
    bitwise the same on 1 and 2 threads, and return_stats echoes them."""
    x, w, b = data((2, 64, 40, 40), offset=1e3)
    y = gncpu.group_norm(x, 32, w, b, activation="silu")
    s = gncpu.group_norm_stats(x, 32)
    mean, rstd = s.mean_rstd(1e-5)
    results = []
    for threads in (1, 2):
        gncpu.set_num_threads(threads)
        try:
            results.append(gncpu.group_norm(x, 32, w, b, activation="silu", stats=s,
                                            return_stats=True))
        finally:
            gncpu.set_num_threads(None)
    (z, m, r), (z2, _, _) = results
    np.testing.assert_array_equal(z, z2)
    np.testing.assert_allclose(z, y, atol=2e-6 * np.abs(y).max())
    np.testing.assert_array_equal(m, mean.astype(np.float32))
    np.testing.assert_array_equal(r, rstd.astype(np.float32))
    pair = gncpu.group_norm(x, 32, w, b, activation="silu", stats=(mean, rstd))
    np.testing.assert_array_equal(pair, z)


@pytest.mark.parametrize("dtype", [np.float64, np.float16, ml_dtypes.bfloat16])
def test_every_dtype_takes_stats(dtype):
    x, w, b = data((1, 8, 16, 5), offset=4.0, dtype=dtype)
    pieces = [x[..., :3], x[..., 3:]]
    stats = merged([gncpu.group_norm_stats(p, 2) for p in pieces])
    whole = gncpu.group_norm(x, 2, w, b)
    out = np.concatenate([gncpu.group_norm(p, 2, w, b, stats=stats) for p in pieces], axis=-1)
    assert out.dtype == whole.dtype
    tol = 1e-12 if dtype == np.float64 else 1e-2
    np.testing.assert_allclose(out.astype(np.float64), whole.astype(np.float64), atol=tol)


def test_given_stats_come_back_for_an_empty_piece():
    s = GroupStats(np.full((2, 4), 10.0), np.arange(8.0).reshape(2, 4), np.full((2, 4), 40.0))
    y, mean, rstd = gncpu.group_norm(np.zeros((2, 8, 0), np.float32), 4, stats=s,
                                     return_stats=True)
    assert y.shape == (2, 8, 0)
    np.testing.assert_array_equal(mean, s.mean.astype(np.float32))
    np.testing.assert_array_equal(rstd, s.mean_rstd(1e-5)[1].astype(np.float32))


def test_an_empty_piece_is_the_identity():
    x, _, _ = data((2, 8, 5, 5))
    s = gncpu.group_norm_stats(x, 4)
    empty = gncpu.group_norm_stats(x[:, :, :0], 4)
    assert np.all(empty.count == 0) and empty.shape == (2, 4)
    for m in (s.merge(empty), empty.merge(s), s.merge(GroupStats.empty(2, 4))):
        np.testing.assert_array_equal(m.to_array(), s.to_array())


def test_merge_is_chan_and_order_free():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 4, 1000)) + 1e4  # 1e4 standard deviations off zero
    pieces = [gncpu.group_norm_stats(x[..., a:z], 2) for a, z in [(0, 10), (10, 400), (400, 1000)]]
    a, b, c = pieces
    one, two = a.merge(b).merge(c), c.merge(a.merge(b))
    three = b.merge(c).merge(a)
    for other in (two, three):
        np.testing.assert_allclose(other.mean, one.mean, rtol=1e-15)
        np.testing.assert_allclose(other.m2, one.m2, rtol=1e-12)
    _, mean, m2 = exact_moments(x, 2)
    np.testing.assert_allclose(one.mean, mean, rtol=1e-15)
    np.testing.assert_allclose(one.m2, m2, rtol=1e-12)


def test_round_trips():
    x, _, _ = data((3, 6, 4, 4))
    s = gncpu.group_norm_stats(x, 3)
    for t in (pickle.loads(pickle.dumps(s)), GroupStats.from_array(s.to_array(), 2)):
        np.testing.assert_array_equal(t.to_array(), s.to_array())
        assert t.channels_per_group == 2
    assert s.to_array().shape == (3, 3, 3) and s.to_array().dtype == np.float64
    assert "3 example(s) x 3 group(s)" in repr(s)


def test_bad_input_raises_and_writes_nothing():
    x, w, b = data((2, 8, 4, 4))
    s = gncpu.group_norm_stats(x, 4)
    out = np.full_like(x, 7.0)
    bad_calls = [
        (ValueError, dict(stats=gncpu.group_norm_stats(x[:1], 4))),        # other examples
        (ValueError, dict(stats=gncpu.group_norm_stats(x, 2))),            # other groups
        (ValueError, dict(stats=(np.zeros((2, 3)), np.ones((2, 3))))),     # pair of another shape
        (TypeError, dict(stats="mean")),
        (TypeError, dict(stats=(np.zeros((2, 4)),))),
    ]
    for error, kwargs in bad_calls:
        with pytest.raises(error):
            gncpu.group_norm(x, 4, w, b, out=out, **kwargs)
        assert np.all(out == 7.0)
    with pytest.raises(ValueError, match="merge statistics of shape"):
        s.merge(s[:1])
    with pytest.raises(ValueError, match="channels"):
        s.merge(GroupStats(s.count, s.mean, s.m2, channels_per_group=4))
    with pytest.raises(TypeError):
        s.merge(s.to_array())
    with pytest.raises(ValueError, match="count"):
        GroupStats(np.full((2, 4), np.nan), s.mean, s.m2)
    with pytest.raises(ValueError, match="count"):
        GroupStats(np.full((2, 4), -1.0), s.mean, s.m2)
    with pytest.raises(ValueError, match="m2"):
        GroupStats(s.count, s.mean, -s.m2 - 1)
    with pytest.raises(ValueError, match="shape"):
        GroupStats(s.count, s.mean, s.m2[:, :2])
    with pytest.raises(ValueError, match=r"\(3, N, G\)"):
        GroupStats.from_array(np.zeros((2, 2, 4)))
    with pytest.raises(TypeError):
        s[0]
    with pytest.raises(ValueError):
        GroupStats.concatenate([s, s[:, :2]], axis=0)
