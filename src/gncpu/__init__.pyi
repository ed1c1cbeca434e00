from . import reference as reference
from ._core import build_info as build_info
from ._core import compiled_isas as compiled_isas
from ._core import get_num_threads as get_num_threads
from ._core import group_norm as group_norm
from ._core import group_norm_backward as group_norm_backward
from ._core import group_norm_stats as group_norm_stats
from ._core import isa as isa
from ._core import openmp_enabled as openmp_enabled
from ._core import output_cache_info as output_cache_info
from ._core import set_isa as set_isa
from ._core import set_num_threads as set_num_threads
from ._core import set_output_cache_limit as set_output_cache_limit
from ._core import supported_isas as supported_isas
from ._module import GroupNorm as GroupNorm
from ._stats import GroupStats as GroupStats
from ._threads import default_num_threads as default_num_threads
from ._types import BuildInfo as BuildInfo
from ._types import IsaName as IsaName
from ._types import OutputCacheInfo as OutputCacheInfo

__version__: str
__all__ = [
    "BuildInfo",
    "GroupNorm",
    "GroupStats",
    "IsaName",
    "OutputCacheInfo",
    "__version__",
    "build_info",
    "compiled_isas",
    "default_num_threads",
    "get_num_threads",
    "group_norm",
    "group_norm_backward",
    "group_norm_stats",
    "isa",
    "openmp_enabled",
    "output_cache_info",
    "reference",
    "set_isa",
    "set_num_threads",
    "set_output_cache_limit",
    "supported_isas",
]
