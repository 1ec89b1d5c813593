#!/usr/bin/python3
"""Extracts the shell blocks of docs/runbook.md for test/check-runbook.sh.

  blocks.py RUNBOOK OUTDIR
Writes OUTDIR/NNN.sh for every fenced block whose info string is
"sh runbook-test", and OUTDIR/index.tsv with "NNN<TAB>section#k" (k counts
the blocks under one heading). Fails on a "sh" (or bash/shell) block
without the runbook-test marker: every command in the runbook is tested.
"""
import os
import re
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    text = open(sys.argv[1], encoding="utf-8").read().splitlines()
    out = sys.argv[2]
    os.makedirs(out, exist_ok=True)
    section, per, n, bad = "(top)", {}, 0, 0
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
                if "runbook-test" not in info[1:]:
                    print(f"{sys.argv[1]}:{i}: shell block without runbook-test under '{section}'")
                    bad = 1
                else:
                    n += 1
                    per[section] = per.get(section, 0) + 1
                    name = f"{n:03d}"
                    with open(os.path.join(out, name + ".sh"), "w", encoding="utf-8") as f:
                        f.write("\n".join(body) + "\n")
                    index.append(f"{name}\t{section}#{per[section]}")
        i += 1
    with open(os.path.join(out, "index.tsv"), "w", encoding="utf-8") as f:
        f.write("\n".join(index) + "\n")
    print(f"{n} runbook blocks")
    sys.exit(bad)


if __name__ == "__main__":
    main()
