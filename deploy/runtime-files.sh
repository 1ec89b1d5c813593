#!/bin/sh
# Builds the runtime file set of the qsnap image into DESTDIR: the binary,
# exactly the shared libraries ldd reports for it (and the dynamic loader),
# the CA bundle, and passwd/group entries for the numeric non-root UID.
# The Containerfile's last stage is a copy of this directory (FROM scratch),
# and deploy/test.sh runs the binary from it with chroot to prove the set
# is complete.
#
# usage: runtime-files.sh BINARY DESTDIR [UID]
set -eu

if [ $# -lt 2 ]; then
    echo "usage: $0 BINARY DESTDIR [UID]" >&2
    exit 2
fi
bin=$1
dest=$2
uid=${3:-65532}
cabundle=/etc/ssl/certs/ca-certificates.crt

[ -x "$bin" ] || { echo "runtime-files: $bin is not an executable" >&2; exit 1; }
[ -r "$cabundle" ] || { echo "runtime-files: $cabundle missing (install ca-certificates)" >&2; exit 1; }

# copy SRC to DEST/SRC with the symlinks resolved, under the path the
# dynamic loader asks for
copy_as() {
    mkdir -p "$dest$(dirname "$1")"
    cp -L "$1" "$dest$1"
}

mkdir -p "$dest/usr/local/bin" "$dest/etc/ssl/certs" "$dest/tmp"
chmod 1777 "$dest/tmp"
cp -L "$bin" "$dest/usr/local/bin/qsnap"
chmod 0755 "$dest/usr/local/bin/qsnap"

# ldd lines: "libx.so.1 => /path/libx.so.1 (0x...)", "/lib64/ld-linux... (0x...)",
# "linux-vdso.so.1 (0x...)" (in the kernel, nothing to copy).
libs=$(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
if ldd "$bin" | grep -q "not found"; then
    echo "runtime-files: unresolved libraries:" >&2
    ldd "$bin" | grep "not found" >&2
    exit 1
fi
for lib in $libs; do
    copy_as "$lib"
done

cp -L "$cabundle" "$dest$cabundle"
printf 'root:x:0:0:root:/:/nonexistent\nqsnap:x:%s:%s:qsnap:/nonexistent:/nonexistent\n' "$uid" "$uid" >"$dest/etc/passwd"
printf 'root:x:0:\nqsnap:x:%s:\n' "$uid" >"$dest/etc/group"
# glibc's resolver falls back to "files dns" without this file; be explicit.
printf 'hosts: files dns\n' >"$dest/etc/nsswitch.conf"
