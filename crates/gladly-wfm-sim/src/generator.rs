//! The simulated contact centre: a deterministic world of agents, inboxes, shifts and
//! conversations. Everything is a pure function of the seed and the flags; the simulated clock
//! (`now`) only decides what is visible yet.
//!
//! Data is generated per "shift day" (the local day a shift or conversation starts), cached for a
//! few days, and regenerated on demand, so a 30-day, 2,000-agent world needs little memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{Duration, NaiveDate};
use chrono_tz::Tz;
use serde_json::{json, Value};

use super::rng::Rng;
use crate::time::{self, Ms};

/// Switches for the inconvenient-but-legal shapes real Gladly answers take.
#[derive(Clone, Debug, Default)]
pub struct Quirks {
    /// UTF-8 BOM in front of CSV reports.
    pub bom: bool,
    /// Blank lines before the CSV header.
    pub blank_lines: bool,
    /// 0–9 fraction digits in timestamps instead of milliseconds.
    pub fraction_digits: bool,
    /// Fields no client knows about, in JSON objects and CSV reports.
    pub unknown_fields: bool,
    /// Now and then an event of a type no client knows about.
    pub unknown_event_type: bool,
    /// Bad input (not part of `all`): a broken JSON line after every 100th event line, and a
    /// row missing its columns after every 200th CSV row (under 1 % each: set aside, the day
    /// stands). Added, never replacing real data.
    pub malformed: bool,
    /// Report timestamps in the report's timezone with its UTC offset (`-05:00`, `-0500`).
    pub report_offsets: bool,
    /// Report timestamps in the report's timezone without an offset (`2026-11-01T01:30:00.000`,
    /// or a space for the `T`), the DST fall-back hour included. With `report-offsets` too, the
    /// renderings alternate row by row.
    pub report_local_time: bool,
    /// A leading `Timezone Filter` column (the report's timezone on every row). Not part of
    /// `all`: it moves every other column one place, which position-reading tools notice.
    pub timezone_filter: bool,
    /// Bad input (not part of `all`): report timestamps as `11/02/2026 15:04:05`, a rendering
    /// no client reads, so every row is unreadable.
    pub unreadable_timestamps: bool,
    /// Planted drift (not part of `all`): one agent's `AgentSummaryV2` figures are off by
    /// `summary::SUMMARY_DRIFT_SECONDS` (see `World::summary_drift_agent`), so an audit of our
    /// numbers against Gladly's has a known disagreement to find, to the second.
    pub summary_drift: bool,
}

impl Quirks {
    pub fn parse(list: &str) -> Result<Quirks, String> {
        let mut q = Quirks::default();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item {
                "bom" => q.bom = true,
                "blank-lines" => q.blank_lines = true,
                "fraction-digits" => q.fraction_digits = true,
                "unknown-fields" => q.unknown_fields = true,
                "unknown-event-type" => q.unknown_event_type = true,
                "malformed" => q.malformed = true,
                "report-offsets" => q.report_offsets = true,
                "report-local-time" => q.report_local_time = true,
                "timezone-filter" => q.timezone_filter = true,
                "unreadable-timestamps" => q.unreadable_timestamps = true,
                "summary-drift" => q.summary_drift = true,
                "all" => {
                    q = Quirks {
                        bom: true,
                        blank_lines: true,
                        fraction_digits: true,
                        unknown_fields: true,
                        unknown_event_type: true,
                        report_offsets: true,
                        report_local_time: true,
                        ..q
                    }
                }
                other => return Err(format!("unknown quirk `{other}` (known: bom, blank-lines, fraction-digits, unknown-fields, unknown-event-type, report-offsets, report-local-time, all; and timezone-filter, malformed, unreadable-timestamps, summary-drift)")),
            }
        }
        Ok(q)
    }
}

#[derive(Clone, Debug)]
pub struct WorldConfig {
    pub seed: u64,
    pub agents: usize,
    pub inboxes: usize,
    pub days: u32,
    pub timezone: Tz,
    /// The simulated clock; `None` = the real clock.
    pub now: Option<Ms>,
    pub quirks: Quirks,
}

#[derive(Clone, Debug)]
pub struct Agent {
    pub id: String,
    pub name: String,
    /// As Gladly delivers it: some with capitals and stray spaces.
    pub email: String,
    /// False for the few agents whose events appear but whom `/agents` does not list.
    pub listed: bool,
    pub team: usize,
    shift_start_minute: u32,
    channels: Vec<&'static str>,
}

#[derive(Clone, Debug)]
pub struct Inbox {
    pub id: String,
    pub name: String,
    pub disabled: bool,
    volume: u32,
}

#[derive(Clone, Debug)]
pub struct Team {
    pub id: String,
    pub name: String,
    pub agent_ids: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Reason {
    pub id: String,
    pub name: String,
}

/// Which `entities` value an event belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entity {
    AgentStatus,
    AgentAvailability,
    Conversation,
    Contact,
}

impl Entity {
    pub fn parse(s: &str) -> Option<Entity> {
        Some(match s {
            "AGENT_STATUS" => Entity::AgentStatus,
            "AGENT_AVAILABILITY" => Entity::AgentAvailability,
            "CONVERSATION" => Entity::Conversation,
            "CONTACT" => Entity::Contact,
            _ => return None,
        })
    }
}

/// One generated event, with the two renderings the APIs need precomputed.
#[derive(Clone, Debug)]
pub struct Event {
    pub id: String,
    pub etype: String,
    pub entity: Entity,
    pub timestamp: Ms,
    pub occurred_at: Option<Ms>,
    pub agent_id: Option<String>,
    pub away_reason: Option<Reason>,
    pub active_reason: Option<Reason>,
    pub available_for: Option<Vec<&'static str>>,
    pub conversation_id: Option<String>,
    pub customer_id: Option<String>,
    /// The assignment just before the event (`context.assignee`).
    pub inbox_id: Option<String>,
    pub assignee_agent: Option<String>,
    /// The new assignment, on `CONVERSATION_ASSIGNEE/UPDATED`.
    pub new_inbox_id: Option<String>,
    pub new_agent_id: Option<String>,
    /// Canonical JSON (milliseconds, no extra fields): the ground truth.
    pub canonical: String,
    /// The line the Events API serves (quirks applied).
    pub line: String,
}

/// One row of `reports/work-session-events`, ground truth (the session as it finally is).
#[derive(Clone, Debug)]
pub struct WorkSession {
    pub id: String,
    pub contact_session_id: String,
    pub created_at: Ms,
    pub customer_id: String,
    pub conversation_id: String,
    pub inbox_id: String,
    pub channel: &'static str,
    pub agent_accepted_at: Option<Ms>,
    pub routed_at: Ms,
    pub agent_id: String,
    pub sla_fulfilled_at: Option<Ms>,
    pub ended_at: Ms,
    pub status: &'static str,
    pub within_sla: bool,
    pub handle_time_sec: f64,
    pub after_contact_time_sec: f64,
}

/// Everything that starts on one local day.
pub struct DayData {
    pub events: Vec<Event>,
    pub work_sessions: Vec<WorkSession>,
}

pub struct World {
    pub cfg: WorldConfig,
    pub agents: Vec<Agent>,
    pub inboxes: Vec<Inbox>,
    pub teams: Vec<Team>,
    pub org_id: String,
    away_reasons: Vec<Reason>,
    active_reasons: Vec<Reason>,
    cache: Mutex<BTreeMap<NaiveDate, Arc<DayData>>>,
    clock: Option<time::Clock>,
    /// Every agent's status events over the simulated history, for `AgentSummaryV2`
    /// (`summary`): built on the first summary asked for, rebuilt when the history moves.
    pub(crate) status_truth: Mutex<Option<Arc<crate::summary::StatusTruth>>>,
}

const FIRST: &[&str] = &[
    "Ana", "Ben", "Chloé", "Dev", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jun", "Kofi", "Lena",
    "Mateo", "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tariq",
];
const LAST: &[&str] = &[
    "Ruiz", "Okafor", "Nguyen", "Smith", "O'Brien", "Kowalski", "Haddad", "Tanaka", "Silva",
    "Müller", "Patel", "Jensen",
];
const INBOX_NAMES: &[&str] = &[
    "Customer_Support",
    "Billing",
    "Returns",
    "VIP Care",
    "Sales",
    "Tech, Tier 2",
];
const ALL_CHANNELS: &[&str] = &["MAIL", "MESSAGING", "TASK", "VOICE"];
const CONTACT_CHANNELS: &[&str] = &["EMAIL", "CHAT", "PHONE_CALL", "SMS"];
/// How many generated days are kept in memory; older ones are regenerated when asked for.
const CACHE_DAYS: usize = 6;

impl World {
    pub fn new(cfg: WorldConfig) -> World {
        let mut rng = Rng::derive(cfg.seed, &["world"]);
        let org_id = rng.id();
        let mut agents = Vec::with_capacity(cfg.agents);
        let teams_n = (cfg.agents / 15).clamp(1, 50);
        for i in 0..cfg.agents {
            let mut r = Rng::derive(cfg.seed, &["agent", &i.to_string()]);
            let id = r.id();
            let first = *r.pick(FIRST);
            let last = *r.pick(LAST);
            // Quoted-comma names ("Ruiz, Ana") make the CSV reports exercise quoting.
            let name = if i % 7 == 3 {
                format!("{last}, {first}")
            } else {
                format!("{first} {last}")
            };
            let local = format!("{}.{}{}", first, last.replace('\'', ""), i);
            let email = match i % 9 {
                // Capitals and stray spaces: the join to WFM users must normalise them.
                2 => format!("  {local}@Example.COM "),
                5 => format!("{}@example.com", local.to_uppercase()),
                _ => format!("{}@example.com", local.to_lowercase()),
            };
            // Every 25th agent (from the 12th) is missing from /agents (deactivated, say).
            let listed = i % 25 != 12;
            // Most shifts start 06:00–14:00 local; one in eight works nights across midnight.
            let shift_start_minute = if i % 8 == 7 {
                20 * 60 + r.range(0, 4) as u32 * 30
            } else {
                6 * 60 + r.range(0, 16) as u32 * 30
            };
            let mut channels: Vec<&'static str> = ALL_CHANNELS
                .iter()
                .copied()
                .filter(|_| r.chance(0.6))
                .collect();
            if channels.is_empty() {
                channels.push("MESSAGING");
            }
            agents.push(Agent {
                id,
                name,
                email,
                listed,
                team: i % teams_n,
                shift_start_minute,
                channels,
            });
        }
        let mut inboxes = Vec::new();
        for i in 0..cfg.inboxes {
            let mut r = Rng::derive(cfg.seed, &["inbox", &i.to_string()]);
            let base = INBOX_NAMES[i % INBOX_NAMES.len()];
            let name = if i < INBOX_NAMES.len() {
                base.to_string()
            } else {
                format!("{base} {}", i / INBOX_NAMES.len() + 1)
            };
            // The last inbox of several is disabled (an old queue that still has history).
            let disabled = cfg.inboxes >= 3 && i == cfg.inboxes - 1;
            inboxes.push(Inbox {
                id: r.id(),
                name,
                disabled,
                volume: if disabled {
                    1
                } else {
                    2 + r.range(0, 3) as u32
                },
            });
        }
        let teams = (0..teams_n)
            .map(|t| {
                let mut r = Rng::derive(cfg.seed, &["team", &t.to_string()]);
                Team {
                    id: r.id(),
                    name: format!("Team {}", t + 1),
                    agent_ids: agents
                        .iter()
                        .filter(|a| a.team == t && a.listed)
                        .map(|a| a.id.clone())
                        .collect(),
                }
            })
            .collect();
        let mut reason = |name: &str| Reason {
            id: rng.id(),
            name: name.to_string(),
        };
        // "Coaching 1:1" is the away reason no sample rule matches.
        let away_reasons = ["Break", "Lunch", "Meeting", "Coaching 1:1"]
            .iter()
            .map(|n| reason(n))
            .collect();
        let active_reasons = ["Work", "Training", "Email Backlog"]
            .iter()
            .map(|n| reason(n))
            .collect();
        World {
            cfg,
            agents,
            inboxes,
            teams,
            org_id,
            away_reasons,
            active_reasons,
            cache: Mutex::new(BTreeMap::new()),
            clock: None,
            status_truth: Mutex::new(None),
        }
    }

    pub fn now(&self) -> Ms {
        match &self.clock {
            Some(c) => c.now(),
            None => self.cfg.now.unwrap_or_else(time::now_ms),
        }
    }

    /// A live clock: from `cfg.now` the world's time runs `speed` times as fast as real time,
    /// and events become visible as it passes (for `follow`; 1.0 is real speed).
    pub fn with_speed(mut self, speed: f64) -> World {
        if speed > 0.0 {
            let base = self.cfg.now.unwrap_or_else(time::now_ms);
            self.clock = Some(time::Clock::starting_at(base, speed));
        }
        self
    }

    pub fn tz(&self) -> Tz {
        self.cfg.timezone
    }

    /// How long in real time until the world's clock shows `at` (zero once it has); `None`
    /// while a clock standing still (`speed` 0 with a fixed `now`) is short of it.
    pub fn real_until(&self, at: Ms) -> Option<std::time::Duration> {
        let left = at - self.now();
        if left <= 0 {
            return Some(std::time::Duration::ZERO);
        }
        match (&self.clock, self.cfg.now) {
            (Some(c), _) => Some(c.real_duration(left)),
            (None, Some(_)) => None,
            (None, None) => Some(std::time::Duration::from_millis(left as u64)),
        }
    }

    /// The simulated history: `days` local days ending today (by the simulated clock).
    pub fn day_range(&self) -> (NaiveDate, NaiveDate) {
        let today = time::day_of(self.tz(), self.now());
        (today - Duration::days(self.cfg.days as i64 - 1), today)
    }

    /// Everything that starts on `day`, generated once and cached.
    pub fn day(&self, day: NaiveDate) -> Arc<DayData> {
        if let Some(d) = self.cache.lock().unwrap().get(&day) {
            return d.clone();
        }
        let data = Arc::new(self.generate_day(day));
        let mut cache = self.cache.lock().unwrap();
        cache.insert(day, data.clone());
        while cache.len() > CACHE_DAYS {
            let oldest = *cache.keys().next().unwrap();
            cache.remove(&oldest);
        }
        data
    }

    /// Events with `from <= timestamp < to`, visible by now, of the given entities, ascending.
    pub fn events_between(&self, from: Ms, to: Ms, entities: &[Entity]) -> Vec<Event> {
        let to = to.min(self.now() + 1);
        if to <= from {
            return Vec::new();
        }
        let (first, last) = self.day_range();
        // Shifts start at most a day before their last event.
        let mut d = time::day_of(self.tz(), from) - Duration::days(1);
        let end_day = time::day_of(self.tz(), to - 1);
        let mut out = Vec::new();
        while d <= end_day {
            if d >= first && d <= last {
                let data = self.day(d);
                out.extend(
                    data.events
                        .iter()
                        .filter(|e| e.timestamp >= from && e.timestamp < to)
                        .filter(|e| entities.contains(&e.entity))
                        .cloned(),
                );
            }
            d += Duration::days(1);
        }
        out.sort_by(|a, b| a.timestamp.cmp(&b.timestamp).then_with(|| a.id.cmp(&b.id)));
        out
    }

    /// Work sessions as the report sees them now: ended ones anchored on their end, open ones
    /// on their creation (with no id and no end), in `[from, to)`.
    pub fn work_sessions_between(&self, from: Ms, to: Ms) -> Vec<(WorkSession, bool)> {
        let now = self.now();
        let (first, last) = self.day_range();
        let mut d = time::day_of(self.tz(), from) - Duration::days(2);
        let end_day = time::day_of(self.tz(), to - 1);
        let mut out = Vec::new();
        while d <= end_day {
            if d >= first && d <= last {
                for ws in &self.day(d).work_sessions {
                    if ws.created_at > now {
                        continue;
                    }
                    let ended = ws.ended_at <= now;
                    let anchor = if ended { ws.ended_at } else { ws.created_at };
                    if anchor >= from && anchor < to {
                        out.push((ws.clone(), ended));
                    }
                }
            }
            d += Duration::days(1);
        }
        out.sort_by(|a, b| {
            let ka = if a.1 { a.0.ended_at } else { a.0.created_at };
            let kb = if b.1 { b.0.ended_at } else { b.0.created_at };
            ka.cmp(&kb)
                .then_with(|| a.0.contact_session_id.cmp(&b.0.contact_session_id))
        });
        out
    }

    fn generate_day(&self, day: NaiveDate) -> DayData {
        let mut events = Vec::new();
        let ds = day.to_string();
        for (i, agent) in self.agents.iter().enumerate() {
            let mut r = Rng::derive(self.cfg.seed, &["shift", &i.to_string(), &ds]);
            if !r.chance(0.82) {
                continue; // day off
            }
            self.generate_shift(&mut r, agent, day, &mut events);
        }
        let mut work_sessions = Vec::new();
        for (i, inbox) in self.inboxes.iter().enumerate() {
            let mut r = Rng::derive(self.cfg.seed, &["conversations", &i.to_string(), &ds]);
            let listed: Vec<&Agent> = self.agents.iter().filter(|a| a.listed).collect();
            if listed.is_empty() {
                continue;
            }
            let n = (self.agents.len() as u32 * inbox.volume / 2).max(inbox.volume);
            for _ in 0..n {
                self.generate_conversation(
                    &mut r,
                    inbox,
                    &listed,
                    day,
                    &mut events,
                    &mut work_sessions,
                );
            }
        }
        events.sort_by(|a, b| a.timestamp.cmp(&b.timestamp).then_with(|| a.id.cmp(&b.id)));
        DayData {
            events,
            work_sessions,
        }
    }

    fn generate_shift(&self, r: &mut Rng, agent: &Agent, day: NaiveDate, out: &mut Vec<Event>) {
        let tz = self.tz();
        let start_min = (agent.shift_start_minute as i64 + r.range(-20, 20)).max(0) as u32;
        let t0 = time::local_to_utc(tz, day, start_min) + r.range(0, 59_999);
        let length = 8 * time::MS_PER_HOUR + r.range(-30, 30) * 60_000;
        let end = t0 + length;
        let work = self.active_reasons[0].clone();
        let mut ev = EventBuilder {
            world: self,
            agent,
            r: r.clone(),
            out,
        };
        ev.status("AGENT_STATUS/LOGGED_IN", t0, None, Some(work.clone()), None);
        let mut channels = agent.channels.clone();
        let at = t0 + ev.r.range(2_000, 30_000);
        ev.availability(at, Some(channels.clone()));

        // A night shift's availability change that occurs just before local midnight and is
        // recorded just after it: it belongs to the next day (the day of its `timestamp`) and
        // starts there at 00:00, replacing at once the state carried into that day.
        let midnight = time::day_end(tz, day);
        if t0 + 60_000 < midnight && end > midnight + 60 * 60_000 {
            ev.availability_recorded(midnight - 400, midnight + 300, Some(channels.clone()));
        }

        // The day's plan: (minutes after login, what happens).
        let mut t = t0 + 30 * 60_000;
        let breaks = [(2 * 60, 0usize, 15), (4 * 60, 1, 30), (6 * 60, 0, 15)];
        for (at, reason, minutes) in breaks {
            let go = t0 + (at + ev.r.range(-20, 20)) * 60_000;
            // Some activity between breaks: an availability toggle, focus time, a reason change.
            while t + 20 * 60_000 < go {
                match ev.r.range(0, 4) {
                    0 => {
                        let mut next: Vec<&'static str> = ALL_CHANNELS
                            .iter()
                            .copied()
                            .filter(|_| ev.r.chance(0.5))
                            .collect();
                        if next.is_empty() {
                            next.push("VOICE");
                        }
                        channels = next;
                        ev.availability(t, Some(channels.clone()));
                    }
                    1 => {
                        ev.focus("AGENT_AVAILABILITY/FOCUS_ENTERED", t, &channels);
                        let back = t + ev.r.range(3, 15) * 60_000;
                        ev.focus("AGENT_AVAILABILITY/FOCUS_EXITED", back, &channels);
                        t = back;
                    }
                    2 => {
                        let reason = self.active_reasons[ev.r.range(1, 2) as usize].clone();
                        ev.status(
                            "AGENT_STATUS/CHANGED_ACTIVE_REASON",
                            t,
                            None,
                            Some(reason),
                            None,
                        );
                    }
                    3 if self.cfg.quirks.unknown_event_type => ev.unknown(t),
                    _ => {}
                }
                t += ev.r.range(3, 15) * 60_000;
            }
            if go + minutes * 60_000 >= end - 30 * 60_000 {
                break;
            }
            let reason = if ev.r.chance(0.12) {
                self.away_reasons[ev.r.range(2, 3) as usize].clone()
            } else {
                self.away_reasons[reason].clone()
            };
            ev.status(
                "AGENT_STATUS/WENT_AWAY",
                go,
                Some(reason.clone()),
                None,
                None,
            );
            let back = go + (minutes + ev.r.range(-3, 5)) * 60_000 + ev.r.range(0, 59_999);
            ev.status(
                "AGENT_STATUS/RETURNED_FROM_AWAY",
                back,
                Some(reason),
                Some(work.clone()),
                Some(go),
            );
            t = back + 60_000;
        }
        if ev.r.chance(0.15) {
            // The idle path: away with no reason, then logged out, with no return.
            let idle = end - ev.r.range(5, 40) * 60_000;
            ev.status("AGENT_STATUS/WENT_AWAY", idle.max(t), None, None, None);
        }
        ev.status("AGENT_STATUS/LOGGED_OUT", end, None, None, None);
        let at = end + ev.r.range(100, 900);
        ev.availability(at, Some(vec![]));
    }

    #[allow(clippy::too_many_arguments)]
    fn generate_conversation(
        &self,
        r: &mut Rng,
        inbox: &Inbox,
        agents: &[&Agent],
        day: NaiveDate,
        out: &mut Vec<Event>,
        sessions: &mut Vec<WorkSession>,
    ) {
        let tz = self.tz();
        // A daytime curve: the sum of two uniforms peaks at 15:00 local, 07:00–23:00.
        let minute = 7 * 60 + (r.range(0, 8 * 60) + r.range(0, 8 * 60)) as u32;
        let t0 = time::local_to_utc(tz, day, minute) + r.range(0, 59_999);
        let conversation_id = r.id();
        let customer_id = r.id();
        let contact_id = r.id();
        let agent = *r.pick(agents);
        let channel = *r.pick(CONTACT_CHANNELS);
        let c = ConvCtx {
            conversation_id: &conversation_id,
            customer_id: &customer_id,
            inbox_id: &inbox.id,
        };
        let quirky = self.cfg.quirks.clone();
        let mut push = |etype: &str,
                        ts: Ms,
                        assignee: Option<&str>,
                        new_agent: Option<&str>,
                        extra: Value,
                        r: &mut Rng| {
            out.push(conversation_event(
                &c,
                r.id(),
                etype,
                ts,
                assignee,
                new_agent,
                extra,
                &quirky,
            ));
        };
        push("CONVERSATION/CREATED", t0, None, None, Value::Null, r);
        let started = t0 + r.range(200, 1500);
        let contact = |extra: Value| {
            let mut v = json!({"channel": channel, "contactId": contact_id});
            if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
                m.extend(e);
            }
            v
        };
        push(
            "CONTACT/STARTED",
            started,
            None,
            None,
            contact(json!({"entryPoint": inbox.name})),
            r,
        );
        // Queue time: a few seconds to four minutes, so most contacts are accepted within the
        // five-minute SLA (about 85 % of those offered, abandons included), as a healthy contact
        // centre's are; a demo showing 15 % would look like a broken pipeline.
        let routed = started + r.range(5, 240) * 1000;
        push(
            "CONVERSATION_ASSIGNEE/UPDATED",
            routed,
            None,
            Some(&agent.id),
            Value::Null,
            r,
        );
        push(
            "CONTACT/OFFERED",
            routed + 500,
            Some(&agent.id),
            None,
            contact(json!({"agentId": agent.id})),
            r,
        );
        let accepted = if r.chance(0.9) {
            let at = routed + r.range(3, 120) * 1000 + r.range(0, 999);
            push(
                "CONTACT/OFFER_ACCEPTED",
                at,
                Some(&agent.id),
                None,
                contact(json!({"agentId": agent.id})),
                r,
            );
            Some(at)
        } else {
            None
        };
        // Some long sessions run past local midnight (a messaging customer who answers hours
        // later): the agent works on such a session a twentieth of its length, so handle times
        // stay at a plausible 4–10 minutes on average. Every other session is 1.5–10 minutes.
        let long = r.chance(0.05);
        let handle_ms = if long {
            r.range(120, 480) * 60_000
        } else {
            r.range(90, 600) * 1000
        };
        let worked = |ms: Ms| if long { ms / 20 } else { ms };
        let ended = accepted.unwrap_or(routed) + handle_ms + r.range(0, 999);
        let status = if accepted.is_some() {
            "ANSWERED"
        } else {
            "ABANDONED"
        };
        push(
            "CONTACT/ENDED",
            ended,
            Some(&agent.id),
            None,
            contact(json!({"status": status})),
            r,
        );
        let acw_ms = r.range(20, 300) * 1000 + r.range(0, 999);
        if r.chance(0.85) {
            let closed = ended + acw_ms;
            push(
                "CONVERSATION/CLOSED",
                closed,
                Some(&agent.id),
                None,
                Value::Null,
                r,
            );
            if r.chance(0.1) {
                let reopened = closed + r.range(30, 360) * 60_000;
                push(
                    "CONVERSATION/REOPENED",
                    reopened,
                    Some(&agent.id),
                    None,
                    Value::Null,
                    r,
                );
                if r.chance(0.7) {
                    let again = reopened + r.range(5, 60) * 60_000;
                    push(
                        "CONVERSATION/CLOSED",
                        again,
                        Some(&agent.id),
                        None,
                        Value::Null,
                        r,
                    );
                }
            }
        }
        let within_sla = accepted.map(|a| a - started <= 5 * 60_000).unwrap_or(false);
        sessions.push(WorkSession {
            id: r.id(),
            contact_session_id: contact_id.clone(),
            created_at: started,
            customer_id: customer_id.clone(),
            conversation_id: conversation_id.clone(),
            inbox_id: inbox.id.clone(),
            channel,
            agent_accepted_at: accepted,
            routed_at: routed,
            agent_id: agent.id.clone(),
            sla_fulfilled_at: if within_sla { accepted } else { None },
            ended_at: ended,
            status,
            within_sla,
            handle_time_sec: accepted
                .map(|a| worked(ended - a) as f64 / 1000.0)
                .unwrap_or(0.0),
            after_contact_time_sec: if accepted.is_some() {
                acw_ms as f64 / 1000.0
            } else {
                0.0
            },
        });
    }

    pub fn inbox_by_id(&self) -> HashMap<&str, &Inbox> {
        self.inboxes.iter().map(|i| (i.id.as_str(), i)).collect()
    }

    /// Formats a timestamp as this world's answers do (the fraction-digits quirk varies digits).
    pub fn ts(&self, ms: Ms, salt: u64) -> String {
        format_ts(ms, salt, &self.cfg.quirks)
    }
}

fn format_ts(ms: Ms, salt: u64, quirks: &Quirks) -> String {
    if quirks.fraction_digits {
        time::fmt_ts_digits(ms, ((ms as u64).wrapping_add(salt) % 10) as u32)
    } else {
        time::fmt_ts(ms)
    }
}

struct ConvCtx<'a> {
    conversation_id: &'a str,
    customer_id: &'a str,
    inbox_id: &'a str,
}

#[allow(clippy::too_many_arguments)]
fn conversation_event(
    c: &ConvCtx,
    id: String,
    etype: &str,
    ts: Ms,
    assignee: Option<&str>,
    new_agent: Option<&str>,
    extra: Value,
    quirks: &Quirks,
) -> Event {
    let entity = if etype.starts_with("CONTACT/") {
        Entity::Contact
    } else {
        Entity::Conversation
    };
    let context = json!({"assignee": {"inboxId": c.inbox_id, "agentId": assignee}});
    let mut content = json!({
        "customerId": c.customer_id,
        "conversationId": c.conversation_id,
        "context": context,
    });
    if let Some(new_agent) = new_agent {
        content["assignee"] = json!({"inboxId": c.inbox_id, "agentId": new_agent});
        content["reason"] = json!("ROUTED");
    }
    if let (Value::Object(m), Value::Object(e)) = (&mut content, extra) {
        m.extend(e);
    }
    let initiator = json!({"id": assignee.or(new_agent).unwrap_or("system"), "type": if assignee.is_some() {"AGENT"} else {"SYSTEM"}});
    let canonical = json!({"id": id, "type": etype, "timestamp": time::fmt_ts(ts), "initiator": initiator, "content": content});
    let line = quirk_line(&canonical, ts, quirks);
    Event {
        id,
        etype: etype.to_string(),
        entity,
        timestamp: ts,
        occurred_at: None,
        agent_id: None,
        away_reason: None,
        active_reason: None,
        available_for: None,
        conversation_id: Some(c.conversation_id.to_string()),
        customer_id: Some(c.customer_id.to_string()),
        inbox_id: Some(c.inbox_id.to_string()),
        assignee_agent: assignee.map(str::to_string),
        new_inbox_id: new_agent.map(|_| c.inbox_id.to_string()),
        new_agent_id: new_agent.map(str::to_string),
        canonical: canonical.to_string(),
        line,
    }
}

/// Applies the JSON quirks to a canonical event: timestamps with 0–9 fraction digits, extra fields.
fn quirk_line(canonical: &Value, ts: Ms, quirks: &Quirks) -> String {
    if !quirks.fraction_digits && !quirks.unknown_fields {
        return canonical.to_string();
    }
    let mut v = canonical.clone();
    if quirks.fraction_digits {
        v["timestamp"] = json!(format_ts(ts, 0, quirks));
        if let Some(occ) = v["content"]["occurredAt"].as_str().and_then(time::parse_ts) {
            v["content"]["occurredAt"] = json!(format_ts(occ, 3, quirks));
        }
    }
    if quirks.unknown_fields {
        v["schemaHint"] = json!({"added": "2026-10"});
        if let Value::Object(m) = &mut v["content"] {
            m.insert("experimentalFlag".into(), json!(true));
        }
    }
    v.to_string()
}

struct EventBuilder<'a> {
    world: &'a World,
    agent: &'a Agent,
    r: Rng,
    out: &'a mut Vec<Event>,
}

impl EventBuilder<'_> {
    fn recorded(&mut self, occurred: Ms) -> Ms {
        occurred + self.r.range(5, 800)
    }

    fn base(&mut self, etype: &str, entity: Entity, ts: Ms, occurred: Option<Ms>) -> Event {
        Event {
            id: self.r.id(),
            etype: etype.to_string(),
            entity,
            timestamp: ts,
            occurred_at: occurred,
            agent_id: Some(self.agent.id.clone()),
            away_reason: None,
            active_reason: None,
            available_for: None,
            conversation_id: None,
            customer_id: None,
            inbox_id: None,
            assignee_agent: None,
            new_inbox_id: None,
            new_agent_id: None,
            canonical: String::new(),
            line: String::new(),
        }
    }

    fn finish(&mut self, mut e: Event, content: Value) {
        let canonical = json!({
            "id": e.id, "type": e.etype, "timestamp": time::fmt_ts(e.timestamp),
            "initiator": {"id": self.agent.id, "type": "AGENT"}, "content": content,
        });
        e.line = quirk_line(&canonical, e.timestamp, &self.world.cfg.quirks);
        e.canonical = canonical.to_string();
        self.out.push(e);
    }

    fn status(
        &mut self,
        etype: &str,
        at: Ms,
        away: Option<Reason>,
        active: Option<Reason>,
        away_at: Option<Ms>,
    ) {
        let ts = self.recorded(at);
        let mut e = self.base(etype, Entity::AgentStatus, ts, Some(at));
        let mut content = json!({"agentId": self.agent.id, "occurredAt": time::fmt_ts(at)});
        if let Some(r) = &away {
            content["awayReason"] = json!({"id": r.id, "name": r.name});
        }
        if let Some(r) = &active {
            content["activeReason"] = json!({"id": r.id, "name": r.name});
        }
        if let Some(a) = away_at {
            content["awayAt"] = json!(time::fmt_ts(a));
        }
        e.away_reason = away;
        e.active_reason = active;
        self.finish(e, content);
    }

    fn availability(&mut self, at: Ms, channels: Option<Vec<&'static str>>) {
        let ts = self.recorded(at);
        self.availability_recorded(at, ts, channels);
    }

    fn availability_recorded(&mut self, at: Ms, ts: Ms, channels: Option<Vec<&'static str>>) {
        let mut e = self.base(
            "AGENT_AVAILABILITY/UPDATED",
            Entity::AgentAvailability,
            ts,
            Some(at),
        );
        let content = json!({"agentId": self.agent.id, "occurredAt": time::fmt_ts(at), "availableFor": channels});
        e.available_for = channels;
        self.finish(e, content);
    }

    fn focus(&mut self, etype: &str, at: Ms, channels: &[&'static str]) {
        let e = self.base(etype, Entity::AgentAvailability, at, None);
        let content = json!({"agentId": self.agent.id, "context": {"availableFor": channels}});
        self.finish(e, content);
    }

    fn unknown(&mut self, at: Ms) {
        let ts = self.recorded(at);
        let e = self.base(
            "AGENT_STATUS/SHIFT_SWAPPED",
            Entity::AgentStatus,
            ts,
            Some(at),
        );
        let content = json!({"agentId": self.agent.id, "occurredAt": time::fmt_ts(at)});
        self.finish(e, content);
    }
}
