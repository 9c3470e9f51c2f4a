//! The command line. Everything it does lives in the library; this file only parses arguments
//! and maps outcomes to the documented exit codes (0 done, 1 failed, 2 usage/config, 3 locked,
//! 4 credentials refused).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gladly_wfm::commands::{check, report, schedule, status};
#[cfg(feature = "simulators")]
use gladly_wfm::commands::{demo, simulate};
use gladly_wfm::config::Pipeline;
use gladly_wfm::pipeline::{self, RunOptions, Stages};
use gladly_wfm::{block_cache, log, time};

#[global_allocator]
static GLOBAL: block_cache::CachingMiMalloc = block_cache::CachingMiMalloc;

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
        /// unreadable-timestamps.
        #[arg(long, default_value = "")]
        quirks: String,
        /// Follow every timestamps report with this many MiB of copies of its last row (an
        /// oversized answer, to see the client's cap and memory at work).
        #[arg(long, default_value_t = 0)]
        pad_reports_mib: u64,
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

/// mimalloc (v3, as pinned in Cargo.lock) waits a second before it gives freed memory back to
/// the system, and a thread that falls idle (a blocking-pool thread that decoded a day) keeps
/// its freed pages until it allocates again: a week's extraction peaked at 282 MiB with the
/// default, 150 MiB with purging at once, for 1.3 s more system time over 7 days (`madvise`),
/// and no measurable change in the transform (`MIMALLOC_PURGE_DELAY=0|10|1000` runs, see the
/// closing note of issue 17). An environment variable `MIMALLOC_PURGE_DELAY` still wins. A
/// run that transforms landed days one after another keeps its large blocks for the next day
/// instead (`block_cache`), within a budget.
fn purge_freed_memory_at_once() {
    extern "C" {
        // mimalloc.h: `void mi_option_set(mi_option_t option, long value)`.
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    // `mi_option_purge_delay` in the v3 header of libmimalloc-sys 0.1.49 (pinned in Cargo.toml).
    const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option of the allocator this binary links; any value is valid.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
}

/// `GLADLY_WFM_BLOCK_CACHE_MIB`: the most freed memory the allocator keeps for reuse while a
/// run transforms days already landed (MiB; 0 turns the cache off). See `block_cache`.
fn block_cache_budget() -> Result<(), String> {
    const VAR: &str = "GLADLY_WFM_BLOCK_CACHE_MIB";
    if let Some(v) = std::env::var_os(VAR) {
        if v.is_empty() {
            return Ok(());
        }
        let bytes = v
            .to_str()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&mib| mib <= 4096)
            .and_then(|mib| mib.checked_mul(1 << 20))
            .ok_or_else(|| format!("{VAR}={v:?}: not a whole number of MiB from 0 to 4096"))?;
        block_cache::set_keeping_budget(bytes);
    }
    Ok(())
}

/// polars' own thread pool gets one thread, unless `POLARS_MAX_THREADS` says otherwise. The
/// pipeline spreads its work over threads itself (a day's two halves, its files written side by
/// side, the next day read ahead), so a second pool thread only held memory: each thread keeps
/// the allocator pages it last used. Measured with two (this machine's cores) against one:
/// a 10-day backfill's peak 114–115 against 107–109 MiB, the load of 30 days 85 against 76–80,
/// the same wall time in both and in the agent transform the benchmark compares with DuckDB
/// (0.97× with one). Must run before any thread starts: it sets the environment polars reads.
fn one_polars_thread() {
    const VAR: &str = "POLARS_MAX_THREADS";
    if std::env::var_os(VAR).is_none() {
        std::env::set_var(VAR, "1");
    }
}

/// The async runtime. The pipeline's commands run on one worker thread (unless
/// `TOKIO_WORKER_THREADS` says otherwise): their async work is waiting on Gladly, the WFM and
/// storage, paced by rate limits; landing and transforming a day move off the worker
/// (`block_in_place`), and tokio starts a worker in its place meanwhile, so fetching goes on.
/// A second idle worker only held memory (a 10-day backfill 101–102 against 105–107 MiB, with
/// one polars thread; the same wall time). The simulators and the demo, which serve HTTP to
/// the pipeline from the same process, keep a worker per core.
fn runtime(cmd: &Cmd) -> std::io::Result<tokio::runtime::Runtime> {
    let serves = match cmd {
        #[cfg(feature = "simulators")]
        Cmd::Demo { .. } | Cmd::Simulate { .. } => true,
        _ => false,
    };
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all();
    if !serves && std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        b.worker_threads(1);
    }
    b.build()
}

fn main() -> ExitCode {
    // Before any other thread exists (`one_polars_thread` changes the environment).
    no_transparent_huge_pages();
    purge_freed_memory_at_once();
    one_polars_thread();
    let cli = Cli::parse();
    let code = match runtime(&cli.cmd) {
        Ok(rt) => rt.block_on(cli_main(cli)),
        Err(e) => {
            eprintln!("gladly-wfm: cannot start the async runtime: {e}");
            ExitCode::from(1)
        }
    };
    // The runtime is gone, and with it whatever read the spooled files: an object-store root's
    // local temporary folder goes too (`storage::local_temp`).
    gladly_wfm::storage::local_temp::remove_process_dir();
    code
}

async fn cli_main(cli: Cli) -> ExitCode {
    if let Err(e) = block_cache_budget() {
        eprintln!("gladly-wfm: {e}");
        return ExitCode::from(2);
    }
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
        #[cfg(feature = "simulators")]
        Cmd::Demo {
            days,
            agents,
            out,
            follow,
        } => code(
            demo::demo(demo::DemoArgs {
                days,
                agents,
                out,
                follow,
            })
            .await,
        ),
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
            log::debug(format!(
                "threads: {} async worker(s), {} in polars' pool",
                tokio::runtime::Handle::current().metrics().num_workers(),
                polars_core::runtime::THREAD_POOL.current_num_threads()
            ));
            let outcome = pipeline::run(&p, &opts).await;
            println!("{}", outcome.summary);
            code(outcome.exit_code)
        }
        Cmd::Follow { pipeline: file } => match load(&file) {
            Ok(p) => {
                let clock = match cli.now {
                    Some(_) => time::Clock::starting_at(now, cli.speed.unwrap_or(1.0)),
                    None => time::Clock::real(),
                };
                code(gladly_wfm::follow::follow(&p, clock).await)
            }
            Err(c) => c,
        },
        Cmd::Schedule { pipeline: file } => match load(&file) {
            Ok(p) => code(schedule::schedule(&p).await),
            Err(c) => c,
        },
        Cmd::Check {
            pipeline: file,
            offline,
            strict,
        } => match load(&file) {
            Ok(p) => code(check::check(&p, offline, strict).await),
            Err(c) => c,
        },
        Cmd::Report {
            pipeline: file,
            date: d,
            out,
        } => {
            let p = match load(&file) {
                Ok(p) => p,
                Err(c) => return c,
            };
            let date = match date("--date", &d) {
                Ok(d) => d,
                Err(c) => return c,
            };
            code(report::report(&p, &report::ReportArgs { date, out, now }))
        }
        Cmd::Status { pipeline: file } => match load(&file) {
            Ok(p) => code(status::status(&p)),
            Err(c) => c,
        },
        #[cfg(feature = "simulators")]
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
                    pad_reports_mib,
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
                        // `--speed` only means something from a given `--now`.
                        speed: cli.speed.filter(|_| sim_now.is_some()).unwrap_or(0.0),
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
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("gladly-wfm: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
