#!/usr/bin/env bash
# The extension built with AddressSanitizer + UndefinedBehaviorSanitizer and
# the whole test suite run under it: any report fails the job.  Python itself
# is not instrumented, so the sanitizer runtimes are preloaded; leak checking
# is off because CPython keeps interned objects alive at exit (the RSS test in
# tests/test_reliability.py covers growth instead).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
GNCPU_SANITIZE=1 "$work/venv/bin/pip" install --quiet "$root[test]"

asan=$(g++ -print-file-name=libasan.so)
ubsan=$(g++ -print-file-name=libubsan.so)
mkdir "$work/outside"
cp -r "$root/tests" "$root/pyproject.toml" "$work/outside/"
cd "$work/outside"
export LD_PRELOAD="$asan:$ubsan"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:check_initialization_order=1:strict_init_order=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export PYTHONMALLOC=malloc  # let ASan see every allocation
"$work/venv/bin/python" -c "import gncpu; print(gncpu.build_info()['flags'])"
# ASan's quarantine keeps freed memory on purpose, so resident-size growth
# means nothing here; that test runs in the normal jobs.
"$work/venv/bin/python" -m pytest tests -p no:cacheprovider -q -k "not memory_growth"
