#!/usr/bin/python3
"""Helpers for deploy/test.sh.

  rules.py extract PROMETHEUSRULE OUT [--strip-annotations] [--runbook-base URL]
      Writes the PrometheusRule's spec as a plain Prometheus rule file (for
      a Prometheus without the Operator: add OUT to its rule_files).
      --runbook-base URL replaces the "RUNBOOK" part of every runbook_url
      (as the monitoring component does). With --strip-annotations the
      alerts lose their annotations, so that promtool unit tests can compare
      labels only (the annotations are still validated by "promtool check
      rules" on the unstripped file).

  rules.py quiet-all PROMETHEUSRULE TESTFILE
      Fails unless TESTFILE has a quiet test case for every alert (the
      healthy-week test: nothing may page).

  rules.py anchors PROMETHEUSRULE RUNBOOK_MD
      Fails unless every alert has a runbook_url "RUNBOOK#anchor" whose
      anchor is a heading of RUNBOOK_MD (GitHub's heading anchors).

  rules.py coverage PROMETHEUSRULE TESTFILE...
      Fails unless every alert has at least one promtool test case where it
      fires (non-empty exp_alerts) and one where it stays quiet (empty).

  rules.py metrics PROMETHEUSRULE
      Prints the qsnap_* metric names used in the rule expressions.
"""
import re
import sys

import yaml


def load_rule_groups(path):
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    if doc.get("kind") != "PrometheusRule":
        sys.exit(f"{path}: not a PrometheusRule")
    return doc["spec"]["groups"]


def alerts(groups):
    for g in groups:
        for r in g.get("rules", []):
            if "alert" in r:
                yield r


def cmd_extract(args):
    strip = "--strip-annotations" in args
    args = [a for a in args if a != "--strip-annotations"]
    base = None
    if "--runbook-base" in args:
        i = args.index("--runbook-base")
        if i + 1 >= len(args):
            sys.exit("--runbook-base needs a URL")
        base = args[i + 1]
        del args[i:i + 2]
    if len(args) != 2:
        sys.exit("usage: rules.py extract PROMETHEUSRULE OUT [--strip-annotations] "
                 "[--runbook-base URL]")
    groups = load_rule_groups(args[0])
    for r in alerts(groups):
        if strip:
            r.pop("annotations", None)
        elif base is not None and "runbook_url" in r.get("annotations", {}):
            url = r["annotations"]["runbook_url"]
            r["annotations"]["runbook_url"] = base + url[url.index("#"):]
    with open(args[1], "w", encoding="utf-8") as f:
        yaml.safe_dump({"groups": groups}, f, sort_keys=False, width=1000)


def cmd_coverage(args):
    if len(args) < 2:
        sys.exit("usage: rules.py coverage PROMETHEUSRULE TESTFILE...")
    names = [r["alert"] for r in alerts(load_rule_groups(args[0]))]
    fires, quiet = set(), set()
    for path in args[1:]:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        for t in doc.get("tests", []):
            for case in t.get("alert_rule_test", []) or []:
                (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    bad = 0
    for n in names:
        missing = [k for k, s in (("firing", fires), ("quiet", quiet)) if n not in s]
        if missing:
            print(f"alert {n}: no {' and no '.join(missing)} test case")
            bad = 1
    unknown = (fires | quiet) - set(names)
    for n in sorted(unknown):
        print(f"test case for unknown alert {n}")
        bad = 1
    if not bad:
        print(f"coverage: all {len(names)} alerts have firing and quiet test cases")
    sys.exit(bad)


def cmd_quiet_all(args):
    if len(args) != 2:
        sys.exit("usage: rules.py quiet-all PROMETHEUSRULE TESTFILE")
    names = [r["alert"] for r in alerts(load_rule_groups(args[0]))]
    with open(args[1], encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    quiet = set()
    for t in doc.get("tests", []):
        for case in t.get("alert_rule_test", []) or []:
            if not case.get("exp_alerts"):
                quiet.add(case["alertname"])
    missing = [n for n in names if n not in quiet]
    for n in missing:
        print(f"{args[1]}: no quiet test case for {n}")
    if not missing:
        print(f"quiet-all: {args[1]} checks all {len(names)} alerts quiet")
    sys.exit(1 if missing else 0)


def github_anchor(heading):
    """The anchor GitHub gives a Markdown heading."""
    a = heading.strip().lower()
    a = re.sub(r"[^\w\- ]", "", a)
    return a.replace(" ", "-")


def cmd_anchors(args):
    if len(args) != 2:
        sys.exit("usage: rules.py anchors PROMETHEUSRULE RUNBOOK_MD")
    with open(args[1], encoding="utf-8") as f:
        text = f.read()
    # headings outside fenced code blocks
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    have = {github_anchor(m) for m in re.findall(r"^#{1,6} +(.+?) *$", text, flags=re.M)}
    bad = 0
    n = 0
    for r in alerts(load_rule_groups(args[0])):
        url = r.get("annotations", {}).get("runbook_url", "")
        if not url.startswith("RUNBOOK#"):
            print(f"alert {r['alert']}: runbook_url '{url}' is not RUNBOOK#anchor")
            bad = 1
            continue
        n += 1
        if url[len("RUNBOOK#"):] not in have:
            print(f"alert {r['alert']}: {args[1]} has no heading for #{url[len('RUNBOOK#'):]}")
            bad = 1
    if not bad:
        print(f"anchors: all {n} runbook_url anchors are headings of {args[1]}")
    sys.exit(bad)


def cmd_metrics(args):
    if len(args) != 1:
        sys.exit("usage: rules.py metrics PROMETHEUSRULE")
    found = set()
    for g in load_rule_groups(args[0]):
        for r in g.get("rules", []):
            found.update(re.findall(r"qsnap_[a-z_]+", str(r["expr"])))
    for n in sorted(found):
        print(n)


def main():
    cmds = {"extract": cmd_extract, "coverage": cmd_coverage, "metrics": cmd_metrics,
            "anchors": cmd_anchors, "quiet-all": cmd_quiet_all}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        sys.exit(__doc__)
    cmds[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
