#!/bin/sh
# Release build of qsnap for one architecture and its runtime file set: what
# the image's FROM scratch stage copies. Builds natively when ARCH is the
# build machine's, otherwise cross-compiles with cross/ARCH.ini (Debian's
# cross toolchain and :ARCH libraries: scripts/install-deps.sh cross-ARCH).
# The binary is stripped and never run here.
#
# usage: scripts/image-files.sh ARCH DESTDIR
#   ARCH      Debian architecture: amd64 or arm64
#   DESTDIR   receives the file set (created; must not exist or be empty)
#   QSNAP_IMAGE_BUILD_DIR   build directory (default build-release-ARCH)
#   QSNAP_IMAGE_UID         numeric user of the image (default 65532)
set -eu

if [ $# -ne 2 ]; then
    echo "usage: $0 ARCH DESTDIR" >&2
    exit 2
fi
arch=$1
dest=$2
root=$(cd "$(dirname "$0")/.." && pwd)
build=${QSNAP_IMAGE_BUILD_DIR:-$root/build-release-$arch}
uid=${QSNAP_IMAGE_UID:-65532}
native=$(dpkg --print-architecture)

if [ -e "$dest" ] && [ -n "$(ls -A "$dest")" ]; then
    echo "image-files: $dest is not empty" >&2
    exit 1
fi

set -- --buildtype=release -Dtests=false -Dtest_hooks=false -Dfuzz=false
if [ "$arch" != "$native" ]; then
    cross=$root/cross/$arch.ini
    if [ ! -f "$cross" ]; then
        echo "image-files: no cross file for $arch ($cross)" >&2
        exit 1
    fi
    set -- "$@" --cross-file "$cross"
fi
# A configured directory keeps its configuration (ninja re-runs meson when
# a build file changed); delete it to start over.
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" "$root" "$@" >/dev/null
fi
ninja -C "$build" qsnap >/dev/null

stage=$(mktemp -d "${TMPDIR:-/tmp}/qsnap-stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
meson install -C "$build" --no-rebuild --strip --destdir "$stage" >/dev/null
bin=$(find "$stage" -type f -name qsnap -path '*/bin/*')
sh "$root/deploy/runtime-files.sh" "$bin" "$dest" "$uid"
