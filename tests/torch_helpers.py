"""What the gncpu.torch tests share: dtypes, tolerances, inputs, the oracle in
torch terms.  Imported by the test_torch*.py files after their own
importorskip("torch")."""

import pytest
import torch

from gncpu import reference


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




def has_cpp_compiler():
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except (ImportError, RuntimeError):  # InvalidCxxCompiler is a RuntimeError
        return False
    return True
