//! Shared HTTP/2 connections to upstreams: one per upstream, multiplexed.
//!
//! An HTTP/2 upstream (`protocol = "h2c"`, `"h2"`, or `"auto"` where ALPN chose `h2`) gets
//! one connection that every request shares: each request clones the connection's
//! `SendRequest` and opens its own stream, and the upstream's `SETTINGS` bound how many run
//! at once (hyper queues the rest). A connection that has closed (GOAWAY, reset, idle close
//! by the upstream) is dropped from the table the next time it is looked up, and the next
//! request connects anew.
//!
//! Two requests that find no connection at the same moment may both connect; the one stored
//! last is kept, and the other closes once its one request is done. That costs one extra
//! handshake, once, rather than a lock held across a connect.

use std::sync::{Mutex, PoisonError};

use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::connect::UpstreamStream;
use super::forward::{ClientBody, PoolKey, UpstreamError};

/// The shared HTTP/2 connection of each upstream.
#[derive(Debug, Default)]
pub(super) struct H2Connections {
    conns: Mutex<Vec<(PoolKey, SendRequest<ClientBody>)>>,
}

// === impl H2Connections ===

impl H2Connections {
    /// A handle to `key`'s connection, if it has one still open.
    pub(super) fn get(&self, key: &PoolKey) -> Option<SendRequest<ClientBody>> {
        let mut conns = self.lock();
        let at = conns.iter().position(|(k, _)| k == key)?;
        if conns[at].1.is_closed() {
            conns.swap_remove(at);
            return None;
        }
        Some(conns[at].1.clone())
    }

    /// Makes `sender` the connection of `key`.
    pub(super) fn put(&self, key: PoolKey, sender: SendRequest<ClientBody>) {
        let mut conns = self.lock();
        conns.retain(|(k, s)| k != &key && !s.is_closed());
        conns.push((key, sender));
    }

    /// Forgets `key`'s connection (it failed a request before sending anything).
    pub(super) fn forget(&self, key: &PoolKey) {
        self.lock().retain(|(k, _)| k != key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(PoolKey, SendRequest<ClientBody>)>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The HTTP/2 handshake on a new connection; its connection task is spawned.
pub(super) async fn handshake(stream: UpstreamStream) -> Result<SendRequest<ClientBody>, UpstreamError> {
    let (sender, conn) =
        http2::Builder::new(TokioExecutor::new()).handshake(TokioIo::new(stream)).await.map_err(|e| {
            tracing::debug!(error = %e, "upstream HTTP/2 handshake failed");
            UpstreamError::Protocol
        })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream HTTP/2 connection ended with an error");
        }
    });
    Ok(sender)
}
