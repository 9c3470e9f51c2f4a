//! `gladly-wfm status`: completed days per stage, the nightly cursor, the last runs, who holds
//! the lock, and the next fire time.

use chrono::NaiveDate;

use crate::config::Pipeline;
use crate::exit::Exit;
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

/// Prints the pipeline's state as of `now` (the clock, or `--now`).
pub fn status(p: &Pipeline, now: crate::time::Ms) -> Exit {
    crate::say!(
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
            crate::say_err!("gladly-wfm: output.root: {e}");
            return Exit::Usage;
        }
    };
    let state_dir = root.dir(&p.state_rel());
    let state = match PipelineState::load(&state_dir) {
        Ok(s) => s,
        Err(e) => {
            crate::say_err!("gladly-wfm: state: {e}");
            return Exit::Failed;
        }
    };
    crate::say!(
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
        crate::say!("completed {stage:9}: {}", ranges(&days));
    }
    match PipelineLock::holder(&state_dir) {
        Some(h) => crate::say!("lock: held ({})", h.trim()),
        None => crate::say!("lock: free"),
    }
    let runs_dir = root.dir(&p.runs_rel());
    let mut runs: Vec<String> = runs_dir
        .list()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.ends_with(".json"))
        .collect();
    runs.sort();
    audit_line(&runs_dir, &runs);
    crate::say!("last runs:");
    if runs.is_empty() {
        crate::say!("  none");
    }
    for r in runs.iter().rev().take(5) {
        // A manifest that cannot be read is listed by name, not skipped.
        let Some(m) = runs_dir
            .read(r)
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
        else {
            crate::say!("  {r}: unreadable");
            continue;
        };
        crate::say!(
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
    follower(p, now);
    match (&p.schedule, &p.schedule_expr) {
        (Some(s), Some(expr)) => {
            let tz = super::schedule::schedule_timezone(p);
            let next = s
                .upcoming(tz)
                .next()
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "never".into());
            crate::say!("schedule: `{expr}` in {}; next fire {next}", tz.name());
        }
        _ => crate::say!("schedule: none ([schedule] is not set)"),
    }
    Exit::Done
}

/// The newest audited day of the newest run that audited any (DESIGN §14).
fn audit_line(runs_dir: &crate::storage::Dir, runs: &[String]) {
    let newest = runs.iter().rev().find_map(|r| {
        let m: Manifest = serde_json::from_slice(&runs_dir.read(r).ok()??).ok()?;
        m.audit
            .iter()
            .rev()
            .find(|(_, a)| a.not_audited.is_none())
            .map(|(d, a)| (d.clone(), a.clone(), m.run_id.clone()))
    });
    match newest {
        Some((day, a, run)) => {
            crate::say!("audit: {day}: {} (run {run})", a.describe())
        }
        None => crate::say!("audit: no day audited yet"),
    }
}

/// A duration for people: `8.5 s`, `8.5 min`, `3.2 h`.
fn human(ms: i64) -> String {
    let s = ms as f64 / 1000.0;
    if s < 90.0 {
        format!("{s:.1} s")
    } else if s < 90.0 * 60.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// The follower's health, when `follow` has run, as of `now`: the lag now (not the one stored at
/// its last poll, which a failing follower never updates), when its last poll succeeded, and
/// whether it is failing and why.
fn follower(p: &Pipeline, now: crate::time::Ms) {
    let fs = match p
        .state_dir()
        .and_then(|d| crate::follow::FollowState::load(&d))
    {
        Ok(fs) if fs.last_poll_at.is_some() || fs.last_failure_at.is_some() => fs,
        Ok(_) => {
            crate::say!("follow: not run");
            return;
        }
        Err(e) => {
            crate::say!("follow: {e}");
            return;
        }
    };
    let ts = |t: Option<i64>| t.map(crate::time::fmt_ts).unwrap_or_else(|| "never".into());
    let secs = |t: Option<i64>| {
        t.map(|l| format!("{:.1} s", l as f64 / 1000.0))
            .unwrap_or_else(|| "unknown".into())
    };
    let ago = |t: Option<i64>| {
        t.map(|t| format!(" ({} ago)", human((now - t).max(0))))
            .unwrap_or_default()
    };
    crate::say!(
        "follow: last poll {}{}; read up to {}; lag {} as of now (now − newest event landed)",
        ts(fs.last_poll_at),
        ago(fs.last_poll_at),
        ts(fs.polled_to),
        fs.newest_event
            .map(|t| human((now - t).max(0)))
            .unwrap_or_else(|| "unknown".into())
    );
    if let (Some(at), Some(why)) = (fs.last_failure_at, &fs.last_error) {
        crate::say!(
            "follow: FAILING: {} poll(s) in a row failed, the last at {}{}: {why}",
            fs.failures_since_ok,
            crate::time::fmt_ts(at),
            ago(Some(at))
        );
    }
    let recent = crate::follow::Latency::of(fs.recent_latencies_ms.iter().copied().collect());
    if let Some(l) = recent.as_ref().or(fs.latency.as_ref()) {
        crate::say!(
            "follow: event → WFM acknowledgement p50 {}, p95 {}, max {} (the last {} status changes)",
            secs(Some(l.p50_ms)),
            secs(Some(l.p95_ms)),
            secs(Some(l.max_ms)),
            l.samples
        );
    }
    if let Some(w) = &fs.webhook {
        crate::say!(
            "follow: webhook {} {} at {}{}",
            w.url,
            if w.enabled { "enabled" } else { "DISABLED" },
            crate::time::fmt_ts(w.looked_at),
            w.switched_off_at
                .as_deref()
                .map(|t| format!("; Gladly last switched it off after failed deliveries at {t}"))
                .unwrap_or_default()
        );
    }
    crate::say!(
        "follow: reconciled through {}",
        fs.reconciled_through
            .map(|d| d.to_string())
            .unwrap_or_else(|| "none yet".into())
    );
}
