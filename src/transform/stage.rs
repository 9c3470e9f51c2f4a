//! The transform stage: one business day's curated datasets from the raw zone. A pure function
//! of the raw zone and the pipeline file; the run carries each stream's state from one day to
//! the next (and rebuilds it from the look-back days when it starts).

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use chrono_tz::Tz;

use super::datasets::{self as ds, Emails, Unmatched};
use super::segments::{advance_state, carry_newest, day_segments_and_newest, StartState};
use super::workstreams::{self as wsd, ConvStates, InboxMap, SpilledConvStates};
use crate::config::Pipeline;
use crate::model::{AgentEvent, InboxDim};
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
    }
}

/// A day's raw agent events, read (decoded) before its transform: a run whose raw zone is
/// already landed reads the next day's on a thread of their own while this day is transformed
/// (`RawDay::read`). `Default` reads nothing ahead: the stage reads them itself. (Conversation
/// events are not read ahead: see `pipeline::ReadAhead`.)
#[derive(Default)]
pub struct RawDay {
    /// `None`: not read ahead; `Some(None)`: read, and the day has no partition.
    agents: Option<Option<Vec<AgentEvent>>>,
}

impl RawDay {
    /// The day's agent events, as the agent stage would read them.
    pub fn read(st: &Storage, day: NaiveDate) -> Result<RawDay, TransformError> {
        Ok(RawDay {
            agents: Some(raw::read_agent_events(st, day)?),
        })
    }
}

pub struct Transformer<'a> {
    pub p: &'a Pipeline,
    pub st: &'a Storage,
    pub tz: Tz,
    /// Days that end after this are incomplete: their open segments keep a null end.
    pub now: Ms,
}

/// Held while a day's carried states are rebuilt from its look-back days (a run's first day,
/// which is every day of a nightly run): the agent half reads a week of agent events and the
/// conversation half a week of conversation events, each day's whole file as typed records.
/// Side by side the two reads were a nightly run's peak; one after the other, each is beside
/// the other half's lighter work (the last day re-run in a 10-day root, 3 pairs: 103 MiB
/// against 107-108, wall 4.82-4.89 against 4.68-4.94 s; the day's landing peaks at 82-83).
fn rebuilding_from_lookback() -> std::sync::MutexGuard<'static, ()> {
    static LOOKBACK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // Nothing is guarded but the order of the reads: a poisoned lock is as good.
    LOOKBACK.lock().unwrap_or_else(|e| e.into_inner())
}

impl Transformer<'_> {
    /// The state of every agent and axis at the start of `day`, from the look-back days.
    pub fn start_state(&self, day: NaiveDate) -> Result<StartState, TransformError> {
        let _one_at_a_time = rebuilding_from_lookback();
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

    /// `agent_status_events` and `agent_status_segments` of one day, staged; the two are built
    /// and written on two threads.
    fn stage_agents(
        &self,
        day: NaiveDate,
        ahead: Option<Option<Vec<AgentEvent>>>,
        emails: &Emails,
        carry: &mut Option<(NaiveDate, StartState)>,
        conversations_done: Option<std::sync::mpsc::Receiver<()>>,
    ) -> Result<DayOut, TransformError> {
        let tz = self.tz;
        let evs = match ahead {
            Some(read) => read,
            None => raw::read_agent_events(self.st, day)?,
        };
        let evs = evs.ok_or_else(|| {
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
        let mut out = DayOut::default();
        // The frames are built once the conversation half is done (or has failed): see
        // `transform_all`. The events thread waits for that and passes it on by
        // dropping `go`, while this thread computes the segments (with no conversation half to
        // wait for, the events frame is built meanwhile).
        let (go, ready) = std::sync::mpsc::sync_channel::<()>(0);
        let (events, segments, newest) = std::thread::scope(|sc| {
            let events = sc.spawn(|| -> Result<(Unmatched, Staged), TransformError> {
                if let Some(done) = conversations_done {
                    let _ = done.recv();
                }
                drop(go);
                let mut unmatched = Unmatched::new();
                let mut df = ds::events_frame(&evs, emails, &self.p.tasks, &mut unmatched)
                    .map_err(frame_err(format!("agent_status_events {day}")))?;
                let staged = self
                    .st
                    .stage_partition(ds::AGENT_STATUS_EVENTS, day, &mut df)?;
                Ok((unmatched, staged))
            });
            let (segs, newest) = day_segments_and_newest(start, end, complete, &evs, &prior);
            let _ = ready.recv();
            let segments = (|| -> Result<(usize, Staged), TransformError> {
                let mut df = ds::segments_frame(&segs, emails, &self.p.tasks)
                    .map_err(frame_err(format!("agent_status_segments {day}")))?;
                let staged = self
                    .st
                    .stage_partition(ds::AGENT_STATUS_SEGMENTS, day, &mut df)?;
                Ok((segs.len(), staged))
            })();
            (
                events.join().unwrap_or_else(|_| {
                    Err(TransformError::Failed(format!(
                        "agent_status_events {day}: the writer thread panicked"
                    )))
                }),
                segments,
                newest,
            )
        });
        let (unmatched, events) = events?;
        let (segments, staged) = segments?;
        out.unmatched_labels = unmatched;
        out.staged = vec![events, staged];
        out.rows.push((ds::AGENT_STATUS_EVENTS, day, evs.len()));
        out.rows.push((ds::AGENT_STATUS_SEGMENTS, day, segments));
        crate::fault_point("curated-written");
        carry_newest(&mut prior, &newest);
        *carry = Some((day, prior));
        Ok(out)
    }

    /// All of a day's curated datasets, visible together: agent events and segments on one
    /// thread, conversations and work sessions on another. The agent half reads its events and
    /// computes the segments meanwhile, and builds its two frames only once the conversation
    /// half is done (or has failed): the agent frames (~20 MiB of strings for a 2,000-agent
    /// day) beside the conversation half's events (~23 MiB as typed records) or frames were the
    /// largest things alive at once, and how far they overlapped changed from run to run, so a
    /// backfill peaked at the worst day's overlap. Waiting for the conversation events only to
    /// be freed left the frames overlapping: 10 landed days transformed (block cache off, 5
    /// pairs) peaked at 95–99 MiB against 90–91 with this wait, in 2.13 against 2.42 s
    /// (medians). A day without conversations (the agent-only comparison with DuckDB) does not
    /// wait.
    pub fn transform_all(
        &self,
        day: NaiveDate,
        raw: RawDay,
        emails: &Emails,
        inboxes: &[InboxDim],
        carry: &mut Option<(NaiveDate, StartState)>,
        conv_carry: &mut Option<(NaiveDate, SpilledConvStates)>,
    ) -> Result<DayOut, TransformError> {
        // Dropped when the conversation half returns, however it ends: that is the signal.
        let (done, conversations_done) = std::sync::mpsc::sync_channel::<()>(0);
        let (agents, work) = std::thread::scope(|sc| {
            let work = sc.spawn(|| -> Result<DayOut, TransformError> {
                let mut done = Some(done);
                let mut out =
                    self.stage_conversations(day, inboxes, Some(conv_carry), &mut done)?;
                out.merge(self.stage_work(day, inboxes)?);
                Ok(out)
            });
            let agents =
                self.stage_agents(day, raw.agents, emails, carry, Some(conversations_done));
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
        let mut out = self.stage_agents(day, None, emails, carry, None)?;
        out.merge(self.stage_conversations(day, inboxes, None, &mut None)?);
        self.commit(day, out)
    }

    /// The day's `conversations`, staged. `carry`: the states the day before left (spilled to
    /// disk), replaced by this day's; `None` when nothing is carried (`follow`'s today).
    /// `done` is dropped at once if the day has no conversations (see `transform_all`).
    fn stage_conversations(
        &self,
        day: NaiveDate,
        inboxes: &[InboxDim],
        mut carry: Option<&mut Option<(NaiveDate, SpilledConvStates)>>,
        done: &mut Option<std::sync::mpsc::SyncSender<()>>,
    ) -> Result<DayOut, TransformError> {
        let spilled = carry.as_mut().and_then(|c| c.take());
        let mut state = match spilled {
            Some((d, s)) if d + Duration::days(1) == day => s.load().map_err(|e| {
                TransformError::Failed(format!(
                    "conversations {day}: the states carried from {d}: {e}"
                ))
            })?,
            _ => {
                let _one_at_a_time = rebuilding_from_lookback();
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
        // The day's events are read once the states are ready: not held while the look-back
        // days are read (or while the agent half reads its own).
        let evs = raw::read_conversation_events(self.st, day)?.ok_or_else(|| {
            TransformError::Failed(format!(
                "day {day} has no raw conversation events: run the extract stage for it first"
            ))
        })?;
        // A day without conversations holds nothing the agent frames need wait for (the
        // agent-only comparison with DuckDB: otherwise three empty files written and synced
        // before every day's agent frames).
        if evs.is_empty() {
            done.take();
        }
        let oldest = day - Duration::days(self.p.lookback_days as i64);
        state.forget_before(oldest);
        let mut map = InboxMap::new(inboxes, &self.p.workstreams);
        let rows = wsd::conversations_day(day, &evs, &mut state, &mut map);
        // The day's events and the states are done with: freed before the frame is built and
        // encoded (the states wait on disk for the next day).
        drop(evs);
        if let Some(carry) = carry {
            let dir = self.st.temp_dir();
            let spilled = state.spill(&dir).map_err(|e| {
                TransformError::Failed(format!(
                    "conversations {day}: writing the carried states under {}: {e}",
                    dir.display()
                ))
            })?;
            *carry = Some((day, spilled));
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
