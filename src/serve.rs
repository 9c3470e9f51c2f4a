//! The one bounded HTTP/1 server behind `[service]` (service.rs) and the webhook receiver
//! (webhook/receiver.rs): at most `max_connections` connections at once (one more is closed at
//! once), the request's headers (and a TLS handshake) within `header_timeout`, no connection
//! older than `lifetime` (its request in flight answered first), small read buffers. On `stop` it accepts nothing more, lets the
//! requests in flight be answered and closes idle connections.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::log;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub lifetime: Duration,
}

/// Stops a server: `stop` makes it refuse new connections and finish the ones it has.
pub struct Stopper {
    tx: watch::Sender<bool>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl Stopper {
    /// Stops accepting, and waits (at most `grace`) for the requests in flight to be answered.
    pub async fn stop(mut self, grace: Duration) {
        let _ = self.tx.send(true);
        if let Some(done) = self.done.take() {
            let _ = tokio::time::timeout(grace, done).await;
        }
    }
}

impl Drop for Stopper {
    fn drop(&mut self) {
        let _ = self.tx.send(true);
    }
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until stopped.
pub fn spawn(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Stopper {
    let (tx, rx) = watch::channel(false);
    let done = tokio::spawn(serve(listener, app, limits, tls, rx));
    Stopper {
        tx,
        done: Some(done),
    }
}

async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors, say: wait a little rather than spin.
                log::debug(format!("server: accept: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let (app, tls, stop) = (app.clone(), tls.clone(), stop.clone());
        tokio::spawn(async move {
            let work = async {
                match tls {
                    None => connection(stream, app, limits, stop).await,
                    Some(tls) => {
                        if let Ok(Ok(s)) =
                            tokio::time::timeout(limits.header_timeout, tls.accept(stream)).await
                        {
                            connection(s, app, limits, stop).await
                        }
                    }
                }
            };
            work.await;
            drop(slot);
        });
    }
    drop(listener);
    // Every slot back: each connection answered what it was serving and closed.
    let _ = slots.acquire_many(limits.max_connections as u32).await;
}

/// One connection, until it closes, its lifetime ends, or the server stops: then the request
/// in flight is answered (within `header_timeout`) and the connection closed.
async fn connection<I>(io: I, app: Router, limits: Limits, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(16 * 1024)
        .serve_connection(
            hyper_util::rt::TokioIo::new(io),
            hyper_util::service::TowerToHyperService::new(app),
        );
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.wait_for(|s| *s) => {}
        _ = tokio::time::sleep(limits.lifetime) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(limits.header_timeout, conn).await;
}
