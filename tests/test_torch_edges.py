"""gncpu.torch at the edges PyTorch users reach: outputs used in place,
forward-mode AD and torch.func transforms, meta tensors, empty sizes,
negative-bit views, NumPy scalars, sparse and mkldnn tensors, threads, and
the package's import structure.  Each behaves as F.group_norm does or
raises a TypeError/ValueError that says why."""

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.autograd.forward_ad as fwad  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import gncpu  # noqa: E402
import gncpu.torch as gt  # noqa: E402

# torch's own: loading forward-AD decompositions warns that torch.jit.script is deprecated
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ACTIVATIONS = {None: lambda t: t, "silu": F.silu, "relu": F.relu, "gelu": F.gelu}


def rand(*shape, dtype=torch.float64, seed=0):
    return torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def torch_gn(x, groups, weight=None, bias=None, activation=None, eps=1e-5):
    return ACTIVATIONS[activation](F.group_norm(x, groups, weight, bias, eps))


# ------------------------------------------------------- ordinary outputs

class ResidualBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.norm = nn.Conv2d(64, 64, 3, padding=1), nn.GroupNorm(32, 64)

    def forward(self, x):
        out = self.norm(self.conv(x))
        out += x  # in place on the norm's output, as ResNets do
        return F.relu(out)


@pytest.mark.smoke
def test_large_outputs_take_in_place_ops_out_and_resize():
    """A 4 MiB+ output (batch 16) used as torch's own: `out += x` under
    autograd, add_ under no_grad, out=, resize_."""
    torch.manual_seed(0)
    block = ResidualBlock()
    theirs = ResidualBlock()
    theirs.load_state_dict(block.state_dict())
    gt.replace_group_norm(block)
    x = torch.randn(16, 64, 32, 32, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    y, expected = block(x), theirs(x2)
    torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-4)
    y.sum().backward()
    expected.sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        y = gt.group_norm(x, 32)
        y.add_(1.0)
        torch.cat([x, x], out=y.resize_(0))
        assert y.shape == (32, 64, 32, 32)
        z = gt.group_norm(x, 32)
        z.resize_(10)
        assert z.numel() == 10


# --------------------------------------- forward-mode AD and torch.func

@pytest.mark.smoke
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("affine", [False, True])
def test_forward_mode_ad_matches_torch(activation, affine):
    x, tx = rand(2, 8, 3, 3), rand(2, 8, 3, 3, seed=1)
    weight, bias = (rand(8, seed=2), rand(8, seed=3)) if affine else (None, None)
    tw, tb = (rand(8, seed=4), rand(8, seed=5)) if affine else (None, None)
    with fwad.dual_level():
        def dual(t, tangent):
            return None if t is None else fwad.make_dual(t, tangent)
        args = dual(x, tx), 4, dual(weight, tw), dual(bias, tb)
        ours = fwad.unpack_dual(gt.group_norm(*args, activation=activation))
        theirs = fwad.unpack_dual(torch_gn(*args, activation=activation))
    assert ours.tangent is not None
    torch.testing.assert_close(ours.primal, theirs.primal)
    torch.testing.assert_close(ours.tangent, theirs.tangent)


@pytest.mark.parametrize("transform", ["jvp", "jacfwd", "jacrev", "hessian-free grad", "vmap"])
def test_torch_func_transforms_match_torch(transform):
    x = rand(1, 4, 2, 2)
    weight = rand(4, seed=2)

    def ours(x):
        return gt.group_norm(x, 2, weight, activation="silu")

    def theirs(x):
        return torch_gn(x, 2, weight, activation="silu")

    if transform == "jvp":
        t = rand(1, 4, 2, 2, seed=1)
        got, want = torch.func.jvp(ours, (x,), (t,)), torch.func.jvp(theirs, (x,), (t,))
    elif transform == "jacfwd":
        got, want = torch.func.jacfwd(ours)(x), torch.func.jacfwd(theirs)(x)
    elif transform == "jacrev":
        got, want = torch.func.jacrev(ours)(x), torch.func.jacrev(theirs)(x)
    elif transform == "hessian-free grad":
        got = torch.func.grad(lambda x: ours(x).square().sum())(x)
        want = torch.func.grad(lambda x: theirs(x).square().sum())(x)
    else:  # a batch of batches: the vmapped dimension folds into N
        xs = rand(3, 2, 4, 2, 2, seed=3)
        got, want = torch.func.vmap(ours)(xs), torch.func.vmap(theirs)(xs)
    torch.testing.assert_close(got, want)


def test_vmap_over_per_member_weights():
    xs, weights = rand(3, 2, 4, 5, seed=1), rand(3, 4, seed=2)
    got = torch.func.vmap(lambda x, w: gt.group_norm(x, 2, w))(xs, weights)
    want = torch.stack([F.group_norm(x, 2, w) for x, w in zip(xs, weights)])
    torch.testing.assert_close(got, want)


# ------------------------------------------------ meta tensors and empties

def test_meta_tensors_give_shapes_as_torch_does():
    x = torch.empty(2, 8, 3, 3, device="meta").to(memory_format=torch.channels_last)
    for y in (gt.group_norm(x, 4), torch.ops.gncpu.group_norm(x, 4)):
        # (torch's meta GroupNorm says contiguous; its CPU kernel, and gncpu's, channels-last)
        reference = F.group_norm(torch.ones(x.shape).to(memory_format=torch.channels_last), 4)
        assert y.device.type == "meta" and y.shape == reference.shape
        assert y.stride() == reference.stride()
    y, mean, rstd = torch.ops.gncpu.group_norm_with_stats(x, 4, None, None, 1e-5, None)
    assert mean.shape == rstd.shape == (2, 4) and mean.device.type == "meta"


def test_statistics_of_an_empty_spatial_size_are_nan():
    x = torch.randn(2, 8, 0)
    y, mean, rstd = torch.ops.gncpu.group_norm_with_stats(x, 4, None, None, 1e-5, None)
    assert y.shape == x.shape
    assert torch.isnan(mean).all() and torch.isnan(rstd).all()
    _, mean_np, rstd_np = gncpu.group_norm(x.numpy(), 4, return_stats=True)
    assert np.isnan(mean_np).all() and np.isnan(rstd_np).all()  # as for NumPy input


def test_statistics_on_another_device_are_refused():
    x = torch.randn(2, 8, 3)
    meta = torch.empty(2, 4, device="meta")
    with pytest.raises(ValueError, match="meta"):
        torch.ops.gncpu.group_norm_backward(torch.ones_like(x), x, meta, meta, 4, None, None,
                                            None, [True, False, False])
    with pytest.raises(ValueError, match="meta"):
        gt.group_norm(x, 4, torch.ones(8, device="meta"))


# ------------------------------------------------------- views and scalars

@pytest.mark.smoke
@pytest.mark.parametrize("which", ["x", "weight", "bias", "conj().imag weight"])
def test_negative_bit_views_are_read_with_their_sign(which):
    x, weight, bias = rand(2, 8, 3, dtype=torch.float32), rand(8, dtype=torch.float32, seed=1), \
        rand(8, dtype=torch.float32, seed=2)
    args = {"x": x, "weight": weight, "bias": bias}
    if which == "conj().imag weight":
        args["weight"] = torch.complex(torch.zeros(8), weight).conj().imag
        assert args["weight"].is_neg()
    else:
        args[which] = torch._neg_view(args[which])
    expected = F.group_norm(args["x"].resolve_neg(), 4, args["weight"].resolve_neg(),
                            args["bias"].resolve_neg())
    torch.testing.assert_close(gt.group_norm(args["x"], 4, args["weight"], args["bias"]),
                               expected, rtol=1e-5, atol=1e-5)


def test_negative_bit_gradient_and_statistics_in_the_backward():
    x = rand(2, 8, 3)
    y, mean, rstd = torch.ops.gncpu.group_norm_with_stats(x, 4, None, None, 1e-5, None)
    grad = rand(2, 8, 3, seed=1)
    plain = torch.ops.gncpu.group_norm_backward(grad, x, mean, rstd, 4, None, None, None,
                                                [True, False, False])[0]
    negated = torch.ops.gncpu.group_norm_backward(torch._neg_view(grad), x, mean, rstd, 4, None,
                                                  None, None, [True, False, False])[0]
    torch.testing.assert_close(negated, -plain)


@pytest.mark.parametrize("grad", [False, True])
def test_numpy_scalars_work_as_python_ones(grad):
    x = rand(2, 8, 3, dtype=torch.float32).requires_grad_(grad)
    y = gt.group_norm(x, np.int64(4), eps=np.float32(1e-3))
    torch.testing.assert_close(y, F.group_norm(x, 4, eps=float(np.float32(1e-3))))
    with pytest.raises(TypeError, match="num_groups"):
        gt.group_norm(x, 4.0)
    with pytest.raises(TypeError, match="eps"):
        gt.group_norm(x, 4, eps="1e-5")


@pytest.mark.parametrize("grad", [False, True])
def test_sparse_and_mkldnn_tensors_are_refused_clearly(grad):
    x = rand(2, 8, 3, 3, dtype=torch.float32).requires_grad_(grad)
    with pytest.raises(ValueError, match="to_dense"):
        gt.group_norm(x, 4, torch.ones(8).to_sparse())
    with pytest.raises(ValueError, match="to_dense"):
        gt.group_norm(x.detach().to_sparse(), 4)
    if torch.backends.mkldnn.is_available():
        with pytest.raises(ValueError, match="mkldnn"):
            gt.group_norm(x.detach().to_mkldnn(), 4)


# ------------------------------------------------------------------ threads

def test_threads_follow_torch_unless_set_for_gncpu(monkeypatch):
    """The torch path hands the kernel torch.get_num_threads(); the core uses
    it unless gncpu.set_num_threads chose gncpu's count (None undoes that)."""
    from gncpu.torch import _kernels

    asked = []
    real_raw, real_backward = _kernels._raw, _kernels._raw_backward

    def spy(real):
        def call(*args):
            asked.append(args[-1] if len(args) in (15, 17) else None)
            return real(*args)
        return call

    monkeypatch.setattr(_kernels, "_raw", spy(real_raw))
    monkeypatch.setattr(_kernels, "_raw_backward", spy(real_backward))
    chosen = gncpu._core._num_threads_chosen()
    previous = gncpu.get_num_threads(), torch.get_num_threads()
    try:
        gncpu.set_num_threads(None)
        x = torch.randn(2, 8, 5, requires_grad=True)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            asked.clear()
            gt.group_norm(x, 4).sum().backward()
            assert [n for n in asked if n is not None] == [threads, threads]
            assert gncpu._core._threads_for(threads) == threads
        gncpu.set_num_threads(1)
        assert gncpu._core._num_threads_chosen() and gncpu._core._threads_for(2) == 1
        gncpu.set_num_threads(None)
        assert not gncpu._core._num_threads_chosen()
        assert gncpu.get_num_threads() == gncpu.default_num_threads()
    finally:
        torch.set_num_threads(previous[1])
        gncpu.set_num_threads(previous[0] if chosen else None)


# ---------------------------------------------------------------- package

@pytest.mark.parametrize("module", ["gncpu.torch._checks", "gncpu.torch._kernels",
                                    "gncpu.torch._ops", "gncpu.torch._functional",
                                    "gncpu.torch._module", "gncpu.torch._fusion",
                                    "gncpu.torch"])
def test_each_module_imports_first_without_a_cycle(module):
    code = (f"import {module}, gncpu.torch as gt, torch; "
            "assert torch.ops.gncpu.group_norm(torch.ones(1, 2, 3), 1).shape == (1, 2, 3)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_second_derivatives_raise_rather_than_being_wrong():
    x = rand(1, 4, 2, 2)
    def loss(x):
        return gt.group_norm(x, 2, activation="silu").square().sum()

    for second in (torch.func.hessian, lambda f: torch.func.jacrev(torch.func.jacrev(f))):
        with pytest.raises(RuntimeError, match="first derivatives only"):
            second(loss)(x)


# ------------------------------------------------ tensors given to the NumPy API

@pytest.mark.parametrize("make", [
    lambda: torch.ones(2, 4, 3),
    lambda: torch.ones(2, 4, 3, requires_grad=True),
    lambda: torch.ones(2, 4, 3, dtype=torch.bfloat16),
], ids=["plain", "requires_grad", "bfloat16"])
def test_numpy_api_refuses_tensors_naming_gncpu_torch(make):
    with pytest.raises(TypeError, match=r"gncpu\.torch\.group_norm"):
        gncpu.group_norm(make(), 2)
    with pytest.raises(TypeError, match=r"gncpu\.torch\.group_norm"):
        gncpu.group_norm_backward(make(), make(), np.zeros((2, 2)), np.ones((2, 2)), 2)
    with pytest.raises(TypeError, match=r"gncpu\.torch\.GroupNorm"):
        gncpu.GroupNorm(2, 4)(make())


def test_numpy_api_refuses_a_tensor_out():
    x = np.ones((2, 4, 3), np.float32)
    with pytest.raises(TypeError, match=r"gncpu\.torch"):
        gncpu.group_norm(x, 2, out=torch.empty(2, 4, 3))


def test_numpy_api_reads_parameter_tensors_as_values():
    x = rand(2, 4, 3, dtype=torch.float32).numpy()
    weight = nn.Parameter(torch.linspace(0.5, 1.5, 4, dtype=torch.bfloat16))
    expected = gncpu.group_norm(x, 2, weight.detach().float().numpy())
    np.testing.assert_array_equal(gncpu.group_norm(x, 2, weight), expected)
    layer = gncpu.GroupNorm(2, 4)
    layer.load_state_dict(nn.GroupNorm(2, 4).to(torch.bfloat16).state_dict())
    assert layer.weight.dtype == np.float32


def test_torch_api_refuses_arrays_naming_gncpu_group_norm():
    with pytest.raises(TypeError, match=r"gncpu\.group_norm"):
        gt.group_norm(np.ones((2, 4, 3), np.float32), 2)


def test_torch_api_suggests_the_activation_name():
    with pytest.raises(ValueError, match="did you mean 'silu'"):
        gt.group_norm(torch.ones(2, 4, 3), 2, activation="SiLU")
