"""_core._group_norm_raw, the raw-address entry gncpu.torch uses, on NumPy
buffers (so that it runs, under the sanitizers too, without torch)."""

import numpy as np
import pytest

import gncpu
from gncpu import _core

from conftest import random_affine, random_input

pytestmark = pytest.mark.smoke

F32, F64, F16 = 0, 1, 2
NCHW, NHWC = 0, 1


def address(a):
    return 0 if a is None else a.ctypes.data


@pytest.mark.parametrize("dtype,code", [(np.float32, F32), (np.float64, F64), (np.float16, F16)])
@pytest.mark.parametrize("layout", [NCHW, NHWC])
@pytest.mark.parametrize("activation", [None, "silu"])
def test_raw_matches_group_norm(rng, dtype, code, layout, activation):
    shape = (2, 40, 30, 8) if layout == NHWC else (2, 8, 40, 30)  # above the GIL-release size
    x = random_input(rng, shape, dtype)
    pdtype = np.float64 if dtype == np.float64 else np.float32
    weight, bias = random_affine(rng, 8, pdtype)
    expected, mean, rstd = gncpu.group_norm(x, 4, weight, bias, activation=activation,
                                            return_stats=True, channels_last=layout == NHWC)
    y = np.full_like(x, np.nan)
    got_mean, got_rstd = np.empty_like(mean), np.empty_like(rstd)
    _core._group_norm_raw(code, layout, 2, 8, 40 * 30, 4, 1e-5, activation, address(x), address(y),
                          address(weight), address(bias), address(got_mean), address(got_rstd))
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(got_mean, mean)
    np.testing.assert_array_equal(got_rstd, rstd)


def test_raw_check_only_and_errors():
    _core._group_norm_raw(F32, NCHW, 2, 8, 10, 4, 1e-5, None, 0, 0)  # values only: fine
    x = np.ones((1, 8, 2), np.float32)
    y = np.zeros_like(x)
    bad = [
        (ValueError, dict(num_groups=3)),
        (ValueError, dict(num_groups=0)),
        (TypeError, dict(num_groups=2.0)),
        (ValueError, dict(eps=-1.0)),
        (TypeError, dict(eps="1")),
        (ValueError, dict(activation="tanh")),
        (TypeError, dict(activation=1)),
        (ValueError, dict(batch=-1)),
    ]
    for error, change in bad:
        args = dict(batch=1, num_groups=4, eps=1e-5, activation=None)
        args.update(change)
        for x_address, y_address in ((0, 0), (address(x), address(y))):
            with pytest.raises(error):
                _core._group_norm_raw(F32, NCHW, args["batch"], 8, 2, args["num_groups"],
                                      args["eps"], args["activation"], x_address, y_address)
    assert not y.any()  # nothing written
    with pytest.raises(RuntimeError, match="internal"):  # a binding's bug, not the user's
        _core._group_norm_raw(7, NCHW, 1, 8, 2, 4, 1e-5, None, address(x), address(y))
