#!/bin/bash
# Restore benchmark: `qsnap restore` of a 1 GiB backup (radosgw -> Qdrant
# stand-in, streamed, no staging) against a curl baseline doing the same
# transfer in two steps: GET the object from radosgw into a file, then upload
# that file to the stand-in with `curl -F snapshot=@file`. Both run in the
# same session against the same peers. Also reports qsnap's peak RSS
# (/usr/bin/time -v), which must stay within the backup bound
# (3 x part size + 16 MiB) whatever the snapshot size.
#
# Usage: bench/restore_bench.sh BUILD_DIR [SIZE_MIB] [RUNS]
#   SIZE_MIB  snapshot size (default 1024)    RUNS  timed rounds (default 2)
# Starts its own radosgw (test/rgw-start.sh) and stand-in in a temporary
# directory and removes everything afterwards. Needs about 6 x SIZE_MIB of
# free disk, radosgw/ceph-mon/ceph-osd, curl, /usr/bin/time, python3.
set -euo pipefail

BUILD=$(cd "${1:?usage: restore_bench.sh BUILD_DIR [SIZE_MIB] [RUNS]}" && pwd)
MIB=${2:-1024}
RUNS=${3:-2}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QSNAP="$BUILD/qsnap"
PY=/usr/bin/python3
[ -x "$QSNAP" ] || { echo "restore_bench: $QSNAP not built" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "restore_bench: /usr/bin/time missing (apt-get install time)" >&2; exit 2; }

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
        "$ROOT/test/rgw-start.sh" "$WORK/rgw" >"$WORK/rgw-start.log" 2>&1 && break
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

run_curl() { # -> "download_s upload_s"
    local code td tu
    read -r code td < <(curl -sS -o "$WORK/snap" -w '%{http_code} %{time_total}\n' \
        --aws-sigv4 "aws:amz:$REGION:s3" \
        --user "$QSNAP_TEST_S3_ACCESS_KEY:$QSNAP_TEST_S3_SECRET_KEY" \
        -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
        "$QSNAP_TEST_S3_ENDPOINT/$QSNAP_TEST_S3_BUCKET/$PREFIX/$OBJECT")
    [ "$code" = 200 ] || { log "curl download: HTTP $code"; exit 1; }
    read -r code tu < <(curl -sS -o /dev/null -w '%{http_code} %{time_total}\n' \
        -F "snapshot=@$WORK/snap" \
        "$QD/collections/bench-curl/snapshots/upload?wait=true&priority=snapshot&checksum=$SHA")
    [ "$code" = 200 ] || { log "curl upload: HTTP $code"; exit 1; }
    rm -f "$WORK/snap"
    check bench-curl
    drop bench-curl
    echo "$td $tu"
}

run_qsnap() { # -> "elapsed_s peak_rss_kib"
    /usr/bin/time -v -o "$WORK/time.txt" "$QSNAP" restore -c bench --to bench-qsnap >/dev/null
    check bench-qsnap
    drop bench-qsnap
    local el rss
    el=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$WORK/time.txt" |
        awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.1f", s }')
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$WORK/time.txt")
    echo "$el $rss"
}

log "timing $RUNS rounds (curl baseline, then qsnap restore)"
rows=()
for r in $(seq "$RUNS"); do
    read -r cd cu < <(run_curl)
    read -r qs rss < <(run_qsnap)
    rows+=("$r $cd $cu $qs $rss")
done

LIMIT=$(( PART_MIB * 3 + 16 ))
printf '\nqsnap restore benchmark: %s MiB snapshot (%s bytes, %s points), radosgw -> stand-in\n' \
    "$MIB" "$SIZE" "$POINTS"
printf 'backup of the same collection: %s s\n' "$BACKUP_S"
printf '%-5s %14s %12s %12s %14s %10s %14s\n' run "curl GET (s)" "curl -F (s)" "curl sum (s)" \
    "qsnap (s)" "qsnap/curl" "peak RSS MiB"
maxrss=0
for row in "${rows[@]}"; do
    read -r r cd cu qs rss <<<"$row"
    awk -v r="$r" -v cd="$cd" -v cu="$cu" -v qs="$qs" -v rss="$rss" 'BEGIN {
        printf "%-5s %14.1f %12.1f %12.1f %14.1f %10.2f %14.1f\n",
            r, cd, cu, cd + cu, qs, qs / (cd + cu), rss / 1024 }'
    [ "$rss" -gt "$maxrss" ] && maxrss=$rss
done
printf 'peak RSS bound (backup bound, 3 x %d MiB part + 16 MiB = %d MiB): %s\n' "$PART_MIB" \
    "$LIMIT" "$([ $((maxrss / 1024)) -lt "$LIMIT" ] && echo OK || echo EXCEEDED)"
[ $((maxrss / 1024)) -lt "$LIMIT" ]
