//! The binary against the simulators over real HTTP: which API serves which day, datasets and
//! their schemas read back by the arrow-rs `parquet` crate, segments against the simulator's
//! ground truth, re-runs, configuration errors, and credentials.

mod util;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use regex::Regex;
use serde_json::{Map, Value};
use util::*;

type Rows = Vec<Map<String, Value>>;

fn out(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("output")
}

fn strip(rows: &Rows, drop: &[&str]) -> Vec<Map<String, Value>> {
    rows.iter()
        .map(|r| {
            r.iter()
                .filter(|(k, _)| !drop.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_days_from_reports_today_from_events_api_and_datasets_read_back() {
    let s = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "");
    let o = run(
        dir.path(),
        &p,
        NOW,
        &["--from", "2026-10-31", "--to", "2026-11-04"],
    )
    .await;
    assert_eq!(o.code, 0, "{o}");
    // Which API served which day: reports for complete days, the Events API for today only.
    let log = s.gladly.requests();
    let report_days: BTreeSet<String> = log
        .iter()
        .filter(|r| r.path == "/api/v1/reports")
        .map(|r| {
            serde_json::from_str::<Value>(&r.body).unwrap()["startAt"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        report_days,
        ["2026-10-31", "2026-11-01", "2026-11-02", "2026-11-03"]
            .map(String::from)
            .into()
    );
    let events: Vec<_> = log
        .iter()
        .filter(|r| r.path == "/api/v1/events" && r.query.contains("AGENT_STATUS"))
        .collect();
    assert_eq!(events.len(), 1);
    assert!(
        events[0]
            .query
            .contains("startAt=2026-11-04T05%3A00%3A00.000Z"),
        "{}",
        events[0].query
    );
    assert!(
        log.iter().all(|r| r.status == 200),
        "no 429s: the client keeps to the limits: {:?}",
        log.iter().filter(|r| r.status != 200).collect::<Vec<_>>()
    );

    let root = out(dir.path());
    let ev = dataset(&root, "agent_status_events");
    assert_eq!(
        ev.keys().cloned().collect::<Vec<_>>(),
        vec![
            "2026-10-31",
            "2026-11-01",
            "2026-11-02",
            "2026-11-03",
            "2026-11-04"
        ]
    );
    let cols = columns(&root, "agent_status_events", "2026-11-02");
    assert_eq!(
        cols,
        [
            "event_id",
            "event_type",
            "agent_id",
            "agent_email",
            "occurred_at",
            "recorded_at",
            "away_reason",
            "active_reason",
            "available_for",
            "label",
            "task",
            "source"
        ]
    );
    let seg = dataset(&root, "agent_status_segments");
    let cols = columns(&root, "agent_status_segments", "2026-11-02");
    assert_eq!(
        cols,
        [
            "agent_id",
            "agent_email",
            "axis",
            "state",
            "label",
            "task",
            "start_at",
            "end_at",
            "duration_seconds",
            "opened_by"
        ]
    );
    let agents = dataset(&root, "agents");
    assert_eq!(
        agents.keys().cloned().collect::<Vec<_>>(),
        vec!["2026-11-04"]
    );
    let cols = columns(&root, "agents", "2026-11-04");
    assert_eq!(
        cols,
        [
            "agent_id",
            "name",
            "email",
            "email_normalized",
            "team_ids",
            "snapshot_at"
        ]
    );
    let inboxes = dataset(&root, "inboxes");
    let cols = columns(&root, "inboxes", "2026-11-04");
    assert_eq!(
        cols,
        ["inbox_id", "name", "disabled", "workstream", "snapshot_at"]
    );
    // An inbox matched by two rules goes to the first; a disabled inbox is kept.
    let cs = inboxes["2026-11-04"]
        .iter()
        .find(|r| r["name"] == "Customer_Support")
        .unwrap();
    assert_eq!(cs["workstream"], "Customer_Support");
    assert!(inboxes["2026-11-04"].iter().any(|r| r["disabled"] == true));

    // Timestamps are timestamp[ms, UTC]; statistics are written; rows are sorted by key.
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let f = std::fs::File::open(root.join("agent_status_segments/date=2026-11-02/part-0.parquet"))
        .unwrap();
    let r = SerializedFileReader::new(f).unwrap();
    let schema = r.metadata().file_metadata().schema_descr();
    let start = schema
        .columns()
        .iter()
        .find(|c| c.name() == "start_at")
        .unwrap();
    let lt = format!("{:?}", start.logical_type());
    assert!(
        lt.contains("is_adjusted_to_u_t_c: true") && lt.contains("MILLIS"),
        "{lt}"
    );
    assert!(r.metadata().row_group(0).column(0).statistics().is_some());
    // Plain Arrow types in the embedded schema of every file (DESIGN §7): no view types, which
    // pandas' default backend and older pyarrow cannot read; text is `string`, lists
    // `list<string>`, times `timestamp[ms, UTC]`.
    let mut seen = std::collections::BTreeSet::new();
    for f in files(&root).into_iter().filter(|f| {
        f.extension().is_some_and(|e| e == "parquet") && !f.starts_with(root.join("raw"))
    }) {
        for field in arrow_schema(&f).schema().fields() {
            let t = format!("{:?}", field.data_type());
            assert!(
                !t.contains("View") && !t.contains("Large"),
                "{}: {} is {t}",
                f.display(),
                field.name()
            );
            seen.insert(t);
        }
    }
    for want in [
        "Utf8",
        "Timestamp(Millisecond, Some(\"UTC\"))",
        "Float64",
        "Boolean",
    ] {
        assert!(seen.contains(want), "{want} not among {seen:?}");
    }
    assert!(
        seen.iter()
            .any(|t| t.starts_with("List(") && t.contains("Utf8")),
        "{seen:?}"
    );
    for rows in ev.values() {
        let ids: Vec<&str> = rows
            .iter()
            .map(|r| r["event_id"].as_str().unwrap())
            .collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "events sorted by event_id, no duplicates"
        );
    }
    for rows in seg.values() {
        let keys: Vec<(String, String, i64)> = rows
            .iter()
            .map(|r| {
                (
                    r["agent_id"].as_str().unwrap().into(),
                    r["axis"].as_str().unwrap().into(),
                    r["start_at"].as_i64().unwrap(),
                )
            })
            .collect();
        assert!(
            keys.windows(2).all(|w| w[0] <= w[1]),
            "segments sorted by key"
        );
    }

    // Agents missing from /agents: their events are kept, with a null e-mail.
    let listed: BTreeSet<&str> = agents["2026-11-04"]
        .iter()
        .map(|r| r["agent_id"].as_str().unwrap())
        .collect();
    let unlisted: Vec<_> = ev["2026-11-02"]
        .iter()
        .filter(|r| !listed.contains(r["agent_id"].as_str().unwrap()))
        .collect();
    assert!(!unlisted.is_empty());
    assert!(unlisted.iter().all(|r| r["agent_email"].is_null()));
    // E-mails are normalised.
    assert!(ev["2026-11-02"]
        .iter()
        .filter_map(|r| r["agent_email"].as_str())
        .all(|e| e == e.trim().to_lowercase()));
    // Sources as planned; focus events only from the Events API.
    assert!(ev["2026-11-02"].iter().all(|r| r["source"] == "report"));
    assert!(ev["2026-11-04"].iter().all(|r| r["source"] == "events_api"));
    assert!(ev["2026-11-04"]
        .iter()
        .any(|r| r["label"] == "FOCUS_ENTERED"));
    assert!(!ev["2026-11-02"]
        .iter()
        .any(|r| r["label"] == "FOCUS_ENTERED"));
    // Today is incomplete: some segments are still open; complete days have none open.
    assert!(seg["2026-11-04"].iter().any(|r| r["end_at"].is_null()));
    assert!(seg["2026-11-03"].iter().all(|r| !r["end_at"].is_null()));
    // Unmatched labels are counted in the manifest, rows are kept with a null task.
    let m = latest_manifest(&root);
    assert_eq!(m["outcome"], "ok");
    assert!(
        m["unmatched_labels"]["Coaching 1:1"].as_u64().unwrap() > 0,
        "{}",
        m["unmatched_labels"]
    );
    assert!(ev["2026-11-02"]
        .iter()
        .any(|r| r["label"] == "Coaching 1:1" && r["task"].is_null()));
    assert_eq!(m["agent_event_sources"]["2026-11-04"], "events_api");
    assert_eq!(
        m["rows"]["agent_status_events"]["2026-11-02"]
            .as_u64()
            .unwrap() as usize,
        ev["2026-11-02"].len()
    );
    assert!(m["requests"]["gladly"]["requests"].as_u64().unwrap() >= 9);
    assert_no_secrets(&root, &[&o.stdout, &o.stderr]);

    // The DST day (25 hours): an agent whose state carries in from the day before covers it whole.
    let day = &seg["2026-11-01"];
    let ds = ms("2026-11-01T04:00:00Z");
    let de = ms("2026-11-02T05:00:00Z");
    let mut cover: HashMap<(String, String), (i64, i64, f64)> = HashMap::new();
    for r in day {
        let k = (
            r["agent_id"].as_str().unwrap().to_string(),
            r["axis"].as_str().unwrap().to_string(),
        );
        let e = cover.entry(k).or_insert((i64::MAX, 0, 0.0));
        e.0 = e.0.min(r["start_at"].as_i64().unwrap());
        e.1 = e.1.max(r["end_at"].as_i64().unwrap());
        e.2 += r["duration_seconds"].as_f64().unwrap();
    }
    let whole: Vec<_> = cover.values().filter(|(s, _, _)| *s == ds).collect();
    assert!(!whole.is_empty());
    for (_, e, total) in whole {
        assert_eq!(*e, de);
        assert!((total - 25.0 * 3600.0).abs() < 1e-6, "{total}");
    }
    // A shift across midnight: the segment open at midnight is cut, and continues the next day.
    let mut cuts = 0;
    for (day, next, midnight) in [
        ("2026-11-01", "2026-11-02", "2026-11-02T05:00:00Z"),
        ("2026-11-02", "2026-11-03", "2026-11-03T05:00:00Z"),
        ("2026-11-03", "2026-11-04", "2026-11-04T05:00:00Z"),
    ] {
        let m = ms(midnight);
        for c in seg[day].iter().filter(|r| {
            r["end_at"].as_i64() == Some(m) && r["axis"] == "status" && r["state"] != "logged_out"
        }) {
            cuts += 1;
            assert!(
                seg[next]
                    .iter()
                    .any(|r| r["opened_by"] == c["opened_by"] && r["start_at"].as_i64() == Some(m)),
                "{c:?} continues on {next}"
            );
        }
    }
    assert!(cuts > 0, "some shift spans midnight");

    // The same range again: identical row content (snapshot times aside), no duplicate files.
    let before: Vec<_> = ["agent_status_events", "agent_status_segments"]
        .iter()
        .map(|d| dataset(&root, d))
        .collect();
    let o = run(
        dir.path(),
        &p,
        NOW,
        &["--from", "2026-10-31", "--to", "2026-11-04"],
    )
    .await;
    assert_eq!(o.code, 0, "{o}");
    let after: Vec<_> = ["agent_status_events", "agent_status_segments"]
        .iter()
        .map(|d| dataset(&root, d))
        .collect();
    assert_eq!(before, after);
    assert!(util::files(&root)
        .iter()
        .all(|f| !f.to_string_lossy().contains(".tmp-")));
}

/// One event from the ground truth, parsed independently of the pipeline's decoder.
struct Truth {
    etype: String,
    agent: String,
    occurred: i64,
    recorded: i64,
    label: String,
}

fn truth_events(dir: &std::path::Path) -> Vec<Truth> {
    let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    let mut out = Vec::new();
    for l in text.lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        let t = v["type"].as_str().unwrap().to_string();
        let c = &v["content"];
        if !(t.starts_with("AGENT_STATUS/") || t == "AGENT_AVAILABILITY/UPDATED") {
            continue;
        }
        let label = match t.as_str() {
            "AGENT_STATUS/WENT_AWAY" => c["awayReason"]["name"]
                .as_str()
                .unwrap_or("WENT_AWAY")
                .to_string(),
            "AGENT_STATUS/CHANGED_ACTIVE_REASON" => format!(
                "ActiveReason:{}",
                c["activeReason"]["name"].as_str().unwrap_or("")
            ),
            "AGENT_AVAILABILITY/UPDATED" => {
                let mut ch: Vec<&str> = c["availableFor"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap())
                    .collect();
                ch.sort();
                if ch.is_empty() {
                    "Unavailable".into()
                } else {
                    format!("AvailableFor:{}", ch.join(","))
                }
            }
            other => other.trim_start_matches("AGENT_STATUS/").to_string(),
        };
        out.push(Truth {
            agent: c["agentId"].as_str().unwrap().to_string(),
            occurred: ms(c["occurredAt"].as_str().unwrap()),
            recorded: ms(v["timestamp"].as_str().unwrap()),
            etype: t,
            label,
        });
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_task_seconds_equal_ground_truth() {
    let s = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    let truth_dir = dir.path().join("truth");
    s.gladly.dump(&truth_dir).unwrap();
    let p = pipeline(dir.path(), &s, "", "");
    let o = run(
        dir.path(),
        &p,
        NOW,
        &[
            "--from",
            "2026-10-31",
            "--to",
            "2026-11-03",
            "--stages",
            "extract,transform",
        ],
    )
    .await;
    assert_eq!(o.code, 0, "{o}");
    let seg = dataset(&out(dir.path()), "agent_status_segments");
    let mut got: BTreeMap<(String, String, String), i64> = BTreeMap::new();
    let mut starts = BTreeSet::new();
    for (day, rows) in &seg {
        for r in rows {
            let task = r["task"].as_str().unwrap_or("(none)").to_string();
            let secs = r["duration_seconds"].as_f64().unwrap();
            // DESIGN §5: no piece of zero duration, so no two pieces of one agent and axis
            // share a start.
            assert!(secs > 0.0, "zero-length piece on {day}: {r:?}");
            assert!(
                starts.insert((
                    r["agent_id"].as_str().unwrap().to_string(),
                    r["axis"].as_str().unwrap().to_string(),
                    r["start_at"].as_i64().unwrap()
                )),
                "two pieces share a start: {r:?}"
            );
            *got.entry((day.clone(), r["agent_id"].as_str().unwrap().into(), task))
                .or_default() += (secs * 1000.0).round() as i64;
        }
    }
    // Expected, from the ground truth by the documented rules alone (DESIGN §6–7): an event
    // belongs to the day of its recorded `timestamp` and starts at its `occurredAt` clamped into
    // that day; its state lasts until the agent's next event on the same axis; cut into the
    // range's days. Only events recorded inside the range count (no state before it).
    let rules: Vec<(String, Regex)> = [
        ("Logged In", "LOGGED_IN"),
        ("Logged Out", "LOGGED_OUT"),
        ("Away", "Break|Lunch|Meeting|Other|WENT_AWAY"),
        ("Returned", "RETURNED_FROM_AWAY"),
        ("Availability", "AvailableFor:.*|Unavailable"),
        ("Any availability", "AvailableFor:.*"),
    ]
    .iter()
    .map(|(n, p)| (n.to_string(), Regex::new(&format!("^(?:{p})$")).unwrap()))
    .collect();
    let tz: chrono_tz::Tz = TZ.parse().unwrap();
    let days: Vec<chrono::NaiveDate> = ["2026-10-31", "2026-11-01", "2026-11-02", "2026-11-03"]
        .iter()
        .map(|d| d.parse().unwrap())
        .collect();
    let bounds = |d: chrono::NaiveDate| {
        (
            gladly_wfm::time::day_start(tz, d),
            gladly_wfm::time::day_end(tz, d),
        )
    };
    let (lo, hi) = (bounds(days[0]).0, bounds(days[3]).1);
    let mut by: BTreeMap<(String, bool), Vec<(i64, Truth)>> = BTreeMap::new();
    let mut across_midnight = 0;
    for t in truth_events(&truth_dir) {
        if t.recorded >= lo && t.recorded < hi {
            let (s, e) = bounds(gladly_wfm::time::day_of(tz, t.recorded));
            across_midnight += usize::from(t.occurred < s);
            by.entry((t.agent.clone(), t.etype.starts_with("AGENT_STATUS/")))
                .or_default()
                .push((t.occurred.clamp(s, e), t));
        }
    }
    assert!(
        across_midnight >= 3,
        "the world has events that occur before a midnight and are recorded after it"
    );
    let mut want: BTreeMap<(String, String, String), i64> = BTreeMap::new();
    for ((agent, _), mut evs) in by {
        evs.sort_by_key(|(start, e)| (*start, e.occurred, e.recorded));
        for i in 0..evs.len() {
            let start = evs[i].0;
            let end = evs.get(i + 1).map(|n| n.0).unwrap_or(hi);
            let task = rules
                .iter()
                .find(|(_, r)| r.is_match(&evs[i].1.label))
                .map(|(n, _)| n.clone())
                .unwrap_or("(none)".into());
            for d in &days {
                let (s, e) = bounds(*d);
                let overlap = end.min(e) - start.max(s);
                if overlap > 0 {
                    *want
                        .entry((d.to_string(), agent.clone(), task.clone()))
                        .or_default() += overlap;
                }
            }
        }
    }
    let keys: BTreeSet<_> = got.keys().chain(want.keys()).cloned().collect();
    assert!(keys.len() > 100);
    for k in keys {
        let (g, w) = (
            got.get(&k).copied().unwrap_or(0),
            want.get(&k).copied().unwrap_or(0),
        );
        assert_eq!(g, w, "{k:?}: pipeline {g} ms, ground truth {w} ms");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_read_from_either_api_gives_identical_events_and_segments() {
    // Day 2026-11-03 read as "today" at 22:30 local (Events API), and three days later (report).
    let late_evening = "2026-11-04T03:30:00Z";
    let a = start_default(late_evening).await;
    let b = start_default("2026-11-06T17:00:00Z").await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let pa = pipeline(da.path(), &a, "", "");
    let pb = pipeline(db.path(), &b, "", "");
    let range = [
        "--from",
        "2026-11-03",
        "--to",
        "2026-11-03",
        "--stages",
        "extract,transform",
    ];
    assert_eq!(run(da.path(), &pa, late_evening, &range).await.code, 0);
    assert_eq!(
        run(db.path(), &pb, "2026-11-06T17:00:00Z", &range)
            .await
            .code,
        0
    );
    assert!(a
        .gladly
        .requests()
        .iter()
        .any(|r| r.path == "/api/v1/events"));
    assert!(!b
        .gladly
        .requests()
        .iter()
        .any(|r| r.path == "/api/v1/events"));
    let cutoff = ms(late_evening);
    let ev_a = dataset(&out(da.path()), "agent_status_events")
        .remove("2026-11-03")
        .unwrap();
    let ev_b = dataset(&out(db.path()), "agent_status_events")
        .remove("2026-11-03")
        .unwrap();
    let ev_a: Vec<_> = strip(&ev_a, &["source"])
        .into_iter()
        .filter(|r| !r["label"].as_str().unwrap().starts_with("FOCUS_"))
        .collect();
    let ev_b: Vec<_> = strip(&ev_b, &["source"])
        .into_iter()
        .filter(|r| r["recorded_at"].as_i64().unwrap() < cutoff)
        .collect();
    assert!(ev_a.len() > 100);
    assert_eq!(ev_a, ev_b);
    let sa = dataset(&out(da.path()), "agent_status_segments")
        .remove("2026-11-03")
        .unwrap();
    let sb = dataset(&out(db.path()), "agent_status_segments")
        .remove("2026-11-03")
        .unwrap();
    let closed: Vec<_> = sa.iter().filter(|r| !r["end_at"].is_null()).collect();
    assert!(closed.len() > 100);
    for r in closed {
        assert!(sb.contains(r), "segment {r:?} differs between the two APIs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_exit_2_naming_the_culprit_and_fetch_nothing() {
    let s = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "");
    let good = std::fs::read_to_string(&p).unwrap();
    let cases: Vec<(&str, String, Vec<&str>, &str)> = vec![
        (
            "invalid regex",
            good.replace("\"RETURNED_FROM_AWAY\"", "\"RETURNED_(FROM\""),
            vec![],
            "tasks[4] \"Returned\"",
        ),
        (
            "unknown key",
            good.replace("settle_days = 0", "settle_day = 0"),
            vec![],
            "settle_day",
        ),
        (
            "missing variable",
            good.replace("${GLADLY_API_TOKEN}", "${NOT_SET_ANYWHERE}"),
            vec![],
            "NOT_SET_ANYWHERE",
        ),
        (
            "unknown timezone",
            good.replace(TZ, "Atlantis/Capital"),
            vec![],
            "Atlantis/Capital",
        ),
        (
            "plain http to a remote host",
            good.replace(&s.gladly_url, "http://acme.gladly.com"),
            vec![],
            "https",
        ),
        (
            "--from after --to",
            good.clone(),
            vec!["--from", "2026-11-03", "--to", "2026-11-01"],
            "--from 2026-11-03 is after --to",
        ),
        (
            "bad date",
            good.clone(),
            vec!["--from", "2026-13-01", "--to", "2026-11-01"],
            "2026-13-01",
        ),
    ];
    for (what, text, extra, needle) in cases {
        std::fs::write(&p, &text).unwrap();
        let o = run(dir.path(), &p, NOW, &extra).await;
        assert_eq!(o.code, 2, "{what}: {o}");
        let all = format!("{}{}", o.stdout, o.stderr);
        assert!(
            all.contains(needle),
            "{what}: message should name `{needle}`: {o}"
        );
        if what != "--from after --to" && what != "bad date" {
            assert!(
                all.contains("pipeline.toml:"),
                "{what}: names the file and line: {o}"
            );
        }
    }
    assert!(s.gladly.requests().is_empty(), "no request reached Gladly");
    assert!(s.wfm.requests().is_empty(), "no request reached the WFM");
    // The line is right: the unknown key is on line 3.
    std::fs::write(&p, good.replace("settle_days = 0", "settle_day = 0")).unwrap();
    let o = run(dir.path(), &p, NOW, &[]).await;
    assert!(o.stderr.contains("pipeline.toml:3:"), "{o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_exit_4_and_are_never_printed() {
    let s = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "");
    let range = ["--from", "2026-11-02", "--to", "2026-11-02"];
    // Gladly refuses: exit 4 before anything is written.
    let o = run_env(
        dir.path(),
        &p,
        NOW,
        &range,
        &[("GLADLY_API_TOKEN", "wrong-token-123")],
    )
    .await;
    assert_eq!(o.code, 4, "{o}");
    assert!(o.stdout.contains("Gladly refused the credentials"), "{o}");
    assert!(!out(dir.path()).join("agent_status_events").exists());
    // The WFM refuses: the Parquet is written first, then exit 4.
    let o = run_env(
        dir.path(),
        &p,
        NOW,
        &range,
        &[("WFM_CLIENT_SECRET", "wrong-secret-456")],
    )
    .await;
    assert_eq!(o.code, 4, "{o}");
    assert!(o.stdout.contains("WFM refused the credentials"), "{o}");
    assert!(out(dir.path())
        .join("agent_status_segments/date=2026-11-02/part-0.parquet")
        .exists());
    assert_eq!(latest_manifest(&out(dir.path()))["exit_code"], 4);
    assert_no_secrets(&out(dir.path()), &[&o.stdout, &o.stderr]);
    for f in util::files(&out(dir.path())) {
        let t = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).to_string();
        assert!(
            !t.contains("wrong-secret-456") && !t.contains("wrong-token-123"),
            "{}",
            f.display()
        );
    }
    assert!(!o.stderr.contains("wrong-secret-456"));
}

/// Every curated Parquet file under `root`, by path (the raw zone and the run records, under
/// `raw/` and `_…/`, are a run's input and log).
fn curated_files(root: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if rel.starts_with("raw") || rel.starts_with('_') {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if rel.ends_with(".parquet") {
                found.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    found
}

/// The thread counts (`TOKIO_WORKER_THREADS`, `POLARS_MAX_THREADS`, read by the libraries) change
/// no byte of what a run writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_thread_counts_change_no_byte_of_a_run() {
    let s = start_default(NOW).await;
    let args = ["--from", "2026-11-01", "--to", "2026-11-03"];
    let one = tempfile::tempdir().unwrap();
    let p = pipeline(one.path(), &s, "", "");
    let env = [("TOKIO_WORKER_THREADS", "1"), ("POLARS_MAX_THREADS", "1")];
    let o = run_env(one.path(), &p, NOW, &args, &env).await;
    assert_eq!(o.code, 0, "{o}");
    let two = tempfile::tempdir().unwrap();
    let p = pipeline(two.path(), &s, "", "");
    let env = [("TOKIO_WORKER_THREADS", "2"), ("POLARS_MAX_THREADS", "2")];
    let o = run_env(two.path(), &p, NOW, &args, &env).await;
    assert_eq!(o.code, 0, "{o}");
    // The day datasets (the agent and inbox snapshots carry the clock time they were taken).
    let days = |dir: &std::path::Path| {
        let mut f = curated_files(&out(dir));
        f.retain(|k, _| !k.starts_with("agents/") && !k.starts_with("inboxes/"));
        f
    };
    let (a, b) = (days(one.path()), days(two.path()));
    assert!(
        a.keys().any(|k| k.starts_with("agent_status_segments/")) && a.len() >= 9,
        "the runs wrote the days' datasets: {:?}",
        a.keys().collect::<Vec<_>>()
    );
    let differ: Vec<_> = a.keys().filter(|k| a.get(*k) != b.get(*k)).collect();
    assert!(
        differ.is_empty() && a.len() == b.len(),
        "the thread counts changed {differ:?}"
    );
}
