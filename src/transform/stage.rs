//! The transform stage: one business day's curated datasets from the raw zone. A pure function
//! of the raw zone and the pipeline file; the run carries each stream's state from one day to
//! the next (and rebuilds it from the look-back days when it starts).

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use chrono_tz::Tz;

use super::datasets::{self as ds, Emails, Unmatched};
use super::segments::Segment;
use super::segments::{advance_state, carry_newest, day_segments_and_newest, StartState};
use super::workstreams::{self as wsd, ConvStates, InboxMap};
use crate::audit::{self, AuditDay};
use crate::config::Pipeline;
use crate::model::InboxDim;
use crate::raw;
use crate::storage::{Staged, Storage, StorageError};
use crate::time::{self, Ms};

#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Failed(String),
}

fn frame_err(what: String) -> impl FnOnce(polars::prelude::PolarsError) -> TransformError {
    move |e| TransformError::Failed(format!("{what}: {e}"))
}

/// What transforming a day produced, merged into the run's tally by the run's task.
#[derive(Default)]
pub struct DayOut {
    pub rows: Vec<(&'static str, NaiveDate, usize)>,
    pub unmatched_labels: Unmatched,
    pub unknown_inboxes: BTreeMap<String, u64>,
    /// The day's audit (DESIGN §14), when `[audit]` is on and the day was transformed whole.
    pub audit: Option<(NaiveDate, AuditDay)>,
    /// The day's partitions written but not yet visible: committed together (`commit`).
    staged: Vec<Staged>,
}

impl DayOut {
    pub fn merge(&mut self, other: DayOut) {
        self.rows.extend(other.rows);
        for (k, n) in other.unmatched_labels {
            *self.unmatched_labels.entry(k).or_default() += n;
        }
        for (k, n) in other.unknown_inboxes {
            *self.unknown_inboxes.entry(k).or_default() += n;
        }
        self.staged.extend(other.staged);
        if other.audit.is_some() {
            self.audit = other.audit;
        }
    }
}

/// What the day's audit reads besides the raw zone: our segments of the day, and why its
/// extraction could not land Gladly's summary, if so.
struct AuditInput<'s, 'a> {
    segs: &'s [Segment<'a>],
    emails: &'s Emails,
    /// The state at the day's start was carried from the day before, transformed in this run.
    carried: bool,
    not_audited: Option<String>,
}

/// A day's audit summary, and its staged partition with its rows when it was compared.
type AuditOut = (AuditDay, Option<(Staged, usize)>);

pub struct Transformer<'a> {
    pub p: &'a Pipeline,
    pub st: &'a Storage,
    pub tz: Tz,
    /// Days that end after this are incomplete: their open segments keep a null end.
    pub now: Ms,
}

impl<'a> Transformer<'a> {
    /// `now`: days that end after it are incomplete.
    pub fn new(p: &'a Pipeline, st: &'a Storage, tz: Tz, now: Ms) -> Transformer<'a> {
        Transformer { p, st, tz, now }
    }
}

impl Transformer<'_> {
    /// The state of every agent and axis at the start of `day`, from the look-back days.
    pub fn start_state(&self, day: NaiveDate) -> Result<StartState, TransformError> {
        let mut st = StartState::default();
        for k in (1..=self.p.lookback_days as i64).rev() {
            if let Some(evs) = raw::read_agent_events(self.st, day - Duration::days(k))? {
                advance_state(&mut st, &evs);
            }
        }
        Ok(st)
    }

    /// Makes what `out` staged for `day` visible together (storage::commit).
    fn commit(&self, day: NaiveDate, mut out: DayOut) -> Result<DayOut, TransformError> {
        self.st.commit_day(day, std::mem::take(&mut out.staged))?;
        Ok(out)
    }

    /// `agent_status_events` and `agent_status_segments` of one day, staged. `carry`: the
    /// agents' states at the end of the day before, if that was the last day transformed;
    /// replaced by this day's.
    fn stage_agents(
        &self,
        day: NaiveDate,
        emails: &Emails,
        carry: &mut Option<(NaiveDate, StartState)>,
        not_audited: Option<String>,
    ) -> Result<DayOut, TransformError> {
        let tz = self.tz;
        let carried = matches!(carry, Some((d, _)) if *d + Duration::days(1) == day);
        let evs = raw::read_agent_events(self.st, day)?.ok_or_else(|| {
            TransformError::Failed(format!(
                "day {day} has no raw agent events: run the extract stage for it first"
            ))
        })?;
        let mut prior = match carry.take() {
            Some((d, s)) if d + Duration::days(1) == day => s,
            _ => self.start_state(day)?,
        };
        // Only the last `lookback_days` calendar days count as the state at the start of a day.
        let oldest = day - Duration::days(self.p.lookback_days as i64);
        prior.retain(|_, e| time::day_of(tz, e.recorded_at) >= oldest);
        let (start, end) = (time::day_start(tz, day), time::day_end(tz, day));
        let complete = end <= self.now;
        let mut unmatched = Unmatched::new();
        let mut df = ds::events_frame(&evs, emails, &self.p.tasks, &mut unmatched)
            .map_err(frame_err(format!("agent_status_events {day}")))?;
        let events = self
            .st
            .stage_partition(ds::AGENT_STATUS_EVENTS, day, &mut df)?;
        drop(df);
        let (segs, newest) = day_segments_and_newest(start, end, complete, &evs, &prior);
        let mut df = ds::segments_frame(&segs, emails, &self.p.tasks)
            .map_err(frame_err(format!("agent_status_segments {day}")))?;
        let segments = self
            .st
            .stage_partition(ds::AGENT_STATUS_SEGMENTS, day, &mut df)?;
        drop(df);
        let mut out = DayOut {
            rows: vec![
                (ds::AGENT_STATUS_EVENTS, day, evs.len()),
                (ds::AGENT_STATUS_SEGMENTS, day, segs.len()),
            ],
            unmatched_labels: unmatched,
            staged: vec![events, segments],
            ..Default::default()
        };
        let audited = AuditInput {
            segs: &segs,
            emails,
            carried,
            not_audited,
        };
        if let Some((a, staged)) = self.stage_audit(day, audited)? {
            if let Some((staged, n)) = staged {
                out.staged.push(staged);
                out.rows.push((audit::AGENT_DAY_AUDIT, day, n));
            }
            out.audit = Some((day, a));
        }
        crate::fault_point("curated-written");
        carry_newest(&mut prior, &newest);
        *carry = Some((day, prior));
        Ok(out)
    }

    /// The day's `agent_day_audit`, staged, and its summary; `None` with `[audit]` off. A day
    /// that cannot be audited (incomplete, no summary) stages nothing and says why.
    fn stage_audit(
        &self,
        day: NaiveDate,
        a: AuditInput,
    ) -> Result<Option<AuditOut>, TransformError> {
        if !self.p.audit.enabled {
            return Ok(None);
        }
        let not = |why: String| Ok(Some((AuditDay::not_audited(why), None)));
        let (start, end) = (time::day_start(self.tz, day), time::day_end(self.tz, day));
        if !audit::complete(end, self.now, self.p.report_lag_minutes) {
            return not(format!(
                "incomplete (Gladly's summary is complete report_lag_minutes = {} after the day)",
                self.p.report_lag_minutes
            ));
        }
        if let Some(why) = a.not_audited {
            return not(why);
        }
        let Some(gladly) = audit::read_summary(self.st, day)? else {
            return not("no AgentSummaryV2 in the raw zone: run the extract stage for it".into());
        };
        let mut ours = BTreeMap::new();
        for s in a.segs {
            let span = (s.start_at, s.end_at);
            audit::add_segment(
                &mut ours,
                start,
                s.agent_id,
                s.axis,
                s.opened_by.state(),
                span,
            );
        }
        // A day after one transformed in this run has its look-back in the raw zone.
        let first = !a.carried && audit::first_in_raw_zone(self.st, day, self.p.lookback_days)?;
        let cx = audit::Context {
            tolerance: &self.p.audit,
            emails: a.emails,
            first_in_raw_zone: first,
        };
        let rows = audit::compare(&ours, &gladly, &cx);
        let mut df =
            audit::audit_frame(&rows).map_err(frame_err(format!("agent_day_audit {day}")))?;
        let staged = self
            .st
            .stage_partition(audit::AGENT_DAY_AUDIT, day, &mut df)?;
        Ok(Some((AuditDay::of(&rows), Some((staged, rows.len())))))
    }

    /// All of a day's curated datasets, visible together: the agent half on this thread, the
    /// conversations and work sessions on another (the two read disjoint raw datasets).
    pub fn transform_all(
        &self,
        day: NaiveDate,
        emails: &Emails,
        inboxes: &[InboxDim],
        carry: &mut Option<(NaiveDate, StartState)>,
        conv_carry: &mut Option<(NaiveDate, ConvStates)>,
        not_audited: Option<String>,
    ) -> Result<DayOut, TransformError> {
        let (agents, work) = std::thread::scope(|sc| {
            let work = sc.spawn(|| -> Result<DayOut, TransformError> {
                let mut out = self.stage_conversations(day, inboxes, Some(conv_carry))?;
                out.merge(self.stage_work(day, inboxes)?);
                Ok(out)
            });
            let agents = self.stage_agents(day, emails, carry, not_audited);
            (
                agents,
                work.join().unwrap_or_else(|_| {
                    Err(TransformError::Failed(format!(
                        "conversations {day}: the transform thread panicked"
                    )))
                }),
            )
        });
        let mut out = agents?;
        out.merge(work?);
        self.commit(day, out)
    }

    /// Today's agent and conversation datasets for `follow` (work sessions come on their own
    /// cadence: `transform_work`), visible together.
    pub fn transform_live(
        &self,
        day: NaiveDate,
        emails: &Emails,
        inboxes: &[InboxDim],
        carry: &mut Option<(NaiveDate, StartState)>,
    ) -> Result<DayOut, TransformError> {
        let mut out = self.stage_agents(day, emails, carry, None)?;
        out.merge(self.stage_conversations(day, inboxes, None)?);
        self.commit(day, out)
    }

    /// The day's `conversations`, staged. `carry`: the states the day before left, replaced by
    /// this day's; `None` when nothing is carried (`follow`'s today).
    fn stage_conversations(
        &self,
        day: NaiveDate,
        inboxes: &[InboxDim],
        mut carry: Option<&mut Option<(NaiveDate, ConvStates)>>,
    ) -> Result<DayOut, TransformError> {
        let carried = carry.as_mut().and_then(|c| c.take());
        let mut state = match carried {
            Some((d, s)) if d + Duration::days(1) == day => s,
            _ => {
                let mut s = ConvStates::default();
                for k in (1..=self.p.lookback_days as i64).rev() {
                    let d = day - Duration::days(k);
                    if let Some(e) = raw::read_conversation_events(self.st, d)? {
                        wsd::advance_states(&mut s, d, &e);
                    }
                }
                s
            }
        };
        let evs = raw::read_conversation_events(self.st, day)?.ok_or_else(|| {
            TransformError::Failed(format!(
                "day {day} has no raw conversation events: run the extract stage for it first"
            ))
        })?;
        let oldest = day - Duration::days(self.p.lookback_days as i64);
        state.forget_before(oldest);
        let mut map = InboxMap::new(inboxes, &self.p.workstreams);
        let rows = wsd::conversations_day(day, &evs, &mut state, &mut map);
        drop(evs);
        if let Some(carry) = carry {
            *carry = Some((day, state));
        }
        let mut df =
            wsd::conversations_frame(&rows).map_err(frame_err(format!("conversations {day}")))?;
        let staged = self.st.stage_partition(wsd::CONVERSATIONS, day, &mut df)?;
        Ok(DayOut {
            rows: vec![(wsd::CONVERSATIONS, day, rows.len())],
            unknown_inboxes: map.unknown,
            staged: vec![staged],
            ..Default::default()
        })
    }

    /// Curated `work_sessions` and `workstream_intervals` of one day from the raw zone, visible
    /// together (a day redone for its work sessions alone: its other datasets do not change).
    pub fn transform_work(
        &self,
        day: NaiveDate,
        inboxes: &[InboxDim],
    ) -> Result<DayOut, TransformError> {
        let out = self.stage_work(day, inboxes)?;
        self.commit(day, out)
    }

    fn stage_work(&self, day: NaiveDate, inboxes: &[InboxDim]) -> Result<DayOut, TransformError> {
        let ws = raw::read_work_sessions(self.st, day)?.unwrap_or_default();
        let mut map = InboxMap::new(inboxes, &self.p.workstreams);
        let mut df = wsd::work_sessions_frame(&ws, &mut map)
            .map_err(frame_err(format!("work_sessions {day}")))?;
        let sessions = self.st.stage_partition(wsd::WORK_SESSIONS, day, &mut df)?;
        let rows = wsd::intervals(&ws, &mut map, self.p.interval_minutes);
        let mut df = wsd::intervals_frame(&rows)
            .map_err(frame_err(format!("workstream_intervals {day}")))?;
        let intervals = self
            .st
            .stage_partition(wsd::WORKSTREAM_INTERVALS, day, &mut df)?;
        Ok(DayOut {
            rows: vec![
                (wsd::WORK_SESSIONS, day, ws.len()),
                (wsd::WORKSTREAM_INTERVALS, day, rows.len()),
            ],
            unknown_inboxes: map.unknown,
            staged: vec![sessions, intervals],
            ..Default::default()
        })
    }
}
