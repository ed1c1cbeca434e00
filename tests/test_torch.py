"""gncpu.torch: the PyTorch operator, module, swap and autograd.

Skipped without torch.  Expected values come from gncpu.reference (the
float64 oracle); torch's own GroupNorm is checked for layout, dtype and
gradients, where it is the behaviour being stood in for."""

import copy
import io
import pickle
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import gncpu  # noqa: E402
import gncpu.torch as gt  # noqa: E402
from gncpu import reference  # noqa: E402

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# Absolute bounds against the oracle for unit-scale outputs (conftest.TOLERANCE,
# by torch dtype), and with a fused activation.
TOL = {torch.float32: 1e-5, torch.float64: 1e-12, torch.float16: 1e-2, torch.bfloat16: 2e-2}
ACT_TOL = {torch.float32: 2e-5, torch.float64: 1e-12, torch.float16: 1e-2, torch.bfloat16: 2e-2}
ACTIVATIONS = [None, "silu", "relu", "gelu"]
# pytest -m smoke: the forward and the gradients with SiLU fused, in every
# dtype and layout.
SMOKE_ACTIVATIONS = [None, pytest.param("silu", marks=pytest.mark.smoke), "relu", "gelu"]


def make(shape, dtype=torch.float32, layout="contiguous", seed=0, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    x = (offset + torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
    elif layout == "strided":  # neither format: one copy
        x = torch.cat([x, x], dim=-1)[..., ::2]
        assert not x.is_contiguous()
    return x


def affine(channels, dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    weight = (0.5 + torch.rand(channels, generator=g, dtype=torch.float64)).to(dtype)
    bias = torch.randn(channels, generator=g, dtype=torch.float64).to(dtype)
    return weight, bias


def oracle(x, groups, weight=None, bias=None, eps=1e-5, activation=None):
    as64 = lambda t: None if t is None else t.detach().double().numpy()  # noqa: E731
    return torch.from_numpy(reference.group_norm(
        as64(x.contiguous()), groups, as64(weight), as64(bias), eps, activation=activation))


def assert_close_to_oracle(y, x, groups, weight=None, bias=None, eps=1e-5, activation=None):
    expected = oracle(x, groups, weight, bias, eps, activation)
    tol = (ACT_TOL if activation else TOL)[x.dtype]
    error = float((y.detach().double() - expected).abs().max()) if y.numel() else 0.0
    assert error <= tol, error


LAYOUT_SHAPES = [
    ("contiguous", (2, 12, 5, 7)),
    ("channels_last", (2, 12, 5, 7)),
    ("channels_last", (2, 12, 3, 4, 5)),
    ("strided", (2, 12, 5, 7)),
    ("contiguous", (3, 12, 10)),
    ("contiguous", (4, 12)),
]


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


# ----------------------------------------------------------------- autograd

TORCH_ACTIVATIONS = {None: lambda t: t, "silu": F.silu, "relu": F.relu, "gelu": F.gelu}


def torch_group_norm(x, groups, weight=None, bias=None, activation=None, dtype=None):
    """torch's GroupNorm then the activation, optionally computed in dtype."""
    cast = (lambda t: t) if dtype is None else (lambda t: None if t is None else t.to(dtype))
    return TORCH_ACTIVATIONS[activation](F.group_norm(cast(x), groups, cast(weight), cast(bias)))


def away_from_relu_kink(x, groups, weight, bias, margin):
    """ReLU's derivative jumps at z = 0: the inputs must keep z clear of it."""
    z = F.group_norm(x.detach().double(), groups, None if weight is None else weight.double(),
                     None if bias is None else bias.double())
    assert float(z.abs().min()) > margin


GRADCHECK_CASES = [  # shape, layout, num_groups, which affine parameters
    ((2, 6, 3, 4), "contiguous", 3, "both"),
    ((2, 6, 3, 4), "channels_last", 3, "both"),
    ((2, 6, 2, 3, 2), "channels_last", 6, "both"),  # 3-D spatial (channels_last_3d), G = C
    ((3, 4, 5), "contiguous", 1, None),  # 1-D spatial, G = 1, no weight or bias
    ((2, 6, 3, 4), "strided", 2, "weight"),  # copied (forward and backward); no bias
    ((2, 4, 7), "contiguous", 2, "bias"),  # no weight
]


@pytest.mark.parametrize("shape,layout,groups,affine_", GRADCHECK_CASES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradcheck_float64(shape, layout, groups, affine_, activation):
    x = make(shape, torch.float64, layout).requires_grad_()
    weight, bias = affine(shape[1], torch.float64)
    params = {"both": (weight, bias), "weight": (weight, None), "bias": (None, bias),
              None: (None, None)}[affine_]
    if activation == "relu":
        away_from_relu_kink(x, groups, *params, margin=1e-4)  # gradcheck's steps are 1e-6
    given = [p is not None for p in params]
    inputs = (x,) + tuple(p.requires_grad_() for p in params if p is not None)

    def fn(x, *ps):
        ps = iter(ps)
        weight, bias = (next(ps) if g else None for g in given)
        return gt.group_norm(x, groups, weight, bias, activation=activation)

    assert torch.autograd.gradcheck(fn, inputs)


def test_gradcheck_without_affine_and_partial_requires_grad():
    x = make((2, 6, 5), torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: gt.group_norm(x, 2, activation="silu"), (x,))
    weight, bias = affine(6, torch.float64)
    weight.requires_grad_()
    x = make((2, 6, 5), torch.float64)  # only the weight needs a gradient
    assert torch.autograd.gradcheck(lambda w: gt.group_norm(x, 2, w, bias), (weight,))


def grads(fn, tensors, grad_out):
    """fn's gradients with respect to fresh leaf copies of tensors."""
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    fn(*leaves).backward(grad_out)
    return [t.grad for t in leaves]


def relative_error(actual, expected):
    """Largest difference relative to the largest expected magnitude."""
    actual, expected = actual.detach().double(), expected.detach().double()
    return float((actual - expected).abs().max() / expected.abs().max())


# Relative to the largest gradient: float32 noise, and loosely for 16-bit.
GRAD_TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 3e-2,
            torch.bfloat16: 3e-2}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("activation", SMOKE_ACTIVATIONS)
def test_gradients_match_torch(dtype, layout, activation):
    """Against torch's autograd of F.group_norm then the activation, in the
    same dtype and in float64; dx in the layout torch gives it."""
    x = make((2, 8, 4, 4), dtype, layout)
    weight, bias = affine(8, dtype)
    grad_out = make((2, 8, 4, 4), dtype, layout, seed=5)
    if activation == "relu":
        away_from_relu_kink(x, 4, weight, bias, margin=1e-3)
    ours = grads(lambda x, w, b: gt.group_norm(x, 4, w, b, activation=activation),
                 (x, weight, bias), grad_out)
    theirs = grads(lambda x, w, b: torch_group_norm(x, 4, w, b, activation),
                   (x, weight, bias), grad_out)
    exact = grads(lambda x, w, b: torch_group_norm(x, 4, w, b, activation, torch.float64),
                  (x, weight, bias), grad_out.double())
    for mine, same_dtype, best, name in zip(ours, theirs, exact, ("dx", "dweight", "dbias")):
        assert mine.dtype == dtype and mine.stride() == same_dtype.stride(), name
        assert relative_error(mine, best) <= GRAD_TOL[dtype], name
        assert relative_error(mine, same_dtype) <= GRAD_TOL[dtype], name


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_grad_out_in_other_layouts_is_read_right(layout):
    """A gradient of another memory format, strided or expanded (from .sum())
    is copied into x's, never read with the wrong strides."""
    shape = (2, 8, 5, 3)
    x = make(shape, layout=layout)
    weight, bias = affine(8, torch.float32)
    other = "contiguous" if layout == "channels_last" else "channels_last"
    for grad_out in (make(shape, layout=other, seed=5), make(shape, layout="strided", seed=5),
                     torch.ones(()).expand(shape), make(shape, layout=layout, seed=5)):
        ours = grads(lambda x, w, b: gt.group_norm(x, 4, w, b, activation="silu"),
                     (x, weight, bias), grad_out)
        exact = grads(lambda x, w, b: torch_group_norm(x, 4, w, b, "silu", torch.float64),
                      (x, weight, bias), grad_out.double())
        assert ours[0].stride() == F.group_norm(x, 4).stride()
        for mine, best in zip(ours, exact):
            assert relative_error(mine, best) <= 1e-5


def test_16_bit_input_with_float32_parameters():
    x = make((2, 8, 4, 4), torch.bfloat16, "channels_last")
    weight, bias = affine(8, torch.float32)
    grad_out = make((2, 8, 4, 4), torch.bfloat16, seed=5)
    ours = grads(lambda x, w, b: gt.group_norm(x, 4, w, b, activation="gelu"),
                 (x, weight, bias), grad_out)
    exact = grads(lambda x, w, b: torch_group_norm(x, 4, w, b, "gelu", torch.float64),
                  (x, weight, bias), grad_out.double())
    assert [g.dtype for g in ours] == [torch.bfloat16, torch.float32, torch.float32]
    assert relative_error(ours[0], exact[0]) <= 3e-2
    # dweight and dbias are float32 sums of float32 terms: far better than bfloat16
    assert relative_error(ours[1], exact[1]) <= 1e-3 and relative_error(ours[2], exact[2]) <= 1e-3


def test_output_mask_computes_only_what_is_needed():
    x = make((2, 8, 4, 4), layout="channels_last")
    weight, bias = affine(8, torch.float32)
    grad_out = make((2, 8, 4, 4), seed=5)
    full = grads(lambda x, w, b: gt.group_norm(x, 4, w, b, activation="silu"),
                 (x, weight, bias), grad_out)
    exact = grads(lambda x, w, b: torch_group_norm(x, 4, w, b, "silu", torch.float64),
                  (x, weight, bias), grad_out.double())
    for wanted in range(3):  # one of x, weight, bias requires grad
        leaves = [t.detach().clone().requires_grad_(i == wanted)
                  for i, t in enumerate((x, weight, bias))]
        gt.group_norm(*leaves[:1], 4, *leaves[1:], activation="silu").backward(grad_out)
        assert [t.grad is not None for t in leaves] == [i == wanted for i in range(3)]
        assert torch.equal(leaves[wanted].grad, full[wanted])
        assert relative_error(leaves[wanted].grad, exact[wanted]) <= 1e-5
    # The operator itself: what is masked out comes back empty.
    _, mean, rstd = torch.ops.gncpu.group_norm_with_stats(x, 4, weight, bias, 1e-5, "silu")
    for mask in ([True, False, False], [False, True, False], [False, False, True]):
        out = torch.ops.gncpu.group_norm_backward(grad_out, x, mean, rstd, 4, weight, bias,
                                                  "silu", mask)
        for wanted, result, expected in zip(mask, out, full):
            assert torch.equal(result, expected) if wanted else result.numel() == 0


def test_backward_operator_checks_its_input():
    x = make((2, 8, 4, 4))
    grad_out = make((2, 8, 4, 4), seed=5)
    _, mean, rstd = torch.ops.gncpu.group_norm_with_stats(x, 4, None, None, 1e-5, None)
    op = torch.ops.gncpu.group_norm_backward
    mask = [True, True, True]
    with pytest.raises(TypeError, match="dtype"):
        op(grad_out.double(), x, mean, rstd, 4, None, None, None, mask)
    with pytest.raises(ValueError, match="shape"):
        op(grad_out[:1], x, mean, rstd, 4, None, None, None, mask)
    with pytest.raises(ValueError, match="shape"):
        op(grad_out, x, mean[:, :2], rstd, 4, None, None, None, mask)
    with pytest.raises(ValueError, match="divide"):
        op(grad_out, x, mean, rstd, 3, None, None, None, mask)
    with pytest.raises(ValueError, match="activation"):
        op(grad_out, x, mean, rstd, 4, None, None, "tanh", mask)
    # Statistics of another dtype or strides are converted, not misread.
    dx, dw, db = op(grad_out, x, mean, rstd, 4, None, None, None, mask)
    again = op(grad_out, x, mean.double(), rstd.t().contiguous().t(), 4, None, None, None, mask)
    assert all(torch.equal(a, b) for a, b in zip((dx, dw, db), again))


def test_backward_of_an_empty_batch():
    x = torch.empty((0, 8, 4, 4), requires_grad=True)
    weight, bias = (p.requires_grad_() for p in affine(8, torch.float32))
    gt.group_norm(x, 4, weight, bias, activation="silu").sum().backward()
    assert x.grad.shape == x.shape
    assert torch.equal(weight.grad, torch.zeros(8)) and torch.equal(bias.grad, torch.zeros(8))


def test_double_backward_raises_rather_than_being_wrong():
    x = make((2, 8, 3, 3), torch.float64).requires_grad_()
    y = gt.group_norm(x, 2, activation="silu")
    (dx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    expected = grads(lambda x: torch_group_norm(x, 2, activation="silu").square().sum(),
                     (x,), None)[0]
    assert relative_error(dx, expected) <= 1e-10  # the first order is right with create_graph
    with pytest.raises(RuntimeError, match="first derivatives only"):
        dx.sum().backward()


def test_module_gradients_flow_to_weight_and_bias():
    layer = gt.GroupNorm(2, 8, activation="silu")
    x = make((2, 8, 4, 4)).requires_grad_()
    layer(x).square().sum().backward()
    assert x.grad is not None and layer.weight.grad is not None and layer.bias.grad is not None
    assert float(layer.weight.grad.abs().sum()) > 0 and float(layer.bias.grad.abs().sum()) > 0


def conv_net():
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.SiLU(),
                         nn.Conv2d(16, 8, 3, padding=1), nn.GroupNorm(2, 8))


def train(model, x, target, steps):
    """SGD with momentum on a mean squared error: the losses."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.mse_loss(model(x), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("how", ["swapped", "fused in an FX graph"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_training_matches_torch(layout, how):
    torch.manual_seed(0)
    theirs = conv_net()
    ours = copy.deepcopy(theirs)
    if how == "swapped":
        assert gt.replace_group_norm(ours) == 2
    else:
        ours = torch.fx.symbolic_trace(ours)
        assert len(gt.fuse(ours).fused) == 1  # GroupNorm + SiLU; the last norm alone
    if layout == "channels_last":
        theirs, ours = (m.to(memory_format=torch.channels_last) for m in (theirs, ours))
    x, target = make((4, 3, 8, 8), layout=layout), make((4, 8, 8, 8), seed=2)
    their_losses, our_losses = train(theirs, x, target, 5), train(ours, x, target, 5)
    assert their_losses[-1] < their_losses[0]
    assert our_losses == pytest.approx(their_losses, rel=1e-5)
    for (name, mine), expected in zip(ours.named_parameters(), theirs.parameters()):
        assert relative_error(mine, expected) <= 1e-5, name


def has_cpp_compiler():
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except (ImportError, RuntimeError):  # InvalidCxxCompiler is a RuntimeError
        return False
    return True


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inductor's own, as above
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_training_matches_eager(backend):
    """A compiled forward and the backward AOTAutograd derives from it (the
    backward operator traced through its fake kernel), full graph, against
    the same steps in eager mode."""
    if backend == "inductor" and not has_cpp_compiler():
        pytest.skip("torch.compile's inductor backend needs a C++ compiler")
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = conv_net().to(memory_format=torch.channels_last)
    gt.replace_group_norm(eager)
    model = copy.deepcopy(eager)
    backward_graphs = []
    inspect = backend == "aot_eager"
    if inspect:  # the same, with a look at the backward graph
        from torch._dynamo.backends.common import aot_autograd
        from torch._functorch.aot_autograd import make_boxed_func

        def keep(graph, _):
            backward_graphs.append(graph)
            return make_boxed_func(graph.forward)

        backend = aot_autograd(fw_compiler=lambda graph, _: make_boxed_func(graph.forward),
                               bw_compiler=keep)
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    x = make((2, 3, 8, 8), layout="channels_last")
    target = make((2, 8, 8, 8), seed=2)
    expected = train(eager, x, target, 3)
    # The losses and parameters after the same three steps.
    assert train(compiled, x, target, 3) == pytest.approx(expected, rel=1e-5)
    for mine, theirs in zip(model.parameters(), eager.parameters()):
        assert relative_error(mine, theirs) <= 1e-5
    if inspect:  # one backward graph, with gncpu's backward for each norm
        (graph,) = backward_graphs
        targets = [node.target for node in graph.graph.nodes]
        assert targets.count(torch.ops.gncpu.group_norm_backward.default) == 2


# ------------------------------------------------------------------- module

@pytest.mark.smoke
def test_module_is_a_torch_group_norm_with_the_same_state_dict():
    theirs = nn.GroupNorm(4, 16)
    nn.init.uniform_(theirs.weight)
    nn.init.uniform_(theirs.bias)
    ours = gt.GroupNorm(4, 16, activation="silu")
    assert isinstance(ours, nn.GroupNorm)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    ours.load_state_dict(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    x = make((2, 16, 5, 5))
    with torch.no_grad():
        assert torch.allclose(ours(x), F.silu(theirs(x)), atol=1e-5)
    assert "activation='silu'" in repr(ours)
    assert "activation" not in repr(gt.GroupNorm(4, 16))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_module_in_every_dtype(dtype):
    layer = gt.GroupNorm(4, 16, dtype=dtype)
    x = make((2, 16, 5, 5), dtype, "channels_last")
    with torch.no_grad():
        y = layer(x)
    assert y.dtype == dtype
    assert_close_to_oracle(y, x, 4, layer.weight, layer.bias)


def test_module_bad_arguments():
    with pytest.raises(ValueError):
        gt.GroupNorm(3, 16)
    with pytest.raises(ValueError):
        gt.GroupNorm(4, 16, activation="tanh")
    with pytest.raises(ValueError):
        gt.GroupNorm(4, 16, eps=-1.0)
    with pytest.raises(ValueError, match="already applies"):
        gt.GroupNorm(4, 16, activation="silu")(make((1, 16, 2, 2)), activation="relu")


# ------------------------------------------------------------- replacement

class ResnetLikeBlock(nn.Module):
    """diffusers' ResnetBlock2D, reduced: one SiLU module shared by norm1,
    norm2 and the time embedding; norm2 in an if/elif/else."""

    def __init__(self, channels=16, groups=4, mode="default"):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(8, channels * (2 if mode == "scale_shift" else 1))
        self.norm2 = nn.GroupNorm(groups, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.nonlinearity = nn.SiLU()
        self.mode = mode

    def forward(self, input_tensor: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        hidden_states = self.norm1(input_tensor)
        hidden_states = self.nonlinearity(hidden_states)
        hidden_states = self.conv1(hidden_states)
        temb = self.nonlinearity(temb)
        temb = self.time_emb_proj(temb)[:, :, None, None]
        if self.mode == "default":
            hidden_states = hidden_states + temb
            hidden_states = self.norm2(hidden_states)
        elif self.mode == "scale_shift":
            scale, shift = torch.chunk(temb, 2, dim=1)
            hidden_states = self.norm2(hidden_states)
            hidden_states = hidden_states * (1 + scale) + shift
        else:
            hidden_states = self.norm2(hidden_states)
        hidden_states = self.nonlinearity(hidden_states)
        return input_tensor + self.conv2(hidden_states)


@pytest.mark.smoke
def test_replace_swaps_in_place_and_reports():
    class MyNorm(nn.GroupNorm):  # a subclass may compute something else
        pass

    torch.manual_seed(0)
    shared = nn.GroupNorm(2, 8)
    model = nn.Sequential(shared, nn.SiLU(), MyNorm(2, 8), nn.Sequential(shared, nn.SiLU()),
                          nn.GroupNorm(2, 8), nn.GELU())
    original = copy.deepcopy(model)
    state, text = model.state_dict(), repr(model)
    x = make((2, 8, 3, 3))
    report = gt.replace_group_norm(model)
    assert report.swapped == ["0", "4"] and report == 2 and int(report) == 2
    assert [name for name, _ in report.skipped] == ["2"] and "subclass" in str(report)
    assert type(model[0]) is gt.GroupNorm and model[3][0] is shared and type(model[2]) is MyNorm
    assert repr(model) == text  # the same modules, nothing fused or replaced
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert [type(m) for m in (model[1], model[3], model[5])] == [nn.SiLU, nn.Sequential, nn.GELU]
    with torch.no_grad():
        assert torch.allclose(model(x), original(x), atol=1e-5)
        assert torch.allclose(model[:2](x), original[:2](x), atol=1e-5)  # slices: as before
    assert gt.replace_group_norm(model) == 0  # nothing left to swap
    with pytest.raises(TypeError, match="no longer fuses"):
        gt.replace_group_norm(nn.Sequential(nn.GroupNorm(2, 8)), fuse_activation=True)
    with pytest.raises(TypeError):
        gt.replace_group_norm(object())


@pytest.mark.parametrize("mode", ["default", "scale_shift", "other"])
def test_replace_in_a_resnet_block_trains_like_torch(mode):
    torch.manual_seed(0)
    block = ResnetLikeBlock(mode=mode)
    original = copy.deepcopy(block)
    x, temb = make((2, 16, 6, 6)), make((2, 8), seed=3)
    assert gt.replace_group_norm(block) == 2
    assert "forward" not in block.__dict__  # no code rewritten
    ours, theirs = block(x, temb), original(x, temb)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    ours.square().sum().backward()
    theirs.square().sum().backward()
    for a, b in zip(block.parameters(), original.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-4)


def test_replace_keeps_hooks_firing_as_without_gncpu():
    def run(model):
        seen = []
        model[1].register_forward_hook(lambda m, i, o: seen.append(("norm out", o.clone())))
        model[1].register_full_backward_hook(lambda m, gi, go: seen.append(("norm", go[0])))
        model[2].register_full_backward_hook(lambda m, gi, go: seen.append(("act", go[0])))
        x = make((2, 3, 4, 4)).requires_grad_()
        model(x).square().sum().backward()
        return seen

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.GroupNorm(4, 8), nn.SiLU())
    swapped = copy.deepcopy(model)
    gt.replace_group_norm(swapped)
    expected, got = run(model), run(swapped)
    assert [name for name, _ in got] == [name for name, _ in expected] == \
        ["norm out", "act", "norm"]
    for (_, a), (_, b) in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_replace_in_bfloat16_channels_last_model():
    torch.manual_seed(0)
    model = ResnetLikeBlock().eval().to(torch.bfloat16).to(memory_format=torch.channels_last)
    original = copy.deepcopy(model)
    gt.replace_group_norm(model)
    x = make((1, 16, 6, 6), torch.bfloat16, "channels_last")
    temb = make((1, 8), torch.bfloat16, seed=3)
    with torch.no_grad():
        y, expected = model(x, temb), original(x, temb)
    assert y.dtype == torch.bfloat16 and y.stride() == expected.stride()
    assert float((y.float() - expected.float()).abs().max()) < 0.1


def test_swapped_and_placed_modules_pickle_by_the_public_path():
    model = nn.Sequential(nn.GroupNorm(2, 8), gt.GroupNorm(2, 8, activation="silu"))
    gt.replace_group_norm(model)
    assert b"gncpu.torch._module" not in pickle.dumps(model)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert [type(m) for m in loaded] == [gt.GroupNorm, gt.GroupNorm]
    assert loaded[1].activation == "silu"
    x = make((2, 8, 3))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
