from typing import Literal, Optional, Tuple, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._types import ActivationName

_Activation = Optional[ActivationName]

@overload
def group_norm(
    x: ArrayLike,
    num_groups: int,
    weight: Optional[ArrayLike] = None,
    bias: Optional[ArrayLike] = None,
    eps: float = 1e-5,
    *,
    activation: _Activation = None,
    return_stats: Literal[False] = False,
    channels_last: bool = False,
) -> NDArray[np.float64]: ...
@overload
def group_norm(
    x: ArrayLike,
    num_groups: int,
    weight: Optional[ArrayLike] = None,
    bias: Optional[ArrayLike] = None,
    eps: float = 1e-5,
    *,
    activation: _Activation = None,
    return_stats: Literal[True],
    channels_last: bool = False,
) -> Tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]: ...
def group_norm_backward(
    grad_out: ArrayLike,
    x: ArrayLike,
    mean: ArrayLike,
    rstd: ArrayLike,
    num_groups: int,
    weight: Optional[ArrayLike] = None,
    bias: Optional[ArrayLike] = None,
    *,
    activation: _Activation = None,
    channels_last: bool = False,
) -> Tuple[NDArray[np.float64], Optional[NDArray[np.float64]], Optional[NDArray[np.float64]]]: ...
