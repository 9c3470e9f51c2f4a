//! `gladly-wfm status`: completed days per stage, the nightly cursor, the last runs, who holds
//! the lock, and the next fire time.

use chrono::NaiveDate;

use crate::config::Pipeline;
use crate::state::{PipelineLock, PipelineState};

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
        let v: serde_json::Value = runs_dir
            .read(r)
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let rows = |d: &str| {
            v["rows"][d]
                .as_object()
                .map(|m| m.values().filter_map(|x| x.as_u64()).sum::<u64>())
                .unwrap_or(0)
        };
        println!(
            "  {} {} {} ({} day(s), {} events, {} segments){}",
            v["run_id"].as_str().unwrap_or("?"),
            v["trigger"].as_str().unwrap_or("?"),
            v["outcome"].as_str().unwrap_or("?"),
            v["days_completed"].as_array().map(|a| a.len()).unwrap_or(0),
            rows("agent_status_events"),
            rows("agent_status_segments"),
            v["error"]
                .as_str()
                .map(|e| format!(" — {e}"))
                .unwrap_or_default(),
        );
    }
    match (&p.schedule, &p.schedule_expr) {
        (Some(s), Some(expr)) => {
            let tz = p.schedule_timezone();
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
