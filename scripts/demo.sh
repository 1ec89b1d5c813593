#!/usr/bin/env bash
# The demo: build qsnap (release), start a throwaway radosgw (S3) and the Qdrant
# stand-in on loopback, run `qsnap serve` against them, show /healthz, /readyz
# and /metrics, trigger a backup and a restore over HTTP, and stop everything.
# Runs from any directory. Everything it starts is stopped on exit.
#
# Environment knobs:
#   QSNAP_SKIP_DEPS=1        do not run scripts/install-deps.sh
#   QSNAP_DEMO_BUILD_DIR     release build directory (default build-release)
#   QSNAP_DEMO_POINTS        points per demo collection (default 2000)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

BUILD=${QSNAP_DEMO_BUILD_DIR:-build-release}
POINTS=${QSNAP_DEMO_POINTS:-2000}
PY=/usr/bin/python3
SKIP_DEPS=${QSNAP_SKIP_DEPS:-0}
# qsnap warns about QSNAP_* variables it does not know: keep the demo's own
# knobs out of its environment.
unset QSNAP_SKIP_DEPS QSNAP_DEMO_BUILD_DIR QSNAP_DEMO_POINTS
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY CURL_CA_BUNDLE
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

WORK=$(mktemp -d /tmp/qsnap-demo.XXXXXX)
RGW_DIR=$WORK/rgw
STANDIN_PID=""
QSNAP_PID=""

if [ -t 1 ]; then B=$'\033[1m' N=$'\033[0m'; else B="" N=""; fi
title() { printf '\n%s==== %s%s\n' "$B" "$*" "$N"; }
note() { printf '  %s\n' "$*"; }

# Stops one process we started: TERM, wait up to $2 seconds, then KILL.
stop_pid() {
    local pid=$1 secs=$2 i
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        note "pid $pid did not stop after ${secs}s: KILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    set +e
    title "stopping everything"
    if [ -n "$QSNAP_PID" ]; then
        local t0=$SECONDS
        stop_pid "$QSNAP_PID" 30
        note "qsnap stopped ($((SECONDS - t0))s after SIGTERM)"
    fi
    if [ -n "$STANDIN_PID" ]; then
        stop_pid "$STANDIN_PID" 10
        note "Qdrant stand-in stopped"
    fi
    if [ -d "$RGW_DIR" ]; then
        "$ROOT/test/rgw-stop.sh" "$RGW_DIR" && note "radosgw stopped"
    fi
    if [ $rc -ne 0 ] && [ -f "$WORK/qsnap.log" ]; then
        echo "--- last lines of the qsnap log" >&2
        tail -n 30 "$WORK/qsnap.log" >&2
    fi
    rm -rf "$WORK"
    [ $rc -eq 0 ] && echo "demo finished" || echo "demo FAILED (rc=$rc)" >&2
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# json_get FIELD: prints a top-level field of the JSON document on stdin.
json_get() {
    "$PY" -c 'import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v.get(k) if isinstance(v, dict) else None
print("" if v is None else v)' "$1"
}

wait_http() { # url seconds
    local i
    for ((i = 0; i < $2 * 5; i++)); do
        curl -sf -o /dev/null --max-time 2 "$1" && return 0
        sleep 0.2
    done
    return 1
}

# ---------------------------------------------------------------------------
title "dependencies and release build ($BUILD)"
if [ "$SKIP_DEPS" != 1 ]; then
    "$ROOT/scripts/install-deps.sh"
fi
if [ ! -f "$BUILD/build.ninja" ]; then
    meson setup "$BUILD" --buildtype=release -Dtests=false >/dev/null
fi
if ! ninja -C "$BUILD" >"$WORK/build.log" 2>&1; then
    grep -E -A3 'error|FAILED' "$WORK/build.log" | head -n 30 >&2
    exit 1
fi
QSNAP=$ROOT/$BUILD/qsnap
note "$("$QSNAP" --version)"

# ---------------------------------------------------------------------------
title "S3: throwaway radosgw on loopback"
"$ROOT/test/rgw-start.sh" "$RGW_DIR" >/dev/null
# shellcheck disable=SC1091
. "$RGW_DIR/env"
note "endpoint $QSNAP_TEST_S3_ENDPOINT, bucket $QSNAP_TEST_S3_BUCKET"

# ---------------------------------------------------------------------------
title "Qdrant stand-in with two collections"
"$PY" "$ROOT/test/qdrant_standin.py" --port 0 --port-file "$WORK/standin.port" \
    --storage "$WORK/qdrant" >"$WORK/standin.log" 2>&1 &
STANDIN_PID=$!
for _ in $(seq 1 100); do
    [ -s "$WORK/standin.port" ] && break
    sleep 0.1
done
[ -s "$WORK/standin.port" ] || { echo "stand-in did not start" >&2; cat "$WORK/standin.log" >&2; exit 1; }
QDRANT_URL=http://127.0.0.1:$(cat "$WORK/standin.port")
wait_http "$QDRANT_URL/healthz" 10
for c in agent-memory agent-notes; do
    curl -sf -X POST -H 'Content-Type: application/json' \
        -d "{\"name\": \"$c\", \"points\": $POINTS, \"dim\": 64}" \
        "$QDRANT_URL/__standin/collections" >/dev/null
done
note "Qdrant at $QDRANT_URL, collections: $(curl -sf "$QDRANT_URL/collections" | "$PY" -c 'import json, sys
print(" ".join(c["name"] for c in json.load(sys.stdin)["result"]["collections"]))')"

# ---------------------------------------------------------------------------
title "qsnap configuration"
LISTEN_PORT=$(free_port)
ADMIN_TOKEN=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
QSNAP_URL=http://127.0.0.1:$LISTEN_PORT
export QSNAP_DESTINATION="s3://$QSNAP_TEST_S3_BUCKET/qdrant"
export QSNAP_S3_ENDPOINT=$QSNAP_TEST_S3_ENDPOINT
export QSNAP_S3_REGION=$QSNAP_TEST_S3_REGION
export QSNAP_S3_ACCESS_KEY_ID=$QSNAP_TEST_S3_ACCESS_KEY
export QSNAP_S3_SECRET_ACCESS_KEY=$QSNAP_TEST_S3_SECRET_KEY
export QSNAP_QDRANT_URL=$QDRANT_URL
export QSNAP_LISTEN=127.0.0.1:$LISTEN_PORT
export QSNAP_ADMIN_TOKEN=$ADMIN_TOKEN
export QSNAP_LOG_FORMAT=text
unset QSNAP_TEST_S3_ENDPOINT QSNAP_TEST_S3_REGION QSNAP_TEST_S3_ACCESS_KEY QSNAP_TEST_S3_SECRET_KEY \
    QSNAP_TEST_S3_BUCKET
"$QSNAP" check-config | sed 's/^/  /'

# ---------------------------------------------------------------------------
title "qsnap serve on $QSNAP_URL"
"$QSNAP" serve >"$WORK/qsnap.log" 2>&1 &
QSNAP_PID=$!
SERVE_OK=0
for _ in $(seq 1 50); do
    if curl -sf -o /dev/null --max-time 2 "$QSNAP_URL/healthz"; then
        SERVE_OK=1
        break
    fi
    kill -0 "$QSNAP_PID" 2>/dev/null || break
    sleep 0.2
done
if [ $SERVE_OK = 0 ]; then
    # TEMPORARY: until `qsnap serve` lands, the demo stops here without failing.
    if grep -q "unknown command 'serve'" "$WORK/qsnap.log"; then
        wait "$QSNAP_PID" 2>/dev/null || true
        QSNAP_PID=""
        note "TEMPORARY: this qsnap build has no 'serve' command yet; skipping the daemon part"
        exit 0
    fi
    echo "qsnap serve did not answer /healthz" >&2
    exit 1
fi

title "GET /healthz"
curl -sS -i "$QSNAP_URL/healthz" | tr -d '\r' | sed 's/^/  /'
echo
title "GET /readyz"
curl -sS -i "$QSNAP_URL/readyz" | tr -d '\r' | sed 's/^/  /'
echo
title "GET /metrics (qsnap_* and process_* samples)"
curl -sS "$QSNAP_URL/metrics" | grep -E '^(qsnap_|process_)' | sed 's/^/  /' | head -n 40
title "POST without a token is refused"
note "POST /v1/backup without token -> HTTP $(curl -s -o /dev/null -w '%{http_code}' -X POST "$QSNAP_URL/v1/backup")"

# ===========================================================================
# BACKUP AND RESTORE
# Each step below checks that the endpoint exists; while it answers 404 the
# step is reported as "not implemented yet" (TEMPORARY) instead of failing.
# ===========================================================================
AUTH=(-H "Authorization: Bearer $ADMIN_TOKEN")

# post PATH [BODY] -> sets HTTP_CODE and BODY_OUT
post() {
    local args=(-sS -o "$WORK/resp" -w '%{http_code}' -X POST "${AUTH[@]}")
    [ $# -ge 2 ] && args+=(-H 'Content-Type: application/json' --data-binary "$2")
    HTTP_CODE=$(curl "${args[@]}" "$QSNAP_URL$1")
    BODY_OUT=$(cat "$WORK/resp")
}

# wait_job ID: polls /v1/jobs/ID until it leaves queued/running; prints state.
wait_job() {
    local id=$1 state="" i
    for ((i = 0; i < 600; i++)); do
        state=$(curl -sf "$QSNAP_URL/v1/jobs/$id" | json_get state)
        case "$state" in
        queued | running | "") sleep 0.5 ;;
        *) break ;;
        esac
    done
    curl -sf "$QSNAP_URL/v1/jobs/$id" | "$PY" -m json.tool | sed 's/^/  /'
    [ "$state" = succeeded ]
}

title "POST /v1/backup"
post /v1/backup
if [ "$HTTP_CODE" = 404 ]; then
    note "TEMPORARY: /v1/backup not implemented yet; skipping backup and restore"
else
    [ "$HTTP_CODE" = 202 ] || { echo "backup trigger: HTTP $HTTP_CODE $BODY_OUT" >&2; exit 1; }
    JOB=$(json_get job <<<"$BODY_OUT")
    note "job $JOB accepted; waiting"
    wait_job "$JOB" || { echo "backup job did not succeed" >&2; exit 1; }

    title "GET /v1/backups"
    curl -sS "$QSNAP_URL/v1/backups" | "$PY" -m json.tool | sed 's/^/  /' | head -n 40

    title "metrics after the backup"
    curl -sS "$QSNAP_URL/metrics" | grep -E '^qsnap_(backup_last_success|backup_age|backup_stale|backups_total|backup_bytes_total|backups_stored)' |
        sed 's/^/  /'

    title "POST /v1/restore agent-memory -> agent-memory-restored"
    post /v1/restore '{"collection": "agent-memory", "snapshot": "latest", "target": "agent-memory-restored"}'
    if [ "$HTTP_CODE" = 404 ] && ! grep -q backup <<<"$BODY_OUT"; then
        note "TEMPORARY: /v1/restore not implemented yet; skipping restore"
    else
        [ "$HTTP_CODE" = 202 ] || { echo "restore trigger: HTTP $HTTP_CODE $BODY_OUT" >&2; exit 1; }
        JOB=$(json_get job <<<"$BODY_OUT")
        note "job $JOB accepted; waiting"
        wait_job "$JOB" || { echo "restore job did not succeed" >&2; exit 1; }
        got=$(curl -sf "$QDRANT_URL/collections/agent-memory-restored" | json_get result.points_count)
        note "restored collection points_count: $got (expected $POINTS)"
        [ "$got" = "$POINTS" ] || { echo "restored points_count mismatch" >&2; exit 1; }
    fi
fi
# ===========================================================================
# END BACKUP AND RESTORE
# ===========================================================================

title "qsnap log (last lines)"
tail -n 15 "$WORK/qsnap.log" | sed 's/^/  /'
