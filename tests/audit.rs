//! The audit (DESIGN §14): our segments against the simulator's `AgentSummaryV2`, an oracle
//! computed from the world's ground truth, over night shifts and the DST fall-back day.

mod util;

use std::collections::BTreeMap;

use gladly_wfm_sim::generator::Quirks;
use gladly_wfm_sim::wfm::WfmSimConfig;
use serde_json::{Map, Value};
use util::*;

const FIRST_DAY: &str = "no state at midnight: first day in the raw zone";

fn f(r: &Map<String, Value>, k: &str) -> f64 {
    r[k].as_f64().unwrap_or_else(|| panic!("{k} in {r:?}"))
}

/// Every agent-day: within tolerance, or a note names a known cause; the first day's short
/// agents carry the first-day note. Returns the rows by day.
fn audit_rows(root: &std::path::Path) -> BTreeMap<String, Vec<Map<String, Value>>> {
    let rows = dataset(root, "agent_day_audit");
    for (day, rs) in &rows {
        assert!(!rs.is_empty(), "{day}");
        for r in rs {
            let within = r["within_tolerance"].as_bool().unwrap();
            assert!(within || r["note"].is_string(), "{day}: {r:?}");
            let d = f(r, "logged_in_seconds") - f(r, "gladly_logged_in_seconds");
            assert!((d - f(r, "logged_in_diff_seconds")).abs() < 1e-6, "{r:?}");
        }
    }
    rows
}

#[tokio::test(flavor = "multi_thread")]
async fn every_agent_day_agrees_with_gladly_across_night_shifts_and_dst() {
    let s = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "");
    let o = run(
        dir.path(),
        &p,
        NOW,
        &["--from", "2026-10-29", "--to", "2026-11-03"],
    )
    .await;
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.contains("; audit: "), "{o}");
    let root = dir.path().join("output");
    let rows = audit_rows(&root);
    assert_eq!(rows.len(), 6, "{:?}", rows.keys());
    // Only the first day (no look-back in the raw zone) has notes; later days agree exactly
    // up to the tolerance, the DST day too.
    let first = &rows["2026-10-29"];
    assert!(first
        .iter()
        .filter(|r| !r["within_tolerance"].as_bool().unwrap())
        .all(|r| r["note"] == FIRST_DAY && f(r, "logged_in_diff_seconds") < 0.0));
    assert!(
        first.iter().any(|r| r["note"] == FIRST_DAY),
        "a night shift runs into the first day"
    );
    for (day, rs) in rows.iter().skip(1) {
        for r in rs {
            assert!(r["within_tolerance"].as_bool().unwrap(), "{day}: {r:?}");
        }
    }
    assert!(rows["2026-11-01"].len() > 5);
    half_hours_agree_with_segments(&s, &root, &rows).await;
    let m = latest_manifest(&root);
    let a = &m["audit"];
    assert_eq!(a.as_object().unwrap().len(), 6, "{a}");
    assert_eq!(a["2026-11-02"]["drifting"], 0, "{a}");
    assert!(a["2026-10-29"]["explained"].as_u64().unwrap() > 0, "{a}");
    assert!(root.join("raw/agent_summary/date=2026-11-01").exists());

    // The transform alone re-audits from the raw zone, without a request.
    let before = dataset(&root, "agent_day_audit");
    let o = run(
        dir.path(),
        &p,
        NOW,
        &[
            "--from",
            "2026-10-29",
            "--to",
            "2026-11-03",
            "--stages",
            "transform",
        ],
    )
    .await;
    assert_eq!(o.code, 0, "{o}");
    let m = latest_manifest(&root);
    assert_eq!(m["requests"]["gladly"]["requests"], 0, "{}", m["requests"]);
    assert_eq!(dataset(&root, "agent_day_audit"), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_drift_quirk_moves_exactly_one_agent_and_audit_exits_1() {
    let mut w = world(7, 20, NOW);
    w.quirks = Quirks::parse("summary-drift").unwrap();
    let s = start(w, |_| {}, WfmSimConfig::default()).await;
    let agent = s.gladly.world.summary_drift_agent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "");
    let o = run(
        dir.path(),
        &p,
        NOW,
        &["--from", "2026-10-31", "--to", "2026-11-03"],
    )
    .await;
    assert_eq!(o.code, 0, "{o}");
    assert!(
        o.stderr.contains("drift from Gladly's AgentSummaryV2"),
        "{o}"
    );
    let root = dir.path().join("output");
    let rows = dataset(&root, "agent_day_audit");
    let planted = gladly_wfm_sim::summary::SUMMARY_DRIFT_SECONDS;
    let mut drifted_days = 0;
    for (day, rs) in rows.iter().skip(1) {
        for r in rs {
            let within = r["within_tolerance"].as_bool().unwrap();
            if r["agent_id"] == agent.as_str() {
                assert!(!within && r["note"].is_null(), "{day}: {r:?}");
                // The other differences are within the tolerance: the planted one stands out.
                let li = f(r, "logged_in_diff_seconds") + planted;
                let ac = f(r, "active_diff_seconds") + planted;
                assert!(li.abs() < 1e-6 && ac.abs() < 1e-6, "{day}: {r:?}");
                drifted_days += 1;
            } else {
                assert!(within, "{day}: {r:?}");
            }
        }
    }
    assert!(drifted_days >= 2, "{drifted_days}");
    let pf = p.display().to_string();
    let o = bin(dir.path(), &["audit", "--pipeline", &pf, "--now", NOW], &[]).await;
    assert_eq!(o.code, 1, "{o}");
    assert!(o.stdout.contains(&agent), "{o}");
    let o = bin(
        dir.path(),
        &[
            "audit",
            "--pipeline",
            &pf,
            "--now",
            NOW,
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-02",
        ],
        &[],
    )
    .await;
    assert_eq!(o.code, 1, "{o}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_summary_gladly_does_not_serve_leaves_the_day_not_audited() {
    for (answer, reason) in [(400, "400"), (500, "500"), (200, "empty")] {
        let s = start(
            world(7, 20, NOW),
            |c| {
                c.summary_status = Some(answer);
            },
            WfmSimConfig::default(),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline(dir.path(), &s, "", "");
        let o = run(
            dir.path(),
            &p,
            NOW,
            &["--from", "2026-11-02", "--to", "2026-11-02"],
        )
        .await;
        assert_eq!(o.code, 0, "{answer}: {o}");
        assert!(o.stdout.contains("1 day(s) not audited"), "{answer}: {o}");
        let root = dir.path().join("output");
        let m = latest_manifest(&root);
        let why = m["audit"]["2026-11-02"]["not_audited"].as_str().unwrap();
        assert!(why.contains(reason), "{answer}: {why}");
        assert!(dataset(&root, "agent_day_audit").is_empty());
        assert!(!dataset(&root, "agent_status_segments").is_empty());
    }
}

const HALF_HOUR: i64 = 30 * 60_000;

/// (agent, half-hour start in UTC ms) → (logged-in ms, active ms), only where logged in.
type Halves = BTreeMap<(String, i64), (i64, i64)>;

/// The exactness check at a finer grain: the half-hourly summary against our segments cut into
/// half hours, for every day with full look-back (all but the first). New York's offsets are
/// whole hours, so its half hours are UTC's.
async fn half_hours_agree_with_segments(
    s: &Sims,
    root: &std::path::Path,
    audited: &BTreeMap<String, Vec<Map<String, Value>>>,
) {
    let days: Vec<&String> = audited.keys().skip(1).collect();
    let (from, to) = (days[0].as_str(), days[days.len() - 1].as_str());
    let body = serde_json::json!({"metricSet": "AgentSummaryV2", "timezone": TZ,
        "startAt": from, "endAt": to, "aggregationLevel": "halfHourly", "filters": {}});
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/reports", s.gladly_url))
        .json(&body)
        .basic_auth("sim@example.com", Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().await.unwrap();
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let h = rdr.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|c| c == n).unwrap();
    let (a, b, l, ac) = (
        col("Agent ID"),
        col("Time Bucket"),
        col("Logged In Time in seconds"),
        col("Active Time in seconds"),
    );
    let ms = |v: &str| (v.parse::<f64>().unwrap() * 1000.0).round() as i64;
    let mut theirs = Halves::new();
    for rec in rdr.records() {
        let rec = rec.unwrap();
        let at = chrono::DateTime::parse_from_str(&rec[b], "%Y-%m-%dT%H:%M%:z")
            .unwrap()
            .timestamp_millis();
        theirs.insert((rec[a].to_string(), at), (ms(&rec[l]), ms(&rec[ac])));
    }
    let mut ours = Halves::new();
    let segments = dataset(root, "agent_status_segments");
    for d in &days {
        for r in &segments[d.as_str()] {
            let active = match r["state"].as_str().unwrap() {
                _ if r["axis"] != "status" => continue,
                "active" => true,
                "away" => false,
                _ => continue,
            };
            let (mut t, end) = (
                r["start_at"].as_i64().unwrap(),
                r["end_at"].as_i64().unwrap(),
            );
            while t < end {
                let bucket = t.div_euclid(HALF_HOUR) * HALF_HOUR;
                let part = end.min(bucket + HALF_HOUR) - t;
                let e = ours
                    .entry((r["agent_id"].as_str().unwrap().to_string(), bucket))
                    .or_default();
                e.0 += part;
                e.1 += if active { part } else { 0 };
                t += part;
            }
        }
    }
    ours.retain(|_, v| v.0 > 0);
    assert!(theirs.len() > 500, "{} agent-buckets", theirs.len());
    let diff: Vec<_> = theirs
        .iter()
        .filter(|(k, v)| ours.get(*k) != Some(v))
        .chain(ours.iter().filter(|(k, _)| !theirs.contains_key(*k)))
        .take(5)
        .collect();
    assert!(diff.is_empty(), "agent-buckets that differ: {diff:?}");
}

/// The cost, measured from the manifests: a 7-day run with `[audit]` on makes exactly one more
/// report request per complete day than with it off, and otherwise writes the same datasets.
#[tokio::test(flavor = "multi_thread")]
async fn the_audit_costs_one_report_request_a_day_and_changes_nothing_else() {
    let range = ["--from", "2026-10-28", "--to", "2026-11-03"];
    let mut requests = Vec::new();
    let mut roots = Vec::new();
    for enabled in [false, true] {
        let s = start_default(NOW).await;
        let dir = tempfile::tempdir().unwrap();
        let p = pipeline(
            dir.path(),
            &s,
            "",
            &format!("[audit]\nenabled = {enabled}\n"),
        );
        let t = std::time::Instant::now();
        let o = run(dir.path(), &p, NOW, &range).await;
        assert_eq!(o.code, 0, "{o}");
        let m = latest_manifest(&dir.path().join("output"));
        let n = m["requests"]["gladly"]["requests"].as_u64().unwrap();
        eprintln!(
            "audit enabled = {enabled}: {n} Gladly requests for 7 days, {:.1} s wall",
            t.elapsed().as_secs_f64()
        );
        assert_eq!(m.get("audit").is_some(), enabled, "{m}");
        requests.push(n);
        roots.push(dir);
    }
    assert_eq!(requests[1], requests[0] + 7, "{requests:?}");
    let (a, b) = (
        roots[0].path().join("output"),
        roots[1].path().join("output"),
    );
    for d in [
        "agent_status_events",
        "agent_status_segments",
        "conversations",
        "work_sessions",
        "workstream_intervals",
    ] {
        assert_eq!(dataset(&a, d), dataset(&b, d), "{d}");
    }
    assert!(dataset(&a, "agent_day_audit").is_empty());
    assert_eq!(dataset(&b, "agent_day_audit").len(), 7);
}
