//! The bundled simulators: Gladly (the source) and the WFM (the destination), both real HTTP
//! servers on loopback, used by tests, `demo`, the benchmark and by hand.
//!
//! A crate of its own so the product can be built without it (`gladly-wfm` with
//! `--no-default-features` has neither `demo` nor `simulate`, nor axum), and so the oracle the
//! tests compare against shares nothing with the client: its own column lists, timestamp
//! renderings and clock (`time`), written from `shared/spec/`.

pub mod faults;
pub mod generator;
pub mod gladly;
pub mod rng;
pub mod summary;
pub mod time;
pub mod webhooks;
pub mod wfm;
pub mod wfm_store;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Binds `addr` (port 0 picks a free port), serves `app` on a background task, returns the
/// bound address. `connections` counts the connections open.
pub(crate) async fn serve(
    addr: &str,
    app: axum::Router,
    connections: Arc<Connections>,
) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let listener = Counting {
        listener,
        connections,
    };
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(local)
}

/// The connections a simulator has open. A client killed mid-request leaves its request in the
/// simulator's socket, answered (or dropped) a moment after the client is gone: a test that
/// counts what a killed run sent waits for its connections to close first.
#[derive(Default)]
pub struct Connections {
    open: AtomicUsize,
    closed: tokio::sync::Notify,
}

impl Connections {
    /// Returns once no connection is open (at once if none is).
    pub async fn all_closed(&self) {
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            // Registered before the check, so a close between the two is not missed.
            closed.as_mut().enable();
            if self.open.load(Ordering::SeqCst) == 0 {
                return;
            }
            closed.await;
        }
    }
}

struct Counting {
    listener: TcpListener,
    connections: Arc<Connections>,
}

impl axum::serve::Listener for Counting {
    type Io = Counted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Counted, SocketAddr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.listener).await;
        self.connections.open.fetch_add(1, Ordering::SeqCst);
        let connections = self.connections.clone();
        (Counted { io, connections }, addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// A connection, counted open until the server drops it (after its last request's handler).
struct Counted {
    io: TcpStream,
    connections: Arc<Connections>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.connections.open.fetch_sub(1, Ordering::SeqCst);
        self.connections.closed.notify_waiters();
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
