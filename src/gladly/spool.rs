//! A streamed answer's body on disk: written as it arrives, read back as the decoder goes,
//! removed when dropped. Memory stays flat whatever the size of the answer.

use std::path::Path;

use crate::storage::TempFile;

pub struct SpooledBody {
    file: TempFile,
}

impl SpooledBody {
    /// A fresh temporary name under `dir` (`TempFile`): a run killed while it existed leaves
    /// nothing the next run's sweep keeps.
    pub fn new(dir: &Path) -> SpooledBody {
        SpooledBody {
            file: TempFile::new(dir, "answer"),
        }
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The body, for reading (an empty body when the answer had none).
    pub fn open(&self) -> std::io::Result<Box<dyn std::io::Read + Send>> {
        match std::fs::File::open(self.path()) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Box::new(std::io::empty())),
            Err(e) => Err(e),
        }
    }
}
