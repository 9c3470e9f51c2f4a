//! `gladly-wfm demo`, as a newcomer meets it: a refused demo says so first and prints nothing
//! that looks like a result; a finished one counts what is on disk and explains what was not
//! matched and what the WFM's answers mean.

mod util;

use util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_refused_by_the_lock_fails_first_and_prints_no_result() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("output/_state/demo");
    let _held = gladly_wfm::lock::RunLock::acquire(&state, "demo", "another-demo").unwrap();
    let o = bin(dir.path(), &["demo", "--days", "1", "--agents", "3"], &[]).await;
    assert_eq!(o.code, 3, "{o}");
    assert!(
        o.stderr.contains("another demo is running on output") && o.stderr.contains("another-demo"),
        "{o}"
    );
    assert!(o.stdout.is_empty(), "no table, no 'Parquet under': {o}");
    assert!(!dir.path().join("output/agents").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_summary_counts_rows_on_disk_and_explains_what_was_not_matched() {
    let dir = tempfile::tempdir().unwrap();
    let o = bin(dir.path(), &["demo", "--days", "3", "--agents", "6"], &[]).await;
    assert_eq!(o.code, 0, "{o}");
    // A second, shorter demo: the table counts every partition on disk, not this run's rows.
    let o = bin(dir.path(), &["demo", "--days", "1", "--agents", "6"], &[]).await;
    assert_eq!(o.code, 0, "{o}");
    let root = dir.path().join("output");
    for d in [
        "agent_status_events",
        "agent_status_segments",
        "conversations",
        "work_sessions",
        "workstream_intervals",
    ] {
        let parts = dataset(&root, d);
        let rows: usize = parts.values().map(|r| r.len()).sum();
        let line = o
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(d))
            .unwrap_or_else(|| panic!("{d} in the table: {o}"));
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            cells[1..],
            [rows.to_string(), parts.len().to_string()],
            "{line}"
        );
    }
    let m = latest_manifest(&root);
    let this_run: u64 = m["rows"]["agent_status_segments"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    let on_disk: usize = dataset(&root, "agent_status_segments")
        .values()
        .map(|r| r.len())
        .sum();
    assert!(
        (this_run as usize) < on_disk,
        "the second run wrote fewer rows than the disk holds"
    );
    // What was not matched and not pushed, and what the WFM's columns mean.
    assert!(o.stdout.contains("labels no task rule matches"), "{o}");
    assert!(
        o.stdout.contains("inboxes no workstream rule matches"),
        "{o}"
    );
    let unmatched = m["wfm"]["intervals"]["unmatched_workstream"]
        .as_u64()
        .unwrap();
    assert!(unmatched > 0, "the demo has an unmatched inbox");
    assert!(
        o.stdout.contains(&format!(
            "{unmatched} interval records are of inboxes no workstream rule matches: sent with workstream = null"
        )),
        "{o}"
    );
    assert!(
        o.stdout
            .contains("sent = inserted + updated + duplicate + rejected"),
        "{o}"
    );
    assert!(
        o.stdout
            .contains("agents on the status segments sent whom the WFM has no user for"),
        "{o}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_follow_takes_the_webhook_and_shows_changes_within_seconds() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let mut child = command(
        dir.path(),
        &["demo", "--follow", "--days", "1", "--agents", "200"],
        &[],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let pid = child.id().unwrap() as i32;
    let mut err = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let log = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Ok(Some(l)) = err.next_line().await {
            all.push(l);
        }
        all
    });
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // A change the WFM had seconds after it happened: brought by the webhook, not a poll.
    let seen = tokio::time::timeout(std::time::Duration::from_secs(120), async {
        while let Ok(Some(l)) = out.next_line().await {
            let after = l
                .split("in the WFM ")
                .nth(1)
                .and_then(|r| r.split(" s after").next())
                .and_then(|s| s.parse::<f64>().ok());
            if after.is_some_and(|s| s < 5.0) {
                return Some(l);
            }
        }
        None
    })
    .await;
    unsafe { libc::kill(pid, libc::SIGINT) };
    let status = child.wait().await.unwrap();
    let log = log.await.unwrap().join("\n");
    assert!(matches!(seen, Ok(Some(_))), "a change within 5 s:\n{log}");
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        log.contains("`gladly-wfm demo` (enabled) (created)"),
        "{log}"
    );
    assert!(log.contains("webhook: PING"), "{log}");
}
