//! The bundled simulators over real HTTP: Gladly's auth, 24-hour Events window, window bounds,
//! rate limits and headers, the reports' in-flight cap, the CSV quirks, determinism; the WFM's
//! token, envelope, replace/upsert/duplicate, 413, 429 with Retry-After, token expiry, overlap.

mod util;
/// The Gladly simulator's webhooks (spec §6).
#[path = "simulators/webhooks.rs"]
mod webhooks;

use std::collections::BTreeMap;
use std::time::Duration;

use gladly_wfm_sim::faults::FaultRates;
use gladly_wfm_sim::generator::Quirks;
use gladly_wfm_sim::wfm::{Kind, WfmSimConfig};
use serde_json::{json, Value};
use util::*;

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn get(url: &str, user: &str, token: &str) -> reqwest::Response {
    client()
        .get(url)
        .basic_auth(user, Some(token))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gladly_auth_401_for_wrong_pair_403_without_permission() {
    let s = start_default(NOW).await;
    let url = format!("{}/api/v1/agents", s.gladly_url);
    assert_eq!(get(&url, "sim@example.com", TOKEN).await.status(), 200);
    assert_eq!(get(&url, "sim@example.com", "wrong").await.status(), 401);
    assert_eq!(get(&url, "nobody@example.com", TOKEN).await.status(), 401);
    assert_eq!(get(&url, "viewer@example.com", TOKEN).await.status(), 403);
    assert_eq!(client().get(&url).send().await.unwrap().status(), 401);
    // Single-object forms and 404s.
    let agents: Vec<Value> = get(&url, "sim@example.com", TOKEN)
        .await
        .json()
        .await
        .unwrap();
    let one = format!(
        "{}/api/v1/agents/{}",
        s.gladly_url,
        agents[0]["id"].as_str().unwrap()
    );
    assert_eq!(get(&one, "sim@example.com", TOKEN).await.status(), 200);
    let none = format!("{}/api/v1/agents/nope", s.gladly_url);
    assert_eq!(get(&none, "sim@example.com", TOKEN).await.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_api_24_hour_rule_window_bounds_and_order() {
    let s = start_default(NOW).await;
    let now = ms(NOW);
    let ev = |start: i64, end: i64| {
        let url = format!("{}/api/v1/events", s.gladly_url);
        let q = vec![
            ("startAt", gladly_wfm::time::fmt_ts(start)),
            ("endAt", gladly_wfm::time::fmt_ts(end)),
            ("entities", "AGENT_STATUS".to_string()),
            ("entities", "AGENT_AVAILABILITY".to_string()),
        ];
        client()
            .get(url)
            .query(&q)
            .basic_auth("sim@example.com", Some(TOKEN))
            .send()
    };
    // Older than 24 hours: 400 naming startAt.
    let r = ev(now - 25 * 3_600_000, now).await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["attr"], "startAt");
    // endAt before startAt.
    assert_eq!(ev(now - 1000, now - 2000).await.unwrap().status(), 400);
    // A window's lines are JSON Lines in ascending timestamp order.
    let r = ev(now - 12 * 3_600_000, now).await.unwrap();
    assert_eq!(r.headers()["content-type"], "application/x-jsonlines");
    let text = r.text().await.unwrap();
    let ts: Vec<i64> = text
        .lines()
        .map(|l| {
            ms(serde_json::from_str::<Value>(l).unwrap()["timestamp"]
                .as_str()
                .unwrap())
        })
        .collect();
    assert!(ts.len() > 50, "{} events", ts.len());
    assert!(ts.windows(2).all(|w| w[0] <= w[1]));
    // [startAt, endAt): an event at exactly startAt is in, one at exactly endAt is out.
    let t = ts[ts.len() / 2];
    let inside = ev(t, t + 1).await.unwrap().text().await.unwrap();
    assert!(inside.lines().count() >= 1);
    let before = ev(t - 60_000, t).await.unwrap().text().await.unwrap();
    assert!(before.lines().all(
        |l| ms(serde_json::from_str::<Value>(l).unwrap()["timestamp"]
            .as_str()
            .unwrap())
            < t
    ));
    // An empty window: 200 with an empty body. (Agents sleep at 03:00 local on most days.)
    let empty = ev(now - 1, now).await.unwrap();
    assert_eq!(empty.status(), 200);
    assert_eq!(empty.text().await.unwrap(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_429_without_retry_after_and_headers() {
    let s = start_default(NOW).await;
    let url = format!("{}/api/v1/inboxes", s.gladly_url);
    let futs: Vec<_> = (0..15)
        .map(|_| get(&url, "sim@example.com", TOKEN))
        .collect();
    let t0 = std::time::Instant::now();
    let resps = futures_util::future::join_all(futs).await;
    let spread = t0.elapsed();
    let ok = resps.iter().filter(|r| r.status() == 200).count();
    let limited: Vec<_> = resps.iter().filter(|r| r.status() == 429).collect();
    // 10 requests per second per method (a burst that took over a second may see a few more).
    assert!(
        ok == 10 || (ok > 10 && spread > Duration::from_secs(1)),
        "{ok} admitted in {spread:?}"
    );
    assert_eq!(ok + limited.len(), 15);
    assert!(!limited.is_empty());
    for r in &resps {
        assert_eq!(r.headers()["ratelimit-limit-second"], "10");
        assert!(r.headers().contains_key("ratelimit-remaining-second"));
    }
    assert!(limited
        .iter()
        .all(|r| !r.headers().contains_key("retry-after")));
    // A second later the window has room again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&url, "sim@example.com", TOKEN).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_in_flight_cap_and_per_minute_limit() {
    let s = start(
        world(7, 5, NOW),
        |c| {
            c.faults = FaultRates {
                slow: 1.0,
                ..Default::default()
            };
            c.slow_ms = 1_000;
            c.reports_per_minute = 10;
        },
        WfmSimConfig::default(),
    )
    .await;
    let url = format!("{}/api/v1/reports", s.gladly_url);
    let body = json!({"metricSet": "AgentTimestampsReport", "startAt": "2026-11-02", "endAt": "2026-11-02"});
    let post = || {
        client()
            .post(&url)
            .json(&body)
            .basic_auth("sim@example.com", Some(TOKEN))
            .send()
    };
    let r = futures_util::future::join_all((0..3).map(|_| post())).await;
    let codes: Vec<u16> = r
        .iter()
        .map(|r| r.as_ref().unwrap().status().as_u16())
        .collect();
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 2, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 429).count(), 1, "{codes:?}");
    // 10 a minute: the 11th in the minute is refused (2 already counted above).
    let mut refused = 0;
    for _ in 0..9 {
        if post().await.unwrap().status() == 429 {
            refused += 1;
        }
    }
    assert_eq!(refused, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_quirks_bom_blank_lines_fraction_digits_unknown_fields_and_types() {
    let mut w = world(7, 10, NOW);
    w.quirks = Quirks::parse("all").unwrap();
    let s = start(w, |_| {}, WfmSimConfig::default()).await;
    let url = format!("{}/api/v1/reports", s.gladly_url);
    let body = json!({"metricSet": "AgentTimestampsReport", "startAt": "2026-11-02", "endAt": "2026-11-02"});
    let r = client()
        .post(&url)
        .json(&body)
        .basic_auth("sim@example.com", Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/csv");
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains(".csv"));
    let bytes = r.bytes().await.unwrap();
    assert!(bytes.starts_with(&[0xEF, 0xBB, 0xBF]), "BOM");
    let text = String::from_utf8_lossy(&bytes[3..]).to_string();
    assert!(text.starts_with("\r\n\n"), "blank lines before the header");
    assert!(text.contains("Agent Team"), "an unknown column");
    assert!(
        text.contains("AGENT_STATUS/SHIFT_SWAPPED"),
        "an unknown event type"
    );
    // 0–9 fraction digits: more than three distinct lengths of timestamp.
    let lens: std::collections::BTreeSet<usize> = text
        .lines()
        .skip(3)
        .filter_map(|l| l.split(',').next())
        .map(|t| t.len())
        .collect();
    assert!(lens.len() >= 4, "{lens:?}");
    // The decoder survives all of it.
    let tz: chrono_tz::Tz = TZ.parse().unwrap();
    let day = "2026-11-02".parse().unwrap();
    let req = gladly_wfm::gladly::decode::Request::new(
        "r",
        gladly_wfm::time::day_start(tz, day),
        gladly_wfm::time::day_end(tz, day),
        tz,
    );
    let d = gladly_wfm::gladly::decode::agent_events_csv(&bytes[..], &req).unwrap();
    let (evs, aside) = (d.rows, d.aside);
    assert!(!evs.is_empty());
    assert!(
        aside
            .iter()
            .all(|a| a.reason.contains("unknown event type")),
        "{aside:?}"
    );
    // An empty day: an empty body.
    let body = json!({"metricSet": "AgentTimestampsReport", "startAt": "2020-01-01", "endAt": "2020-01-01"});
    let r = client()
        .post(&url)
        .json(&body)
        .basic_auth("sim@example.com", Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().is_empty());
    // Bad metric set: 400 in Gladly's errors shape.
    let r = client()
        .post(&url)
        .json(&json!({"metricSet": "Nope", "startAt": "2026-11-02", "endAt": "2026-11-02"}))
        .basic_auth("sim@example.com", Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errors"][0]["attr"],
        "metricSet"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_seed_same_bytes() {
    let a = start_default(NOW).await;
    let b = start_default(NOW).await;
    let body = json!({"metricSet": "AgentTimestampsReport", "startAt": "2026-11-01", "endAt": "2026-11-01"});
    let ws = json!({"startAtTime": "2026-11-02T00:00Z", "endAtTime": "2026-11-03T00:00Z"});
    let mut answers = Vec::new();
    for s in [&a, &b] {
        let mut got = Vec::new();
        for path in ["/api/v1/agents", "/api/v1/inboxes", "/api/v1/teams"] {
            got.push(
                get(&format!("{}{path}", s.gladly_url), "sim@example.com", TOKEN)
                    .await
                    .bytes()
                    .await
                    .unwrap(),
            );
        }
        let ev = format!("{}/api/v1/events?startAt=2026-11-04T00:00:00Z&entities=AGENT_STATUS&entities=CONVERSATION", s.gladly_url);
        got.push(
            get(&ev, "sim@example.com", TOKEN)
                .await
                .bytes()
                .await
                .unwrap(),
        );
        for (path, b) in [
            ("/api/v1/reports", &body),
            ("/api/v1/reports/work-session-events", &ws),
        ] {
            got.push(
                client()
                    .post(format!("{}{path}", s.gladly_url))
                    .json(b)
                    .basic_auth("sim@example.com", Some(TOKEN))
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap(),
            );
        }
        answers.push(got);
    }
    assert!(answers[0].iter().all(|b| !b.is_empty()));
    assert_eq!(answers[0], answers[1]);
}

async fn wfm_token(url: &str, secret: &str) -> reqwest::Response {
    client()
        .post(format!("{url}/api/authority/token"))
        .basic_auth("sim-client", Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap()
}

async fn bearer(url: &str) -> String {
    let v: Value = wfm_token(url, WFM_SECRET).await.json().await.unwrap();
    v["data"]["accessToken"].as_str().unwrap().to_string()
}

async fn push(url: &str, tok: &str, path: &str, env: Value) -> (u16, Value) {
    let r = client()
        .post(format!("{url}{path}"))
        .bearer_auth(tok)
        .json(&env)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

fn seg(id: &str, start: &str, end: Option<&str>) -> Value {
    json!({"eventId": id, "userIdentifier": "A1", "userEmail": "ana@example.com", "axis": "status", "status": "Lunch",
           "task": "Away", "statusCategory": "away", "availableFor": null, "startTime": start, "endTime": end})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wfm_token_replace_upsert_duplicate_413_overlap() {
    let s = start_default(NOW).await;
    let u = &s.wfm_url;
    assert_eq!(wfm_token(u, "wrong").await.status(), 401);
    let tok = bearer(u).await;
    let path = "/api/workactivity/taskdata";
    // No token: 401.
    let r = client()
        .post(format!("{u}{path}"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let env = |data: Vec<Value>, window: bool| {
        let mut e = json!({"integrationId": "it", "source": "gladly", "data": data});
        if window {
            e["replaceWindow"] =
                json!({"start": "2024-05-01T00:00:00.000Z", "end": "2024-05-02T00:00:00.000Z"});
        }
        e
    };
    let a = seg(
        "e1:2024-05-01",
        "2024-05-01T14:00:00.000Z",
        Some("2024-05-01T14:30:00.000Z"),
    );
    let b = seg(
        "e2:2024-05-01",
        "2024-05-01T14:30:00.000Z",
        Some("2024-05-01T15:00:00.000Z"),
    );
    let (st, v) = push(u, &tok, path, env(vec![a.clone(), b.clone()], true)).await;
    assert_eq!(st, 200);
    assert_eq!(v["data"]["inserted"], 2);
    assert_eq!(v["data"]["unknownUsers"], json!(["ana@example.com"]));
    // Same again without a window: duplicates; changed content: updated.
    let mut b2 = b.clone();
    b2["task"] = json!("Other");
    let (_, v) = push(u, &tok, path, env(vec![a.clone(), b2], false)).await;
    assert_eq!(
        (
            v["data"]["duplicate"].as_u64(),
            v["data"]["updated"].as_u64()
        ),
        (Some(1), Some(1))
    );
    // An overlapping closed segment is rejected; endTime before startTime is invalid_time.
    let c = seg(
        "e3:2024-05-01",
        "2024-05-01T14:10:00.000Z",
        Some("2024-05-01T14:20:00.000Z"),
    );
    let d = seg(
        "e4:2024-05-01",
        "2024-05-01T16:10:00.000Z",
        Some("2024-05-01T16:00:00.000Z"),
    );
    let (_, v) = push(u, &tok, path, env(vec![c, d], false)).await;
    assert_eq!(v["data"]["rejected"], 2);
    assert_eq!(v["data"]["errors"][0]["code"], "overlap");
    assert_eq!(v["data"]["errors"][1]["code"], "invalid_time");
    // A timestamp without Z is refused.
    let (st, v) = push(
        u,
        &tok,
        path,
        env(vec![seg("e5", "2024-05-01T17:00:00", None)], false),
    )
    .await;
    assert_eq!((st, v["data"]["rejected"].as_u64()), (200, Some(1)));
    assert_eq!(v["data"]["errors"][0]["code"], "invalid_time");
    // replaceWindow deletes what the window held, then stores the batch.
    let e = seg("e6:2024-05-01", "2024-05-01T18:00:00.000Z", None);
    let (_, v) = push(u, &tok, path, env(vec![e], true)).await;
    assert_eq!(v["data"]["inserted"], 1);
    let tasks = s.wfm.store().kind(Kind::Tasks);
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    // 101 records: 413.
    let many: Vec<Value> = (0..101)
        .map(|i| seg(&format!("m{i}"), "2024-05-03T00:00:00.000Z", None))
        .collect();
    let (st, v) = push(u, &tok, path, env(many, false)).await;
    assert_eq!(st, 413);
    assert_eq!(v["error"]["code"], "batch_too_large");
    // replaceWindow over 31 days: 422.
    let mut e = env(vec![], false);
    e["replaceWindow"] =
        json!({"start": "2024-01-01T00:00:00.000Z", "end": "2024-03-01T00:00:00.000Z"});
    assert_eq!(push(u, &tok, path, e).await.0, 422);
    // An open segment is closed by the next one of that user and axis.
    let o1 = seg("o1:2024-06-01", "2024-06-01T10:00:00.000Z", None);
    let o2 = seg("o2:2024-06-01", "2024-06-01T11:00:00.000Z", None);
    push(u, &tok, path, env(vec![o1], false)).await;
    push(u, &tok, path, env(vec![o2], false)).await;
    let o1 = s
        .wfm
        .store()
        .kind(Kind::Tasks)
        .into_iter()
        .find(|r| r["eventId"] == "o1:2024-06-01")
        .unwrap();
    assert_eq!(o1["endTime"], "2024-06-01T11:00:00.000Z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wfm_429_with_retry_after_token_expiry_and_idempotency_replay() {
    let s = start(
        world(7, 5, NOW),
        |_| {},
        WfmSimConfig {
            requests_per_30s: 3,
            token_ttl_secs: 1,
            ..Default::default()
        },
    )
    .await;
    let u = &s.wfm_url;
    let tok = bearer(u).await;
    let env = json!({"integrationId": "it", "source": "gladly", "data": [{"email": "Ana@Example.com", "integrationIdentifier": "A1", "name": "Ana", "isActive": true}]});
    let put = |key: &str| {
        client()
            .put(format!("{u}/api/organisation/users/integrations"))
            .bearer_auth(&tok)
            .header("Idempotency-Key", key)
            .json(&env)
            .send()
    };
    let first: Value = put("k1").await.unwrap().json().await.unwrap();
    assert_eq!(first["data"]["inserted"], 1);
    // The same key replays the first answer (inserted 1), not a duplicate count.
    let again: Value = put("k1").await.unwrap().json().await.unwrap();
    assert_eq!(again, first);
    let third = put("k2").await.unwrap();
    assert_eq!(third.status(), 200);
    let limited = put("k3").await.unwrap();
    assert_eq!(limited.status(), 429);
    let ra: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&ra));
    // Tokens expire.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = client()
        .get(format!("{u}/api/workactivity/tasks"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_simulators_and_dumps_ground_truth() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("truth");
    let mut child = command(
        dir.path(),
        &[
            "simulate",
            "gladly",
            "--addr",
            "127.0.0.1:0",
            "--now",
            NOW,
            "--agents",
            "5",
            "--dump",
            dump.to_str().unwrap(),
        ],
        &[],
    )
    .stdout(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    let url = first
        .strip_prefix("listening on ")
        .expect(&first)
        .to_string();
    let r = get(
        &format!("{url}/api/v1/organization"),
        "sim@example.com",
        "sim-token",
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap()["timezone"], TZ);
    assert!(
        std::fs::read_to_string(dump.join("events.jsonl"))
            .unwrap()
            .lines()
            .count()
            > 100
    );
    assert!(dump.join("agents.json").exists() && dump.join("work_sessions.jsonl").exists());
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wfm_dump_keeps_the_store_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("store.json");
    let s = start(
        world(7, 5, NOW),
        |_| {},
        WfmSimConfig {
            dump: Some(dump.clone()),
            ..Default::default()
        },
    )
    .await;
    let tok = bearer(&s.wfm_url).await;
    let env = json!({"integrationId": "it", "source": "gladly", "data": [seg("k1:2024-05-01", "2024-05-01T14:00:00.000Z", None)]});
    assert_eq!(
        push(&s.wfm_url, &tok, "/api/workactivity/taskdata", env)
            .await
            .0,
        200
    );
    // A new simulator on the same file starts with what the first one stored.
    let again = start(
        world(7, 5, NOW),
        |_| {},
        WfmSimConfig {
            dump: Some(dump),
            ..Default::default()
        },
    )
    .await;
    let tasks = again.wfm.store().kind(Kind::Tasks);
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["eventId"], "k1:2024-05-01");
}

/// Posts a report request; the status and the body.
async fn post_report(s: &Sims, body: Value) -> (u16, String) {
    let r = client()
        .post(format!("{}/api/v1/reports", s.gladly_url))
        .json(&body)
        .basic_auth("sim@example.com", Some(TOKEN))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// `3600.5` seconds as 3_600_500 ms, exactly (no float on the way).
fn secs_to_ms(s: &str) -> i64 {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    assert!(frac.len() <= 3, "{s}: more than three decimals");
    whole.parse::<i64>().unwrap() * 1000 + format!("{frac:0<3}").parse::<i64>().unwrap()
}

/// One AgentSummaryV2 row's figures: logged-in and active ms, then the five event counts.
type Figures = (i64, i64, Vec<u32>);

/// An AgentSummaryV2 answer read by header name: (agent id, time bucket) → figures.
fn summary_rows(csv_text: &str) -> BTreeMap<(String, String), Figures> {
    let mut rdr = csv::Reader::from_reader(csv_text.as_bytes());
    let h = rdr.headers().unwrap().clone();
    let col = |name: &str| h.iter().position(|c| c == name).expect(name);
    let (agent, bucket) = (col("Agent ID"), col("Time Bucket"));
    let (logged, active) = (
        col("Logged In Time in seconds"),
        col("Active Time in seconds"),
    );
    let counts: Vec<usize> = [
        "Logged In",
        "Logged Out",
        "Went Away",
        "Returned from Away",
        "Changed Active Reason",
    ]
    .iter()
    .map(|c| col(c))
    .collect();
    assert!(h.iter().any(|c| c == "Email"));
    let mut out = BTreeMap::new();
    for rec in rdr.records() {
        let rec = rec.unwrap();
        let figures = (
            secs_to_ms(&rec[logged]),
            secs_to_ms(&rec[active]),
            counts.iter().map(|&i| rec[i].parse().unwrap()).collect(),
        );
        let key = (rec[agent].to_string(), rec[bucket].to_string());
        assert!(
            out.insert(key, figures).is_none(),
            "one row per agent and bucket"
        );
    }
    out
}

fn summary_body(level: &str, from: &str, to: &str) -> Value {
    json!({"metricSet": "AgentSummaryV2", "timezone": TZ, "startAt": from, "endAt": to,
           "filters": {}, "aggregationLevel": level})
}

async fn summary(
    s: &Sims,
    level: &str,
    from: &str,
    to: &str,
) -> BTreeMap<(String, String), Figures> {
    let (status, text) = post_report(s, summary_body(level, from, to)).await;
    assert_eq!(status, 200, "{text}");
    summary_rows(&text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_summary_daily_rows_are_their_half_hours_and_bad_requests_are_400() {
    let s = start_default(NOW).await;
    let daily = summary(&s, "daily", "2026-10-28", "2026-11-04").await;
    let halves = summary(&s, "halfHourly", "2026-10-28", "2026-11-04").await;
    assert!(daily.len() > 100, "{} agent-days", daily.len());
    // Per agent and day, the half hours add up to the daily row, to the millisecond.
    let mut sums: BTreeMap<(String, String), Figures> = BTreeMap::new();
    for ((agent, bucket), (l, a, c)) in &halves {
        assert_eq!(bucket.len(), "2026-11-24T13:30-05:00".len(), "{bucket}");
        let s = sums
            .entry((agent.clone(), bucket[..10].to_string()))
            .or_insert((0, 0, vec![0; 5]));
        s.0 += l;
        s.1 += a;
        s.2.iter_mut().zip(c).for_each(|(x, y)| *x += y);
        assert!(0 <= *a && a <= l && *l <= 1_800_000, "{agent} {bucket}");
    }
    assert_eq!(daily, sums);
    // aggregationLevel is required, and one of two values.
    let mut no_level = summary_body("daily", "2026-11-02", "2026-11-02");
    no_level.as_object_mut().unwrap().remove("aggregationLevel");
    for body in [no_level, summary_body("weekly", "2026-11-02", "2026-11-02")] {
        let (status, text) = post_report(&s, body).await;
        assert_eq!(status, 400);
        let errors: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(errors["errors"][0]["attr"], "aggregationLevel");
    }
    // Half-hourly: at most a month (31 days) at once; daily has no such limit.
    let too_long = summary_body("halfHourly", "2026-10-04", "2026-11-04");
    assert_eq!(post_report(&s, too_long).await.0, 400);
    let month = summary_body("halfHourly", "2026-10-05", "2026-11-04");
    assert_eq!(post_report(&s, month).await.0, 200);
    let year = summary_body("daily", "2025-11-05", "2026-11-04");
    assert_eq!(post_report(&s, year).await.0, 200);
    // Before the history: nobody has time, an empty body.
    let (status, text) = post_report(&s, summary_body("daily", "2020-01-01", "2020-01-01")).await;
    assert_eq!((status, text.as_str()), (200, ""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_summary_on_a_dst_day_and_across_midnight() {
    let s = start_default(NOW).await;
    // 2026-11-01, fall back: 01:00–02:00 happens twice, as two half hours each with its offset.
    let halves = summary(&s, "halfHourly", "2026-11-01", "2026-11-01").await;
    let labels = |agent: &str| -> Vec<&str> {
        halves
            .keys()
            .filter(|(a, _)| a == agent)
            .map(|(_, b)| b.as_str())
            .collect()
    };
    let repeated = [
        "2026-11-01T01:00-04:00",
        "2026-11-01T01:30-04:00",
        "2026-11-01T01:00-05:00",
        "2026-11-01T01:30-05:00",
    ];
    let night: Vec<&String> = halves
        .keys()
        .map(|(a, _)| a)
        .filter(|a| repeated.iter().all(|r| labels(a).contains(r)))
        .collect();
    assert!(!night.is_empty(), "a night agent works both 01:00s");
    // A 25-hour day: no agent has more than 25 hours on it.
    let daily = summary(&s, "daily", "2026-11-01", "2026-11-01").await;
    for ((agent, _), (l, a, _)) in &daily {
        assert!(*l <= 25 * 3_600_000 && a <= l, "{agent}: {l} ms");
    }
    // A night shift that crosses midnight counts on both days: each day's logged-in time runs
    // between its midnights (read from the timestamps report of the same days).
    let body = json!({"metricSet": "AgentTimestampsReport", "timezone": TZ,
                      "startAt": "2026-10-30", "endAt": "2026-11-03", "filters": {}});
    let (_, text) = post_report(&s, body).await;
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let mut status: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for rec in rdr.records() {
        let rec = rec.unwrap();
        if rec[4].starts_with("AGENT_STATUS/LOGGED") {
            let e = status.entry(rec[3].to_string()).or_default();
            e.push((ms(&rec[1]), rec[4].to_string()));
        }
    }
    // The local days 2026-10-30 to 2026-11-03 and their midnights (EDT, EST from the 1st).
    let days = [
        "2026-10-30",
        "2026-10-31",
        "2026-11-01",
        "2026-11-02",
        "2026-11-03",
    ];
    let midnights: Vec<i64> = [
        "10-30T04", "10-31T04", "11-01T04", "11-02T05", "11-03T05", "11-04T05",
    ]
    .iter()
    .map(|m| ms(&format!("2026-{m}:00:00Z")))
    .collect();
    let daily = summary(&s, "daily", days[0], days[4]).await;
    let mut checked = 0;
    for (agent, evs) in &mut status {
        evs.sort();
        // Logged-in spans from the logins and logouts alone: logged in at the report's start if
        // its first event is a logout, still logged in at its end if its last is a login.
        let mut spans = Vec::new();
        let mut since = evs[0].1.ends_with("LOGGED_OUT").then_some(midnights[0]);
        for (t, ty) in evs.iter() {
            match (ty.ends_with("LOGGED_IN"), since) {
                (true, None) => since = Some(*t),
                (false, Some(s)) => {
                    spans.push((s, *t));
                    since = None;
                }
                _ => {}
            }
        }
        spans.extend(since.map(|s| (s, midnights[5])));
        let logged = |from: i64, to: i64| -> i64 {
            spans
                .iter()
                .map(|(a, b)| (b.min(&to) - a.max(&from)).max(0))
                .sum()
        };
        for i in 1..days.len() {
            let (from, midnight, to) = (midnights[i - 1], midnights[i], midnights[i + 1]);
            if !spans.iter().any(|(a, b)| *a < midnight && *b > midnight) {
                continue; // not logged in at this midnight
            }
            let row = |day: &str| daily[&(agent.clone(), day.to_string())].0;
            assert_eq!(
                row(days[i - 1]),
                logged(from, midnight),
                "{agent} {}",
                days[i - 1]
            );
            assert_eq!(row(days[i]), logged(midnight, to), "{agent} {}", days[i]);
            checked += 1;
        }
    }
    assert!(checked > 0, "a night shift across midnight");
}

/// Logged-in and active ms per (agent, local day) for `days`, computed from the dumped ground
/// truth (events.jsonl) apart from the simulator's summary code: each agent's status is a step
/// function of its events (known if recorded before `cutoff`, in occurred-at order), integrated
/// between the day's midnights; the event counts are those that occurred that day.
fn summary_from_dump(
    dump: &std::path::Path,
    days: &[&str],
    cutoff: i64,
) -> BTreeMap<(String, String), Figures> {
    let tz: chrono_tz::Tz = TZ.parse().unwrap();
    let midnight = |d: &str| -> i64 {
        let date: chrono::NaiveDate = d.parse().unwrap();
        use chrono::TimeZone;
        let local = date.and_hms_opt(0, 0, 0).unwrap();
        tz.from_local_datetime(&local)
            .earliest()
            .unwrap()
            .timestamp_millis()
    };
    let kinds = [
        "LOGGED_IN",
        "LOGGED_OUT",
        "WENT_AWAY",
        "RETURNED_FROM_AWAY",
        "CHANGED_ACTIVE_REASON",
    ];
    let mut by_agent: BTreeMap<String, Vec<(i64, i64, usize)>> = BTreeMap::new();
    for line in std::fs::read_to_string(dump.join("events.jsonl"))
        .unwrap()
        .lines()
    {
        let e: Value = serde_json::from_str(line).unwrap();
        let Some(kind) = e["type"]
            .as_str()
            .and_then(|t| t.strip_prefix("AGENT_STATUS/"))
        else {
            continue;
        };
        let (Some(k), recorded) = (
            kinds.iter().position(|x| *x == kind),
            ms(e["timestamp"].as_str().unwrap()),
        ) else {
            continue;
        };
        if recorded < cutoff {
            let occurred = ms(e["content"]["occurredAt"].as_str().unwrap());
            let agent = e["content"]["agentId"].as_str().unwrap().to_string();
            by_agent
                .entry(agent)
                .or_default()
                .push((occurred, recorded, k));
        }
    }
    let mut out = BTreeMap::new();
    for (agent, mut evs) in by_agent {
        evs.sort_by_key(|e| (e.0, e.1));
        // (from, to, logged in, away): the status between consecutive events, then to the cutoff.
        let (mut steps, mut state) = (Vec::new(), (false, false));
        for (i, &(t, _, k)) in evs.iter().enumerate() {
            state = match k {
                0 => (true, state.1),
                1 => (false, false),
                2 => (state.0, state.0),
                3 => (state.0, false),
                _ => state,
            };
            let next = evs.get(i + 1).map_or(cutoff, |e| e.0);
            steps.push((t, next, state.0, state.1));
        }
        for day in days {
            let (from, to) = (midnight(day), midnight(&next_day(day)).min(cutoff));
            let within = |a: i64, b: i64| (b.min(to) - a.max(from)).max(0);
            let logged: i64 = steps.iter().filter(|s| s.2).map(|s| within(s.0, s.1)).sum();
            let active: i64 = steps
                .iter()
                .filter(|s| s.2 && !s.3)
                .map(|s| within(s.0, s.1))
                .sum();
            let mut counts = vec![0u32; 5];
            for e in evs.iter().filter(|e| e.0 >= from && e.0 < to) {
                counts[e.2] += 1;
            }
            if logged > 0 {
                out.insert((agent.clone(), day.to_string()), (logged, active, counts));
            }
        }
    }
    out
}

fn next_day(d: &str) -> String {
    (d.parse::<chrono::NaiveDate>().unwrap() + chrono::Duration::days(1)).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_summary_matches_a_walk_of_the_dumped_ground_truth() {
    let s = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    s.gladly.dump(dir.path()).unwrap();
    // The whole history (10 days to today), today cut by the report lag of an hour.
    let days: Vec<String> = (26..=31)
        .map(|d| format!("2026-10-{d}"))
        .chain((1..=4).map(|d| format!("2026-11-0{d}")))
        .collect();
    let days: Vec<&str> = days.iter().map(String::as_str).collect();
    let got = summary(&s, "daily", days[0], days[9]).await;
    let cutoff = ms(NOW) - 3_600_000;
    assert_eq!(got, summary_from_dump(dir.path(), &days, cutoff));
    assert!(
        got.keys().any(|(_, d)| d == "2026-11-04"),
        "today, up to the lag"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_summary_drift_quirk_moves_one_agent_by_600_seconds() {
    let plain = start_default(NOW).await;
    let mut w = world(7, 20, NOW);
    w.quirks = Quirks::parse("summary-drift").unwrap();
    let drifted = start(w, |_| {}, WfmSimConfig::default()).await;
    let agent = drifted.gladly.world.summary_drift_agent().unwrap();
    assert!(plain.gladly.world.summary_drift_agent().is_none());
    let planted = (gladly_wfm_sim::summary::SUMMARY_DRIFT_SECONDS * 1000.0) as i64;
    assert_eq!(planted, 600_000);
    // Daily: the planted agent's every row is exactly 600 s more, logged in and active; the
    // other agents' rows are untouched.
    let (from, to) = ("2026-10-26", "2026-11-04");
    let a = summary(&plain, "daily", from, to).await;
    let b = summary(&drifted, "daily", from, to).await;
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let mut moved = 0;
    for (key, (l, act, c)) in &a {
        let (l2, act2, c2) = &b[key];
        if key.0 == agent {
            assert_eq!((l2 - l, act2 - act, c2), (planted, planted, c), "{key:?}");
            moved += 1;
        } else {
            assert_eq!((l, act, c), (l2, act2, c2), "{key:?}");
        }
    }
    assert!(moved >= 5, "{moved} drifted days");
    // Half-hourly: the agent's first half hour of each day gains up to 600 s (capped at the
    // half hour, active within logged in); nothing else moves.
    let a = summary(&plain, "halfHourly", from, to).await;
    let b = summary(&drifted, "halfHourly", from, to).await;
    let mut changed_days = std::collections::BTreeSet::new();
    for (key, (l, act, c)) in &a {
        let (l2, act2, c2) = &b[key];
        if (l, act) == (l2, act2) {
            continue;
        }
        assert_eq!(key.0, agent, "{key:?}");
        assert!(
            changed_days.insert(key.1[..10].to_string()),
            "one per day: {key:?}"
        );
        assert!(
            l2 > l && *l2 <= (l + planted).min(1_800_000) && act2 <= l2,
            "{key:?}"
        );
        assert_eq!(c, c2);
    }
    // A first half hour already full (a night shift's 00:00) cannot gain: at most one a day.
    assert!(!changed_days.is_empty() && changed_days.len() <= moved);
}
