#!/usr/bin/env bash
# Builds the libFuzzer targets with clang in build-fuzz/ (ASan + UBSan) and
# runs each for N seconds (argument, or QSNAP_FUZZ_SECONDS, default 30),
# starting from the committed seed corpus in fuzz/corpus/<target>. New inputs
# go to a scratch corpus, so the repository is not modified. Exits non-zero
# when a target crashes, leaks or times out; the reproducer is kept in
# build-fuzz/artifacts/.
#
#   scripts/fuzz.sh [seconds] [target...]
#   QSNAP_FUZZ_BUILD_DIR   build directory (default build-fuzz)
#   QSNAP_FUZZ_JOBS        targets run at the same time (default 2)
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
SECONDS_PER=${1:-${QSNAP_FUZZ_SECONDS:-30}}
[ $# -gt 0 ] && shift
BUILD=${QSNAP_FUZZ_BUILD_DIR:-build-fuzz}
JOBS=${QSNAP_FUZZ_JOBS:-2}

if [ -f "$BUILD/build.ninja" ]; then
    meson configure "$BUILD" -Dfuzz=true -Dtests=false >/dev/null || exit 1
else
    CC=clang meson setup "$BUILD" -Dfuzz=true -Dtests=false >/dev/null || exit 1
fi
ninja -C "$BUILD" >/dev/null || { ninja -C "$BUILD"; exit 1; }

if [ $# -gt 0 ]; then
    TARGETS=("$@")
else
    mapfile -t TARGETS < <(find "$BUILD/fuzz" -maxdepth 1 -type f -name 'fuzz_*' -perm -u+x |
        sed 's#.*/fuzz_##' | sort)
fi
[ ${#TARGETS[@]} -gt 0 ] || { echo "fuzz.sh: no targets built" >&2; exit 1; }

WORK=$(mktemp -d /tmp/qsnap-fuzz.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
ART="$ROOT/$BUILD/artifacts"
mkdir -p "$ART"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:symbolize=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"

run_one() {
    local t=$1 corpus="$WORK/$1" log="$WORK/$1.log" rc
    mkdir -p "$corpus"
    cp -r "fuzz/corpus/$t/." "$corpus/" 2>/dev/null || true
    "$BUILD/fuzz/fuzz_$t" "$corpus" "fuzz/corpus/$t" -max_total_time="$SECONDS_PER" \
        -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
        -artifact_prefix="$ART/${t}-" >"$log" 2>&1
    rc=$?
    local stats
    stats=$(grep -E '^#[0-9]+.*DONE' "$log" | tail -1)
    [ -n "$stats" ] || stats=$(grep -E '^#[0-9]+' "$log" | tail -1)
    if [ $rc -eq 0 ]; then
        printf 'fuzz.sh: %-9s ok    %ss  %s\n' "$t" "$SECONDS_PER" "$stats"
    else
        printf 'fuzz.sh: %-9s FAIL  rc=%s  %s\n' "$t" "$rc" "$stats"
        grep -E 'ERROR|SUMMARY|Test unit written|==[0-9]+==' "$log" | head -20
        # Kept for the summary at the end, where a CI log's tail shows it.
        # The reproducer too, in base64 (inputs are at most 8 KiB), so a
        # failure on a machine one cannot log into can be replayed here.
        local unit
        unit=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        {
            printf '%s (rc=%s):\n' "$t" "$rc"
            grep -E 'ERROR|SUMMARY|Test unit written' "$log" | head -5
            [ -n "$unit" ] && [ -f "$unit" ] && printf 'reproducer (base64): %s\n' "$(base64 -w0 "$unit")"
        } >"$WORK/$t.failed"
    fi
    return $rc
}

fails=0
pids=()
names=()
for t in "${TARGETS[@]}"; do
    if [ ! -x "$BUILD/fuzz/fuzz_$t" ]; then
        echo "fuzz.sh: no target fuzz_$t" >&2
        fails=$((fails + 1))
        continue
    fi
    run_one "$t" &
    pids+=($!)
    names+=("$t")
    if [ ${#pids[@]} -ge "$JOBS" ]; then
        wait "${pids[0]}" || fails=$((fails + 1))
        pids=("${pids[@]:1}")
        names=("${names[@]:1}")
    fi
done
for p in "${pids[@]}"; do
    wait "$p" || fails=$((fails + 1))
done
if [ $fails -ne 0 ]; then
    cat "$WORK"/*.failed 2>/dev/null | sed 's/^/fuzz.sh: failed: /' >&2
    echo "fuzz.sh: $fails target(s) failed; reproducers in $ART" >&2
    exit 1
fi
echo "fuzz.sh: all ${#TARGETS[@]} targets clean (${SECONDS_PER}s each)"
