#!/usr/bin/env bash
# manylinux2014 (manylinux_2_17) wheels, built from the sdist and tested where
# they are meant to run.  Every wheel is built under GNCPU_MANYLINUX=1,
# `auditwheel repair --plat manylinux_2_17_<arch>`ed (which fails if the
# extension or the vendored libgomp needs a newer symbol than the tag allows),
# checked with `auditwheel show`, installed in a fresh venv and given the smoke
# subset of the sdist's tests/ (`pytest -m smoke`: every ISA, dtype and layout
# against the oracle, forward and backward, and the rest; .ci/run's first step
# ran the whole suite on the same code).  Needs root (debootstrap, chroot,
# mount) and deb.debian.org; the Debian roots come from .ci/chroot.sh's cache
# when a previous run on this machine left them.
#
#   .ci/wheels.sh x86_64 WORK
#       the sdist; cp39 built and tested in a Debian bullseye chroot (glibc
#       2.31, GCC 10, Python 3.9: the oldest Python the package claims); cp311
#       built and tested here, vendoring bullseye's libgomp (this system's
#       GCC 12 one needs glibc 2.34); cp313 built and tested in a Debian trixie
#       chroot (Python 3.13), vendoring the same libgomp
#   .ci/wheels.sh aarch64 WORK
#       cp39 aarch64 built and tested in an arm64 Debian bullseye chroot run
#       through qemu-user-static: the sdist builds there, NEON is picked, and
#       the smoke subset runs on it
#
# WORK keeps the roots (WORK/roots), and what the chroots see at /ci
# (WORK/share: the sdist, the scripts, each wheel's build and venv).  After
# `x86_64`, WORK/share/cp311-x86_64/venv has the cp311 wheel installed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
what=$1 work=$2
share=$work/share roots=$work/roots
mkdir -p "$share" "$roots"
cp "$here/build_wheel.sh" "$share/"
started=$SECONDS
lap() { echo; echo "== wheels [$((SECONDS - started))s] $*"; }
timing() { echo "   TIMING $1: $(($SECONDS - $2))s"; }
timed() {  # LABEL COMMAND...: runs it, then its TIMING line
    local label=$1 t=$SECONDS
    shift
    "$@"
    timing "$label" "$t"
}
# Debian packages a chroot needs to build and test from the sdist.
packages="python3-dev python3-venv g++"

# A chroot left mounted (a killed run) must not let `rm -rf WORK` reach
# through a bind mount or into /proc.
unmount_all() {
    { grep -o " $roots/[^ ]*" /proc/mounts || true; } | sort -r |
        while read -r m; do umount -l "$m" || true; done
}
trap 'rc=$?; unmount_all; exit $rc' EXIT

sdist() {  # prints the sdist's path (and the rest to stderr)
    if ! ls "$share"/dist/gncpu-*.tar.gz >/dev/null 2>&1; then
        local t=$SECONDS
        {
            python3 -m venv "$work/build-tools"
            "$work/build-tools/bin/pip" install --quiet --disable-pip-version-check build
            "$work/build-tools/bin/python" -m build --sdist --outdir "$share/dist" "$root" | tail -1
            timing "sdist" $t
        } >&2
    fi
    ls "$share"/dist/gncpu-*.tar.gz
}

in_chroot() {  # ROOT-NAME COMMAND
    "$here/chroot.sh" run "$roots/$1" "$share" "$2"
}

case "$what" in
x86_64)
    lap "sdist"
    sdist_path=$(sdist)
    sdist_name=$(basename "$sdist_path")

    lap "Debian bullseye amd64 chroot (glibc 2.31, Python 3.9)"
    timed "bullseye amd64 chroot" \
        "$here/chroot.sh" create bullseye amd64 "$roots/bullseye-amd64" $packages

    lap "cp39 x86_64 wheel, built and tested in bullseye"
    timed "cp39 x86_64 wheel in bullseye (build, repair, tests)" \
        in_chroot bullseye-amd64 "/ci/build_wheel.sh python3 /ci/dist/$sdist_name /ci/cp39-x86_64 manylinux_2_17_x86_64 best"

    # The libgomp every x86-64 wheel vendors: bullseye's (GCC 10), which
    # needs glibc 2.17 at most.
    mkdir -p "$share/libgomp-x86_64"
    cp -L "$roots/bullseye-amd64/usr/lib/x86_64-linux-gnu/libgomp.so.1" "$share/libgomp-x86_64/"

    lap "cp311 x86_64 wheel, built and tested here ($(python3 --version), $(g++ --version | head -1))"
    timed "cp311 x86_64 wheel here (build, repair, tests)" \
        "$here/build_wheel.sh" python3 "$sdist_path" "$share/cp311-x86_64" manylinux_2_17_x86_64 best \
            "$share/libgomp-x86_64"

    lap "Debian trixie amd64 chroot (Python 3.13)"
    timed "trixie amd64 chroot" \
        "$here/chroot.sh" create trixie amd64 "$roots/trixie-amd64" $packages

    lap "cp313 x86_64 wheel, built and tested in trixie"
    timed "cp313 x86_64 wheel in trixie (build, repair, tests)" \
        in_chroot trixie-amd64 "/ci/build_wheel.sh python3 /ci/dist/$sdist_name /ci/cp313-x86_64 manylinux_2_17_x86_64 best /ci/libgomp-x86_64"
    ;;
aarch64)
    lap "sdist"
    sdist_path=$(sdist)
    sdist_name=$(basename "$sdist_path")

    lap "Debian bullseye arm64 chroot, through qemu-user-static (glibc 2.31, Python 3.9)"
    timed "bullseye arm64 chroot" \
        "$here/chroot.sh" create bullseye arm64 "$roots/bullseye-arm64" $packages

    lap "cp39 aarch64 wheel, built from the sdist and tested under emulation"
    timed "cp39 aarch64 wheel in emulated bullseye arm64 (build, repair, tests)" \
        in_chroot bullseye-arm64 "/ci/build_wheel.sh python3 /ci/dist/$sdist_name /ci/cp39-aarch64 manylinux_2_17_aarch64 neon"
    ;;
*)
    echo "usage: $0 x86_64|aarch64 WORK" >&2
    exit 2
    ;;
esac
lap "done"
