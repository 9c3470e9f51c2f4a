//! Status segments: per agent and axis, a state opens at an event and closes at the agent's next
//! event on that axis, cut at the day's bounds. A plain per-agent state machine (DESIGN §7).

use rustc_hash::FxHashMap as HashMap;

use crate::model::AgentEvent;
use crate::time::Ms;

pub use crate::model::{Axis, State};

#[derive(Clone, Debug, PartialEq)]
pub struct Segment<'a> {
    pub agent_id: &'a str,
    pub axis: Axis,
    pub opened_by: &'a AgentEvent,
    pub start_at: Ms,
    /// `None` only while still open at the end of an incomplete (today) day.
    pub end_at: Option<Ms>,
}

/// The last event of each agent on each axis: the state carried into the next day.
pub type StartState = HashMap<(String, Axis), AgentEvent>;

/// Builds one day's segments. `events` are the day's events (any order); `prior` holds the state
/// at the start of the day; `complete` says whether the day is over (else open ends stay null).
pub fn day_segments<'a>(
    day_start: Ms,
    day_end: Ms,
    complete: bool,
    events: &'a [AgentEvent],
    prior: &'a StartState,
) -> Vec<Segment<'a>> {
    let mut by_key: HashMap<(&'a str, Axis), Vec<&'a AgentEvent>> = HashMap::default();
    for ev in events {
        if let Some(axis) = ev.kind.axis() {
            by_key
                .entry((ev.agent_id.as_str(), axis))
                .or_default()
                .push(ev);
        }
    }
    for ((agent, axis), ev) in prior {
        // An agent with no event today still carries yesterday's state through the day.
        by_key.entry((agent.as_str(), *axis)).or_default();
        let _ = ev;
    }
    let clamp = |t: Ms| t.clamp(day_start, day_end);
    let mut out = Vec::new();
    for ((agent, axis), mut evs) in by_key {
        evs.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        let mut opens: Vec<(&'a AgentEvent, Ms)> = Vec::with_capacity(evs.len() + 1);
        if let Some(p) = prior.get(&(agent.to_string(), axis)) {
            opens.push((p, day_start));
        }
        opens.extend(evs.iter().map(|e| (*e, clamp(e.occurred_at))));
        for i in 0..opens.len() {
            let (ev, start) = opens[i];
            let end = match opens.get(i + 1) {
                Some((_, next)) => Some(*next),
                None if complete => Some(day_end),
                None => None,
            };
            // A piece of zero duration is never emitted (DESIGN §5): the state carried into a
            // day that an event clamped to its midnight replaces at once, or the earlier of two
            // events at one instant (the later one is the state). So no two pieces of an agent
            // and axis share a start.
            if end == Some(start) {
                continue;
            }
            out.push(Segment {
                agent_id: agent,
                axis,
                opened_by: ev,
                start_at: start,
                end_at: end,
            });
        }
    }
    // Sorted by the dataset's key as stored: (agent_id, axis name, start_at).
    out.sort_by(|a, b| {
        (
            a.agent_id,
            a.axis.as_str(),
            a.start_at,
            &a.opened_by.event_id,
        )
            .cmp(&(
                b.agent_id,
                b.axis.as_str(),
                b.start_at,
                &b.opened_by.event_id,
            ))
    });
    out
}

/// Carries the state forward past `events` (a day's), dropping what is older than the lookback.
pub fn advance_state(state: &mut StartState, events: &[AgentEvent]) {
    // The newest event per agent and axis first, so each is cloned once, not every event.
    let mut newest: HashMap<(&str, Axis), &AgentEvent> = HashMap::default();
    for ev in events {
        let Some(axis) = ev.kind.axis() else { continue };
        let e = newest.entry((ev.agent_id.as_str(), axis)).or_insert(ev);
        if ev.order_key() > e.order_key() {
            *e = ev;
        }
    }
    for ((agent, axis), ev) in newest {
        match state.get(&(agent.to_string(), axis)) {
            Some(cur) if cur.order_key() >= ev.order_key() => {}
            _ => {
                state.insert((agent.to_string(), axis), ev.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, t: &str, at: Ms, away: Option<&str>) -> AgentEvent {
        AgentEvent {
            event_id: id.into(),
            kind: crate::model::AgentEventKind::parse(t).expect("a known type"),
            agent_id: "a".into(),
            occurred_at: at,
            recorded_at: at + 5,
            away_reason: away.map(Into::into),
            active_reason: None,
            available_for: None,
            source: crate::model::Source::Report,
        }
    }

    #[test]
    fn idle_away_closes_at_logout_and_day_cuts() {
        let evs = vec![
            ev("1", "AGENT_STATUS/LOGGED_IN", 100, None),
            ev("2", "AGENT_STATUS/WENT_AWAY", 200, None),
            ev("3", "AGENT_STATUS/LOGGED_OUT", 300, None),
            ev("f", "AGENT_AVAILABILITY/FOCUS_ENTERED", 250, None),
        ];
        let none = StartState::default();
        let segs = day_segments(0, 1000, true, &evs, &none);
        let got: Vec<(&str, Ms, Option<Ms>)> = segs
            .iter()
            .map(|s| (s.opened_by.event_id.as_str(), s.start_at, s.end_at))
            .collect();
        assert_eq!(
            got,
            vec![
                ("1", 100, Some(200)),
                ("2", 200, Some(300)),
                ("3", 300, Some(1000))
            ]
        );
        assert_eq!(segs[1].opened_by.state(), State::Away);
        // Today (incomplete): the last segment stays open.
        let segs = day_segments(0, 1000, false, &evs, &none);
        assert_eq!(segs[2].end_at, None);
    }

    #[test]
    fn no_piece_of_zero_duration() {
        // Yesterday's state, replaced at today's 00:00 by an event that occurred just before
        // midnight but was recorded after it (clamped to 00:00); then two events at one instant.
        let mut st = StartState::default();
        advance_state(&mut st, &[ev("0", "AGENT_STATUS/LOGGED_IN", -5_000, None)]);
        let today = vec![
            ev("1", "AGENT_STATUS/WENT_AWAY", -300, Some("Lunch")),
            ev("2", "AGENT_STATUS/RETURNED_FROM_AWAY", 400, None),
            ev("3", "AGENT_STATUS/LOGGED_OUT", 400, None),
            ev("4", "AGENT_STATUS/LOGGED_IN", 1000, None),
        ];
        let segs = day_segments(0, 1000, true, &today, &st);
        let got: Vec<(&str, Ms, Option<Ms>)> = segs
            .iter()
            .map(|s| (s.opened_by.event_id.as_str(), s.start_at, s.end_at))
            .collect();
        // "4" opens at the day's very end: nothing of it falls in this day.
        assert_eq!(got, vec![("1", 0, Some(400)), ("3", 400, Some(1000))]);
        // Today, still going: the open piece at the end stays, even if it opened just now.
        let segs = day_segments(0, 1000, false, &today, &st);
        assert_eq!(
            segs.last().map(|s| (s.start_at, s.end_at)),
            Some((1000, None))
        );
    }

    #[test]
    fn state_carries_over_midnight() {
        let yesterday = vec![ev("1", "AGENT_STATUS/LOGGED_IN", -500, None)];
        let mut st = StartState::default();
        advance_state(&mut st, &yesterday);
        let today = vec![ev("2", "AGENT_STATUS/LOGGED_OUT", 400, None)];
        let segs = day_segments(0, 1000, true, &today, &st);
        assert_eq!(segs.len(), 2);
        assert_eq!(
            (
                segs[0].opened_by.event_id.as_str(),
                segs[0].start_at,
                segs[0].end_at
            ),
            ("1", 0, Some(400))
        );
        // An agent with no event today keeps its state all day.
        let segs = day_segments(0, 1000, true, &[], &st);
        assert_eq!((segs[0].start_at, segs[0].end_at), (0, Some(1000)));
    }
}
