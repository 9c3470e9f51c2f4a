//! The run manifest (`<root>/_runs/<pipeline>/<run-id>.json`) and the one-line summary: the
//! counts a run gathers as it goes, and how they are reported.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::NaiveDate;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::AuditDay;
use crate::config::Pipeline;
use crate::exit::Exit;
use crate::load::push::PushTotals;
use crate::log;
use crate::model::SetAside;
use crate::options::RunOptions;
use crate::time::{self, Ms};
use crate::transform::datasets::{self as ds, Unmatched};
use crate::transform::stage::DayOut;

/// Counts for the manifest, gathered as the run goes.
#[derive(Default)]
pub struct Tally {
    pub rows: BTreeMap<String, BTreeMap<String, usize>>,
    pub unmatched_labels: Unmatched,
    pub unmatched_inboxes: BTreeMap<String, u64>,
    pub set_aside: Vec<SetAside>,
    pub set_aside_count: usize,
    pub sources: BTreeMap<String, String>,
    pub stage_ms: BTreeMap<String, u128>,
    pub wfm: BTreeMap<String, PushTotals>,
    pub days_done: Vec<String>,
    /// Day → its audit (DESIGN §14).
    pub audit: BTreeMap<String, AuditDay>,
}

impl Tally {
    pub fn rows(&mut self, dataset: &str, day: NaiveDate, n: usize) {
        self.rows
            .entry(dataset.into())
            .or_default()
            .insert(day.to_string(), n);
    }
    pub fn aside(&mut self, items: Vec<SetAside>) {
        self.set_aside_count += items.len();
        for i in items {
            log::warn(format!("set aside: {}: {}", i.location, i.reason));
            if self.set_aside.len() < 1000 {
                self.set_aside.push(i);
            }
        }
    }
    pub fn merge(&mut self, out: DayOut) {
        for (d, day, n) in out.rows {
            self.rows(d, day, n);
        }
        for (k, n) in out.unmatched_labels {
            *self.unmatched_labels.entry(k).or_default() += n;
        }
        for (id, n) in out.unknown_inboxes {
            *self
                .unmatched_inboxes
                .entry(format!("unknown inbox id {id}"))
                .or_default() += n;
        }
        if let Some((day, a)) = out.audit {
            self.audited(day, a);
        }
    }

    /// Records a day's audit: logged (a warning when it drifts), and the metric when it is the
    /// newest day audited so far.
    pub fn audited(&mut self, day: NaiveDate, a: AuditDay) {
        let key = day.to_string();
        if a.drifting > 0 {
            log::warn(format!(
                "audit {day}: {} agent-day(s) drift from Gladly's AgentSummaryV2 beyond the tolerance ({}); see agent_day_audit",
                a.drifting,
                a.describe()
            ));
        } else {
            log::info(format!("audit {day}: {}", a.describe()));
        }
        let newest = self
            .audit
            .iter()
            .filter(|(_, x)| x.not_audited.is_none())
            .all(|(d, _)| *d <= key);
        if a.not_audited.is_none() && newest {
            crate::telemetry::audit(a.within as u64, a.drifting as u64);
        }
        self.audit.insert(key, a);
    }
    pub fn time(&mut self, stage: &str, t: Instant) {
        *self.stage_ms.entry(stage.into()).or_default() += t.elapsed().as_millis();
    }
}

/// What the manifest says of the run besides its counts.
pub struct RunFacts<'a> {
    pub run_id: &'a str,
    pub pipeline: &'a Pipeline,
    pub opts: &'a RunOptions,
    pub started: Ms,
    pub tz: Tz,
    pub window: &'a [NaiveDate],
    pub requests: Value,
    pub outcome: &'a str,
    pub exit: Exit,
    pub error: Option<String>,
    pub elapsed_s: f64,
}

/// A run's manifest, as written to `<root>/_runs/<pipeline>/<run-id>.json` and read back by
/// `status`, `demo` and the tests. Fields a manifest of an older version lacks read as empty.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Manifest {
    pub run_id: String,
    pub pipeline: String,
    pub description: Option<String>,
    pub pipeline_file: String,
    pub trigger: String,
    pub started_at: String,
    pub finished_at: String,
    pub clock: String,
    pub timezone: String,
    pub window: Window,
    pub stages: StagesRun,
    pub dry_run: bool,
    pub days_completed: Vec<String>,
    /// Per day: `events_api` or `report`.
    pub agent_event_sources: BTreeMap<String, String>,
    pub stage_ms: BTreeMap<String, u64>,
    /// Request statistics per API (and object-store requests): counters the HTTP layer keeps.
    pub requests: Value,
    /// Dataset → day → rows written.
    pub rows: BTreeMap<String, BTreeMap<String, usize>>,
    pub unmatched_labels: Unmatched,
    pub unmatched_inboxes: BTreeMap<String, u64>,
    pub set_aside: SetAsideList,
    /// Record kind → the receiver's answers.
    pub wfm: BTreeMap<String, PushTotals>,
    /// `ok`, `failed` or `interrupted`.
    pub outcome: String,
    pub exit_code: i32,
    pub error: Option<String>,
    /// Day → its audit against Gladly's summary (DESIGN §14); absent with `[audit]` off.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub audit: BTreeMap<String, AuditDay>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Window {
    pub from: Option<String>,
    pub to: Option<String>,
    pub days: Vec<String>,
    /// Given by `--from`/`--to` (a re-run), not the nightly cursor.
    pub explicit: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StagesRun {
    pub extract: bool,
    pub transform: bool,
    pub load: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SetAsideList {
    pub count: usize,
    /// The first ones, each with where and why (the count holds them all).
    pub items: Vec<SetAside>,
}

impl Manifest {
    /// Rows written to a dataset over all days.
    pub fn rows_of(&self, dataset: &str) -> usize {
        self.rows
            .get(dataset)
            .map(|m| m.values().sum())
            .unwrap_or(0)
    }
}

pub fn manifest(t: &Tally, f: &RunFacts) -> Manifest {
    let (p, opts) = (f.pipeline, f.opts);
    let day = |d: &NaiveDate| d.to_string();
    Manifest {
        run_id: f.run_id.to_string(),
        pipeline: p.name.clone(),
        description: p.description.clone(),
        pipeline_file: p.file.display().to_string(),
        trigger: opts.trigger.clone(),
        started_at: time::fmt_ts(f.started),
        finished_at: time::fmt_ts(time::now_ms()),
        clock: time::fmt_ts(opts.now),
        timezone: f.tz.name().to_string(),
        window: Window {
            from: f.window.first().map(day),
            to: f.window.last().map(day),
            days: f.window.iter().map(day).collect(),
            explicit: opts.from.is_some(),
        },
        stages: StagesRun {
            extract: opts.stages.extract,
            transform: opts.stages.transform,
            load: opts.stages.load,
        },
        dry_run: opts.dry_run,
        days_completed: t.days_done.clone(),
        agent_event_sources: t.sources.clone(),
        stage_ms: t
            .stage_ms
            .iter()
            .map(|(k, v)| (k.clone(), *v as u64))
            .collect(),
        requests: f.requests.clone(),
        rows: t.rows.clone(),
        unmatched_labels: t.unmatched_labels.clone(),
        unmatched_inboxes: t.unmatched_inboxes.clone(),
        set_aside: SetAsideList {
            count: t.set_aside_count,
            items: t.set_aside.clone(),
        },
        wfm: t.wfm.clone(),
        outcome: f.outcome.to_string(),
        exit_code: i32::from(f.exit.code()),
        error: f.error.clone(),
        audit: t.audit.clone(),
    }
}

/// `; audit: 40 agent-days, 1 drifting, 1 day(s) not audited`, or nothing with no audit.
pub fn audit_summary(audit: &BTreeMap<String, AuditDay>) -> String {
    if audit.is_empty() {
        return String::new();
    }
    let compared: usize = audit.values().map(|a| a.compared).sum();
    let drifting: usize = audit.values().map(|a| a.drifting).sum();
    let not = audit.values().filter(|a| a.not_audited.is_some()).count();
    format!(
        "; audit: {compared} agent-days, {drifting} drifting{}",
        match not {
            0 => String::new(),
            n => format!(", {n} day(s) not audited"),
        }
    )
}

/// The one line a run prints last.
pub fn summary(m: &Manifest, elapsed_s: f64, manifest_path: Option<&str>) -> String {
    let w = |g: fn(&PushTotals) -> u64| m.wfm.values().map(g).sum::<u64>();
    log::redact(&format!(
        "gladly-wfm {}: {} — {} day(s){}; events {}, segments {}; unmatched labels {}; set aside {}; wfm inserted {} updated {} duplicate {} rejected {}{}{}; {:.1}s{}{}",
        m.pipeline,
        m.outcome,
        m.days_completed.len(),
        match (&m.window.from, &m.window.to) {
            (Some(a), Some(b)) => format!(" ({a}..{b})"),
            _ => String::new(),
        },
        m.rows_of(ds::AGENT_STATUS_EVENTS),
        m.rows_of(ds::AGENT_STATUS_SEGMENTS),
        m.unmatched_labels.len(),
        m.set_aside.count,
        w(|x| x.inserted),
        w(|x| x.updated),
        w(|x| x.duplicate),
        w(|x| x.rejected),
        match w(|x| x.unmatched_workstream) {
            0 => String::new(),
            n => format!(" (unmatched volume: {n} interval records with no workstream)"),
        },
        audit_summary(&m.audit),
        elapsed_s,
        manifest_path.map(|p| format!("; manifest {p}")).unwrap_or_default(),
        m.error.as_ref().map(|e| format!("; error: {e}")).unwrap_or_default(),
    ))
}
