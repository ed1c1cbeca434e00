#!/usr/bin/env bash
# The stubs agree with the installed package (mypy's stubtest), and the
# README's Python examples run and pass `mypy --strict` against those stubs.
#   .ci/typecheck.sh PYTHON     (a Python with gncpu and mypy installed)
set -euo pipefail
python=$1
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"  # outside the tree: the installed gncpu, not the checkout
"$python" -m mypy.stubtest gncpu --allowlist "$root/.ci/stubtest-allowlist.txt"
"$python" - "$root/README.md" <<'PY'
import re, sys
blocks = re.findall(r"```python\n(.*?)```", open(sys.argv[1]).read(), re.S)
assert blocks, "README has no Python example"
for i, block in enumerate(blocks):
    with open(f"readme_example_{i}.py", "w") as f:
        f.write(block)
    exec(compile(block, f"README example {i}", "exec"), {})
print(f"{len(blocks)} README example(s) ran")
PY
"$python" -m mypy --strict --no-incremental readme_example_*.py
