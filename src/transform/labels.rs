//! The label of an agent event: the string task patterns are matched against (DESIGN §5).

use std::borrow::Cow;

use crate::model::{AgentEvent, AgentEventKind as K};

/// Borrowed or static where it can be (most labels), so labelling a day allocates little.
pub fn label(ev: &AgentEvent) -> Cow<'_, str> {
    match ev.kind {
        K::LoggedIn => "LOGGED_IN".into(),
        K::LoggedOut => "LOGGED_OUT".into(),
        // An idle agent goes away with no reason.
        K::WentAway => ev.away_reason.as_deref().unwrap_or("WENT_AWAY").into(),
        K::ReturnedFromAway => "RETURNED_FROM_AWAY".into(),
        K::ChangedActiveReason => {
            format!("ActiveReason:{}", ev.active_reason.as_deref().unwrap_or("")).into()
        }
        K::AvailabilityUpdated => match &ev.available_for {
            Some(ch) if !ch.is_empty() => {
                let mut ch: Vec<&str> = ch.iter().map(String::as_str).collect();
                ch.sort_unstable();
                format!("AvailableFor:{}", ch.join(",")).into()
            }
            _ => "Unavailable".into(),
        },
        K::FocusEntered => "FOCUS_ENTERED".into(),
        K::FocusExited => "FOCUS_EXITED".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: &str, away: Option<&str>, active: Option<&str>, ch: Option<&[&str]>) -> AgentEvent {
        AgentEvent {
            event_id: "e".into(),
            kind: K::parse(t).expect("a known type"),
            agent_id: "a".into(),
            occurred_at: 0,
            recorded_at: 0,
            away_reason: away.map(Into::into),
            active_reason: active.map(Into::into),
            available_for: ch.map(|c| c.iter().map(|s| s.to_string()).collect()),
            source: crate::model::Source::Report,
        }
    }

    #[test]
    fn every_label_kind() {
        assert_eq!(
            label(&ev("AGENT_STATUS/LOGGED_IN", None, Some("Work"), None)),
            "LOGGED_IN"
        );
        assert_eq!(
            label(&ev("AGENT_STATUS/LOGGED_OUT", None, None, None)),
            "LOGGED_OUT"
        );
        assert_eq!(
            label(&ev("AGENT_STATUS/WENT_AWAY", Some("Lunch"), None, None)),
            "Lunch"
        );
        assert_eq!(
            label(&ev("AGENT_STATUS/WENT_AWAY", None, None, None)),
            "WENT_AWAY"
        );
        assert_eq!(
            label(&ev(
                "AGENT_STATUS/RETURNED_FROM_AWAY",
                Some("Lunch"),
                Some("Work"),
                None
            )),
            "RETURNED_FROM_AWAY"
        );
        assert_eq!(
            label(&ev(
                "AGENT_STATUS/CHANGED_ACTIVE_REASON",
                None,
                Some("Training"),
                None
            )),
            "ActiveReason:Training"
        );
        assert_eq!(
            label(&ev(
                "AGENT_AVAILABILITY/UPDATED",
                None,
                None,
                Some(&["VOICE", "MESSAGING"])
            )),
            "AvailableFor:MESSAGING,VOICE"
        );
        assert_eq!(
            label(&ev("AGENT_AVAILABILITY/UPDATED", None, None, Some(&[]))),
            "Unavailable"
        );
        assert_eq!(
            label(&ev("AGENT_AVAILABILITY/FOCUS_ENTERED", None, None, None)),
            "FOCUS_ENTERED"
        );
        assert_eq!(
            label(&ev("AGENT_AVAILABILITY/FOCUS_EXITED", None, None, None)),
            "FOCUS_EXITED"
        );
    }
}
