//! Every output path goes through here: Hive-partitioned datasets (`<root>/<dataset>/date=D/
//! part-0.parquet`), the small JSON files of state and manifests, and listings. The root is a
//! directory (a plain path or `file://`) or an object store (`s3://bucket/prefix`, see
//! `object`). On disk a partition is written to a temporary name, fsynced and renamed into
//! place; in an object store it is one object written whole (one PUT, or a multipart upload
//! that becomes visible only when it completes). Either way a reader sees a whole old
//! partition or a whole new one, never half of one.

mod commit;
pub mod local_temp;
pub mod object;
pub mod root;

pub use commit::{Recovered, Staged, COMMITS, STAGING};
pub use object::WriteMode;
pub use root::{Dir, Root, RootSpec};

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;

use crate::frames::{self, Compression, DataFrame};

#[derive(Debug, thiserror::Error)]
#[error("{path}: {detail}")]
pub struct StorageError {
    pub path: String,
    pub detail: String,
    /// A conditional write lost: another writer changed the object since it was read.
    pub conflict: bool,
}

impl StorageError {
    pub fn new(path: impl Into<String>, detail: impl std::fmt::Display) -> StorageError {
        StorageError {
            path: path.into(),
            detail: detail.to_string(),
            conflict: false,
        }
    }
}

fn err(path: &Path, e: impl std::fmt::Display) -> StorageError {
    StorageError::new(path.display().to_string(), e)
}

/// In the name of every temporary file (swept at the start of a run; never read as data).
pub const TMP_MARK: &str = ".tmp-";

/// A file of this process's under a temporary folder (`Storage::temp_dir`), named
/// `.<stem>-<n>.tmp-<pid>` (unique in the process, marked temporary, so that a run killed while
/// it existed leaves nothing the next run's sweep keeps), removed when dropped. Neither made
/// nor opened here: whoever holds it writes and reads it.
pub struct TempFile {
    path: PathBuf,
}

impl TempFile {
    pub fn new(dir: &Path, stem: &str) -> TempFile {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        TempFile {
            path: dir.join(format!(".{stem}-{n}{TMP_MARK}{}", std::process::id())),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[derive(Clone, Debug)]
pub struct Storage {
    pub root: Root,
    pub compression: Compression,
    /// Partitions this process wrote: a listing that lags behind a write (an eventually
    /// consistent S3-compatible store) still shows them, so the newest snapshot is never missed.
    written: Arc<Mutex<BTreeSet<(String, NaiveDate)>>>,
    /// Commit records a killed run left pending, read once (see `commit`).
    pending: Arc<Mutex<Option<commit::Pending>>>,
}

fn partition_key(dataset: &str, day: NaiveDate) -> String {
    format!("{dataset}/date={day}/part-0.parquet")
}

impl Storage {
    pub fn new(root: Root, compression: Compression) -> Storage {
        Storage {
            root,
            compression,
            written: Arc::default(),
            pending: Arc::default(),
        }
    }

    /// Where answers are spooled while they are decoded and a run's carried conversation
    /// states wait between days: `<root>/_tmp/` on a local root, a folder of this process's
    /// under the system's temporary folder for an object-store root (`local_temp`; neither is
    /// ever data).
    pub fn temp_dir(&self) -> PathBuf {
        match &self.root {
            Root::Local(p) => p.join("_tmp"),
            Root::Object(_) => local_temp::process_dir(),
        }
    }

    /// Where a partition lives, for messages: a path or an `s3://` URL.
    pub fn partition_location(&self, dataset: &str, day: NaiveDate) -> String {
        self.root.describe(&partition_key(dataset, day))
    }

    /// Replaces a day's partition of a dataset whole, alone (the raw zone; a curated day's
    /// datasets are staged and committed together: `stage_partition`, `commit_day`).
    pub fn write_partition(
        &self,
        dataset: &str,
        day: NaiveDate,
        df: &mut DataFrame,
    ) -> Result<(), StorageError> {
        let Root::Local(base) = &self.root else {
            let key = partition_key(dataset, day);
            let mut buf = Vec::new();
            frames::write_parquet(df, &mut buf, self.compression)
                .map_err(|e| StorageError::new(self.root.describe(&key), e))?;
            // The object store's analogue of a written temporary file: encoded, not yet visible.
            crate::fault_point("partition-temp-written");
            self.root.write(&key, buf, WriteMode::Overwrite)?;
            self.written
                .lock()
                .unwrap()
                .insert((dataset.to_string(), day));
            return Ok(());
        };
        let dir = base.join(dataset).join(format!("date={day}"));
        std::fs::create_dir_all(&dir).map_err(|e| err(&dir, e))?;
        let target = dir.join("part-0.parquet");
        let tmp = dir.join(format!(".part-0.parquet{TMP_MARK}{}", std::process::id()));
        let mut f = std::fs::File::create(&tmp).map_err(|e| err(&tmp, e))?;
        frames::write_parquet_file(df, &mut f, self.compression).map_err(|e| err(&tmp, e))?;
        f.sync_all().map_err(|e| err(&tmp, e))?;
        drop(f);
        crate::fault_point("partition-temp-written");
        std::fs::rename(&tmp, &target).map_err(|e| err(&target, e))?;
        sync_dir(&dir);
        Ok(())
    }

    pub fn read_partition(
        &self,
        dataset: &str,
        day: NaiveDate,
    ) -> Result<Option<DataFrame>, StorageError> {
        // A pending commit's staged file first; once moved, it is the partition itself.
        if let Some(staged) = self.pending_staged(dataset, day)? {
            if let Some(df) = self.read_key(&staged)? {
                return Ok(Some(df));
            }
        }
        self.read_key(&partition_key(dataset, day))
    }

    fn read_key(&self, key: &str) -> Result<Option<DataFrame>, StorageError> {
        let Root::Local(base) = &self.root else {
            let Some((bytes, _)) = self.root.read(key)? else {
                return Ok(None);
            };
            return frames::read_parquet_bytes(bytes)
                .map(Some)
                .map_err(|e| StorageError::new(self.root.describe(key), e));
        };
        let path = base.join(key);
        // Opened, not tested for existence first: a staged file a commit moves away between
        // the two would fail the read instead of falling back to the partition.
        let f = match std::fs::File::open(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(&path, e)),
            Ok(f) => f,
        };
        frames::read_parquet_file(f)
            .map(Some)
            .map_err(|e| err(&path, e))
    }

    /// The dates that have a partition, ascending.
    pub fn partitions(&self, dataset: &str) -> Result<Vec<NaiveDate>, StorageError> {
        let Root::Local(base) = &self.root else {
            let prefix = format!("{dataset}/");
            let mut out: BTreeSet<NaiveDate> = self
                .root
                .list(&prefix)?
                .iter()
                .filter_map(|k| {
                    let rest = k.strip_prefix(&prefix)?.strip_prefix("date=")?;
                    let (d, file) = rest.split_once('/')?;
                    (file == "part-0.parquet")
                        .then(|| crate::time::parse_date(d))
                        .flatten()
                })
                .collect();
            out.extend(self.pending_days(dataset)?);
            out.extend(
                self.written
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|(d, _)| d == dataset)
                    .map(|(_, day)| *day),
            );
            return Ok(out.into_iter().collect());
        };
        let mut out: Vec<NaiveDate> = std::fs::read_dir(base.join(dataset))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let d = crate::time::parse_date(name.strip_prefix("date=")?)?;
                e.path().join("part-0.parquet").exists().then_some(d)
            })
            .collect();
        out.extend(self.pending_days(dataset)?);
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Removes temporary files a killed run left behind (they are never read; `recover` runs
    /// it after completing pending commits, whose staged files are temporary too). An object
    /// store has none but its staging (`recover`): a partition is never visible before it is
    /// whole, and an interrupted multipart upload is no object (a lifecycle rule reclaims it).
    fn sweep_temp(&self) -> usize {
        fn walk(dir: &Path, n: &mut usize, depth: usize) {
            if depth > 5 {
                return;
            }
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, n, depth + 1);
                } else if e.file_name().to_string_lossy().contains(TMP_MARK)
                    && std::fs::remove_file(&p).is_ok()
                {
                    *n += 1;
                }
            }
        }
        let Root::Local(base) = &self.root else {
            return 0;
        };
        let mut n = 0;
        walk(base, &mut n, 0);
        n
    }
}

/// Writes a small file atomically: write, fsync, rename, fsync the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}{TMP_MARK}{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(|e| err(&tmp, e))?;
    f.write_all(bytes).map_err(|e| err(&tmp, e))?;
    f.sync_all().map_err(|e| err(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| err(path, e))?;
    sync_dir(dir);
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
