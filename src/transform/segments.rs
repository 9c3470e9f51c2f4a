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

/// An axis's place in the dataset's sort order, which is by its name.
fn axis_rank(a: Axis) -> u8 {
    match a {
        Axis::Availability => 0,
        Axis::Status => 1,
    }
}

/// A day's event in the one sort of `day_segments_and_newest`: its key (agent rank, axis in
/// name order, occurred, recorded; the event id breaks ties), its axis, the event.
type Keyed<'e> = ((u32, u8, Ms, Ms), Axis, &'e AgentEvent);

/// Builds one day's segments. `events` are the day's events (any order); `prior` holds the state
/// at the start of the day; `complete` says whether the day is over (else open ends stay null).
/// The pieces come sorted by the dataset's key: (agent_id, axis name, start_at).
pub fn day_segments<'a>(
    day_start: Ms,
    day_end: Ms,
    complete: bool,
    events: &'a [AgentEvent],
    prior: &'a StartState,
) -> Vec<Segment<'a>> {
    day_segments_and_newest(day_start, day_end, complete, events, prior).0
}

/// `day_segments`, and the newest of the day's events for each agent and axis that has any:
/// what `carry_newest` moves the state to (the runs the segments are cut from end with them).
pub fn day_segments_and_newest<'a, 'e: 'a, 'p: 'a>(
    day_start: Ms,
    day_end: Ms,
    complete: bool,
    events: &'e [AgentEvent],
    prior: &'p StartState,
) -> (Vec<Segment<'a>>, Vec<&'e AgentEvent>) {
    // One sort puts every agent and axis in a run of its own, in the dataset's key order and
    // each run in event order: the pieces come out sorted (a hash map of runs, a sort per run
    // and a sort of all pieces cost twice as much). Agents are sorted by name once and then
    // compared by rank, so the sort compares integers, not strings.
    let mut rank: HashMap<&'a str, u32> = HashMap::default();
    for agent in events
        .iter()
        .map(|e| e.agent_id.as_str())
        .chain(prior.keys().map(|(a, _)| a.as_str()))
    {
        rank.entry(agent).or_insert(0);
    }
    let mut names: Vec<&'a str> = rank.keys().copied().collect();
    names.sort_unstable();
    for (r, name) in names.iter().enumerate() {
        rank.insert(name, r as u32);
    }

    let mut evs: Vec<Keyed<'e>> = events
        .iter()
        .filter_map(|e| {
            let axis = e.kind.axis()?;
            let r = rank[e.agent_id.as_str()];
            Some(((r, axis_rank(axis), e.occurred_at, e.recorded_at), axis, e))
        })
        .collect();
    evs.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.2.event_id.cmp(&b.2.event_id)));
    // An agent with no event today still carries yesterday's state through the day.
    let mut carried: Vec<((u32, u8), Axis, &'a AgentEvent)> = prior
        .iter()
        .map(|((agent, axis), e)| ((rank[agent.as_str()], axis_rank(*axis)), *axis, e))
        .collect();
    carried.sort_unstable_by_key(|c| c.0);
    let clamp = |t: Ms| t.clamp(day_start, day_end);
    let mut out = Vec::with_capacity(evs.len() + carried.len());
    let mut newest = Vec::new();
    let mut opens: Vec<(&'a AgentEvent, Ms)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < evs.len() || j < carried.len() {
        // The next run: today's events or a carried state, whichever key comes first.
        let run = |e: &Keyed<'e>| (e.0 .0, e.0 .1);
        let (key, axis) = match (evs.get(i), carried.get(j)) {
            (Some(e), Some(c)) if c.0 < run(e) => (c.0, c.1),
            (Some(e), _) => (run(e), e.1),
            (None, Some(c)) => (c.0, c.1),
            (None, None) => unreachable!("the loop runs while either has more"),
        };
        let agent = names[key.0 as usize];
        opens.clear();
        if let Some(c) = carried.get(j).filter(|c| c.0 == key) {
            opens.push((c.2, day_start));
            j += 1;
        }
        let first = i;
        while let Some(e) = evs.get(i).filter(|e| run(e) == key) {
            opens.push((e.2, clamp(e.2.occurred_at)));
            i += 1;
        }
        if i > first {
            newest.push(evs[i - 1].2);
        }
        for (n, &(ev, start)) in opens.iter().enumerate() {
            let end = match opens.get(n + 1) {
                Some((_, next)) => Some(*next),
                None if complete => Some(day_end),
                None => None,
            };
            // A piece of zero duration is never emitted (DESIGN §5): the state carried into a
            // day that an event clamped to its midnight replaces at once, or the earlier of two
            // events at one instant (the later one is the state). So no two pieces of an agent
            // and axis share a start, and a run's pieces are in start order.
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
    (out, newest)
}

/// Moves the state to the newest events `day_segments_and_newest` found (one per agent and
/// axis), unless the state already holds a later one.
pub fn carry_newest(state: &mut StartState, newest: &[&AgentEvent]) {
    for ev in newest {
        let Some(axis) = ev.kind.axis() else { continue };
        let key = (ev.agent_id.clone(), axis);
        match state.get(&key) {
            Some(cur) if cur.order_key() >= ev.order_key() => {}
            _ => {
                state.insert(key, (*ev).clone());
            }
        }
    }
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
    let newest: Vec<&AgentEvent> = newest.into_values().collect();
    carry_newest(state, &newest);
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

    /// The plain definition: group by agent and axis, sort each group, cut, sort every piece
    /// by the dataset's key (what `day_segments` did before it sorted once).
    fn reference<'a>(
        ds: Ms,
        de: Ms,
        complete: bool,
        events: &'a [AgentEvent],
        prior: &'a StartState,
    ) -> Vec<Segment<'a>> {
        let mut groups: std::collections::BTreeMap<(&str, Axis), Vec<&AgentEvent>> =
            Default::default();
        for e in events {
            if let Some(axis) = e.kind.axis() {
                groups
                    .entry((e.agent_id.as_str(), axis))
                    .or_default()
                    .push(e);
            }
        }
        for (agent, axis) in prior.keys() {
            groups.entry((agent.as_str(), *axis)).or_default();
        }
        let mut out = Vec::new();
        for ((agent, axis), mut evs) in groups {
            evs.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
            let mut opens: Vec<(&AgentEvent, Ms)> = Vec::new();
            if let Some(p) = prior.get(&(agent.to_string(), axis)) {
                opens.push((p, ds));
            }
            opens.extend(evs.iter().map(|e| (*e, e.occurred_at.clamp(ds, de))));
            for i in 0..opens.len() {
                let end = match opens.get(i + 1) {
                    Some((_, n)) => Some(*n),
                    None if complete => Some(de),
                    None => None,
                };
                if end != Some(opens[i].1) {
                    out.push(Segment {
                        agent_id: agent,
                        axis,
                        opened_by: opens[i].0,
                        start_at: opens[i].1,
                        end_at: end,
                    });
                }
            }
        }
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

    #[test]
    fn axes_rank_as_their_names_sort() {
        let mut by_name: Vec<Axis> = Axis::ALL.to_vec();
        by_name.sort_by_key(|a| a.as_str());
        let mut by_rank: Vec<Axis> = Axis::ALL.to_vec();
        by_rank.sort_by_key(|a| axis_rank(*a));
        assert_eq!(by_name, by_rank);
    }

    #[test]
    fn one_sort_gives_the_pieces_of_the_plain_definition() {
        // Pseudo-random days: agents with events on either axis or neither, carried states
        // with and without events today, events before midnight, ties at one instant.
        let kinds = [
            "AGENT_STATUS/LOGGED_IN",
            "AGENT_STATUS/LOGGED_OUT",
            "AGENT_STATUS/WENT_AWAY",
            "AGENT_AVAILABILITY/UPDATED",
            "AGENT_AVAILABILITY/FOCUS_ENTERED",
        ];
        let mut rng = gladly_wfm_sim::rng::Rng::derive(1, &["segments"]);
        let mut next = |n: u64| rng.next_u64() % n;
        for round in 0..200 {
            let mut prior = StartState::default();
            let mut today = Vec::new();
            for a in 0..next(6) {
                let agent = format!("agent-{a}");
                for _ in 0..next(3) {
                    let mut e = ev(
                        &format!("p{round}-{a}-{}", next(1000)),
                        kinds[next(4) as usize],
                        -(next(500) as Ms),
                        None,
                    );
                    e.agent_id = agent.clone();
                    advance_state(&mut prior, std::slice::from_ref(&e));
                }
                for k in 0..next(8) {
                    let mut e = ev(
                        &format!("e{round}-{a}-{k}"),
                        kinds[next(5) as usize],
                        next(1200) as Ms - 100,
                        None,
                    );
                    e.agent_id = agent.clone();
                    e.recorded_at = e.occurred_at.max(0) + next(3) as Ms;
                    today.push(e);
                }
            }
            for complete in [true, false] {
                assert_eq!(
                    day_segments(0, 1000, complete, &today, &prior),
                    reference(0, 1000, complete, &today, &prior),
                    "round {round}, complete {complete}"
                );
            }
            // The state carried from the runs' last events is `advance_state`'s.
            let (_, newest) = day_segments_and_newest(0, 1000, true, &today, &prior);
            let (mut a, mut b) = (prior.clone(), prior.clone());
            carry_newest(&mut a, &newest);
            advance_state(&mut b, &today);
            assert_eq!(a, b, "round {round}: carried state");
        }
    }
}
