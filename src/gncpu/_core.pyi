# The compiled bindings (_core.pyx): types of what gncpu and its tools use.
from typing import Any, Dict, Literal, Optional, Tuple, Union, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._stats import GroupStats
from ._types import ActivationName, BuildInfo, IsaName, OutputCacheInfo

_Activation = Optional[ActivationName]
_Stats = Union[GroupStats, Tuple[ArrayLike, ArrayLike], None]

# The C API's codes (gncpu.h), read from the compiled core.
DTYPE_CODES: Dict[str, int]
LAYOUT_CODES: Dict[str, int]
PARAMETER_DTYPES: Dict[int, str]
ACTIVATION_NAMES: Tuple[ActivationName, ...]
_FloatArray = NDArray[Any]

@overload
def group_norm(
    x: ArrayLike,
    num_groups: int,
    weight: Optional[ArrayLike] = None,
    bias: Optional[ArrayLike] = None,
    eps: float = 1e-5,
    *,
    out: Optional[_FloatArray] = None,
    activation: _Activation = None,
    return_stats: Literal[False] = False,
    channels_last: bool = False,
    stats: _Stats = None,
) -> _FloatArray: ...
@overload
def group_norm(
    x: ArrayLike,
    num_groups: int,
    weight: Optional[ArrayLike] = None,
    bias: Optional[ArrayLike] = None,
    eps: float = 1e-5,
    *,
    out: Optional[_FloatArray] = None,
    activation: _Activation = None,
    return_stats: Literal[True],
    channels_last: bool = False,
    stats: _Stats = None,
) -> Tuple[_FloatArray, _FloatArray, _FloatArray]: ...
@overload
def group_norm(
    x: ArrayLike,
    num_groups: int,
    weight: Optional[ArrayLike] = None,
    bias: Optional[ArrayLike] = None,
    eps: float = 1e-5,
    *,
    out: Optional[_FloatArray] = None,
    activation: _Activation = None,
    return_stats: bool,
    channels_last: bool = False,
    stats: _Stats = None,
) -> Union[_FloatArray, Tuple[_FloatArray, _FloatArray, _FloatArray]]: ...
def group_norm_stats(x: ArrayLike, num_groups: int, *, channels_last: bool = False) -> GroupStats: ...
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
    out: Optional[_FloatArray] = None,
) -> Tuple[_FloatArray, Optional[_FloatArray], Optional[_FloatArray]]: ...
def set_num_threads(n: Optional[int]) -> None: ...
def get_num_threads() -> int: ...
def openmp_enabled() -> bool: ...
def compiled_isas() -> Tuple[IsaName, ...]: ...
def supported_isas() -> Tuple[IsaName, ...]: ...
def isa() -> IsaName: ...
def set_isa(name: IsaName) -> None: ...
def build_info() -> BuildInfo: ...
def set_output_cache_limit(nbytes: Optional[int]) -> None: ...
def output_cache_info() -> OutputCacheInfo: ...

# For gncpu's own modules, tests and benchmarks.
def _group_norm_raw(
    dtype: int,
    layout: int,
    batch: int,
    channels: int,
    spatial: int,
    num_groups: int,
    eps: float,
    activation: Optional[str],
    x: int,
    y: int,
    weight: int = 0,
    bias: int = 0,
    mean: int = 0,
    rstd: int = 0,
    num_threads: int = 0,
    moments_mean: int = 0,
    moments_m2: int = 0,
    given_mean: int = 0,
    given_rstd: int = 0,
) -> None: ...
def _group_norm_backward_raw(
    dtype: int,
    layout: int,
    batch: int,
    channels: int,
    spatial: int,
    num_groups: int,
    activation: Optional[str],
    grad_y: int,
    x: int,
    mean: int,
    rstd: int,
    weight: int = 0,
    bias: int = 0,
    grad_x: int = 0,
    grad_weight: int = 0,
    grad_bias: int = 0,
    num_threads: int = 0,
) -> None: ...
def _set_num_threads(n: int) -> None: ...
def _num_threads_chosen() -> bool: ...
def _threads_for(asked: int) -> int: ...
def _check_layer(num_groups: int, num_channels: int, eps: float, activation: _Activation) -> None: ...
def _is_real_dtype(dtype: np.dtype[Any]) -> bool: ...
def _array_from(obj: Any, name: str) -> NDArray[Any]: ...
def _activation_hint(name: str) -> str: ...
def _layout_hint(
    shape: Optional[Tuple[int, ...]],
    channels_last: bool,
    groups: Optional[int] = None,
    param_shape: Optional[Tuple[int, ...]] = None,
) -> str: ...
def _parallel_copy(dst: NDArray[Any], src: NDArray[Any]) -> None: ...
def _parallel_xor(dst: NDArray[Any], a: NDArray[Any], b: NDArray[Any]) -> None: ...
def _set_tuning(
    cache_budget_bytes: int = 0, min_elements_per_thread: int = 0, streaming_threshold_bytes: int = 0
) -> None: ...
def _release_cached() -> None: ...
def _cached_buffer(nbytes: int) -> Optional[NDArray[np.uint8]]: ...
def _contention(region_ns: Optional[int] = None, longest_wait_ns: Optional[int] = None) -> int: ...
def _set_adaptive_base(nbytes: int) -> None: ...
