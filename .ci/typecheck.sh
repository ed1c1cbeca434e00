#!/usr/bin/env bash
# The stubs agree with the installed package (mypy's stubtest), and the
# ```python examples of README.md and docs/*.md run and pass `mypy --strict`
# against those stubs.  Each block runs on its own, in a fresh namespace; a
# fragment that should not run goes in a ```py block (docs/development.md).
#   .ci/typecheck.sh PYTHON     (a Python with gncpu, mypy and torch installed)
set -euo pipefail
python=$1
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"  # outside the tree: the installed gncpu, not the checkout
"$python" -m mypy.stubtest gncpu --allowlist "$root/.ci/stubtest-allowlist.txt"
"$python" - "$root" <<'PY'
import pathlib, re, sys
root = pathlib.Path(sys.argv[1])
pages = [root / "README.md"] + sorted((root / "docs").glob("*.md"))
count = 0
for page in pages:
    blocks = re.findall(r"^```python\n(.*?)^```", page.read_text(), re.S | re.M)
    if page.name == "README.md":
        assert blocks, "README.md has no Python example"
    stem = "readme" if page.name == "README.md" else "docs_" + page.stem.replace("-", "_")
    for i, block in enumerate(blocks):
        where = f"{page.relative_to(root)} example {i + 1}"
        with open(f"{stem}_example_{i}.py", "w") as f:
            f.write(f"{block}# {where}\n")
        exec(compile(block, where, "exec"), {"__name__": "__main__"})
        count += 1
print(f"{count} example(s) from {len(pages)} page(s) ran")
PY
"$python" -m mypy --strict --no-incremental ./*_example_*.py
