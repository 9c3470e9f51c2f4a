//! `gladly-wfm audit`: re-checks processed days against Gladly's `AgentSummaryV2`, fetched
//! again (reports are revised), and exits 1 when an agent-day drifts beyond the tolerance, for
//! alerting (DESIGN §3, §14). It reads the curated segments and writes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;
use chrono_tz::Tz;

use crate::audit::{self, AuditDay, AuditRow};
use crate::config::Pipeline;
use crate::exit::Exit;
use crate::gladly::decode::{self, Request};
use crate::gladly::{GladlyClient, GladlyError};
use crate::http::Stats;
use crate::stages::{self, StageError, Startup};
use crate::state::PipelineState;
use crate::storage::Storage;
use crate::time::{self, Ms};
use crate::transform::datasets::{self as ds, Emails};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error(transparent)]
    Gladly(#[from] GladlyError),
    #[error("{0}")]
    State(String),
}

impl AuditError {
    fn exit(&self) -> Exit {
        match self {
            AuditError::Usage(_) => Exit::Usage,
            AuditError::Stage(e) => e.exit(),
            AuditError::Gladly(e) => e.exit(),
            AuditError::State(_) => Exit::Failed,
        }
    }
}

/// What the command was asked: the days (both or neither), and the clock.
pub struct AuditArgs {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub now: Ms,
}

/// Runs the command: done when no agent-day drifts, failed when one does (or the command
/// failed), usage, or refused credentials.
pub async fn audit(p: &Pipeline, args: &AuditArgs) -> Exit {
    match audit_days(p, args).await {
        Ok(drifting) => Exit::failed_if(drifting > 0),
        Err(e) => {
            crate::say_err!("gladly-wfm audit: {e}");
            e.exit()
        }
    }
}

/// Audits the days and prints each; the number of drifting agent-days.
async fn audit_days(p: &Pipeline, args: &AuditArgs) -> Result<usize, AuditError> {
    if args.from.is_some() != args.to.is_some() {
        return Err(AuditError::Usage("--from and --to go together".into()));
    }
    let s = Startup::open(p, true, false)?;
    let state = PipelineState::load(&s.state_dir).map_err(|e| AuditError::State(e.to_string()))?;
    let tz = stages::timezone(p.timezone, None, state.org_timezone.as_deref())?;
    let days = days_to_audit(p, &state, tz, args)?;
    if days.is_empty() {
        crate::say!("audit: no complete processed day to audit");
        return Ok(0);
    }
    let gladly = GladlyClient::new(&p.gladly, Arc::new(Stats::default()));
    let emails = ds::emails(&stages::newest_agents(&s.st)?);
    let mut drifting = 0;
    for day in days {
        let (a, rows) = match fetch_and_compare(p, &s.st, &gladly, tz, day, &emails).await {
            Ok(x) => x,
            Err(e @ AuditError::Gladly(GladlyError::Auth { .. })) => return Err(e),
            Err(e) => (AuditDay::not_audited(e.to_string()), Vec::new()),
        };
        crate::say!("audit {day}: {}", a.describe());
        for r in rows.iter().filter(|r| !r.within_tolerance) {
            crate::say!(
                "  {} {}: logged in {:+.3} s, active {:+.3} s{}",
                if r.drifts() { "drift" } else { "known" },
                r.agent_id,
                r.logged_in_diff(),
                r.active_diff(),
                r.note.map(|n| format!(" ({n})")).unwrap_or_default()
            );
        }
        drifting += a.drifting;
    }
    Ok(drifting)
}

/// The explicit range (each day must have been processed), or the newest complete processed
/// day.
fn days_to_audit(
    p: &Pipeline,
    state: &PipelineState,
    tz: Tz,
    args: &AuditArgs,
) -> Result<Vec<NaiveDate>, AuditError> {
    let processed = state
        .completed
        .get("transform")
        .cloned()
        .unwrap_or_default();
    let complete =
        |d: NaiveDate| audit::complete(time::day_end(tz, d), args.now, p.report_lag_minutes);
    let (Some(from), Some(to)) = (args.from, args.to) else {
        return Ok(processed
            .into_iter()
            .rev()
            .find(|&d| complete(d))
            .into_iter()
            .collect());
    };
    if from > to {
        return Err(AuditError::Usage(format!(
            "--from {from} is after --to {to}"
        )));
    }
    let days = time::days_between(from, to);
    if let Some(d) = days
        .iter()
        .find(|d| !processed.contains(d) || !complete(**d))
    {
        return Err(AuditError::Usage(format!(
            "{d} is not a complete processed day: run it first (audit compares what a run wrote)"
        )));
    }
    Ok(days)
}

/// Fetches the day's summary again and compares it with the day's curated segments.
async fn fetch_and_compare(
    p: &Pipeline,
    st: &Storage,
    gladly: &GladlyClient,
    tz: Tz,
    day: NaiveDate,
    emails: &Emails,
) -> Result<(AuditDay, Vec<AuditRow>), AuditError> {
    let (start, end) = (time::day_start(tz, day), time::day_end(tz, day));
    let body = gladly
        .agent_summary(tz, (day, day), "daily", &st.temp_dir())
        .await?;
    let req = Request::new(format!("AgentSummaryV2 {day}"), start, end, tz);
    let reader = body.open().map_err(|e| AuditError::State(e.to_string()))?;
    let decoded =
        decode::agent_summary_csv(reader, &req).map_err(|e| AuditError::State(e.to_string()))?;
    decoded
        .verify()
        .map_err(|e| AuditError::State(e.to_string()))?;
    if decoded.rows.is_empty() {
        return Ok((
            AuditDay::not_audited(format!("Gladly's AgentSummaryV2 for {day} is empty")),
            Vec::new(),
        ));
    }
    let df = stages::curated_frame(st, ds::AGENT_STATUS_SEGMENTS, day)?;
    let segs = ds::segments_in(&df).map_err(|e| AuditError::State(format!("{day}: {e}")))?;
    let mut ours = BTreeMap::new();
    for s in &segs {
        audit::add_segment(
            &mut ours,
            start,
            s.agent_id,
            s.axis,
            s.state,
            (s.start_at, s.end_at),
        );
    }
    let first = audit::first_in_raw_zone(st, day, p.lookback_days).map_err(StageError::from)?;
    let cx = audit::Context {
        tolerance: &p.audit,
        emails,
        first_in_raw_zone: first,
    };
    let rows = audit::compare(&ours, &decoded.rows, &cx);
    Ok((AuditDay::of(&rows), rows))
}
