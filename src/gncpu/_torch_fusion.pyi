# Activation fusion for gncpu.torch.replace_group_norm (_torch_fusion.py).
from torch import nn

def fuse_activations(model: nn.Module) -> int: ...
