"""Checks deploy/ against DESIGN §13 (run by tests/deploy.rs; needs PyYAML, which .ci/run
installs): the alert rules parse, each names only the metrics of §13 and the five failures that
matter each have one; the Grafana dashboard parses and names only §13 metrics; the follow
Deployment has its probes on /healthz and /readyz and the scrape annotations on the port the
pipeline's `[service] listen` names; its pipeline's `[webhook]` (§12) listens on the container
port `webhook`, which a Service and the Ingress example expose for `public_url`'s host and path
alone, with the credentials from a Secret. Prints the ConfigMap's pipeline.toml and the ports the
probes and the scrape use on stdout (the Rust side parses the pipeline with the product's own
parser). Exits 1 naming every problem."""

import json
import re
import sys
import tomllib
from urllib.parse import urlsplit

import yaml

ROOT = sys.argv[1]

METRICS = {
    "gladly_wfm_build_info",
    "gladly_wfm_events_total",
    "gladly_wfm_set_aside_total",
    "gladly_wfm_webhook_deliveries_total",
    "gladly_wfm_webhook_enabled",
    # Not in DESIGN §13's table (yet): follow found its webhook switched off by Gladly and
    # switched it on again (src/telemetry.rs).
    "gladly_wfm_webhook_switched_on_total",
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
    # Beyond §13's list: the webhook receiver refusing deliveries for want of credentials.
    "unauthorized webhook deliveries": (
        "gladly_wfm_webhook_deliveries_total",
        lambda e: 'outcome="unauthorized"' in e,
    ),
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
docs = [d for d in yaml.safe_load_all(open(f"{ROOT}/deploy/kubernetes/follow-acme.yaml")) if d]
kinds = {}
for d in docs:
    kinds.setdefault(d["kind"], []).append(d)
dep = kinds["Deployment"][0]
if dep["spec"].get("replicas") != 1 or dep["spec"].get("strategy", {}).get("type") != "Recreate":
    problems.append("follow-acme.yaml: follow never overlaps itself: replicas 1, strategy Recreate")
tpl = dep["spec"]["template"]
ann = tpl["metadata"].get("annotations", {})
c = tpl["spec"]["containers"][0]
ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}


def port_number(port):
    """A probe's or a Service's target port (a name or a number) as a container port number."""
    if port in ports:
        return ports[port]
    return port if port in ports.values() else None


used = set()  # the ports the probes and the scrape annotation use
for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"),
                    ("startupProbe", "/healthz")):
    get = c.get(probe, {}).get("httpGet", {})
    if get.get("path") != path:
        problems.append(f"follow-acme.yaml: {probe} is not an HTTP GET of {path}")
    elif port_number(get.get("port")) is None:
        problems.append(f"follow-acme.yaml: {probe} port {get.get('port')} is not a container port")
    else:
        used.add(port_number(get.get("port")))
if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/path") != "/metrics":
    problems.append("follow-acme.yaml: no prometheus.io scrape annotations for /metrics")
if str(ann.get("prometheus.io/port")) not in {str(p) for p in ports.values()}:
    problems.append("follow-acme.yaml: prometheus.io/port is not a container port")
else:
    used.add(int(ann["prometheus.io/port"]))
# The pipeline file: the ConfigMap the Deployment mounts (cronjob-acme.yaml's, shared).
maps = {d["metadata"]["name"]: d for f in ("cronjob-acme.yaml", "follow-acme.yaml")
        for d in yaml.safe_load_all(open(f"{ROOT}/deploy/kubernetes/{f}"))
        if d and d["kind"] == "ConfigMap"}
mounted = [v["configMap"]["name"] for v in tpl["spec"].get("volumes", []) if "configMap" in v]
config = maps[mounted[0]]
pipeline = tomllib.loads(config["data"]["pipeline.toml"])

# The webhook (§12): [webhook] listen is the container port `webhook`; a Service targets it; the
# Ingress routes public_url's host and exact path, and nothing else, to that Service; the Basic
# credentials are ${VAR}s the container gets from a Secret, never a literal value.
hook = pipeline.get("webhook")
if not hook:
    problems.append("follow-acme.yaml: the pipeline it mounts has no [webhook] table")
    hook = {"listen": ":0", "public_url": "", "user": "", "password": ""}
listen_port = int(hook["listen"].rsplit(":", 1)[1])
if not hook["listen"].startswith("0.0.0.0:"):
    problems.append(f"pipeline.toml: [webhook] listen {hook['listen']} is not reachable from the Service")
if ports.get("webhook") != listen_port:
    problems.append(f"follow-acme.yaml: no container port named `webhook` = [webhook] listen's {listen_port}")
if listen_port in used:
    problems.append("follow-acme.yaml: the probes or the scrape use the webhook's port")
url = urlsplit(hook["public_url"])
if url.scheme != "https" or not url.hostname or not url.path:
    problems.append(f"pipeline.toml: [webhook] public_url {hook['public_url']!r} is not an https URL with a path")
services = {}  # name → the Service's ports that reach the webhook's
for svc in kinds.get("Service", []):
    sel = svc["spec"].get("selector", {})
    if not sel or any(tpl["metadata"]["labels"].get(k) != v for k, v in sel.items()):
        continue
    to_hook = [sp for sp in svc["spec"].get("ports", [])
               if port_number(sp.get("targetPort", sp["port"])) == listen_port]
    if to_hook:
        services[svc["metadata"]["name"]] = to_hook
        if not svc["spec"].get("publishNotReadyAddresses"):
            problems.append(f"follow-acme.yaml: Service {svc['metadata']['name']}: publishNotReadyAddresses must be true (deliveries while /readyz fails)")
if not services:
    problems.append(f"follow-acme.yaml: no Service selects the follow pods and targets the webhook port {listen_port}")


def to_webhook(backend):
    """Whether an Ingress backend is a Service port that reaches the webhook's."""
    svc = backend.get("service", {})
    want = svc.get("port", {})
    return any(sp.get("name") == want["name"] if "name" in want else sp["port"] == want.get("number")
               for sp in services.get(svc.get("name"), []))


routes = []  # (host, path, pathType) of every Ingress rule path to the webhook
for ing in kinds.get("Ingress", []):
    spec = ing["spec"]
    if spec.get("defaultBackend"):
        problems.append(f"follow-acme.yaml: Ingress {ing['metadata']['name']} has a defaultBackend: only public_url's path is exposed")
    tls_hosts = {h for t in spec.get("tls", []) for h in t.get("hosts", []) if t.get("secretName")}
    for rule in spec.get("rules", []):
        for path in rule.get("http", {}).get("paths", []):
            if not to_webhook(path.get("backend", {})):
                problems.append(f"follow-acme.yaml: Ingress {ing['metadata']['name']} routes {path.get('path')} elsewhere than the webhook Service")
                continue
            routes.append((rule.get("host"), path.get("path"), path.get("pathType")))
            if rule.get("host") not in tls_hosts:
                problems.append(f"follow-acme.yaml: Ingress {ing['metadata']['name']}: no TLS (with a secretName) for {rule.get('host')}")
# Exact, or Prefix (then the receiver answers 404 below the path); never ImplementationSpecific.
if [(h, p) for h, p, t in routes if t in ("Exact", "Prefix")] != [(url.hostname, url.path)]:
    problems.append(f"follow-acme.yaml: the Ingress must route public_url's host and path ({url.hostname} {url.path}, pathType Exact) to the webhook Service, and nothing else: {routes}")
env = {e["name"]: e for e in c.get("env", [])}
from_secret = any("secretRef" in e for e in c.get("envFrom", []))
for key in ("user", "password"):
    var = re.fullmatch(r"\$\{(\w+)\}", str(hook[key]))
    if not var:
        problems.append(f"pipeline.toml: [webhook] {key} is not a ${{VAR}}: credentials come from the environment")
        continue
    e = env.get(var[1])
    if e is None and not from_secret:
        problems.append(f"follow-acme.yaml: nothing sets {var[1]} ([webhook] {key})")
    elif e is not None and "secretKeyRef" not in e.get("valueFrom", {}):
        problems.append(f"follow-acme.yaml: {var[1]} ([webhook] {key}) is not from a Secret (secretKeyRef)")

if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(json.dumps({"pipeline": config["data"]["pipeline.toml"], "ports": sorted(used)}))
