//! The webhook receiver (DESIGN §12): `POST` on `public_url`'s path and nothing else.
//!
//! What a sender can make it hold is bounded: without the webhook's Basic credentials (checked
//! in constant time) a request gets a 401 and a counter, and its body is never read; an
//! authenticated body is at most `MAX_BODY` (413 beyond) and must arrive, like the headers,
//! within `TIMEOUT`; at most `MAX_IN_FLIGHT` deliveries are read at once (503 beyond, which
//! Gladly retries) and `MAX_CONNECTIONS` connections are open (serve.rs). An authenticated
//! delivery it cannot use is answered 200 and set aside (counted, logged with its id, kept under
//! `raw/webhook_set_aside/`): Gladly would switch off a webhook whose deliveries fail, and the
//! Events API poll brings whatever the webhook lost. Everything else is answered at once:
//! usable events go to `follow`'s loop through a bounded queue (`Taken`), never waited on.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use chrono_tz::Tz;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Semaphore};

use crate::config::WebhookConfig;
use crate::gladly::decode;
use crate::log;
use crate::model::{AgentEvent, ConversationEvent};
use crate::storage::Storage;
use crate::telemetry;
use crate::time::{self, Clock, MS_PER_HOUR};

/// The largest delivery body read (Gladly's events are a few hundred bytes).
pub const MAX_BODY: usize = 256 * 1024;
/// Headers, and then the body, each within this.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries being read and answered at once.
pub const MAX_IN_FLIGHT: usize = 64;
/// Connections open at once.
pub const MAX_CONNECTIONS: usize = 256;
/// No connection lives longer (Gladly reconnects).
const LIFETIME: Duration = Duration::from_secs(300);
/// Deliveries waiting for `follow`'s loop; beyond, a delivery is answered 503 (retried).
pub const QUEUE: usize = 4096;
/// Event ids remembered to tell a repeated delivery (only for the counter: landing
/// deduplicates by `event_id` whatever this forgets).
const REMEMBERED: usize = 100_000;
/// Where unusable deliveries are kept, by the day they arrived.
pub const SET_ASIDE: &str = "raw/webhook_set_aside";
/// How long keeping a set-aside delivery may hold its answer.
const KEEP_WITHIN: Duration = Duration::from_secs(5);

/// The events of one delivery, for `follow`'s loop.
#[derive(Debug, Default)]
pub struct Taken {
    pub agents: Vec<AgentEvent>,
    pub conversations: Vec<ConversationEvent>,
}

struct Shared {
    /// SHA-256 of `user:password`: compared in constant time with the sender's.
    credentials: [u8; 32],
    tz: Tz,
    clock: Clock,
    st: Storage,
    queue: mpsc::Sender<Taken>,
    in_flight: Semaphore,
    seen: Mutex<Seen>,
}

/// The most recent event ids taken in (as 64-bit hashes: a collision only miscounts a
/// delivery as a repeat), oldest first out.
#[derive(Default)]
struct Seen {
    ids: HashSet<u64>,
    order: VecDeque<u64>,
}

impl Seen {
    fn hash(id: &str) -> u64 {
        use std::hash::{BuildHasher, BuildHasherDefault};
        BuildHasherDefault::<rustc_hash::FxHasher>::default().hash_one(id)
    }

    /// Remembers `id`; false when it was already remembered.
    fn insert(&mut self, id: &str) -> bool {
        let h = Self::hash(id);
        if !self.ids.insert(h) {
            return false;
        }
        self.order.push_back(h);
        if self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        true
    }

    fn forget(&mut self, id: &str) {
        let h = Self::hash(id);
        self.ids.remove(&h);
        if let Some(i) = self.order.iter().rposition(|x| *x == h) {
            self.order.remove(i);
        }
    }
}

/// The receiver's routes: `POST path`, everything else 404 (or 405 on the path).
pub fn router(
    w: &WebhookConfig,
    tz: Tz,
    clock: Clock,
    st: Storage,
    queue: mpsc::Sender<Taken>,
) -> Router {
    let shared = Arc::new(Shared {
        credentials: digest(format!("{}:{}", w.user, w.password.expose()).as_bytes()),
        tz,
        clock,
        st,
        queue,
        in_flight: Semaphore::new(MAX_IN_FLIGHT),
        seen: Mutex::default(),
    });
    let path = if w.path.is_empty() { "/" } else { &w.path };
    Router::new()
        .route(path, axum::routing::post(deliver))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(axum::middleware::map_response(close_unless_ok))
        .with_state(shared)
}

/// The limits serve.rs holds connections to.
pub fn limits() -> crate::serve::Limits {
    crate::serve::Limits {
        max_connections: MAX_CONNECTIONS,
        header_timeout: TIMEOUT,
        lifetime: LIFETIME,
    }
}

fn digest(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// Equal digests, in time independent of where they differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the request carries the webhook's Basic credentials.
fn authorized(headers: &HeaderMap, expected: &[u8; 32]) -> bool {
    use base64::Engine;
    let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, token)) = v.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(pair) = base64::engine::general_purpose::STANDARD.decode(token.trim()) else {
        return false;
    };
    same(&digest(&pair), expected)
}

fn answer(status: StatusCode, outcome: &str) -> Response {
    telemetry::webhook_delivery(outcome);
    (status, format!("{{\"outcome\":\"{outcome}\"}}\n")).into_response()
}

/// Anything but a 200 closes the connection: a stranger or a misbehaving sender holds no
/// connection slot beyond its request.
async fn close_unless_ok(mut r: Response) -> Response {
    if r.status() != StatusCode::OK {
        r.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    r
}

async fn deliver(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    if !authorized(&headers, &s.credentials) {
        telemetry::webhook_delivery("unauthorized");
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"gladly-wfm\"")],
            "unauthorized\n",
        )
            .into_response();
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return answer(StatusCode::PAYLOAD_TOO_LARGE, "refused");
    }
    let Ok(_slot) = s.in_flight.try_acquire() else {
        return answer(StatusCode::SERVICE_UNAVAILABLE, "refused");
    };
    let bytes = match tokio::time::timeout(TIMEOUT, read(body)).await {
        Err(_) => return answer(StatusCode::REQUEST_TIMEOUT, "refused"),
        Ok(Err(status)) => return answer(status, "refused"),
        Ok(Ok(b)) => b,
    };
    let (status, outcome) = take(&s, bytes).await;
    answer(status, outcome)
}

/// The body, at most `MAX_BODY` bytes (413 beyond).
async fn read(body: Body) -> Result<Vec<u8>, StatusCode> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| StatusCode::BAD_REQUEST)?;
        if out.len() + chunk.len() > MAX_BODY {
            return Err(StatusCode::PAYLOAD_TOO_LARGE);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// An authenticated delivery: a PING, events for the loop, a repeat, or set aside.
async fn take(s: &Shared, bytes: Vec<u8>) -> (StatusCode, &'static str) {
    let v: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            set_aside(s, None, &bytes, &format!("not JSON: {e}")).await;
            return (StatusCode::OK, "set_aside");
        }
    };
    let id = v["id"].as_str().and_then(safe_id);
    if v["type"] == "PING" {
        log::info(format!(
            "webhook: PING {} answered",
            id.as_deref().unwrap_or("(no usable id)")
        ));
        return (StatusCode::OK, "ping");
    }
    let taken = match decode_one(s, &v) {
        Ok(t) => t,
        Err(why) => {
            set_aside(s, id.as_deref(), &bytes, &why.to_string()).await;
            return (StatusCode::OK, "set_aside");
        }
    };
    // The content-derived event id: the same event from a retry or the Events API has it too.
    let event_id = taken
        .agents
        .first()
        .map(|e| e.event_id.clone())
        .or_else(|| taken.conversations.first().map(|e| e.event_id.clone()))
        .unwrap_or_default();
    if !s.seen.lock().unwrap().insert(&event_id) {
        return (StatusCode::OK, "duplicate");
    }
    match s.queue.try_send(taken) {
        Ok(()) => (StatusCode::OK, "accepted"),
        Err(_) => {
            // The loop is behind (or stopping): Gladly retries, and the poll has it anyway.
            s.seen.lock().unwrap().forget(&event_id);
            (StatusCode::SERVICE_UNAVAILABLE, "refused")
        }
    }
}

/// Why an authenticated delivery cannot be used (it is set aside, and answered 200).
#[derive(Debug, thiserror::Error)]
enum Unusable {
    #[error(transparent)]
    Decode(#[from] decode::DecodeError),
    /// The event's row was set aside by the decoding: an unknown type, a value that cannot be
    /// read or is implausible.
    #[error("{0}")]
    Row(String),
    #[error("not one agent or conversation event")]
    NotOne,
}

/// One delivery decoded as the Events API line it is (the same decoding, so the same
/// `event_id`), or why it carries nothing this pipeline can use.
fn decode_one(s: &Shared, v: &serde_json::Value) -> Result<Taken, Unusable> {
    let now = s.clock.now();
    // A parsed value written back as one line: a pretty-printed body is one event too.
    let line = v.to_string();
    let id = v["id"].as_str().and_then(safe_id);
    let what = format!(
        "webhook delivery {}",
        id.as_deref().unwrap_or("(no usable id)")
    );
    let req = decode::Request::new(what, now - 24 * MS_PER_HOUR, now + 60_000, s.tz);
    let (agents, conversations) = decode::events_jsonl(line.as_bytes(), &req)?;
    if let Some(a) = agents.aside.first().or(conversations.aside.first()) {
        return Err(Unusable::Row(a.reason.clone()));
    }
    if agents.rows.len() + conversations.rows.len() != 1 {
        return Err(Unusable::NotOne);
    }
    Ok(Taken {
        agents: agents.rows,
        conversations: conversations.rows,
    })
}

/// Keeps an unusable delivery's body under `raw/webhook_set_aside/date=DAY/`, counted and
/// logged with its id.
async fn set_aside(s: &Shared, id: Option<&str>, bytes: &[u8], reason: &str) {
    telemetry::set_aside("webhook_unusable", 1);
    let now = s.clock.now();
    let day = time::day_of(s.tz, now);
    let name = match id.filter(|i| {
        !i.is_empty()
            && i.len() <= 100
            && i.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    }) {
        Some(i) => format!("{i}.json"),
        None => format!("sha256-{}.json", &hex(&digest(bytes))[..16]),
    };
    let dir = s.st.root.dir(&format!("{SET_ASIDE}/date={day}"));
    let location = dir.describe(&name);
    let body = bytes.to_vec();
    // Gladly waits 15 s for the answer: a slow store costs the copy, not the delivery.
    let written = tokio::time::timeout(
        KEEP_WITHIN,
        tokio::task::spawn_blocking(move || dir.write(&name, body)),
    )
    .await;
    let kept = match written {
        Ok(Ok(Ok(()))) => format!("kept at {location}"),
        Ok(Ok(Err(e))) => format!("could not be kept: {e}"),
        Ok(Err(e)) => format!("could not be kept: {e}"),
        Err(_) => format!("not kept at {location} within {} s", KEEP_WITHIN.as_secs()),
    };
    log::warn(format!(
        "webhook: delivery {} set aside: {}; {kept}",
        id.unwrap_or("(no usable id)"),
        first_line(reason)
    ));
}

/// A delivery's `id` when it is short and plain (it names a file and goes into log lines).
fn safe_id(id: &str) -> Option<String> {
    let plain = !id.is_empty()
        && id.len() <= 100
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    plain.then(|| id.to_string())
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(300).collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_compared_whole() {
        use base64::Engine;
        let expected = digest(b"gladly:pw");
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            authorized(&h, &expected)
        };
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert!(with(&format!("Basic {}", b64("gladly:pw"))));
        assert!(with(&format!("basic {}", b64("gladly:pw"))));
        assert!(!with(&format!("Basic {}", b64("gladly:pw2"))));
        assert!(!with(&format!("Basic {}", b64("gladly:p"))));
        assert!(!with(&format!("Bearer {}", b64("gladly:pw"))));
        assert!(!with("Basic !!!"));
        assert!(!authorized(&HeaderMap::new(), &expected));
    }

    #[test]
    fn repeated_ids_are_told_and_the_oldest_forgotten() {
        let mut s = Seen::default();
        assert!(s.insert("a"));
        assert!(!s.insert("a"));
        s.forget("a");
        assert!(s.insert("a"));
    }
}
