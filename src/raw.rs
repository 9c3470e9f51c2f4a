//! The raw zone: everything fetched from Gladly, landed as Parquet before any transform
//! (`<root>/raw/<stream>/date=D/part-0.parquet`). Old Events-API data exists nowhere else, so the
//! raw zone is what every transform re-run reads.

use chrono::NaiveDate;
use polars::prelude::PolarsResult;

use crate::frames::{DataFrame, FrameBuilder, FrameReader, Need};
use crate::model::{
    AgentDim, AgentEvent, AgentEventKind, ConversationEvent, ConversationEventKind, InboxDim,
    Source, TeamDim, WorkSession,
};
use crate::storage::{Storage, StorageError};
use crate::time::Ms;

pub const AGENT_EVENTS: &str = "raw/agent_events";
pub const AGENTS: &str = "raw/agents";
pub const INBOXES: &str = "raw/inboxes";
/// Team names, snapshotted with the agents (the agents carry their team ids).
pub const TEAMS: &str = "raw/teams";

pub fn agent_events_frame(evs: &[AgentEvent]) -> PolarsResult<DataFrame> {
    FrameBuilder::new(evs.len())
        .str("event_id", evs.iter().map(|e| Some(e.event_id.as_str())))
        .str("event_type", evs.iter().map(|e| Some(e.kind.as_str())))
        .str("agent_id", evs.iter().map(|e| Some(e.agent_id.as_str())))
        .ts("occurred_at", evs.iter().map(|e| Some(e.occurred_at)))
        .ts("recorded_at", evs.iter().map(|e| Some(e.recorded_at)))
        .str("away_reason", evs.iter().map(|e| e.away_reason.as_deref()))
        .str(
            "active_reason",
            evs.iter().map(|e| e.active_reason.as_deref()),
        )
        .list_str(
            "available_for",
            evs.iter().map(|e| e.available_for.as_deref()),
        )
        .str("source", evs.iter().map(|e| Some(e.source.as_str())))
        .finish()
}

pub fn agent_events_from(df: &DataFrame) -> PolarsResult<Vec<AgentEvent>> {
    let r = FrameReader(df);
    // Borrowed columns, copied into the records that keep them: this runs for every event of
    // every day.
    let owned = |v: Option<&str>| v.map(str::to_string);
    let mut ids = r.strs("event_id")?;
    let mut types = r.strs("event_type")?;
    let mut agents = r.strs("agent_id")?;
    let mut occ = r.ts("occurred_at")?.into_iter();
    let mut rec = r.ts("recorded_at")?.into_iter();
    let mut away = r.strs("away_reason")?;
    let mut active = r.strs("active_reason")?;
    let mut avail = r.list_str("available_for")?.into_iter();
    let mut source = r.strs("source")?;
    let mut out = Vec::with_capacity(r.height());
    for row in 0..r.height() {
        let need = Need(row);
        out.push(AgentEvent {
            event_id: need.some("event_id", owned(ids.next().flatten()))?,
            kind: need.parsed("event_type", types.next().flatten(), AgentEventKind::parse)?,
            agent_id: need.some("agent_id", owned(agents.next().flatten()))?,
            occurred_at: need.some("occurred_at", occ.next().flatten())?,
            recorded_at: need.some("recorded_at", rec.next().flatten())?,
            away_reason: owned(away.next().flatten()),
            active_reason: owned(active.next().flatten()),
            available_for: avail.next().flatten(),
            source: need.parsed("source", source.next().flatten(), Source::parse)?,
        });
    }
    Ok(out)
}

pub fn read_agent_events(
    st: &Storage,
    day: NaiveDate,
) -> Result<Option<Vec<AgentEvent>>, StorageError> {
    match st.read_partition(AGENT_EVENTS, day)? {
        None => Ok(None),
        Some(df) => agent_events_from(&df)
            .map(Some)
            .map_err(|e| StorageError::new(st.partition_location(AGENT_EVENTS, day), e)),
    }
}

/// An event stream landed in the raw zone by day: the agent and the conversation events.
pub trait RawEvents: Sized {
    /// The raw dataset, for messages and counts.
    const DATASET: &'static str;
    /// The metrics' `entity` (telemetry.rs).
    const ENTITY: &'static str;
    fn event_id(&self) -> &str;
    /// Which API it was read from.
    fn source(&self) -> crate::model::Source;
    fn recorded_at(&self) -> Ms;
    fn read(st: &Storage, day: NaiveDate) -> Result<Option<Vec<Self>>, StorageError>;
    fn frame(evs: &[Self]) -> PolarsResult<DataFrame>;
}

impl RawEvents for AgentEvent {
    const DATASET: &'static str = AGENT_EVENTS;
    const ENTITY: &'static str = "agent";
    fn event_id(&self) -> &str {
        &self.event_id
    }
    fn source(&self) -> crate::model::Source {
        self.source
    }
    fn recorded_at(&self) -> Ms {
        self.recorded_at
    }
    fn read(st: &Storage, day: NaiveDate) -> Result<Option<Vec<Self>>, StorageError> {
        read_agent_events(st, day)
    }
    fn frame(evs: &[Self]) -> PolarsResult<DataFrame> {
        agent_events_frame(evs)
    }
}

/// How fresh events came: read from Gladly (the Events API or a report: their `source`), or
/// delivered by the webhook (the same objects as Events API lines, landed as such; counted
/// apart in the metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Read,
    Webhook,
}

/// Merges a fresh fetch into what the raw zone holds for the day: the union by event id, fresh
/// rows winning, sorted by id. (Focus events exist only in Events-API windows; a later report
/// must not erase them.) Every landing goes through here, the nightly run's and `follow`'s:
/// the events new to the raw zone are counted here for the metrics (telemetry.rs). Returns the
/// merged rows and how many event ids were new to the day.
pub fn merge_by_id<E: RawEvents>(old: Vec<E>, fresh: Vec<E>, via: Via) -> (Vec<E>, usize) {
    let mut by_id: std::collections::BTreeMap<String, E> = old
        .into_iter()
        .map(|e| (e.event_id().to_string(), e))
        .collect();
    // (source, new events, the newest `timestamp` among them)
    let mut new: Vec<(crate::model::Source, u64, Ms)> = Vec::new();
    for e in fresh {
        let (source, at) = (e.source(), e.recorded_at());
        if by_id.insert(e.event_id().to_string(), e).is_none() {
            match new.iter_mut().find(|(s, _, _)| *s == source) {
                Some((_, n, newest)) => {
                    *n += 1;
                    *newest = (*newest).max(at);
                }
                None => new.push((source, 1, at)),
            }
        }
    }
    let mut total = 0;
    for (source, n, newest) in new {
        let label = match via {
            Via::Read => source.as_str(),
            Via::Webhook => "webhook",
        };
        crate::telemetry::events_landed(label, E::ENTITY, n, Some(newest));
        total += n as usize;
    }
    (by_id.into_values().collect(), total)
}

pub fn agents_frame(agents: &[AgentDim], snapshot_at: Ms) -> PolarsResult<DataFrame> {
    FrameBuilder::new(agents.len())
        .str("agent_id", agents.iter().map(|a| Some(a.agent_id.as_str())))
        .str("name", agents.iter().map(|a| a.name.as_deref()))
        .str("email", agents.iter().map(|a| a.email.as_deref()))
        .list_str(
            "team_ids",
            agents.iter().map(|a| Some(a.team_ids.as_slice())),
        )
        .ts("snapshot_at", agents.iter().map(|_| Some(snapshot_at)))
        .finish()
}

pub fn agents_from(df: &DataFrame) -> PolarsResult<(Vec<AgentDim>, Option<Ms>)> {
    let r = FrameReader(df);
    let ids = r.str("agent_id")?;
    let names = r.str("name")?;
    let emails = r.str("email")?;
    let teams = r.list_str("team_ids")?;
    let snap = r.ts("snapshot_at")?;
    let out = (0..r.height())
        .map(|i| {
            let n = Need(i);
            Ok(AgentDim {
                agent_id: n.some("agent_id", ids[i].clone())?,
                name: names[i].clone(),
                email: emails[i].clone(),
                team_ids: n.some("team_ids", teams[i].clone())?,
            })
        })
        .collect::<PolarsResult<Vec<_>>>()?;
    Ok((out, snap.first().copied().flatten()))
}

pub fn inboxes_frame(inboxes: &[InboxDim], snapshot_at: Ms) -> PolarsResult<DataFrame> {
    FrameBuilder::new(inboxes.len())
        .str(
            "inbox_id",
            inboxes.iter().map(|a| Some(a.inbox_id.as_str())),
        )
        .str("name", inboxes.iter().map(|a| a.name.as_deref()))
        .bool("disabled", inboxes.iter().map(|a| Some(a.disabled)))
        .ts("snapshot_at", inboxes.iter().map(|_| Some(snapshot_at)))
        .finish()
}

pub fn inboxes_from(df: &DataFrame) -> PolarsResult<(Vec<InboxDim>, Option<Ms>)> {
    let r = FrameReader(df);
    let ids = r.str("inbox_id")?;
    let names = r.str("name")?;
    let disabled = r.bool("disabled")?;
    let snap = r.ts("snapshot_at")?;
    let out = (0..r.height())
        .map(|i| {
            let n = Need(i);
            Ok(InboxDim {
                inbox_id: n.some("inbox_id", ids[i].clone())?,
                name: names[i].clone(),
                disabled: disabled[i].unwrap_or(false),
            })
        })
        .collect::<PolarsResult<Vec<_>>>()?;
    Ok((out, snap.first().copied().flatten()))
}

pub fn teams_frame(teams: &[TeamDim], snapshot_at: Ms) -> PolarsResult<DataFrame> {
    FrameBuilder::new(teams.len())
        .str("team_id", teams.iter().map(|t| Some(t.team_id.as_str())))
        .str("name", teams.iter().map(|t| t.name.as_deref()))
        .ts("snapshot_at", teams.iter().map(|_| Some(snapshot_at)))
        .finish()
}

pub fn teams_from(df: &DataFrame) -> PolarsResult<Vec<TeamDim>> {
    let r = FrameReader(df);
    let ids = r.str("team_id")?;
    let names = r.str("name")?;
    (0..r.height())
        .map(|i| {
            Ok(TeamDim {
                team_id: Need(i).some("team_id", ids[i].clone())?,
                name: names[i].clone(),
            })
        })
        .collect()
}

/// The newest snapshot of a dimension in the raw zone: (its date, the frame).
pub fn newest(st: &Storage, dataset: &str) -> Result<Option<(NaiveDate, DataFrame)>, StorageError> {
    let Some(day) = st.partitions(dataset)?.last().copied() else {
        return Ok(None);
    };
    Ok(st.read_partition(dataset, day)?.map(|df| (day, df)))
}

pub const CONVERSATION_EVENTS: &str = "raw/conversation_events";
pub const WORK_SESSIONS: &str = "raw/work_sessions";

pub fn conversation_events_frame(evs: &[ConversationEvent]) -> PolarsResult<DataFrame> {
    FrameBuilder::new(evs.len())
        .str("event_id", evs.iter().map(|e| Some(e.event_id.as_str())))
        .str("event_type", evs.iter().map(|e| Some(e.kind.as_str())))
        .str(
            "conversation_id",
            evs.iter().map(|e| Some(e.conversation_id.as_str())),
        )
        .str("customer_id", evs.iter().map(|e| e.customer_id.as_deref()))
        .ts("recorded_at", evs.iter().map(|e| Some(e.recorded_at)))
        .str("inbox_id", evs.iter().map(|e| e.inbox_id.as_deref()))
        .str("agent_id", evs.iter().map(|e| e.agent_id.as_deref()))
        .str(
            "new_inbox_id",
            evs.iter().map(|e| e.new_inbox_id.as_deref()),
        )
        .str(
            "new_agent_id",
            evs.iter().map(|e| e.new_agent_id.as_deref()),
        )
        .str("source", evs.iter().map(|e| Some(e.source.as_str())))
        .finish()
}

pub fn conversation_events_from(df: &DataFrame) -> PolarsResult<Vec<ConversationEvent>> {
    let r = FrameReader(df);
    // Borrowed columns: each row copies only the strings it keeps (this runs for every
    // conversation event of every day, and for the look-back days).
    let owned = |v: Option<&str>| v.map(str::to_string);
    let mut id = r.strs("event_id")?;
    let mut t = r.strs("event_type")?;
    let mut c = r.strs("conversation_id")?;
    let mut cu = r.strs("customer_id")?;
    let mut ts = r.ts("recorded_at")?.into_iter();
    let mut ib = r.strs("inbox_id")?;
    let mut ag = r.strs("agent_id")?;
    let mut nib = r.strs("new_inbox_id")?;
    let mut nag = r.strs("new_agent_id")?;
    let mut src = r.strs("source")?;
    (0..r.height())
        .map(|row| {
            let need = Need(row);
            Ok(ConversationEvent {
                event_id: need.some("event_id", owned(id.next().flatten()))?,
                kind: need.parsed(
                    "event_type",
                    t.next().flatten(),
                    ConversationEventKind::parse,
                )?,
                conversation_id: need.some("conversation_id", owned(c.next().flatten()))?,
                customer_id: owned(cu.next().flatten()),
                recorded_at: need.some("recorded_at", ts.next().flatten())?,
                inbox_id: owned(ib.next().flatten()),
                agent_id: owned(ag.next().flatten()),
                new_inbox_id: owned(nib.next().flatten()),
                new_agent_id: owned(nag.next().flatten()),
                source: need.parsed("source", src.next().flatten(), Source::parse)?,
            })
        })
        .collect()
}

pub fn read_conversation_events(
    st: &Storage,
    day: NaiveDate,
) -> Result<Option<Vec<ConversationEvent>>, StorageError> {
    match st.read_partition(CONVERSATION_EVENTS, day)? {
        None => Ok(None),
        Some(df) => conversation_events_from(&df)
            .map(Some)
            .map_err(|e| StorageError::new(st.partition_location(CONVERSATION_EVENTS, day), e)),
    }
}

impl RawEvents for ConversationEvent {
    const DATASET: &'static str = CONVERSATION_EVENTS;
    const ENTITY: &'static str = "conversation";
    fn event_id(&self) -> &str {
        &self.event_id
    }
    fn source(&self) -> crate::model::Source {
        self.source
    }
    fn recorded_at(&self) -> Ms {
        self.recorded_at
    }
    fn read(st: &Storage, day: NaiveDate) -> Result<Option<Vec<Self>>, StorageError> {
        read_conversation_events(st, day)
    }
    fn frame(evs: &[Self]) -> PolarsResult<DataFrame> {
        conversation_events_frame(evs)
    }
}

/// Work-session columns as delivered (`_sec` → `_seconds`); the curated dataset adds `workstream`.
pub fn work_sessions_builder(ws: &[WorkSession]) -> FrameBuilder {
    FrameBuilder::new(ws.len())
        .str("id", ws.iter().map(|w| Some(w.id.as_str())))
        .str(
            "contact_session_id",
            ws.iter().map(|w| Some(w.contact_session_id.as_str())),
        )
        .ts(
            "contact_session_created_at",
            ws.iter().map(|w| Some(w.contact_session_created_at)),
        )
        .str("customer_id", ws.iter().map(|w| w.customer_id.as_deref()))
        .str(
            "conversation_id",
            ws.iter().map(|w| w.conversation_id.as_deref()),
        )
        .str("inbox_id", ws.iter().map(|w| w.inbox_id.as_deref()))
        .str("channel", ws.iter().map(|w| w.channel.as_deref()))
        .str("direction", ws.iter().map(|w| w.direction.as_deref()))
        .ts("agent_accepted_at", ws.iter().map(|w| w.agent_accepted_at))
        .ts(
            "contact_session_routed_at",
            ws.iter().map(|w| w.contact_session_routed_at),
        )
        .str("agent_id", ws.iter().map(|w| w.agent_id.as_deref()))
        .ts("sla_fulfilled_at", ws.iter().map(|w| w.sla_fulfilled_at))
        .ts(
            "contact_session_ended_at",
            ws.iter().map(|w| w.contact_session_ended_at),
        )
        .str("status", ws.iter().map(|w| w.status.as_deref()))
        .bool("within_sla", ws.iter().map(|w| w.within_sla))
        .f64(
            "work_session_handle_time_seconds",
            ws.iter().map(|w| w.work_session_handle_time_seconds),
        )
        .f64(
            "work_session_after_contact_time_seconds",
            ws.iter().map(|w| w.work_session_after_contact_time_seconds),
        )
        .f64(
            "work_session_unknown_time_seconds",
            ws.iter().map(|w| w.work_session_unknown_time_seconds),
        )
        .str(
            "accepted_inbox_id",
            ws.iter().map(|w| w.accepted_inbox_id.as_deref()),
        )
}

pub fn work_sessions_from(df: &DataFrame) -> PolarsResult<Vec<WorkSession>> {
    let r = FrameReader(df);
    let s = |c: &str| r.str(c);
    let (id, cs, created, cu, co, ib, ch, dir) = (
        s("id")?,
        s("contact_session_id")?,
        r.ts("contact_session_created_at")?,
        s("customer_id")?,
        s("conversation_id")?,
        s("inbox_id")?,
        s("channel")?,
        s("direction")?,
    );
    let (acc, routed, ag, sla, ended, status, within) = (
        r.ts("agent_accepted_at")?,
        r.ts("contact_session_routed_at")?,
        s("agent_id")?,
        r.ts("sla_fulfilled_at")?,
        r.ts("contact_session_ended_at")?,
        s("status")?,
        r.bool("within_sla")?,
    );
    let (ht, acw, unk, aib) = (
        r.f64("work_session_handle_time_seconds")?,
        r.f64("work_session_after_contact_time_seconds")?,
        r.f64("work_session_unknown_time_seconds")?,
        s("accepted_inbox_id")?,
    );
    (0..r.height())
        .map(|i| {
            let n = Need(i);
            Ok(WorkSession {
                id: n.some("id", id[i].clone())?,
                contact_session_id: n.some("contact_session_id", cs[i].clone())?,
                contact_session_created_at: n.some("contact_session_created_at", created[i])?,
                customer_id: cu[i].clone(),
                conversation_id: co[i].clone(),
                inbox_id: ib[i].clone(),
                channel: ch[i].clone(),
                direction: dir[i].clone(),
                agent_accepted_at: acc[i],
                contact_session_routed_at: routed[i],
                agent_id: ag[i].clone(),
                sla_fulfilled_at: sla[i],
                contact_session_ended_at: ended[i],
                status: status[i].clone(),
                within_sla: within[i],
                work_session_handle_time_seconds: ht[i],
                work_session_after_contact_time_seconds: acw[i],
                work_session_unknown_time_seconds: unk[i],
                accepted_inbox_id: aib[i].clone(),
            })
        })
        .collect()
}

pub fn read_work_sessions(
    st: &Storage,
    day: NaiveDate,
) -> Result<Option<Vec<WorkSession>>, StorageError> {
    match st.read_partition(WORK_SESSIONS, day)? {
        None => Ok(None),
        Some(df) => work_sessions_from(&df)
            .map(Some)
            .map_err(|e| StorageError::new(st.partition_location(WORK_SESSIONS, day), e)),
    }
}

/// Upserts on (`contact_session_id`, `id`), fresh rows winning; sorted by that key. Also says
/// whether the result differs from `old` as it was read (the day's file is rewritten only then).
///
/// A merge of two sorted runs, each row moved once: a day's stored sessions are read back when
/// the next day's window (which overlaps it) lands, often to add a hundred rows to 16,000. The
/// map this replaces held a copy of every key, and the comparison a copy of every stored row:
/// in a backfill, the later days' landing peaked 18 MiB above the first day's.
pub fn upsert_work_sessions(
    mut old: Vec<WorkSession>,
    fresh: Vec<WorkSession>,
) -> (Vec<WorkSession>, bool) {
    fn key(w: &WorkSession) -> (&str, &str) {
        (&w.contact_session_id, &w.id)
    }
    /// Sorted by key, and of equal keys the last one given (as a map's inserts keep it).
    fn sorted_unique(mut rows: Vec<WorkSession>) -> Vec<WorkSession> {
        // Stable: equal keys stay in order. `dedup_by` keeps the first of equal neighbours, so
        // the later one is swapped into it.
        rows.sort_by(|a, b| key(a).cmp(&key(b)));
        rows.dedup_by(|later, kept| {
            let same = key(later) == key(kept);
            if same {
                std::mem::swap(later, kept);
            }
            same
        });
        rows
    }
    // Stored files are written sorted and unique; one that is not is rewritten so.
    let mut changed = !old.windows(2).all(|p| key(&p[0]) < key(&p[1]));
    if changed {
        old = sorted_unique(old);
    }
    let fresh = sorted_unique(fresh);
    let mut out = Vec::with_capacity(old.len() + fresh.len());
    let mut old = old.into_iter().peekable();
    let mut fresh = fresh.into_iter().peekable();
    loop {
        let order = match (old.peek(), fresh.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(o), Some(f)) => key(o).cmp(&key(f)),
        };
        let next = match order {
            std::cmp::Ordering::Less => old.next(),
            std::cmp::Ordering::Greater => {
                changed = true;
                fresh.next()
            }
            std::cmp::Ordering::Equal => {
                let o = old.next();
                let f = fresh.next();
                changed |= o != f;
                f
            }
        };
        out.extend(next);
    }
    (out, changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A raw agent-events frame of one row, with `event_id` and `event_type` as given.
    fn frame(id: Option<&str>, kind: Option<&str>) -> DataFrame {
        let one = |v: Option<&'static str>| std::iter::once(v);
        FrameBuilder::new(1)
            .str("event_id", std::iter::once(id))
            .str("event_type", std::iter::once(kind))
            .str("agent_id", one(Some("a1")))
            .ts("occurred_at", std::iter::once(Some(1_000)))
            .ts("recorded_at", std::iter::once(Some(1_005)))
            .str("away_reason", one(None))
            .str("active_reason", one(None))
            .list_str("available_for", std::iter::once(None))
            .str("source", one(Some("report")))
            .finish()
            .unwrap()
    }

    #[test]
    fn a_null_or_unknown_value_in_a_required_raw_column_is_an_error_naming_it() {
        let ok = agent_events_from(&frame(Some("e1"), Some("AGENT_STATUS/LOGGED_IN"))).unwrap();
        assert_eq!(ok[0].kind, AgentEventKind::LoggedIn);
        assert_eq!(ok[0].source, Source::Report);
        // Before: a null id read as "" and an unknown type as itself, carried into the day.
        let e = agent_events_from(&frame(None, Some("AGENT_STATUS/LOGGED_IN")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("row 1") && e.contains("`event_id` is null"),
            "{e}"
        );
        let e = agent_events_from(&frame(Some("e1"), Some("AGENT_STATUS/NAPPING")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`event_type` is `AGENT_STATUS/NAPPING`"), "{e}");
    }

    fn session(cs: u32, id: u32, status: &str) -> WorkSession {
        WorkSession {
            id: format!("w{id}"),
            contact_session_id: format!("cs{cs:03}"),
            contact_session_created_at: 1_000 + cs as Ms,
            customer_id: None,
            conversation_id: Some(format!("c{cs}")),
            inbox_id: Some("i1".into()),
            channel: None,
            direction: None,
            agent_accepted_at: None,
            contact_session_routed_at: None,
            agent_id: Some("a1".into()),
            sla_fulfilled_at: None,
            contact_session_ended_at: Some(2_000),
            status: Some(status.into()),
            within_sla: None,
            work_session_handle_time_seconds: Some(1.0),
            work_session_after_contact_time_seconds: None,
            work_session_unknown_time_seconds: None,
            accepted_inbox_id: None,
        }
    }

    /// What the upsert was before it merged sorted runs: a map by key, fresh rows inserted
    /// last; the day was rewritten when the result differed from the rows read.
    fn by_map(old: &[WorkSession], fresh: &[WorkSession]) -> (Vec<WorkSession>, bool) {
        let mut m = std::collections::BTreeMap::new();
        for w in old.iter().chain(fresh) {
            m.insert((w.contact_session_id.clone(), w.id.clone()), w.clone());
        }
        let merged: Vec<WorkSession> = m.into_values().collect();
        let changed = merged != old;
        (merged, changed)
    }

    #[test]
    fn work_sessions_upsert_as_a_map_would_and_says_when_the_day_changed() {
        let old = vec![
            session(1, 1, "ENDED"),
            session(2, 1, "ENDED"),
            session(2, 2, "ENDED"),
        ];
        // Rows already stored, sent again by the next day's overlapping window: no rewrite.
        let (merged, changed) = upsert_work_sessions(old.clone(), vec![session(2, 1, "ENDED")]);
        assert_eq!((merged, changed), (old.clone(), false));
        let (merged, changed) = upsert_work_sessions(old.clone(), vec![]);
        assert_eq!((merged, changed), (old.clone(), false));
        // A new row, and a changed one (the fresh one wins), in any order.
        let fresh = vec![session(3, 1, "ENDED"), session(1, 1, "TRANSFERRED")];
        let (merged, changed) = upsert_work_sessions(old.clone(), fresh.clone());
        assert!(changed);
        assert_eq!(merged, by_map(&old, &fresh).0);
        assert_eq!(merged[0].status.as_deref(), Some("TRANSFERRED"));
        // The same key twice in one answer: the later one wins, as the map kept it.
        let fresh = vec![session(2, 2, "TRANSFERRED"), session(2, 2, "ENDED")];
        assert_eq!(
            upsert_work_sessions(old.clone(), fresh),
            (old.clone(), false)
        );

        // Many shapes against the map: a small generator (no dependency), keys drawn from a
        // narrow range so that they collide, within each side and across.
        let mut seed = 0x2545_f491_u64;
        let mut next = move |n: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ((seed >> 33) % n) as u32
        };
        let statuses = ["ENDED", "TRANSFERRED"];
        let mut rows = move |n: u64| -> Vec<WorkSession> {
            let len = next(n);
            (0..len)
                .map(|_| session(next(6), next(3), statuses[next(2) as usize]))
                .collect()
        };
        for case in 0..500 {
            let mut old = rows(12);
            // Most stored days are as written (sorted, unique); some are not.
            if case % 4 != 0 {
                old = by_map(&old, &[]).0;
            }
            let fresh = rows(8);
            let want = by_map(&old, &fresh);
            assert_eq!(
                upsert_work_sessions(old.clone(), fresh.clone()),
                want,
                "case {case}: {old:?} + {fresh:?}"
            );
        }
    }
}
