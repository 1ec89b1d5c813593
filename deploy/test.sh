#!/bin/sh
# Checks the deployment artefacts:
#   1. promtool check rules / test rules (deploy/tests/*.yml); every alert
#      has a firing and a quiet test case, the healthy week checks every
#      alert quiet, every runbook_url anchor is a heading of docs/runbook.md
#   2. kubectl kustomize of the base, the monitoring component (through the
#      example overlay, with throwaway credentials) and each overlay, then
#      yamllint; the base renders no Secret and no monitoring.coreos.com
#      object, the component sets the release label and absolute
#      runbook_urls, a configuration change changes the pod template
#   2b. NetworkPolicy: the rendered policies admit exactly the listed flows
#      (deploy/tools/netpol.py: base, and cluster for overlays/cluster), and
#      the check fails on each single mistake in them; single-node renderings
#      stay single-node; the cluster overlay: its StatefulSet, headless
#      Service, PodDisruptionBudget and qsnap settings, each pod scraped
#      once with the monitoring component, the peer start script's
#      decisions (deploy/tools/startcheck.py)
#   3. the Grafana dashboard: importable shape, PromQL, metric names
#   4. the runtime file set of the image (Containerfile's last stage) runs
#      "qsnap --version" under chroot
#
# usage: deploy/test.sh [QSNAP_BINARY]
# environment: QSNAP_BINARY (default build/qsnap), KUBECTL (default
# kubectl; needs kustomize v5), PYTHON (/usr/bin/python3).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
binary=${1:-${QSNAP_BINARY:-build/qsnap}}
case $binary in /*) ;; *) binary=$root/$binary ;; esac
kubectl=${KUBECTL:-kubectl}
python=${PYTHON:-/usr/bin/python3}

work=$(mktemp -d "${TMPDIR:-/tmp}/qsnap-deploy-test.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

failures=0
step() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*"; failures=$((failures + 1)); }

for tool in promtool yamllint "$kubectl" "$python"; do
    command -v "$tool" >/dev/null 2>&1 || { echo "missing tool: $tool" >&2; exit 1; }
done

rule=$here/components/monitoring/prometheusrule.yaml
runbook=$root/docs/runbook.md

step "promtool check rules"
"$python" "$here/tools/rules.py" extract "$rule" "$work/qsnap-rules-full.yml" \
    --runbook-base https://runbook.test/docs/runbook.md
promtool check rules "$work/qsnap-rules-full.yml" || fail "promtool check rules"

step "promtool test rules"
# The unit tests compare labels only: annotations are stripped from the
# copy they load (their templates were checked above).
mkdir "$work/rules-test"
"$python" "$here/tools/rules.py" extract "$rule" "$work/rules-test/qsnap-rules.yml" --strip-annotations
tests=""
for t in "$here"/tests/*.yml; do
    cp "$t" "$work/rules-test/"
    tests="$tests $(basename "$t")"
done
# shellcheck disable=SC2086 # word splitting of the file list is intended
(cd "$work/rules-test" && promtool test rules $tests) || fail "promtool test rules"

step "alert test coverage and runbook anchors"
"$python" "$here/tools/rules.py" coverage "$rule" "$here"/tests/*.yml || fail "alert coverage"
"$python" "$here/tools/rules.py" quiet-all "$rule" "$here/tests/qsnap-week.yml" || fail "healthy week"
"$python" "$here/tools/rules.py" anchors "$rule" "$runbook" || fail "runbook anchors"

step "kubectl kustomize + yamllint ($kubectl)"
kver=$("$kubectl" version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9]*\).*/\1/p')
echo "kubectl: $("$kubectl" version --client 2>/dev/null | head -1), kustomize major ${kver:-?}"
if [ "${kver:-0}" -lt 5 ]; then
    fail "kustomize v5 needed (components, replacements); found '${kver:-none}'"
fi
yamllint -c "$here/.yamllint" --strict "$here" || fail "yamllint of deploy/ sources"
# Render from a copy of deploy/: the example overlay needs credential files
# (never committed), and the configuration change below edits qsnap.env.
copy=$work/deploy
cp -r "$here" "$copy"
for f in s3-access-key-id s3-secret-access-key admin-token; do
    [ ! -e "$here/overlays/example/secrets/$f" ] || fail "overlays/example/secrets/$f is in the source tree"
    head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$copy/overlays/example/secrets/$f"
done
render() { # dir-relative-to-deploy output-name
    if "$kubectl" kustomize "$copy/$1" >"$work/$2.yaml" 2>"$work/$2.err"; then
        if yamllint -c "$here/.yamllint" --strict "$work/$2.yaml"; then
            echo "ok: deploy/$1 ($(grep -c '^kind:' "$work/$2.yaml") objects)"
            return 0
        fi
        fail "yamllint of rendered deploy/$1"
    else
        cat "$work/$2.err"
        fail "kubectl kustomize deploy/$1"
    fi
    return 1
}
# Single-node renderings: the base's flows; the cluster overlay: its own.
topology() { # rendered-file what
    if [ "$2" = overlays/cluster ]; then
        "$python" "$here/tools/manifests.py" cluster "$1" "$here/overlays/cluster/qdrant-start.sh" ||
            fail "cluster settings ($2)"
        "$python" "$here/tools/netpol.py" check cluster "$1" || fail "NetworkPolicy flows ($2)"
    else
        "$python" "$here/tools/manifests.py" single "$1" || fail "single node ($2)"
        "$python" "$here/tools/netpol.py" check base "$1" || fail "NetworkPolicy flows ($2)"
    fi
}
if render base base; then
    "$python" "$here/tools/manifests.py" base "$work/base.yaml" || fail "rendered base"
    topology "$work/base.yaml" base
fi
for dir in "$here"/overlays/*/; do
    name=$(basename "$dir")
    render "overlays/$name" "overlay-$name" || continue
    # Overlays without a Secret or monitoring objects keep the base's promises.
    if [ "$name" != example ]; then
        "$python" "$here/tools/manifests.py" base "$work/overlay-$name.yaml" || fail "overlays/$name"
    fi
    topology "$work/overlay-$name.yaml" "overlays/$name"
done
if [ -s "$work/overlay-example.yaml" ]; then
    release=$(sed -n 's/^  release: *//p' "$here/overlays/example/monitoring.yaml")
    "$python" "$here/tools/manifests.py" monitoring "$work/overlay-example.yaml" "$release" ||
        fail "monitoring component (overlays/example)"
    "$python" "$here/tools/manifests.py" secret "$work/overlay-example.yaml" qsnap-credentials ||
        fail "secretGenerator (overlays/example)"
fi
[ ! -s "$work/overlay-plain-prometheus.yaml" ] ||
    "$python" "$here/tools/manifests.py" annotated "$work/overlay-plain-prometheus.yaml" ||
    fail "annotation discovery (overlays/plain-prometheus)"

step "NetworkPolicy check can fail; cluster overlay with monitoring; peer start script"
# Every single mistake in the policies (a rule, its ports or a selector's
# scope lost, a protocol swapped, a policy dropped) must fail the check.
[ ! -s "$work/base.yaml" ] ||
    "$python" "$here/tools/netpol.py" mutants base "$work/base.yaml" || fail "NetworkPolicy mutants (base)"
[ ! -s "$work/overlay-cluster.yaml" ] ||
    "$python" "$here/tools/netpol.py" mutants cluster "$work/overlay-cluster.yaml" ||
    fail "NetworkPolicy mutants (overlays/cluster)"
# The cluster overlay used like overlays/example (monitoring component on
# top): each ServiceMonitor must select one Service, so that the headless
# Service does not get every pod scraped twice.
mkdir "$copy/overlays/cluster-monitoring"
cp "$here/overlays/example/monitoring.yaml" "$copy/overlays/cluster-monitoring/"
cat >"$copy/overlays/cluster-monitoring/kustomization.yaml" <<'EOF'
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [../cluster, monitoring.yaml]
components: [../../components/monitoring]
EOF
render overlays/cluster-monitoring overlay-cluster-monitoring || true
for r in overlay-example overlay-cluster-monitoring; do
    [ ! -s "$work/$r.yaml" ] ||
        "$python" "$here/tools/manifests.py" scrape-targets "$work/$r.yaml" || fail "scrape targets ($r)"
done
"$python" "$here/tools/startcheck.py" "$here/overlays/cluster/qdrant-start.sh" ||
    fail "qdrant-start.sh decisions"

step "a configuration change rolls the pod"
# Applying the base twice with a changed qsnap.env must change the pod
# template: the generated ConfigMap's name (a hash of its content) is what
# the qsnap container's envFrom refers to.
before=$("$python" "$here/tools/manifests.py" config-ref "$work/base.yaml" | sed -n 1p)
sed -i 's/^QSNAP_SCHEDULE=.*/QSNAP_SCHEDULE=30 2 * * */' "$copy/base/qsnap.env"
if render base base-changed; then
    after=$("$python" "$here/tools/manifests.py" config-ref "$work/base-changed.yaml")
    schedule=$(echo "$after" | sed -n 2p)
    after=$(echo "$after" | head -1)
    echo "pod template refers to $before, after the change to $after (QSNAP_SCHEDULE=$schedule)"
    if [ -z "$before" ] || [ "$before" = "$after" ]; then
        fail "the pod template does not change with the configuration"
    fi
    [ "$schedule" = "30 2 * * *" ] || fail "the changed ConfigMap does not hold the new schedule"
    sts() { "$python" -c 'import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "StatefulSet":
        print(yaml.safe_dump(d["spec"]["template"]))' "$1"; }
    if [ "$(sts "$work/base.yaml")" = "$(sts "$work/base-changed.yaml")" ]; then
        fail "the StatefulSet's pod template is identical after the change"
    fi
    # A change of the cluster overlay's start script rolls the pods too.
    if render overlays/cluster cluster-before; then
        echo "# changed" >>"$copy/overlays/cluster/qdrant-start.sh"
        if render overlays/cluster cluster-changed; then
            if [ "$(sts "$work/cluster-before.yaml")" = "$(sts "$work/cluster-changed.yaml")" ]; then
                fail "the cluster pod template is identical after a change of qdrant-start.sh"
            else
                echo "a change of qdrant-start.sh changes the cluster pod template"
            fi
        fi
    fi
fi

step "Grafana dashboard"
dash=$here/grafana/qsnap.json
"$python" "$here/tools/dashboard.py" check "$dash" "$root/include/qsnap/metric_names.def" || fail "dashboard check"
if ! "$python" "$here/tools/dashboard.py" rules "$dash" "$work/dashboard-rules.yml" ||
    ! promtool check rules "$work/dashboard-rules.yml"; then
    fail "dashboard PromQL"
fi

step "runtime file set under chroot ($binary)"
if [ ! -x "$binary" ]; then
    fail "no qsnap binary at $binary (build it first or pass its path)"
else
    rootfs=$work/rootfs
    sh "$here/runtime-files.sh" "$binary" "$rootfs" 65532
    echo "runtime file set: $(du -sh "$rootfs" | cut -f1), $(find "$rootfs" -type f | wc -l) files"
    if [ "$(id -u)" -eq 0 ]; then
        run_chroot() { chroot --userspec=65532:65532 "$rootfs" "$@"; }
    else
        run_chroot() { unshare --map-root-user chroot "$rootfs" "$@"; }
    fi
    want="qsnap $(sed -n "s/^  version: '\(.*\)',$/\1/p" "$root/meson.build")"
    if out=$(run_chroot /usr/local/bin/qsnap --version 2>&1); then
        if [ "$out" = "$want" ]; then
            echo "ok: chroot qsnap --version -> $out"
        else
            fail "chroot qsnap --version printed '$out', expected '$want'"
        fi
    else
        echo "$out"
        fail "qsnap does not run from its runtime file set"
    fi
    # The binary must not depend on anything outside the set.
    run_chroot /usr/local/bin/qsnap --help >/dev/null 2>&1 || fail "chroot qsnap --help"
fi

if [ "$failures" -ne 0 ]; then
    printf '\ndeploy tests: %d failure(s)\n' "$failures"
    exit 1
fi
printf '\ndeploy tests: all passed\n'
