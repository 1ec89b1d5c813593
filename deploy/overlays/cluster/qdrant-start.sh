#!/bin/bash
# Starts one Qdrant peer of the cluster overlay: runs the image's own
# entrypoint (./entrypoint.sh, in Qdrant's working directory) with this
# peer's P2P URI (--uri) and, when it applies, the URI of a peer to join
# through (--bootstrap). Mounted from the qdrant-cluster-start ConfigMap.
#
# What Qdrant does with them (it keeps its Raft state in
# STORAGE/raft_state.json):
#   - a peer that has taken part in the consensus ignores --bootstrap, and
#     uses --uri only to tell the others when its address has changed;
#     restarts are therefore safe whatever is passed
#   - a peer without that history (a new volume, or a single node's volume
#     that has never run in cluster mode) joins the cluster behind
#     --bootstrap, or founds a new cluster when --bootstrap is absent: a
#     single node's collections become the new cluster's
# A peer listens on its P2P port only once it is a member of a cluster. So,
# at every start:
#   1. another pod of the headless Service that answers on the P2P port is
#      a member: --bootstrap through it
#   2. nobody answers: pod 0 starts without --bootstrap (it founds the
#      cluster, or carries on with its state after a full restart); any
#      other pod bootstraps through pod 0 and, until pod 0 is up, fails
#      and is restarted by the kubelet
# With a new volume (no Raft state) the pod first waits for an answer:
# pod 0 QDRANT_FOUND_WAIT seconds (default 20) before it founds a cluster,
# so that pod 0 given a new volume joins the existing cluster instead of
# founding a second one beside it; the other pods QDRANT_JOIN_WAIT seconds
# (default 120) before falling back to pod 0.
#
# Environment (set in statefulset.yaml): POD_NAME (qdrant-N), POD_IP,
# QDRANT_PEER_DOMAIN (the headless Service's DNS name),
# QDRANT__CLUSTER__P2P__PORT (default 6335), QDRANT__STORAGE__STORAGE_PATH
# (default ./storage, as Qdrant's).
set -u

log() { echo "qdrant-start: $*" >&2; }
die() {
    log "$*"
    exit 1
}

name=${POD_NAME:-}
domain=${QDRANT_PEER_DOMAIN:-}
port=${QDRANT__CLUSTER__P2P__PORT:-6335}
storage=${QDRANT__STORAGE__STORAGE_PATH:-./storage}
found_wait=${QDRANT_FOUND_WAIT:-20}
join_wait=${QDRANT_JOIN_WAIT:-120}

ordinal=${name##*-}
case $name in
*-*) ;;
*) die "POD_NAME '$name' is not a StatefulSet pod name (NAME-ORDINAL)" ;;
esac
case $ordinal in
'' | *[!0-9]*) die "POD_NAME '$name' does not end in -ORDINAL" ;;
esac
[ -n "$domain" ] || die "QDRANT_PEER_DOMAIN is not set (the headless Service's DNS name)"
for v in port found_wait join_wait; do
    case ${!v} in
    '' | *[!0-9]*) die "$v '${!v}' is not a number" ;;
    esac
done

self_uri=http://$name.$domain:$port
first_uri=http://${name%-*}-0.$domain:$port

# Prints the URI of the first other pod behind the headless Service that
# accepts a connection on the P2P port; fails when none does.
answering_peer() {
    local ip
    for ip in $(getent ahosts "$domain" 2>/dev/null | awk '{ print $1 }' | sort -u); do
        [ "$ip" = "${POD_IP:-}" ] && continue
        # shellcheck disable=SC2016 # expanded by the inner bash
        if timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$ip" "$port" 2>/dev/null; then
            case $ip in
            *:*) echo "http://[$ip]:$port" ;;
            *) echo "http://$ip:$port" ;;
            esac
            return 0
        fi
    done
    return 1
}

if [ -e "$storage/raft_state.json" ]; then
    wait=0
    log "$name has Raft state in $storage"
elif [ "$ordinal" = 0 ]; then
    wait=$found_wait
    log "$name has a new volume: waiting up to ${wait}s for a cluster member before founding one"
else
    wait=$join_wait
    log "$name has a new volume: waiting up to ${wait}s for a cluster member to join through"
fi
deadline=$((SECONDS + wait))
while ! peer=$(answering_peer) && [ "$SECONDS" -lt "$deadline" ]; do
    sleep 2
done

if [ -n "$peer" ]; then
    log "a cluster member answers at $peer: --bootstrap $peer"
    set -- --bootstrap "$peer" --uri "$self_uri"
elif [ "$ordinal" = 0 ]; then
    log "no other peer answers: starting as the first peer"
    set -- --uri "$self_uri"
else
    log "no other peer answers: --bootstrap $first_uri"
    set -- --bootstrap "$first_uri" --uri "$self_uri"
fi
log "exec ./entrypoint.sh $*"
exec ./entrypoint.sh "$@"
