"""gncpu.torch.GroupNorm, the module, and replace_group_norm, which swaps it
in for torch.nn.GroupNorm in a model."""

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import torch
from torch import nn

from .. import _core
from ._functional import group_norm


class GroupNorm(nn.GroupNorm):
    """``torch.nn.GroupNorm`` computed by gncpu, with an optional fused
    activation ("silu", "relu" or "gelu") that you choose by placing it.
    Same parameters, same state_dict.  Works with torch.jit.trace and
    torch.jit.script (both record ``torch.ops.gncpu.group_norm``).

    ``forward(input, activation=None)``: an ``activation`` given to the call
    is applied after the norm (the module's own must then be None).
    """

    activation: Optional[str]  # (for TorchScript)

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, activation=None,
                 device=None, dtype=None):
        _core._check_layer(num_groups, num_channels, eps, activation)
        super().__init__(num_groups, num_channels, eps, affine, device=device, dtype=dtype)
        self.activation = activation

    def forward(self, input: torch.Tensor, activation: Optional[str] = None) -> torch.Tensor:
        own = self.activation
        if activation is None:
            activation = own
        elif own is not None:
            raise ValueError("this GroupNorm already applies an activation; "
                             "cannot apply another as well")
        if torch.jit.is_scripting():  # TorchScript calls the registered operator
            return torch.ops.gncpu.group_norm(input, self.num_groups, self.weight, self.bias,
                                              self.eps, activation)
        return group_norm(input, self.num_groups, self.weight, self.bias, self.eps,
                          activation=activation)

    def extra_repr(self):
        text = super().extra_repr()
        return text + f", activation={self.activation!r}" if self.activation else text

    def __setstate__(self, state):
        super().__setstate__(state)
        self.__dict__.setdefault("activation", None)  # pickles of a swapped nn.GroupNorm


GroupNorm.__module__ = "gncpu.torch"  # pickles name the public path


@dataclass
class ReplaceReport:
    """What :func:`replace_group_norm` did: the qualified names (as in
    ``model.named_modules()``; "" is the model itself) of the modules it
    swapped, and of those it left alone with the reason.  ``int(report)``
    and ``len(report)`` are the number swapped."""

    swapped: List[str] = field(default_factory=list)
    skipped: List[Tuple[str, str]] = field(default_factory=list)

    def __len__(self):
        return len(self.swapped)

    def __int__(self):
        return len(self.swapped)

    def __index__(self):
        return len(self.swapped)

    def __eq__(self, other):
        if isinstance(other, int):
            return len(self.swapped) == other
        if isinstance(other, ReplaceReport):
            return (self.swapped, self.skipped) == (other.swapped, other.skipped)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # (mutable, compared by value)

    def __str__(self):
        lines = [f"gncpu: {len(self.swapped)} GroupNorm module(s) swapped"]
        lines += [f"  skipped {name or '<model>'}: {why}" for name, why in self.skipped]
        return "\n".join(lines)


ReplaceReport.__module__ = "gncpu.torch"


def replace_group_norm(model, fuse_activation=None):
    """Swaps every ``torch.nn.GroupNorm`` in ``model`` (the model itself
    included) for :class:`GroupNorm`, in place: the same module objects,
    parameters, buffers, hooks, ``state_dict`` and repr, now computed by
    gncpu.  Nothing else in the model changes: no code is read or rewritten,
    and no activation is fused (fusion needs the dataflow: see
    :func:`gncpu.torch.fuse` and ``torch.compile(backend="gncpu")``, or place
    ``GroupNorm(..., activation="silu")`` yourself).

    Returns a :class:`ReplaceReport`.  Left alone, and reported: subclasses
    of nn.GroupNorm (they may compute something else) and modules whose
    parameters are not on the CPU.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if fuse_activation:
        raise TypeError(
            "replace_group_norm no longer fuses activations (it rewrote forward from the "
            "source file, which could silently change the model); use gncpu.torch.fuse on "
            "an FX graph, torch.compile(model, backend=\"gncpu\"), or place "
            "gncpu.torch.GroupNorm(..., activation=...) yourself")
    report = ReplaceReport()
    for name, module in model.named_modules():
        if type(module) is not nn.GroupNorm:
            if isinstance(module, nn.GroupNorm) and not isinstance(module, GroupNorm):
                report.skipped.append((name, f"{type(module).__qualname__} is a subclass of "
                                             "nn.GroupNorm (it may compute something else)"))
            continue
        devices = {t.device.type for t in module.parameters()}
        if devices - {"cpu"}:
            report.skipped.append((name, f"parameters on {', '.join(sorted(devices))}; "
                                         "gncpu computes on the CPU"))
            continue
        module.__class__ = GroupNorm  # no new object: references and hooks stay valid
        module.activation = None
        report.swapped.append(name)
    return report
