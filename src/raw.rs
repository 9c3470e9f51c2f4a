//! The raw zone: everything fetched from Gladly, landed as Parquet before any transform
//! (`<root>/raw/<stream>/date=D/part-0.parquet`). Old Events-API data exists nowhere else, so the
//! raw zone is what every transform re-run reads.

use std::collections::HashMap;

use chrono::NaiveDate;
use polars::prelude::PolarsResult;

use crate::frames::{DataFrame, FrameBuilder, FrameReader};
use crate::model::{AgentDim, AgentEvent, InboxDim};
use crate::storage::{Storage, StorageError};
use crate::time::Ms;

pub const AGENT_EVENTS: &str = "raw/agent_events";
pub const AGENTS: &str = "raw/agents";
pub const INBOXES: &str = "raw/inboxes";

pub fn agent_events_frame(evs: &[AgentEvent]) -> PolarsResult<DataFrame> {
    FrameBuilder::new(evs.len())
        .str("event_id", evs.iter().map(|e| Some(e.event_id.as_str())))
        .str(
            "event_type",
            evs.iter().map(|e| Some(e.event_type.as_str())),
        )
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
    let ids = r.str("event_id")?;
    let types = r.str("event_type")?;
    let agents = r.str("agent_id")?;
    let occ = r.ts("occurred_at")?;
    let rec = r.ts("recorded_at")?;
    let away = r.str("away_reason")?;
    let active = r.str("active_reason")?;
    let avail = r.list_str("available_for")?;
    let source = r.str("source")?;
    let mut out = Vec::with_capacity(r.height());
    for i in 0..r.height() {
        out.push(AgentEvent {
            event_id: ids[i].clone().unwrap_or_default(),
            event_type: types[i].clone().unwrap_or_default(),
            agent_id: agents[i].clone().unwrap_or_default(),
            occurred_at: occ[i].unwrap_or_default(),
            recorded_at: rec[i].unwrap_or_default(),
            away_reason: away[i].clone(),
            active_reason: active[i].clone(),
            available_for: avail[i].clone(),
            source: source[i].clone().unwrap_or_default(),
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
        Some(df) => agent_events_from(&df).map(Some).map_err(|e| StorageError {
            path: st.partition_file(AGENT_EVENTS, day).display().to_string(),
            detail: e.to_string(),
        }),
    }
}

/// Merges a fresh fetch into what the raw zone holds for the day: the union by event id, fresh
/// rows winning. (Focus events exist only in Events-API windows; a later report must not erase them.)
pub fn merge_agent_events(old: Vec<AgentEvent>, fresh: Vec<AgentEvent>) -> Vec<AgentEvent> {
    let mut by_id: HashMap<String, AgentEvent> =
        old.into_iter().map(|e| (e.event_id.clone(), e)).collect();
    for e in fresh {
        by_id.insert(e.event_id.clone(), e);
    }
    let mut out: Vec<AgentEvent> = by_id.into_values().collect();
    out.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    out
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
        .map(|i| AgentDim {
            agent_id: ids[i].clone().unwrap_or_default(),
            name: names[i].clone(),
            email: emails[i].clone(),
            team_ids: teams[i].clone().unwrap_or_default(),
        })
        .collect();
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
        .map(|i| InboxDim {
            inbox_id: ids[i].clone().unwrap_or_default(),
            name: names[i].clone(),
            disabled: disabled[i].unwrap_or(false),
        })
        .collect();
    Ok((out, snap.first().copied().flatten()))
}

/// The newest snapshot of a dimension in the raw zone: (its date, the frame).
pub fn newest(st: &Storage, dataset: &str) -> Result<Option<(NaiveDate, DataFrame)>, StorageError> {
    let Some(day) = st.partitions(dataset).last().copied() else {
        return Ok(None);
    };
    Ok(st.read_partition(dataset, day)?.map(|df| (day, df)))
}
