//! One pipeline per output root (DESIGN §9). The first run writes `<root>/_pipeline` with the
//! pipeline's name; a pipeline of another name pointed at that root is refused before any
//! request, since its raw zone, datasets and WFM pushes would mix with the owner's (two
//! pipelines' `agent_status_events/date=D` would overwrite each other).

use std::path::{Path, PathBuf};

use crate::exit::Exit;
use crate::storage::Root;

pub const OWNER_FILE: &str = "_pipeline";

#[derive(Debug, thiserror::Error)]
pub enum OwnershipError {
    #[error("output root {root} belongs to pipeline `{owner}` ({how}), not to `{pipeline}`: give `{pipeline}` its own output.root, or remove {root} if `{owner}`'s data is no longer wanted")]
    Other {
        root: String,
        owner: String,
        pipeline: String,
        how: String,
    },
    #[error("cannot claim the output root: {path}: {detail}")]
    Io { path: String, detail: String },
}

impl OwnershipError {
    /// Another owner is a configuration error; a root that cannot be written fails the run.
    pub fn exit(&self) -> Exit {
        match self {
            OwnershipError::Other { .. } => Exit::Usage,
            OwnershipError::Io { .. } => Exit::Failed,
        }
    }
}

fn owner_file(root: &Path) -> PathBuf {
    root.join(OWNER_FILE)
}

/// Who owns `root`, and how that is known: its `_pipeline` file, or, for a root written before
/// that file existed, the one pipeline with state there.
fn owner(root: &Path, pipeline: &str) -> Option<(String, String)> {
    let file = owner_file(root);
    if let Ok(text) = std::fs::read_to_string(&file) {
        let name = text.trim().to_string();
        if !name.is_empty() {
            return Some((name, file.display().to_string()));
        }
    }
    let state = root.join("_state");
    let mut others: Vec<String> = std::fs::read_dir(&state)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    if others.iter().any(|n| n == pipeline) {
        return None;
    }
    others.sort();
    let first = others.into_iter().next()?;
    Some((
        first.clone(),
        format!("its state is in {}/{first}", state.display()),
    ))
}

/// Refuses a root owned by another pipeline, without writing anything (for `check`).
pub fn verify(root: &Root, pipeline: &str) -> Result<(), OwnershipError> {
    match root {
        Root::Local(p) => verify_dir(p, pipeline),
        Root::Object(_) => match object_owner(root, pipeline)? {
            Some((owner, how)) if owner != pipeline => Err(OwnershipError::Other {
                root: root.describe(""),
                owner,
                pipeline: pipeline.to_string(),
                how,
            }),
            _ => Ok(()),
        },
    }
}

/// `verify`, then records `pipeline` as the owner if the root has none yet; of two pipelines
/// claiming one new root at once exactly one wins (a create-only write on either kind of root).
pub fn claim(root: &Root, pipeline: &str) -> Result<(), OwnershipError> {
    match root {
        Root::Local(p) => claim_dir(p, pipeline),
        Root::Object(_) => {
            verify(root, pipeline)?;
            let io = |e: crate::storage::StorageError| OwnershipError::Io {
                path: e.path.clone(),
                detail: e.detail.clone(),
            };
            if root.read(OWNER_FILE).map_err(io)?.is_some() {
                return Ok(());
            }
            match root.write(
                OWNER_FILE,
                format!("{pipeline}\n").into_bytes(),
                crate::storage::object::WriteMode::Create,
            ) {
                Ok(_) => Ok(()),
                // Someone claimed it between our look and our write: their claim stands.
                Err(e) if e.conflict => verify(root, pipeline),
                Err(e) => Err(io(e)),
            }
        }
    }
}

/// The owner of an object-store root: its `_pipeline` object, or the one pipeline with state.
fn object_owner(root: &Root, pipeline: &str) -> Result<Option<(String, String)>, OwnershipError> {
    let io = |e: crate::storage::StorageError| OwnershipError::Io {
        path: e.path.clone(),
        detail: e.detail.clone(),
    };
    if let Some((b, _)) = root.read(OWNER_FILE).map_err(io)? {
        let name = String::from_utf8_lossy(&b).trim().to_string();
        if !name.is_empty() {
            return Ok(Some((name, root.describe(OWNER_FILE))));
        }
    }
    let mut others: Vec<String> = root
        .list("_state")
        .map_err(io)?
        .iter()
        .filter_map(|k| {
            k.strip_prefix("_state/")?
                .split('/')
                .next()
                .map(str::to_string)
        })
        .collect();
    others.sort();
    others.dedup();
    if others.iter().any(|n| n == pipeline) {
        return Ok(None);
    }
    Ok(others.into_iter().next().map(|first| {
        let how = format!(
            "its state is in {}",
            root.describe(&format!("_state/{first}"))
        );
        (first, how)
    }))
}

/// `verify` for a directory root.
fn verify_dir(root: &Path, pipeline: &str) -> Result<(), OwnershipError> {
    match owner(root, pipeline) {
        Some((owner, how)) if owner != pipeline => Err(OwnershipError::Other {
            root: root.display().to_string(),
            owner,
            pipeline: pipeline.to_string(),
            how,
        }),
        _ => Ok(()),
    }
}

/// `verify`, then records `pipeline` as the owner if the root has none yet. The file is
/// created whole or not at all (hard link of a finished temporary file), so of two pipelines
/// claiming one new root at once exactly one wins.
fn claim_dir(root: &Path, pipeline: &str) -> Result<(), OwnershipError> {
    verify_dir(root, pipeline)?;
    let file = owner_file(root);
    if file.exists() {
        return Ok(());
    }
    let io = |p: &Path, e: std::io::Error| OwnershipError::Io {
        path: p.display().to_string(),
        detail: e.to_string(),
    };
    std::fs::create_dir_all(root).map_err(|e| io(root, e))?;
    let tmp = root.join(format!(".{OWNER_FILE}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, format!("{pipeline}\n")).map_err(|e| io(&tmp, e))?;
    let linked = std::fs::hard_link(&tmp, &file);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(()),
        // Someone claimed it between our look and our link: their claim stands.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => verify_dir(root, pipeline),
        Err(e) => Err(io(&file, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_claim_wins_and_another_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("out");
        claim_dir(&root, "demo").unwrap();
        claim_dir(&root, "demo").unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join(OWNER_FILE)).unwrap(),
            "demo\n"
        );
        let e = claim_dir(&root, "nightly").unwrap_err();
        assert_eq!(e.exit(), Exit::Usage);
        let m = e.to_string();
        assert!(m.contains("`demo`") && m.contains("`nightly`"), "{m}");
        assert!(m.contains(&root.display().to_string()), "{m}");
    }

    #[test]
    fn a_root_from_before_the_owner_file_belongs_to_the_pipeline_with_state_there() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("_state/demo")).unwrap();
        assert!(verify_dir(dir.path(), "nightly").is_err());
        claim_dir(dir.path(), "demo").unwrap();
        assert!(dir.path().join(OWNER_FILE).exists());
    }
}
