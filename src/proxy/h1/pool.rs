//! Idle upstream connections of the fast path: plain byte streams (cleartext or TLS),
//! keyed like hyper's pool in [`super::super::forward`] by authority and TLS client.
//!
//! A connection comes back only after a response that ended cleanly with the upstream
//! keeping it open. Taking one drops those that are too old, and a cleartext one that the
//! upstream has closed or written to while it sat idle: tokio remembers the readiness epoll
//! reported, so that check costs no system call unless something did arrive.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use super::super::connect::UpstreamStream;
use super::super::forward::{PoolKey, IDLE_TIMEOUT, MAX_IDLE_PER_AUTHORITY as MAX_IDLE_PER_KEY};

/// Idle connections per upstream. A configuration names a handful of upstreams, so a short
/// list searched in order.
#[derive(Debug, Default)]
pub(crate) struct StreamPool {
    idle: Mutex<Vec<(PoolKey, VecDeque<Idle>)>>,
}

#[derive(Debug)]
struct Idle {
    stream: UpstreamStream,
    since: Instant,
}

impl StreamPool {
    /// The most recently used idle connection to `key` that still looks open.
    pub(crate) fn take(&self, key: &PoolKey) -> Option<UpstreamStream> {
        let now = Instant::now();
        loop {
            let idle = {
                let mut all = self.lock();
                all.iter_mut().find(|(k, _)| k == key)?.1.pop_back()?
            };
            if now.duration_since(idle.since) <= IDLE_TIMEOUT && still_open(&idle.stream) {
                return Some(idle.stream);
            }
        }
    }

    /// Keeps a connection whose last response ended cleanly.
    pub(crate) fn put(&self, key: &PoolKey, stream: UpstreamStream) {
        let now = Instant::now();
        let mut all = self.lock();
        let at = match all.iter().position(|(k, _)| k == key) {
            Some(at) => at,
            None => {
                all.push((key.clone(), VecDeque::new()));
                all.len() - 1
            }
        };
        let stack = &mut all[at].1;
        while stack.front().is_some_and(|i| now.duration_since(i.since) > IDLE_TIMEOUT) {
            stack.pop_front();
        }
        if stack.len() >= MAX_IDLE_PER_KEY {
            stack.pop_front();
        }
        stack.push_back(Idle { stream, since: now });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(PoolKey, VecDeque<Idle>)>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// False when an idle cleartext connection has been closed by the upstream (or has bytes
/// nobody asked for). A TLS connection cannot be peeked at without disturbing the session; a
/// closed one is found when the request is sent, and an idempotent request is retried.
fn still_open(stream: &UpstreamStream) -> bool {
    match stream {
        UpstreamStream::Plain(tcp) => {
            matches!(tcp.try_read(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        }
        UpstreamStream::Tls(_) => true,
    }
}
