"""The per-ISA kernels and their compiler flags, read from cpp/src/isa_list.h.

The header is the one place the ISA list is written; setup.py and
.ci/build_kernel_test.sh take the kernels to build from here.

    python cpp/isa_flags.py x86_64     # one "name<TAB>gnu flags" line per kernel
    python cpp/isa_flags.py --ids      # every ISA id: SCALAR NEON AVX2 AVX512 AVX512BF16
"""

import re
import sys
from pathlib import Path

LIST = Path(__file__).resolve().parent / "src" / "isa_list.h"
# X(ID, name, architecture, "gnu flags", "MSVC flags", needs(...)): the last
# column is for cpu_features.cpp only.
ENTRY = re.compile(r'X\(\s*(\w+),\s*(\w+),\s*(\w+),\s*"([^"]*)",\s*"([^"]*)",\s*\w+(?:\([^()]*\))?\s*\)')
ARCHITECTURES = {"x86_64": "x86_64", "amd64": "x86_64", "x64": "x86_64",
                 "aarch64": "aarch64", "arm64": "aarch64"}


def _entries():
    """(ID, name, architecture, gnu flags, MSVC flags) of each GNCPU_ISA_LIST entry."""
    text = re.sub(r"\\\n", " ", LIST.read_text())  # join continued lines
    text = re.sub(r"/\*.*?\*/", " ", text)
    body = re.search(r"#define GNCPU_ISA_LIST\(X\)(.*)", text).group(1)
    return ENTRY.findall(body)


def all_isas():
    """Every ISA id in the list (e.g. "AVX2"), the portable kernel's included."""
    return [entry[0] for entry in _entries()]


def isa_kernels(machine):
    """[(name, gnu_flags, msvc_flags)] of the SIMD kernels for `machine` (the
    portable kernel, built everywhere, is not listed)."""
    arch = ARCHITECTURES.get(machine.lower())
    return [(name, gnu.split(), msvc.split())
            for _, name, target, gnu, msvc in _entries() if target == arch]


if __name__ == "__main__":
    if sys.argv[1:] == ["--ids"]:
        print(" ".join(all_isas()))
    else:
        for name, gnu, _ in isa_kernels(sys.argv[1]):
            print(f"{name}\t{' '.join(gnu)}")
