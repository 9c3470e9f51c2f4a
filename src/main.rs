//! The command line. Everything it does lives in the library; this file only parses arguments
//! and maps outcomes to the documented exit codes (0 done, 1 failed, 2 usage/config, 3 locked,
//! 4 credentials refused).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gladly_wfm::commands::{check, demo, schedule, simulate, status};
use gladly_wfm::config::Pipeline;
use gladly_wfm::pipeline::{self, RunOptions, Stages};
use gladly_wfm::{log, time};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "gladly-wfm",
    version,
    about = "Gladly workforce data → a WFM tool and Hive-partitioned Parquet"
)]
struct Cli {
    /// Log lines as `text` or `json` (stderr).
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// More log lines.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Fewer log lines (warnings and errors only; -qq errors only).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    quiet: u8,
    /// The clock, as an RFC 3339 instant (for re-plays and tests); default: now.
    #[arg(long, global = true, hide = true)]
    now: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the whole pipeline on the bundled simulators: no credentials, a few seconds.
    Demo {
        #[arg(long, default_value_t = 7)]
        days: u32,
        #[arg(long, default_value_t = 50)]
        agents: usize,
        #[arg(long, default_value = "output")]
        out: PathBuf,
    },
    /// Run a pipeline once: complete days since the last run, or --from/--to (inclusive).
    Run {
        #[arg(long)]
        pipeline: PathBuf,
        /// First business date (YYYY-MM-DD, pipeline timezone).
        #[arg(long)]
        from: Option<String>,
        /// Last business date, inclusive.
        #[arg(long)]
        to: Option<String>,
        /// Comma list of stages: extract,transform,load.
        #[arg(long, default_value = "extract,transform,load")]
        stages: String,
        /// Extract and write Parquet, but push nothing to the WFM and move no cursor.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run the pipeline on its [schedule] cron until SIGINT/SIGTERM.
    Schedule {
        #[arg(long)]
        pipeline: PathBuf,
    },
    /// Validate a pipeline file, try the credentials, report unmatched labels and inboxes.
    Check {
        #[arg(long)]
        pipeline: PathBuf,
        /// Do not call Gladly or the WFM.
        #[arg(long)]
        offline: bool,
    },
    /// Completed days, last runs, lock holder, next fire time.
    Status {
        #[arg(long)]
        pipeline: PathBuf,
    },
    /// Run a bundled simulator.
    Simulate {
        #[command(subcommand)]
        which: SimCmd,
    },
}

#[derive(Subcommand)]
enum SimCmd {
    /// The Gladly REST API.
    Gladly {
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: String,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value_t = 50)]
        agents: usize,
        #[arg(long, default_value_t = 5)]
        inboxes: usize,
        #[arg(long, default_value_t = 10)]
        days: u32,
        /// The simulated clock (RFC 3339); default: the real clock.
        #[arg(long = "sim-now", alias = "clock")]
        sim_now: Option<String>,
        /// Comma list of kind:rate, kinds 500, 429, slow, cut.
        #[arg(long, default_value = "")]
        faults: String,
        #[arg(long, default_value = "sim@example.com")]
        user: String,
        #[arg(long, default_value = "sim-token")]
        token: String,
        #[arg(long, default_value = "America/New_York")]
        timezone: String,
        #[arg(long, default_value_t = 10)]
        rps: usize,
        #[arg(long, default_value_t = 10)]
        reports_per_minute: usize,
        #[arg(long, default_value_t = 2)]
        reports_in_flight: usize,
        /// How long a `slow` fault holds an answer, in milliseconds.
        #[arg(long, default_value_t = 5000)]
        slow_ms: u64,
        /// Comma list: bom, blank-lines, fraction-digits, unknown-fields, unknown-event-type, all.
        #[arg(long, default_value = "")]
        quirks: String,
        /// Write the ground truth (agents, inboxes, events, work sessions) to this folder.
        #[arg(long)]
        dump: Option<PathBuf>,
    },
    /// The WFM push API.
    Wfm {
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: String,
        #[arg(long, default_value = "")]
        faults: String,
        /// Keep the store in this file across restarts.
        #[arg(long)]
        dump: Option<PathBuf>,
        #[arg(long, default_value = "sim-client")]
        client_id: String,
        #[arg(long, default_value = "sim-secret")]
        client_secret: String,
        #[arg(long, default_value_t = 3600)]
        token_ttl: u64,
        #[arg(long, default_value_t = 100)]
        requests_per_30s: usize,
        /// How long a `slow` fault holds an answer, in milliseconds.
        #[arg(long, default_value_t = 5000)]
        slow_ms: u64,
    },
}

fn load(path: &std::path::Path) -> Result<Pipeline, ExitCode> {
    Pipeline::load(path).map_err(|e| {
        eprintln!("gladly-wfm: {e}");
        ExitCode::from(2)
    })
}

fn date(flag: &str, s: &Option<String>) -> Result<Option<chrono::NaiveDate>, ExitCode> {
    match s {
        None => Ok(None),
        Some(s) => time::parse_date(s).map(Some).ok_or_else(|| {
            eprintln!("gladly-wfm: {flag} `{s}` is not a date (YYYY-MM-DD)");
            ExitCode::from(2)
        }),
    }
}

fn code(c: i32) -> ExitCode {
    ExitCode::from(c.clamp(0, 255) as u8)
}

/// Transparent huge pages make every fresh 2 MiB of the allocator's heap resident, and zeroed, at
/// its first touch: a short transform spent a third of its samples zeroing pages (`perf`) and
/// held nearly twice the memory it used. Off for this process only; 4 KiB pages cost it nothing
/// measurable in CPU time.
fn no_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and changes only this process's policy.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    no_transparent_huge_pages();
    let cli = Cli::parse();
    let format = if cli.log_format == "json" {
        log::Format::Json
    } else {
        log::Format::Text
    };
    log::configure(format, cli.verbose as i8 - cli.quiet as i8);
    let now = match &cli.now {
        None => time::now_ms(),
        Some(s) => match time::parse_ts(s) {
            Some(t) => t,
            None => {
                eprintln!("gladly-wfm: --now `{s}` is not an RFC 3339 instant");
                return ExitCode::from(2);
            }
        },
    };
    match cli.cmd {
        Cmd::Demo { days, agents, out } => {
            code(demo::demo(demo::DemoArgs { days, agents, out }).await)
        }
        Cmd::Run {
            pipeline: file,
            from,
            to,
            stages,
            dry_run,
        } => {
            let p = match load(&file) {
                Ok(p) => p,
                Err(c) => return c,
            };
            let (from, to) = match (date("--from", &from), date("--to", &to)) {
                (Ok(f), Ok(t)) => (f, t),
                (Err(c), _) | (_, Err(c)) => return c,
            };
            let stages = match Stages::parse(&stages) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("gladly-wfm: --stages: {e}");
                    return ExitCode::from(2);
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
            println!("{}", outcome.summary);
            code(outcome.exit_code)
        }
        Cmd::Schedule { pipeline: file } => match load(&file) {
            Ok(p) => code(schedule::schedule(&p).await),
            Err(c) => c,
        },
        Cmd::Check {
            pipeline: file,
            offline,
        } => match load(&file) {
            Ok(p) => code(check::check(&p, offline).await),
            Err(c) => c,
        },
        Cmd::Status { pipeline: file } => match load(&file) {
            Ok(p) => code(status::status(&p)),
            Err(c) => c,
        },
        Cmd::Simulate { which } => {
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
                    dump,
                } => {
                    let sim_now = match sim_now.as_deref().or(cli.now.as_deref()) {
                        None => None,
                        Some(s) => match time::parse_ts(s) {
                            Some(t) => Some(t),
                            None => {
                                eprintln!("gladly-wfm: --now `{s}` is not an RFC 3339 instant");
                                return ExitCode::from(2);
                            }
                        },
                    };
                    simulate::run_gladly(simulate::GladlyArgs {
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
                    })
                    .await
                }
            };
            match r {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("gladly-wfm: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
