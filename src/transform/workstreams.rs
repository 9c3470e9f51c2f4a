//! Workstream data (DESIGN §7): conversations per day with their inbox, workstream and agent;
//! work sessions with their workstream; and interval totals per workstream × channel × interval.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap as HashMap;

use chrono::NaiveDate;
use polars::prelude::PolarsResult;

use super::datasets::inbox_workstream;
use crate::config::Rule;
use crate::frames::{DataFrame, FrameBuilder, Need};
use crate::model::{ConversationEvent, ConversationEventKind, InboxDim, WorkSession};
use crate::time::Ms;

pub const CONVERSATIONS: &str = "conversations";
pub const WORK_SESSIONS: &str = "work_sessions";
pub const WORKSTREAM_INTERVALS: &str = "workstream_intervals";

/// Inboxes of the newest snapshot with their workstream, each matched once.
pub struct InboxMap {
    by_id: HashMap<String, (Option<String>, Option<String>)>,
    /// Inbox ids seen in data but unknown to `/inboxes`, with counts.
    pub unknown: BTreeMap<String, u64>,
}

impl InboxMap {
    pub fn new(inboxes: &[InboxDim], rules: &[Rule]) -> InboxMap {
        InboxMap {
            by_id: inboxes
                .iter()
                .map(|i| {
                    (
                        i.inbox_id.clone(),
                        (
                            i.name.clone(),
                            inbox_workstream(rules, i).map(str::to_string),
                        ),
                    )
                })
                .collect(),
            unknown: BTreeMap::new(),
        }
    }

    /// (name, workstream) of an inbox id; unknown ids are counted and keep both null.
    pub fn lookup(&mut self, id: Option<&str>) -> (Option<String>, Option<String>) {
        let Some(id) = id else { return (None, None) };
        match self.by_id.get(id) {
            Some(v) => v.clone(),
            None => {
                *self.unknown.entry(id.to_string()).or_default() += 1;
                (None, None)
            }
        }
    }
}

/// What is known of a conversation at the end of a day, carried to the next. Packed into 24
/// bytes under an inline key: a run carries `lookback_days` of conversations (110k for a week
/// of a 2,000-agent centre) all along, and a table of `String` keys and optional fields was
/// 17 MiB of a quarter's backfill's peak.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvState {
    /// `NONE` when unknown.
    created_at: Ms,
    closed_at: Ms,
    /// The last day the conversation had an event.
    pub last_day: NaiveDate,
    closed: bool,
}

const NONE: Ms = Ms::MIN;

impl ConvState {
    fn new(day: NaiveDate) -> ConvState {
        ConvState {
            created_at: NONE,
            closed_at: NONE,
            last_day: day,
            closed: false,
        }
    }

    pub fn created_at(&self) -> Option<Ms> {
        (self.created_at != NONE).then_some(self.created_at)
    }

    /// When it was closed, if it is closed now.
    pub fn closed_at(&self) -> Option<Ms> {
        (self.closed && self.closed_at != NONE).then_some(self.closed_at)
    }
}

/// What is carried, by conversation id in id order (Gladly's ids are 22 characters: stored
/// inline, no allocation each). One sorted vector, updated in place: a run carries
/// `lookback_days` of conversations (about 130,000 for a week of a 2,000-agent centre) from day
/// to day. A B-tree (before) grew a few hundred 500-byte nodes a day on that day's transform
/// thread, among the day's short-lived rows of the same size, and its nodes kept those pages of
/// every day in use; a hash table held two copies while it doubled. The vector is one block,
/// 48 bytes a conversation, and a day's new conversations are merged in from its end.
#[derive(Clone, Debug, Default)]
pub struct ConvStates(Vec<(compact_str::CompactString, ConvState)>);

impl ConvStates {
    /// A conversation's state (the run itself only walks the states in id order).
    #[cfg(test)]
    fn get(&self, conversation_id: &str) -> Option<&ConvState> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(conversation_id))
            .ok()
            .map(|i| &self.0[i].1)
    }

    /// Forgets the conversations last seen before `oldest`.
    pub fn forget_before(&mut self, oldest: NaiveDate) {
        self.0.retain(|(_, s)| s.last_day >= oldest);
    }

    /// Merges `fresh` (sorted, no id already here) into place, from the back: no second copy.
    fn merge_in(&mut self, mut fresh: Vec<(compact_str::CompactString, ConvState)>) {
        let Some(filler) = fresh.first().map(|f| f.1) else {
            return;
        };
        let v = &mut self.0;
        let mut old = v.len();
        v.resize_with(old + fresh.len(), || (Default::default(), filler));
        // Invariant: v[..old] are the old entries not yet moved, `fresh` the new ones not yet
        // placed, and every slot from old + fresh.len() on holds its final entry.
        while let Some(newest) = fresh.last() {
            let w = old + fresh.len() - 1;
            if old > 0 && v[old - 1].0 > newest.0 {
                v.swap(old - 1, w);
                old -= 1;
            } else {
                v[w] = fresh.pop().expect("looked at above");
            }
        }
    }
}

/// A conversation on one day, its strings owned (`String`, the default) or borrowed from the
/// frame it was read back from (`&str`, what the load sends).
#[derive(Clone, Debug, PartialEq)]
pub struct ConversationRow<S = String> {
    pub conversation_id: S,
    pub customer_id: Option<S>,
    pub inbox_id: Option<S>,
    pub inbox_name: Option<S>,
    pub workstream: Option<S>,
    pub agent_id: Option<S>,
    pub created_at: Option<Ms>,
    pub closed_at: Option<Ms>,
    pub reopened_count: i64,
}

/// The day's events by conversation in id order, each conversation's by time (one sort of
/// references, not a map of vectors).
fn by_conversation(evs: &[ConversationEvent]) -> Vec<&ConversationEvent> {
    let mut v: Vec<&ConversationEvent> = evs.iter().collect();
    v.sort_unstable_by(|a, b| {
        (&a.conversation_id, a.recorded_at, &a.event_id).cmp(&(
            &b.conversation_id,
            b.recorded_at,
            &b.event_id,
        ))
    });
    v
}

/// One row per conversation with at least one event that day, sorted by `conversation_id`;
/// `state` is advanced past the day.
pub fn conversations_day(
    day: NaiveDate,
    evs: &[ConversationEvent],
    state: &mut ConvStates,
    inboxes: &mut InboxMap,
) -> Vec<ConversationRow> {
    let mut rows = Vec::new();
    let sorted = by_conversation(evs);
    // The day's conversations come in id order, as the state's: each is looked for after the
    // one before. New ones are gathered apart and merged in at the end.
    let mut fresh: Vec<(compact_str::CompactString, ConvState)> = Vec::new();
    let mut at = 0;
    for evs in sorted.chunk_by(|a, b| a.conversation_id == b.conversation_id) {
        let cid = evs[0].conversation_id.as_str();
        at += state.0[at..].partition_point(|(k, _)| k.as_str() < cid);
        let st = match state.0.get_mut(at) {
            Some((k, st)) if k.as_str() == cid => st,
            _ => {
                fresh.push((cid.into(), ConvState::new(day)));
                &mut fresh.last_mut().expect("pushed").1
            }
        };
        let mut reopened = 0;
        for e in evs {
            match e.kind {
                ConversationEventKind::Created => {
                    st.created_at = e.recorded_at;
                    st.closed = false;
                }
                ConversationEventKind::Closed => {
                    st.closed = true;
                    st.closed_at = e.recorded_at;
                }
                ConversationEventKind::Reopened => {
                    st.closed = false;
                    reopened += 1;
                }
                ConversationEventKind::AssigneeUpdated => {}
            }
        }
        st.last_day = day;
        let last = evs.last().expect("a conversation with events");
        let (inbox_id, agent_id) = last.assignment();
        let (inbox_name, workstream) = inboxes.lookup(inbox_id);
        rows.push(ConversationRow {
            conversation_id: cid.to_string(),
            customer_id: evs.iter().rev().find_map(|e| e.customer_id.clone()),
            inbox_id: inbox_id.map(str::to_string),
            inbox_name,
            workstream,
            agent_id: agent_id.map(str::to_string),
            created_at: st.created_at(),
            closed_at: st.closed_at(),
            reopened_count: reopened,
        });
    }
    state.merge_in(fresh);
    rows
}

/// The conversation state carried from earlier days (for the first day of a run).
pub fn advance_states(state: &mut ConvStates, day: NaiveDate, evs: &[ConversationEvent]) {
    let mut scratch = InboxMap::new(&[], &[]);
    conversations_day(day, evs, state, &mut scratch);
}

pub fn conversations_frame(rows: &[ConversationRow]) -> PolarsResult<DataFrame> {
    FrameBuilder::new(rows.len())
        .str(
            "conversation_id",
            rows.iter().map(|r| Some(r.conversation_id.as_str())),
        )
        .str("customer_id", rows.iter().map(|r| r.customer_id.as_deref()))
        .str("inbox_id", rows.iter().map(|r| r.inbox_id.as_deref()))
        .str("inbox_name", rows.iter().map(|r| r.inbox_name.as_deref()))
        .str("workstream", rows.iter().map(|r| r.workstream.as_deref()))
        .str("agent_id", rows.iter().map(|r| r.agent_id.as_deref()))
        .ts("created_at", rows.iter().map(|r| r.created_at))
        .ts("closed_at", rows.iter().map(|r| r.closed_at))
        .i64(
            "reopened_count",
            rows.iter().map(|r| Some(r.reopened_count)),
        )
        .finish()
}

/// Curated `work_sessions`: the raw columns plus `workstream` (from `inbox_id`).
pub fn work_sessions_frame(ws: &[WorkSession], inboxes: &mut InboxMap) -> PolarsResult<DataFrame> {
    let wss: Vec<Option<String>> = ws
        .iter()
        .map(|w| inboxes.lookup(w.inbox_id.as_deref()).1)
        .collect();
    crate::raw::work_sessions_builder(ws)
        .str("workstream", wss.iter().map(|w| w.as_deref()))
        .finish()
}

#[derive(Clone, Debug, PartialEq)]
pub struct IntervalRow {
    pub workstream: Option<String>,
    pub channel: Option<String>,
    pub interval_start: Ms,
    pub interval_minutes: i64,
    pub offered: i64,
    pub handled: i64,
    pub within_sla: i64,
    pub handle_time_seconds: f64,
    pub after_contact_time_seconds: f64,
}

#[derive(Default)]
struct Acc {
    offered: BTreeSet<String>,
    handled: BTreeSet<String>,
    within: BTreeSet<String>,
    handle: f64,
    acw: f64,
}

/// Interval totals of ended work sessions by `contact_session_created_at`, aligned in UTC.
pub fn intervals(ws: &[WorkSession], inboxes: &mut InboxMap, minutes: u32) -> Vec<IntervalRow> {
    let step = minutes as Ms * 60_000;
    let mut groups: BTreeMap<(Option<String>, Option<String>, Ms), Acc> = BTreeMap::new();
    for w in ws {
        let workstream = inboxes.lookup(w.inbox_id.as_deref()).1;
        let start = w.contact_session_created_at.div_euclid(step) * step;
        let a = groups
            .entry((workstream, w.channel.clone(), start))
            .or_default();
        a.offered.insert(w.contact_session_id.clone());
        if w.agent_accepted_at.is_some() {
            a.handled.insert(w.contact_session_id.clone());
        }
        if w.within_sla == Some(true) {
            a.within.insert(w.contact_session_id.clone());
        }
        a.handle += w.work_session_handle_time_seconds.unwrap_or(0.0);
        a.acw += w.work_session_after_contact_time_seconds.unwrap_or(0.0);
    }
    groups
        .into_iter()
        .map(|((workstream, channel, interval_start), a)| IntervalRow {
            workstream,
            channel,
            interval_start,
            interval_minutes: minutes as i64,
            offered: a.offered.len() as i64,
            handled: a.handled.len() as i64,
            within_sla: a.within.len() as i64,
            handle_time_seconds: a.handle,
            after_contact_time_seconds: a.acw,
        })
        .collect()
}

pub fn intervals_frame(rows: &[IntervalRow]) -> PolarsResult<DataFrame> {
    FrameBuilder::new(rows.len())
        .str("workstream", rows.iter().map(|r| r.workstream.as_deref()))
        .str("channel", rows.iter().map(|r| r.channel.as_deref()))
        .ts(
            "interval_start",
            rows.iter().map(|r| Some(r.interval_start)),
        )
        .i64(
            "interval_minutes",
            rows.iter().map(|r| Some(r.interval_minutes)),
        )
        .i64("offered", rows.iter().map(|r| Some(r.offered)))
        .i64("handled", rows.iter().map(|r| Some(r.handled)))
        .i64("within_sla", rows.iter().map(|r| Some(r.within_sla)))
        .f64(
            "handle_time_seconds",
            rows.iter().map(|r| Some(r.handle_time_seconds)),
        )
        .f64(
            "after_contact_time_seconds",
            rows.iter().map(|r| Some(r.after_contact_time_seconds)),
        )
        .finish()
}

pub fn intervals_from(df: &DataFrame) -> PolarsResult<Vec<IntervalRow>> {
    let r = crate::frames::FrameReader(df);
    // Borrowed columns, each value copied once into its row (see `ds::segment_rows_of`).
    let owned = |v: Option<Option<&str>>| v.flatten().map(str::to_string);
    let (mut w, mut c) = (r.strs("workstream")?, r.strs("channel")?);
    let (s, m, o, h, ws, ht, acw) = (
        r.ts("interval_start")?,
        r.i64("interval_minutes")?,
        r.i64("offered")?,
        r.i64("handled")?,
        r.i64("within_sla")?,
        r.f64("handle_time_seconds")?,
        r.f64("after_contact_time_seconds")?,
    );
    (0..r.height())
        .map(|i| {
            let n = Need(i);
            Ok(IntervalRow {
                workstream: owned(w.next()),
                channel: owned(c.next()),
                interval_start: n.some("interval_start", s[i])?,
                interval_minutes: n.some("interval_minutes", m[i])?,
                offered: n.some("offered", o[i])?,
                handled: n.some("handled", h[i])?,
                within_sla: n.some("within_sla", ws[i])?,
                handle_time_seconds: n.some("handle_time_seconds", ht[i])?,
                after_contact_time_seconds: n.some("after_contact_time_seconds", acw[i])?,
            })
        })
        .collect()
}

pub fn conversations_from(df: &DataFrame) -> PolarsResult<Vec<ConversationRow>> {
    conversation_rows_of(df, str::to_string)
}

/// The rows borrowing their strings from `df` (see `ds::segments_in`).
pub fn conversations_in(df: &DataFrame) -> PolarsResult<Vec<ConversationRow<&str>>> {
    conversation_rows_of(df, |v| v)
}

fn conversation_rows_of<'a, S>(
    df: &'a DataFrame,
    own: impl Fn(&'a str) -> S,
) -> PolarsResult<Vec<ConversationRow<S>>> {
    let r = crate::frames::FrameReader(df);
    // Borrowed columns, each value copied at most once into its row (see `ds::segment_rows_of`).
    let owned = |v: Option<Option<&'a str>>| v.flatten().map(&own);
    let (mut id, mut cu, mut ib, mut ibn, mut w, mut ag) = (
        r.strs("conversation_id")?,
        r.strs("customer_id")?,
        r.strs("inbox_id")?,
        r.strs("inbox_name")?,
        r.strs("workstream")?,
        r.strs("agent_id")?,
    );
    let (cr, cl, ro) = (
        r.ts("created_at")?,
        r.ts("closed_at")?,
        r.i64("reopened_count")?,
    );
    (0..r.height())
        .map(|i| {
            let n = Need(i);
            Ok(ConversationRow {
                conversation_id: n.some("conversation_id", owned(id.next()))?,
                customer_id: owned(cu.next()),
                inbox_id: owned(ib.next()),
                inbox_name: owned(ibn.next()),
                workstream: owned(w.next()),
                agent_id: owned(ag.next()),
                created_at: cr[i],
                closed_at: cl[i],
                reopened_count: n.some("reopened_count", ro[i])?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(cs: &str, id: &str, at: Ms, accepted: bool, sla: bool, ht: f64) -> WorkSession {
        WorkSession {
            id: id.into(),
            contact_session_id: cs.into(),
            contact_session_created_at: at,
            customer_id: None,
            conversation_id: None,
            inbox_id: Some("I1".into()),
            channel: Some("EMAIL".into()),
            direction: None,
            agent_accepted_at: accepted.then_some(at + 1),
            contact_session_routed_at: None,
            agent_id: None,
            sla_fulfilled_at: None,
            contact_session_ended_at: Some(at + 10),
            status: None,
            within_sla: Some(sla),
            work_session_handle_time_seconds: Some(ht),
            work_session_after_contact_time_seconds: Some(1.0),
            work_session_unknown_time_seconds: None,
            accepted_inbox_id: None,
        }
    }

    /// The carried states, merged in place day after day, against a plain map replaying the
    /// same events: ids drawn from a small pool, so conversations recur, are forgotten and come
    /// back.
    #[test]
    fn carried_states_are_those_of_a_plain_map() {
        use crate::model::Source;
        let mut rng = gladly_wfm_sim::rng::Rng::derive(1, &["carried states"]);
        let mut next = |n: u64| rng.next_u64() % n;
        let kinds = [
            ConversationEventKind::Created,
            ConversationEventKind::Closed,
            ConversationEventKind::Reopened,
            ConversationEventKind::AssigneeUpdated,
        ];
        let mut states = ConvStates::default();
        let mut plain: BTreeMap<String, ConvState> = BTreeMap::new();
        let first: NaiveDate = "2026-03-01".parse().unwrap();
        for k in 0..40 {
            let day = first + chrono::Duration::days(k);
            let evs: Vec<ConversationEvent> = (0..next(60))
                .map(|i| {
                    // Some ids too long to be stored inline (and not ASCII).
                    let n = next(150);
                    let cid = if n % 10 == 0 {
                        format!("c{n:03}-a conversation id longer than 24 bytes, é")
                    } else {
                        format!("c{n:03}")
                    };
                    let kind = kinds[next(4) as usize];
                    let at = 1_000 * k as Ms + next(500) as Ms;
                    ConversationEvent {
                        event_id: format!("{cid}|{i}"),
                        kind,
                        conversation_id: cid,
                        customer_id: None,
                        recorded_at: at,
                        inbox_id: None,
                        agent_id: None,
                        new_inbox_id: None,
                        new_agent_id: None,
                        source: Source::Report,
                    }
                })
                .collect();
            let oldest = day - chrono::Duration::days(3);
            states.forget_before(oldest);
            plain.retain(|_, s| s.last_day >= oldest);
            let rows = conversations_day(day, &evs, &mut states, &mut InboxMap::new(&[], &[]));
            let mut sorted: Vec<&ConversationEvent> = evs.iter().collect();
            sorted.sort_by_key(|e| (e.conversation_id.clone(), e.recorded_at, e.event_id.clone()));
            for e in sorted {
                let st = plain
                    .entry(e.conversation_id.clone())
                    .or_insert(ConvState::new(day));
                match e.kind {
                    ConversationEventKind::Created => {
                        (st.created_at, st.closed) = (e.recorded_at, false)
                    }
                    ConversationEventKind::Closed => {
                        (st.closed, st.closed_at) = (true, e.recorded_at)
                    }
                    ConversationEventKind::Reopened => st.closed = false,
                    ConversationEventKind::AssigneeUpdated => {}
                }
                st.last_day = day;
            }
            let got: Vec<(String, ConvState)> =
                states.0.iter().map(|(k, s)| (k.to_string(), *s)).collect();
            let want: Vec<(String, ConvState)> = plain.clone().into_iter().collect();
            assert_eq!(got, want, "day {day}");
            let ids: BTreeSet<&str> = evs.iter().map(|e| e.conversation_id.as_str()).collect();
            assert_eq!(
                rows.iter()
                    .map(|r| r.conversation_id.as_str())
                    .collect::<Vec<_>>(),
                ids.into_iter().collect::<Vec<_>>()
            );
            for r in &rows {
                let st = states.get(&r.conversation_id).expect("carried");
                assert_eq!(
                    (r.created_at, r.closed_at),
                    (st.created_at(), st.closed_at())
                );
            }
        }
        assert!(states.0.len() > 50, "the pool recurs: {}", states.0.len());
    }

    #[test]
    fn interval_totals_count_distinct_contact_sessions_and_sum_rows() {
        let inbox = InboxDim {
            inbox_id: "I1".into(),
            name: Some("Support".into()),
            disabled: false,
        };
        let rule = Rule::new("S", "Support", 1).unwrap();
        let mut m = InboxMap::new(&[inbox], &[rule]);
        let q = 15 * 60_000;
        let rows = intervals(
            &[
                ws("c1", "w1", 1000, true, true, 10.0),
                ws("c1", "w2", 2000, true, true, 5.0),
                ws("c2", "w3", q + 5, false, false, 0.0),
            ],
            &mut m,
            15,
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (
                rows[0].offered,
                rows[0].handled,
                rows[0].within_sla,
                rows[0].handle_time_seconds
            ),
            (1, 1, 1, 15.0)
        );
        assert_eq!(rows[0].workstream.as_deref(), Some("S"));
        assert_eq!(
            (rows[1].interval_start, rows[1].offered, rows[1].handled),
            (q, 1, 0)
        );
    }
}
