//! `gladly-wfm simulate gladly|wfm`: the simulators as stand-alone servers.

use std::path::PathBuf;

use crate::time::{self, Ms};
use gladly_wfm_sim::faults::FaultRates;
use gladly_wfm_sim::generator::{Quirks, WorldConfig};
use gladly_wfm_sim::gladly::{GladlySim, GladlySimConfig};
use gladly_wfm_sim::wfm::{WfmSim, WfmSimConfig};

/// Why a simulator did not start: the option at fault and why.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("--timezone: unknown timezone `{0}`")]
    Timezone(String),
    /// The simulator's own parser said why (as text).
    #[error("--quirks: {0}")]
    Quirks(String),
    /// The simulator's own parser said why (as text).
    #[error("--faults: {0}")]
    Faults(String),
    #[error("--webhook-retry-scale: must be a number from 0")]
    WebhookRetryScale,
    #[error("--dump {}: {source}", dir.display())]
    Dump {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--addr {addr}: {source}")]
    Addr {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Clone, Debug)]
pub struct GladlyArgs {
    pub addr: String,
    /// A live clock: the world's time runs this many times as fast as real time (0: fixed at
    /// `now`, or the real clock without one).
    pub speed: f64,
    pub seed: u64,
    pub agents: usize,
    pub inboxes: usize,
    pub days: u32,
    pub now: Option<Ms>,
    pub faults: String,
    pub user: String,
    pub token: String,
    pub timezone: String,
    pub rps: usize,
    pub reports_per_minute: usize,
    pub reports_in_flight: usize,
    /// How long a `slow` fault holds an answer.
    pub slow_ms: u64,
    pub quirks: String,
    pub pad_reports_mib: u64,
    pub pad_events_mib: u64,
    /// Multiplies the webhook retry intervals.
    pub webhook_retry_scale: f64,
    pub webhook_allow_http: bool,
    pub dump: Option<PathBuf>,
}

pub fn gladly_config(a: &GladlyArgs) -> Result<GladlySimConfig, SimulateError> {
    let timezone =
        time::parse_tz(&a.timezone).ok_or_else(|| SimulateError::Timezone(a.timezone.clone()))?;
    let world = WorldConfig {
        seed: a.seed,
        agents: a.agents,
        inboxes: a.inboxes.max(1),
        days: a.days.max(1),
        timezone,
        now: a.now,
        quirks: Quirks::parse(&a.quirks).map_err(SimulateError::Quirks)?,
    };
    let mut cfg = GladlySimConfig::new(world);
    cfg.user = a.user.clone();
    cfg.token = a.token.clone();
    cfg.rps = a.rps.max(1);
    cfg.reports_per_minute = a.reports_per_minute.max(1);
    cfg.reports_in_flight = a.reports_in_flight.max(1);
    cfg.faults = FaultRates::parse(&a.faults).map_err(SimulateError::Faults)?;
    cfg.slow_ms = a.slow_ms;
    cfg.speed = a.speed;
    cfg.report_padding_bytes = a.pad_reports_mib << 20;
    cfg.events_padding_bytes = a.pad_events_mib << 20;
    if !(a.webhook_retry_scale >= 0.0 && a.webhook_retry_scale.is_finite()) {
        return Err(SimulateError::WebhookRetryScale);
    }
    cfg.webhook_retry_scale = a.webhook_retry_scale;
    cfg.webhook_allow_http = a.webhook_allow_http;
    Ok(cfg)
}

/// Serves until the process is stopped. Prints `listening on http://ADDR` first.
pub async fn run_gladly(a: GladlyArgs) -> Result<(), SimulateError> {
    let cfg = gladly_config(&a)?;
    let sim = GladlySim::new(cfg);
    if let Some(dir) = &a.dump {
        sim.dump(dir).map_err(|source| SimulateError::Dump {
            dir: dir.clone(),
            source,
        })?;
    }
    let addr = sim
        .serve(&a.addr)
        .await
        .map_err(|source| SimulateError::Addr {
            addr: a.addr.clone(),
            source,
        })?;
    crate::say!("listening on http://{addr}");
    wait_for_signal().await;
    Ok(())
}

#[derive(Clone, Debug)]
pub struct WfmArgs {
    pub addr: String,
    pub faults: String,
    pub dump: Option<PathBuf>,
    pub client_id: String,
    pub client_secret: String,
    pub token_ttl: u64,
    pub requests_per_30s: usize,
    pub slow_ms: u64,
    pub log_body_mib: usize,
}

pub async fn run_wfm(a: WfmArgs) -> Result<(), SimulateError> {
    let cfg = WfmSimConfig {
        client_id: a.client_id,
        client_secret: a.client_secret,
        token_ttl_secs: a.token_ttl,
        requests_per_30s: a.requests_per_30s.max(1),
        faults: FaultRates::parse(&a.faults).map_err(SimulateError::Faults)?,
        dump: a.dump,
        slow_ms: a.slow_ms,
        log_body_bytes: a.log_body_mib << 20,
        ..WfmSimConfig::default()
    };
    let sim = WfmSim::new(cfg);
    let addr = sim
        .serve(&a.addr)
        .await
        .map_err(|source| SimulateError::Addr {
            addr: a.addr.clone(),
            source,
        })?;
    crate::say!("listening on http://{addr}");
    wait_for_signal().await;
    Ok(())
}

pub async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
