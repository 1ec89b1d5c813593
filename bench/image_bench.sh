#!/usr/bin/env bash
# Image figures: per architecture, the runtime file set's size and library
# count (scripts/image-files.sh: release build, native or cross, stripped);
# for amd64 also the idle memory of `qsnap serve` next to a floor measured
# in the same run.
#
# Idle RSS: `qsnap serve` from the amd64 file set (file:// destination,
# schedule off, the Qdrant stand-in as Qdrant) after N seconds, from
# /proc/PID/status (RssAnon, RssFile). The floor is the curl CLI, which loads
# the same libcurl and its libraries, holding one idle connection (to a
# listener that never answers) for the same time. A third process is qsnap
# relinked with Debian's static libcurl (libcurl.a from libcurl4-openssl-dev;
# libcurl's own dependencies stay shared) to show what that linking changes.
# arm64 has no RSS figure: under qemu-user it would be qemu's memory.
#
# usage: bench/image_bench.sh
#   QSNAP_BENCH_IDLE_SECONDS   idle time before reading RSS (default 30)
#   QSNAP_BENCH_ARCHS          architectures (default "amd64 arm64")
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IDLE=${QSNAP_BENCH_IDLE_SECONDS:-30}
read -r -a ARCHS <<<"${QSNAP_BENCH_ARCHS:-amd64 arm64}"
PY=/usr/bin/python3
NATIVE=$(dpkg --print-architecture)

W=$(mktemp -d "${TMPDIR:-/tmp}/qsnap-image-bench.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mib() { awk -v k="$1" 'BEGIN { printf "%.2f", k / 1024 }'; }

free_port() {
    $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() { # url
    local _
    for _ in $(seq 1 100); do
        curl -sf -o /dev/null "$1" && return 0
        sleep 0.1
    done
    echo "image_bench: $1 did not answer" >&2
    return 1
}

# "RssAnon RssFile" in kB
rss() {
    awk '/^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 } END { print a, f }' "/proc/$1/status"
}

echo "== runtime file sets (release build, stripped; scripts/image-files.sh)"
printf '%-6s %12s %10s %s\n' arch bytes MB "shared objects (incl. the dynamic loader)"
for a in "${ARCHS[@]}"; do
    sh "$ROOT/scripts/image-files.sh" "$a" "$W/rootfs-$a"
    bytes=$(du -sb "$W/rootfs-$a" | cut -f1)
    libs=$(find "$W/rootfs-$a" -type f -name '*.so*' | wc -l)
    banned=$(find "$W/rootfs-$a" -type f | grep -cE 'libicu|libxml2' || true)
    printf '%-6s %12s %10s %s (ICU/libxml2 files: %s)\n' "$a" "$bytes" \
        "$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1e6 }')" "$libs" "$banned"
done

if [[ " ${ARCHS[*]} " != *" $NATIVE "* ]]; then
    exit 0
fi

# ---- idle memory on the build machine's architecture
bin=$W/rootfs-$NATIVE/usr/local/bin/qsnap
build=${QSNAP_IMAGE_BUILD_DIR:-$ROOT/build-release-$NATIVE}
libdir=/usr/lib/$(cc -print-multiarch)
curl_so=$libdir/libcurl.so.4
curl_a=$libdir/libcurl.a
static_bin=""
if [ -f "$curl_a" ]; then
    # the same objects, libcurl from the archive, its dependencies by soname
    mapfile -t curl_deps < <(readelf -d "$curl_so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/-l:\1/p')
    mapfile -t own < <(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/-l:\1/p' | grep -v libcurl)
    static_bin=$W/qsnap-static-libcurl
    cc -o "$static_bin" "$build"/qsnap.p/*.o "$build/src/libqsnapcore.a" "$curl_a" \
        "${curl_deps[@]}" "${own[@]}" -lpthread -s -Wl,--as-needed
fi

mkdir -p "$W/standin" "$W/dest" "$W/dest-static"
$PY "$ROOT/test/qdrant_standin.py" --port 0 --port-file "$W/standin.port" --storage "$W/standin" \
    >"$W/standin.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
    [ -s "$W/standin.port" ] && break
    sleep 0.1
done
qurl="http://127.0.0.1:$(cat "$W/standin.port")"
wait_http "$qurl/healthz"

serve() { # binary dest -> pid in SERVE_PID
    local port
    port=$(free_port)
    env -i PATH=/usr/bin:/bin QSNAP_DESTINATION="file://$2" QSNAP_SCHEDULE=off \
        QSNAP_LISTEN="127.0.0.1:$port" QSNAP_QDRANT_URL="$qurl" "$1" serve \
        >>"$W/serve.log" 2>&1 &
    SERVE_PID=$!
    PIDS+=("$SERVE_PID")
    wait_http "http://127.0.0.1:$port/healthz"
}
serve "$bin" "$W/dest"
q_pid=$SERVE_PID
s_pid=""
if [ -n "$static_bin" ]; then
    serve "$static_bin" "$W/dest-static"
    s_pid=$SERVE_PID
fi

# the floor: curl with one idle connection
hold_port=$(free_port)
$PY -c '
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(1)
c, _ = s.accept()
time.sleep(3600)' "$hold_port" &
PIDS+=($!)
sleep 0.3
env -i PATH=/usr/bin:/bin curl -s -o /dev/null "http://127.0.0.1:$hold_port/" &
c_pid=$!
PIDS+=("$c_pid")

echo
echo "== idle memory after ${IDLE}s ($NATIVE; kB from /proc/PID/status)"
sleep "$IDLE"
read -r qa qf <<<"$(rss "$q_pid")"
read -r ca cf <<<"$(rss "$c_pid")"
nq=$(grep -c '\.so' <<<"$(awk '{ print $6 }' "/proc/$q_pid/maps" | sort -u)")
nc=$(grep -c '\.so' <<<"$(awk '{ print $6 }' "/proc/$c_pid/maps" | sort -u)")
printf '%-34s %8s %8s %8s %9s %s\n' process anon file total "total MiB" "shared objects mapped"
row() { printf '%-34s %8s %8s %8s %9s %s\n' "$1" "$2" "$3" "$(($2 + $3))" "$(mib $(($2 + $3)))" "$4"; }
row "qsnap serve" "$qa" "$qf" "$nq"
if [ -n "$s_pid" ]; then
    read -r sa sf <<<"$(rss "$s_pid")"
    ns=$(grep -c '\.so' <<<"$(awk '{ print $6 }' "/proc/$s_pid/maps" | sort -u)")
    row "qsnap serve, static libcurl" "$sa" "$sf" "$ns"
fi
row "floor: curl, one idle connection" "$ca" "$cf" "$nc"
ratio=$(awk -v q=$((qa + qf)) -v c=$((ca + cf)) 'BEGIN { printf "%.3f", q / c }')
echo
echo "qsnap / floor = $ratio (limit 1.10): $(awk -v r="$ratio" 'BEGIN { print (r <= 1.10 ? "ok" : "EXCEEDED") }')"
echo "qsnap anonymous = $(mib "$qa") MiB (limit 2 MiB): $([ "$qa" -le 2048 ] && echo ok || echo EXCEEDED)"
if [ -n "$s_pid" ]; then
    echo "static libcurl: qsnap $(mib $((sa + sf))) MiB vs $(mib $((qa + qf))) MiB shared;" \
        "/ floor = $(awk -v q=$((sa + sf)) -v c=$((ca + cf)) 'BEGIN { printf "%.3f", q / c }')"
fi
