#!/bin/bash
# Snapshot method benchmark: one collection (1 GiB, 3 shards, 1536-dim
# vectors) in the Qdrant stand-in, backed up to a radosgw with
# QSNAP_SNAPSHOT_METHOD=collection and with =shards, alternately, in one run.
# For each backup it prints the wall time of `qsnap backup` and the bytes the
# stand-in wrote to disk meanwhile (its counters, GET /__standin/state):
#   snapshot_files_bytes       snapshot files stored under Qdrant's snapshot
#                              directory (the collection snapshot and its
#                              .checksum)
#   storage_tmp_bytes          the collection snapshot archive built in
#                              storage/tmp before it is moved there
#   snapshot_tmp_stream_bytes  transient files of shard streams in the snapshot
#                              directory's tmp/ (each segment's RocksDB backups
#                              and an empty WAL per shard, deleted when the
#                              stream ends; Qdrant puts them under
#                              storage.temp_path instead when that is set)
#
# Usage: bench/method_bench.sh BUILD_DIR [RUNS]     (RUNS per method, default 2)
# Knobs: QSNAP_BENCH_MIB (collection size, default 1024), QSNAP_BENCH_SHARDS
# (default 3), QSNAP_BENCH_REUSE_RGW=1 (see backup_common.sh). Starts its own
# radosgw and stand-in in a temporary directory and removes everything
# afterwards. Needs about 4 GiB of disk.
set -euo pipefail
# shellcheck source=backup_common.sh
. "$(dirname "${BASH_SOURCE[0]}")/backup_common.sh"

bc_init "${1:?usage: method_bench.sh BUILD_DIR [RUNS]}"
RUNS=${2:-2}
MIB=${QSNAP_BENCH_MIB:-1024}
SHARDS=${QSNAP_BENCH_SHARDS:-3}
bc_start_rgw
bc_start_standin
bc_qsnap_env
export QSNAP_COMPRESSION=none

bc_log "creating a $MIB MiB collection with $SHARDS shards"
curl -sSf -X POST "$STANDIN/__standin/collections" -H 'Content-Type: application/json' \
    -d "{\"name\":\"bench\",\"size_mib\":$MIB,\"dim\":1536,\"shard_number\":$SHARDS}" >/dev/null
POINTS=$(curl -sSf "$STANDIN/collections/bench" | "$BC_PY" -c \
    'import json,sys; print(json.load(sys.stdin)["result"]["points_count"])')

counters() {
    curl -sSf "$STANDIN/__standin/state" | "$BC_PY" -c '
import json, sys
c = json.load(sys.stdin)["counters"]
print(c["snapshot_files_bytes"], c["storage_tmp_bytes"], c["snapshot_tmp_stream_bytes"])'
}

ROWS=""
run() { # METHOD RUN
    local method=$1 n=$2 t0 t1 files tmp stream stored
    curl -sSf -X DELETE "$STANDIN/__standin/counters" >/dev/null
    sleep 1 # a new second: a new snapshot or run name
    t0=$(date +%s.%N)
    QSNAP_SNAPSHOT_METHOD=$method "$QSNAP" backup -c bench >"$BC_W/out.$method.$n" \
        2>"$BC_W/log.$method.$n" || {
        cat "$BC_W/out.$method.$n" "$BC_W/log.$method.$n" >&2
        exit 1
    }
    t1=$(date +%s.%N)
    read -r files tmp stream < <(counters)
    stored=$("$BC_PY" - "$BC_W/log.$method.$n" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    try:
        j = json.loads(line)
    except ValueError:
        continue
    if j.get("msg") == "backup complete":
        print(j["bytes"])
PY
)
    ROWS+=$(printf '%-10s %3d %9.2f %14d %14d %16d %14d' "$method" "$n" \
        "$("$BC_PY" -c "print($t1 - $t0)")" "$files" "$tmp" "$stream" "$stored")$'\n'
    bc_log "$method run $n done"
}

for n in $(seq 1 "$RUNS"); do
    run collection "$n"
    run shards "$n"
done

echo "collection: $MIB MiB of generated data, $SHARDS shards, $POINTS points, dim 1536; to radosgw"
printf '%-10s %3s %9s %14s %14s %16s %14s\n' method run wall_s snapshot_files storage_tmp \
    shard_stream_tmp stored_bytes
printf '%s' "$ROWS"
