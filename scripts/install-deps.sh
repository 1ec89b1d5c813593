#!/usr/bin/env bash
# Installs the Debian 12 packages of the named groups. Idempotent and fast
# when all is installed. Runs as root (or through sudo when available).
# Non-interactive.
#
#   scripts/install-deps.sh [GROUP...]
#
#   build        compile qsnap and build its runtime file set (what an image
#                build needs)
#   cross-arm64  cross-compile for arm64: Debian's cross toolchain and the
#                :arm64 libraries (adds the arm64 architecture to dpkg);
#                cross-amd64 likewise for amd64 from another architecture
#   cross        cross-arm64
#   test         everything scripts/test.sh runs besides the build: clang
#                (sanitizer build, fuzzing), criterion, valgrind, radosgw,
#                promtool, yamllint, kubectl, qemu-user (the arm64 smoke
#                test) and buildah (the image check)
#   bench        the benchmarks (wrk; nginx for bench/http_bench.sh)
#   all          every group
#
# Without a group: build + cross-arm64 + test, i.e. what the test command
# (scripts/test.sh) needs.
set -euo pipefail

# The host's libraries for building; the cross groups add the same -dev
# packages for the other architecture. libhttp-parser-dev is not
# co-installable across architectures (not Multi-Arch: same in Debian 12):
# the other architecture gets only its runtime library, and meson.build links
# that by its soname, with the host's (architecture-independent) header.
LIBS=(libuv1-dev libcjson-dev libcurl4-openssl-dev zlib1g-dev libssl-dev libexpat1-dev)

group_build() {
    # binutils: readelf for deploy/runtime-files.sh; ca-certificates: the
    # image's CA bundle
    PKGS+=(meson ninja-build pkg-config gcc binutils ca-certificates "${LIBS[@]}"
        libhttp-parser-dev)
}

group_cross() { # Debian architecture
    local a=$1 l
    ARCHS+=("$a")
    PKGS+=("crossbuild-essential-$a" "libhttp-parser2.9:$a")
    for l in "${LIBS[@]}"; do
        PKGS+=("$l:$a")
    done
}

group_test() {
    PKGS+=(clang libclang-rt-14-dev clang-format
        libcriterion-dev valgrind curl python3 procps
        # S3 test peer (radosgw on a one-node Ceph)
        radosgw ceph-mon ceph-osd
        # deployment checks (jq, openssl: the runbook's commands, test/check-runbook.sh)
        prometheus yamllint jq openssl
        # the arm64 build under emulation, the image check
        qemu-user-static buildah)
    # kubectl (for `kubectl kustomize`): Debian's kubernetes-client, unless a
    # kubectl from another package is already installed (the two conflict).
    if ! command -v kubectl >/dev/null 2>&1; then
        PKGS+=(kubernetes-client)
    fi
}

group_bench() {
    # nginx-light: the reference server of bench/http_bench.sh, which starts
    # its own instance on a loopback port (it never uses the system service
    # the package may start)
    PKGS+=(wrk curl procps nginx-light)
}

PKGS=()
ARCHS=()
[ $# -gt 0 ] || set -- build cross-arm64 test
for g in "$@"; do
    case "$g" in
    build) group_build ;;
    cross | cross-arm64) group_cross arm64 ;;
    cross-amd64) group_cross amd64 ;;
    test) group_test ;;
    bench) group_bench ;;
    all)
        group_build
        group_cross arm64
        group_test
        group_bench
        ;;
    *)
        echo "install-deps: unknown group '$g' (build, cross-arm64, cross-amd64, test, bench, all)" >&2
        exit 2
        ;;
    esac
done

SUDO=()
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
fi
need_root() {
    if [ "$(id -u)" != 0 ] && [ ${#SUDO[@]} -eq 0 ]; then
        echo "install-deps: need root to $*" >&2
        exit 1
    fi
}

# A cross group needs its architecture in dpkg (and package lists for it).
native=$(dpkg --print-architecture)
refresh=0
for a in "${ARCHS[@]}"; do
    [ "$a" = "$native" ] && continue
    if ! dpkg --print-foreign-architectures | grep -qx "$a"; then
        need_root "add the $a architecture"
        echo "install-deps: dpkg --add-architecture $a"
        "${SUDO[@]}" dpkg --add-architecture "$a"
        refresh=1
    fi
done

missing=()
for p in "${PKGS[@]}"; do
    st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
    case "$st" in
    ii*) ;;
    *) missing+=("$p") ;;
    esac
done
# deduplicate (groups share a few packages)
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | awk 'NF && !seen[$0]++')

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-deps: all packages present ($*)"
    exit 0
fi
need_root "install: ${missing[*]}"

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists when they are missing or older than a day, or
# an architecture was just added.
if [ $refresh = 1 ] ||
    [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -n 1)" ]; then
    "${SUDO[@]}" apt-get update -q
fi
if ! "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null; then
    # Stale lists (a package version vanished from the mirror): refresh once.
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
fi
echo "install-deps: done"
