#!/usr/bin/env bash
# Stop what test/rgw-start.sh started in DIR, in the order rgw -> osd -> mon,
# wait for each to exit, then remove DIR.
#
#   test/rgw-stop.sh [DIR]     DIR defaults to $QSNAP_RGW_DIR, else /tmp/qsnap-rgw
#
# Only processes whose command line names DIR/ceph.conf are signalled, so a
# recycled pid or another instance is never touched. Idempotent: a missing DIR
# is success. QSNAP_RGW_KEEP=1 stops the daemons but keeps DIR (logs).
set -uo pipefail

D=${1:-${QSNAP_RGW_DIR:-/tmp/qsnap-rgw}}
case "$D" in
/*) ;;
*) D="$(pwd)/$D" ;;
esac
D=${D%/}

[ -d "$D" ] || exit 0
if [ ! -f "$D/ceph.conf" ] && [ -n "$(ls -A "$D" 2>/dev/null)" ]; then
    echo "rgw-stop: $D is not an rgw directory (no ceph.conf); not touching it" >&2
    exit 1
fi

CONF="$D/ceph.conf"

is_ours() { # pid -> 0 when it runs with our ceph.conf
    local p=$1
    [ -n "$p" ] && [ -r "/proc/$p/cmdline" ] || return 1
    tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null | grep -qxF -- "$CONF"
}

stop_pid() { # pid name
    local p=$1 n=$2 _
    is_ours "$p" || return 0
    kill -TERM "$p" 2>/dev/null || return 0
    for _ in $(seq 1 100); do
        is_ours "$p" || return 0
        sleep 0.1
    done
    echo "rgw-stop: $n ($p) did not exit after TERM, sending KILL" >&2
    kill -KILL "$p" 2>/dev/null
    for _ in $(seq 1 50); do
        is_ours "$p" || return 0
        sleep 0.1
    done
    echo "rgw-stop: $n ($p) still running" >&2
    return 1
}

rc=0
for n in client.rgw.a osd.0 mon.a; do
    f="$D/run/$n.pid"
    [ -f "$f" ] || continue
    stop_pid "$(cat "$f" 2>/dev/null)" "$n" || rc=1
done

# Stragglers started with our config whose pid file is gone (a daemon that
# lost its pid file, an interrupted radosgw-admin or ceph CLI call).
for e in /proc/[0-9]*; do
    p=${e#/proc/}
    [ "$p" = $$ ] && continue
    if is_ours "$p"; then
        stop_pid "$p" "$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-60)" || rc=1
    fi
done

if [ "$rc" = 0 ] && [ "${QSNAP_RGW_KEEP:-0}" != 1 ]; then
    rm -rf -- "$D"
fi
exit $rc
