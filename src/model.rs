//! The records that flow between stages.

use sha2::{Digest, Sha256};

use crate::time::Ms;

/// Where an agent event was read from.
pub const SOURCE_EVENTS_API: &str = "events_api";
pub const SOURCE_REPORT: &str = "report";

/// One agent status or availability event, as landed in the raw zone.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentEvent {
    pub event_id: String,
    pub event_type: String,
    pub agent_id: String,
    /// When it happened (`occurredAt`; the recorded time for focus events, which have none).
    pub occurred_at: Ms,
    /// When Gladly recorded it (`timestamp`): what both APIs filter on and what dates it.
    pub recorded_at: Ms,
    pub away_reason: Option<String>,
    pub active_reason: Option<String>,
    /// Channels, sorted; `Some(vec![])` = unavailable everywhere.
    pub available_for: Option<Vec<String>>,
    pub source: String,
}

pub const AGENT_EVENT_TYPES: &[&str] = &[
    "AGENT_STATUS/LOGGED_IN",
    "AGENT_STATUS/LOGGED_OUT",
    "AGENT_STATUS/WENT_AWAY",
    "AGENT_STATUS/RETURNED_FROM_AWAY",
    "AGENT_STATUS/CHANGED_ACTIVE_REASON",
    "AGENT_AVAILABILITY/UPDATED",
    "AGENT_AVAILABILITY/FOCUS_ENTERED",
    "AGENT_AVAILABILITY/FOCUS_EXITED",
];

impl AgentEvent {
    pub fn is_focus(&self) -> bool {
        self.event_type.starts_with("AGENT_AVAILABILITY/FOCUS_")
    }

    /// The sort order within an agent: by when it happened, then recorded, then id.
    pub fn order_key(&self) -> (Ms, Ms, &str) {
        (self.occurred_at, self.recorded_at, &self.event_id)
    }
}

/// The stable id of an event, the same whichever API it was read from: the first 32 hex digits
/// of SHA-256 over `subject|event_type|epoch ms`.
pub fn derive_event_id(subject: &str, event_type: &str, ms: Ms) -> String {
    let mut h = Sha256::new();
    h.update(subject.as_bytes());
    h.update(b"|");
    h.update(event_type.as_bytes());
    h.update(b"|");
    h.update(ms.to_string().as_bytes());
    let d = h.finalize();
    let mut s = String::with_capacity(32);
    for b in &d[..16] {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// An agent as `/agents` lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentDim {
    pub agent_id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub team_ids: Vec<String>,
}

/// Trimmed and lower-cased: how agents join to WFM users.
pub fn normalize_email(e: &str) -> String {
    e.trim().to_lowercase()
}

#[derive(Clone, Debug, PartialEq)]
pub struct InboxDim {
    pub inbox_id: String,
    pub name: Option<String>,
    pub disabled: bool,
}

/// Something from Gladly that could not be used: counted and listed in the manifest.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SetAside {
    /// Which answer and where in it (`AgentTimestampsReport 2026-11-20, row 12`).
    pub location: String,
    pub reason: String,
}
