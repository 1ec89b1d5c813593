#!/usr/bin/env bash
# Start a throwaway single-host Ceph radosgw (S3) on loopback for the tests.
#
#   test/rgw-start.sh [DIR]          DIR defaults to $QSNAP_RGW_DIR, else /tmp/qsnap-rgw
#
# One monitor, one OSD, one radosgw, all bound to 127.0.0.1 on free ports, so
# several instances can run side by side. The OSD stores objects in bluestore on
# a sparse file in DIR (disk use = data stored, constant ~150 MiB RSS); memstore
# keeps everything in RAM and its OSD grew by twice the object size per upload
# (a 3 GiB object: +6 GiB RSS), so it is only for small, short runs. Writes DIR/env with the QSNAP_TEST_S3_* variables the integration tests
# read (source it). Idempotent: if DIR already holds a healthy instance, it only
# prints where it is. Stop it with test/rgw-stop.sh DIR.
#
# Knobs (environment):
#   QSNAP_RGW_BUCKET   bucket to create            (default qsnap-test)
#   QSNAP_RGW_STORE    bluestore | memstore        (default bluestore)
#   QSNAP_RGW_BYTES    OSD capacity in bytes       (default 16 GiB, sparse)
#   QSNAP_RGW_PORT, QSNAP_RGW_MON_PORT  fixed ports (default: free ones)
#   QSNAP_RGW_TIMEOUT  readiness bound in seconds  (default 90)
# Needs: radosgw ceph-mon ceph-osd curl python3.
set -euo pipefail

D=${1:-${QSNAP_RGW_DIR:-/tmp/qsnap-rgw}}
BUCKET=${QSNAP_RGW_BUCKET:-qsnap-test}
STORE=${QSNAP_RGW_STORE:-bluestore}
BYTES=${QSNAP_RGW_BYTES:-17179869184}
TIMEOUT=${QSNAP_RGW_TIMEOUT:-90}
AK=QSNAPTESTKEY
SK=qsnap-test-secret
REGION=us-east-1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# The machine may export CA bundle variables pointing at files that do not
# exist; everything here is plain http on loopback.
unset CURL_CA_BUNDLE AWS_CA_BUNDLE http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

case "$D" in
/*) ;;
*) D="$(pwd)/$D" ;;
esac
case "$STORE" in
memstore | bluestore) ;;
*)
    echo "rgw-start: QSNAP_RGW_STORE must be memstore or bluestore, not '$STORE'" >&2
    exit 2
    ;;
esac

log() { echo "rgw-start: $*" >&2; }
die() {
    log "$*"
    for f in "$D"/log/*.log; do
        [ -f "$f" ] && { echo "--- tail $f" >&2; tail -n 20 "$f" >&2; }
    done
    # Leave nothing running; keep the directory for its logs.
    QSNAP_RGW_KEEP=1 "$HERE/rgw-stop.sh" "$D" >/dev/null 2>&1 || true
    exit 1
}

for b in ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph curl; do
    command -v "$b" >/dev/null || {
        log "missing $b (run scripts/install-deps.sh)"
        exit 1
    }
done

PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Our daemon with pid file f is alive (and really is ours: its command line
# names our ceph.conf).
ours_alive() {
    local f=$1 p
    [ -f "$f" ] || return 1
    p=$(cat "$f" 2>/dev/null) || return 1
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$D/ceph.conf"
}

s3() { # s3 METHOD PATH [curl args...]: SigV4-signed request, prints the body
    local m=$1 p=$2
    shift 2
    curl -sS --max-time 60 --fail-with-body --aws-sigv4 "aws:amz:$REGION:s3" --user "$AK:$SK" \
        -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -X "$m" "$@" "$ENDPOINT$p"
}

# Already running? Then nothing to do.
if [ -f "$D/env" ] && ours_alive "$D/run/mon.a.pid" && ours_alive "$D/run/osd.0.pid" &&
    ours_alive "$D/run/client.rgw.a.pid"; then
    # shellcheck disable=SC1091
    ENDPOINT=$(. "$D/env" && echo "$QSNAP_TEST_S3_ENDPOINT")
    if curl -sf -o /dev/null --max-time 5 "$ENDPOINT/"; then
        log "already running at $ENDPOINT (env: $D/env)"
        echo "$D/env"
        exit 0
    fi
fi

# A half-dead previous instance in DIR: stop what is ours, then start afresh.
if [ -e "$D" ]; then
    if [ -f "$D/ceph.conf" ] || [ -z "$(ls -A "$D" 2>/dev/null)" ]; then
        "$HERE/rgw-stop.sh" "$D" >/dev/null 2>&1 || true
    else
        log "$D exists and is not an rgw directory; refusing to touch it"
        exit 1
    fi
fi

T0=$(date +%s.%N)
mkdir -p "$D"/{mon,osd0,rgw,run,log}
MON_PORT=${QSNAP_RGW_MON_PORT:-$(free_port)}
RGW_PORT=${QSNAP_RGW_PORT:-$(free_port)}
while [ "$RGW_PORT" = "$MON_PORT" ]; do RGW_PORT=$(free_port); done
ENDPOINT=http://127.0.0.1:$RGW_PORT
FSID=$(cat /proc/sys/kernel/random/uuid)

if [ "$STORE" = memstore ]; then
    STORE_CONF="osd objectstore = memstore
memstore device bytes = $BYTES"
else
    STORE_CONF="osd objectstore = bluestore
bluestore block create = true
bluestore block size = $BYTES
bluestore fsck on mkfs = false
bluestore cache size = 268435456"
fi

cat >"$D/ceph.conf" <<CONF
[global]
fsid = $FSID
mon host = v1:127.0.0.1:$MON_PORT
public addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
osd crush chooseleaf type = 0
osd crush update on start = false
osd class update on start = false
osd pool default pg autoscale mode = off
osd pool default pg num = 8
osd pool default pgp num = 8
mon max pg per osd = 1000
$STORE_CONF
rgw gc obj min wait = 10
rgw gc processor period = 10
client mount timeout = 30
rados mon op timeout = 30
rados osd op timeout = 60
run dir = $D/run
admin socket = $D/run/\$name.asok
pid file = $D/run/\$name.pid
log file = $D/log/\$name.log
[mon.a]
mon data = $D/mon
[osd.0]
osd data = $D/osd0
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw data = $D/rgw
CONF
C=(-c "$D/ceph.conf")
TO=(timeout 60)

# Commands to the monitor sometimes leave before the client has the monitor
# map and are refused with "wrong fsid" (seen under load): retry them.
retry() {
    local i
    for i in 1 2 3 4 5; do
        "$@" && return 0
        [ "$i" = 5 ] || sleep 1
    done
    return 1
}

monmaptool --create --addv a "v1:127.0.0.1:$MON_PORT" --fsid "$FSID" "$D/monmap" >/dev/null
ceph-mon "${C[@]}" --mkfs -i a --monmap "$D/monmap" >"$D/log/mkfs-mon.out" 2>&1 || die "mon mkfs failed"
ceph-mon "${C[@]}" -i a || die "ceph-mon failed to start"
# The OSD gets an explicit uuid on both sides ("osd create UUID" is idempotent,
# so it can be retried); it is placed in the CRUSH map here, and its boot-time
# CRUSH/class updates (more monitor commands) are off in ceph.conf.
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
retry "${TO[@]}" ceph "${C[@]}" --connect-timeout 30 osd create "$OSD_UUID" >/dev/null 2>>"$D/log/cli.err" ||
    die "monitor not answering"
ceph-osd "${C[@]}" -i 0 --mkfs --osd-uuid "$OSD_UUID" >"$D/log/mkfs-osd.out" 2>&1 || die "osd mkfs failed"
retry "${TO[@]}" ceph "${C[@]}" osd crush add osd.0 1.0 root=default host=localhost >/dev/null 2>>"$D/log/cli.err" ||
    die "osd crush add failed"
retry ceph-osd "${C[@]}" -i 0 2>>"$D/log/cli.err" || die "ceph-osd failed to start"
retry radosgw "${C[@]}" -n client.rgw.a 2>>"$D/log/cli.err" || die "radosgw failed to start"

ready=0
restarts=0
deadline=$(($(date +%s) + TIMEOUT))
while [ "$(date +%s)" -lt "$deadline" ]; do
    if curl -sf -o /dev/null --max-time 2 "$ENDPOINT/"; then
        ready=1
        break
    fi
    # A daemon that died during its initialisation (same monitor race) gets
    # a few more chances.
    if ! ours_alive "$D/run/osd.0.pid" && [ $restarts -lt 3 ]; then
        restarts=$((restarts + 1))
        log "ceph-osd exited during start-up; starting it again"
        ceph-osd "${C[@]}" -i 0 2>>"$D/log/cli.err" || true
    elif ! ours_alive "$D/run/client.rgw.a.pid" && [ $restarts -lt 3 ]; then
        restarts=$((restarts + 1))
        log "radosgw exited during start-up; starting it again"
        radosgw "${C[@]}" -n client.rgw.a 2>>"$D/log/cli.err" || true
    fi
    sleep 0.3
done
[ "$ready" = 1 ] || die "radosgw not ready on $ENDPOINT after ${TIMEOUT}s"
for n in mon.a osd.0 client.rgw.a; do
    ours_alive "$D/run/$n.pid" || die "$n is not running (port taken?)"
done
T_READY=$(date +%s.%N)

retry "${TO[@]}" radosgw-admin "${C[@]}" user create --uid=qsnap --display-name=qsnap \
    --access-key="$AK" --secret-key="$SK" >/dev/null 2>>"$D/log/user-create.out" ||
    die "radosgw-admin user create failed"

# Bucket (retry briefly: the user may take a moment to become visible).
ok=0
for _ in $(seq 1 20); do
    if s3 PUT "/$BUCKET" -o "$D/log/bucket.out" 2>>"$D/log/bucket.err"; then
        ok=1
        break
    fi
    sleep 0.5
done
[ "$ok" = 1 ] || die "could not create bucket $BUCKET: $(cat "$D/log/bucket.out" 2>/dev/null)"

# Warm-up multipart upload: the first one on a fresh radosgw creates a pool
# and takes seconds; do it here so tests see normal latencies.
WK="/$BUCKET/__warmup/object"
UPLOAD_ID=$(s3 POST "$WK?uploads=" --data-binary '' | sed -n 's:.*<UploadId>\(.*\)</UploadId>.*:\1:p')
[ -n "$UPLOAD_ID" ] || die "warm-up: initiate multipart failed"
printf 'qsnap warm-up part\n' >"$D/warmup.part"
ETAG=$(s3 PUT "$WK?partNumber=1&uploadId=$UPLOAD_ID" -T "$D/warmup.part" -D - -o /dev/null |
    tr -d '\r' | sed -n 's/^[Ee][Tt][Aa][Gg]: *//p')
[ -n "$ETAG" ] || die "warm-up: upload part failed"
printf '<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>%s</ETag></Part></CompleteMultipartUpload>' \
    "$ETAG" >"$D/warmup.xml"
s3 POST "$WK?uploadId=$UPLOAD_ID" -H 'Content-Type: application/xml' --data-binary "@$D/warmup.xml" \
    -o /dev/null || die "warm-up: complete multipart failed"
s3 DELETE "$WK" -o /dev/null || die "warm-up: delete failed"
rm -f "$D/warmup.part" "$D/warmup.xml"

cat >"$D/env.tmp" <<ENV
export QSNAP_TEST_S3_ENDPOINT=$ENDPOINT
export QSNAP_TEST_S3_ACCESS_KEY=$AK
export QSNAP_TEST_S3_SECRET_KEY=$SK
export QSNAP_TEST_S3_BUCKET=$BUCKET
export QSNAP_TEST_S3_REGION=$REGION
ENV
mv "$D/env.tmp" "$D/env"

T1=$(date +%s.%N)
el() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
log "ready at $ENDPOINT (bucket $BUCKET, $STORE) in $(el "$T0" "$T1")s (daemons up after $(el "$T0" "$T_READY")s); env: $D/env"
echo "$D/env"
