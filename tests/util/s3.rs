//! A real S3-protocol server on loopback for the object-store tests: moto's server mode
//! (`python3 -m moto.server`, PyPI `moto[server]` 5.x, which honours `If-None-Match: *` and
//! `If-Match` on PUT; docs/decisions/ says why this one). Started as a child process on a free
//! port, waited for until it answers, killed on drop. A machine without it fails the test with a
//! message saying how to install it: a skipped object-store test would prove nothing.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::free_port;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt};

pub const ACCESS_KEY: &str = "AKIATESTS3ACCESSKEY";
pub const SECRET_KEY: &str = "s3cret-aws-secret-key-QRS";

pub struct S3Server {
    child: Child,
    pub endpoint: String,
    log: tempfile::NamedTempFile,
}

impl S3Server {
    pub async fn start() -> S3Server {
        let port = free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let mut cmd = Command::new(&python);
        cmd.args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(log.reopen().unwrap())
        .stderr(log.reopen().unwrap());
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start the S3-protocol test server (`{python} -m moto.server`): {e}; install it with: python3 -m pip install 'moto[server]>=5,<6'")
        });
        let mut s = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            log,
        };
        s.wait_until_it_answers().await;
        s
    }

    async fn wait_until_it_answers(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client
                .get(format!("{}/moto-api/", self.endpoint))
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the S3-protocol test server (moto) exited with {status} before answering; \
                     install it with: python3 -m pip install 'moto[server]>=5,<6'\n--- its output\n{}",
                    std::fs::read_to_string(self.log.path()).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the S3-protocol test server (moto) did not answer on {} within 120 s\n--- its output\n{}",
                self.endpoint,
                std::fs::read_to_string(self.log.path()).unwrap_or_default()
            );
            // Polling a port that is not open yet: the one wait there is no event for.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The environment a run needs to reach this server (the standard AWS variables).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    pub async fn create_bucket(&self, bucket: &str) {
        let r = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "create bucket {bucket}: {r:?}");
    }

    pub fn store(&self, bucket: &str) -> Arc<AmazonS3> {
        Arc::new(
            AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_region("us-east-1")
                .with_endpoint(&self.endpoint)
                .with_allow_http(true)
                .with_access_key_id(ACCESS_KEY)
                .with_secret_access_key(SECRET_KEY)
                .build()
                .unwrap(),
        )
    }

    /// Every key in the bucket, sorted.
    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let store = self.store(bucket);
        let mut out: Vec<String> = Vec::new();
        let mut s = store.list(None);
        while let Some(m) = s.next().await {
            out.push(m.unwrap().location.to_string());
        }
        out.sort();
        out
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Option<bytes::Bytes> {
        match self.store(bucket).get(&ObjPath::from(key)).await {
            Err(object_store::Error::NotFound { .. }) => None,
            r => Some(r.unwrap().bytes().await.unwrap()),
        }
    }

    /// Copies every object under `prefix` into `dir` (key → file), to read with the same
    /// helpers as a local root.
    pub async fn download(&self, bucket: &str, prefix: &str, dir: &Path) {
        for k in self.keys(bucket).await {
            let Some(rel) = k.strip_prefix(&format!("{prefix}/")) else {
                continue;
            };
            let path = dir.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, self.get(bucket, &k).await.unwrap()).unwrap();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
