//! SIGTERM and SIGINT for a run. The first signal asks the run to stop at its next safe point
//! (between days, between WFM batches, or while it waits on Gladly), where everything finished
//! is already checkpointed; the run then writes its manifest with outcome `interrupted` and
//! exits 1. A second signal ends the process at once (every write is atomic, so that too
//! leaves nothing half-written).

use std::sync::Arc;

use tokio::sync::watch;

pub struct Interrupt {
    tx: watch::Sender<bool>,
}

impl Interrupt {
    pub fn new() -> Arc<Interrupt> {
        Arc::new(Interrupt {
            tx: watch::channel(false).0,
        })
    }

    /// Listens for SIGTERM and SIGINT until the returned guard is dropped.
    pub fn listen(self: &Arc<Self>) -> ListenGuard {
        use tokio::signal::unix::{signal, SignalKind};
        let me = self.clone();
        ListenGuard(tokio::spawn(async move {
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            let mut seen = 0;
            loop {
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                seen += 1;
                if seen > 1 {
                    crate::log::error(format!("{name} again: stopping now"));
                    std::process::exit(1);
                }
                crate::log::warn(format!(
                    "{name}: stopping at the next safe point (send it again to stop at once)"
                ));
                me.request();
            }
        }))
    }

    pub fn request(&self) {
        self.tx.send_replace(true);
    }

    pub fn requested(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once a stop is requested.
    pub async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|v| *v).await;
    }
}

pub struct ListenGuard(tokio::task::JoinHandle<()>);

impl Drop for ListenGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_resolves_once_requested() {
        let i = Interrupt::new();
        assert!(!i.requested());
        let w = {
            let i = i.clone();
            tokio::spawn(async move { i.wait().await })
        };
        i.request();
        w.await.unwrap();
        assert!(i.requested());
        // Already requested: resolves at once.
        i.wait().await;
    }
}
