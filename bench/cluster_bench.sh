#!/bin/bash
# Cluster backup benchmark: one collection of generated data (6 shards,
# 1536-dim vectors) backed up to a radosgw from a 3-peer Qdrant cluster
# (replication factor 2; the stand-in's cluster mode) and from a single node
# holding the same data (with QSNAP_SNAPSHOT_METHOD=collection, the default,
# and =shards), in one run. For each backup it prints the wall time
# of `qsnap backup` and the bytes moved:
#   streamed     bytes Qdrant sent to qsnap (the shard streams or the
#                collection snapshot; the manifest's size)
#   stored       bytes written to the destination (= streamed, no compression)
#   qdrant_disk  bytes the Qdrant peers wrote to disk for the backup (the
#                stand-in's counters: snapshot files, storage/tmp archives and
#                shard-stream scratch files, summed over the peers)
#   per_peer     bytes streamed from each peer (cluster backups)
# and the ratio cluster / single node (each method) of the wall time and of
# the bytes moved (streamed + qdrant_disk).
#
# Usage: bench/cluster_bench.sh BUILD_DIR [RUNS]      (RUNS per setup, default 2)
# Knobs: QSNAP_BENCH_MIB (collection size, default 1024),
# QSNAP_BENCH_REUSE_RGW=1 (see backup_common.sh). Starts its own radosgw,
# stand-ins and cluster in a temporary directory and removes everything
# afterwards. Needs about 4 x QSNAP_BENCH_MIB of disk.
set -euo pipefail
# shellcheck source=backup_common.sh
. "$(dirname "${BASH_SOURCE[0]}")/backup_common.sh"

bc_init "${1:?usage: cluster_bench.sh BUILD_DIR [RUNS]}"
RUNS=${2:-2}
MIB=${QSNAP_BENCH_MIB:-1024}
CDIR="$BC_W/cluster"

stop_cluster() {
    [ -d "$CDIR" ] && "$BC_PY" "$BC_ROOT/test/qdrant_standin.py" --stop-cluster "$CDIR" >/dev/null 2>&1
    bc_cleanup
}
trap stop_cluster EXIT

bc_start_rgw
bc_start_standin
bc_qsnap_env
export QSNAP_COMPRESSION=none

bc_log "starting a 3-peer stand-in cluster"
"$BC_PY" "$BC_ROOT/test/qdrant_standin.py" --launch 3 --cluster-dir "$CDIR" >"$BC_W/peers" \
    2>"$BC_W/launch.log" || { cat "$BC_W/launch.log" >&2; exit 1; }
mapfile -t PEER_URLS < <(sed -n 's/.* url=\([^ ]*\) .*/\1/p' "$BC_W/peers")
[ "${#PEER_URLS[@]}" = 3 ] || { echo "bench: the cluster did not start" >&2; exit 1; }
CPORT=${PEER_URLS[0]##*:}

make_collection() { # URL REPLICATION_FACTOR
    curl -sSf -X POST "$1/__standin/collections" -H 'Content-Type: application/json' \
        -d "{\"name\":\"bench\",\"size_mib\":$MIB,\"dim\":1536,\"shard_number\":6,\"replication_factor\":$2}" \
        >/dev/null
}
bc_log "creating $MIB MiB in 6 shards on the single node and on the cluster (replication factor 2)"
make_collection "$STANDIN" 1
make_collection "${PEER_URLS[0]}" 2
for _ in $(seq 600); do
    curl -sSf "${PEER_URLS[0]}/collections/bench/cluster" | "$BC_PY" -c '
import json, sys
r = json.load(sys.stdin)["result"]
states = [s["state"] for s in r["local_shards"] + r["remote_shards"]]
sys.exit(0 if len(states) == 12 and set(states) == {"Active"} and not r["shard_transfers"] else 1)' &&
        break
    sleep 0.5
done
points() { curl -sSf "$1/collections/bench" | "$BC_PY" -c 'import json,sys; print(json.load(sys.stdin)["result"]["points_count"])'; }
P_SINGLE=$(points "$STANDIN")
P_CLUSTER=$(points "${PEER_URLS[0]}")

disk_bytes() { # URL... -> bytes written for snapshots, summed
    local u sum=0 n
    for u in "$@"; do
        n=$(curl -sSf "$u/__standin/state" | "$BC_PY" -c '
import json, sys
c = json.load(sys.stdin)["counters"]
print(c["snapshot_files_bytes"] + c["storage_tmp_bytes"] + c["snapshot_tmp_stream_bytes"])')
        sum=$((sum + n))
    done
    echo "$sum"
}
reset_counters() { local u; for u in "$@"; do curl -sSf -X DELETE "$u/__standin/counters" >/dev/null; done; }

ROWS=""
declare -A WALL=([single]=0 [single-shards]=0 [cluster]=0) BYTES=([single]=0 [single-shards]=0 [cluster]=0)
run() { # SETUP RUN
    local setup=$1 n=$2 t0 t1 disk urls streamed per
    if [ "$setup" = cluster ]; then
        urls=("${PEER_URLS[@]}")
        export QSNAP_QDRANT_URL=${PEER_URLS[0]} QSNAP_CLUSTER_REST_PORT=$CPORT
    else
        urls=("$STANDIN")
        export QSNAP_QDRANT_URL=$STANDIN
    fi
    if [ "$setup" = single-shards ]; then
        export QSNAP_SNAPSHOT_METHOD=shards
    else
        unset QSNAP_SNAPSHOT_METHOD
    fi
    reset_counters "${urls[@]}"
    sleep 1 # a new second: a new run name
    t0=$(date +%s.%N)
    "$QSNAP" backup -c bench >"$BC_W/out.$setup.$n" 2>"$BC_W/log.$setup.$n" || {
        cat "$BC_W/out.$setup.$n" "$BC_W/log.$setup.$n" >&2
        exit 1
    }
    t1=$(date +%s.%N)
    disk=$(disk_bytes "${urls[@]}")
    read -r streamed per < <("$BC_PY" - "$BC_W/log.$setup.$n" "$BC_W/peers" <<'PY'
import json, re, sys
idx = {}
for line in open(sys.argv[2]):
    m = re.search(r"peer=(\d+) .* peer_id=(\d+)", line)
    if m:
        idx[m.group(2)] = m.group(1)
total, per = 0, {}
for line in open(sys.argv[1]):
    try:
        j = json.loads(line)
    except ValueError:
        continue
    msg = j.get("msg", "")
    m = re.match(r"shard \d+ stored \((\d+) bytes\)(?: from peer (\d+))?", msg)
    if m:
        total += int(m.group(1))
        if m.group(2):
            k = "p" + idx.get(m.group(2), "?")
            per[k] = per.get(k, 0) + int(m.group(1))
    elif msg == "backup complete" and total == 0:
        total = j["bytes"]
print(total, ",".join("%s:%d" % kv for kv in sorted(per.items())) or "-")
PY
)
    local wall
    wall=$("$BC_PY" -c "print('%.2f' % ($t1 - $t0))")
    ROWS+=$(printf '%-13s %3d %8s %12d %12d %12d  %s' "$setup" "$n" "$wall" "$streamed" \
        "$streamed" "$disk" "$per")$'\n'
    WALL[$setup]=$("$BC_PY" -c "print(${WALL[$setup]} + $wall)")
    BYTES[$setup]=$((BYTES[$setup] + streamed + disk))
    bc_log "$setup run $n done"
}

for n in $(seq 1 "$RUNS"); do
    run single "$n"
    run single-shards "$n"
    run cluster "$n"
done

echo "collection: $MIB MiB of generated data, 6 shards, dim 1536, $P_SINGLE points (single node)," \
    "$P_CLUSTER points (3 peers, replication factor 2); to radosgw, no compression"
echo "single: QSNAP_SNAPSHOT_METHOD default (collection); single-shards: =shards;" \
    "cluster: shards (always), each from one peer"
printf '%-13s %3s %8s %12s %12s %12s  %s\n' setup run wall_s streamed stored qdrant_disk per_peer
printf '%s' "$ROWS"
for s in single single-shards; do
    "$BC_PY" -c "print('ratio cluster/$s: wall time %.2f, bytes moved (streamed + Qdrant disk) %.2f'
      % (${WALL[cluster]} / ${WALL[$s]}, ${BYTES[cluster]} / ${BYTES[$s]}))"
done
