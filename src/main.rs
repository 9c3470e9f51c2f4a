//! The command line. Everything it does lives in the library; this file only parses arguments
//! and turns the command's outcome (`exit::Exit`: done, failed, usage/config, locked,
//! credentials refused) into the process's exit code, in `main`.

// Every printed line goes through the redaction: `say!` / `say_err!` (log.rs), never `println!`.
#![deny(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gladly_wfm::commands::{check, report, schedule, status};
#[cfg(feature = "simulators")]
use gladly_wfm::commands::{demo, simulate};
use gladly_wfm::config::Pipeline;
use gladly_wfm::exit::Exit;
use gladly_wfm::pipeline::{self, RunOptions, Stages};
use gladly_wfm::{log, time};

#[derive(Parser)]
#[command(
    name = "gladly-wfm",
    version,
    about = "Gladly workforce data → a WFM tool and Hive-partitioned Parquet",
    after_help = "Exit codes: 0 done, 1 the run failed (what finished is kept; the next run resumes), 2 usage or configuration error (nothing was fetched), 3 another run of the pipeline holds the lock, 4 Gladly or the WFM refused the credentials.\nStart with `gladly-wfm demo`; `gladly-wfm help COMMAND` describes a command's options."
)]
struct Cli {
    /// Log lines (on stderr) as plain `text`, or `json`: one object per line for machines.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"], help_heading = "Global options")]
    log_format: String,
    /// More log lines: -v adds debug lines (such as work sessions still open).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = "Global options")]
    verbose: u8,
    /// Fewer log lines: -q warnings and errors only, -qq errors only.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = "Global options")]
    quiet: u8,
    /// The clock, as an RFC 3339 instant (for re-plays and tests); default: now.
    #[arg(long, global = true, hide = true)]
    now: Option<String>,
    /// With --now: how many times faster than real time the clock of `follow` (and of
    /// `simulate gladly`) runs from that instant (tests and demos).
    #[arg(long, global = true, hide = true)]
    speed: Option<f64>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the whole pipeline on the bundled simulators: no credentials, a few seconds.
    #[cfg(feature = "simulators")]
    Demo {
        /// Complete days of simulated history to process (today so far comes on top).
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// Agents in the simulated organisation.
        #[arg(long, default_value_t = 50)]
        agents: usize,
        /// Output root for the demo's Parquet, state and manifests (owned by pipeline `demo`).
        #[arg(long, default_value = "output")]
        out: PathBuf,
        /// After the batch part, run `follow` against the simulators on a live clock and print
        /// the WFM's open agent states as they change, until Ctrl-C.
        #[arg(long)]
        follow: bool,
    },
    /// Run a pipeline once: complete days since the last run, or --from/--to (inclusive).
    Run {
        /// The pipeline file (TOML; pipelines/nightly.toml is a commented template).
        #[arg(long)]
        pipeline: PathBuf,
        /// First business date (YYYY-MM-DD, pipeline timezone).
        #[arg(long)]
        from: Option<String>,
        /// Last business date, inclusive.
        #[arg(long)]
        to: Option<String>,
        /// Comma list of stages: extract (Gladly → raw zone), transform (raw zone → datasets),
        /// load (datasets → WFM).
        #[arg(long, default_value = "extract,transform,load")]
        stages: String,
        /// Extract and write Parquet, but push nothing to the WFM and move no cursor.
        #[arg(long)]
        dry_run: bool,
    },
    /// Keep the WFM within a minute of Gladly: poll the Events API every [follow] poll_seconds,
    /// push what changed, reconcile each day once it is complete; until SIGINT/SIGTERM.
    Follow {
        /// The pipeline file (TOML).
        #[arg(long)]
        pipeline: PathBuf,
    },
    /// Run the pipeline on its [schedule] cron until SIGINT/SIGTERM.
    Schedule {
        /// The pipeline file; its [schedule] cron says when to run.
        #[arg(long)]
        pipeline: PathBuf,
    },
    /// Validate a pipeline file, try the credentials, report unmatched labels and inboxes.
    Check {
        /// The pipeline file to validate.
        #[arg(long)]
        pipeline: PathBuf,
        /// Do not call Gladly or the WFM (no credentials needed).
        #[arg(long)]
        offline: bool,
        /// Exit 1 when a label or inbox seen matches no rule, or a rule matches nothing seen.
        #[arg(long)]
        strict: bool,
        /// Disable and delete the pipeline's webhook in Gladly ([webhook] public_url), then exit.
        #[arg(long)]
        remove_webhook: bool,
    },
    /// Write one self-contained HTML page for a business date: each agent's day as a timeline
    /// coloured by task, hours per task, interval volumes, what no rule matched, and the run that
    /// made it. Reads the curated datasets only: no credentials, no network.
    Report {
        /// The pipeline file (TOML); its output root holds the datasets to read.
        #[arg(long)]
        pipeline: PathBuf,
        /// The business date (YYYY-MM-DD, pipeline timezone); default: the newest complete day
        /// that has curated data.
        #[arg(long)]
        date: Option<String>,
        /// Where to write the page; default: <output root>/_reports/<pipeline>/<date>.html.
        #[arg(long, value_name = "FILE.html")]
        out: Option<PathBuf>,
    },
    /// Compare processed days with Gladly's own AgentSummaryV2 (fetched again); exit 1 when
    /// an agent-day drifts beyond [audit]'s tolerance. Default: the newest complete processed day.
    Audit {
        /// The pipeline file (TOML).
        #[arg(long)]
        pipeline: PathBuf,
        /// First business date (YYYY-MM-DD, pipeline timezone).
        #[arg(long)]
        from: Option<String>,
        /// Last business date, inclusive.
        #[arg(long)]
        to: Option<String>,
    },
    /// Completed days, last runs, lock holder, next fire time.
    Status {
        /// The pipeline file (no credentials needed).
        #[arg(long)]
        pipeline: PathBuf,
    },
    /// Run a bundled simulator.
    #[cfg(feature = "simulators")]
    Simulate {
        #[command(subcommand)]
        which: SimCmd,
    },
}

#[cfg(feature = "simulators")]
#[derive(Subcommand)]
enum SimCmd {
    /// The Gladly REST API.
    Gladly {
        /// Address to listen on; port 0 picks a free one (printed as the first line).
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: String,
        /// Seed of the simulated organisation: the same seed gives the same data.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Agents in the organisation.
        #[arg(long, default_value_t = 50)]
        agents: usize,
        /// Inboxes in the organisation.
        #[arg(long, default_value_t = 5)]
        inboxes: usize,
        /// Days of history before the simulated clock.
        #[arg(long, default_value_t = 10)]
        days: u32,
        /// The simulated clock (RFC 3339); default: the real clock.
        #[arg(long = "sim-now", alias = "clock")]
        sim_now: Option<String>,
        /// Injected faults, a comma list of kind:rate (kinds 500, 429, slow, cut), e.g. 500:0.05,cut:0.01.
        #[arg(long, default_value = "")]
        faults: String,
        /// The API user it accepts.
        #[arg(long, default_value = "sim@example.com")]
        user: String,
        /// The API token it accepts.
        #[arg(long, default_value = "sim-token")]
        token: String,
        /// The organisation's timezone (IANA name).
        #[arg(long, default_value = "America/New_York")]
        timezone: String,
        /// Requests per second it allows per HTTP method (then 429).
        #[arg(long, default_value_t = 10)]
        rps: usize,
        /// Report requests it allows in any 60 seconds.
        #[arg(long, default_value_t = 10)]
        reports_per_minute: usize,
        /// Report requests it allows at once.
        #[arg(long, default_value_t = 2)]
        reports_in_flight: usize,
        /// How long a `slow` fault holds an answer, in milliseconds.
        #[arg(long, default_value_t = 5000)]
        slow_ms: u64,
        /// Comma list: bom, blank-lines, fraction-digits, unknown-fields, unknown-event-type,
        /// report-offsets, report-local-time, all; and (not in all) timezone-filter, malformed,
        /// unreadable-timestamps, summary-drift (one agent's AgentSummaryV2 times +600 s).
        #[arg(long, default_value = "")]
        quirks: String,
        /// Follow every timestamps report with this many MiB of copies of its last row (an
        /// oversized answer, to see the client's cap and memory at work).
        #[arg(long, default_value_t = 0)]
        pad_reports_mib: u64,
        /// Follow every Events API answer with this many MiB of copies of its last line.
        #[arg(long, default_value_t = 0)]
        pad_events_mib: u64,
        /// Multiply the webhook retry intervals (+30 s, +5 min, +30 min, +1 h) by this.
        #[arg(long, default_value_t = 1.0)]
        webhook_retry_scale: f64,
        /// Accept http:// webhook URLs too (Gladly accepts https:// only).
        #[arg(long)]
        webhook_allow_http: bool,
        /// Write the ground truth (agents, inboxes, events, work sessions) to this folder.
        #[arg(long)]
        dump: Option<PathBuf>,
    },
    /// The WFM push API.
    Wfm {
        /// Address to listen on; port 0 picks a free one (printed as the first line).
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: String,
        /// Injected faults, a comma list of kind:rate (kinds 500, 429, slow, cut).
        #[arg(long, default_value = "")]
        faults: String,
        /// Keep the store in this file across restarts.
        #[arg(long)]
        dump: Option<PathBuf>,
        /// The client id it accepts.
        #[arg(long, default_value = "sim-client")]
        client_id: String,
        /// The client secret it accepts.
        #[arg(long, default_value = "sim-secret")]
        client_secret: String,
        /// Lifetime of the access tokens it issues, in seconds.
        #[arg(long, default_value_t = 3600)]
        token_ttl: u64,
        /// Requests it allows per client in any 30 seconds (then 429 with Retry-After).
        #[arg(long, default_value_t = 100)]
        requests_per_30s: usize,
        /// How long a `slow` fault holds an answer, in milliseconds.
        #[arg(long, default_value_t = 5000)]
        slow_ms: u64,
        /// Request bodies its log (`/_sim/requests`) keeps, in MiB, newest first; older
        /// requests stay listed with `body_dropped`.
        #[arg(long, default_value_t = gladly_wfm_sim::wfm::DEFAULT_LOG_BODY_BYTES >> 20)]
        log_body_mib: usize,
    },
}

fn load(path: &std::path::Path) -> Result<Pipeline, Exit> {
    Pipeline::load(path).map_err(|e| {
        gladly_wfm::say_err!("gladly-wfm: {e}");
        Exit::Usage
    })
}

fn date(flag: &str, s: &Option<String>) -> Result<Option<chrono::NaiveDate>, Exit> {
    match s {
        None => Ok(None),
        Some(s) => time::parse_date(s).map(Some).ok_or_else(|| {
            gladly_wfm::say_err!("gladly-wfm: {flag} `{s}` is not a date (YYYY-MM-DD)");
            Exit::Usage
        }),
    }
}

/// `--from` and `--to`, each a date or absent; both are said when both are wrong.
fn dates(from: &Option<String>, to: &Option<String>) -> Result<DateRange, Exit> {
    match (date("--from", from), date("--to", to)) {
        (Ok(f), Ok(t)) => Ok((f, t)),
        (Err(c), _) | (_, Err(c)) => Err(c),
    }
}

type DateRange = (Option<chrono::NaiveDate>, Option<chrono::NaiveDate>);

/// `--now`, or the clock.
fn now(flag: &Option<String>) -> Result<time::Ms, Exit> {
    match flag {
        None => Ok(time::now_ms()),
        Some(s) => time::parse_ts(s).ok_or_else(|| {
            gladly_wfm::say_err!("gladly-wfm: --now `{s}` is not an RFC 3339 instant");
            Exit::Usage
        }),
    }
}

/// The async runtime (tokio's defaults; `TOKIO_WORKER_THREADS` is read by tokio itself).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

fn main() -> ExitCode {
    log::redact_panics();
    let cli = Cli::parse();
    let exit = match runtime() {
        Ok(rt) => rt.block_on(cli_main(cli)),
        Err(e) => {
            gladly_wfm::say_err!("gladly-wfm: cannot start the async runtime: {e}");
            Exit::Failed
        }
    };
    // The runtime is gone, and with it whatever read the spooled files: an object-store root's
    // local temporary folder goes too (`storage::local_temp`).
    gladly_wfm::storage::local_temp::remove_process_dir();
    ExitCode::from(exit.code())
}

async fn cli_main(cli: Cli) -> Exit {
    let format = if cli.log_format == "json" {
        log::Format::Json
    } else {
        log::Format::Text
    };
    log::configure(format, cli.verbose as i8 - cli.quiet as i8);
    let now = match now(&cli.now) {
        Ok(t) => t,
        Err(c) => return c,
    };
    match cli.cmd {
        #[cfg(feature = "simulators")]
        Cmd::Demo {
            days,
            agents,
            out,
            follow,
        } => {
            demo::demo(demo::DemoArgs {
                days,
                agents,
                out,
                follow,
            })
            .await
        }
        Cmd::Run {
            pipeline: file,
            from,
            to,
            stages,
            dry_run,
        } => run_cmd(&file, (&from, &to), &stages, dry_run, now).await,
        Cmd::Follow { pipeline: file } => match load(&file) {
            Ok(p) => {
                let clock = match cli.now {
                    Some(_) => time::Clock::starting_at(now, cli.speed.unwrap_or(1.0)),
                    None => time::Clock::real(),
                };
                gladly_wfm::follow::follow(&p, clock).await
            }
            Err(c) => c,
        },
        Cmd::Schedule { pipeline: file } => match load(&file) {
            Ok(p) => schedule::schedule(&p).await,
            Err(c) => c,
        },
        Cmd::Check {
            pipeline: file,
            offline,
            strict,
            remove_webhook,
        } => match load(&file) {
            Ok(p) => check::check(&p, offline, strict, remove_webhook).await,
            Err(c) => c,
        },
        Cmd::Report {
            pipeline: file,
            date: d,
            out,
        } => match load(&file).and_then(|p| Ok((p, date("--date", &d)?))) {
            Ok((p, date)) => report::report(&p, &report::ReportArgs { date, out, now }),
            Err(c) => c,
        },
        Cmd::Audit {
            pipeline: file,
            from,
            to,
        } => match load(&file).and_then(|p| Ok((p, dates(&from, &to)?))) {
            Ok((p, (from, to))) => {
                let args = gladly_wfm::commands::audit::AuditArgs { from, to, now };
                gladly_wfm::commands::audit::audit(&p, &args).await
            }
            Err(c) => c,
        },
        Cmd::Status { pipeline: file } => match load(&file) {
            Ok(p) => status::status(&p, now),
            Err(c) => c,
        },
        #[cfg(feature = "simulators")]
        Cmd::Simulate { which } => simulate_cmd(which, cli.now, cli.speed).await,
    }
}

/// `run`: the pipeline once, and its summary.
async fn run_cmd(
    file: &std::path::Path,
    (from, to): (&Option<String>, &Option<String>),
    stages: &str,
    dry_run: bool,
    now: time::Ms,
) -> Exit {
    let (p, (from, to)) = match load(file).and_then(|p| Ok((p, dates(from, to)?))) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let stages = match Stages::parse(stages) {
        Ok(s) => s,
        Err(e) => {
            gladly_wfm::say_err!("gladly-wfm: --stages: {e}");
            return Exit::Usage;
        }
    };
    let trigger = if from.is_some() { "manual" } else { "nightly" };
    let opts = RunOptions {
        from,
        to,
        stages,
        dry_run,
        now,
        trigger: trigger.into(),
    };
    let outcome = pipeline::run(&p, &opts).await;
    gladly_wfm::say!("{}", outcome.summary);
    outcome.exit
}

/// `simulate gladly|wfm`: a simulator on its own, until interrupted.
#[cfg(feature = "simulators")]
async fn simulate_cmd(which: SimCmd, cli_now: Option<String>, speed: Option<f64>) -> Exit {
    let r = match which {
        SimCmd::Gladly {
            addr,
            seed,
            agents,
            inboxes,
            days,
            sim_now,
            faults,
            user,
            token,
            timezone,
            rps,
            reports_per_minute,
            reports_in_flight,
            slow_ms,
            quirks,
            pad_reports_mib,
            pad_events_mib,
            webhook_retry_scale,
            webhook_allow_http,
            dump,
        } => {
            let sim_now = match sim_now.as_deref().or(cli_now.as_deref()) {
                None => None,
                Some(s) => match time::parse_ts(s) {
                    Some(t) => Some(t),
                    None => {
                        gladly_wfm::say_err!("gladly-wfm: --now `{s}` is not an RFC 3339 instant");
                        return Exit::Usage;
                    }
                },
            };
            simulate::run_gladly(simulate::GladlyArgs {
                // `--speed` only means something from a given `--now`.
                speed: speed.filter(|_| sim_now.is_some()).unwrap_or(0.0),
                addr,
                seed,
                agents,
                inboxes,
                days,
                now: sim_now,
                faults,
                user,
                token,
                timezone,
                rps,
                reports_per_minute,
                reports_in_flight,
                slow_ms,
                quirks,
                pad_reports_mib,
                pad_events_mib,
                webhook_retry_scale,
                webhook_allow_http,
                dump,
            })
            .await
        }
        SimCmd::Wfm {
            addr,
            faults,
            dump,
            client_id,
            client_secret,
            token_ttl,
            requests_per_30s,
            slow_ms,
            log_body_mib,
        } => {
            simulate::run_wfm(simulate::WfmArgs {
                addr,
                faults,
                dump,
                client_id,
                client_secret,
                token_ttl,
                requests_per_30s,
                slow_ms,
                log_body_mib,
            })
            .await
        }
    };
    match r {
        Ok(()) => Exit::Done,
        Err(e) => {
            gladly_wfm::say_err!("gladly-wfm: {e}");
            Exit::Usage
        }
    }
}
