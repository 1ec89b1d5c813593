#!/usr/bin/env bash
# HTTP benchmark: CPU per request of qsnap's endpoint against nginx's, same run.
#
# Starts `qsnap serve` (file:// destination, no schedule) and nginx (a
# non-daemon child on a random loopback port, minimal configuration in a
# temporary directory, one worker, access log off) serving two static files
# with the bytes of qsnap's GET /metrics and GET /healthz answers. Then wrk
# (-t1 -cCONNS, keep-alive, which is wrk's default) runs against each of the
# four URLs in turn, ROUNDS times, interleaved, so both servers see the same
# machine. For every run the server's CPU time is the utime+stime delta of
# /proc/PID/stat over the wrk run (for nginx: master and worker), divided by
# the requests wrk completed. Prints qsnap's and nginx's CPU microseconds per
# request, their ratio, the request rates, how many connections qsnap
# accepted (keep-alive: CONNS, plus one per 1,000 requests), and wrk's errors.
#
# Exits 1 when wrk saw socket errors or non-2xx answers, or when qsnap's
# /metrics costs more than 1.5 x nginx's CPU per request.
#
#   bench/http_bench.sh [BUILD_DIR]          (default: build)
#   QSNAP_HTTP_BENCH_S=10       seconds per wrk run
#   QSNAP_HTTP_BENCH_ROUNDS=2   rounds of the four runs
#   QSNAP_HTTP_BENCH_CONNS=8    wrk connections
#   QSNAP_HTTP_BENCH_NGINX_LOG=1  nginx writes an access log (as a stock
#                                 configuration does); default off, like qsnap
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-build}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
QSNAP="$BUILD/qsnap"
[ -x "$QSNAP" ] || { echo "http_bench: no qsnap binary in $BUILD (build first)" >&2; exit 2; }
command -v wrk >/dev/null || { echo "http_bench: wrk is not installed" >&2; exit 2; }
# shellcheck source=bench/nginx_common.sh
. "$ROOT/bench/nginx_common.sh"
PY=/usr/bin/python3
SECS=${QSNAP_HTTP_BENCH_S:-10}
ROUNDS=${QSNAP_HTTP_BENCH_ROUNDS:-2}
CONNS=${QSNAP_HTTP_BENCH_CONNS:-8}

unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

W=$(mktemp -d "${TMPDIR:-/tmp}/qsnap-http.XXXXXX")
QSNAP_PID="" NGINX_PID=""

cleanup() {
    set +e
    [ -n "$QSNAP_PID" ] && kill "$QSNAP_PID" 2>/dev/null && wait "$QSNAP_PID" 2>/dev/null
    nginx_stop
    rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "http_bench: $*" >&2; }
free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# qsnap serve
mkdir -p "$W/dest"
QPORT=$(free_port)
QURL="http://127.0.0.1:$QPORT"
env QSNAP_DESTINATION="file://$W/dest" QSNAP_SCHEDULE=off QSNAP_QDRANT_URL=http://127.0.0.1:9 \
    QSNAP_LISTEN="127.0.0.1:$QPORT" QSNAP_LOG_LEVEL=warn \
    "$QSNAP" serve >"$W/qsnap.log" 2>&1 &
QSNAP_PID=$!
for _ in $(seq 100); do curl -sf "$QURL/healthz" -o /dev/null && break; sleep 0.1; done
curl -sf "$QURL/healthz" -o /dev/null || { log "qsnap did not start"; tail -5 "$W/qsnap.log"; exit 1; }

# nginx serves the same bytes as files (its worker may run as another user)
chmod 755 "$W"
ACCESS_LOG=off
[ "${QSNAP_HTTP_BENCH_NGINX_LOG:-0}" = 1 ] && ACCESS_LOG="$W/nginx/access.log"
nginx_start "$W/nginx" "$QURL" "$ACCESS_LOG" || { log "nginx did not start"; exit 1; }
NURL=$NGINX_URL

accepted() {
    curl -sf "$QURL/metrics" | awk '$1 == "qsnap_http_connections_accepted_total" {print $2}'
}
TCK=$(getconf CLK_TCK)
RES="$W/results"
: >"$RES"

# run NAME URL PID: one wrk run; appends "NAME requests ticks seconds errors accepted"
# (accepted: connections qsnap accepted during a qsnap run, -1 for nginx)
run() {
    local name=$1 url=$2 pid=$3 out="$W/wrk-$1-$4.txt" t0 t1 a0=0 a1=0
    # qsnap's connection counter is computed when /metrics is rendered, at
    # most once a second while nothing else changes: wait that out
    case "$name" in qsnap*) sleep 1.1; a0=$(accepted) ;; esac
    t0=$(proc_ticks "$pid")
    wrk -t1 -c"$CONNS" -d"${SECS}s" "$url" >"$out" 2>&1
    t1=$(proc_ticks "$pid")
    case "$name" in qsnap*) sleep 1.1; a1=$(accepted) ;; esac
    "$PY" - "$name" "$out" $((t1 - t0)) "$a0" "$a1" >>"$RES" <<'PY'
import re, sys
name, path, ticks, a0, a1 = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
text = open(path).read()
m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
if not m:
    sys.exit("wrk printed no request count:\n" + text)
reqs = int(m.group(1))
secs = float(m.group(2)) * {"s": 1, "ms": 1e-3, "m": 60}.get(m.group(3), 1)
errs = 0
for pat in (r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
            r"Non-2xx or 3xx responses: (\d+)"):
    e = re.search(pat, text)
    if e:
        errs += sum(int(x) for x in e.groups())
# the second scrape's own connection is in a1
acc = int(float(a1) - float(a0)) - 1 if name.startswith("qsnap") else -1
print(name, reqs, ticks, secs, errs, acc)
PY
}

log "wrk -t1 -c$CONNS -d${SECS}s, $ROUNDS rounds; /metrics is $(wc -c <"$W/nginx/www/metrics") bytes"
for r in $(seq "$ROUNDS"); do
    run qsnap-metrics "$QURL/metrics" "$QSNAP_PID" "$r" || exit 1
    run nginx-metrics "$NURL/metrics" "$NGINX_PID" "$r" || exit 1
    run qsnap-healthz "$QURL/healthz" "$QSNAP_PID" "$r" || exit 1
    run nginx-healthz "$NURL/healthz" "$NGINX_PID" "$r" || exit 1
done

echo
echo "== qsnap HTTP benchmark: CPU per request with keep-alive ($(nproc) CPUs, loopback; $QSNAP)"
echo "   wrk -t1 -c$CONNS, ${SECS} s per run, $ROUNDS rounds; /metrics $(wc -c <"$W/nginx/www/metrics") bytes;" \
    "nginx $NGINX_VERSION, 1 worker, access log $([ "$ACCESS_LOG" = off ] && echo off || echo on)"
"$PY" - "$RES" "$TCK" <<'PY'
import sys
from collections import defaultdict
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
tck = int(sys.argv[2])
tot = defaultdict(lambda: [0, 0, 0.0, 0, 0])
print("%-14s %10s %10s %9s %12s %8s %s" % ("run", "requests", "req/s", "CPU s", "CPU us/req",
                                           "errors", "conns"))
for name, reqs, ticks, secs, errs, acc in rows:
    reqs, ticks, secs, errs, acc = int(reqs), int(ticks), float(secs), int(errs), int(acc)
    cpu = ticks / tck
    print("%-14s %10d %10.0f %9.2f %12.2f %8d %s" % (name, reqs, reqs / secs, cpu,
          cpu / reqs * 1e6, errs, acc if acc >= 0 else "-"))
    t = tot[name]
    t[0] += reqs; t[1] += ticks; t[2] += secs; t[3] += errs
us = {n: t[1] / tck / t[0] * 1e6 for n, t in tot.items()}
print()
for ep in ("metrics", "healthz"):
    q, n = us["qsnap-" + ep], us["nginx-" + ep]
    print("/%-8s qsnap %.2f us/req, nginx %.2f us/req, ratio %.2f" % (ep, q, n, q / n))
errs = sum(t[3] for t in tot.values())
ratio = us["qsnap-metrics"] / us["nginx-metrics"]
if errs:
    print("RESULT: FAIL (wrk saw %d errors)" % errs)
    sys.exit(1)
if ratio > 1.5:
    print("RESULT: FAIL (/metrics costs %.2f x nginx's CPU per request, limit 1.5)" % ratio)
    sys.exit(1)
print("RESULT: OK (/metrics costs %.2f x nginx's CPU per request, limit 1.5)" % ratio)
PY
