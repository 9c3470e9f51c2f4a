//! What the follow tests share: the simulator's clock, the follower's state, the ground truth
//! of agent events, and a batch run to compare a follower with.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use gladly_wfm_sim::wfm::{Kind, WfmSimConfig};
use serde_json::Value;

use super::*;

pub fn follow_state(root: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(root.join("_state/t/follow.json")).unwrap()).unwrap()
}

pub fn sim_now(s: &Sims) -> String {
    gladly_wfm::time::fmt_ts(s.gladly.world.now())
}

/// Agent events of the ground truth recorded in `[from, to)`, by what identifies them.
pub fn truth_agent_events(s: &Sims, from: i64, to: i64) -> BTreeSet<(String, String, i64)> {
    let d = tempfile::tempdir().unwrap();
    s.gladly.dump(d.path()).unwrap();
    std::fs::read_to_string(d.path().join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| {
            let t = v["type"].as_str().unwrap();
            let ts = ms(v["timestamp"].as_str().unwrap());
            t.starts_with("AGENT_") && ts >= from && ts < to
        })
        .map(|v| {
            let c = &v["content"];
            let at = c["occurredAt"]
                .as_str()
                .or(v["timestamp"].as_str())
                .unwrap();
            (
                c["agentId"].as_str().unwrap().to_string(),
                v["type"].as_str().unwrap().to_string(),
                ms(at),
            )
        })
        .collect()
}

pub fn raw_agent_events(root: &Path, day: &str) -> Vec<(String, String, i64)> {
    dataset(root, "raw/agent_events")
        .remove(day)
        .unwrap_or_default()
        .iter()
        .map(|r| {
            (
                r["agent_id"].as_str().unwrap().to_string(),
                r["event_type"].as_str().unwrap().to_string(),
                r["occurred_at"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Every agent event of 2026-11-04 recorded before `end` (the poll's cursor) is in the raw
/// zone, exactly once; anything else landed (a webhook delivery ahead of the cursor) is a real
/// event of the day, once.
pub fn assert_landed_once(s: &Sims, root: &Path, end: i64, what: &str) {
    let landed = raw_agent_events(root, "2026-11-04");
    let unique: BTreeSet<_> = landed.iter().cloned().collect();
    assert_eq!(unique.len(), landed.len(), "{what}: no event twice");
    let day = ms("2026-11-04T05:00:00Z");
    let polled = truth_agent_events(s, day, end);
    let missing: Vec<_> = polled.difference(&unique).collect();
    assert!(
        missing.is_empty(),
        "{what}: every event landed; missing {missing:?}"
    );
    let truth = truth_agent_events(s, day, day + 24 * 3_600_000);
    let invented: Vec<_> = unique.difference(&truth).collect();
    assert!(
        invented.is_empty(),
        "{what}: only real events landed; not {invented:?}"
    );
}

/// A batch run of `day` on a fresh root against a simulator frozen at `now`, for comparison.
pub async fn batch(day: &str, now: &str, extra: &str) -> (Sims, tempfile::TempDir) {
    let s = start(world(7, 20, now), |_| {}, WfmSimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", extra);
    let o = run(dir.path(), &p, now, &["--from", day, "--to", day]).await;
    assert_eq!(o.code, 0, "{o}");
    (s, dir)
}

/// The receiver holds what a batch run over the same span holds, and one open piece per
/// agent and axis.
pub fn assert_receiver_equals_batch(follower: &Sims, batch: &Sims) {
    let (f, b) = (follower.wfm.store(), batch.wfm.store());
    for k in [Kind::Tasks, Kind::Conversations] {
        let (x, y) = (sorted(f.kind(k)), sorted(b.kind(k)));
        assert!(!y.is_empty(), "{k:?} stored by the batch run");
        assert_eq!(x.len(), y.len(), "{k:?}: record count");
        assert!(x == y, "{k:?}: records differ");
    }
    let mut open: BTreeMap<(String, String), usize> = BTreeMap::new();
    for t in f.kind(Kind::Tasks) {
        if t["endTime"].is_null() {
            *open
                .entry((t["userIdentifier"].to_string(), t["axis"].to_string()))
                .or_default() += 1;
        }
    }
    assert!(!open.is_empty());
    assert!(
        open.values().all(|n| *n == 1),
        "one open piece each: {open:?}"
    );
    assert_no_shared_starts(&f);
}

/// The follower's reconcile of 2026-11-03 was a plain run of the day: its datasets (events but
/// for focus events, which only the Events API carries: DESIGN §6) and the receiver's records
/// of the day equal a plain run's on a fresh root at the reconcile's clock.
pub async fn assert_reconciled_day_equals_a_plain_run(s: &Sims, root: &Path) {
    // The reconcile was a plain run of the day: the same run, on a fresh root, at its clock.
    let reconcile = files(&root.join("_runs"))
        .into_iter()
        .map(|f| serde_json::from_slice::<Value>(&std::fs::read(f).unwrap()).unwrap())
        .find(|m| m["trigger"] == "follow" && m["outcome"] == "ok")
        .expect("a reconcile manifest");
    let clock = reconcile["clock"].as_str().unwrap().to_string();
    let (b, bdir) = batch("2026-11-03", &clock, "").await;
    let broot = bdir.path().join("output");
    for d in [
        "agent_status_segments",
        "conversations",
        "work_sessions",
        "workstream_intervals",
    ] {
        let (x, y) = (
            dataset(root, d).remove("2026-11-03"),
            dataset(&broot, d).remove("2026-11-03"),
        );
        assert!(y.as_ref().is_some_and(|r| !r.is_empty()), "{d}");
        assert!(x == y, "{d} of 11-03 differs from a plain run's");
    }
    // Events too, but for focus events, which only the Events API carries (DESIGN §6).
    let no_focus = |root: &Path| {
        dataset(root, "agent_status_events")
            .remove("2026-11-03")
            .unwrap_or_default()
            .into_iter()
            .filter(|r| !r["event_type"].as_str().unwrap().contains("FOCUS"))
            .collect::<Vec<_>>()
    };
    assert!(
        no_focus(root) == no_focus(&broot),
        "agent_status_events of 11-03"
    );
    // The receiver's records of 11-03 equal the plain run's.
    let (lo, hi) = (ms("2026-11-03T05:00:00Z"), ms("2026-11-04T05:00:00Z"));
    let of_day = |s: &Sims, k: Kind, field: &str| {
        sorted(
            s.wfm
                .store()
                .kind(k)
                .into_iter()
                .filter(|r| {
                    let t = ms(r[field].as_str().unwrap());
                    t >= lo && t < hi
                })
                .collect(),
        )
    };
    for (k, field) in [
        (Kind::Tasks, "startTime"),
        (Kind::Conversations, "dayStart"),
        (Kind::Intervals, "intervalStart"),
    ] {
        let (x, y) = (of_day(s, k, field), of_day(&b, k, field));
        assert!(!y.is_empty(), "{k:?}");
        assert_eq!(x.len(), y.len(), "{k:?} of 11-03: record count");
        assert!(x == y, "{k:?} of 11-03 differ");
    }
}
