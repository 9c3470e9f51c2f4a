//! The audit (DESIGN §14): each agent's logged-in and active seconds of a day from our
//! `agent_status_segments` against Gladly's own `AgentSummaryV2`, with a tolerance, and a note
//! naming a known cause where there is one.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use polars::prelude::PolarsResult;
use serde::{Deserialize, Serialize};

use crate::config::AuditConfig;
use crate::frames::{DataFrame, FrameBuilder, FrameReader, Need};
use crate::model::{Axis, State};
use crate::storage::{Storage, StorageError};
use crate::time::Ms;

/// The raw zone's copy of Gladly's daily summaries.
pub const RAW_AGENT_SUMMARY: &str = "raw/agent_summary";
/// The curated dataset of the comparison.
pub const AGENT_DAY_AUDIT: &str = "agent_day_audit";

pub const NOTE_FIRST_DAY: &str = "no state at midnight: first day in the raw zone";
pub const NOTE_UNKNOWN_AGENT: &str = "agent not in /agents";
pub const NOTE_ONLY_GLADLY: &str = "only in Gladly's summary";

/// How many of a day's largest differences the manifest keeps.
const WORST: usize = 5;

/// One row of Gladly's summary, as decoded and as kept in the raw zone.
#[derive(Clone, Debug, PartialEq)]
pub struct SummaryRow {
    pub agent_id: String,
    pub email: Option<String>,
    /// `Time Bucket` as Gladly wrote it (`2026-11-24` daily).
    pub time_bucket: String,
    pub logged_in_seconds: f64,
    pub active_seconds: f64,
}

pub fn summary_frame(rows: &[SummaryRow]) -> PolarsResult<DataFrame> {
    FrameBuilder::new(rows.len())
        .str("agent_id", rows.iter().map(|r| Some(r.agent_id.as_str())))
        .str("email", rows.iter().map(|r| r.email.as_deref()))
        .str(
            "time_bucket",
            rows.iter().map(|r| Some(r.time_bucket.as_str())),
        )
        .f64(
            "logged_in_seconds",
            rows.iter().map(|r| Some(r.logged_in_seconds)),
        )
        .f64(
            "active_seconds",
            rows.iter().map(|r| Some(r.active_seconds)),
        )
        .finish()
}

pub fn summary_from(df: &DataFrame) -> PolarsResult<Vec<SummaryRow>> {
    let r = FrameReader(df);
    let (a, e, b) = (r.str("agent_id")?, r.str("email")?, r.str("time_bucket")?);
    let (l, ac) = (r.f64("logged_in_seconds")?, r.f64("active_seconds")?);
    (0..r.height())
        .map(|i| {
            let n = Need(i);
            Ok(SummaryRow {
                agent_id: n.some("agent_id", a[i].clone())?,
                email: e[i].clone(),
                time_bucket: n.some("time_bucket", b[i].clone())?,
                logged_in_seconds: n.some("logged_in_seconds", l[i])?,
                active_seconds: n.some("active_seconds", ac[i])?,
            })
        })
        .collect()
}

/// The day's summary from the raw zone; `None` when none was landed.
pub fn read_summary(st: &Storage, day: NaiveDate) -> Result<Option<Vec<SummaryRow>>, StorageError> {
    match st.read_partition(RAW_AGENT_SUMMARY, day)? {
        None => Ok(None),
        Some(df) => summary_from(&df)
            .map(Some)
            .map_err(|e| StorageError::new(st.partition_location(RAW_AGENT_SUMMARY, day), e)),
    }
}

/// Our side of one agent-day.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ours {
    pub logged_in_ms: Ms,
    pub active_ms: Ms,
    /// A status segment starts at the day's start: a state was carried over midnight.
    pub state_at_midnight: bool,
}

/// Adds one status-axis segment piece (`[start, end)`, end known) to its agent's figures:
/// logged in while `active` or `away`, active while `active`.
pub fn add_segment<'a>(
    ours: &mut BTreeMap<&'a str, Ours>,
    day_start: Ms,
    agent: &'a str,
    axis: Axis,
    state: State,
    (start, end): (Ms, Option<Ms>),
) {
    if axis != Axis::Status {
        return;
    }
    let o = ours.entry(agent).or_default();
    o.state_at_midnight |= start == day_start;
    let Some(end) = end else { return };
    match state {
        State::Active => {
            o.logged_in_ms += end - start;
            o.active_ms += end - start;
        }
        State::Away => o.logged_in_ms += end - start,
        _ => {}
    }
}

/// One row of `agent_day_audit`.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditRow {
    pub agent_id: String,
    pub agent_email: Option<String>,
    pub logged_in_seconds: f64,
    pub gladly_logged_in_seconds: f64,
    pub active_seconds: f64,
    pub gladly_active_seconds: f64,
    pub within_tolerance: bool,
    pub note: Option<&'static str>,
}

impl AuditRow {
    pub fn logged_in_diff(&self) -> f64 {
        self.logged_in_seconds - self.gladly_logged_in_seconds
    }
    pub fn active_diff(&self) -> f64 {
        self.active_seconds - self.gladly_active_seconds
    }
    /// The larger of the two differences, unsigned.
    fn size(&self) -> f64 {
        self.logged_in_diff().abs().max(self.active_diff().abs())
    }
    /// Outside the tolerance with no cause that explains a shortfall: what `audit` alerts on.
    pub fn drifts(&self) -> bool {
        !self.within_tolerance && self.note != Some(NOTE_FIRST_DAY)
    }
}

/// What the comparison knows besides the two sides.
pub struct Context<'a> {
    pub tolerance: &'a AuditConfig,
    /// agent id → normalised e-mail, from the newest `/agents` snapshot.
    pub emails: &'a crate::transform::datasets::Emails,
    /// The look-back days before this one hold no raw agent events.
    pub first_in_raw_zone: bool,
}

/// `|diff| ≤ max(tolerance_seconds, tolerance_percent % of Gladly's)`.
fn within(t: &AuditConfig, diff: f64, gladly: f64) -> bool {
    diff.abs()
        <= t.tolerance_seconds
            .max(t.tolerance_percent / 100.0 * gladly.abs())
}

/// One row per agent with logged-in time on either side, sorted by agent id. `gladly` holds
/// the day's summary rows (several rows of an agent add up).
pub fn compare(ours: &BTreeMap<&str, Ours>, gladly: &[SummaryRow], cx: &Context) -> Vec<AuditRow> {
    let mut theirs: BTreeMap<&str, (f64, f64, Option<&str>)> = BTreeMap::new();
    for r in gladly {
        let t = theirs.entry(&r.agent_id).or_default();
        t.0 += r.logged_in_seconds;
        t.1 += r.active_seconds;
        t.2 = t.2.or(r.email.as_deref());
    }
    let agents: std::collections::BTreeSet<&str> = ours
        .iter()
        .filter(|(_, o)| o.logged_in_ms > 0)
        .map(|(a, _)| *a)
        .chain(theirs.keys().copied())
        .collect();
    agents
        .into_iter()
        .map(|agent| {
            let o = ours.get(agent).cloned().unwrap_or_default();
            let (gl, ga, gmail) = theirs.get(agent).copied().unwrap_or_default();
            let mut row = AuditRow {
                agent_id: agent.to_string(),
                agent_email: cx
                    .emails
                    .get(agent)
                    .cloned()
                    .or_else(|| gmail.map(crate::model::normalize_email)),
                logged_in_seconds: o.logged_in_ms as f64 / 1000.0,
                gladly_logged_in_seconds: gl,
                active_seconds: o.active_ms as f64 / 1000.0,
                gladly_active_seconds: ga,
                within_tolerance: false,
                note: None,
            };
            row.within_tolerance = within(cx.tolerance, row.logged_in_diff(), gl)
                && within(cx.tolerance, row.active_diff(), ga);
            row.note = note(&row, &o, cx);
            row
        })
        .collect()
}

/// The known cause of a difference, the most specific first.
fn note(row: &AuditRow, o: &Ours, cx: &Context) -> Option<&'static str> {
    let short = row.logged_in_diff() < 0.0 || row.active_diff() < 0.0;
    if !row.within_tolerance && short && cx.first_in_raw_zone && !o.state_at_midnight {
        return Some(NOTE_FIRST_DAY);
    }
    if !cx.emails.contains_key(&row.agent_id) {
        return Some(NOTE_UNKNOWN_AGENT);
    }
    if row.logged_in_seconds == 0.0 && row.gladly_logged_in_seconds > 0.0 {
        return Some(NOTE_ONLY_GLADLY);
    }
    None
}

pub fn audit_frame(rows: &[AuditRow]) -> PolarsResult<DataFrame> {
    FrameBuilder::new(rows.len())
        .str("agent_id", rows.iter().map(|r| Some(r.agent_id.as_str())))
        .str("agent_email", rows.iter().map(|r| r.agent_email.as_deref()))
        .f64(
            "logged_in_seconds",
            rows.iter().map(|r| Some(r.logged_in_seconds)),
        )
        .f64(
            "gladly_logged_in_seconds",
            rows.iter().map(|r| Some(r.gladly_logged_in_seconds)),
        )
        .f64(
            "active_seconds",
            rows.iter().map(|r| Some(r.active_seconds)),
        )
        .f64(
            "gladly_active_seconds",
            rows.iter().map(|r| Some(r.gladly_active_seconds)),
        )
        .f64(
            "logged_in_diff_seconds",
            rows.iter().map(|r| Some(r.logged_in_diff())),
        )
        .f64(
            "active_diff_seconds",
            rows.iter().map(|r| Some(r.active_diff())),
        )
        .bool(
            "within_tolerance",
            rows.iter().map(|r| Some(r.within_tolerance)),
        )
        .str("note", rows.iter().map(|r| r.note))
        .finish()
}

/// `agent_day_audit` read back (the report page); a note this version does not know reads as
/// none.
pub fn audit_from(df: &DataFrame) -> PolarsResult<Vec<AuditRow>> {
    let r = FrameReader(df);
    let (a, e, n) = (r.str("agent_id")?, r.str("agent_email")?, r.str("note")?);
    let f = |c: &str| r.f64(c);
    let (l, gl, ac, ga) = (
        f("logged_in_seconds")?,
        f("gladly_logged_in_seconds")?,
        f("active_seconds")?,
        f("gladly_active_seconds")?,
    );
    let w = r.bool("within_tolerance")?;
    let known = [NOTE_FIRST_DAY, NOTE_UNKNOWN_AGENT, NOTE_ONLY_GLADLY];
    (0..r.height())
        .map(|i| {
            let need = Need(i);
            Ok(AuditRow {
                agent_id: need.some("agent_id", a[i].clone())?,
                agent_email: e[i].clone(),
                logged_in_seconds: l[i].unwrap_or(0.0),
                gladly_logged_in_seconds: gl[i].unwrap_or(0.0),
                active_seconds: ac[i].unwrap_or(0.0),
                gladly_active_seconds: ga[i].unwrap_or(0.0),
                within_tolerance: need.some("within_tolerance", w[i])?,
                note: n[i]
                    .as_deref()
                    .and_then(|x| known.iter().find(|k| **k == x).copied()),
            })
        })
        .collect()
}

/// One of a day's largest differences, for the manifest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Worst {
    pub agent_id: String,
    pub logged_in_diff_seconds: f64,
    pub active_diff_seconds: f64,
    pub note: Option<String>,
}

/// A day's audit as the manifest, `status` and the report page show it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditDay {
    /// Set when the day could not be audited, with why (`compared` is then 0).
    pub not_audited: Option<String>,
    pub compared: usize,
    pub within: usize,
    /// Outside the tolerance with no cause that explains it.
    pub drifting: usize,
    /// Outside the tolerance, explained by a note (the first day in the raw zone).
    pub explained: usize,
    /// The largest differences outside the tolerance, largest first (at most five).
    pub worst: Vec<Worst>,
}

impl AuditDay {
    pub fn not_audited(reason: impl Into<String>) -> AuditDay {
        AuditDay {
            not_audited: Some(reason.into()),
            ..Default::default()
        }
    }

    pub fn of(rows: &[AuditRow]) -> AuditDay {
        let mut off: Vec<&AuditRow> = rows.iter().filter(|r| !r.within_tolerance).collect();
        off.sort_by(|a, b| b.size().total_cmp(&a.size()));
        AuditDay {
            not_audited: None,
            compared: rows.len(),
            within: rows.iter().filter(|r| r.within_tolerance).count(),
            drifting: rows.iter().filter(|r| r.drifts()).count(),
            explained: rows
                .iter()
                .filter(|r| !r.within_tolerance && !r.drifts())
                .count(),
            worst: off
                .into_iter()
                .take(WORST)
                .map(|r| Worst {
                    agent_id: r.agent_id.clone(),
                    logged_in_diff_seconds: r.logged_in_diff(),
                    active_diff_seconds: r.active_diff(),
                    note: r.note.map(str::to_string),
                })
                .collect(),
        }
    }

    /// `42 agent-days, 41 within, 1 drifting`, or `not audited: why`.
    pub fn describe(&self) -> String {
        match &self.not_audited {
            Some(why) => format!("not audited: {why}"),
            None => format!(
                "{} agent-day(s), {} within tolerance, {} drifting{}",
                self.compared,
                self.within,
                self.drifting,
                match self.explained {
                    0 => String::new(),
                    n => format!(", {n} explained by a note"),
                }
            ),
        }
    }
}

/// Whether a day can be audited at `now`: it ended, and Gladly's summary (which lags) has had
/// `lag_minutes` to catch up.
pub fn complete(day_end: Ms, now: Ms, lag_minutes: u32) -> bool {
    day_end + lag_minutes as Ms * 60_000 <= now
}

/// The look-back days before `day` hold no raw agent events (so no agent can carry a state
/// into it).
pub fn first_in_raw_zone(
    st: &Storage,
    day: NaiveDate,
    lookback_days: u32,
) -> Result<bool, StorageError> {
    let oldest = day - chrono::Duration::days(lookback_days as i64);
    Ok(!st
        .partitions(crate::raw::AGENT_EVENTS)?
        .into_iter()
        .any(|d| d >= oldest && d < day))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(agent: &str, li: f64, ac: f64) -> SummaryRow {
        SummaryRow {
            agent_id: agent.into(),
            email: Some(format!("{agent}@x.com")),
            time_bucket: "2026-11-02".into(),
            logged_in_seconds: li,
            active_seconds: ac,
        }
    }

    #[test]
    fn tolerance_notes_and_the_worst() {
        let t = AuditConfig::default();
        let emails: crate::transform::datasets::Emails = ["a", "b", "c"]
            .iter()
            .map(|a| (a.to_string(), format!("{a}@x.com")))
            .collect();
        let mut ours = BTreeMap::new();
        let o = |l: Ms, a: Ms, m: bool| Ours {
            logged_in_ms: l,
            active_ms: a,
            state_at_midnight: m,
        };
        // 10 h: 0.5 % is 180 s, more than 60 s.
        ours.insert("a", o(36_000_000 - 170_000, 30_000_000, true));
        ours.insert("b", o(3_600_000, 3_600_000, false));
        ours.insert("z", o(1_000, 1_000, false));
        let gladly = vec![
            row("a", 36_000.0, 30_000.0),
            row("b", 7_200.0, 7_200.0),
            row("c", 100.0, 100.0),
        ];
        let cx = Context {
            tolerance: &t,
            emails: &emails,
            first_in_raw_zone: true,
        };
        let rows = compare(&ours, &gladly, &cx);
        let ids: Vec<&str> = rows.iter().map(|r| r.agent_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c", "z"]);
        assert!(rows[0].within_tolerance && rows[0].note.is_none());
        assert_eq!(rows[0].logged_in_diff(), -170.0);
        assert_eq!(
            (rows[1].within_tolerance, rows[1].note),
            (false, Some(NOTE_FIRST_DAY))
        );
        assert_eq!(rows[2].note, Some(NOTE_FIRST_DAY));
        assert_eq!(
            (rows[3].within_tolerance, rows[3].note),
            (true, Some(NOTE_UNKNOWN_AGENT))
        );
        let day = AuditDay::of(&rows);
        assert_eq!(
            (day.compared, day.within, day.drifting, day.explained),
            (4, 2, 0, 2)
        );
        assert_eq!(day.worst[0].agent_id, "b");
        let later = Context {
            first_in_raw_zone: false,
            ..cx
        };
        let rows = compare(&ours, &gladly, &later);
        assert_eq!(rows[2].note, Some(NOTE_ONLY_GLADLY));
        assert_eq!(AuditDay::of(&rows).drifting, 2);
    }
}
