//! gladly-wfm: Gladly workforce data to a WFM tool and to Hive-partitioned Parquet.
//!
//! Data flows one way: `extract` (Gladly API → raw zone) → `transform` (raw zone → curated
//! frames) → `load` (curated Parquet, WFM push). Each stage reads only what the previous one wrote.

// Every printed line goes through the redaction: `say!` / `say_err!` (log.rs), never `println!`.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod audit;
pub mod commands;
pub mod config;
pub mod exit;
pub mod extract;
pub mod follow;
pub mod frames;
pub mod gladly;
pub mod http;
pub mod interrupt;
pub mod load;
pub mod lock;
pub mod log;
pub mod manifest;
pub mod model;
pub mod options;
pub mod ownership;
pub mod pattern;
pub mod pipeline;
pub mod raw;
pub mod report;
pub mod serve;
pub mod service;
pub mod stages;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod time;
pub mod transform;
pub mod webhook;
pub mod wfm;

/// A named point where tests can make the process die or be signalled:
/// `GLADLY_WFM_CRASH_AT=name:N` kills the process with SIGKILL the N-th time the point is
/// reached (to prove that a run killed there resumes cleanly); `GLADLY_WFM_SIGTERM_AT=name:N`
/// sends it SIGTERM there instead, as an operator or an orchestrator would, and carries on (to
/// prove that a run stops at its next safe point). Points: `raw-written`,
/// `partition-temp-written`, `curated-written`, `push-batch`.
pub fn fault_point(name: &str) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static KILL_HITS: AtomicUsize = AtomicUsize::new(0);
    static TERM_HITS: AtomicUsize = AtomicUsize::new(0);
    let hit = |var: &str, hits: &AtomicUsize| -> Option<usize> {
        let spec = std::env::var(var).ok()?;
        let (point, n) = spec.split_once(':')?;
        if point != name {
            return None;
        }
        let hit = hits.fetch_add(1, Ordering::SeqCst) + 1;
        (n.parse::<usize>().ok() == Some(hit)).then_some(hit)
    };
    if let Some(hit) = hit("GLADLY_WFM_CRASH_AT", &KILL_HITS) {
        crate::say_err!("GLADLY_WFM_CRASH_AT: dying at {name} #{hit}");
        // SIGKILL, as an operator's `kill -9` or the OOM killer would: no unwinding, no cleanup.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
    if let Some(hit) = hit("GLADLY_WFM_SIGTERM_AT", &TERM_HITS) {
        crate::say_err!("GLADLY_WFM_SIGTERM_AT: SIGTERM at {name} #{hit}");
        unsafe {
            libc::kill(libc::getpid(), libc::SIGTERM);
        }
    }
}
