from typing import Optional

import numpy as np
from numpy.typing import ArrayLike, NDArray

def group_norm(
    x: ArrayLike,
    num_groups: int,
    weight: Optional[ArrayLike] = None,
    bias: Optional[ArrayLike] = None,
    eps: float = 1e-5,
) -> NDArray[np.float64]: ...
