//! `gladly-wfm demo`: both simulators in-process on free loopback ports, `pipelines/demo.toml`
//! against them, Parquet under `--out`, and a summary table. No credentials, a few seconds.

use std::path::{Path, PathBuf};

use chrono::Duration;

use crate::config::{validate_root, ConfigError, Pipeline};
use crate::exit::Exit;
use crate::manifest::Manifest;
use crate::pipeline::{self, last_complete_day, RunOptions, Stages};
use crate::time;
use gladly_wfm_sim::generator::{Quirks, WorldConfig};
use gladly_wfm_sim::gladly::{GladlySim, GladlySimConfig};
use gladly_wfm_sim::wfm::{Kind, WfmSim, WfmSimConfig};

const DEMO_TOML: &str = include_str!("../../pipelines/demo.toml");

/// The curated datasets, in the order the summary lists them.
const DATASETS: [&str; 7] = [
    crate::transform::datasets::AGENTS,
    crate::transform::datasets::INBOXES,
    crate::transform::datasets::AGENT_STATUS_EVENTS,
    crate::transform::datasets::AGENT_STATUS_SEGMENTS,
    crate::transform::workstreams::CONVERSATIONS,
    crate::transform::workstreams::WORK_SESSIONS,
    crate::transform::workstreams::WORKSTREAM_INTERVALS,
];

pub struct DemoArgs {
    pub days: u32,
    pub agents: usize,
    pub out: PathBuf,
    /// Then `follow` on a live clock until Ctrl-C.
    pub follow: bool,
}

/// Why the demo's pipeline could not be set up.
#[derive(Debug, thiserror::Error)]
enum DemoError {
    #[error(transparent)]
    Pipeline(#[from] ConfigError),
    /// `--out` is not an output root.
    #[error("--out: {0}")]
    Out(#[from] crate::config::RootError),
}

fn demo_pipeline(out: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Pipeline, DemoError> {
    let file = Path::new("pipelines/demo.toml");
    let src = std::fs::read_to_string(file).unwrap_or_else(|_| DEMO_TOML.to_string());
    let mut p = Pipeline::parse(file, &src, env)?;
    validate_root(&out.to_string_lossy())?;
    p.output_root = crate::storage::RootSpec::Local(out.to_path_buf());
    Ok(p)
}

pub async fn demo(a: DemoArgs) -> Exit {
    // Refusals first, before anything starts or prints: a demo already running on this
    // output, or an output root that belongs to another pipeline.
    let p = match demo_pipeline(&a.out, &|_| None) {
        Ok(p) => p,
        Err(e) => {
            crate::say_err!("gladly-wfm: {e}");
            return Exit::Usage;
        }
    };
    if let Some(code) = refusal(&a.out, &p) {
        return code;
    }
    let tz = chrono_tz::America::New_York;
    let now = if a.follow {
        busy_hour(tz, time::now_ms())
    } else {
        time::now_ms()
    };
    let sims = match Sims::start(&a, tz, now).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let vars = sims.env();
    let env = |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    let p = match demo_pipeline(&a.out, &env) {
        Ok(p) => p,
        Err(e) => {
            crate::say_err!("gladly-wfm: {e}");
            return Exit::Usage;
        }
    };
    let last = last_complete_day(tz, now, p.report_lag_minutes);
    let today = time::day_of(tz, now);
    let opts = RunOptions {
        from: Some(last - Duration::days(a.days.max(1) as i64 - 1)),
        to: Some(today),
        stages: Stages::ALL,
        dry_run: false,
        now,
        trigger: "demo".into(),
    };
    let outcome = pipeline::run(&p, &opts).await;
    if outcome.exit != Exit::Done {
        // No table: a failed run's partial counts would read like a result.
        crate::say!("{}", outcome.summary);
        return outcome.exit;
    }
    print_results(&a.out, &p, &sims, &outcome, now);
    if a.follow {
        let p = match with_webhook(p) {
            Ok(p) => p,
            Err(e) => {
                crate::say_err!("demo: no port for the webhook receiver: {e}");
                return Exit::Failed;
            }
        };
        return follow_live(&p, &sims.wfm, time::Clock::starting_at(now, 1.0)).await;
    }
    Exit::Done
}

/// The demo pipeline with a webhook receiver on a free loopback port, which `follow` registers
/// in the Gladly simulator (plain HTTP: the simulator allows it on loopback).
fn with_webhook(mut p: Pipeline) -> std::io::Result<Pipeline> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let path = "/gladly/webhook".to_string();
    p.webhook = Some(crate::config::WebhookConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        public_url: format!("http://127.0.0.1:{port}{path}"),
        path,
        user: "gladly".into(),
        password: crate::config::Secret::new("demo-webhook-password"),
        manage: true,
        tls: None,
    });
    Ok(p)
}

/// Why the demo may not run on `out`, said, as its exit code: another demo holds it, or it
/// belongs to another pipeline.
fn refusal(out: &Path, p: &Pipeline) -> Option<Exit> {
    let holder = p
        .state_dir()
        .ok()
        .and_then(|d| crate::lock::PipelineLock::holder(&d));
    if let Some(holder) = holder {
        crate::say_err!(
            "gladly-wfm: another demo is running on {} ({}); wait for it, or use --out for another folder",
            out.display(),
            holder.trim()
        );
        return Some(Exit::Locked);
    }
    if let Err(e) = crate::ownership::verify(&crate::storage::Root::local(out), &p.name) {
        crate::say_err!("gladly-wfm: {e}; or use --out for another folder");
        return Some(e.exit());
    }
    None
}

/// Both simulators, serving on loopback ports.
struct Sims {
    /// Kept for as long as the demo runs.
    _gladly: std::sync::Arc<GladlySim>,
    wfm: std::sync::Arc<WfmSim>,
    g: std::net::SocketAddr,
    w: std::net::SocketAddr,
}

impl Sims {
    /// A world of `a.agents` agents whose clock is `now` (running on in real time with
    /// `--follow`), and a WFM whose request budget does not set the pace. `Err`: the exit code,
    /// the failure said.
    async fn start(a: &DemoArgs, tz: chrono_tz::Tz, now: time::Ms) -> Result<Sims, Exit> {
        let world = WorldConfig {
            seed: 42,
            agents: a.agents.max(1),
            inboxes: 5,
            days: a.days.max(1) + 3,
            timezone: tz,
            now: Some(now),
            quirks: Quirks::default(),
        };
        let mut gcfg = GladlySimConfig::new(world);
        gcfg.reports_per_minute = 600;
        if a.follow {
            // The simulated organisation lives on in real time: events appear as they happen,
            // and Gladly delivers each to the follower's webhook receiver on loopback.
            gcfg.speed = 1.0;
            gcfg.webhook_allow_http = true;
        }
        let gladly = GladlySim::new(gcfg);
        let wfm = WfmSim::new(WfmSimConfig {
            // As raised as the push's own limit in demo.toml: the push, not the budget, sets the pace.
            requests_per_30s: 100_000,
            ..WfmSimConfig::default()
        });
        match (
            gladly.serve("127.0.0.1:0").await,
            wfm.serve("127.0.0.1:0").await,
        ) {
            (Ok(g), Ok(w)) => Ok(Sims {
                _gladly: gladly,
                wfm,
                g,
                w,
            }),
            (Err(e), _) | (_, Err(e)) => {
                crate::say_err!("demo: cannot start the simulators: {e}");
                Err(Exit::Failed)
            }
        }
    }

    /// The environment `demo.toml` reads: the simulators' addresses and their credentials.
    fn env(&self) -> [(&'static str, String); 6] {
        let (g, w) = (self.g, self.w);
        [
            ("GLADLY_BASE_URL", format!("http://{g}")),
            ("GLADLY_API_USER", "sim@example.com".to_string()),
            ("GLADLY_API_TOKEN", "sim-token".to_string()),
            ("WFM_BASE_URL", format!("http://{w}")),
            ("WFM_CLIENT_ID", "sim-client".to_string()),
            ("WFM_CLIENT_SECRET", "sim-secret".to_string()),
        ]
    }
}

/// What a successful demo run made: the datasets, the rules' misses, the WFM's answers, the
/// report, where the Parquet is, and the run's summary.
fn print_results(
    out: &Path,
    p: &Pipeline,
    sims: &Sims,
    outcome: &pipeline::RunOutcome,
    now: time::Ms,
) {
    crate::say!(
        "Gladly simulator on http://{}, WFM simulator on http://{}",
        sims.g,
        sims.w
    );
    print_datasets(out);
    if let Some(m) = &outcome.manifest {
        print_unmatched(m);
        print_wfm(m, out);
    }
    let store = sims.wfm.store();
    crate::say!(
        "  the receiver now holds {} users and {} task records",
        store.kind(Kind::Users).len(),
        store.kind(Kind::Tasks).len()
    );
    crate::say!();
    match crate::report::write(p, None, Some(&out.join("report.html")), now) {
        Ok(w) => crate::say!("Report for {}: {}", w.day, w.path.display()),
        Err(e) => crate::say_err!("demo: no report: {e}"),
    }
    crate::say!(
        "Parquet under {}/ — see the README's recipes, e.g. with DuckDB:",
        out.display()
    );
    crate::say!(
        "  SELECT task, sum(duration_seconds) / 3600 AS hours FROM '{}/agent_status_segments/*/*.parquet' WHERE axis = 'status' GROUP BY ALL ORDER BY hours DESC;",
        out.display()
    );
    crate::say!("{}", outcome.summary);
}

/// `demo --follow` plays the simulated centre from 10:30 today in `tz` (a busy hour), so its
/// agents change state while a newcomer watches; the plain demo runs on the real clock.
fn busy_hour(tz: chrono_tz::Tz, real_now: time::Ms) -> time::Ms {
    time::local_to_utc(tz, time::day_of(tz, real_now), 10 * 60 + 30)
}

/// `demo --follow`: the follower against the live simulator on `clock` (from a busy hour, at
/// real speed), and a line for every agent state the WFM sees change, until Ctrl-C.
async fn follow_live(p: &Pipeline, wfm: &std::sync::Arc<WfmSim>, clock: time::Clock) -> Exit {
    crate::say!();
    crate::say!(
        "Following from {} in the simulated centre: Gladly delivers each event to the webhook as it happens and the WFM is updated at once; every {} s the Events API is read as the record (Ctrl-C to stop).",
        time::fmt_ts(clock.now()),
        p.follow.poll_seconds
    );
    let watch = {
        let wfm = wfm.clone();
        tokio::spawn(async move {
            let mut seen: OpenStates = Default::default();
            let mut first = true;
            loop {
                let now = open_states(&wfm);
                if first {
                    crate::say!(
                        "  the WFM holds {} open agent states: each agent's current state on each of its two axes (status: active or away; availability: channels), a segment with no end yet",
                        now.len()
                    );
                    crate::say!("  each change below: when seen, agent, axis → new state (task), since when, and how long after it happened the WFM had it (to half a second)");
                } else {
                    for (k, (state, start)) in &now {
                        if seen.get(k).map(|v| &v.0) != Some(state) {
                            let seen_at = clock.now();
                            crate::say!(
                                "  {} {:<28} {:<12} → {state}, since {}, in the WFM {:.1} s after",
                                time::fmt_ts(seen_at),
                                k.0,
                                k.1,
                                time::fmt_ts(*start),
                                (seen_at - start).max(0) as f64 / 1000.0
                            );
                        }
                    }
                }
                first = false;
                seen = now;
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        })
    };
    let code = crate::follow::follow(p, clock).await;
    watch.abort();
    code
}

/// (agent, axis) → (state and task, start) of every open task record the WFM holds.
type OpenStates = std::collections::BTreeMap<(String, String), (String, time::Ms)>;

fn open_states(wfm: &WfmSim) -> OpenStates {
    let mut out = OpenStates::new();
    for t in wfm.store().kind(Kind::Tasks) {
        if !t["endTime"].is_null() {
            continue;
        }
        let who = t["userEmail"]
            .as_str()
            .or(t["userIdentifier"].as_str())
            .unwrap_or("?")
            .to_string();
        let axis = t["axis"].as_str().unwrap_or("").to_string();
        let state = format!(
            "{} ({})",
            t["status"].as_str().unwrap_or(""),
            t["task"].as_str().unwrap_or("no task"),
        );
        let start = t["startTime"]
            .as_str()
            .and_then(time::parse_ts)
            .unwrap_or_default();
        out.insert((who, axis), (state, start));
    }
    out
}

/// Rows of every partition on disk (this run's and earlier runs'), from the Parquet footers.
fn print_datasets(root: &Path) {
    crate::say!();
    crate::say!("{:<24} {:>12} {:>6}", "dataset", "rows on disk", "days");
    for d in DATASETS {
        let mut rows = 0;
        let mut days = 0;
        let mut parts: Vec<PathBuf> = std::fs::read_dir(root.join(d))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("part-0.parquet"))
            .filter(|f| f.exists())
            .collect();
        parts.sort();
        for f in parts {
            match crate::frames::parquet_rows(&f) {
                Ok(n) => {
                    rows += n;
                    days += 1;
                }
                Err(e) => crate::say!("  {}: unreadable: {e}", f.display()),
            }
        }
        crate::say!("{d:<24} {rows:>12} {days:>6}");
    }
}

fn print_unmatched(m: &Manifest) {
    crate::say!();
    crate::say!("labels no task rule matches (kept with task = null):");
    if m.unmatched_labels.is_empty() {
        crate::say!("  none");
    }
    for (l, n) in &m.unmatched_labels {
        crate::say!("  {l:<26} {n:>8} events");
    }
    crate::say!("inboxes no workstream rule matches (kept with workstream = null):");
    if m.unmatched_inboxes.is_empty() {
        crate::say!("  none");
    }
    for l in m.unmatched_inboxes.keys() {
        crate::say!("  {l}");
    }
}

/// The WFM's answers per kind, what went without a workstream, and why `sent` and `inserted`
/// may differ.
fn print_wfm(m: &Manifest, root: &Path) {
    crate::say!();
    crate::say!("WFM answers (records sent by this run, and what the receiver did with them):");
    crate::say!(
        "  {:<14} {:>7} {:>9} {:>8} {:>10} {:>9}",
        "kind",
        "sent",
        "inserted",
        "updated",
        "duplicate",
        "rejected"
    );
    if m.wfm.is_empty() {
        crate::say!("  nothing pushed");
        return;
    }
    let mut unknown: std::collections::BTreeSet<&str> = Default::default();
    let mut no_workstream = 0;
    for (kind, t) in &m.wfm {
        crate::say!(
            "  {kind:<14} {:>7} {:>9} {:>8} {:>10} {:>9}",
            t.records,
            t.inserted,
            t.updated,
            t.duplicate,
            t.rejected,
        );
        no_workstream += t.unmatched_workstream;
        unknown.extend(t.unknown_users.iter().map(String::as_str));
    }
    crate::say!(
        "  sent = inserted + updated + duplicate + rejected: a record the receiver already"
    );
    crate::say!(
        "  held unchanged is a duplicate, with other content an update (re-runs replace a day)."
    );
    if no_workstream > 0 {
        crate::say!(
            "  {no_workstream} interval records are of inboxes no workstream rule matches: sent with workstream = null"
        );
        crate::say!(
            "  (the WFM lists them as unmatched volume; in {}/workstream_intervals too).",
            root.display()
        );
    }
    crate::say!(
        "  unknown users: {} — agents on the status segments sent whom the WFM has no user for (named by",
        unknown.len()
    );
    crate::say!("  e-mail, or by Gladly id for agents missing from Gladly's /agents, whose e-mail is null);");
    crate::say!("  the receiver stores their records unassigned.");
}
