#!/usr/bin/env bash
# The arm64 build, tested on an amd64 machine under qemu-user
# (qemu-aarch64-static with -L at the arm64 runtime file set; no binfmt
# registration needed):
#
#  1. cross-compiles the release binary and builds its runtime file set
#     (scripts/image-files.sh arm64), which must hold no ICU and no libxml2,
#     only arm64 ELF files, and no test hook (QSNAP_TEST_ string);
#  2. runs `qsnap serve` from the set and checks that the libraries the
#     process mapped are exactly the set's (so the set is complete and
#     nothing came from the host's own arm64 libraries);
#  3. runs selected amd64 criterion integration tests with QSNAP_TEST_BINARY
#     pointing at a wrapper that execs the arm64 qsnap under qemu: --version
#     and check-config (cli), backup + restore with the CLI to file:// and to
#     S3 (restore/cli_*, restore/gzip_backup_restores) and through the daemon
#     (backup/gzip_*), against the Qdrant stand-in and radosgw. The same
#     assertions as in the amd64 suites.
#
# usage: test/arm64-smoke.sh [BUILD_DIR]
#   BUILD_DIR   the amd64 build with the test binaries (default build)
#   S3 peer: QSNAP_TEST_S3_* from the environment (test/rgw-start.sh's env
#   file); without them a throwaway radosgw is started and stopped.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-build}
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
QEMU=qemu-aarch64-static

fails=0
ok() { echo "arm64-smoke: ok: $*"; }
bad() {
    echo "arm64-smoke: FAIL: $*" >&2
    fails=$((fails + 1))
}
die() {
    echo "arm64-smoke: $*" >&2
    exit 1
}

command -v "$QEMU" >/dev/null || die "$QEMU missing (scripts/install-deps.sh installs qemu-user-static)"
for t in test_cli test_restore test_backup; do
    [ -x "$BUILD/test/$t" ] || die "$BUILD/test/$t missing (build $BUILD with -Dtests=true first)"
done

WORK=$(mktemp -d /tmp/qsnap-arm64.XXXXXX)
RGW_DIR=""
SERVE_PID=""
cleanup() {
    [ -n "$SERVE_PID" ] && kill -KILL "$SERVE_PID" 2>/dev/null
    [ -n "$RGW_DIR" ] && "$ROOT/test/rgw-stop.sh" "$RGW_DIR" >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT

# 1. the file set
ROOTFS=$WORK/rootfs
sh "$ROOT/scripts/image-files.sh" arm64 "$ROOTFS" || die "arm64 build or file set failed"
nlibs=$(find "$ROOTFS" -name '*.so*' -type f | wc -l)
echo "arm64-smoke: file set $(du -sb "$ROOTFS" | cut -f1) bytes, $nlibs libraries"
if find "$ROOTFS" -type f | grep -E 'libicu|libxml2'; then
    bad "ICU or libxml2 in the arm64 file set"
fi
while IFS= read -r f; do
    m=$(LC_ALL=C readelf -h "$f" 2>/dev/null | sed -n 's/^ *Machine: *//p')
    [ -z "$m" ] || [ "$m" = AArch64 ] || bad "$f is for $m"
done < <(find "$ROOTFS" -type f)

# a release build: no test hook (test/check-test-hooks.sh checks amd64)
if grep -a -q 'QSNAP_TEST_' "$ROOTFS/usr/local/bin/qsnap"; then
    bad "the arm64 release binary holds QSNAP_TEST_ strings (test hooks)"
else
    ok "the arm64 release binary holds no test hook"
fi

WRAP=$WORK/qsnap-arm64
cat >"$WRAP" <<EOF
#!/bin/sh
exec $QEMU -L "$ROOTFS" "$ROOTFS/usr/local/bin/qsnap" "\$@"
EOF
chmod +x "$WRAP"

out=$("$WRAP" --version 2>&1) || bad "qsnap --version exited $?: $out"
echo "arm64-smoke: $WRAP --version -> $out"

# 2. the libraries a running daemon mapped
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$WORK/dest"
env -i PATH=/usr/bin:/bin QSNAP_DESTINATION="file://$WORK/dest" QSNAP_SCHEDULE=off \
    QSNAP_LISTEN="127.0.0.1:$port" QSNAP_QDRANT_URL=http://127.0.0.1:9 \
    "$WRAP" serve >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
up=0
for _ in $(seq 1 100); do
    if curl -sf -o /dev/null "http://127.0.0.1:$port/healthz"; then
        up=1
        break
    fi
    sleep 0.2
done
if [ $up = 1 ]; then
    mapped=$(awk '$6 ~ /\.so/ { print $6 }' "/proc/$SERVE_PID/maps" | sort -u)
    outside=$(grep -v "^$ROOTFS/" <<<"$mapped" | grep -v "/$QEMU\$")
    [ -z "$outside" ] || bad "qsnap serve mapped libraries from outside the file set: $outside"
    want=$(cd "$ROOTFS" && find . -name '*.so*' -type f | sed 's#^\.##' | sort)
    got=$(grep "^$ROOTFS/" <<<"$mapped" | sed "s#^$ROOTFS##" | sort)
    [ "$want" = "$got" ] || bad "mapped libraries differ from the file set: $(diff <(echo "$want") <(echo "$got") | grep '^[<>]' | tr '\n' ' ')"
    if [ -z "$outside" ] && [ "$want" = "$got" ]; then
        ok "qsnap serve mapped exactly the $nlibs libraries of the set"
    fi
    kill -TERM "$SERVE_PID"
    st=0
    wait "$SERVE_PID" || st=$?
    SERVE_PID=""
    if [ $st = 0 ]; then
        ok "qsnap serve exited 0 on SIGTERM"
    else
        bad "qsnap serve exited $st on SIGTERM"
    fi
else
    bad "qsnap serve did not answer /healthz: $(tail -5 "$WORK/serve.log")"
fi

# 3. amd64 integration tests against the arm64 binary
if [ -z "${QSNAP_TEST_S3_ENDPOINT:-}" ]; then
    RGW_DIR=$WORK/rgw
    "$ROOT/test/rgw-start.sh" "$RGW_DIR" || die "radosgw did not start"
    # shellcheck disable=SC1091
    . "$RGW_DIR/env"
fi

# The tests' environment as meson gives it, with the wrapper as the binary.
run_tests() { # test-name criterion-filter
    local name=$1 filter=$2 log=$WORK/$1.log rc
    local -a envv
    mapfile -t envv < <(meson introspect --tests "$BUILD" | /usr/bin/python3 -c '
import json, sys
t = [t for t in json.load(sys.stdin) if t["name"] == sys.argv[1]][0]
for k, v in t["env"].items():
    print("%s=%s" % (k, v))' "$name")
    [ ${#envv[@]} -gt 0 ] || die "no meson test named $name in $BUILD"
    env "${envv[@]}" QSNAP_TEST_BINARY="$WRAP" CRITERION_JOBS=1 \
        "$BUILD/test/test_$name" --filter="$filter" --full-stats >"$log" 2>&1
    rc=$?
    local synth
    synth=$(grep 'Synthesis' "$log" | tail -1)
    if [ $rc -eq 0 ] && grep -q 'Tested: [1-9]' <<<"$synth" && grep -q 'Failing: 0 | Crashing: 0' <<<"$synth"; then
        ok "$name $filter: $synth"
    else
        bad "$name $filter (rc $rc): ${synth:-no synthesis}"
        grep -E '\[FAIL\]|\[----\]' "$log" | head -20 >&2
    fi
}

run_tests cli 'cli/*'
run_tests restore 'restore/cli_@(file|s3)_to_new_name_and_over_original'
run_tests restore 'restore/gzip_backup_restores'
run_tests backup 'backup/gzip_to_@(file_destination|s3_multipart)'

if [ $fails -ne 0 ]; then
    echo "arm64-smoke: $fails check(s) failed" >&2
    exit 1
fi
echo "arm64-smoke: all checks passed"
