//! The label of an agent event: the string task patterns are matched against (DESIGN §5).

use std::borrow::Cow;

use crate::model::AgentEvent;

/// Borrowed or static where it can be (most labels), so labelling a day allocates little.
pub fn label(ev: &AgentEvent) -> Cow<'_, str> {
    match ev.event_type.as_str() {
        "AGENT_STATUS/LOGGED_IN" => "LOGGED_IN".into(),
        "AGENT_STATUS/LOGGED_OUT" => "LOGGED_OUT".into(),
        // An idle agent goes away with no reason.
        "AGENT_STATUS/WENT_AWAY" => ev.away_reason.as_deref().unwrap_or("WENT_AWAY").into(),
        "AGENT_STATUS/RETURNED_FROM_AWAY" => "RETURNED_FROM_AWAY".into(),
        "AGENT_STATUS/CHANGED_ACTIVE_REASON" => {
            format!("ActiveReason:{}", ev.active_reason.as_deref().unwrap_or("")).into()
        }
        "AGENT_AVAILABILITY/UPDATED" => match &ev.available_for {
            Some(ch) if !ch.is_empty() => {
                let mut ch: Vec<&str> = ch.iter().map(String::as_str).collect();
                ch.sort_unstable();
                format!("AvailableFor:{}", ch.join(",")).into()
            }
            _ => "Unavailable".into(),
        },
        "AGENT_AVAILABILITY/FOCUS_ENTERED" => "FOCUS_ENTERED".into(),
        "AGENT_AVAILABILITY/FOCUS_EXITED" => "FOCUS_EXITED".into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: &str, away: Option<&str>, active: Option<&str>, ch: Option<&[&str]>) -> AgentEvent {
        AgentEvent {
            event_id: "e".into(),
            event_type: t.into(),
            agent_id: "a".into(),
            occurred_at: 0,
            recorded_at: 0,
            away_reason: away.map(Into::into),
            active_reason: active.map(Into::into),
            available_for: ch.map(|c| c.iter().map(|s| s.to_string()).collect()),
            source: "report".into(),
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
