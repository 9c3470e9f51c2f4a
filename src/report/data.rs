//! What the report shows, gathered from the curated datasets of one business date (and the run
//! manifest that produced it). Reads only what the transform wrote, so it works on any output
//! root and needs no credentials.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use chrono_tz::Tz;

use super::ReportError;
use crate::config::{Pipeline, Rule};
use crate::frames::{DataFrame, FrameReader};
use crate::manifest::Manifest;
use crate::model::{Axis, State};
use crate::storage::{Dir, Storage};
use crate::time::{self, Ms};
use crate::transform::datasets::{self as ds, SegmentRow};
use crate::transform::rules::{all_matches, first_match};
use crate::transform::workstreams::{self as wk, IntervalRow};

/// One segment piece as the timeline draws it.
#[derive(Clone, Debug, PartialEq)]
pub struct Piece {
    pub state: State,
    pub label: String,
    pub task: Option<String>,
    pub start: Ms,
    /// For a piece still open (intraday), the report's clock clamped into the day.
    pub end: Ms,
    pub open: bool,
}

impl Piece {
    pub fn ms(&self) -> Ms {
        self.end - self.start
    }
}

/// One agent's row: its status and availability pieces, each sorted by start.
#[derive(Clone, Debug)]
pub struct AgentDay {
    pub agent_id: String,
    /// The name from `agents`, else the e-mail, else the id.
    pub display: String,
    pub email: Option<String>,
    pub status: Vec<Piece>,
    pub availability: Vec<Piece>,
}

/// Agents grouped for the timeline; `title` names the group.
#[derive(Clone, Debug)]
pub struct TeamGroup {
    pub title: String,
    pub agents: Vec<AgentDay>,
}

/// Hours of one task on one axis.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskHours {
    pub axis: Axis,
    pub task: Option<String>,
    pub segments: usize,
    /// Sum of `duration_seconds` over the closed segments.
    pub seconds: f64,
}

/// How a rule fared against what the day holds.
#[derive(Clone, Debug)]
pub struct RuleUse {
    pub name: String,
    pub pattern: String,
    pub line: usize,
    /// Distinct labels (or inboxes) it matches.
    pub matches: usize,
    /// Of those, how many it wins (first match in file order).
    pub wins: usize,
}

#[derive(Clone, Debug)]
pub struct UnmatchedInbox {
    pub inbox_id: String,
    pub name: Option<String>,
    pub disabled: bool,
    /// In the newest inboxes snapshot (else only seen in that day's conversations).
    pub known: bool,
    pub conversations: u64,
}

/// The run that produced the day, from its manifest.
#[derive(Clone, Debug)]
pub struct RunInfo {
    /// Where the manifest is (a path or an `s3://` URL).
    pub path: String,
    pub manifest: Manifest,
}

pub struct DayData {
    pub pipeline: String,
    pub description: Option<String>,
    pub tz: Tz,
    pub day: NaiveDate,
    pub day_start: Ms,
    pub day_end: Ms,
    /// The instant the report was made (open pieces are drawn up to it).
    pub generated_at: Ms,
    /// Task names in colour order: the pipeline's rules first, then any other name seen.
    pub tasks: Vec<String>,
    pub groups: Vec<TeamGroup>,
    /// Agents listed in the snapshot with no segment that day.
    pub idle_agents: usize,
    pub hours: Vec<TaskHours>,
    pub interval_minutes: u32,
    pub intervals: Vec<IntervalRow>,
    pub unmatched_labels: Vec<(String, u64)>,
    pub events: usize,
    pub task_rules: Vec<RuleUse>,
    pub unmatched_inboxes: Vec<UnmatchedInbox>,
    pub workstream_rules: Vec<RuleUse>,
    pub run: Option<RunInfo>,
    /// The day's `agent_day_audit` rows (DESIGN §14); `None` when the day was not audited.
    pub audit: Option<Vec<crate::audit::AuditRow>>,
}

impl DayData {
    pub fn status_segments(&self) -> usize {
        self.groups
            .iter()
            .flat_map(|g| &g.agents)
            .map(|a| a.status.len())
            .sum()
    }
    pub fn agents(&self) -> usize {
        self.groups.iter().map(|g| g.agents.len()).sum()
    }
}

fn read_err(path: &str, e: impl std::fmt::Display) -> ReportError {
    ReportError::Read {
        path: path.to_string(),
        detail: e.to_string(),
    }
}

fn partition(
    st: &Storage,
    dataset: &str,
    day: NaiveDate,
) -> Result<Option<DataFrame>, ReportError> {
    st.read_partition(dataset, day)
        .map_err(|e| read_err(&st.partition_location(dataset, day), e))
}

/// The newest snapshot partition of a dimension dataset.
fn newest(st: &Storage, dataset: &str) -> Result<Option<DataFrame>, ReportError> {
    let days = st
        .partitions(dataset)
        .map_err(|e| read_err(&st.root.describe(dataset), e))?;
    match days.last() {
        Some(d) => partition(st, dataset, *d),
        None => Ok(None),
    }
}

struct AgentDim {
    name: Option<String>,
    email: Option<String>,
    team: Option<String>,
}

fn agents(st: &Storage) -> Result<BTreeMap<String, AgentDim>, ReportError> {
    let Some(df) = newest(st, ds::AGENTS)? else {
        return Ok(BTreeMap::new());
    };
    let path = st.root.describe(ds::AGENTS);
    let r = FrameReader(&df);
    let ids = r.str("agent_id").map_err(|e| read_err(&path, e))?;
    let names = r.str("name").map_err(|e| read_err(&path, e))?;
    let emails = r.str("email_normalized").map_err(|e| read_err(&path, e))?;
    let teams = r.list_str("team_ids").map_err(|e| read_err(&path, e))?;
    Ok((0..r.height())
        .filter_map(|i| {
            let mut t = teams[i].clone().unwrap_or_default();
            t.sort();
            Some((
                ids[i].clone()?,
                AgentDim {
                    name: names[i].clone(),
                    email: emails[i].clone(),
                    team: t.into_iter().next(),
                },
            ))
        })
        .collect())
}

/// Team names by id, from the newest raw teams snapshot (none before the first).
fn team_names(st: &Storage) -> Result<BTreeMap<String, String>, ReportError> {
    let Some(df) = newest(st, crate::raw::TEAMS)? else {
        return Ok(BTreeMap::new());
    };
    let teams = crate::raw::teams_from(&df)
        .map_err(|e| read_err(&st.root.describe(crate::raw::TEAMS), e))?;
    Ok(teams
        .into_iter()
        .filter_map(|t| Some((t.team_id, t.name?)))
        .collect())
}

struct InboxDim {
    name: Option<String>,
    disabled: bool,
    workstream: Option<String>,
}

fn inboxes(st: &Storage) -> Result<BTreeMap<String, InboxDim>, ReportError> {
    let Some(df) = newest(st, ds::INBOXES)? else {
        return Ok(BTreeMap::new());
    };
    let path = st.root.describe(ds::INBOXES);
    let r = FrameReader(&df);
    let ids = r.str("inbox_id").map_err(|e| read_err(&path, e))?;
    let names = r.str("name").map_err(|e| read_err(&path, e))?;
    let dis = r.bool("disabled").map_err(|e| read_err(&path, e))?;
    let ws = r.str("workstream").map_err(|e| read_err(&path, e))?;
    Ok((0..r.height())
        .filter_map(|i| {
            Some((
                ids[i].clone()?,
                InboxDim {
                    name: names[i].clone(),
                    disabled: dis[i].unwrap_or(false),
                    workstream: ws[i].clone(),
                },
            ))
        })
        .collect())
}

/// The day's events by label: every label with its count, those no task rule matched, and the
/// number of events.
struct DayLabels {
    all: BTreeMap<String, u64>,
    unmatched: BTreeMap<String, u64>,
    events: usize,
}

fn labels(st: &Storage, day: NaiveDate) -> Result<DayLabels, ReportError> {
    let (mut all, mut unmatched) = (BTreeMap::new(), BTreeMap::new());
    let Some(df) = partition(st, ds::AGENT_STATUS_EVENTS, day)? else {
        return Ok(DayLabels {
            all,
            unmatched,
            events: 0,
        });
    };
    let path = st.partition_location(ds::AGENT_STATUS_EVENTS, day);
    let r = FrameReader(&df);
    let l = r.str("label").map_err(|e| read_err(&path, e))?;
    let t = r.str("task").map_err(|e| read_err(&path, e))?;
    for (l, t) in l.into_iter().zip(t) {
        let l = l.unwrap_or_default();
        if t.is_none() {
            *unmatched.entry(l.clone()).or_default() += 1;
        }
        *all.entry(l).or_default() += 1;
    }
    Ok(DayLabels {
        all,
        unmatched,
        events: r.height(),
    })
}

fn rule_uses(rules: &[Rule], candidates: &[Vec<&str>]) -> Vec<RuleUse> {
    let mut uses: Vec<RuleUse> = rules
        .iter()
        .map(|r| RuleUse {
            name: r.name.clone(),
            pattern: r.pattern.clone(),
            line: r.line,
            matches: 0,
            wins: 0,
        })
        .collect();
    for c in candidates {
        for i in all_matches(rules, c) {
            uses[i].matches += 1;
        }
        if let Some(i) = first_match(rules, c) {
            uses[i].wins += 1;
        }
    }
    uses
}

/// The newest manifest under `<root>/_runs/<pipeline>/` whose run completed `day`.
pub fn run_for_day(runs: &Dir, day: NaiveDate) -> Option<RunInfo> {
    let mut files: Vec<String> = runs
        .list()
        .ok()?
        .into_iter()
        .filter(|n| n.ends_with(".json"))
        .collect();
    // Run ids start with the UTC start time, so names sort by start.
    files.sort();
    let d = day.to_string();
    files.into_iter().rev().find_map(|name| {
        let manifest: Manifest = serde_json::from_slice(&runs.read(&name).ok()??).ok()?;
        let covered = manifest.days_completed.contains(&d);
        covered.then(|| RunInfo {
            path: runs.describe(&name),
            manifest,
        })
    })
}

/// Reads everything the report shows for `day`. `Ok(None)`: the day has no segments partition.
pub fn gather(
    p: &Pipeline,
    tz: Tz,
    day: NaiveDate,
    now: Ms,
) -> Result<Option<DayData>, ReportError> {
    let root = p
        .root()
        .map_err(|e| read_err(&p.output_root.to_string(), e))?;
    let st = Storage::new(root.clone(), p.compression);
    let Some(seg_df) = partition(&st, ds::AGENT_STATUS_SEGMENTS, day)? else {
        return Ok(None);
    };
    let seg_path = st.partition_location(ds::AGENT_STATUS_SEGMENTS, day);
    let segs = ds::segments_from(&seg_df).map_err(|e| read_err(&seg_path, e))?;
    let (day_start, day_end) = (time::day_start(tz, day), time::day_end(tz, day));
    let open_end = now.clamp(day_start, day_end);

    let tally = tally_segments(&p.tasks, segs, open_end);
    let dims = agents(&st)?;
    let idle_agents = dims
        .keys()
        .filter(|id| !tally.per_agent.contains_key(*id))
        .count();
    let groups = team_groups(tally.per_agent, &dims, &team_names(&st)?);
    let labels = label_uses(p, &st, day)?;
    let inbox_dims = inboxes(&st)?;
    let workstream_rules = rule_uses(&p.workstreams, &inbox_candidates(&inbox_dims));
    let unmatched_inboxes = unmatched_inboxes(&st, day, &inbox_dims)?;
    let intervals = match partition(&st, wk::WORKSTREAM_INTERVALS, day)? {
        Some(df) => wk::intervals_from(&df)
            .map_err(|e| read_err(&st.partition_location(wk::WORKSTREAM_INTERVALS, day), e))?,
        None => Vec::new(),
    };
    let interval_minutes = intervals
        .first()
        .map(|r| r.interval_minutes as u32)
        .unwrap_or(p.interval_minutes);

    Ok(Some(DayData {
        pipeline: p.name.clone(),
        description: p.description.clone(),
        tz,
        day,
        day_start,
        day_end,
        generated_at: now,
        tasks: tally.tasks,
        groups,
        idle_agents,
        hours: task_hours(tally.hours),
        interval_minutes,
        intervals,
        unmatched_labels: labels.unmatched,
        events: labels.events,
        task_rules: labels.rules,
        unmatched_inboxes,
        workstream_rules,
        run: run_for_day(&root.dir(&p.runs_rel()), day),
        audit: audit_rows(&st, day)?,
    }))
}

/// Status and availability pieces of each agent, sorted by start.
type AgentPieces = BTreeMap<String, (Vec<Piece>, Vec<Piece>)>;

/// The day's segments, once through: the task names in colour order, the segments and closed
/// seconds per (axis, task), and each agent's pieces (not yet sorted).
struct SegmentTally {
    tasks: Vec<String>,
    hours: BTreeMap<(Axis, Option<String>), (usize, f64)>,
    per_agent: AgentPieces,
}

/// Tallies the segments; a piece still open ends at `open_end` (the report's clock in the
/// day). Task names: the pipeline's rules first, then any other name seen.
fn tally_segments(rules: &[Rule], segs: Vec<SegmentRow>, open_end: Ms) -> SegmentTally {
    let mut tasks: Vec<String> = Vec::new();
    for r in rules {
        if !tasks.contains(&r.name) {
            tasks.push(r.name.clone());
        }
    }
    let mut hours: BTreeMap<(Axis, Option<String>), (usize, f64)> = BTreeMap::new();
    let mut per_agent: AgentPieces = BTreeMap::new();
    for s in segs {
        let SegmentRow {
            agent_id,
            axis,
            state,
            label,
            task,
            start_at,
            end_at,
            ..
        } = s;
        if let Some(t) = &task {
            if !tasks.contains(t) {
                tasks.push(t.clone());
            }
        }
        let h = hours.entry((axis, task.clone())).or_default();
        h.0 += 1;
        if let Some(e) = end_at {
            // The same arithmetic as the dataset's `duration_seconds`.
            h.1 += (e - start_at) as f64 / 1000.0;
        }
        let piece = Piece {
            state,
            label,
            task,
            start: start_at,
            end: end_at.unwrap_or(open_end.max(start_at)),
            open: end_at.is_none(),
        };
        let row = per_agent.entry(agent_id).or_default();
        match axis {
            Axis::Status => row.0.push(piece),
            Axis::Availability => row.1.push(piece),
        }
    }
    SegmentTally {
        tasks,
        hours,
        per_agent,
    }
}

/// The agents grouped by team (titled by the team's name, or its id without one), then those
/// in no team, then those the snapshot does not list; within a group sorted by name.
fn team_groups(
    per_agent: AgentPieces,
    dims: &BTreeMap<String, AgentDim>,
    names: &BTreeMap<String, String>,
) -> Vec<TeamGroup> {
    // Group key: (0, team name, or id without one) for teams, (1, "") for agents in no team,
    // (2, "") for agents the snapshot does not list.
    let mut groups: BTreeMap<(u8, String), Vec<AgentDay>> = BTreeMap::new();
    for (id, (mut status, mut availability)) in per_agent {
        status.sort_by_key(|p| p.start);
        availability.sort_by_key(|p| p.start);
        let dim = dims.get(&id);
        let key = match dim {
            Some(AgentDim { team: Some(t), .. }) => (0, names.get(t).unwrap_or(t).clone()),
            Some(_) => (1, String::new()),
            None => (2, String::new()),
        };
        let email = dim.and_then(|d| d.email.clone());
        let display = dim
            .and_then(|d| d.name.clone())
            .or_else(|| email.clone())
            .unwrap_or_else(|| match dim {
                Some(_) => id.clone(),
                None => format!("unlisted agent {}…", id.chars().take(4).collect::<String>()),
            });
        groups.entry(key).or_default().push(AgentDay {
            agent_id: id,
            display,
            email,
            status,
            availability,
        });
    }
    groups
        .into_iter()
        .map(|((kind, team), mut agents)| {
            agents.sort_by(|a, b| {
                (a.display.to_lowercase(), &a.agent_id)
                    .cmp(&(b.display.to_lowercase(), &b.agent_id))
            });
            let title = match kind {
                0 => format!("team {team}"),
                1 => "no team".to_string(),
                _ => "not listed by /agents".to_string(),
            };
            TeamGroup { title, agents }
        })
        .collect()
}

/// The day's labels against the task rules: how each rule fared, the labels none matched (most
/// events first) and the number of events.
struct LabelUses {
    rules: Vec<RuleUse>,
    unmatched: Vec<(String, u64)>,
    events: usize,
}

fn label_uses(p: &Pipeline, st: &Storage, day: NaiveDate) -> Result<LabelUses, ReportError> {
    let DayLabels {
        all,
        unmatched,
        events,
    } = labels(st, day)?;
    let cands: Vec<Vec<&str>> = all.keys().map(|l| vec![l.as_str()]).collect();
    let rules = rule_uses(&p.tasks, &cands);
    let mut unmatched: Vec<(String, u64)> = unmatched.into_iter().collect();
    unmatched.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(LabelUses {
        rules,
        unmatched,
        events,
    })
}

/// What a workstream rule is matched against for each inbox: its id, and its name if any.
fn inbox_candidates(inbox_dims: &BTreeMap<String, InboxDim>) -> Vec<Vec<&str>> {
    inbox_dims
        .iter()
        .map(|(id, d)| {
            let mut c = vec![id.as_str()];
            if let Some(n) = &d.name {
                c.push(n);
            }
            c
        })
        .collect()
}

/// Inboxes no workstream rule matches: those of the snapshot, and those only the day's
/// conversations name, with the day's conversations in each; most conversations first.
fn unmatched_inboxes(
    st: &Storage,
    day: NaiveDate,
    inbox_dims: &BTreeMap<String, InboxDim>,
) -> Result<Vec<UnmatchedInbox>, ReportError> {
    let mut unmatched: BTreeMap<String, UnmatchedInbox> = inbox_dims
        .iter()
        .filter(|(_, d)| d.workstream.is_none())
        .map(|(id, d)| {
            (
                id.clone(),
                UnmatchedInbox {
                    inbox_id: id.clone(),
                    name: d.name.clone(),
                    disabled: d.disabled,
                    known: true,
                    conversations: 0,
                },
            )
        })
        .collect();
    if let Some(df) = partition(st, wk::CONVERSATIONS, day)? {
        let path = st.partition_location(wk::CONVERSATIONS, day);
        for c in wk::conversations_from(&df).map_err(|e| read_err(&path, e))? {
            let (Some(id), None) = (c.inbox_id, c.workstream) else {
                continue;
            };
            unmatched
                .entry(id.clone())
                .or_insert_with(|| UnmatchedInbox {
                    inbox_id: id,
                    name: c.inbox_name,
                    disabled: false,
                    known: false,
                    conversations: 0,
                })
                .conversations += 1;
        }
    }
    let mut unmatched: Vec<UnmatchedInbox> = unmatched.into_values().collect();
    unmatched.sort_by(|a, b| {
        b.conversations
            .cmp(&a.conversations)
            .then(a.inbox_id.cmp(&b.inbox_id))
    });
    Ok(unmatched)
}

/// Hours per (axis, task): the status axis first, then by hours, longest first.
fn task_hours(hours: BTreeMap<(Axis, Option<String>), (usize, f64)>) -> Vec<TaskHours> {
    let mut hours: Vec<TaskHours> = hours
        .into_iter()
        .map(|((axis, task), (segments, seconds))| TaskHours {
            axis,
            task,
            segments,
            seconds,
        })
        .collect();
    hours.sort_by(|a, b| {
        (a.axis != Axis::Status, b.seconds)
            .partial_cmp(&(b.axis != Axis::Status, a.seconds))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    hours
}

/// The day's `agent_day_audit`, read back.
fn audit_rows(
    st: &Storage,
    day: NaiveDate,
) -> Result<Option<Vec<crate::audit::AuditRow>>, ReportError> {
    let Some(df) = partition(st, crate::audit::AGENT_DAY_AUDIT, day)? else {
        return Ok(None);
    };
    let path = st.partition_location(crate::audit::AGENT_DAY_AUDIT, day);
    crate::audit::audit_from(&df)
        .map(Some)
        .map_err(|e| read_err(&path, e))
}
