#!/usr/bin/env bash
# Install every Debian 12 package that building, testing, benchmarking, fuzzing
# and the deployment checks need. Idempotent and fast when all is installed.
# Runs as root (or through sudo when available). Non-interactive.
set -euo pipefail

PKGS=(
    # build
    meson ninja-build pkg-config gcc clang libclang-rt-14-dev clang-format
    libuv1-dev libcjson-dev libcurl4-openssl-dev zlib1g-dev libssl-dev libexpat1-dev
    libhttp-parser-dev
    # tests
    libcriterion-dev valgrind curl ca-certificates python3 procps
    # S3 test peer (radosgw on a one-node Ceph)
    radosgw ceph-mon ceph-osd
    # benchmarks
    wrk
    # deployment checks
    prometheus yamllint
)
# kubectl (for `kubectl kustomize`): Debian's kubernetes-client, unless a
# kubectl from another package is already installed (the two conflict).
if ! command -v kubectl >/dev/null 2>&1; then
    PKGS+=(kubernetes-client)
fi

missing=()
for p in "${PKGS[@]}"; do
    st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
    case "$st" in
    ii*) ;;
    *) missing+=("$p") ;;
    esac
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-deps: all ${#PKGS[@]} packages present"
    exit 0
fi

SUDO=()
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo -n)
    else
        echo "install-deps: need root to install: ${missing[*]}" >&2
        exit 1
    fi
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when they are missing or older than a day.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -n 1)" ]; then
    "${SUDO[@]}" apt-get update -q
fi
if ! "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null; then
    # Stale lists (a package version vanished from the mirror): refresh once.
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
fi
echo "install-deps: done"
