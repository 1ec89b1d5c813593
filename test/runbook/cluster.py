#!/usr/bin/python3
"""The cluster side of test/check-runbook.sh's kubectl stand-in.

  cluster.py deploy RENDERED STATE
      What "kubectl apply -k" changes for the one pod: stores every rendered
      Secret under STATE/secrets/NAME/, writes STATE/pod.env (the qsnap
      container's configuration: the ConfigMap its envFrom names, its env,
      and *_FILE paths into the Secret it mounts; the peers' addresses from
      the RB_* environment replace the cluster's), and prints "changed" when
      the pod template differs from the last one applied (the pod rolls).

  cluster.py apply-file FILE STATE
      "kubectl apply -f": stores the Secrets of FILE; prints their names.
"""
import base64
import hashlib
import os
import shlex
import sys

import yaml

MOUNT = "/var/run/secrets/qsnap"


def store_secret(doc, state):
    d = os.path.join(state, "secrets", doc["metadata"]["name"])
    os.makedirs(d, exist_ok=True)
    for k, v in (doc.get("data") or {}).items():
        with open(os.path.join(d, k), "wb") as f:
            f.write(base64.b64decode(v))
    for k, v in (doc.get("stringData") or {}).items():
        with open(os.path.join(d, k), "w", encoding="utf-8") as f:
            f.write(v)
    return doc["metadata"]["name"]


def deploy(rendered, state):
    docs = [d for d in yaml.safe_load_all(open(rendered, encoding="utf-8")) if d]
    for d in docs:
        if d["kind"] == "Secret":
            store_secret(d, state)
    sts = [d for d in docs if d["kind"] == "StatefulSet"][0]
    pod = sts["spec"]["template"]
    qsnap = [c for c in pod["spec"]["containers"] if c["name"] == "qsnap"][0]
    cms = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    env = {}
    for e in qsnap.get("envFrom", []):
        env.update(cms[e["configMapRef"]["name"]].get("data", {}))
    secret = [v["secret"]["secretName"] for v in pod["spec"]["volumes"]
              if v["name"] == "qsnap-credentials"][0]
    sdir = os.path.join(state, "secrets", secret)
    for e in qsnap.get("env", []):
        v = e.get("value", "")
        if v.startswith(MOUNT + "/"):
            v = os.path.join(sdir, v[len(MOUNT) + 1:])
        env[e["name"]] = v
    env.pop("TMPDIR", None)
    env.update({
        "QSNAP_DESTINATION": "s3://%s/%s" % (os.environ["RB_BUCKET"], os.environ["RB_PREFIX"]),
        "QSNAP_S3_ENDPOINT": os.environ["RB_S3_ENDPOINT"],
        "QSNAP_S3_REGION": os.environ["RB_S3_REGION"],
        "QSNAP_QDRANT_URL": os.environ["RB_QDRANT_URL"],
        "QSNAP_LISTEN": "127.0.0.1:%s" % os.environ["RB_QSNAP_PORT"],
    })
    with open(os.path.join(state, "pod.env"), "w", encoding="utf-8") as f:
        for k in sorted(env):
            f.write("%s=%s\n" % (k, shlex.quote(env[k])))
    with open(os.path.join(state, "secret-name"), "w", encoding="utf-8") as f:
        f.write(secret + "\n")
    digest = hashlib.sha256(yaml.safe_dump(pod, sort_keys=True).encode()).hexdigest()
    path = os.path.join(state, "template.sha256")
    old = open(path).read().strip() if os.path.exists(path) else ""
    with open(path, "w") as f:
        f.write(digest + "\n")
    print("changed" if digest != old else "unchanged")


def apply_file(path, state):
    for d in yaml.safe_load_all(open(path, encoding="utf-8")):
        if d and d.get("kind") == "Secret":
            print(store_secret(d, state))


def main():
    a = sys.argv[1:]
    if a[:1] == ["deploy"] and len(a) == 3:
        deploy(a[1], a[2])
    elif a[:1] == ["apply-file"] and len(a) == 3:
        apply_file(a[1], a[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
