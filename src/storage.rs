//! Every output path goes through here: Hive-partitioned datasets (`<root>/<dataset>/date=D/
//! part-0.parquet`) written to a temporary name, fsynced and renamed into place, so a reader
//! sees a whole old partition or a whole new one, never half of one. The root is a directory
//! today; this is the seam where an object-store root would go.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use crate::config::Compression;
use crate::frames::{self, DataFrame};

#[derive(Debug, thiserror::Error)]
#[error("{path}: {detail}")]
pub struct StorageError {
    pub path: String,
    pub detail: String,
}

fn err(path: &Path, e: impl std::fmt::Display) -> StorageError {
    StorageError {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

const TMP_MARK: &str = ".tmp-";

#[derive(Clone, Debug)]
pub struct Storage {
    pub root: PathBuf,
    pub compression: Compression,
}

impl Storage {
    pub fn new(root: PathBuf, compression: Compression) -> Storage {
        Storage { root, compression }
    }

    pub fn partition_dir(&self, dataset: &str, day: NaiveDate) -> PathBuf {
        self.root.join(dataset).join(format!("date={day}"))
    }

    pub fn partition_file(&self, dataset: &str, day: NaiveDate) -> PathBuf {
        self.partition_dir(dataset, day).join("part-0.parquet")
    }

    /// Replaces a day's partition of a dataset whole.
    pub fn write_partition(
        &self,
        dataset: &str,
        day: NaiveDate,
        df: &mut DataFrame,
    ) -> Result<(), StorageError> {
        let dir = self.partition_dir(dataset, day);
        std::fs::create_dir_all(&dir).map_err(|e| err(&dir, e))?;
        let target = dir.join("part-0.parquet");
        let tmp = dir.join(format!(".part-0.parquet{TMP_MARK}{}", std::process::id()));
        let mut f = std::fs::File::create(&tmp).map_err(|e| err(&tmp, e))?;
        frames::write_parquet(df, &mut f, self.compression).map_err(|e| err(&tmp, e))?;
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
        let path = self.partition_file(dataset, day);
        if !path.exists() {
            return Ok(None);
        }
        frames::read_parquet(&path)
            .map(Some)
            .map_err(|e| err(&path, e))
    }

    /// The dates that have a partition, ascending.
    pub fn partitions(&self, dataset: &str) -> Vec<NaiveDate> {
        let mut out: Vec<NaiveDate> = std::fs::read_dir(self.root.join(dataset))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let d = crate::time::parse_date(name.strip_prefix("date=")?)?;
                e.path().join("part-0.parquet").exists().then_some(d)
            })
            .collect();
        out.sort();
        out
    }

    /// Removes temporary files a killed run left behind (they are never read).
    pub fn sweep_temp(&self) -> usize {
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
        let mut n = 0;
        walk(&self.root, &mut n, 0);
        n
    }
}

/// Replaces a small file atomically (write, rename) without waiting for the disk: a killed
/// process leaves the old content or the new, whole; a power cut may lose the newest writes or
/// tear the file. Only for files whose loss costs repeated work, never a wrong result (the
/// push's progress within a plan: DESIGN §8, docs/decisions).
pub fn write_replace(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}{TMP_MARK}{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| err(path, e))
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
