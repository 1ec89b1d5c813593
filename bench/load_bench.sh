#!/usr/bin/env bash
# Load benchmark: does scraping slow a backup down?
#
# Starts radosgw (test/rgw-start.sh, in a temporary directory), the Qdrant
# stand-in with one collection of QSNAP_LOAD_MIB (default 1024 MiB) and
# `qsnap serve`, then runs the same backup twice:
#   1. without load;
#   2. while two wrk processes (-t1 -c8) hammer GET /metrics and GET /healthz
#      for the whole backup (at least 30 s).
# Prints both throughputs (snapshot bytes / the job item's duration), the
# drop in percent, wrk's request rates, latencies and errors, and the CPU time
# of qsnap and of the load generator. wrk keeps its connections alive and
# sends each next request as soon as the answer arrives, so the load takes
# whatever CPU it gets: the faster the server answers, the more requests and
# the more CPU wrk itself spends. Exits 1 when wrk saw errors or non-2xx
# answers, or the drop is 10% or more.
#
#   bench/load_bench.sh [BUILD_DIR]         (default: build)
#   QSNAP_LOAD_MIB=1024  QSNAP_LOAD_WRK_S=30  QSNAP_BENCH_REUSE_RGW=1 (use QSNAP_TEST_S3_*)
#   QSNAP_LOAD_WRK_CPUS=LIST  pin both wrk processes to these CPUs (taskset), so that
#                             on a machine with spare cores the load generator does
#                             not compete with the backup for CPU
#   QSNAP_BENCH_S3_CPUS=LIST QSNAP_BENCH_CPUS=LIST  radosgw on its own CPUs, qsnap, the
#                             stand-in (and wrk unless QSNAP_LOAD_WRK_CPUS) on the others
#                             (bench/cpus.sh)
#   QSNAP_LOAD_TARGET=nginx   control run: the same wrk load goes to nginx serving the
#                             bytes of qsnap's /metrics and /healthz (bench/nginx_common.sh)
#                             while qsnap runs the backup, so the drop the load
#                             generator alone causes is measured on the same machine
# Also prints the CPU time qsnap itself spent during each run (utime+stime), which
# separates qsnap's cost of serving the load from the load generator's.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-build}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
QSNAP="$BUILD/qsnap"
# shellcheck source=cpus.sh
. "$ROOT/bench/cpus.sh"
bench_cpus_check
[ -x "$QSNAP" ] || { echo "load_bench: no qsnap binary in $BUILD (build first)" >&2; exit 2; }
command -v wrk >/dev/null || { echo "load_bench: wrk is not installed" >&2; exit 2; }
PY=/usr/bin/python3
# shellcheck source=bench/nginx_common.sh
. "$ROOT/bench/nginx_common.sh"
TARGET=${QSNAP_LOAD_TARGET:-qsnap}
case "$TARGET" in qsnap | nginx) ;; *) echo "load_bench: QSNAP_LOAD_TARGET is qsnap or nginx" >&2; exit 2 ;; esac
MIB=${QSNAP_LOAD_MIB:-1024}
WRK_S=${QSNAP_LOAD_WRK_S:-30}
TOKEN=load-bench-token-0123456789abcdef
COLL=loadbench

unset CURL_CA_BUNDLE AWS_CA_BUNDLE http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

W=$(mktemp -d "${TMPDIR:-/tmp}/qsnap-load.XXXXXX")
RGW_DIR="" STANDIN_PID="" QSNAP_PID="" NGINX_PID=""
PREFIX="load-bench-$$"

s3() { # METHOD PATH [curl args...]
    local m=$1 p=$2
    shift 2
    curl -sS --aws-sigv4 "aws:amz:${QSNAP_TEST_S3_REGION:-us-east-1}:s3" \
        --user "$QSNAP_TEST_S3_ACCESS_KEY:$QSNAP_TEST_S3_SECRET_KEY" \
        -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -X "$m" "$@" \
        "$QSNAP_TEST_S3_ENDPOINT/$QSNAP_TEST_S3_BUCKET/$p"
}

cleanup() {
    set +e
    nginx_stop
    [ -n "$QSNAP_PID" ] && kill "$QSNAP_PID" 2>/dev/null && wait "$QSNAP_PID" 2>/dev/null
    [ -n "$STANDIN_PID" ] && kill "$STANDIN_PID" 2>/dev/null && wait "$STANDIN_PID" 2>/dev/null
    if [ -n "${QSNAP_TEST_S3_ENDPOINT:-}" ]; then
        for k in $(s3 GET "?list-type=2&prefix=$PREFIX%2F" | grep -o '<Key>[^<]*</Key>' |
            sed 's/<Key>\(.*\)<\/Key>/\1/'); do
            s3 DELETE "$k" -o /dev/null
        done
    fi
    [ -n "$RGW_DIR" ] && "$ROOT/test/rgw-stop.sh" "$RGW_DIR" >/dev/null 2>&1
    rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "load_bench: $*" >&2; }

# radosgw
if [ "${QSNAP_BENCH_REUSE_RGW:-0}" = 1 ]; then
    : "${QSNAP_TEST_S3_ENDPOINT:?QSNAP_BENCH_REUSE_RGW=1 needs the QSNAP_TEST_S3_* variables}"
else
    RGW_DIR="$W/rgw"
    log "starting radosgw"
    bench_s3_run "$ROOT/test/rgw-start.sh" "$RGW_DIR" >/dev/null || { log "radosgw did not start"; exit 1; }
    # shellcheck disable=SC1091
    . "$RGW_DIR/env"
fi

# Qdrant stand-in with a MIB collection
log "starting the Qdrant stand-in and building a $MIB MiB collection"
"$PY" "$ROOT/test/qdrant_standin.py" --port 0 --port-file "$W/standin.port" \
    --storage "$W/standin" >"$W/standin.log" 2>&1 &
STANDIN_PID=$!
for _ in $(seq 100); do [ -s "$W/standin.port" ] && break; sleep 0.1; done
QPORT=$(head -1 "$W/standin.port")
QURL="http://127.0.0.1:$QPORT"
curl -sf -X POST "$QURL/__standin/collections" -H 'Content-Type: application/json' \
    -d "{\"name\":\"$COLL\",\"size_mib\":$MIB,\"dim\":1536}" -o /dev/null ||
    { log "could not create the collection"; exit 1; }

# qsnap serve
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"
env QSNAP_DESTINATION="s3://$QSNAP_TEST_S3_BUCKET/$PREFIX" \
    QSNAP_S3_ENDPOINT="$QSNAP_TEST_S3_ENDPOINT" QSNAP_S3_REGION="${QSNAP_TEST_S3_REGION:-us-east-1}" \
    QSNAP_S3_ACCESS_KEY_ID="$QSNAP_TEST_S3_ACCESS_KEY" \
    QSNAP_S3_SECRET_ACCESS_KEY="$QSNAP_TEST_S3_SECRET_KEY" \
    QSNAP_QDRANT_URL="$QURL" QSNAP_LISTEN="127.0.0.1:$PORT" QSNAP_ADMIN_TOKEN="$TOKEN" \
    QSNAP_SCHEDULE=off QSNAP_COMPRESSION=none QSNAP_LOCAL_KEEP=0 QSNAP_LOG_LEVEL=info \
    "$QSNAP" serve >"$W/qsnap.log" 2>&1 &
QSNAP_PID=$!
for _ in $(seq 300); do curl -sf "$URL/readyz" -o /dev/null && break; sleep 0.1; done
curl -sf "$URL/readyz" -o /dev/null || { log "qsnap not ready"; tail -5 "$W/qsnap.log"; exit 1; }

# run_backup: prints "bytes seconds" of the collection's item
run_backup() {
    local id job state
    id=$(curl -sf -X POST -H "Authorization: Bearer $TOKEN" "$URL/v1/backup" |
        "$PY" -c 'import json,sys; print(json.load(sys.stdin)["job"])') || return 1
    while :; do
        job=$(curl -sf "$URL/v1/jobs/$id") || return 1
        state=$(echo "$job" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["state"])')
        [ "$state" = running ] || [ "$state" = queued ] || [ "$state" = pending ] || break
        sleep 0.2
    done
    [ "$state" = succeeded ] || { log "backup $state: $job"; return 1; }
    echo "$job" | "$PY" -c 'import json,sys
it = json.load(sys.stdin)["collections"][0]
print(int(it["size"]), it["duration_s"])'
}

cpu_ticks() { proc_ticks "$QSNAP_PID"; }
TCK=$(getconf CLK_TCK)
LOAD_URL=$URL
if [ "$TARGET" = nginx ]; then
    chmod 755 "$W"
    nginx_start "$W/nginx" "$URL" || { log "nginx did not start"; exit 1; }
    LOAD_URL=$NGINX_URL
fi
PIN=()
[ -n "${QSNAP_LOAD_WRK_CPUS:-}" ] && PIN=(taskset -c "$QSNAP_LOAD_WRK_CPUS")

log "backup 1: no load"
C0=$(cpu_ticks)
read -r B1 D1 < <(run_backup) || exit 1
C1=$(cpu_ticks)
sleep 1.1 # never two snapshots of a collection in the same second

# load for at least WRK_S seconds and long enough to cover the whole backup
DUR=$("$PY" -c "import math; print(max($WRK_S, math.ceil($D1 * 1.5) + 5))")
log "backup 2: with wrk -t1 -c8 -d${DUR}s on $TARGET's /metrics and /healthz"
# each wrk under a shell that, once wrk is done, saves its own /proc stat:
# its cutime and cstime are then wrk's CPU time
load() { # ENDPOINT
    sh -c '"$@"; cat /proc/$$/stat' sh "${PIN[@]}" wrk -t1 -c8 -d"${DUR}s" --latency \
        "$LOAD_URL/$1" >"$W/wrk-$1.txt" 2>&1
}
load metrics &
WM=$!
load healthz &
WH=$!
sleep 1
C2=$(cpu_ticks)
N2=0
[ "$TARGET" = nginx ] && N2=$(proc_ticks "$NGINX_PID")
read -r B2 D2 < <(run_backup) || { kill $WM $WH 2>/dev/null; exit 1; }
wait $WM $WH
C3=$(cpu_ticks)
N3=0
[ "$TARGET" = nginx ] && N3=$(proc_ticks "$NGINX_PID")

echo
echo "== qsnap load benchmark ($MIB MiB collection, $BENCH_NCPU CPUs, load on $TARGET)"
bench_cpus_describe
"$PY" - "$B1" "$D1" "$B2" "$D2" <<'PY'
import sys
b1, d1, b2, d2 = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
t1, t2 = b1 / d1 / 2**20, b2 / d2 / 2**20
print("backup without load: %d bytes in %.2f s = %.1f MiB/s" % (b1, d1, t1))
print("backup under load:   %d bytes in %.2f s = %.1f MiB/s" % (b2, d2, t2))
print("throughput drop:     %.1f %%" % ((t1 - t2) / t1 * 100))
PY
awk -v a=$((C1 - C0)) -v b=$((C3 - C2)) -v t="$TCK" -v d="$DUR" 'BEGIN {
    printf "qsnap CPU time:      %.2f s during backup 1; %.2f s during backup 2 and the %d s load\n",
        a / t, b / t, d }'
[ "$TARGET" = nginx ] && awk -v n=$((N3 - N2)) -v t="$TCK" 'BEGIN {
    printf "nginx CPU time:      %.2f s during backup 2 and the load\n", n / t }'
# the last line of each wrk output is its shell's /proc stat
for ep in metrics healthz; do
    tail -1 "$W/wrk-$ep.txt" | sed 's/^.*) //' | awk -v t="$TCK" -v ep="$ep" '{
        printf "wrk /%-8s CPU:    %.2f s (user %.2f, system %.2f)\n", ep, ($14 + $15) / t,
            $14 / t, $15 / t }'
done
DROP=$("$PY" -c "print(($B1/$D1 - $B2/$D2) / ($B1/$D1) * 100)")
fail=0
for ep in metrics healthz; do
    f="$W/wrk-$ep.txt"
    echo "-- wrk /$ep"
    grep -E 'Requests/sec|Transfer/sec|Latency|requests in|50%|99%|Socket errors|Non-2xx' "$f" | sed 's/^/   /'
    if grep -qE 'Socket errors|Non-2xx' "$f"; then fail=1; fi
done
if [ "$fail" -ne 0 ]; then
    echo "RESULT: FAIL (wrk saw errors)"
    exit 1
fi
if "$PY" -c "import sys; sys.exit(0 if $DROP < 10 else 1)"; then
    echo "RESULT: OK (drop < 10 %)"
else
    echo "RESULT: FAIL (drop >= 10 %)"
    exit 1
fi
