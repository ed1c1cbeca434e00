"""gncpu.torch's operator: forward results in every dtype and layout, bad
input, opcheck, fake kernels and torch.compile.

Skipped without torch.  Expected values come from gncpu.reference (the
float64 oracle); torch's own GroupNorm is checked for layout and dtype,
where it is the behaviour being stood in for.  Autograd is in
test_torch_autograd.py, the module and the swap in test_torch_module.py."""

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import gncpu  # noqa: E402
import gncpu.torch as gt  # noqa: E402
from gncpu import reference  # noqa: E402
from torch_helpers import (DTYPES, SMOKE_ACTIVATIONS, LAYOUT_SHAPES, make, affine,
                           assert_close_to_oracle)  # noqa: E402


# ------------------------------------------------------------------ forward

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout,shape", LAYOUT_SHAPES)
@pytest.mark.parametrize("activation", SMOKE_ACTIVATIONS)
def test_every_dtype_and_layout_against_oracle_and_torch(dtype, layout, shape, activation):
    x = make(shape, dtype, layout)
    weight, bias = affine(shape[1], dtype)
    before = x.clone()
    y = gt.group_norm(x, 3, weight, bias, activation=activation)
    assert y.dtype == dtype and y.shape == x.shape
    assert_close_to_oracle(y, x, 3, weight, bias, activation=activation)
    # What torch's GroupNorm gives, layout included.
    expected = F.group_norm(x, 3, weight, bias)
    assert y.stride() == expected.stride()
    assert torch.equal(x, before)
    # The registered operator computes the same bits.
    op = torch.ops.gncpu.group_norm(x, 3, weight, bias, 1e-5, activation)
    assert op.stride() == y.stride() and torch.equal(op, y)


@pytest.mark.parametrize("shape", [(2, 1, 5, 5), (2, 8, 1, 1), (1, 8, 1, 1, 1), (3, 1, 1, 1)])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_ambiguous_strides_follow_torch(shape, layout):
    """Shapes that are contiguous and channels-last at once: torch decides by
    strides; so does gncpu."""
    x = make(shape, layout=layout)
    groups = 1
    y = gt.group_norm(x, groups)
    assert y.stride() == F.group_norm(x, groups).stride()
    assert_close_to_oracle(y, x, groups)


def test_sliced_channels_last_input_is_copied_once():
    x = make((2, 16, 9, 9), layout="channels_last")[:, :, 1:, 1:]
    assert not x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
    y = gt.group_norm(x, 4)
    assert y.stride() == F.group_norm(x, 4).stride()
    assert_close_to_oracle(y, x, 4)


def test_large_tensor_releases_the_gil_and_matches():
    x = make((1, 64, 48, 48), layout="channels_last")  # above the GIL-release threshold
    weight, bias = affine(64, torch.float32)
    assert_close_to_oracle(gt.group_norm(x, 32, weight, bias), x, 32, weight, bias)


@pytest.mark.parametrize("shape, layout", [((1, 64, 128, 128), "contiguous"),
                                           ((1, 64, 128, 128), "channels_last"),
                                           ((1, 32, 8, 64, 64), "channels_last")])
def test_large_outputs_are_ordinary_tensors_with_torch_layout_and_values(shape, layout):
    """y and dx of 4 MiB and more: torch's strides and values, and tensors of
    their own (no base, resizable storage), as torch's GroupNorm gives."""
    x = make(shape, layout=layout).requires_grad_()
    weight, bias = affine(shape[1], torch.float32)
    weight.requires_grad_(), bias.requires_grad_()
    y = gt.group_norm(x, 32, weight, bias, activation="silu")
    expected_y = F.silu(F.group_norm(x, 32, weight, bias))
    assert y.stride() == expected_y.stride()
    torch.testing.assert_close(y, expected_y, rtol=1e-5, atol=1e-5)
    dy = torch.randn_like(y)
    grads = torch.autograd.grad(y, (x, weight, bias), dy)
    assert grads[0].stride() == torch.autograd.grad(expected_y, x, dy)[0].stride()
    for t in (y.detach(), grads[0]):
        assert t._base is None and t.untyped_storage().resizable()
    inputs64 = [t.detach().double().requires_grad_() for t in (x, weight, bias)]
    y64 = F.silu(F.group_norm(inputs64[0], 32, inputs64[1], inputs64[2]))
    for got, want in zip(grads, torch.autograd.grad(y64, inputs64, dy.double())):
        scale = float(want.abs().max())  # sums over 2**14 to 2**17 values: relative to the largest
        torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-5 * scale)


def test_accuracy_with_a_large_offset():
    """Where torch's channels-last GroupNorm loses digits (README), gncpu does not."""
    for layout in ("contiguous", "channels_last"):
        x = make((1, 32, 16, 16), layout=layout, offset=1e4)
        assert_close_to_oracle(gt.group_norm(x, 8), x, 8)


def test_mixed_parameter_dtypes():
    x = make((2, 8, 4, 4), torch.bfloat16)
    weight, bias = affine(8, torch.float64)
    y = gt.group_norm(x, 2, weight, bias)
    assert_close_to_oracle(y, x, 2, weight.to(torch.float32), bias.to(torch.float32))
    weight16, bias16 = affine(8, torch.bfloat16)
    assert_close_to_oracle(gt.group_norm(x, 2, weight16, bias16), x, 2, weight16, bias16)


def test_empty_batch():
    x = torch.empty((0, 8, 4, 4))
    y = gt.group_norm(x, 4)
    assert y.shape == x.shape


def test_modes_inference_and_no_grad():
    x = make((2, 8, 4, 4))
    expected = gt.group_norm(x, 4)
    with torch.inference_mode():
        y = gt.group_norm(x, 4)
        assert y.is_inference()
        assert torch.equal(y, expected)
        assert torch.equal(torch.ops.gncpu.group_norm(x, 4), expected)
    with torch.no_grad():
        assert torch.equal(gt.group_norm(x.requires_grad_(), 4), expected)


@pytest.mark.smoke
def test_import_gncpu_does_not_import_torch():
    code = "import sys, gncpu; gncpu.group_norm([[1.0, 2.0]], 1); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------- bad input

def bad_calls(x, weight):
    return [
        (TypeError, lambda: gt.group_norm(x.to(torch.int32), 4)),
        (TypeError, lambda: gt.group_norm(x.to(torch.complex64), 4)),
        (TypeError, lambda: gt.group_norm(x.numpy(), 4)),
        (ValueError, lambda: gt.group_norm(x[0, 0, 0], 1)),
        (ValueError, lambda: gt.group_norm(x, 3)),
        (ValueError, lambda: gt.group_norm(x, 0)),
        (ValueError, lambda: gt.group_norm(x, 4, eps=-1.0)),
        (ValueError, lambda: gt.group_norm(x, 4, eps=float("nan"))),
        (ValueError, lambda: gt.group_norm(x, 4, activation="tanh")),
        (ValueError, lambda: gt.group_norm(x, 4, weight[:4])),
        (ValueError, lambda: gt.group_norm(x, 4, None, weight.reshape(2, 4))),
        (TypeError, lambda: gt.group_norm(x, 4, [1.0] * 8)),
        (TypeError, lambda: gt.group_norm(x, 4, weight.to(torch.complex64))),
        (ValueError, lambda: gt.group_norm(x, 4, weight.to("meta"))),  # (meta x: shapes)
    ]


@pytest.mark.smoke
@pytest.mark.parametrize("grad", [False, True], ids=["eager", "autograd"])
def test_bad_input_raises_clearly_and_writes_nothing(grad):
    x = make((2, 8, 4, 4))
    weight, _ = affine(8, torch.float32)
    before = x.clone(), weight.clone()
    if grad:
        weight.requires_grad_()
    for error, call in bad_calls(x, weight):
        with pytest.raises(error):
            call()
    assert torch.equal(x, before[0]) and torch.equal(weight.detach(), before[1])


@pytest.mark.parametrize("x_dtype", [torch.float32, torch.bfloat16])
def test_parameters_beyond_float32_raise_as_for_numpy(x_dtype):
    """A finite float64 weight past float32's range would become inf in the
    conversion: ValueError, as the NumPy path says, never a silent inf."""
    x = make((2, 8, 4, 4), x_dtype)
    huge = torch.full((8,), 1e300, dtype=torch.float64)
    with pytest.raises(ValueError, match="beyond the range"):
        gncpu.torch.group_norm(x, 4, huge)
    with pytest.raises(ValueError, match="beyond the range"):
        gncpu.torch.group_norm(x, 4, None, huge)
    with pytest.raises(ValueError, match="beyond the range"):
        gncpu.group_norm(x.float().numpy(), 4, huge.numpy())
    inf = torch.full((8,), float("inf"), dtype=torch.float64)  # already inf: passed on
    assert torch.isinf(gncpu.torch.group_norm(x, 4, None, inf)).all()


def test_opcheck_reports_bad_input_through_the_operator():
    x = make((2, 8, 4, 4))
    with pytest.raises(ValueError, match="divide"):
        torch.ops.gncpu.group_norm(x, 3)
    with pytest.raises(ValueError, match="activation"):
        torch.ops.gncpu.group_norm_with_stats(x, 4, None, None, 1e-5, "tanh")


# ----------------------------------------------------- operator and tracing

OPCHECK_CASES = [
    ((2, 8, 3, 5), torch.float32, "contiguous", True, None),
    ((2, 8, 3, 5), torch.float32, "channels_last", True, "silu"),
    ((2, 8, 3, 5), torch.float64, "strided", False, "gelu"),
    ((2, 8, 3, 2, 2), torch.bfloat16, "channels_last", True, None),
    ((2, 8, 6), torch.float16, "contiguous", True, "relu"),
]


@pytest.mark.parametrize("shape,dtype,layout,affine_,activation", OPCHECK_CASES)
def test_opcheck(shape, dtype, layout, affine_, activation):
    x = make(shape, dtype, layout).requires_grad_(dtype in (torch.float32, torch.float64))
    weight, bias = affine(shape[1], dtype) if affine_ else (None, None)
    args = (x, 4, weight, bias, 1e-5, activation)
    torch.library.opcheck(torch.ops.gncpu.group_norm_with_stats.default, args)
    torch.library.opcheck(torch.ops.gncpu.group_norm.default, args)


BACKWARD_OPCHECK_CASES = [  # dtype, layout, parameters' dtype, activation, output mask
    (torch.float32, "channels_last", torch.float32, "silu", [True, True, True]),
    (torch.float64, "strided", torch.float64, "gelu", [True, False, True]),
    (torch.bfloat16, "contiguous", torch.bfloat16, "relu", [False, True, True]),
]


@pytest.mark.parametrize("dtype,layout,param_dtype,activation,mask", BACKWARD_OPCHECK_CASES)
def test_opcheck_backward(dtype, layout, param_dtype, activation, mask):
    x = make((2, 8, 3, 5), dtype, layout)
    weight, bias = affine(8, param_dtype)
    _, mean, rstd = torch.ops.gncpu.group_norm_with_stats(x, 4, weight, bias, 1e-5, activation)
    grad_out = make((2, 8, 3, 5), dtype, "contiguous", seed=5)
    torch.library.opcheck(torch.ops.gncpu.group_norm_backward.default,
                          (grad_out, x, mean, rstd, 4, weight, bias, activation, mask))


def test_fake_kernel_strides_equal_real_ones():
    from torch._subclasses.fake_tensor import FakeTensorMode

    for layout, shape in LAYOUT_SHAPES:
        x = make(shape, layout=layout)
        weight = torch.ones(shape[1], dtype=torch.float64)
        real = torch.ops.gncpu.group_norm_with_stats(x, 3, None, None, 1e-5, None)
        grad_out = make(shape, seed=5)
        args = (x, real[1], real[2], 3, weight, None, "silu")
        real_grads = [torch.ops.gncpu.group_norm_backward(grad_out, *args, mask)
                      for mask in ([True, True, True], [False, False, True])]
        with FakeTensorMode() as mode:
            fake = torch.ops.gncpu.group_norm_with_stats(mode.from_tensor(x), 3, None, None,
                                                         1e-5, None)
            fake_args = [mode.from_tensor(t) if isinstance(t, torch.Tensor) else t for t in args]
            fake_grads = [torch.ops.gncpu.group_norm_backward(mode.from_tensor(grad_out),
                                                              *fake_args, mask)
                          for mask in ([True, True, True], [False, False, True])]
        for r, f in zip(real + real_grads[0] + real_grads[1],
                        fake + fake_grads[0] + fake_grads[1]):
            assert (r.shape, r.stride(), r.dtype) == (f.shape, f.stride(), f.dtype)


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 16, 3, padding=1)
        self.norm = gt.GroupNorm(4, 16, activation="silu")
        self.norm2 = gt.GroupNorm(8, 16)

    def forward(self, x):
        h = self.norm(self.conv(x))
        return gt.group_norm(self.norm2(h), 2, activation="gelu") + h


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_torch_compile_fullgraph_matches_eager(layout):
    torch._dynamo.reset()
    model = TinyNet().eval()
    x = make((2, 4, 8, 8), layout=layout)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        expected = model(x)
        assert torch.allclose(compiled(x), expected, atol=1e-6)
    with torch.inference_mode():
        assert torch.allclose(compiled(x), expected, atol=1e-6)
    # Training through the compiled graph: gradients reach every parameter.
    compiled(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


# Inductor itself warns (torch.jit.script_method's deprecation, torch 2.13).
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torch_compile_inductor_fullgraph_matches_eager():
    torch._dynamo.reset()
    model = TinyNet().eval()
    x = make((1, 4, 8, 8), layout="channels_last")
    with torch.no_grad():
        expected = model(x)
        actual = torch.compile(model, fullgraph=True)(x)
    assert actual.stride() == expected.stride()
    assert torch.allclose(actual, expected, atol=1e-5)
