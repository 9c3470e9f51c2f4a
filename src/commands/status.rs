//! `gladly-wfm status`: completed days per stage, the nightly cursor, the last runs, who holds
//! the lock, and the next fire time.

use chrono::NaiveDate;

use crate::config::Pipeline;
use crate::lock::PipelineLock;
use crate::manifest::Manifest;
use crate::state::PipelineState;

/// `2026-11-01..2026-11-07, 2026-11-09`
pub fn ranges(days: &[NaiveDate]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < days.len() {
        let mut j = i;
        while j + 1 < days.len() && days[j + 1] == days[j] + chrono::Duration::days(1) {
            j += 1;
        }
        out.push(if i == j {
            days[i].to_string()
        } else {
            format!("{}..{}", days[i], days[j])
        });
        i = j + 1;
    }
    if out.is_empty() {
        "none".into()
    } else {
        out.join(", ")
    }
}

pub fn status(p: &Pipeline) -> i32 {
    println!(
        "pipeline {}{}",
        p.name,
        p.description
            .as_ref()
            .map(|d| format!(" — {d}"))
            .unwrap_or_default()
    );
    let root = match p.root() {
        Ok(r) => r,
        Err(e) => {
            println!("output: {e}");
            return 2;
        }
    };
    let state_dir = root.dir(&p.state_rel());
    let state = match PipelineState::load(&state_dir) {
        Ok(s) => s,
        Err(e) => {
            println!("state: {e}");
            return 1;
        }
    };
    println!(
        "nightly cursor: {}",
        state
            .nightly_cursor
            .map(|d| d.to_string())
            .unwrap_or_else(|| "none (first run pending)".into())
    );
    for stage in ["extract", "transform", "load"] {
        let days: Vec<NaiveDate> = state
            .completed
            .get(stage)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        println!("completed {stage:9}: {}", ranges(&days));
    }
    match PipelineLock::holder(&state_dir) {
        Some(h) => println!("lock: held ({})", h.trim()),
        None => println!("lock: free"),
    }
    let runs_dir = root.dir(&p.runs_rel());
    let mut runs: Vec<String> = runs_dir
        .list()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.ends_with(".json"))
        .collect();
    runs.sort();
    println!("last runs:");
    if runs.is_empty() {
        println!("  none");
    }
    for r in runs.iter().rev().take(5) {
        // A manifest that cannot be read is listed by name, not skipped.
        let Some(m) = runs_dir
            .read(r)
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
        else {
            println!("  {r}: unreadable");
            continue;
        };
        println!(
            "  {} {} {} ({} day(s), {} events, {} segments){}",
            m.run_id,
            m.trigger,
            m.outcome,
            m.days_completed.len(),
            m.rows_of("agent_status_events"),
            m.rows_of("agent_status_segments"),
            m.error.map(|e| format!(" — {e}")).unwrap_or_default(),
        );
    }
    follower(p);
    match (&p.schedule, &p.schedule_expr) {
        (Some(s), Some(expr)) => {
            let tz = super::schedule::schedule_timezone(p);
            let next = s
                .upcoming(tz)
                .next()
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "never".into());
            println!("schedule: `{expr}` in {}; next fire {next}", tz.name());
        }
        _ => println!("schedule: none ([schedule] is not set)"),
    }
    0
}

/// The follower's health, when `follow` has run: its cursor, lag and last poll.
fn follower(p: &Pipeline) {
    let fs = match p
        .state_dir()
        .and_then(|d| crate::follow::FollowState::load(&d))
    {
        Ok(fs) if fs.last_poll_at.is_some() => fs,
        Ok(_) => {
            println!("follow: not run");
            return;
        }
        Err(e) => {
            println!("follow: {e}");
            return;
        }
    };
    let ts = |t: Option<i64>| t.map(crate::time::fmt_ts).unwrap_or_else(|| "never".into());
    let secs = |t: Option<i64>| {
        t.map(|l| format!("{:.1} s", l as f64 / 1000.0))
            .unwrap_or_else(|| "unknown".into())
    };
    println!(
        "follow: last poll {}; read up to {}; lag {} (now − newest event landed)",
        ts(fs.last_poll_at),
        ts(fs.polled_to),
        secs(fs.lag_ms)
    );
    let recent = crate::follow::Latency::of(fs.recent_latencies_ms.iter().copied().collect());
    if let Some(l) = recent.as_ref().or(fs.latency.as_ref()) {
        println!(
            "follow: event → WFM acknowledgement p50 {}, p95 {}, max {} (the last {} status changes)",
            secs(Some(l.p50_ms)),
            secs(Some(l.p95_ms)),
            secs(Some(l.max_ms)),
            l.samples
        );
    }
    println!(
        "follow: reconciled through {}",
        fs.reconciled_through
            .map(|d| d.to_string())
            .unwrap_or_else(|| "none yet".into())
    );
}
