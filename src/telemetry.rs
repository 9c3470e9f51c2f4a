//! The metrics of DESIGN §13: one process-wide registry, every family registered at once (label
//! values that form a fixed set created at 0, so every family and series is on the first
//! scrape), and small typed functions that record. The places that count for the run manifest
//! and the log lines (http.rs `Stats`, the landing of events, the WFM's answers, follow's poll)
//! call these, so a metric and its log line come from one place.
//!
//! Names, types and labels are an interface (dashboards and alerts depend on them): the table
//! in DESIGN §13, checked by tests/service.rs with an independent parser. No label carries an
//! agent, an e-mail or an id: every label value is one of a fixed set, or an HTTP status.

use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `source` of `gladly_wfm_events_total`.
pub const SOURCES: [&str; 3] = ["events_api", "webhook", "report"];
/// `entity` of `gladly_wfm_events_total` and `gladly_wfm_last_event_timestamp_seconds`.
pub const ENTITIES: [&str; 2] = ["agent", "conversation"];
/// `reason` of `gladly_wfm_set_aside_total`: a value that could not be read, an event type
/// the pipeline does not know, a row recorded outside the day it was asked for, an
/// authenticated webhook delivery that could not be used.
pub const SET_ASIDE_REASONS: [&str; 4] = [
    "unreadable",
    "unknown_type",
    "outside_day",
    "webhook_unusable",
];
/// `outcome` of `gladly_wfm_webhook_deliveries_total`.
pub const DELIVERY_OUTCOMES: [&str; 6] = [
    "accepted",
    "duplicate",
    "ping",
    "set_aside",
    "unauthorized",
    "refused",
];
/// `api` of the HTTP families.
pub const APIS: [&str; 2] = ["gladly", "wfm"];
/// `kind` of `gladly_wfm_wfm_records_total`.
pub const KINDS: [&str; 4] = ["users", "tasks", "conversations", "intervals"];
/// `outcome` of `gladly_wfm_wfm_records_total`.
pub const RECORD_OUTCOMES: [&str; 4] = ["inserted", "updated", "duplicate", "rejected"];
/// `path` of `gladly_wfm_event_to_wfm_seconds`.
pub const PATHS: [&str; 2] = ["webhook", "poll"];
/// `job` of `gladly_wfm_last_success_timestamp_seconds`.
pub const JOBS: [&str; 4] = ["poll", "push", "reconcile", "run"];
/// `result` of `gladly_wfm_audit_agent_days`.
pub const AUDIT_RESULTS: [&str; 2] = ["within", "drift"];

type L1 = [(&'static str, &'static str); 1];
type L2 = [(&'static str, &'static str); 2];
type FGauge = Gauge<f64, AtomicU64>;

/// Event → WFM acknowledgement: seconds (the goal is p95 ≤ 5 s with the webhook, a poll
/// interval and a bit without).
const LATENCY_BUCKETS: [f64; 12] = [
    0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];
/// One poll: tens of milliseconds when nothing happened, seconds with a busy day.
const POLL_BUCKETS: [f64; 12] = [
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

pub struct Metrics {
    registry: Registry,
    events: Family<L2, Counter>,
    set_aside: Family<L1, Counter>,
    webhook_deliveries: Family<L1, Counter>,
    webhook_enabled: Gauge,
    webhook_switched_on: Counter,
    http_requests: Family<[(&'static str, String); 2], Counter>,
    http_retries: Family<L1, Counter>,
    wfm_records: Family<L2, Counter>,
    cursor: FGauge,
    last_event: Family<L1, FGauge>,
    event_to_wfm: Family<L1, Histogram, fn() -> Histogram>,
    poll_duration: Histogram,
    last_success: Family<L1, FGauge>,
    audit: Family<L1, Gauge>,
}

impl Metrics {
    /// Every family, registered; the series of the fixed label sets created at 0.
    fn new() -> Metrics {
        let mut r = Registry::default();
        let build = Family::<L1, Gauge>::default();
        build
            .get_or_create(&[("version", env!("CARGO_PKG_VERSION"))])
            .set(1);
        r.register("gladly_wfm_build_info", "The binary (always 1)", build);
        let m = Metrics::unregistered();
        m.create_fixed_series();
        m.register(&mut r);
        Metrics { registry: r, ..m }
    }

    /// The families, empty, beside an empty registry.
    fn unregistered() -> Metrics {
        Metrics {
            registry: Registry::default(),
            events: Family::default(),
            set_aside: Family::default(),
            webhook_deliveries: Family::default(),
            webhook_enabled: Gauge::default(),
            webhook_switched_on: Counter::default(),
            http_requests: Family::default(),
            http_retries: Family::default(),
            wfm_records: Family::default(),
            cursor: FGauge::default(),
            last_event: Family::default(),
            event_to_wfm: Family::new_with_constructor(latency_histogram),
            poll_duration: Histogram::new(POLL_BUCKETS),
            last_success: Family::default(),
            audit: Family::default(),
        }
    }

    /// Creates every series whose label values form a fixed set, at 0, so that every family
    /// and series is on the first scrape.
    fn create_fixed_series(&self) {
        for s in SOURCES {
            for e in ENTITIES {
                let _ = self.events.get_or_create(&[("source", s), ("entity", e)]);
            }
        }
        for r in SET_ASIDE_REASONS {
            let _ = self.set_aside.get_or_create(&[("reason", r)]);
        }
        for o in DELIVERY_OUTCOMES {
            let _ = self.webhook_deliveries.get_or_create(&[("outcome", o)]);
        }
        for a in APIS {
            let _ = self.http_retries.get_or_create(&[("api", a)]);
            // `code` is not a fixed set, but the family must be on the first page: the
            // requests that got no answer start it, at 0.
            let _ = self
                .http_requests
                .get_or_create(&[("api", a.to_string()), ("code", "error".to_string())]);
        }
        for k in KINDS {
            for o in RECORD_OUTCOMES {
                let _ = self
                    .wfm_records
                    .get_or_create(&[("kind", k), ("outcome", o)]);
            }
        }
        for e in ENTITIES {
            let _ = self.last_event.get_or_create(&[("entity", e)]);
        }
        for p in PATHS {
            let _ = self.event_to_wfm.get_or_create(&[("path", p)]);
        }
        for j in JOBS {
            let _ = self.last_success.get_or_create(&[("job", j)]);
        }
        for a in AUDIT_RESULTS {
            let _ = self.audit.get_or_create(&[("result", a)]);
        }
    }

    /// Registers the families in `r` (each a handle on the same series), in the exposition's
    /// order.
    fn register(&self, r: &mut Registry) {
        r.register(
            "gladly_wfm_events",
            "Events landed or taken in, after deduplication",
            self.events.clone(),
        );
        r.register(
            "gladly_wfm_set_aside",
            "Rows, events and deliveries set aside",
            self.set_aside.clone(),
        );
        r.register(
            "gladly_wfm_webhook_deliveries",
            "What the webhook receiver answered",
            self.webhook_deliveries.clone(),
        );
        r.register(
            "gladly_wfm_webhook_enabled",
            "1 while Gladly's webhook for this pipeline is on",
            self.webhook_enabled.clone(),
        );
        r.register(
            "gladly_wfm_webhook_switched_on",
            "Times follow found its webhook off in Gladly (switched off after failed deliveries, or disabled) and switched it on again",
            self.webhook_switched_on.clone(),
        );
        r.register(
            "gladly_wfm_http_requests",
            "Requests made, by API and status (or error)",
            self.http_requests.clone(),
        );
        r.register(
            "gladly_wfm_http_retries",
            "Retries, by API",
            self.http_retries.clone(),
        );
        r.register(
            "gladly_wfm_wfm_records",
            "The WFM's answers, per record",
            self.wfm_records.clone(),
        );
        r.register(
            "gladly_wfm_cursor_timestamp_seconds",
            "The Events API cursor (Unix time)",
            self.cursor.clone(),
        );
        r.register(
            "gladly_wfm_last_event_timestamp_seconds",
            "The newest event taken in (Unix time)",
            self.last_event.clone(),
        );
        r.register(
            "gladly_wfm_event_to_wfm_seconds",
            "Event timestamp to WFM acknowledgement",
            self.event_to_wfm.clone(),
        );
        r.register(
            "gladly_wfm_poll_duration_seconds",
            "One poll, start to checkpoint",
            self.poll_duration.clone(),
        );
        r.register(
            "gladly_wfm_last_success_timestamp_seconds",
            "When each job last succeeded (Unix time)",
            self.last_success.clone(),
        );
        r.register(
            "gladly_wfm_audit_agent_days",
            "Agent-days of the newest audited day, within tolerance or drifting",
            self.audit.clone(),
        );
    }
}

fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

/// Registers every family (a no-op after the first call): the server calls it before it
/// listens, so the first scrape has them all.
pub fn init() {
    metrics();
}

/// The exposition: Prometheus text format 0.0.4.
pub fn encode() -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &metrics().registry);
    out
}

/// The `Content-Type` of `encode`'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A label value of a fixed set, or nothing (a caller's typo must not grow a family).
fn known(set: &[&'static str], v: &str) -> Option<&'static str> {
    let hit = set.iter().find(|s| **s == v).copied();
    debug_assert!(hit.is_some(), "label value {v:?} is not one of {set:?}");
    hit
}

fn unix_seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// New events landed in the raw zone (or taken in from the webhook), after deduplication;
/// `newest` is the newest `timestamp` among them (Unix ms).
pub fn events_landed(source: &str, entity: &str, n: u64, newest: Option<i64>) {
    let (Some(s), Some(e)) = (known(&SOURCES, source), known(&ENTITIES, entity)) else {
        return;
    };
    let m = metrics();
    if n > 0 {
        m.events
            .get_or_create(&[("source", s), ("entity", e)])
            .inc_by(n);
    }
    if let Some(t) = newest {
        let g = m.last_event.get_or_create(&[("entity", e)]);
        let t = unix_seconds(t);
        if t > g.get() {
            g.set(t);
        }
    }
}

/// Rows, events or deliveries set aside.
pub fn set_aside(reason: &str, n: u64) {
    if let (Some(r), true) = (known(&SET_ASIDE_REASONS, reason), n > 0) {
        metrics()
            .set_aside
            .get_or_create(&[("reason", r)])
            .inc_by(n);
    }
}

/// What the webhook receiver answered one delivery.
pub fn webhook_delivery(outcome: &str) {
    if let Some(o) = known(&DELIVERY_OUTCOMES, outcome) {
        metrics()
            .webhook_deliveries
            .get_or_create(&[("outcome", o)])
            .inc();
    }
}

/// Whether Gladly's webhook for this pipeline is on.
pub fn webhook_enabled(on: bool) {
    metrics().webhook_enabled.set(on as i64);
}

/// `follow` switched its webhook on again.
pub fn webhook_switched_on_again() {
    metrics().webhook_switched_on.inc();
}

/// One request answered (`Some(status)`) or not (`None`: no answer, `code="error"`).
pub fn http_request(api: &str, status: Option<u16>) {
    if let Some(a) = known(&APIS, api) {
        let code = status.map_or_else(|| "error".to_string(), |s| s.to_string());
        metrics()
            .http_requests
            .get_or_create(&[("api", a.to_string()), ("code", code)])
            .inc();
    }
}

/// One retry.
pub fn http_retry(api: &str) {
    if let Some(a) = known(&APIS, api) {
        metrics().http_retries.get_or_create(&[("api", a)]).inc();
    }
}

/// The WFM's answer to one batch of `kind`.
pub fn wfm_answer(kind: &str, inserted: u64, updated: u64, duplicate: u64, rejected: u64) {
    let Some(k) = known(&KINDS, kind) else {
        return;
    };
    let m = metrics();
    for (o, n) in RECORD_OUTCOMES
        .iter()
        .zip([inserted, updated, duplicate, rejected])
    {
        if n > 0 {
            m.wfm_records
                .get_or_create(&[("kind", k), ("outcome", o)])
                .inc_by(n);
        }
    }
}

/// The Events API cursor (Unix ms).
pub fn cursor(ms: i64) {
    metrics().cursor.set(unix_seconds(ms));
}

/// The cursor a follower resumes from (Unix ms), if it has one: shown before its first poll.
pub fn resumed(cursor_ms: Option<i64>) {
    if let Some(c) = cursor_ms {
        cursor(c);
    }
}

/// Event → WFM acknowledgement, in ms, of each status change pushed.
pub fn event_to_wfm(path: &str, latencies_ms: &[i64]) {
    if let Some(p) = known(&PATHS, path) {
        let h = metrics().event_to_wfm.get_or_create(&[("path", p)]);
        for l in latencies_ms {
            h.observe(*l as f64 / 1000.0);
        }
    }
}

/// One poll, start to checkpoint.
pub fn poll_duration(d: std::time::Duration) {
    metrics().poll_duration.observe(d.as_secs_f64());
}

/// `job` succeeded now.
pub fn last_success(job: &str) {
    if let Some(j) = known(&JOBS, job) {
        metrics()
            .last_success
            .get_or_create(&[("job", j)])
            .set(unix_seconds(crate::time::now_ms()));
    }
}

/// The newest audited day: agent-days within tolerance and drifting.
pub fn audit(within: u64, drift: u64) {
    let m = metrics();
    m.audit
        .get_or_create(&[("result", "within")])
        .set(within as i64);
    m.audit
        .get_or_create(&[("result", "drift")])
        .set(drift as i64);
}

/// A successful poll of `follow`: how long it took, the cursor it moved to, and the event →
/// WFM latencies of the status changes it pushed.
pub fn polled(took: std::time::Duration, cursor_ms: Option<i64>, latencies_ms: &[i64]) {
    poll_duration(took);
    if let Some(c) = cursor_ms {
        cursor(c);
    }
    event_to_wfm("poll", latencies_ms);
    last_success("poll");
}

/// The metrics' kind of a WFM push path.
pub fn kind_of_path(path: &str) -> Option<&'static str> {
    use crate::load::push;
    match path {
        push::USERS_PATH => Some("users"),
        push::TASKS_PATH => Some("tasks"),
        push::CONVERSATIONS_PATH => Some("conversations"),
        push::INTERVALS_PATH => Some("intervals"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_on_the_first_page_with_its_type() {
        let page = encode();
        for (name, kind) in [
            ("gladly_wfm_build_info", "gauge"),
            ("gladly_wfm_events_total", "counter"),
            ("gladly_wfm_set_aside_total", "counter"),
            ("gladly_wfm_webhook_deliveries_total", "counter"),
            ("gladly_wfm_webhook_enabled", "gauge"),
            ("gladly_wfm_webhook_switched_on_total", "counter"),
            ("gladly_wfm_http_requests_total", "counter"),
            ("gladly_wfm_http_retries_total", "counter"),
            ("gladly_wfm_wfm_records_total", "counter"),
            ("gladly_wfm_cursor_timestamp_seconds", "gauge"),
            ("gladly_wfm_last_event_timestamp_seconds", "gauge"),
            ("gladly_wfm_event_to_wfm_seconds", "histogram"),
            ("gladly_wfm_poll_duration_seconds", "histogram"),
            ("gladly_wfm_last_success_timestamp_seconds", "gauge"),
            ("gladly_wfm_audit_agent_days", "gauge"),
        ] {
            assert!(
                page.contains(&format!("# TYPE {name} {kind}\n")),
                "{name} {kind}:\n{page}"
            );
        }
        assert!(
            page.contains(r#"gladly_wfm_events_total{source="webhook",entity="conversation"} 0"#)
        );
        assert!(
            page.contains(r#"gladly_wfm_event_to_wfm_seconds_bucket{path="poll",le="+Inf"} 0"#)
                || page.contains(r#"gladly_wfm_event_to_wfm_seconds_count{path="poll"}"#)
        );
    }

    #[test]
    fn wfm_answers_and_requests_count_by_label() {
        wfm_answer("intervals", 2, 0, 1, 0);
        http_request("wfm", Some(207));
        http_request("wfm", None);
        let page = encode();
        assert!(
            page.contains(r#"gladly_wfm_wfm_records_total{kind="intervals",outcome="inserted"} 2"#),
            "{page}"
        );
        assert!(page.contains(r#"gladly_wfm_http_requests_total{api="wfm",code="207"} 1"#));
        assert!(page.contains(r#"gladly_wfm_http_requests_total{api="wfm",code="error"} 1"#));
    }
}
