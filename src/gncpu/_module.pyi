from typing import Any, Dict, Mapping, Optional

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._types import ActivationName

class GroupNorm:
    num_groups: int
    num_channels: int
    eps: float
    affine: bool
    activation: Optional[ActivationName]
    channels_last: bool
    weight: Optional[NDArray[np.float32]]
    bias: Optional[NDArray[np.float32]]
    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        activation: Optional[ActivationName] = None,
        channels_last: bool = False,
    ) -> None: ...
    def state_dict(self) -> Dict[str, NDArray[np.float32]]: ...
    def load_state_dict(self, state_dict: Mapping[str, ArrayLike]) -> None: ...
    def __call__(
        self, x: ArrayLike, out: Optional[NDArray[np.floating[Any]]] = None
    ) -> NDArray[np.floating[Any]]: ...
