"""The activations gncpu fuses, in torch's terms, each written once: its torch
function (the composite that ONNX exporters see), its derivative (forward-mode
AD and torch.func), and the FX targets the fusion pass recognises as it.
Names are the C core's (gncpu._core.ACTIVATION_NAMES; tests/test_tables.py
checks that the two agree)."""

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class TorchActivation:
    function: Callable  # z -> act(z), torch's own op
    derivative: Callable  # z -> act'(z)
    # FX targets computing this activation of their first argument:
    # call_function targets, with the names of their arguments after the input
    functions: Dict[Callable, Tuple[str, ...]] = field(default_factory=dict)
    methods: Tuple[str, ...] = ()  # call_method names (x.relu())
    modules: Tuple[type, ...] = ()  # call_module types
    # Arguments (or module attributes) that must have these values for the
    # target to compute gncpu's activation (GELU's exact form).
    settings: Dict[str, object] = field(default_factory=dict)


def _silu_derivative(z):
    s = torch.sigmoid(z)
    return s * (1 + z * (1 - s))


def _gelu_derivative(z):  # exact: Phi(z) + z phi(z)
    return 0.5 * (1 + torch.erf(z * (1 / math.sqrt(2)))) \
        + z * torch.exp(-0.5 * z * z) * (1 / math.sqrt(2 * math.pi))


ACTIVATIONS = {
    "silu": TorchActivation(F.silu, _silu_derivative, functions={F.silu: ("inplace",)},
                            modules=(nn.SiLU,)),
    "relu": TorchActivation(F.relu, lambda z: (z > 0).to(z.dtype),
                            functions={F.relu: ("inplace",), F.relu_: (), torch.relu: (),
                                       torch.relu_: ()},
                            methods=("relu", "relu_"), modules=(nn.ReLU,)),
    "gelu": TorchActivation(F.gelu, _gelu_derivative, functions={F.gelu: ("approximate",)},
                            modules=(nn.GELU,), settings={"approximate": "none"}),
}
