//! The Gladly simulator's webhooks (spec gladly-api.md §6) over real HTTP and HTTPS, to small
//! axum receivers started here: management API and its 400s, the PING during the call,
//! deliveries one per event in time order with the credentials, the scaled retry schedule and
//! the switch-off, the seeded drop/repeat/delay quirks, delete, and TLS roots.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use gladly_wfm_sim::generator::Entity;
use gladly_wfm_sim::gladly::GladlySimConfig;
use gladly_wfm_sim::webhooks::{DeliveryAttempt, RETRY_INTERVALS_MS};
use gladly_wfm_sim::wfm::WfmSimConfig;
use serde_json::{json, Value};

use crate::util::*;

/// The agent and conversation types `follow` subscribes to (CONTACT/… is left out on purpose).
const TYPES: [&str; 12] = [
    "AGENT_STATUS/LOGGED_IN",
    "AGENT_STATUS/LOGGED_OUT",
    "AGENT_STATUS/WENT_AWAY",
    "AGENT_STATUS/RETURNED_FROM_AWAY",
    "AGENT_STATUS/CHANGED_ACTIVE_REASON",
    "AGENT_AVAILABILITY/UPDATED",
    "AGENT_AVAILABILITY/FOCUS_ENTERED",
    "AGENT_AVAILABILITY/FOCUS_EXITED",
    "CONVERSATION/CREATED",
    "CONVERSATION/CLOSED",
    "CONVERSATION/REOPENED",
    "CONVERSATION_ASSIGNEE/UPDATED",
];
const HOOK_USER: &str = "gladly";
const HOOK_PASSWORD: &str = "hook-pw-123";

/// What a receiver got: one POST.
#[derive(Clone, Debug)]
struct Got {
    headers: HeaderMap,
    body: Value,
    at: Instant,
}

/// A webhook receiver: records every POST, answers PINGs with `ping_status` and deliveries with
/// `status`.
#[derive(Clone)]
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    status: Arc<AtomicU16>,
    ping_status: Arc<AtomicU16>,
    url: String,
}

impl Receiver {
    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    fn deliveries(&self) -> Vec<Got> {
        self.got()
            .into_iter()
            .filter(|g| g.body["type"] != "PING")
            .collect()
    }

    fn pings(&self) -> Vec<Got> {
        self.got()
            .into_iter()
            .filter(|g| g.body["type"] == "PING")
            .collect()
    }
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let status = if body["type"] == "PING" {
        &r.ping_status
    } else {
        &r.status
    };
    let status = StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap();
    r.got.lock().unwrap().push(Got {
        headers,
        body,
        at: Instant::now(),
    });
    status
}

fn receiver_state(url: String) -> Receiver {
    Receiver {
        got: Arc::default(),
        status: Arc::new(AtomicU16::new(200)),
        ping_status: Arc::new(AtomicU16::new(200)),
        url,
    }
}

/// A plain-HTTP receiver on loopback, at `/hook`.
async fn receiver() -> Receiver {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let r = receiver_state(format!("http://{}/hook", tcp.local_addr().unwrap()));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(r.clone());
    tokio::spawn(async move { axum::serve(tcp, app).await });
    r
}

/// Accepts TLS connections with the fixture certificate (`fixtures/tls/server.pem`).
struct TlsListener {
    tcp: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, SocketAddr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            // A refused handshake (the client does not trust us) is the client's business.
            if let Ok(tls) = self.tls.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/tls")
        .join(name)
}

/// An HTTPS receiver on loopback serving `fixtures/tls/server.pem` (issued by `ca.pem`), at
/// `https://{host}:port/hook`.
async fn tls_receiver(host: &str) -> Receiver {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(fixture("server.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(fixture("server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let r = receiver_state(format!("https://{host}:{port}/hook"));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(r.clone());
    let listener = TlsListener {
        tcp,
        tls: tokio_rustls::TlsAcceptor::from(Arc::new(cfg)),
    };
    tokio::spawn(async move { axum::serve(listener, app).await });
    r
}

/// A Gladly simulator with a live clock `speed` times real time from `NOW`.
async fn sim(seed: u64, speed: f64, tweak: impl FnOnce(&mut GladlySimConfig)) -> Sims {
    start(
        world(seed, 20, NOW),
        |c| {
            c.speed = speed;
            // Tests create many webhooks at once; the limits are tested elsewhere.
            c.rps = 1000;
            c.webhook_allow_http = true;
            tweak(c);
        },
        WfmSimConfig::default(),
    )
    .await
}

/// A webhooks API call: status, JSON body (Null if none), `Location`.
async fn api(s: &Sims, method: &str, path: &str, body: Option<Value>) -> (u16, Value, String) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = reqwest::Client::new()
        .request(m, format!("{}/api/v1/webhooks{path}", s.gladly_url))
        .basic_auth("sim@example.com", Some(TOKEN));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        location,
    )
}

fn hook_body(url: &str, enabled: bool) -> Value {
    json!({
        "name": "gladly-wfm t", "url": url, "events": TYPES, "enabled": enabled,
        "credentials": {"username": HOOK_USER, "password": HOOK_PASSWORD},
        "headers": {"X-Pipeline": "t"},
    })
}

/// Creates a webhook and returns its id (panics unless 201).
async fn create(s: &Sims, url: &str, enabled: bool) -> String {
    let (status, body, _) = api(s, "POST", "", Some(hook_body(url, enabled))).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    let raw = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn auth_of(g: &Got) -> &str {
    g.headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn wait_until(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn attempts_of(s: &Sims, event_id: &str) -> Vec<DeliveryAttempt> {
    s.gladly
        .webhook_deliveries()
        .into_iter()
        .filter(|a| a.event_id == event_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_create_pings_with_credentials_and_the_api_hides_them() {
    let s = sim(7, 0.0, |_| {}).await;
    let r = receiver().await;
    let (status, body, location) = api(&s, "POST", "", Some(hook_body(&r.url, true))).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(location, format!("/api/v1/webhooks/{id}"));
    // The PING came during the call, with the credentials and the static headers.
    let pings = r.pings();
    assert_eq!(pings.len(), 1);
    let p = &pings[0];
    assert_eq!(auth_of(p), basic(HOOK_USER, HOOK_PASSWORD));
    assert_eq!(p.headers["x-pipeline"], "t");
    assert_eq!(p.headers["content-type"], "application/json");
    assert_eq!(p.body["content"], json!({}));
    assert!(p.body["id"].is_string() && p.body["timestamp"].is_string());
    // Listed and fetched without credentials or header values.
    let (status, list, _) = api(&s, "GET", "", None).await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let one = &list[0];
    assert_eq!(one["url"], r.url.as_str());
    assert_eq!(one["enabled"], true);
    assert_eq!(one["hasCredentials"], true);
    assert_eq!(one["headerKeys"], json!(["X-Pipeline"]));
    assert_eq!(one["events"], json!(TYPES));
    assert!(one.get("disabledAtDueToRetryLimit").is_none());
    assert!(!list.to_string().contains(HOOK_PASSWORD));
    assert_eq!(api(&s, "GET", &format!("/{id}"), None).await.1, *one);
    assert_eq!(api(&s, "GET", "/nope", None).await.0, 404);
    // The simulator's own view keeps what the API never shows.
    let stored = s.gladly.webhook(&id).unwrap();
    assert_eq!(stored.credentials.unwrap().password, HOOK_PASSWORD);
    assert_eq!(stored.headers["X-Pipeline"], "t");

    // 400s naming the field: a taken url, no events, a long name, an unknown type, a bad body.
    for (b, attr) in [
        (hook_body(&r.url, false), "url"),
        (json!({"url": "http://127.0.0.1:9/x"}), "events"),
        (json!({"events": TYPES}), "url"),
        (
            json!({"name": "n".repeat(201), "url": "http://127.0.0.1:9/y", "events": TYPES}),
            "name",
        ),
        (
            json!({"url": "http://127.0.0.1:9/z", "events": ["NOPE/X"]}),
            "events",
        ),
        (
            json!({"url": "ftp://127.0.0.1:9/z", "events": TYPES}),
            "url",
        ),
    ] {
        let (status, body, _) = api(&s, "POST", "", Some(b.clone())).await;
        assert_eq!(status, 400, "{b}");
        assert_eq!(body["errors"][0]["attr"], attr, "{b}: {body}");
    }
    // At most 20 per organisation (disabled ones need no PING).
    for i in 1..20 {
        create(&s, &format!("http://127.0.0.1:9/h{i}"), false).await;
    }
    let (status, body, _) = api(
        &s,
        "POST",
        "",
        Some(hook_body("http://127.0.0.1:9/h20", false)),
    )
    .await;
    assert_eq!(
        (status, body["errors"][0]["attr"].clone()),
        (400, json!("url"))
    );

    // Delete: 400 while enabled, 204 once disabled, then 404.
    assert_eq!(api(&s, "DELETE", &format!("/{id}"), None).await.0, 400);
    let off = Some(json!({"enabled": false}));
    assert_eq!(api(&s, "PATCH", &format!("/{id}"), off).await.0, 204);
    assert_eq!(api(&s, "DELETE", &format!("/{id}"), None).await.0, 204);
    assert_eq!(api(&s, "GET", &format!("/{id}"), None).await.0, 404);
    assert_eq!(api(&s, "DELETE", &format!("/{id}"), None).await.0, 404);
    assert_eq!(
        api(&s, "GET", "", None).await.1.as_array().unwrap().len(),
        19
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_with_a_failing_ping_is_refused_and_nothing_changes() {
    let s = sim(7, 0.0, |c| c.webhook_timeout_ms = 1_000).await;
    let r = receiver().await;
    r.ping_status.store(500, Ordering::SeqCst);
    // Create: 400, nothing stored.
    let (status, body, _) = api(&s, "POST", "", Some(hook_body(&r.url, true))).await;
    assert_eq!(
        (status, body["errors"][0]["attr"].clone()),
        (400, json!("url"))
    );
    assert_eq!(r.pings().len(), 1);
    assert!(s.gladly.webhooks().is_empty());
    // Nobody listening: refused too.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", l.local_addr().unwrap())
    };
    let (status, _, _) = api(&s, "POST", "", Some(hook_body(&closed, true))).await;
    assert_eq!(status, 400);
    assert!(s.gladly.webhooks().is_empty());
    let last = s.gladly.webhook_deliveries().pop().unwrap();
    assert_eq!(last.event_type, "PING");
    assert!(
        last.error.as_deref().unwrap().starts_with("connect"),
        "{last:?}"
    );
    // Created disabled (no PING), an enable with a failing PING changes nothing…
    let id = create(&s, &r.url, false).await;
    assert_eq!(r.pings().len(), 1);
    let on = || Some(json!({"enabled": true}));
    let (status, _, _) = api(&s, "PATCH", &format!("/{id}"), on()).await;
    assert_eq!(status, 400);
    assert!(!s.gladly.webhook(&id).unwrap().enabled);
    assert_eq!(r.pings().len(), 2);
    // …one answered 2xx enables it.
    r.ping_status.store(204, Ordering::SeqCst);
    assert_eq!(api(&s, "PATCH", &format!("/{id}"), on()).await.0, 204);
    assert!(s.gladly.webhook(&id).unwrap().enabled);
    assert_eq!(r.pings().len(), 3);
    // A URL change PINGs the new URL; refused there, the old URL stays.
    let r2 = receiver().await;
    r2.ping_status.store(503, Ordering::SeqCst);
    let moved = || Some(json!({"url": r2.url}));
    assert_eq!(api(&s, "PATCH", &format!("/{id}"), moved()).await.0, 400);
    assert_eq!(s.gladly.webhook(&id).unwrap().url, r.url);
    r2.ping_status.store(200, Ordering::SeqCst);
    assert_eq!(api(&s, "PATCH", &format!("/{id}"), moved()).await.0, 204);
    assert_eq!(s.gladly.webhook(&id).unwrap().url, r2.url);
    assert_eq!((r.pings().len(), r2.pings().len()), (3, 2));
}

/// The world's events of the subscribed types with `from <= timestamp <= to`, in order.
fn expected(s: &Sims, from: i64, to: i64) -> Vec<Value> {
    let all = [
        Entity::AgentStatus,
        Entity::AgentAvailability,
        Entity::Conversation,
        Entity::Contact,
    ];
    s.gladly
        .world
        .events_between(from, to + 1, &all)
        .into_iter()
        .filter(|e| TYPES.contains(&e.etype.as_str()))
        .map(|e| serde_json::from_str(&e.line).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_delivers_each_event_once_in_time_order_with_credentials() {
    // 10 simulated minutes a second.
    let s = sim(11, 600.0, |_| {}).await;
    let r = receiver().await;
    let id = create(&s, &r.url, true).await;
    wait_until("40 deliveries", 20, || r.deliveries().len() >= 40).await;
    let off = Some(json!({"enabled": false}));
    assert_eq!(api(&s, "PATCH", &format!("/{id}"), off).await.0, 204);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = r.deliveries();
    let since = s.gladly.webhook(&id).unwrap().enabled_since.unwrap();
    let last = got.last().unwrap().body["timestamp"].as_str().unwrap();
    let want = expected(&s, since, ms(last));
    let bodies: Vec<Value> = got.iter().map(|g| g.body.clone()).collect();
    // Every subscribed event from the switch-on to the last delivered, once, in order, as the
    // Events API line; no CONTACT/… (not subscribed). (The switch-off may cut a batch of events
    // of the last delivered one's millisecond.)
    assert_eq!(bodies, want[..bodies.len()]);
    assert!(want[bodies.len()..].iter().all(|e| e["timestamp"] == last));
    for g in &got {
        assert_eq!(auth_of(g), basic(HOOK_USER, HOOK_PASSWORD));
        assert_eq!(g.headers["x-pipeline"], "t");
    }
    // Each went out once its time had come, within a tick or two of the simulated clock.
    let log = s.gladly.webhook_deliveries();
    for b in &bodies {
        let a: Vec<_> = log.iter().filter(|a| a.event_id == b["id"]).collect();
        assert_eq!(a.len(), 1, "{b}");
        let lag = a[0].at - ms(b["timestamp"].as_str().unwrap());
        assert!((0..600_000).contains(&lag), "{b}: sent {lag} ms after");
        assert_eq!((a[0].attempt, a[0].status), (1, Some(200)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_failing_deliveries_retry_on_the_scaled_schedule_then_switch_it_off() {
    // 10× real time, intervals × 0.01: 300 ms, 3 s, 18 s, 36 s simulated = 30 ms to 3.6 s real.
    let scale = 0.01;
    let s = sim(7, 10.0, |c| c.webhook_retry_scale = scale).await;
    let r = receiver().await;
    r.status.store(500, Ordering::SeqCst);
    let id = create(&s, &r.url, true).await;
    wait_until("a first delivery", 30, || !r.deliveries().is_empty()).await;
    let first = r.deliveries()[0].body["id"].as_str().unwrap().to_string();
    wait_until("the switch-off", 30, || {
        !s.gladly.webhook(&id).unwrap().enabled
    })
    .await;
    let tries = attempts_of(&s, &first);
    assert_eq!(
        tries.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert!(tries.iter().all(|a| a.status == Some(500)));
    for (pair, base) in tries.windows(2).zip(RETRY_INTERVALS_MS) {
        let gap = pair[1].at - pair[0].at;
        let want = (base as f64 * scale) as i64;
        // Never early; late by at most a few hundred real milliseconds (×10 simulated).
        assert!(gap >= want && gap < want + 5_000, "{gap} vs {want}");
    }
    // The receiver saw the five tries of that event, spaced as scheduled in real time too.
    let seen: Vec<Got> = r
        .deliveries()
        .into_iter()
        .filter(|g| g.body["id"] == *first)
        .collect();
    assert_eq!(seen.len(), 5);
    for (pair, base) in seen.windows(2).zip(RETRY_INTERVALS_MS) {
        let gap = pair[1].at.duration_since(pair[0].at).as_secs_f64() * 1000.0;
        let want = base as f64 * scale / 10.0;
        assert!(gap >= want * 0.9, "{gap} ms vs {want} ms");
    }
    // Switched off with its time, shown by the API.
    let hook = s.gladly.webhook(&id).unwrap();
    let off_at = hook.disabled_at_due_to_retry_limit.unwrap();
    assert!(off_at >= tries[4].at);
    let (_, shown, _) = api(&s, "GET", &format!("/{id}"), None).await;
    assert_eq!(shown["enabled"], false);
    assert_eq!(
        shown["disabledAtDueToRetryLimit"],
        gladly_wfm::time::fmt_ts(off_at)
    );
    // Nothing more is attempted while it is off.
    let n = s.gladly.webhook_deliveries().len();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(s.gladly.webhook_deliveries().len(), n);
    // Switched on again: the time stays, and only events from then on are delivered.
    r.status.store(200, Ordering::SeqCst);
    let on = Some(json!({"enabled": true}));
    assert_eq!(api(&s, "PATCH", &format!("/{id}"), on).await.0, 204);
    let hook = s.gladly.webhook(&id).unwrap();
    assert_eq!(hook.disabled_at_due_to_retry_limit, Some(off_at));
    let since = hook.enabled_since.unwrap();
    let before = r.deliveries().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(r.deliveries()[before..]
        .iter()
        .all(|g| ms(g.body["timestamp"].as_str().unwrap()) >= since));
}

/// What happened to each event in a simulator's log: (dropped, copies sent ok).
fn fates(s: &Sims) -> std::collections::BTreeMap<String, (bool, usize)> {
    let mut out = std::collections::BTreeMap::new();
    for a in s.gladly.webhook_deliveries() {
        if a.event_type == "PING" {
            continue;
        }
        let f = out.entry(a.event_id.clone()).or_insert((false, 0));
        f.0 |= a.dropped;
        f.1 += usize::from(a.ok());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_drop_and_repeat_quirks_are_the_same_for_a_seed() {
    let quirky = |c: &mut GladlySimConfig| {
        c.webhook_drop = 0.25;
        c.webhook_repeat = 0.25;
    };
    let (a, b) = (sim(5, 600.0, quirky).await, sim(5, 600.0, quirky).await);
    let (ra, rb) = (receiver().await, receiver().await);
    let (ia, ib) = (
        create(&a, &ra.url, true).await,
        create(&b, &rb.url, true).await,
    );
    assert_eq!(ia, ib, "same seed, same webhook id");
    let enough = |s: &Sims| fates(s).len() >= 60;
    wait_until("60 events", 30, || enough(&a) && enough(&b)).await;
    for (s, id) in [(&a, &ia), (&b, &ib)] {
        let off = Some(json!({"enabled": false}));
        assert_eq!(api(s, "PATCH", &format!("/{id}"), off).await.0, 204);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (fa, fb) = (fates(&a), fates(&b));
    // Each event has the same fate in both runs (the runs may cover slightly different spans).
    let mut common = 0;
    for (id, f) in &fa {
        if let Some(g) = fb.get(id) {
            assert_eq!(f, g, "event {id}");
            common += 1;
        }
    }
    assert!(common >= 40, "{common} events in common");
    let dropped = fa.values().filter(|f| f.0).count();
    let twice = fa.values().filter(|f| f.1 == 2).count();
    assert!(dropped > 0 && twice > 0, "{dropped} dropped, {twice} twice");
    assert!(fa
        .values()
        .all(|f| (f.0 && f.1 == 0) || (!f.0 && (1..=2).contains(&f.1))));
    // The receiver saw exactly that: dropped ones never, repeated ones twice.
    let got = ra.deliveries();
    for (id, (_, copies)) in &fa {
        let n = got.iter().filter(|g| g.body["id"] == *id.as_str()).count();
        assert_eq!(n, *copies, "event {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_delay_quirk_reorders_but_loses_nothing() {
    // Up to 2 simulated minutes late (0.2 s real): later events overtake.
    let s = sim(3, 600.0, |c| c.webhook_delay_ms = 120_000).await;
    let r = receiver().await;
    let id = create(&s, &r.url, true).await;
    wait_until("40 deliveries", 30, || r.deliveries().len() >= 40).await;
    let off = Some(json!({"enabled": false}));
    assert_eq!(api(&s, "PATCH", &format!("/{id}"), off).await.0, 204);
    let since = s.gladly.webhook(&id).unwrap().enabled_since.unwrap();
    let got: Vec<Value> = r.deliveries().into_iter().map(|g| g.body).collect();
    let stamps: Vec<i64> = got
        .iter()
        .map(|b| ms(b["timestamp"].as_str().unwrap()))
        .collect();
    assert!(
        stamps.windows(2).any(|w| w[1] < w[0]),
        "some delivery overtaken"
    );
    // Everything up to the newest event delivered less the delay window (and a margin for the
    // switch-off cutting short what was about to go) arrived.
    let horizon = stamps.iter().max().unwrap() - 180_000;
    let mut ids: Vec<&str> = got.iter().map(|b| b["id"].as_str().unwrap()).collect();
    ids.sort();
    for e in expected(&s, since, horizon) {
        assert!(ids.binary_search(&e["id"].as_str().unwrap()).is_ok(), "{e}");
    }
    // None went out before its event's time.
    for a in s.gladly.webhook_deliveries() {
        if let Some(e) = got.iter().find(|b| b["id"] == *a.event_id.as_str()) {
            assert!(a.at >= ms(e["timestamp"].as_str().unwrap()), "{a:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_webhook_stops_its_deliveries_and_retries() {
    // Full-length intervals at 600×: retries 50 ms, 0.5 s, 3 s, 6 s after the first try.
    let s = sim(7, 600.0, |_| {}).await;
    let r = receiver().await;
    r.status.store(500, Ordering::SeqCst);
    let id = create(&s, &r.url, true).await;
    wait_until("third tries", 20, || {
        s.gladly.webhook_deliveries().iter().any(|a| a.attempt == 3)
    })
    .await;
    let off = Some(json!({"enabled": false}));
    assert_eq!(api(&s, "PATCH", &format!("/{id}"), off).await.0, 204);
    assert_eq!(api(&s, "DELETE", &format!("/{id}"), None).await.0, 204);
    assert!(s.gladly.webhooks().is_empty());
    let (n, seen) = (s.gladly.webhook_deliveries().len(), r.got().len());
    // The pending fourth tries (3 s after the third) would be due by now.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert_eq!(s.gladly.webhook_deliveries().len(), n);
    assert_eq!(r.got().len(), seen);
    assert!(s.gladly.webhook_deliveries().iter().all(|a| a.attempt < 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_over_https_with_its_root_given_and_refused_without() {
    let ca = std::fs::read(fixture("ca.pem")).unwrap();
    let trusting = sim(7, 600.0, |c| {
        c.webhook_allow_http = false;
        c.webhook_root_certs = vec![ca];
    })
    .await;
    let wary = sim(7, 600.0, |c| c.webhook_allow_http = false).await;
    for host in ["127.0.0.1", "localhost"] {
        let r = tls_receiver(host).await;
        let id = create(&trusting, &r.url, true).await;
        assert_eq!(r.pings().len(), 1);
        assert_eq!(auth_of(&r.pings()[0]), basic(HOOK_USER, HOOK_PASSWORD));
        wait_until("a delivery over TLS", 20, || !r.deliveries().is_empty()).await;
        let off = Some(json!({"enabled": false}));
        assert_eq!(api(&trusting, "PATCH", &format!("/{id}"), off).await.0, 204);
        // Without the root, the PING fails the TLS handshake and the create is refused.
        let (status, body, _) = api(&wary, "POST", "", Some(hook_body(&r.url, true))).await;
        assert_eq!(status, 400, "{body}");
        let ping = wary.gladly.webhook_deliveries().pop().unwrap();
        let why = ping.error.unwrap_or_default();
        assert!(why.contains("certificate"), "{why}");
        assert_eq!(r.pings().len(), 1);
    }
    assert!(wary.gladly.webhooks().is_empty());
    // And http:// is refused when only https is allowed.
    let (status, body, _) = api(
        &wary,
        "POST",
        "",
        Some(hook_body("http://127.0.0.1:9/h", true)),
    )
    .await;
    assert_eq!(
        (status, body["errors"][0]["attr"].clone()),
        (400, json!("url"))
    );
}
