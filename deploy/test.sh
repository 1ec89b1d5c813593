#!/bin/sh
# Checks the deployment artefacts:
#   1. promtool check rules / test rules (deploy/tests/*.yml)
#   2. every alert has a firing and a quiet test case
#   3. kubectl kustomize of the base and each overlay, then yamllint
#   4. the runtime file set of the image (Containerfile's last stage) runs
#      "qsnap --version" under chroot
#
# usage: deploy/test.sh [QSNAP_BINARY]
# environment: QSNAP_BINARY (default build/qsnap), KUBECTL (default
# /usr/bin/kubectl, Debian's kubernetes-client), PYTHON (/usr/bin/python3).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
binary=${1:-${QSNAP_BINARY:-build/qsnap}}
case $binary in /*) ;; *) binary=$root/$binary ;; esac
kubectl=${KUBECTL:-/usr/bin/kubectl}
python=${PYTHON:-/usr/bin/python3}

work=$(mktemp -d "${TMPDIR:-/tmp}/qsnap-deploy-test.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

failures=0
step() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*"; failures=$((failures + 1)); }

for tool in promtool yamllint "$kubectl" "$python"; do
    command -v "$tool" >/dev/null 2>&1 || { echo "missing tool: $tool" >&2; exit 1; }
done

rule=$here/base/prometheusrule.yaml

step "promtool check rules"
"$python" "$here/tools/rules.py" extract "$rule" "$work/qsnap-rules-full.yml"
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

step "alert test coverage"
"$python" "$here/tools/rules.py" coverage "$rule" "$here"/tests/*.yml || fail "alert coverage"

step "kubectl kustomize + yamllint ($kubectl)"
"$kubectl" version --client 2>/dev/null | head -1 || true
yamllint -c "$here/.yamllint" --strict "$here" || fail "yamllint of deploy/ sources"
for dir in "$here/base" "$here"/overlays/*/; do
    dir=${dir%/}
    name=$(echo "${dir#"$here"/}" | tr / -)
    if "$kubectl" kustomize "$dir" >"$work/$name.yaml" 2>"$work/$name.err"; then
        if yamllint -c "$here/.yamllint" --strict "$work/$name.yaml"; then
            echo "ok: ${dir#"$root"/} ($(grep -c '^kind:' "$work/$name.yaml") objects)"
        else
            fail "yamllint of rendered ${dir#"$root"/}"
        fi
    else
        cat "$work/$name.err"
        fail "kubectl kustomize ${dir#"$root"/}"
    fi
done
# The rendered base must carry what the design promises.
base=$work/base.yaml
if [ -s "$base" ]; then
    for want in 'kind: StatefulSet' 'kind: PrometheusRule' 'kind: ServiceMonitor' \
        'kind: NetworkPolicy' 'kind: Secret' 'containerPort: 9633' 'path: /healthz' \
        'path: /readyz' 'readOnlyRootFilesystem: true' 'storageClassName: local-path' \
        'QSNAP_ADMIN_TOKEN_FILE' 'QSNAP_S3_SECRET_ACCESS_KEY_FILE'; do
        grep -q "$want" "$base" || fail "rendered base lacks '$want'"
    done
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
