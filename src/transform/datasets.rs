//! Curated datasets (DESIGN §7): records to frames with the documented columns, sorted by key.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;

use polars::prelude::PolarsResult;

use super::labels::Labeler;
use super::rules::first_match;
use super::segments::Segment;
use crate::config::Rule;
use crate::frames::{DataFrame, FrameBuilder, FrameReader, Need};
use crate::model::{normalize_email, AgentDim, AgentEvent, Axis, InboxDim, State};
use crate::time::Ms;

pub const AGENTS: &str = "agents";
pub const INBOXES: &str = "inboxes";
pub const AGENT_STATUS_EVENTS: &str = "agent_status_events";
pub const AGENT_STATUS_SEGMENTS: &str = "agent_status_segments";

/// agent id → normalised e-mail, from the newest agents snapshot.
pub type Emails = HashMap<String, String>;

pub fn emails(agents: &[AgentDim]) -> Emails {
    agents
        .iter()
        .filter_map(|a| Some((a.agent_id.clone(), normalize_email(a.email.as_deref()?))))
        .collect()
}

pub fn agents_frame(agents: &[AgentDim], snapshot_at: Ms) -> PolarsResult<DataFrame> {
    let mut a: Vec<&AgentDim> = agents.iter().collect();
    a.sort_by(|x, y| x.agent_id.cmp(&y.agent_id));
    let norm: Vec<Option<String>> = a
        .iter()
        .map(|x| x.email.as_deref().map(normalize_email))
        .collect();
    FrameBuilder::new(a.len())
        .str("agent_id", a.iter().map(|x| Some(x.agent_id.as_str())))
        .str("name", a.iter().map(|x| x.name.as_deref()))
        .str("email", a.iter().map(|x| x.email.as_deref()))
        .str("email_normalized", norm.iter().map(|x| x.as_deref()))
        .list_str("team_ids", a.iter().map(|x| Some(x.team_ids.as_slice())))
        .ts("snapshot_at", a.iter().map(|_| Some(snapshot_at)))
        .finish()
}

/// The workstream an inbox maps to: first rule matching its id or its name, whole.
pub fn inbox_workstream<'a>(rules: &'a [Rule], inbox: &InboxDim) -> Option<&'a str> {
    let mut c = vec![inbox.inbox_id.as_str()];
    if let Some(n) = &inbox.name {
        c.push(n);
    }
    first_match(rules, &c).map(|i| rules[i].name.as_str())
}

pub fn inboxes_frame(
    inboxes: &[InboxDim],
    rules: &[Rule],
    snapshot_at: Ms,
) -> PolarsResult<DataFrame> {
    let mut a: Vec<&InboxDim> = inboxes.iter().collect();
    a.sort_by(|x, y| x.inbox_id.cmp(&y.inbox_id));
    FrameBuilder::new(a.len())
        .str("inbox_id", a.iter().map(|x| Some(x.inbox_id.as_str())))
        .str("name", a.iter().map(|x| x.name.as_deref()))
        .bool("disabled", a.iter().map(|x| Some(x.disabled)))
        .str("workstream", a.iter().map(|x| inbox_workstream(rules, x)))
        .ts("snapshot_at", a.iter().map(|_| Some(snapshot_at)))
        .finish()
}

/// Counts of labels no task rule matched, for the manifest and `check`.
pub type Unmatched = BTreeMap<String, u64>;

/// `agent_status_events` for a day: every event with its label and task, sorted by `event_id`.
pub fn events_frame(
    evs: &[AgentEvent],
    emails: &Emails,
    rules: &[Rule],
    unmatched: &mut Unmatched,
) -> PolarsResult<DataFrame> {
    let mut sorted: Vec<&AgentEvent> = evs.iter().collect();
    sorted.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    let mut labeler = Labeler::new(rules);
    let ids: Vec<u32> = sorted.iter().map(|e| labeler.id(e)).collect();
    let mut per_id = vec![0u64; labeler.distinct()];
    for &i in &ids {
        per_id[i as usize] += 1;
    }
    for (i, n) in per_id.into_iter().enumerate() {
        if n > 0 && labeler.task(i as u32).is_none() {
            *unmatched
                .entry(labeler.label(i as u32).to_string())
                .or_default() += n;
        }
    }
    FrameBuilder::new(sorted.len())
        .str("event_id", sorted.iter().map(|e| Some(e.event_id.as_str())))
        .str("event_type", sorted.iter().map(|e| Some(e.kind.as_str())))
        .str("agent_id", sorted.iter().map(|e| Some(e.agent_id.as_str())))
        .str(
            "agent_email",
            sorted
                .iter()
                .map(|e| emails.get(&e.agent_id).map(String::as_str)),
        )
        .ts("occurred_at", sorted.iter().map(|e| Some(e.occurred_at)))
        .ts("recorded_at", sorted.iter().map(|e| Some(e.recorded_at)))
        .str(
            "away_reason",
            sorted.iter().map(|e| e.away_reason.as_deref()),
        )
        .str(
            "active_reason",
            sorted.iter().map(|e| e.active_reason.as_deref()),
        )
        .list_str(
            "available_for",
            sorted.iter().map(|e| e.available_for.as_deref()),
        )
        .str("label", ids.iter().map(|&i| Some(labeler.label(i))))
        .str("task", ids.iter().map(|&i| labeler.task(i)))
        .str("source", sorted.iter().map(|e| Some(e.source.as_str())))
        .finish()
}

/// `agent_status_segments` for a day (segments arrive sorted by key).
pub fn segments_frame(
    segs: &[Segment],
    emails: &Emails,
    rules: &[Rule],
) -> PolarsResult<DataFrame> {
    let mut labeler = Labeler::new(rules);
    let ids: Vec<u32> = segs.iter().map(|s| labeler.id(s.opened_by)).collect();
    FrameBuilder::new(segs.len())
        .str("agent_id", segs.iter().map(|s| Some(s.agent_id)))
        .str(
            "agent_email",
            segs.iter()
                .map(|s| emails.get(s.agent_id).map(String::as_str)),
        )
        .str("axis", segs.iter().map(|s| Some(s.axis.as_str())))
        .str(
            "state",
            segs.iter().map(|s| Some(s.opened_by.state().as_str())),
        )
        .str("label", ids.iter().map(|&i| Some(labeler.label(i))))
        .str("task", ids.iter().map(|&i| labeler.task(i)))
        .ts("start_at", segs.iter().map(|s| Some(s.start_at)))
        .ts("end_at", segs.iter().map(|s| s.end_at))
        .f64(
            "duration_seconds",
            segs.iter()
                .map(|s| s.end_at.map(|e| (e - s.start_at) as f64 / 1000.0)),
        )
        .str(
            "opened_by",
            segs.iter().map(|s| Some(s.opened_by.event_id.as_str())),
        )
        .finish()
}

/// A segment piece read back from the curated dataset (what the WFM push sends), its strings
/// owned (`String`, the default) or borrowed from the frame it was read from (`&str`).
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentRow<S = String> {
    pub agent_id: S,
    pub agent_email: Option<S>,
    pub axis: Axis,
    pub state: State,
    pub label: S,
    pub task: Option<S>,
    pub start_at: Ms,
    pub end_at: Option<Ms>,
    pub opened_by: S,
}

pub fn segments_from(df: &DataFrame) -> PolarsResult<Vec<SegmentRow>> {
    segment_rows_of(df, str::to_string)
}

/// The rows borrowing their strings from `df`: what the load turns into request bodies while
/// it sends the day before, with no copy of a day's strings (the load alone peaked ~5 MiB lower).
pub fn segments_in(df: &DataFrame) -> PolarsResult<Vec<SegmentRow<&str>>> {
    segment_rows_of(df, |v| v)
}

fn segment_rows_of<'a, S>(
    df: &'a DataFrame,
    own: impl Fn(&'a str) -> S,
) -> PolarsResult<Vec<SegmentRow<S>>> {
    let r = FrameReader(df);
    // Borrowed columns, each value copied at most once into its row (not into a column of
    // Strings first and cloned from there).
    // Every column of a frame has its height, so each iterator gives one value per row.
    let owned = |v: Option<Option<&'a str>>| v.flatten().map(&own);
    let (mut a, mut e, mut ax, mut st, mut l, mut t, mut o) = (
        r.strs("agent_id")?,
        r.strs("agent_email")?,
        r.strs("axis")?,
        r.strs("state")?,
        r.strs("label")?,
        r.strs("task")?,
        r.strs("opened_by")?,
    );
    let (s, en) = (r.ts("start_at")?, r.ts("end_at")?);
    (0..r.height())
        .map(|i| {
            let n = Need(i);
            Ok(SegmentRow {
                agent_id: n.some("agent_id", owned(a.next()))?,
                agent_email: owned(e.next()),
                axis: n.parsed("axis", ax.next().flatten(), Axis::parse)?,
                state: n.parsed("state", st.next().flatten(), State::parse)?,
                label: n.some("label", owned(l.next()))?,
                task: owned(t.next()),
                start_at: n.some("start_at", s[i])?,
                end_at: en[i],
                opened_by: n.some("opened_by", owned(o.next()))?,
            })
        })
        .collect()
}
