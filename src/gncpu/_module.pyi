from typing import Any, Optional

import numpy as np
from numpy.typing import ArrayLike, NDArray

class GroupNorm:
    num_groups: int
    num_channels: int
    eps: float
    affine: bool
    weight: Optional[NDArray[np.float32]]
    bias: Optional[NDArray[np.float32]]
    def __init__(
        self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True
    ) -> None: ...
    def __call__(
        self, x: ArrayLike, out: Optional[NDArray[np.floating[Any]]] = None
    ) -> NDArray[np.floating[Any]]: ...
