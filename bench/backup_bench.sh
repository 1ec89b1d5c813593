#!/bin/bash
# Backup benchmark: a 1 GiB collection snapshot from the Qdrant stand-in to a
# radosgw, next to curl downloading the same snapshot and curl --aws-sigv4
# uploading the same bytes, in the same rounds (the order alternates from one
# round to the next). Prints, per round and as median [min-max]:
#   - qsnap's streaming time / max(download, upload)    (target <= 1.10)
#   - the same ratio for a control: curl GET, openssl dgst -sha256 and curl
#     PUT of the same bytes run at the same time (the same work as qsnap's
#     stream, by separate tools), which shows what running the transfers side
#     by side costs on this machine whoever does it;
#   - the CPU seconds of every party (qsnap, curl, the stand-in, radosgw with
#     its OSD and monitor) and the least wall time that CPU allows on this
#     machine's cores;
# then, one run each:
#   - qsnap's peak RSS for 1 GiB and 3 GiB snapshots    (target <= 48 MiB,
#     and within 4 MiB of each other)
#   - GET /metrics latency of `qsnap serve` while it streams 1 GiB.
#
# Usage: bench/backup_bench.sh BUILD_DIR [PART_SIZE]     (PART_SIZE e.g. 16MiB;
#        default: qsnap's own default)
# Knobs: QSNAP_BENCH_ROUNDS (5); QSNAP_BENCH_BASE=DIR measures a second qsnap
# (e.g. a release build of an older commit) in the same rounds;
# QSNAP_BENCH_REUSE_RGW=1 (backup_common.sh; then QSNAP_BENCH_RGW_DIR=DIR
# names its directory for the CPU figures); QSNAP_BENCH_S3_CPUS and
# QSNAP_BENCH_CPUS put radosgw and the rest on separate CPUs (cpus.sh).
# Starts its own radosgw (test/rgw-start.sh) and stand-in in a temporary
# directory and removes everything afterwards. Needs about 12 GiB of disk.
# T_*, RSS_*, WALL_* and STREAM_* are set through printf -v.
# shellcheck disable=SC2154
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

SMALL="${QSNAP_BENCH_MIB:-1024} MiB"
LARGE="${QSNAP_BENCH_LARGE_MIB:-3072} MiB"
bc_log "creating $SMALL and $LARGE collections"
bc_collection bench-1g "${QSNAP_BENCH_MIB:-1024}"
bc_collection bench-3g "${QSNAP_BENCH_LARGE_MIB:-3072}"

# ---- rounds: curl download, curl upload, the control, qsnap -----------------
ROUNDS=${QSNAP_BENCH_ROUNDS:-5}
BASE=""
if [ -n "${QSNAP_BENCH_BASE:-}" ]; then
    BASE="$QSNAP_BENCH_BASE/qsnap"
    [ -x "$BASE" ] || BASE="$QSNAP_BENCH_BASE/src/qsnap"
    [ -x "$BASE" ] || { echo "bench: no qsnap binary in $QSNAP_BENCH_BASE" >&2; exit 2; }
fi
NCPU=$BENCH_NCPU
read -r SNAP SIZE < <(bc_snapshot bench-1g)
bc_log "snapshot $SNAP: $SIZE bytes"
FILE="$BC_W/snap.bin"
curl -sSf -o "$FILE" "$STANDIN/collections/bench-1g/snapshots/$SNAP"
sync
PEERS=()
read -ra PEERS < <(bc_rgw_pids; echo)
now() { date +%s.%N; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }
declare -A V
add() { V[$1]="${V[$1]:-} $2"; }
tcpu() { # FILE -> user+sys of a /usr/bin/time -f '%U %S' file
    bc_cpu "$1"
}
s3url() { echo "$QSNAP_TEST_S3_ENDPOINT/$QSNAP_TEST_S3_BUCKET/$1"; }
curl_put() { # KEY TIMEFILE
    /usr/bin/time -f '%U %S' -o "$2" curl -sSf --aws-sigv4 "aws:amz:${QSNAP_TEST_S3_REGION:-us-east-1}:s3" \
        --user "$QSNAP_TEST_S3_ACCESS_KEY:$QSNAP_TEST_S3_SECRET_KEY" \
        -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -o /dev/null -T "$FILE" "$(s3url "$1")"
}
curl_get() { # TIMEFILE
    /usr/bin/time -f '%U %S' -o "$1" curl -sSf -o /dev/null \
        "$STANDIN/collections/bench-1g/snapshots/$SNAP"
}
m_get() {
    local s0 t0 t1
    s0=$(bc_pcpu "$BC_STANDIN_PID")
    t0=$(now)
    curl_get "$BC_W/t.get"
    t1=$(now)
    T_get=$(sub "$t1" "$t0")
    add get "$T_get"
    add cpu_get "$(tcpu "$BC_W/t.get")"
    add cpu_standin "$(sub "$(bc_pcpu "$BC_STANDIN_PID")" "$s0")"
}
m_put() {
    local p0 t0 t1
    p0=$(bc_pcpu "${PEERS[@]}")
    t0=$(now)
    curl_put "$BC_PREFIX/curl-upload" "$BC_W/t.put"
    t1=$(now)
    [ ${#PEERS[@]} -gt 0 ] && add cpu_rgw_put "$(sub "$(bc_pcpu "${PEERS[@]}")" "$p0")"
    bc_s3 DELETE "$BC_PREFIX/curl-upload" -o /dev/null
    T_put=$(sub "$t1" "$t0")
    add put "$T_put"
    add cpu_put "$(tcpu "$BC_W/t.put")"
}
m_ctl() { # curl GET, openssl and curl PUT at the same time
    local t0 t1 pg po pp
    t0=$(now)
    curl_get "$BC_W/t.cget" &
    pg=$!
    /usr/bin/time -f '%U %S' -o "$BC_W/t.cossl" openssl dgst -sha256 "$FILE" >/dev/null &
    po=$!
    curl_put "$BC_PREFIX/control" "$BC_W/t.cput" &
    pp=$!
    wait "$pg" "$po" "$pp"
    t1=$(now)
    bc_s3 DELETE "$BC_PREFIX/control" -o /dev/null
    T_ctl=$(sub "$t1" "$t0")
    add ctl "$T_ctl"
    add cpu_ossl "$(tcpu "$BC_W/t.cossl")"
}
m_qsnap() { # TAG BINARY
    local tag=$1 bin=$2 p0 dest="$BC_PREFIX/$1-$r"
    p0=$(bc_pcpu "${PEERS[@]}")
    QSNAP_DESTINATION="s3://${QSNAP_TEST_S3_BUCKET:-}/$dest" /usr/bin/time -v -o "$BC_W/time.$tag" \
        "$bin" backup -c bench-1g >"$BC_W/out.$tag" 2>"$BC_W/log.$tag" || {
        cat "$BC_W/out.$tag" "$BC_W/log.$tag" >&2
        exit 1
    }
    [ ${#PEERS[@]} -gt 0 ] && add "cpu_rgw_$tag" "$(sub "$(bc_pcpu "${PEERS[@]}")" "$p0")"
    bc_delete_under "$dest"
    printf -v "T_$tag" '%s' "$(bc_stream_seconds "$BC_W/log.$tag" bench-1g)"
    add "$tag" "$(eval echo "\$T_$tag")"
    add "cpu_$tag" "$(awk -v u="$(bc_timev_field "$BC_W/time.$tag" 'User time (seconds)')" \
        -v s="$(bc_timev_field "$BC_W/time.$tag" 'System time (seconds)')" \
        'BEGIN { printf "%.2f", u + s }')"
    add "rss_$tag" "$(($(bc_timev_field "$BC_W/time.$tag" 'Maximum resident set size (kbytes)') / 1024))"
}
STEPS=(m_get m_put m_ctl "m_qsnap q $QSNAP")
[ -n "$BASE" ] && STEPS+=("m_qsnap b $BASE")
ratio() { awk -v q="$1" -v d="$2" -v u="$3" 'BEGIN { m = d > u ? d : u; printf "%.3f", q / m }'; }
rows=()
for r in $(seq "$ROUNDS"); do
    order=("${STEPS[@]}")
    if [ $((r % 2)) = 0 ]; then
        order=()
        for ((i = ${#STEPS[@]} - 1; i >= 0; i--)); do order+=("${STEPS[$i]}"); done
    fi
    bc_log "round $r of $ROUNDS"
    for s in "${order[@]}"; do $s; done
    add r_q "$(ratio "$T_q" "$T_get" "$T_put")"
    add r_ctl "$(ratio "$T_ctl" "$T_get" "$T_put")"
    row="$r $T_get $T_put $T_ctl $T_q $(ratio "$T_q" "$T_get" "$T_put") $(ratio "$T_ctl" "$T_get" "$T_put")"
    if [ -n "$BASE" ]; then
        add r_b "$(ratio "$T_b" "$T_get" "$T_put")"
        row="$row $T_b $(ratio "$T_b" "$T_get" "$T_put")"
    fi
    rows+=("$row")
done
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
bc_log "qsnap backup $SMALL"
run_backup bench-1g q1
bc_log "qsnap backup $LARGE"
run_backup bench-3g q3

# ---- qsnap serve: /metrics latency while streaming ---------------------------
bc_log "qsnap serve: /metrics while streaming $SMALL"
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
fmt() { # KEY -> "median [min-max]"
    # shellcheck disable=SC2086
    read -r md lo hi < <(bc_stats ${V[$1]:-})
    printf '%s [%s-%s]' "$md" "$lo" "$hi"
}
med() { # KEY -> median
    # shellcheck disable=SC2086
    bc_stats ${V[$1]:-} | awk '{ print $1 }'
}
printf '\nqsnap backup benchmark: %s MiB snapshot, stand-in -> radosgw, part size %s, %s rounds, %s CPUs\n' \
    "$MIB" "${PART:-default}" "$ROUNDS" "$NCPU"
bench_cpus_describe
printf 'seconds; control = curl GET, openssl dgst -sha256 and curl PUT of the same bytes at the same time\n'
hdr='%-6s %9s %9s %9s %9s %13s %15s'
[ -n "$BASE" ] && hdr="$hdr %9s %13s"
# shellcheck disable=SC2059
printf "$hdr\n" round "curl GET" "curl PUT" control qsnap "qsnap/max" "control/max" \
    ${BASE:+base} ${BASE:+"base/max"}
for row in "${rows[@]}"; do
    # shellcheck disable=SC2086
    set -- $row
    if [ -n "$BASE" ]; then
        printf '%-6s %9.2f %9.2f %9.2f %9.2f %13.2f %15.2f %9.2f %13.2f\n' "$@"
    else
        printf '%-6s %9.2f %9.2f %9.2f %9.2f %13.2f %15.2f\n' "$@"
    fi
done
printf '%-46s %s\n' "ratio qsnap / max(download, upload)" "$(fmt r_q)"
printf '%-46s %s\n' "ratio control / max(download, upload)" "$(fmt r_ctl)"
[ -n "$BASE" ] && printf '%-46s %s\n' "ratio base / max(download, upload)" "$(fmt r_b)"
printf '\nCPU seconds (user + sys), median [min-max] over the rounds\n'
printf '%-46s %s\n' "curl GET" "$(fmt cpu_get)" "stand-in serving the GET" "$(fmt cpu_standin)" \
    "curl PUT" "$(fmt cpu_put)" "openssl dgst -sha256 (control)" "$(fmt cpu_ossl)" \
    "qsnap backup" "$(fmt cpu_q)"
[ -n "$BASE" ] && printf '%-46s %s\n' "qsnap backup (base)" "$(fmt cpu_b)"
if [ ${#PEERS[@]} -gt 0 ]; then
    printf '%-46s %s\n' "radosgw + OSD + monitor during the curl PUT" "$(fmt cpu_rgw_put)" \
        "radosgw + OSD + monitor during qsnap's backup" "$(fmt cpu_rgw_q)"
    # The least wall time the CPU work allows if it spread perfectly over
    # every core (medians); meaningless when the CPUs are split.
    if [ -z "${QSNAP_BENCH_S3_CPUS:-}" ]; then
        awk -v n="$NCPU" -v cp="$(med cpu_put)" -v rp="$(med cpu_rgw_put)" -v tp="$(med put)" \
            -v cq="$(med cpu_q)" -v rq="$(med cpu_rgw_q)" -v sg="$(med cpu_standin)" -v tq="$(med q)" \
            'BEGIN {
            printf "CPU work / %d cores: curl PUT (curl + radosgw) %.2f s, measured %.2f s; ", n, (cp + rp) / n, tp
            printf "qsnap (qsnap + radosgw + stand-in) %.2f s, measured %.2f s\n", (cq + rq + sg) / n, tq }'
    fi
fi
awk -v q="$(med r_q)" 'BEGIN { printf "median ratio qsnap / max(download, upload) = %.2f (target <= 1.10): %s\n",
    q, q <= 1.10 ? "OK" : "MISSED" }'
printf '\npeak RSS: %s %s MiB (rounds: %s), %s %s MiB; qsnap serve, %s via POST /v1/backup: %s MiB\n' \
    "$SMALL" "$RSS_q1" "$(fmt rss_q)" "$LARGE" "$RSS_q3" "$SMALL" "$RSS_serve"
printf 'stream + verify: %s %s s, %s %s s; wall clock incl. Qdrant snapshot creation: %s / %s\n' \
    "$SMALL" "$STREAM_q1" "$LARGE" "$STREAM_q3" "$WALL_q1" "$WALL_q3"
awk -v a="$RSS_q1" -v b="$RSS_q3" -v sa="$SMALL" -v sb="$LARGE" 'BEGIN {
    d = b - a; if (d < 0) d = -d
    printf "peak RSS %s %d MiB, %s %d MiB, difference %d MiB (targets <= 48, <= 4): %s\n",
        sa, a, sb, b, d, (a <= 48 && b <= 48 && d <= 4) ? "OK" : "MISSED" }'
printf '/metrics while streaming: %s samples, median %s ms, max %s ms\n' "$LAT_N" "$LAT_MED" "$LAT_MAX"
