//! Reliability under faults and bad input: a backfill under injected faults, a process killed
//! at every kind of step, and bad answers from Gladly all end with exactly the clean result;
//! nothing lost, nothing duplicated, no temporary file left, no secret leaked.

mod util;

use gladly_wfm_sim::faults::FaultRates;
use gladly_wfm_sim::generator::Quirks;
use gladly_wfm_sim::wfm::WfmSimConfig;
use util::*;

/// Old days by report, today by the Events API, push on.
const RANGE: [&str; 4] = ["--from", "2026-11-01", "--to", "2026-11-04"];
async fn clean_run() -> (Sims, tempfile::TempDir) {
    let s = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "batch_size = 60");
    let o = run(dir.path(), &p, NOW, &RANGE).await;
    assert_eq!(o.code, 0, "{o}");
    (s, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_under_injected_faults_equals_a_clean_run() {
    let (clean, cdir) = clean_run().await;
    let gladly_faults = FaultRates {
        server_error: 0.08,
        too_many: 0.08,
        slow: 0.08,
        cut: 0.08,
        close: 0.08,
    };
    let wfm_faults = FaultRates {
        server_error: 0.08,
        too_many: 0.08,
        ..Default::default()
    };
    let s = start(
        world(7, 20, NOW),
        |c| {
            c.faults = gladly_faults;
            c.slow_ms = 2_500;
        },
        WfmSimConfig {
            faults: wfm_faults,
            ..Default::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "batch_size = 60");
    // Slow answers outlast the client's timeout.
    let text = std::fs::read_to_string(&p).unwrap().replace(
        "reports_in_flight = 2",
        "reports_in_flight = 2\nrequest_timeout_seconds = 1\nreport_timeout_seconds = 1",
    );
    std::fs::write(&p, text).unwrap();
    let o = run(dir.path(), &p, NOW, &RANGE).await;
    assert_eq!(o.code, 0, "{o}");
    let seen: Vec<u16> = s.gladly.requests().iter().map(|r| r.status).collect();
    assert!(
        seen.contains(&500) || seen.contains(&429),
        "faults were injected: {seen:?}"
    );
    assert_same_datasets(&cdir.path().join("output"), &dir.path().join("output"));
    assert_same_store(&clean.wfm.store(), &s.wfm.store());
    let m = latest_manifest(&dir.path().join("output"));
    let g = &m["requests"]["gladly"];
    assert!(
        g["retries"].as_u64().unwrap() > 0 && g["server_errors_5xx"].as_u64().unwrap() > 0,
        "{g}"
    );
    assert!(
        m["requests"]["wfm"]["retries"].as_u64().unwrap() > 0,
        "{}",
        m["requests"]
    );
    assert_no_temp_files(&dir.path().join("output"));
    assert_no_secrets(&dir.path().join("output"), &[&o.stdout, &o.stderr]);
}

/// A body that ends where its connection closed, mid-line and without a length, looks whole to
/// the HTTP layer. On the Events API, both timestamps reports and the work-session report it is
/// fetched again: nothing of it is set aside, and the run equals a clean one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_closed_mid_line_without_a_length_are_fetched_again() {
    // The seed draws which answers are cut: with this one, every kind of answer has at least one.
    const SEED: u64 = 4;
    let clean = start(world(SEED, 20, NOW), |_| {}, WfmSimConfig::default()).await;
    let cdir = tempfile::tempdir().unwrap();
    let p = pipeline(cdir.path(), &clean, "", "batch_size = 60");
    let o = run(cdir.path(), &p, NOW, &RANGE).await;
    assert_eq!(o.code, 0, "{o}");
    let s = start(
        world(SEED, 20, NOW),
        |c| {
            c.faults = FaultRates {
                close: 0.4,
                ..Default::default()
            }
        },
        WfmSimConfig::default(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "batch_size = 60");
    let o = run(dir.path(), &p, NOW, &RANGE).await;
    assert_eq!(o.code, 0, "{o}");
    // The simulator's faults are drawn per request and attempt, so which answers are cut is the
    // same on every run: each kind of answer had at least one cut.
    let all = s.gladly.requests();
    let closed: Vec<_> = all
        .iter()
        .filter(|r| r.fault == Some("close"))
        .cloned()
        .collect();
    type Is = fn(&gladly_wfm_sim::gladly::LoggedRequest) -> bool;
    let kinds: [(&str, Is); 4] = [
        ("the Events API", |r| r.path == "/api/v1/events"),
        ("AgentTimestampsReport", |r| {
            r.body.contains("AgentTimestampsReport")
        }),
        ("ConversationTimestampsReport", |r| {
            r.body.contains("ConversationTimestampsReport")
        }),
        ("the work-session report", |r| {
            r.path == "/api/v1/reports/work-session-events"
        }),
    ];
    for (kind, is) in kinds {
        let seen: Vec<_> = all
            .iter()
            .map(|r| (&r.path, &r.query, r.status, r.fault))
            .collect();
        assert!(
            closed.iter().any(is),
            "no answer of {kind} was cut: {seen:?}"
        );
    }
    assert!(
        o.stderr.contains("closed mid-line"),
        "each cut is a logged retry: {o}"
    );
    let m = latest_manifest(&dir.path().join("output"));
    assert_eq!(
        m["set_aside"]["count"].as_u64(),
        Some(0),
        "{}",
        m["set_aside"]
    );
    assert_same_datasets(&cdir.path().join("output"), &dir.path().join("output"));
    assert_same_store(&clean.wfm.store(), &s.wfm.store());
    assert_no_temp_files(&dir.path().join("output"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_at_any_step_then_run_again_equals_a_clean_run() {
    let (clean, cdir) = clean_run().await;
    // SIGKILL during extract, between a Parquet file's write and its rename, after a curated
    // write, and in the middle of the push.
    for point in [
        "raw-written:3",
        "partition-temp-written:9",
        "curated-written:2",
        "push-batch:6",
    ] {
        let s = start_default(NOW).await;
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline(dir.path(), &s, "", "batch_size = 60");
        let o = run_env(
            dir.path(),
            &p,
            NOW,
            &RANGE,
            &[("GLADLY_WFM_CRASH_AT", point)],
        )
        .await;
        assert_eq!(o.code, -1, "{point}: killed by a signal: {o}");
        assert!(o.stderr.contains("dying at"), "{point}: {o}");
        // The dead run's lock file is still there, and does not block the next run.
        assert!(dir.path().join("output/_state/t/run.lock").exists());
        if point.starts_with("partition-temp") {
            assert!(
                files(&dir.path().join("output"))
                    .iter()
                    .any(|f| f.to_string_lossy().contains(".tmp-")),
                "a torn write was left to clean up"
            );
        }
        let o = run_env(dir.path(), &p, NOW, &RANGE, &[]).await;
        assert_eq!(o.code, 0, "{point}: {o}");
        assert_same_datasets(&cdir.path().join("output"), &dir.path().join("output"));
        assert_same_store(&clean.wfm.store(), &s.wfm.store());
        assert_no_temp_files(&dir.path().join("output"));
        assert_no_secrets(&dir.path().join("output"), &[&o.stdout, &o.stderr]);
        if point.starts_with("push-batch") {
            let m = latest_manifest(&dir.path().join("output"));
            let skipped: u64 = m["wfm"]
                .as_object()
                .unwrap()
                .values()
                .map(|k| k["batches_skipped_resumed"].as_u64().unwrap())
                .sum();
            assert_eq!(skipped, 6, "the acknowledged batches were not sent again");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_lines_and_short_csv_rows_are_set_aside_and_the_run_goes_on() {
    let (_clean, cdir) = clean_run().await;
    let mut w = world(7, 20, NOW);
    w.quirks = Quirks::parse("malformed").unwrap();
    let s = start(w, |_| {}, WfmSimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "batch_size = 60");
    let o = run(dir.path(), &p, NOW, &RANGE).await;
    assert_eq!(o.code, 0, "{o}");
    let m = latest_manifest(&dir.path().join("output"));
    let items = m["set_aside"]["items"].as_array().unwrap();
    assert!(
        m["set_aside"]["count"].as_u64().unwrap() >= 4,
        "{}",
        m["set_aside"]
    );
    let text = serde_json::to_string(items).unwrap();
    assert!(
        text.contains("ConversationTimestampsReport 2026-11-02, row 201")
            && text.contains("missing column Event Type"),
        "names the report, day and row: {text}"
    );
    assert!(
        text.contains("events 2026-11-04, line") && text.contains("malformed JSON"),
        "names the window and line: {text}"
    );
    assert!(o.stdout.contains("set aside"), "{o}");
    // Nothing real was lost: the datasets equal the clean run's.
    assert_same_datasets(&cdir.path().join("output"), &dir.path().join("output"));
    // And every other quirk at once still runs.
    let mut w = world(7, 20, NOW);
    w.quirks = Quirks::parse("all,malformed").unwrap();
    let s = start(w, |_| {}, WfmSimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "");
    let o = run(dir.path(), &p, NOW, &RANGE).await;
    assert_eq!(o.code, 0, "{o}");
    assert!(
        latest_manifest(&dir.path().join("output"))["set_aside"]["items"]
            .to_string()
            .contains("unknown event type AGENT_STATUS/SHIFT_SWAPPED")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_root_that_cannot_be_written_exits_1_naming_it() {
    let s = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "");
    std::fs::write(dir.path().join("not-a-dir"), "a file").unwrap();
    let bad = dir.path().join("not-a-dir/output");
    let text = std::fs::read_to_string(&p).unwrap().replace(
        &dir.path().join("output").display().to_string(),
        &bad.display().to_string(),
    );
    std::fs::write(&p, text).unwrap();
    let o = run(dir.path(), &p, NOW, &RANGE).await;
    assert_eq!(o.code, 1, "{o}");
    assert!(o.stdout.contains("not-a-dir"), "names the path: {o}");
    assert_no_secrets(dir.path(), &[&o.stdout, &o.stderr]);
}
