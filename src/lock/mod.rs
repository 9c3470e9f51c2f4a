//! The exclusive run lock of a pipeline, under `<root>/_state/<pipeline>/`: an OS file lock
//! on a local root (here), a leased object on an object store (`lease`). Its own module so the
//! state (what runs record) and the lock (who may run) do not import each other.

mod lease;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

pub use lease::LeaseLock;

use crate::storage::Dir;

/// The lock's name under `_state/<pipeline>/`, for both kinds: a file on disk, an object on a
/// store.
pub const LOCK_FILE: &str = "run.lock";

/// The exclusive run lock of a pipeline: an OS file lock on a local root, a leased object on an
/// object store (`lease`).
pub enum PipelineLock {
    File(RunLock),
    Lease(LeaseLock),
}

impl PipelineLock {
    pub fn acquire(
        dir: &Dir,
        pipeline: &str,
        run_id: &str,
        lease: std::time::Duration,
    ) -> Result<PipelineLock, LockError> {
        match dir.local_path() {
            Some(p) => RunLock::acquire(&p, pipeline, run_id).map(PipelineLock::File),
            None => LeaseLock::acquire(dir.root(), &dir.key(LOCK_FILE), pipeline, run_id, lease)
                .map(PipelineLock::Lease),
        }
    }

    /// `acquire` for a run: while `follow` holds the lock it waits (at most `BESIDE_FOLLOW`),
    /// since a follower holds it for one poll or one batch of webhook deliveries at a time —
    /// seconds — and a nightly run that starts meanwhile must not fail for it. Any other holder
    /// is refused at once.
    pub async fn acquire_beside_follow(
        dir: &Dir,
        pipeline: &str,
        run_id: &str,
        lease: std::time::Duration,
    ) -> Result<PipelineLock, LockError> {
        let deadline = tokio::time::Instant::now() + BESIDE_FOLLOW;
        loop {
            match tokio::task::block_in_place(|| Self::acquire(dir, pipeline, run_id, lease)) {
                Err(LockError::Held { holder, .. })
                    if holder.contains("run follow-") && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
                other => return other,
            }
        }
    }

    /// Releases the lock; an error means it is still held (until its lease expires).
    pub fn release(self) -> Result<(), LockError> {
        match self {
            PipelineLock::File(l) => {
                drop(l);
                Ok(())
            }
            PipelineLock::Lease(l) => l.release(),
        }
    }

    /// Who holds the lock now, if anyone (for `status`).
    pub fn holder(dir: &Dir) -> Option<String> {
        match dir.local_path() {
            Some(p) => RunLock::holder(&p),
            None => LeaseLock::holder(dir.root(), &dir.key(LOCK_FILE)),
        }
    }
}

/// How long a run waits for a follower's turn to end.
pub const BESIDE_FOLLOW: std::time::Duration = std::time::Duration::from_secs(60);

/// The exclusive run lock on disk: an OS file lock (released by the kernel when a process dies, so a
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
    #[error("this run lost the run lock: {detail}")]
    Lost { detail: String },
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
        let path = dir.join(LOCK_FILE);
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
        let path = dir.join(LOCK_FILE);
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
}
