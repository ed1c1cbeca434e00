"""gncpu against the float64 NumPy oracle, on every supported ISA."""

import numpy as np
import pytest

import gncpu
from gncpu import reference

from conftest import (KERNEL_AGREEMENT, TOLERANCE, assert_within_one_ulp, max_error,
                      random_affine, random_input)

# Spatial sizes that bracket every vector width (1, 2, 4, 8, 16 lanes), the
# 4x-unrolled loops and the 2048-element statistics block.
SPATIAL_SIZES = [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129,
                 255, 257, 1023, 1025, 2047, 2048, 2049, 4097]
# pytest -m smoke: one past each vector width's 4x-unrolled step, and past a block.
SMOKE_SPATIAL_SIZES = {1, 17, 33, 65, 2049}

# pytest -m smoke (the CI's short subset): a typical conv shape, and groups
# of two statistics blocks and a ragged tail.
SHAPES = [  # (shape, groups)
    pytest.param((2, 64, 16, 16), 32, marks=pytest.mark.smoke),
    ((1, 32, 8, 8), 32),
    ((3, 12, 7, 5), 4),
    ((2, 6, 33), 3),          # 1-D spatial
    ((4, 10), 5),             # no spatial dims
    ((1, 8, 3, 4, 5), 2),     # 3-D spatial
    ((2, 16, 9, 9), 1),       # G = 1: layer norm over (C, spatial)
    ((2, 16, 9, 9), 16),      # G = C: instance norm
    ((1, 4, 1500), 1),        # a group larger than one statistics block
    pytest.param((1, 3, 4099), 3, marks=pytest.mark.smoke),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,groups", SHAPES)
def test_matches_oracle(isa, schedule, rng, shape, groups, dtype):
    x = random_input(rng, shape, dtype)
    weight, bias = random_affine(rng, shape[1], dtype)
    y = gncpu.group_norm(x, groups, weight, bias)
    assert y.dtype == dtype and y.shape == x.shape
    assert max_error(y, reference.group_norm(x, groups, weight, bias)) <= TOLERANCE[dtype]


@pytest.mark.parametrize("spatial", [
    pytest.param(n, marks=pytest.mark.smoke) if n in SMOKE_SPATIAL_SIZES else n
    for n in SPATIAL_SIZES])
def test_vector_width_brackets(isa, rng, spatial):
    for dtype in (np.float32, np.float64):
        x = random_input(rng, (2, 6, spatial), dtype, mean=3.0)
        weight, bias = random_affine(rng, 6, dtype)
        y = gncpu.group_norm(x, 3, weight, bias)
        assert max_error(y, reference.group_norm(x, 3, weight, bias)) <= TOLERANCE[dtype]


@pytest.mark.parametrize("use_weight,use_bias", [(False, False), (True, False), (False, True)])
def test_optional_affine(isa, rng, use_weight, use_bias):
    x = random_input(rng, (2, 8, 5, 5))
    weight, bias = random_affine(rng, 8)
    weight = weight if use_weight else None
    bias = bias if use_bias else None
    y = gncpu.group_norm(x, 4, weight, bias)
    assert max_error(y, reference.group_norm(x, 4, weight, bias)) <= TOLERANCE[np.float32]


def test_affine_of_other_dtypes_is_cast(rng):
    x = random_input(rng, (2, 8, 5, 5))
    for weight, bias in [(np.arange(1, 9, dtype=np.float64), np.zeros(8, np.float16)),
                         (np.arange(1, 9), [0.5] * 8)]:
        y = gncpu.group_norm(x, 4, weight, bias)
        assert y.dtype == np.float32
        assert max_error(y, reference.group_norm(x, 4, weight, bias)) <= TOLERANCE[np.float32]


# |mean| up to 1e4 std: PyTorch loses 1e-3 here and ONNX Runtime gives NaN.
@pytest.mark.parametrize("mean,std", [(0.0, 1.0), (1e3, 1.0), (1e4, 1.0), (-1e4, 1.0),
                                      (1e2, 1e-2), (1e-3, 1e-7), (1e6, 1e2)])
def test_offset_does_not_grow_the_error(isa, schedule, rng, mean, std):
    x = random_input(rng, (2, 64, 24, 24), np.float32, mean, std)
    weight, bias = random_affine(rng, 64)
    y = gncpu.group_norm(x, 32, weight, bias)
    assert max_error(y, reference.group_norm(x, 32, weight, bias)) <= TOLERANCE[np.float32]


@pytest.mark.parametrize("mean,std", [(0.0, 1.0), (1e4, 1.0), (-1e4, 1e-2)])
def test_float64_accuracy(isa, rng, mean, std):
    x = random_input(rng, (2, 32, 20, 20), np.float64, mean, std)
    weight, bias = random_affine(rng, 32, np.float64)
    y = gncpu.group_norm(x, 8, weight, bias)
    # float64 itself cannot hold the mean better than ulp(|mean|) / std.
    expected = reference.group_norm(x, 8, weight, bias)
    assert max_error(y, expected) <= TOLERANCE[np.float64] * max(1.0, abs(mean) / std)


@pytest.mark.parametrize("value", [1000.5, 0.1, -3.0e4, 0.0, 1e-30])
def test_constant_group_gives_exactly_bias(isa, schedule, value):
    for dtype in (np.float32, np.float64):
        x = np.full((2, 8, 37, 41), value, dtype=dtype)
        weight = np.linspace(0.5, 2.0, 8).astype(dtype)
        bias = np.arange(8, dtype=dtype) - 3.5
        y = gncpu.group_norm(x, 4, weight, bias)
        np.testing.assert_array_equal(y, np.broadcast_to(bias[None, :, None, None], x.shape))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_stay_in_their_group(isa, schedule, rng, bad):
    x = random_input(rng, (2, 8, 33, 33))
    x[1, 2, 5, 7] = bad  # sample 1, group 1 (channels 2-3)
    y = gncpu.group_norm(x, 4)
    expected = reference.group_norm(np.where(np.isfinite(x), x, 0), 4)
    poisoned = np.zeros(x.shape, dtype=bool)
    poisoned[1, 2:4] = True
    assert np.isnan(y[poisoned]).all()
    assert max_error(y[~poisoned], expected[~poisoned]) <= TOLERANCE[np.float32]


def test_non_contiguous_inputs(isa, rng):
    base = random_input(rng, (3, 16, 20, 18))
    views = {
        "transposed": base.transpose(0, 1, 3, 2),
        "sliced": base[:, :, ::2, 1:],
        "negative strides": base[::-1, :, :, ::-1],
        "fortran": np.asfortranarray(base),
        "channel slice": random_input(rng, (3, 32, 20, 18))[:, ::2],
    }
    for name, x in views.items():
        y = gncpu.group_norm(x, 4)
        assert y.flags.c_contiguous, name
        assert max_error(y, reference.group_norm(x, 4)) <= TOLERANCE[np.float32], name


def test_byte_swapped_and_misaligned_inputs(rng):
    x = random_input(rng, (2, 8, 15, 15))
    swapped = x.astype(">f4")
    y = gncpu.group_norm(swapped, 4)
    assert y.dtype == np.dtype("float32")
    assert max_error(y, reference.group_norm(x, 4)) <= TOLERANCE[np.float32]

    raw = np.zeros(x.nbytes + 1, dtype=np.uint8)
    misaligned = raw[1:].view(np.float32).reshape(x.shape)
    misaligned[...] = x
    assert not misaligned.flags.aligned
    np.testing.assert_array_equal(gncpu.group_norm(misaligned, 4), gncpu.group_norm(x, 4))
    out_raw = np.zeros(x.nbytes + 1, dtype=np.uint8)
    out = out_raw[1:].view(np.float32).reshape(x.shape)
    assert gncpu.group_norm(x, 4, out=out) is out
    np.testing.assert_array_equal(out, gncpu.group_norm(x, 4))


def test_array_like_input():
    x = [[[1.0, 2.0, 3.0], [4.0, 5.0, 7.0]]]
    y = gncpu.group_norm(x, 1)
    assert y.dtype == np.float64
    assert max_error(y, reference.group_norm(x, 1)) <= TOLERANCE[np.float64]


def test_float16_round_trips_through_float32(rng):
    x = random_input(rng, (2, 8, 10, 10), np.float16, mean=5.0)
    y = gncpu.group_norm(x, 4)
    assert y.dtype == np.float16
    assert_within_one_ulp(y, reference.group_norm(x, 4), floor=0)  # 1 ulp, with no floor
    out = np.empty_like(x)
    assert gncpu.group_norm(x, 4, out=out) is out
    np.testing.assert_array_equal(out, y)


def test_out_and_in_place(isa, schedule, rng):
    x = random_input(rng, (2, 16, 30, 30))
    expected = gncpu.group_norm(x, 8)
    out = np.empty_like(x)
    assert gncpu.group_norm(x, 8, out=out) is out
    np.testing.assert_array_equal(out, expected)
    in_place = x.copy()
    assert gncpu.group_norm(in_place, 8, out=in_place) is in_place
    np.testing.assert_array_equal(in_place, expected)


def test_out_partially_overlapping_x(rng):
    buffer = random_input(rng, 2 * 8 * 100 + 50)
    x = buffer[:1600].reshape(2, 8, 100)
    out = buffer[50:1650].reshape(2, 8, 100)
    expected = reference.group_norm(x.copy(), 4)
    gncpu.group_norm(x, 4, out=out)
    assert max_error(out, expected) <= TOLERANCE[np.float32]


@pytest.mark.smoke
def test_input_is_not_modified(isa, rng):
    x = random_input(rng, (2, 8, 12, 12))
    weight, bias = random_affine(rng, 8)
    copies = [a.copy() for a in (x, weight, bias)]
    gncpu.group_norm(x, 2, weight, bias)
    for before, after in zip(copies, (x, weight, bias)):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("shape", [(0, 8, 4, 4), (2, 8, 0, 4), (2, 8, 0), (0, 4), (2, 0, 5)])
def test_empty_inputs(shape):
    groups = 4 if shape[1] else 1  # with no channels, one (empty) group
    for dtype in (np.float32, np.float64):
        x = np.zeros(shape, dtype=dtype)
        y = gncpu.group_norm(x, groups)
        assert y.shape == shape and y.dtype == dtype
        out = np.zeros(shape, dtype=dtype)
        assert gncpu.group_norm(x, groups, out=out) is out


def test_no_channels_takes_one_group_only():
    """Any count divides 0 channels; more groups than max(C, 1) would only ask
    for that many empty statistics (2**28 of them: 2 GiB, 4.7 s)."""
    x = np.empty((1, 0, 5), np.float32)
    y, mean, rstd = gncpu.group_norm(x, 1, return_stats=True)
    assert y.shape == (1, 0, 5) and mean.shape == (1, 1) and np.isnan(mean).all()
    for groups in (2, 2**28):
        with pytest.raises(ValueError, match="no channels"):
            gncpu.group_norm(x, groups, return_stats=True)


@pytest.mark.smoke
def test_isas_agree_with_each_other(rng):
    """Every kernel within float32 rounding of every other one."""
    x = random_input(rng, (2, 64, 19, 23), mean=100.0)
    results = {}
    active = gncpu.isa()
    try:
        for name in gncpu.supported_isas():
            gncpu.set_isa(name)
            results[name] = gncpu.group_norm(x, 32)
    finally:
        gncpu.set_isa(active)
    expected = reference.group_norm(x, 32)
    for name, y in results.items():
        assert max_error(y, expected) <= TOLERANCE[np.float32], f"{name} diverges from the oracle"
        for other, z in results.items():
            assert max_error(y, z) <= KERNEL_AGREEMENT, f"{name} and {other} disagree"


@pytest.mark.parametrize("case", ["channel offsets", "outliers at block starts", "ramp"])
def test_adversarial_layouts(isa, schedule, rng, case):
    """Data that defeats a cheap estimate of the mean: the statistics pass must
    notice and fall back to the exact two-pass sums."""
    if case == "channel offsets":
        x = rng.standard_normal((1, 64, 50, 50)) * 0.01 + rng.uniform(-1e4, 1e4, (1, 64, 1, 1))
    elif case == "outliers at block starts":
        index = np.arange(2 * 8 * 4096).reshape(2, 8, 4096)
        x = np.where(index % 2048 < 8, 1e4, 0.0) + rng.standard_normal((2, 8, 4096))
    else:
        x = np.linspace(-5e3, 5e3, 2 * 8 * 3000).reshape(2, 8, 3000)
    x = x.astype(np.float32)
    groups = 32 if x.shape[1] == 64 else 2
    y = gncpu.group_norm(x, groups)
    assert max_error(y, reference.group_norm(x, groups)) <= TOLERANCE[np.float32]


def _bfloat16_or_skip():
    return pytest.importorskip("ml_dtypes").bfloat16


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, "bfloat16"])
@pytest.mark.parametrize("activation", [None, "silu"])
def test_output_at_every_offset_from_a_cache_line(rng, isa, schedule, dtype, activation):
    # The kernels write a row's head with a partial vector up to the first
    # vector-aligned output address; wherever that cut falls, each value must
    # be the one an aligned output gets.  Rows of 153 elements are long enough
    # to be cut on every ISA.  The streaming schedule covers the non-temporal
    # stores, which need the aligned address.
    if dtype == "bfloat16":
        dtype = _bfloat16_or_skip()
    x = random_input(rng, (2, 8, 9, 17), dtype=dtype)
    expected = gncpu.group_norm(x, 4, activation=activation)
    raw = np.zeros(x.nbytes + 128, dtype=np.uint8)
    base = (-raw.ctypes.data) % 64
    for offset in range(0, 64, x.itemsize):
        start = base + offset
        out = raw[start:start + x.nbytes].view(dtype).reshape(x.shape)
        assert gncpu.group_norm(x, 4, out=out, activation=activation) is out
        np.testing.assert_array_equal(out, expected, err_msg=f"output {offset} bytes past a line")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("where", ["weight", "bias", "both"])
def test_parameters_and_statistics_inside_out(isa, schedule, rng, dtype, channels_last, where):
    """weight, bias and the statistics may live inside out (or x with out=x):
    the parameters are read before y is written, the statistics written after
    x is read."""
    shape = (2, 8, 6, 5)
    x = random_input(rng, shape, dtype)
    if channels_last:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    weight, bias = random_affine(rng, 8, dtype)
    expected = reference.group_norm(x, 2, weight, bias, channels_last=channels_last)
    for in_place in (False, True):
        out = x.copy() if in_place else np.empty_like(x)
        flat = out.reshape(-1)
        w = flat[:8] if where in ("weight", "both") else weight
        b = flat[8:16] if where in ("bias", "both") else bias
        if where in ("weight", "both"):
            w[:] = weight
        if where in ("bias", "both"):
            b[:] = bias
        source = out.copy() if in_place else x
        if in_place:  # x is out: its first 16 values are the parameters
            expected_here = reference.group_norm(source, 2, weight, bias,
                                                 channels_last=channels_last)
            y = gncpu.group_norm(out, 2, w, b, out=out, channels_last=channels_last)
        else:
            expected_here = expected
            y = gncpu.group_norm(x, 2, w, b, out=out, channels_last=channels_last)
        assert max_error(y, expected_here) <= TOLERANCE[dtype]

