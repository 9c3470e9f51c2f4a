//! Operating it: the run lock (exit 3, stale locks), incremental nightly runs, the scheduler,
//! `status` and `check`. (Killed runs and stale locks: tests/reliability.rs.)

mod util;

use std::time::Duration;

use gladly_wfm_sim::faults::FaultRates;
use gladly_wfm_sim::wfm::WfmSimConfig;
use serde_json::Value;
use util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_concurrent_run_exits_3_naming_the_holder() {
    let s = start(
        world(7, 5, NOW),
        |c| {
            c.faults = FaultRates {
                slow: 1.0,
                ..Default::default()
            };
            c.slow_ms = 4_000;
        },
        WfmSimConfig::default(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "");
    let ps = p.display().to_string();
    let mut first = command(
        dir.path(),
        &[
            "run",
            "--pipeline",
            &ps,
            "--now",
            NOW,
            "--from",
            "2026-11-02",
            "--to",
            "2026-11-02",
        ],
        &[],
    )
    .spawn()
    .unwrap();
    let lock = dir.path().join("output/_state/t/run.lock");
    for _ in 0..100 {
        if std::fs::read_to_string(&lock).is_ok_and(|t| t.contains("pid")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let o = run(
        dir.path(),
        &p,
        NOW,
        &["--from", "2026-11-02", "--to", "2026-11-02"],
    )
    .await;
    assert_eq!(o.code, 3, "{o}");
    assert!(
        o.stdout.contains("holds the lock")
            && o.stdout.contains(&format!("pid {}", first.id().unwrap())),
        "{o}"
    );
    // `status` names the holder too.
    let st = bin(dir.path(), &["status", "--pipeline", &ps], &[]).await;
    assert!(st.stdout.contains("lock: held"), "{st}");
    first.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nightly_runs_fetch_only_new_days_and_never_move_the_cursor_back() {
    let s = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "initial_days = 2", "");
    // The days each report request asked for, in the order asked (days are fetched two ahead,
    // so within a run the order may vary: each run's part is compared sorted).
    let reports = |s: &Sims| -> Vec<String> {
        s.gladly
            .requests()
            .iter()
            .filter(|r| r.path == "/api/v1/reports")
            .map(|r| serde_json::from_str::<Value>(&r.body).unwrap())
            .filter(|b| b["metricSet"] == "AgentTimestampsReport")
            .map(|b| b["startAt"].as_str().unwrap().to_string())
            .collect()
    };
    // First run, no state: the last 2 complete days (today 2026-11-04 is not complete).
    let o = run(dir.path(), &p, NOW, &[]).await;
    assert_eq!(o.code, 0, "{o}");
    let mut first = reports(&s);
    first.sort();
    assert_eq!(first, ["2026-11-02", "2026-11-03"]);
    let m = latest_manifest(&dir.path().join("output"));
    assert_eq!(m["trigger"], "nightly");
    assert_eq!(
        m["window"]["days"],
        serde_json::json!(["2026-11-02", "2026-11-03"])
    );
    // An explicit re-run of older days does not move the nightly cursor back.
    assert_eq!(
        run(
            dir.path(),
            &p,
            NOW,
            &["--from", "2026-10-30", "--to", "2026-10-30"]
        )
        .await
        .code,
        0
    );
    // The next night: only the new day.
    let next = "2026-11-05T17:00:00Z";
    let o = run(dir.path(), &p, next, &[]).await;
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(reports(&s)[3..], ["2026-11-04"]);
    // The same night again: nothing new to fetch.
    let o = run(dir.path(), &p, next, &[]).await;
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(reports(&s).len(), 4);
    let st = bin(
        dir.path(),
        &["status", "--pipeline", &p.display().to_string()],
        &[],
    )
    .await;
    assert!(st.stdout.contains("nightly cursor: 2026-11-04"), "{st}");
    assert!(
        st.stdout
            .contains("completed transform: 2026-10-30, 2026-11-02..2026-11-04"),
        "{st}"
    );
    assert!(st.stdout.contains("lock: free"), "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_fires_runs_one_at_a_time_and_stops_on_sigterm() {
    let s = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(
        dir.path(),
        &s,
        "initial_days = 1",
        "[schedule]\ncron = \"* * * * * *\"\n",
    );
    let text = std::fs::read_to_string(&p).unwrap();
    // [schedule] must be its own table after [wfm]'s keys.
    assert!(text.contains("[schedule]"));
    let mut child = command(
        dir.path(),
        &["schedule", "--pipeline", &p.display().to_string()],
        &[],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    tokio::time::sleep(Duration::from_millis(6000)).await;
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("stops promptly")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let runs: Vec<Value> = files(&dir.path().join("output/_runs"))
        .iter()
        .map(|f| serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap())
        .collect();
    assert!(runs.len() >= 2, "{} runs", runs.len());
    let mut spans: Vec<(i64, i64)> = runs
        .iter()
        .map(|r| {
            assert_eq!(r["trigger"], "schedule");
            (
                ms(r["started_at"].as_str().unwrap()),
                ms(r["finished_at"].as_str().unwrap()),
            )
        })
        .collect();
    spans.sort();
    assert!(
        spans.windows(2).all(|w| w[0].1 <= w[1].0),
        "runs never overlap: {spans:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_credentials_and_unmatched_or_doubly_matched_labels_and_inboxes() {
    let s = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "");
    let ps = p.display().to_string();
    let o = bin(dir.path(), &["check", "--pipeline", &ps, "--offline"], &[]).await;
    assert_eq!(o.code, 0, "{o}");
    assert!(
        o.stdout.contains("not tried") && o.stdout.contains("no raw data yet"),
        "{o}"
    );
    // --strict on a root with no data yet checks what it can (keys, patterns) and passes.
    let o = bin(
        dir.path(),
        &["check", "--pipeline", &ps, "--offline", "--strict"],
        &[],
    )
    .await;
    assert_eq!(o.code, 0, "{o}");
    assert!(
        o.stdout.contains("nothing to check the task rules against"),
        "{o}"
    );
    assert!(s.gladly.requests().is_empty());
    assert_eq!(
        run(
            dir.path(),
            &p,
            NOW,
            &[
                "--from",
                "2026-10-29",
                "--to",
                "2026-11-04",
                "--stages",
                "extract"
            ]
        )
        .await
        .code,
        0
    );
    let o = bin(dir.path(), &["check", "--pipeline", &ps], &[]).await;
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.contains("gladly: credentials accepted"), "{o}");
    assert!(o.stdout.contains("wfm: credentials accepted"), "{o}");
    assert!(o.stdout.contains("unmatched label `Coaching 1:1`"), "{o}");
    assert!(o.stdout.contains("unmatched label `FOCUS_ENTERED`"), "{o}");
    assert!(o.stdout.contains("matches \"Availability\" (line"), "{o}");
    assert!(o.stdout.contains("inbox `Customer_Support`"), "{o}");
    assert!(o.stdout.contains("unmatched inbox `Sales`"), "{o}");
    let o = bin(
        dir.path(),
        &["check", "--pipeline", &ps],
        &[("GLADLY_API_TOKEN", "nope")],
    )
    .await;
    assert_eq!(o.code, 4, "{o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_and_disabled_wfm_push_nothing_and_json_logs_parse() {
    let s = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "initial_days = 1", "");
    let ps = p.display().to_string();
    let o = run_env(
        dir.path(),
        &p,
        NOW,
        &["--dry-run", "--log-format", "json"],
        &[],
    )
    .await;
    assert_eq!(o.code, 0, "{o}");
    assert!(s.wfm.requests().is_empty(), "--dry-run pushes nothing");
    assert!(dir
        .path()
        .join("output/agent_status_segments/date=2026-11-03/part-0.parquet")
        .exists());
    let st = bin(dir.path(), &["status", "--pipeline", &ps], &[]).await;
    assert!(
        st.stdout.contains("nightly cursor: none"),
        "--dry-run moves no cursor: {st}"
    );
    // Every log line is a JSON object with a level and a message; the summary is on stdout.
    for line in o.stderr.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(
            v["level"].is_string() && v["message"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
    assert!(
        o.stdout.trim().lines().count() == 1 && o.stdout.contains("gladly-wfm t: ok"),
        "{o}"
    );
    // [wfm] enabled = false: the run completes and pushes nothing either.
    let text = std::fs::read_to_string(&p).unwrap().replace(
        "integration_id = \"it\"",
        "integration_id = \"it\"\nenabled = false",
    );
    std::fs::write(&p, text).unwrap();
    let o = run(dir.path(), &p, NOW, &[]).await;
    assert_eq!(o.code, 0, "{o}");
    assert!(
        s.wfm.requests().is_empty(),
        "a disabled [wfm] pushes nothing"
    );
    let st = bin(dir.path(), &["status", "--pipeline", &ps], &[]).await;
    assert!(st.stdout.contains("nightly cursor: 2026-11-03"), "{st}");
}

/// A range nobody means is refused before anything is fetched or written (exit 2): dates before
/// Gladly could hold data, and a range longer than `max_range_days`; a long range that is meant
/// says what it will cost before it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonsense_ranges_exit_2_and_a_long_range_logs_its_estimate() {
    let s = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "");
    let o = run(
        dir.path(),
        &p,
        NOW,
        &["--from", "0000-01-01", "--to", "0000-01-02"],
    )
    .await;
    assert_eq!(o.code, 2, "{o}");
    assert!(format!("{o}").contains("before 2010-01-01"), "{o}");
    let o = run(
        dir.path(),
        &p,
        NOW,
        &["--from", "2016-01-01", "--to", "2025-12-31"],
    )
    .await;
    assert_eq!(o.code, 2, "{o}");
    assert!(
        format!("{o}").contains("3653 days, more than max_range_days = 400"),
        "{o}"
    );
    assert!(s.gladly.requests().is_empty(), "nothing was fetched");
    assert!(!dir.path().join("output").exists(), "nothing was written");
    // The key raises the bound; a range within it logs its cost at Gladly's limits first.
    let p = pipeline(dir.path(), &s, "max_range_days = 3", "");
    let o = run(
        dir.path(),
        &p,
        NOW,
        &["--from", "2026-10-29", "--to", "2026-11-01"],
    )
    .await;
    assert_eq!(o.code, 2, "{o}");
    assert!(
        format!("{o}").contains("4 days, more than max_range_days = 3"),
        "{o}"
    );
    let p = pipeline(dir.path(), &s, "max_range_days = 4", "");
    let o = run(
        dir.path(),
        &p,
        NOW,
        &[
            "--from",
            "2026-10-29",
            "--to",
            "2026-11-01",
            "--stages",
            "extract",
        ],
    )
    .await;
    assert_eq!(o.code, 0, "{o}");
    assert!(
        o.stderr
            .contains("estimate: 16 report request(s) at gladly.reports_per_minute = 600"),
        "four report days, four reports each (both timestamps reports, the work sessions and \
         the audit's summary): {o}"
    );
}
