#!/usr/bin/python3
"""Behaviour of the cluster overlay's Qdrant start script, for deploy/test.sh.

  startcheck.py SCRIPT
      Runs SCRIPT (deploy/overlays/cluster/qdrant-start.sh) with bash in a
      scratch directory standing in for Qdrant's working directory: a fake
      ./entrypoint.sh records the arguments it is given, a fake getent
      answers for the headless Service's name with chosen addresses, and
      "a cluster member" is a socket listening on 127.0.0.1 (127.0.0.2
      refuses: a pod that is not a member yet). Checks the decision for a
      fresh deployment, a new volume on pod 0 and on another pod, restarts
      with Raft state, waiting for a member that comes up late, its own
      address, no DNS answer, and refusals of a bad environment.
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

DOMAIN = "qdrant-headless.test.svc.cluster.local"
UP, DOWN = "127.0.0.1", "127.0.0.2"

GETENT = """#!/bin/sh
# getent ahosts NAME, answered from FAKE_PEERS
[ "$1" = ahosts ] && [ "$2" = "$FAKE_DOMAIN" ] && [ -n "$FAKE_PEERS" ] || exit 2
for ip in $FAKE_PEERS; do
    printf '%-15s STREAM %s\\n%-15s DGRAM\\n%-15s RAW\\n' "$ip" "$2" "$ip" "$ip"
done
"""
ENTRYPOINT = """#!/bin/sh
for a in "$@"; do printf '%s\\n' "$a"; done > "$ARGS_FILE"
"""


def free_port():
    s = socket.socket()
    s.bind((UP, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Member:
    """A listening socket on 127.0.0.1:PORT, optionally opened after a delay."""

    def __init__(self, port, delay=0.0):
        self.sock = None
        self.port = port
        if delay:
            self.timer = threading.Timer(delay, self.open)
            self.timer.start()
        else:
            self.timer = None
            self.open()

    def open(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((UP, self.port))
        s.listen(16)
        self.sock = s

    def close(self):
        if self.timer:
            self.timer.cancel()
        if self.sock:
            self.sock.close()


def run(script, work, name, peers, port, state=False, pod_ip="10.42.0.99", env=None):
    run_dir = os.path.join(work, "run")
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(os.path.join(run_dir, "storage"))
    with open(os.path.join(run_dir, "entrypoint.sh"), "w", encoding="utf-8") as f:
        f.write(ENTRYPOINT)
    os.chmod(os.path.join(run_dir, "entrypoint.sh"), 0o755)
    if state:
        with open(os.path.join(run_dir, "storage", "raft_state.json"), "w", encoding="utf-8") as f:
            f.write("{}")
    args_file = os.path.join(work, "args")
    if os.path.exists(args_file):
        os.remove(args_file)
    e = {"PATH": os.path.join(work, "bin") + ":" + os.environ.get("PATH", "/usr/bin:/bin"),
         "POD_NAME": name, "POD_IP": pod_ip, "QDRANT_PEER_DOMAIN": DOMAIN,
         "QDRANT__CLUSTER__P2P__PORT": str(port), "FAKE_DOMAIN": DOMAIN,
         "FAKE_PEERS": " ".join(peers), "ARGS_FILE": args_file,
         "QDRANT_FOUND_WAIT": "2", "QDRANT_JOIN_WAIT": "2"}
    e.update(env or {})
    e = {k: v for k, v in e.items() if v is not None}
    t0 = time.monotonic()
    p = subprocess.run(["bash", script], cwd=run_dir, env=e, capture_output=True, text=True,
                       timeout=120, check=False)
    elapsed = time.monotonic() - t0
    args = None
    if os.path.exists(args_file):
        with open(args_file, encoding="utf-8") as f:
            args = f.read().splitlines()
    return p, args, elapsed


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    script = os.path.abspath(sys.argv[1])
    if subprocess.run(["bash", "-n", script], check=False).returncode != 0:
        sys.exit(f"FAIL: bash -n {script}")
    work = tempfile.mkdtemp(prefix="qdrant-start-check.")
    bad = 0
    try:
        os.makedirs(os.path.join(work, "bin"))
        with open(os.path.join(work, "bin", "getent"), "w", encoding="utf-8") as f:
            f.write(GETENT)
        os.chmod(os.path.join(work, "bin", "getent"), 0o755)
        port = free_port()

        def uri(n):
            return f"http://qdrant-{n}.{DOMAIN}:{port}"

        up = f"http://{UP}:{port}"
        # (description, run kwargs, member delay or None, expected args,
        #  minimum and maximum seconds)
        cases = [
            ("fresh deployment: pod 0 waits for a member, then founds the cluster",
             dict(name="qdrant-0", peers=[DOWN]), None, ["--uri", uri(0)], 2, 30),
            ("pod 0 with a new volume joins the running cluster",
             dict(name="qdrant-0", peers=[DOWN, UP]), 0, ["--bootstrap", up, "--uri", uri(0)], 0, 10),
            ("pod 0 restarting with Raft state, no peer up: no wait, no --bootstrap",
             dict(name="qdrant-0", peers=[DOWN], state=True, env={"QDRANT_FOUND_WAIT": "30"}),
             None, ["--uri", uri(0)], 0, 10),
            ("pod 0 restarting with Raft state, peers up (Qdrant ignores --bootstrap)",
             dict(name="qdrant-0", peers=[UP], state=True), 0, ["--bootstrap", up, "--uri", uri(0)], 0, 10),
            ("pod 2 with a new volume, nobody answers: waits, then bootstraps through pod 0",
             dict(name="qdrant-2", peers=[DOWN]), None,
             ["--bootstrap", uri(0), "--uri", uri(2)], 2, 30),
            ("pod 2 with a new volume joins through the member that answers",
             dict(name="qdrant-2", peers=[DOWN, UP]), 0, ["--bootstrap", up, "--uri", uri(2)], 0, 10),
            ("pod 1 with a new volume waits for a member that comes up late",
             dict(name="qdrant-1", peers=[UP], env={"QDRANT_JOIN_WAIT": "30"}), 3,
             ["--bootstrap", up, "--uri", uri(1)], 2.5, 20),
            ("pod 1 restarting with Raft state, nobody answers: bootstraps through pod 0 at once",
             dict(name="qdrant-1", peers=[DOWN], state=True, env={"QDRANT_JOIN_WAIT": "30"}),
             None, ["--bootstrap", uri(0), "--uri", uri(1)], 0, 10),
            ("its own address is not a member: pod 0 founds",
             dict(name="qdrant-0", peers=[UP], pod_ip=UP), 0, ["--uri", uri(0)], 2, 30),
            ("no DNS answer for the headless Service: pod 0 founds after the wait",
             dict(name="qdrant-0", peers=[]), None, ["--uri", uri(0)], 2, 30),
        ]
        for desc, kw, delay, want, lo, hi in cases:
            member = Member(port, delay) if delay is not None else None
            try:
                p, args, took = run(script, work, port=port, **kw)
            finally:
                if member:
                    member.close()
            if p.returncode != 0 or args != want or not lo <= took <= hi:
                bad += 1
                print(f"FAIL: {desc}: exit {p.returncode}, args {args}, {took:.1f}s "
                      f"(expected {want} in {lo}-{hi}s)\n{p.stderr}")
            else:
                print(f"ok: {desc} ({took:.1f}s)")

        refusals = [
            ("POD_NAME without an ordinal", dict(name="qdrant"), "not a StatefulSet pod name"),
            ("POD_NAME with a non-numeric ordinal", dict(name="qdrant-x"), "does not end in -ORDINAL"),
            ("QDRANT_PEER_DOMAIN unset", dict(name="qdrant-0", env={"QDRANT_PEER_DOMAIN": None}),
             "QDRANT_PEER_DOMAIN is not set"),
            ("a wait that is not a number", dict(name="qdrant-0", env={"QDRANT_FOUND_WAIT": "20s"}),
             "found_wait '20s' is not a number"),
        ]
        for desc, kw, msg in refusals:
            p, args, _ = run(script, work, peers=[DOWN], port=port, **kw)
            if p.returncode == 0 or args is not None or msg not in p.stderr:
                bad += 1
                print(f"FAIL: {desc}: exit {p.returncode}, args {args}, stderr {p.stderr!r}")
            else:
                print(f"ok: refused: {desc}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if bad:
        sys.exit(1)
    print(f"ok: qdrant-start.sh: {len(cases)} start decisions, {len(refusals)} refusals")


if __name__ == "__main__":
    main()
