//! The records that flow between stages.

use sha2::{Digest, Sha256};

use crate::time::Ms;

/// Defines a closed set of values written as fixed strings (in the raw zone, the curated
/// datasets and the APIs): parsed once where they enter, matched as values everywhere else.
macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* $v),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$v),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s { $($s => Some($name::$v),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// Where an event was read from.
    Source {
        EventsApi => "events_api",
        Report => "report",
    }
}

string_enum! {
    /// The agent event types the pipeline reads (DESIGN §5); any other is set aside at decode.
    AgentEventKind {
        LoggedIn => "AGENT_STATUS/LOGGED_IN",
        LoggedOut => "AGENT_STATUS/LOGGED_OUT",
        WentAway => "AGENT_STATUS/WENT_AWAY",
        ReturnedFromAway => "AGENT_STATUS/RETURNED_FROM_AWAY",
        ChangedActiveReason => "AGENT_STATUS/CHANGED_ACTIVE_REASON",
        AvailabilityUpdated => "AGENT_AVAILABILITY/UPDATED",
        FocusEntered => "AGENT_AVAILABILITY/FOCUS_ENTERED",
        FocusExited => "AGENT_AVAILABILITY/FOCUS_EXITED",
    }
}

string_enum! {
    /// The two independent state machines of an agent (DESIGN §7).
    Axis {
        Status => "status",
        Availability => "availability",
    }
}

string_enum! {
    /// The state a segment piece is in, on its axis.
    State {
        Active => "active",
        Away => "away",
        LoggedOut => "logged_out",
        Available => "available",
        Unavailable => "unavailable",
    }
}

string_enum! {
    /// The conversation event types the pipeline reads.
    ConversationEventKind {
        Created => "CONVERSATION/CREATED",
        Closed => "CONVERSATION/CLOSED",
        Reopened => "CONVERSATION/REOPENED",
        AssigneeUpdated => "CONVERSATION_ASSIGNEE/UPDATED",
    }
}

impl AgentEventKind {
    /// Which axis an event of this kind moves; focus events move none.
    pub fn axis(self) -> Option<Axis> {
        match self {
            AgentEventKind::AvailabilityUpdated => Some(Axis::Availability),
            AgentEventKind::FocusEntered | AgentEventKind::FocusExited => None,
            _ => Some(Axis::Status),
        }
    }
}

/// One agent status or availability event, as landed in the raw zone.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentEvent {
    pub event_id: String,
    pub kind: AgentEventKind,
    pub agent_id: String,
    /// When it happened (`occurredAt`; the recorded time for focus events, which have none).
    pub occurred_at: Ms,
    /// When Gladly recorded it (`timestamp`): what both APIs filter on and what dates it.
    pub recorded_at: Ms,
    pub away_reason: Option<String>,
    pub active_reason: Option<String>,
    /// Channels, sorted; `Some(vec![])` = unavailable everywhere.
    pub available_for: Option<Vec<String>>,
    pub source: Source,
}

impl AgentEvent {
    pub fn is_focus(&self) -> bool {
        self.kind.axis().is_none()
    }

    /// The state this event puts its axis in.
    pub fn state(&self) -> State {
        match self.kind {
            AgentEventKind::LoggedOut => State::LoggedOut,
            AgentEventKind::WentAway => State::Away,
            AgentEventKind::AvailabilityUpdated => {
                if self.available_for.as_ref().is_some_and(|c| !c.is_empty()) {
                    State::Available
                } else {
                    State::Unavailable
                }
            }
            _ => State::Active,
        }
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

/// A team of `/teams`: its name, for people (the report's groups).
#[derive(Clone, Debug, PartialEq)]
pub struct TeamDim {
    pub team_id: String,
    pub name: Option<String>,
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
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SetAside {
    /// Which answer and where in it (`AgentTimestampsReport 2026-11-20, row 12`).
    pub location: String,
    pub reason: String,
}

/// One conversation event, as landed in the raw zone.
#[derive(Clone, Debug, PartialEq)]
pub struct ConversationEvent {
    /// Derived: `conversation_id|event_type|timestamp ms`.
    pub event_id: String,
    pub kind: ConversationEventKind,
    pub conversation_id: String,
    pub customer_id: Option<String>,
    pub recorded_at: Ms,
    /// The assignment just before the event (`context.assignee`).
    pub inbox_id: Option<String>,
    pub agent_id: Option<String>,
    /// The new assignment, on `CONVERSATION_ASSIGNEE/UPDATED`.
    pub new_inbox_id: Option<String>,
    pub new_agent_id: Option<String>,
    pub source: Source,
}

impl ConversationEvent {
    /// The assignment after this event: the new one for an assignee update, else the context's.
    pub fn assignment(&self) -> (Option<&str>, Option<&str>) {
        if self.kind == ConversationEventKind::AssigneeUpdated {
            (
                self.new_inbox_id.as_deref().or(self.inbox_id.as_deref()),
                self.new_agent_id.as_deref(),
            )
        } else {
            (self.inbox_id.as_deref(), self.agent_id.as_deref())
        }
    }
}

/// One ended Gladly work session (`reports/work-session-events`), `_sec` renamed `_seconds`.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkSession {
    pub id: String,
    pub contact_session_id: String,
    pub contact_session_created_at: Ms,
    pub customer_id: Option<String>,
    pub conversation_id: Option<String>,
    pub inbox_id: Option<String>,
    pub channel: Option<String>,
    pub direction: Option<String>,
    pub agent_accepted_at: Option<Ms>,
    pub contact_session_routed_at: Option<Ms>,
    pub agent_id: Option<String>,
    pub sla_fulfilled_at: Option<Ms>,
    pub contact_session_ended_at: Option<Ms>,
    pub status: Option<String>,
    pub within_sla: Option<bool>,
    pub work_session_handle_time_seconds: Option<f64>,
    pub work_session_after_contact_time_seconds: Option<f64>,
    pub work_session_unknown_time_seconds: Option<f64>,
    pub accepted_inbox_id: Option<String>,
}
