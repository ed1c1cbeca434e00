"""Names for the types of gncpu's API (also importable at runtime, for annotations)."""

from typing import List, Literal, Tuple, TypedDict

IsaName = Literal["scalar", "neon", "avx2", "avx512", "avx512bf16"]
ActivationName = Literal["silu", "relu", "gelu"]


class BuildInfo(TypedDict):
    """gncpu.build_info(): how this binary was built and what it runs here."""

    compiler: str
    flags: str
    openmp: bool
    compiled_isas: Tuple[IsaName, ...]
    supported_isas: Tuple[IsaName, ...]
    active_isa: IsaName
    cache_budget_bytes: int
    streaming_threshold_bytes: int
    l2_cache_bytes: int
    l3_cache_bytes: int
    forked_child: bool
    environment_notes: List[str]


class OutputCacheInfo(TypedDict):
    """gncpu.output_cache_info(): the freed large outputs kept for reuse."""

    limit: int
    adaptive: bool
    cached_bytes: int
    cached_buffers: int
