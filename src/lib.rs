//! gladly-wfm: Gladly workforce data to a WFM tool and to Hive-partitioned Parquet.
//!
//! Data flows one way: `extract` (Gladly API → raw zone) → `transform` (raw zone → curated
//! frames) → `load` (curated Parquet, WFM push). Each stage reads only what the previous one wrote.

pub mod commands;
pub mod config;
pub mod extract;
pub mod frames;
pub mod gladly;
pub mod http;
pub mod interrupt;
pub mod lease_lock;
pub mod load;
pub mod log;
pub mod manifest;
pub mod model;
pub mod pipeline;
pub mod raw;
pub mod sim;
pub mod state;
pub mod storage;
pub mod time;
pub mod transform;
pub mod wfm;

/// A named point where tests can make the process die (`GLADLY_WFM_CRASH_AT=name:N` kills the
/// process with SIGKILL the N-th time the point is reached), to prove that a run killed there
/// resumes cleanly. Points: `raw-written`, `partition-temp-written`, `curated-written`, `push-batch`.
pub fn fault_point(name: &str) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static HITS: AtomicUsize = AtomicUsize::new(0);
    let Ok(spec) = std::env::var("GLADLY_WFM_CRASH_AT") else {
        return;
    };
    let Some((point, n)) = spec.split_once(':') else {
        return;
    };
    if point == name {
        let hit = HITS.fetch_add(1, Ordering::SeqCst) + 1;
        if n.parse::<usize>().ok() == Some(hit) {
            eprintln!("GLADLY_WFM_CRASH_AT: dying at {name} #{hit}");
            // SIGKILL, as an operator's `kill -9` or the OOM killer would: no unwinding, no cleanup.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
}
