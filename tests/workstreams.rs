//! Workstream data against the simulator's ground truth: interval totals (15 and 30 minutes),
//! a session that ends after its window counted once after the next run, conversations per
//! day, and the receiver's conversations and intervals after a run and a re-run.

mod util;

use std::collections::{BTreeMap, BTreeSet};

use gladly_wfm_sim::wfm::Kind;
use regex::Regex;
use serde_json::{Map, Value};
use util::*;

type Key = (Option<String>, String, i64);
type Totals = (i64, i64, i64, f64, f64);
/// offered, handled and within-SLA contact sessions; handle and after-contact seconds.
type Sets = (
    BTreeSet<String>,
    BTreeSet<String>,
    BTreeSet<String>,
    f64,
    f64,
);

/// Interval totals computed from the ground-truth dump, for sessions created on `days`.
fn truth_intervals(dir: &std::path::Path, days: &[&str], minutes: i64) -> BTreeMap<Key, Totals> {
    let inboxes: Vec<Value> =
        serde_json::from_slice(&std::fs::read(dir.join("inboxes.json")).unwrap()).unwrap();
    let rules = [
        ("Customer_Support", "Customer_Support|VIP Care"),
        ("Support, catch-all", ".*Support.*"),
    ]
    .map(|(n, p)| (n, Regex::new(&format!("^(?:{p})$")).unwrap()));
    let ws_of = |inbox: &str| -> Option<String> {
        let i = inboxes.iter().find(|i| i["id"] == inbox)?;
        let name = i["name"].as_str().unwrap();
        rules
            .iter()
            .find(|(_, r)| r.is_match(inbox) || r.is_match(name))
            .map(|(n, _)| n.to_string())
    };
    let tz: chrono_tz::Tz = TZ.parse().unwrap();
    let mut sets: BTreeMap<Key, Sets> = BTreeMap::new();
    for l in std::fs::read_to_string(dir.join("work_sessions.jsonl"))
        .unwrap()
        .lines()
    {
        let v: Value = serde_json::from_str(l).unwrap();
        if v["ended"] != true {
            continue;
        }
        let created = ms(v["contact_session_created_at"].as_str().unwrap());
        if !days.contains(&gladly_wfm::time::day_of(tz, created).to_string().as_str()) {
            continue;
        }
        let step = minutes * 60_000;
        let key = (
            ws_of(v["inbox_id"].as_str().unwrap()),
            v["channel"].as_str().unwrap().to_string(),
            created.div_euclid(step) * step,
        );
        let e = sets.entry(key).or_default();
        let cs = v["contact_session_id"].as_str().unwrap().to_string();
        e.0.insert(cs.clone());
        if !v["agent_accepted_at"].is_null() {
            e.1.insert(cs.clone());
        }
        if v["within_sla"] == true {
            e.2.insert(cs);
        }
        e.3 += v["work_session_handle_time_sec"].as_f64().unwrap();
        e.4 += v["work_session_after_contact_time_sec"].as_f64().unwrap();
    }
    sets.into_iter()
        .map(|(k, (o, h, w, ht, acw))| {
            (k, (o.len() as i64, h.len() as i64, w.len() as i64, ht, acw))
        })
        .collect()
}

/// The pipeline's interval totals in the partitions of `days`.
fn pipeline_intervals(root: &std::path::Path, days: &[&str]) -> BTreeMap<Key, Totals> {
    let mut out = BTreeMap::new();
    for (day, rows) in dataset(root, "workstream_intervals") {
        if !days.contains(&day.as_str()) {
            continue;
        }
        for r in rows {
            let key = (
                r["workstream"].as_str().map(String::from),
                r["channel"].as_str().unwrap().to_string(),
                r["interval_start"].as_i64().unwrap(),
            );
            let t = (
                r["offered"].as_i64().unwrap(),
                r["handled"].as_i64().unwrap(),
                r["within_sla"].as_i64().unwrap(),
                r["handle_time_seconds"].as_f64().unwrap(),
                r["after_contact_time_seconds"].as_f64().unwrap(),
            );
            assert!(
                out.insert(key, t).is_none(),
                "one row per workstream × channel × interval"
            );
        }
    }
    out
}

fn assert_totals_equal(got: &BTreeMap<Key, Totals>, want: &BTreeMap<Key, Totals>) {
    let (g, w): (BTreeSet<_>, BTreeSet<_>) = (got.keys().collect(), want.keys().collect());
    assert!(
        g == w,
        "intervals only in the pipeline: {:?}; only in the ground truth: {:?}",
        g.difference(&w).take(5).collect::<Vec<_>>(),
        w.difference(&g).take(5).collect::<Vec<_>>()
    );
    for (k, g) in got {
        let w = want[k];
        assert_eq!((g.0, g.1, g.2), (w.0, w.1, w.2), "{k:?}");
        assert!(
            (g.3 - w.3).abs() < 0.01 && (g.4 - w.4).abs() < 0.01,
            "{k:?}: {g:?} vs {w:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_totals_equal_ground_truth_at_15_and_30_minutes() {
    let s = start_default(NOW).await;
    let base = tempfile::tempdir().unwrap();
    let truth = base.path().join("truth");
    s.gladly.dump(&truth).unwrap();
    let days = ["2026-10-31", "2026-11-01", "2026-11-02"];
    for minutes in [15, 30] {
        let dir = base.path().join(format!("m{minutes}"));
        std::fs::create_dir_all(&dir).unwrap();
        let p = pipeline(&dir, &s, "", &format!("interval_minutes = {minutes}"));
        let o = run(
            &dir,
            &p,
            NOW,
            &[
                "--from",
                days[0],
                "--to",
                days[2],
                "--stages",
                "extract,transform",
            ],
        )
        .await;
        assert_eq!(o.code, 0, "{o}");
        let got = pipeline_intervals(&dir.join("output"), &days);
        assert!(got.len() > 50);
        assert!(
            got.keys().all(|k| k.2 % (minutes * 60_000) == 0),
            "aligned in UTC"
        );
        assert_totals_equal(&got, &truth_intervals(&truth, &days, minutes));
        let rows = dataset(&dir.join("output"), "workstream_intervals");
        assert!(rows
            .values()
            .flatten()
            .all(|r| r["interval_minutes"].as_i64() == Some(minutes)));
    }
    // work_sessions: Gladly's columns with _sec renamed, plus workstream; flags are booleans.
    let cols = columns(
        &base.path().join("m15/output"),
        "work_sessions",
        "2026-11-01",
    );
    assert!(
        cols.contains(&"work_session_handle_time_seconds".to_string())
            && cols.contains(&"workstream".to_string()),
        "{cols:?}"
    );
    assert!(!cols.iter().any(|c| c.ends_with("_sec")));
    let ws = dataset(&base.path().join("m15/output"), "work_sessions");
    assert!(ws["2026-11-01"]
        .iter()
        .all(|r| r["within_sla"].is_boolean()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ending_after_its_window_is_counted_once_after_the_next_run() {
    // The nightly run for 2026-11-02 at 00:30 the next morning: some sessions created late that
    // day are still open (long calls), and are not stored yet.
    let early = "2026-11-03T05:30:00Z";
    let a = start_default(early).await;
    let late: Vec<Value> = {
        let d = tempfile::tempdir().unwrap();
        start_default(NOW).await.gladly.dump(d.path()).unwrap();
        std::fs::read_to_string(d.path().join("work_sessions.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| {
                ms(v["contact_session_created_at"].as_str().unwrap()) < ms("2026-11-03T05:00:00Z")
                    && ms(v["contact_session_created_at"].as_str().unwrap())
                        >= ms("2026-11-02T05:00:00Z")
                    && ms(v["contact_session_ended_at"].as_str().unwrap()) > ms(early)
            })
            .collect()
    };
    assert!(
        !late.is_empty(),
        "the fixture has sessions of 2026-11-02 ending after the first run"
    );
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &a, "", "");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("report_lag_minutes = 120", "report_lag_minutes = 0");
    std::fs::write(&p, text).unwrap();
    assert_eq!(
        run(
            dir.path(),
            &p,
            early,
            &["--from", "2026-11-02", "--to", "2026-11-02"]
        )
        .await
        .code,
        0
    );
    let offered = |root: &std::path::Path| -> i64 {
        dataset(root, "workstream_intervals")["2026-11-02"]
            .iter()
            .map(|r| r["offered"].as_i64().unwrap())
            .sum()
    };
    let first = offered(&dir.path().join("output"));
    // The next night: the next day's run sees the sessions that have ended since.
    let next = "2026-11-04T05:30:00Z";
    let b = start_default(next).await;
    let truth = dir.path().join("truth");
    b.gladly.dump(&truth).unwrap();
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace(&a.gladly_url, &b.gladly_url)
        .replace(&a.wfm_url, &b.wfm_url);
    std::fs::write(&p, text).unwrap();
    let o = run(
        dir.path(),
        &p,
        next,
        &["--from", "2026-11-03", "--to", "2026-11-03"],
    )
    .await;
    assert_eq!(o.code, 0, "{o}");
    let second = offered(&dir.path().join("output"));
    assert!(
        second > first,
        "late sessions added to 2026-11-02: {first} → {second}"
    );
    let got = pipeline_intervals(&dir.path().join("output"), &["2026-11-02"]);
    assert_totals_equal(&got, &truth_intervals(&truth, &["2026-11-02"], 15));
    // …and pushed: the receiver's intervals for 2026-11-02 match the dataset.
    let stored: i64 = b
        .wfm
        .store()
        .kind(Kind::Intervals)
        .iter()
        .filter(|r| ms(r["intervalStart"].as_str().unwrap()) < ms("2026-11-03T05:00:00Z"))
        .map(|r| r["offered"].as_i64().unwrap())
        .sum();
    // Every interval is pushed, an unmatched inbox's with a null workstream (DESIGN §8).
    let pushed: i64 = got.values().map(|t| t.0).sum();
    assert_eq!(
        stored,
        pushed,
        "{}",
        latest_manifest(&dir.path().join("output"))["wfm"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_per_day_and_the_receiver_after_a_run_and_a_rerun() {
    let s = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    let truth = dir.path().join("truth");
    s.gladly.dump(&truth).unwrap();
    let p = pipeline(dir.path(), &s, "", "");
    let range = ["--from", "2026-11-01", "--to", "2026-11-04"];
    let o = run(dir.path(), &p, NOW, &range).await;
    assert_eq!(o.code, 0, "{o}");
    let root = dir.path().join("output");
    let convs = dataset(&root, "conversations");
    // One row per conversation with an event that day; reopenings counted.
    let tz: chrono_tz::Tz = TZ.parse().unwrap();
    let mut ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut reopened: BTreeMap<String, i64> = BTreeMap::new();
    for l in std::fs::read_to_string(truth.join("events.jsonl"))
        .unwrap()
        .lines()
    {
        let v: Value = serde_json::from_str(l).unwrap();
        let t = v["type"].as_str().unwrap();
        if !(t.starts_with("CONVERSATION/") || t == "CONVERSATION_ASSIGNEE/UPDATED") {
            continue;
        }
        let day = gladly_wfm::time::day_of(tz, ms(v["timestamp"].as_str().unwrap())).to_string();
        ids.entry(day.clone())
            .or_default()
            .insert(v["content"]["conversationId"].as_str().unwrap().to_string());
        if t == "CONVERSATION/REOPENED" {
            *reopened.entry(day).or_default() += 1;
        }
    }
    for d in ["2026-11-02", "2026-11-03"] {
        let got: BTreeSet<String> = convs[d]
            .iter()
            .map(|r| r["conversation_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, ids[d], "{d}");
        let r: i64 = convs[d]
            .iter()
            .map(|r| r["reopened_count"].as_i64().unwrap())
            .sum();
        assert_eq!(r, reopened.get(d).copied().unwrap_or(0), "{d}");
        // A closed conversation has its close time; conversations created that day have it.
        assert!(
            convs[d].iter().any(|r| !r["closed_at"].is_null())
                && convs[d].iter().any(|r| r["closed_at"].is_null())
        );
        assert!(
            convs[d]
                .iter()
                .filter(|r| !r["created_at"].is_null())
                .count()
                * 2
                > convs[d].len()
        );
        assert!(convs[d].iter().all(
            |r| !r["inbox_id"].is_null() && !r["agent_id"].is_null() || r["agent_id"].is_null()
        ));
    }
    let cs = convs["2026-11-02"]
        .iter()
        .find(|r| r["inbox_name"] == "Customer_Support")
        .unwrap();
    assert_eq!(cs["workstream"], "Customer_Support");
    // The receiver: exactly one record per conversation and day, and per keyed interval.
    let store = s.wfm.store();
    let want: BTreeSet<String> = convs
        .iter()
        .flat_map(|(d, rows)| {
            rows.iter()
                .map(move |r| format!("{}:{d}", r["conversation_id"].as_str().unwrap()))
        })
        .collect();
    let got: Vec<String> = store
        .kind(Kind::Conversations)
        .iter()
        .map(|r| r["externalId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got.len(), want.len());
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), want);
    // Every interval row is pushed, those of unmatched inboxes with a null workstream
    // (DESIGN §8), and the summary counts them as unmatched volume.
    let rows: Vec<Map<String, Value>> = dataset(&root, "workstream_intervals")
        .into_values()
        .flatten()
        .collect();
    let stored = store.kind(Kind::Intervals);
    assert_eq!(stored.len(), rows.len());
    let unmatched_rows = rows.iter().filter(|r| r["workstream"].is_null()).count();
    assert!(unmatched_rows > 0, "the world has an inbox no rule matches");
    let unmatched_stored: Vec<&Value> = stored
        .iter()
        .filter(|r| r["workstream"].is_null())
        .collect();
    assert_eq!(unmatched_stored.len(), unmatched_rows);
    let offered = |it: &mut dyn Iterator<Item = i64>| it.sum::<i64>();
    assert_eq!(
        offered(
            &mut unmatched_stored
                .iter()
                .map(|r| r["offered"].as_i64().unwrap())
        ),
        offered(
            &mut rows
                .iter()
                .filter(|r| r["workstream"].is_null())
                .map(|r| r["offered"].as_i64().unwrap())
        )
    );
    let m = latest_manifest(&root);
    assert_eq!(
        m["wfm"]["intervals"]["unmatched_workstream"].as_u64(),
        Some(unmatched_rows as u64),
        "{}",
        m["wfm"]["intervals"]
    );
    // A re-run of the same range leaves the receiver as it was.
    let before = (
        sorted(store.kind(Kind::Conversations)),
        sorted(store.kind(Kind::Intervals)),
    );
    assert_eq!(run(dir.path(), &p, NOW, &range).await.code, 0);
    let after = s.wfm.store();
    assert_eq!(
        before,
        (
            sorted(after.kind(Kind::Conversations)),
            sorted(after.kind(Kind::Intervals))
        )
    );
}
