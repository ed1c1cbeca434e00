from typing import Any, Literal, Optional, Tuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import reference as reference
from ._module import GroupNorm as GroupNorm

__version__: str

IsaName = Literal["scalar", "avx2", "avx512", "neon"]

def group_norm(
    x: ArrayLike,
    num_groups: int,
    weight: Optional[ArrayLike] = None,
    bias: Optional[ArrayLike] = None,
    eps: float = 1e-5,
    *,
    out: Optional[NDArray[np.floating[Any]]] = None,
    activation: Optional[Literal["silu", "relu", "gelu"]] = None,
    return_stats: bool = False,
    channels_last: bool = False,
) -> Any:
    """Group Normalization of x, shape (N, C, *spatial): float32, float64,
    float16 or bfloat16 (ml_dtypes), the last two computed in float32.

    Statistics per (sample, group) over C/num_groups channels x all spatial
    positions (population variance):
    y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c].
    The result has x's dtype; ``out`` (C-contiguous, x's shape and dtype,
    may be x itself) is written and returned when given.  ``activation``
    ("silu", "relu", "gelu") is applied in the same pass.  With
    ``return_stats=True`` the result is ``(y, mean, rstd)``, the statistics of
    shape (N, num_groups), float32 (float64 for float64 input).
    With ``channels_last=True`` x is (N, *spatial, C).
    Raises ValueError / TypeError on bad input, before writing anything.
    """

def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def default_num_threads() -> int: ...
def openmp_enabled() -> bool: ...
def isa() -> IsaName: ...
def supported_isas() -> Tuple[IsaName, ...]: ...
def compiled_isas() -> Tuple[IsaName, ...]: ...
def set_isa(name: IsaName) -> None: ...
def build_info() -> dict[str, Any]: ...
def set_output_cache_limit(nbytes: int) -> None:
    """Bytes of freed large (>= 4 MiB) outputs kept for reuse; 0 disables."""
def output_cache_info() -> dict[str, int]: ...
