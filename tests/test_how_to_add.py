"""cpp/README.md's "How to add" recipes list the files to change; this checks
each list against the code.  An existing instance stands for the thing to
add (GELU for an activation, bfloat16 for a dtype, NHWC for a layout, NEON
for an ISA): the source files that name it in code (comments and
docstrings aside) are exactly the files its recipe lists.  Tests
(tests/, cpp/tests/) and docs change too and are not counted.  Needs the
source tree beside the tests (CI's step 1); skipped elsewhere."""

import ast
import io
import re
import subprocess
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "cpp" / "README.md"

pytestmark = pytest.mark.skipif(not (README.exists() and (ROOT / ".git").exists()),
                                reason="no source checkout beside the tests")

# recipe title in the README -> the example instance, as code names it
RECIPES = {
    "an activation": r"GNCPU_ACT_GELU|\bgelu\b|\bGELU\b|\bGelu\w*",
    "a dtype": r"GNCPU_BF16|\bbfloat16\b|\bBF16\w*|\bbf16\b|\bBf16\w*",
    "a layout": r"GNCPU_NHWC|\bNHWC\b|\bnhwc\b|\bNhwc\w*",
    "an ISA": r"\bNEON\b|\bneon\b|\bNeon\w*",
}


def _without_cpp_comments(text):
    return re.sub(r"//[^\n]*", " ", re.sub(r"/\*.*?\*/", " ", text, flags=re.S))


def _without_python_comments_and_docstrings(text):
    docstrings = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                docstrings.update(range(first.lineno, first.end_lineno + 1))
    return " ".join(token.string for token in tokenize.generate_tokens(io.StringIO(text).readline)
                    if token.type != tokenize.COMMENT and token.start[0] not in docstrings)


def _without_cython_comments_and_docstrings(text):
    return re.sub(r"#[^\n]*", " ", re.sub(r'"""(.*?)"""', " ", text, flags=re.S))


def code_of(path):
    text = path.read_text()
    if path.suffix in (".py", ".pyi"):
        return _without_python_comments_and_docstrings(text)
    if path.suffix in (".pyx", ".pxi", ".pxd"):
        return _without_cython_comments_and_docstrings(text)
    return _without_cpp_comments(text)


def source_files():
    tracked = subprocess.run(["git", "ls-files", "cpp", "src", "setup.py"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    return [path for path in tracked
            if path.endswith((".h", ".cpp", ".inl", ".py", ".pyi", ".pyx", ".pxi", ".pxd"))
            and not path.startswith("cpp/tests/") and path != "src/gncpu/_core.cpp"]


def recipe_files(title):
    """The paths in backquotes in the README bullet that starts with **title**."""
    section = README.read_text().split("## How to add", 1)[1]
    bullet = re.search(r"^- \*\*%s\*\*(.*?)(?=^- \*\*|^#|\Z)" % re.escape(title), section,
                       re.S | re.M)
    assert bullet, f"cpp/README.md has no '{title}' recipe"
    return {path for path in re.findall(r"`([\w./<>-]+)`", bullet.group(1)) if "/" in path}


@pytest.mark.parametrize("title", RECIPES)
def test_recipe_lists_the_files_the_code_names(title):
    pattern = re.compile(RECIPES[title])
    in_code = {path for path in source_files() if pattern.search(code_of(ROOT / path))}
    listed = recipe_files(title)
    assert listed == in_code, (
        f"'{title}': listed but not naming the example: {sorted(listed - in_code)}; "
        f"naming it but not listed: {sorted(in_code - listed)}")
