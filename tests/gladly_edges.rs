//! Gladly's edges (spec §§4–6) and bad input, over real HTTP against the simulator: every
//! report timestamp rendering gives exactly the rows of the plain form, work-session windows
//! overlapping by a minute count nothing twice, a mostly unreadable answer fails its day, an
//! Events API window refused near the 24-hour edge is read from the report, an oversized
//! answer is refused at the cap, and a day that takes too long fails within its bound.

mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use gladly_wfm_sim::faults::FaultRates;
use gladly_wfm_sim::generator::Quirks;
use gladly_wfm_sim::wfm::WfmSimConfig;
use serde_json::{json, Map, Value};
use util::*;

/// Three report days, the DST fall-back day (2026-11-01, with its repeated 01:00 hour) first.
const REPORT_DAYS: [&str; 6] = [
    "--from",
    "2026-11-01",
    "--to",
    "2026-11-03",
    "--stages",
    "extract,transform",
];

fn out(dir: &Path) -> std::path::PathBuf {
    dir.join("output")
}

async fn sim_with(quirks: &str, agents: usize) -> Sims {
    let mut w = world(7, agents, NOW);
    w.quirks = Quirks::parse(quirks).unwrap();
    start(w, |_| {}, WfmSimConfig::default()).await
}

/// Runs the report days against a simulator with these quirks; returns the output folder.
async fn report_days_under(quirks: &str) -> (Sims, tempfile::TempDir) {
    let s = sim_with(quirks, 30).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "");
    let o = run(dir.path(), &p, NOW, &REPORT_DAYS).await;
    assert_eq!(o.code, 0, "quirks `{quirks}`: {o}");
    (s, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_report_timestamp_rendering_gives_exactly_the_rows_of_the_plain_form() {
    let (_plain, pdir) = report_days_under("").await;
    let plain_events = dataset(&out(pdir.path()), "raw/agent_events");
    // The fall-back day's repeated hour is in the data, in both of its passes (EDT and EST).
    let fall = &plain_events["2026-11-01"];
    let in_hour = |from: &str, to: &str| {
        fall.iter()
            .filter(|r| {
                let t = r["recorded_at"].as_i64().unwrap();
                t >= ms(from) && t < ms(to)
            })
            .count()
    };
    assert!(
        in_hour("2026-11-01T05:00:00Z", "2026-11-01T06:00:00Z") > 0
            && in_hour("2026-11-01T06:00:00Z", "2026-11-01T07:00:00Z") > 0,
        "the simulator has events in both passes of 01:00–02:00"
    );
    for quirks in [
        "report-offsets",
        "report-local-time",
        "timezone-filter",
        "report-offsets,report-local-time,timezone-filter,bom,blank-lines",
    ] {
        let (_s, qdir) = report_days_under(quirks).await;
        for ds in [
            "raw/agent_events",
            "raw/conversation_events",
            "agent_status_events",
            "agent_status_segments",
            "conversations",
        ] {
            let (want, got) = (
                dataset(&out(pdir.path()), ds),
                dataset(&out(qdir.path()), ds),
            );
            assert_eq!(
                want.keys().collect::<Vec<_>>(),
                got.keys().collect::<Vec<_>>(),
                "{quirks}: {ds} partitions"
            );
            for (day, rows) in &want {
                assert!(!rows.is_empty(), "{ds} {day} has rows");
                assert!(
                    rows == &got[day],
                    "quirks `{quirks}`: {ds} {day} differs from the plain form ({} vs {} rows)",
                    rows.len(),
                    got[day].len()
                );
            }
        }
        let m = latest_manifest(&out(qdir.path()));
        assert_eq!(m["set_aside"]["count"], 0, "{quirks}: {}", m["set_aside"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_answers_a_minute_past_end_at_time_and_no_row_counts_twice() {
    let s = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    let truth = dir.path().join("truth");
    s.gladly.dump(&truth).unwrap();
    let sessions: Vec<Value> = std::fs::read_to_string(truth.join("work_sessions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &Value| v["ended"] == true)
        .collect();
    // A session that ended a few seconds into a minute: a window whose (inclusive) end is that
    // minute returns it, and so does the next window, which starts there.
    let edge = sessions
        .iter()
        .find(|v| {
            let e = ms(v["contact_session_ended_at"].as_str().unwrap());
            e % 60_000 > 0 && e < ms("2026-11-03T00:00:00Z")
        })
        .unwrap();
    let ended = ms(edge["contact_session_ended_at"].as_str().unwrap());
    let minute = ended - ended % 60_000;
    let fmt = |m: i64| {
        gladly_wfm::time::to_utc(m)
            .format("%Y-%m-%dT%H:%MZ")
            .to_string()
    };
    let client = reqwest::Client::new();
    let window = |from: i64, to: i64| {
        client
            .post(format!(
                "{}/api/v1/reports/work-session-events",
                s.gladly_url
            ))
            .basic_auth("sim@example.com", Some(TOKEN))
            .json(&json!({"startAtTime": fmt(from), "endAtTime": fmt(to)}))
            .send()
    };
    let id = edge["contact_session_id"].as_str().unwrap();
    let before = window(minute - 3_600_000, minute).await.unwrap();
    let after = window(minute, minute + 3_600_000).await.unwrap();
    assert!(before.text().await.unwrap().contains(id), "inclusive end");
    assert!(
        after.text().await.unwrap().contains(id),
        "and the next window"
    );

    // A run over days whose windows overlap: every session once, totals exact.
    let p = pipeline(dir.path(), &s, "", "");
    let range = [
        "--from",
        "2026-10-30",
        "--to",
        "2026-11-02",
        "--stages",
        "extract,transform",
    ];
    let o = run(dir.path(), &p, NOW, &range).await;
    assert_eq!(o.code, 0, "{o}");
    let tz: chrono_tz::Tz = TZ.parse().unwrap();
    // Sessions created on these days all ended long before the last window closed.
    let days = ["2026-10-30", "2026-10-31", "2026-11-01"];
    let mut want: BTreeMap<String, (BTreeSet<(String, String)>, f64)> = BTreeMap::new();
    for v in &sessions {
        let created = ms(v["contact_session_created_at"].as_str().unwrap());
        let day = gladly_wfm::time::day_of(tz, created).to_string();
        if days.contains(&day.as_str()) {
            let e = want.entry(day).or_default();
            e.0.insert((
                v["contact_session_id"].as_str().unwrap().into(),
                v["id"].as_str().unwrap().into(),
            ));
            e.1 += v["work_session_handle_time_sec"].as_f64().unwrap();
        }
    }
    let ws = dataset(&out(dir.path()), "work_sessions");
    let intervals = dataset(&out(dir.path()), "workstream_intervals");
    for day in days {
        let rows = &ws[day];
        let keys: Vec<(String, String)> = rows
            .iter()
            .map(|r| {
                (
                    r["contact_session_id"].as_str().unwrap().into(),
                    r["id"].as_str().unwrap().into(),
                )
            })
            .collect();
        let set: BTreeSet<_> = keys.iter().cloned().collect();
        assert_eq!(
            keys.len(),
            set.len(),
            "{day}: a row seen in two windows is stored once"
        );
        assert_eq!(set, want[day].0, "{day}: the sessions of the ground truth");
        let sum = |rows: &Vec<Map<String, Value>>, col: &str| -> f64 {
            rows.iter().map(|r| r[col].as_f64().unwrap_or(0.0)).sum()
        };
        let handle = sum(rows, "work_session_handle_time_seconds");
        assert!(
            (handle - want[day].1).abs() < 1e-6,
            "{day}: {handle} vs {}",
            want[day].1
        );
        let offered: i64 = intervals[day]
            .iter()
            .map(|r| r["offered"].as_i64().unwrap())
            .sum();
        assert_eq!(
            offered as usize,
            want[day].0.len(),
            "{day}: offered, once each"
        );
        let ht = sum(&intervals[day], "handle_time_seconds");
        assert!(
            (ht - want[day].1).abs() < 1e-6,
            "{day}: interval handle time {ht}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mostly_unreadable_report_fails_its_day_naming_the_column_and_a_value() {
    let s = sim_with("unreadable-timestamps", 20).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "");
    let range = ["--from", "2026-11-02", "--to", "2026-11-03"];
    let o = run(dir.path(), &p, NOW, &range).await;
    assert_eq!(o.code, 1, "{o}");
    let text = format!("{}{}", o.stdout, o.stderr);
    assert!(
        text.contains("TimestampsReport 2026-11-02"),
        "names the day: {o}"
    );
    assert!(text.contains("column `Timestamp`"), "names the column: {o}");
    assert!(text.contains("`11/02/2026 "), "shows a value: {o}");
    // Nothing of the day was landed or marked done: the next run does it again.
    assert!(!out(dir.path())
        .join("raw/agent_events/date=2026-11-02")
        .exists());
    let state: Value = serde_json::from_slice(
        &std::fs::read(out(dir.path()).join("_state/t/state.json")).unwrap_or_default(),
    )
    .unwrap_or_default();
    let done = state["completed"]["extract"].to_string();
    assert!(!done.contains("2026-11-02"), "not marked done: {state}");
    // Against a Gladly that renders its timestamps readably, the same command completes.
    let good = start_default(NOW).await;
    let p = pipeline(dir.path(), &good, "", "");
    let o = run(dir.path(), &p, NOW, &range).await;
    assert_eq!(o.code, 0, "{o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_api_window_refused_near_the_24_hour_edge_is_read_from_the_report() {
    // The pipeline's clock is 2.5 h behind Gladly's: for it, 2026-11-03 started 22.5 h ago
    // (Events API), for Gladly 25 h ago (refused with a 400).
    let gladly_now = "2026-11-04T06:00:00Z";
    let our_now = "2026-11-04T03:30:00Z";
    let s = start_default(gladly_now).await;
    let (skewed, plain) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let range = [
        "--from",
        "2026-11-03",
        "--to",
        "2026-11-03",
        "--stages",
        "extract,transform",
    ];
    let p = pipeline(skewed.path(), &s, "", "");
    let o = run(skewed.path(), &p, our_now, &range).await;
    assert_eq!(o.code, 0, "{o}");
    assert!(
        o.stderr.contains("24-hour edge") && o.stderr.contains("from AgentTimestampsReport"),
        "the fallback is logged: {o}"
    );
    let reqs = s.gladly.requests();
    assert!(
        reqs.iter()
            .any(|r| r.path == "/api/v1/events" && r.status == 400),
        "the window was refused"
    );
    for metric in ["AgentTimestampsReport", "ConversationTimestampsReport"] {
        assert!(
            reqs.iter()
                .any(|r| r.path == "/api/v1/reports" && r.body.contains(metric) && r.status == 200),
            "{metric} read instead"
        );
    }
    // Exactly what a run on Gladly's own clock (which reads the report directly) lands.
    let p = pipeline(plain.path(), &s, "", "");
    assert_eq!(run(plain.path(), &p, gladly_now, &range).await.code, 0);
    for ds in [
        "raw/agent_events",
        "raw/conversation_events",
        "agent_status_events",
    ] {
        let (a, b) = (
            dataset(&out(skewed.path()), ds),
            dataset(&out(plain.path()), ds),
        );
        assert!(!a["2026-11-03"].is_empty());
        assert!(a == b, "{ds} differs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_past_the_cap_fails_the_day_naming_the_request_and_the_cap() {
    let s = start(
        world(7, 10, NOW),
        |c| c.report_padding_bytes = 3 << 20,
        WfmSimConfig::default(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "");
    let text = std::fs::read_to_string(&p).unwrap().replace(
        "reports_in_flight = 2",
        "reports_in_flight = 2\nmax_answer_mib = 1",
    );
    std::fs::write(&p, text).unwrap();
    let o = run(
        dir.path(),
        &p,
        NOW,
        &["--from", "2026-11-02", "--to", "2026-11-02"],
    )
    .await;
    assert_eq!(o.code, 1, "{o}");
    assert!(
        o.stdout.contains("TimestampsReport 2026-11-02")
            && o.stdout
                .contains("cap of 1 MiB per answer (gladly.max_answer_mib)"),
        "{o}"
    );
    // Refused, not retried: the server would only send it again.
    let reports = s
        .gladly
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v1/reports")
        .count();
    assert!(reports <= 2, "{reports} report requests");
    let left: Vec<_> = files(&out(dir.path()))
        .into_iter()
        .filter(|f| f.to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "spooled answers are removed: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_that_takes_too_long_fails_within_its_bound() {
    // Every answer is held 30 s; the client waits 20 s per report and retries: hours, unbounded.
    let s = start(
        world(7, 10, NOW),
        |c| {
            c.faults = FaultRates::parse("slow:1").unwrap();
            c.slow_ms = 30_000;
            c.faults_only_reports = true;
        },
        WfmSimConfig::default(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "");
    let text = std::fs::read_to_string(&p).unwrap().replace(
        "reports_in_flight = 2",
        "reports_in_flight = 2\nreport_timeout_seconds = 20\nday_timeout_minutes = 0.05",
    );
    std::fs::write(&p, text).unwrap();
    let started = std::time::Instant::now();
    let o = run(
        dir.path(),
        &p,
        NOW,
        &[
            "--from",
            "2026-11-02",
            "--to",
            "2026-11-02",
            "--stages",
            "extract",
        ],
    )
    .await;
    let took = started.elapsed();
    assert_eq!(o.code, 1, "{o}");
    assert!(
        o.stdout.contains("day 2026-11-02")
            && o.stdout
                .contains("longer than gladly.day_timeout_minutes (0.05 min)"),
        "{o}"
    );
    assert!(took.as_secs() < 60, "bounded: took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_waiting_to_retry_does_not_hold_the_in_flight_slot() {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use gladly_wfm::config::{GladlyConfig, Secret};
    use gladly_wfm::gladly::GladlyClient;
    use gladly_wfm::http::{RetryPolicy, Stats};

    // A Gladly whose agent report always fails (after a moment) and whose conversation report
    // answers at once; the server logs the order the requests arrive in.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let first = Arc::new(tokio::sync::Notify::new());
    let (seen2, first2) = (seen.clone(), first.clone());
    let app = axum::Router::new().fallback(move |body: String| {
        let (seen, first) = (seen2.clone(), first2.clone());
        async move {
            let agent = body.contains("AgentTimestampsReport");
            seen.lock()
                .unwrap()
                .push(if agent { "agent" } else { "conversation" }.into());
            if agent {
                first.notify_one();
                tokio::time::sleep(Duration::from_millis(200)).await;
                (axum::http::StatusCode::INTERNAL_SERVER_ERROR, String::new())
            } else {
                (axum::http::StatusCode::OK, String::new())
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let cfg = GladlyConfig {
        base_url: format!("http://{addr}"),
        user: "sim@example.com".into(),
        token: Secret::new(TOKEN),
        requests_per_second: 100,
        reports_per_minute: 600,
        reports_in_flight: 1,
        request_timeout_seconds: 5,
        report_timeout_seconds: 5,
        max_answer_mib: 1,
        day_timeout_minutes: 1.0,
    };
    let mut client = GladlyClient::new(&cfg, Arc::new(Stats::default()));
    client.report_policy = RetryPolicy {
        max_attempts: 4,
        base: Duration::from_millis(300),
        cap: Duration::from_millis(300),
    };
    let client = Arc::new(client);
    let spool = tempfile::tempdir().unwrap();
    let (tz, day) = (TZ.parse().unwrap(), "2026-11-02".parse().unwrap());
    let (c, dir) = (client.clone(), spool.path().to_path_buf());
    let agent = tokio::spawn(async move {
        c.report("AgentTimestampsReport", tz, day, &dir)
            .await
            .map(|_| ())
    });
    first.notified().await;
    // The agent report holds the only slot now; the conversation report queues for it.
    let conv = client
        .report("ConversationTimestampsReport", tz, day, spool.path())
        .await;
    assert!(conv.is_ok(), "{:?}", conv.err());
    assert!(agent.await.unwrap().is_err(), "the agent report gave up");
    let order = seen.lock().unwrap().clone();
    assert_eq!(order.len(), 5, "{order:?}");
    assert_eq!(
        order[1], "conversation",
        "the slot went to the waiting report during the first one's backoff: {order:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_events_stream_is_cut_at_the_cap_and_nothing_is_left_on_disk() {
    use std::sync::Arc;

    use gladly_wfm::config::{GladlyConfig, Secret};
    use gladly_wfm::gladly::{GladlyClient, GladlyError};
    use gladly_wfm::http::Stats;

    // A server that answers 200 and then sends JSON Lines forever.
    let app = axum::Router::new().fallback(|| async {
        let line = bytes::Bytes::from_static(
            br#"{"type":"AGENT_STATUS/LOGGED_IN","timestamp":"2026-11-04T15:00:00Z","content":{"agentId":"A","occurredAt":"2026-11-04T15:00:00Z"}}
"#,
        );
        let endless = futures_util::stream::repeat_with(move || Ok::<_, std::io::Error>(line.clone()));
        axum::body::Body::from_stream(endless)
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let cfg = GladlyConfig {
        base_url: format!("http://{addr}"),
        user: "sim@example.com".into(),
        token: Secret::new(TOKEN),
        requests_per_second: 100,
        reports_per_minute: 600,
        reports_in_flight: 2,
        request_timeout_seconds: 60,
        report_timeout_seconds: 60,
        max_answer_mib: 1,
        day_timeout_minutes: 1.0,
    };
    let client = GladlyClient::new(&cfg, Arc::new(Stats::default()));
    let spool = tempfile::tempdir().unwrap();
    let now = ms("2026-11-04T17:00:00Z");
    let r = client
        .events(now - 3_600_000, now, &["AGENT_STATUS"], spool.path())
        .await;
    match r {
        Err(GladlyError::Body(m)) => {
            assert!(
                m.contains("GET /api/v1/events") && m.contains("cap of 1 MiB"),
                "{m}"
            )
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("an endless answer was accepted"),
    }
    assert_eq!(
        std::fs::read_dir(spool.path()).unwrap().count(),
        0,
        "spool removed"
    );
}
