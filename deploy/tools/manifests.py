#!/usr/bin/python3
"""Checks of rendered kustomize output, for deploy/test.sh.

  manifests.py base RENDERED
      The base: no Secret and no monitoring.coreos.com object; the qsnap
      container reads its configuration from a generated ConfigMap that is
      part of the rendering, its secrets as files, has a liveness probe on
      /healthz and no readiness probe (pod readiness is the AND of the
      containers); Qdrant keeps its readiness probe on /readyz.

  manifests.py monitoring RENDERED RELEASE
      Every monitoring.coreos.com object carries release=RELEASE; the rule
      has every runbook_url absolute (https://...#anchor); no local-config
      object is emitted.

  manifests.py secret RENDERED NAME
      A Secret NAME-<hash> is rendered and the StatefulSet mounts it.

  manifests.py annotated RENDERED
      The plain-Prometheus overlay: pod annotated for Qdrant (6333), a
      Service annotated for qsnap (9633).

  manifests.py config-ref RENDERED
      Prints the ConfigMap name the qsnap container's envFrom refers to,
      then its QSNAP_SCHEDULE.
"""
import sys

import yaml


def load(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def statefulset(docs):
    sts = [d for d in docs if d["kind"] == "StatefulSet"]
    if len(sts) != 1:
        sys.exit(f"expected one StatefulSet, found {len(sts)}")
    return sts[0]


def container(sts, name):
    for c in sts["spec"]["template"]["spec"]["containers"]:
        if c["name"] == name:
            return c
    sys.exit(f"no container {name}")


def config_ref(docs):
    qsnap = container(statefulset(docs), "qsnap")
    refs = [e["configMapRef"]["name"] for e in qsnap.get("envFrom", []) if "configMapRef" in e]
    if len(refs) != 1:
        sys.exit(f"qsnap container: expected one configMapRef, found {refs}")
    cms = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    if refs[0] not in cms:
        sys.exit(f"qsnap container refers to ConfigMap {refs[0]}, which is not rendered")
    return refs[0], cms[refs[0]]


class Checks:
    def __init__(self):
        self.bad = 0

    def expect(self, cond, msg):
        if not cond:
            print("FAIL:", msg)
            self.bad += 1

    def done(self, what):
        if self.bad:
            sys.exit(1)
        print(f"ok: {what}")


def cmd_base(path):
    docs = load(path)
    c = Checks()
    kinds = [d["kind"] for d in docs]
    c.expect("Secret" not in kinds, "the base renders a Secret")
    mon = [d["kind"] for d in docs if d["apiVersion"].startswith("monitoring.coreos.com/")]
    c.expect(not mon, f"the base renders monitoring.coreos.com objects: {mon}")
    sts = statefulset(docs)
    qsnap = container(sts, "qsnap")
    qdrant = container(sts, "qdrant")
    c.expect("readinessProbe" not in qsnap, "the qsnap container has a readinessProbe")
    live = qsnap.get("livenessProbe", {})
    c.expect(live.get("httpGet", {}).get("path") == "/healthz", "qsnap liveness probe is not /healthz")
    c.expect(live.get("failureThreshold", 3) * live.get("periodSeconds", 10) >= 60,
             "qsnap liveness probe restarts after less than a minute")
    c.expect(qdrant.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz",
             "Qdrant's readinessProbe is not /readyz")
    name, cm = config_ref(docs)
    c.expect(name.startswith("qsnap-config-"), f"configMapRef {name} is not a generated name")
    c.expect("QSNAP_DESTINATION" in cm.get("data", {}), "the ConfigMap has no QSNAP_DESTINATION")
    envs = {e["name"] for e in qsnap.get("env", [])}
    for want in ("QSNAP_ADMIN_TOKEN_FILE", "QSNAP_S3_ACCESS_KEY_ID_FILE",
                 "QSNAP_S3_SECRET_ACCESS_KEY_FILE"):
        c.expect(want in envs, f"qsnap container lacks {want}")
    for ctr in (qsnap, qdrant):
        c.expect(ctr.get("securityContext", {}).get("readOnlyRootFilesystem") is True,
                 f"{ctr['name']}: root filesystem not read-only")
    vols = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    c.expect(vols.get("qsnap-credentials", {}).get("secret", {}).get("secretName")
             == "qsnap-credentials", "the base does not mount the Secret qsnap-credentials")
    c.done(f"base: {len(docs)} objects, no Secret, no monitoring.coreos.com object, "
           f"qsnap without readinessProbe, config from {name}")


def cmd_monitoring(path, release):
    docs = load(path)
    c = Checks()
    mon = [d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com/")]
    kinds = sorted(d["kind"] for d in mon)
    c.expect(kinds == ["PrometheusRule", "ServiceMonitor", "ServiceMonitor"],
             f"monitoring objects: {kinds}")
    for d in mon:
        got = d["metadata"].get("labels", {}).get("release")
        c.expect(got == release, f"{d['kind']}/{d['metadata']['name']}: release={got!r}")
    n = 0
    for d in mon:
        if d["kind"] != "PrometheusRule":
            continue
        for g in d["spec"]["groups"]:
            for r in g["rules"]:
                if "alert" not in r:
                    continue
                url = r.get("annotations", {}).get("runbook_url", "")
                n += 1
                c.expect(url.startswith("https://") and "#" in url and "RUNBOOK" not in url,
                         f"{r['alert']}: runbook_url {url!r} is not absolute")
    for d in docs:
        ann = d["metadata"].get("annotations") or {}
        c.expect("config.kubernetes.io/local-config" not in ann,
                 f"{d['kind']}/{d['metadata']['name']} (local-config) is rendered")
    c.done(f"monitoring: {len(mon)} objects labelled release={release}, {n} absolute runbook_urls")


def cmd_secret(path, name):
    docs = load(path)
    c = Checks()
    secrets = [d["metadata"]["name"] for d in docs if d["kind"] == "Secret"]
    gen = [s for s in secrets if s.startswith(name + "-")]
    c.expect(len(gen) == 1, f"expected one generated Secret {name}-<hash>, found {secrets}")
    vols = {v["name"]: v for v in statefulset(docs)["spec"]["template"]["spec"]["volumes"]}
    mounted = vols.get("qsnap-credentials", {}).get("secret", {}).get("secretName")
    c.expect(gen and mounted == gen[0], f"the StatefulSet mounts {mounted}, not {gen}")
    c.done(f"secret: {mounted} generated and mounted")


def cmd_annotated(path):
    docs = load(path)
    c = Checks()
    ann = statefulset(docs)["spec"]["template"]["metadata"].get("annotations", {})
    c.expect(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == "6333",
             f"pod annotations: {ann}")
    svcs = [d for d in docs if d["kind"] == "Service"
            and (d["metadata"].get("annotations") or {}).get("prometheus.io/port") == "9633"]
    c.expect(len(svcs) == 1, "no Service annotated for port 9633")
    c.done("annotated: pod for Qdrant (6333), Service "
           f"{svcs[0]['metadata']['name'] if svcs else '?'} for qsnap (9633)")


def cmd_config_ref(path):
    name, cm = config_ref(load(path))
    print(name)
    print(cm.get("data", {}).get("QSNAP_SCHEDULE", ""))


def main():
    a = sys.argv[1:]
    cmds = {("base", 1): lambda: cmd_base(a[1]),
            ("monitoring", 2): lambda: cmd_monitoring(a[1], a[2]),
            ("secret", 2): lambda: cmd_secret(a[1], a[2]),
            ("annotated", 1): lambda: cmd_annotated(a[1]),
            ("config-ref", 1): lambda: cmd_config_ref(a[1])}
    fn = cmds.get((a[0], len(a) - 1)) if a else None
    if fn is None:
        sys.exit(__doc__)
    fn()


if __name__ == "__main__":
    main()
