//! The output root: a directory or an object store, addressed by keys relative to it
//! (`_state/nightly/state.json`). `Dir` is a folder under the root for the small JSON files of
//! state and manifests; it remembers the version of each file it read, so a state write on an
//! object store is conditional on nobody having changed the file since (`If-Match`, or
//! `If-None-Match: *` for a file that was absent).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::object::{ObjectError, ObjectRoot, WriteMode};
use super::{write_atomic, StorageError};

/// `output.root` as written in the pipeline file, parsed but not opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootSpec {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

/// Why `output.root` is not a root this pipeline can write to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RootSpecError {
    /// `s3://` without a bucket (the whole root is kept).
    #[error("`{0}` names no bucket (s3://bucket/prefix)")]
    NoBucket(String),
    /// A URL of another scheme.
    #[error("`{0}://` roots are not supported: use a directory, file://… or s3://bucket/prefix")]
    Scheme(String),
}

impl RootSpec {
    pub fn parse(s: &str) -> Result<RootSpec, RootSpecError> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(RootSpecError::NoBucket(s.to_string()));
            }
            return Ok(RootSpec::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        if let Some(path) = s.strip_prefix("file://") {
            return Ok(RootSpec::Local(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(RootSpecError::Scheme(scheme.to_string()));
        }
        Ok(RootSpec::Local(PathBuf::from(s)))
    }
}

impl std::fmt::Display for RootSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RootSpec::Local(p) => write!(f, "{}", p.display()),
            RootSpec::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            RootSpec::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

#[derive(Clone, Debug)]
pub enum Root {
    Local(PathBuf),
    Object(Arc<ObjectRoot>),
}

fn obj_err(root: &Root, rel: &str, e: ObjectError) -> StorageError {
    match e {
        ObjectError::Conflict(d) => StorageError {
            path: root.describe(rel),
            detail: format!(
                "changed by another writer since this run read it ({d}); this run stops rather \
                 than overwrite it"
            ),
            conflict: true,
        },
        ObjectError::Other(d) => StorageError::new(root.describe(rel), d),
    }
}

impl Root {
    /// Opens a root; for an object store this configures the client from the environment
    /// (no request yet).
    pub fn open(spec: &RootSpec) -> Result<Root, StorageError> {
        match spec {
            RootSpec::Local(p) => Ok(Root::Local(p.clone())),
            RootSpec::S3 { bucket, prefix } => ObjectRoot::open(bucket, prefix)
                .map(|o| Root::Object(Arc::new(o)))
                .map_err(|e| StorageError::new(spec.to_string(), e)),
        }
    }

    pub fn local(path: impl Into<PathBuf>) -> Root {
        Root::Local(path.into())
    }

    /// A path or `s3://` URL, for messages.
    pub fn describe(&self, rel: &str) -> String {
        match self {
            Root::Local(p) => p.join(rel).display().to_string(),
            Root::Object(o) => o.url(rel),
        }
    }

    /// Requests sent to the object store (none for a directory).
    pub fn object_requests(&self) -> Option<u64> {
        match self {
            Root::Local(_) => None,
            Root::Object(o) => Some(o.requests()),
        }
    }

    pub fn dir(&self, rel: &str) -> Dir {
        Dir {
            root: self.clone(),
            rel: rel.trim_matches('/').to_string(),
            seen: Arc::default(),
        }
    }

    /// The bytes and (object store) ETag of a file, or `None` when it does not exist.
    pub fn read(&self, rel: &str) -> Result<Option<(Bytes, Option<String>)>, StorageError> {
        match self {
            Root::Local(p) => {
                let path = p.join(rel);
                match std::fs::read(&path) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(StorageError::new(path.display().to_string(), e)),
                    Ok(b) => Ok(Some((Bytes::from(b), None))),
                }
            }
            Root::Object(o) => o.get(rel).map_err(|e| obj_err(self, rel, e)),
        }
    }

    /// Writes a file whole and returns its new ETag (object store). On disk the write is
    /// atomic (temp, fsync, rename) and `mode` is not checked: a local root's writers are
    /// serialised by the OS file lock instead.
    pub fn write(
        &self,
        rel: &str,
        bytes: Vec<u8>,
        mode: WriteMode,
    ) -> Result<Option<String>, StorageError> {
        match self {
            Root::Local(p) => write_atomic(&p.join(rel), &bytes).map(|()| None),
            Root::Object(o) => o.put(rel, bytes, mode).map_err(|e| obj_err(self, rel, e)),
        }
    }

    /// Every file under `rel`, recursively, as keys relative to the root, sorted.
    pub fn list(&self, rel: &str) -> Result<Vec<String>, StorageError> {
        let mut out = match self {
            Root::Local(p) => {
                fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
                    for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                        let path = e.path();
                        if path.is_dir() {
                            walk(base, &path, out);
                        } else if let Ok(r) = path.strip_prefix(base) {
                            out.push(r.to_string_lossy().replace('\\', "/"));
                        }
                    }
                }
                let mut out = Vec::new();
                walk(p, &p.join(rel), &mut out);
                out
            }
            Root::Object(o) => o.list(rel).map_err(|e| obj_err(self, rel, e))?,
        };
        out.sort();
        Ok(out)
    }

    /// A file's size, `None` when there is none.
    pub fn size(&self, rel: &str) -> Result<Option<u64>, StorageError> {
        match self {
            Root::Local(p) => match std::fs::metadata(p.join(rel)) {
                Ok(m) => Ok(Some(m.len())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(StorageError::new(p.join(rel).display().to_string(), e)),
            },
            Root::Object(o) => o.size(rel).map_err(|e| obj_err(self, rel, e)),
        }
    }

    /// Moves a staged file into its place: a rename on disk (atomic, same folder), a copy and
    /// a delete in an object store. `false` when nothing is staged at `from` (already moved).
    pub fn publish(&self, from: &str, to: &str) -> Result<bool, StorageError> {
        match self {
            Root::Local(p) => match std::fs::rename(p.join(from), p.join(to)) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(StorageError::new(p.join(to).display().to_string(), e)),
            },
            Root::Object(o) => {
                if !o.copy(from, to).map_err(|e| obj_err(self, to, e))? {
                    return Ok(false);
                }
                o.delete(from).map_err(|e| obj_err(self, from, e))?;
                Ok(true)
            }
        }
    }

    pub fn delete(&self, rel: &str) -> Result<(), StorageError> {
        match self {
            Root::Local(p) => match std::fs::remove_file(p.join(rel)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(StorageError::new(p.join(rel).display().to_string(), e))
                }
                _ => Ok(()),
            },
            Root::Object(o) => o.delete(rel).map_err(|e| obj_err(self, rel, e)),
        }
    }
}

/// What a `Dir` saw of a file when it last read or wrote it.
#[derive(Clone, Debug)]
enum Seen {
    Absent,
    ETag(String),
}

/// A folder under the root holding small files (state, manifests, the run lock).
#[derive(Clone, Debug)]
pub struct Dir {
    root: Root,
    rel: String,
    seen: Arc<Mutex<HashMap<String, Seen>>>,
}

impl Dir {
    /// A folder on disk (tests, and callers that have a path).
    pub fn local(path: &Path) -> Dir {
        Root::local(path).dir("")
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    /// The key of a file in this folder, relative to the root.
    pub fn key(&self, name: &str) -> String {
        if self.rel.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.rel)
        }
    }

    /// The folder on disk, when the root is a directory.
    pub fn local_path(&self) -> Option<PathBuf> {
        match &self.root {
            Root::Local(p) => Some(p.join(&self.rel)),
            Root::Object(_) => None,
        }
    }

    pub fn describe(&self, name: &str) -> String {
        self.root.describe(&self.key(name))
    }

    /// Reads a file and remembers its version for `write_guarded`.
    pub fn read(&self, name: &str) -> Result<Option<Bytes>, StorageError> {
        let got = self.root.read(&self.key(name))?;
        let seen = match &got {
            None => Some(Seen::Absent),
            Some((_, Some(tag))) => Some(Seen::ETag(tag.clone())),
            Some((_, None)) => None,
        };
        let mut s = self.seen.lock().unwrap();
        match seen {
            Some(v) => s.insert(name.to_string(), v),
            None => s.remove(name),
        };
        Ok(got.map(|(b, _)| b))
    }

    /// Writes a file whole, whatever is there.
    pub fn write(&self, name: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        self.root
            .write(&self.key(name), bytes, WriteMode::Overwrite)
            .map(|_| ())
    }

    /// Rewrites a small file in place without waiting for the disk (a local root: no
    /// temporary file, no rename, no fsync, no truncation; an object store: a plain put). Only
    /// for files whose loss or tearing costs repeated work, never a wrong result: a reader must
    /// take a file it cannot parse for none (a process killed mid-write may leave it torn). The
    /// push rewrites one after every batch, where a rename per batch cost as much CPU as
    /// building the batch. The new bytes overwrite the old from the start and a shorter text is
    /// padded with spaces (which JSON allows) instead of truncating: a truncate-and-rewrite
    /// makes ext4 start writing the file out on close (`auto_da_alloc`), a disk write per batch
    /// that cost a 30-day push 15 % of its wall time.
    pub fn write_unsynced(&self, name: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        match &self.root {
            Root::Local(p) => {
                let path = p.join(self.key(name));
                let write = |path: &std::path::Path| -> std::io::Result<()> {
                    use std::os::unix::fs::FileExt;
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(path)?;
                    let old = f.metadata()?.len() as usize;
                    let mut text = bytes.clone();
                    text.resize(old.max(bytes.len()), b' ');
                    f.write_all_at(&text, 0)
                };
                match write(&path) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        if let Some(dir) = path.parent() {
                            std::fs::create_dir_all(dir)
                                .map_err(|e| StorageError::new(dir.display().to_string(), e))?;
                        }
                        write(&path)
                    }
                    other => other,
                }
                .map_err(|e| StorageError::new(path.display().to_string(), e))
            }
            Root::Object(_) => self.write(name, bytes),
        }
    }

    /// Writes a file only if it is still as this `Dir` last saw it (absent, or that ETag); a
    /// writer that lost the race gets an error with `conflict` set, so two stale writers cannot
    /// both win. A file never read is overwritten.
    pub fn write_guarded(&self, name: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        let mode = match self.seen.lock().unwrap().get(name) {
            Some(Seen::Absent) => WriteMode::Create,
            Some(Seen::ETag(t)) => WriteMode::Update(t.clone()),
            None => WriteMode::Overwrite,
        };
        let tag = self.root.write(&self.key(name), bytes, mode)?;
        let mut s = self.seen.lock().unwrap();
        match tag {
            Some(t) => s.insert(name.to_string(), Seen::ETag(t)),
            None => s.remove(name),
        };
        Ok(())
    }

    /// The names of the files directly in this folder, sorted.
    pub fn list(&self) -> Result<Vec<String>, StorageError> {
        let prefix = if self.rel.is_empty() {
            String::new()
        } else {
            format!("{}/", self.rel)
        };
        Ok(self
            .root
            .list(&self.rel)?
            .into_iter()
            .filter_map(|k| {
                let n = k.strip_prefix(&prefix)?;
                (!n.contains('/')).then(|| n.to_string())
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_parse_as_directories_file_urls_or_s3() {
        assert_eq!(
            RootSpec::parse("output").unwrap(),
            RootSpec::Local("output".into())
        );
        assert_eq!(
            RootSpec::parse("file:///data/out").unwrap(),
            RootSpec::Local("/data/out".into())
        );
        assert_eq!(
            RootSpec::parse("s3://bkt/org/acme/").unwrap(),
            RootSpec::S3 {
                bucket: "bkt".into(),
                prefix: "org/acme".into()
            }
        );
        assert_eq!(
            RootSpec::parse("s3:///x").unwrap_err().to_string(),
            "`s3:///x` names no bucket (s3://bucket/prefix)"
        );
        assert_eq!(
            RootSpec::parse("gs://bkt/x").unwrap_err().to_string(),
            "`gs://` roots are not supported: use a directory, file://… or s3://bucket/prefix"
        );
    }

    #[test]
    fn a_local_dir_lists_reads_and_writes() {
        let t = tempfile::tempdir().unwrap();
        let d = Root::local(t.path()).dir("_runs/p");
        assert!(d.read("a.json").unwrap().is_none());
        d.write_guarded("a.json", b"1".to_vec()).unwrap();
        d.write("b.json", b"2".to_vec()).unwrap();
        assert_eq!(d.list().unwrap(), vec!["a.json", "b.json"]);
        assert_eq!(&d.read("a.json").unwrap().unwrap()[..], b"1");
    }

    #[test]
    fn an_unsynced_rewrite_pads_a_shorter_text_and_grows_for_a_longer() {
        let t = tempfile::tempdir().unwrap();
        let d = Root::local(t.path()).dir("_state/p");
        d.write_unsynced("p.json", br#"{"n":12345}"#.to_vec())
            .unwrap();
        d.write_unsynced("p.json", br#"{"n":7}"#.to_vec()).unwrap();
        let got = d.read("p.json").unwrap().unwrap();
        assert_eq!(&got[..], br#"{"n":7}    "#);
        let v: serde_json::Value = serde_json::from_slice(&got).unwrap();
        assert_eq!(v["n"], 7);
        d.write_unsynced("p.json", br#"{"n":123456789}"#.to_vec())
            .unwrap();
        assert_eq!(
            &d.read("p.json").unwrap().unwrap()[..],
            br#"{"n":123456789}"#
        );
    }
}
