#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer on everything that runs the C++
# core: first the C++ kernel test (cpp/tests/test_kernels.cpp, no Python in
# the way), then the extension built with GNCPU_SANITIZE=1 under the
# kernel-facing Python tests.  Any report fails the job.
#
# Left out of the Python run: tests/test_oracle*.py (the pure-NumPy
# oracle, which never calls the core) and tests/test_torch*.py (torch is not
# installed here; _core._group_norm_raw, its entry point, is tested by
# tests/test_raw.py).  Python itself is not instrumented, so the sanitizer
# runtimes are preloaded; leak checking is off there because CPython keeps
# interned objects alive at exit (the RSS test in tests/test_reliability.py
# covers growth instead).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
t0=$SECONDS
lap() { echo "   [$((SECONDS - t0))s] $*"; }
# The kernel test at -O0: a kernel file compiles in ~9 s instead of 60-80 s
# at -O1 (the instrumented optimiser is most of this step's time), and the
# test still runs in ~2 s.  The extension keeps setup.py's -O1 -g: its Python
# tests are many more calls.
sanitize=(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O0)
ubsan_options="halt_on_error=1:print_stacktrace=1"

echo "== C++ kernel test under ASan + UBSan"
"$root/.ci/build_kernel_test.sh" g++ "$work/test_kernels" x86_64 "${sanitize[@]}"
lap "built"
# A standalone program: leaks are checked too.
ASAN_OPTIONS="abort_on_error=1:detect_leaks=1" UBSAN_OPTIONS="$ubsan_options" "$work/test_kernels"
lap "C++ kernel test passed"

echo "== the extension under ASan + UBSan: kernel-facing Python tests"
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
GNCPU_SANITIZE=1 "$work/venv/bin/pip" install --quiet "$root[test]"
lap "GNCPU_SANITIZE=1 build installed"

asan=$(g++ -print-file-name=libasan.so)
ubsan=$(g++ -print-file-name=libubsan.so)
mkdir "$work/outside"
cp -r "$root/tests" "$root/pyproject.toml" "$work/outside/"
cd "$work/outside"
export LD_PRELOAD="$asan:$ubsan"
# allocator_may_return_null, max_allocation_size_mb: a huge allocation returns
# NULL (NumPy's MemoryError, as without ASan) instead of aborting, and above
# 4 GiB, so that garbage sizes from the property tests are refused, not filled.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:check_initialization_order=1:strict_init_order=1:allocator_may_return_null=1:max_allocation_size_mb=4096"
export UBSAN_OPTIONS="$ubsan_options"
export PYTHONMALLOC=malloc  # let ASan see every allocation
"$work/venv/bin/python" -c "import gncpu; print(gncpu.build_info()['flags'])"
# ASan's quarantine keeps freed memory on purpose, so resident-size growth
# means nothing here; that test runs in the normal jobs.
"$work/venv/bin/python" -m pytest tests -p no:cacheprovider -q -k "not memory_growth" \
    --ignore=tests/test_oracle.py --ignore=tests/test_oracle_backward.py \
    --ignore-glob="tests/test_torch*.py"
lap "Python tests passed"
