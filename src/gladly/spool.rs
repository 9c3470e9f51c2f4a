//! A streamed answer's body on disk: written as it arrives, read back as the decoder goes,
//! removed when dropped. Memory stays flat whatever the size of the answer.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::storage::TMP_MARK;

pub struct SpooledBody {
    path: PathBuf,
}

impl SpooledBody {
    /// A fresh name under `dir`, unique in this process, marked temporary so that a run killed
    /// while it existed leaves nothing the next run's sweep keeps.
    pub fn new(dir: &Path) -> SpooledBody {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        SpooledBody {
            path: dir.join(format!(".answer-{n}{TMP_MARK}{}", std::process::id())),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The body, for reading (an empty body when the answer had none).
    pub fn open(&self) -> std::io::Result<Box<dyn std::io::Read + Send>> {
        match std::fs::File::open(&self.path) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Box::new(std::io::empty())),
            Err(e) => Err(e),
        }
    }
}

impl Drop for SpooledBody {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
