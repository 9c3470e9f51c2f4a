//! Pipeline state under `<root>/_state/<pipeline>/`: completed days per stage, the nightly
//! cursor, WFM push checkpoints and pending work days (the run lock is `lock`'s). Written
//! atomically (on disk: write, fsync, rename; on an object store: one conditional PUT, so a
//! stale writer loses).

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::storage::{Dir, StorageError};

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

impl PipelineState {
    /// The Gladly organisation's timezone as an earlier run remembered it, if any run has.
    pub fn remembered_timezone(dir: &Dir) -> Option<chrono_tz::Tz> {
        PipelineState::load(dir).ok()?.org_timezone?.parse().ok()
    }
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
    const FILE: &str = "state.json";

    pub fn load(dir: &Dir) -> Result<PipelineState, StorageError> {
        match dir.read(Self::FILE)? {
            None => Ok(PipelineState::default()),
            Some(b) => serde_json::from_slice(&b).map_err(|e| {
                StorageError::new(dir.describe(Self::FILE), format!("corrupt state file: {e}"))
            }),
        }
    }

    /// Saves the state; on an object store only if nobody wrote it since `dir` read it.
    pub fn save(&self, dir: &Dir) -> Result<(), StorageError> {
        dir.write_guarded(
            Self::FILE,
            serde_json::to_vec_pretty(self).unwrap_or_default(),
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
    dir: Dir,
    inner: std::sync::Mutex<PendingWork>,
}

impl PendingWorkFile {
    const FILE: &str = "pending_work.json";

    pub fn open(dir: &Dir) -> Result<PendingWorkFile, StorageError> {
        let inner = match dir.read(Self::FILE)? {
            None => PendingWork::default(),
            Some(b) => serde_json::from_slice(&b).map_err(|e| {
                StorageError::new(dir.describe(Self::FILE), format!("corrupt state file: {e}"))
            })?,
        };
        Ok(PendingWorkFile {
            dir: dir.clone(),
            inner: std::sync::Mutex::new(inner),
        })
    }

    pub fn snapshot(&self) -> PendingWork {
        self.inner.lock().unwrap().clone()
    }

    fn update(&self, f: impl FnOnce(&mut PendingWork) -> bool) -> Result<(), StorageError> {
        let mut w = self.inner.lock().unwrap();
        if f(&mut w) {
            self.dir.write_guarded(
                Self::FILE,
                serde_json::to_vec_pretty(&*w).unwrap_or_default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_work_survives_a_restart_and_keeps_a_change_made_during_a_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let d = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let dir = Dir::local(dir.path());
        let p = PendingWorkFile::open(&dir).unwrap();
        p.touch(d).unwrap();
        let g = p.generation(d);
        // The extract task changes the day again while it is being rebuilt.
        p.touch(d).unwrap();
        p.transformed(d, g, true).unwrap();
        let again = PendingWorkFile::open(&dir).unwrap().snapshot();
        assert_eq!(again.transform.get(&d), Some(&2));
        assert!(again.load.contains(&d));
        p.transformed(d, p.generation(d), true).unwrap();
        p.loaded(d).unwrap();
        assert_eq!(
            PendingWorkFile::open(&dir).unwrap().snapshot(),
            PendingWork::default()
        );
    }

    #[test]
    fn state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = PipelineState::default();
        s.mark("extract", NaiveDate::from_ymd_opt(2026, 11, 1).unwrap());
        let dir = Dir::local(dir.path());
        s.save(&dir).unwrap();
        assert_eq!(PipelineState::load(&dir).unwrap(), s);
    }
}
