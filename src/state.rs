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
    fn state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = PipelineState::default();
        s.mark("extract", NaiveDate::from_ymd_opt(2026, 11, 1).unwrap());
        s.save(dir.path()).unwrap();
        assert_eq!(PipelineState::load(dir.path()).unwrap(), s);
    }
}
