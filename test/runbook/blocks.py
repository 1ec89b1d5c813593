#!/usr/bin/python3
"""Extracts the shell blocks of docs/runbook.md for test/check-runbook.sh.

  blocks.py RUNBOOK OUTDIR
Writes OUTDIR/NNN.sh for every fenced block whose info string is
"sh runbook-test", and OUTDIR/index.tsv with "NNN<TAB>section#k" (k counts
the blocks under one heading). A block marked "sh runbook-cluster" needs a
Qdrant cluster of several peers, which the test does not have: it is not
run, only checked with "bash -n" (written to OUTDIR/cluster/NNN.sh). Fails
on a "sh" (or bash/shell) block without one of the two markers, and on a
cluster block that is not valid shell: every command in the runbook is
tested or at least parsed.
"""
import os
import re
import subprocess
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    text = open(sys.argv[1], encoding="utf-8").read().splitlines()
    out = sys.argv[2]
    os.makedirs(os.path.join(out, "cluster"), exist_ok=True)
    section, per, n, ncluster, bad = "(top)", {}, 0, 0, 0
    i = 0
    index = []
    while i < len(text):
        line = text[i]
        m = re.match(r"^(#{1,6}) +(.*?) *$", line)
        if m:
            section = m.group(2)
        fence = re.match(r"^```(.*)$", line)
        if fence:
            info = fence.group(1).split()
            body = []
            i += 1
            while i < len(text) and not text[i].startswith("```"):
                body.append(text[i])
                i += 1
            if info[:1] in (["sh"], ["bash"], ["shell"]):
                if "runbook-test" in info[1:]:
                    n += 1
                    per[section] = per.get(section, 0) + 1
                    name = f"{n:03d}"
                    with open(os.path.join(out, name + ".sh"), "w", encoding="utf-8") as f:
                        f.write("\n".join(body) + "\n")
                    index.append(f"{name}\t{section}#{per[section]}")
                elif "runbook-cluster" in info[1:]:
                    ncluster += 1
                    path = os.path.join(out, "cluster", f"{ncluster:03d}.sh")
                    with open(path, "w", encoding="utf-8") as f:
                        f.write("\n".join(body) + "\n")
                    check = subprocess.run(["bash", "-n", path], capture_output=True, text=True,
                                           check=False)
                    if check.returncode != 0:
                        print(f"{sys.argv[1]}:{i}: cluster block under '{section}' is not valid "
                              f"shell: {check.stderr.strip()}")
                        bad = 1
                else:
                    print(f"{sys.argv[1]}:{i}: shell block without runbook-test or "
                          f"runbook-cluster under '{section}'")
                    bad = 1
        i += 1
    with open(os.path.join(out, "index.tsv"), "w", encoding="utf-8") as f:
        f.write("\n".join(index) + "\n")
    print(f"{n} runbook blocks, {ncluster} cluster blocks (syntax checked only)")
    sys.exit(bad)


if __name__ == "__main__":
    main()
