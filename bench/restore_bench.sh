#!/bin/bash
# Restore benchmark: `qsnap restore` of a 1 GiB backup (radosgw -> Qdrant
# stand-in, streamed, no staging) against the two transfers it is made of,
# done by curl in the same rounds: a GET of the object from radosgw and a
# multipart upload (`curl -F snapshot=@file`) of the same bytes to the
# stand-in. A streamed restore can at best take as long as the slower of the
# two, so it reports restore time / max(GET, upload) (target <= 1.15), and a
# control: the same GET and upload by curl at the same time (what running
# the two transfers side by side costs on this machine, whoever does it).
# Rounds alternate their order. Also reports qsnap's CPU and peak RSS
# (/usr/bin/time -v), which must stay within the backup bound
# (3 x part size + 16 MiB) whatever the snapshot size.
#
# Usage: bench/restore_bench.sh BUILD_DIR [SIZE_MIB] [RUNS]
#   SIZE_MIB  snapshot size (default 1024)    RUNS  rounds (default 3)
# QSNAP_BENCH_BASE=DIR measures a second qsnap (e.g. a release build of an
# older commit) in the same rounds. QSNAP_BENCH_S3_CPUS and QSNAP_BENCH_CPUS
# split the CPUs between radosgw and the rest (bench/cpus.sh).
# Starts its own radosgw (test/rgw-start.sh) and stand-in in a temporary
# directory and removes everything afterwards. Needs about 6 x SIZE_MIB of
# free disk, radosgw/ceph-mon/ceph-osd, curl, /usr/bin/time, python3.
set -euo pipefail

BUILD=$(cd "${1:?usage: restore_bench.sh BUILD_DIR [SIZE_MIB] [RUNS]}" && pwd)
MIB=${2:-1024}
RUNS=${3:-3}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QSNAP="$BUILD/qsnap"
PY=/usr/bin/python3
[ -x "$QSNAP" ] || { echo "restore_bench: $QSNAP not built" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "restore_bench: /usr/bin/time missing (apt-get install time)" >&2; exit 2; }
# shellcheck source=cpus.sh
. "$ROOT/bench/cpus.sh"
bench_cpus_check
BASE=""
if [ -n "${QSNAP_BENCH_BASE:-}" ]; then
    BASE="$(cd "$QSNAP_BENCH_BASE" && pwd)/qsnap"
    [ -x "$BASE" ] || { echo "restore_bench: $BASE not built" >&2; exit 2; }
fi

unset CURL_CA_BUNDLE http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

WORK=$(mktemp -d "${TMPDIR:-/tmp}/qsnap-restore-bench.XXXXXX")
STANDIN_PID=
cleanup() {
    if [ -n "$STANDIN_PID" ]; then
        kill "$STANDIN_PID" 2>/dev/null || true
        wait "$STANDIN_PID" 2>/dev/null || true
    fi
    "$ROOT/test/rgw-stop.sh" "$WORK/rgw" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "restore_bench: $*" >&2; }

# ---- peers -----------------------------------------------------------------
log "starting radosgw in $WORK/rgw"
# Retried: instances started at the same moment elsewhere on the machine can
# race for the same free port.
for attempt in 1 2 3; do
    QSNAP_RGW_BYTES=$(( (MIB * 4 + 4096) * 1048576 )) \
        bench_s3_run "$ROOT/test/rgw-start.sh" "$WORK/rgw" >"$WORK/rgw-start.log" 2>&1 && break
    [ "$attempt" = 3 ] && { tail -n 5 "$WORK/rgw-start.log" >&2; exit 1; }
    log "radosgw did not start (attempt $attempt), retrying"
    "$ROOT/test/rgw-stop.sh" "$WORK/rgw" >/dev/null 2>&1 || true
done
# shellcheck disable=SC1091
. "$WORK/rgw/env"
REGION=${QSNAP_TEST_S3_REGION:-us-east-1}
PREFIX="bench-restore-$$"

log "starting the Qdrant stand-in"
"$PY" "$ROOT/test/qdrant_standin.py" --port 0 --port-file "$WORK/port" \
    --storage "$WORK/qdrant" >"$WORK/standin.log" 2>&1 &
STANDIN_PID=$!
for _ in $(seq 200); do
    [ -s "$WORK/port" ] && grep -q . "$WORK/port" && break
    sleep 0.1
done
QD="http://127.0.0.1:$(head -n1 "$WORK/port")"
curl -fsS -o /dev/null "$QD/healthz"

log "generating a ${MIB} MiB collection"
curl -fsS -o /dev/null -X POST "$QD/__standin/collections" \
    -d "{\"name\":\"bench\",\"size_mib\":$MIB,\"dim\":1536}"

export QSNAP_DESTINATION="s3://$QSNAP_TEST_S3_BUCKET/$PREFIX"
export QSNAP_S3_ENDPOINT="$QSNAP_TEST_S3_ENDPOINT" QSNAP_S3_REGION="$REGION"
export QSNAP_S3_ACCESS_KEY_ID="$QSNAP_TEST_S3_ACCESS_KEY"
export QSNAP_S3_SECRET_ACCESS_KEY="$QSNAP_TEST_S3_SECRET_KEY" QSNAP_S3_URI_STYLE=path
export QSNAP_QDRANT_URL="$QD" QSNAP_COMPRESSION=none QSNAP_LOG_LEVEL=warn QSNAP_LOG_FORMAT=text
export QSNAP_SCHEDULE=off QSNAP_LOCAL_KEEP=0
PART_MIB=$(( $("$QSNAP" check-config 2>/dev/null | sed -n 's/^QSNAP_S3_PART_SIZE=//p' |
    "$PY" -c 'import sys
v = sys.stdin.read().strip() or "16777216"
units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
for u, m in units.items():
    if v.endswith(u):
        print(int(float(v[:-len(u)]) * m)); break
else:
    print(int(v))') / 1048576 ))

log "backing up"
t0=$(date +%s.%N)
"$QSNAP" backup -c bench >/dev/null
t1=$(date +%s.%N)
BACKUP_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
read -r OBJECT SHA SIZE POINTS < <("$QSNAP" list -c bench --json | "$PY" -c '
import json, sys
b = json.load(sys.stdin)["backups"][0]
print(b["object"], b["sha256"], b["size"], b["points_count"])')

state_of() { # COLLECTION -> "points_count restored_from_sha256"
    curl -fsS "$QD/__standin/state" | "$PY" -c '
import json, sys
c = json.load(sys.stdin)["collections"].get(sys.argv[1]) or {}
print(c.get("points_count"), c.get("restored_from_sha256"))' "$1"
}
drop() { curl -fsS -o /dev/null -X DELETE "$QD/collections/$1" || true; }
check() { # COLLECTION
    local st
    st=$(state_of "$1")
    [ "$st" = "$POINTS $SHA" ] || { log "$1: state '$st', want '$POINTS $SHA'"; exit 1; }
}

OBJURL="$QSNAP_TEST_S3_ENDPOINT/$QSNAP_TEST_S3_BUCKET/$PREFIX/$OBJECT"
s3get() { # OUT TIMEFILE -> "http_code seconds"
    /usr/bin/time -f '%U %S' -o "$2" curl -sS -o "$1" -w '%{http_code} %{time_total}\n' \
        --aws-sigv4 "aws:amz:$REGION:s3" \
        --user "$QSNAP_TEST_S3_ACCESS_KEY:$QSNAP_TEST_S3_SECRET_KEY" \
        -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$OBJURL"
}
upload() { # COLLECTION TIMEFILE -> "http_code seconds"
    /usr/bin/time -f '%U %S' -o "$2" curl -sS -o /dev/null -w '%{http_code} %{time_total}\n' \
        -F "snapshot=@$WORK/snap" \
        "$QD/collections/$1/snapshots/upload?wait=true&priority=snapshot&checksum=$SHA"
}
cpu_of() { # a /usr/bin/time -f '%U %S' file -> user + sys
    awk '/^[0-9.]+ [0-9.]+$/ { v = $1 + $2 } END { printf "%.2f", v }' "$1"
}
pcpu() { # PID... -> utime + stime so far, seconds
    local p t=0
    for p in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done
    awk -v t="$t" -v h="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / h }'
}
RGW_PIDS=()
for f in "$WORK"/rgw/run/*.pid; do RGW_PIDS+=("$(cat "$f")"); done
now() { date +%s.%N; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }

log "staging the object once for the curl uploads"
read -r code _ < <(s3get "$WORK/snap" "$WORK/t.stage")
[ "$code" = 200 ] || { log "curl download: HTTP $code"; exit 1; }

m_get() {
    local code p0
    p0=$(pcpu "${RGW_PIDS[@]}")
    read -r code T_get < <(s3get /dev/null "$WORK/t.get")
    [ "$code" = 200 ] || { log "curl download: HTTP $code"; exit 1; }
    C_get=$(cpu_of "$WORK/t.get")
    C_rgw=$(sub "$(pcpu "${RGW_PIDS[@]}")" "$p0")
}
m_up() {
    local code s0
    s0=$(pcpu "$STANDIN_PID")
    read -r code T_up < <(upload bench-curl "$WORK/t.up")
    [ "$code" = 200 ] || { log "curl upload: HTTP $code"; exit 1; }
    C_up=$(cpu_of "$WORK/t.up")
    C_sd=$(sub "$(pcpu "$STANDIN_PID")" "$s0")
    check bench-curl
    drop bench-curl
}
m_ctl() { # the GET and the upload at the same time
    local t0 t1 pg pu
    t0=$(now)
    s3get /dev/null "$WORK/t.cget" >"$WORK/ctl.get" &
    pg=$!
    upload bench-ctl "$WORK/t.cup" >"$WORK/ctl.up" &
    pu=$!
    wait "$pg" "$pu"
    t1=$(now)
    if ! grep -q '^200 ' "$WORK/ctl.get" || ! grep -q '^200 ' "$WORK/ctl.up"; then
        log "control failed: $(cat "$WORK/ctl.get" "$WORK/ctl.up")"
        exit 1
    fi
    check bench-ctl
    drop bench-ctl
    T_ctl=$(sub "$t1" "$t0")
}
m_restore() { # TAG BINARY
    local tag=$1 bin=$2
    /usr/bin/time -v -o "$WORK/time.$tag" "$bin" restore -c bench --to "bench-$tag" >/dev/null
    check "bench-$tag"
    drop "bench-$tag"
    local f="$WORK/time.$tag"
    printf -v "T_$tag" '%s' "$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$f" |
        awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.2f", s }')"
    printf -v "R_$tag" '%s' "$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$f")"
    printf -v "C_$tag" '%s' "$(awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.2f", s }' "$f")"
}

STEPS=(m_get m_up m_ctl "m_restore q $QSNAP")
[ -n "$BASE" ] && STEPS+=("m_restore b $BASE")
log "timing $RUNS rounds"
rows=()
for r in $(seq "$RUNS"); do
    order=("${STEPS[@]}")
    if [ $((r % 2)) = 0 ]; then
        order=()
        for ((i = ${#STEPS[@]} - 1; i >= 0; i--)); do order+=("${STEPS[$i]}"); done
    fi
    for st in "${order[@]}"; do $st; done
    # shellcheck disable=SC2154 # set through printf -v
    rows+=("$r $T_get $T_up $T_ctl $T_q $R_q $C_q $C_get $C_rgw $C_up $C_sd ${T_b:-0} ${R_b:-0} ${C_b:-0}")
done
rm -f "$WORK/snap"

LIMIT=$(( PART_MIB * 3 + 16 ))
printf '\nqsnap restore benchmark: %s MiB snapshot (%s bytes, %s points), radosgw -> stand-in, %s CPUs\n' \
    "$MIB" "$SIZE" "$POINTS" "$BENCH_NCPU"
bench_cpus_describe
printf 'backup of the same collection: %s s; seconds; control = the GET and the upload by curl at the same time\n' "$BACKUP_S"
printf '%-5s %9s %9s %9s %9s %10s %12s %9s' run "curl GET" "curl -F" control qsnap "qsnap/max" "control/max" "RSS MiB"
[ -n "$BASE" ] && printf ' %9s %9s %9s' base "base/max" "RSS MiB"
printf '\n'
maxrss=0
rq=()
rc=()
rb=()
for row in "${rows[@]}"; do
    read -r r tg tu tc tq rss cq cg crg cu csd tb rssb cb <<<"$row"
    rq+=("$(awk -v q="$tq" -v g="$tg" -v u="$tu" 'BEGIN { m = g > u ? g : u; printf "%.3f", q / m }')")
    rc+=("$(awk -v q="$tc" -v g="$tg" -v u="$tu" 'BEGIN { m = g > u ? g : u; printf "%.3f", q / m }')")
    awk -v r="$r" -v g="$tg" -v u="$tu" -v c="$tc" -v q="$tq" -v rss="$rss" 'BEGIN {
        m = g > u ? g : u
        printf "%-5s %9.2f %9.2f %9.2f %9.2f %10.2f %12.2f %9.1f", r, g, u, c, q, q / m, c / m, rss / 1024 }'
    if [ -n "$BASE" ]; then
        rb+=("$(awk -v q="$tb" -v g="$tg" -v u="$tu" 'BEGIN { m = g > u ? g : u; printf "%.3f", q / m }')")
        awk -v g="$tg" -v u="$tu" -v q="$tb" -v rss="$rssb" 'BEGIN {
            m = g > u ? g : u; printf " %9.2f %9.2f %9.1f", q, q / m, rss / 1024 }'
    fi
    printf '   CPU s: qsnap %s%s, curl GET %s + radosgw %s, curl -F %s + stand-in %s\n' "$cq" \
        "${BASE:+ (base $cb)}" "$cg" "$crg" "$cu" "$csd"
    [ "$rss" -gt "$maxrss" ] && maxrss=$rss
    [ -n "$BASE" ] && [ "$rssb" -gt "$maxrss" ] && maxrss=$rssb
done
stats() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END {
    m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
    printf "%.2f [%.2f-%.2f]", m, a[1], a[NR] }'; }
printf 'ratio qsnap / max(GET, upload), median [min-max]: %s (target <= 1.15)\n' "$(stats "${rq[@]}")"
printf 'ratio control / max(GET, upload):                 %s\n' "$(stats "${rc[@]}")"
[ -n "$BASE" ] && printf 'ratio base / max(GET, upload):                    %s\n' "$(stats "${rb[@]}")"
printf 'peak RSS bound (backup bound, 3 x %d MiB part + 16 MiB = %d MiB): %s\n' "$PART_MIB" \
    "$LIMIT" "$([ $((maxrss / 1024)) -lt "$LIMIT" ] && echo OK || echo EXCEEDED)"
[ $((maxrss / 1024)) -lt "$LIMIT" ]
