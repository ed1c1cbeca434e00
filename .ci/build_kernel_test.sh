#!/usr/bin/env bash
# Builds cpp/tests/test_kernels with the per-ISA flags setup.py uses (both read
# them from cpp/src/isa_list.h through cpp/isa_flags.py).
#   .ci/build_kernel_test.sh CXX OUTPUT ARCH [extra flags...]   (ARCH: x86_64 | aarch64)
# The extra flags go to every compile and to the link (-fsanitize=... needs
# both: .ci/sanitizers.sh).
set -euo pipefail
cxx=$1 out=$2 arch=$3
shift 3
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/cpp/src"
common=(-std=c++17 -O2 -Wall -Wextra -Werror -ffp-contract=off -fno-trapping-math -fopenmp -I"$root/cpp/include" -I"$src" "$@")
objdir="$(mktemp -d)"
trap 'rm -rf "$objdir"' EXIT

# The translation units compile in the background, as many at once as there
# are CPUs; each leaves its exit status in OBJECT.rc, checked before the link.
parallel=$(nproc 2>/dev/null || echo 2)
objects=()
compile() {  # source, flags...
    local source=$1
    shift
    while (($(jobs -rp | wc -l) >= parallel)); do wait -n || true; done
    local obj
    obj="$objdir/$(basename "$source" .cpp).o"
    objects+=("$obj")
    {
        local status=0
        "$cxx" "${common[@]}" "$@" -c "$source" -o "$obj" || status=$?
        echo "$status" >"$obj.rc"
    } &
}
case "$arch" in x86_64 | aarch64) ;; *) echo "unknown arch $arch" >&2; exit 2 ;; esac
# The kernels and their flags come from the one ISA list (cpp/src/isa_list.h).
names=() flags=() have=()
while IFS=$'\t' read -r name isa_flags; do
    names+=("$name") flags+=("$isa_flags")
done < <(python3 "$root/cpp/isa_flags.py" "$arch")
for id in $(python3 "$root/cpp/isa_flags.py" --ids); do
    [ "$id" = SCALAR ] && continue
    if [[ " ${names[*]^^} " == *" $id "* ]]; then have+=("-DGNCPU_HAVE_$id=1"); else have+=("-DGNCPU_HAVE_$id=0"); fi
done
# The portable kernel first: it takes the longest (5x the others under the
# sanitizers), so the rest compile beside it.  The SIMD kernels get their own
# flags; the rest is told which of them exist.
compile "$src/kernel_scalar.cpp" "${have[@]}" -Wno-psabi  # see kernel_scalar.cpp
for i in "${!names[@]}"; do
    # shellcheck disable=SC2086  # flags are words
    compile "$src/kernel_${names[i]}.cpp" ${flags[i]}
done
for f in c_api cpu_features dispatch runtime; do compile "$src/$f.cpp" "${have[@]}"; done
compile "$root/cpp/tests/test_kernels.cpp" "${have[@]}"
wait
for obj in "${objects[@]}"; do
    [ "$(cat "$obj.rc" 2>/dev/null)" = 0 ] || { echo "FAIL: compiling $(basename "$obj" .o).cpp" >&2; exit 1; }
done
"$cxx" -fopenmp "$@" "${objects[@]}" -o "$out"
