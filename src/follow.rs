//! `gladly-wfm follow`: agent states in the WFM within a minute (DESIGN §12).
//!
//! Every `poll_seconds` one Events API request (every entity) from the persisted cursor, less a
//! small overlap, up to now less Gladly's visibility lag; the new events land in the raw zone
//! (deduplicated by `event_id`), the days they touch (today, and yesterday until its open pieces
//! are closed at midnight) are transformed again, and only what changed since the last push is
//! upserted: newly opened pieces (`endTime` null), pieces that closed, conversation records,
//! and — every `work_sessions_minutes` — interval totals; users every `dimensions_minutes`.
//! Once a day is complete the follower runs that day's nightly reconcile itself (a plain
//! `run` of that day: the report, `replaceWindow`), so the datasets and the WFM then hold
//! exactly what a nightly run gives. Cursor and push state are checkpointed after every poll;
//! the pipeline's lock is held only while a poll works, so a manual `run` of other days goes on
//! beside it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{Duration, NaiveDate};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::config::Pipeline;
use crate::exit::Exit;
use crate::extract::{ExtractError, Extractor};
use crate::gladly::decode::{self, DecodeError};
use crate::gladly::{GladlyClient, GladlyError};
use crate::http::Stats;
use crate::interrupt::Interrupt;
use crate::load::push::{self, Kind, PushError, Record};
use crate::lock::{LockError, PipelineLock};
use crate::log;
use crate::model::{AgentDim, InboxDim};
use crate::pipeline::{self, RunOptions, Stages};
use crate::raw::{self, RawEvents, Via};
use crate::stages::{self, read_curated, Rewrite, StageError, Startup};
use crate::state::PendingWorkFile;
use crate::storage::{Dir, Storage, StorageError};
use crate::time::{self, Clock, Ms, MS_PER_HOUR};
use crate::transform::datasets::{self as ds, Emails};
use crate::transform::segments::StartState;
use crate::transform::stage::{TransformError, Transformer};
use crate::transform::workstreams as wsd;
use crate::webhook::{self, Taken};
use crate::wfm::{WfmClient, WfmError};

/// Gladly makes an event visible to the Events API some seconds after its `timestamp`.
pub const VISIBILITY_LAG_MS: Ms = 15_000;
/// Each poll asks again for the last minute before the cursor: late-visible events are caught,
/// and the overlap is deduplicated by `event_id`.
pub const OVERLAP_MS: Ms = 60_000;
/// The Events API refuses windows that start more than 24 hours ago; keep clear of the edge.
const OLDEST_MS: Ms = 23 * MS_PER_HOUR + 50 * 60_000;

/// What the follower remembers between polls, beside the pipeline's state.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FollowState {
    /// The end of the last window read from the Events API.
    pub polled_to: Option<Ms>,
    /// The newest recorded `timestamp` landed.
    pub newest_event: Option<Ms>,
    /// When the last poll succeeded.
    pub last_poll_at: Option<Ms>,
    /// now − newest event landed, at the last poll.
    pub lag_ms: Option<Ms>,
    /// When a poll last failed, and why (redacted); cleared by the next poll that succeeds.
    #[serde(default)]
    pub last_failure_at: Option<Ms>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// Polls failed in a row since the last that succeeded.
    #[serde(default)]
    pub failures_since_ok: u32,
    pub last_work_sessions_at: Option<Ms>,
    pub last_dimensions_at: Option<Ms>,
    /// The first day followed: reconciles run from there.
    pub first_day: Option<NaiveDate>,
    /// The last day whose nightly reconcile ran.
    pub reconciled_through: Option<NaiveDate>,
    /// The day the last poll transformed as today (its open pieces close at midnight).
    pub today: Option<NaiveDate>,
    /// `kind/day/key` → digest of the record as last acknowledged by the WFM.
    pub pushed: BTreeMap<String, String>,
    /// Event → WFM acknowledgement at the last poll that pushed a status change.
    pub latency: Option<Latency>,
    /// The same, for each of the most recent status changes (at most `RECENT` of them).
    #[serde(default)]
    pub recent_latencies_ms: std::collections::VecDeque<Ms>,
    /// The webhook as `follow` last saw it in Gladly (with `[webhook] manage`).
    #[serde(default)]
    pub webhook: Option<WebhookSeen>,
}

/// The pipeline's webhook in Gladly at `follow`'s last look (for `status`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct WebhookSeen {
    pub url: String,
    pub enabled: bool,
    /// When Gladly last switched it off after failed deliveries (RFC 3339).
    pub switched_off_at: Option<String>,
    pub looked_at: Ms,
}

/// How many recent latencies the follow state keeps (for `status` and the benchmark).
const RECENT: usize = 5_000;

/// How long the status changes a poll pushed took from the event (a piece's start, or its end
/// when it closed) to the WFM's acknowledgement, on the follower's clock.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: Ms,
    pub p95_ms: Ms,
    pub max_ms: Ms,
}

impl Latency {
    pub fn of(mut v: Vec<Ms>) -> Option<Latency> {
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Some(Latency {
            samples: v.len(),
            p50_ms: at(0.5),
            p95_ms: at(0.95),
            max_ms: *v.last().unwrap(),
        })
    }
}

impl FollowState {
    const FILE: &'static str = "follow.json";

    /// Reads the follower's state from the state folder (on disk or in the object store).
    pub fn load(state_dir: &Dir) -> Result<FollowState, StorageError> {
        match state_dir.read(Self::FILE)? {
            None => Ok(FollowState::default()),
            Some(b) => serde_json::from_slice(&b).map_err(|e| {
                StorageError::new(
                    state_dir.describe(Self::FILE),
                    format!("corrupt follow state: {e}"),
                )
            }),
        }
    }

    /// Written only if nobody changed it since this follower read it (two followers of one
    /// pipeline on an object store cannot both win).
    fn save(&self, state_dir: &Dir) -> Result<(), StorageError> {
        state_dir.write_guarded(
            Self::FILE,
            serde_json::to_vec_pretty(self).unwrap_or_default(),
        )
    }
}

#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error(transparent)]
    Gladly(#[from] GladlyError),
    #[error(transparent)]
    Push(#[from] PushError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Transform(#[from] TransformError),
    #[error(transparent)]
    Extract(#[from] ExtractError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("{0}")]
    Failed(String),
}

impl FollowError {
    /// Gladly failed (not ready: service.rs).
    fn is_gladly(&self) -> bool {
        matches!(
            self,
            FollowError::Gladly(_) | FollowError::Extract(ExtractError::Gladly(_))
        )
    }

    fn is_auth(&self) -> bool {
        matches!(
            self,
            FollowError::Gladly(GladlyError::Auth { .. })
                | FollowError::Extract(ExtractError::Gladly(GladlyError::Auth { .. }))
                | FollowError::Push(PushError::Wfm(WfmError::Auth { .. }))
                | FollowError::Stage(StageError::Gladly(GladlyError::Auth { .. }))
        )
    }
}

/// What one poll did, for its log line.
#[derive(Default)]
struct PollReport {
    window: (Ms, Ms),
    new_events: usize,
    pushed: usize,
    set_aside: usize,
}

struct Follower<'a> {
    p: &'a Pipeline,
    clock: Clock,
    tz: Tz,
    st: Storage,
    state_dir: Dir,
    gladly: Arc<GladlyClient>,
    wfm: Option<WfmClient>,
    fs: FollowState,
    agents: Vec<AgentDim>,
    emails: Emails,
    inboxes: Vec<InboxDim>,
    /// The state at the start of a day, kept between polls so a poll reads only that day.
    start_states: BTreeMap<NaiveDate, StartState>,
    /// This poll's window start, and event → acknowledgement of the status changes it pushed.
    since: Ms,
    latencies: Vec<Ms>,
    /// Whether this follower has completed and swept what a killed run left (first poll).
    recovered: bool,
    /// The webhook's management in Gladly.
    hook: HookLook,
}

/// Where `follow` is with its webhook in Gladly.
#[derive(Default)]
struct HookLook {
    /// The first look (name, events, credentials set) succeeded.
    ensured: bool,
    /// Looks failed in a row.
    failures: u32,
    /// Not before this (the follower's clock).
    next_look_at: Ms,
}

/// How long the loop waits after a delivery for the ones that arrive with it, so that they
/// are taken in (and pushed) together.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(200);

/// What woke the loop.
enum Turn {
    Poll,
    Delivered(Taken),
    Stop,
}

/// Runs until SIGTERM/SIGINT (done after the poll in progress), or a refused credential.
pub async fn follow(p: &Pipeline, clock: Clock) -> Exit {
    let mut f = match Follower::start(p, clock).await {
        Ok(f) => f,
        Err(exit) => return exit,
    };
    let interrupt = Interrupt::new();
    let _signals = interrupt.listen();
    log::info(format!(
        "follow {}: polling every {} s in {}{}",
        p.name,
        p.follow.poll_seconds,
        f.tz.name(),
        f.fs.polled_to
            .map(|t| format!(", resuming from {}", time::fmt_ts(t)))
            .unwrap_or_default()
    ));
    let period = f.clock.real_duration(p.follow.poll_seconds as Ms * 1000);
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The cursor as resumed: a follower that cannot poll after a restart still shows its lag.
    crate::telemetry::resumed(f.fs.polled_to);
    // The receiver first: Gladly PINGs it while the webhook is being switched on.
    let (queue, mut delivered) = tokio::sync::mpsc::channel(crate::webhook::receiver::QUEUE);
    let receiver = match &p.webhook {
        None => None,
        Some(w) => match crate::webhook::Receiver::start(w, f.tz, clock, f.st.clone(), queue) {
            Ok(r) => Some(r),
            Err(e) => {
                log::error(format!("{}: {e}", p.file.display()));
                return Exit::Usage;
            }
        },
    };
    let mut service = match crate::service::Service::start(p, Some(period * 3)).await {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    // Switched on before the first poll, so that what happens from now on is delivered.
    f.look_after_webhook().await;
    loop {
        // Deliveries wait in the queue until a poll has read the day and its agents.
        let taking = f.fs.today.is_some() && !f.agents.is_empty();
        let turn = tokio::select! {
            biased;
            _ = interrupt.wait() => Turn::Stop,
            _ = ticks.tick() => Turn::Poll,
            Some(t) = delivered.recv(), if taking => Turn::Delivered(t),
        };
        service.loop_turn();
        let turned = match turn {
            Turn::Stop => break,
            Turn::Delivered(first) => f.deliveries(first, &mut delivered).await,
            Turn::Poll => f.poll_turn(&mut service, &interrupt).await,
        };
        if let Err(exit) = turned {
            return exit;
        }
        if interrupt.requested() {
            break;
        }
    }
    // Not ready first, then the deliveries in flight are answered and the receiver closes;
    // Gladly retries what it could not deliver, and the next start's poll covers the gap.
    service.shutting_down();
    // Deliveries still arriving are answered 503 (Gladly retries them), not taken in unseen.
    drop(delivered);
    if let Some(r) = receiver {
        r.stop().await;
    }
    log::info("follow: stopped; the cursor is saved, the next start resumes from it");
    Exit::Done
}

/// `; event→WFM p50 …` for a log line.
fn describe_latency(l: &Latency) -> String {
    format!(
        "; event→WFM p50 {:.1} s, p95 {:.1} s, max {:.1} s",
        l.p50_ms as f64 / 1000.0,
        l.p95_ms as f64 / 1000.0,
        l.max_ms as f64 / 1000.0
    )
}

/// CPU time (user + system) this process has used so far, in milliseconds: a poll's cost is
/// the difference across it (the poll's own work and the threads it wakes).
fn process_cpu_ms() -> u64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0;
    }
    let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
    ms(ru.ru_utime) + ms(ru.ru_stime)
}

/// The pipeline's timezone, or the organisation's. With one in the file, starting needs no
/// answer from Gladly: a service starts during an outage, and its polls report the outage.
async fn resolve_timezone(p: &Pipeline, gladly: &GladlyClient) -> Result<Tz, FollowError> {
    if let Some(tz) = p.timezone {
        return Ok(tz);
    }
    let org = gladly.organization().await?;
    Ok(stages::timezone(None, org.timezone.as_deref(), None)?)
}

impl<'a> Follower<'a> {
    /// One start-up (stages.rs): the pipeline's root and lock folder, the webhook's
    /// credentials registered for redaction, the timezone, the follower's state.
    async fn start(p: &'a Pipeline, clock: Clock) -> Result<Follower<'a>, Exit> {
        // Follow polls Gladly and pushes to the WFM, into a root that must be this pipeline's.
        let Startup { st, state_dir, .. } = Startup::open(p, true, true).map_err(|e| {
            log::error(e.to_string());
            e.exit()
        })?;
        if let Some(w) = &p.webhook {
            if let Err(e) = p.require(crate::config::Section::Webhook) {
                log::error(e.to_string());
                return Err(Exit::Usage);
            }
            log::add_credential(&w.user, w.password.expose());
        }
        let gladly = Arc::new(GladlyClient::new(&p.gladly, Arc::new(Stats::default())));
        let tz = resolve_timezone(p, &gladly).await.map_err(|e| {
            log::error(e.to_string());
            if e.is_auth() {
                Exit::Refused
            } else {
                Exit::Failed
            }
        })?;
        let fs = FollowState::load(&state_dir).map_err(|e| {
            log::error(e.to_string());
            Exit::Failed
        })?;
        Ok(Follower {
            p,
            clock,
            tz,
            st,
            state_dir,
            gladly,
            wfm: p
                .wfm
                .as_ref()
                .filter(|w| w.enabled)
                .map(|w| WfmClient::new(w, Arc::new(Stats::default()))),
            fs,
            agents: Vec::new(),
            emails: Emails::default(),
            inboxes: Vec::new(),
            start_states: BTreeMap::new(),
            since: 0,
            latencies: Vec::new(),
            recovered: false,
            hook: HookLook::default(),
        })
    }

    /// A turn for webhook deliveries: the ones that arrive with `first` are taken in with it.
    /// Only a refused credential ends the follower.
    async fn deliveries(
        &mut self,
        first: Taken,
        queue: &mut tokio::sync::mpsc::Receiver<Taken>,
    ) -> Result<(), Exit> {
        tokio::time::sleep(COALESCE).await;
        let mut taken = vec![first];
        while let Ok(t) = queue.try_recv() {
            taken.push(t);
        }
        match self.take_in(taken).await {
            Err(e) if e.is_auth() => {
                log::error(e.to_string());
                Err(Exit::Refused)
            }
            Err(e) => {
                log::warn(format!(
                    "follow: webhook deliveries not pushed at once ({e}); the next poll brings them"
                ));
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    /// A poll turn: the poll, then the webhook's upkeep and the reconcile of complete days.
    /// Only a refused credential ends the follower.
    async fn poll_turn(
        &mut self,
        service: &mut crate::service::Service,
        interrupt: &Interrupt,
    ) -> Result<(), Exit> {
        match self.tick().await {
            Ok(()) => service.poll_ok(),
            Err(e) if e.is_auth() => {
                log::error(e.to_string());
                return Err(Exit::Refused);
            }
            Err(e) => {
                log::error(format!("follow: {e}; trying again at the next poll"));
                self.failed(&e);
                service.poll_failed(e.is_gladly(), &e.to_string());
            }
        }
        if interrupt.requested() {
            return Ok(());
        }
        self.look_after_webhook().await;
        self.reconcile().await;
        Ok(())
    }
}

impl Follower<'_> {
    /// One poll under the pipeline's lock; a poll that finds the lock taken waits for the next.
    /// The lock is released after the poll, whatever became of it; not releasing it fails the
    /// tick.
    async fn tick(&mut self) -> Result<(), FollowError> {
        let Some(lock) = self.lock("polling at the next tick")? else {
            return Ok(());
        };
        let polled = self.locked_tick().await;
        let released = tokio::task::block_in_place(|| lock.release());
        polled?;
        Ok(released?)
    }

    /// The pipeline's lock, or `None` when another run holds it (the turn is left to the next
    /// poll, which `next` names).
    fn lock(&self, next: &str) -> Result<Option<PipelineLock>, FollowError> {
        let run_id = format!("follow-{}", std::process::id());
        match PipelineLock::acquire(&self.state_dir, &self.p.name, &run_id, self.p.lock_lease) {
            Ok(l) => Ok(Some(l)),
            Err(e @ LockError::Held { .. }) => {
                log::info(format!("follow: {e}; {next}"));
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Webhook deliveries (DESIGN §12): their events join today's state at once, deduplicated
    /// by `event_id` with everything landed, and what they change is pushed. Only events of the
    /// day the last poll followed as today are taken: a newer day begins with a poll, and a
    /// late delivery for an earlier day would change the state today started from after
    /// today's pieces were pushed (the piece carried over midnight is named by the event that
    /// opened it), so the poll and the reconcile bring those, as without a webhook.
    async fn take_in(&mut self, taken: Vec<Taken>) -> Result<(), FollowError> {
        let (Some(today), Some(first)) = (self.fs.today, self.fs.first_day) else {
            return Ok(());
        };
        let reconciled = self.fs.reconciled_through.is_some_and(|r| r >= today);
        if self.agents.is_empty() || today < first || reconciled {
            return Ok(());
        }
        let t = std::time::Instant::now();
        let tz = self.tz;
        let followed = |at: Ms| time::day_of(tz, at) == today;
        let (mut agents, mut conversations) = (Vec::new(), Vec::new());
        for delivery in taken {
            agents.extend(
                delivery
                    .agents
                    .into_iter()
                    .filter(|e| followed(e.recorded_at)),
            );
            conversations.extend(
                delivery
                    .conversations
                    .into_iter()
                    .filter(|e| followed(e.recorded_at)),
            );
        }
        let earliest = agents
            .iter()
            .map(|e| e.occurred_at)
            .chain(conversations.iter().map(|e| e.recorded_at))
            .min();
        let Some(earliest) = earliest else {
            return Ok(());
        };
        let newest = agents
            .iter()
            .map(|e| e.recorded_at)
            .chain(conversations.iter().map(|e| e.recorded_at))
            .max();
        let Some(lock) = self.lock("the next poll brings these deliveries")? else {
            return Ok(());
        };
        self.latencies.clear();
        self.since = earliest;
        let done = self.take_in_locked(agents, conversations).await;
        let released = tokio::task::block_in_place(|| lock.release());
        if done.is_err() {
            // Staged partitions a failed turn left are swept by the next poll.
            self.recovered = false;
        }
        let (new, pushed) = done?;
        released?;
        if let Some(n) = newest.filter(|_| new > 0) {
            self.fs.newest_event = Some(self.fs.newest_event.map_or(n, |o| o.max(n)));
        }
        let samples = std::mem::take(&mut self.latencies);
        crate::telemetry::event_to_wfm("webhook", &samples);
        self.remember_latencies(&samples);
        let latency = Latency::of(samples);
        log::info(format!(
            "follow: webhook: {new} new event(s), {pushed} record(s) pushed{}; took {} ms",
            latency.as_ref().map(describe_latency).unwrap_or_default(),
            t.elapsed().as_millis()
        ));
        if latency.is_some() {
            self.fs.latency = latency;
        }
        self.fs.save(&self.state_dir)?;
        Ok(())
    }

    /// Lands delivered events, transforms the days they changed and pushes what changed:
    /// (new events, records pushed).
    async fn take_in_locked(
        &mut self,
        agents: Vec<crate::model::AgentEvent>,
        conversations: Vec<crate::model::ConversationEvent>,
    ) -> Result<(usize, usize), FollowError> {
        self.st.complete_commits()?;
        let mut days = BTreeSet::new();
        let new = self.land(agents, Via::Webhook, &mut days)?
            + self.land(conversations, Via::Webhook, &mut days)?;
        if days.iter().any(|d| Some(*d) < self.fs.today) {
            self.start_states.retain(|d, _| *d < *days.first().unwrap());
        }
        for &day in &days {
            self.transform(day)?;
        }
        let mut pushed = 0;
        for &day in &days {
            pushed += self.push_day(day).await?;
        }
        Ok((new, pushed))
    }

    /// Every `dimensions_minutes`, with `[webhook] manage`: the webhook made sure of in
    /// Gladly (found or created, switched on). The first look also sets its name, events and
    /// credentials (Gladly never shows them). A look that fails is tried again after 1, 2, 4 …
    /// minutes (at most `dimensions_minutes`), so a Gladly that is down does not hold the loop.
    async fn look_after_webhook(&mut self) {
        use webhook::manage::{self, Looked};
        let Some(w) = self.p.webhook.as_ref().filter(|w| w.manage) else {
            return;
        };
        let now = self.clock.now();
        if now < self.hook.next_look_at {
            return;
        }
        let looked = if self.hook.ensured {
            manage::look_after(self.p, &self.gladly, w).await
        } else {
            manage::ensure(self.p, &self.gladly, w).await
        };
        let every = self.p.follow.dimensions_minutes as Ms * 60_000;
        let (h, looked) = match looked {
            Ok(x) => x,
            Err(e) => {
                let wait = (60_000 << self.hook.failures.min(10)).min(every);
                self.hook.failures += 1;
                self.hook.next_look_at = now + wait;
                log::warn(format!(
                    "webhook: could not make sure of it in Gladly: {e}; the poll goes on, trying again in {} min",
                    wait / 60_000
                ));
                return;
            }
        };
        let seen_off = self
            .fs
            .webhook
            .as_ref()
            .and_then(|s| s.switched_off_at.clone());
        match &looked {
            Looked::SwitchedOnAgain(at) if *at != seen_off => {
                log::warn(format!(
                    "webhook: Gladly switched it off after failed deliveries (at {}); switched it on again — the poll brought what it missed",
                    at.as_deref().unwrap_or("an unknown time")
                ));
                crate::telemetry::webhook_switched_on_again();
            }
            Looked::SwitchedOnAgain(_) | Looked::Enabled => {
                log::warn("webhook: it was disabled in Gladly; switched it on again");
                crate::telemetry::webhook_switched_on_again();
            }
            Looked::Recreated => log::warn(format!(
                "webhook: none in Gladly for {} any more (deleted?); created it again",
                w.public_url
            )),
            Looked::Created | Looked::On => {}
        }
        if !self.hook.ensured {
            let how = if looked == Looked::Created {
                "created"
            } else {
                "found; credentials and events set"
            };
            log::info(format!("{} ({how})", manage::describe(Some(&h), w)));
        }
        crate::telemetry::webhook_enabled(h.enabled);
        self.hook = HookLook {
            ensured: true,
            failures: 0,
            next_look_at: now + every,
        };
        self.fs.webhook = Some(WebhookSeen {
            url: h.url,
            enabled: h.enabled,
            switched_off_at: h.disabled_at_due_to_retry_limit,
            looked_at: now,
        });
        if let Err(e) = self.fs.save(&self.state_dir) {
            log::warn(format!("follow: {e}"));
        }
    }

    /// A failed poll is remembered for `status` (when, why, how many in a row); the cursor does
    /// not move, so the next poll reads the window again.
    fn failed(&mut self, e: &FollowError) {
        self.fs.last_failure_at = Some(self.clock.now());
        self.fs.last_error = Some(log::redact(&e.to_string()));
        self.fs.failures_since_ok += 1;
        if let Err(e) = self.fs.save(&self.state_dir) {
            log::warn(format!(
                "follow: cannot record the failed poll for `status`: {e}"
            ));
        }
    }

    async fn locked_tick(&mut self) -> Result<(), FollowError> {
        let (t, cpu) = (std::time::Instant::now(), process_cpu_ms());
        let _poll = log::scope_day(time::day_of(self.tz, self.clock.now()), "poll");
        // First a day another run was committing when it was killed is completed (and, at the
        // first poll, what it had not committed is removed): one listing when there is none.
        if self.recovered {
            self.st.complete_commits()?;
        } else {
            self.st.recover()?;
            self.recovered = true;
        }
        self.latencies.clear();
        let r = match self.poll().await {
            Ok(r) => r,
            Err(e) => {
                // A poll that failed half-way may have staged partitions it never committed:
                // the next poll sweeps them (a full recover), so they cannot pile up.
                self.recovered = false;
                return Err(e);
            }
        };
        if self.fs.last_error.is_some() {
            self.fs.last_error = None;
            self.fs.failures_since_ok = 0;
            self.fs.save(&self.state_dir)?;
        }
        let samples = std::mem::take(&mut self.latencies);
        crate::telemetry::polled(t.elapsed(), self.fs.polled_to, &samples);
        self.remember_latencies(&samples);
        let latency = Latency::of(samples);
        log::info(format!(
            "follow: polled {}..{}: {} new event(s), {} record(s) pushed{}{}; lag {}; took {} ms, CPU {} ms",
            time::fmt_ts(r.window.0),
            time::fmt_ts(r.window.1),
            r.new_events,
            r.pushed,
            if r.set_aside > 0 {
                format!(", {} set aside", r.set_aside)
            } else {
                String::new()
            },
            latency.as_ref().map(describe_latency).unwrap_or_default(),
            self.fs
                .lag_ms
                .map(|l| format!("{:.1} s", l as f64 / 1000.0))
                .unwrap_or_else(|| "unknown".into()),
            t.elapsed().as_millis(),
            process_cpu_ms().saturating_sub(cpu),
        ));
        if latency.is_some() {
            self.fs.latency = latency;
            self.fs.save(&self.state_dir)?;
        }
        Ok(())
    }

    /// Keeps the most recent latencies for `status` and the benchmark.
    fn remember_latencies(&mut self, samples: &[Ms]) {
        for l in samples {
            if self.fs.recent_latencies_ms.len() == RECENT {
                self.fs.recent_latencies_ms.pop_front();
            }
            self.fs.recent_latencies_ms.push_back(*l);
        }
    }

    async fn poll(&mut self) -> Result<PollReport, FollowError> {
        let now = self.clock.now();
        let tz = self.tz;
        let today = time::day_of(tz, now);
        let first_day = *self.fs.first_day.get_or_insert(today);
        let end = now - VISIBILITY_LAG_MS;
        let oldest = now - OLDEST_MS;
        let start = match self.fs.polled_to {
            Some(t) => (t - OVERLAP_MS).max(oldest),
            None => time::day_start(tz, first_day).max(oldest),
        };
        let mut report = PollReport {
            window: (start, end),
            ..Default::default()
        };
        // Latency counts only changes newer than what the last poll had read: the first poll
        // of a run catches up and measures nothing.
        self.since = self.fs.polled_to.unwrap_or(Ms::MAX);
        if self.agents.is_empty()
            || self.due(
                self.fs.last_dimensions_at,
                self.p.follow.dimensions_minutes,
                now,
            )
        {
            self.dimensions(today, now).await?;
            report.pushed += self.push_users().await?;
        }
        let mut days: BTreeSet<NaiveDate> = BTreeSet::new();
        if end > start {
            let spool = self.st.temp_dir();
            std::fs::create_dir_all(&spool)
                .map_err(|e| StorageError::new(spool.display().to_string(), e))?;
            let body = self
                .gladly
                .events(
                    start,
                    end,
                    &["AGENT_STATUS", "AGENT_AVAILABILITY", "CONVERSATION"],
                    &spool,
                )
                .await?;
            let what = format!("events {}..{}", time::fmt_ts(start), time::fmt_ts(end));
            let req = decode::Request::new(what, start, end, tz);
            // Decoded as it is read from the spool, in one pass: memory holds the window's
            // distinct events, never the answer.
            let spooled = body.open().map_err(|source| DecodeError::Read {
                what: req.what.clone(),
                source,
            })?;
            let (agents, conversations) = decode::events_jsonl(spooled, &req)?;
            drop(body);
            // A window whose lines mostly fail to parse is an error, not an empty window.
            agents.verify()?;
            conversations.verify()?;
            let (agent_events, a1) = (agents.rows, agents.aside);
            let (conversation_events, a2) = (conversations.rows, conversations.aside);
            report.set_aside = a1.len() + a2.len();
            for a in a1.iter().chain(&a2) {
                log::warn(format!("set aside: {}: {}", a.location, a.reason));
            }
            let newest = agent_events
                .iter()
                .map(|e| e.recorded_at)
                .chain(conversation_events.iter().map(|e| e.recorded_at))
                .max();
            report.new_events += self.land(agent_events, Via::Read, &mut days)?;
            report.new_events += self.land(conversation_events, Via::Read, &mut days)?;
            if let Some(n) = newest {
                self.fs.newest_event = Some(self.fs.newest_event.map_or(n, |o| o.max(n)));
            }
        }
        // Yesterday's open pieces close at midnight: transform it once more after the day ends.
        if let Some(prev) = self.fs.today.filter(|d| *d < today) {
            days.insert(prev);
        }
        days.insert(today);
        // A reconciled day belongs to the nightly run now: upserts must not undo it.
        let reconciled = self.fs.reconciled_through;
        days.retain(|d| *d >= first_day && reconciled.is_none_or(|r| *d > r));
        if days.iter().any(|d| *d < today) {
            // An earlier day changed: today's start state must be read again.
            self.start_states.retain(|d, _| *d < *days.first().unwrap());
        }
        for &day in &days {
            self.transform(day)?;
        }
        for &day in &days {
            report.pushed += self.push_day(day).await?;
        }
        if self.due(
            self.fs.last_work_sessions_at,
            self.p.follow.work_sessions_minutes,
            now,
        ) {
            report.pushed += self.work_sessions(today, now).await?;
        }
        self.fs.today = Some(today);
        self.fs.polled_to = Some(end.max(start));
        self.fs.last_poll_at = Some(now);
        self.fs.lag_ms = self.fs.newest_event.map(|n| now - n);
        self.fs.save(&self.state_dir)?;
        Ok(report)
    }

    fn due(&self, last: Option<Ms>, minutes: u64, now: Ms) -> bool {
        last.is_none_or(|t| now - t >= minutes as Ms * 60_000)
    }

    /// Merges events into the raw partitions of the days they were recorded on; returns how
    /// many were new. A day with no new event is not rewritten.
    fn land<E: RawEvents>(
        &self,
        events: Vec<E>,
        via: Via,
        days: &mut BTreeSet<NaiveDate>,
    ) -> Result<usize, FollowError> {
        let mut by_day: BTreeMap<NaiveDate, Vec<E>> = BTreeMap::new();
        for e in events {
            by_day
                .entry(time::day_of(self.tz, e.recorded_at()))
                .or_default()
                .push(e);
        }
        let mut new = 0;
        for (day, fresh) in by_day {
            let (added, _) = stages::land_events(&self.st, day, fresh, Rewrite::IfNew, via)?;
            if added > 0 {
                new += added;
                days.insert(day);
            }
        }
        Ok(new)
    }

    fn transformer(&self, now: Ms) -> Transformer<'_> {
        Transformer::new(self.p, &self.st, self.tz, now)
    }

    /// A day's agent and conversation datasets from the raw zone (open pieces keep a null end
    /// until the day is over).
    fn transform(&mut self, day: NaiveDate) -> Result<(), FollowError> {
        let now = self.clock.now();
        if raw::read_agent_events(&self.st, day)?.is_none() {
            // Nothing landed for the day yet: an empty day still carries the start state.
            let mut df = raw::agent_events_frame(&[])
                .map_err(|e| FollowError::Failed(format!("agent events {day}: {e}")))?;
            self.st.write_partition(raw::AGENT_EVENTS, day, &mut df)?;
        }
        if raw::read_conversation_events(&self.st, day)?.is_none() {
            let mut df = raw::conversation_events_frame(&[])
                .map_err(|e| FollowError::Failed(format!("conversation events {day}: {e}")))?;
            self.st
                .write_partition(raw::CONVERSATION_EVENTS, day, &mut df)?;
        }
        let start = match self.start_states.get(&day) {
            Some(s) => s.clone(),
            None => {
                let s = self.transformer(now).start_state(day)?;
                self.start_states.insert(day, s.clone());
                s
            }
        };
        let tf = self.transformer(now);
        let mut carry = Some((day - Duration::days(1), start));
        tokio::task::block_in_place(|| {
            tf.transform_live(day, &self.emails, &self.inboxes, &mut carry)
        })?;
        Ok(())
    }

    /// Upserts what changed since the last acknowledged push, in the order given (tasks in
    /// order of start: a piece that closed goes before the one that opened after it).
    async fn upsert_changed<R: Record>(
        &mut self,
        kind: Kind,
        day: Option<NaiveDate>,
        records: Vec<R>,
    ) -> Result<usize, FollowError> {
        let Some(client) = self.wfm.as_ref() else {
            return Ok(0);
        };
        let scope = day.map(|d| d.to_string()).unwrap_or_default();
        let keyed: Vec<(String, String, R)> = records
            .into_iter()
            .map(|rec| {
                let k = format!("{}/{scope}/{}", kind.as_str(), rec.key());
                (k, push::record_digest(&rec), rec)
            })
            .collect();
        // Task records are named by the event that opened them; only they can be renamed.
        if let Some(day) = day.filter(|_| kind == Kind::Tasks) {
            if self.pushed_gone(kind, day, &keyed) {
                return self.replace_day(kind, day, keyed).await;
            }
        }
        let changed: Vec<(String, String, R)> = keyed
            .into_iter()
            .filter(|(k, d, _)| self.fs.pushed.get(k) != Some(d))
            .collect();
        let batch = self
            .p
            .wfm
            .as_ref()
            .map(|w| w.batch_size)
            .unwrap_or(100)
            .max(1);
        let mut sent = 0;
        for chunk in changed.chunks(batch) {
            let recs: Vec<&R> = chunk.iter().map(|(_, _, r)| r).collect();
            let what = format!("follow {} {scope}", kind.as_str());
            let answer = push::upsert(client, kind, &recs, &what).await?;
            // A status change is the piece's start, or its end once it closed; only the
            // changes that happened in this poll's window count (not a catch-up).
            let ack = self.clock.now();
            for at in recs.iter().filter_map(|r| r.changed_at()) {
                if at >= self.since {
                    self.latencies.push(ack - at);
                }
            }
            if answer.rejected > 0 {
                log::warn(format!(
                    "follow: the WFM rejected {} of {} {} record(s): {}",
                    answer.rejected,
                    recs.len(),
                    kind.as_str(),
                    serde_json::to_string(&answer.errors).unwrap_or_default()
                ));
            }
            let rejected: BTreeSet<usize> = answer
                .errors
                .iter()
                .filter_map(|e| e["index"].as_u64().map(|i| i as usize))
                .collect();
            for (i, (k, d, _)) in chunk.iter().enumerate() {
                if !rejected.contains(&i) {
                    self.fs.pushed.insert(k.clone(), d.clone());
                }
            }
            sent += recs.len();
            self.fs.save(&self.state_dir)?;
            crate::fault_point("push-batch");
        }
        Ok(sent)
    }

    /// Whether a record pushed for `day` is no longer among the day's (`keyed`: key, digest,
    /// record): an event of the day that happened before its start, known only later, renamed
    /// the piece carried over midnight (its `eventId` is the event that opened it), and an upsert
    /// cannot remove the old one.
    fn pushed_gone<R>(&self, kind: Kind, day: NaiveDate, keyed: &[(String, String, R)]) -> bool {
        let prefix = format!("{}/{day}/", kind.as_str());
        let now: BTreeSet<&str> = keyed.iter().map(|(k, _, _)| k.as_str()).collect();
        self.fs
            .pushed
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .any(|(k, _)| !now.contains(k.as_str()))
    }

    /// Replaces the day's records of `kind` at the WFM whole (`replaceWindow`), so that it holds
    /// exactly the day's records again. The day's acknowledgements are forgotten first: a
    /// replace cut short leaves records out, which the next push sends again.
    async fn replace_day<R: Record>(
        &mut self,
        kind: Kind,
        day: NaiveDate,
        keyed: Vec<(String, String, R)>,
    ) -> Result<usize, FollowError> {
        let Some(client) = self.wfm.as_ref() else {
            return Ok(0);
        };
        let prefix = format!("{}/{day}/", kind.as_str());
        self.fs.pushed.retain(|k, _| !k.starts_with(&prefix));
        self.fs.save(&self.state_dir)?;
        log::warn(format!(
            "follow: a {} record pushed for {day} is no longer among the day's (an event before the day's start came late); replacing the day's {} at the WFM",
            kind.as_str(),
            keyed.len()
        ));
        let window = (
            time::day_start(self.tz, day),
            time::day_start(self.tz, day + Duration::days(1)),
        );
        let batch = self.p.wfm.as_ref().map_or(100, |w| w.batch_size).max(1);
        let what = format!("follow {} {day} (replace)", kind.as_str());
        let records: Vec<&R> = keyed.iter().map(|(_, _, r)| r).collect();
        let answer = push::replace(client, kind, day, window, &records, batch, &what).await?;
        if answer.rejected == 0 {
            let n = keyed.len();
            self.fs
                .pushed
                .extend(keyed.into_iter().map(|(k, d, _)| (k, d)));
            self.fs.save(&self.state_dir)?;
            return Ok(n);
        }
        log::warn(format!(
            "follow: the WFM rejected {} of the {} record(s) of {day}: {}",
            answer.rejected,
            keyed.len(),
            serde_json::to_string(&answer.errors).unwrap_or_default()
        ));
        self.fs.save(&self.state_dir)?;
        Ok(keyed.len())
    }

    async fn push_day(&mut self, day: NaiveDate) -> Result<usize, FollowError> {
        if self.wfm.is_none() {
            return Ok(0);
        }
        let segs = read_curated(&self.st, ds::AGENT_STATUS_SEGMENTS, day, ds::segments_from)?;
        let mut recs: Vec<_> = push::segment_rows(day, &segs).collect();
        recs.sort_by_key(|r| r.start());
        let mut n = self.upsert_changed(Kind::Tasks, Some(day), recs).await?;
        let convs = read_curated(&self.st, wsd::CONVERSATIONS, day, wsd::conversations_from)?;
        let day_start = time::day_start(self.tz, day);
        let recs: Vec<_> = push::conversation_rows(day, day_start, &convs).collect();
        n += self
            .upsert_changed(Kind::Conversations, Some(day), recs)
            .await?;
        Ok(n)
    }

    /// Agents and inboxes into today's raw snapshot.
    async fn dimensions(&mut self, today: NaiveDate, now: Ms) -> Result<(), FollowError> {
        let (agents, inboxes) = stages::land_dimensions(&self.gladly, &self.st, today, now).await?;
        self.emails = ds::emails(&agents);
        self.agents = agents;
        self.inboxes = inboxes;
        self.fs.last_dimensions_at = Some(now);
        Ok(())
    }

    async fn push_users(&mut self) -> Result<usize, FollowError> {
        let state = crate::state::PipelineState::load(&self.state_dir)?;
        let recs = push::user_records(&self.agents, &state.users_pushed);
        self.upsert_changed(Kind::Users, None, recs).await
    }

    /// Today's work sessions so far: landed, today's work datasets rebuilt, interval totals
    /// upserted (counts against the reports budget, hence its own cadence).
    async fn work_sessions(&mut self, today: NaiveDate, now: Ms) -> Result<usize, FollowError> {
        let pending = Arc::new(PendingWorkFile::open(&self.state_dir)?);
        let x = Extractor {
            gladly: self.gladly.clone(),
            st: self.st.clone(),
            tz: self.tz,
            now,
            pending: pending.clone(),
            audit_until: None,
        };
        // A refused credential here stops the follower (exit 4) like one anywhere else.
        let fetched = x.fetch_work_sessions(today).await?;
        let mut landed = Default::default();
        x.land_work_sessions(fetched, &mut landed)?;
        let generation = pending.generation(today);
        self.transformer(now).transform_work(today, &self.inboxes)?;
        pending.transformed(today, generation, false)?;
        self.fs.last_work_sessions_at = Some(now);
        let rows = read_curated(
            &self.st,
            wsd::WORKSTREAM_INTERVALS,
            today,
            wsd::intervals_from,
        )?;
        let (recs, _) = push::interval_rows(&rows);
        let recs: Vec<_> = recs.collect();
        self.upsert_changed(Kind::Intervals, Some(today), recs)
            .await
    }

    /// Runs the nightly reconcile of every complete day since the first followed one, outside
    /// the follower's lock (the run takes it); a day whose run fails is tried again later.
    async fn reconcile(&mut self) {
        let Some(first) = self.fs.first_day else {
            return;
        };
        let now = self.clock.now();
        let last = pipeline::last_complete_day(self.tz, now, self.p.report_lag_minutes);
        let mut day = self
            .fs
            .reconciled_through
            .map(|d| d + Duration::days(1))
            .unwrap_or(first);
        while day <= last {
            log::info(format!(
                "follow: {day} is complete; running its nightly reconcile"
            ));
            let opts = RunOptions {
                from: Some(day),
                to: Some(day),
                stages: Stages::ALL,
                dry_run: false,
                now: self.clock.now(),
                trigger: "follow".into(),
            };
            let outcome = pipeline::run(self.p, &opts).await;
            crate::say!("{}", outcome.summary);
            if outcome.exit != Exit::Done {
                log::warn(format!(
                    "follow: the reconcile of {day} ended with exit code {}; trying again later",
                    outcome.exit.code()
                ));
                return;
            }
            let prefix: Vec<String> = [Kind::Tasks, Kind::Conversations, Kind::Intervals]
                .iter()
                .map(|k| format!("{}/{day}/", k.as_str()))
                .collect();
            self.fs
                .pushed
                .retain(|k, _| !prefix.iter().any(|p| k.starts_with(p.as_str())));
            self.fs.reconciled_through = Some(day);
            // The reconcile may have added events to the day: the next day's start state
            // must be read again.
            self.start_states.clear();
            if let Err(e) = self.fs.save(&self.state_dir) {
                log::error(format!("follow: {e}"));
                return;
            }
            crate::telemetry::last_success("reconcile");
            day += Duration::days(1);
        }
    }
}
