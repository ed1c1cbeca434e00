"""Channels-last (NHWC) input: its own kernel, no transposing copy."""

import numpy as np
import pytest

import gncpu
from gncpu import reference

from conftest import RTOL, TOLERANCE, max_error, random_affine, random_input


SHAPES = [  # NHWC shapes, groups
    ((1, 16, 16, 320), 32), ((2, 7, 9, 64), 8), ((2, 33, 12), 4), ((3, 5, 1), 1),
    ((1, 130, 100, 6), 3), ((2, 4, 4, 4, 8), 8), ((2, 3, 40), 40), ((2, 1000, 17), 17),
    # full strips of four vectors, then a partial vector (AVX-512: 85 = 64 + 16 + 5)
    pytest.param((2, 130, 85), 5, marks=pytest.mark.smoke), ((1, 9, 100), 4),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,groups", SHAPES)
def test_matches_oracle(isa, schedule, rng, shape, groups, dtype):
    x = random_input(rng, shape, dtype, mean=5.0, std=2.0)
    weight, bias = random_affine(rng, shape[-1], dtype)
    y = gncpu.group_norm(x, groups, weight, bias, channels_last=True)
    assert y.shape == x.shape and y.dtype == dtype and y.flags.c_contiguous
    expected = reference.group_norm(x, groups, weight, bias, channels_last=True)
    assert max_error(y, expected) <= TOLERANCE[dtype]


@pytest.mark.parametrize("mean,std", [(1e4, 1.0), (-1e4, 1e-2), (1e3, 1.0)])
def test_offset_does_not_grow_the_error(isa, schedule, rng, mean, std):
    x = random_input(rng, (2, 24, 24, 64), np.float32, mean, std)
    weight, bias = random_affine(rng, 64)
    y = gncpu.group_norm(x, 32, weight, bias, channels_last=True)
    expected = reference.group_norm(x, 32, weight, bias, channels_last=True)
    assert max_error(y, expected) <= TOLERANCE[np.float32]


def test_outlier_first_rows_and_constant_groups(isa, rng):
    x = random_input(rng, (1, 3000, 16))
    x[0, ::1024] = 1e4  # the first row of every block is an outlier
    expected = reference.group_norm(x, 4, channels_last=True)
    assert max_error(gncpu.group_norm(x, 4, channels_last=True), expected) <= TOLERANCE[np.float32]
    constant = np.full((2, 50, 8), 1000.5, np.float32)
    bias = np.arange(8, dtype=np.float32)
    y = gncpu.group_norm(constant, 2, None, bias, channels_last=True)
    np.testing.assert_array_equal(y, np.broadcast_to(bias, y.shape))


@pytest.mark.smoke
def test_activation_stats_out_and_16bit(isa, rng):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = random_input(rng, (2, 10, 10, 32))
    y, mean, rstd = gncpu.group_norm(x, 8, activation="silu", return_stats=True,
                                     channels_last=True)
    expected = reference.group_norm(x, 8, activation="silu", channels_last=True)
    assert max_error(y, expected) <= TOLERANCE[np.float32]
    _, nchw_mean, nchw_rstd = gncpu.group_norm(np.moveaxis(x, -1, 1).copy(), 8, return_stats=True)
    # Centred unit data: the mean's bound is absolute (relative to the std).
    assert np.allclose(mean, nchw_mean, rtol=0, atol=RTOL[np.float32])
    assert np.allclose(rstd, nchw_rstd, rtol=10 * RTOL[np.float32], atol=0)
    out = np.empty_like(x)
    assert gncpu.group_norm(x, 8, out=out, channels_last=True) is out
    for dtype in (np.float16, ml_dtypes.bfloat16):
        half = x.astype(dtype)
        y16 = gncpu.group_norm(half, 8, channels_last=True)
        assert y16.dtype == half.dtype
        expected = reference.group_norm(half, 8, channels_last=True)
        assert max_error(y16.astype(np.float32), expected) <= TOLERANCE[dtype]


def test_nchw_view_of_channels_last_data_uses_it_without_copy(isa, rng):
    nhwc = random_input(rng, (2, 12, 10, 64))
    view = nhwc.transpose(0, 3, 1, 2)  # NCHW shape, channels-last strides
    y = gncpu.group_norm(view, 16)
    assert y.shape == view.shape
    assert np.moveaxis(y, 1, -1).flags.c_contiguous  # same memory format as the input
    assert max_error(y, reference.group_norm(view, 16)) <= TOLERANCE[np.float32]
    np.testing.assert_array_equal(
        np.moveaxis(y, 1, -1), gncpu.group_norm(nhwc, 16, channels_last=True))


@pytest.mark.smoke
def test_deterministic_over_threads(isa, restore_threads, rng):
    x = random_input(rng, (1, 64, 64, 96), mean=3.0)
    results = []
    for threads in (1, 2, 3, 5):
        gncpu.set_num_threads(threads)
        results.append(gncpu.group_norm(x, 32, channels_last=True))
    assert all(np.array_equal(results[0], r) for r in results[1:])


def test_bad_channels_last_arguments(rng):
    x = random_input(rng, (2, 5, 6))
    with pytest.raises(ValueError, match="divide"):
        gncpu.group_norm(x, 4, channels_last=True)       # C = 6
    with pytest.raises(ValueError, match="weight"):
        gncpu.group_norm(x, 3, np.ones(5), channels_last=True)
    with pytest.raises(TypeError, match="channels_last"):
        gncpu.group_norm(x, 3, channels_last="yes")
    out = np.full((2, 5, 6), -7.0, np.float32)
    with pytest.raises(ValueError):
        gncpu.group_norm(x, 4, channels_last=True, out=out)
    assert np.all(out == -7.0)


def test_module_channels_last(rng):
    layer = gncpu.GroupNorm(4, 8, channels_last=True, activation="relu")
    x = random_input(rng, (2, 5, 5, 8))
    expected = reference.group_norm(x, 4, activation="relu", channels_last=True)
    assert max_error(layer(x), expected) <= TOLERANCE[np.float32]
    with pytest.raises(ValueError, match="8 channels"):
        layer(random_input(rng, (2, 8, 5, 5)))
    with pytest.raises(TypeError):
        gncpu.GroupNorm(4, 8, channels_last=1)
    assert "channels_last=True" in repr(layer)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("channels,groups", [(4, 2), (20, 5), (48, 8)])
def test_output_at_every_offset_from_a_cache_line(isa, schedule, rng, dtype, channels, groups):
    # The kernel walks rows x channels as one run from the first vector-aligned
    # output, with parameters that wrap around at the last channel: wherever
    # the run is cut, each value must be the one an aligned output gets, with
    # fewer channels than a vector (4), a ragged count (20) and several (48).
    x = random_input(rng, (2, 13, 7, channels), dtype=dtype)
    weight, bias = random_affine(rng, channels)
    expected = gncpu.group_norm(x, groups, weight, bias, channels_last=True, activation="silu")
    oracle = reference.group_norm(x, groups, weight, bias, channels_last=True, activation="silu")
    assert max_error(expected, oracle) <= TOLERANCE[dtype]
    raw = np.zeros(x.nbytes + 128, dtype=np.uint8)
    base = (-raw.ctypes.data) % 64
    for offset in range(0, 64, x.itemsize):
        out = raw[base + offset:base + offset + x.nbytes].view(dtype).reshape(x.shape)
        y = gncpu.group_norm(x, groups, weight, bias, out=out, channels_last=True,
                             activation="silu")
        assert y is out
        np.testing.assert_array_equal(out, expected, err_msg=f"output {offset} bytes past a line")
