# gncpu.torch: the PyTorch operator, module, model-wide swap and graph fusion.
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import torch
from torch import fx, nn

from .._stats import GroupStats
from .._types import ActivationName

__all__ = ["FusionReport", "GroupNorm", "ReplaceReport", "compile_backend",
           "distributed_group_norm", "fuse", "group_norm", "group_norm_stats",
           "replace_group_norm"]

def group_norm(
    x: torch.Tensor,
    num_groups: int,
    weight: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    eps: float = 1e-5,
    *,
    activation: Optional[ActivationName] = None,
    stats: Union[GroupStats, Tuple[Any, Any], None] = None,
) -> torch.Tensor: ...
def group_norm_stats(x: torch.Tensor, num_groups: int) -> GroupStats: ...
def distributed_group_norm(
    x_local: torch.Tensor,
    num_groups: int,
    weight: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    eps: float = 1e-5,
    group: Any = None,
    *,
    activation: Optional[ActivationName] = None,
) -> torch.Tensor: ...

class GroupNorm(nn.GroupNorm):
    activation: Optional[ActivationName]
    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        activation: Optional[ActivationName] = None,
        device: Optional[Union[torch.device, str, int]] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None: ...
    def forward(
        self, input: torch.Tensor, activation: Optional[ActivationName] = None
    ) -> torch.Tensor: ...
    def extra_repr(self) -> str: ...

@dataclass
class ReplaceReport:
    swapped: List[str] = field(default_factory=list)
    skipped: List[Tuple[str, str]] = field(default_factory=list)
    def __len__(self) -> int: ...
    def __int__(self) -> int: ...
    def __index__(self) -> int: ...

def replace_group_norm(model: nn.Module, fuse_activation: Optional[bool] = None) -> ReplaceReport: ...

@dataclass
class FusionReport:
    swapped: List[str] = field(default_factory=list)
    fused: List[str] = field(default_factory=list)
    skipped: List[Tuple[str, str]] = field(default_factory=list)

def fuse(graph_module: fx.GraphModule) -> FusionReport: ...
def compile_backend(
    graph_module: fx.GraphModule, example_inputs: Sequence[Any], **inner_options: Any
) -> Callable[..., Any]: ...
