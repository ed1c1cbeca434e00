"""gncpu.torch's autograd: gradcheck, gradients against torch's in every dtype
and layout, the backward operator, and training (swapped, fused, compiled)
against torch.  Skipped without torch."""

import copy

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import gncpu  # noqa: E402
import gncpu.torch as gt  # noqa: E402
from torch_helpers import (DTYPES, ACTIVATIONS, SMOKE_ACTIVATIONS, make, affine,
                           has_cpp_compiler)  # noqa: E402


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
