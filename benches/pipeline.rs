//! The benchmark: `cargo bench --bench pipeline` (environment: BENCH_AGENTS=2000, BENCH_DAYS=30,
//! BENCH_LIMIT_FACTOR=6). It drives the Gladly simulator (a separate process, fixed seed) and
//! the release binary, and prints:
//! 1. extraction efficiency: backfill wall time ÷ the reports rate-limit floor;
//! 2. transform + write throughput (agent events/s), against a DuckDB SQL script doing the same;
//! 3. peak RSS of the transform for a 1-day and an N-day range;
//! 4. the simulator's serving rate; and the demo's wall time;
//! 6. a backfill to an `s3://` root on a loopback S3 server (moto) against the same backfill to
//!    a local disk: wall time and requests to the object store (`BENCH_S3_ONLY=1` runs only this,
//!    `BENCH_S3=0` skips it).
//!
//! Figures, not assertions: nothing here fails because it is slow.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_gladly-wfm");
const NOW: &str = "2026-11-04T17:00:00Z";
const TZ: &str = "America/New_York";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs a command to completion; returns (wall time, peak RSS in MiB, stdout).
fn measure(cmd: &mut Command) -> (Duration, f64, String) {
    let t0 = Instant::now();
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id() as libc::pid_t;
    let out = child.wait_with_output_rusage(pid);
    (t0.elapsed(), out.1, out.0)
}

trait WaitRusage {
    fn wait_with_output_rusage(self, pid: libc::pid_t) -> (String, f64);
}

impl WaitRusage for std::process::Child {
    fn wait_with_output_rusage(mut self, pid: libc::pid_t) -> (String, f64) {
        use std::io::Read;
        let mut stdout = String::new();
        let mut stderr = String::new();
        let mut so = self.stdout.take().unwrap();
        let mut se = self.stderr.take().unwrap();
        let t = std::thread::spawn(move || {
            let _ = se.read_to_string(&mut stderr);
            stderr
        });
        let _ = so.read_to_string(&mut stdout);
        let stderr = t.join().unwrap();
        let mut status = 0;
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        assert!(r == pid, "wait4");
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            panic!("command failed ({status}):\n{stdout}\n{stderr}");
        }
        (stdout, ru.ru_maxrss as f64 / 1024.0)
    }
}

fn pipeline_file(dir: &Path, url: &str, factor: u64) -> PathBuf {
    let p = dir.join("bench.toml");
    if !dir.exists() {
        std::fs::create_dir_all(dir).unwrap();
    }
    let text = format!(
        r#"name = "bench"
timezone = "{TZ}"
settle_days = 0
[gladly]
base_url = "{url}"
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
"#,
        rps = 10 * factor,
        rpm = 10 * factor,
        out = dir.join("output").display()
    );
    std::fs::write(&p, text).unwrap();
    p
}

fn main() {
    let agents = env_or("BENCH_AGENTS", 2000);
    let days = env_or("BENCH_DAYS", 30);
    let factor = env_or("BENCH_LIMIT_FACTOR", 6);
    let keep = std::env::var("BENCH_DIR").ok();
    let tmp = tempfile::tempdir().unwrap();
    let dir = keep
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir).unwrap();
    println!("gladly-wfm benchmark: {agents} agents, {days} days, Gladly's limits ×{factor}, binary {BIN}");

    // The simulator in its own process, as a real Gladly would be.
    let mut sim = Command::new(BIN)
        .args([
            "simulate",
            "gladly",
            "--addr",
            "127.0.0.1:0",
            "--seed",
            "42",
            "--now",
            NOW,
        ])
        .args([
            "--agents",
            &agents.to_string(),
            "--days",
            &(days + 2).to_string(),
            "--timezone",
            TZ,
        ])
        .args([
            "--token",
            "bench-token",
            "--rps",
            &(10 * factor).to_string(),
        ])
        .args([
            "--reports-per-minute",
            &(10 * factor).to_string(),
            "--reports-in-flight",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(sim.stdout.take().unwrap()).lines();
    let url = lines
        .next()
        .unwrap()
        .unwrap()
        .trim_start_matches("listening on ")
        .to_string();

    if std::env::var("BENCH_S3_ONLY").is_ok_and(|v| v == "1") {
        object_store_backfill(&dir, &url, factor, days);
        let _ = sim.kill();
        let _ = sim.wait();
        return;
    }

    // 4. The simulator's serving rate: the last 20 hours of every entity as JSON Lines.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let serve = |window_h: i64| {
        let now = gladly_wfm::time::parse_ts(NOW).unwrap();
        let q = [
            (
                "startAt",
                gladly_wfm::time::fmt_ts(now - window_h * 3_600_000),
            ),
            ("entities", "AGENT_STATUS".into()),
            ("entities", "AGENT_AVAILABILITY".into()),
            ("entities", "CONVERSATION".into()),
            ("entities", "CONTACT".into()),
        ];
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
    serve(20); // generate and cache the days
    let (n, t) = serve(20);
    println!(
        "4. simulator serving rate: {:.0} events/s ({n} JSON Lines in {:.3} s)",
        n as f64 / t.as_secs_f64(),
        t.as_secs_f64()
    );

    // 1. Extraction: a backfill of complete days (all from reports), against the floor the
    // reports budget sets: N report requests at R a minute in a sliding window need
    // (ceil(N/R) - 1) minutes before the last window opens (service time not counted).
    let p = pipeline_file(&dir, &url, factor);
    let today: chrono::NaiveDate = "2026-11-04".parse().unwrap();
    let to = today - chrono::Duration::days(1);
    let from = to - chrono::Duration::days(days as i64 - 1);
    let (from_s, to_s) = (from.to_string(), to.to_string());
    let run_with = |pipeline: &Path, stages: &str, from: &str, to: &str| {
        let mut c = Command::new(BIN);
        c.args([
            "run",
            "--pipeline",
            pipeline.to_str().unwrap(),
            "--now",
            NOW,
            "--stages",
            stages,
            "--from",
            from,
            "--to",
            to,
            "-q",
        ])
        .env("GLADLY_API_TOKEN", "bench-token");
        c
    };
    let run = |stages: &str, from: &str, to: &str| run_with(&p, stages, from, to);
    // BENCH_REUSE=1 with BENCH_DIR keeps an earlier run's raw zone (for profiling the transform).
    let reuse =
        std::env::var("BENCH_REUSE").is_ok() && dir.join("output/raw/agent_events").exists();
    if reuse {
        println!(
            "1. extraction: skipped (BENCH_REUSE: the raw zone in {} is reused)",
            dir.display()
        );
    }
    let (wall, _, _) = if reuse {
        (Duration::ZERO, 0.0, String::new())
    } else {
        measure(&mut run("extract", &from_s, &to_s))
    };
    let log: Vec<serde_json::Value> = rt.block_on(async {
        client
            .get(format!("{url}/_sim/requests"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let reports = log
        .iter()
        .filter(|r| {
            r["path"]
                .as_str()
                .unwrap_or("")
                .starts_with("/api/v1/reports")
        })
        .count() as u64;
    let throttled = log.iter().filter(|r| r["status"] == 429).count();
    let rpm = 10 * factor;
    let windows = reports.div_ceil(rpm).saturating_sub(1);
    let floor = Duration::from_secs(windows * 60);
    // The requests after the last window opens still take the server's time, two at a time.
    let service: Vec<f64> = log
        .iter()
        .filter(|r| {
            r["path"]
                .as_str()
                .unwrap_or("")
                .starts_with("/api/v1/reports")
                && r["status"] == 200
        })
        .filter_map(|r| r["ms"].as_f64())
        .collect();
    let mean_ms = service.iter().sum::<f64>() / service.len().max(1) as f64;
    let tail = reports - windows * rpm;
    let floor_inflight = floor.as_secs_f64() + tail as f64 / 2.0 * mean_ms / 1000.0;
    if !reuse {
        println!(
        "1. extraction: {days} days, {reports} report requests at {rpm}/min, 2 in flight: {:.1} s; rate floor {:.0} s (ratio {:.3}); with the in-flight cap and the server's {:.0} ms per report, floor {:.1} s (ratio {:.3}); 429s from the simulator: {throttled}",
        wall.as_secs_f64(),
        floor.as_secs_f64(),
        wall.as_secs_f64() / floor.as_secs_f64().max(1.0),
        mean_ms,
        floor_inflight,
        wall.as_secs_f64() / floor_inflight.max(1.0),
    );
    }
    let _ = sim.kill();
    let _ = sim.wait();

    // 2 & 3. Transform + write from the raw zone, the whole range and one day.
    let (wall, rss_all, _) = measure(&mut run("transform", &from_s, &to_s));
    let manifest = newest_manifest(&dir.join("output/_runs/bench"));
    let events: u64 = manifest["rows"]["agent_status_events"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|v| v.as_u64())
        .sum();
    let ours = events as f64 / wall.as_secs_f64();
    println!("2. transform + write: {events} agent events in {:.2} s = {ours:.0} events/s (all datasets, incl. conversations and work sessions)", wall.as_secs_f64());
    let (_, rss_one, _) = measure(&mut run("transform", &to_s, &to_s));
    println!(
        "3. peak RSS: 1 day {rss_one:.0} MiB, {days} days {rss_all:.0} MiB, ratio {:.2}",
        rss_all / rss_one
    );

    // The DuckDB script does the agent-event half of the job; for a like-for-like figure our
    // transform runs on the same raw zone with the conversation and work-session streams empty.
    let agents_only = dir.join("agents-only");
    let _ = std::fs::remove_dir_all(&agents_only);
    let pa = pipeline_file(&agents_only, "http://127.0.0.1:9", factor);
    let raw_root = agents_only.join("output/raw");
    std::fs::create_dir_all(&raw_root).unwrap();
    for d in ["agent_events", "agents", "inboxes"] {
        std::os::unix::fs::symlink(dir.join("output/raw").join(d), raw_root.join(d)).unwrap();
    }
    let st = gladly_wfm::storage::Storage::new(
        gladly_wfm::storage::Root::local(agents_only.join("output")),
        gladly_wfm::config::Compression::Zstd,
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
    let (wall, rss_agents, _) = measure(&mut run_with(&pa, "transform", &from_s, &to_s));
    let ours_agents = events as f64 / wall.as_secs_f64();
    println!("   agent events only (same raw zone, other streams empty): {:.2} s = {ours_agents:.0} events/s, peak RSS {rss_agents:.0} MiB", wall.as_secs_f64());

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/duckdb_transform.py");
    let duck_out = dir.join("duckdb");
    let _ = std::fs::remove_dir_all(&duck_out);
    std::fs::create_dir_all(&duck_out).unwrap();
    let ok = Command::new("python3")
        .args(["-c", "import duckdb"])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        let mut c = Command::new("python3");
        c.arg(&script)
            .arg(dir.join("output"))
            .arg(&duck_out)
            .arg(TZ);
        let (wall, rss, out) = measure(&mut c);
        let n: f64 = out
            .split_whitespace()
            .next()
            .and_then(|x| x.parse().ok())
            .unwrap_or(0.0);
        let duck = n / wall.as_secs_f64();
        println!("   DuckDB script (agent events): {n:.0} events in {:.2} s = {duck:.0} events/s, peak RSS {rss:.0} MiB", wall.as_secs_f64());
        println!("   ratio, like for like: ours / DuckDB throughput {:.2}; our peak RSS / DuckDB's {:.2}", ours_agents / duck, rss_agents / rss);
    } else {
        println!("   DuckDB script skipped: `pip install duckdb` to compare");
    }

    // The demo from the built binary.
    let demo_dir = dir.join("demo");
    std::fs::create_dir_all(&demo_dir).unwrap();
    let mut c = Command::new(BIN);
    c.args(["demo", "--out"])
        .arg(demo_dir.join("output"))
        .current_dir(&demo_dir);
    let (wall, _, _) = measure(&mut c);
    println!(
        "5. demo (50 agents, 7 days + today, push on): {:.1} s",
        wall.as_secs_f64()
    );
    if std::env::var("BENCH_S3").map_or(true, |v| v != "0") {
        object_store_backfill(&dir, &url, factor, days);
    }
}

/// Figure 6: the same backfill to a local disk and to an `s3://` root on moto's S3 server
/// (loopback, in memory: its wall time is a comparison on this machine, not an S3 figure; the
/// request count is what a real bucket would bill).
fn object_store_backfill(dir: &Path, url: &str, factor: u64, days: u64) {
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
        println!("6. object store: skipped (python3 -m pip install 'moto[server]>=5,<6')");
        return;
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let create_bucket = || {
        rt.block_on(client.put(format!("{endpoint}/bench")).send())
            .is_ok_and(|r| r.status().is_success())
    };
    let t0 = Instant::now();
    while !create_bucket() {
        if t0.elapsed() > Duration::from_secs(120) || moto.try_wait().ok().flatten().is_some() {
            println!("6. object store: skipped (moto did not start)");
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let to: chrono::NaiveDate = "2026-11-03".parse().unwrap();
    let from = to - chrono::Duration::days(days as i64 - 1);
    let mut figures = Vec::new();
    for target in ["local", "s3"] {
        let d = dir.join(format!("backfill-{target}"));
        let _ = std::fs::remove_dir_all(&d);
        let p = pipeline_file(&d, url, factor);
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
            .env("AWS_ACCESS_KEY_ID", "bench")
            .env("AWS_SECRET_ACCESS_KEY", "bench-secret")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .current_dir(&d);
        let (wall, rss, out) = measure(&mut c);
        let _ = out;
        let requests = if target == "s3" {
            // Read the manifest back through the pipeline's own storage layer.
            for (k, v) in [
                ("AWS_ACCESS_KEY_ID", "bench"),
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
            .unwrap();
            let runs = root.dir("_runs/bench");
            let name = runs.list().unwrap().pop().unwrap();
            let m: serde_json::Value =
                serde_json::from_slice(&runs.read(&name).unwrap().unwrap()).unwrap();
            m["requests"]["object_store"].as_u64()
        } else {
            None
        };
        figures.push((target, wall, rss, requests));
    }
    let _ = moto.kill();
    let _ = moto.wait();
    let (l, s) = (&figures[0], &figures[1]);
    println!(
        "6. {days}-day backfill, local disk vs s3:// (moto on loopback): {:.1} s vs {:.1} s ({:.2}×), peak RSS {:.0} vs {:.0} MiB, {} requests to the object store",
        l.1.as_secs_f64(),
        s.1.as_secs_f64(),
        s.1.as_secs_f64() / l.1.as_secs_f64(),
        l.2,
        s.2,
        s.3.map(|n| n.to_string()).unwrap_or_else(|| "?".into())
    );
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
