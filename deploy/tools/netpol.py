#!/usr/bin/python3
"""NetworkPolicy check of rendered kustomize output, for deploy/test.sh.

  netpol.py check PROFILE RENDERED
      Evaluates the NetworkPolicies in RENDERED as Kubernetes does (a flow is
      admitted when the source's egress and the destination's ingress both
      admit it; a pod no policy selects for a direction is open in that
      direction) over a model of the pods around Qdrant, and asserts that
      they admit EXACTLY the flows of PROFILE (base or cluster, printed by
      "list"): each listed flow is admitted, every other combination of
      source, destination and port in which a Qdrant pod takes part is
      denied. The model: two Qdrant pods (from the StatefulSet's template),
      the pods the design names (control plane, MinIO, Prometheus, CoreDNS)
      and, in each of the namespaces cortex, monitoring, kube-system and
      default, a pod carrying each label set the policies select on (so a
      selector that lost its namespace scope shows), a pod with other
      labels, and an address outside the cluster; TCP and UDP on every port
      the policies or the containers name and a few others. The ingress
      rules of the Qdrant pods must be exact on their own (whatever the
      source's egress allows), and so must their egress rules; the policies
      must select only Qdrant pods.

  netpol.py mutants PROFILE RENDERED
      Proves that "check" can fail: every single plausible mistake in the
      policies of RENDERED (a rule or its ports removed, a selector widened
      to everything or its namespace scope dropped, a protocol swapped, a
      policy type or a whole policy dropped, a policy widened to every pod)
      must make the check fail.

  netpol.py list PROFILE
      Prints the admitted flows of PROFILE.
"""
import copy
import ipaddress
import sys

import yaml

QDRANT = ("cortex", {"app": "qdrant"})
CONTROL_PLANE = ("cortex", {"app": "cortex-control-plane"})
MINIO = ("cortex", {"app": "minio"})
MONITORING = ("monitoring", {})  # any pod of the namespace
KUBE_DNS = ("kube-system", {"k8s-app": "kube-dns"})

# (source, destination, port, protocol, why); a pod matches a (namespace,
# labels) pair when it is in that namespace and carries those labels.
BASE = [
    (CONTROL_PLANE, QDRANT, 6333, "TCP", "control plane -> Qdrant REST"),
    (CONTROL_PLANE, QDRANT, 6334, "TCP", "control plane -> Qdrant gRPC"),
    (MONITORING, QDRANT, 6333, "TCP", "Prometheus -> Qdrant /metrics"),
    (MONITORING, QDRANT, 9633, "TCP", "Prometheus -> qsnap /metrics"),
    (QDRANT, KUBE_DNS, 53, "UDP", "DNS"),
    (QDRANT, KUBE_DNS, 53, "TCP", "DNS"),
    (QDRANT, MINIO, 9000, "TCP", "qsnap -> MinIO S3 API"),
]
CLUSTER = BASE + [
    (QDRANT, QDRANT, 6333, "TCP", "peer -> peer REST (snapshot shard transfer, qsnap)"),
    (QDRANT, QDRANT, 6335, "TCP", "peer -> peer P2P (consensus, shard transfer)"),
]
PROFILES = {"base": BASE, "cluster": CLUSTER}

NAMESPACES = ("cortex", "monitoring", "kube-system", "default")
EXTRA_PORTS = (22, 53, 80, 443, 6333, 6334, 6335, 8080, 9000, 9090, 9633)
EXTERNAL_IP = "203.0.113.10"


class Pod:
    def __init__(self, name, ns, labels, ip, ports=()):
        self.name, self.ns, self.labels, self.ip = name, ns, dict(labels), ip
        self.ports = list(ports)  # container ports: {name, containerPort, protocol}

    def matches(self, spec):
        ns, labels = spec
        return self.ns == ns and all(self.labels.get(k) == v for k, v in labels.items())

    def __repr__(self):
        return self.name


def load(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def selector_matches(sel, labels):
    """A LabelSelector; None or {} matches everything."""
    if not sel:
        return True
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("matchExpressions") or []:
        k, op, vals = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and k in labels and labels[k] in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"unknown selector operator {op}")
    return True


def ns_labels(name, docs):
    labels = {"kubernetes.io/metadata.name": name}
    for d in docs:
        if d["kind"] == "Namespace" and d["metadata"]["name"] == name:
            labels.update(d["metadata"].get("labels") or {})
    return labels


def build_model(docs, policies):
    sts = [d for d in docs if d["kind"] == "StatefulSet"]
    if len(sts) != 1:
        sys.exit(f"expected one StatefulSet, found {len(sts)}")
    sts = sts[0]
    ns = sts["metadata"].get("namespace", "default")
    labels = sts["spec"]["template"]["metadata"]["labels"]
    ports = [p for c in sts["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])]
    pods = [Pod(f"{ns}/qdrant-{i}", ns, labels, f"10.42.0.{10 + i}", ports) for i in range(2)]
    named = [("control-plane", CONTROL_PLANE), ("minio", MINIO), ("kube-dns", KUBE_DNS),
             ("prometheus", ("monitoring", {"app.kubernetes.io/name": "prometheus"}))]
    for name, (pns, plabels) in named:
        pods.append(Pod(f"{pns}/{name}", pns, plabels, ""))
    # Lookalikes: every label set a policy selects on, in every namespace.
    label_sets = []
    for p in policies:
        spec = p["spec"]
        label_sets.append((spec.get("podSelector") or {}).get("matchLabels") or {})
        for rule in (spec.get("ingress") or []) + (spec.get("egress") or []):
            for peer in (rule.get("from") or []) + (rule.get("to") or []):
                label_sets.append((peer.get("podSelector") or {}).get("matchLabels") or {})
    for n in NAMESPACES:
        for ls in label_sets + [{"app": "something-else"}]:
            if not any(q.ns == n and q.labels == ls for q in pods):
                desc = ",".join(f"{k}={v}" for k, v in sorted(ls.items())) or "no labels"
                pods.append(Pod(f"{n}/pod({desc})", n, ls, ""))
    for i, p in enumerate(pods):
        p.ip = p.ip or f"10.42.1.{i + 1}"
    nsl = {n: ns_labels(n, docs) for n in NAMESPACES}
    return pods, nsl


def ports_of_model(policies, pods):
    nums = set(EXTRA_PORTS)
    for p in policies:
        for rule in (p["spec"].get("ingress") or []) + (p["spec"].get("egress") or []):
            for port in rule.get("ports") or []:
                if isinstance(port.get("port"), int):
                    nums.add(port["port"])
                    if "endPort" in port:
                        nums.add(port["endPort"])
    for pod in pods:
        nums.update(cp["containerPort"] for cp in pod.ports)
    return sorted((n, proto) for n in nums for proto in ("TCP", "UDP"))


def policy_types(p):
    spec = p["spec"]
    if spec.get("policyTypes"):
        return set(spec["policyTypes"])
    return {"Ingress"} | ({"Egress"} if "egress" in spec else set())


def peer_matches(peer, policy_ns, other, nsl):
    """One NetworkPolicyPeer against OTHER (a Pod, or None: outside the cluster)."""
    if "ipBlock" in peer:
        ip = ipaddress.ip_address(other.ip if other else EXTERNAL_IP)
        block = peer["ipBlock"]
        if ip not in ipaddress.ip_network(block["cidr"]):
            return False
        return not any(ip in ipaddress.ip_network(e) for e in block.get("except") or [])
    if other is None:
        return False
    if "namespaceSelector" in peer:
        if not selector_matches(peer["namespaceSelector"], nsl.get(other.ns, {})):
            return False
    elif other.ns != policy_ns:
        return False
    return selector_matches(peer.get("podSelector"), other.labels)


def port_matches(ports, port, proto, dst):
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != proto:
            continue
        want = p.get("port")
        if want is None:
            return True
        if isinstance(want, int):
            if want == port or (p.get("endPort") and want <= port <= p["endPort"]):
                return True
        elif dst is not None:  # a named port of the destination pod
            if any(cp.get("name") == want and cp["containerPort"] == port
                   and cp.get("protocol", "TCP") == proto for cp in dst.ports):
                return True
    return False


def direction_admits(policies, direction, pod, other, port, proto, dst, nsl):
    """Whether POD's policies for DIRECTION admit the flow with OTHER."""
    if pod is None:  # outside the cluster: no policy applies
        return True
    kind, key, peers_key = {"in": ("Ingress", "ingress", "from"),
                            "out": ("Egress", "egress", "to")}[direction]
    selecting = [p for p in policies if kind in policy_types(p)
                 and p["metadata"].get("namespace", "default") == pod.ns
                 and selector_matches(p["spec"].get("podSelector"), pod.labels)]
    if not selecting:
        return True
    for p in selecting:
        pns = p["metadata"].get("namespace", "default")
        for rule in p["spec"].get(key) or []:
            peers = rule.get(peers_key)
            if peers and not any(peer_matches(peer, pns, other, nsl) for peer in peers):
                continue
            if port_matches(rule.get("ports"), port, proto, dst):
                return True
    return False


def admitted(policies, src, dst, port, proto, nsl):
    return (direction_admits(policies, "out", src, dst, port, proto, dst, nsl)
            and direction_admits(policies, "in", dst, src, port, proto, dst, nsl))


def expected(profile, src, dst, port, proto):
    for s, d, p, pr, why in PROFILES[profile]:
        if p == port and pr == proto and src is not None and dst is not None \
                and src.matches(s) and dst.matches(d):
            return why
    return None


def evaluate(profile, docs):
    """Returns (problems, admitted flows, number of denied flows)."""
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    pods, nsl = build_model(docs, policies)
    problems = []
    for p in policies:
        for pod in pods:
            if p["metadata"].get("namespace", "default") == pod.ns \
                    and selector_matches(p["spec"].get("podSelector"), pod.labels) \
                    and not pod.matches(QDRANT):
                problems.append(f"NetworkPolicy {p['metadata']['name']} selects {pod}, not a Qdrant pod")
    ends = pods + [None]
    ok, denied = [], 0
    for src in ends:
        for dst in ends:
            if src is dst:
                continue
            if not any(e is not None and e.matches(QDRANT) for e in (src, dst)):
                continue
            for port, proto in ports_of_model(policies, pods):
                why = expected(profile, src, dst, port, proto)
                flow = f"{src or 'outside'} -> {dst or 'outside'} {port}/{proto}"
                # The flow as a whole, then each side on its own: the
                # destination's ingress rules must be exact even if the
                # source's egress is open, and the source's egress rules
                # even if the destination's ingress is open.
                sides = [("", admitted(policies, src, dst, port, proto, nsl))]
                if dst is not None and dst.matches(QDRANT):
                    sides.append((" (ingress rules alone)",
                                  direction_admits(policies, "in", dst, src, port, proto, dst, nsl)))
                if src is not None and src.matches(QDRANT):
                    sides.append((" (egress rules alone)",
                                  direction_admits(policies, "out", src, dst, port, proto, dst, nsl)))
                for side, got in sides:
                    if got and not why:
                        problems.append(f"admitted but not listed{side}: {flow}")
                    elif why and not got:
                        problems.append(f"listed but denied{side}: {flow} ({why})")
                if sides[0][1]:
                    ok.append(flow)
                else:
                    denied += 1
    return problems, ok, denied


def cmd_check(profile, path):
    problems, ok, denied = evaluate(profile, load(path))
    for p in problems:
        print("FAIL:", p)
    if problems:
        sys.exit(1)
    print(f"ok: NetworkPolicy ({profile}): exactly the {len(PROFILES[profile])} listed flows "
          f"admitted ({len(ok)} pod-to-pod flows), {denied} other flows denied")


def mutants(docs):
    """(description, docs) for each single plausible mistake."""
    out = []

    def variant(i, desc, path, value=None, delete=False):
        """Docs with docs[i].spec at PATH set to VALUE (or deleted)."""
        m = copy.deepcopy(docs)
        node = m[i]["spec"]
        for step in path[:-1]:
            node = node[step]
        if delete:
            node.pop(path[-1])
        else:
            node[path[-1]] = value
        out.append((f"{docs[i]['metadata']['name']}: {desc}", m))

    for i, doc in enumerate(docs):
        if doc["kind"] != "NetworkPolicy":
            continue
        spec = doc["spec"]
        out.append((f"{doc['metadata']['name']} removed", docs[:i] + docs[i + 1:]))
        variant(i, "podSelector {} (every pod of the namespace)", ["podSelector"], {})
        types = policy_types(doc)
        for t in sorted(types):
            # An empty list would be defaulted again: keep the other type.
            rest = sorted(types - {t}) or sorted({"Ingress", "Egress"} - {t})
            variant(i, f"policyTypes {rest} instead of {sorted(types)}", ["policyTypes"], rest)
        for key, peers_key in (("ingress", "from"), ("egress", "to")):
            for r, rule in enumerate(spec.get(key) or []):
                where = f"{key}[{r}]"
                m = copy.deepcopy(docs)
                m[i]["spec"][key].pop(r)
                out.append((f"{doc['metadata']['name']}: {where} removed", m))
                if rule.get("ports"):
                    variant(i, f"{where} without ports (every port)", [key, r, "ports"], delete=True)
                for q, port in enumerate(rule.get("ports") or []):
                    flip = "UDP" if port.get("protocol", "TCP") == "TCP" else "TCP"
                    variant(i, f"{where}.ports[{q}] as {flip}", [key, r, "ports", q, "protocol"], flip)
                peers = rule.get(peers_key) or []
                for n, peer in enumerate(peers):
                    at = [key, r, peers_key, n]
                    desc = f"{where}.{peers_key}[{n}]"
                    if "podSelector" in peer:
                        variant(i, f"{desc}.podSelector {{}}", at + ["podSelector"], {})
                    if "namespaceSelector" in peer:
                        variant(i, f"{desc}.namespaceSelector {{}}", at + ["namespaceSelector"], {})
                        if "podSelector" in peer:
                            variant(i, f"{desc} without namespaceSelector",
                                    at + ["namespaceSelector"], delete=True)
                if len(peers) == 1:
                    variant(i, f"{where} without {peers_key} (every peer)", [key, r, peers_key],
                            delete=True)
    return out


def cmd_mutants(profile, path):
    docs = load(path)
    problems, _, _ = evaluate(profile, docs)
    if problems:
        sys.exit(f"the unchanged policies fail the check ({problems[0]})")
    missed = []
    ms = mutants(docs)
    for desc, m in ms:
        if not evaluate(profile, m)[0]:
            missed.append(desc)
    for d in missed:
        print("FAIL: the check does not notice:", d)
    if missed or not ms:
        sys.exit(1)
    print(f"ok: NetworkPolicy check ({profile}) fails on each of {len(ms)} single mistakes")


def cmd_list(profile):
    for (sns, sl), (dns, dl), port, proto, why in PROFILES[profile]:
        def show(ns, labels):
            return f"{ns}/" + (",".join(f"{k}={v}" for k, v in labels.items()) or "*")
        print(f"{show(sns, sl):36} -> {show(dns, dl):28} {port}/{proto:4} {why}")


def main():
    a = sys.argv[1:]
    if len(a) == 3 and a[0] in ("check", "mutants") and a[1] in PROFILES:
        (cmd_check if a[0] == "check" else cmd_mutants)(a[1], a[2])
    elif len(a) == 2 and a[0] == "list" and a[1] in PROFILES:
        cmd_list(a[1])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
