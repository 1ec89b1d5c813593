#!/usr/bin/python3
"""Checks of the Grafana dashboard (deploy/grafana/qsnap.json).

  dashboard.py check DASHBOARD METRIC_TABLE
      Importable shape (a "datasource" variable of type datasource that
      every panel and query uses as ${datasource}, a "collection" query
      variable) and every metric name in every query either exported by
      qsnap (an entry of METRIC_TABLE, include/qsnap/metric_names.def) or
      one of Qdrant's documented metrics (QDRANT_METRICS below).

  dashboard.py rules DASHBOARD OUT
      Writes every query as a recording rule (Grafana variables replaced by
      plain values), for "promtool check rules" to validate the PromQL.

  dashboard.py live DASHBOARD QSNAP_METRICS_URL QDRANT_METRICS_URL
      Every qsnap/process metric name in the queries has a "# TYPE" line in
      a running qsnap's /metrics, every Qdrant name in Qdrant's /metrics.
"""
import json
import re
import sys
import urllib.request

import yaml

# Qdrant's node metrics (GET /metrics), as documented in Qdrant's
# "Monitoring & Telemetry" guide for v1.13 (application, collection and
# REST metrics). The dashboard uses collections_total and
# collections_vector_total; QdrantSlowResponses uses the REST histogram.
QDRANT_METRICS = {
    "app_info", "app_status_recovery_mode",
    "collections_total", "collections_vector_total", "collections_full_total",
    "collections_aggregated_total",
    "rest_responses_total", "rest_responses_fail_total",
    "rest_responses_avg_duration_seconds", "rest_responses_min_duration_seconds",
    "rest_responses_max_duration_seconds", "rest_responses_duration_seconds",
    "grpc_responses_total", "grpc_responses_fail_total",
    "grpc_responses_avg_duration_seconds", "grpc_responses_min_duration_seconds",
    "grpc_responses_max_duration_seconds", "grpc_responses_duration_seconds",
    "cluster_enabled",
}

KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
            "group_left", "group_right", "inf", "nan", "atan2"}

GRAFANA_VARS = {"$collection": ".*", "${collection}": ".*", "$__range": "1d",
                "$__rate_interval": "5m", "$__interval": "1m"}


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def all_panels(dash):
    for p in dash.get("panels", []):
        yield p
        yield from p.get("panels", [])


def queries(dash):
    """(where, expr) for every panel query and every query variable."""
    for p in all_panels(dash):
        for t in p.get("targets", []):
            if "expr" in t:
                yield f"panel '{p.get('title')}' {t.get('refId')}", t["expr"]
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", q or "")
            yield f"variable {v['name']}", m.group(1) if m else q


def substitute(expr):
    for k in sorted(GRAFANA_VARS, key=len, reverse=True):
        expr = expr.replace(k, GRAFANA_VARS[k])
    return expr


def metric_names(expr):
    e = substitute(expr)
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', e)   # strings
    e = re.sub(r"\{[^}]*\}", " ", e)                                   # matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)                                  # ranges
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        tok = m.group(0)
        rest = e[m.end():].lstrip()
        if rest.startswith("(") or tok.lower() in KEYWORDS:
            continue
        if m.start() > 0 and (e[m.start() - 1].isdigit() or e[m.start() - 1] == "."):
            continue   # 1e9, 7200s
        names.add(tok)
    return names


def base_name(name):
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def registered(table_path):
    """The metric names of qsnap's one metric table (include/qsnap/metric_names.def)."""
    with open(table_path, encoding="utf-8") as f:
        text = re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S)
    return set(re.findall(r'QS_METRIC_DEF\(\s*[A-Z0-9_]+\s*,\s*"([a-z0-9_]+)"', text))


def cmd_check(dash_path, table_path):
    dash = load(dash_path)
    bad = []
    tmpl = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    if tmpl.get("datasource", {}).get("type") != "datasource" or \
            tmpl["datasource"].get("query") != "prometheus":
        bad.append("no 'datasource' variable of type datasource (query prometheus)")
    if tmpl.get("collection", {}).get("type") != "query":
        bad.append("no 'collection' query variable")
    if "__inputs" in dash:
        bad.append("__inputs present: use the ${datasource} variable instead")
    want = {"type": "prometheus", "uid": "${datasource}"}
    for p in all_panels(dash):
        if p.get("type") == "row":
            continue
        if p.get("datasource") != want:
            bad.append(f"panel '{p.get('title')}': datasource {p.get('datasource')}")
        for t in p.get("targets", []):
            if t.get("datasource") != want:
                bad.append(f"panel '{p.get('title')}' {t.get('refId')}: datasource {t.get('datasource')}")
    if tmpl.get("collection", {}).get("datasource") != want:
        bad.append("variable collection: datasource is not ${datasource}")
    qsnap = registered(table_path)
    if not qsnap:
        bad.append(f"no metric found in {table_path}")
    used = set()
    n = 0
    for where, expr in queries(dash):
        n += 1
        for name in metric_names(expr):
            used.add(name)
            if name not in qsnap and base_name(name) not in QDRANT_METRICS:
                bad.append(f"{where}: {name} is neither registered by qsnap nor a documented "
                           f"Qdrant metric")
    for b in bad:
        print("FAIL:", b)
    if bad:
        sys.exit(1)
    print(f"ok: dashboard: {n} queries, {len(used)} metric names "
          f"({len(used & qsnap)} qsnap, {len(used - qsnap)} Qdrant), "
          f"datasource ${{datasource}}, collection variable")


def cmd_rules(dash_path, out):
    rules = []
    for i, (where, expr) in enumerate(queries(load(dash_path))):
        rules.append({"record": f"dashboard:query_{i}", "expr": substitute(expr)})
    with open(out, "w", encoding="utf-8") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f, sort_keys=False)


def scrape_types(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    return set(re.findall(r"^# TYPE (\S+) ", text, flags=re.M))


def cmd_live(dash_path, qsnap_url, qdrant_url):
    have_q = scrape_types(qsnap_url)
    have_d = scrape_types(qdrant_url)
    bad = []
    used = set()
    for where, expr in queries(load(dash_path)):
        for name in metric_names(expr):
            used.add(name)
            if name.startswith(("qsnap_", "process_")):
                if name not in have_q:
                    bad.append(f"{where}: {name} is not in qsnap's /metrics")
            elif base_name(name) not in have_d:
                bad.append(f"{where}: {name} is not in Qdrant's /metrics")
    for b in bad:
        print("  missing:", b)
    if bad:
        sys.exit(1)
    print(f"ok: all {len(used)} metric names of the dashboard are in the live /metrics")


def main():
    a = sys.argv[1:]
    if a[:1] == ["check"] and len(a) == 3:
        cmd_check(a[1], a[2])
    elif a[:1] == ["rules"] and len(a) == 3:
        cmd_rules(a[1], a[2])
    elif a[:1] == ["live"] and len(a) == 4:
        cmd_live(a[1], a[2], a[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
