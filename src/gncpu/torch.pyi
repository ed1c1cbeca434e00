# gncpu.torch (torch.py): the PyTorch operator, module and model-wide swap.
from typing import Optional, Union

import torch
from torch import nn

from ._types import ActivationName

__all__ = ["GroupNorm", "group_norm", "replace_group_norm"]

def group_norm(
    x: torch.Tensor,
    num_groups: int,
    weight: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    eps: float = 1e-5,
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

def replace_group_norm(model: nn.Module, fuse_activation: bool = True) -> int: ...
