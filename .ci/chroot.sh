#!/usr/bin/env bash
# Debian chroots for building and testing wheels on other systems than this
# one: an older glibc (bullseye, 2.31) and another architecture (arm64, run
# through qemu-user-static and binfmt_misc).  Needs root and deb.debian.org.
#
#   .ci/chroot.sh create SUITE ARCH ROOT [PACKAGE...]
#       debootstrap --variant=minbase SUITE (amd64 or arm64) into ROOT, then
#       apt-get install --no-install-recommends the packages; or, when a
#       previous run on this machine left one, the root from the cache (below)
#   .ci/chroot.sh run ROOT DIR COMMAND
#       bash -c COMMAND inside ROOT as root, with /proc and a fresh /dev/shm
#       mounted (multiprocessing and the fork test need them) and DIR
#       bind-mounted at /ci; everything is unmounted when it returns
#
# The cache: each root created is kept as a tarball under
# $GNCPU_CI_CACHE_DIR (default /var/cache/gncpu-ci; empty: no cache), named by
# its recipe (suite, arch, packages, mirror and this script), written only
# once the root is complete and under a temporary name renamed into place.
# A later `create` of the same recipe extracts a fresh copy; an entry that
# does not extract whole is deleted and the root created anew, and one older
# than $GNCPU_CI_CACHE_DAYS (default 30) too, so that the packages follow
# Debian's updates.  Storing an entry removes the other recipes' entries for
# the same suite and arch.  Nothing depends on the cache: without it (a fresh
# machine) every root is created.
set -euo pipefail
mirror=${GNCPU_DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache_dir=${GNCPU_CI_CACHE_DIR-/var/cache/gncpu-ci}
cache_days=${GNCPU_CI_CACHE_DAYS:-30}
export DEBIAN_FRONTEND=noninteractive

need_host_packages() {
    local need=() arch=$1
    command -v debootstrap >/dev/null || need+=(debootstrap)
    [ -z "$cache_dir" ] || command -v zstd >/dev/null || need+=(zstd)
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

recipe_key() {  # SUITE ARCH [PACKAGE...]: what the root is made of, hashed
    local suite=$1 arch=$2; shift 2
    { echo "$suite $arch $mirror"; printf '%s\n' "$@" | sort; cat "${BASH_SOURCE[0]}"; } |
        sha256sum | cut -c1-16
}

# Extracts ENTRY into an empty ROOT; fails on a damaged archive (zstd checks
# its checksum) or one that is not the recipe KEY.
extract_cached() {  # ENTRY ROOT KEY
    local entry=$1 root=$2 key=$3
    mkdir -p "$root"
    zstd -q -d -c "$entry" | tar --numeric-owner -xpf - -C "$root" &&
        [ "$(cat "$root/etc/gncpu-ci-recipe" 2>/dev/null)" = "$key" ]
}

store_cached() {  # ROOT ENTRY KEY SUITE ARCH: write the entry, then prune the others
    local root=$1 entry=$2 key=$3 suite=$4 arch=$5
    local tmp="$entry.tmp.$$"
    echo "$key" >"$root/etc/gncpu-ci-recipe"
    if mkdir -p "$cache_dir" 2>/dev/null &&
        tar --numeric-owner --one-file-system -cf - -C "$root" . | zstd -q -T0 -3 -o "$tmp" &&
        mv -f "$tmp" "$entry"; then
        local old
        for old in "$cache_dir/$suite-$arch-"*.tar.zst; do
            [ "$old" = "$entry" ] || rm -f "$old"
        done
        find "$cache_dir" -maxdepth 1 -name "$suite-$arch-*.tmp.*" -mmin +120 -delete 2>/dev/null || true
        echo "   cached as $entry ($(du -h "$entry" | cut -f1))"
    else
        rm -f "$tmp"
        echo "   (could not write the cache entry $entry; going on without it)" >&2
    fi
}

create() {
    local suite=$1 arch=$2 root=$3; shift 3
    need_host_packages "$arch"
    [ "$arch" = "$(dpkg --print-architecture)" ] || enable_binfmt
    local t=$SECONDS key="" entry=""
    if [ -n "$cache_dir" ]; then
        key=$(recipe_key "$suite" "$arch" "$@")
        entry="$cache_dir/$suite-$arch-$key.tar.zst"
        if [ -f "$entry" ] && [ -n "$(find "$entry" -mtime +"$cache_days")" ]; then
            echo "   cache entry $entry is over $cache_days days old: created anew"
            rm -f "$entry"
        fi
        if [ -f "$entry" ]; then
            if extract_cached "$entry" "$root" "$key"; then
                cp /etc/resolv.conf "$root/etc/resolv.conf"
                echo "   $suite $arch root from the cache ($entry): $((SECONDS - t))s"
                return
            fi
            echo "   cache entry $entry is unreadable or not this recipe: deleted, the root created anew" >&2
            rm -f "$entry"
            rm -rf --one-file-system "$root"
        fi
    fi
    debootstrap --variant=minbase --arch "$arch" "$suite" "$root" "$mirror" >"$root.debootstrap.log" 2>&1 ||
        { tail -30 "$root.debootstrap.log" >&2; exit 1; }
    echo "   debootstrap $suite $arch: $((SECONDS - t))s"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    if (($#)); then
        t=$SECONDS
        in_root "$root" "apt-get update -qq && apt-get install -y -qq --no-install-recommends $* >/tmp/apt.log 2>&1 || { tail -30 /tmp/apt.log; exit 1; }; apt-get clean"
        echo "   apt-get install $*: $((SECONDS - t))s"
    fi
    if [ -n "$cache_dir" ]; then
        t=$SECONDS
        store_cached "$root" "$entry" "$key" "$suite" "$arch"
        echo "   stored in $((SECONDS - t))s"
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
