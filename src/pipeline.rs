//! One run of a pipeline: plan the days, then extract → raw zone → transform → curated datasets,
//! day by day, then load (WFM push). Writes state after every step and a manifest at the end.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, NaiveDate};
use chrono_tz::Tz;
use serde_json::json;

use crate::config::Pipeline;
use crate::exit::Exit;
use crate::extract::{AbortOnDrop, ExtractError, Extractor, Fetched};
use crate::gladly::{GladlyClient, GladlyError};
use crate::http::Stats;
use crate::interrupt::Interrupt;
use crate::load::push::{self, Kind, PushError, PushPlan};
use crate::lock::{LockError, PipelineLock};
use crate::log;
use crate::manifest::{self, Manifest, RunFacts, Tally};
use crate::model::{AgentDim, InboxDim};
use crate::raw;
use crate::stages::{self, curated_frame, read_curated, StageError, Startup};
use crate::state::{PendingWorkFile, PipelineState};
use crate::storage::{Dir, Storage, StorageError};
use crate::time::{self, Ms};
use crate::transform::datasets::{self as ds, Emails};
use crate::transform::segments::StartState;
use crate::transform::stage::{TransformError, Transformer};
use crate::transform::workstreams::{self as wsd, ConvStates};
use crate::wfm::{WfmClient, WfmError};

pub use crate::options::{RunOptions, Stages};

/// What a run ended with; `exit` is the documented contract (DESIGN §3).
#[derive(Debug)]
pub struct RunOutcome {
    pub exit: Exit,
    /// Stopped by SIGTERM/SIGINT at a safe point.
    pub interrupted: bool,
    pub summary: String,
    /// A path, or an `s3://` URL.
    pub manifest_path: Option<String>,
    /// `None` when the run stopped before it had one (a usage error, the lock taken).
    pub manifest: Option<Manifest>,
}

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Locked(#[from] LockError),
    #[error("{0}")]
    Auth(String),
    #[error("{0}")]
    Failed(String),
    #[error("interrupted by a signal; what finished is kept, the next run resumes")]
    Interrupted,
}

impl RunError {
    fn exit(&self) -> Exit {
        match self {
            RunError::Usage(_) => Exit::Usage,
            RunError::Locked(_) => Exit::Locked,
            RunError::Auth(_) => Exit::Refused,
            RunError::Failed(_) | RunError::Interrupted => Exit::Failed,
        }
    }
}

/// `--from`/`--to` a person would not mean: a usage error.
#[derive(Debug, thiserror::Error)]
enum DatesError {
    #[error("--from {from} is after --to {to}")]
    Reversed { from: NaiveDate, to: NaiveDate },
    #[error("--from and --to go together")]
    Half,
    #[error("--from {from} is before {earliest}: Gladly holds no data from then", earliest = time::EARLIEST_DATE)]
    TooEarly { from: NaiveDate },
    #[error("--from {from} --to {to} is {days} days, more than max_range_days = {max} in {file}: split the range, or raise the key")]
    TooLong {
        from: NaiveDate,
        to: NaiveDate,
        days: i64,
        max: u32,
        file: String,
    },
}

impl From<GladlyError> for RunError {
    fn from(e: GladlyError) -> Self {
        match e {
            GladlyError::Auth { .. } => RunError::Auth(e.to_string()),
            other => RunError::Failed(other.to_string()),
        }
    }
}

impl From<ExtractError> for RunError {
    fn from(e: ExtractError) -> Self {
        match e {
            ExtractError::Gladly(g) => g.into(),
            ExtractError::Storage(s) => s.into(),
            ExtractError::Answer(a) => RunError::Failed(a),
        }
    }
}

impl From<TransformError> for RunError {
    fn from(e: TransformError) -> Self {
        match e {
            TransformError::Storage(s) => s.into(),
            TransformError::Failed(f) => RunError::Failed(f),
        }
    }
}

impl From<StorageError> for RunError {
    fn from(e: StorageError) -> Self {
        if e.conflict {
            // Only a run whose lock was taken over writes against someone else's state.
            return RunError::Locked(LockError::Lost {
                detail: e.to_string(),
            });
        }
        RunError::Failed(format!("cannot write or read the output: {e}"))
    }
}

impl From<StageError> for RunError {
    fn from(e: StageError) -> Self {
        match e {
            StageError::Storage(s) => s.into(),
            StageError::Gladly(g) => g.into(),
            e if e.exit() == Exit::Usage => RunError::Usage(e.to_string()),
            e => RunError::Failed(e.to_string()),
        }
    }
}

fn polars_err(what: String) -> impl FnOnce(polars::prelude::PolarsError) -> RunError {
    move |e| RunError::Failed(format!("{what}: {e}"))
}

/// A day's push plans, and its interval records with no workstream (counted, still sent).
struct DayPlans {
    plans: Vec<(Kind, PushPlan)>,
    unmatched_workstream: u64,
}

/// The plans of `day` from its curated datasets: tasks and conversations when the day is in
/// the run's range (`whole`), intervals also when only its work sessions changed.
fn day_plans(
    st: &Storage,
    tz: Tz,
    batch: usize,
    day: NaiveDate,
    whole: bool,
    intervals: bool,
    integration: &str,
) -> Result<DayPlans, RunError> {
    let window = (time::day_start(tz, day), time::day_end(tz, day));
    let mut plans = Vec::new();
    let mut unmatched_workstream = 0;
    if whole {
        // The rows borrow the frame's strings (no copy of them); both go once the plan holds
        // the bodies.
        let tasks = {
            let df = curated_frame(st, ds::AGENT_STATUS_SEGMENTS, day)?;
            let segs = ds::segments_in(&df)
                .map_err(polars_err(format!("{} {day}", ds::AGENT_STATUS_SEGMENTS)))?;
            PushPlan::of(
                Kind::Tasks,
                Some((day, window)),
                push::segment_rows(day, &segs),
                batch,
                integration,
            )
        };
        plans.push((Kind::Tasks, tasks));
        let conversations = {
            let df = curated_frame(st, wsd::CONVERSATIONS, day)?;
            let convs = wsd::conversations_in(&df)
                .map_err(polars_err(format!("{} {day}", wsd::CONVERSATIONS)))?;
            PushPlan::of(
                Kind::Conversations,
                Some((day, window)),
                push::conversation_rows(day, window.0, &convs),
                batch,
                integration,
            )
        };
        plans.push((Kind::Conversations, conversations));
    }
    if intervals {
        let rows = read_curated(st, wsd::WORKSTREAM_INTERVALS, day, wsd::intervals_from)?;
        let (recs, unmatched) = push::interval_rows(&rows);
        unmatched_workstream = unmatched;
        plans.push((
            Kind::Intervals,
            PushPlan::of(
                Kind::Intervals,
                Some((day, window)),
                recs,
                batch,
                integration,
            ),
        ));
    }
    Ok(DayPlans {
        plans,
        unmatched_workstream,
    })
}

/// What one day's transform hands the next: the agents' and the conversations' states at its
/// end (rebuilt from the look-back days when the day before was not transformed).
#[derive(Default)]
struct Carry {
    agents: Option<(NaiveDate, StartState)>,
    conversations: Option<(NaiveDate, ConvStates)>,
}

struct Run<'a> {
    p: &'a Pipeline,
    opts: &'a RunOptions,
    st: Storage,
    state_dir: Dir,
    state: PipelineState,
    pending: Arc<PendingWorkFile>,
    interrupt: Arc<Interrupt>,
    gladly: Arc<GladlyClient>,
    wfm: Option<WfmClient>,
    tally: Tally,
    tz: Tz,
    window: Vec<NaiveDate>,
    wfm_auth_error: Option<String>,
}

pub fn new_run_id(now: Ms) -> String {
    format!(
        "{}-{}",
        time::to_utc(now).format("%Y%m%dT%H%M%SZ"),
        std::process::id()
    )
}

/// Runs a pipeline once. Never panics on bad input; the outcome carries the exit code.
pub async fn run(p: &Pipeline, opts: &RunOptions) -> RunOutcome {
    let started = time::now_ms();
    let run_id = new_run_id(started);
    let _run = log::scope_run(&p.name, &run_id);
    let t0 = Instant::now();
    log::add_secrets(&p.secrets());
    if let Err(e) = check_dates(p, opts) {
        return early(Exit::Usage, e.to_string());
    }
    let push = opts.stages.load && !opts.dry_run;
    let Startup {
        root,
        st,
        state_dir,
    } = match Startup::open(p, opts.stages.extract, push) {
        Ok(s) => s,
        Err(e) => return early(e.exit(), e.to_string()),
    };
    let lock = match PipelineLock::acquire_beside_follow(&state_dir, &p.name, &run_id, p.lock_lease)
        .await
    {
        Ok(l) => l,
        Err(e) => {
            return early(
                if matches!(e, LockError::Held { .. }) {
                    Exit::Locked
                } else {
                    Exit::Failed
                },
                e.to_string(),
            )
        }
    };
    let state = match PipelineState::load(&state_dir) {
        Ok(s) => s,
        Err(e) => return early(Exit::Failed, e.to_string()),
    };
    let pending = match PendingWorkFile::open(&state_dir) {
        Ok(w) => Arc::new(w),
        Err(e) => return early(Exit::Failed, e.to_string()),
    };
    let interrupt = Interrupt::new();
    let _signals = interrupt.listen();
    let gstats = Arc::new(Stats::default());
    let wstats = Arc::new(Stats::default());
    let mut r = Run {
        p,
        opts,
        st,
        state_dir,
        state,
        pending,
        interrupt,
        gladly: Arc::new(GladlyClient::new(&p.gladly, gstats.clone())),
        wfm: p
            .wfm
            .as_ref()
            .filter(|w| w.enabled && !opts.dry_run)
            .map(|w| WfmClient::new(w, wstats.clone())),
        tally: Tally::default(),
        tz: chrono_tz::UTC,
        window: Vec::new(),
        wfm_auth_error: None,
    };
    let result = r.execute().await;
    log::progress_done();
    let (exit, outcome, error) = ending(&result, &r.wfm_auth_error, lock);
    if exit == Exit::Done {
        crate::telemetry::last_success("run");
    }
    let facts = RunFacts {
        run_id: &run_id,
        pipeline: p,
        opts,
        started,
        tz: r.tz,
        window: &r.window,
        requests: match root.object_requests() {
            None => json!({"gladly": gstats.snapshot(), "wfm": wstats.snapshot()}),
            Some(n) => json!({
                "gladly": gstats.snapshot(),
                "wfm": wstats.snapshot(),
                // After the lock's release, before the manifest's own PUT.
                "object_store": n,
            }),
        },
        outcome,
        exit,
        error: error.clone(),
        elapsed_s: t0.elapsed().as_secs_f64(),
    };
    let manifest = manifest::manifest(&r.tally, &facts);
    let manifest_path = write_manifest(&root.dir(&p.runs_rel()), &run_id, &manifest);
    let summary = manifest::summary(&manifest, facts.elapsed_s, manifest_path.as_deref());
    RunOutcome {
        exit,
        interrupted: outcome == "interrupted",
        summary,
        manifest_path,
        manifest: Some(manifest),
    }
}

/// `--from`/`--to` as a person means them: together, in order, a plausible range.
fn check_dates(p: &Pipeline, opts: &RunOptions) -> Result<(), DatesError> {
    match (opts.from, opts.to) {
        (Some(from), Some(to)) if from > to => Err(DatesError::Reversed { from, to }),
        (Some(f), Some(t)) => check_range(p, f, t),
        (None, None) => Ok(()),
        _ => Err(DatesError::Half),
    }
}

/// How the run ended: (exit, outcome, error). It releases the lock first: a run that ends
/// releases its lock, or fails saying it could not.
fn ending(
    result: &Result<(), RunError>,
    wfm_auth_error: &Option<String>,
    lock: PipelineLock,
) -> (Exit, &'static str, Option<String>) {
    let (mut exit, mut outcome, mut error) = match result {
        Ok(()) => match wfm_auth_error {
            Some(e) => (Exit::Refused, "wfm_auth_failed", Some(e.clone())),
            None => (Exit::Done, "ok", None),
        },
        Err(e @ RunError::Interrupted) => (e.exit(), "interrupted", Some(e.to_string())),
        Err(e) => (e.exit(), "failed", Some(e.to_string())),
    };
    if let Err(e) = tokio::task::block_in_place(|| lock.release()) {
        let msg = format!(
            "could not release the run lock ({e}); the next run takes it over once its lease expires"
        );
        log::error(&msg);
        if exit == Exit::Done {
            (exit, outcome) = (Exit::Failed, "failed");
        }
        error = Some(match error {
            Some(first) => format!("{first}; {msg}"),
            None => msg,
        });
    }
    (exit, outcome, error)
}

/// Writes the run's manifest (redacted) under `_runs/<pipeline>/`; returns where.
fn write_manifest(runs: &Dir, run_id: &str, manifest: &Manifest) -> Option<String> {
    let name = format!("{run_id}.json");
    let text = log::redact(&serde_json::to_string_pretty(manifest).unwrap_or_default());
    match runs.write(&name, text.into_bytes()) {
        Ok(()) => Some(runs.describe(&name)),
        Err(e) => {
            log::error(format!("cannot write the run manifest: {e}"));
            None
        }
    }
}

fn early(exit: Exit, msg: String) -> RunOutcome {
    RunOutcome {
        exit,
        interrupted: false,
        summary: log::redact(&format!("gladly-wfm: {msg}")),
        manifest_path: None,
        manifest: None,
    }
}

/// The last day that is complete at `now`: ended at least `lag_minutes` ago.
pub fn last_complete_day(tz: Tz, now: Ms, lag_minutes: u32) -> NaiveDate {
    let mut d = time::day_of(tz, now);
    while time::day_end(tz, d) + lag_minutes as Ms * 60_000 > now {
        d -= Duration::days(1);
    }
    d
}

/// A range a person would not mean: before Gladly could hold data, or longer than
/// `max_range_days` (a typo in a year starts thousands of days of requests).
fn check_range(p: &Pipeline, from: NaiveDate, to: NaiveDate) -> Result<(), DatesError> {
    if from < time::EARLIEST_DATE {
        return Err(DatesError::TooEarly { from });
    }
    let days = (to - from).num_days() + 1;
    if days > p.max_range_days as i64 {
        return Err(DatesError::TooLong {
            from,
            to,
            days,
            max: p.max_range_days,
            file: p.file.display().to_string(),
        });
    }
    Ok(())
}

/// What extracting `days` costs at Gladly's limits: report requests (a day older than the
/// Events API's window takes three: both timestamps reports and the work sessions; a newer one
/// the work sessions only; and a complete day its audit summary) and the least time they take at `reports_per_minute`.
fn extraction_estimate(p: &Pipeline, tz: Tz, now: Ms, days: &[NaiveDate]) -> (usize, f64) {
    let reports: usize = days
        .iter()
        .map(|&d| {
            let lag = p.report_lag_minutes;
            // The audit's summary: one more for each complete day (DESIGN §14).
            let audit = usize::from(
                p.audit.enabled && crate::audit::complete(time::day_end(tz, d), now, lag),
            );
            audit
                + if time::day_start(tz, d) >= now - 23 * time::MS_PER_HOUR {
                    1
                } else {
                    3
                }
        })
        .sum();
    (reports, reports as f64 / p.gladly.reports_per_minute as f64)
}

/// The days a run processes: the explicit range, or (nightly) every complete day after the
/// cursor, the last `settle_days` again, and today when intraday.
pub fn plan_days(
    p: &Pipeline,
    state: &PipelineState,
    tz: Tz,
    now: Ms,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> Vec<NaiveDate> {
    if let (Some(f), Some(t)) = (from, to) {
        return time::days_between(f, t);
    }
    let last = last_complete_day(tz, now, p.report_lag_minutes);
    let first = match state.nightly_cursor {
        None => last - Duration::days(p.initial_days as i64 - 1),
        // Resume after the cursor, and redo the `settle_days` days before that (late data).
        Some(c) => c + Duration::days(1) - Duration::days(p.settle_days as i64),
    };
    let mut days = time::days_between(first, last);
    if p.intraday {
        let today = time::day_of(tz, now);
        if !days.contains(&today) && today > last {
            days.push(today);
        }
    }
    days
}

impl Run<'_> {
    async fn execute(&mut self) -> Result<(), RunError> {
        self.recover()?;
        let today = self.plan().await?;
        if self.opts.stages.extract {
            self.extract_dimensions(today).await?;
        }
        let (agents, emails) = self.newest_agents()?;
        if self.opts.stages.transform {
            self.transform_dimensions()?;
        }
        let inboxes = self.newest_inboxes()?;
        let mut carry = Carry::default();
        let days = self.window.clone();
        // Fetching runs ahead on its own task (a few days, spooled to disk, so memory stays
        // flat) while this task lands and transforms: the rate limits, not the CPU, pace
        // extraction.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Fetched, ExtractError>>(2);
        let extractor = Arc::new(self.extractor());
        let ahead = self
            .opts
            .stages
            .extract
            .then(|| AbortOnDrop(tokio::spawn(extractor.clone().run(days.clone(), 2, tx))));
        for (i, &day) in days.iter().enumerate() {
            if self.interrupt.requested() {
                return Err(RunError::Interrupted);
            }
            let day_scope = log::scope_day(day, "extract");
            log::info(format!("day {day} ({}/{})", i + 1, days.len()));
            log::progress(
                i,
                days.len(),
                "days",
                &format!("{day}: extract · {}", self.progress_counts()),
            );
            // Why extraction could not land the day's summary: its transform then does not audit.
            let mut not_audited = None;
            if ahead.is_some() {
                let t = Instant::now();
                let x = tokio::select! {
                    x = rx.recv() => x,
                    _ = self.interrupt.wait() => return Err(RunError::Interrupted),
                };
                let f = x.ok_or_else(|| RunError::Failed("the extract task stopped".into()))??;
                self.tally.time("extract_wait", t);
                not_audited = self.land_day(day, &extractor, f)?;
                // A signal that came while the day landed stops the run before its transform.
                if self.interrupt.requested() {
                    return Err(RunError::Interrupted);
                }
            }
            if self.opts.stages.transform {
                day_scope.stage("transform");
                log::progress(
                    i,
                    days.len(),
                    "days",
                    &format!("{day}: transform · {}", self.progress_counts()),
                );
                self.transform_day(day, &emails, &inboxes, &mut carry, not_audited)?;
            }
            if !self.opts.stages.load || self.wfm.is_none() {
                self.tally.days_done.push(day.to_string());
            }
        }
        drop(ahead);
        // The states carried from day to day are done with before the load.
        drop(carry);
        if self.opts.stages.transform {
            self.redo_changed_work_days(&inboxes)?;
        }
        if self.opts.stages.load && self.wfm.is_some() {
            let t = Instant::now();
            self.load(&agents, &days).await?;
            self.tally.time("load", t);
        }
        self.advance_cursor();
        self.state.save(&self.state_dir)?;
        Ok(())
    }

    /// Before anything reads or writes: a day a killed run was committing is completed, and
    /// the files it had not committed are removed.
    fn recover(&mut self) -> Result<(), RunError> {
        let recovered = self.st.recover()?;
        if recovered.commits > 0 {
            log::info(format!(
                "completed {} day commit(s) an interrupted run left",
                recovered.commits
            ));
        }
        if recovered.swept > 0 {
            log::info(format!(
                "removed {} temporary file(s) left by an interrupted run",
                recovered.swept
            ));
        }
        Ok(())
    }

    /// The timezone and the days to process (`window`), logged with what extracting them
    /// costs; returns today. A `--to` in the future is a usage error, found before any request
    /// when the timezone is known.
    async fn plan(&mut self) -> Result<NaiveDate, RunError> {
        let future = |tz: Tz, to: Option<NaiveDate>| -> Result<(), RunError> {
            let today = time::day_of(tz, self.opts.now);
            match to {
                Some(t) if t > today => Err(RunError::Usage(format!(
                    "--to {t} is in the future (today is {today} in {})",
                    tz.name()
                ))),
                _ => Ok(()),
            }
        };
        if let Some(tz) = self.p.timezone {
            future(tz, self.opts.to)?;
        }
        self.tz = self.resolve_timezone().await?;
        let tz = self.tz;
        future(tz, self.opts.to)?;
        self.window = plan_days(
            self.p,
            &self.state,
            tz,
            self.opts.now,
            self.opts.from,
            self.opts.to,
        );
        let first_last = |d: Option<&NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
        log::info(format!(
            "pipeline {}: {} day(s) {}..{} in {}",
            self.p.name,
            self.window.len(),
            first_last(self.window.first()),
            first_last(self.window.last()),
            tz.name()
        ));
        if self.opts.stages.extract && self.window.len() > 1 {
            let (reports, minutes) = extraction_estimate(self.p, tz, self.opts.now, &self.window);
            log::info(format!(
                "estimate: {reports} report request(s) at gladly.reports_per_minute = {}: at least {} of extraction",
                self.p.gladly.reports_per_minute,
                if minutes < 90.0 {
                    format!("{minutes:.0} min")
                } else {
                    format!("{:.1} h", minutes / 60.0)
                }
            ));
        }
        Ok(time::day_of(tz, self.opts.now))
    }

    fn extractor(&self) -> Extractor {
        Extractor {
            gladly: self.gladly.clone(),
            st: self.st.clone(),
            tz: self.tz,
            now: self.opts.now,
            pending: self.pending.clone(),
            audit_until: self
                .p
                .audit
                .enabled
                .then(|| self.opts.now - self.p.report_lag_minutes as Ms * 60_000),
        }
    }

    /// Decodes and lands a fetched day into the raw zone; returns why its summary could not be
    /// landed, if it could not (the day is then not audited).
    fn land_day(
        &mut self,
        day: NaiveDate,
        extractor: &Extractor,
        f: Fetched,
    ) -> Result<Option<String>, RunError> {
        let t = Instant::now();
        // A panic while decoding fails the run with its manifest, as an error does.
        let x = tokio::task::block_in_place(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| extractor.land(f)))
        })
        .map_err(|_| RunError::Failed(format!("landing {day} failed: a panic")))??;
        self.tally.time("land", t);
        self.tally.aside(x.set_aside);
        self.tally
            .sources
            .insert(day.to_string(), x.source.to_string());
        for (d, day, n) in x.rows {
            self.tally.rows(d, day, n);
        }
        self.state.mark("extract", day);
        self.state.save(&self.state_dir)?;
        Ok(x.not_audited)
    }

    /// A day's curated datasets from the raw zone, committed together.
    fn transform_day(
        &mut self,
        day: NaiveDate,
        emails: &Emails,
        inboxes: &[InboxDim],
        carry: &mut Carry,
        not_audited: Option<String>,
    ) -> Result<(), RunError> {
        let t = Instant::now();
        let generation = self.pending.generation(day);
        let tf = self.transformer();
        let out = tokio::task::block_in_place(|| {
            tf.transform_all(
                day,
                emails,
                inboxes,
                &mut carry.agents,
                &mut carry.conversations,
                not_audited,
            )
        })?;
        self.tally.merge(out);
        self.pending.transformed(day, generation, self.pushes())?;
        self.tally.time("transform", t);
        self.state.mark("transform", day);
        self.state.save(&self.state_dir)?;
        Ok(())
    }

    /// A nightly run that did every stage moves the cursor to the last complete day.
    fn advance_cursor(&mut self) {
        let all_stages = self.opts.stages.extract
            && self.opts.stages.transform
            && (self.opts.stages.load || !self.pushes());
        if self.opts.from.is_none() && self.wfm_auth_error.is_none() && all_stages {
            let last = last_complete_day(self.tz, self.opts.now, self.p.report_lag_minutes);
            if self.state.nightly_cursor.is_none_or(|c| c < last) && !self.opts.dry_run {
                self.state.nightly_cursor = Some(last);
            }
        }
    }

    /// Whether this pipeline pushes to a WFM (a dry run still owes it what it did not push).
    fn pushes(&self) -> bool {
        self.p.wfm.as_ref().is_some_and(|w| w.enabled)
    }

    /// Sessions that ended after their day was done: their day's curated work datasets are
    /// rebuilt, if a run has processed that day; a day no run has processed yet keeps them in
    /// the raw zone until it is (DESIGN §9: curated partitions only for processed days).
    fn redo_changed_work_days(&mut self, inboxes: &[InboxDim]) -> Result<(), RunError> {
        let processed = self
            .state
            .completed
            .get("transform")
            .cloned()
            .unwrap_or_default();
        for (day, generation) in self.pending.snapshot().transform {
            if !processed.contains(&day) && !self.window.contains(&day) {
                self.pending.forget(day)?;
                continue;
            }
            log::info(format!(
                "work sessions of {day} changed: redoing its work_sessions and workstream_intervals"
            ));
            let out = self.transformer().transform_work(day, inboxes)?;
            self.tally.merge(out);
            self.pending.transformed(day, generation, self.pushes())?;
        }
        Ok(())
    }

    async fn resolve_timezone(&mut self) -> Result<Tz, RunError> {
        if self.opts.stages.extract {
            // One cheap call that also proves the credentials before anything else.
            let org = self.gladly.organization().await?.timezone;
            if let Some(tz) = org.as_deref().and_then(time::parse_tz) {
                self.state.org_timezone = Some(tz.name().to_string());
            }
        }
        // The organisation's as just answered, or as an earlier run remembered it.
        let remembered = self.state.org_timezone.as_deref();
        Ok(stages::timezone(self.p.timezone, None, remembered)?)
    }

    async fn extract_dimensions(&mut self, today: NaiveDate) -> Result<(), RunError> {
        let t = Instant::now();
        let (agents, inboxes) =
            stages::land_dimensions(&self.gladly, &self.st, today, time::now_ms()).await?;
        log::info(format!(
            "dimensions: {} agents, {} inboxes",
            agents.len(),
            inboxes.len()
        ));
        self.tally.time("extract", t);
        Ok(())
    }

    fn newest_agents(&self) -> Result<(Vec<AgentDim>, Emails), RunError> {
        let agents = stages::newest_agents(&self.st)?;
        let e = ds::emails(&agents);
        Ok((agents, e))
    }

    /// Curated `agents` and `inboxes` from the newest raw snapshot, under its own date.
    fn transform_dimensions(&mut self) -> Result<(), RunError> {
        if let Some((day, df)) = raw::newest(&self.st, raw::AGENTS)? {
            let (agents, snap) =
                raw::agents_from(&df).map_err(polars_err("agents snapshot".into()))?;
            let mut f = ds::agents_frame(&agents, snap.unwrap_or_default())
                .map_err(polars_err("agents".into()))?;
            self.st.write_partition(ds::AGENTS, day, &mut f)?;
            self.tally.rows(ds::AGENTS, day, agents.len());
        }
        if let Some((day, df)) = raw::newest(&self.st, raw::INBOXES)? {
            let (inboxes, snap) =
                raw::inboxes_from(&df).map_err(polars_err("inboxes snapshot".into()))?;
            for i in &inboxes {
                if ds::inbox_workstream(&self.p.workstreams, i).is_none() {
                    let name = format!("{} ({})", i.name.as_deref().unwrap_or(""), i.inbox_id);
                    *self.tally.unmatched_inboxes.entry(name).or_default() += 1;
                }
            }
            let mut f = ds::inboxes_frame(&inboxes, &self.p.workstreams, snap.unwrap_or_default())
                .map_err(polars_err("inboxes".into()))?;
            self.st.write_partition(ds::INBOXES, day, &mut f)?;
            self.tally.rows(ds::INBOXES, day, inboxes.len());
        }
        Ok(())
    }

    /// Requests so far and rows written so far, for the progress bar.
    fn progress_counts(&self) -> String {
        let requests = self
            .gladly
            .stats
            .requests
            .load(std::sync::atomic::Ordering::Relaxed);
        let rows: usize = self
            .tally
            .rows
            .iter()
            .filter(|(d, _)| !d.starts_with("raw/"))
            .flat_map(|(_, m)| m.values())
            .sum();
        format!("{requests} requests · {rows} rows")
    }

    fn transformer(&self) -> Transformer<'_> {
        Transformer::new(self.p, &self.st, self.tz, self.opts.now)
    }

    fn newest_inboxes(&self) -> Result<Vec<InboxDim>, RunError> {
        Ok(stages::newest_inboxes(&self.st)?)
    }

    /// Pushes users once, then each day's segments, conversations and interval totals, after
    /// all Parquet is safely written.
    /// Pushes users once, then each day's segments and conversations, and the interval totals
    /// of those days and of every day whose work sessions changed since they were last pushed
    /// (the durable pending list, so a failed run's days are not lost). Plans come from the
    /// curated zone and state alone, so `--stages load` pushes what a full run would.
    async fn load(&mut self, agents: &[AgentDim], days: &[NaiveDate]) -> Result<(), RunError> {
        let Some(client) = self.wfm.as_ref() else {
            return Ok(());
        };
        let batch = self.p.wfm.as_ref().map(|w| w.batch_size).unwrap_or(100);
        let state_dir = self.state_dir.clone();
        let user_records = push::user_records(agents, &self.state.users_pushed);
        let inactive = user_records.iter().filter(|u| !u.is_active).count();
        if inactive > 0 {
            log::info(format!(
                "users: {inactive} gone from /agents since an earlier run, pushed as inactive"
            ));
        }
        let users = PushPlan::of(
            Kind::Users,
            None,
            &user_records,
            batch,
            client.integration_id(),
        );
        let mut rejected = 0;
        match push::push_plan(
            client,
            &users,
            &mut self.state,
            &state_dir,
            &mut self.tally.wfm,
            Kind::Users.as_str(),
            &self.interrupt,
        )
        .await
        {
            Ok(n) => {
                rejected += n;
                if n == 0 {
                    push::remember_users(&user_records, &mut self.state.users_pushed);
                    self.state.save(&state_dir)?;
                }
            }
            Err(e) => return self.wfm_failed(e),
        }
        let pending_load = self.pending.snapshot().load;
        // The run's days and the days whose work sessions changed since they were pushed, in
        // order, once each.
        let all: Vec<NaiveDate> = days
            .iter()
            .copied()
            .chain(pending_load.iter().copied())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for (i, &day) in all.iter().enumerate() {
            log::progress(i, all.len(), "days pushed", &format!("{day}: to the WFM"));
            let whole = days.contains(&day);
            let intervals = whole || pending_load.contains(&day);
            let _day = log::scope_day(day, "load");
            let built = tokio::task::block_in_place(|| {
                day_plans(
                    &self.st,
                    self.tz,
                    batch,
                    day,
                    whole,
                    intervals,
                    client.integration_id(),
                )
            })?;
            let mut day_rejected = 0;
            self.tally
                .wfm
                .entry(Kind::Intervals.as_str().into())
                .or_default()
                .unmatched_workstream += built.unmatched_workstream;
            for (kind, plan) in built.plans {
                match push::push_plan(
                    client,
                    &plan,
                    &mut self.state,
                    &state_dir,
                    &mut self.tally.wfm,
                    kind.as_str(),
                    &self.interrupt,
                )
                .await
                {
                    Ok(rejected_here) => day_rejected += rejected_here,
                    Err(e) => return self.wfm_failed(e),
                }
            }
            rejected += day_rejected;
            if day_rejected > 0 {
                continue;
            }
            self.pending.loaded(day)?;
            if days.contains(&day) {
                self.state.mark("load", day);
                self.state.save(&state_dir)?;
                self.tally.days_done.push(day.to_string());
            }
        }
        if rejected > 0 {
            let first = self
                .tally
                .wfm
                .values()
                .flat_map(|t| t.errors.first())
                .next()
                .map(|e| format!("; first: {} {} ({})", e["record"], e["message"], e["code"]))
                .unwrap_or_default();
            return Err(RunError::Failed(format!(
                "the WFM rejected {rejected} record(s){first}; all are listed in the manifest \
                 (wfm.*.errors); their days are not marked done and the next run sends them again"
            )));
        }
        Ok(())
    }

    fn wfm_failed(&mut self, e: PushError) -> Result<(), RunError> {
        match e {
            PushError::Wfm(e @ WfmError::Auth { .. }) => {
                // The Parquet is already written; the run ends with code 4.
                log::error(e.to_string());
                self.wfm_auth_error = Some(e.to_string());
                Ok(())
            }
            PushError::Wfm(WfmError::Interrupted) => Err(RunError::Interrupted),
            other => Err(RunError::Failed(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(extra: &str) -> Pipeline {
        let src = format!(
            "name = \"t\"\ntimezone = \"America/New_York\"\ninitial_days = 3\n{extra}\n[gladly]\nbase_url = \"http://127.0.0.1:1\"\nuser = \"u\"\ntoken = \"t\"\n"
        );
        Pipeline::parse(std::path::Path::new("p.toml"), &src, &|_| None).unwrap()
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn nightly_days_resume_after_the_cursor_and_redo_settle_days() {
        let tz = chrono_tz::America::New_York;
        // 2026-11-04 03:00 local: with a 2-hour lag, 2026-11-03 is complete (it ended at 00:00).
        let now = time::parse_ts("2026-11-04T08:00:00Z").unwrap();
        let p = pipeline("settle_days = 1");
        let mut st = PipelineState::default();
        assert_eq!(
            plan_days(&p, &st, tz, now, None, None),
            time::days_between(d("2026-11-01"), d("2026-11-03"))
        );
        st.nightly_cursor = Some(d("2026-11-02"));
        assert_eq!(
            plan_days(&p, &st, tz, now, None, None),
            vec![d("2026-11-02"), d("2026-11-03")]
        );
        st.nightly_cursor = Some(d("2026-11-03"));
        assert_eq!(
            plan_days(&p, &st, tz, now, None, None),
            vec![d("2026-11-03")]
        );
        let p0 = pipeline("settle_days = 0");
        assert!(plan_days(&p0, &st, tz, now, None, None).is_empty());
        // Intraday adds today so far; an explicit range is taken as it is.
        let pi = pipeline("settle_days = 0\nintraday = true");
        assert_eq!(
            plan_days(&pi, &st, tz, now, None, None),
            vec![d("2026-11-04")]
        );
        assert_eq!(
            plan_days(
                &p,
                &st,
                tz,
                now,
                Some(d("2026-10-01")),
                Some(d("2026-10-02"))
            )
            .len(),
            2
        );
        // Before the lag has passed, yesterday is not complete yet.
        let early = time::parse_ts("2026-11-04T06:00:00Z").unwrap();
        assert_eq!(last_complete_day(tz, early, 120), d("2026-11-02"));
    }
}
