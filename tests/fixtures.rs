//! The checked-in, recorded-shape Gladly answers in fixtures/gladly/: every quirk the spec lists
//! decodes as it should, and the idle path's segments equal fixtures/expected/.

use std::path::Path;

use gladly_wfm::gladly::decode;
use gladly_wfm::time::{self, fmt_ts};
use gladly_wfm::transform::labels::label;
use gladly_wfm::transform::segments::{day_segments, StartState};
use serde_json::{json, Value};

/// A request for 2024-05-06 in New York, the day the fixtures were recorded.
fn req(what: &str) -> decode::Request {
    let tz: chrono_tz::Tz = "America/New_York".parse().unwrap();
    let day = "2024-05-06".parse().unwrap();
    decode::Request::new(what, time::day_start(tz, day), time::day_end(tz, day), tz)
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name),
    )
    .unwrap()
}

#[test]
fn agent_report_with_bom_blank_lines_quotes_fraction_digits_unknown_column_and_bad_rows() {
    let d = decode::agent_events_csv(
        &fixture("gladly/agent_timestamps_quirks.csv")[..],
        &req("AgentTimestampsReport 2024-05-06"),
    )
    .unwrap();
    let (evs, aside) = (d.rows, d.aside);
    let types: Vec<&str> = evs.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        types,
        [
            "AGENT_STATUS/LOGGED_IN",
            "AGENT_AVAILABILITY/UPDATED",
            "AGENT_STATUS/WENT_AWAY",
            "AGENT_AVAILABILITY/UPDATED"
        ]
    );
    // 1 and 9 fraction digits, and none.
    assert_eq!(fmt_ts(evs[0].recorded_at), "2024-05-06T15:00:02.100Z");
    assert_eq!(fmt_ts(evs[1].recorded_at), "2024-05-06T15:00:40.532Z");
    assert_eq!(
        evs[1].available_for,
        Some(vec!["MESSAGING".to_string(), "VOICE".to_string()])
    );
    assert_eq!(evs[2].away_reason.as_deref(), Some("Lunch"));
    assert_eq!(evs[3].available_for, Some(vec![]));
    let reasons: Vec<String> = aside
        .iter()
        .map(|a| format!("{}: {}", a.location, a.reason))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].contains("row 4")
            && reasons[0].contains("unknown event type AGENT_STATUS/SHIFT_SWAPPED"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("row 5") && reasons[1].contains("missing column"),
        "{reasons:?}"
    );
}

#[test]
fn events_api_lines_decode_and_the_idle_away_closes_at_logout() {
    let d = decode::agent_events_jsonl(
        &fixture("gladly/events_agent.jsonl")[..],
        &req("events 2024-05-06"),
    )
    .unwrap();
    let (evs, aside) = (d.rows, d.aside);
    assert_eq!(evs.len(), 8);
    let reasons: Vec<&str> = aside.iter().map(|a| a.reason.as_str()).collect();
    assert_eq!(aside.len(), 2, "{reasons:?}");
    assert!(reasons[0].contains("unknown event type") && reasons[1].contains("malformed JSON"));
    assert_eq!(aside[1].location, "events 2024-05-06, line 11");
    // The focus event has no occurredAt: its recorded time stands in; it opens no segment.
    let focus = evs.iter().find(|e| e.is_focus()).unwrap();
    assert_eq!(focus.occurred_at, focus.recorded_at);
    let tz: chrono_tz::Tz = "America/New_York".parse().unwrap();
    let day = "2024-05-06".parse().unwrap();
    let none = StartState::default();
    let segs = day_segments(
        time::day_start(tz, day),
        time::day_end(tz, day),
        true,
        &evs,
        &none,
    );
    let got: Vec<Value> = segs
        .iter()
        .map(|s| {
            json!({
                "axis": s.axis.as_str(),
                "opened_by": format!("{}@{}", s.opened_by.kind, fmt_ts(s.opened_by.occurred_at)),
                "state": s.opened_by.state().as_str(),
                "label": label(s.opened_by),
                "start": fmt_ts(s.start_at),
                "end": s.end_at.map(fmt_ts),
            })
        })
        .collect();
    let want: Value =
        serde_json::from_slice(&fixture("expected/events_agent_segments.json")).unwrap();
    assert_eq!(Value::Array(got), want);
}

#[test]
fn work_sessions_keep_ended_skip_open_and_set_aside_bad_rows() {
    let (d, open) = decode::work_sessions_csv(
        &fixture("gladly/work_sessions.csv")[..],
        &req("work-session-events 2024-05-06"),
    )
    .unwrap();
    let (rows, aside) = (d.rows, d.aside);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        open, 1,
        "an open session (no id) is not stored until it ends"
    );
    assert_eq!(rows[0].work_session_after_contact_time_seconds, Some(120.5));
    assert_eq!(rows[0].within_sla, Some(true));
    assert_eq!(aside.len(), 1);
    assert!(
        aside[0].reason.contains("within_sla") && aside[0].location.ends_with("row 3"),
        "{aside:?}"
    );
}

#[test]
fn report_timestamps_with_offsets_without_and_across_the_fall_back_hour() {
    let tz: chrono_tz::Tz = "America/New_York".parse().unwrap();
    let day = "2026-11-01".parse().unwrap();
    let req = decode::Request::new(
        "AgentTimestampsReport 2026-11-01",
        time::day_start(tz, day),
        time::day_end(tz, day),
        tz,
    );
    let d = decode::agent_events_csv(&fixture("gladly/agent_timestamps_local_time.csv")[..], &req)
        .unwrap();
    assert!(d.aside.is_empty(), "{:?}", d.aside);
    let got: Vec<(String, String)> = d
        .rows
        .iter()
        .map(|e| (fmt_ts(e.recorded_at), fmt_ts(e.occurred_at)))
        .collect();
    let want = [
        ("2026-11-01T04:30:00.000Z", "2026-11-01T04:29:59.500Z"),
        // 01:10 and 01:50 local: the first pass through 01:00 (EDT) …
        ("2026-11-01T05:10:00.000Z", "2026-11-01T05:10:00.000Z"),
        ("2026-11-01T05:50:00.000Z", "2026-11-01T05:49:58.000Z"),
        // … then 01:20 after 01:50: the row order says the second pass (EST).
        ("2026-11-01T06:20:00.000Z", "2026-11-01T06:19:59.000Z"),
        ("2026-11-01T07:30:00.000Z", "2026-11-01T07:29:59.000Z"),
    ];
    assert_eq!(
        got,
        want.map(|(a, b)| (a.to_string(), b.to_string())).to_vec()
    );
}
