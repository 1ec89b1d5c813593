#!/bin/sh
# Builds the runtime file set of the qsnap image into DESTDIR: the binary,
# exactly the shared libraries it needs (its DT_NEEDED entries, and theirs,
# resolved like the dynamic loader does), the dynamic loader itself, the CA
# bundle, and passwd/group entries for the numeric non-root UID. The
# Containerfile's last stage is a copy of this directory (FROM scratch), and
# deploy/test.sh runs the binary from it with chroot to prove the set is
# complete.
#
# The binary is only read, never run (no ldd), so this works for a binary of
# another architecture too: its ELF header names the machine, and the
# libraries are looked up in that architecture's Debian multiarch directories
# (installed with `dpkg --add-architecture` + the :ARCH packages).
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
export LC_ALL=C

die() {
    echo "runtime-files: $*" >&2
    exit 1
}

if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then
    die "$bin is not an executable"
fi
[ -r "$cabundle" ] || die "$cabundle missing (install ca-certificates)"
command -v readelf >/dev/null 2>&1 || die "readelf missing (install binutils)"

# "AArch64", "Advanced Micro Devices X86-64", ... and "ELF64"/"ELF32"
elf_id() {
    readelf -h "$1" 2>/dev/null | sed -n 's/^ *\(Class\|Machine\): *//p' | tr '\n' '|'
}

want=$(elf_id "$bin")
case "$want" in
*"X86-64"*) triplet=x86_64-linux-gnu ;;
*AArch64*) triplet=aarch64-linux-gnu ;;
*) die "$bin: unsupported or not an ELF executable (${want:-no ELF header})" ;;
esac
# The loader's default directories for that architecture, in its order.
search="/lib/$triplet /usr/lib/$triplet /lib /usr/lib"

needed() {
    readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'
}

# The first file named $1 in the search path with the binary's class and
# machine.
resolve() {
    for d in $search; do
        f=$d/$1
        if [ -f "$f" ] && [ "$(elf_id "$f")" = "$want" ]; then
            echo "$f"
            return 0
        fi
    done
    return 1
}

# copy SRC to DEST/SRC with the symlinks resolved, under the path the
# dynamic loader asks for
copy_as() {
    mkdir -p "$dest$(dirname "$1")"
    cp -L "$1" "$dest$1"
}

if readelf -d "$bin" | grep -q '(RPATH)\|(RUNPATH)'; then
    die "$bin has an RPATH/RUNPATH; the image has only the standard library directories"
fi
interp=$(readelf -l "$bin" | sed -n 's/.*\[Requesting program interpreter: \(.*\)\]$/\1/p')
[ -n "$interp" ] || die "$bin has no program interpreter (a static binary needs no file set)"
if [ ! -f "$interp" ] || [ "$(elf_id "$interp")" != "$want" ]; then
    die "dynamic loader $interp for $triplet is not installed (libc6 of that architecture)"
fi

mkdir -p "$dest/usr/local/bin" "$dest/etc/ssl/certs" "$dest/tmp"
chmod 1777 "$dest/tmp"
cp -L "$bin" "$dest/usr/local/bin/qsnap"
chmod 0755 "$dest/usr/local/bin/qsnap"
copy_as "$interp"

# Breadth-first over DT_NEEDED; $seen holds the names already resolved.
seen=" "
todo=$(needed "$bin")
missing=""
while [ -n "$todo" ]; do
    next=""
    for name in $todo; do
        case "$seen" in *" $name "*) continue ;; esac
        seen="$seen$name "
        if ! path=$(resolve "$name"); then
            missing="$missing $name"
            continue
        fi
        # The loader itself is also a DT_NEEDED of libc; it is in place already.
        [ "$(readlink -f "$path")" = "$(readlink -f "$interp")" ] && continue
        copy_as "$path"
        next="$next $(needed "$path")"
    done
    todo=$next
done
[ -z "$missing" ] || die "unresolved libraries for $triplet:$missing (searched $search)"

cp -L "$cabundle" "$dest$cabundle"
printf 'root:x:0:0:root:/:/nonexistent\nqsnap:x:%s:%s:qsnap:/nonexistent:/nonexistent\n' "$uid" "$uid" >"$dest/etc/passwd"
printf 'root:x:0:\nqsnap:x:%s:\n' "$uid" >"$dest/etc/group"
# glibc's resolver falls back to "files dns" without this file; be explicit.
printf 'hosts: files dns\n' >"$dest/etc/nsswitch.conf"
