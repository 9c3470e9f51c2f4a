//! `follow` against the Gladly simulator on a fast live clock (a simulated hour in seconds) and
//! the WFM simulator: every event lands once, the receiver holds what a batch run over the same
//! span gives (one open piece per agent and axis, equal to its current state), a follower
//! killed anywhere resumes with nothing lost or sent twice, and once a day is complete its
//! reconcile leaves that day exactly as a plain `run` of it.

mod util;

use std::collections::BTreeMap;
use std::path::Path;

use gladly_wfm_sim::wfm::WfmSimConfig;
use serde_json::Value;
use tokio::io::AsyncBufReadExt;
use util::follow::*;
use util::*;

const FOLLOW: &str =
    "[follow]\npoll_seconds = 15\nwork_sessions_minutes = 10\ndimensions_minutes = 60";

struct Followed {
    code: i32,
    log: Vec<String>,
}

/// Runs `follow` on a clock that starts at `now` and runs `speed` times as fast as real time,
/// until a poll has read up to `until` (then SIGTERM), or until it dies.
async fn follow_until(
    dir: &Path,
    p: &Path,
    now: &str,
    speed: f64,
    until: i64,
    env: &[(&str, &str)],
) -> Followed {
    let sp = speed.to_string();
    let done = |line: &str| polled_to(line).is_some_and(|end| end >= until);
    follow_while(dir, p, &["--now", now, "--speed", sp.as_str()], env, done).await
}

/// Runs `follow` with `args` until a log line makes `stop` true (then SIGTERM), or until it dies.
async fn follow_while(
    dir: &Path,
    p: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stop: impl Fn(&str) -> bool,
) -> Followed {
    let pf = p.display().to_string();
    let args = [&["follow", "--pipeline", pf.as_str()][..], args].concat();
    let mut child = command(dir, &args, env)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap() as i32;
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    let mut signalled = false;
    let read = async {
        while let Ok(Some(line)) = lines.next_line().await {
            if !signalled && stop(&line) {
                unsafe { libc::kill(pid, libc::SIGTERM) };
                signalled = true;
            }
            log.push(line);
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(180), read)
        .await
        .expect("follow answered within three minutes");
    let status = child.wait().await.unwrap();
    Followed {
        code: status.code().unwrap_or(-1),
        log,
    }
}

/// The end of the window a `follow: polled A..B` log line names.
fn polled_to(line: &str) -> Option<i64> {
    let window = line.split("follow: polled ").nth(1)?.split(": ").next()?;
    gladly_wfm::time::parse_ts(window.split("..").nth(1)?)
}

#[test]
fn a_poll_line_names_its_window() {
    let l = "2026-12-02T06:38:38.898Z INFO  follow: polled 2026-11-04T14:26:19.579Z..2026-11-04T14:27:35.502Z: 0 new event(s)";
    assert_eq!(polled_to(l), Some(ms("2026-11-04T14:27:35.502Z")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_lands_every_event_once_and_the_receiver_equals_a_batch_run() {
    // 09:00 in New York on a Wednesday; a simulated half hour at 120× passes in 15 s.
    let t0 = "2026-11-04T14:00:00Z";
    let s = start(
        world(7, 20, t0),
        |c| c.speed = 120.0,
        WfmSimConfig::default(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", FOLLOW);
    let f = follow_until(dir.path(), &p, t0, 120.0, ms(t0) + 30 * 60_000, &[]).await;
    assert_eq!(f.code, 0, "{}", f.log.join("\n"));
    assert!(
        f.log
            .iter()
            .filter(|l| l.contains("follow: polled"))
            .count()
            >= 5
    );
    assert!(
        f.log.iter().any(|l| l.contains("; lag ")),
        "log lines carry the lag"
    );
    let root = dir.path().join("output");
    let st = follow_state(&root);
    let end = st["polled_to"].as_i64().unwrap();
    assert!(st["lag_ms"].as_i64().is_some());

    // Every event visible by the last window's end is in the raw zone, exactly once.
    assert_landed_once(&s, &root, end, "");

    // The receiver equals a batch run of today up to the same instant.
    let (b, _bdir) = batch("2026-11-04", &gladly_wfm::time::fmt_ts(end), "").await;
    assert_receiver_equals_batch(&s, &b);
    assert_no_secrets(&root, &[&f.log.join("\n")]);
    // `status` shows the follower's health, without credentials.
    let pf = p.display().to_string();
    let o = bin(dir.path(), &["status", "--pipeline", pf.as_str()], &[]).await;
    assert_eq!(o.code, 0, "{o}");
    assert!(
        o.stdout.contains("follow: last poll") && o.stdout.contains("lag"),
        "{o}"
    );
    assert!(o.stdout.contains("event → WFM acknowledgement p50"), "{o}");

    // Gladly fails (every answer a 400): the follower says so in `status`, with the lag as of
    // now (ten minutes on), not the one stored at its last good poll.
    let failing = failing_gladly().await;
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace(&s.gladly_url, &failing);
    std::fs::write(&p, text).unwrap();
    let later = gladly_wfm::time::fmt_ts(end + 10 * 60_000);
    let failed = |line: &str| line.contains("trying again at the next poll");
    let f = follow_while(dir.path(), &p, &["--now", &later], &[], failed).await;
    assert_eq!(f.code, 0, "{}", f.log.join("\n"));
    let o = bin(
        dir.path(),
        &["status", "--pipeline", pf.as_str(), "--now", &later],
        &[],
    )
    .await;
    assert_eq!(o.code, 0, "{o}");
    assert!(
        o.stdout
            .contains("follow: FAILING: 1 poll(s) in a row failed"),
        "{o}"
    );
    let lag = o
        .stdout
        .split("; lag ")
        .nth(1)
        .and_then(|r| r.split(" as of now").next())
        .unwrap_or_default()
        .to_string();
    assert!(
        lag.ends_with(" min"),
        "the lag as of now is minutes, not the stored seconds: {o}"
    );
}

/// A Gladly that answers every request with a 400 (not retried): each poll fails at once.
async fn failing_gladly() -> String {
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::BAD_REQUEST,
            r#"{"errors":[{"detail":"down for the test"}]}"#,
        )
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_killed_anywhere_resumes_with_nothing_lost_or_sent_twice() {
    let t0 = "2026-11-04T14:00:00Z";
    for point in [
        "push-batch:3",
        "partition-temp-written:7",
        "curated-written:4",
    ] {
        let s = start(
            world(7, 20, t0),
            |c| c.speed = 120.0,
            WfmSimConfig::default(),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline(dir.path(), &s, "", &format!("batch_size = 20\n{FOLLOW}"));
        let never = ms(t0) + 24 * 3_600_000;
        let f = follow_until(
            dir.path(),
            &p,
            t0,
            120.0,
            never,
            &[("GLADLY_WFM_CRASH_AT", point)],
        )
        .await;
        assert_eq!(f.code, -1, "{point}: killed: {}", f.log.join("\n"));
        // Restarted on the simulator's clock as it is now.
        let now = sim_now(&s);
        let f = follow_until(dir.path(), &p, &now, 120.0, ms(&now) + 10 * 60_000, &[]).await;
        assert_eq!(f.code, 0, "{point}: {}", f.log.join("\n"));
        let root = dir.path().join("output");
        let end = follow_state(&root)["polled_to"].as_i64().unwrap();
        assert_landed_once(&s, &root, end, point);
        let (b, _bdir) = batch(
            "2026-11-04",
            &gladly_wfm::time::fmt_ts(end),
            "batch_size = 20",
        )
        .await;
        assert_receiver_equals_batch(&s, &b);
        // No record was sent twice with the same content: each push carries only changes.
        let mut sent: BTreeMap<String, usize> = BTreeMap::new();
        for r in s.wfm.requests() {
            if r.path == "/api/workactivity/taskdata" && r.status == 200 {
                let env: Value = serde_json::from_str(&r.body).unwrap();
                for rec in env["data"].as_array().unwrap() {
                    *sent.entry(rec.to_string()).or_default() += 1;
                }
            }
        }
        let twice: Vec<_> = sent.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "{point}: sent twice: {twice:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_a_day_is_complete_its_reconcile_equals_a_plain_run_of_it() {
    // 22:00 in New York on 11-03; at 1200× the day ends and its report lag (60 min) passes in
    // about ten seconds.
    let t0 = "2026-11-04T03:00:00Z";
    let s = start(
        world(7, 20, t0),
        |c| c.speed = 1200.0,
        WfmSimConfig::default(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", FOLLOW);
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("report_lag_minutes = 120", "report_lag_minutes = 60");
    std::fs::write(&p, text).unwrap();
    let f = follow_until(dir.path(), &p, t0, 1200.0, ms("2026-11-04T06:20:00Z"), &[]).await;
    assert_eq!(f.code, 0, "{}", f.log.join("\n"));
    let root = dir.path().join("output");
    assert_eq!(
        follow_state(&root)["reconciled_through"],
        "2026-11-03",
        "{}",
        f.log.join("\n")
    );
    assert_reconciled_day_equals_a_plain_run(&s, &root).await;
}
