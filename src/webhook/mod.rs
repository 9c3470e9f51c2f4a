//! Gladly's webhook for `follow` (DESIGN §12): the receiver Gladly delivers events to, and the
//! management that keeps exactly one webhook per pipeline switched on in Gladly.

pub mod manage;
pub mod receiver;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use chrono_tz::Tz;
use tokio::sync::mpsc;

use crate::config::WebhookConfig;
use crate::log;
use crate::storage::Storage;
use crate::time::Clock;

pub use receiver::Taken;

/// Why the receiver could not start (the pipeline file's `[webhook]`: exit 2).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("webhook.listen: cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("webhook.{key}: {path}: {detail}")]
    Tls {
        key: &'static str,
        path: String,
        detail: String,
    },
}

/// The running receiver, on a thread and runtime of its own: it answers Gladly within
/// milliseconds whatever `follow`'s loop is doing (a transform, a push, a blocking write).
/// Dropping it stops it at once; `stop` lets deliveries in flight be answered first.
pub struct Receiver {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Dropping the sender ends the server's wait: it stops.
        self.stop.take();
    }
}

impl Receiver {
    /// Binds `listen` and serves (HTTPS with `tls_cert`/`tls_key`); usable events go to
    /// `queue`. A renewed certificate is picked up without a restart (`acceptor`).
    pub fn start(
        w: &WebhookConfig,
        tz: Tz,
        clock: Clock,
        st: Storage,
        queue: mpsc::Sender<Taken>,
    ) -> Result<Receiver, StartError> {
        let tls = w.tls.as_ref().map(|(c, k)| acceptor(c, k)).transpose()?;
        let listen_err = |source| StartError::Listen {
            addr: w.listen,
            source,
        };
        let listener = std::net::TcpListener::bind(w.listen).map_err(listen_err)?;
        listener.set_nonblocking(true).map_err(listen_err)?;
        let addr = listener.local_addr().unwrap_or(w.listen);
        log::info(format!(
            "webhook receiver listening on {}://{addr}{} (Gladly posts to {})",
            if tls.is_some() { "https" } else { "http" },
            w.path,
            w.public_url
        ));
        let app = receiver::router(w, tz, clock, st, queue);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(listen_err)?;
        let thread = std::thread::Builder::new()
            .name("webhook-receiver".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let server = crate::serve::spawn(listener, app, receiver::limits(), tls);
                    let _ = stopped.await;
                    server.stop(receiver::TIMEOUT).await;
                })
            })
            .map_err(listen_err)?;
        Ok(Receiver {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Accepts nothing more and answers the deliveries in flight (at most a few seconds).
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        log::info("webhook receiver: stopped");
    }
}

/// A TLS acceptor serving the certificate chain and private key in two PEM files. Both are read
/// now (a bad pair fails the start) and again when either file changes — a renewal, by
/// cert-manager say — looked at no more than every `RELOAD_EVERY`, on a handshake. A changed
/// pair that cannot be read is logged and the one in use is kept.
fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, StartError> {
    use tokio_rustls::rustls;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let loaded = load_pair(cert, key, &provider)?;
    let resolver = Arc::new(Reloading {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        provider: provider.clone(),
        current: std::sync::Mutex::new(Current {
            pair: Arc::new(loaded),
            stamps: stamps(cert, key),
            looked: std::time::Instant::now(),
        }),
    });
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Tls {
            key: "tls_cert",
            path: cert.display().to_string(),
            detail: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// How often the certificate files are looked at for a renewal.
const RELOAD_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

type Stamps = (Option<std::time::SystemTime>, Option<std::time::SystemTime>);

fn stamps(cert: &Path, key: &Path) -> Stamps {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (m(cert), m(key))
}

#[derive(Debug)]
struct Reloading {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    provider: Arc<tokio_rustls::rustls::crypto::CryptoProvider>,
    current: std::sync::Mutex<Current>,
}

#[derive(Debug)]
struct Current {
    pair: Arc<tokio_rustls::rustls::sign::CertifiedKey>,
    stamps: Stamps,
    looked: std::time::Instant,
}

impl tokio_rustls::rustls::server::ResolvesServerCert for Reloading {
    fn resolve(
        &self,
        _hello: tokio_rustls::rustls::server::ClientHello<'_>,
    ) -> Option<Arc<tokio_rustls::rustls::sign::CertifiedKey>> {
        let mut c = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if c.looked.elapsed() >= RELOAD_EVERY {
            c.looked = std::time::Instant::now();
            let now = stamps(&self.cert, &self.key);
            if now != c.stamps {
                c.stamps = now;
                match load_pair(&self.cert, &self.key, &self.provider) {
                    Ok(pair) => {
                        c.pair = Arc::new(pair);
                        log::info(format!(
                            "webhook receiver: TLS certificate read again from {}",
                            self.cert.display()
                        ));
                    }
                    Err(e) => log::warn(format!(
                        "webhook receiver: the changed TLS files cannot be used ({e}); serving the certificate read before"
                    )),
                }
            }
        }
        Some(c.pair.clone())
    }
}

/// The certificate chain and private key in two PEM files, checked to belong together.
fn load_pair(
    cert: &Path,
    key: &Path,
    provider: &tokio_rustls::rustls::crypto::CryptoProvider,
) -> Result<tokio_rustls::rustls::sign::CertifiedKey, StartError> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |key: &'static str, path: &Path, detail: String| StartError::Tls {
        key,
        path: path.display().to_string(),
        detail,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| {
            bad(
                "tls_cert",
                cert,
                format!("not a PEM certificate chain: {e}"),
            )
        })?;
    if certs.is_empty() {
        return Err(bad("tls_cert", cert, "no certificate in it".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| bad("tls_key", key, format!("not a PEM private key: {e}")))?;
    tokio_rustls::rustls::sign::CertifiedKey::from_der(certs, private, provider)
        .map_err(|e| bad("tls_key", key, format!("does not go with tls_cert: {e}")))
}
