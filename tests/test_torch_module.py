"""gncpu.torch.GroupNorm and replace_group_norm: a torch.nn.GroupNorm with the
same state, swapped into models in place, hooks, training and pickling.
Skipped without torch."""

import copy
import io
import pickle

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import gncpu  # noqa: E402
import gncpu.torch as gt  # noqa: E402
from torch_helpers import (DTYPES, make, assert_close_to_oracle)  # noqa: E402


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
