//! The follow benchmark: `cargo bench --bench follow` (environment: BENCH_FOLLOW_AGENTS=2000,
//! BENCH_FOLLOW_MINUTES=60 simulated minutes, BENCH_FOLLOW_SPEED=4 — the simulated clock runs
//! that many times as fast as real time; BENCH_FOLLOW_POLL=30 poll seconds). It starts the
//! Gladly and WFM simulators as their own processes on a live clock from 09:00 on a weekday,
//! runs the release binary's `follow` against them for the simulated span, and prints:
//! - latency from a status change (a piece's start, or its end) to the WFM's acknowledgement
//!   of the record it changes: p50 / p95 / max, against the floor of poll interval +
//!   visibility lag (simulated seconds);
//! - wall and CPU time per poll (median, p95, max; the first poll, a catch-up from the start of
//!   the day, apart), each poll's CPU as the follower logs it;
//! - Gladly requests per simulated minute used by follow;
//! - CPU per second of service and peak RSS.
//!
//! It runs twice, with Gladly's webhook (`[webhook]`, the simulator delivering each event over
//! HTTP at its time) and without (the poll alone), each on fresh simulators; BENCH_FOLLOW_MODES
//! (`poll,webhook`) picks them. On the simulator's live clock (BENCH_FOLLOW_SPEED=1) the
//! latencies are real seconds.
//!
//! Figures, not assertions: nothing here fails because it is slow.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_gladly-wfm");
const T0: &str = "2026-11-04T14:00:00Z";

fn env_or(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn listening(child: &mut std::process::Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim().trim_start_matches("listening on ").to_string()
}

fn main() {
    let agents = env_or("BENCH_FOLLOW_AGENTS", 2000.0) as u64;
    let minutes = env_or("BENCH_FOLLOW_MINUTES", 60.0);
    let speed = env_or("BENCH_FOLLOW_SPEED", 4.0);
    let poll = env_or("BENCH_FOLLOW_POLL", 30.0) as u64;
    let modes = std::env::var("BENCH_FOLLOW_MODES").unwrap_or_else(|_| "poll,webhook".into());
    println!(
        "follow: {agents} agents, {minutes} simulated minutes at {speed}× real time, poll {poll} s"
    );
    for mode in modes.split(',') {
        let webhook = match mode.trim() {
            "poll" => false,
            "webhook" => true,
            other => panic!("BENCH_FOLLOW_MODES: `{other}` is not poll or webhook"),
        };
        println!(
            "{}",
            if webhook {
                "with the webhook:"
            } else {
                "the poll alone:"
            }
        );
        run(agents, minutes, speed, poll, webhook);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(agents: u64, minutes: f64, speed: f64, poll: u64, webhook: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut gladly = Command::new(BIN)
        .args([
            "simulate",
            "gladly",
            "--addr",
            "127.0.0.1:0",
            "--seed",
            "42",
        ])
        .args(["--agents", &agents.to_string(), "--days", "3", "--now", T0])
        .args(["--speed", &speed.to_string(), "--rps", "100"])
        .args(["--reports-per-minute", "60"])
        .args(["--webhook-allow-http"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let gurl = listening(&mut gladly);
    let mut wfm = Command::new(BIN)
        .args(["simulate", "wfm", "--addr", "127.0.0.1:0"])
        .args(["--requests-per-30s", "100000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let wurl = listening(&mut wfm);
    let p = dir.path().join("follow.toml");
    std::fs::write(
        &p,
        format!(
            r#"name = "bench"
timezone = "America/New_York"
[gladly]
base_url = "{gurl}"
user = "sim@example.com"
token = "sim-token"
requests_per_second = 10
reports_per_minute = 10
reports_in_flight = 2
[[tasks]]
name = "Logged In"
pattern = "LOGGED_IN"
[[tasks]]
name = "Away"
pattern = "Break|Lunch|Meeting|Other|WENT_AWAY"
[[tasks]]
name = "Availability"
pattern = "AvailableFor:.*|Unavailable"
[[workstreams]]
name = "Support"
pattern = ".*"
[output]
root = "{root}"
[follow]
poll_seconds = {poll}
[wfm]
base_url = "{wurl}"
client_id = "sim-client"
client_secret = "sim-secret"
integration_id = "bench"
requests_per_30s = 100000
{hook}"#,
            root = dir.path().join("out").display(),
            hook = if webhook {
                let port = free_port();
                format!("[webhook]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}/hook\"\nuser = \"gladly\"\npassword = \"bench-hook-pw\"\n")
            } else {
                String::new()
            },
        ),
    )
    .unwrap();
    let before = gladly_requests(&gurl);
    let t = std::time::Instant::now();
    // Reaped below with wait4, for its resource usage.
    #[allow(clippy::zombie_processes)]
    let mut follow = Command::new(BIN)
        .args(["follow", "--pipeline"])
        .arg(&p)
        .args(["--now", T0, "--speed", &speed.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = follow.id() as libc::pid_t;
    let stderr = follow.stderr.take().unwrap();
    let real_limit = std::time::Duration::from_secs_f64(minutes * 60.0 / speed);
    let reader = std::thread::spawn(move || {
        // (wall ms, CPU ms) of each poll, from its log line: `…; took W ms, CPU C ms`.
        let mut polls = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !line.contains("follow: polled") {
                continue;
            }
            let Some(rest) = line.split("; took ").nth(1) else {
                continue;
            };
            let mut n = rest
                .split(|c: char| !c.is_ascii_digit())
                .filter(|x| !x.is_empty())
                .map(|x| x.parse::<u64>().unwrap_or(0));
            if let (Some(w), Some(c)) = (n.next(), n.next()) {
                polls.push((w, c));
            }
        }
        polls
    });
    std::thread::sleep(real_limit);
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall = t.elapsed();
    let polls = reader.join().unwrap();
    let requests = gladly_requests(&gurl) - before;
    let _ = gladly.kill();
    let _ = wfm.kill();
    let cpu = ru.ru_utime.tv_sec as f64
        + ru.ru_utime.tv_usec as f64 / 1e6
        + ru.ru_stime.tv_sec as f64
        + ru.ru_stime.tv_usec as f64 / 1e6;
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("out/_state/bench/follow.json")).unwrap(),
    )
    .unwrap();
    let mut lat: Vec<i64> = state["recent_latencies_ms"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_i64())
        .collect();
    lat.sort_unstable();
    let q = |x: f64| {
        lat.get(((lat.len().max(1) - 1) as f64 * x).round() as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    println!(
        "  event → WFM ack: p50 {:.1} s, p95 {:.1} s, max {:.1} s over {} status changes (target p95: {})",
        q(0.5),
        q(0.95),
        q(1.0),
        lat.len(),
        if webhook {
            "≤ 5 s".to_string()
        } else {
            format!("≤ poll + 20 s = {} s; floor poll + visibility lag = {} s", poll + 20, poll + 15)
        },
    );
    // The first poll catches up from the start of the day (9 simulated hours): shown apart.
    let stats = |mut v: Vec<u64>| {
        v.sort_unstable();
        let at = |x: f64| {
            v.get(((v.len().max(1) - 1) as f64 * x).round() as usize)
                .copied()
        };
        (
            at(0.5).unwrap_or(0),
            at(0.95).unwrap_or(0),
            at(1.0).unwrap_or(0),
        )
    };
    let steady = polls.get(1..).unwrap_or_default();
    let (w50, w95, wmax) = stats(steady.iter().map(|p| p.0).collect());
    let (c50, c95, cmax) = stats(steady.iter().map(|p| p.1).collect());
    let first = polls.first().copied().unwrap_or_default();
    println!(
        "  per poll after the first: {} polls, wall median {w50} ms, p95 {w95} ms, max {wmax} ms; CPU median {c50} ms, p95 {c95} ms, max {cmax} ms (target ≤ 500 ms)",
        steady.len(),
    );
    println!(
        "  first poll (catch-up from the day's start): wall {} ms, CPU {} ms; the whole process: CPU {:.1} s over {} polls, run wall {:.1} s",
        first.0,
        first.1,
        cpu,
        polls.len(),
        wall.as_secs_f64(),
    );
    println!(
        "  Gladly requests: {requests} in {minutes} simulated minutes = {:.1} per minute",
        requests as f64 / minutes
    );
    println!(
        "  service: CPU {:.0} ms per second of wall time, peak RSS {} MiB",
        cpu * 1000.0 / wall.as_secs_f64(),
        ru.ru_maxrss / 1024
    );
}

/// Requests the Gladly simulator has served so far (its `/_sim/requests` list).
fn gladly_requests(url: &str) -> usize {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let Ok(mut c) = std::net::TcpStream::connect(addr) else {
        return 0;
    };
    let _ = write!(c, "GET /_sim/requests HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    let body = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| &buf[i + 4..])
        .unwrap_or_default();
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.as_array().map(|a| a.len()))
        .unwrap_or(0)
}
