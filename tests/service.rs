//! `[service] listen` (DESIGN §13): `follow` against the simulators on a fast live clock serves
//! /healthz, /readyz and /metrics. The page is read by an independent parser (Python's
//! prometheus_client, tests/exposition.py: every family of the table with its type and labels);
//! the events counter and the poll's last success move between two scrapes while events flow;
//! /readyz turns 503 with a one-line JSON reason while Gladly fails for three polls and back to
//! 200 after, while /healthz stays 200. Every `--log-format json` line parses, and a day's lines
//! carry `day` and `stage`. Everything waits on the follower's log lines, not on sleeps.

mod util;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gladly_wfm_sim::wfm::WfmSimConfig;
use serde_json::Value;
use tokio::io::AsyncBufReadExt;
use util::*;

const FOLLOW: &str =
    "[follow]\npoll_seconds = 15\nwork_sessions_minutes = 10\ndimensions_minutes = 60";

/// A proxy in front of the Gladly simulator that can be switched to fail every request (a
/// 400, which the client does not retry: each poll fails at once).
struct GladlyProxy {
    url: String,
    failing: Arc<AtomicBool>,
}

async fn gladly_proxy(target: String) -> GladlyProxy {
    let failing = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::new();
    let f = failing.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let (client, target, failing) = (client.clone(), target.clone(), f.clone());
        async move {
            use axum::response::IntoResponse;
            if failing.load(Ordering::SeqCst) {
                return (
                    axum::http::StatusCode::BAD_REQUEST,
                    r#"{"errors":[{"detail":"down for the test"}]}"#,
                )
                    .into_response();
            }
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 64 << 20).await.unwrap();
            let path = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let mut rb = client.request(parts.method.clone(), format!("{target}{path}"));
            for (k, v) in &parts.headers {
                if k != axum::http::header::HOST {
                    rb = rb.header(k, v);
                }
            }
            let answer = rb.body(body).send().await.unwrap();
            let status = answer.status();
            let ctype = answer.headers().get("content-type").cloned();
            let bytes = answer.bytes().await.unwrap();
            let mut resp = (status, bytes).into_response();
            if let Some(c) = ctype {
                resp.headers_mut().insert("content-type", c);
            }
            resp
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    GladlyProxy {
        url: format!("http://{addr}"),
        failing,
    }
}

/// A running `follow`: its stderr lines as they come (each a JSON object), and all so far.
struct Follower {
    child: tokio::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<Value>,
    log: Vec<String>,
}

impl Follower {
    fn start(dir: &Path, p: &Path, now: &str, speed: f64) -> Follower {
        let pf = p.display().to_string();
        let sp = speed.to_string();
        let args = [
            "--log-format",
            "json",
            "follow",
            "--pipeline",
            pf.as_str(),
            "--now",
            now,
            "--speed",
            sp.as_str(),
        ];
        let child = command(dir, &args, &[])
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Follower::of(child)
    }

    /// Reads a child's stderr, one JSON line at a time.
    fn of(mut child: tokio::process::Child) -> Follower {
        let mut reader = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = reader.next_line().await {
                let v = serde_json::from_str::<Value>(&line)
                    .unwrap_or_else(|e| Value::String(format!("NOT JSON ({e}): {line}")));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Follower {
            child,
            lines: rx,
            log: Vec::new(),
        }
    }

    /// Waits for the next log line whose message holds `needle`; every line on the way must
    /// be a JSON object with `timestamp`, `level` and `message`.
    async fn until(&mut self, needle: &str) -> Value {
        let wait = async {
            while let Some(v) = self.lines.recv().await {
                self.log.push(v.to_string());
                let msg = v["message"].as_str().unwrap_or_else(|| {
                    panic!("a log line is not a JSON object with a message: {v}")
                });
                assert!(
                    v["timestamp"].as_str().is_some() && v["level"].as_str().is_some(),
                    "{v}"
                );
                if msg.contains(needle) {
                    return Some(v);
                }
            }
            None
        };
        match tokio::time::timeout(Duration::from_secs(120), wait).await {
            Ok(Some(v)) => v,
            _ => panic!(
                "follow logged no line with {needle:?}:\n{}",
                self.log.join("\n")
            ),
        }
    }
}

async fn get(addr: &str, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// The page through tests/exposition.py: the families checked, the samples returned.
fn parse_exposition(page: &str) -> serde_json::Map<String, Value> {
    use std::io::Write;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/exposition.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (with prometheus_client: .ci/run installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "the exposition does not hold DESIGN §13's families (python3 -m pip install prometheus_client):\n{}\n--- page\n{page}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice::<Value>(&o.stdout)
        .unwrap()
        .as_object()
        .unwrap()
        .clone()
}

fn sum(samples: &serde_json::Map<String, Value>, prefix: &str) -> f64 {
    samples
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v.as_f64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_serves_health_readiness_and_the_metrics_of_design_13() {
    // 09:00 in New York on a Wednesday; a poll every 15 simulated seconds at 120× is 8 a second.
    let t0 = "2026-11-04T14:00:00Z";
    let s = start(
        world(7, 20, t0),
        |c| c.speed = 120.0,
        WfmSimConfig::default(),
    )
    .await;
    let proxy = gladly_proxy(s.gladly_url.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(
        dir.path(),
        &s,
        "",
        &format!("{FOLLOW}\n\n[service]\nlisten = \"127.0.0.1:0\"\n"),
    );
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace(&s.gladly_url, &proxy.url);
    std::fs::write(&p, text).unwrap();
    let mut f = Follower::start(dir.path(), &p, t0, 120.0);

    let line = f.until("service listening on http://").await;
    let addr = line["message"]
        .as_str()
        .unwrap()
        .split("http://")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(get(&addr, "/healthz").await.0, 200);
    assert_eq!(get(&addr, "/nothing-here").await.0, 404);

    // Two scrapes while events flow: after the first poll that landed events, and again later.
    let first = loop {
        let v = f.until("follow: polled").await;
        assert_eq!(v["stage"], "poll", "a poll's line carries its stage: {v}");
        assert_eq!(v["day"], "2026-11-04", "and its day: {v}");
        if !v["message"].as_str().unwrap().contains(": 0 new event(s)") {
            break parse_exposition(&get(&addr, "/metrics").await.1);
        }
    };
    // The second after at least two more polls, the last of which landed events.
    let mut polls = 0;
    loop {
        let v = f.until("follow: polled").await;
        polls += 1;
        if polls >= 2 && !v["message"].as_str().unwrap().contains(": 0 new event(s)") {
            break;
        }
    }
    let r = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let second = parse_exposition(&r.text().await.unwrap());
    for (name, what) in [
        ("gladly_wfm_events_total{", "events landed"),
        (
            "gladly_wfm_last_success_timestamp_seconds{job=poll}",
            "the poll's last success",
        ),
        ("gladly_wfm_cursor_timestamp_seconds{", "the cursor"),
        ("gladly_wfm_poll_duration_seconds_count{", "polls timed"),
        (
            "gladly_wfm_http_requests_total{api=gladly,code=200}",
            "Gladly requests",
        ),
    ] {
        assert!(
            sum(&second, name) > sum(&first, name),
            "{what} moved: {name} {} then {}",
            sum(&first, name),
            sum(&second, name)
        );
    }
    assert!(
        sum(
            &first,
            "gladly_wfm_events_total{entity=agent,source=events_api}"
        ) > 0.0
    );
    assert!(
        sum(
            &second,
            "gladly_wfm_wfm_records_total{kind=tasks,outcome=inserted}"
        ) > 0.0
    );

    // Gladly fails for three polls: not ready, with the reason; alive all the while.
    assert_eq!(
        get(&addr, "/readyz").await,
        (200, "{\"ready\":true}\n".into())
    );
    proxy.failing.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        f.until("trying again at the next poll").await;
    }
    let v = f.until("service: not ready: gladly: 3 polls failed").await;
    assert_eq!(v["level"], "WARN", "{v}");
    let (code, body) = get(&addr, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body.lines().count(), 1, "one line: {body}");
    let why: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(why["ready"], false, "{body}");
    let reason = why["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("gladly: ")
            && reason.contains(" polls failed: ")
            && reason.contains("down for the test"),
        "{body}"
    );
    assert_eq!(
        get(&addr, "/healthz").await.0,
        200,
        "alive while Gladly fails"
    );
    proxy.failing.store(false, Ordering::SeqCst);
    f.until("service: ready").await;
    assert_eq!(get(&addr, "/readyz").await.0, 200);
    assert_eq!(get(&addr, "/healthz").await.0, 200);

    let pid = f.child.id().unwrap() as i32;
    unsafe { libc::kill(pid, libc::SIGTERM) };
    f.until("service: shutting down").await;
    let status = f.child.wait().await.unwrap();
    assert_eq!(status.code(), Some(0), "{}", f.log.join("\n"));
    assert_no_secrets(&dir.path().join("output"), &[&f.log.join("\n")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_parse_and_a_days_lines_carry_day_and_stage() {
    let s = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "");
    let pf = p.display().to_string();
    let o = bin(
        dir.path(),
        &[
            "--log-format",
            "json",
            "run",
            "--pipeline",
            pf.as_str(),
            "--now",
            NOW,
            "--from",
            "2026-11-02",
            "--to",
            "2026-11-03",
        ],
        &[],
    )
    .await;
    assert_eq!(o.code, 0, "{o}");
    let lines: Vec<Value> = o
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty(), "{o}");
    let run_id = lines[0]["run_id"].as_str().unwrap_or_default().to_string();
    for v in &lines {
        assert!(
            v["timestamp"].is_string() && v["level"].is_string() && v["message"].is_string(),
            "{v}"
        );
        // The run's own lines name it (a task it spawned logs without its scope).
        if v.get("run_id").is_some() {
            assert_eq!(v["pipeline"], "t", "{v}");
            assert_eq!(v["run_id"].as_str(), Some(run_id.as_str()), "{v}");
        }
    }
    for day in ["2026-11-02", "2026-11-03"] {
        let v = lines
            .iter()
            .find(|v| {
                v["message"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("day {day} ("))
            })
            .unwrap_or_else(|| panic!("a line for {day}: {o}"));
        assert_eq!(v["day"], day, "{v}");
        assert_eq!(v["stage"], "extract", "{v}");
    }
    assert!(!run_id.is_empty());
    assert_no_secrets(&dir.path().join("output"), &[&o.stderr]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_serves_health_while_it_waits() {
    let s = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    // A fire time a year away: the scheduler waits all through the test.
    let p = pipeline(
        dir.path(),
        &s,
        "",
        "[schedule]\ncron = \"0 0 1 1 *\"\n\n[service]\nlisten = \"127.0.0.1:0\"\n",
    );
    let pf = p.display().to_string();
    let args = [
        "--log-format",
        "json",
        "schedule",
        "--pipeline",
        pf.as_str(),
    ];
    let child = command(dir.path(), &args, &[])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut f = Follower::of(child);
    let line = f.until("service listening on http://").await;
    let addr = gladly_wfm::service::listening_addr(line["message"].as_str().unwrap())
        .unwrap()
        .to_string();
    f.until("schedule: next run at").await;
    assert_eq!(
        get(&addr, "/healthz").await,
        (200, "{\"alive\":true}\n".into())
    );
    assert_eq!(get(&addr, "/readyz").await.0, 200);
    parse_exposition(&get(&addr, "/metrics").await.1);
    let pid = f.child.id().unwrap() as i32;
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = f.child.wait().await.unwrap();
    assert_eq!(status.code(), Some(0), "{}", f.log.join("\n"));
}
