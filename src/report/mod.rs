//! `gladly-wfm report`: one self-contained HTML page showing what the pipeline made of one
//! business date, from the curated datasets only (no credentials, no network).
//!
//! `data` gathers the day from Parquet and the run manifest, `timeline` lays out the agents'
//! rows (merging sub-pixel segments), `html` renders the page, `format` holds text helpers.

pub mod data;
pub mod format;
pub mod html;
pub mod timeline;

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use chrono_tz::Tz;

use crate::config::Pipeline;
use crate::exit::Exit;
use crate::pipeline::last_complete_day;
use crate::state::PipelineState;
use crate::storage::{write_atomic, Storage};
use crate::time::Ms;
use crate::transform::datasets as ds;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{file}: no timezone: set `timezone` in the pipeline file, or run the pipeline once so the Gladly organisation's is remembered")]
    NoTimezone { file: String },
    #[error(
        "no curated data for {day} under {dir} ({have}); pick a date that has data with --date"
    )]
    NoData {
        day: NaiveDate,
        dir: String,
        have: String,
    },
    #[error("no complete business day with curated data under {dir} ({have}); run the pipeline first, or pick a date with --date")]
    NoCompleteDay { dir: String, have: String },
    #[error("{path}: cannot read: {detail}")]
    Read { path: String, detail: String },
    #[error("{path}: cannot write the report: {detail}")]
    Write { path: String, detail: String },
}

impl ReportError {
    /// Usage for what the user asked (no such day, no timezone); failed when the data could
    /// not be read or the page not written.
    pub fn exit(&self) -> Exit {
        match self {
            ReportError::NoTimezone { .. }
            | ReportError::NoData { .. }
            | ReportError::NoCompleteDay { .. } => Exit::Usage,
            ReportError::Read { .. } | ReportError::Write { .. } => Exit::Failed,
        }
    }
}

/// A report written to disk.
#[derive(Debug)]
pub struct Written {
    pub path: PathBuf,
    pub day: NaiveDate,
    pub agents: usize,
    pub status_segments: usize,
    pub bytes: usize,
}

/// The pipeline's business timezone: its own, else the organisation's remembered by a run.
pub fn timezone(p: &Pipeline) -> Result<Tz, ReportError> {
    p.timezone
        .or_else(|| PipelineState::remembered_timezone(&p.state_dir().ok()?))
        .ok_or_else(|| ReportError::NoTimezone {
            file: p.file.display().to_string(),
        })
}

fn have(days: &[NaiveDate]) -> String {
    match (days.first(), days.last()) {
        (Some(a), Some(b)) if a == b => format!("the only day with data is {a}"),
        (Some(a), Some(b)) => format!("{} days with data, {a} to {b}", days.len()),
        _ => "no day has data yet".into(),
    }
}

/// The date to report: `date`, or the newest complete day that has a segments partition.
pub fn pick_day(
    p: &Pipeline,
    tz: Tz,
    date: Option<NaiveDate>,
    now: Ms,
) -> Result<NaiveDate, ReportError> {
    let root = p.root().map_err(|e| ReportError::Read {
        path: p.output_root.to_string(),
        detail: e.to_string(),
    })?;
    let st = Storage::new(root, p.compression);
    let dir = st.root.describe(ds::AGENT_STATUS_SEGMENTS);
    let days = st
        .partitions(ds::AGENT_STATUS_SEGMENTS)
        .map_err(|e| ReportError::Read {
            path: dir.clone(),
            detail: e.to_string(),
        })?;
    match date {
        Some(d) if days.contains(&d) => Ok(d),
        Some(day) => Err(ReportError::NoData {
            day,
            dir,
            have: have(&days),
        }),
        None => {
            let last = last_complete_day(tz, now, p.report_lag_minutes);
            days.iter()
                .rev()
                .find(|d| **d <= last)
                .copied()
                .ok_or(ReportError::NoCompleteDay {
                    dir,
                    have: have(&days),
                })
        }
    }
}

/// Where a report goes unless `--out` says otherwise: beside the run manifests on a local
/// root; in the working directory for an object-store root (a page is for a person, not data).
pub fn default_path(p: &Pipeline, day: NaiveDate) -> PathBuf {
    let name = format!("{day}.html");
    match &p.output_root {
        crate::storage::RootSpec::Local(root) => root.join("_reports").join(&p.name).join(name),
        crate::storage::RootSpec::S3 { .. } => PathBuf::from(format!("{}-{name}", p.name)),
    }
}

/// Builds the page for `date` (default: the newest complete day) and writes it to `out`
/// (default: [`default_path`]) in one atomic step.
pub fn write(
    p: &Pipeline,
    date: Option<NaiveDate>,
    out: Option<&Path>,
    now: Ms,
) -> Result<Written, ReportError> {
    let tz = timezone(p)?;
    let day = pick_day(p, tz, date, now)?;
    let d = data::gather(p, tz, day, now)?.ok_or_else(|| ReportError::NoData {
        day,
        dir: p.output_root.to_string(),
        have: String::from("its partition vanished while reading"),
    })?;
    let page = html::page(&d);
    let path = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| default_path(p, day));
    write_atomic(&path, page.as_bytes()).map_err(|e| ReportError::Write {
        path: path.display().to_string(),
        detail: e.detail,
    })?;
    Ok(Written {
        path,
        day,
        agents: d.agents(),
        status_segments: d.status_segments(),
        bytes: page.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::data::{AgentDay, DayData, Piece, TaskHours, TeamGroup};
    use super::*;
    use crate::model::{Axis, State};
    use crate::time;

    /// A synthetic day of `agents` agents, each with a 9-hour shift of `per_agent` status
    /// pieces (a fifth of them a few seconds long) and a third as many availability pieces.
    /// The simulator's agents average about 11 status and 6 availability segments a day.
    fn day(agents: usize, per_agent: usize) -> DayData {
        day_on(
            NaiveDate::from_ymd_opt(2026, 11, 2).unwrap(),
            agents,
            per_agent,
        )
    }

    fn day_on(day: NaiveDate, agents: usize, per_agent: usize) -> DayData {
        let tz: Tz = "America/New_York".parse().unwrap();
        let (s, e) = (time::day_start(tz, day), time::day_end(tz, day));
        let tasks: Vec<String> = [
            "Logged In",
            "Logged Out",
            "Agent Status – Went Away",
            "Active",
        ]
        .map(String::from)
        .to_vec();
        let piece = |state: State, label: &str, task: Option<&str>, a: Ms, b: Ms| Piece {
            state,
            label: label.into(),
            task: task.map(String::from),
            start: a,
            end: b,
            open: false,
        };
        let mut groups = Vec::new();
        for t in 0..agents.div_ceil(15) {
            let mut ags = Vec::new();
            for i in 0..15.min(agents - t * 15) {
                let n = t * 15 + i;
                let shift = s + (n as Ms % 12) * time::MS_PER_HOUR;
                let step = 9 * time::MS_PER_HOUR / per_agent as Ms;
                let mut status = vec![piece(
                    State::LoggedOut,
                    "LOGGED_OUT",
                    Some("Logged Out"),
                    s,
                    shift,
                )];
                let mut at = shift;
                for k in 0..per_agent {
                    let len = if k % 5 == 0 { 20_000 } else { step };
                    status.push(piece(
                        State::Away,
                        "Lunch",
                        Some("Agent Status – Went Away"),
                        at,
                        at + len,
                    ));
                    at += len;
                }
                status.push(piece(
                    State::LoggedOut,
                    "LOGGED_OUT",
                    Some("Logged Out"),
                    at,
                    e,
                ));
                let availability = (0..per_agent / 3)
                    .map(|k| {
                        let a = shift + k as Ms * 3 * step;
                        piece(
                            State::Available,
                            "AvailableFor:MESSAGING,VOICE",
                            None,
                            a,
                            a + 3 * step,
                        )
                    })
                    .collect();
                ags.push(AgentDay {
                    agent_id: format!("agent-{n:05}-aBcDeFgHiJkLmNoP"),
                    display: format!("Agent Number {n}"),
                    email: Some(format!("agent.{n}@example.com")),
                    status,
                    availability,
                });
            }
            groups.push(TeamGroup {
                title: format!("team T{t}"),
                agents: ags,
            });
        }
        DayData {
            pipeline: "p".into(),
            description: None,
            tz,
            day,
            day_start: s,
            day_end: e,
            generated_at: e,
            tasks,
            groups,
            idle_agents: 0,
            hours: vec![TaskHours {
                axis: Axis::Status,
                task: None,
                segments: 1,
                seconds: 1.0,
            }],
            interval_minutes: 15,
            intervals: Vec::new(),
            unmatched_labels: Vec::new(),
            events: 0,
            task_rules: Vec::new(),
            unmatched_inboxes: Vec::new(),
            workstream_rules: Vec::new(),
            run: None,
            audit: None,
        }
    }

    #[test]
    fn two_thousand_agents_stay_a_few_megabytes() {
        let d = day(2000, 12);
        assert_eq!(d.status_segments(), 2000 * 14);
        let page = html::page(&d);
        let mb = page.len() as f64 / 1e6;
        crate::say_err!(
            "2000 agents × {} status pieces: {mb:.2} MB",
            d.status_segments() / 2000
        );
        if let Ok(f) = std::env::var("REPORT_DUMP") {
            std::fs::write(f, &page).unwrap();
        }
        // Measured: about 5.9 MB, half of it the bars' <title>s (label, task, start, end,
        // duration on every bar).
        assert!(mb < 6.5, "{mb:.2} MB");
        // Every piece is in some bar: the merged counts add up.
        let re = regex::Regex::new(r#"<rect class="s[0-9n][^>]*?(?: data-n="(\d+)")?>"#).unwrap();
        let n: usize = re
            .captures_iter(&page)
            .map(|c| c.get(1).map_or(1, |n| n.as_str().parse::<usize>().unwrap()))
            .sum();
        assert_eq!(n, d.status_segments());
    }

    #[test]
    fn a_fall_back_day_is_25_hours_wide_and_names_the_repeated_hour() {
        let d = day_on(NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(), 3, 6);
        let page = html::page(&d);
        let w = timeline::NAME_W + 25.0 * timeline::PX_PER_HOUR + 12.0;
        assert!(
            page.contains(&format!(r#"<svg class="timeline" viewBox="0 0 {w} "#)),
            "25 hours wide"
        );
        // 01:00 happens twice: the second one carries the zone it is in.
        assert!(page.contains(">01<") && page.contains(">01 EST<"));
        assert!(page.contains("25 h day"));
    }
}
