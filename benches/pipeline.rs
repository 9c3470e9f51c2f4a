//! The benchmark: `cargo bench --bench pipeline`. It drives the release binary and the two
//! simulators, each in its own process (fixed seed, fixed clock), and prints figures; nothing
//! here fails because it is slow.
//!
//! 1. A backfill end to end: BENCH_DAYS × BENCH_AGENTS extracted from the Gladly simulator with
//!    its limits (and the pipeline's) raised by BENCH_LIMIT_FACTOR, transformed, written as
//!    Parquet and pushed to the WFM simulator (its limit raised): wall time per stage, peak RSS,
//!    and the peak RSS of a 1-day run beside it; transform + load against the extraction floor
//!    Gladly's real limits (10 reports a minute, 2 in flight) would impose on the same requests.
//! 2. The transform (`run --stages transform` over the landed raw zone) against the DuckDB
//!    script `benches/duckdb_transform.py` doing the same job: one warm-up each, then
//!    BENCH_PAIRS pairs run alternately (the order flips every pair, so drift falls on both);
//!    medians of wall, CPU and peak RSS, and the median of the per-pair ratios.
//! 3. `demo --days BENCH_DEMO_DAYS --agents BENCH_DEMO_AGENTS` and `demo` (defaults): wall time.
//! 4. The Gladly simulator's serving rate.
//! 5. A backfill to an `s3://` root on a loopback S3 server (moto) against the same backfill to
//!    a local disk: wall time, peak RSS and requests to the object store (BENCH_S3_DAYS, default
//!    30; BENCH_SKIP=s3 leaves it out).
//!
//! Environment (defaults): BENCH_AGENTS=2000 BENCH_DAYS=90 BENCH_LIMIT_FACTOR=30 BENCH_PAIRS=5
//! BENCH_DEMO_DAYS=30 BENCH_DEMO_AGENTS=200; BENCH_SKIP=pairs,demo leaves sections out;
//! BENCH_DIR=DIR keeps the data, and with BENCH_REUSE=1 a later run reuses its landed raw zone
//! (no extraction, no push: for profiling the transform); BENCH_AUDIT=true turns the audit on
//! (off by default: the simulator's summaries are slow to compute).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_gladly-wfm");
const NOW: &str = "2026-11-04T17:00:00Z";
const TZ: &str = "America/New_York";
/// Gladly's real reports budget: this many report requests a minute, two at a time.
const REAL_REPORTS_PER_MINUTE: u64 = 10;
const REAL_REPORTS_IN_FLIGHT: f64 = 2.0;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn skipped(section: &str) -> bool {
    std::env::var("BENCH_SKIP")
        .unwrap_or_default()
        .split(',')
        .any(|s| s.trim() == section)
}

/// What one child process cost: wall time, CPU time (user + system) and peak RSS.
#[derive(Clone, Copy, Debug)]
struct Cost {
    wall: f64,
    cpu: f64,
    rss_mib: f64,
}

/// Runs a command to completion (it must succeed); returns its cost and stdout. The CPU time
/// and peak RSS are the child's own, from `wait4`'s rusage.
fn measure(cmd: &mut Command) -> (Cost, String) {
    measure_logged(cmd, None)
}

/// As `measure`, keeping the command's log (stderr) in `log` for a look afterwards.
fn measure_logged(cmd: &mut Command, log: Option<&Path>) -> (Cost, String) {
    let t0 = Instant::now();
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (ok, cost, stdout, stderr) = wait_rusage(child, t0);
    if let Some(log) = log {
        std::fs::write(log, &stderr).expect("write the log");
    }
    if !ok {
        panic!("command failed: {cmd:?}\n{stdout}\n{stderr}");
    }
    (cost, stdout)
}

fn wait_rusage(mut child: Child, t0: Instant) -> (bool, Cost, String, String) {
    let pid = child.id() as libc::pid_t;
    let mut so = child.stdout.take();
    let mut se = child.stderr.take();
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = se.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let mut stdout = String::new();
    if let Some(o) = so.as_mut() {
        let _ = o.read_to_string(&mut stdout);
    }
    let stderr = err.join().unwrap();
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet reaped (`Child` never waited on it).
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert!(r == pid, "wait4");
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cost = Cost {
        wall: t0.elapsed().as_secs_f64(),
        cpu: secs(ru.ru_utime) + secs(ru.ru_stime),
        rss_mib: ru.ru_maxrss as f64 / 1024.0,
    };
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (ok, cost, stdout, stderr)
}

/// A simulator in its own process; stopping it reports its peak RSS.
struct Sim {
    child: Option<Child>,
    url: String,
    started: Instant,
}

impl Sim {
    fn start(args: &[String]) -> Sim {
        let mut child = Command::new(BIN)
            .arg("simulate")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a simulator");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = lines
            .next()
            .expect("the simulator prints its address")
            .unwrap()
            .trim_start_matches("listening on ")
            .to_string();
        Sim {
            child: Some(child),
            url,
            started: Instant::now(),
        }
    }

    fn stop(&mut self) -> Cost {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        wait_rusage(child, self.started).1
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// A pipeline file for the bench; `wfm` adds a `[wfm]` section pushing to that URL.
fn pipeline_file(dir: &Path, gladly: &str, wfm: Option<&str>, factor: u64) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("bench.toml");
    let mut text = format!(
        r#"name = "bench"
timezone = "{TZ}"
settle_days = 0
[gladly]
base_url = "{gladly}"
user = "sim@example.com"
token = "${{GLADLY_API_TOKEN}}"
requests_per_second = {rps}
reports_per_minute = {rpm}
reports_in_flight = 2
[[tasks]]
name = "Agent Status – Logged In"
pattern = "LOGGED_IN"
[[tasks]]
name = "Agent Status – Logged Out"
pattern = "LOGGED_OUT"
[[tasks]]
name = "Agent Status – Went Away"
pattern = "Break|Lunch|Meeting|Other|WENT_AWAY"
[[tasks]]
name = "Agent Status – Returned from Away"
pattern = "RETURNED_FROM_AWAY"
[[tasks]]
name = "Agent Status – Availability Updated"
pattern = "AvailableFor:.*|Unavailable"
[[tasks]]
name = "Agent Status – Active Reason"
pattern = "ActiveReason:.*"
[[workstreams]]
name = "Customer_Support"
pattern = "Customer_Support|VIP Care"
[output]
root = "{out}"
[audit]
# The simulator computes AgentSummaryV2 from its whole history on each request, far slower than
# Gladly serves it: with it, a 2,000-agent backfill timed the simulator. The audit's own cost is
# benches/stages.sh with AUDIT=false|true (docs/benchmarks.md).
enabled = {audit}
"#,
        audit = std::env::var("BENCH_AUDIT").unwrap_or_else(|_| "false".into()),
        rps = 10 * factor,
        rpm = REAL_REPORTS_PER_MINUTE * factor,
        out = dir.join("output").display()
    );
    if let Some(url) = wfm {
        text.push_str(&format!(
            r#"[wfm]
enabled = true
base_url = "{url}"
client_id = "sim-client"
client_secret = "sim-secret"
integration_id = "bench"
requests_per_30s = {WFM_LIMIT}
"#
        ));
    }
    std::fs::write(&p, text).unwrap();
    p
}

/// The WFM simulator's limit and the pipeline's, raised so the push runs at its own pace.
const WFM_LIMIT: u64 = 1_000_000;

fn run_cmd(pipeline: &Path, stages: &str, from: &str, to: &str) -> Command {
    let mut c = Command::new(BIN);
    c.args([
        "run",
        "--pipeline",
        pipeline.to_str().unwrap(),
        "--now",
        NOW,
    ])
    .args(["--stages", stages, "--from", from, "--to", to, "-q"])
    .env("GLADLY_API_TOKEN", "bench-token");
    c
}

fn newest_manifest(dir: &Path) -> serde_json::Value {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    runs.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    serde_json::from_slice(&std::fs::read(runs.last().unwrap()).unwrap()).unwrap()
}

fn rows(manifest: &serde_json::Value, dataset: &str) -> u64 {
    manifest["rows"][dataset]
        .as_object()
        .map(|d| d.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0)
}

fn stage_s(manifest: &serde_json::Value, stage: &str) -> f64 {
    manifest["stage_ms"][stage].as_f64().unwrap_or(0.0) / 1000.0
}

fn get_json(url: &str) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { reqwest::get(url).await.unwrap().json().await.unwrap() })
}

struct Sizes {
    agents: u64,
    days: u64,
    factor: u64,
}

fn main() {
    let sizes = Sizes {
        agents: env_or("BENCH_AGENTS", 2000),
        days: env_or("BENCH_DAYS", 90),
        factor: env_or("BENCH_LIMIT_FACTOR", 30),
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::var("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir).unwrap();
    println!(
        "gladly-wfm benchmark: {} agents, {} days, Gladly's limits ×{}, binary {BIN}",
        sizes.agents, sizes.days, sizes.factor
    );
    let today: chrono::NaiveDate = "2026-11-04".parse().unwrap();
    let to = today - chrono::Duration::days(1);
    let from = to - chrono::Duration::days(sizes.days as i64 - 1);
    backfill(&dir, &sizes, from, to);
    if skipped("pairs") {
        println!("2. transform against DuckDB: skipped (BENCH_SKIP)");
    } else {
        transform_pairs(&dir, &sizes, from, to);
    }
    if skipped("demo") {
        println!("3. demo: skipped (BENCH_SKIP)");
    } else {
        demo(&dir);
    }
    if skipped("s3") {
        println!("5. object store: skipped (BENCH_SKIP)");
    } else {
        object_store_backfill(&dir, &sizes, env_or("BENCH_S3_DAYS", 30), to);
    }
}

/// The Gladly simulator for a backfill of `days`, its limits raised by the size's factor.
fn gladly_sim(s: &Sizes, days: u64) -> Sim {
    let limit = (10 * s.factor).to_string();
    Sim::start(&[
        "gladly".into(),
        "--addr=127.0.0.1:0".into(),
        "--seed=42".into(),
        format!("--now={NOW}"),
        format!("--agents={}", s.agents),
        format!("--days={}", days + 2),
        format!("--timezone={TZ}"),
        "--token=bench-token".into(),
        format!("--rps={limit}"),
        format!("--reports-per-minute={limit}"),
        "--reports-in-flight=2".into(),
    ])
}

/// Section 5: the same backfill to a local disk and to an `s3://` root on moto's S3 server
/// (loopback, in memory: its wall time compares on this machine, it is not an S3 figure; the
/// request count is what a real bucket would bill).
fn object_store_backfill(dir: &Path, s: &Sizes, days: u64, to: chrono::NaiveDate) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let Ok(mut moto) = Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        println!("5. object store: skipped (python3 -m pip install 'moto[server]>=5,<6')");
        return;
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let bucket = || {
        let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        use std::io::Write;
        let _ = write!(
            c,
            "PUT /bench HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
        );
        let mut head = [0u8; 12];
        c.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && head[9] == b'2'
    };
    let t0 = Instant::now();
    while !bucket() {
        if t0.elapsed().as_secs() > 120 || moto.try_wait().ok().flatten().is_some() {
            println!("5. object store: skipped (moto did not start)");
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let mut gladly = gladly_sim(s, days);
    let from = to - chrono::Duration::days(days as i64 - 1);
    let mut figures = Vec::new();
    for target in ["local", "s3"] {
        let d = dir.join(format!("backfill-{target}"));
        let _ = std::fs::remove_dir_all(&d);
        let p = pipeline_file(&d, &gladly.url, None, s.factor);
        if target == "s3" {
            let text = std::fs::read_to_string(&p).unwrap().replace(
                &format!("root = \"{}\"", d.join("output").display()),
                "root = \"s3://bench/orgs/bench\"",
            );
            std::fs::write(&p, text).unwrap();
        }
        let mut c = Command::new(BIN);
        c.args(["run", "--pipeline"])
            .arg(&p)
            .args([
                "--now",
                NOW,
                "--from",
                &from.to_string(),
                "--to",
                &to.to_string(),
            ])
            .args(["--log-format", "json"])
            .env("GLADLY_API_TOKEN", "bench-token")
            .env("AWS_ACCESS_KEY_ID", "bench-key-id")
            .env("AWS_SECRET_ACCESS_KEY", "bench-secret")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .current_dir(&d);
        let (cost, out) = measure(&mut c);
        let _ = out;
        let requests = (target == "s3").then(|| {
            // The run's manifest, read back through the pipeline's own storage layer, counts
            // the requests that went to the object store.
            for (k, v) in [
                ("AWS_ACCESS_KEY_ID", "bench-key-id"),
                ("AWS_SECRET_ACCESS_KEY", "bench-secret"),
                ("AWS_REGION", "us-east-1"),
                ("AWS_ENDPOINT_URL", endpoint.as_str()),
                ("AWS_ALLOW_HTTP", "true"),
            ] {
                std::env::set_var(k, v);
            }
            let root = gladly_wfm::storage::Root::open(&gladly_wfm::storage::RootSpec::S3 {
                bucket: "bench".into(),
                prefix: "orgs/bench".into(),
            })
            .ok()?;
            let runs = root.dir("_runs/bench");
            let name = runs.list().ok()?.pop()?;
            let m: serde_json::Value = serde_json::from_slice(&runs.read(&name).ok()??).ok()?;
            m["requests"]["object_store"].as_u64()
        });
        figures.push((target, cost, requests.flatten()));
    }
    gladly.stop();
    let _ = moto.kill();
    let _ = moto.wait();
    let (l, s3) = (&figures[0].1, &figures[1].1);
    println!(
        "5. {days}-day backfill, local disk vs s3:// (moto on loopback): {:.1} s vs {:.1} s ({:.2}×), CPU {:.1} vs {:.1} s, peak RSS {:.0} vs {:.0} MiB, {} requests to the object store",
        l.wall,
        s3.wall,
        s3.wall / l.wall,
        l.cpu,
        s3.cpu,
        l.rss_mib,
        s3.rss_mib,
        figures[1].2.map(|n| n.to_string()).unwrap_or_else(|| "?".into())
    );
}

/// Section 1 (and 4): the backfill end to end, a 1-day run beside it, the simulator's rate.
fn backfill(dir: &Path, s: &Sizes, from: chrono::NaiveDate, to: chrono::NaiveDate) {
    let reuse =
        std::env::var("BENCH_REUSE").is_ok() && dir.join("output/raw/agent_events").exists();
    if reuse {
        println!(
            "1. backfill: skipped (BENCH_REUSE: the raw zone in {} is reused)",
            dir.display()
        );
        return;
    }
    let _ = std::fs::remove_dir_all(dir.join("output"));
    let mut gladly = gladly_sim(s, s.days);
    let mut wfm = Sim::start(&[
        "wfm".into(),
        "--addr=127.0.0.1:0".into(),
        format!("--requests-per-30s={WFM_LIMIT}"),
    ]);
    let p = pipeline_file(dir, &gladly.url, Some(&wfm.url), s.factor);
    let (from_s, to_s) = (from.to_string(), to.to_string());
    // The run's log stays beside the data: its timestamps place a peak in the memory samples.
    let (all, _) = measure_logged(
        run_cmd(&p, "extract,transform,load", &from_s, &to_s).args(["-v", "--log-format", "json"]),
        Some(&dir.join("backfill.log")),
    );
    let m = newest_manifest(&dir.join("output/_runs/bench"));
    let log = get_json(&format!("{}/_sim/requests", gladly.url));
    let log = log.as_array().unwrap();
    let is_report = |r: &&serde_json::Value| {
        r["path"]
            .as_str()
            .unwrap_or("")
            .starts_with("/api/v1/reports")
    };
    let reports = log
        .iter()
        .filter(is_report)
        .filter(|r| r["status"] == 200)
        .count() as u64;
    let throttled = log.iter().filter(|r| r["status"] == 429).count();
    let service: Vec<f64> = log
        .iter()
        .filter(is_report)
        .filter(|r| r["status"] == 200)
        .filter_map(|r| r["ms"].as_f64())
        .collect();
    let mean_ms = service.iter().sum::<f64>() / service.len().max(1) as f64;
    // N report requests at R a minute (sliding window) need ceil(N/R) - 1 whole minutes before
    // the last window opens; the requests of that window still take the server's time, two at
    // a time.
    let floor = |per_minute: u64| {
        let windows = reports.div_ceil(per_minute).saturating_sub(1);
        let tail = reports - windows * per_minute;
        windows as f64 * 60.0 + tail as f64 / REAL_REPORTS_IN_FLIGHT * mean_ms / 1000.0
    };
    let (transform, load, waited, land) = (
        stage_s(&m, "transform"),
        stage_s(&m, "load"),
        stage_s(&m, "extract_wait"),
        // Decoding and writing each fetched day, on the run's thread before its transform.
        stage_s(&m, "land"),
    );
    // Extraction runs ahead of the transform, which waits for each day: everything has landed
    // by the time the last day's transform starts.
    let extract = all.wall - load - transform / s.days as f64;
    let events = rows(&m, "agent_status_events");
    let wfm_totals: u64 = m["wfm"]
        .as_object()
        .map(|k| k.values().filter_map(|t| t["batches_sent"].as_u64()).sum())
        .unwrap_or(0);
    println!(
        "1. backfill end to end ({} days × {} agents: {events} agent events, {} segments, {} conversations, {wfm_totals} WFM batches): {:.1} s wall, {:.1} s CPU, peak RSS {:.0} MiB",
        s.days,
        s.agents,
        rows(&m, "agent_status_segments"),
        rows(&m, "conversations"),
        all.wall,
        all.cpu,
        all.rss_mib
    );
    println!(
        "   stages: extraction ≈ {extract:.1} s ({reports} report requests at {}/min, 429s {throttled}; floor at these limits {:.1} s; of it landing {land:.1} s on the run's thread); transform {transform:.1} s (beside extraction; waited {waited:.1} s for it); load {load:.1} s ({:.0} batches/s)",
        REAL_REPORTS_PER_MINUTE * s.factor,
        floor(REAL_REPORTS_PER_MINUTE * s.factor),
        wfm_totals as f64 / load.max(1e-9),
    );
    let real = floor(REAL_REPORTS_PER_MINUTE);
    println!(
        "   transform + load {:.1} s = {:.2} % of the extraction floor at Gladly's real limits ({REAL_REPORTS_PER_MINUTE}/min, 2 in flight, {mean_ms:.0} ms per report): {:.0} s (target ≤ 5 %)",
        transform + load,
        100.0 * (transform + load) / real,
        real
    );

    // The same pipeline for the last day alone, from a fresh output root: the median of seven
    // runs. Single runs of this one fall in two groups about 8 MiB apart (77–80 and 84–90 MiB
    // on this machine: how the day's three transform threads happen to overlap), so a median of
    // three moved the ratio by 0.2 between two benchmarks of the same code; a run takes 1–2 s.
    let one = dir.join("one-day");
    let p1 = pipeline_file(&one, &gladly.url, Some(&wfm.url), s.factor);
    let mut fresh: Vec<Cost> = (0..7)
        .map(|_| {
            let _ = std::fs::remove_dir_all(one.join("output"));
            measure(&mut run_cmd(&p1, "extract,transform,load", &to_s, &to_s)).0
        })
        .collect();
    fresh.sort_by(|a, b| a.rss_mib.total_cmp(&b.rss_mib));
    let day = &fresh[fresh.len() / 2];
    let each: Vec<String> = fresh.iter().map(|c| format!("{:.0}", c.rss_mib)).collect();
    println!(
        "   peak RSS: 1 day {:.0} MiB (median of {}: {} MiB; {:.1} s), {} days {:.0} MiB: ratio {:.2} (target ≤ 1.3)",
        day.rss_mib,
        fresh.len(),
        each.join(" "),
        day.wall,
        s.days,
        all.rss_mib,
        all.rss_mib / day.rss_mib
    );
    // The last day again in the backfill's root: a nightly run's shape, its look-back days on
    // disk (the fresh root above has none, so it starts with empty carried states).
    let (nightly, _) = measure(&mut run_cmd(&p, "extract,transform,load", &to_s, &to_s));
    println!(
        "   peak RSS: the last day re-run in the backfill's root (look-back days read) {:.0} MiB ({:.1} s): {} days / this = {:.2}",
        nightly.rss_mib,
        nightly.wall,
        s.days,
        all.rss_mib / nightly.rss_mib
    );
    let store = wfm.stop();
    println!(
        "   WFM simulator: peak RSS {:.0} MiB, {:.1} s CPU",
        store.rss_mib, store.cpu
    );
    serving_rate(&gladly.url);
    gladly.stop();
}

/// Section 4: the last 20 hours of every entity as JSON Lines, once cached.
fn serving_rate(url: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    let now = gladly_wfm::time::parse_ts(NOW).unwrap();
    let q = [
        ("startAt", gladly_wfm::time::fmt_ts(now - 20 * 3_600_000)),
        ("entities", "AGENT_STATUS".into()),
        ("entities", "AGENT_AVAILABILITY".into()),
        ("entities", "CONVERSATION".into()),
        ("entities", "CONTACT".into()),
    ];
    let fetch = || {
        rt.block_on(async {
            let t0 = Instant::now();
            let body = client
                .get(format!("{url}/api/v1/events"))
                .query(&q)
                .basic_auth("sim@example.com", Some("bench-token"))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            (body.iter().filter(|b| **b == b'\n').count(), t0.elapsed())
        })
    };
    fetch(); // generate and cache the days
    let (n, t) = fetch();
    println!(
        "4. Gladly simulator serving rate: {:.0} events/s ({n} JSON Lines in {:.3} s)",
        n as f64 / t.as_secs_f64(),
        t.as_secs_f64()
    );
}

/// Section 2: our transform and the DuckDB script, paired, on the agent events alone.
fn transform_pairs(dir: &Path, s: &Sizes, from: chrono::NaiveDate, to: chrono::NaiveDate) {
    let ok = Command::new("python3")
        .args(["-c", "import duckdb"])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        println!("2. transform against DuckDB: skipped (`pip install duckdb` to compare)");
        return;
    }
    // The DuckDB script does the agent-event half of the job; for a like-for-like figure our
    // transform runs on the same raw zone with the conversation and work-session streams empty.
    let agents_only = dir.join("agents-only");
    let _ = std::fs::remove_dir_all(&agents_only);
    let pa = pipeline_file(&agents_only, "http://127.0.0.1:9", None, s.factor);
    let raw_root = agents_only.join("output/raw");
    std::fs::create_dir_all(&raw_root).unwrap();
    for d in ["agent_events", "agents", "inboxes"] {
        std::os::unix::fs::symlink(dir.join("output/raw").join(d), raw_root.join(d)).unwrap();
    }
    let st = gladly_wfm::storage::Storage::new(
        gladly_wfm::storage::Root::local(agents_only.join("output")),
        gladly_wfm::frames::Compression::Zstd,
    );
    for day in gladly_wfm::time::days_between(from, to) {
        let mut c = gladly_wfm::raw::conversation_events_frame(&[]).unwrap();
        st.write_partition(gladly_wfm::raw::CONVERSATION_EVENTS, day, &mut c)
            .unwrap();
        let mut w = gladly_wfm::raw::work_sessions_builder(&[])
            .finish()
            .unwrap();
        st.write_partition(gladly_wfm::raw::WORK_SESSIONS, day, &mut w)
            .unwrap();
    }
    let (from_s, to_s) = (from.to_string(), to.to_string());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/duckdb_transform.py");
    let duck_out = dir.join("duckdb");
    let ours = || measure(&mut run_cmd(&pa, "transform", &from_s, &to_s)).0;
    let duck = || {
        let _ = std::fs::remove_dir_all(&duck_out);
        std::fs::create_dir_all(&duck_out).unwrap();
        let mut c = Command::new("python3");
        c.arg(&script)
            .arg(dir.join("output"))
            .arg(&duck_out)
            .arg(TZ);
        let (cost, out) = measure(&mut c);
        let n: u64 = out
            .split_whitespace()
            .next()
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        (cost, n)
    };
    // Warm-up: the page cache holds the raw zone, DuckDB's and our binaries are loaded once.
    ours();
    let (_, events) = duck();
    let pairs = env_or("BENCH_PAIRS", 5).max(1);
    let mut results: Vec<(Cost, Cost)> = Vec::new();
    for i in 0..pairs {
        let pair = if i % 2 == 0 {
            let o = ours();
            (o, duck().0)
        } else {
            let d = duck().0;
            (ours(), d)
        };
        results.push(pair);
    }
    let med = |f: &dyn Fn(&(Cost, Cost)) -> f64| median(results.iter().map(f).collect());
    println!(
        "2. transform, agent events only ({events} events, {} days): {pairs} paired runs after a warm-up, medians",
        s.days
    );
    println!(
        "   ours:   wall {:.2} s, CPU {:.2} s, peak RSS {:.0} MiB ({:.0} events/s)",
        med(&|p| p.0.wall),
        med(&|p| p.0.cpu),
        med(&|p| p.0.rss_mib),
        events as f64 / med(&|p| p.0.wall)
    );
    println!(
        "   DuckDB: wall {:.2} s, CPU {:.2} s, peak RSS {:.0} MiB",
        med(&|p| p.1.wall),
        med(&|p| p.1.cpu),
        med(&|p| p.1.rss_mib)
    );
    println!(
        "   median of the pair ratios: DuckDB wall / ours {:.2} (target ≥ 3), CPU {:.2}; our peak RSS / DuckDB's {:.2} (target ≤ 0.3)",
        med(&|p| p.1.wall / p.0.wall),
        med(&|p| p.1.cpu / p.0.cpu),
        med(&|p| p.0.rss_mib / p.1.rss_mib)
    );
}

/// Section 3: the demo from the built binary, at size and with its defaults.
fn demo(dir: &Path) {
    let days = env_or("BENCH_DEMO_DAYS", 30).to_string();
    let agents = env_or("BENCH_DEMO_AGENTS", 200).to_string();
    for (label, args) in [
        (
            format!("demo --days {days} --agents {agents}"),
            vec!["--days", days.as_str(), "--agents", agents.as_str()],
        ),
        ("demo (50 agents, 7 days + today)".to_string(), vec![]),
    ] {
        let d = dir.join("demo");
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let mut c = Command::new(BIN);
        c.arg("demo")
            .args(&args)
            .arg("--out")
            .arg(d.join("output"))
            .current_dir(&d);
        let (cost, _) = measure(&mut c);
        println!(
            "3. {label}: {:.1} s wall, {:.1} s CPU, peak RSS {:.0} MiB (targets: 60 s at 30 × 200, 10 s by default)",
            cost.wall, cost.cpu, cost.rss_mib
        );
    }
}
