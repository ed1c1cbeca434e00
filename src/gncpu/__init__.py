"""gncpu: the fastest and most accurate Group Normalization on the CPU.

    >>> import numpy as np, gncpu
    >>> x = np.random.default_rng(0).standard_normal((1, 320, 64, 64), dtype=np.float32)
    >>> y = gncpu.group_norm(x, 32)

The kernel in use is chosen at import from what the CPU supports (see
``gncpu.isa()``); the environment variable ``GNCPU_ISA`` picks another.
"""

import os as _os
import warnings as _warnings

from ._core import (
    build_info,
    compiled_isas,
    get_num_threads,
    group_norm,
    group_norm_backward,
    group_norm_stats,
    isa,
    openmp_enabled,
    output_cache_info,
    set_isa,
    set_num_threads,
    set_output_cache_limit,
    supported_isas,
)
from . import reference
from ._module import GroupNorm
from ._stats import GroupStats
from ._threads import default_num_threads
from ._types import BuildInfo, IsaName, OutputCacheInfo
from ._version import __version__

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


def _configure_from_environment():
    _core._set_num_threads(default_num_threads())  # a default, not the user's choice
    raw = _os.environ.get("GNCPU_ISA", "")
    requested = raw.strip().lower()
    if requested:
        try:
            set_isa(requested)
        except ValueError:
            shown = raw if len(raw) <= 40 else raw[:40] + "..."
            _warnings.warn(
                f"GNCPU_ISA={shown!r} is not supported here "
                f"(supported: {', '.join(supported_isas())}); using {isa()!r}",
                RuntimeWarning,
                stacklevel=3,  # the user's `import gncpu`
            )


_configure_from_environment()
