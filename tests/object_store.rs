//! An `s3://` output root against a real S3-protocol server on loopback (moto, started by the
//! harness): the same runs give the same datasets as a local root, a crash resumes, nothing
//! temporary is left, and the run lock (a leased object created with a conditional put) lets
//! exactly one of two racing runs work and passes a killed holder's lock on after its lease.

mod util;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gladly_wfm_sim::faults::FaultRates;
use gladly_wfm_sim::wfm::WfmSimConfig;
use serde_json::{Map, Value};
use util::s3::{S3Server, ACCESS_KEY, SECRET_KEY};
use util::*;

const BUCKET: &str = "lake";
const PREFIX: &str = "orgs/acme";
const RANGE: [&str; 4] = ["--from", "2026-11-01", "--to", "2026-11-04"];
const DATASETS: [&str; 12] = [
    "raw/agent_events",
    "raw/agent_summary",
    "agent_day_audit",
    "raw/conversation_events",
    "raw/work_sessions",
    "agent_status_events",
    "agent_status_segments",
    "conversations",
    "work_sessions",
    "workstream_intervals",
    "inboxes",
    "agents",
];

/// The pipeline file of `util::pipeline`, with its root on the S3 server.
fn s3_pipeline(dir: &Path, sims: &Sims, extra_output: &str) -> PathBuf {
    let p = pipeline(dir, sims, "", "");
    let local_root = format!("root = \"{}\"", dir.join("output").display());
    let text = std::fs::read_to_string(&p).unwrap().replace(
        &local_root,
        &format!("root = \"s3://{BUCKET}/{PREFIX}\"\n{extra_output}"),
    );
    std::fs::write(&p, text).unwrap();
    p
}

fn env_of(server: &S3Server, more: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut e = server.env();
    e.extend(more.iter().cloned());
    e
}

fn refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

type Rows = BTreeMap<String, Vec<Map<String, Value>>>;

/// Snapshot times differ between runs by design; every other value must not.
fn without_snapshot_times(m: Rows) -> Rows {
    m.into_iter()
        .map(|(d, rows)| {
            let rows = rows
                .into_iter()
                .map(|mut r| {
                    r.remove("snapshot_at");
                    r
                })
                .collect();
            (d, rows)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_rerun_and_crash_resume_into_s3_give_the_datasets_of_a_local_run() {
    let server = S3Server::start().await;
    server.create_bucket(BUCKET).await;
    let sims = start_default(NOW).await;

    let ldir = tempfile::tempdir().unwrap();
    let lp = pipeline(ldir.path(), &sims, "", "");
    let o = run(ldir.path(), &lp, NOW, &RANGE).await;
    assert_eq!(o.code, 0, "local run: {o}");

    let sdir = tempfile::tempdir().unwrap();
    let sp = s3_pipeline(sdir.path(), &sims, "lock_lease_seconds = 2");
    // The runs' local temporary folder (spooled answers, spilled states), watched below.
    let tmp = tempfile::tempdir().unwrap();
    let tmp_env = ("TMPDIR", tmp.path().display().to_string());
    let leftovers = || -> Vec<String> {
        std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("gladly-wfm-"))
            .collect()
    };
    // Killed after the sixth partition is encoded and before it is put: a run that died mid-way.
    let crash = env_of(
        &server,
        &[
            ("GLADLY_WFM_CRASH_AT", "partition-temp-written:6".into()),
            tmp_env.clone(),
        ],
    );
    let o = run_env(sdir.path(), &sp, NOW, &RANGE, &refs(&crash)).await;
    assert!(
        o.code != 0 && o.stderr.contains("dying at partition-temp-written"),
        "the first run is killed: {o}"
    );
    assert!(
        !leftovers().is_empty(),
        "the killed run leaves its temporary folder behind"
    );
    wait_out_the_lease(&server).await;
    let env = env_of(&server, &[tmp_env]);
    let resumed = run_env(sdir.path(), &sp, NOW, &RANGE, &refs(&env)).await;
    assert_eq!(resumed.code, 0, "the resumed run: {resumed}");
    assert!(
        resumed.stderr.contains("took over the run lock"),
        "the killed run's lock is taken over (its lease of 2 s expired before the resume): {resumed}"
    );
    // The resumed run removed the killed run's folder (its owner lock was free) and its own.
    assert_eq!(leftovers(), Vec::<String>::new(), "after the resumed run");
    let again = run_env(sdir.path(), &sp, NOW, &RANGE, &refs(&env)).await;
    assert_eq!(again.code, 0, "the re-run: {again}");
    assert!(
        !again.stderr.contains("took over"),
        "a finished run releases its lock: {again}"
    );

    // Read back through the server.
    let keys = server.keys(BUCKET).await;
    assert!(
        keys.iter().all(|k| k.starts_with(&format!("{PREFIX}/"))),
        "{keys:?}"
    );
    // Neither temporary names, nor staged partitions, nor commit records outlive a run.
    let temp: Vec<_> = keys
        .iter()
        .filter(|k| k.contains(".tmp") || k.contains("/_staging/") || k.contains("/_commits/"))
        .collect();
    assert!(temp.is_empty(), "temporary objects left: {temp:?}");
    for k in keys.iter().filter(|k| k.contains("/date=")) {
        assert!(
            k.ends_with("/part-0.parquet"),
            "one object per partition: {k}"
        );
    }
    let got = tempfile::tempdir().unwrap();
    server.download(BUCKET, PREFIX, got.path()).await;
    let local = ldir.path().join("output");
    for d in DATASETS {
        let (x, y) = (
            without_snapshot_times(dataset(&local, d)),
            without_snapshot_times(dataset(got.path(), d)),
        );
        assert!(!x.is_empty(), "{d} written locally");
        assert_eq!(
            x.keys().collect::<Vec<_>>(),
            y.keys().collect::<Vec<_>>(),
            "{d}: partitions"
        );
        assert!(
            x == y,
            "{d}: rows differ between the local and the s3:// root"
        );
    }
    // State, manifests and the lock live beside the data.
    let state: Value =
        serde_json::from_slice(&std::fs::read(got.path().join("_state/t/state.json")).unwrap())
            .unwrap();
    assert_eq!(
        state["completed"]["load"].as_array().map(|a| a.len()),
        Some(4)
    );
    let lock: Value =
        serde_json::from_slice(&std::fs::read(got.path().join("_state/t/run.lock")).unwrap())
            .unwrap();
    assert_eq!(lock["released"], true, "{lock}");
    let m = latest_manifest(got.path());
    assert!(m["requests"]["object_store"].as_u64().unwrap() > 0, "{m}");
    assert!(
        m["requests"]["object_store"].as_u64().unwrap() > 20,
        "every partition is a request: {m}"
    );
    // AWS credentials are never written or logged.
    for f in files(got.path()) {
        let s = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).to_string();
        assert!(
            !s.contains(SECRET_KEY) && !s.contains(ACCESS_KEY),
            "{}",
            f.display()
        );
    }
    for o in [&resumed, &again] {
        assert!(!o.stderr.contains(SECRET_KEY) && !o.stdout.contains(SECRET_KEY));
    }
    // `status` reads the same state from the object store.
    let st = bin(
        sdir.path(),
        &["status", "--pipeline", sp.to_str().unwrap()],
        &refs(&env),
    )
    .await;
    assert_eq!(st.code, 0, "{st}");
    assert!(st.stdout.contains("lock: free"), "{st}");
    assert!(st.stdout.contains("2026-11-01..2026-11-04"), "{st}");
}

/// The lock record the harness reads from the server.
async fn lock_record(server: &S3Server) -> Option<Value> {
    let b = server
        .get(BUCKET, &format!("{PREFIX}/_state/t/run.lock"))
        .await?;
    serde_json::from_slice(&b).ok()
}

/// Waits until the lock's lease has expired: nothing but time tells a dead holder from a slow
/// one, so this is the one wait that is a clock, not an event.
async fn wait_out_the_lease(server: &S3Server) -> Value {
    let held = lock_record(server).await.expect("a lock is left");
    let wait = held["lease_until_ms"].as_i64().unwrap() - gladly_wfm::time::now_ms();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64 + 100)).await;
    }
    held
}

/// Simulators whose every Gladly answer takes `ms`: a run lasts several seconds, long enough
/// for another run to meet it and for its lease to be renewed several times.
async fn slow_sims(ms: u64) -> Sims {
    start(
        world(7, 20, NOW),
        |c| {
            c.faults = FaultRates {
                slow: 1.0,
                ..Default::default()
            };
            c.slow_ms = ms;
        },
        WfmSimConfig::default(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_runs_racing_on_one_s3_root_one_works_and_the_other_exits_3() {
    let server = S3Server::start().await;
    server.create_bucket(BUCKET).await;
    let sims = slow_sims(700).await;
    let dir = tempfile::tempdir().unwrap();
    let p = s3_pipeline(dir.path(), &sims, "lock_lease_seconds = 2");
    let ps = p.display().to_string();
    let args = [
        "run",
        "--pipeline",
        ps.as_str(),
        "--now",
        NOW,
        RANGE[0],
        RANGE[1],
        RANGE[2],
        RANGE[3],
    ];
    let env = server.env();
    let (mut a, mut b) = (
        command(dir.path(), &args, &refs(&env)),
        command(dir.path(), &args, &refs(&env)),
    );
    for c in [&mut a, &mut b] {
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
    }
    let (ca, cb) = (a.spawn().unwrap(), b.spawn().unwrap());
    let pids = [ca.id().unwrap(), cb.id().unwrap()];
    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    for (i, c) in [ca, cb].into_iter().enumerate() {
        let tx = tx.clone();
        tokio::spawn(async move {
            let _ = tx.send((i, c.wait_with_output().await.unwrap())).await;
        });
    }
    // Whichever exits first is the one that found the lock taken.
    let (who, first) = rx.recv().await.unwrap();
    let text = String::from_utf8_lossy(&first.stdout).to_string()
        + &String::from_utf8_lossy(&first.stderr);
    assert_eq!(first.status.code(), Some(3), "the loser exits 3: {text}");
    let winner_pid = pids[1 - who];
    assert!(
        text.contains(&format!("pid {winner_pid} on ")),
        "the loser names the holder (pid {winner_pid}): {text}"
    );
    // The winner is still working; its lease (2 s) is renewed while it does.
    let first_lease = lock_record(&server).await.unwrap()["lease_until_ms"]
        .as_i64()
        .unwrap();
    loop {
        let r = lock_record(&server).await.unwrap();
        assert_eq!(
            r["released"], false,
            "the winner finished too soon to test renewal: {r}"
        );
        if r["lease_until_ms"].as_i64().unwrap() > first_lease + 2_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The first lease has expired by now: only renewal keeps a third run out.
    let third = run_env(dir.path(), &p, NOW, &RANGE, &refs(&env)).await;
    assert_eq!(
        third.code, 3,
        "a run meeting a renewed lease exits 3: {third}"
    );
    let (_, done) = rx.recv().await.unwrap();
    assert_eq!(
        done.status.code(),
        Some(0),
        "the winner works to the end: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    let r = lock_record(&server).await.unwrap();
    assert_eq!(r["released"], true, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holders_lock_is_taken_over_after_its_lease() {
    let server = S3Server::start().await;
    server.create_bucket(BUCKET).await;
    let sims = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    let p = s3_pipeline(dir.path(), &sims, "lock_lease_seconds = 4");
    let crash = env_of(&server, &[("GLADLY_WFM_CRASH_AT", "raw-written:1".into())]);
    let killed = run_env(dir.path(), &p, NOW, &RANGE, &refs(&crash)).await;
    assert!(killed.stderr.contains("dying at raw-written"), "{killed}");
    let held = lock_record(&server)
        .await
        .expect("the killed run's lock is left");
    assert_eq!(held["released"], false, "{held}");
    let env = server.env();
    let early = run_env(dir.path(), &p, NOW, &RANGE, &refs(&env)).await;
    if gladly_wfm::time::now_ms() < held["lease_until_ms"].as_i64().unwrap() {
        assert_eq!(
            early.code, 3,
            "within the lease the lock is still held: {early}"
        );
        assert!(
            early.stdout.contains(held["run_id"].as_str().unwrap())
                || early.stderr.contains(held["run_id"].as_str().unwrap()),
            "names the holder's run: {early}"
        );
    }
    wait_out_the_lease(&server).await;
    let after = run_env(dir.path(), &p, NOW, &RANGE, &refs(&env)).await;
    assert_eq!(after.code, 0, "{after}");
    assert!(
        after.stderr.contains("took over the run lock")
            && after.stderr.contains(held["run_id"].as_str().unwrap()),
        "the takeover is logged, naming the dead holder: {after}"
    );
}

#[tokio::test]
async fn a_plain_http_endpoint_that_is_not_loopback_is_refused_with_exit_2() {
    let sims = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    let p = s3_pipeline(dir.path(), &sims, "");
    let env = [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ("AWS_ENDPOINT_URL", "http://192.0.2.10:9000"),
        ("AWS_ALLOW_HTTP", "true"),
    ];
    let o = run_env(dir.path(), &p, NOW, &RANGE, &env).await;
    assert_eq!(o.code, 2, "{o}");
    assert!(
        o.stdout.contains("plain http") && o.stdout.contains("loopback"),
        "{o}"
    );
    assert!(
        sims.gladly.requests().is_empty(),
        "nothing was fetched: {o}"
    );
    assert!(!o.stdout.contains(SECRET_KEY) && !o.stderr.contains(SECRET_KEY));
}

/// An `s3://` root with no credentials in the environment is a configuration error named as such
/// (exit 2), found before any request: the S3 client is never left to ask the cloud's instance
/// metadata endpoint, which is not on loopback.
#[tokio::test]
async fn an_s3_root_without_credentials_is_refused_with_exit_2_before_any_request() {
    let sims = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    let p = s3_pipeline(dir.path(), &sims, "");
    // A loopback endpoint where nothing listens: a request would fail, not reach the cloud.
    let env = [
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ("AWS_ALLOW_HTTP", "true"),
    ];
    let o = run_env(dir.path(), &p, NOW, &RANGE, &env).await;
    assert_eq!(o.code, 2, "{o}");
    assert!(
        o.stdout.contains("no AWS credentials for s3://") && o.stdout.contains("AWS_ACCESS_KEY_ID"),
        "{o}"
    );
    assert!(
        sims.gladly.requests().is_empty(),
        "nothing was fetched: {o}"
    );
    let pf = p.display().to_string();
    let o = bin(dir.path(), &["status", "--pipeline", &pf], &env).await;
    assert_eq!(o.code, 2, "{o}");
    assert!(
        format!("{o}").contains("no AWS credentials for s3://"),
        "{o}"
    );
}

/// A renewal the store took but whose answer was lost leaves the holder a stale ETag (as a
/// renewal racing the release did): releasing reads the record back and, still this run's,
/// releases it. Before, the release lost with a 412 and the next run found the lock held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_whose_etag_went_stale_is_still_released() {
    use gladly_wfm::lock::PipelineLock;
    use gladly_wfm::storage::{Root, RootSpec, WriteMode};
    let server = S3Server::start().await;
    server.create_bucket(BUCKET).await;
    for (k, v) in server.env() {
        std::env::set_var(k, v);
    }
    let released = tokio::task::spawn_blocking(|| {
        let spec = RootSpec::parse(&format!("s3://{BUCKET}/stale")).unwrap();
        let root = Root::open(&spec).unwrap();
        let dir = root.dir("_state/t");
        let key = dir.key("run.lock");
        let lock = PipelineLock::acquire(&dir, "t", "run-1", Duration::from_secs(60)).unwrap();
        // The same record written again behind the holder's back: a new ETag it never saw.
        let (bytes, _) = root.read(&key).unwrap().unwrap();
        root.write(&key, bytes.to_vec(), WriteMode::Overwrite)
            .unwrap();
        lock.release().unwrap();
        let after = root.read(&key).unwrap().unwrap().0;
        // Another run takes the lock at once: it is free.
        let next = PipelineLock::acquire(&dir, "t", "run-2", Duration::from_secs(60));
        (after, next.map(|l| l.release().is_ok()))
    })
    .await
    .unwrap();
    let record: Value = serde_json::from_slice(&released.0).unwrap();
    assert_eq!(record["released"], true, "{record}");
    assert!(matches!(released.1, Ok(true)), "the next run took the lock");
}
