#!/bin/bash
# Backup benchmark: a 1 GiB collection snapshot from the Qdrant stand-in to a
# radosgw, next to curl downloading the same snapshot and curl --aws-sigv4
# uploading the same bytes, in one run. Prints
#   - qsnap's streaming time / max(download, upload)   (target <= 1.15)
#   - qsnap's peak RSS for 1 GiB and 3 GiB snapshots    (target <= 48 MiB,
#     and within 4 MiB of each other)
#   - GET /metrics latency of `qsnap serve` while it streams 1 GiB.
#
# Usage: bench/backup_bench.sh BUILD_DIR [PART_SIZE]     (PART_SIZE e.g. 16MiB;
#        default: qsnap's own default)
# Starts its own radosgw (test/rgw-start.sh) and stand-in in a temporary
# directory and removes everything afterwards. Needs about 12 GiB of disk.
set -euo pipefail
# shellcheck source=backup_common.sh
. "$(dirname "${BASH_SOURCE[0]}")/backup_common.sh"

bc_init "${1:?usage: backup_bench.sh BUILD_DIR [PART_SIZE]}"
PART=${2:-}
SAMPLES=${QSNAP_BENCH_METRICS_SAMPLES:-20}
bc_start_rgw
bc_start_standin
bc_qsnap_env
[ -n "$PART" ] && export QSNAP_S3_PART_SIZE="$PART"
export QSNAP_COMPRESSION=none

bc_log "creating 1 GiB and 3 GiB collections"
bc_collection bench-1g "${QSNAP_BENCH_MIB:-1024}"
bc_collection bench-3g "${QSNAP_BENCH_LARGE_MIB:-3072}"

# ---- curl: download the snapshot, upload the same bytes ----------------------
read -r SNAP SIZE < <(bc_snapshot bench-1g)
bc_log "snapshot $SNAP: $SIZE bytes"
FILE="$BC_W/snap.bin"
curl -sSf -o "$FILE" "$STANDIN/collections/bench-1g/snapshots/$SNAP"
sync
t_down=$(curl -sSf -o /dev/null -w '%{time_total}' "$STANDIN/collections/bench-1g/snapshots/$SNAP")
read -r code t_up < <(bc_s3 PUT "$BC_PREFIX/curl-upload" -o /dev/null -T "$FILE" \
    -w '%{http_code} %{time_total}\n')
[ "$code" = 200 ] || { echo "bench: curl upload failed: HTTP $code" >&2; exit 1; }
bc_s3 DELETE "$BC_PREFIX/curl-upload" -o /dev/null
rm -f "$FILE"
curl -sSf -o /dev/null -X DELETE "$STANDIN/collections/bench-1g/snapshots/$SNAP?wait=true"

# ---- qsnap backup, one shot, under /usr/bin/time -v ---------------------------
run_backup() { # COLLECTION TAG -> sets WALL_<TAG> RSS_<TAG> STREAM_<TAG>
    local c=$1 tag=$2
    /usr/bin/time -v -o "$BC_W/time.$tag" "$QSNAP" backup -c "$c" \
        >"$BC_W/out.$tag" 2>"$BC_W/log.$tag" || {
        cat "$BC_W/out.$tag" "$BC_W/log.$tag" >&2
        exit 1
    }
    printf -v "RSS_$tag" '%s' "$(($(bc_timev_field "$BC_W/time.$tag" 'Maximum resident set size (kbytes)') / 1024))"
    printf -v "WALL_$tag" '%s' "$(bc_timev_field "$BC_W/time.$tag" 'Elapsed (wall clock) time (h:mm:ss or m:ss)')"
    printf -v "STREAM_$tag" '%s' "$(bc_stream_seconds "$BC_W/log.$tag" "$c")"
}
bc_log "qsnap backup 1 GiB (two runs)"
run_backup bench-1g q1
run_backup bench-1g q1b
bc_log "qsnap backup 3 GiB"
run_backup bench-3g q3

# ---- qsnap serve: /metrics latency while streaming ---------------------------
bc_log "qsnap serve: /metrics while streaming 1 GiB"
PORT=$("$BC_PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
TOKEN=bench-admin-token-0123456789
QSNAP_LISTEN="127.0.0.1:$PORT" QSNAP_ADMIN_TOKEN="$TOKEN" "$QSNAP" serve >"$BC_W/serve.log" 2>&1 &
BC_DAEMON_PID=$!
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break
    sleep 0.1
done
JOB=$(curl -sSf -X POST -H "Authorization: Bearer $TOKEN" \
    "http://127.0.0.1:$PORT/v1/backup?collection=bench-1g" |
    "$BC_PY" -c 'import json,sys; print(json.load(sys.stdin)["job"])')
phase() {
    curl -sSf "http://127.0.0.1:$PORT/v1/jobs/$JOB" |
        "$BC_PY" -c 'import json,sys; j=json.load(sys.stdin); print(j["state"], j["phase"])'
}
until [ "$(phase)" = "running stream" ]; do sleep 0.05; done
: >"$BC_W/lat"
for _ in $(seq "$SAMPLES"); do
    st=$(phase)
    lat=$(curl -sSf -o /dev/null -w '%{time_total}' "http://127.0.0.1:$PORT/metrics")
    [ "$st" = "running stream" ] && echo "$lat" >>"$BC_W/lat"
    sleep 0.2
done
until phase | grep -q '^succeeded'; do
    phase | grep -qE '^(failed|cancelled)' && { echo "bench: serve job failed" >&2; exit 1; }
    sleep 0.2
done
RSS_serve=$(($(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$BC_DAEMON_PID/status") / 1024))
kill "$BC_DAEMON_PID"
wait "$BC_DAEMON_PID" || true
BC_DAEMON_PID=""
read -r LAT_N LAT_MED LAT_MAX < <(sort -n "$BC_W/lat" | awk '{ a[NR] = $1 } END {
    if (NR == 0) { print 0, "nan", "nan"; exit }
    m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
    printf "%d %.2f %.2f\n", NR, m * 1000, a[NR] * 1000 }')

# ---- report ------------------------------------------------------------------
MIB=$(awk -v s="$SIZE" 'BEGIN { printf "%.0f", s / 1048576 }')
rate() { awk -v m="$MIB" -v t="$1" 'BEGIN { printf "%.1f", m / t }'; }
printf '\nqsnap backup benchmark: %s MiB snapshot, stand-in -> radosgw, part size %s\n' \
    "$MIB" "${PART:-default}"
printf '%-44s %9s %9s %12s\n' "" "seconds" "MiB/s" "peak RSS MiB"
printf '%-44s %9.2f %9s %12s\n' "curl download (stand-in -> /dev/null)" "$t_down" "$(rate "$t_down")" "-"
printf '%-44s %9.2f %9s %12s\n' "curl --aws-sigv4 upload (file -> radosgw)" "$t_up" "$(rate "$t_up")" "-"
printf '%-44s %9.2f %9s %12s\n' "qsnap backup 1 GiB, run 1 (stream+verify)" "$STREAM_q1" "$(rate "$STREAM_q1")" "$RSS_q1"
printf '%-44s %9.2f %9s %12s\n' "qsnap backup 1 GiB, run 2 (stream+verify)" "$STREAM_q1b" "$(rate "$STREAM_q1b")" "$RSS_q1b"
printf '%-44s %9.2f %9s %12s\n' "qsnap backup 3 GiB (stream+verify)" "$STREAM_q3" "-" "$RSS_q3"
printf '%-44s %9s %9s %12s\n' "qsnap serve, 1 GiB via POST /v1/backup" "-" "-" "$RSS_serve"
printf 'wall clock incl. Qdrant snapshot creation: 1 GiB %s / %s, 3 GiB %s\n' "$WALL_q1" "$WALL_q1b" "$WALL_q3"
best=$(awk -v a="$STREAM_q1" -v b="$STREAM_q1b" 'BEGIN { print (a < b ? a : b) }')
awk -v q="$best" -v d="$t_down" -v u="$t_up" 'BEGIN {
    m = d > u ? d : u
    printf "ratio qsnap / max(download, upload) = %.2f / %.2f = %.2f (target <= 1.15): %s\n",
        q, m, q / m, q / m <= 1.15 ? "OK" : "MISSED" }'
awk -v a="$RSS_q1" -v b="$RSS_q3" 'BEGIN {
    d = b - a; if (d < 0) d = -d
    printf "peak RSS 1 GiB %d MiB, 3 GiB %d MiB, difference %d MiB (targets <= 48, <= 4): %s\n",
        a, b, d, (a <= 48 && b <= 48 && d <= 4) ? "OK" : "MISSED" }'
printf '/metrics while streaming: %s samples, median %s ms, max %s ms\n' "$LAT_N" "$LAT_MED" "$LAT_MAX"
