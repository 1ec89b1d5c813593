#!/usr/bin/env bash
# A release build compiles (every target, -Werror) and carries no test
# hooks: qsnap built without -Dtest_hooks (the release configuration
# scripts/image-files.sh uses for the image) holds no "QSNAP_TEST_" string,
# while the test build the suites run does hold every knob's name (so this
# check can fail).
#
# usage: test/check-test-hooks.sh [TEST_BUILD_DIR]   (default build)
#   QSNAP_RELEASE_BUILD_DIR   release build directory (default
#                             build-release-ARCH, shared with scripts/image-files.sh)
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TEST_BUILD=${1:-build}
case "$TEST_BUILD" in /*) ;; *) TEST_BUILD=$ROOT/$TEST_BUILD ;; esac
REL=${QSNAP_RELEASE_BUILD_DIR:-$ROOT/build-release-$(dpkg --print-architecture)}

fails=0
bad() {
    echo "check-test-hooks: FAIL: $*" >&2
    fails=$((fails + 1))
}

# The knob names, as the hooks module spells them.
mapfile -t knobs < <(grep -v '^#define' "$ROOT/src/testhooks.c" | grep -o 'PREFIX "[A-Z_]*"' | sed 's/PREFIX "\(.*\)"/QSNAP_TEST_\1/')
[ ${#knobs[@]} -ge 5 ] || bad "found only ${#knobs[@]} knob names in src/testhooks.c"

if [ ! -f "$REL/build.ninja" ]; then
    meson setup "$REL" "$ROOT" --buildtype=release -Dtests=false -Dtest_hooks=false -Dfuzz=false \
        >/dev/null || { echo "check-test-hooks: meson setup $REL failed" >&2; exit 1; }
fi
hooks=$(meson introspect --buildoptions "$REL" | /usr/bin/python3 -c '
import json, sys
print([o["value"] for o in json.load(sys.stdin) if o["name"] == "test_hooks"][0])')
[ "$hooks" = False ] || bad "$REL is configured with test_hooks=$hooks"
# Every target, not only qsnap: this is also the test command's release
# compile (-O3 with -Werror finds what the debugoptimized builds do not).
ninja -C "$REL" >/dev/null || { echo "check-test-hooks: building $REL failed" >&2; exit 1; }

n=$(grep -a -o 'QSNAP_TEST_[A-Z_]*' "$REL/qsnap" | sort -u | tr '\n' ' ')
if [ -n "$n" ]; then
    bad "the release binary $REL/qsnap holds: $n"
else
    echo "check-test-hooks: ok: $REL/qsnap holds no QSNAP_TEST_ string"
fi

# The control: the test build's binary has every knob.
if [ -x "$TEST_BUILD/qsnap" ]; then
    for k in "${knobs[@]}"; do
        grep -a -q "$k" "$TEST_BUILD/qsnap" || bad "the test build's qsnap lacks $k"
    done
    [ $fails -ne 0 ] || echo "check-test-hooks: ok: $TEST_BUILD/qsnap holds the ${#knobs[@]} knobs"
else
    bad "no test build at $TEST_BUILD (build it with -Dtests=true -Dtest_hooks=true first)"
fi

[ $fails -eq 0 ] || exit 1
