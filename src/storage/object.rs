//! An object-store root (`s3://bucket/prefix`) through the `object_store` crate. Credentials,
//! region and endpoint come from the standard AWS environment variables (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
//! `AWS_ALLOW_HTTP`, …), never from the pipeline file.
//!
//! The rest of the pipeline calls storage synchronously (as it calls the disk), from async tasks
//! and from `block_in_place` sections alike. `object_store` is async, so every call is run on a
//! small runtime of its own and waited for on a plain channel: that works from any thread,
//! inside a runtime or not, and cannot deadlock against the caller's runtime.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjPath;
use object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion, WriteMultipart,
};

/// A partition larger than this goes up as a multipart upload (S3 takes at most 5 GiB in one
/// PUT, and a long single PUT is one long retry); it becomes visible only when the upload
/// completes, whole, like a single PUT.
pub const MULTIPART_THRESHOLD: usize = 16 << 20;
const PART_SIZE: usize = 8 << 20;

/// How a write treats what is already there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteMode {
    Overwrite,
    /// Only if absent (`If-None-Match: *`).
    Create,
    /// Only if the object still has this ETag (`If-Match`).
    Update(String),
}

/// Why an object-store call failed: a lost condition is told apart from everything else.
#[derive(Debug)]
pub enum ObjectError {
    /// `Create` met an existing object or `Update` a changed one.
    Conflict(String),
    Other(String),
}

/// Why an object-store root could not be configured from the environment (before any request).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("AWS_ENDPOINT_URL `{endpoint}`: {source}")]
    EndpointUrl {
        endpoint: String,
        #[source]
        source: url::ParseError,
    },
    #[error(
        "AWS_ENDPOINT_URL `{0}` is plain http to a host that is not loopback; \
         use https (plain http is accepted only for 127.0.0.1, ::1 or localhost)"
    )]
    PlainHttp(String),
    #[error("AWS_ENDPOINT_URL `{endpoint}`: scheme `{scheme}` is not http or https")]
    Scheme { endpoint: String, scheme: String },
    #[error(
        "no AWS credentials for s3://{bucket}/{prefix}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
         (with AWS_SESSION_TOKEN when temporary), or AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN, \
         or AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI; for an instance role set \
         AWS_METADATA_ENDPOINT (http://169.254.169.254)"
    )]
    NoCredentials { bucket: String, prefix: String },
    #[error("s3://{bucket}: cannot configure the S3 client: {source}")]
    Client {
        bucket: String,
        #[source]
        source: object_store::Error,
    },
}

pub struct ObjectRoot {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    /// The key prefix under the bucket, without leading or trailing `/` (may be empty).
    prefix: String,
    requests: AtomicU64,
}

impl std::fmt::Debug for ObjectRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectRoot({})", self.url(""))
    }
}

fn io_runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    // Never dropped: dropping a runtime from inside another one panics.
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("object-store")
            .enable_all()
            .build()
            .expect("cannot start the object-store I/O runtime")
    })
}

/// Runs `fut` on the object-store runtime and waits for it, from any thread.
pub fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    io_runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .expect("an object-store request task ended without an answer")
}

/// Spawns a background task on the object-store runtime (the lock's lease renewal).
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    io_runtime().spawn(fut)
}

fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h == "localhost"
        || h.parse::<std::net::IpAddr>()
            .map(|a| a.is_loopback())
            .unwrap_or(false)
}

/// The environment variables whose values are credentials, for the log redaction.
const SECRET_VARS: [&str; 3] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// Whether the environment names a source of credentials that the S3 client reads. Without one
/// the client falls back to the cloud's instance metadata endpoint, which off the cloud is a
/// slow failure with an S3 error text: an instance role is therefore asked for by naming the
/// endpoint (`AWS_METADATA_ENDPOINT`), and anonymous access by `AWS_SKIP_SIGNATURE=true`.
fn credentials_named() -> bool {
    let set = |v: &str| std::env::var(v).is_ok_and(|s| !s.trim().is_empty());
    (set("AWS_ACCESS_KEY_ID") && set("AWS_SECRET_ACCESS_KEY"))
        || (set("AWS_WEB_IDENTITY_TOKEN_FILE") && set("AWS_ROLE_ARN"))
        || set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        || set("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        || set("AWS_METADATA_ENDPOINT")
        || std::env::var("AWS_SKIP_SIGNATURE").is_ok_and(|s| s.eq_ignore_ascii_case("true"))
}

impl ObjectRoot {
    /// Builds the client from the environment. No request is made here.
    pub fn open(bucket: &str, prefix: &str) -> Result<ObjectRoot, OpenError> {
        let secrets: Vec<String> = SECRET_VARS
            .iter()
            .filter_map(|v| std::env::var(v).ok())
            .filter(|s| !s.is_empty())
            .collect();
        crate::log::add_secrets(&secrets);
        let endpoint = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()));
        if let Some(ep) = &endpoint {
            let u = url::Url::parse(ep).map_err(|source| OpenError::EndpointUrl {
                endpoint: ep.clone(),
                source,
            })?;
            match u.scheme() {
                "https" => {}
                "http" if u.host_str().is_some_and(is_loopback) => {}
                "http" => return Err(OpenError::PlainHttp(ep.clone())),
                other => {
                    return Err(OpenError::Scheme {
                        endpoint: ep.clone(),
                        scheme: other.to_string(),
                    })
                }
            }
        }
        if !credentials_named() {
            return Err(OpenError::NoCredentials {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
            b = b.with_region("us-east-1");
        }
        let store = b.build().map_err(|source| OpenError::Client {
            bucket: bucket.to_string(),
            source,
        })?;
        Ok(ObjectRoot {
            store: Arc::new(store),
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            requests: AtomicU64::new(0),
        })
    }

    /// The full `s3://` URL of a key under the root.
    pub fn url(&self, rel: &str) -> String {
        let mut s = format!("s3://{}", self.bucket);
        for part in [self.prefix.as_str(), rel.trim_matches('/')] {
            if !part.is_empty() {
                s.push('/');
                s.push_str(part);
            }
        }
        s
    }

    fn path(&self, rel: &str) -> ObjPath {
        let rel = rel.trim_matches('/');
        if self.prefix.is_empty() {
            ObjPath::from(rel)
        } else if rel.is_empty() {
            ObjPath::from(self.prefix.as_str())
        } else {
            ObjPath::from(format!("{}/{rel}", self.prefix))
        }
    }

    /// Requests sent to the object store so far (list pages counted by 1,000 keys).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn count(&self, n: u64) {
        self.requests.fetch_add(n, Ordering::Relaxed);
    }

    /// The object and its ETag, or `None` when there is none.
    pub fn get(&self, rel: &str) -> Result<Option<(Bytes, Option<String>)>, ObjectError> {
        self.count(1);
        let (store, path) = (self.store.clone(), self.path(rel));
        block_on(async move {
            match store.get(&path).await {
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(ObjectError::Other(e.to_string())),
                Ok(r) => {
                    let tag = r.meta.e_tag.clone();
                    let b = r
                        .bytes()
                        .await
                        .map_err(|e| ObjectError::Other(e.to_string()))?;
                    Ok(Some((b, tag)))
                }
            }
        })
    }

    /// The object's size, or `None` when there is none (a HEAD: no bytes are fetched).
    pub fn size(&self, rel: &str) -> Result<Option<u64>, ObjectError> {
        self.count(1);
        let (store, path) = (self.store.clone(), self.path(rel));
        block_on(async move {
            match store.head(&path).await {
                Ok(m) => Ok(Some(m.size)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(ObjectError::Other(e.to_string())),
            }
        })
    }

    /// Writes one object whole (one PUT, or a multipart upload above the threshold) and returns
    /// its new ETag. Readers see the old object or the new one, never part of it.
    pub fn put(
        &self,
        rel: &str,
        bytes: Vec<u8>,
        mode: WriteMode,
    ) -> Result<Option<String>, ObjectError> {
        let (store, path) = (self.store.clone(), self.path(rel));
        if bytes.len() > MULTIPART_THRESHOLD && mode == WriteMode::Overwrite {
            let parts = bytes.len().div_ceil(PART_SIZE) as u64;
            self.count(parts + 2);
            return block_on(async move {
                let upload = store
                    .put_multipart(&path)
                    .await
                    .map_err(|e| ObjectError::Other(e.to_string()))?;
                let mut w = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
                w.put(Bytes::from(bytes));
                match w.finish().await {
                    Ok(r) => Ok(r.e_tag),
                    // An aborted upload leaves no object; `finish` aborts it on failure.
                    Err(e) => Err(ObjectError::Other(e.to_string())),
                }
            });
        }
        self.count(1);
        let put_mode = match mode {
            WriteMode::Overwrite => PutMode::Overwrite,
            WriteMode::Create => PutMode::Create,
            WriteMode::Update(e_tag) => PutMode::Update(UpdateVersion {
                e_tag: Some(e_tag),
                version: None,
            }),
        };
        block_on(async move {
            let opts = PutOptions::from(put_mode);
            match store.put_opts(&path, PutPayload::from(bytes), opts).await {
                Ok(r) => Ok(r.e_tag),
                Err(
                    e @ (object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. }),
                ) => Err(ObjectError::Conflict(e.to_string())),
                Err(e) => Err(ObjectError::Other(e.to_string())),
            }
        })
    }

    /// Every key under `rel` (recursively), relative to the root.
    pub fn list(&self, rel: &str) -> Result<Vec<String>, ObjectError> {
        let (store, path) = (self.store.clone(), self.path(rel));
        let cut = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        let keys: Vec<String> = block_on(async move {
            let mut s = store.list(Some(&path));
            let mut out = Vec::new();
            while let Some(m) = s.next().await {
                let m = m.map_err(|e| ObjectError::Other(e.to_string()))?;
                out.push(m.location.to_string());
            }
            Ok::<_, ObjectError>(out)
        })?;
        self.count(1 + keys.len() as u64 / 1000);
        Ok(keys
            .into_iter()
            .filter_map(|k| k.get(cut..).map(str::to_string))
            .collect())
    }

    /// Copies one object to another key inside the store (no bytes through this process);
    /// `false` when there is nothing at `from`.
    pub fn copy(&self, from: &str, to: &str) -> Result<bool, ObjectError> {
        self.count(1);
        let (store, a, b) = (self.store.clone(), self.path(from), self.path(to));
        block_on(async move {
            match store.copy(&a, &b).await {
                Ok(()) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(ObjectError::Other(e.to_string())),
            }
        })
    }

    pub fn delete(&self, rel: &str) -> Result<(), ObjectError> {
        self.count(1);
        let (store, path) = (self.store.clone(), self.path(rel));
        block_on(async move {
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(ObjectError::Other(e.to_string())),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_endpoints_are_loopback_only() {
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("[::1]"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("10.0.0.1"));
        assert!(!is_loopback("minio.internal"));
    }

    /// The messages are those the refusals always gave (tests/object_store.rs reads them).
    #[test]
    fn refusals_to_open_say_what_to_set() {
        let e = OpenError::PlainHttp("http://minio:9000".into());
        assert_eq!(
            e.to_string(),
            "AWS_ENDPOINT_URL `http://minio:9000` is plain http to a host that is not loopback; use https (plain http is accepted only for 127.0.0.1, ::1 or localhost)"
        );
        let e = OpenError::Scheme {
            endpoint: "ftp://x".into(),
            scheme: "ftp".into(),
        };
        assert_eq!(
            e.to_string(),
            "AWS_ENDPOINT_URL `ftp://x`: scheme `ftp` is not http or https"
        );
        let e = OpenError::NoCredentials {
            bucket: "bkt".into(),
            prefix: "org".into(),
        };
        assert_eq!(
            e.to_string(),
            "no AWS credentials for s3://bkt/org: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (with AWS_SESSION_TOKEN when temporary), or AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN, or AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI; for an instance role set AWS_METADATA_ENDPOINT (http://169.254.169.254)"
        );
        let ep = "http://[::1";
        let e = OpenError::EndpointUrl {
            endpoint: ep.into(),
            source: url::Url::parse(ep).unwrap_err(),
        };
        assert_eq!(
            e.to_string(),
            format!(
                "AWS_ENDPOINT_URL `{ep}`: {}",
                url::Url::parse(ep).unwrap_err()
            )
        );
    }
}
