//! The Gladly simulator: the REST API of `spec/gladly-api.md` over real HTTP, with Gladly's
//! auth, rate limits, 24-hour Events window, CSV reports and their quirks, and injected faults.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use serde::Serialize;
use serde_json::{json, Value};

use super::faults::{Fault, FaultInjector, FaultRates, SlidingWindow};
use super::generator::{Entity, Event, World, WorldConfig};
use super::webhooks::{self, DeliveryAttempt, Webhook, WebhookSettings, Webhooks};
use crate::summary::{self, Aggregation, MAX_HALF_HOURLY_DAYS, SUMMARY_COLUMNS};
use crate::time::{self, Ms};
use chrono::NaiveDate;

/// The work-session report's columns, in order, as the spec lists them (gladly-api.md §5). The
/// simulator keeps its own list: the client's decoder has another, so a mistake in either is
/// a disagreement the tests see, not one mirrored by the oracle.
pub const WORK_SESSION_COLUMNS: [&str; 19] = [
    "id",
    "contact_session_id",
    "contact_session_created_at",
    "customer_id",
    "conversation_id",
    "inbox_id",
    "channel",
    "direction",
    "agent_accepted_at",
    "contact_session_routed_at",
    "agent_id",
    "sla_fulfilled_at",
    "contact_session_ended_at",
    "status",
    "within_sla",
    "work_session_handle_time_sec",
    "work_session_after_contact_time_sec",
    "work_session_unknown_time_sec",
    "accepted_inbox_id",
];

#[derive(Clone, Debug)]
pub struct GladlySimConfig {
    pub world: WorldConfig,
    pub user: String,
    pub token: String,
    /// A user Gladly knows whose account lacks the API User permission (answers 403).
    pub forbidden_user: String,
    pub rps: usize,
    pub reports_per_minute: usize,
    pub reports_in_flight: usize,
    /// Reports lag: events recorded in the last N minutes are not in a report yet.
    pub report_lag_minutes: i64,
    pub faults: FaultRates,
    /// How long a `slow` fault holds the answer.
    pub slow_ms: u64,
    /// A live clock: the world's time runs this many times as fast as real time from
    /// `world.now` (0: it stands still at `world.now`, or follows the real clock without one).
    pub speed: f64,
    /// Every timestamps report is followed by this many bytes of copies of its last row: an
    /// oversized answer (0 = none).
    pub report_padding_bytes: u64,
    /// Every Events API answer is followed by this many bytes of copies of its last line (0 =
    /// none).
    pub events_padding_bytes: u64,
    /// Injected faults hit the Reports API only (dimensions and events answer normally).
    pub faults_only_reports: bool,
    /// `AgentSummaryV2` answers this status instead of its rows (200: an empty body), for
    /// testing a summary Gladly does not serve; `None`: served normally.
    pub summary_status: Option<u16>,
    /// Webhook retry intervals (+30 s, +5 min, +30 min, +1 h on the simulator's clock) are
    /// multiplied by this (1.0 = the spec's; 0.001 makes them 30 ms to 3.6 s).
    pub webhook_retry_scale: f64,
    /// The share of webhook deliveries silently never sent (0–1, seeded per webhook and event).
    pub webhook_drop: f64,
    /// The share of webhook deliveries sent twice (0–1, seeded per webhook and event).
    pub webhook_repeat: f64,
    /// Each delivery is held back a seeded 0 to this many milliseconds of the simulator's clock
    /// after its event (0 = none): later events can then arrive first.
    pub webhook_delay_ms: u64,
    /// A webhook receiver that has not answered within this many real milliseconds has failed
    /// the attempt (the spec's 15 s).
    pub webhook_timeout_ms: u64,
    /// Accept `http://` webhook URLs too (Gladly and the default accept `https://` only).
    pub webhook_allow_http: bool,
    /// Extra roots (PEM) the webhook client trusts besides the built-in web PKI roots.
    pub webhook_root_certs: Vec<Vec<u8>>,
}

impl GladlySimConfig {
    pub fn new(world: WorldConfig) -> GladlySimConfig {
        GladlySimConfig {
            world,
            user: "sim@example.com".into(),
            token: "sim-token".into(),
            forbidden_user: "viewer@example.com".into(),
            rps: 10,
            reports_per_minute: 10,
            reports_in_flight: 2,
            report_lag_minutes: 60,
            faults: FaultRates::default(),
            slow_ms: 5_000,
            speed: 0.0,
            report_padding_bytes: 0,
            events_padding_bytes: 0,
            faults_only_reports: false,
            summary_status: None,
            webhook_retry_scale: 1.0,
            webhook_drop: 0.0,
            webhook_repeat: 0.0,
            webhook_delay_ms: 0,
            webhook_timeout_ms: 15_000,
            webhook_allow_http: false,
            webhook_root_certs: Vec::new(),
        }
    }

    fn webhook_settings(&self) -> WebhookSettings {
        WebhookSettings {
            seed: self.world.seed,
            retry_scale: self.webhook_retry_scale,
            drop: self.webhook_drop,
            repeat: self.webhook_repeat,
            delay_ms: self.webhook_delay_ms,
            timeout_ms: self.webhook_timeout_ms,
            allow_http: self.webhook_allow_http,
            root_certs: self.webhook_root_certs.clone(),
        }
    }
}

/// One line of the request log that tests read to see which API served which day.
#[derive(Clone, Debug, Serialize)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: String,
    /// The body was dropped from the log to bound its memory (the WFM simulator's
    /// `log_body_bytes`); the request itself was served.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub body_dropped: bool,
    pub status: u16,
    /// How long the server took to answer, in milliseconds.
    #[serde(default)]
    pub ms: u64,
    /// The fault injected into a 200 answer's body (`cut`, `close`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<&'static str>,
}

/// Marks an answer whose body a fault cut, for the request log.
#[derive(Clone, Copy)]
struct BodyFault(&'static str);

pub struct GladlySim {
    pub world: World,
    cfg: GladlySimConfig,
    per_method: Mutex<std::collections::HashMap<String, Arc<SlidingWindow>>>,
    reports_window: SlidingWindow,
    reports_in_flight: AtomicUsize,
    faults: FaultInjector,
    log: Mutex<Vec<LoggedRequest>>,
    /// Agents taken off `/agents` at run time (deactivated in Gladly), by id.
    removed: Mutex<std::collections::HashSet<String>>,
    pub(crate) webhooks: Webhooks,
}

impl GladlySim {
    pub fn new(cfg: GladlySimConfig) -> Arc<GladlySim> {
        Arc::new(GladlySim {
            world: World::new(cfg.world.clone()).with_speed(cfg.speed),
            reports_window: SlidingWindow::new(cfg.reports_per_minute, Duration::from_secs(60)),
            reports_in_flight: AtomicUsize::new(0),
            faults: FaultInjector::new(cfg.faults.clone(), cfg.world.seed),
            per_method: Mutex::new(Default::default()),
            log: Mutex::new(Vec::new()),
            removed: Mutex::new(Default::default()),
            webhooks: Webhooks::new(cfg.webhook_settings()),
            cfg,
        })
    }

    /// Takes an agent off `/agents` (as deactivating a user in Gladly does), or puts it back.
    pub fn set_agent_listed(&self, agent_id: &str, listed: bool) {
        let mut r = self.removed.lock().unwrap();
        if listed {
            r.remove(agent_id);
        } else {
            r.insert(agent_id.to_string());
        }
    }

    fn listed(&self, a: &super::generator::Agent) -> bool {
        a.listed && !self.removed.lock().unwrap().contains(&a.id)
    }

    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.log.lock().unwrap().clone()
    }

    /// The organisation's webhooks as stored, credentials and headers included.
    pub fn webhooks(&self) -> Vec<Webhook> {
        self.webhooks.all()
    }

    pub fn webhook(&self, id: &str) -> Option<Webhook> {
        self.webhooks.all().into_iter().find(|h| h.id == id)
    }

    /// Every webhook delivery attempt (PINGs included) and every dropped delivery, in order.
    pub fn webhook_deliveries(&self) -> Vec<DeliveryAttempt> {
        self.webhooks.log()
    }

    /// Switches an enabled webhook off as Gladly does after a delivery's fifth failed attempt
    /// (`disabledAtDueToRetryLimit` = now); false if it is unknown or already off.
    pub fn switch_off_webhook(&self, id: &str) -> bool {
        self.webhooks.switch_off(id, None, self.world.now())
    }

    /// Starts serving on `addr` (port 0 picks a free port); returns the bound address.
    pub async fn serve(self: &Arc<Self>, addr: &str) -> std::io::Result<SocketAddr> {
        super::serve(
            addr,
            Router::new().fallback(handle).with_state(self.clone()),
            Arc::default(),
        )
        .await
    }

    /// Writes the ground truth: agents (listed or not), inboxes, every visible event and work
    /// session, so tests compute their expectations independently of the pipeline.
    pub fn dump(&self, dir: &std::path::Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let w = &self.world;
        let agents: Vec<Value> = w
            .agents
            .iter()
            .map(|a| json!({"id": a.id, "name": a.name, "emailAddress": a.email, "listed": a.listed}))
            .collect();
        std::fs::write(dir.join("agents.json"), serde_json::to_vec_pretty(&agents)?)?;
        let inboxes: Vec<Value> = w
            .inboxes
            .iter()
            .map(|i| json!({"id": i.id, "name": i.name, "disabled": i.disabled}))
            .collect();
        std::fs::write(
            dir.join("inboxes.json"),
            serde_json::to_vec_pretty(&inboxes)?,
        )?;
        let (first, last) = w.day_range();
        let from = time::day_start(w.tz(), first);
        let to = time::day_end(w.tz(), last) + time::MS_PER_DAY;
        let all = [
            Entity::AgentStatus,
            Entity::AgentAvailability,
            Entity::Conversation,
            Entity::Contact,
        ];
        let mut events = String::new();
        for e in w.events_between(from, to, &all) {
            events.push_str(&e.canonical);
            events.push('\n');
        }
        std::fs::write(dir.join("events.jsonl"), events)?;
        let mut sessions = String::new();
        for (ws, ended) in w.work_sessions_between(from, to) {
            let v = json!({
                "id": ws.id, "contact_session_id": ws.contact_session_id,
                "contact_session_created_at": time::fmt_ts(ws.created_at),
                "inbox_id": ws.inbox_id, "channel": ws.channel, "agent_id": ws.agent_id,
                "agent_accepted_at": ws.agent_accepted_at.map(time::fmt_ts),
                "contact_session_ended_at": time::fmt_ts(ws.ended_at), "ended": ended,
                "within_sla": ws.within_sla, "work_session_handle_time_sec": ws.handle_time_sec,
                "work_session_after_contact_time_sec": ws.after_contact_time_sec,
            });
            sessions.push_str(&v.to_string());
            sessions.push('\n');
        }
        std::fs::write(dir.join("work_sessions.jsonl"), sessions)?;
        Ok(())
    }

    fn method_window(&self, method: &str) -> Arc<SlidingWindow> {
        self.per_method
            .lock()
            .unwrap()
            .entry(method.to_string())
            .or_insert_with(|| Arc::new(SlidingWindow::new(self.cfg.rps, Duration::from_secs(1))))
            .clone()
    }

    fn record(&self, r: LoggedRequest) {
        self.log.lock().unwrap().push(r);
    }
}

fn errors(status: StatusCode, attr: &str, code: &str, detail: &str) -> Response {
    let body = json!({"errors": [{"attr": attr, "code": code, "detail": detail}]});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

enum Auth {
    Ok,
    Unauthorized,
    Forbidden,
}

fn check_auth(sim: &GladlySim, headers: &HeaderMap) -> Auth {
    let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Auth::Unauthorized;
    };
    let Some(b64) = v.strip_prefix("Basic ") else {
        return Auth::Unauthorized;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return Auth::Unauthorized;
    };
    let raw = String::from_utf8_lossy(&raw);
    let Some((user, token)) = raw.split_once(':') else {
        return Auth::Unauthorized;
    };
    if token != sim.cfg.token {
        return Auth::Unauthorized;
    }
    if user == sim.cfg.user {
        Auth::Ok
    } else if user == sim.cfg.forbidden_user {
        Auth::Forbidden
    } else {
        Auth::Unauthorized
    }
}

async fn handle(State(sim): State<Arc<GladlySim>>, req: Request) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    if path == "/_sim/requests" {
        return axum::Json(sim.requests()).into_response();
    }
    if path == "/_sim/webhooks" {
        return axum::Json(sim.webhooks()).into_response();
    }
    if path == "/_sim/webhook-deliveries" {
        return axum::Json(sim.webhook_deliveries()).into_response();
    }
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let body_text = String::from_utf8_lossy(&body).to_string();
    let is_report = path.starts_with("/api/v1/reports");
    let (resp, remaining) = answer(&sim, &method, &path, &query, &headers, &body, is_report).await;
    let status = resp.status().as_u16();
    let fault = resp.extensions().get::<BodyFault>().map(|f| f.0);
    sim.record(LoggedRequest {
        method: method.as_str().into(),
        path: path.clone(),
        query: query.clone(),
        body: body_text,
        body_dropped: false,
        status,
        ms: started.elapsed().as_millis() as u64,
        fault,
    });
    let mut resp = resp;
    let h = resp.headers_mut();
    h.insert("Ratelimit-Limit-Second", sim.cfg.rps.into());
    h.insert("Ratelimit-Remaining-Second", remaining.into());
    resp
}

#[allow(clippy::too_many_arguments)]
async fn answer(
    sim: &Arc<GladlySim>,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &Bytes,
    is_report: bool,
) -> (Response, usize) {
    match check_auth(sim, headers) {
        Auth::Ok => {}
        Auth::Unauthorized => {
            return (
                errors(
                    StatusCode::UNAUTHORIZED,
                    "",
                    "unauthorized",
                    "Invalid credentials",
                ),
                sim.cfg.rps,
            )
        }
        Auth::Forbidden => {
            return (
                errors(
                    StatusCode::FORBIDDEN,
                    "",
                    "forbidden",
                    "User lacks the API User permission",
                ),
                sim.cfg.rps,
            )
        }
    }
    let (admitted, remaining) = sim.method_window(method.as_str()).try_admit();
    if !admitted {
        return (
            errors(
                StatusCode::TOO_MANY_REQUESTS,
                "",
                "rate_limited",
                "Too many requests",
            ),
            0,
        );
    }
    // Reports: at most N per minute and M at once across the organisation.
    let _in_flight = if is_report {
        let now_in_flight = sim.reports_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let guard = InFlight(sim.clone());
        if now_in_flight > sim.cfg.reports_in_flight {
            return (
                errors(
                    StatusCode::TOO_MANY_REQUESTS,
                    "",
                    "rate_limited",
                    "Too many reports in flight",
                ),
                remaining,
            );
        }
        if !sim.reports_window.try_admit().0 {
            return (
                errors(
                    StatusCode::TOO_MANY_REQUESTS,
                    "",
                    "rate_limited",
                    "Too many report requests this minute",
                ),
                remaining,
            );
        }
        Some(guard)
    } else {
        None
    };
    let fault = if sim.cfg.faults_only_reports && !is_report {
        Fault::None
    } else {
        sim.faults.draw_for(&format!(
            "{method} {path}?{query} {}",
            String::from_utf8_lossy(body)
        ))
    };
    match fault {
        Fault::ServerError => {
            return (
                errors(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "",
                    "internal",
                    "Internal error",
                ),
                remaining,
            )
        }
        Fault::TooMany => {
            return (
                errors(
                    StatusCode::TOO_MANY_REQUESTS,
                    "",
                    "rate_limited",
                    "Too many requests",
                ),
                remaining,
            )
        }
        Fault::Slow => tokio::time::sleep(Duration::from_millis(sim.cfg.slow_ms)).await,
        _ => {}
    }
    // Webhook calls PING the receiver during the call: async, on the async workers.
    if path == "/api/v1/webhooks" || path.starts_with("/api/v1/webhooks/") {
        return (webhooks::answer(sim, method, path, body).await, remaining);
    }
    // Generating a day is CPU work: off the async workers, so arriving requests are admitted
    // (and timed against the rate limits) the moment they arrive, as at the real Gladly.
    let (sim2, method2, path2, query2, body2) = (
        sim.clone(),
        method.clone(),
        path.to_string(),
        query.to_string(),
        body.clone(),
    );
    let resp = tokio::task::spawn_blocking(move || route(&sim2, &method2, &path2, &query2, &body2))
        .await
        .unwrap_or_else(|_| {
            errors(
                StatusCode::INTERNAL_SERVER_ERROR,
                "",
                "internal",
                "Internal error",
            )
        });
    if fault == Fault::Cut && resp.status() == StatusCode::OK {
        return (cut_body(resp).await, remaining);
    }
    if fault == Fault::Close && resp.status() == StatusCode::OK {
        return (close_mid_line(resp).await, remaining);
    }
    (resp, remaining)
}

struct InFlight(Arc<GladlySim>);
impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.reports_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Sends the first part of a body, then breaks the connection, as a proxy dying mid-answer does.
async fn cut_body(resp: Response) -> Response {
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    if bytes.len() < 4 {
        return Response::from_parts(parts, Body::from(bytes));
    }
    let head = bytes.slice(..bytes.len() / 2 + 1);
    let stream = futures_util::stream::iter(vec![
        Ok::<Bytes, std::io::Error>(head),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "cut",
        )),
    ]);
    let mut parts = parts;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.extensions.insert(BodyFault("cut"));
    Response::from_parts(parts, Body::from_stream(stream))
}

/// Sends the body up to the middle of a line as an HTTP/1.0 answer without a length, then closes
/// the connection: the body ends where the connection does, so the HTTP layer sees a whole answer
/// (a proxy dying mid-answer on a close-delimited response). Bodies of one line or less pass.
async fn close_mid_line(resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let mut at = bytes.len() / 2;
    while at > 0 && at < bytes.len() && (bytes[at - 1] == b'\n' || bytes[at] == b'\n') {
        at += 1;
    }
    if at == 0 || at >= bytes.len() {
        return Response::from_parts(parts, Body::from(bytes));
    }
    let head = bytes.slice(..at);
    parts.version = axum::http::Version::HTTP_10;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    parts.extensions.insert(BodyFault("close"));
    let stream = futures_util::stream::iter(vec![Ok::<Bytes, std::io::Error>(head)]);
    Response::from_parts(parts, Body::from_stream(stream))
}

fn route(sim: &GladlySim, method: &Method, path: &str, query: &str, body: &[u8]) -> Response {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let w = &sim.world;
    let extra = w.cfg.quirks.unknown_fields;
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["api", "v1", "agents"]) => json_ok(Value::Array(
            w.agents.iter().filter(|a| sim.listed(a)).map(|a| agent_json(a, extra)).collect(),
        )),
        ("GET", ["api", "v1", "agents", id]) => match w.agents.iter().find(|a| sim.listed(a) && a.id == *id) {
            Some(a) => json_ok(agent_json(a, extra)),
            None => not_found(),
        },
        ("GET", ["api", "v1", "inboxes"]) => json_ok(Value::Array(
            w.inboxes.iter().map(|i| json!({"id": i.id, "name": i.name, "disabled": i.disabled})).collect(),
        )),
        ("GET", ["api", "v1", "inboxes", id]) => match w.inboxes.iter().find(|i| i.id == *id) {
            Some(i) => json_ok(json!({"id": i.id, "name": i.name, "disabled": i.disabled})),
            None => not_found(),
        },
        ("GET", ["api", "v1", "teams"]) => json_ok(Value::Array(
            w.teams.iter().map(|t| json!({"id": t.id, "name": t.name, "description": "", "agentIds": t.agent_ids})).collect(),
        )),
        ("GET", ["api", "v1", "teams", id]) => match w.teams.iter().find(|t| t.id == *id) {
            Some(t) => json_ok(json!({"id": t.id, "name": t.name, "description": "", "agentIds": t.agent_ids})),
            None => not_found(),
        },
        ("GET", ["api", "v1", "organization"]) => json_ok(json!({
            "id": w.org_id, "loginDomain": "sim", "name": "Simulated Contact Centre",
            "timezone": w.tz().name(), "gladlyUrl": "https://sim.gladly.qa",
        })),
        ("GET", ["api", "v1", "events"]) => events(sim, query),
        ("POST", ["api", "v1", "reports"]) => report(sim, body),
        ("POST", ["api", "v1", "reports", "work-session-events"]) => work_sessions(sim, body),
        _ => not_found(),
    }
}

fn agent_json(a: &super::generator::Agent, extra: bool) -> Value {
    let mut v = json!({"id": a.id, "name": a.name, "emailAddress": a.email});
    if extra {
        v["pronouns"] = json!("they/them");
    }
    v
}

fn json_ok(v: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn not_found() -> Response {
    // Gladly's 404s come in three shapes; the simulator uses the bare one.
    StatusCode::NOT_FOUND.into_response()
}

fn events(sim: &GladlySim, query: &str) -> Response {
    let mut start = None;
    let mut end = None;
    let mut entities = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "startAt" => start = Some(v.to_string()),
            "endAt" => end = Some(v.to_string()),
            "entities" => match Entity::parse(&v) {
                Some(e) => entities.push(e),
                None if ["CUSTOMER", "CUSTOMER_PROFILE", "PAYMENT_REQUEST", "TASK"]
                    .contains(&v.as_ref()) => {}
                None => {
                    return errors(
                        StatusCode::BAD_REQUEST,
                        "entities",
                        "invalid",
                        &format!("unknown entity {v}"),
                    )
                }
            },
            _ => {}
        }
    }
    let now = sim.world.now();
    let Some(start) = start else {
        return errors(
            StatusCode::BAD_REQUEST,
            "startAt",
            "blank",
            "startAt is required",
        );
    };
    let Some(start) = time::parse_ts(&start) else {
        return errors(
            StatusCode::BAD_REQUEST,
            "startAt",
            "invalid",
            "startAt is not a timestamp",
        );
    };
    if start < now - time::MS_PER_DAY {
        return errors(
            StatusCode::BAD_REQUEST,
            "startAt",
            "invalid",
            "startAt must be within the last 24 hours",
        );
    }
    let end = match end {
        None => now,
        Some(e) => match time::parse_ts(&e) {
            Some(e) => e,
            None => {
                return errors(
                    StatusCode::BAD_REQUEST,
                    "endAt",
                    "invalid",
                    "endAt is not a timestamp",
                )
            }
        },
    };
    if end <= start {
        return errors(
            StatusCode::BAD_REQUEST,
            "startAt",
            "invalid",
            "endAt must occur after startAt",
        );
    }
    if entities.is_empty() {
        return errors(
            StatusCode::BAD_REQUEST,
            "entities",
            "blank",
            "entities is required",
        );
    }
    let evs = sim.world.events_between(start, end, &entities);
    let mut out = String::with_capacity(evs.len() * 300);
    let malformed = sim.world.cfg.quirks.malformed;
    for (i, e) in evs.iter().enumerate() {
        out.push_str(&e.line);
        out.push('\n');
        if malformed && i % 100 == 99 {
            out.push_str("{\"id\":\"broken\",\"type\":\"AGENT_STATUS/LOG\n");
        }
    }
    let headers = [(header::CONTENT_TYPE, "application/x-jsonlines")];
    if sim.cfg.events_padding_bytes > 0 && !out.is_empty() {
        let body = padded(out.into_bytes(), sim.cfg.events_padding_bytes);
        return (StatusCode::OK, headers, body).into_response();
    }
    (StatusCode::OK, headers, out).into_response()
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReportRequest {
    metric_set: String,
    timezone: Option<String>,
    start_at: String,
    end_at: String,
    #[serde(default)]
    filters: Value,
    /// `AgentSummaryV2` only (required there); other metric sets ignore it.
    aggregation_level: Option<String>,
}

/// A request Gladly refuses with 400: the attribute at fault, and why.
struct BadRequest(&'static str, String);

impl BadRequest {
    fn answer(self) -> Response {
        errors(StatusCode::BAD_REQUEST, self.0, "invalid", &self.1)
    }
}

/// A report request checked: its body, timezone and (inclusive) dates, or why it is a 400.
fn report_request(
    sim: &GladlySim,
    body: &[u8],
) -> Result<(ReportRequest, chrono_tz::Tz, NaiveDate, NaiveDate), BadRequest> {
    let bad = |attr: &'static str, detail: &str| BadRequest(attr, detail.to_string());
    let req: ReportRequest =
        serde_json::from_slice(body).map_err(|e| bad("body", &e.to_string()))?;
    let tz = match &req.timezone {
        None => sim.world.tz(),
        Some(name) => time::parse_tz(name).ok_or_else(|| bad("timezone", "unknown timezone"))?,
    };
    let (Some(from), Some(to)) = (
        time::parse_date(&req.start_at),
        time::parse_date(&req.end_at),
    ) else {
        return Err(bad("startAt", "startAt and endAt must be dates"));
    };
    if to < from {
        return Err(bad("endAt", "endAt must not be before startAt"));
    }
    if req.filters.as_object().is_some_and(|m| !m.is_empty()) {
        return Err(bad("filters", "unknown filter"));
    }
    Ok((req, tz, from, to))
}

fn report(sim: &GladlySim, body: &[u8]) -> Response {
    let (req, tz, from, to) = match report_request(sim, body) {
        Ok(r) => r,
        Err(bad) => return bad.answer(),
    };
    let start = time::day_start(tz, from);
    // Reports lag: the newest events are not in them yet.
    let known_until = sim.world.now() - sim.cfg.report_lag_minutes * 60_000;
    let end = time::day_end(tz, to).min(known_until);
    let q = &sim.world.cfg.quirks;
    let rows = match req.metric_set.as_str() {
        "AgentTimestampsReport" => {
            let evs = sim.world.events_between(
                start,
                end,
                &[Entity::AgentStatus, Entity::AgentAvailability],
            );
            agent_csv(sim, tz, &evs)
        }
        "ConversationTimestampsReport" => {
            let evs = sim
                .world
                .events_between(start, end, &[Entity::Conversation]);
            conversation_csv(sim, tz, &evs)
        }
        "AgentSummaryV2" if sim.cfg.summary_status.is_some() => {
            let code = sim.cfg.summary_status.unwrap_or(200);
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if status == StatusCode::OK {
                return (StatusCode::OK, "").into_response();
            }
            return errors(status, "metricSet", "unavailable", "summary not served");
        }
        "AgentSummaryV2" => {
            let level = req.aggregation_level.as_deref();
            match summary_csv(sim, tz, (from, to), level, known_until) {
                Ok(rows) => rows,
                Err(bad) => return bad.answer(),
            }
        }
        _ => {
            return errors(
                StatusCode::BAD_REQUEST,
                "metricSet",
                "invalid",
                "unknown metricSet",
            )
        }
    };
    let rows = if q.timezone_filter {
        rows.map(|r| with_timezone_filter(&r, tz))
    } else {
        rows
    };
    csv_response(rows, q, &req.metric_set, sim.cfg.report_padding_bytes)
}

/// `AgentSummaryV2` as CSV (no body for no rows), from the world's ground truth known by
/// `known_until` (`summary`), or the 400 for a missing or unknown `aggregationLevel` and for a
/// half-hourly range longer than a month.
fn summary_csv(
    sim: &GladlySim,
    tz: chrono_tz::Tz,
    (from, to): (NaiveDate, NaiveDate),
    level: Option<&str>,
    known_until: Ms,
) -> Result<Option<Vec<u8>>, BadRequest> {
    let bad = |detail: &str| BadRequest("aggregationLevel", detail.to_string());
    let Some(agg) = level.and_then(Aggregation::parse) else {
        return Err(bad("aggregationLevel must be daily or halfHourly"));
    };
    if agg == Aggregation::HalfHourly && (to - from).num_days() + 1 > MAX_HALF_HOURLY_DAYS {
        return Err(bad("halfHourly serves at most a month"));
    }
    let (buckets, rows) = sim.world.agent_summary(tz, from, to, agg, known_until);
    if rows.is_empty() {
        return Ok(None);
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    let csv_err = |_| bad("unwritable");
    w.write_record(SUMMARY_COLUMNS).map_err(csv_err)?;
    for r in rows {
        let a = &sim.world.agents[r.agent];
        let mut row = vec![
            a.id.clone(),
            a.name.clone(),
            a.email.clone(),
            buckets[r.bucket].label.clone(),
            summary::seconds(r.logged_in_ms),
            summary::seconds(r.active_ms),
        ];
        row.extend(r.counts.iter().map(u32::to_string));
        w.write_record(&row).map_err(csv_err)?;
    }
    Ok(w.into_inner().ok())
}

/// Puts a `Timezone Filter` column (the report's timezone) in front of every row.
fn with_timezone_filter(csv: &[u8], tz: chrono_tz::Tz) -> Vec<u8> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(csv);
    let mut w = csv::Writer::from_writer(Vec::new());
    for (i, rec) in rdr.records().flatten().enumerate() {
        let first = if i == 0 { "Timezone Filter" } else { tz.name() };
        let _ = w.write_record(std::iter::once(first).chain(rec.iter()));
    }
    w.into_inner().unwrap_or_default()
}

/// A report timestamp as the quirks render it: UTC (the plain form), the report timezone's
/// local time with an offset, or without one; they alternate row by row when several are on.
fn report_ts(w: &super::generator::World, tz: chrono_tz::Tz, ms: Ms, salt: u64) -> String {
    let q = &w.cfg.quirks;
    let local = time::to_utc(ms).with_timezone(&tz);
    if q.unreadable_timestamps {
        return local.format("%m/%d/%Y %H:%M:%S").to_string();
    }
    let pick = (ms as u64).wrapping_add(salt);
    let digits = if q.fraction_digits {
        (pick % 10) as usize
    } else {
        3
    };
    let frac = if digits == 0 {
        String::new()
    } else {
        format!(
            ".{}",
            &format!("{:09}", ms.rem_euclid(1000) * 1_000_000)[..digits]
        )
    };
    let mut forms: Vec<String> = Vec::new();
    if q.report_offsets {
        let fmt = if pick % 4 < 2 { "%:z" } else { "%z" };
        forms.push(format!(
            "{}{frac}{}",
            local.format("%Y-%m-%dT%H:%M:%S"),
            local.format(fmt)
        ));
    }
    if q.report_local_time {
        let fmt = if pick.is_multiple_of(3) {
            "%Y-%m-%d %H:%M:%S"
        } else {
            "%Y-%m-%dT%H:%M:%S"
        };
        forms.push(format!("{}{frac}", local.format(fmt)));
    }
    if forms.is_empty() {
        return w.ts(ms, salt);
    }
    let n = forms.len();
    forms.swap_remove((pick / 7) as usize % n)
}

fn csv_response(
    rows: Option<Vec<u8>>,
    q: &super::generator::Quirks,
    name: &str,
    padding: u64,
) -> Response {
    // An empty window is an empty body: no header at all.
    let mut out = Vec::new();
    if let Some(mut rows) = rows {
        if q.malformed {
            rows = short_rows(&rows);
        }
        if q.bom {
            out.extend_from_slice("\u{feff}".as_bytes());
        }
        if q.blank_lines {
            out.extend_from_slice(b"\r\n\n");
        }
        out.extend(rows);
    }
    let headers = [
        (header::CONTENT_TYPE, "text/csv".to_string()),
        (
            header::CONTENT_DISPOSITION,
            format!("attachment; filename={name}.csv"),
        ),
    ];
    if padding > 0 && !out.is_empty() {
        return (StatusCode::OK, headers, padded(out, padding)).into_response();
    }
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename={name}.csv"),
            ),
        ],
        out,
    )
        .into_response()
}

/// Adds a row with only its first cell after every 200th row (the bad-input quirk).
/// The answer followed by `padding` bytes of copies of its last row, streamed as generated so
/// the simulator itself stays small: a server sending a gigabyte.
fn padded(out: Vec<u8>, padding: u64) -> Body {
    let body = String::from_utf8_lossy(&out).to_string();
    let last = body
        .trim_end()
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .to_string();
    let mut chunk = String::new();
    while chunk.len() < 64 * 1024 {
        chunk.push_str(&last);
        chunk.push('\n');
    }
    let chunk = Bytes::from(chunk);
    let n = padding.div_ceil(chunk.len() as u64);
    let head =
        futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(Bytes::from(out)) });
    let tail = futures_util::stream::iter((0..n).map(move |_| Ok(chunk.clone())));
    Body::from_stream(futures_util::StreamExt::chain(head, tail))
}

fn short_rows(csv: &[u8]) -> Vec<u8> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(csv);
    let mut w = csv::WriterBuilder::new()
        .flexible(true)
        .from_writer(Vec::new());
    for (i, rec) in rdr.records().flatten().enumerate() {
        let _ = w.write_record(&rec);
        if i > 0 && i % 200 == 0 {
            let _ = w.write_record([rec.get(0).unwrap_or("")]);
        }
    }
    w.into_inner().unwrap_or_default()
}

fn channels_cell(ch: &Option<Vec<&'static str>>) -> String {
    match ch {
        None => String::new(),
        Some(c) if c.is_empty() => "[ ]".into(),
        Some(c) => format!("[{}]", c.join(", ")),
    }
}

fn agent_csv(sim: &GladlySim, tz: chrono_tz::Tz, evs: &[Event]) -> Option<Vec<u8>> {
    let evs: Vec<&Event> = evs.iter().filter(|e| e.occurred_at.is_some()).collect();
    if evs.is_empty() {
        return None;
    }
    let names: std::collections::HashMap<&str, &str> = sim
        .world
        .agents
        .iter()
        .map(|a| (a.id.as_str(), a.name.as_str()))
        .collect();
    let extra = sim.world.cfg.quirks.unknown_fields;
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec![
        "Timestamp",
        "Occurred At",
        "Agent",
        "Agent ID",
        "Type",
        "Available For",
        "Away Reason",
        "Active Reason",
    ];
    if extra {
        header.insert(3, "Agent Team");
    }
    w.write_record(&header).ok()?;
    for e in evs {
        let agent = e.agent_id.as_deref().unwrap_or("");
        let mut row = vec![
            report_ts(&sim.world, tz, e.timestamp, 1),
            report_ts(&sim.world, tz, e.occurred_at.unwrap_or(e.timestamp), 2),
            names.get(agent).copied().unwrap_or("").to_string(),
            agent.to_string(),
            e.etype.clone(),
            channels_cell(&e.available_for),
            e.away_reason
                .as_ref()
                .map(|r| r.name.clone())
                .unwrap_or_default(),
            e.active_reason
                .as_ref()
                .map(|r| r.name.clone())
                .unwrap_or_default(),
        ];
        if extra {
            row.insert(3, "Team 1".into());
        }
        w.write_record(&row).ok()?;
    }
    w.into_inner().ok()
}

fn conversation_csv(sim: &GladlySim, tz: chrono_tz::Tz, evs: &[Event]) -> Option<Vec<u8>> {
    if evs.is_empty() {
        return None;
    }
    let inboxes = sim.world.inbox_by_id();
    let names: std::collections::HashMap<&str, &str> = sim
        .world
        .agents
        .iter()
        .map(|a| (a.id.as_str(), a.name.as_str()))
        .collect();
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "Timestamp",
        "Event Type",
        "Conversation ID",
        "Customer ID",
        "Initiator Type",
        "Initiator ID",
        "Assigned Inbox ID",
        "Assigned Inbox Name",
        "Assigned Agent ID",
        "Assigned Agent Name",
        "Newly Assigned Inbox ID",
        "Newly Assigned Inbox Name",
        "Newly Assigned Agent ID",
        "Newly Assigned Agent Name",
        "Assignment Update Reason",
    ])
    .ok()?;
    let name_of = |id: &Option<String>| {
        id.as_deref()
            .and_then(|i| names.get(i))
            .copied()
            .unwrap_or("")
            .to_string()
    };
    let inbox_name = |id: &Option<String>| {
        id.as_deref()
            .and_then(|i| inboxes.get(i))
            .map(|i| i.name.clone())
            .unwrap_or_default()
    };
    for e in evs {
        let initiator = e.assignee_agent.clone().or(e.new_agent_id.clone());
        w.write_record([
            report_ts(&sim.world, tz, e.timestamp, 1),
            e.etype.clone(),
            e.conversation_id.clone().unwrap_or_default(),
            e.customer_id.clone().unwrap_or_default(),
            if e.assignee_agent.is_some() {
                "AGENT".into()
            } else {
                "SYSTEM".into()
            },
            initiator.unwrap_or_else(|| "system".into()),
            e.inbox_id.clone().unwrap_or_default(),
            inbox_name(&e.inbox_id),
            e.assignee_agent.clone().unwrap_or_default(),
            name_of(&e.assignee_agent),
            e.new_inbox_id.clone().unwrap_or_default(),
            inbox_name(&e.new_inbox_id),
            e.new_agent_id.clone().unwrap_or_default(),
            name_of(&e.new_agent_id),
            if e.new_agent_id.is_some() {
                "ROUTED".into()
            } else {
                String::new()
            },
        ])
        .ok()?;
    }
    w.into_inner().ok()
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct WorkSessionRequest {
    start_at_time: String,
    end_at_time: String,
}

fn work_sessions(sim: &GladlySim, body: &[u8]) -> Response {
    let req: WorkSessionRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return errors(StatusCode::BAD_REQUEST, "body", "invalid", &e.to_string()),
    };
    let (Some(from), Some(to)) = (
        time::parse_ts(&req.start_at_time),
        time::parse_ts(&req.end_at_time),
    ) else {
        return errors(
            StatusCode::BAD_REQUEST,
            "startAtTime",
            "invalid",
            "startAtTime and endAtTime must be timestamps",
        );
    };
    if to <= from {
        return errors(
            StatusCode::BAD_REQUEST,
            "endAtTime",
            "invalid",
            "endAtTime must occur after startAtTime",
        );
    }
    // Gladly documents `endAtTime` as inclusive and answers up to a minute past it, so
    // consecutive windows overlap by a minute and a row can arrive in both.
    let rows = sim.world.work_sessions_between(from, to + 60_000);
    let q = &sim.world.cfg.quirks;
    if rows.is_empty() {
        return csv_response(None, q, "work-session-events", 0);
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(WORK_SESSION_COLUMNS);
    let ts = |m: Option<Ms>| m.map(|m| sim.world.ts(m, 4)).unwrap_or_default();
    for (ws, ended) in rows {
        let _ = w.write_record([
            if ended { ws.id.clone() } else { String::new() },
            ws.contact_session_id.clone(),
            ts(Some(ws.created_at)),
            ws.customer_id.clone(),
            ws.conversation_id.clone(),
            ws.inbox_id.clone(),
            ws.channel.to_string(),
            "INBOUND".into(),
            ts(ws.agent_accepted_at.filter(|a| *a <= sim.world.now())),
            ts(Some(ws.routed_at)),
            ws.agent_id.clone(),
            ts(ws.sla_fulfilled_at.filter(|a| *a <= sim.world.now())),
            if ended {
                ts(Some(ws.ended_at))
            } else {
                String::new()
            },
            if ended {
                ws.status.to_string()
            } else {
                "IN_PROGRESS".into()
            },
            ws.within_sla.to_string(),
            if ended {
                format!("{:.3}", ws.handle_time_sec)
            } else {
                String::new()
            },
            if ended {
                format!("{:.3}", ws.after_contact_time_sec)
            } else {
                String::new()
            },
            if ended { "0.000".into() } else { String::new() },
            if ws.agent_accepted_at.is_some() {
                ws.inbox_id.clone()
            } else {
                String::new()
            },
        ]);
    }
    csv_response(w.into_inner().ok(), q, "work-session-events", 0)
}
