#!/usr/bin/env bash
# The documentation site builds, and its API pages are not stale.
#   .ci/docs.sh PYTHON     (a Python with gncpu and the docs extra installed:
#                           pip install ".[docs]"; torch too, for gncpu.torch)
# 1. `mkdocs build --strict` into a temporary folder: a broken link or anchor,
#    a page missing from the navigation, an include that is not there, or an
#    API object mkdocstrings cannot find (renamed or removed) fails it.
# 2. Every name in gncpu.__all__ and gncpu.torch.__all__ is documented on the
#    API pages (mkdocstrings' inventory), and every documented function and
#    class shows its docstring there (griffe reads gncpu._core, which is
#    compiled, by importing it: a failed import would leave the stubs alone,
#    signatures without docstrings).
# 3. README.md's relative links lead to files that exist, and its links into
#    docs/ to anchors the built pages have.
set -euo pipefail
python=$1
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$root"
# (not --quiet: it hides the warnings that --strict counts)
"$python" -m mkdocs build --strict --config-file "$root/mkdocs.yml" --site-dir "$work/site"
echo "docs: mkdocs build --strict passed"
cd "$work"  # outside the tree: the installed gncpu, not the checkout
"$python" - "$work/site" "$root" <<'PY'
import ast, html, importlib.util, inspect, re, sys, zlib
from pathlib import Path

site, root = Path(sys.argv[1]), Path(sys.argv[2])
raw = (site / "objects.inv").read_bytes()
inventory = {line.split(" ", 1)[0]
             for line in zlib.decompress(raw.split(b"\n", 4)[4]).decode().splitlines()}
text = ""
for page in ("api", "torch"):
    markup = (site / page / "index.html").read_text()
    text += " " + html.unescape(re.sub(r"<[^>]+>", " ", markup))


def flat(s):
    """Words only: what a docstring and its rendering have in common."""
    s = re.sub(r":(?:func|class|meth|mod|attr|data):`~?([^`]+)`", r"\1", s)
    return " ".join(re.sub(r"[`*_]", " ", s).split())


page_text = flat(text)
import gncpu

problems = []
names = [("gncpu", name, getattr(gncpu, name)) for name in gncpu.__all__]
try:
    import gncpu.torch
    names += [("gncpu.torch", name, getattr(gncpu.torch, name)) for name in gncpu.torch.__all__]
except ImportError as error:  # no torch here: the names from the source, unchecked docstrings
    print(f"docs: gncpu.torch not importable ({error}); its names read from its source")
    source = Path(importlib.util.find_spec("gncpu.torch").origin).read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets):
            names += [("gncpu.torch", name, None) for name in ast.literal_eval(node.value)]
for module, name, obj in names:
    path = f"{module}.{name}"
    if path not in inventory:
        problems.append(f"{path} is in {module}.__all__ but not documented (add `::: {path}`)")
        continue
    if not (inspect.isroutine(obj) or inspect.isclass(obj) or inspect.ismodule(obj)):
        continue
    own = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    if not own:
        continue
    first = flat(inspect.cleandoc(own).split("\n\n", 1)[0])[:60]
    if first not in page_text:
        problems.append(f"{path}: its docstring ({first!r}...) is not on the API pages")
if problems:
    sys.exit("docs: the API pages are stale:\n  " + "\n  ".join(problems))
print(f"docs: {len(names)} public names documented, docstrings shown")

links = re.findall(r"\]\(([^)\s]+)\)", (root / "README.md").read_text())
for link in links:
    if re.match(r"[a-z]+:", link) or link.startswith("#"):
        continue
    target, _, anchor = link.partition("#")
    if not (root / target).exists():
        problems.append(f"README.md links to {target}, which does not exist")
        continue
    elif anchor and target.startswith("docs/") and target.endswith(".md"):
        built = site / target[len("docs/"):-len(".md")] / "index.html"
        if target == "docs/index.md":
            built = site / "index.html"
        if f'id="{anchor}"' not in built.read_text():
            problems.append(f"README.md links to {link}: {target} has no such heading")
if problems:
    sys.exit("docs: README.md has broken links:\n  " + "\n  ".join(dict.fromkeys(problems)))
print(f"docs: README.md's {len(links)} links lead somewhere")
PY
