"""Reads a /metrics page on stdin with an independent parser (prometheus_client's, for the
Prometheus text format 0.0.4), checks every family of DESIGN §13 (name, type, label names, the
fixed label values at least present) and prints the samples as JSON for tests/service.rs:
{"sample_name{label=value,...}": value}. Exits 1 naming what is wrong.

`.ci/run` installs prometheus_client (pinned)."""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families

# name (as the parser names it: a counter without `_total`), type, label names, fixed values.
TABLE = {
    "gladly_wfm_build_info": ("gauge", {"version"}, {}),
    "gladly_wfm_events": (
        "counter",
        {"source", "entity"},
        {"source": {"events_api", "webhook", "report"}, "entity": {"agent", "conversation"}},
    ),
    "gladly_wfm_set_aside": ("counter", {"reason"}, {}),
    "gladly_wfm_webhook_deliveries": (
        "counter",
        {"outcome"},
        {"outcome": {"accepted", "duplicate", "ping", "set_aside", "unauthorized", "refused"}},
    ),
    "gladly_wfm_webhook_enabled": ("gauge", set(), {}),
    # Beyond DESIGN §13: times follow switched its webhook on again (Gladly had switched it off).
    "gladly_wfm_webhook_switched_on": ("counter", set(), {}),
    "gladly_wfm_http_requests": ("counter", {"api", "code"}, {"api": {"gladly", "wfm"}}),
    "gladly_wfm_http_retries": ("counter", {"api"}, {"api": {"gladly", "wfm"}}),
    "gladly_wfm_wfm_records": (
        "counter",
        {"kind", "outcome"},
        {
            "kind": {"users", "tasks", "conversations", "intervals"},
            "outcome": {"inserted", "updated", "duplicate", "rejected"},
        },
    ),
    "gladly_wfm_cursor_timestamp_seconds": ("gauge", set(), {}),
    "gladly_wfm_last_event_timestamp_seconds": (
        "gauge",
        {"entity"},
        {"entity": {"agent", "conversation"}},
    ),
    "gladly_wfm_event_to_wfm_seconds": ("histogram", {"path"}, {"path": {"webhook", "poll"}}),
    "gladly_wfm_poll_duration_seconds": ("histogram", set(), {}),
    "gladly_wfm_last_success_timestamp_seconds": (
        "gauge",
        {"job"},
        {"job": {"poll", "push", "reconcile", "run"}},
    ),
    "gladly_wfm_audit_agent_days": ("gauge", {"result"}, {"result": {"within", "drift"}}),
}

# Label values that would identify a person or a record have no place in any label.
FORBIDDEN = ("@", "agent_id", "email")


def main():
    text = sys.stdin.read()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    problems = []
    for name, (typ, labels, fixed) in TABLE.items():
        f = families.get(name)
        if f is None:
            problems.append(f"{name}: not on the page")
            continue
        if f.type != typ:
            problems.append(f"{name}: type {f.type}, not {typ}")
        if not f.samples:
            problems.append(f"{name}: no sample")
        seen = {}
        for s in f.samples:
            names = set(s.labels) - ({"le"} if typ == "histogram" else set())
            if names != labels:
                problems.append(f"{s.name}: labels {sorted(names)}, not {sorted(labels)}")
            for k, v in s.labels.items():
                seen.setdefault(k, set()).add(v)
                if any(x in v for x in FORBIDDEN):
                    problems.append(f"{s.name}: label {k}={v!r} looks like a person or an id")
        for k, values in fixed.items():
            missing = values - seen.get(k, set())
            extra = seen.get(k, set()) - values
            if missing:
                problems.append(f"{name}: {k} values missing: {sorted(missing)}")
            if extra:
                problems.append(f"{name}: {k} values outside the set: {sorted(extra)}")
    unknown = set(families) - set(TABLE)
    if unknown:
        problems.append(f"families not in DESIGN §13: {sorted(unknown)}")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    out = {}
    for f in families.values():
        for s in f.samples:
            key = s.name + "{" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) + "}"
            out[key] = s.value
    print(json.dumps(out))


if __name__ == "__main__":
    main()
