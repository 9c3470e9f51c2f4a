//! The label of an agent event: the string task patterns are matched against (DESIGN §5).

use std::borrow::Cow;

use rustc_hash::FxHashMap as HashMap;

use super::rules::LabelMatcher;
use crate::config::Rule;
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

/// What decides an event's label: events with equal keys have equal labels.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum LabelKey<'e> {
    Kind(K),
    Away(&'e str),
    Active(Option<&'e str>),
    Available(&'e [String]),
}

impl<'e> LabelKey<'e> {
    fn of(ev: &'e AgentEvent) -> LabelKey<'e> {
        match (ev.kind, &ev.away_reason, &ev.available_for) {
            (K::WentAway, Some(r), _) => LabelKey::Away(r),
            (K::ChangedActiveReason, _, _) => LabelKey::Active(ev.active_reason.as_deref()),
            (K::AvailabilityUpdated, _, Some(ch)) if !ch.is_empty() => LabelKey::Available(ch),
            (k, _, _) => LabelKey::Kind(k),
        }
    }
}

/// Labels and their tasks, each distinct one built and matched once: a day has a handful of
/// labels and tens of thousands of events, and building a label (a `format!` for channels and
/// active reasons) and hashing it into the matcher per row was a twentieth of the transform.
pub struct Labeler<'r, 'e> {
    matcher: LabelMatcher<'r>,
    ids: HashMap<LabelKey<'e>, u32>,
    /// By id: the label and the task its first matching rule names.
    table: Vec<(Box<str>, Option<&'r str>)>,
}

impl<'r, 'e> Labeler<'r, 'e> {
    pub fn new(rules: &'r [Rule]) -> Labeler<'r, 'e> {
        Labeler {
            matcher: LabelMatcher::new(rules),
            ids: HashMap::default(),
            table: Vec::new(),
        }
    }

    /// The id of an event's label, for `label` and `task`.
    pub fn id(&mut self, ev: &'e AgentEvent) -> u32 {
        let key = LabelKey::of(ev);
        if let Some(id) = self.ids.get(&key) {
            return *id;
        }
        let l = label(ev);
        let task = self.matcher.task(&l);
        let id = self.table.len() as u32;
        self.table.push((l.into(), task));
        self.ids.insert(key, id);
        id
    }

    /// How many distinct labels were seen: ids run from 0 below it.
    pub fn distinct(&self) -> usize {
        self.table.len()
    }

    pub fn label(&self, id: u32) -> &str {
        &self.table[id as usize].0
    }

    pub fn task(&self, id: u32) -> Option<&'r str> {
        self.table[id as usize].1
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
