#!/usr/bin/env bash
# Debian chroots for building and testing wheels on other systems than this
# one: an older glibc (bullseye, 2.31) and another architecture (arm64, run
# through qemu-user-static and binfmt_misc).  Needs root and deb.debian.org.
#
#   .ci/chroot.sh create SUITE ARCH ROOT [PACKAGE...]
#       debootstrap --variant=minbase SUITE (amd64 or arm64) into ROOT, then
#       apt-get install --no-install-recommends the packages
#   .ci/chroot.sh run ROOT DIR COMMAND
#       bash -c COMMAND inside ROOT as root, with /proc and a fresh /dev/shm
#       mounted (multiprocessing and the fork test need them) and DIR
#       bind-mounted at /ci; everything is unmounted when it returns
set -euo pipefail
mirror=${GNCPU_DEBIAN_MIRROR:-http://deb.debian.org/debian}
export DEBIAN_FRONTEND=noninteractive

need_host_packages() {
    local need=() arch=$1
    command -v debootstrap >/dev/null || need+=(debootstrap)
    if [ "$arch" != "$(dpkg --print-architecture)" ]; then
        command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
        command -v update-binfmts >/dev/null || need+=(binfmt-support)
    fi
    if ((${#need[@]})); then
        echo "== installing ${need[*]}"
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
}

# arm64 binaries run through qemu-aarch64-static, registered with binfmt_misc
# with the F flag (the kernel opens the interpreter at registration, so it
# needs no copy inside the chroot).
enable_binfmt() {
    local entry=/proc/sys/fs/binfmt_misc/qemu-aarch64
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    [ -e "$entry" ] || update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    [ -e "$entry" ] || update-binfmts --import qemu-aarch64 >/dev/null 2>&1 || true
    if ! grep -q '^flags: .*F' "$entry" 2>/dev/null; then
        echo "qemu-aarch64 is not registered with binfmt_misc (with the F flag):" >&2
        cat "$entry" >&2 2>/dev/null || true
        exit 1
    fi
}

in_root() {  # ROOT COMMAND: a clean environment; pip's certificate bundle if set
    local root=$1 cmd=$2
    local env=(HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
               LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
               PIP_ROOT_USER_ACTION=ignore PIP_NO_CACHE_DIR=1)
    for var in PIP_INDEX_URL http_proxy https_proxy no_proxy; do
        [ -n "${!var:-}" ] && env+=("$var=${!var}")
    done
    # pip inside verifies PyPI with the bundle this machine's pip uses (its
    # own path: the chroot's ca-certificates package rewrites the usual one).
    if [ -n "${PIP_CERT:-}" ] && [ -f "$PIP_CERT" ]; then
        cp "$PIP_CERT" "$root/etc/host-pip-ca.crt"
        env+=(PIP_CERT=/etc/host-pip-ca.crt)
    fi
    chroot "$root" /usr/bin/env -i "${env[@]}" /bin/bash -c "$cmd"
}

create() {
    local suite=$1 arch=$2 root=$3; shift 3
    need_host_packages "$arch"
    [ "$arch" = "$(dpkg --print-architecture)" ] || enable_binfmt
    local t=$SECONDS
    debootstrap --variant=minbase --arch "$arch" "$suite" "$root" "$mirror" >"$root.debootstrap.log" 2>&1 ||
        { tail -30 "$root.debootstrap.log" >&2; exit 1; }
    echo "   debootstrap $suite $arch: $((SECONDS - t))s"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    if (($#)); then
        t=$SECONDS
        in_root "$root" "apt-get update -qq && apt-get install -y -qq --no-install-recommends $* >/tmp/apt.log 2>&1 || { tail -30 /tmp/apt.log; exit 1; }"
        echo "   apt-get install $*: $((SECONDS - t))s"
    fi
}

run() {
    local root=$1 dir=$2 cmd=$3
    mkdir -p "$root/ci" "$root/proc" "$root/dev/shm"
    local mounted=()
    cleanup() {
        local i
        for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
            umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}"
        done
    }
    trap cleanup EXIT
    mount -t proc proc "$root/proc" && mounted+=("$root/proc")
    mount -t tmpfs -o mode=1777 shm "$root/dev/shm" && mounted+=("$root/dev/shm")
    mount --bind "$dir" "$root/ci" && mounted+=("$root/ci")
    local rc=0
    in_root "$root" "$cmd" || rc=$?
    cleanup
    trap - EXIT
    return $rc
}

case "${1:-}" in
    create) shift; create "$@" ;;
    run) shift; run "$@" ;;
    *) echo "usage: $0 create SUITE ARCH ROOT [PACKAGE...] | run ROOT DIR COMMAND" >&2; exit 2 ;;
esac
