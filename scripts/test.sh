#!/usr/bin/env bash
# The test command: installs dependencies, builds a normal, an ASan+UBSan and
# a ThreadSanitizer configuration (all with the test hooks), starts a
# throwaway radosgw, runs every meson test suite (unit + integration) in the
# normal build and every C suite in the two sanitizer builds, plus the extra
# check scripts (test/check-*.sh: among them, that a release build holds no
# test hook and that no banned C function is called), and prints a summary
# ending in "N passed, N failed". Exits non-zero on any failure. Runs from
# any directory, without a terminal (CI=true).
#
# Environment knobs:
#   QSNAP_BUILD_DIR       normal build directory          (default build)
#   QSNAP_ASAN_BUILD_DIR  sanitizer build directory       (default build-asan)
#   QSNAP_ASAN_CC         compiler for the sanitizer build (default clang, so CI
#                         compiles with both gcc and clang; gcc works too)
#   QSNAP_SKIP_DEPS=1     do not run scripts/install-deps.sh
#   QSNAP_SKIP_ASAN=1     skip the sanitizer build and its tests
#   QSNAP_TSAN_BUILD_DIR  ThreadSanitizer build directory (default build-tsan)
#   QSNAP_TSAN_CC         compiler for the ThreadSanitizer build (default clang)
#   QSNAP_SKIP_TSAN=1     skip the ThreadSanitizer build and its tests
#   QSNAP_FUZZ_SECONDS    time per fuzz run when scripts/fuzz.sh exists (default 30)
#   QSNAP_TEST_ARGS       extra arguments for every `meson test` (e.g. a test name)
#   QSNAP_VALGRIND=1      also run the unit suite of the normal build under valgrind
#                         (slow: about 30 s per suite)
set -uo pipefail
# shellcheck disable=SC2317 # functions run through step/trap

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1

BUILD=${QSNAP_BUILD_DIR:-build}
ASAN_BUILD=${QSNAP_ASAN_BUILD_DIR:-build-asan}
ASAN_CC=${QSNAP_ASAN_CC:-clang}
TSAN_BUILD=${QSNAP_TSAN_BUILD_DIR:-build-tsan}
TSAN_CC=${QSNAP_TSAN_CC:-clang}
FUZZ_SECONDS=${QSNAP_FUZZ_SECONDS:-30}
read -r -a EXTRA_TEST_ARGS <<<"${QSNAP_TEST_ARGS:-}"
SKIP_DEPS=${QSNAP_SKIP_DEPS:-0}
SKIP_ASAN=${QSNAP_SKIP_ASAN:-0}
SKIP_TSAN=${QSNAP_SKIP_TSAN:-0}
VALGRIND=${QSNAP_VALGRIND:-0}
# qsnap warns about QSNAP_* variables it does not know, and the tests run it
# with this environment: keep the script's own knobs out of it.
unset QSNAP_BUILD_DIR QSNAP_ASAN_BUILD_DIR QSNAP_ASAN_CC QSNAP_FUZZ_SECONDS QSNAP_TEST_ARGS \
    QSNAP_SKIP_DEPS QSNAP_SKIP_ASAN QSNAP_VALGRIND QSNAP_TSAN_BUILD_DIR QSNAP_TSAN_CC QSNAP_SKIP_TSAN
export CI=${CI:-true}
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY

T_START=$(date +%s)
STEPS=()   # "status|seconds|name"
FAILED_STEPS=0
PASSED=0
FAILED=0
SKIPPED=0
RESULTS_DIR=$(mktemp -d /tmp/qsnap-test-results.XXXXXX)
RGW_DIR=""
CHILD=""   # the running step (a background job, so signals are handled at once)

say() { printf '\n==== %s\n' "$*"; }

descendants() {
    local p
    for p in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        echo "$p"
        descendants "$p"
    done
}

# Stops a step we started and everything below it: TERM, then KILL after 10 s.
kill_tree() {
    local pids p _
    read -r -a pids <<<"$1 $(descendants "$1" | tr '\n' ' ')"
    kill -TERM "${pids[@]}" 2>/dev/null
    for _ in $(seq 1 100); do
        for p in "${pids[@]}"; do
            kill -0 "$p" 2>/dev/null && break
            p=""
        done
        [ -z "$p" ] && break
        sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null
    wait "$1" 2>/dev/null
}

cleanup() {
    local rc=$?
    if [ -n "$CHILD" ]; then
        echo "test.sh: stopping the running step (pid $CHILD)" >&2
        kill_tree "$CHILD"
        CHILD=""
    fi
    if [ -n "$RGW_DIR" ]; then
        echo "test.sh: stopping radosgw ($RGW_DIR)"
        "$ROOT/test/rgw-stop.sh" "$RGW_DIR" || echo "test.sh: radosgw stop reported a problem" >&2
        RGW_DIR=""
    fi
    rm -rf "$RESULTS_DIR"
    return "$rc"
}
trap cleanup EXIT
trap 'echo "test.sh: interrupted" >&2; exit 130' INT TERM

# step NAME CMD...: run (in a background job that inherits variables but
# cannot change them), time and record one step.
step() {
    local name=$1 t0 rc
    shift
    say "$name"
    t0=$(date +%s)
    "$@" </dev/null &
    CHILD=$!
    wait "$CHILD"
    rc=$?
    CHILD=""
    local dt=$(($(date +%s) - t0))
    if [ $rc -eq 0 ]; then
        STEPS+=("ok|$dt|$name")
    else
        STEPS+=("FAIL(rc=$rc)|$dt|$name")
        FAILED_STEPS=$((FAILED_STEPS + 1))
    fi
    return "$rc"
}

# Counts the per-test results in the JSON test logs saved under tag $1.
count_results() {
    local log tag=$1
    for log in "$RESULTS_DIR/$tag".*.json; do
        [ -f "$log" ] && count_log "$log" "$tag"
    done
}

count_log() {
    local log=$1 tag=$2
    local counts
    counts=$(/usr/bin/python3 - "$log" <<'PY'
import json, sys
ok = bad = skip = 0
names = []
for line in open(sys.argv[1]):
    line = line.strip()
    if not line:
        continue
    r = json.loads(line)
    res = r.get("result", "")
    if res in ("OK", "EXPECTEDFAIL"):
        ok += 1
    elif res == "SKIP":
        skip += 1
    else:
        bad += 1
        names.append("%s(%s)" % (r.get("name", "?"), res))
print(ok, bad, skip, " ".join(names))
PY
    )
    local ok bad skip names
    read -r ok bad skip names <<<"$counts"
    PASSED=$((PASSED + ok))
    FAILED=$((FAILED + bad))
    SKIPPED=$((SKIPPED + skip))
    echo "test.sh: $tag: $ok passed, $bad failed, $skip skipped${names:+ — failed: $names}"
}

# The C compiler a configured build directory uses ("" when none).
build_cc() {
    [ -f "$1/build.ninja" ] || return 0
    /usr/bin/python3 -c 'import json, shlex, sys
cmds = json.load(open(sys.argv[1]))
print(shlex.split(cmds[0]["command"])[0] if cmds else "")' "$1/compile_commands.json" 2>/dev/null
}

configure() { # dir cc [meson options...]
    local dir=$1 cc=$2 have
    shift 2
    have=$(build_cc "$dir")
    if [ -n "$have" ] && [ "$(readlink -f "$(command -v "$have")")" = "$(readlink -f "$(command -v "$cc")")" ]; then
        meson configure "$dir" "$@" >/dev/null && return 0
    fi
    rm -rf "$dir"
    CC=$cc meson setup "$dir" "$@"
}

# Both test builds compile the test hooks (include/qsnap/testhooks.h) the
# suites drive qsnap with; test/check-test-hooks.sh checks that a release
# build holds none of them.
build_normal() {
    configure "$BUILD" "${CC:-gcc}" -Dtests=true -Dtest_hooks=true && ninja -C "$BUILD"
}

build_asan() {
    configure "$ASAN_BUILD" "$ASAN_CC" -Dtests=true -Dtest_hooks=true \
        -Db_sanitize=address,undefined -Db_lundef=false &&
        ninja -C "$ASAN_BUILD"
}

# The suites link test/criterion-lite there (Criterion's own runner cannot
# start under ThreadSanitizer; test/meson.build picks the replacement).
build_tsan() {
    configure "$TSAN_BUILD" "$TSAN_CC" -Dtests=true -Dtest_hooks=true \
        -Db_sanitize=thread -Db_lundef=false &&
        ninja -C "$TSAN_BUILD"
}

# Every C suite: the Python stand-in conformance test does not depend on the
# build and runs in the normal build only.
c_suites() { # dir
    meson test -C "$1" --list --suite unit --suite integration 2>/dev/null |
        sed -n 's#^.* / ##p' | grep -vx standin_conformance
}

# Runs the C suites of the ThreadSanitizer build. Every report, from a test
# process or from a qsnap the tests started, goes to a file of its own
# (log_path), so one in a daemon whose exit status a test does not look at
# still fails the step. TSAN_OPTIONS:
#   halt_on_error=1                  the first race ends the process
#   atexit_sleep_ms=0                no 1 s pause at every exit (the suites
#                                    time how fast qsnap exits on a signal)
#   ignore_noninstrumented_modules=1 interceptors called from the libraries
#       (which are not instrumented) check no memory: libuv closes
#       descriptors with syscall(SYS_close), which ThreadSanitizer never
#       sees, so a descriptor number reused after libuv closed it would look
#       shared between libuv's old read() and a worker's new open(). Locks,
#       condition variables and thread creation stay tracked, so a race in
#       qsnap's code (on the threadpool, the job worker or an upload thread)
#       is still reported.
#   suppressions=scripts/tsan.supp   third-party code only (none needed today)
run_tsan_tests() {
    local reports rc f
    reports=$(mktemp -d /tmp/qsnap-tsan-reports.XXXXXX)
    export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:atexit_sleep_ms=0:ignore_noninstrumented_modules=1:suppressions=$ROOT/scripts/tsan.supp:log_path=$reports/report"
    mapfile -t TSAN_TESTS < <(c_suites "$TSAN_BUILD")
    run_meson_tests "$TSAN_BUILD" "$TSAN_BUILD" --timeout-multiplier 2 "${TSAN_TESTS[@]}"
    rc=$?
    for f in "$reports"/report.*; do
        [ -f "$f" ] || continue
        echo "test.sh: ThreadSanitizer report $(basename "$f"):" >&2
        cat "$f" >&2
        rc=1
    done
    rm -rf "$reports"
    return "$rc"
}

run_meson_tests() { # dir tag [meson test args...]
    local dir=$1 tag=$2 rc
    shift 2
    rm -f "$dir"/meson-logs/testlog*.json
    meson test -C "$dir" --print-errorlogs -v "$@" "${EXTRA_TEST_ARGS[@]}"
    rc=$?
    # testlog.json, or testlog-WRAPPER.json with --wrap; counted by the caller
    local log
    for log in "$dir"/meson-logs/testlog*.json; do
        [ -f "$log" ] && cp "$log" "$RESULTS_DIR/$tag.$(basename "$log")"
    done
    return "$rc"
}

# 1. dependencies
if [ "$SKIP_DEPS" != 1 ]; then
    step "install dependencies" "$ROOT/scripts/install-deps.sh"
fi

# 2. builds
build_ok=0
step "build ($BUILD)" build_normal && build_ok=1
asan_ok=0
if [ "$SKIP_ASAN" != 1 ]; then
    step "build ASan+UBSan ($ASAN_BUILD, $ASAN_CC)" build_asan && asan_ok=1
fi
tsan_ok=0
if [ "$SKIP_TSAN" != 1 ]; then
    step "build ThreadSanitizer ($TSAN_BUILD, $TSAN_CC)" build_tsan && tsan_ok=1
fi

# 3. the S3 peer
RGW_DIR=$(mktemp -d /tmp/qsnap-ci-rgw.XXXXXX)
step "start radosgw" "$ROOT/test/rgw-start.sh" "$RGW_DIR"
if [ -n "$RGW_DIR" ] && [ -f "$RGW_DIR/env" ]; then
    # shellcheck disable=SC1091
    . "$RGW_DIR/env"
    echo "test.sh: S3 peer $QSNAP_TEST_S3_ENDPOINT bucket $QSNAP_TEST_S3_BUCKET"
else
    echo "test.sh: radosgw did not start; integration tests will fail" >&2
fi

# 4. tests, normal build: all suites
if [ $build_ok = 1 ]; then
    step "meson test ($BUILD, all suites)" run_meson_tests "$BUILD" "$BUILD"
    count_results "$BUILD"
fi

# 5. tests, sanitizer build
if [ $asan_ok = 1 ]; then
    export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:print_stacktrace=1:detect_stack_use_after_return=1:strict_string_checks=1"
    export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1"
    export LSAN_OPTIONS="suppressions=$ROOT/scripts/lsan.supp:print_suppressions=0"
    mapfile -t ASAN_TESTS < <(c_suites "$ASAN_BUILD")
    step "meson test ($ASAN_BUILD, unit + integration)" run_meson_tests "$ASAN_BUILD" "$ASAN_BUILD" \
        --timeout-multiplier 2 "${ASAN_TESTS[@]}"
    count_results "$ASAN_BUILD"
    unset ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS
fi

# 5a. tests, ThreadSanitizer build: the same C suites
if [ $tsan_ok = 1 ]; then
    step "meson test ($TSAN_BUILD, unit + integration)" run_tsan_tests
    count_results "$TSAN_BUILD"
fi

# 5b. valgrind (opt-in)
if [ "$VALGRIND" = 1 ] && [ $build_ok = 1 ]; then
    step "meson test ($BUILD, unit, valgrind)" run_meson_tests "$BUILD" "$BUILD-valgrind" --suite unit \
        --timeout-multiplier 10 \
        --wrap='valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite -q --trace-children=yes'
    count_results "$BUILD-valgrind"
fi

# 6. extra checks, when they exist
for s in deploy/test.sh test/check-*.sh; do
    [ -f "$s" ] || continue
    step "check $s" bash "$s"
done
# the arm64 build under qemu-user, checked by amd64 integration tests
if [ $build_ok = 1 ]; then
    step "arm64 under qemu (test/arm64-smoke.sh)" bash test/arm64-smoke.sh "$BUILD"
fi
if [ -f scripts/fuzz.sh ]; then
    step "fuzz (scripts/fuzz.sh, ${FUZZ_SECONDS}s)" env QSNAP_FUZZ_SECONDS="$FUZZ_SECONDS" bash scripts/fuzz.sh
fi

# 7. stop the peer before the summary (the EXIT trap covers failures)
if [ -n "$RGW_DIR" ]; then
    d=$RGW_DIR
    RGW_DIR=""
    step "stop radosgw" "$ROOT/test/rgw-stop.sh" "$d"
fi

# Summary
say "summary"
for s in "${STEPS[@]}"; do
    IFS='|' read -r st dt name <<<"$s"
    printf '  %-12s %5ss  %s\n' "$st" "$dt" "$name"
done
echo "  total $(($(date +%s) - T_START))s; meson tests skipped: $SKIPPED"
echo "$PASSED passed, $FAILED failed"
if [ $FAILED -ne 0 ] || [ $FAILED_STEPS -ne 0 ]; then
    echo "RESULT: FAIL ($FAILED_STEPS failed steps)"
    exit 1
fi
echo "RESULT: OK"
exit 0
