"""Checks deploy/ against DESIGN §13 (run by tests/deploy.rs; needs PyYAML, which .ci/run
installs): the alert rules parse, each names only the metrics of §13 and the five failures that
matter each have one; the Grafana dashboard parses and names only §13 metrics; the follow
Deployment has its probes on /healthz and /readyz and the scrape annotations on the port the
pipeline's `[service] listen` names. Prints the ConfigMap's pipeline.toml on stdout (the Rust
side parses it with the product's own parser). Exits 1 naming every problem."""

import json
import re
import sys

import yaml

ROOT = sys.argv[1]

METRICS = {
    "gladly_wfm_build_info",
    "gladly_wfm_events_total",
    "gladly_wfm_set_aside_total",
    "gladly_wfm_webhook_deliveries_total",
    "gladly_wfm_webhook_enabled",
    "gladly_wfm_http_requests_total",
    "gladly_wfm_http_retries_total",
    "gladly_wfm_wfm_records_total",
    "gladly_wfm_cursor_timestamp_seconds",
    "gladly_wfm_last_event_timestamp_seconds",
    "gladly_wfm_poll_duration_seconds",
    "gladly_wfm_event_to_wfm_seconds",
    "gladly_wfm_last_success_timestamp_seconds",
    "gladly_wfm_audit_agent_days",
}
HISTOGRAMS = {"gladly_wfm_poll_duration_seconds", "gladly_wfm_event_to_wfm_seconds"}
SERIES = {m for m in METRICS if m not in HISTOGRAMS} | {
    h + s for h in HISTOGRAMS for s in ("_bucket", "_count", "_sum")
}
# PromQL's words that are not metrics.
PROMQL = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "time", "rate", "irate", "increase", "delta", "changes", "resets",
    "sum", "min", "max", "avg", "count", "topk", "bottomk", "quantile", "histogram_quantile",
    "max_over_time", "min_over_time", "avg_over_time", "absent", "absent_over_time",
    "vector", "scalar", "clamp_min", "clamp_max", "label_replace", "humanizeDuration",
}

problems = []


def metrics_of(expr, where):
    """The metric names an expression reads; anything else that looks like one is a problem."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # ranges
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", e)
    e = re.sub(r"\$\w+", "", e)  # Grafana variables
    found = set()
    for word in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        if word in PROMQL:
            continue
        if word not in SERIES:
            problems.append(f"{where}: `{word}` is not a metric of DESIGN §13: {expr!r}")
        found.add(word)
    return found


# Alert rules.
alerts = yaml.safe_load(open(f"{ROOT}/deploy/prometheus/alerts.yaml"))
rules = [r for g in alerts["groups"] for r in g["rules"]]
by_metric = {}
for r in rules:
    name = r.get("alert")
    if not name or not r.get("expr"):
        problems.append(f"alerts.yaml: a rule without alert or expr: {r}")
        continue
    if r.get("labels", {}).get("severity") not in ("critical", "warning"):
        problems.append(f"alerts.yaml: {name}: labels.severity must be critical or warning")
    if not r.get("annotations", {}).get("summary"):
        problems.append(f"alerts.yaml: {name}: no annotations.summary")
    if r["expr"].count("(") != r["expr"].count(")"):
        problems.append(f"alerts.yaml: {name}: unbalanced parentheses")
    for m in metrics_of(r["expr"], f"alerts.yaml {name}"):
        by_metric.setdefault(m, []).append(r)
# The failures DESIGN §13 names, each with a rule on its metric and threshold.
wanted = {
    "the cursor more than 20 hours behind": (
        "gladly_wfm_cursor_timestamp_seconds",
        lambda e: "20 * 3600" in e or "72000" in e,
    ),
    "no successful poll for 10 minutes": (
        "gladly_wfm_last_success_timestamp_seconds",
        lambda e: '"poll"' in e and "600" in e,
    ),
    "the webhook off": ("gladly_wfm_webhook_enabled", lambda e: "== 0" in e),
    "WFM rejections": ("gladly_wfm_wfm_records_total", lambda e: 'outcome="rejected"' in e),
    "audit drift": ("gladly_wfm_audit_agent_days", lambda e: 'result="drift"' in e),
}
for what, (metric, ok) in wanted.items():
    if not any(ok(r["expr"]) for r in by_metric.get(metric, [])):
        problems.append(f"alerts.yaml: no rule for {what} (on {metric})")

# The dashboard.
dash = json.load(open(f"{ROOT}/deploy/grafana/gladly-wfm.json"))
shown = set()
for p in dash["panels"]:
    for t in p.get("targets", []):
        shown |= metrics_of(t["expr"], f"gladly-wfm.json panel {p['title']!r}")
for m in ("gladly_wfm_cursor_timestamp_seconds", "gladly_wfm_event_to_wfm_seconds_bucket",
          "gladly_wfm_events_total", "gladly_wfm_wfm_records_total",
          "gladly_wfm_audit_agent_days"):
    if m not in shown:
        problems.append(f"gladly-wfm.json: no panel shows {m}")

# The follow Deployment and the pipeline it reads.
dep = yaml.safe_load(open(f"{ROOT}/deploy/kubernetes/follow-acme.yaml"))
tpl = dep["spec"]["template"]
ann = tpl["metadata"].get("annotations", {})
c = tpl["spec"]["containers"][0]
ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"),
                    ("startupProbe", "/healthz")):
    get = c.get(probe, {}).get("httpGet", {})
    if get.get("path") != path:
        problems.append(f"follow-acme.yaml: {probe} is not an HTTP GET of {path}")
    elif get.get("port") not in ports and get.get("port") not in ports.values():
        problems.append(f"follow-acme.yaml: {probe} port {get.get('port')} is not a container port")
if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/path") != "/metrics":
    problems.append("follow-acme.yaml: no prometheus.io scrape annotations for /metrics")
if str(ann.get("prometheus.io/port")) not in {str(p) for p in ports.values()}:
    problems.append("follow-acme.yaml: prometheus.io/port is not a container port")
config = [d for d in yaml.safe_load_all(open(f"{ROOT}/deploy/kubernetes/cronjob-acme.yaml"))
          if d and d["kind"] == "ConfigMap"][0]
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(json.dumps({"pipeline": config["data"]["pipeline.toml"],
                  "ports": sorted(set(ports.values()))}))
