"""What a NumPy user may hold: array-likes read as NumPy reads them (the array
protocols, the buffer protocol, DLPack), and errors that suggest the fix when
the mistake is recognisable, with the exception types of the contract."""

import numpy as np
import pytest

import gncpu

pytestmark = pytest.mark.smoke


def data(shape=(2, 4, 3, 6), seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


class DLPackOnly:
    """An array that offers nothing but DLPack (as some libraries' arrays do)."""

    def __init__(self, array):
        self._array = array

    def __dlpack__(self, **kwargs):
        return self._array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._array.__dlpack_device__()


class ArrayProtocol:
    def __init__(self, array):
        self._array = array

    def __array__(self, dtype=None, copy=None):
        return self._array if dtype is None else self._array.astype(dtype)


@pytest.mark.parametrize("wrap", [DLPackOnly, ArrayProtocol, memoryview],
                         ids=["dlpack", "__array__", "buffer"])
def test_array_likes_give_the_arrays_result(wrap):
    x = data()
    got = gncpu.group_norm(wrap(x), 2, activation="silu")
    assert type(got) is np.ndarray
    np.testing.assert_array_equal(got, gncpu.group_norm(x, 2, activation="silu"))


def test_nested_lists_are_float64():
    x = data()
    got = gncpu.group_norm(x.tolist(), 2)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, gncpu.group_norm(x, 2), atol=2e-6)


def test_dlpack_weight_and_backward_inputs():
    x = data()
    weight = np.linspace(0.5, 1.5, 4).astype(np.float32)
    y, mean, rstd = gncpu.group_norm(x, 2, DLPackOnly(weight), return_stats=True)
    np.testing.assert_array_equal(y, gncpu.group_norm(x, 2, weight))
    dy = data(seed=1)
    got = gncpu.group_norm_backward(DLPackOnly(dy), DLPackOnly(x), DLPackOnly(mean),
                                    DLPackOnly(rstd), 2, DLPackOnly(weight))
    expected = gncpu.group_norm_backward(dy, x, mean, rstd, 2, weight)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def test_unreadable_dlpack_is_a_type_error():
    class Broken:
        def __dlpack__(self, **kwargs):
            raise BufferError("on another device")

        def __dlpack_device__(self):
            return (2, 0)

    with pytest.raises(TypeError, match="DLPack"):
        gncpu.group_norm(Broken(), 1)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
def test_integer_input_suggests_a_conversion(dtype):
    with pytest.raises(TypeError, match=r"astype\(np.float32\)"):
        gncpu.group_norm(np.ones((2, 4, 3), dtype), 2)


def test_float_num_groups_suggests_the_integer():
    with pytest.raises(TypeError, match="pass 2"):
        gncpu.group_norm(data(), 2.0)
    with pytest.raises(TypeError, match=r"integer, got float$"):
        gncpu.group_norm(data(), 2.5)


@pytest.mark.parametrize("name,suggestion", [
    ("SiLU", "silu"), ("ReLU", "relu"), ("GELU", "gelu"), (" silu ", "silu"), ("swish", "silu")])
def test_activation_spelled_otherwise_suggests_the_name(name, suggestion):
    with pytest.raises(ValueError, match=f"did you mean '{suggestion}'"):
        gncpu.group_norm(data(), 2, activation=name)


@pytest.mark.parametrize("name", ["elu", "tanh", "mish", "gelu_tanh"])
def test_other_activations_get_no_suggestion(name):
    with pytest.raises(ValueError, match="unknown activation") as info:
        gncpu.group_norm(data(), 2, activation=name)
    assert "did you mean" not in str(info.value)


def test_channels_last_input_without_the_flag_is_recognised():
    x = data((2, 5, 5, 6))  # (N, H, W, C): 5 "channels" read as NCHW
    with pytest.raises(ValueError, match="pass channels_last=True"):
        gncpu.group_norm(x, 3)
    with pytest.raises(ValueError, match="pass channels_last=True"):
        gncpu.group_norm(x, 1, np.ones(6, np.float32))
    with pytest.raises(ValueError, match="pass channels_last=True"):
        gncpu.group_norm_backward(x, x, np.zeros((2, 3)), np.ones((2, 3)), 3)
    gncpu.group_norm(x, 3, np.ones(6, np.float32), channels_last=True)  # the fix works


def test_nchw_input_with_the_flag_is_recognised():
    x = data((2, 6, 5, 5))
    with pytest.raises(ValueError, match="drop channels_last=True"):
        gncpu.group_norm(x, 3, channels_last=True)


def test_no_layout_hint_when_neither_layout_fits():
    with pytest.raises(ValueError, match="divide") as info:
        gncpu.group_norm(data((2, 4, 3, 5)), 3)
    assert "channels_last" not in str(info.value)


def test_module_suggests_its_channels_last_flag():
    with pytest.raises(ValueError, match="channels_last=True"):
        gncpu.GroupNorm(3, 6)(data((2, 5, 5, 6)))
