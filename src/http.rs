//! One rate-limited, retrying HTTP layer shared by the Gladly and the WFM clients.
//!
//! - `SlidingLimiter`: at most N requests in any window (per HTTP method for Gladly; reports get
//!   a 60-second one), waiting rather than being refused.
//! - `execute`: sends, and retries 429 / 5xx / timeouts / cut-off bodies with exponential backoff
//!   and full jitter (or the server's `Retry-After` when it sends one), logging each retry. A
//!   host name that does not resolve and a redirect fail at once. Any other answer goes back to
//!   the caller, who knows what a 401 or a 404 means for its API.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use tokio::time::Instant;

/// A sliding-window limiter: at most `limit` admissions in any `window`.
pub struct SlidingLimiter {
    limit: usize,
    window: Duration,
    sent: Mutex<VecDeque<Instant>>,
}

/// Arrival times at the server differ from send times by the network's and the server's own
/// delays; waiting this much longer than the window keeps the server's count within the limit
/// too: 30 ms on a one-second window, 620 ms on a minute (1% of the window, plus 20 ms).
fn margin(window: Duration) -> Duration {
    window / 100 + Duration::from_millis(20)
}

impl SlidingLimiter {
    pub fn new(limit: u32, window: Duration) -> SlidingLimiter {
        SlidingLimiter {
            limit: limit.max(1) as usize,
            window,
            sent: Mutex::new(VecDeque::new()),
        }
    }

    /// Waits until one more request fits in the window, then records it.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let now = Instant::now();
                let mut sent = self.sent.lock().unwrap();
                while sent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window + margin(self.window))
                {
                    sent.pop_front();
                }
                if sent.len() < self.limit {
                    sent.push_back(now);
                    return;
                }
                (*sent.front().unwrap() + self.window + margin(self.window))
                    .saturating_duration_since(now)
            };
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }
}

/// Counters every client shares with the run manifest.
#[derive(Default, Debug)]
pub struct Stats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub throttled: AtomicU64,
    pub server_errors: AtomicU64,
    pub transport_errors: AtomicU64,
    /// Which API these counters count (`gladly`, `wfm`), for the metrics (telemetry.rs): set
    /// once by the client that uses them; unnamed counters count for the manifest only.
    pub api: std::sync::OnceLock<&'static str>,
}

impl Stats {
    /// Names the API these counters count for the metrics.
    pub fn for_api(&self, api: &'static str) {
        let _ = self.api.set(api);
    }

    /// One attempt answered with `status`, or not answered (`None`).
    fn answered(&self, status: Option<u16>) {
        if let Some(api) = self.api.get() {
            crate::telemetry::http_request(api, status);
        }
    }

    fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        if let Some(api) = self.api.get() {
            crate::telemetry::http_retry(api);
        }
    }

    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "requests": self.requests.load(Ordering::Relaxed),
            "retries": self.retries.load(Ordering::Relaxed),
            "throttled_429": self.throttled.load(Ordering::Relaxed),
            "server_errors_5xx": self.server_errors.load(Ordering::Relaxed),
            "transport_errors": self.transport_errors.load(Ordering::Relaxed),
        })
    }
}

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// Full jitter: a uniform wait in [0, min(cap, base·2^attempt)].
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.base.saturating_mul(1u32 << attempt.min(16));
        let max = exp.min(self.cap);
        max.mul_f64(jitter())
    }
}

fn jitter() -> f64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut s = STATE.load(Ordering::Relaxed);
    if s == 0 {
        s = (std::process::id() as u64) << 32 ^ crate::time::now_ms() as u64 | 1;
    }
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    STATE.store(s, Ordering::Relaxed);
    (s >> 11) as f64 / (1u64 << 53) as f64
}

/// An answer that is final: 2xx, or a 4xx the caller must judge (401, 403, 400, 404, …).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The server's message for an error answer (Gladly `errors[]` or WFM `error`), short.
    pub fn detail(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        let text = if let Some(errs) = v["errors"].as_array() {
            errs.iter()
                .map(|e| {
                    let attr = e["attr"].as_str().unwrap_or("");
                    let d = e["detail"].as_str().unwrap_or("");
                    if attr.is_empty() {
                        d.to_string()
                    } else {
                        format!("{attr}: {d}")
                    }
                })
                .collect::<Vec<_>>()
                .join("; ")
        } else if let Some(m) = v["error"]["message"].as_str() {
            format!("{} ({})", m, v["error"]["code"].as_str().unwrap_or(""))
        } else {
            String::from_utf8_lossy(&self.body)
                .chars()
                .take(200)
                .collect()
        };
        if text.is_empty() {
            format!("HTTP {}", self.status)
        } else {
            format!("HTTP {}: {text}", self.status)
        }
    }
}

/// Why `execute` got no final answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Every attempt failed with something worth retrying.
    #[error("{what}: gave up after {attempts} attempts; last: {last}")]
    Exhausted {
        what: String,
        attempts: u32,
        last: String,
    },
    /// The host name does not resolve: a typo in a base URL, not a passing fault, so no retry.
    #[error("{what}: the host name `{host}` does not resolve ({detail}): check the base_url in the pipeline file")]
    Unresolvable {
        what: String,
        host: String,
        detail: String,
    },
    /// A 3xx: never followed (credentials must not travel to another origin, and Gladly and the
    /// WFM do not redirect their APIs), so the base URL is probably not the API's own origin.
    #[error("{what}: HTTP {status} redirect to {target}: the base_url is not the API's origin (use {target} if that is the right host)")]
    Redirected {
        what: String,
        status: u16,
        target: String,
    },
}

/// The name the clients and their callers knew this error by.
pub type Exhausted = HttpError;

/// A client builder for both APIs: redirects are answers to report, not to follow.
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
}

/// How long a wait is, for log lines.
fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// What a whole answer means for a retry loop: the one classification both loops use.
enum Verdict {
    /// 2xx or a 4xx other than 429: the caller's to read.
    Final,
    /// 429 (waiting out its `Retry-After` when given) or 5xx.
    Retry {
        why: String,
        throttled: bool,
        wait: Option<Duration>,
    },
}

fn classify(answer: &Answer, stats: &Stats) -> Verdict {
    if answer.status == 429 {
        stats.throttled.fetch_add(1, Ordering::Relaxed);
        Verdict::Retry {
            why: answer.detail(),
            throttled: true,
            wait: retry_after(&answer.headers)
                .map(|secs| Duration::from_secs_f64(secs) + Duration::from_millis(50)),
        }
    } else if answer.status >= 500 {
        stats.server_errors.fetch_add(1, Ordering::Relaxed);
        Verdict::Retry {
            why: answer.detail(),
            throttled: false,
            wait: None,
        }
    } else {
        Verdict::Final
    }
}

/// A request that got no answer: retried (`Ok`, why), except a host that does not resolve,
/// which no retry mends.
fn no_answer(what: &str, e: &reqwest::Error, stats: &Stats) -> Result<String, HttpError> {
    stats.transport_errors.fetch_add(1, Ordering::Relaxed);
    if let Some(detail) = dns_failure(e) {
        return Err(HttpError::Unresolvable {
            what: what.to_string(),
            host: e.url().and_then(|u| u.host_str()).unwrap_or("").to_string(),
            detail,
        });
    }
    Ok(transport_message(e))
}

fn redirected(what: &str, resp: &reqwest::Response) -> HttpError {
    HttpError::Redirected {
        what: what.to_string(),
        status: resp.status().as_u16(),
        target: redirect_target(resp),
    }
}

/// Sends the request `build` makes (again on each attempt) until it gets a final answer.
/// `limiters` are acquired before every attempt, so retries respect the rate limits too.
/// Every retry is logged (what failed, attempt n of m, the wait), so a slow or failing server
/// is visible at once rather than after minutes of silence.
pub async fn execute(
    what: &str,
    build: impl Fn() -> reqwest::RequestBuilder,
    limiters: &[&SlidingLimiter],
    policy: &RetryPolicy,
    stats: &Stats,
) -> Result<Answer, HttpError> {
    let mut last = String::new();
    for attempt in 0..policy.max_attempts {
        if attempt > 0 {
            stats.retried();
        }
        for l in limiters {
            l.acquire().await;
        }
        stats.requests.fetch_add(1, Ordering::Relaxed);
        let mut wait = policy.backoff(attempt);
        let mut throttled = false;
        let sent = build().send().await;
        stats.answered(sent.as_ref().ok().map(|r| r.status().as_u16()));
        match sent {
            Err(e) => last = no_answer(what, &e, stats)?,
            Ok(resp) => {
                let status = resp.status().as_u16();
                if resp.status().is_redirection() {
                    return Err(redirected(what, &resp));
                }
                let headers = resp.headers().clone();
                let delimited = delimited(&resp);
                match resp.bytes().await {
                    Err(e) => {
                        // A body cut off mid-way: the whole answer is retried.
                        stats.transport_errors.fetch_add(1, Ordering::Relaxed);
                        last = format!("HTTP {status}, body cut off: {}", transport_message(&e));
                    }
                    // Both APIs answer JSON: one without a length that does not parse ended
                    // where its connection closed, mid-answer.
                    Ok(body)
                        if !delimited
                            && !body.trim_ascii().is_empty()
                            && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() =>
                    {
                        stats.transport_errors.fetch_add(1, Ordering::Relaxed);
                        last = format!(
                            "HTTP {status}, body cut off: the connection closed mid-answer on an answer without a length"
                        );
                    }
                    Ok(body) => {
                        let answer = Answer {
                            status,
                            headers,
                            body,
                        };
                        match classify(&answer, stats) {
                            Verdict::Final => return Ok(answer),
                            Verdict::Retry {
                                why,
                                throttled: t,
                                wait: w,
                            } => {
                                (last, throttled) = (why, t);
                                wait = w.unwrap_or(wait);
                            }
                        }
                    }
                }
            }
        }
        if attempt + 1 < policy.max_attempts {
            log_retry(what, &last, attempt, policy, wait, throttled);
            tokio::time::sleep(wait).await;
        }
    }
    Err(HttpError::Exhausted {
        what: what.to_string(),
        attempts: policy.max_attempts,
        last,
    })
}

/// Where a streamed answer's body goes, and how large it may grow.
pub struct Spool<'a> {
    /// A file the body is written to as it arrives (created or truncated on each attempt).
    pub path: &'a std::path::Path,
    /// Past this many bytes the answer is refused (no retry: the server would send it again).
    pub cap_bytes: u64,
    /// What the body holds: it decides which unterminated last line is a cut.
    pub format: BodyFormat,
}

/// The line-based formats of streamed answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    JsonLines,
    Csv,
}

/// The longest unterminated last line kept to judge whether the body was cut; a longer one is
/// judged cut (no Gladly record comes near it).
const MAX_TAIL: usize = 1 << 20;

/// Tracks the bytes after the body's last newline as chunks arrive.
#[derive(Default)]
struct Tail {
    bytes: Vec<u8>,
    overflow: bool,
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        let rest = match chunk.iter().rposition(|&b| b == b'\n') {
            Some(i) => {
                self.bytes.clear();
                self.overflow = false;
                &chunk[i + 1..]
            }
            None => chunk,
        };
        if self.overflow || self.bytes.len() + rest.len() > MAX_TAIL {
            self.overflow = true;
            self.bytes.clear();
        } else {
            self.bytes.extend_from_slice(rest);
        }
    }

    /// Why a body that ended here was cut short, if it was: a body without a length
    /// (close-delimited) that stops mid-line cannot be told from a closed connection, and a JSON
    /// Lines body whose unterminated last line does not parse was cut whatever its framing.
    /// A cut body is fetched again; nothing of it is decoded.
    fn cut(&self, delimited: bool, format: BodyFormat) -> Option<&'static str> {
        if !self.overflow && self.bytes.trim_ascii().is_empty() {
            return None;
        }
        if !delimited {
            return Some("the connection closed mid-line on an answer without a length");
        }
        let parses = !self.overflow
            && serde_json::from_slice::<serde::de::IgnoredAny>(self.bytes.trim_ascii()).is_ok();
        (format == BodyFormat::JsonLines && !parses)
            .then_some("the last line ends unterminated and does not parse")
    }
}

/// Whether the answer's framing tells where its body ends (a length, chunked encoding, or
/// HTTP/2 frames); without it the body ends where the connection closes, cut or not.
fn delimited(resp: &reqwest::Response) -> bool {
    use reqwest::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
    let chunked = resp.headers().get_all(TRANSFER_ENCODING).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.to_ascii_lowercase().contains("chunked"))
    });
    resp.headers().contains_key(CONTENT_LENGTH)
        || chunked
        || resp.version() >= reqwest::Version::HTTP_2
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Exhausted(#[from] Exhausted),
    #[error("{what}: the answer grew past the cap of {cap_mib} MiB per answer (gladly.max_answer_mib) and was abandoned")]
    TooLarge { what: String, cap_mib: u64 },
    #[error("{what}: cannot spool the answer to {path}: {detail}")]
    Spool {
        what: String,
        path: String,
        detail: String,
    },
}

/// How one streamed attempt ended when it did not give a final answer.
enum Attempt {
    Retry(String),
    Fail(StreamError),
}

/// `execute` for large answers (JSON Lines, CSV): a 2xx body is streamed into `spool.path` as it
/// arrives, never held in memory, and refused past `spool.cap_bytes`; the returned `Answer` has
/// an empty body then. Other answers are read (their first 64 KiB) and classified as `execute`
/// does: 429, 5xx, timeouts and cut-off bodies are retried. `slot` (the reports' in-flight
/// cap) is held for each attempt only, never through a backoff sleep, so a failing request does
/// not keep the other streams waiting.
#[allow(clippy::too_many_arguments)]
pub async fn execute_streamed(
    what: &str,
    build: impl Fn() -> reqwest::RequestBuilder,
    limiters: &[&SlidingLimiter],
    slot: Option<&tokio::sync::Semaphore>,
    policy: &RetryPolicy,
    stats: &Stats,
    spool: &Spool<'_>,
) -> Result<Answer, StreamError> {
    let mut last = String::new();
    for attempt in 0..policy.max_attempts {
        if attempt > 0 {
            stats.retried();
        }
        let mut wait = policy.backoff(attempt);
        let permit = match slot {
            Some(s) => Some(s.acquire().await.expect("semaphore")),
            None => None,
        };
        for l in limiters {
            l.acquire().await;
        }
        stats.requests.fetch_add(1, Ordering::Relaxed);
        let mut throttled = false;
        let sent = build().send().await;
        stats.answered(sent.as_ref().ok().map(|r| r.status().as_u16()));
        let outcome = match sent {
            Err(e) => Attempt::Retry(no_answer(what, &e, stats)?),
            Ok(resp) if resp.status().is_redirection() => {
                return Err(redirected(what, &resp).into());
            }
            Ok(resp) if resp.status().is_success() => {
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                match stream_to(what, resp, spool).await {
                    Ok(()) => {
                        return Ok(Answer {
                            status,
                            headers,
                            body: Bytes::new(),
                        })
                    }
                    Err(Attempt::Retry(why)) => {
                        stats.transport_errors.fetch_add(1, Ordering::Relaxed);
                        Attempt::Retry(format!("HTTP {status}, body cut off: {why}"))
                    }
                    Err(fail) => fail,
                }
            }
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                let mut body = Vec::new();
                let mut cut = None;
                while body.len() < 64 * 1024 {
                    match resp.chunk().await {
                        Ok(Some(c)) => body.extend_from_slice(&c),
                        Ok(None) => break,
                        Err(e) => {
                            cut = Some(transport_message(&e));
                            break;
                        }
                    }
                }
                let answer = Answer {
                    status,
                    headers,
                    body: body.into(),
                };
                match (classify(&answer, stats), cut) {
                    (
                        Verdict::Retry {
                            why,
                            throttled: t,
                            wait: w,
                        },
                        _,
                    ) => {
                        throttled = t;
                        wait = w.unwrap_or(wait);
                        Attempt::Retry(why)
                    }
                    (Verdict::Final, Some(why)) => {
                        stats.transport_errors.fetch_add(1, Ordering::Relaxed);
                        Attempt::Retry(format!("HTTP {status}, body cut off: {why}"))
                    }
                    (Verdict::Final, None) => return Ok(answer),
                }
            }
        };
        drop(permit);
        match outcome {
            Attempt::Retry(why) => last = why,
            Attempt::Fail(e) => return Err(e),
        }
        if attempt + 1 < policy.max_attempts {
            log_retry(what, &last, attempt, policy, wait, throttled);
            tokio::time::sleep(wait).await;
        }
    }
    Err(HttpError::Exhausted {
        what: what.to_string(),
        attempts: policy.max_attempts,
        last,
    }
    .into())
}

/// Writes a body to the spool file chunk by chunk, refusing it past the cap.
async fn stream_to(
    what: &str,
    mut resp: reqwest::Response,
    spool: &Spool<'_>,
) -> Result<(), Attempt> {
    use tokio::io::AsyncWriteExt;
    let spool_err = |e: std::io::Error| {
        Attempt::Fail(StreamError::Spool {
            what: what.to_string(),
            path: spool.path.display().to_string(),
            detail: e.to_string(),
        })
    };
    if let Some(dir) = spool.path.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(spool_err)?;
    }
    let mut file = tokio::fs::File::create(spool.path)
        .await
        .map_err(spool_err)?;
    let delimited = delimited(&resp);
    let mut tail = Tail::default();
    let mut written: u64 = 0;
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                tail.push(&c);
                written += c.len() as u64;
                if written > spool.cap_bytes {
                    return Err(Attempt::Fail(StreamError::TooLarge {
                        what: what.to_string(),
                        cap_mib: spool.cap_bytes.div_ceil(1 << 20),
                    }));
                }
                file.write_all(&c).await.map_err(spool_err)?;
            }
            Ok(None) => break,
            Err(e) => return Err(Attempt::Retry(transport_message(&e))),
        }
    }
    if let Some(why) = tail.cut(delimited, spool.format) {
        return Err(Attempt::Retry(why.to_string()));
    }
    file.flush().await.map_err(spool_err)?;
    Ok(())
}

/// Every retry is a log line: what failed, attempt n of m, the wait.
fn log_retry(
    what: &str,
    last: &str,
    attempt: u32,
    policy: &RetryPolicy,
    wait: Duration,
    throttled: bool,
) {
    let line = format!(
        "{what}: {last}; retry {} of {} in {}",
        attempt + 1,
        policy.max_attempts - 1,
        secs(wait)
    );
    // Throttling is the rate limits doing their job; anything else is a fault.
    if throttled {
        crate::log::info(line);
    } else {
        crate::log::warn(line);
    }
}

/// A name-resolution failure, from the error's chain (reqwest reports it as a connect error).
fn dns_failure(e: &reqwest::Error) -> Option<String> {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    let mut dns = false;
    let mut detail = String::new();
    while let Some(s) = source {
        let text = s.to_string();
        if text.contains("dns error") || text.contains("failed to lookup address") {
            dns = true;
        }
        detail = text;
        source = s.source();
    }
    dns.then_some(detail)
}

/// The origin a redirect points at (scheme, host, port: never the path or query, which may
/// carry tokens).
fn redirect_target(resp: &reqwest::Response) -> String {
    let Some(loc) = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
    else {
        return "an unnamed location (no Location header)".into();
    };
    match resp.url().join(loc) {
        Ok(u) => u.origin().ascii_serialization(),
        Err(_) => "an unreadable Location".into(),
    }
}

fn retry_after(h: &HeaderMap) -> Option<f64> {
    h.get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| *s >= 0.0 && *s < 3600.0)
}

/// A transport error without the URL's credentials or query noise.
fn transport_message(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "body error"
    } else {
        "transport error"
    };
    let url = e
        .url()
        .map(|u| format!("{}{}", u.host_str().unwrap_or(""), u.path()))
        .unwrap_or_default();
    format!("{kind} ({url})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sliding_window_admits_limit_per_window() {
        let l = SlidingLimiter::new(10, Duration::from_secs(1));
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..25 {
            l.acquire().await;
            times.push(start.elapsed());
        }
        // No 11 admissions inside any one-second window.
        for i in 10..times.len() {
            assert!(
                times[i] - times[i - 10] >= Duration::from_secs(1),
                "{times:?}"
            );
        }
        // And no waste: 25 requests need just over two windows.
        assert!(times[24] < Duration::from_millis(2200), "{times:?}");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        for a in 0..20 {
            assert!(p.backoff(a) <= p.cap);
        }
    }

    /// Full jitter: attempt `a` waits a uniform time in [0, min(cap, base·2^a)]: the bound
    /// doubles until the cap, draws fill the range (not always the bound, not always zero).
    #[test]
    fn backoff_is_exponential_with_full_jitter_up_to_the_cap() {
        let p = RetryPolicy {
            max_attempts: 8,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
        };
        for a in 0..10u32 {
            let bound = (p.base * 2u32.pow(a)).min(p.cap);
            let draws: Vec<Duration> = (0..2_000).map(|_| p.backoff(a)).collect();
            assert!(
                draws.iter().all(|d| *d <= bound),
                "attempt {a}: over {bound:?}"
            );
            let max = draws.iter().max().unwrap();
            let mean = draws.iter().sum::<Duration>() / draws.len() as u32;
            assert!(
                *max >= bound.mul_f64(0.95),
                "attempt {a}: reaches its bound"
            );
            assert!(
                mean >= bound.mul_f64(0.4) && mean <= bound.mul_f64(0.6),
                "attempt {a}: uniform in [0, {bound:?}], mean {mean:?}"
            );
        }
    }

    /// A one-shot loopback server: answers each connection with the next canned response.
    async fn canned(answers: Vec<&'static str>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/x", l.local_addr().unwrap());
        tokio::spawn(async move {
            for a in answers {
                let (mut c, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf).await;
                let _ = c.write_all(a.as_bytes()).await;
                let _ = c.shutdown().await;
            }
        });
        url
    }

    /// On a paused clock: a 429's `Retry-After` is waited out exactly (plus a small margin),
    /// not the much shorter backoff; 5xx answers back off within the policy's bounds.
    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_and_5xx_backs_off_on_a_paused_clock() {
        let url = canned(vec![
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        ])
        .await;
        let http = reqwest::Client::builder().build().unwrap();
        let policy = RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(10),
            cap: Duration::from_millis(20),
        };
        let stats = Stats::default();
        let t = Instant::now();
        let a = execute("GET /x", || http.get(&url), &[], &policy, &stats)
            .await
            .unwrap();
        assert_eq!(a.status, 200);
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_secs(7) && waited < Duration::from_millis(7_200),
            "Retry-After: 7 waited {waited:?}"
        );
        assert_eq!(stats.throttled.load(Ordering::Relaxed), 1);

        let url = canned(vec![
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ])
        .await;
        let t = Instant::now();
        let e = execute("GET /x", || http.get(&url), &[], &policy, &stats)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("gave up after 3 attempts"), "{e}");
        // Two waits, each within [0, min(cap, base·2^attempt)].
        assert!(
            t.elapsed() <= Duration::from_millis(20 + 20),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(stats.retries.load(Ordering::Relaxed), 3);
    }
}
