//! Gladly's webhooks in the simulator (spec `gladly-api.md` §6): the management API
//! (`/api/v1/webhooks`), the PING sent during a create, an enable or a URL change, one POST per
//! event as the world's clock reaches it, retries at +30 s, +5 min, +30 min and +1 h on that
//! clock (scaled by `webhook_retry_scale`), the webhook switched off when the fifth attempt
//! fails, and seeded quirks that drop, repeat and delay deliveries.
//!
//! Invariants:
//! - A delivery belongs to one *generation* of its webhook (bumped whenever it is switched on):
//!   it is attempted only while the webhook exists, is enabled and is still of that generation,
//!   so nothing is delivered while a webhook is off and nothing missed is replayed after.
//! - A webhook's first attempts go out one at a time in event order (one dispatcher task per
//!   generation); retries and delayed deliveries run beside them, so they arrive out of order.
//! - Every attempt (PINGs included) and every dropped delivery is in the log, in the order made.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{json, Value};

use crate::generator::{Entity, Event};
use crate::gladly::GladlySim;
use crate::rng::Rng;
use crate::time::{self, Ms};

/// The waits before the 2nd, 3rd, 4th and 5th attempts, after the start of the previous one
/// (simulated milliseconds, before `webhook_retry_scale`).
pub const RETRY_INTERVALS_MS: [Ms; 4] = [30_000, 5 * 60_000, 30 * 60_000, 60 * 60_000];
/// Attempts per delivery: when the last fails, the webhook is switched off.
pub const ATTEMPTS: u32 = 5;
/// Webhooks an organisation may have.
pub const MAX_WEBHOOKS: usize = 20;
pub const MAX_NAME_CHARS: usize = 200;
/// Event type families a webhook may subscribe to (`events` entries are whole type names).
pub const EVENT_FAMILIES: [&str; 12] = [
    "AGENT_STATUS/",
    "AGENT_AVAILABILITY/",
    "CONVERSATION/",
    "CONVERSATION_ASSIGNEE/",
    "CONVERSATION_STATUS/",
    "CONVERSATION_NOTE/",
    "CONTACT/",
    "CUSTOMER/",
    "EXPORT_JOB/",
    "TASK/",
    "PAYMENT_REQUEST/",
    "CUSTOMER_PROFILE/",
];
/// How often a dispatcher looks for newly due events (real time).
const TICK: Duration = Duration::from_millis(25);
/// The longest one sleep towards a due time (real time), so a changed clock is noticed.
const MAX_SLEEP: Duration = Duration::from_millis(500);

/// The webhook settings of `GladlySimConfig`, copied at start.
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    pub seed: u64,
    pub retry_scale: f64,
    pub drop: f64,
    pub repeat: f64,
    pub delay_ms: u64,
    pub timeout_ms: u64,
    pub allow_http: bool,
    pub root_certs: Vec<Vec<u8>>,
}

/// The Basic credentials a webhook sends (write-only in the API).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
}

/// A webhook as the simulator stores it, write-only fields included.
#[derive(Clone, Debug, Serialize)]
pub struct Webhook {
    pub id: String,
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    pub enabled: bool,
    pub created_at: Ms,
    pub updated_at: Ms,
    pub credentials: Option<Credentials>,
    pub headers: BTreeMap<String, String>,
    /// When Gladly last switched it off after a delivery's fifth failed attempt; kept when it is
    /// switched on again.
    pub disabled_at_due_to_retry_limit: Option<Ms>,
    /// When it was last switched on: only events from then on are delivered.
    pub enabled_since: Option<Ms>,
    /// Bumped at every switch-on; deliveries of an older generation are abandoned.
    pub generation: u64,
}

impl Webhook {
    /// The API's rendering: `credentials` and `headers` are never returned.
    pub fn api_json(&self) -> Value {
        let mut v = json!({
            "id": self.id, "name": self.name, "url": self.url, "events": self.events,
            "enabled": self.enabled, "createdAt": time::fmt_ts(self.created_at),
            "updatedAt": time::fmt_ts(self.updated_at),
            "hasCredentials": self.credentials.is_some(),
            "headerKeys": self.headers.keys().collect::<Vec<_>>(),
        });
        if let Some(t) = self.disabled_at_due_to_retry_limit {
            v["disabledAtDueToRetryLimit"] = json!(time::fmt_ts(t));
        }
        v
    }
}

/// One attempt to deliver an event (or a PING), or a delivery the drop quirk swallowed.
#[derive(Clone, Debug, Serialize)]
pub struct DeliveryAttempt {
    pub webhook_id: String,
    pub event_id: String,
    /// The event's type, or `PING`.
    pub event_type: String,
    /// 1 to 5; 0 for a dropped delivery (nothing was sent).
    pub attempt: u32,
    /// 0 for the delivery, 1 for the second copy the repeat quirk sends.
    pub copy: u32,
    pub url: String,
    /// When the attempt started, on the simulator's clock.
    pub at: Ms,
    /// The receiver's status, when it answered.
    pub status: Option<u16>,
    /// Why there was no answer (timeout, connection refused, TLS refused…).
    pub error: Option<String>,
    pub dropped: bool,
}

impl DeliveryAttempt {
    /// Answered 2xx.
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// What the quirks do to one event's delivery to one webhook: a pure function of the seed, the
/// webhook id and the event id, so a run is reproducible however deliveries interleave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub drop: bool,
    pub repeat: bool,
    /// Held back this long after the event (simulated milliseconds).
    pub delay_ms: Ms,
}

impl Plan {
    pub fn draw(s: &WebhookSettings, webhook_id: &str, event_id: &str) -> Plan {
        let mut r = Rng::derive(s.seed, &["webhook-quirks", webhook_id, event_id]);
        // Three draws always, so switching one quirk on leaves the others' choices alone.
        let (d, p, x) = (r.f64(), r.f64(), r.f64());
        Plan {
            drop: d < s.drop,
            repeat: p < s.repeat,
            delay_ms: (x * (s.delay_ms as f64 + 1.0)).floor() as Ms,
        }
    }
}

/// The wait before attempt `next` (2–5) after the previous one started, scaled.
pub fn retry_wait(s: &WebhookSettings, next: u32) -> Ms {
    let base = RETRY_INTERVALS_MS[(next.clamp(2, ATTEMPTS) - 2) as usize];
    (base as f64 * s.retry_scale.max(0.0)).round() as Ms
}

/// The webhooks of the organisation, their delivery log and the client that delivers.
pub(crate) struct Webhooks {
    pub(crate) settings: WebhookSettings,
    store: Mutex<Store>,
    log: Mutex<Vec<DeliveryAttempt>>,
    client: reqwest::Client,
}

#[derive(Default)]
struct Store {
    hooks: Vec<Webhook>,
    /// Ids handed out so far (webhooks and PINGs), for deterministic ids.
    issued: u64,
}

impl Webhooks {
    /// Panics on a `root_certs` entry that is not PEM certificates (a test's mistake).
    pub(crate) fn new(settings: WebhookSettings) -> Webhooks {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(Duration::from_millis(settings.timeout_ms.max(1)))
            .redirect(reqwest::redirect::Policy::none());
        for pem in &settings.root_certs {
            for c in reqwest::Certificate::from_pem_bundle(pem)
                .expect("webhook_root_certs: not PEM certificates")
            {
                b = b.add_root_certificate(c);
            }
        }
        Webhooks {
            client: b.build().expect("the webhook client builds"),
            settings,
            store: Mutex::default(),
            log: Mutex::default(),
        }
    }

    pub(crate) fn all(&self) -> Vec<Webhook> {
        self.store.lock().unwrap().hooks.clone()
    }

    pub(crate) fn log(&self) -> Vec<DeliveryAttempt> {
        self.log.lock().unwrap().clone()
    }

    fn record(&self, a: DeliveryAttempt) {
        self.log.lock().unwrap().push(a);
    }

    fn next_id(&self, label: &str) -> String {
        let n = {
            let mut s = self.store.lock().unwrap();
            s.issued += 1;
            s.issued
        };
        Rng::derive(self.settings.seed, &[label, &n.to_string()]).id()
    }

    /// The webhook if it is enabled and still of `generation`.
    fn current(&self, id: &str, generation: u64) -> Option<Webhook> {
        let s = self.store.lock().unwrap();
        s.hooks
            .iter()
            .find(|h| h.id == id && h.enabled && h.generation == generation)
            .cloned()
    }

    /// Switches the webhook off as Gladly does after a fifth failed attempt (if it is still
    /// enabled and of `generation`); true if it was.
    pub(crate) fn switch_off(&self, id: &str, generation: Option<u64>, now: Ms) -> bool {
        let mut s = self.store.lock().unwrap();
        let Some(h) = s.hooks.iter_mut().find(|h| h.id == id) else {
            return false;
        };
        if !h.enabled || generation.is_some_and(|g| g != h.generation) {
            return false;
        }
        h.enabled = false;
        h.disabled_at_due_to_retry_limit = Some(now);
        h.updated_at = now;
        true
    }

    /// POSTs `body` to the webhook's URL with its credentials and headers: the status, or why
    /// there was none.
    async fn post(&self, hook: &Webhook, body: String) -> Result<u16, String> {
        let mut req = self
            .client
            .post(&hook.url)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body);
        for (k, v) in &hook.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(c) = &hook.credentials {
            req = req.basic_auth(&c.username, Some(&c.password));
        }
        match req.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                // Read to the end so the connection can serve the next delivery.
                let _ = r.bytes().await;
                Ok(status)
            }
            Err(e) => Err(describe(&e)),
        }
    }
}

/// A reqwest error with its causes (the TLS or connect reason is in the chain).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "request"
    };
    let mut out = kind.to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

// ---- the management API -------------------------------------------------------------------

/// A 400 naming the attribute at fault.
struct Bad(&'static str, String);

impl Bad {
    fn answer(self) -> Response {
        let body = json!({"errors": [{"attr": self.0, "code": "invalid", "detail": self.1}]});
        (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

/// The fields a create or a PATCH body sets (absent: unchanged; `credentials: null` removes).
#[derive(Default)]
struct Changes {
    name: Option<String>,
    url: Option<String>,
    events: Option<Vec<String>>,
    credentials: Option<Option<Credentials>>,
    headers: Option<BTreeMap<String, String>>,
    enabled: Option<bool>,
}

/// `/api/v1/webhooks…` for an authenticated, admitted request.
pub(crate) async fn answer(
    sim: &Arc<GladlySim>,
    method: &Method,
    path: &str,
    body: &[u8],
) -> Response {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["api", "v1", "webhooks"]) => {
            let list: Vec<Value> = sim.webhooks.all().iter().map(Webhook::api_json).collect();
            json_response(StatusCode::OK, &Value::Array(list))
        }
        ("POST", ["api", "v1", "webhooks"]) => create(sim, body).await.unwrap_or_else(Bad::answer),
        ("GET", ["api", "v1", "webhooks", id]) => match find(sim, id) {
            Some(h) => json_response(StatusCode::OK, &h.api_json()),
            None => StatusCode::NOT_FOUND.into_response(),
        },
        ("PATCH", ["api", "v1", "webhooks", id]) => {
            update(sim, id, body).await.unwrap_or_else(Bad::answer)
        }
        ("DELETE", ["api", "v1", "webhooks", id]) => delete(sim, id).unwrap_or_else(Bad::answer),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn find(sim: &GladlySim, id: &str) -> Option<Webhook> {
    sim.webhooks.all().into_iter().find(|h| h.id == id)
}

async fn create(sim: &Arc<GladlySim>, body: &[u8]) -> Result<Response, Bad> {
    let ch = parse_changes(body)?;
    let now = sim.world.now();
    let mut hook = Webhook {
        id: String::new(),
        name: ch.name.unwrap_or_default(),
        url: ch.url.ok_or_else(|| Bad("url", "url is required".into()))?,
        events: ch
            .events
            .ok_or_else(|| Bad("events", "events is required".into()))?,
        enabled: ch.enabled.unwrap_or(false),
        created_at: now,
        updated_at: now,
        credentials: ch.credentials.flatten(),
        headers: ch.headers.unwrap_or_default(),
        disabled_at_due_to_retry_limit: None,
        enabled_since: None,
        generation: 0,
    };
    check_url(&hook.url, sim.webhooks.settings.allow_http)?;
    check_room(sim, &hook.url, None)?;
    hook.id = sim.webhooks.next_id("webhook");
    if hook.enabled {
        ping(sim, &hook).await?;
        hook.generation = 1;
        hook.enabled_since = Some(sim.world.now());
    }
    {
        // Checked again under the lock: another create may have won meanwhile.
        check_room(sim, &hook.url, None)?;
        sim.webhooks.store.lock().unwrap().hooks.push(hook.clone());
    }
    if hook.enabled {
        spawn_dispatcher(sim, &hook);
    }
    let mut resp = json_response(StatusCode::CREATED, &hook.api_json());
    let location = format!("/api/v1/webhooks/{}", hook.id);
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

async fn update(sim: &Arc<GladlySim>, id: &str, body: &[u8]) -> Result<Response, Bad> {
    let ch = parse_changes(body)?;
    let Some(old) = find(sim, id) else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    let mut new = old.clone();
    apply(&mut new, ch);
    new.updated_at = sim.world.now();
    check_url(&new.url, sim.webhooks.settings.allow_http)?;
    check_room(sim, &new.url, Some(id))?;
    let switched_on = new.enabled && !old.enabled;
    if switched_on || new.url != old.url {
        // Failing, it changes nothing (chosen).
        ping(sim, &new).await?;
    }
    if switched_on {
        new.generation = old.generation + 1;
        new.enabled_since = Some(sim.world.now());
    }
    {
        check_room(sim, &new.url, Some(id))?;
        let mut s = sim.webhooks.store.lock().unwrap();
        let Some(slot) = s.hooks.iter_mut().find(|h| h.id == id) else {
            return Ok(StatusCode::NOT_FOUND.into_response());
        };
        // Gladly may have switched it off during the PING: its record of that stays.
        new.disabled_at_due_to_retry_limit = slot.disabled_at_due_to_retry_limit;
        *slot = new.clone();
    }
    if switched_on {
        spawn_dispatcher(sim, &new);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn apply(h: &mut Webhook, ch: Changes) {
    if let Some(v) = ch.name {
        h.name = v;
    }
    if let Some(v) = ch.url {
        h.url = v;
    }
    if let Some(v) = ch.events {
        h.events = v;
    }
    if let Some(v) = ch.credentials {
        h.credentials = v;
    }
    if let Some(v) = ch.headers {
        h.headers = v;
    }
    if let Some(v) = ch.enabled {
        h.enabled = v;
    }
}

fn delete(sim: &GladlySim, id: &str) -> Result<Response, Bad> {
    let mut s = sim.webhooks.store.lock().unwrap();
    let Some(i) = s.hooks.iter().position(|h| h.id == id) else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    if s.hooks[i].enabled {
        return Err(Bad(
            "enabled",
            "an enabled webhook cannot be deleted: disable it first".into(),
        ));
    }
    s.hooks.remove(i);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The URL is free among the other webhooks, and a new one (`except` None) fits in the limit.
fn check_room(sim: &GladlySim, url: &str, except: Option<&str>) -> Result<(), Bad> {
    let s = sim.webhooks.store.lock().unwrap();
    let others = || s.hooks.iter().filter(|h| Some(h.id.as_str()) != except);
    if others().any(|h| h.url == url) {
        return Err(Bad(
            "url",
            "another webhook of the organisation has this url".into(),
        ));
    }
    if except.is_none() && s.hooks.len() >= MAX_WEBHOOKS {
        return Err(Bad(
            "url",
            format!("an organisation has at most {MAX_WEBHOOKS} webhooks"),
        ));
    }
    Ok(())
}

fn check_url(url: &str, allow_http: bool) -> Result<(), Bad> {
    let parsed = reqwest::Url::parse(url).map_err(|e| Bad("url", format!("not a URL: {e}")))?;
    let scheme_ok = parsed.scheme() == "https" || (allow_http && parsed.scheme() == "http");
    if !scheme_ok || parsed.host_str().is_none_or(str::is_empty) {
        return Err(Bad("url", "url must be an https URL".into()));
    }
    Ok(())
}

/// A create or PATCH body, field by field: wrong types and values are 400s naming the field.
fn parse_changes(body: &[u8]) -> Result<Changes, Bad> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| Bad("body", format!("not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| Bad("body", "the body must be a JSON object".into()))?;
    let mut ch = Changes::default();
    let text = |attr: &'static str, v: &Value| {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| Bad(attr, format!("{attr} must be a string")))
    };
    if let Some(v) = obj.get("name") {
        let name = text("name", v)?;
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(Bad(
                "name",
                format!("name is at most {MAX_NAME_CHARS} characters"),
            ));
        }
        ch.name = Some(name);
    }
    if let Some(v) = obj.get("url") {
        ch.url = Some(text("url", v)?.trim().to_string());
    }
    if let Some(v) = obj.get("events") {
        ch.events = Some(parse_events(v)?);
    }
    if let Some(v) = obj.get("credentials") {
        ch.credentials = Some(parse_credentials(v)?);
    }
    if let Some(v) = obj.get("headers") {
        ch.headers = Some(parse_headers(v)?);
    }
    if let Some(v) = obj.get("enabled") {
        let on = v
            .as_bool()
            .ok_or_else(|| Bad("enabled", "enabled must be true or false".into()))?;
        ch.enabled = Some(on);
    }
    Ok(ch)
}

fn parse_events(v: &Value) -> Result<Vec<String>, Bad> {
    let bad = |d: String| Bad("events", d);
    let list = v
        .as_array()
        .ok_or_else(|| bad("events must be an array of event types".into()))?;
    if list.is_empty() {
        return Err(bad("events must name at least one event type".into()));
    }
    let mut out = Vec::new();
    for e in list {
        let t = e
            .as_str()
            .ok_or_else(|| bad("events must be strings".into()))?;
        let known = EVENT_FAMILIES
            .iter()
            .any(|f| t.len() > f.len() && t.starts_with(f));
        if !known {
            return Err(bad(format!("unknown event type {t}")));
        }
        if !out.iter().any(|o: &String| o == t) {
            out.push(t.to_string());
        }
    }
    Ok(out)
}

fn parse_credentials(v: &Value) -> Result<Option<Credentials>, Bad> {
    if v.is_null() {
        return Ok(None);
    }
    let bad = || {
        Bad(
            "credentials",
            "credentials must be {username, password, realm?} strings".into(),
        )
    };
    let o = v.as_object().ok_or_else(bad)?;
    let field = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
    let (Some(username), Some(password)) = (field("username"), field("password")) else {
        return Err(bad());
    };
    if o.get("realm")
        .is_some_and(|r| !r.is_null() && !r.is_string())
    {
        return Err(bad());
    }
    Ok(Some(Credentials {
        username,
        password,
        realm: field("realm"),
    }))
}

fn parse_headers(v: &Value) -> Result<BTreeMap<String, String>, Bad> {
    let bad = |d: String| Bad("headers", d);
    let o = v
        .as_object()
        .ok_or_else(|| bad("headers must be an object of strings".into()))?;
    let mut out = BTreeMap::new();
    for (k, v) in o {
        let value = v
            .as_str()
            .ok_or_else(|| bad(format!("header {k} must be a string")))?;
        if HeaderName::from_bytes(k.as_bytes()).is_err() || HeaderValue::from_str(value).is_err() {
            return Err(bad(format!("header {k} is not a valid HTTP header")));
        }
        out.insert(k.clone(), value.to_string());
    }
    Ok(out)
}

/// Gladly's PING, during the call: Ok on a 2xx within the timeout, else the 400 to answer.
async fn ping(sim: &GladlySim, hook: &Webhook) -> Result<(), Bad> {
    let id = sim.webhooks.next_id("ping");
    let at = sim.world.now();
    let body = json!({"id": id, "type": "PING", "timestamp": time::fmt_ts(at), "content": {}});
    let result = sim.webhooks.post(hook, body.to_string()).await;
    let mut a = attempt_record(hook, &id, "PING", 1, 0, at);
    match &result {
        Ok(s) => a.status = Some(*s),
        Err(e) => a.error = Some(e.clone()),
    }
    let ok = a.ok();
    sim.webhooks.record(a);
    match result {
        Ok(_) if ok => Ok(()),
        Ok(s) => Err(Bad("url", format!("the PING to url was answered {s}"))),
        Err(e) => Err(Bad("url", format!("the PING to url failed: {e}"))),
    }
}

fn attempt_record(
    hook: &Webhook,
    event_id: &str,
    event_type: &str,
    attempt: u32,
    copy: u32,
    at: Ms,
) -> DeliveryAttempt {
    DeliveryAttempt {
        webhook_id: hook.id.clone(),
        event_id: event_id.to_string(),
        event_type: event_type.to_string(),
        attempt,
        copy,
        url: hook.url.clone(),
        at,
        status: None,
        error: None,
        dropped: false,
    }
}

// ---- deliveries ---------------------------------------------------------------------------

/// One event on its way to one webhook generation.
#[derive(Clone)]
struct Delivery {
    webhook_id: String,
    generation: u64,
    event: Arc<Event>,
    copy: u32,
}

/// Starts the dispatcher of the webhook's current generation: from `enabled_since` on, it
/// takes each event the webhook subscribes to as the world's clock reaches it.
fn spawn_dispatcher(sim: &Arc<GladlySim>, hook: &Webhook) {
    let weak = Arc::downgrade(sim);
    let (id, generation) = (hook.id.clone(), hook.generation);
    let since = hook.enabled_since.unwrap_or_else(|| sim.world.now());
    tokio::spawn(dispatch(weak, id, generation, since));
}

async fn dispatch(weak: Weak<GladlySim>, id: String, generation: u64, mut cursor: Ms) {
    loop {
        let Some(sim) = weak.upgrade() else { return };
        let Some(hook) = sim.webhooks.current(&id, generation) else {
            return;
        };
        let now = sim.world.now();
        if now >= cursor {
            // Events with cursor <= timestamp <= now, then the cursor moves past now.
            for e in due_events(&sim, cursor, now + 1).await {
                if hook.events.contains(&e.etype) {
                    start_delivery(&sim, &hook, Arc::new(e)).await;
                }
            }
            cursor = now + 1;
        }
        drop(sim);
        tokio::time::sleep(TICK).await;
    }
}

/// The world's events in `[from, to)`, generated off the async workers.
async fn due_events(sim: &Arc<GladlySim>, from: Ms, to: Ms) -> Vec<Event> {
    let sim = sim.clone();
    let all = [
        Entity::AgentStatus,
        Entity::AgentAvailability,
        Entity::Conversation,
        Entity::Contact,
    ];
    tokio::task::spawn_blocking(move || sim.world.events_between(from, to, &all))
        .await
        .unwrap_or_default()
}

/// Applies the quirks to a newly due event: dropped (logged only), sent once or twice, now
/// (first attempt in line, in event order) or held back (beside the line).
async fn start_delivery(sim: &Arc<GladlySim>, hook: &Webhook, event: Arc<Event>) {
    let plan = Plan::draw(&sim.webhooks.settings, &hook.id, &event.id);
    if plan.drop {
        let mut a = attempt_record(hook, &event.id, &event.etype, 0, 0, sim.world.now());
        a.dropped = true;
        sim.webhooks.record(a);
        return;
    }
    for copy in 0..=u32::from(plan.repeat) {
        let d = Delivery {
            webhook_id: hook.id.clone(),
            generation: hook.generation,
            event: event.clone(),
            copy,
        };
        let weak = Arc::downgrade(sim);
        if plan.delay_ms > 0 {
            let due = event.timestamp + plan.delay_ms;
            tokio::spawn(async move {
                if sleep_until(&weak, due).await {
                    retries(weak, d, 1).await;
                }
            });
            continue;
        }
        if attempt(sim, &d, 1).await == Some(false) {
            tokio::spawn(retries(weak, d, 2));
        }
    }
}

/// Attempts `first`..=5 of a delivery, each `retry_wait` after the previous one started; the
/// webhook is switched off when the fifth fails. Stops once one succeeds or the webhook
/// generation is gone.
async fn retries(weak: Weak<GladlySim>, d: Delivery, first: u32) {
    let mut previous = match weak.upgrade() {
        Some(sim) => last_attempt_at(&sim, &d).unwrap_or_else(|| sim.world.now()),
        None => return,
    };
    for n in first..=ATTEMPTS {
        if n > 1 {
            let wait = match weak.upgrade() {
                Some(sim) => retry_wait(&sim.webhooks.settings, n),
                None => return,
            };
            if !sleep_until(&weak, previous + wait).await {
                return;
            }
        }
        let Some(sim) = weak.upgrade() else { return };
        previous = sim.world.now();
        match attempt(&sim, &d, n).await {
            Some(true) | None => return,
            Some(false) if n == ATTEMPTS => {
                sim.webhooks
                    .switch_off(&d.webhook_id, Some(d.generation), sim.world.now());
            }
            Some(false) => {}
        }
    }
}

/// When this delivery's latest attempt started, from the log.
fn last_attempt_at(sim: &GladlySim, d: &Delivery) -> Option<Ms> {
    let log = sim.webhooks.log.lock().unwrap();
    log.iter()
        .rev()
        .find(|a| a.webhook_id == d.webhook_id && a.event_id == d.event.id && a.copy == d.copy)
        .map(|a| a.at)
}

/// One attempt, logged: Some(answered 2xx), or None when the webhook generation is gone (nothing
/// sent).
async fn attempt(sim: &GladlySim, d: &Delivery, n: u32) -> Option<bool> {
    let hook = sim.webhooks.current(&d.webhook_id, d.generation)?;
    let e = &d.event;
    let mut a = attempt_record(&hook, &e.id, &e.etype, n, d.copy, sim.world.now());
    match sim.webhooks.post(&hook, e.line.clone()).await {
        Ok(s) => a.status = Some(s),
        Err(err) => a.error = Some(err),
    }
    let ok = a.ok();
    sim.webhooks.record(a);
    Some(ok)
}

/// Sleeps until the world's clock shows `at`: false if the simulator is gone first.
async fn sleep_until(weak: &Weak<GladlySim>, at: Ms) -> bool {
    loop {
        let left = match weak.upgrade() {
            Some(sim) => sim.world.real_until(at),
            None => return false,
        };
        match left {
            Some(d) if d.is_zero() => return true,
            Some(d) => tokio::time::sleep(d.min(MAX_SLEEP)).await,
            None => tokio::time::sleep(MAX_SLEEP).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> WebhookSettings {
        WebhookSettings {
            seed: 7,
            retry_scale: 1.0,
            drop: 0.0,
            repeat: 0.0,
            delay_ms: 0,
            timeout_ms: 15_000,
            allow_http: false,
            root_certs: Vec::new(),
        }
    }

    #[test]
    fn retry_waits_are_the_spec_intervals_scaled() {
        let mut s = settings();
        let waits: Vec<Ms> = (2..=5).map(|n| retry_wait(&s, n)).collect();
        assert_eq!(waits, [30_000, 300_000, 1_800_000, 3_600_000]);
        s.retry_scale = 0.001;
        let waits: Vec<Ms> = (2..=5).map(|n| retry_wait(&s, n)).collect();
        assert_eq!(waits, [30, 300, 1_800, 3_600]);
    }

    #[test]
    fn plans_are_a_function_of_seed_webhook_and_event() {
        let mut s = settings();
        s.drop = 0.2;
        s.repeat = 0.3;
        s.delay_ms = 5_000;
        let plans: Vec<Plan> = (0..2000)
            .map(|i| Plan::draw(&s, "hook", &format!("ev{i}")))
            .collect();
        let again: Vec<Plan> = (0..2000)
            .map(|i| Plan::draw(&s, "hook", &format!("ev{i}")))
            .collect();
        assert_eq!(plans, again);
        let dropped = plans.iter().filter(|p| p.drop).count();
        let repeated = plans.iter().filter(|p| p.repeat).count();
        assert!((300..500).contains(&dropped), "{dropped}");
        assert!((480..720).contains(&repeated), "{repeated}");
        assert!(plans.iter().all(|p| (0..=5_000).contains(&p.delay_ms)));
        // Another seed, other choices; a quirk switched off leaves the others' choices alone.
        s.seed = 8;
        assert_ne!(
            plans,
            (0..2000)
                .map(|i| Plan::draw(&s, "hook", &format!("ev{i}")))
                .collect::<Vec<_>>()
        );
        s.seed = 7;
        s.drop = 0.0;
        for (i, p) in plans.iter().enumerate() {
            let q = Plan::draw(&s, "hook", &format!("ev{i}"));
            assert!(!q.drop);
            assert_eq!((q.repeat, q.delay_ms), (p.repeat, p.delay_ms));
        }
    }

    #[test]
    fn bodies_are_checked_field_by_field() {
        let attr = |body: &str| match parse_changes(body.as_bytes()) {
            Ok(_) => "",
            Err(Bad(a, _)) => a,
        };
        assert_eq!(
            attr(r#"{"url":"https://x.example/h","events":["AGENT_STATUS/LOGGED_IN"]}"#),
            ""
        );
        assert_eq!(attr("[]"), "body");
        assert_eq!(attr("{"), "body");
        assert_eq!(
            attr(&format!(r#"{{"name":"{}"}}"#, "n".repeat(201))),
            "name"
        );
        assert_eq!(attr(&format!(r#"{{"name":"{}"}}"#, "é".repeat(200))), "");
        assert_eq!(attr(r#"{"events":[]}"#), "events");
        assert_eq!(attr(r#"{"events":["AGENT_STATUS/"]}"#), "events");
        assert_eq!(attr(r#"{"events":["NOPE/X"]}"#), "events");
        assert_eq!(attr(r#"{"credentials":{"username":"u"}}"#), "credentials");
        assert_eq!(attr(r#"{"credentials":null}"#), "");
        assert_eq!(attr(r#"{"headers":{"X-A":1}}"#), "headers");
        assert_eq!(attr(r#"{"headers":{"bad header":"v"}}"#), "headers");
        assert_eq!(attr(r#"{"enabled":"yes"}"#), "enabled");
        let ch = parse_changes(br#"{"events":["CONVERSATION/CLOSED","CONVERSATION/CLOSED"]}"#);
        assert_eq!(ch.ok().unwrap().events.unwrap(), ["CONVERSATION/CLOSED"]);
    }

    #[test]
    fn only_https_urls_unless_http_is_allowed() {
        assert!(check_url("https://127.0.0.1:8443/hook", false).is_ok());
        assert!(check_url("http://127.0.0.1:8080/hook", false).is_err());
        assert!(check_url("http://127.0.0.1:8080/hook", true).is_ok());
        assert!(check_url("ftp://x.example/", true).is_err());
        assert!(check_url("not a url", true).is_err());
    }

    #[test]
    fn the_api_never_shows_credentials_or_header_values() {
        let h = Webhook {
            id: "w".into(),
            name: "n".into(),
            url: "https://x.example/h".into(),
            events: vec!["AGENT_STATUS/LOGGED_IN".into()],
            enabled: false,
            created_at: 0,
            updated_at: 0,
            credentials: Some(Credentials {
                username: "u".into(),
                password: "secret-pw".into(),
                realm: None,
            }),
            headers: [("X-Key".to_string(), "secret-hv".to_string())].into(),
            disabled_at_due_to_retry_limit: Some(1_000),
            enabled_since: None,
            generation: 0,
        };
        let v = h.api_json();
        let text = v.to_string();
        assert!(!text.contains("secret"), "{text}");
        assert_eq!(v["hasCredentials"], true);
        assert_eq!(v["headerKeys"], json!(["X-Key"]));
        assert_eq!(v["disabledAtDueToRetryLimit"], "1970-01-01T00:00:01.000Z");
    }
}
