# shellcheck shell=bash
# Sourced by the script test/check-runbook.sh builds from docs/runbook.md:
# __begin/__end frame every runbook block (its output goes to $__out), and
# the checks below run after the block with the label "section#k", in the
# runbook's own shell (its variables and functions are visible).
# Environment: RB_* from test/check-runbook.sh.

# Helpers never fail: a check compares their output.
__standin() { curl -sf "$RB_QDRANT_URL/$1" || true; }
__points() { __standin "collections/$1" | jq -r '.result.points_count // empty' 2>/dev/null || true; }
__ok() { echo "ok: [$__label] $*"; }
__bad() { echo "FAIL: [$__label] $*"; }
__check() { # description command...
    local d=$1
    shift
    if "$@"; then __ok "$d"; else __bad "$d"; fi
}
__has() { grep -Eq -- "$1" "$__out"; }
__daemon_pid() { cat "$RB_STATE/daemon.pid" 2>/dev/null || true; }
# "C: backup N, Qdrant M" lines: at least one, and N = M in each.
__matches() {
    grep -E '^[^ ]+: backup [0-9]+, Qdrant ' "$__out" |
        awk -F'[ ,]+' '{ n++; if ($3 != $5) bad = 1 } END { exit (n == 0 || bad) }'
}
__qsnap() { echo "http://127.0.0.1:$RB_QSNAP_PORT"; }

__begin() {
    __label=$2
    __out=$RB_WORK/out.$1
    echo
    echo "=== runbook block $1: $2"
    __pid_before=$(__daemon_pid)
    case $__label in
    "Restore without qsnap#1")
        # qsnap is out of the picture and the collection is lost.
        __want=$(__points agent-memory)
        curl -sf -X DELETE "$RB_QDRANT_URL/__standin/collections/agent-memory" >/dev/null
        ;;
    "Restore without qsnap#2")
        # A shards backup of agent-memory with a payload index and an alias,
        # made by a qsnap with QSNAP_SNAPSHOT_METHOD=shards; then the
        # collection (and with it its alias) is lost.
        curl -sf -X PUT -H 'Content-Type: application/json' -d '{"field_name":"agent","field_schema":"keyword"}' \
            "$RB_QDRANT_URL/collections/agent-memory/index?wait=true" >/dev/null
        curl -sf -X POST -H 'Content-Type: application/json' \
            -d '{"actions":[{"create_alias":{"collection_name":"agent-memory","alias_name":"memory"}}]}' \
            "$RB_QDRANT_URL/collections/aliases" >/dev/null
        env -i PATH="$PATH" QSNAP_DESTINATION="s3://$RB_BUCKET/$RB_PREFIX" QSNAP_S3_ENDPOINT="$RB_S3_ENDPOINT" \
            QSNAP_S3_REGION="$RB_S3_REGION" QSNAP_S3_ACCESS_KEY_ID="$QSNAP_TEST_S3_ACCESS_KEY" \
            QSNAP_S3_SECRET_ACCESS_KEY="$QSNAP_TEST_S3_SECRET_KEY" QSNAP_QDRANT_URL="$RB_QDRANT_URL" \
            QSNAP_SNAPSHOT_METHOD=shards QSNAP_SCHEDULE=off QSNAP_COMPRESSION=gzip:1 \
            "$RB_BIN" backup -c agent-memory >"$RB_WORK/shards-backup.log" 2>&1 ||
            echo "FAIL: [$__label] the shards backup for the block failed: $(tail -n 3 "$RB_WORK/shards-backup.log")"
        __want=$(__points agent-memory)
        curl -sf -X DELETE "$RB_QDRANT_URL/collections/agent-memory" >/dev/null
        ;;
    "Rotate keys#1") __old_token=$TOKEN ;;
    esac
}

__failed() { # the block's output is redirected: report on fd 3 (the script's stdout)
    # (in a command substitution, leave the report to the command around it)
    [ "$BASH_SUBSHELL" -eq 0 ] || exit 1
    {
        echo "FAIL: [$__label] a command failed (line $1 of the generated script); its output:"
        sed 's/^/    /' "$__out"
    } >&3
    exit 1
}

__end() {
    sed 's/^/    /' "$__out"
    case $__label in
    "First deploy#1")
        __check "three credential files" test -s deploy/overlays/mine/secrets/admin-token
        __check "monitoring.yaml holds the release the Prometheus selects" \
            grep -q '^  release: prom-test$' deploy/overlays/mine/monitoring.yaml
        ;;
    "First deploy#2")
        __check "the rendering carries the release label" __has 'release: prom-test'
        __check "and absolute runbook_urls" __has 'runbook_url: https://[^ ]*#qsnapbackupstale'
        __check "qsnap runs with the rendered configuration" curl -sf -o /dev/null "$(__qsnap)/healthz"
        __check "the pod mounts the generated Secret" grep -q '^qsnap-credentials-' "$RB_STATE/secret-name"
        ;;
    "First deploy#3")
        __check "kubectl apply got a Secret qsnap-credentials with the three keys" \
            test -s "$RB_STATE/secrets/qsnap-credentials/s3-secret-access-key"
        ;;
    "Working with the deployment#1")
        __check "TOKEN is the admin token the pod mounts" \
            [ "$TOKEN" = "$(cat "$RB_STATE/secrets/$(cat "$RB_STATE/secret-name")/admin-token")" ]
        __check "the port-forward answers" curl -sf -o /dev/null "$Q/healthz"
        __check "the CLI runs in the pod" qsnap --version
        ;;
    "Is it working?#1")
        __check "readyz ready" __has '"status":"ready"'
        __check "check-config reaches both peers" __has 'reachable'
        __check "the backup job succeeded" __has '"state":"succeeded"'
        __check "qsnap list shows both collections" __has 'agent-notes'
        __check "stale 0 after the backup" __has '^qsnap_backup_stale\{collection="agent-memory"\} 0'
        __check "first-seen gauge exported" __has '^qsnap_collection_first_seen_timestamp_seconds\{collection="agent-memory"\} [1-9]'
        __check "failures gauge exported" __has '^qsnap_backup_consecutive_failures\{collection="agent-memory"\} 0'
        __check "drill result seeded from the destination at startup" \
            __has '^qsnap_restore_drill_last_success_timestamp_seconds\{collection="agent-memory"\} [1-9]'
        __check "qsnap list shows drill results" __has '[Dd]rill'
        __check "the dashboard's metric names are in the live /metrics" \
            /usr/bin/python3 "$RB_TOOLS/dashboard.py" live "$RB_DASHBOARD" "$(__qsnap)/metrics" "$RB_QDRANT_URL/metrics"
        ;;
    "Alerts#2") __check "the triggered backup succeeded" __has '"state":"succeeded"' ;;
    "QsnapBackupShrunk#1") __check "points_count listed" __has '^300$' ;;
    "QsnapDrillStale#1") __check "GET /v1/backups shows drill results" __has 'drill' ;;
    "Restore one collection#1")
        __check "restored under a new name with 300 points" [ "$(__points agent-memory-restored)" = 300 ]
        ;;
    "Restore one collection#2")
        __check "restored in place" [ "$(__points agent-memory)" = 300 ]
        __check "the copy is gone" [ -z "$(__points agent-memory-restored)" ]
        ;;
    "Restore one collection#3")
        __check "the CLI restored agent-memory-cli" \
            [ "$(__standin __standin/state | jq '[.uploads[] | select(.collection == "agent-memory-cli")] | length')" -ge 1 ]
        ;;
    "Restore without qsnap#1")
        __check "sha256sum accepted the snapshot" __has 'snapshot: OK'
        __check "agent-memory is back with its $__want points" [ "$(__points agent-memory)" = "$__want" ]
        __check "uploaded with the manifest's checksum" \
            [ "$(__standin __standin/state | jq -r '.collections["agent-memory"].restored_from_sha256')" = "$(jq -r .sha256 manifest.json)" ]
        ;;
    "Restore without qsnap#2")
        __check "sha256sum accepted every shard" __has 'shard: OK'
        __check "agent-memory is back with its $__want points" [ "$(__points agent-memory)" = "$__want" ]
        __check "from the shards manifest" [ "$(jq -r .method manifest.json)" = shards ]
        __check "every shard uploaded with its checksum" \
            [ "$(__standin __standin/state | jq '[.uploads[] | select(.collection == "agent-memory" and .shard != null and .checksum_param == .sha256 and .status == 200)] | length')" -ge 1 ]
        __check "its payload index is back" \
            [ "$(__standin collections/agent-memory | jq -r '.result.payload_schema.agent.data_type')" = keyword ]
        __check "its alias points at it again" \
            [ "$(__standin aliases | jq -r '.result.aliases[] | select(.alias_name == "memory") | .collection_name')" = agent-memory ]
        ;;
    "Lost PVC#1")
        __check "the old pod was force-deleted after the wait timed out" \
            grep -q 'delete pod .*--force' "$RB_STATE/kubectl.log"
        __check "Qdrant came back empty" [ "$(__standin collections | jq '.result.collections | length')" = 0 ]
        __check "qsnap runs again" curl -sf -o /dev/null "$(__qsnap)/healthz"
        __check "the old port-forward is gone" sh -c "! curl -sf -o /dev/null --max-time 2 '$Q/healthz'"
        ;;
    "Lost PVC#2")
        __check "agent-memory restored" [ "$(__points agent-memory)" = 300 ]
        __check "agent-notes restored" [ "$(__points agent-notes)" = 200 ]
        __loud_failures
        ;;
    "Lost PVC#3")
        __check "every collection matches its backup" __matches
        __check "the fresh backup succeeded" __has '"state":"succeeded"'
        ;;
    "Rotate keys#1")
        __check "a new admin token" [ "$TOKEN" != "$__old_token" ]
        __check "the pod rolled" [ "$(__daemon_pid)" != "$__pid_before" ]
        __check "the old token is refused (401)" \
            [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $__old_token" "$Q/v1/restore")" = 401 ]
        __check "the new token is accepted (400 for an empty body)" \
            [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" "$Q/v1/restore")" = 400 ]
        ;;
    "Rotate keys#2") __check "the pod restarted" [ "$(__daemon_pid)" != "$__pid_before" ] ;;
    "Change the schedule or any setting#1")
        __check "the pod rolled" [ "$(__daemon_pid)" != "$__pid_before" ]
        __check "qsnap runs the new schedule (hourly)" __has '^qsnap_schedule_interval_seconds 3600$'
        __check "and the new retention" grep -q "^QSNAP_KEEP_MIN=7$" "$RB_STATE/pod.env"
        ;;
    "Cluster mode: enabling it#1") __check "the backup before the switch succeeded" __has '"state":"succeeded"' ;;
    "Cluster mode: enabling it#2")
        __check "the overlay now renders three peers started in parallel" \
            grep -q '^  podManagementPolicy: Parallel$' "$RB_STATE/rendered.yaml"
        __check "and shows it before applying" __has '^  replicas: 3$'
        __check "the StatefulSet was deleted with its pod, waiting for it (foreground)" \
            grep -q '^kubectl delete statefulset qdrant .*--cascade=foreground' "$RB_STATE/kubectl.log"
        __check "the pod rolled" [ "$(__daemon_pid)" != "$__pid_before" ]
        __check "qsnap runs in cluster mode auto, with the settings of the overlay" \
            grep -q '^QSNAP_CLUSTER=auto$' "$RB_STATE/pod.env"
        __check "the settings changed earlier are kept" grep -q "^QSNAP_KEEP_MIN=7$" "$RB_STATE/pod.env"
        __check "qsnap is ready behind the new port-forward" __has '"status":"ready"'
        ;;
    esac
}

# restore_all must fail loudly: a dropped port-forward is re-established, a
# failing restore stops the loop with a non-zero status and says how to
# continue, an absent pod is an error and not an empty loop.
__kill_forwarders() { # the port-forwards die (as with their pod)
    local f
    for f in "$RB_STATE"/forwarders/*; do
        if [ -f "$f" ]; then kill "$(cat "$f")" 2>/dev/null || true; fi
    done
}

__loud_failures() {
    __kill_forwarders
    sleep 0.5
    if restore_all agent-notes >"$RB_WORK/ra1" 2>&1; then
        __ok "restore_all re-establishes a dropped port-forward"
    else
        __bad "restore_all after the port-forward dropped: $(tail -n 3 "$RB_WORK/ra1")"
    fi
    curl -sf -X POST -H 'Content-Type: application/json' -d '{"fail_uploads": 1}' \
        "$RB_QDRANT_URL/__standin/faults" >/dev/null
    if restore_all agent-notes agent-memory >"$RB_WORK/ra2" 2>&1; then
        __bad "restore_all succeeded although Qdrant refused the upload"
    else
        __check "a failed restore stops restore_all loudly, saying how to continue" \
            grep -q 'restore_all agent-notes agent-memory' "$RB_WORK/ra2"
    fi
    curl -sf -X DELETE "$RB_QDRANT_URL/__standin/faults" >/dev/null
    touch "$RB_STATE/pod-missing"
    __kill_forwarders
    if restore_all >"$RB_WORK/ra3" 2>&1; then
        __bad "restore_all succeeded without a pod to forward to"
    else
        __check "no pod: restore_all fails with an error" grep -q 'ERROR' "$RB_WORK/ra3"
    fi
    rm -f "$RB_STATE/pod-missing"
    forward >/dev/null 2>&1 || __bad "forward after the failure scenarios"
}

__finish() {
    echo
    echo "=== runbook: all blocks ran"
}
