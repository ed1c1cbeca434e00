"""Fusing the activation that follows a GroupNorm into it, in graphs only.

A norm and the activation applied to its output can be computed in one pass
only where nothing else reads the norm's output.  An FX graph shows every
use of every value, so that is decided there: :func:`fuse` rewrites a
``torch.fx.GraphModule`` (from ``torch.fx.symbolic_trace``, or the graph
TorchDynamo hands a backend), and :func:`compile_backend` (registered as
``torch.compile(model, backend="gncpu")``) runs it before Inductor.  No
source code is read, and eager modules are never changed.

In the graph, every torch GroupNorm (``nn.GroupNorm`` modules,
``F.group_norm`` calls) becomes a call of ``gncpu.torch.group_norm``; where
its output has exactly one user and that user is a SiLU, ReLU or exact GELU
(a module or a function) applied to it alone, the two become one call with
``activation=``.  A norm or activation module with hooks is left as it is
(its hooks must see what they would see without gncpu).
"""

from dataclasses import dataclass, field
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import fx, nn

from ._activations import ACTIVATIONS
from ._functional import group_norm
from ._module import GroupNorm

# The activations gncpu computes, by FX target (from _activations' table).
_ACTIVATION_FUNCTIONS = {target: (name, after_input) for name, act in ACTIVATIONS.items()
                         for target, after_input in act.functions.items()}
_ACTIVATION_METHODS = {method: name for name, act in ACTIVATIONS.items() for method in act.methods}
_ACTIVATION_MODULES = {module: name for name, act in ACTIVATIONS.items() for module in act.modules}
_TORCH_GROUP_NORMS = (F.group_norm, torch.group_norm)


@dataclass
class FusionReport:
    """What :func:`fuse` did, by node name: the norms now computed by gncpu,
    those fused with their activation (a subset), and those left alone with
    the reason."""

    swapped: List[str] = field(default_factory=list)
    fused: List[str] = field(default_factory=list)
    skipped: List[Tuple[str, str]] = field(default_factory=list)

    def __str__(self):
        lines = [f"gncpu: {len(self.swapped)} GroupNorm(s) computed by gncpu, "
                 f"{len(self.fused)} with their activation fused"]
        lines += [f"  skipped {name}: {why}" for name, why in self.skipped]
        return "\n".join(lines)


FusionReport.__module__ = "gncpu.torch"


def _has_hooks(module):
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or getattr(module, "_backward_pre_hooks", None))


def _argument(node, index, name, default):
    """The node's argument at position index (None: keyword only) or named name."""
    if index is not None and len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


class _Rewriter:
    def __init__(self, graph_module, report):
        self.gm = graph_module
        self.graph = graph_module.graph
        self.report = report

    def _module(self, node):
        try:
            return self.gm.get_submodule(node.target)
        except AttributeError:
            return None

    def norm_call(self, node):
        """(input, num_groups, weight, bias, eps) of a GroupNorm node gncpu may
        compute, else None (with the reason reported where one applies)."""
        if node.op == "call_module":
            module = self._module(node)
            if type(module) not in (nn.GroupNorm, GroupNorm):
                return None
            if type(module) is GroupNorm and module.activation is not None:
                return None
            if _has_hooks(module):
                self.report.skipped.append((node.name, "the module has hooks"))
                return None
            if len(node.args) != 1 or node.kwargs:
                return None
            with self.graph.inserting_before(node):
                weight = (self.graph.get_attr(f"{node.target}.weight")
                          if module.weight is not None else None)
                bias = (self.graph.get_attr(f"{node.target}.bias")
                        if module.bias is not None else None)
            return node.args[0], module.num_groups, weight, bias, module.eps
        if node.op == "call_function" and node.target in _TORCH_GROUP_NORMS:
            return (_argument(node, 0, "input", None), _argument(node, 1, "num_groups", None),
                    _argument(node, 2, "weight", None), _argument(node, 3, "bias", None),
                    _argument(node, 4, "eps", 1e-5))
        if (node.op == "call_function" and node.target is group_norm
                and node.kwargs.get("activation") is None):
            return (_argument(node, 0, "x", None), _argument(node, 1, "num_groups", None),
                    _argument(node, 2, "weight", None), _argument(node, 3, "bias", None),
                    _argument(node, 4, "eps", 1e-5))
        return None

    def activation_of(self, user, norm):
        """The name of gncpu's activation (_core.ACTIVATION_NAMES) that ``user``
        applies to the norm's output, doing nothing else; else None."""
        if user.op == "call_module":
            module = self._module(user)
            kind = _ACTIVATION_MODULES.get(type(module))
            if kind is None or any(getattr(module, name, value) != value
                                   for name, value in ACTIVATIONS[kind].settings.items()):
                return None
            if _has_hooks(module):
                self.report.skipped.append((norm.name, f"{user.name} has hooks"))
                return None
            return kind if user.args == (norm,) and not user.kwargs else None
        if user.op == "call_function":
            kind, after_input = _ACTIVATION_FUNCTIONS.get(user.target, (None, ()))
            if (kind is None or set(user.kwargs) - {"input", *after_input}
                    or len(user.args) > 1 + len(after_input)):
                return None
            for name, value in ACTIVATIONS[kind].settings.items():
                position = 1 + after_input.index(name) if name in after_input else None
                if _argument(user, position, name, value) != value:
                    return None
            return kind if _argument(user, 0, "input", None) is norm else None
        if user.op == "call_method":
            kind = _ACTIVATION_METHODS.get(user.target)
            return kind if user.args == (norm,) and not user.kwargs else None
        return None

    def run(self):
        for node in list(self.graph.nodes):
            found = self.norm_call(node)
            if found is None:
                continue
            x, num_groups, weight, bias, eps = found
            users = list(node.users)
            kind = self.activation_of(users[0], node) if len(users) == 1 else None
            if node.target is group_norm and kind is None:
                continue  # gncpu's already, and nothing to fuse
            last = users[0] if kind else node
            with self.graph.inserting_after(last):
                fused = self.graph.call_function(
                    group_norm, (x, num_groups, weight, bias, eps), {"activation": kind})
            fused.meta.update(last.meta)
            last.replace_all_uses_with(fused)
            if kind:
                self.graph.erase_node(last)
                self.report.fused.append(node.name)
            self.graph.erase_node(node)
            self.report.swapped.append(node.name)
        # (no eliminate_dead_code: it would drop in-place ops whose result is unused)
        self.gm.recompile()


def fuse(graph_module):
    """Computes every GroupNorm of an FX ``GraphModule`` with gncpu and fuses
    the activation that alone reads its output (see this module's doc), in
    place.  Returns a :class:`FusionReport`.

    >>> gm = torch.fx.symbolic_trace(model)
    >>> gncpu.torch.fuse(gm)
    """
    if not isinstance(graph_module, fx.GraphModule):
        raise TypeError("fuse takes a torch.fx.GraphModule (e.g. torch.fx.symbolic_trace(model)), "
                        f"got {type(graph_module).__name__}")
    report = FusionReport()
    _Rewriter(graph_module, report).run()
    return report


def compile_backend(graph_module, example_inputs, **inner_options):
    """A ``torch.compile`` backend: :func:`fuse` on the graph TorchDynamo
    captured (when all its inputs are CPU tensors), then Inductor.
    ``torch.compile(model, backend="gncpu")`` names it."""
    tensors = [t for t in example_inputs if isinstance(t, torch.Tensor)]
    if all(t.device.type == "cpu" for t in tensors):
        fuse(graph_module)
    from torch._dynamo import lookup_backend

    return lookup_backend("inductor")(graph_module, example_inputs, **inner_options)


