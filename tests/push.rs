//! The WFM push against the WFM simulator over HTTP: exactly the expected records, re-runs that
//! change nothing, pushes that resume after a crash without resending, faults waited out, and
//! open segments closed in place later.

mod util;

use std::collections::BTreeSet;

use gladly_wfm_sim::faults::FaultRates;
use gladly_wfm_sim::wfm::{Kind, Misbehave, WfmSimConfig};
use serde_json::Value;
use util::*;

const RANGE: [&str; 4] = ["--from", "2026-11-01", "--to", "2026-11-03"];

/// What the receiver must hold: one task record per segment piece, keyed `opened_by:date`.
fn expected_tasks(root: &std::path::Path) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for (day, rows) in dataset(root, "agent_status_segments") {
        for r in rows {
            assert!(
                keys.insert(format!("{}:{day}", r["opened_by"].as_str().unwrap())),
                "segment keys are unique"
            );
        }
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_holds_exactly_the_expected_records_and_a_rerun_changes_nothing() {
    let s = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "");
    let o = run(dir.path(), &p, NOW, &RANGE).await;
    assert_eq!(o.code, 0, "{o}");
    let root = dir.path().join("output");
    let store = s.wfm.store();
    let tasks = store.kind(Kind::Tasks);
    let got: BTreeSet<String> = tasks
        .iter()
        .map(|t| t["eventId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got.len(), tasks.len(), "no record twice");
    assert_eq!(got, expected_tasks(&root));
    // Users: every listed agent with an e-mail, normalised.
    let agents = dataset(&root, "agents").into_values().next().unwrap();
    let want_users: BTreeSet<String> = agents
        .iter()
        .filter_map(|a| a["email_normalized"].as_str().map(String::from))
        .collect();
    let users: BTreeSet<String> = store
        .kind(Kind::Users)
        .iter()
        .map(|u| u["email"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(users, want_users);
    assert!(store
        .kind(Kind::Users)
        .iter()
        .all(|u| u["isActive"] == true));
    // Records carry axis, label, task (null when unmatched), category, channels.
    let away = tasks
        .iter()
        .find(|t| t["status"] == "Coaching 1:1")
        .unwrap();
    assert!(away["task"].is_null());
    assert_eq!(away["statusCategory"], "away");
    let avail = tasks
        .iter()
        .find(|t| t["axis"] == "availability" && t["status"] != "Unavailable")
        .unwrap();
    assert!(avail["availableFor"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
    assert!(tasks.iter().any(|t| t["statusCategory"] == "loggedOut"));
    // Segments of agents unknown to /agents: pushed with a null e-mail, reported unknown.
    assert!(tasks.iter().any(|t| t["userEmail"].is_null()));
    let m = latest_manifest(&root);
    assert_eq!(
        m["wfm"]["tasks"]["inserted"].as_u64().unwrap() as usize,
        tasks.len()
    );
    assert_eq!(m["wfm"]["tasks"]["rejected"], 0);
    assert!(!m["wfm"]["tasks"]["unknown_users"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(o.stdout.contains("wfm inserted"), "{o}");
    // Every batch kept to the cap and only each day's first carried replaceWindow.
    let mut windows = 0;
    for r in s
        .wfm
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/api/workactivity"))
    {
        let env: Value = serde_json::from_str(&r.body).unwrap();
        assert!(env["data"].as_array().unwrap().len() <= 100);
        let tasks = r.path == "/api/workactivity/taskdata";
        windows += (tasks && env.get("replaceWindow").is_some()) as usize;
    }
    assert_eq!(windows, 3);

    // The same range again: the receiver's content is unchanged.
    let before = (
        sorted(store.kind(Kind::Tasks)),
        sorted(store.kind(Kind::Users)),
    );
    let o = run(dir.path(), &p, NOW, &RANGE).await;
    assert_eq!(o.code, 0, "{o}");
    let after = s.wfm.store();
    assert_eq!(
        before,
        (
            sorted(after.kind(Kind::Tasks)),
            sorted(after.kind(Kind::Users))
        )
    );
    assert_no_shared_starts(&after);
    assert_no_secrets(&root, &[&o.stdout, &o.stderr]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_killed_mid_way_resumes_without_resending_acknowledged_batches() {
    // A clean run for reference.
    let clean = start_default(NOW).await;
    let dc = tempfile::tempdir().unwrap();
    let pc = pipeline(dc.path(), &clean, "", "batch_size = 50");
    assert_eq!(run(dc.path(), &pc, NOW, &RANGE).await.code, 0);
    let task_posts = |s: &Sims| {
        s.wfm
            .requests()
            .iter()
            .filter(|r| r.path == "/api/workactivity/taskdata" && r.status == 200)
            .count()
    };
    let total = task_posts(&clean);
    assert!(total > 6, "{total} batches");

    let s = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "batch_size = 50");
    // Dies right after the 5th acknowledged batch (users + 4 task batches).
    let o = run_env(
        dir.path(),
        &p,
        NOW,
        &RANGE,
        &[("GLADLY_WFM_CRASH_AT", "push-batch:5")],
    )
    .await;
    assert_ne!(o.code, 0, "{o}");
    assert!(o.stderr.contains("dying at push-batch"), "{o}");
    // Two batches are in flight at a time: the 5th may have been stored, unacknowledged,
    // when the run died after taking the 4th's answer — or a moment later, from what the dead
    // run left in the simulator's socket: counted once its connections are closed.
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        s.wfm.connections_closed(),
    )
    .await
    .expect("the dead run's connections to the WFM closed");
    let at_crash = task_posts(&s);
    assert!(
        (4..=5).contains(&at_crash),
        "{at_crash} task batches stored"
    );
    let o = run_env(dir.path(), &p, NOW, &RANGE, &[]).await;
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(
        task_posts(&s) - at_crash,
        total - 4,
        "the resumed run sent only the unacknowledged batches"
    );
    let m = latest_manifest(&dir.path().join("output"));
    assert_eq!(m["wfm"]["tasks"]["batches_skipped_resumed"], 4);
    let (a, b) = (clean.wfm.store(), s.wfm.store());
    assert_eq!(sorted(a.kind(Kind::Tasks)), sorted(b.kind(Kind::Tasks)));
    assert_eq!(sorted(a.kind(Kind::Users)), sorted(b.kind(Kind::Users)));
    assert!(util::files(&dir.path().join("output"))
        .iter()
        .all(|f| !f.to_string_lossy().contains(".tmp-")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_server_errors_are_waited_out() {
    let clean = start_default(NOW).await;
    let dc = tempfile::tempdir().unwrap();
    let pc = pipeline(dc.path(), &clean, "", "");
    assert_eq!(run(dc.path(), &pc, NOW, &RANGE).await.code, 0);

    let faults = FaultRates {
        server_error: 0.15,
        too_many: 0.15,
        ..Default::default()
    };
    let s = start(
        world(7, 20, NOW),
        |c| {
            c.faults = FaultRates {
                server_error: 0.2,
                cut: 0.2,
                ..Default::default()
            }
        },
        WfmSimConfig {
            faults,
            ..Default::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "");
    let o = run(dir.path(), &p, NOW, &RANGE).await;
    assert_eq!(o.code, 0, "{o}");
    let statuses: Vec<u16> = s.wfm.requests().iter().map(|r| r.status).collect();
    assert!(
        statuses.contains(&429) && statuses.contains(&500),
        "{statuses:?}"
    );
    let (a, b) = (clean.wfm.store(), s.wfm.store());
    assert_eq!(sorted(a.kind(Kind::Tasks)), sorted(b.kind(Kind::Tasks)));
    for d in ["agent_status_events", "agent_status_segments"] {
        assert_eq!(
            dataset(&dc.path().join("output"), d),
            dataset(&dir.path().join("output"), d),
            "{d}"
        );
    }
    let m = latest_manifest(&dir.path().join("output"));
    assert!(m["requests"]["wfm"]["retries"].as_u64().unwrap() > 0);
    assert!(m["requests"]["gladly"]["retries"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_segment_is_closed_in_place_by_a_later_run() {
    // 2026-11-03 at 15:00 local: today, pushed with open segments.
    let afternoon = "2026-11-03T20:00:00Z";
    let a = start_default(afternoon).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &a, "", "");
    let day = ["--from", "2026-11-03", "--to", "2026-11-03"];
    assert_eq!(run(dir.path(), &p, afternoon, &day).await.code, 0);
    let open: Vec<String> = a
        .wfm
        .store()
        .kind(Kind::Tasks)
        .iter()
        .filter(|t| t["endTime"].is_null())
        .map(|t| t["eventId"].as_str().unwrap().to_string())
        .collect();
    assert!(!open.is_empty());
    // The next day, the same receiver, Gladly's history from the report.
    let b = start(world(7, 20, NOW), |_| {}, WfmSimConfig::default()).await;
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace(&a.gladly_url, &b.gladly_url);
    std::fs::write(&p, text).unwrap();
    assert_eq!(run(dir.path(), &p, NOW, &day).await.code, 0);
    let tasks = a.wfm.store().kind(Kind::Tasks);
    for id in &open {
        let t = tasks
            .iter()
            .find(|t| t["eventId"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} still stored"));
        assert!(!t["endTime"].is_null(), "{id} closed");
    }
    assert!(tasks.iter().all(|t| !t["endTime"].is_null()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_gone_from_agents_is_pushed_inactive_and_active_again_when_it_returns() {
    let s = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "");
    let day = ["--from", "2026-11-03", "--to", "2026-11-03"];
    assert_eq!(run(dir.path(), &p, NOW, &day).await.code, 0);
    let user = |email: &str| {
        s.wfm
            .store()
            .kind(Kind::Users)
            .into_iter()
            .filter(|u| u["email"] == email)
            .collect::<Vec<Value>>()
    };
    let first = s.wfm.store().kind(Kind::Users)[0].clone();
    let email = first["email"].as_str().unwrap().to_string();
    let id = first["integrationIdentifier"].as_str().unwrap().to_string();
    assert_eq!(user(&email)[0]["isActive"], true);

    // Deactivated in Gladly: gone from /agents. The next run pushes it once, inactive.
    s.gladly.set_agent_listed(&id, false);
    assert_eq!(run(dir.path(), &p, NOW, &day).await.code, 0);
    let u = user(&email);
    assert_eq!(u.len(), 1, "one record per user");
    assert_eq!(u[0]["isActive"], false, "{u:?}");
    assert_eq!(u[0]["integrationIdentifier"], id.as_str());
    let others_active = s
        .wfm
        .store()
        .kind(Kind::Users)
        .iter()
        .filter(|u| u["email"] != email.as_str())
        .all(|u| u["isActive"] == true);
    assert!(others_active);

    // Back in Gladly: active again.
    s.gladly.set_agent_listed(&id, true);
    assert_eq!(run(dir.path(), &p, NOW, &day).await.code, 0);
    assert_eq!(user(&email)[0]["isActive"], true);
}

/// The keys of the task records the receiver holds.
fn stored_task_ids(s: &Sims) -> BTreeSet<String> {
    s.wfm
        .store()
        .kind(Kind::Tasks)
        .iter()
        .map(|t| t["eventId"].as_str().unwrap().to_string())
        .collect()
}

fn task_pushes(s: &Sims) -> usize {
    s.wfm
        .requests()
        .iter()
        .filter(|r| r.path == "/api/workactivity/taskdata")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_does_not_account_for_every_record_is_not_trusted() {
    let s = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "");
    let day = ["--from", "2026-11-03", "--to", "2026-11-03"];
    // 200 {"data":{}} for every task batch: not a confirmation.
    s.wfm.set_misbehave(Misbehave::EmptyAnswer);
    let o = run(dir.path(), &p, NOW, &day).await;
    assert_eq!(o.code, 1, "{o}");
    assert!(
        o.stdout.contains("does not account for the records sent")
            && o.stdout.contains("received 0"),
        "{o}"
    );
    let root = dir.path().join("output");
    let state: Value =
        serde_json::from_slice(&std::fs::read(root.join("_state/t/state.json")).unwrap()).unwrap();
    assert!(
        state["push"].get("tasks/2026-11-03").is_none(),
        "no checkpoint for an unconfirmed batch: {}",
        state["push"]
    );
    assert!(
        state["completed"].get("load").is_none(),
        "day not marked done"
    );
    // A receiver that answers properly gets the whole day.
    s.wfm.set_misbehave(Misbehave::None);
    let o = run(dir.path(), &p, NOW, &day).await;
    assert_eq!(o.code, 0, "{o}");
    let got = stored_task_ids(&s);
    assert_eq!(got, expected_tasks(&root));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_records_fail_the_run_are_named_and_are_sent_again() {
    let s = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "");
    let day = ["--from", "2026-11-03", "--to", "2026-11-03"];
    s.wfm.set_misbehave(Misbehave::RejectTasks);
    let o = run(dir.path(), &p, NOW, &day).await;
    assert_eq!(o.code, 1, "{o}");
    assert!(o.stdout.contains("the WFM rejected"), "{o}");
    let root = dir.path().join("output");
    let want = expected_tasks(&root);
    let m = latest_manifest(&root);
    assert_eq!(m["outcome"], "failed");
    assert_eq!(
        m["wfm"]["tasks"]["rejected"].as_u64(),
        Some(want.len() as u64)
    );
    let named: BTreeSet<String> = m["wfm"]["tasks"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["code"], "rejected", "{e}");
            e["record"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(
        !named.is_empty() && named.is_subset(&want),
        "rejections name the records: {named:?}"
    );
    // Still rejected: sent again, and the run fails again.
    let before = task_pushes(&s);
    assert_eq!(run(dir.path(), &p, NOW, &day).await.code, 1);
    assert!(task_pushes(&s) > before, "rejected batches are sent again");
    // Once the receiver takes them, the day is done.
    s.wfm.set_misbehave(Misbehave::None);
    let o = run(dir.path(), &p, NOW, &day).await;
    assert_eq!(o.code, 0, "{o}");
    let got = stored_task_ids(&s);
    assert_eq!(got, want);
}
