//! Shared HTTP/2 connections to upstreams: one per upstream, multiplexed.
//!
//! An HTTP/2 upstream (`protocol = "h2c"`, `"h2"`, or `"auto"` where ALPN chose `h2`) gets
//! one connection that every request shares: each request clones the connection's
//! `SendRequest` and opens its own stream, and the upstream's `SETTINGS` bound how many run
//! at once (hyper queues the rest). A connection that has closed (GOAWAY, reset, idle close
//! by the upstream) is dropped from the table the next time it is looked up, and the next
//! request connects anew.
//!
//! Requests that find no connection wait on the upstream's connect lock, and the first one
//! connects: a burst of the first requests opens one connection, not one each.

use std::sync::{Arc, Mutex, PoisonError};

use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::connect::UpstreamStream;
use super::forward::{ClientBody, PoolKey, UpstreamError, UPSTREAM_BUFFER};

/// The shared HTTP/2 connection of each upstream.
#[derive(Debug, Default)]
pub(super) struct H2Connections {
    conns: Mutex<Vec<(PoolKey, SendRequest<ClientBody>)>>,
    /// Held while connecting to the upstream; per upstream, created on first use.
    connecting: Mutex<Vec<(PoolKey, Arc<tokio::sync::Mutex<()>>)>>,
}

/// The flow-control window of each stream: the HTTP/1.1 read buffer.
const WINDOW: u32 = UPSTREAM_BUFFER as u32;

/// The connection's window, in stream windows: the streams of many clients share it.
const CONNECTION_WINDOWS: u32 = 16;

/// Connect locks kept before the unused ones (of upstreams a reload replaced) are dropped.
const CONNECT_LOCKS: usize = 64;

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

    /// The lock a request holds while it connects to `key`.
    pub(super) fn connect_lock(&self, key: &PoolKey) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.connecting.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, l)) = locks.iter().find(|(k, _)| k == key) {
            return l.clone();
        }
        if locks.len() >= CONNECT_LOCKS {
            locks.retain(|(_, l)| Arc::strong_count(l) > 1);
        }
        let l = Arc::new(tokio::sync::Mutex::new(()));
        locks.push((key.clone(), l.clone()));
        l
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(PoolKey, SendRequest<ClientBody>)>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The HTTP/2 handshake on a new connection; its connection task is spawned.
pub(super) async fn handshake(stream: UpstreamStream) -> Result<SendRequest<ClientBody>, UpstreamError> {
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        // A slow client's stream holds at most its window of the upstream's data, as an
        // HTTP/1.1 connection holds at most its read buffer (hyper's default: 2 MiB).
        .initial_stream_window_size(WINDOW)
        .initial_connection_window_size(WINDOW.saturating_mul(CONNECTION_WINDOWS))
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| {
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
