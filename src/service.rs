//! `[service] listen` (DESIGN §13): what `follow` and `schedule` serve for an orchestrator and a
//! metrics scraper, on a small bounded HTTP server of their own:
//! - `GET /healthz`: 200 while the service's loop is alive (for `follow`, its last turn began
//!   less than three poll intervals ago; for `schedule`, while the scheduler waits or runs);
//!   it never depends on Gladly or the WFM (a restart would not mend them). 503 otherwise.
//! - `GET /readyz`: 200 once the service is ready (for `follow`: its last poll of Gladly
//!   succeeded), 503 with a one-line JSON reason otherwise, and from the first SIGTERM on.
//! - `GET /metrics`: the Prometheus text exposition (0.0.4) of telemetry.rs.
//!
//! Anything else is a 404. The server is bounded: GET only, no request body read, headers
//! within 5 s, a connection closed after 30 s, at most 32 connections at once (more are closed
//! at once), so a misbehaving client cannot hold the process.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::config::Pipeline;
use crate::exit::Exit;
use crate::log;

/// Connections served at once; one more is closed at once.
const MAX_CONNECTIONS: usize = 32;
/// A client has this long to send its request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// No connection lives longer (a scraper or a probe reconnects).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// `/healthz` never asks for a turn more often than this, whatever the loop's period: a clock
/// run faster than real time (tests, demos) must not make a single slow turn look dead.
const MIN_ALIVE_WITHIN: Duration = Duration::from_secs(10);

/// Why `/readyz` answers 503: its `reason`, and the `service: not ready` log line's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("starting")]
    Starting,
    #[error("shutting down")]
    ShuttingDown,
    /// What the service's loop said (one line).
    #[error("{0}")]
    Said(String),
}

/// Why `/healthz` answers 503: the loop's last turn began too long ago.
#[derive(Debug, thiserror::Error)]
#[error("the loop's last turn began {:.0} s ago (alive within {:.0} s)", .quiet.as_secs_f64(), .max.as_secs_f64())]
pub struct NotAlive {
    quiet: Duration,
    max: Duration,
}

/// What `/healthz` and `/readyz` answer from.
#[derive(Debug)]
pub struct Health {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// When the service's loop last began a turn.
    last_turn: Instant,
    /// Alive while the last turn began less than this long ago; `None`: alive while the
    /// process runs its loop (`schedule`).
    max_quiet: Option<Duration>,
    /// `Err(why)` while not ready.
    ready: Result<(), NotReady>,
    shutting_down: bool,
}

impl Health {
    pub fn new(max_quiet: Option<Duration>) -> Arc<Health> {
        Arc::new(Health {
            state: Mutex::new(State {
                last_turn: Instant::now(),
                max_quiet,
                ready: Err(NotReady::Starting),
                shutting_down: false,
            }),
        })
    }

    /// The service's loop begins a turn.
    pub fn loop_turn(&self) {
        self.state.lock().unwrap().last_turn = Instant::now();
    }

    /// Ready, or not with a reason (one line; redacted where it is answered). A change is
    /// logged, so an operator (and a test) sees when and why.
    pub fn ready(&self, ready: bool, reason: &str) {
        let new = if ready {
            Ok(())
        } else {
            Err(NotReady::Said(
                reason.lines().next().unwrap_or("").to_string(),
            ))
        };
        let mut s = self.state.lock().unwrap();
        if s.ready == new {
            return;
        }
        match &new {
            Ok(()) => log::info("service: ready"),
            Err(r) => log::warn(format!("service: not ready: {r}")),
        }
        s.ready = new;
    }

    /// From the first SIGTERM (or SIGINT) on, `/readyz` answers 503.
    pub fn shutting_down(&self) {
        let mut s = self.state.lock().unwrap();
        if !s.shutting_down {
            s.shutting_down = true;
            drop(s);
            log::info("service: shutting down: /readyz answers 503");
        }
    }

    /// `Err(why)` when the loop is not alive.
    pub fn alive(&self) -> Result<(), NotAlive> {
        let s = self.state.lock().unwrap();
        match s.max_quiet {
            Some(max) if s.last_turn.elapsed() >= max => Err(NotAlive {
                quiet: s.last_turn.elapsed(),
                max,
            }),
            _ => Ok(()),
        }
    }

    /// `Err(why)` when not ready.
    pub fn readiness(&self) -> Result<(), NotReady> {
        let s = self.state.lock().unwrap();
        if s.shutting_down {
            return Err(NotReady::ShuttingDown);
        }
        s.ready.clone()
    }
}

/// The running service of a long-running command, or nothing without `[service]`: its
/// methods are then no-ops, so the command's loop calls them either way.
pub struct Service {
    health: Option<Arc<Health>>,
    /// Stops serving when dropped.
    _server: Option<crate::serve::Stopper>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Gladly polls failed in a row, for `/readyz`'s reason.
    failed_polls: u32,
}

impl Drop for Service {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Service {
    /// No endpoint.
    pub fn none() -> Service {
        Service {
            health: None,
            _server: None,
            tasks: Vec::new(),
            failed_polls: 0,
        }
    }

    /// Starts serving when the pipeline has `[service]`: for `follow`, `alive_within` is three
    /// poll intervals (at least 10 s); `schedule` passes `None`. A listener that cannot be bound is an error
    /// (said here; a usage error: the address is the file's).
    pub async fn start(p: &Pipeline, alive_within: Option<Duration>) -> Result<Service, Exit> {
        let Some(cfg) = &p.service else {
            return Ok(Service::none());
        };
        crate::telemetry::init();
        let health = Health::new(alive_within.map(|d| d.max(MIN_ALIVE_WITHIN)));
        let listener = match tokio::net::TcpListener::bind(cfg.listen).await {
            Ok(l) => l,
            Err(e) => {
                log::error(format!(
                    "{}: service.listen: cannot listen on {}: {e}",
                    p.file.display(),
                    cfg.listen
                ));
                return Err(Exit::Usage);
            }
        };
        let addr = listener.local_addr().unwrap_or(cfg.listen);
        log::info(format!(
            "service listening on http://{addr} (/healthz, /readyz, /metrics)"
        ));
        let server = crate::serve::spawn(
            listener,
            router(health.clone()),
            crate::serve::Limits {
                max_connections: MAX_CONNECTIONS,
                header_timeout: HEADER_TIMEOUT,
                lifetime: CONNECTION_LIFETIME,
            },
            None,
        );
        let h = health.clone();
        let signals = tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            h.shutting_down();
        });
        Ok(Service {
            health: Some(health),
            _server: Some(server),
            tasks: vec![signals],
            failed_polls: 0,
        })
    }

    /// The health handle, when serving.
    pub fn health(&self) -> Option<&Arc<Health>> {
        self.health.as_ref()
    }

    /// The loop begins a turn.
    pub fn loop_turn(&self) {
        if let Some(h) = &self.health {
            h.loop_turn();
        }
    }

    /// Ready, or not with a reason.
    pub fn ready(&self, ready: bool, reason: &str) {
        if let Some(h) = &self.health {
            h.ready(ready, reason);
        }
    }

    /// Stopping: `/readyz` answers 503 from now on.
    pub fn shutting_down(&self) {
        if let Some(h) = &self.health {
            h.shutting_down();
        }
    }

    /// A poll succeeded: ready.
    pub fn poll_ok(&mut self) {
        self.failed_polls = 0;
        self.ready(true, "");
    }

    /// A poll failed; `gladly` when the failure was Gladly's (then not ready, saying how many
    /// polls in a row failed and the last error).
    pub fn poll_failed(&mut self, gladly: bool, error: &str) {
        if !gladly {
            return;
        }
        self.failed_polls += 1;
        let n = self.failed_polls;
        let polls = if n == 1 { "poll" } else { "polls" };
        self.ready(false, &format!("gladly: {n} {polls} failed: {error}"));
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

/// The routes, for the server and for tests.
pub fn router(health: Arc<Health>) -> Router {
    let h1 = health.clone();
    let h2 = health;
    Router::new()
        .route(
            "/healthz",
            get(move || async move {
                match h1.alive() {
                    Ok(()) => json(StatusCode::OK, serde_json::json!({"alive": true})),
                    Err(r) => json(
                        StatusCode::SERVICE_UNAVAILABLE,
                        serde_json::json!({"alive": false, "reason": log::redact(&r.to_string())}),
                    ),
                }
            }),
        )
        .route(
            "/readyz",
            get(move || async move {
                match h2.readiness() {
                    Ok(()) => json(StatusCode::OK, serde_json::json!({"ready": true})),
                    Err(r) => json(
                        StatusCode::SERVICE_UNAVAILABLE,
                        serde_json::json!({"ready": false, "reason": log::redact(&r.to_string())}),
                    ),
                }
            }),
        )
        .route(
            "/metrics",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, crate::telemetry::CONTENT_TYPE)],
                    crate::telemetry::encode(),
                )
            }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(axum::extract::DefaultBodyLimit::max(1024))
}

/// The address a `service listening on http://ADDR` log line names.
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    line.split("service listening on http://")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_turns_and_readiness() {
        let h = Health::new(Some(Duration::from_millis(50)));
        assert!(h.alive().is_ok());
        assert_eq!(h.readiness(), Err(NotReady::Starting));
        h.ready(true, "");
        assert!(h.readiness().is_ok());
        h.ready(false, "gladly: 1 poll failed: x\nsecond line");
        assert_eq!(
            h.readiness(),
            Err(NotReady::Said("gladly: 1 poll failed: x".into()))
        );
        h.ready(true, "");
        h.shutting_down();
        assert_eq!(h.readiness(), Err(NotReady::ShuttingDown));
        assert_eq!(NotReady::ShuttingDown.to_string(), "shutting down");
        std::thread::sleep(Duration::from_millis(60));
        let why = h.alive().unwrap_err().to_string();
        assert!(
            why.starts_with("the loop's last turn began 0 s ago (alive within 0 s)"),
            "{why}"
        );
        h.loop_turn();
        assert!(h.alive().is_ok());
        let always = Health::new(None);
        std::thread::sleep(Duration::from_millis(60));
        assert!(always.alive().is_ok());
    }

    #[test]
    fn the_listening_line_names_the_address() {
        assert_eq!(
            listening_addr("t INFO  service listening on http://127.0.0.1:4567 (/healthz, …)"),
            Some("127.0.0.1:4567".parse().unwrap())
        );
    }
}
