"""float16 and bfloat16 (ml_dtypes): held in 16 bits, computed in float32."""

import numpy as np
import pytest

import gncpu
from gncpu import reference

from conftest import (RTOL, TOLERANCE, assert_within_derived_bound, assert_within_one_ulp, max_error,
                      random_affine, random_input)

ml_dtypes = pytest.importorskip("ml_dtypes")
DTYPES = [np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)]


@pytest.mark.smoke  # (every ISA, NEON under emulation included: no case is deselected)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("shape,groups", [((2, 64, 17, 19), 32), ((1, 6, 4099), 3), ((3, 8), 4),
                                          ((2, 16, 7, 7), 1)])
def test_within_the_derived_bound_of_the_oracle(isa, schedule, dtype, shape, groups, seed):
    """The float32 result's error bound, then one rounding (conftest's
    assert_within_derived_bound): what the kernels promise for 16-bit output,
    on every ISA and schedule, for several seeds."""
    rng = np.random.default_rng(seed)
    x = random_input(rng, shape, np.float32, mean=3.0, std=2.0).astype(dtype)
    weight, bias = random_affine(rng, shape[1])
    y = gncpu.group_norm(x, groups, weight, bias)
    assert y.dtype == dtype and y.shape == x.shape
    per_channel = (1, shape[1]) + (1,) * (len(shape) - 2)
    terms = (np.abs(reference.group_norm(x, groups)) * np.abs(weight).reshape(per_channel)
             + np.abs(bias).reshape(per_channel))
    assert_within_derived_bound(y, reference.group_norm(x, groups, weight, bias), terms)


@pytest.mark.smoke
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_activation_stats_out_and_in_place(isa, rng, dtype):
    x = random_input(rng, (2, 8, 30, 30), np.float32, mean=-1.0).astype(dtype)
    y, mean, rstd = gncpu.group_norm(x, 4, activation="silu", return_stats=True)
    assert mean.dtype == rstd.dtype == np.float32 and mean.shape == (2, 4)
    expected, expected_mean, _ = reference.group_norm(x, 4, activation="silu", return_stats=True)
    assert_within_one_ulp(y, expected)
    assert np.allclose(mean, expected_mean, rtol=RTOL[np.float32])
    in_place = x.copy()
    assert gncpu.group_norm(in_place, 4, activation="silu", out=in_place) is in_place
    np.testing.assert_array_equal(in_place.view(np.uint16), y.view(np.uint16))
    with pytest.raises(TypeError, match="dtype"):
        gncpu.group_norm(x, 4, out=np.empty(x.shape, np.float32))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_bitwise_deterministic_over_threads(isa, restore_threads, rng, dtype):
    x = random_input(rng, (1, 8, 128, 128), np.float32).astype(dtype)
    results = []
    for threads in (1, 2, 3):
        gncpu.set_num_threads(threads)
        results.append(gncpu.group_norm(x, 2).view(np.uint16))
    assert all(np.array_equal(results[0], r) for r in results[1:])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_special_values(isa, dtype):
    # Group 0: NaN poisons it; group 1: +inf likewise; group 2: a normal group
    # whose bias pushes outputs past the format's range (inf, not garbage).
    x = np.tile(np.array([-1.0, 1.0], np.float32), (1, 3, 2)).astype(dtype)
    x[0, 0, 0] = np.nan
    x[0, 1, 1] = np.inf
    big = float(np.finfo(np.float16).max) * 2 if dtype == np.float16 else 3e38
    bias = np.array([0.0, 0.0, big], np.float32)
    y = gncpu.group_norm(x, 3, None, bias, eps=0.0)
    y32 = y.astype(np.float32)
    assert np.isnan(y32[0, 0]).all() and np.isnan(y32[0, 1]).all()
    if dtype == np.float16:
        assert np.isinf(y32[0, 2]).all()
    else:
        assert np.all(np.isfinite(y32[0, 2]))
        expected = reference.group_norm(x[:, 2:], 1, None, bias[2:], eps=0.0)
        assert_within_one_ulp(y[:, 2:], expected)


def test_float16_subnormal_outputs(isa):
    x = np.tile(np.array([-1.0, 1.0], np.float16), (1, 1, 4))
    weight = np.array([3e-6], np.float32)  # outputs +-3e-6: float16 subnormals
    y = gncpu.group_norm(x, 1, weight, eps=0.0)
    expected = reference.group_norm(x, 1, weight, eps=0.0).astype(np.float16)
    np.testing.assert_array_equal(y, expected)
    assert np.all(y != 0)


def test_strided_and_byte_swapped_half(rng):
    x = random_input(rng, (2, 8, 10, 12), np.float32).astype(np.float16)
    expected = gncpu.group_norm(x, 4)
    np.testing.assert_array_equal(gncpu.group_norm(np.asfortranarray(x), 4), expected)
    np.testing.assert_array_equal(gncpu.group_norm(x.astype(">f2"), 4), expected)
    view = gncpu.group_norm(x.transpose(0, 1, 3, 2), 4)
    np.testing.assert_array_equal(view, gncpu.group_norm(x.transpose(0, 1, 3, 2).copy(), 4))


@pytest.mark.parametrize("param_dtype", ["float16", "bfloat16"])
def test_16bit_weight_and_bias_are_accepted(rng, param_dtype):
    """README: weight and bias of any real dtype, the 16-bit ones included."""
    import ml_dtypes
    dtype = ml_dtypes.bfloat16 if param_dtype == "bfloat16" else np.float16
    x = random_input(rng, (2, 8, 5, 7))
    weight, bias = (a.astype(dtype) for a in random_affine(rng, 8))
    y = gncpu.group_norm(x, 4, weight, bias)
    expected = reference.group_norm(x, 4, weight.astype(np.float64), bias.astype(np.float64))
    assert max_error(y, expected) <= TOLERANCE[np.float32]
    layer = gncpu.GroupNorm(4, 8)
    layer.load_state_dict({"weight": weight, "bias": bias})
    assert max_error(layer(x), expected) <= TOLERANCE[np.float32]


@pytest.mark.smoke
def test_bfloat16_rounding_is_one_rule_on_every_isa():
    """Every kernel rounds float32 to bfloat16 the same way (nearest even, NaN
    kept quiet), whether by integer operations or AVX-512 BF16's
    vcvtneps2bf16, which reads subnormals as zero: vectors holding one must
    take the integer rule.  The float32 values come out of the kernel exactly
    (weight 0, bias = the value), one per channel of a channels-last row, so
    a vector mixes subnormals, ties, overflows and NaNs with ordinary values
    (a test of "all lanes subnormal" instead of "any" fails here)."""
    specials = np.array([
        1.0, 1.00390625, 1.01171875, 1.0039062, 1.0039063,  # ties to even, either side
        3.3895314e38, 3.4e38, -3.4e38,                          # rounding to +-inf
        1e-39, -1e-39, 1.1754942e-38, 9.2e-41, 1.4e-45,        # float32 subnormals
        1.1754944e-38, 2.0, np.inf, -np.inf,
    ], np.float32)
    nan_payload = np.array([0x7F800001, 0xFFC00001, 0x7FBFFFFF], np.uint32).view(np.float32)
    rng = np.random.default_rng(7)
    ordinary = rng.standard_normal(45).astype(np.float32) * np.float32(1e3)
    values = np.concatenate([specials, nan_payload, ordinary, specials[::-1]])
    channels = values.size
    x = np.ones((1, 3, channels), ml_dtypes.bfloat16)
    results = {}
    active = gncpu.isa()
    try:
        for name in gncpu.supported_isas():
            gncpu.set_isa(name)
            y = gncpu.group_norm(x, channels, np.zeros(channels, np.float32), values,
                                 channels_last=True)
            results[name] = y.view(np.uint16)[0].T  # (channel, row)
    finally:
        gncpu.set_isa(active)
    finite = ~np.isnan(values)
    expected = np.repeat(values[finite], 3).reshape(-1, 3).astype(ml_dtypes.bfloat16)
    # NaNs keep the payload's high half, quiet: 0x7F800001 -> 0x7FC0 (the
    # payload is in the low half only), 0xFFC00001 -> 0xFFC0, 0x7FBFFFFF -> 0x7FFF.
    nan_bits = np.repeat(np.array([0x7FC0, 0xFFC0, 0x7FFF], np.uint16), 3).reshape(3, 3)
    for name, bits in results.items():
        np.testing.assert_array_equal(bits[finite], expected.view(np.uint16), err_msg=name)
        np.testing.assert_array_equal(bits[~finite], nan_bits, err_msg=name)
        np.testing.assert_array_equal(bits, results["scalar"], err_msg=f"{name} vs scalar")
