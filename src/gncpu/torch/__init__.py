"""gncpu for PyTorch: a real operator, a module, a model-wide swap and a
graph pass that fuses the activation after a norm.

    >>> import torch, gncpu.torch
    >>> y = gncpu.torch.group_norm(torch.randn(1, 320, 64, 64), 32, activation="silu")

``torch.ops.gncpu.group_norm(x, num_groups, weight, bias, eps, activation)``
is registered with ``torch.library`` (fake kernel, autograd, vmap), so that
autograd, ``torch.compile``, ``torch.export`` and ``torch.jit.trace`` see an
operator; ``torch.onnx.export`` sees torch's own GroupNorm and activation.
It reads the tensor's memory through gncpu's C API (no NumPy) and returns
ordinary tensors from torch's allocator.  Threads: ``torch.get_num_threads()``
unless ``gncpu.set_num_threads`` was called.

The package: _checks (what is accepted), _kernels (the C kernels on tensor
memory), _ops (the registered operators), _functional (the public function
and how each caller reaches the kernel), _module (the module and the swap),
_fusion (the FX pass and the torch.compile backend), _stats (statistics that
merge: group_norm_stats, stats=, distributed_group_norm).  Importing it imports
torch; ``import gncpu`` alone never does.
"""

import torch as _torch

from . import _ops  # registers the operators  # noqa: F401
from ._functional import group_norm
from ._fusion import FusionReport, compile_backend, fuse
from ._module import GroupNorm, ReplaceReport, replace_group_norm
from ._stats import distributed_group_norm, group_norm_stats

__all__ = ["FusionReport", "GroupNorm", "ReplaceReport", "compile_backend",
           "distributed_group_norm", "fuse", "group_norm", "group_norm_stats",
           "replace_group_norm"]

compile_backend.__module__ = "gncpu.torch"
fuse.__module__ = "gncpu.torch"
replace_group_norm.__module__ = "gncpu.torch"
group_norm_stats.__module__ = "gncpu.torch"
distributed_group_norm.__module__ = "gncpu.torch"

try:  # torch.compile(model, backend="gncpu") (the entry point names it too)
    from torch._dynamo import list_backends as _list_backends
    from torch._dynamo import register_backend as _register_backend

    if "gncpu" not in _list_backends(exclude_tags=()):
        _register_backend(compile_backend, name="gncpu")
except Exception:  # noqa: BLE001 - a torch without TorchDynamo: the backend is unnamed
    pass
del _torch
