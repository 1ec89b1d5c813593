#!/usr/bin/env bash
# Runs every command of docs/runbook.md (its "sh runbook-test" blocks, in
# order, in one shell) against a real `qsnap serve`, the Qdrant stand-in and
# the S3 server of test/rgw-start.sh, and checks what each block should have
# done. kubectl is test/runbook/kubectl: each call must parse for the real
# kubectl, then it is played against the test's one-pod "cluster" (apply -k
# renders the overlay and starts qsnap with the configuration and Secret the
# pod would get; port-forward forwards; exec runs the qsnap CLI; the lost-PVC
# steps stop the pod and empty Qdrant). The runbook's local ports (9633,
# 6333, 9000), bucket, prefix and region are mapped to free ports and the
# test bucket under a fresh prefix. The
# Grafana dashboard's metric names are checked against the live /metrics.
#
# Needs the QSNAP_TEST_S3_* variables (". DIR/env" after test/rgw-start.sh
# DIR), build/qsnap (or QSNAP_BINARY), kubectl, jq, curl, openssl.
# Prints "runbook: N passed, N failed"; exits non-zero on any failure.
# CHECK_RUNBOOK_KEEP=1 keeps the work directory (script, outputs, logs).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${QSNAP_BINARY:-$ROOT/build/qsnap}
case $BIN in /*) ;; *) BIN=$ROOT/$BIN ;; esac
PY=/usr/bin/python3
unset QSNAP_BINARY
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

for v in QSNAP_TEST_S3_ENDPOINT QSNAP_TEST_S3_ACCESS_KEY QSNAP_TEST_S3_SECRET_KEY QSNAP_TEST_S3_REGION; do
    [ -n "${!v:-}" ] || { echo "check-runbook: $v is not set (start test/rgw-start.sh and source its env)" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "check-runbook: no qsnap binary at $BIN" >&2; exit 1; }
for t in kubectl jq curl openssl sha256sum gunzip; do
    command -v "$t" >/dev/null || { echo "check-runbook: missing tool $t" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/qsnap-runbook.XXXXXX)
STATE=$WORK/state
mkdir -p "$STATE" "$WORK/bin" "$WORK/repo"
PASS=0
FAIL=0
STANDIN_PID=""
ok() { PASS=$((PASS + 1)); echo "ok: $*"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL: $*"; }
check() { # description command...
    local d=$1
    shift
    if "$@"; then ok "$d"; else bad "$d"; fi
}

stop_pid() {
    local pid=$1 _
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
}
cleanup() {
    local f
    for f in "$STATE"/forwarders/*; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
    [ -s "$STATE/daemon.pid" ] && stop_pid "$(cat "$STATE/daemon.pid")"
    [ -n "$STANDIN_PID" ] && stop_pid "$STANDIN_PID"
    [ -n "${DRILL_PID:-}" ] && stop_pid "$DRILL_PID"
    if [ -n "${CHECK_RUNBOOK_KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_url() { local _; for _ in $(seq 1 100); do curl -sf -o /dev/null --max-time 2 "$1" && return 0; sleep 0.2; done; return 1; }

S3_ENDPOINT=$QSNAP_TEST_S3_ENDPOINT
S3_PORT=${S3_ENDPOINT##*:}
S3_PORT=${S3_PORT%%/*}
s3() { curl -sSf --aws-sigv4 "aws:amz:$QSNAP_TEST_S3_REGION:s3" \
    --user "$QSNAP_TEST_S3_ACCESS_KEY:$QSNAP_TEST_S3_SECRET_KEY" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@"; }

# ---- peers -----------------------------------------------------------------
QDRANT_PORT=$(free_port)
"$PY" "$ROOT/test/qdrant_standin.py" --port "$QDRANT_PORT" --port-file "$WORK/standin.port" \
    --storage "$WORK/qdrant" >"$WORK/standin.log" 2>&1 &
STANDIN_PID=$!
QDRANT_URL=http://127.0.0.1:$QDRANT_PORT
wait_url "$QDRANT_URL/healthz" || { cat "$WORK/standin.log"; echo "stand-in did not start" >&2; exit 1; }
add_collection() { curl -sf -X POST -H 'Content-Type: application/json' \
    -d "{\"name\": \"$1\", \"points\": $2, \"dim\": 16}" "$QDRANT_URL/__standin/collections" >/dev/null; }
if ! add_collection agent-memory 300 || ! add_collection agent-notes 200; then
    echo "stand-in setup failed" >&2
    exit 1
fi
points() { curl -sf "$QDRANT_URL/collections/$1" | jq -r '.result.points_count // empty'; }
# The shared test bucket, under a prefix of our own.
BUCKET=$QSNAP_TEST_S3_BUCKET
PREFIX=runbook-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')/qdrant
echo "check-runbook: stand-in $QDRANT_URL, s3://$BUCKET/$PREFIX at $S3_ENDPOINT"

# ---- restore drills (persisted beside the backups) before the "deployment" --
# A first qsnap with a drill every minute backs up and drills once; the
# deployed qsnap must then show the drill results it finds at the destination.
DRILL_PORT=$(free_port)
TOKEN0=runbook-drill-token-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
env -i PATH="$PATH" QSNAP_DESTINATION="s3://$BUCKET/$PREFIX" QSNAP_S3_ENDPOINT="$S3_ENDPOINT" \
    QSNAP_S3_REGION="$QSNAP_TEST_S3_REGION" QSNAP_S3_ACCESS_KEY_ID="$QSNAP_TEST_S3_ACCESS_KEY" \
    QSNAP_S3_SECRET_ACCESS_KEY="$QSNAP_TEST_S3_SECRET_KEY" QSNAP_QDRANT_URL="$QDRANT_URL" \
    QSNAP_LISTEN="127.0.0.1:$DRILL_PORT" QSNAP_ADMIN_TOKEN="$TOKEN0" QSNAP_SCHEDULE=off \
    QSNAP_DRILL_SCHEDULE='* * * * *' QSNAP_LOG_FORMAT=json \
    "$BIN" serve >"$WORK/drill-qsnap.log" 2>&1 &
DRILL_PID=$!
if wait_url "http://127.0.0.1:$DRILL_PORT/healthz"; then
    job=$(curl -sf -X POST -H "Authorization: Bearer $TOKEN0" "http://127.0.0.1:$DRILL_PORT/v1/backup" | jq -r .job)
    for _ in $(seq 1 120); do
        st=$(curl -sf "http://127.0.0.1:$DRILL_PORT/v1/jobs/$job" | jq -r .state)
        case $st in queued | running) sleep 0.5 ;; *) break ;; esac
    done
    check "first backup for the drills ($st)" [ "$st" = succeeded ]
    drilled=no
    for _ in $(seq 1 180); do
        m=$(curl -sf "http://127.0.0.1:$DRILL_PORT/metrics")
        if grep -Eq '^qsnap_restore_drill_total\{result="success"\} [1-9]' <<<"$m"; then
            drilled=yes
            break
        fi
        # A drill succeeded but is not counted: no use waiting.
        grep -q '^qsnap_restore_drill_last_success_timestamp_seconds{.*} [1-9]' <<<"$m" && break
        sleep 1
    done
    check "a scheduled restore drill succeeded (qsnap_restore_drill_total)" [ $drilled = yes ]
    # Let a drill in progress finish before stopping.
    for _ in $(seq 1 60); do
        curl -sf "http://127.0.0.1:$DRILL_PORT/metrics" | grep -q '^qsnap_backup_in_progress 0' && break
        sleep 1
    done
else
    bad "drill qsnap did not start: $(tail -n 5 "$WORK/drill-qsnap.log")"
fi
stop_pid "$DRILL_PID"
DRILL_PID=""
drill_files=$(s3 "$S3_ENDPOINT/$BUCKET?list-type=2&prefix=$(jq -rn --arg p "$PREFIX/" '$p | @uri')" | grep -o '<Key>[^<]*\.drill\.json</Key>' | wc -l)
check "drill results stored as {snapshot}.drill.json ($drill_files)" [ "$drill_files" -ge 1 ]

# ---- the runbook -------------------------------------------------------------
cp -r "$ROOT/deploy" "$WORK/repo/deploy"
rm -f "$WORK/repo/deploy/overlays/example/secrets/"[!.]*
mkdir -p "$WORK/blocks"
"$PY" "$ROOT/test/runbook/blocks.py" "$ROOT/docs/runbook.md" "$WORK/blocks" ||
    bad "docs/runbook.md has shell blocks the test does not run"
LQ=$(free_port) LD=$(free_port) LS=$(free_port)
cat >"$WORK/dead.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: dead
  cluster: {server: "https://127.0.0.1:1"}
users:
- name: u
  user: {token: x}
contexts:
- name: dead
  context: {cluster: dead, user: u}
current-context: dead
EOF
ln -s "$ROOT/test/runbook/kubectl" "$WORK/bin/kubectl"
export RB_STATE=$STATE RB_REAL_KUBECTL RB_DEAD_KUBECONFIG=$WORK/dead.kubeconfig RB_BIN=$BIN
RB_REAL_KUBECTL=$(command -v kubectl)
export RB_BUCKET=$BUCKET RB_PREFIX=$PREFIX RB_S3_ENDPOINT=$S3_ENDPOINT RB_S3_REGION=$QSNAP_TEST_S3_REGION RB_S3_PORT=$S3_PORT
export RB_QDRANT_URL=$QDRANT_URL RB_QDRANT_PORT=$QDRANT_PORT RB_QDRANT_LOG=$WORK/standin.log
RB_QSNAP_PORT=$(free_port)
export RB_QSNAP_PORT

# The script: every block in order, output kept per block, then the checks
# of test/runbook/checks.sh for that block.
script=$WORK/runbook.sh
{
    echo "set -eE -o pipefail"
    echo "exec 3>&1"
    echo "PATH=$WORK/bin:\$PATH"
    echo "MINIO_ACCESS_KEY=\$QSNAP_TEST_S3_ACCESS_KEY MINIO_SECRET_KEY=\$QSNAP_TEST_S3_SECRET_KEY"
    echo ". '$ROOT/test/runbook/checks.sh'"
    echo "trap '__failed \$LINENO' ERR"
    while IFS=$'\t' read -r n label; do
        [ -n "$n" ] || continue
        printf '__begin %q %q\n' "$n" "$label"
        echo "{"
        sed -e "s/localhost:9633/localhost:$LQ/g; s/ 9633:9633/ $LQ:9633/g" \
            -e "s/localhost:6333/localhost:$LD/g; s/ 6333:6333/ $LD:6333/g" \
            -e "s/localhost:9000/localhost:$LS/g; s/ 9000:9000/ $LS:9000/g" \
            -e "s/cortex-backups/$BUCKET/g; s|PREFIX=qdrant|PREFIX=$PREFIX|g" \
            -e "s/REGION=us-east-1/REGION=$QSNAP_TEST_S3_REGION/g" "$WORK/blocks/$n.sh"
        echo "} >\"\$__out\" 2>&1"
        printf '__end %q %q\n' "$n" "$label"
    done <"$WORK/blocks/index.tsv"
    echo "__finish"
} >"$script"
export RB_WORK=$WORK RB_DASHBOARD=$ROOT/deploy/grafana/qsnap.json RB_TOOLS=$ROOT/deploy/tools
(cd "$WORK/repo" && bash "$script") >"$WORK/runbook.out" 2>&1
rc=$?
cat "$WORK/runbook.out"
p=$(grep -c '^ok: ' "$WORK/runbook.out")
f=$(grep -c '^FAIL: ' "$WORK/runbook.out")
PASS=$((PASS + p))
FAIL=$((FAIL + f))
if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then
    bad "the runbook script stopped (rc=$rc)"
fi
lints=$(grep -c '^LINT FAILED' "$STATE/kubectl.log" 2>/dev/null)
check "every kubectl command parses ($(grep -c '^kubectl ' "$STATE/kubectl.log") calls, ${lints:-0} invalid)" [ "${lints:-0}" -eq 0 ]

echo
echo "runbook: $PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
