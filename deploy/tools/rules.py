#!/usr/bin/python3
"""Helpers for deploy/test.sh.

  rules.py extract PROMETHEUSRULE OUT [--strip-annotations]
      Writes the PrometheusRule's spec as a plain Prometheus rule file.
      With --strip-annotations the alerts lose their annotations, so that
      promtool unit tests can compare labels only (the annotations are
      still validated by "promtool check rules" on the unstripped file).

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
    if len(args) != 2:
        sys.exit("usage: rules.py extract PROMETHEUSRULE OUT [--strip-annotations]")
    groups = load_rule_groups(args[0])
    if strip:
        for r in alerts(groups):
            r.pop("annotations", None)
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
    cmds = {"extract": cmd_extract, "coverage": cmd_coverage, "metrics": cmd_metrics}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        sys.exit(__doc__)
    cmds[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
