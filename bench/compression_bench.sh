#!/bin/bash
# Compression benchmark: the same realistic collection snapshot from the
# Qdrant stand-in (float32 vectors + JSON payloads) backed up with
# QSNAP_COMPRESSION=none, gzip:1 and gzip:6. Prints, per setting, the stored
# size / snapshot size, the streaming throughput (snapshot MiB per second of
# streaming, Qdrant's snapshot creation excluded) and qsnap's CPU time
# (user + sys; steadier than wall time on a busy machine).
#
# Usage: bench/compression_bench.sh BUILD_DIR [MIB] [file|s3]
#   MIB   collection snapshot size (default 1024)
#   file  back up to a file:// directory (default; isolates qsnap's own cost)
#   s3    back up to a radosgw started with test/rgw-start.sh
set -euo pipefail
# shellcheck source=backup_common.sh
. "$(dirname "${BASH_SOURCE[0]}")/backup_common.sh"

bc_init "${1:?usage: compression_bench.sh BUILD_DIR [MIB] [file|s3]}"
MIB=${2:-1024}
DEST=${3:-file}
bc_start_standin
if [ "$DEST" = s3 ]; then
    bc_start_rgw
    bc_qsnap_env
else
    bc_qsnap_env
    unset QSNAP_S3_ENDPOINT QSNAP_S3_REGION QSNAP_S3_ACCESS_KEY_ID QSNAP_S3_SECRET_ACCESS_KEY
    mkdir -p "$BC_W/dest"
    export QSNAP_DESTINATION="file://$BC_W/dest"
fi

bc_log "creating a $MIB MiB collection"
bc_collection realistic "$MIB"

printf '%-8s %14s %14s %7s %10s %9s %11s\n' setting snapshot stored ratio stream_s "MiB/s" "cpu_s" >"$BC_W/table"
for setting in none gzip:1 gzip:6; do
    bc_log "backup with QSNAP_COMPRESSION=$setting"
    QSNAP_COMPRESSION=$setting /usr/bin/time -v -o "$BC_W/time" "$QSNAP" backup -c realistic \
        >"$BC_W/out" 2>"$BC_W/log" || {
        cat "$BC_W/out" "$BC_W/log" >&2
        exit 1
    }
    stream=$(bc_stream_seconds "$BC_W/log" realistic)
    user=$(bc_timev_field "$BC_W/time" 'User time (seconds)')
    sys=$(bc_timev_field "$BC_W/time" 'System time (seconds)')
    # The newest backup's manifest holds both sizes.
    read -r size stored < <("$QSNAP" list -c realistic --json 2>/dev/null |
        "$BC_PY" -c 'import json,sys; b=json.load(sys.stdin)["backups"][0]; print(b["size"], b["stored_size"])')
    awk -v s="$setting" -v a="$size" -v b="$stored" -v t="$stream" -v u="$user" -v y="$sys" 'BEGIN {
        printf "%-8s %14d %14d %7.3f %10.2f %9.1f %11.2f\n", s, a, b, b / a, t, a / 1048576 / t, u + y }' >>"$BC_W/table"
done
printf '\nqsnap compression benchmark: %s MiB realistic snapshot (dim 1536), destination %s\n' "$MIB" "$DEST"
cat "$BC_W/table"
