#!/usr/bin/env bash
# Offline check of the multi-architecture image: what can be checked without
# a registry or running containers.
#
#  1. Builds the runtime file set for amd64 and arm64 (scripts/image-files.sh:
#     native and cross release builds). Each must be at most 25 MB, hold no
#     ICU and no libxml2, and only ELF files of its architecture.
#  2. Builds the Containerfile's runtime stage (FROM scratch, taken from the
#     Containerfile itself) for linux/amd64 and linux/arm64 into one manifest
#     list with `buildah build --platform ... --manifest`, from those file
#     sets instead of the build stage (which needs the network).
#  3. The manifest list names both architectures; `buildah inspect` of each
#     image shows its architecture, the entrypoint, the command and the
#     numeric user; its /usr/local/bin/qsnap is for that architecture.
#  4. Each image saves as a docker-archive named localhost/qsnap:VERSION
#     (what `k3s ctr images import` loads on a node).
#
# buildah runs with vfs storage and chroot isolation in a temporary root: no
# daemon, nothing left behind.
#
# usage: test/check-image.sh
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MAX_BYTES=25000000
ARCHS=(amd64 arm64)
declare -A MACHINE=([amd64]="Advanced Micro Devices X86-64" [arm64]=AArch64)

fails=0
ok() { echo "check-image: ok: $*"; }
bad() {
    echo "check-image: FAIL: $*" >&2
    fails=$((fails + 1))
}
die() {
    echo "check-image: $*" >&2
    exit 1
}

command -v buildah >/dev/null || die "buildah missing (scripts/install-deps.sh installs it)"
VERSION=$(sed -n "s/^ *version: *'\([^']*\)'.*/\1/p" "$ROOT/meson.build" | head -1)
[ -n "$VERSION" ] || die "no version in meson.build"

WORK=$(mktemp -d /tmp/qsnap-image.XXXXXX)
B=(buildah --root "$WORK/storage" --runroot "$WORK/run" --storage-driver vfs)
cleanup() {
    "${B[@]}" rm --all >/dev/null 2>&1
    "${B[@]}" rmi --all --force >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT

# 1. the file sets
CTX=$WORK/context
for a in "${ARCHS[@]}"; do
    set_dir=$CTX/rootfs/$a
    sh "$ROOT/scripts/image-files.sh" "$a" "$set_dir" || die "$a: build or file set failed"
    bytes=$(du -sb "$set_dir" | cut -f1)
    libs=$(find "$set_dir" -type f -name '*.so*' | wc -l)
    if [ "$bytes" -le $MAX_BYTES ]; then
        ok "$a file set: $bytes bytes (limit $MAX_BYTES), $libs libraries"
    else
        bad "$a file set: $bytes bytes, over $MAX_BYTES"
    fi
    if bad_libs=$(find "$set_dir" -type f | grep -E 'libicu|libxml2'); then
        bad "$a file set holds ICU or libxml2: $bad_libs"
    fi
    while IFS= read -r f; do
        m=$(LC_ALL=C readelf -h "$f" 2>/dev/null | sed -n 's/^ *Machine: *//p')
        [ -z "$m" ] || [ "$m" = "${MACHINE[$a]}" ] || bad "$a file set: $f is for $m"
    done < <(find "$set_dir" -type f)
done

# 2. the runtime stage, for both platforms, into one manifest list
stage=$(awk '/^FROM /{n++} {line[NR]=$0; st[NR]=n} END {for (i = 1; i <= NR; i++) if (st[i] == n) print line[i]}' \
    "$ROOT/Containerfile")
grep -qx 'FROM scratch' <<<"$stage" || die "the Containerfile's last stage is not FROM scratch"
n=$(grep -cx 'COPY --from=build /rootfs/ /' <<<"$stage")
[ "$n" = 1 ] || die "the runtime stage should copy the file set once with 'COPY --from=build /rootfs/ /'"
# shellcheck disable=SC2001,SC2016 # a one-line rewrite; ${TARGETARCH} is for buildah
sed 's#^COPY --from=build /rootfs/ /$#ARG TARGETARCH\nCOPY rootfs/${TARGETARCH}/ /#' <<<"$stage" >"$CTX/Containerfile"
LIST=localhost/qsnap:$VERSION
if ! "${B[@]}" build --isolation chroot --platform linux/amd64,linux/arm64 --manifest "$LIST" \
    -f "$CTX/Containerfile" "$CTX" >"$WORK/build.log" 2>&1; then
    cat "$WORK/build.log" >&2
    die "buildah build failed"
fi

# 3. the manifest list and each image
if ! list=$("${B[@]}" manifest inspect "$LIST"); then
    die "no manifest list $LIST"
fi
mapfile -t entries < <(/usr/bin/python3 -c '
import json, sys
for m in json.load(sys.stdin)["manifests"]:
    p = m["platform"]
    print(p["os"] + "/" + p["architecture"], m["digest"])' <<<"$list")
platforms=$(printf '%s\n' "${entries[@]}" | cut -d' ' -f1 | sort | tr '\n' ' ')
if [ "$platforms" = "linux/amd64 linux/arm64 " ]; then
    ok "manifest list $LIST: $platforms"
else
    bad "manifest list $LIST has platforms '$platforms', want linux/amd64 linux/arm64"
fi
for e in "${entries[@]}"; do
    read -r plat digest <<<"$e"
    a=${plat#linux/}
    ref="$LIST@$digest"
    got=$("${B[@]}" inspect --type image "$ref" | /usr/bin/python3 -c '
import json, sys
c = json.load(sys.stdin)["OCIv1"]
cfg = c.get("config", {})
print("%s|%s|%s|%s|%s" % (c.get("os"), c.get("architecture"), cfg.get("User"),
                          json.dumps(cfg.get("Entrypoint")), json.dumps(cfg.get("Cmd"))))')
    want="linux|$a|65532:65532|[\"qsnap\"]|[\"serve\"]"
    if [ "$got" = "$want" ]; then
        ok "$plat image: os|arch|user|entrypoint|cmd = $got"
    else
        bad "$plat image: $got, want $want"
    fi
    c=$("${B[@]}" from --pull-never "$ref" 2>/dev/null) || {
        bad "$plat: buildah from failed"
        continue
    }
    mnt=$("${B[@]}" mount "$c")
    m=$(LC_ALL=C readelf -h "$mnt/usr/local/bin/qsnap" 2>/dev/null | sed -n 's/^ *Machine: *//p')
    if [ "$m" = "${MACHINE[$a]}" ]; then
        ok "$plat image: /usr/local/bin/qsnap is $m"
    else
        bad "$plat image: /usr/local/bin/qsnap is '$m', want ${MACHINE[$a]}"
    fi
    "${B[@]}" umount "$c" >/dev/null
    "${B[@]}" rm "$c" >/dev/null

    # 4. the archive a k3s node imports
    tar=$WORK/qsnap-$VERSION-$a.tar
    if "${B[@]}" push --quiet "$ref" "docker-archive:$tar:$LIST" >/dev/null 2>&1; then
        desc=$(tar -xOf "$tar" manifest.json | /usr/bin/python3 -c '
import json, sys, tarfile
m = json.load(sys.stdin)[0]
c = json.load(tarfile.open(sys.argv[1]).extractfile(m["Config"]))
print(",".join(m["RepoTags"]), c["architecture"])' "$tar")
        if [ "$desc" = "$LIST $a" ]; then
            ok "$plat docker-archive: $desc, $(du -b "$tar" | cut -f1) bytes"
        else
            bad "$plat docker-archive: '$desc', want '$LIST $a'"
        fi
    else
        bad "$plat: buildah push to docker-archive failed"
    fi
done

if [ $fails -ne 0 ]; then
    echo "check-image: $fails check(s) failed" >&2
    exit 1
fi
echo "check-image: all checks passed"
