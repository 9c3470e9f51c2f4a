//! A day's curated datasets become visible together.
//!
//! Each dataset of a day is first *staged*: written whole and made durable under a name no
//! reader looks at (a temporary name beside the partition on disk, a key under `_staging/` in
//! an object store). When every dataset of the day is staged, a *commit record* naming each
//! staged file and its place is made durable under `_commits/`; only then is each moved into
//! place, and the record removed.
//!
//! - Killed before the record: the old day is untouched and whole; the staged files are swept.
//! - Killed after it: the next `run` or `follow` completes the record before it does anything
//!   else, and this crate's own readers (`report`, `check`) read through a record a killed run
//!   left, so they see the new day whole meanwhile. (A reader racing a live commit reads what
//!   an outside reader does; commits take milliseconds.)
//!
//! A Hive layout puts a day's datasets in five directories, so no single rename can swap them:
//! an outside reader can meet a mixed day only in the few renames after the record is durable,
//! and only until the next run when a crash lands exactly there (docs/decisions).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::{partition_key, sync_dir, Root, Storage, StorageError, WriteMode, TMP_MARK};
use crate::frames::{self, DataFrame};

/// Where commit records live, relative to the root.
pub const COMMITS: &str = "_commits";
/// Where an object store's staged partitions live until their commit moves them.
pub const STAGING: &str = "_staging";

/// One dataset of one day, written whole and durable, not yet visible.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Staged {
    pub dataset: String,
    pub day: NaiveDate,
    /// The staged file's key, relative to the root.
    pub staged: String,
    /// Its size: a resumed commit that finds the staged file gone checks the partition in its
    /// place has this size (moved, not lost) before it lets the record go.
    #[serde(default)]
    pub bytes: u64,
}

#[derive(Serialize, Deserialize)]
struct CommitRecord {
    day: NaiveDate,
    /// When it was written (epoch ms): pending records are completed oldest first.
    #[serde(default)]
    at_ms: i64,
    partitions: Vec<Staged>,
}

/// What `recover` found: commits completed, temporary files removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    pub commits: usize,
    pub swept: usize,
}

/// Staged names are unique per process and write, so two commits of one day never share one.
fn unique() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Pending records, keyed by (dataset, day): the staged file a reader reads instead.
pub(super) type Pending = BTreeMap<(String, NaiveDate), String>;

impl Storage {
    /// Writes a day's partition of a dataset whole and durably, without making it visible;
    /// `commit_day` makes a day's staged partitions visible together.
    pub fn stage_partition(
        &self,
        dataset: &str,
        day: NaiveDate,
        df: &mut DataFrame,
    ) -> Result<Staged, StorageError> {
        let staged = match &self.root {
            Root::Local(base) => {
                let dir = base.join(dataset).join(format!("date={day}"));
                std::fs::create_dir_all(&dir).map_err(|e| super::err(&dir, e))?;
                let rel = format!("{dataset}/date={day}/.part-0.parquet{TMP_MARK}{}", unique());
                let path = base.join(&rel);
                let mut f = std::fs::File::create(&path).map_err(|e| super::err(&path, e))?;
                frames::write_parquet_file(df, &mut f, self.compression)
                    .map_err(|e| super::err(&path, e))?;
                f.sync_all().map_err(|e| super::err(&path, e))?;
                let bytes = f.metadata().map_err(|e| super::err(&path, e))?.len();
                // The file's name must be as durable as the record that will name it: the
                // folder (and a new folder's own entry) are synced too.
                sync_dir(&dir);
                if let Some(parent) = dir.parent() {
                    sync_dir(parent);
                }
                (rel, bytes)
            }
            Root::Object(_) => {
                let rel = format!("{STAGING}/{}/{}", unique(), partition_key(dataset, day));
                let mut buf = Vec::new();
                frames::write_parquet(df, &mut buf, self.compression)
                    .map_err(|e| StorageError::new(self.root.describe(&rel), e))?;
                let bytes = buf.len() as u64;
                self.root.write(&rel, buf, WriteMode::Overwrite)?;
                (rel, bytes)
            }
        };
        crate::fault_point("partition-temp-written");
        Ok(Staged {
            dataset: dataset.to_string(),
            day,
            staged: staged.0,
            bytes: staged.1,
        })
    }

    /// Makes a day's staged partitions visible together: the commit record first (durable),
    /// then each partition moved into place, then the record removed.
    pub fn commit_day(&self, day: NaiveDate, partitions: Vec<Staged>) -> Result<(), StorageError> {
        if partitions.is_empty() {
            return Ok(());
        }
        let key = format!("{COMMITS}/{day}.{}.json", unique());
        let record = CommitRecord {
            day,
            at_ms: crate::time::now_ms(),
            partitions,
        };
        let bytes = serde_json::to_vec_pretty(&record).expect("a commit record serialises");
        self.root.write(&key, bytes, WriteMode::Overwrite)?;
        crate::fault_point("day-commit-recorded");
        self.complete(&record, None)
            .map_err(|e| StorageError::new(e.path, format!("committing {day}: {}", e.detail)))?;
        self.root.delete(&key)
    }

    /// Moves every partition of a record into place. `resumed`: the key of a record a killed
    /// run left, some of whose partitions may already be in place.
    fn complete(&self, record: &CommitRecord, resumed: Option<&str>) -> Result<(), StorageError> {
        if let Some(key) = resumed {
            // Every partition must still be staged or already in place before any is moved:
            // a lost one stops the run with the day as it was, not half moved.
            for p in &record.partitions {
                let target = partition_key(&p.dataset, p.day);
                if self.root.size(&p.staged)?.is_none() && self.root.size(&target)? != Some(p.bytes)
                {
                    return Err(lost(&self.root, p, Some(key)));
                }
            }
        }
        for p in &record.partitions {
            let target = partition_key(&p.dataset, p.day);
            // Nothing to move on a resumed record means moved already (checked above).
            if !self.root.publish(&p.staged, &target)? && resumed.is_none() {
                return Err(lost(&self.root, p, None));
            }
            self.written
                .lock()
                .unwrap()
                .insert((p.dataset.clone(), p.day));
            crate::fault_point("partition-published");
        }
        if let Root::Local(base) = &self.root {
            for p in &record.partitions {
                sync_dir(&base.join(&p.dataset).join(format!("date={}", p.day)));
            }
        }
        Ok(())
    }

    /// Pending records, oldest first.
    fn records(&self) -> Result<Vec<(String, CommitRecord)>, StorageError> {
        let mut out = Vec::new();
        for key in self.root.list(COMMITS)? {
            // A record is written atomically: its temporary file is no record.
            if key.contains(TMP_MARK) || !key.ends_with(".json") {
                continue;
            }
            let Some((bytes, _)) = self.root.read(&key)? else {
                continue;
            };
            let record: CommitRecord = serde_json::from_slice(&bytes).map_err(|e| {
                StorageError::new(
                    self.root.describe(&key),
                    format!("an unreadable commit record ({e}); restore or remove it"),
                )
            })?;
            out.push((key, record));
        }
        out.sort_by(|a, b| (a.1.at_ms, &a.0).cmp(&(b.1.at_ms, &b.0)));
        Ok(out)
    }

    /// Completes the commits a killed run left, then removes its temporary files: what every
    /// writer does first, under the run lock. Readers need not: they read through pending
    /// records (`pending_staged`).
    pub fn recover(&self) -> Result<Recovered, StorageError> {
        let commits = self.complete_commits()?;
        let mut swept = self.sweep_temp();
        if let Root::Object(_) = &self.root {
            swept += super::local_temp::sweep_dead();
            for key in self.root.list(STAGING)? {
                self.root.delete(&key)?;
                swept += 1;
            }
        }
        Ok(Recovered { commits, swept })
    }

    /// Completes pending commit records (a cheap listing when there are none); `follow` runs
    /// it before every poll.
    pub fn complete_commits(&self) -> Result<usize, StorageError> {
        let records = self.records()?;
        for (key, record) in &records {
            self.complete(record, Some(key))?;
            self.root.delete(key)?;
        }
        *self.pending.lock().unwrap() = Some(Pending::new());
        Ok(records.len())
    }

    /// Runs `f` on the pending commit records, read once per process (a writer's `recover`
    /// leaves none, and its own commits finish before it reads).
    fn with_pending<R>(&self, f: impl FnOnce(&Pending) -> R) -> Result<R, StorageError> {
        let mut pending = self.pending.lock().unwrap();
        if pending.is_none() {
            let mut map = Pending::new();
            for (_, record) in self.records()? {
                for p in record.partitions {
                    map.insert((p.dataset, p.day), p.staged);
                }
            }
            *pending = Some(map);
        }
        Ok(f(pending.as_ref().expect("just filled")))
    }

    /// The staged file a pending commit will move to this partition's place, if any: a reader
    /// that finds one reads it, so it never sees a day half committed.
    pub(super) fn pending_staged(
        &self,
        dataset: &str,
        day: NaiveDate,
    ) -> Result<Option<String>, StorageError> {
        self.with_pending(|m| m.get(&(dataset.to_string(), day)).cloned())
    }

    /// Days of a dataset that only a pending commit holds so far.
    pub(super) fn pending_days(&self, dataset: &str) -> Result<Vec<NaiveDate>, StorageError> {
        self.with_pending(|m| {
            m.keys()
                .filter(|(d, _)| d == dataset)
                .map(|(_, day)| *day)
                .collect()
        })
    }
}

/// A staged partition that is neither staged nor in its place any more.
fn lost(root: &Root, p: &Staged, record: Option<&str>) -> StorageError {
    let fix = match record {
        Some(key) => format!(
            "remove the commit record {} and redo the day (`gladly-wfm run --from {d} --to {d}`)",
            root.describe(key),
            d = p.day
        ),
        None => "it vanished before its commit".to_string(),
    };
    StorageError::new(
        root.describe(&p.staged),
        format!(
            "a staged partition of {}'s commit is gone and its place does not hold it: {fix}",
            p.day
        ),
    )
}
