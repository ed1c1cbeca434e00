"""A module-like GroupNorm, shaped like torch.nn.GroupNorm."""

import operator
import sys

import numpy as np

from ._core import _array_from, _check_layer, _is_real_dtype, group_norm


def _positive_int(value, name):
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got a bool")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if number <= 0:
        raise ValueError(f"{name} must be positive, got {number}")
    return number


class GroupNorm:
    """Callable GroupNorm layer holding float32 ``weight`` and ``bias``.

    ``GroupNorm(32, 320)(x)`` equals ``group_norm(x, 32, layer.weight,
    layer.bias, layer.eps, activation=layer.activation)``.  With
    ``affine=False`` weight and bias are None.  ``state_dict()`` and
    ``load_state_dict()`` use PyTorch's keys, so the parameters of a
    ``torch.nn.GroupNorm`` load directly::

        layer.load_state_dict({k: v.numpy() for k, v in torch_gn.state_dict().items()})
    """

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, activation=None,
                 channels_last=False):
        self.num_groups = _positive_int(num_groups, "num_groups")
        self.num_channels = _positive_int(num_channels, "num_channels")
        if self.num_channels % self.num_groups:
            raise ValueError(
                f"num_channels ({self.num_channels}) must be divisible by "
                f"num_groups ({self.num_groups})")
        _check_layer(self.num_groups, self.num_channels, eps, activation)
        self.eps = float(eps)
        self.activation = activation
        for name, flag in (("affine", affine), ("channels_last", channels_last)):
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
        self.channels_last = bool(channels_last)
        self.affine = bool(affine)
        if self.affine:
            try:
                self.weight = np.ones(self.num_channels, dtype=np.float32)
                self.bias = np.zeros(self.num_channels, dtype=np.float32)
            except MemoryError:
                raise ValueError(f"num_channels ({self.num_channels}) is too large: its weight "
                                 "and bias cannot be allocated") from None
        else:
            self.weight = None
            self.bias = None

    def __call__(self, x, out=None):
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(x, torch.Tensor):
            raise TypeError("gncpu.GroupNorm takes NumPy arrays, got a torch.Tensor: use "
                            "gncpu.torch.GroupNorm (a torch.nn.Module with the same arguments)")
        shape = np.shape(x)
        axis = -1 if self.channels_last else 1
        if len(shape) >= 2 and shape[axis] != self.num_channels:
            layout = "(N, ..., {0})" if self.channels_last else "(N, {0}, ...)"
            hint = ""
            if len(shape) >= 3 and shape[1 if self.channels_last else -1] == self.num_channels:
                hint = ("; its channels are on axis 1: drop channels_last=True" if self.channels_last
                        else "; its last axis matches: for channels-last input make the layer "
                        "with channels_last=True")
            raise ValueError(
                f"expected input with {self.num_channels} channels (shape "
                f"{layout.format(self.num_channels)}), got shape {tuple(shape)}{hint}")
        return group_norm(x, self.num_groups, self.weight, self.bias, self.eps, out=out,
                          activation=self.activation, channels_last=self.channels_last)

    def state_dict(self):
        """{"weight": ..., "bias": ...} (copies); empty when affine=False."""
        if not self.affine:
            return {}
        return {"weight": self.weight.copy(), "bias": self.bias.copy()}

    def load_state_dict(self, state_dict):
        """Loads "weight" and "bias" (any real array-likes of shape (num_channels,)),
        all or nothing: on any error nothing is changed."""
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
        expected = {"weight", "bias"} if self.affine else set()
        keys = set(state_dict.keys())
        if keys != expected:
            missing, unexpected = sorted(expected - keys), sorted(keys - expected)
            raise ValueError(f"state_dict keys do not match: missing {missing}, "
                             f"unexpected {unexpected}")
        loaded = {}
        for key in sorted(expected):
            value = _array_from(state_dict[key], key)
            if not _is_real_dtype(value.dtype):
                raise TypeError(f"{key} must be real-valued, got dtype {value.dtype}")
            if value.shape != (self.num_channels,):
                raise ValueError(
                    f"{key} must have shape ({self.num_channels},), got {value.shape}")
            loaded[key] = value.astype(np.float32)
        for key, value in loaded.items():
            setattr(self, key, value)

    def __repr__(self):
        extra = f", activation={self.activation!r}" if self.activation else ""
        extra += ", channels_last=True" if self.channels_last else ""
        return (f"GroupNorm({self.num_groups}, {self.num_channels}, eps={self.eps}, "
                f"affine={self.affine}{extra})")
