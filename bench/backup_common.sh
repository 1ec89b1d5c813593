# Shared helpers of bench/backup_bench.sh and bench/compression_bench.sh
# (sourced, not run). Peers live in one temporary directory that cleanup
# removes: a radosgw started with test/rgw-start.sh and the Qdrant stand-in.
#
# Knobs: QSNAP_BENCH_REUSE_RGW=1 uses an already running radosgw from the
# QSNAP_TEST_S3_* variables instead of starting one (objects are then
# deleted one by one at the end); QSNAP_BENCH_S3_CPUS and QSNAP_BENCH_CPUS
# split the CPUs between radosgw and the rest (cpus.sh).

BC_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BC_ROOT=$(cd "$BC_HERE/.." && pwd)
# shellcheck source=cpus.sh
. "$BC_HERE/cpus.sh"
BC_PY=/usr/bin/python3
[ -x "$BC_PY" ] || BC_PY=python3

unset CURL_CA_BUNDLE AWS_CA_BUNDLE http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

BC_W=""
BC_RGW_DIR=""
BC_STANDIN_PID=""
BC_DAEMON_PID=""
BC_PREFIX="bench-$$"
STANDIN=""

bc_log() { echo "bench: $*" >&2; }

# bc_init BUILD_DIR: sets QSNAP (the binary) and the work directory.
bc_init() {
    local build=${1:?build directory}
    QSNAP="$build/qsnap"
    [ -x "$QSNAP" ] || QSNAP="$build/src/qsnap"
    [ -x "$QSNAP" ] || { echo "bench: no qsnap binary in $build" >&2; exit 2; }
    bench_cpus_check
    BC_W=$(mktemp -d "${TMPDIR:-/tmp}/qsnap-bench.XXXXXX")
    trap bc_cleanup EXIT
    trap 'exit 130' INT TERM
}

bc_s3() { # METHOD PATH [curl args...]
    local m=$1 p=$2
    shift 2
    curl -sS --aws-sigv4 "aws:amz:${QSNAP_TEST_S3_REGION:-us-east-1}:s3" \
        --user "$QSNAP_TEST_S3_ACCESS_KEY:$QSNAP_TEST_S3_SECRET_KEY" \
        -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -X "$m" "$@" \
        "$QSNAP_TEST_S3_ENDPOINT/$QSNAP_TEST_S3_BUCKET/$p"
}

bc_delete_prefix() { # delete every object under BC_PREFIX/
    bc_delete_under "$BC_PREFIX"
}

bc_delete_under() { # PREFIX: delete every object under PREFIX/
    local keys k
    for _ in 1 2 3 4 5; do
        keys=$(bc_s3 GET "?list-type=2&prefix=$1%2F" | grep -o '<Key>[^<]*</Key>' |
            sed 's/<Key>\(.*\)<\/Key>/\1/') || true
        [ -n "$keys" ] || return 0
        for k in $keys; do bc_s3 DELETE "$k" -o /dev/null || true; done
    done
}

# bc_cpu FILE: "user+sys" seconds from a `/usr/bin/time -f '%U %S ...'` file.
bc_cpu() {
    awk '/^[0-9.]+ [0-9.]+( |$)/ { v = $1 + $2 } END { printf "%.2f", v }' "$1"
}

# bc_pcpu PID...: utime + stime of the processes so far, in seconds.
bc_pcpu() {
    local p t=0
    for p in "$@"; do
        t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    awk -v t="$t" -v h="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / h }'
}

# bc_rgw_pids: the radosgw, OSD and monitor of the benchmark's radosgw (its
# directory: the one started here, else QSNAP_BENCH_RGW_DIR), or nothing.
bc_rgw_pids() {
    local d=${BC_RGW_DIR:-${QSNAP_BENCH_RGW_DIR:-}} f
    [ -n "$d" ] && [ -d "$d/run" ] || return 0
    for f in "$d"/run/*.pid; do
        [ -r "$f" ] && printf '%s ' "$(cat "$f")"
    done
}

# bc_stats VALUE...: "median min max" of the values.
bc_stats() {
    printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END {
        if (NR == 0) { print "nan nan nan"; exit }
        m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
        printf "%.2f %.2f %.2f\n", m, a[1], a[NR] }'
}

bc_cleanup() {
    set +e
    [ -n "$BC_DAEMON_PID" ] && kill "$BC_DAEMON_PID" 2>/dev/null && wait "$BC_DAEMON_PID" 2>/dev/null
    [ -n "$BC_STANDIN_PID" ] && kill "$BC_STANDIN_PID" 2>/dev/null && wait "$BC_STANDIN_PID" 2>/dev/null
    if [ -n "${QSNAP_TEST_S3_ENDPOINT:-}" ] && [ -z "$BC_RGW_DIR" ]; then
        bc_delete_prefix
    fi
    if [ -n "$BC_RGW_DIR" ]; then
        "$BC_ROOT/test/rgw-stop.sh" "$BC_RGW_DIR" >/dev/null 2>&1
    fi
    [ -n "$BC_W" ] && rm -rf "$BC_W"
}

bc_start_rgw() {
    if [ "${QSNAP_BENCH_REUSE_RGW:-0}" = 1 ]; then
        : "${QSNAP_TEST_S3_ENDPOINT:?QSNAP_BENCH_REUSE_RGW=1 needs QSNAP_TEST_S3_*}"
        bc_log "using the radosgw at $QSNAP_TEST_S3_ENDPOINT"
        return
    fi
    BC_RGW_DIR="$BC_W/rgw"
    bc_log "starting radosgw in $BC_RGW_DIR"
    bench_s3_run "$BC_ROOT/test/rgw-start.sh" "$BC_RGW_DIR" >/dev/null
    # shellcheck disable=SC1091
    . "$BC_RGW_DIR/env"
}

bc_start_standin() {
    mkdir -p "$BC_W/standin"
    "$BC_PY" "$BC_ROOT/test/qdrant_standin.py" --port 0 --port-file "$BC_W/standin.port" \
        --storage "$BC_W/standin" >"$BC_W/standin.log" 2>&1 &
    BC_STANDIN_PID=$!
    for _ in $(seq 100); do
        [ -s "$BC_W/standin.port" ] && break
        sleep 0.1
    done
    STANDIN="http://127.0.0.1:$(cat "$BC_W/standin.port")"
    curl -sf "$STANDIN/healthz" >/dev/null || { echo "bench: stand-in did not start" >&2; exit 1; }
}

bc_collection() { # NAME MIB
    curl -sSf -X POST "$STANDIN/__standin/collections" -H 'Content-Type: application/json' \
        -d "{\"name\":\"$1\",\"size_mib\":$2,\"dim\":1536}" >/dev/null
}

bc_snapshot() { # NAME -> prints "snapshot_name size"
    curl -sSf -X POST "$STANDIN/collections/$1/snapshots?wait=true" |
        "$BC_PY" -c 'import json,sys; r=json.load(sys.stdin)["result"]; print(r["name"], r["size"])'
}

# The QSNAP_* environment for a backup to s3://BUCKET/BC_PREFIX.
bc_qsnap_env() {
    export QSNAP_QDRANT_URL="$STANDIN"
    export QSNAP_DESTINATION="s3://${QSNAP_TEST_S3_BUCKET:-}/$BC_PREFIX"
    export QSNAP_S3_ENDPOINT="${QSNAP_TEST_S3_ENDPOINT:-}"
    export QSNAP_S3_REGION="${QSNAP_TEST_S3_REGION:-us-east-1}"
    export QSNAP_S3_ACCESS_KEY_ID="${QSNAP_TEST_S3_ACCESS_KEY:-}"
    export QSNAP_S3_SECRET_ACCESS_KEY="${QSNAP_TEST_S3_SECRET_KEY:-}"
    export QSNAP_SCHEDULE=off QSNAP_LOG_FORMAT=json QSNAP_LOCAL_KEEP=0
}

# bc_stream_seconds LOG COLLECTION: seconds from "snapshot created" to
# "backup complete" (streaming, verification and the manifest; Qdrant's own
# snapshot creation excluded), from qsnap's JSON log.
bc_stream_seconds() {
    "$BC_PY" - "$1" "$2" <<'PY'
import datetime, json, sys
t = {}
for line in open(sys.argv[1]):
    try:
        j = json.loads(line)
    except ValueError:
        continue
    if j.get("collection") != sys.argv[2]:
        continue
    if j.get("msg", "").startswith("snapshot created") or j.get("msg") == "backup complete":
        t[j["msg"].split(" (")[0]] = datetime.datetime.strptime(j["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
print("%.2f" % (t["backup complete"] - t["snapshot created"]).total_seconds())
PY
}

# bc_timev_field FILE FIELD: a field of /usr/bin/time -v output.
bc_timev_field() {
    sed -n "s/^[[:space:]]*$2: //p" "$1"
}
