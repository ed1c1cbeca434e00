#!/usr/bin/env bash
# The C++ core on CPUs this machine is not: a pre-AVX x86-64 (must run the
# scalar kernel), a Haswell (AVX2), and AArch64 (NEON), under qemu-user.
# Then the installed wheel's Python tests (a subset) on the pre-AVX CPU.
#   .ci/emulated.sh [python-with-gncpu-installed]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python=${1:-}
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# qemu warns about CPU features TCG does not model (pcid, x2apic...): noise.
quiet() { "$@" 2> >(grep -v "TCG doesn't support requested feature" >&2); }

need=()
command -v qemu-x86_64 >/dev/null || need+=(qemu-user)
command -v aarch64-linux-gnu-g++ >/dev/null || need+=(g++-aarch64-linux-gnu)
if ((${#need[@]})); then
    echo "== installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

echo "== C++ kernel test, native ($(uname -m))"
"$root/.ci/build_kernel_test.sh" g++ "$work/test_native" x86_64
"$work/test_native"

echo "== C++ kernel test, qemu -cpu Westmere (no AVX): must run scalar"
quiet qemu-x86_64 -cpu Westmere "$work/test_native" scalar
echo "== C++ kernel test, qemu -cpu Haswell: must pick avx2"
quiet qemu-x86_64 -cpu Haswell "$work/test_native" avx2

echo "== C++ kernel test, AArch64 (cross-compiled, qemu-aarch64): must pick neon"
"$root/.ci/build_kernel_test.sh" aarch64-linux-gnu-g++ "$work/test_aarch64" aarch64
qemu-aarch64 -L /usr/aarch64-linux-gnu "$work/test_aarch64" neon

if [ -n "$python" ]; then
    echo "== installed gncpu under qemu -cpu Westmere: isa() and a test subset"
    cd "$work"
    # -X faulthandler: a fault prints the Python stack, so the log says whose
    # code (the interpreter, NumPy, gncpu) executed the illegal instruction.
    py_on() { local cpu=$1; shift; quiet qemu-x86_64 -cpu "$cpu" "$python" -X faulthandler "$@"; }
    # The interpreter, NumPy and qemu itself come from this machine and PyPI,
    # not from us: if NumPy's own vector code cannot run on the emulated CPU
    # there is nothing of gncpu's to test there (the C++ kernel test above
    # already ran the scalar kernel under Westmere).
    numpy_smoke="import numpy as np
a = np.random.default_rng(0).standard_normal(1 << 16).astype(np.float32)
float((np.exp(a) * a).sum()); np.sort(a); a.astype(np.float16)
print('python + numpy', np.__version__, 'run here')"
    if ! py_on Westmere -c "$numpy_smoke"; then
        echo "SKIPPED: this Python/NumPy does not run under qemu -cpu Westmere (see the stack above);" \
             "the gncpu-under-Westmere Python checks cannot run here" >&2
        exit 0
    fi
    py_on Westmere -c \
        "import gncpu; assert gncpu.isa() == 'scalar', gncpu.isa(); print('isa:', gncpu.isa(), gncpu.supported_isas())"
    py_on Haswell -c \
        "import gncpu; assert gncpu.isa() == 'avx2', gncpu.isa(); print('isa:', gncpu.isa(), gncpu.supported_isas())"
    py_on Westmere -m pytest "$root/tests/test_accuracy.py" \
        "$root/tests/test_bad_input.py" -p no:cacheprovider -q -x \
        -k "not python_dash_m" -o addopts="--strict-markers --strict-config"
fi
