//! Nothing lost after a failure: work sessions land on the day they were created, which can lie
//! outside a run's window; the days they change are recorded durably before the raw zone
//! changes and cleared only once rebuilt and pushed. A run that fails in any of five ways
//! (WFM down, WFM 413, SIGTERM during extract, SIGTERM during load, disk full), then runs again,
//! leaves the datasets and the receiver exactly as an uninterrupted pair of nights does.
//! Also: curated partitions only for the days a run processes, and `--stages load` alone.

mod util;

use std::path::Path;

use gladly_wfm_sim::wfm::{Kind, Misbehave};
use util::*;

/// The first night (2026-11-02 at 00:30 the next morning): some of 11-02's sessions are still
/// open. The second night processes 11-03 and sees them end: 11-02, outside its window, must
/// be rebuilt and its intervals pushed.
const FIRST_NIGHT: &str = "2026-11-03T05:30:00Z";
const SECOND_NIGHT: &str = "2026-11-04T05:30:00Z";
const DAY1: [&str; 4] = ["--from", "2026-11-02", "--to", "2026-11-02"];
const DAY2: [&str; 4] = ["--from", "2026-11-03", "--to", "2026-11-03"];

struct Nights {
    // Keeps the first night's simulators alive for the whole test.
    _first: Sims,
    second: Sims,
    dir: tempfile::TempDir,
    pipeline: std::path::PathBuf,
}

impl Nights {
    /// Runs the first night against `first`'s Gladly, pushing to `second`'s WFM (one receiver
    /// for both nights), and points the pipeline at `second`'s Gladly for the second night.
    async fn after_first_night() -> Nights {
        let first = start_default(FIRST_NIGHT).await;
        let second = start_default(SECOND_NIGHT).await;
        let dir = tempfile::tempdir().unwrap();
        let sims = Sims {
            gladly: first.gladly.clone(),
            gladly_url: first.gladly_url.clone(),
            wfm: second.wfm.clone(),
            wfm_url: second.wfm_url.clone(),
        };
        let p = pipeline(dir.path(), &sims, "", "batch_size = 40");
        let o = run(dir.path(), &p, FIRST_NIGHT, &DAY1).await;
        assert_eq!(o.code, 0, "{o}");
        let text = std::fs::read_to_string(&p)
            .unwrap()
            .replace(&first.gladly_url, &second.gladly_url);
        std::fs::write(&p, text).unwrap();
        Nights {
            _first: first,
            second,
            dir,
            pipeline: p,
        }
    }

    fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("output")
    }

    async fn second_night(&self, env: &[(&str, &str)]) -> Out {
        run_env(self.dir.path(), &self.pipeline, SECOND_NIGHT, &DAY2, env).await
    }

    fn set_wfm_url(&self, url: &str) {
        let text = std::fs::read_to_string(&self.pipeline).unwrap();
        let mut out = String::new();
        let mut in_wfm = false;
        for line in text.lines() {
            in_wfm = if line.starts_with('[') {
                line == "[wfm]"
            } else {
                in_wfm
            };
            if in_wfm && line.starts_with("base_url") {
                out.push_str(&format!("base_url = \"{url}\"\n"));
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        std::fs::write(&self.pipeline, out).unwrap();
    }
}

fn offered(root: &Path, day: &str) -> i64 {
    dataset(root, "workstream_intervals")
        .get(day)
        .map(|rows| rows.iter().map(|r| r["offered"].as_i64().unwrap()).sum())
        .unwrap_or(0)
}

fn stored_offered_before(n: &Nights, end: &str) -> i64 {
    n.second
        .wfm
        .store()
        .kind(Kind::Intervals)
        .iter()
        .filter(|r| ms(r["intervalStart"].as_str().unwrap()) < ms(end))
        .map(|r| r["offered"].as_i64().unwrap())
        .sum()
}

fn mount_tmpfs(at: &Path, size: &str) -> Result<(), String> {
    let opts = format!("size={size}");
    let o = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &opts, "tmpfs"])
        .arg(at)
        .output()
        .map_err(|e| e.to_string())?;
    if o.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).to_string())
    }
}

fn remount(at: &Path, size: &str) {
    let opts = format!("remount,size={size}");
    let o = std::process::Command::new("mount")
        .args(["-o", &opts])
        .arg(at)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_second_night_then_a_clean_rerun_equals_two_clean_nights() {
    // Two clean nights, for reference.
    let clean = Nights::after_first_night().await;
    let before = offered(&clean.root(), "2026-11-02");
    let o = clean.second_night(&[]).await;
    assert_eq!(o.code, 0, "{o}");
    assert!(
        offered(&clean.root(), "2026-11-02") > before,
        "the second night adds 11-02's late sessions"
    );
    assert_eq!(
        stored_offered_before(&clean, "2026-11-03T05:00:00Z"),
        offered(&clean.root(), "2026-11-02"),
        "and pushes them"
    );

    type Setup = fn(&Nights) -> Vec<(&'static str, &'static str)>;
    let ways: [(&str, Setup); 4] = [
        ("WFM down", |n| {
            n.set_wfm_url("http://127.0.0.1:9");
            vec![]
        }),
        ("WFM 413", |n| {
            n.second.wfm.set_misbehave(Misbehave::TooLarge);
            vec![]
        }),
        ("SIGTERM during extract", |_| {
            vec![("GLADLY_WFM_SIGTERM_AT", "raw-written:1")]
        }),
        ("SIGTERM during load", |_| {
            vec![("GLADLY_WFM_SIGTERM_AT", "push-batch:2")]
        }),
    ];
    for (what, setup) in ways {
        let n = Nights::after_first_night().await;
        let env = setup(&n);
        let o = n.second_night(&env).await;
        assert_eq!(o.code, 1, "{what}: {o}");
        let m = latest_manifest(&n.root());
        if what.starts_with("SIGTERM") {
            assert_eq!(m["outcome"], "interrupted", "{what}: {m}");
            if what.ends_with("extract") {
                // Stopped at the day being landed: nothing transformed after the signal.
                assert!(m["stage_ms"]["transform"].is_null(), "{what}: {m}");
            }
        } else {
            assert_eq!(m["outcome"], "failed", "{what}: {m}");
        }
        // Mend the cause, run the same command again.
        n.set_wfm_url(&n.second.wfm_url);
        n.second.wfm.set_misbehave(Misbehave::None);
        let o = n.second_night(&[]).await;
        assert_eq!(o.code, 0, "{what}: {o}");
        assert_same_datasets(&clean.root(), &n.root());
        assert_same_store(&clean.second.wfm.store(), &n.second.wfm.store());
        assert_no_temp_files(&n.root());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_up_then_has_room_again_loses_nothing() {
    let clean = Nights::after_first_night().await;
    assert_eq!(clean.second_night(&[]).await.code, 0);

    // The same two nights on a small tmpfs that fills up during the second one.
    let n = Nights::after_first_night().await;
    let root = n.root();
    let keep = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&root)
        .arg(keep.path())
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::create_dir(&root).unwrap();
    if let Err(e) = mount_tmpfs(&root, "64m") {
        panic!("this test fills a small tmpfs: run it as root, as CI does ({e})");
    }
    let _unmount = Unmount(root.clone());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cp -a {}/output/. {}",
            keep.path().display(),
            root.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let used: u64 = files(&root)
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    // Room for a little more than what is there: the second night runs out of it.
    remount(&root, &format!("{}k", used / 1024 + 96));
    let o = n.second_night(&[]).await;
    assert_eq!(o.code, 1, "{o}");
    assert!(
        o.stdout.contains("No space left on device"),
        "names the cause: {o}"
    );
    remount(&root, "256m");
    let o = n.second_night(&[]).await;
    assert_eq!(o.code, 0, "{o}");
    assert_same_datasets(&clean.root(), &root);
    assert_same_store(&clean.second.wfm.store(), &n.second.wfm.store());
    assert_no_temp_files(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curated_partitions_only_for_the_days_a_run_processes() {
    let s = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "");
    // 11-03's run also fetches sessions created on 11-02 (they ended on 11-03): they wait in
    // the raw zone, and no curated partition of 11-02 appears.
    let o = run(dir.path(), &p, NOW, &DAY2).await;
    assert_eq!(o.code, 0, "{o}");
    let root = dir.path().join("output");
    assert!(
        root.join("raw/work_sessions/date=2026-11-02").exists(),
        "the raw zone keeps 11-02's sessions"
    );
    for d in ["work_sessions", "workstream_intervals", "conversations"] {
        assert!(
            !root.join(format!("{d}/date=2026-11-02")).exists(),
            "{d} has no partition of a day no run processed"
        );
    }
    assert!(!o.stderr.contains("redoing"), "{o}");
    // When 11-02 is processed, its partition holds every session, those landed earlier too.
    assert_eq!(run(dir.path(), &p, NOW, &DAY1).await.code, 0);
    let once = dataset(&root, "work_sessions")["2026-11-02"].len();
    let other = tempfile::tempdir().unwrap();
    let p2 = pipeline(other.path(), &s, "", "");
    assert_eq!(run(other.path(), &p2, NOW, &DAY1).await.code, 0);
    assert_eq!(
        once,
        dataset(&other.path().join("output"), "work_sessions")["2026-11-02"].len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_alone_after_extract_and_transform_equals_a_full_run() {
    let range = ["--from", "2026-11-02", "--to", "2026-11-03"];
    let full = start_default(NOW).await;
    let df = tempfile::tempdir().unwrap();
    let pf = pipeline(df.path(), &full, "", "");
    assert_eq!(run(df.path(), &pf, NOW, &range).await.code, 0);

    let s = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "");
    let mut first = range.to_vec();
    first.extend(["--stages", "extract,transform"]);
    assert_eq!(run(dir.path(), &p, NOW, &first).await.code, 0);
    assert!(s.wfm.store().kind(Kind::Tasks).is_empty());
    let mut load = range.to_vec();
    load.extend(["--stages", "load"]);
    let o = run(dir.path(), &p, NOW, &load).await;
    assert_eq!(o.code, 0, "{o}");
    assert_same_store(&full.wfm.store(), &s.wfm.store());
}

/// The curated datasets of one day: what a re-run replaces together.
const CURATED: [&str; 5] = [
    "agent_status_events",
    "agent_status_segments",
    "conversations",
    "work_sessions",
    "workstream_intervals",
];

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// The day's rows of each curated dataset as an outside reader sees them (the visible files).
fn visible_day(root: &Path, day: &str) -> Vec<Vec<serde_json::Map<String, serde_json::Value>>> {
    CURATED
        .iter()
        .map(|d| read_rows(&root.join(d).join(format!("date={day}/part-0.parquet"))))
        .collect()
}

/// The day as this crate's own readers (report, check, the load stage) read it.
fn read_through(root: &Path, day: &str) -> Vec<gladly_wfm::frames::DataFrame> {
    use gladly_wfm::storage::{Root, Storage};
    let st = Storage::new(Root::local(root), gladly_wfm::frames::Compression::Zstd);
    let day = gladly_wfm::time::parse_date(day).unwrap();
    CURATED
        .iter()
        .map(|d| {
            st.read_partition(d, day)
                .unwrap()
                .unwrap_or_else(|| panic!("{d} {day} in {}", root.display()))
        })
        .collect()
}

/// A day's datasets become visible together: a re-run of a day under changed rules (so every
/// dataset of the day changes), killed between two of its datasets or between two renames,
/// leaves readers the old day whole or the new day whole, never some of each; the next run
/// completes it and leaves what an uninterrupted run does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_two_datasets_of_a_day_never_leaves_a_mixed_day() {
    const DAY: &str = "2026-11-02";
    let range = ["--from", DAY, "--to", DAY];
    let s = start_default(NOW).await;
    let old = tempfile::tempdir().unwrap();
    let p_old = pipeline(old.path(), &s, "", "");
    assert_eq!(run(old.path(), &p_old, NOW, &range).await.code, 0);
    // New rules: a task and a workstream renamed, so all five datasets of the day change.
    let v2 = |dir: &Path| {
        let text = std::fs::read_to_string(&p_old)
            .unwrap()
            .replace(
                &old.path().display().to_string(),
                &dir.display().to_string(),
            )
            .replace("name = \"Away\"", "name = \"Away v2\"")
            .replace(
                "name = \"Customer_Support\"",
                "name = \"Customer Support v2\"",
            );
        let p = dir.join("pipeline.toml");
        std::fs::write(&p, text).unwrap();
        p
    };
    let new = tempfile::tempdir().unwrap();
    let p_new = v2(new.path());
    assert_eq!(run(new.path(), &p_new, NOW, &range).await.code, 0);
    let (old_day, new_day) = (
        visible_day(&old.path().join("output"), DAY),
        visible_day(&new.path().join("output"), DAY),
    );
    for (i, d) in CURATED.iter().enumerate() {
        assert_ne!(old_day[i], new_day[i], "{d} differs under the new rules");
    }
    let new_frames = read_through(&new.path().join("output"), DAY);

    // Before the commit record: after the agent datasets are staged (the work datasets may be
    // staged too, on the other thread), after the record is durable, and between renames.
    for (at, recorded) in [
        ("curated-written:1", false),
        ("day-commit-recorded:1", true),
        ("partition-published:1", true),
        ("partition-published:3", true),
    ] {
        let case = tempfile::tempdir().unwrap();
        copy_tree(&old.path().join("output"), &case.path().join("output"));
        let p = v2(case.path());
        let root = case.path().join("output");
        let o = run_env(case.path(), &p, NOW, &range, &[("GLADLY_WFM_CRASH_AT", at)]).await;
        assert!(o.stderr.contains("dying at"), "{at}: {o}");
        let seen = visible_day(&root, DAY);
        let from_new: Vec<bool> = (0..CURATED.len()).map(|i| seen[i] == new_day[i]).collect();
        for (i, d) in CURATED.iter().enumerate() {
            assert!(
                seen[i] == old_day[i] || from_new[i],
                "{at}: {d} is from neither run"
            );
        }
        if !recorded {
            assert!(
                from_new.iter().all(|n| !n),
                "{at}: killed before the day's commit record, yet {:?} of the new run are \
                 visible",
                CURATED
                    .iter()
                    .zip(&from_new)
                    .filter(|(_, n)| **n)
                    .map(|(d, _)| d)
                    .collect::<Vec<_>>()
            );
        } else {
            // The record is durable: this crate's readers read the new day whole through it.
            let through = read_through(&root, DAY);
            for (i, d) in CURATED.iter().enumerate() {
                assert!(
                    through[i].equals_missing(&new_frames[i]),
                    "{at}: {d} read through the pending commit is not the new day"
                );
            }
        }
        // The next run completes (or redoes) the day: the new day whole, nothing left over.
        let o = run(case.path(), &p, NOW, &range).await;
        assert_eq!(o.code, 0, "{at}: {o}");
        if recorded {
            assert!(o.stderr.contains("completed 1 day commit"), "{at}: {o}");
        }
        assert_eq!(visible_day(&root, DAY), new_day, "{at}: after the next run");
        assert_no_temp_files(&root);
        let records: Vec<_> = std::fs::read_dir(root.join("_commits"))
            .map(|r| r.flatten().collect())
            .unwrap_or_default();
        assert!(records.is_empty(), "{at}: commit records left: {records:?}");
    }

    // A staged file lost after its record was written (a power cut before its folder reached
    // the disk, a lifecycle rule): the next run does not pass it off as moved; it stops,
    // naming the day and the record, and the visible day stays the old one whole.
    let case = tempfile::tempdir().unwrap();
    copy_tree(&old.path().join("output"), &case.path().join("output"));
    let p = v2(case.path());
    let root = case.path().join("output");
    let crash = [("GLADLY_WFM_CRASH_AT", "day-commit-recorded:1")];
    let o = run_env(case.path(), &p, NOW, &range, &crash).await;
    assert!(o.stderr.contains("dying at"), "{o}");
    let seg_dir = root.join(format!("agent_status_segments/date={DAY}"));
    let staged: Vec<_> = std::fs::read_dir(&seg_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert_eq!(staged.len(), 1, "one staged segments file");
    std::fs::remove_file(staged[0].path()).unwrap();
    let o = run(case.path(), &p, NOW, &range).await;
    assert_eq!(o.code, 1, "{o}");
    let said = format!("{}{}", o.stdout, o.stderr);
    assert!(
        said.contains(&format!("a staged partition of {DAY}'s commit is gone"))
            && said.contains("_commits/")
            && said.contains(&format!("--from {DAY} --to {DAY}")),
        "{o}"
    );
    assert_eq!(visible_day(&root, DAY), old_day, "the old day, whole");
}
