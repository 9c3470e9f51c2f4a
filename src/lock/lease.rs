//! The run lock on an object store, where there is no OS file lock: an object
//! (`_state/<pipeline>/run.lock`) created only if absent (`If-None-Match: *`), naming its holder
//! and a lease that a background task renews (`If-Match` on the ETag it wrote last) while the
//! run works. A run killed without releasing it stops renewing; once its lease has expired the
//! next run takes the lock over (also with `If-Match`, so of two runs that find it expired only
//! one wins) and logs the takeover. A run that ends releases the lock by marking it released.
//!
//! The lease compares wall clocks of different machines: keep it well above their skew (the
//! default is a minute; a renewal every third of it).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::LockError;
use crate::log;
use crate::storage::object;
use crate::storage::{Root, StorageError, WriteMode};
use crate::time::{self, Ms};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct LockRecord {
    holder: String,
    run_id: String,
    acquired_at: String,
    lease_until_ms: Ms,
    lease_until: String,
    #[serde(default)]
    released: bool,
}

impl LockRecord {
    fn live(&self, now: Ms) -> bool {
        !self.released && self.lease_until_ms > now
    }

    fn describe(&self) -> String {
        format!(
            "{}, run {}, lease until {}",
            self.holder, self.run_id, self.lease_until
        )
    }

    fn bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    fn renewed(&self, lease: Duration) -> LockRecord {
        let until = time::now_ms() + lease.as_millis() as Ms;
        LockRecord {
            lease_until_ms: until,
            lease_until: time::fmt_ts(until),
            ..self.clone()
        }
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let n = buf.iter().position(|&b| b == 0).unwrap_or(0);
    if ok && n > 0 {
        String::from_utf8_lossy(&buf[..n]).to_string()
    } else {
        "unknown host".into()
    }
}

pub struct LeaseLock {
    root: Root,
    key: String,
    record: LockRecord,
    e_tag: Arc<Mutex<Option<String>>>,
    renewal: tokio::task::JoinHandle<()>,
}

fn io(e: StorageError) -> LockError {
    LockError::Io {
        path: e.path,
        detail: e.detail,
    }
}

impl LeaseLock {
    pub fn acquire(
        root: &Root,
        key: &str,
        pipeline: &str,
        run_id: &str,
        lease: Duration,
    ) -> Result<LeaseLock, LockError> {
        let mine = LockRecord {
            holder: format!("pid {} on {}", std::process::id(), hostname()),
            run_id: run_id.to_string(),
            acquired_at: time::fmt_ts(time::now_ms()),
            lease_until_ms: 0,
            lease_until: String::new(),
            released: false,
        };
        let held = |r: &LockRecord| LockError::Held {
            pipeline: pipeline.to_string(),
            holder: r.describe(),
            path: root.describe(key),
        };
        // A few rounds: the lock may vanish or change between the create and the read.
        for _ in 0..3 {
            let record = mine.renewed(lease);
            match root.write(key, record.bytes(), WriteMode::Create) {
                Ok(tag) => return Ok(Self::start(root, key, record, tag, lease)),
                Err(e) if e.conflict => {}
                Err(e) => return Err(io(e)),
            }
            let Some((bytes, tag)) = root.read(key).map_err(io)? else {
                continue;
            };
            let theirs: Option<LockRecord> = serde_json::from_slice(&bytes).ok();
            if let Some(t) = theirs.as_ref().filter(|t| t.live(time::now_ms())) {
                return Err(held(t));
            }
            let Some(tag) = tag else {
                return Err(LockError::Io {
                    path: root.describe(key),
                    detail: "the object store returned no ETag; a lock cannot be taken over safely"
                        .into(),
                });
            };
            let record = mine.renewed(lease);
            match root.write(key, record.bytes(), WriteMode::Update(tag)) {
                Ok(new_tag) => {
                    match &theirs {
                        Some(t) if !t.released => log::warn(format!(
                            "took over the run lock {}: its holder ({}) stopped renewing it and \
                             its lease expired (killed, or cut off from the object store)",
                            root.describe(key),
                            t.describe()
                        )),
                        Some(_) => {}
                        None => log::warn(format!(
                            "took over the run lock {}: it did not hold a readable lock record",
                            root.describe(key)
                        )),
                    }
                    return Ok(Self::start(root, key, record, new_tag, lease));
                }
                Err(e) if e.conflict => {
                    // Another run took it over first: it holds the lock now.
                    if let Some((b, _)) = root.read(key).map_err(io)? {
                        if let Ok(r) = serde_json::from_slice::<LockRecord>(&b) {
                            return Err(held(&r));
                        }
                    }
                }
                Err(e) => return Err(io(e)),
            }
        }
        Err(LockError::Io {
            path: root.describe(key),
            detail: "the lock object kept changing while this run tried to take it".into(),
        })
    }

    fn start(
        root: &Root,
        key: &str,
        record: LockRecord,
        tag: Option<String>,
        lease: Duration,
    ) -> LeaseLock {
        let e_tag = Arc::new(Mutex::new(tag));
        let renewal = {
            let (root, key, record, e_tag) =
                (root.clone(), key.to_string(), record.clone(), e_tag.clone());
            object::spawn(async move {
                let every = (lease / 3).max(Duration::from_millis(200));
                loop {
                    tokio::time::sleep(every).await;
                    let (root, key, next, e_tag) = (
                        root.clone(),
                        key.clone(),
                        record.renewed(lease),
                        e_tag.clone(),
                    );
                    // The whole renewal holds the ETag's lock, so a release waits for a renewal in
                    // flight and then writes on the ETag it left. The write blocks on this same
                    // runtime's other worker; keep it off this one.
                    let res = tokio::task::spawn_blocking(move || {
                        let mut tag = e_tag.lock().unwrap();
                        let Some(t) = tag.clone() else {
                            return Ok(false);
                        };
                        let written = root.write(&key, next.bytes(), WriteMode::Update(t));
                        if let Ok(new) = &written {
                            *tag = new.clone();
                        } else if written.as_ref().is_err_and(|e| e.conflict) {
                            *tag = None;
                        }
                        written.map(|new| new.is_some())
                    })
                    .await;
                    match res {
                        Ok(Ok(true)) => {}
                        Ok(Ok(false)) | Err(_) => return,
                        Ok(Err(e)) if e.conflict => {
                            log::error(format!(
                                "lost the run lock {}: another run took it over; this run's \
                                 next state write will fail rather than overwrite the other's",
                                e.path
                            ));
                            return;
                        }
                        Ok(Err(e)) => log::warn(format!("cannot renew the run lock: {e}")),
                    }
                }
            })
        };
        LeaseLock {
            root: root.clone(),
            key: key.to_string(),
            record,
            e_tag,
            renewal,
        }
    }

    /// Who holds the lock now, if anyone (for `status`).
    pub fn holder(root: &Root, key: &str) -> Option<String> {
        let (bytes, _) = root.read(key).ok()??;
        let r: LockRecord = serde_json::from_slice(&bytes).ok()?;
        r.live(time::now_ms()).then(|| r.describe())
    }
}

impl LeaseLock {
    /// Marks the lock released; waits for a renewal in flight first. A conflict (a renewal the
    /// store took but whose answer was lost) is read back: while the record is still this run's
    /// it is released on the ETag read. Fails only when the lock could not be released, so the
    /// next run would find it held until the lease expires.
    pub fn release(self) -> Result<(), LockError> {
        self.renewal.abort();
        let mut tag = self.e_tag.lock().unwrap().take();
        let released = LockRecord {
            released: true,
            ..self.record.renewed(Duration::ZERO)
        };
        for _ in 0..3 {
            let Some(t) = tag.take() else {
                // Lost to a takeover (logged when it happened): nothing of this run's to release.
                return Ok(());
            };
            match self
                .root
                .write(&self.key, released.bytes(), WriteMode::Update(t))
            {
                Ok(_) => return Ok(()),
                Err(e) if e.conflict => {
                    let Some((bytes, now)) = self.root.read(&self.key).map_err(io)? else {
                        return Ok(());
                    };
                    match serde_json::from_slice::<LockRecord>(&bytes) {
                        Ok(r) if r.run_id == self.record.run_id && !r.released => tag = now,
                        _ => return Ok(()),
                    }
                }
                Err(e) => return Err(io(e)),
            }
        }
        Err(LockError::Io {
            path: self.root.describe(&self.key),
            detail: "the lock object kept changing while this run released it".into(),
        })
    }
}

impl Drop for LeaseLock {
    /// A lock not released by `release` (a panic, an early return) is released here, best
    /// effort; the next run takes it over once its lease expires otherwise.
    fn drop(&mut self) {
        self.renewal.abort();
        let Some(tag) = self.e_tag.lock().unwrap().take() else {
            return;
        };
        let released = LockRecord {
            released: true,
            ..self.record.renewed(Duration::ZERO)
        };
        if let Err(e) = self
            .root
            .write(&self.key, released.bytes(), WriteMode::Update(tag))
        {
            log::warn(format!(
                "cannot release the run lock (the next run takes it over once its lease expires): {e}"
            ));
        }
    }
}
