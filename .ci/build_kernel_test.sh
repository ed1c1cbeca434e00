#!/usr/bin/env bash
# Builds cpp/tests/test_kernels with the per-ISA flags setup.py uses (both read
# them from cpp/src/isa_list.h through cpp/isa_flags.py).
#   .ci/build_kernel_test.sh CXX OUTPUT ARCH [extra flags...]   (ARCH: x86_64 | aarch64)
set -euo pipefail
cxx=$1 out=$2 arch=$3
shift 3
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/cpp/src"
common=(-std=c++17 -O2 -Wall -Wextra -Werror -ffp-contract=off -fno-trapping-math -fopenmp -I"$root/cpp/include" -I"$src" "$@")
objdir="$(mktemp -d)"
trap 'rm -rf "$objdir"' EXIT

isa_defs=()
compile() {  # source, flags...
    local source=$1
    shift
    "$cxx" "${common[@]}" "${isa_defs[@]}" "$@" -c "$source" -o "$objdir/$(basename "$source" .cpp).o"
}
case "$arch" in x86_64 | aarch64) ;; *) echo "unknown arch $arch" >&2; exit 2 ;; esac
# The kernels and their flags come from the one ISA list (cpp/src/isa_list.h).
built=()
while IFS=$'\t' read -r name flags; do
    # shellcheck disable=SC2086  # flags are words
    compile "$src/kernel_$name.cpp" $flags
    built+=("${name^^}")
done < <(python3 "$root/cpp/isa_flags.py" "$arch")
for id in $(python3 "$root/cpp/isa_flags.py" --ids); do
    [ "$id" = SCALAR ] && continue
    if [[ " ${built[*]} " == *" $id "* ]]; then isa_defs+=("-DGNCPU_HAVE_$id=1"); else isa_defs+=("-DGNCPU_HAVE_$id=0"); fi
done
for f in c_api cpu_features dispatch runtime; do compile "$src/$f.cpp"; done
compile "$src/kernel_scalar.cpp" -Wno-psabi  # see kernel_scalar.cpp
compile "$root/cpp/tests/test_kernels.cpp"
"$cxx" -fopenmp "$objdir"/*.o -o "$out"
