//! The WFM simulator: the push contract of `spec/wfm-api.md` (client-credentials tokens, the
//! envelope, replace windows, upserts, overlap rejection, idempotency keys, 429 with Retry-After),
//! keeping everything it stored so tests can compare receivers record by record.

use rustc_hash::FxHashMap as HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::faults::{Fault, FaultInjector, FaultRates, SlidingWindow};
use super::gladly::LoggedRequest;
use super::wfm_store::{strict_ts, Change, IndexedStore};
pub use super::wfm_store::{Kind, Store};
use crate::time;

#[derive(Clone, Debug)]
pub struct WfmSimConfig {
    pub client_id: String,
    pub client_secret: String,
    pub token_ttl_secs: u64,
    pub requests_per_30s: usize,
    /// Known integration ids; empty = any id is accepted.
    pub integrations: Vec<String>,
    pub faults: FaultRates,
    pub seed: u64,
    pub slow_ms: u64,
    /// Keep the store in this file across restarts.
    pub dump: Option<PathBuf>,
    /// Request bodies the log keeps, in bytes, newest first: every request stays logged, but
    /// older bodies are dropped past this (a quarter's push is 1.4 GB of bodies, which the
    /// simulator held to the end). Tests read the bodies of small pushes, far below it.
    pub log_body_bytes: usize,
}

/// 256 MiB of request bodies: a few days of a 2,000-agent centre's push.
pub const DEFAULT_LOG_BODY_BYTES: usize = 256 << 20;

impl Default for WfmSimConfig {
    fn default() -> Self {
        WfmSimConfig {
            client_id: "sim-client".into(),
            client_secret: "sim-secret".into(),
            token_ttl_secs: 3600,
            requests_per_30s: 100,
            integrations: Vec::new(),
            faults: FaultRates::default(),
            seed: 1,
            slow_ms: 5_000,
            dump: None,
            log_body_bytes: DEFAULT_LOG_BODY_BYTES,
        }
    }
}

/// A receiver that misbehaves on purpose, switchable while it runs: the client must not trust
/// an answer that does not account for every record, nor take rejections for success.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Misbehave {
    #[default]
    None,
    /// Task pushes are answered `200 {"data":{}}` and store nothing.
    EmptyAnswer,
    /// Every task record is rejected (`code: "rejected"`).
    RejectTasks,
    /// Task pushes are refused whole with 413, as a receiver with a smaller limit would.
    TooLarge,
}

pub struct WfmSim {
    cfg: WfmSimConfig,
    misbehave: Mutex<Misbehave>,
    store: Mutex<IndexedStore>,
    tokens: Mutex<HashMap<String, Instant>>,
    token_counter: AtomicU64,
    windows: Mutex<HashMap<String, Arc<SlidingWindow>>>,
    idempotency: Mutex<HashMap<String, (u16, String)>>,
    faults: FaultInjector,
    log: Mutex<RequestLog>,
    connections: Arc<super::Connections>,
}

/// A request as logged: its body kept as received (copying each into a `String` as it came
/// was a tenth of the simulator's time), until newer bodies push it out (`RequestLog`).
struct Logged {
    method: Method,
    path: String,
    query: String,
    body: Bytes,
    body_dropped: bool,
    status: u16,
}

/// Every request, and the newest bodies up to a byte budget: bodies are dropped oldest first,
/// so the log's memory stays bounded however long the simulator serves.
#[derive(Default)]
struct RequestLog {
    entries: Vec<Logged>,
    body_bytes: usize,
    /// Entries before this one have had their bodies dropped.
    oldest_body: usize,
}

impl RequestLog {
    fn push(&mut self, entry: Logged, budget: usize) {
        self.body_bytes += entry.body.len();
        self.entries.push(entry);
        while self.body_bytes > budget && self.oldest_body < self.entries.len() {
            let e = &mut self.entries[self.oldest_body];
            let body = std::mem::take(&mut e.body);
            e.body_dropped = !body.is_empty();
            self.body_bytes -= body.len();
            self.oldest_body += 1;
        }
    }
}

#[derive(Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Outcome {
    received: usize,
    inserted: usize,
    updated: usize,
    duplicate: usize,
    rejected: usize,
    unknown_users: Vec<String>,
    errors: Vec<Value>,
}

impl WfmSim {
    pub fn new(cfg: WfmSimConfig) -> Arc<WfmSim> {
        let store = cfg
            .dump
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Arc::new(WfmSim {
            faults: FaultInjector::new(cfg.faults.clone(), cfg.seed),
            cfg,
            misbehave: Mutex::new(Misbehave::None),
            store: Mutex::new(IndexedStore::new(store)),
            tokens: Mutex::new(HashMap::default()),
            token_counter: AtomicU64::new(0),
            windows: Mutex::new(HashMap::default()),
            idempotency: Mutex::new(HashMap::default()),
            log: Mutex::new(RequestLog::default()),
            connections: Arc::default(),
        })
    }

    pub async fn serve(self: &Arc<Self>, addr: &str) -> std::io::Result<SocketAddr> {
        super::serve(
            addr,
            Router::new().fallback(handle).with_state(self.clone()),
            self.connections.clone(),
        )
        .await
    }

    /// Returns once every connection to this simulator is closed: after a killed client's
    /// last request has been answered or dropped (`Connections`).
    pub async fn connections_closed(&self) {
        self.connections.all_closed().await
    }

    pub fn store(&self) -> Store {
        self.store.lock().unwrap().store()
    }

    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.log
            .lock()
            .unwrap()
            .entries
            .iter()
            .map(|r| LoggedRequest {
                method: r.method.to_string(),
                path: r.path.clone(),
                query: r.query.clone(),
                body: String::from_utf8_lossy(&r.body).to_string(),
                body_dropped: r.body_dropped,
                status: r.status,
                ms: 0,
                fault: None,
            })
            .collect()
    }

    pub fn set_misbehave(&self, m: Misbehave) {
        *self.misbehave.lock().unwrap() = m;
    }

    fn persist(&self, store: &Store) {
        if let Some(path) = &self.cfg.dump {
            let tmp = path.with_extension("tmp");
            if std::fs::write(&tmp, serde_json::to_vec(store).unwrap_or_default()).is_ok() {
                let _ = std::fs::rename(&tmp, path);
            }
        }
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message}});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn handle(State(sim): State<Arc<WfmSim>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    match path.as_str() {
        "/_sim/store" => return axum::Json(sim.store()).into_response(),
        "/_sim/requests" => return axum::Json(sim.requests()).into_response(),
        _ => {}
    }
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 16 << 20)
        .await
        .unwrap_or_default();
    let resp = answer(&sim, &method, &path, &query, &headers, &body).await;
    sim.log.lock().unwrap().push(
        Logged {
            method,
            path,
            query,
            // A copy of its own size: the body as read may be a slice of a larger receive
            // buffer, which the log would otherwise keep whole.
            body: Bytes::copy_from_slice(&body),
            body_dropped: false,
            status: resp.status().as_u16(),
        },
        sim.cfg.log_body_bytes,
    );
    resp
}

async fn answer(
    sim: &Arc<WfmSim>,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    if method == Method::POST && path == "/api/authority/token" {
        return token(sim, headers, body);
    }
    // Bearer auth for everything else.
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let valid = bearer
        .as_ref()
        .and_then(|t| sim.tokens.lock().unwrap().get(t).copied())
        .is_some_and(|exp| exp > Instant::now());
    if !valid {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "The access token is missing, unknown or expired",
        );
    }
    let window = sim
        .windows
        .lock()
        .unwrap()
        .entry(sim.cfg.client_id.clone())
        .or_insert_with(|| {
            Arc::new(SlidingWindow::new(
                sim.cfg.requests_per_30s,
                Duration::from_secs(30),
            ))
        })
        .clone();
    if !window.try_admit().0 {
        return too_many(window.retry_after_secs());
    }
    match sim.faults.draw() {
        Fault::ServerError => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            )
        }
        Fault::TooMany => return too_many(1),
        Fault::Slow => tokio::time::sleep(Duration::from_millis(sim.cfg.slow_ms)).await,
        _ => {}
    }
    let idem = headers
        .get("Idempotency-Key")
        .and_then(|v| v.to_str().ok())
        .map(|k| format!("{path}|{k}"));
    if let Some(k) = &idem {
        if let Some((status, body)) = sim.idempotency.lock().unwrap().get(k).cloned() {
            return (
                StatusCode::from_u16(status).unwrap(),
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response();
        }
    }
    let kind = match (method.as_str(), path) {
        ("PUT", "/api/organisation/users/integrations") => Kind::Users,
        ("POST", "/api/workactivity/taskdata") => Kind::Tasks,
        ("POST", "/api/workactivity/workstreams") => Kind::Conversations,
        ("POST", "/api/workactivity/workstreams/intervals") => Kind::Intervals,
        ("GET", "/api/workactivity/tasks") => return read_tasks(sim, query),
        _ => return error(StatusCode::NOT_FOUND, "not_found", "No such endpoint"),
    };
    let (status, body) = push(sim, kind, body);
    if let Some(k) = idem {
        if status == StatusCode::OK {
            sim.idempotency
                .lock()
                .unwrap()
                .insert(k, (status.as_u16(), body.clone()));
        }
    }
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn too_many(retry_after: u64) -> Response {
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "Too many requests",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, retry_after.into());
    r
}

fn token(sim: &WfmSim, headers: &HeaderMap, body: &Bytes) -> Response {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .map(|b| String::from_utf8_lossy(&b).to_string());
    let expected = format!("{}:{}", sim.cfg.client_id, sim.cfg.client_secret);
    if basic.as_deref() != Some(expected.as_str()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed",
        );
    }
    let grant_ok =
        form_urlencoded::parse(body).any(|(k, v)| k == "grant_type" && v == "client_credentials");
    if !grant_ok {
        return error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be client_credentials",
        );
    }
    let n = sim.token_counter.fetch_add(1, Ordering::SeqCst);
    let tok = format!("sim.{n}.{}", sim.cfg.seed);
    sim.tokens.lock().unwrap().insert(
        tok.clone(),
        Instant::now() + Duration::from_secs(sim.cfg.token_ttl_secs),
    );
    let body = json!({"data": {"accessToken": tok, "tokenType": "Bearer", "expiresIn": sim.cfg.token_ttl_secs}});
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn push(sim: &WfmSim, kind: Kind, body: &Bytes) -> (StatusCode, String) {
    let bad = |code: &str, msg: &str| {
        (
            StatusCode::BAD_REQUEST,
            json!({"error": {"code": code, "message": msg}}).to_string(),
        )
    };
    let Ok(env) = serde_json::from_slice::<&RawValue>(body) else {
        return bad("malformed", "body is not JSON");
    };
    // The envelope's fields as text: the records are parsed one at a time below, and each is
    // stored as the text it came in (rendering it again was a seventh of the simulator's time).
    let fields: HashMap<String, &RawValue> = serde_json::from_str(env.get()).unwrap_or_default();
    let field = |name: &str| -> Value {
        fields
            .get(name)
            .and_then(|r| serde_json::from_str(r.get()).ok())
            .unwrap_or(Value::Null)
    };
    let integration = field("integrationId");
    let Some(integration) = integration.as_str().filter(|s| !s.is_empty()) else {
        return bad("malformed", "integrationId is required");
    };
    if !sim.cfg.integrations.is_empty() && !sim.cfg.integrations.iter().any(|i| i == integration) {
        return (StatusCode::NOT_FOUND, json!({"error": {"code": "unknown_integration", "message": "integrationId is not known"}}).to_string());
    }
    let data = fields
        .get("data")
        .map(|r| serde_json::from_str::<Vec<&RawValue>>(r.get()));
    let Some(Ok(data)) = data else {
        return bad("malformed", "data must be an array");
    };
    if data.len() > 100 {
        return (StatusCode::PAYLOAD_TOO_LARGE, json!({"error": {"code": "batch_too_large", "message": "at most 100 records per request"}}).to_string());
    }
    let window = match &field("replaceWindow") {
        Value::Null => None,
        w => match (strict_ts(&w["start"]), strict_ts(&w["end"])) {
            (Ok(Some(s)), Ok(Some(e))) => {
                if e <= s || e - s > 31 * time::MS_PER_DAY {
                    return (StatusCode::UNPROCESSABLE_ENTITY, json!({"error": {"code": "invalid_window", "message": "replaceWindow must be non-empty and at most 31 days"}}).to_string());
                }
                Some((s, e))
            }
            _ => {
                return bad(
                    "invalid_time",
                    "replaceWindow needs start and end as UTC timestamps",
                )
            }
        },
    };
    let misbehave = *sim.misbehave.lock().unwrap();
    if kind == Kind::Tasks && misbehave == Misbehave::EmptyAnswer {
        return (StatusCode::OK, json!({"data": {}}).to_string());
    }
    if kind == Kind::Tasks && misbehave == Misbehave::TooLarge {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": {"code": "batch_too_large", "message": "request too large"}})
                .to_string(),
        );
    }
    let mut store = sim.store.lock().unwrap();
    if let Some((s, e)) = window {
        if kind != Kind::Users {
            store.delete_window(kind, integration, s, e);
        }
    }
    let mut out = Outcome {
        received: data.len(),
        ..Default::default()
    };
    for (index, text) in data.into_iter().enumerate() {
        let rec: Value = serde_json::from_str(text.get()).expect("a JSON value, checked above");
        if kind == Kind::Tasks && misbehave == Misbehave::RejectTasks {
            out.rejected += 1;
            out.errors.push(json!({"index": index, "code": "rejected", "message": "rejected by the simulator (misbehave mode)"}));
            continue;
        }
        match validate(kind, &rec) {
            Err((code, msg)) => {
                out.rejected += 1;
                out.errors
                    .push(json!({"index": index, "code": code, "message": msg}));
                continue;
            }
            Ok(key) => {
                if kind == Kind::Tasks {
                    if let Err(msg) = store.check_overlap(integration, &key, &rec) {
                        out.rejected += 1;
                        out.errors
                            .push(json!({"index": index, "code": "overlap", "message": msg}));
                        continue;
                    }
                    let email = rec["userEmail"].as_str().map(|e| e.trim().to_lowercase());
                    let unknown = match &email {
                        Some(e) => !store.has_user(e),
                        None => true,
                    };
                    if unknown {
                        let who = email.unwrap_or_else(|| {
                            rec["userIdentifier"].as_str().unwrap_or("").to_string()
                        });
                        if !out.unknown_users.contains(&who) {
                            out.unknown_users.push(who);
                        }
                    }
                }
                match store.upsert(kind, key, integration, &rec, text.get()) {
                    Change::Inserted => out.inserted += 1,
                    Change::Updated => out.updated += 1,
                    Change::Duplicate => out.duplicate += 1,
                }
            }
        }
    }
    if sim.cfg.dump.is_some() {
        sim.persist(&store.store());
    }
    (StatusCode::OK, json!({"data": out}).to_string())
}

/// Checks one record's fields; returns its key.
fn validate(kind: Kind, rec: &Value) -> Result<String, (&'static str, String)> {
    let need = |f: &str| -> Result<String, (&'static str, String)> {
        rec[f]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or(("missing_field", format!("{f} is required")))
    };
    let ts = |f: &str| {
        strict_ts(&rec[f]).map_err(|_| {
            (
                "invalid_time",
                format!("{f} must be a UTC timestamp with Z"),
            )
        })
    };
    match kind {
        Kind::Users => Ok(need("email")?.trim().to_lowercase()),
        Kind::Tasks => {
            let key = need("eventId")?;
            need("userIdentifier")?;
            let start =
                ts("startTime")?.ok_or(("missing_field", "startTime is required".to_string()))?;
            if let Some(end) = ts("endTime")? {
                if end < start {
                    return Err(("invalid_time", "endTime before startTime".into()));
                }
            }
            Ok(key)
        }
        Kind::Conversations => {
            let key = need("externalId")?;
            ts("dayStart")?.ok_or(("missing_field", "dayStart is required".to_string()))?;
            ts("createdAt")?;
            ts("closedAt")?;
            Ok(key)
        }
        Kind::Intervals => {
            // A null workstream is an unmatched inbox's volume, kept and listed as such.
            let ws = match &rec["workstream"] {
                Value::Null => String::new(),
                _ => need("workstream")?,
            };
            let ch = need("channel")?;
            let start = ts("intervalStart")?
                .ok_or(("missing_field", "intervalStart is required".to_string()))?;
            let minutes = rec["intervalMinutes"].as_i64().unwrap_or(0);
            if minutes != 15 && minutes != 30 {
                return Err((
                    "invalid_interval",
                    "intervalMinutes must be 15 or 30".into(),
                ));
            }
            if start % (minutes * 60_000) != 0 {
                return Err((
                    "invalid_interval",
                    "intervalStart is not aligned to intervalMinutes".into(),
                ));
            }
            Ok(format!("{ws}|{ch}|{}", time::fmt_ts(start)))
        }
    }
}

fn read_tasks(sim: &WfmSim, query: &str) -> Response {
    let mut from = i64::MIN;
    let mut to = i64::MAX;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let t = time::parse_ts(&v);
        match (k.as_ref(), t) {
            ("taskStartTimeFrom", Some(t)) => from = t,
            ("taskStartTimeTo", Some(t)) => to = t,
            ("taskStartTimeFrom" | "taskStartTimeTo", None) => {
                return error(StatusCode::BAD_REQUEST, "invalid_time", "bad timestamp")
            }
            _ => {}
        }
    }
    let tasks = sim.store.lock().unwrap().tasks_starting(from, to);
    axum::Json(json!({"data": tasks})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize) -> Logged {
        Logged {
            method: Method::POST,
            path: format!("/r{n}"),
            query: String::new(),
            body: Bytes::from(vec![b'x'; 10 * n]),
            body_dropped: false,
            status: 200,
        }
    }

    /// Every request stays listed; bodies are dropped oldest first once the newest ones pass
    /// the budget, and an empty body is not reported as dropped.
    #[test]
    fn the_log_keeps_every_request_and_the_newest_bodies_within_its_budget() {
        let mut log = RequestLog::default();
        for n in 0..=10 {
            log.push(entry(n), 150);
        }
        assert_eq!(log.entries.len(), 11);
        let kept: Vec<usize> = log.entries.iter().map(|e| e.body.len()).collect();
        // 100 + 90 > 150: only the newest body (100 bytes) and nothing older fits with it.
        assert_eq!(kept, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 100]);
        assert_eq!(log.body_bytes, 100);
        assert!(!log.entries[0].body_dropped, "request 0 had no body");
        assert!(log.entries[1..10].iter().all(|e| e.body_dropped));
        assert_eq!(log.entries[5].path, "/r5");
        let mut roomy = RequestLog::default();
        for n in 0..=10 {
            roomy.push(entry(n), 1_000);
        }
        assert!(roomy.entries.iter().all(|e| !e.body_dropped));
        assert_eq!(roomy.body_bytes, 550);
    }
}
