//! Pipeline state under `<root>/_state/<pipeline>/`: completed days per stage, the nightly
//! cursor, WFM push checkpoints, and the run lock. Written atomically (write, fsync, rename).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::storage::{write_atomic, StorageError};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PipelineState {
    /// The last day a nightly (dateless) run completed; explicit re-runs never move it.
    pub nightly_cursor: Option<NaiveDate>,
    /// stage → days completed by that stage.
    #[serde(default)]
    pub completed: BTreeMap<String, BTreeSet<NaiveDate>>,
    /// "kind/day" → push checkpoint.
    #[serde(default)]
    pub push: BTreeMap<String, PushCheckpoint>,
    /// The Gladly organisation's timezone, remembered for runs that do not extract.
    pub org_timezone: Option<String>,
    /// Every WFM user this pipeline has pushed, by normalised e-mail: one that is gone from
    /// `/agents` now is pushed with `isActive: false` (DESIGN §8).
    #[serde(default)]
    pub users_pushed: BTreeMap<String, PushedUser>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PushedUser {
    pub agent_id: String,
    pub name: Option<String>,
}

/// How far a day's push of one kind got: the batches acknowledged of a plan with this digest.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PushCheckpoint {
    pub plan_digest: String,
    pub batches_total: usize,
    pub batches_acknowledged: usize,
}

impl PipelineState {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("state.json")
    }

    pub fn load(dir: &Path) -> Result<PipelineState, StorageError> {
        let p = Self::path(dir);
        match std::fs::read(&p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PipelineState::default()),
            Err(e) => Err(StorageError {
                path: p.display().to_string(),
                detail: e.to_string(),
            }),
            Ok(b) => serde_json::from_slice(&b).map_err(|e| StorageError {
                path: p.display().to_string(),
                detail: format!("corrupt state file: {e}"),
            }),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<(), StorageError> {
        write_atomic(
            &Self::path(dir),
            &serde_json::to_vec_pretty(self).unwrap_or_default(),
        )
    }

    pub fn mark(&mut self, stage: &str, day: NaiveDate) {
        self.completed
            .entry(stage.to_string())
            .or_default()
            .insert(day);
    }
}

/// Days whose raw work sessions changed and whose curated work datasets (`transform`) or
/// interval push (`load`) are not redone yet. Work sessions land on the day they were created,
/// which can lie outside the run's window, so this list cannot live in memory: it is written
/// before the raw partition it speaks of changes, and a day leaves it only once rebuilt (and
/// then pushed), so no failure or kill in between loses a day. Kept in its own file because the
/// extract task adds to it while the run's task clears it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PendingWork {
    /// day → how many times its raw work sessions changed (a generation: a rebuild clears the
    /// day only if no change came while it read the raw zone).
    pub transform: BTreeMap<NaiveDate, u64>,
    pub load: BTreeSet<NaiveDate>,
}

pub struct PendingWorkFile {
    path: PathBuf,
    inner: std::sync::Mutex<PendingWork>,
}

impl PendingWorkFile {
    pub fn open(dir: &Path) -> Result<PendingWorkFile, StorageError> {
        let path = dir.join("pending_work.json");
        let inner = match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => PendingWork::default(),
            Err(e) => {
                return Err(StorageError {
                    path: path.display().to_string(),
                    detail: e.to_string(),
                })
            }
            Ok(b) => serde_json::from_slice(&b).map_err(|e| StorageError {
                path: path.display().to_string(),
                detail: format!("corrupt state file: {e}"),
            })?,
        };
        Ok(PendingWorkFile {
            path,
            inner: std::sync::Mutex::new(inner),
        })
    }

    pub fn snapshot(&self) -> PendingWork {
        self.inner.lock().unwrap().clone()
    }

    fn update(&self, f: impl FnOnce(&mut PendingWork) -> bool) -> Result<(), StorageError> {
        let mut w = self.inner.lock().unwrap();
        if f(&mut w) {
            write_atomic(
                &self.path,
                &serde_json::to_vec_pretty(&*w).unwrap_or_default(),
            )?;
        }
        Ok(())
    }

    /// Called before a day's raw work sessions are rewritten.
    pub fn touch(&self, day: NaiveDate) -> Result<(), StorageError> {
        self.update(|w| {
            *w.transform.entry(day).or_default() += 1;
            true
        })
    }

    /// The generation to hand back to `transformed` once the day is rebuilt.
    pub fn generation(&self, day: NaiveDate) -> u64 {
        self.inner
            .lock()
            .unwrap()
            .transform
            .get(&day)
            .copied()
            .unwrap_or(0)
    }

    /// The day's curated work datasets were rebuilt from the raw zone as it was at `generation`;
    /// with `then_load` its intervals must now be pushed.
    pub fn transformed(
        &self,
        day: NaiveDate,
        generation: u64,
        then_load: bool,
    ) -> Result<(), StorageError> {
        self.update(|w| {
            let mut changed = false;
            if w.transform.get(&day).is_some_and(|g| *g <= generation) {
                w.transform.remove(&day);
                changed = true;
            }
            if then_load {
                changed |= w.load.insert(day);
            }
            changed
        })
    }

    /// A day that no run has processed yet: its rows wait in the raw zone for it (DESIGN §9).
    pub fn forget(&self, day: NaiveDate) -> Result<(), StorageError> {
        self.update(|w| w.transform.remove(&day).is_some())
    }

    pub fn loaded(&self, day: NaiveDate) -> Result<(), StorageError> {
        self.update(|w| w.load.remove(&day))
    }
}

/// The exclusive run lock: an OS file lock (released by the kernel when a process dies, so a
/// killed run never blocks the next) plus who holds it, for the message a second run prints.
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another run of pipeline `{pipeline}` holds the lock ({holder}); lock file {path}")]
    Held {
        pipeline: String,
        holder: String,
        path: String,
    },
    #[error("cannot create the lock file {path}: {detail}")]
    Io { path: String, detail: String },
}

impl RunLock {
    pub fn acquire(dir: &Path, pipeline: &str, run_id: &str) -> Result<RunLock, LockError> {
        let io = |p: &Path, e: std::io::Error| LockError::Io {
            path: p.display().to_string(),
            detail: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let path = dir.join("run.lock");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(LockError::Held {
                    pipeline: pipeline.to_string(),
                    holder: if holder.trim().is_empty() {
                        "holder unknown".into()
                    } else {
                        holder.trim().to_string()
                    },
                    path: path.display().to_string(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&path, e)),
        }
        file.set_len(0).map_err(|e| io(&path, e))?;
        let who = format!(
            "pid {}, run {}, started {}",
            std::process::id(),
            run_id,
            crate::time::fmt_ts(crate::time::now_ms())
        );
        file.write_all(who.as_bytes()).map_err(|e| io(&path, e))?;
        file.sync_all().map_err(|e| io(&path, e))?;
        Ok(RunLock { _file: file, path })
    }

    /// Who holds the lock now, if anyone (for `status`).
    pub fn holder(dir: &Path) -> Option<String> {
        let path = dir.join("run.lock");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .ok()?;
        match file.try_lock() {
            Ok(()) => {
                let _ = file.unlock();
                None
            }
            Err(_) => Some(std::fs::read_to_string(&path).unwrap_or_default()),
        }
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Clear the holder text; the OS lock goes with the file handle.
        if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&self.path) {
            let _ = f.set_len(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let a = RunLock::acquire(dir.path(), "p", "r1").unwrap();
        let e = RunLock::acquire(dir.path(), "p", "r2").err().unwrap();
        assert!(e.to_string().contains("r1"), "{e}");
        assert!(RunLock::holder(dir.path()).is_some());
        drop(a);
        assert!(RunLock::holder(dir.path()).is_none());
        RunLock::acquire(dir.path(), "p", "r3").unwrap();
    }

    #[test]
    fn pending_work_survives_a_restart_and_keeps_a_change_made_during_a_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let d = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let p = PendingWorkFile::open(dir.path()).unwrap();
        p.touch(d).unwrap();
        let g = p.generation(d);
        // The extract task changes the day again while it is being rebuilt.
        p.touch(d).unwrap();
        p.transformed(d, g, true).unwrap();
        let again = PendingWorkFile::open(dir.path()).unwrap().snapshot();
        assert_eq!(again.transform.get(&d), Some(&2));
        assert!(again.load.contains(&d));
        p.transformed(d, p.generation(d), true).unwrap();
        p.loaded(d).unwrap();
        assert_eq!(
            PendingWorkFile::open(dir.path()).unwrap().snapshot(),
            PendingWork::default()
        );
    }

    #[test]
    fn state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = PipelineState::default();
        s.mark("extract", NaiveDate::from_ymd_opt(2026, 11, 1).unwrap());
        s.save(dir.path()).unwrap();
        assert_eq!(PipelineState::load(dir.path()).unwrap(), s);
    }
}
