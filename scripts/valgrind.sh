#!/usr/bin/env bash
# Runs the integration suites with every qsnap process (qsnap serve and the
# one-shot commands the tests start) under valgrind memcheck, then reports
# the errors and definite leaks found in each process. Not part of CI (it
# takes several times longer than the normal run).
#
#   scripts/valgrind.sh [meson test names...]   (default: every integration suite)
#   QSNAP_VG_BUILD_DIR   build directory (default build-valgrind)
#
# Peers: the radosgw named by the QSNAP_TEST_S3_* variables when they are set,
# else a throwaway one started with test/rgw-start.sh.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
BUILD=${QSNAP_VG_BUILD_DIR:-build-valgrind}
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY

if [ ! -f "$BUILD/build.ninja" ]; then
    CC=${CC:-gcc} meson setup "$BUILD" -Dtests=true -Dtest_hooks=true -Dbuildtype=debugoptimized >/dev/null || exit 1
fi
ninja -C "$BUILD" >/dev/null || { ninja -C "$BUILD"; exit 1; }

RGW_DIR=""
VGDIR=$(mktemp -d /tmp/qsnap-valgrind.XXXXXX)
cleanup() {
    [ -n "$RGW_DIR" ] && "$ROOT/test/rgw-stop.sh" "$RGW_DIR" >/dev/null 2>&1
    rm -rf "$VGDIR"
}
trap cleanup EXIT

if [ -z "${QSNAP_TEST_S3_ENDPOINT:-}" ]; then
    RGW_DIR=$(mktemp -d /tmp/qsnap-vg-rgw.XXXXXX)
    "$ROOT/test/rgw-start.sh" "$RGW_DIR" >/dev/null || exit 1
    # shellcheck disable=SC1091
    . "$RGW_DIR/env"
fi

export QSNAP_TEST_VALGRIND="valgrind --error-exitcode=99 --leak-check=full \
--errors-for-leak-kinds=definite --show-leak-kinds=definite --num-callers=30 \
--suppressions=$ROOT/test/valgrind.supp --log-file=$VGDIR/qsnap-%p.log"

if [ $# -gt 0 ]; then
    TESTS=("$@")
else
    mapfile -t TESTS < <(meson test -C "$BUILD" --list --suite integration 2>/dev/null |
        sed -n 's#^.* / ##p' | grep -vx standin_conformance)
fi
echo "valgrind.sh: suites: ${TESTS[*]}"
t0=$(date +%s)
meson test -C "$BUILD" --timeout-multiplier 4 --print-errorlogs "${TESTS[@]}" >"$VGDIR/meson.out" 2>&1
mrc=$?
grep -E '^ *[0-9]+/[0-9]+ ' "$VGDIR/meson.out"
echo "valgrind.sh: meson test exit $mrc after $(($(date +%s) - t0)) s"
grep -E '^\[FAIL\]|Assertion Failed' -A2 "$VGDIR/meson.out" | grep -v '^\[----\]   $' | head -60

procs=0 bad=0 leaked=0
for f in "$VGDIR"/qsnap-*.log; do
    [ -f "$f" ] || continue
    procs=$((procs + 1))
    errs=$(sed -n 's/.*ERROR SUMMARY: \([0-9,]*\) errors.*/\1/p' "$f" | tail -1 | tr -d ,)
    def=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' "$f" | tail -1 | tr -d ,)
    if [ "${errs:-0}" != 0 ] || [ "${def:-0}" != 0 ]; then
        bad=$((bad + 1))
        [ "${def:-0}" != 0 ] && leaked=$((leaked + 1))
        echo "---- $(basename "$f"): ${errs:-?} errors, ${def:-0} bytes definitely lost"
        grep -E '^==[0-9]+== (Invalid|Conditional|Syscall|Mismatched|Source and|[0-9,]+ bytes in)' \
            -A12 "$f" | head -60
    fi
done
echo "valgrind.sh: $procs qsnap processes checked, $bad with errors or definite leaks ($leaked leaking)"
if [ "$bad" -ne 0 ] || [ "$procs" -eq 0 ]; then
    exit 1
fi
[ $mrc -eq 0 ] || echo "valgrind.sh: note: some tests failed under valgrind (timing); memcheck itself is clean"
exit 0
