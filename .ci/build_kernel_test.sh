#!/usr/bin/env bash
# Builds cpp/tests/test_kernels with the per-ISA flags setup.py uses.
#   .ci/build_kernel_test.sh CXX OUTPUT ARCH [extra flags...]   (ARCH: x86_64 | aarch64)
set -euo pipefail
cxx=$1 out=$2 arch=$3
shift 3
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/cpp/src"
common=(-std=c++17 -O2 -Wall -Wextra -Werror -ffp-contract=off -fopenmp -I"$root/cpp/include" -I"$src" "$@")
objdir="$(mktemp -d)"
trap 'rm -rf "$objdir"' EXIT

isa_defs=()
compile() {  # source, flags...
    local source=$1
    shift
    "$cxx" "${common[@]}" "${isa_defs[@]}" "$@" -c "$source" -o "$objdir/$(basename "$source" .cpp).o"
}
case "$arch" in
    x86_64)
        isa_defs=(-DGNCPU_HAVE_AVX2 -DGNCPU_HAVE_AVX512)
        compile "$src/kernel_avx2.cpp" -mavx2 -mfma -mf16c
        compile "$src/kernel_avx512.cpp" -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2 -mfma -mf16c
        ;;
    aarch64)
        isa_defs=(-DGNCPU_HAVE_NEON)
        compile "$src/kernel_neon.cpp"
        ;;
    *) echo "unknown arch $arch" >&2; exit 2 ;;
esac
for f in cpu_features dispatch group_norm kernel_scalar; do compile "$src/$f.cpp"; done
compile "$root/cpp/tests/test_kernels.cpp"
"$cxx" -fopenmp "$objdir"/*.o -o "$out"
