//! Graceful shutdown of connections: one signal to every open connection, then a wait until
//! the last one has finished.
//!
//! hyper-util's `GracefulShutdown` does this for hyper's connections only (its trait is
//! sealed); geogate's own HTTP/1.1 path (see [`super::h1`]) needs the same signal, so both
//! kinds of connection hold a [`DrainWatch`] from one [`Drain`].

use tokio::sync::watch;

/// The listener's side: signals shutdown, then waits for every watch to be dropped.
#[derive(Debug)]
pub struct Drain {
    tx: watch::Sender<()>,
}

/// One connection's side: tells it to finish what it is doing and close. Held until the
/// connection has ended; the [`Drain`] waits for that.
#[derive(Debug)]
pub struct DrainWatch {
    rx: watch::Receiver<()>,
    /// `signalled` has returned (the channel then reads as seen).
    seen: bool,
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    pub fn new() -> Self {
        Self { tx: watch::channel(()).0 }
    }

    /// A watch for a connection accepted now.
    pub fn watch(&self) -> DrainWatch {
        DrainWatch { rx: self.tx.subscribe(), seen: false }
    }

    /// Signals every watch, then waits until all of them are dropped.
    pub async fn shutdown(self) {
        let _ = self.tx.send(());
        self.tx.closed().await;
    }
}

impl DrainWatch {
    /// Resolves once shutdown has been signalled (or the [`Drain`] is gone).
    pub async fn signalled(&mut self) {
        if !self.seen {
            let _ = self.rx.changed().await;
            self.seen = true;
        }
    }

    /// Whether shutdown has been signalled, without waiting.
    pub fn is_signalled(&self) -> bool {
        self.seen || self.rx.has_changed().unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_signals_and_waits_for_every_watch() {
        let drain = Drain::new();
        let mut early = drain.watch();
        assert!(!early.is_signalled());
        let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
        let conn = tokio::spawn(async move {
            early.signalled().await;
            assert!(early.is_signalled());
            // Finishing in-flight work before the watch goes away.
            done_rx.try_recv().unwrap_err();
            drop(early);
        });
        let shutdown = tokio::spawn(drain.shutdown());
        conn.await.unwrap();
        drop(done_tx);
        tokio::time::timeout(std::time::Duration::from_secs(5), shutdown).await.unwrap().unwrap();
    }
}
