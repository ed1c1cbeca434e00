"""Bad input: a clear exception, and nothing written."""

import numpy as np
import pytest

import gncpu

pytestmark = pytest.mark.smoke

SENTINEL = -7.25


def good_input():
    return np.random.default_rng(0).standard_normal((2, 8, 4, 4)).astype(np.float32)


def sentinel_out(shape=(2, 8, 4, 4), dtype=np.float32):
    return np.full(shape, SENTINEL, dtype=dtype)


def assert_untouched(out):
    assert np.all(out == SENTINEL), "an error path wrote into out"


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(num_groups=3), ValueError, "divide"),
    (dict(num_groups=0), ValueError, "positive"),
    (dict(num_groups=-2), ValueError, "positive"),
    (dict(num_groups=2**70), ValueError, "divide"),
    (dict(num_groups=2.0), TypeError, "integer"),
    (dict(num_groups="4"), TypeError, "integer"),
    (dict(num_groups=None), TypeError, "integer"),
    (dict(num_groups=True), TypeError, "bool"),
    (dict(eps=-1e-5), ValueError, "eps"),
    (dict(eps=float("nan")), ValueError, "eps"),
    (dict(eps=float("inf")), ValueError, "eps"),
    (dict(eps=10**400), ValueError, "eps"),
    (dict(eps="1e-5"), TypeError, "eps"),
    (dict(eps=None), TypeError, "eps"),
    (dict(weight=np.ones(7, np.float32)), ValueError, "weight"),
    (dict(weight=np.ones((8, 1), np.float32)), ValueError, "weight"),
    (dict(bias=np.zeros(9)), ValueError, "bias"),
    (dict(weight=np.ones(8, complex)), TypeError, "weight"),
    (dict(bias=np.array(["a"] * 8)), TypeError, "bias"),
    (dict(weight=np.ones(8, object)), TypeError, "weight"),
    (dict(weight=np.ones(8, bool)), TypeError, "weight"),
    (dict(weight=np.full(8, 1e300)), ValueError, "beyond the range of float32"),
    (dict(bias=np.full(8, -1e300)), ValueError, "beyond the range of float32"),
])
def test_bad_arguments(kwargs, error, match):
    args = dict(num_groups=4)
    args.update(kwargs)
    out = sentinel_out()
    with pytest.raises(error, match=match):
        gncpu.group_norm(good_input(), out=out, **args)
    assert_untouched(out)


@pytest.mark.parametrize("x", [
    np.ones((2, 8, 4), dtype=np.int32),
    np.ones((2, 8, 4), dtype=np.int64),
    np.ones((2, 8, 4), dtype=bool),
    np.ones((2, 8, 4), dtype=np.complex64),
    np.ones((2, 8, 4), dtype=object),
    np.array([["a", "b"]]),
    np.ones((2, 8, 4), dtype=np.longdouble) if np.dtype(np.longdouble).itemsize > 8 else
    np.ones((2, 8, 4), dtype=np.uint8),
    [[1, 2], [3, 4]],
])
def test_non_float_input_is_a_type_error(x):
    with pytest.raises(TypeError):
        gncpu.group_norm(x, 1)


@pytest.mark.parametrize("x", [np.float32(1.0), np.ones(8, np.float32)])
def test_fewer_than_two_dims(x):
    with pytest.raises(ValueError, match=r"\(N, C, \*spatial\)"):
        gncpu.group_norm(x, 1)


@pytest.mark.parametrize("out,error,match", [
    (sentinel_out((2, 8, 16)), ValueError, "shape"),
    (sentinel_out((2, 8, 4, 4), np.float64), TypeError, "dtype"),
    (sentinel_out((2, 8, 4, 4), np.float16), TypeError, "dtype"),
    (sentinel_out((2, 8, 4, 4)).astype(">f4"), TypeError, "dtype"),
    (np.asfortranarray(sentinel_out()), ValueError, "C-contiguous"),
    (sentinel_out((2, 8, 4, 8))[..., ::2], ValueError, "C-contiguous"),
])
def test_bad_out(out, error, match):
    with pytest.raises(error, match=match):
        gncpu.group_norm(good_input(), 4, out=out)
    assert np.all(out == SENTINEL)


def test_read_only_out():
    out = sentinel_out()
    out.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        gncpu.group_norm(good_input(), 4, out=out)
    assert_untouched(out)


def test_out_that_is_not_an_array():
    with pytest.raises(TypeError, match="ndarray"):
        gncpu.group_norm(good_input(), 4, out=[0.0] * 256)


def test_in_place_on_non_contiguous_x_is_refused():
    x = np.full((2, 8, 4, 8), SENTINEL, np.float32)[..., ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        gncpu.group_norm(x, 4, out=x)
    assert np.all(x == SENTINEL)


def test_unknown_keyword():
    with pytest.raises(TypeError):
        gncpu.group_norm(good_input(), 4, momentum=0.1)
