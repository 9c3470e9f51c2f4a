//! The local folder a run on an object-store root spools answers to and spills its carried
//! states to: `gladly-wfm-<pid>` under the system's temporary folder (its files are never data).
//! A local root keeps them in `<root>/_tmp`, which the next run sweeps; this folder is outside
//! any root, so each process marks it as its own with a lock beside it, held for its life
//! (`gladly-wfm-<pid>.lock`, `flock`), and removes both when a command ends. A process killed
//! outright leaves them behind, lock released: the next run on an object-store root removes
//! every such folder whose lock it can take (`sweep_dead`). A folder whose lock is held belongs
//! to a live process, whichever pid namespace it runs in; one without a lock file is left.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::OnceLock;

const PREFIX: &str = "gladly-wfm-";

struct Owned {
    dir: PathBuf,
    lock: PathBuf,
    /// Holds the lock until the process ends.
    _file: File,
}

static OWNED: OnceLock<Option<Owned>> = OnceLock::new();

/// This process's folder's name: `gladly-wfm-<pid>`.
fn own_name() -> String {
    format!("{PREFIX}{}", std::process::id())
}

fn lock_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{name}.lock"))
}

/// This process's folder, made (with its lock taken first) the first time it is asked for. If
/// it cannot be made, the path is still returned: whoever writes there reports the error.
pub fn process_dir() -> PathBuf {
    let name = own_name();
    let dir = std::env::temp_dir().join(&name);
    OWNED.get_or_init(|| {
        let lock = lock_path(&name);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .ok()?;
        // SAFETY: flock on a descriptor this process owns and keeps open.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return None;
        }
        std::fs::create_dir_all(&dir).ok()?;
        Some(Owned {
            dir: dir.clone(),
            lock,
            _file: file,
        })
    });
    dir
}

/// Removes this process's folder and its lock, if it made them: at the end of a command, when
/// nothing in it is in use.
pub fn remove_process_dir() {
    if let Some(Some(o)) = OWNED.get() {
        let _ = std::fs::remove_dir_all(&o.dir);
        let _ = std::fs::remove_file(&o.lock);
    }
}

/// Removes the folders (and locks) of processes that ended without removing theirs; returns how
/// many.
pub fn sweep_dead() -> usize {
    let me = own_name();
    let mut n = 0;
    for e in std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(PREFIX) else {
            continue;
        };
        if name == me || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let lock = lock_path(&name);
        let Ok(f) = File::options().write(true).open(&lock) else {
            continue;
        };
        // SAFETY: flock on a descriptor owned here; released when `f` is dropped.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue;
        }
        if std::fs::remove_dir_all(e.path()).is_ok() {
            n += 1;
        }
        let _ = std::fs::remove_file(&lock);
    }
    n
}
