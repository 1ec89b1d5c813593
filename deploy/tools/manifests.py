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

  manifests.py single RENDERED
      A single-node rendering (the base and the overlays on it): one
      replica, Qdrant not in cluster mode, no P2P port, the image's own
      entrypoint, serviceName qdrant, no PodDisruptionBudget; deleting the
      StatefulSet keeps the volume (persistentVolumeClaimRetentionPolicy).

  manifests.py cluster RENDERED START_SCRIPT
      The cluster overlay: three replicas started in parallel; serviceName
      names a headless Service publishing not-ready pods, with the P2P port;
      Qdrant in cluster mode on P2P port 6335 (container port "p2p"), started
      by START_SCRIPT (from a generated ConfigMap, same content) with the
      downward-API environment it reads and QDRANT_PEER_DOMAIN naming that
      Service; readiness on /readyz, the startup probe not on /readyz and
      long enough for the script's wait; qsnap with QSNAP_CLUSTER=auto and
      QSNAP_CLUSTER_REST_PORT=6333; a PodDisruptionBudget of maxUnavailable
      1 and a preferred pod anti-affinity per node over the pods; volumes kept
      when the StatefulSet is deleted or scaled down.

  manifests.py scrape-targets RENDERED
      Each ServiceMonitor selects exactly one Service (a second Service with
      the same labels would scrape every pod twice).
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
    home = statefulset(docs)["metadata"].get("namespace")
    for d in mon:
        # kubectl apply would otherwise put it in the context's namespace,
        # where a ServiceMonitor selects nothing.
        ns = d["metadata"].get("namespace")
        c.expect(ns == home, f"{d['kind']}/{d['metadata']['name']}: namespace {ns!r}, not {home!r}")
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


def env_of(ctr):
    return {e["name"]: e for e in ctr.get("env", [])}


def labels_match(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def keeps_volumes(c, spec):
    """Deleting or scaling down the StatefulSet keeps its volumes (the
    runbook's cluster switch and lost-node steps rely on it)."""
    policy = spec.get("persistentVolumeClaimRetentionPolicy") or {}
    for k in ("whenDeleted", "whenScaled"):
        c.expect(policy.get(k, "Retain") == "Retain",
                 f"persistentVolumeClaimRetentionPolicy.{k} {policy.get(k)}")


def cmd_single(path):
    docs = load(path)
    c = Checks()
    sts = statefulset(docs)
    spec = sts["spec"]
    keeps_volumes(c, spec)
    qdrant = container(sts, "qdrant")
    c.expect(spec.get("replicas", 1) == 1, f"replicas {spec.get('replicas')}")
    c.expect(spec.get("serviceName") == "qdrant", f"serviceName {spec.get('serviceName')}")
    c.expect("podManagementPolicy" not in spec, "podManagementPolicy is set")
    env = env_of(qdrant)
    c.expect(not any(k.startswith("QDRANT__CLUSTER__") for k in env),
             f"Qdrant cluster settings: {[k for k in env if k.startswith('QDRANT__CLUSTER__')]}")
    ports = [p["containerPort"] for ctr in spec["template"]["spec"]["containers"]
             for p in ctr.get("ports", [])]
    c.expect(6335 not in ports, "a container exposes the P2P port 6335")
    c.expect("command" not in qdrant and "args" not in qdrant,
             "the qdrant container does not run the image's entrypoint")
    c.expect(not [d for d in docs if d["kind"] == "PodDisruptionBudget"], "a PodDisruptionBudget")
    c.done("single node: one replica, no cluster settings, no P2P port")


def cmd_cluster(path, script):
    docs = load(path)
    c = Checks()
    sts = statefulset(docs)
    spec = sts["spec"]
    pod = spec["template"]
    labels = pod["metadata"]["labels"]
    c.expect(spec.get("replicas") == 3, f"replicas {spec.get('replicas')}, not 3")
    c.expect(spec.get("podManagementPolicy") == "Parallel",
             f"podManagementPolicy {spec.get('podManagementPolicy')}")
    keeps_volumes(c, spec)
    svc_name = spec.get("serviceName")
    svcs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    svc = svcs.get(svc_name)
    c.expect(svc is not None, f"serviceName {svc_name}: no such Service rendered")
    if svc:
        s = svc["spec"]
        c.expect(s.get("clusterIP") == "None", f"Service {svc_name} is not headless")
        c.expect(s.get("publishNotReadyAddresses") is True,
                 f"Service {svc_name} does not publish not-ready pods")
        c.expect(s.get("selector") and labels_match(s["selector"], labels),
                 f"Service {svc_name} does not select the pods")
        c.expect(any(p.get("port") == 6335 for p in s.get("ports", [])),
                 f"Service {svc_name} has no port 6335")
    qdrant = container(sts, "qdrant")
    p2p = [p for p in qdrant.get("ports", []) if p["containerPort"] == 6335]
    c.expect(len(p2p) == 1 and p2p[0].get("name") == "p2p", f"qdrant container P2P port: {p2p}")
    env = env_of(qdrant)

    def value(name):
        return env.get(name, {}).get("value")

    def field(name):
        return env.get(name, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")

    c.expect(value("QDRANT__CLUSTER__ENABLED") == "true", "QDRANT__CLUSTER__ENABLED is not \"true\"")
    c.expect(value("QDRANT__CLUSTER__P2P__PORT") == "6335", "QDRANT__CLUSTER__P2P__PORT is not 6335")
    c.expect(field("POD_NAME") == "metadata.name", "POD_NAME is not the pod's name")
    c.expect(field("POD_NAMESPACE") == "metadata.namespace", "POD_NAMESPACE is not the pod's namespace")
    c.expect(field("POD_IP") == "status.podIP", "POD_IP is not the pod's IP")
    want = f"{svc_name}.$(POD_NAMESPACE).svc.cluster.local"
    c.expect(value("QDRANT_PEER_DOMAIN") == want,
             f"QDRANT_PEER_DOMAIN {value('QDRANT_PEER_DOMAIN')!r}, expected {want!r}")
    order = [e["name"] for e in qdrant.get("env", [])]
    c.expect("QDRANT_PEER_DOMAIN" in order and "POD_NAMESPACE" in order
             and order.index("POD_NAMESPACE") < order.index("QDRANT_PEER_DOMAIN"),
             "POD_NAMESPACE must come before QDRANT_PEER_DOMAIN (dependent variable)")
    cmd = qdrant.get("command", [])
    c.expect(len(cmd) == 2 and cmd[0] == "/bin/bash", f"qdrant command {cmd}")
    cms = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounted = None
    if len(cmd) == 2:
        for m in qdrant.get("volumeMounts", []):
            if cmd[1].startswith(m["mountPath"].rstrip("/") + "/"):
                cm_name = vols.get(m["name"], {}).get("configMap", {}).get("name", "")
                key = cmd[1][len(m["mountPath"].rstrip("/")) + 1:]
                mounted = (cm_name, cms.get(cm_name, {}).get("data", {}).get(key))
    with open(script, encoding="utf-8") as f:
        text = f.read()
    c.expect(mounted is not None and mounted[0].startswith("qdrant-cluster-start-"),
             f"the start script does not come from the generated ConfigMap ({mounted})")
    c.expect(mounted is not None and mounted[1] == text,
             f"the mounted start script differs from {script}")
    ready = qdrant.get("readinessProbe", {}).get("httpGet", {}).get("path")
    c.expect(ready == "/readyz", f"Qdrant's readinessProbe is {ready}, not /readyz")
    start = qdrant.get("startupProbe", {})
    c.expect(start.get("httpGet", {}).get("path") not in (None, "/readyz"),
             "Qdrant's startupProbe waits for /readyz (a peer recovering its shards is not ready)")
    budget = start.get("failureThreshold", 3) * start.get("periodSeconds", 10)
    c.expect(budget >= 180, f"startupProbe budget {budget}s < the script's join wait (120s) + 60s")
    name, cm = config_ref(docs)
    data = cm.get("data", {})
    c.expect(data.get("QSNAP_CLUSTER") == "auto", f"QSNAP_CLUSTER={data.get('QSNAP_CLUSTER')}")
    c.expect(data.get("QSNAP_CLUSTER_REST_PORT") == "6333",
             f"QSNAP_CLUSTER_REST_PORT={data.get('QSNAP_CLUSTER_REST_PORT')}")
    c.expect(data.get("QSNAP_QDRANT_URL", "").startswith("http://localhost:"),
             "qsnap does not talk to its own peer over localhost")
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    c.expect(len(pdbs) == 1 and pdbs[0]["spec"].get("maxUnavailable") == 1
             and labels_match(pdbs[0]["spec"]["selector"].get("matchLabels"), labels),
             f"PodDisruptionBudget: {[d['spec'] for d in pdbs]}")
    anti = pod["spec"].get("affinity", {}).get("podAntiAffinity", {})
    terms = anti.get("preferredDuringSchedulingIgnoredDuringExecution", [])
    c.expect(any(t["podAffinityTerm"].get("topologyKey") == "kubernetes.io/hostname"
                 and labels_match(t["podAffinityTerm"]["labelSelector"].get("matchLabels"), labels)
                 for t in terms), "no preferred pod anti-affinity per node over the pods")
    c.expect("requiredDuringSchedulingIgnoredDuringExecution" not in anti,
             "required anti-affinity: the pods would not schedule on fewer nodes")
    c.done(f"cluster: 3 peers (Parallel), headless Service {svc_name}, P2P 6335, "
           f"start script from {mounted[0] if mounted else '?'}, qsnap QSNAP_CLUSTER=auto, "
           f"PodDisruptionBudget maxUnavailable 1, anti-affinity per node")


def cmd_scrape_targets(path):
    docs = load(path)
    c = Checks()
    mons = [d for d in docs if d["kind"] == "ServiceMonitor"]
    c.expect(mons, "no ServiceMonitor rendered")
    for m in mons:
        ns = m["metadata"].get("namespace")
        sel = m["spec"]["selector"].get("matchLabels")
        hits = [d["metadata"]["name"] for d in docs if d["kind"] == "Service"
                and d["metadata"].get("namespace") == ns
                and labels_match(sel, d["metadata"].get("labels") or {})]
        c.expect(len(hits) == 1, f"ServiceMonitor {m['metadata']['name']} selects Services {hits}")
    c.done(f"scrape targets: each of {len(mons)} ServiceMonitors selects one Service")


def main():
    a = sys.argv[1:]
    cmds = {("base", 1): lambda: cmd_base(a[1]),
            ("monitoring", 2): lambda: cmd_monitoring(a[1], a[2]),
            ("secret", 2): lambda: cmd_secret(a[1], a[2]),
            ("annotated", 1): lambda: cmd_annotated(a[1]),
            ("config-ref", 1): lambda: cmd_config_ref(a[1]),
            ("single", 1): lambda: cmd_single(a[1]),
            ("cluster", 2): lambda: cmd_cluster(a[1], a[2]),
            ("scrape-targets", 1): lambda: cmd_scrape_targets(a[1])}
    fn = cmds.get((a[0], len(a) - 1)) if a else None
    if fn is None:
        sys.exit(__doc__)
    fn()


if __name__ == "__main__":
    main()
