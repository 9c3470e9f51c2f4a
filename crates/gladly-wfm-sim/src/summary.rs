//! `AgentSummaryV2` (gladly-api.md §5): Gladly's own aggregate of each agent's logged-in and
//! active time, computed here from the world's ground truth (its agents' status events), never
//! from the product's transform, so the product's audit (DESIGN §14) compares against an
//! independent oracle.
//!
//! Rules, from the spec: logged-in time runs from `LOGGED_IN` to `LOGGED_OUT`, away included;
//! active time is logged-in time outside away (`WENT_AWAY` to `RETURNED_FROM_AWAY`, or to
//! `LOGGED_OUT` on the idle path, which has no return). Durations use the events' occurred-at
//! instants and are time-anchored: a span crossing a bucket edge counts in each bucket for its
//! part, and state carries across midnight because each agent's events are walked in occurred-at
//! order over the whole simulated history. Like every report the summary lags: only events
//! recorded before the cutoff are known, and a span still open then runs to the cutoff.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{Duration, NaiveDate};
use chrono_tz::Tz;

use crate::generator::{Entity, World};
use crate::time::{self, Ms};

/// What the `summary-drift` quirk adds to the planted agent's logged-in and active time.
pub const SUMMARY_DRIFT_SECONDS: f64 = 600.0;
const DRIFT_MS: Ms = 600_000;
const HALF_HOUR_MS: Ms = 30 * 60_000;

/// The longest range, in days, a half-hourly summary is served for ("a month"); longer → 400.
pub const MAX_HALF_HOURLY_DAYS: i64 = 31;

/// The columns, in order (spec §5 names the ones the client reads; `Agent Name` is one of the
/// others Gladly sends, which clients ignore).
pub const SUMMARY_COLUMNS: [&str; 11] = [
    "Agent ID",
    "Agent Name",
    "Email",
    "Time Bucket",
    "Logged In Time in seconds",
    "Active Time in seconds",
    "Logged In",
    "Logged Out",
    "Went Away",
    "Returned from Away",
    "Changed Active Reason",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregation {
    Daily,
    HalfHourly,
}

impl Aggregation {
    pub fn parse(s: &str) -> Option<Aggregation> {
        match s {
            "daily" => Some(Aggregation::Daily),
            "halfHourly" => Some(Aggregation::HalfHourly),
            _ => None,
        }
    }
}

/// The status events the summary reads; the discriminant is the event's count column (the
/// order of the last five `SUMMARY_COLUMNS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    LoggedIn = 0,
    LoggedOut = 1,
    WentAway = 2,
    Returned = 3,
    ChangedActiveReason = 4,
}

impl Mark {
    pub fn parse(etype: &str) -> Option<Mark> {
        Some(match etype {
            "AGENT_STATUS/LOGGED_IN" => Mark::LoggedIn,
            "AGENT_STATUS/LOGGED_OUT" => Mark::LoggedOut,
            "AGENT_STATUS/WENT_AWAY" => Mark::WentAway,
            "AGENT_STATUS/RETURNED_FROM_AWAY" => Mark::Returned,
            "AGENT_STATUS/CHANGED_ACTIVE_REASON" => Mark::ChangedActiveReason,
            _ => return None,
        })
    }
}

/// One status event as the summary needs it: when it occurred, when Gladly recorded it.
#[derive(Clone, Copy, Debug)]
pub struct StatusMark {
    pub occurred: Ms,
    pub recorded: Ms,
    pub mark: Mark,
}

/// Every agent's status events over the simulated history `days` (inclusive), by agent index
/// (as `World::agents`), each list sorted by occurred-at (then recorded-at, then generation).
pub struct StatusTruth {
    days: (NaiveDate, NaiveDate),
    marks: Vec<Vec<StatusMark>>,
}

/// One agent's time: half-open `[start, end)` spans of occurred-at instants, and the events
/// counted (at their occurred-at).
#[derive(Debug, Default, PartialEq)]
pub struct AgentTime {
    pub logged_in: Vec<(Ms, Ms)>,
    pub away: Vec<(Ms, Ms)>,
    pub counted: Vec<(Ms, Mark)>,
}

fn push_span(spans: &mut Vec<(Ms, Ms)>, start: Ms, end: Ms) {
    if end > start {
        spans.push((start, end));
    }
}

/// Walks one agent's status events (sorted by occurred-at), those recorded before `cutoff`.
/// Invariants of the result: spans are disjoint, ascending, non-empty and end by `cutoff`; every
/// away span lies inside a logged-in span (away opens only while logged in and closes at the
/// latest with the logout), so active = logged-in − away is never negative.
pub fn agent_time(marks: &[StatusMark], cutoff: Ms) -> AgentTime {
    let mut out = AgentTime::default();
    let mut login: Option<Ms> = None;
    let mut away: Option<Ms> = None;
    for m in marks.iter().filter(|m| m.recorded < cutoff) {
        // occurred ≤ recorded < cutoff; the min only guards that invariant.
        let t = m.occurred.min(cutoff);
        out.counted.push((t, m.mark));
        match m.mark {
            Mark::LoggedIn => {
                login.get_or_insert(t);
            }
            Mark::WentAway => {
                if login.is_some() && away.is_none() {
                    away = Some(t);
                }
            }
            Mark::Returned => {
                if let Some(a) = away.take() {
                    push_span(&mut out.away, a, t);
                }
            }
            Mark::LoggedOut => {
                // The idle path: an away that the logout ends, with no return.
                if let Some(a) = away.take() {
                    push_span(&mut out.away, a, t);
                }
                if let Some(l) = login.take() {
                    push_span(&mut out.logged_in, l, t);
                }
            }
            Mark::ChangedActiveReason => {}
        }
    }
    // Still logged in (or away) where the report's data ends: counted up to the cutoff.
    if let Some(a) = away {
        push_span(&mut out.away, a, cutoff);
    }
    if let Some(l) = login {
        push_span(&mut out.logged_in, l, cutoff);
    }
    out
}

/// One bucket of the report: `[start, end)`, the local day it belongs to, its `Time Bucket`.
#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    pub start: Ms,
    pub end: Ms,
    pub day: NaiveDate,
    pub label: String,
}

/// The report's buckets, ascending and contiguous: the local days `from..=to` in `tz`, or each
/// day's half hours (every 30 minutes of real time from local midnight, so a fall-back day has
/// 50 and a spring-forward day 46), labelled with their start (`2026-11-01`,
/// `2026-11-01T01:30-05:00`).
pub fn buckets(tz: Tz, from: NaiveDate, to: NaiveDate, agg: Aggregation) -> Vec<Bucket> {
    let mut out = Vec::new();
    let mut day = from;
    while day <= to {
        let (start, end) = (time::day_start(tz, day), time::day_end(tz, day));
        match agg {
            Aggregation::Daily => out.push(Bucket {
                start,
                end,
                day,
                label: day.to_string(),
            }),
            Aggregation::HalfHourly => {
                let mut s = start;
                while s < end {
                    let local = time::to_utc(s).with_timezone(&tz);
                    out.push(Bucket {
                        start: s,
                        end: (s + HALF_HOUR_MS).min(end),
                        day,
                        label: local.format("%Y-%m-%dT%H:%M%:z").to_string(),
                    });
                    s += HALF_HOUR_MS;
                }
            }
        }
        day += Duration::days(1);
    }
    out
}

/// Adds the milliseconds of each span inside each bucket to `into` (by bucket index).
fn add_overlaps(spans: &[(Ms, Ms)], buckets: &[Bucket], into: &mut BTreeMap<usize, Ms>) {
    for &(a, b) in spans {
        let mut i = buckets.partition_point(|k| k.end <= a);
        while i < buckets.len() && buckets[i].start < b {
            let part = b.min(buckets[i].end) - a.max(buckets[i].start);
            if part > 0 {
                *into.entry(i).or_default() += part;
            }
            i += 1;
        }
    }
}

/// One row: an agent (index in `World::agents`) in a bucket (index in `buckets`).
#[derive(Clone, Debug, PartialEq)]
pub struct SummaryRow {
    pub agent: usize,
    pub bucket: usize,
    pub logged_in_ms: Ms,
    pub active_ms: Ms,
    /// Events that occurred in the bucket, in the order of `Mark`'s discriminants.
    pub counts: [u32; 5],
}

/// One agent's rows: a row for every bucket with logged-in time (none for the others).
pub fn agent_rows(agent: usize, t: &AgentTime, buckets: &[Bucket]) -> Vec<SummaryRow> {
    let (mut logged, mut away) = (BTreeMap::new(), BTreeMap::new());
    add_overlaps(&t.logged_in, buckets, &mut logged);
    add_overlaps(&t.away, buckets, &mut away);
    let mut rows: Vec<SummaryRow> = logged
        .into_iter()
        .map(|(bucket, logged_in_ms)| SummaryRow {
            agent,
            bucket,
            logged_in_ms,
            // Away lies inside logged-in time (`agent_time`), so this is ≥ 0.
            active_ms: logged_in_ms - away.get(&bucket).copied().unwrap_or(0),
            counts: [0; 5],
        })
        .collect();
    for &(at, mark) in &t.counted {
        let i = buckets.partition_point(|k| k.end <= at);
        if buckets.get(i).is_none_or(|k| k.start > at) {
            continue; // outside the report's range
        }
        if let Ok(r) = rows.binary_search_by_key(&i, |r| r.bucket) {
            rows[r].counts[mark as usize] += 1;
        }
    }
    rows
}

/// The `summary-drift` quirk on the planted agent's rows: daily rows gain exactly
/// `SUMMARY_DRIFT_SECONDS` of logged-in and of active time; half-hourly, the agent's first row
/// of each day gains it, capped so active ≤ logged-in ≤ 30 minutes. `rows` are the agent's own,
/// in bucket order.
pub fn plant_drift(rows: &mut [SummaryRow], buckets: &[Bucket], agg: Aggregation) {
    let mut last_day = None;
    for r in rows {
        let b = &buckets[r.bucket];
        match agg {
            Aggregation::Daily => {
                r.logged_in_ms += DRIFT_MS;
                r.active_ms += DRIFT_MS;
            }
            Aggregation::HalfHourly if last_day != Some(b.day) => {
                r.logged_in_ms = (r.logged_in_ms + DRIFT_MS).min(HALF_HOUR_MS);
                r.active_ms = (r.active_ms + DRIFT_MS).min(r.logged_in_ms);
            }
            Aggregation::HalfHourly => {}
        }
        last_day = Some(b.day);
    }
}

/// Milliseconds as seconds with up to three decimals: `3600`, `3600.5`, `3600.125`.
pub fn seconds(ms: Ms) -> String {
    let s = format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000));
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

impl World {
    /// Every agent's status events over the simulated history (every generated day, visible
    /// yet or not: the report's cutoff decides what is known), cached until the history moves.
    pub(crate) fn status_truth(&self) -> Arc<StatusTruth> {
        let days = self.day_range();
        if let Some(t) = self.status_truth.lock().unwrap().as_ref() {
            if t.days == days {
                return t.clone();
            }
        }
        let index: HashMap<&str, usize> = self
            .agents
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.as_str(), i))
            .collect();
        let mut marks = vec![Vec::new(); self.agents.len()];
        let mut day = days.0;
        while day <= days.1 {
            for e in self.day(day).events.iter() {
                let (Entity::AgentStatus, Some(occurred), Some(agent)) =
                    (e.entity, e.occurred_at, e.agent_id.as_deref())
                else {
                    continue;
                };
                if let (Some(mark), Some(&i)) = (Mark::parse(&e.etype), index.get(agent)) {
                    marks[i].push(StatusMark {
                        occurred,
                        recorded: e.timestamp,
                        mark,
                    });
                }
            }
            day += Duration::days(1);
        }
        // Stable: ties keep recorded-at, then generation order.
        for m in &mut marks {
            m.sort_by_key(|m| (m.occurred, m.recorded));
        }
        let truth = Arc::new(StatusTruth { days, marks });
        *self.status_truth.lock().unwrap() = Some(truth.clone());
        truth
    }

    /// The agent whose summary figures the `summary-drift` quirk shifts: the first, in id
    /// order, with any logged-in time in the simulated history. `None` without the quirk.
    pub fn summary_drift_agent(&self) -> Option<String> {
        self.summary_drift_index()
            .map(|i| self.agents[i].id.clone())
    }

    fn summary_drift_index(&self) -> Option<usize> {
        if !self.cfg.quirks.summary_drift {
            return None;
        }
        let truth = self.status_truth();
        let mut order: Vec<usize> = (0..self.agents.len()).collect();
        order.sort_by(|a, b| self.agents[*a].id.cmp(&self.agents[*b].id));
        order
            .into_iter()
            .find(|&i| !agent_time(&truth.marks[i], Ms::MAX).logged_in.is_empty())
    }

    /// `AgentSummaryV2` for the local days `from..=to` in `tz`, knowing the events recorded
    /// before `cutoff`: the buckets, and the rows ordered by bucket, then agent id.
    pub fn agent_summary(
        &self,
        tz: Tz,
        from: NaiveDate,
        to: NaiveDate,
        agg: Aggregation,
        cutoff: Ms,
    ) -> (Vec<Bucket>, Vec<SummaryRow>) {
        let buckets = buckets(tz, from, to, agg);
        let truth = self.status_truth();
        let drift = self.summary_drift_index();
        let mut rows = Vec::new();
        for (i, marks) in truth.marks.iter().enumerate() {
            let mut mine = agent_rows(i, &agent_time(marks, cutoff), &buckets);
            if drift == Some(i) {
                plant_drift(&mut mine, &buckets, agg);
            }
            rows.extend(mine);
        }
        rows.sort_by(|a, b| {
            (a.bucket, &self.agents[a.agent].id).cmp(&(b.bucket, &self.agents[b.agent].id))
        });
        (buckets, rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::{Quirks, WorldConfig};

    const NY: &str = "America/New_York";

    fn tz() -> Tz {
        NY.parse().unwrap()
    }

    fn date(s: &str) -> NaiveDate {
        time::parse_date(s).unwrap()
    }

    fn at(s: &str) -> Ms {
        time::parse_ts(s).unwrap()
    }

    /// A status event that occurred at `s` and was recorded 300 ms later.
    fn mark(s: &str, mark: Mark) -> StatusMark {
        StatusMark {
            occurred: at(s),
            recorded: at(s) + 300,
            mark,
        }
    }

    fn daily(marks: &[StatusMark], from: &str, to: &str, cutoff: Ms) -> Vec<(String, Ms, Ms)> {
        let b = buckets(tz(), date(from), date(to), Aggregation::Daily);
        agent_rows(0, &agent_time(marks, cutoff), &b)
            .into_iter()
            .map(|r| (b[r.bucket].label.clone(), r.logged_in_ms, r.active_ms))
            .collect()
    }

    #[test]
    fn a_night_shift_splits_at_midnight() {
        // 23:00 to 07:00 New York time (EST, -05:00), with a break after midnight.
        let marks = [
            mark("2026-11-25T04:00:00Z", Mark::LoggedIn),
            mark("2026-11-25T06:00:00Z", Mark::WentAway),
            mark("2026-11-25T06:15:00.500Z", Mark::Returned),
            mark("2026-11-25T12:00:00Z", Mark::LoggedOut),
        ];
        assert_eq!(
            daily(&marks, "2026-11-23", "2026-11-26", Ms::MAX),
            vec![
                ("2026-11-24".into(), 3_600_000, 3_600_000),
                ("2026-11-25".into(), 25_200_000, 25_200_000 - 900_500),
            ]
        );
    }

    #[test]
    fn an_idle_away_ends_at_the_logout_and_counts_are_per_bucket() {
        let marks = [
            mark("2026-11-24T14:00:00Z", Mark::LoggedIn),
            mark("2026-11-24T15:00:00Z", Mark::ChangedActiveReason),
            mark("2026-11-24T21:30:00Z", Mark::WentAway),
            mark("2026-11-24T22:00:00Z", Mark::LoggedOut),
            // After the logout, away without a login is no time at all.
            mark("2026-11-24T23:00:00Z", Mark::WentAway),
            mark("2026-11-24T23:10:00Z", Mark::Returned),
        ];
        let b = buckets(
            tz(),
            date("2026-11-24"),
            date("2026-11-24"),
            Aggregation::Daily,
        );
        let rows = agent_rows(0, &agent_time(&marks, Ms::MAX), &b);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].logged_in_ms, 8 * time::MS_PER_HOUR);
        assert_eq!(rows[0].active_ms, 7 * time::MS_PER_HOUR + 1_800_000);
        assert_eq!(rows[0].counts, [1, 1, 2, 1, 1]);
    }

    #[test]
    fn the_cutoff_ends_open_spans_and_hides_later_events() {
        let marks = [
            mark("2026-11-24T14:00:00Z", Mark::LoggedIn),
            mark("2026-11-24T15:00:00Z", Mark::WentAway),
            mark("2026-11-24T15:10:00Z", Mark::LoggedOut),
        ];
        // Recorded at 15:00:00.300: unknown at a 15:00:00.200 cutoff, so still active there.
        let cutoff = at("2026-11-24T15:00:00.200Z");
        assert_eq!(
            daily(&marks, "2026-11-24", "2026-11-24", cutoff),
            vec![("2026-11-24".into(), 3_600_200, 3_600_200)]
        );
        let cutoff = at("2026-11-24T15:05:00Z");
        assert_eq!(
            daily(&marks, "2026-11-24", "2026-11-24", cutoff),
            vec![("2026-11-24".into(), 3_900_000, 3_600_000)]
        );
        // Nothing known yet: no row at all.
        assert!(daily(
            &marks,
            "2026-11-24",
            "2026-11-24",
            at("2026-11-24T13:00:00Z")
        )
        .is_empty());
    }

    #[test]
    fn half_hours_of_dst_days_carry_their_offsets() {
        let fall = buckets(
            tz(),
            date("2026-11-01"),
            date("2026-11-01"),
            Aggregation::HalfHourly,
        );
        assert_eq!(fall.len(), 50);
        let labels: Vec<&str> = fall.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(
            &labels[2..6],
            [
                "2026-11-01T01:00-04:00",
                "2026-11-01T01:30-04:00",
                "2026-11-01T01:00-05:00",
                "2026-11-01T01:30-05:00"
            ]
        );
        assert!(fall.windows(2).all(|w| w[0].end == w[1].start));
        let spring = buckets(
            tz(),
            date("2026-03-08"),
            date("2026-03-08"),
            Aggregation::HalfHourly,
        );
        assert_eq!(spring.len(), 46);
        assert_eq!(spring[4].label, "2026-03-08T03:00-04:00");
    }

    #[test]
    fn drift_rules_and_seconds_rendering() {
        let b = buckets(
            tz(),
            date("2026-11-24"),
            date("2026-11-25"),
            Aggregation::HalfHourly,
        );
        let row = |bucket, logged_in_ms, active_ms| SummaryRow {
            agent: 0,
            bucket,
            logged_in_ms,
            active_ms,
            counts: [0; 5],
        };
        let mut rows = vec![
            row(20, 1_500_000, 1_400_000),
            row(21, 1_800_000, 1_800_000),
            row(48 + 2, 100_000, 0),
        ];
        plant_drift(&mut rows, &b, Aggregation::HalfHourly);
        assert_eq!(
            (rows[0].logged_in_ms, rows[0].active_ms),
            (1_800_000, 1_800_000)
        );
        assert_eq!(
            (rows[1].logged_in_ms, rows[1].active_ms),
            (1_800_000, 1_800_000)
        );
        assert_eq!(
            (rows[2].logged_in_ms, rows[2].active_ms),
            (700_000, 600_000)
        );
        let mut day = vec![row(0, 5_000, 4_000)];
        let days = buckets(
            tz(),
            date("2026-11-24"),
            date("2026-11-24"),
            Aggregation::Daily,
        );
        plant_drift(&mut day, &days, Aggregation::Daily);
        assert_eq!((day[0].logged_in_ms, day[0].active_ms), (605_000, 604_000));
        assert_eq!(seconds(3_600_000), "3600");
        assert_eq!(seconds(3_600_500), "3600.5");
        assert_eq!(seconds(125), "0.125");
        assert_eq!(seconds(0), "0");
    }

    fn world(quirks: &str) -> World {
        World::new(WorldConfig {
            seed: 7,
            agents: 20,
            inboxes: 2,
            days: 10,
            timezone: tz(),
            now: Some(at("2026-11-04T17:00:00Z")),
            quirks: Quirks::parse(quirks).unwrap(),
        })
    }

    #[test]
    fn daily_rows_are_the_sum_of_their_half_hours() {
        let w = world("");
        let cutoff = w.now() - time::MS_PER_HOUR;
        let (from, to) = (date("2026-10-26"), date("2026-11-04"));
        let (db, days) = w.agent_summary(tz(), from, to, Aggregation::Daily, cutoff);
        let (hb, halves) = w.agent_summary(tz(), from, to, Aggregation::HalfHourly, cutoff);
        let mut sums: BTreeMap<(usize, NaiveDate), (Ms, Ms, [u32; 5])> = BTreeMap::new();
        for r in &halves {
            let s = sums.entry((r.agent, hb[r.bucket].day)).or_default();
            s.0 += r.logged_in_ms;
            s.1 += r.active_ms;
            for (c, n) in s.2.iter_mut().zip(r.counts) {
                *c += n;
            }
        }
        let daily: BTreeMap<(usize, NaiveDate), (Ms, Ms, [u32; 5])> = days
            .iter()
            .map(|r| {
                (
                    (r.agent, db[r.bucket].day),
                    (r.logged_in_ms, r.active_ms, r.counts),
                )
            })
            .collect();
        assert!(daily.len() > 100, "{} agent-days", daily.len());
        assert_eq!(daily, sums);
        assert!(days
            .iter()
            .all(|r| 0 <= r.active_ms && r.active_ms <= r.logged_in_ms));
        assert!(w.summary_drift_agent().is_none());
    }

    #[test]
    fn the_drift_agent_is_the_first_by_id_with_time() {
        let w = world("summary-drift");
        let id = w.summary_drift_agent().unwrap();
        let mut ids: Vec<&str> = w.agents.iter().map(|a| a.id.as_str()).collect();
        ids.sort();
        assert_eq!(id, ids[0]);
        assert_eq!(SUMMARY_DRIFT_SECONDS * 1000.0, DRIFT_MS as f64);
    }
}
