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
pub mod time;
pub mod wfm;
pub mod wfm_store;

/// Binds `addr` (port 0 picks a free port), serves `app` on a background task, returns the
/// bound address.
pub(crate) async fn serve(addr: &str, app: axum::Router) -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(local)
}
