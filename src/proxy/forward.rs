//! Forwarding to upstreams over pooled keep-alive HTTP/1.1 connections.
//!
//! Each upstream authority has a stack of idle connections (`hyper::client::conn::http1`
//! senders, each driven by its own connection task). A request takes the most recently used
//! idle connection that is still open, or connects a new one; the response body hands the
//! connection back to the pool when it reaches its end, so nothing is spawned per request.
//! A request that a reused connection could not even start (the upstream had just closed
//! it) is retried once on a new connection; nothing of it had been sent.
//!
//! Bodies stream both ways (the client's `Incoming` goes straight into the upstream request).
//! The connect timeout bounds the TCP connect; the response timeout covers the wait for the
//! response head only, so long downloads are not cut off.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::respond::Failure;

/// How long an idle upstream connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Idle connections kept per upstream authority; more are closed when they come back.
const MAX_IDLE_PER_AUTHORITY: usize = 256;
/// Most bytes read ahead from an upstream connection (hyper's default is about 400 KiB): what
/// a client that reads slowly can make geogate hold per connection, and the largest upstream
/// response head accepted.
const UPSTREAM_BUFFER: usize = 64 * 1024;

/// The pooled upstream client.
#[derive(Clone, Debug)]
pub struct Upstreams {
    pool: Arc<Pool>,
}

/// Idle connections per upstream authority. A configuration names a handful of upstreams,
/// so a short list searched in order beats hashing the authority on every request.
#[derive(Debug)]
struct Pool {
    idle: Mutex<Vec<(Authority, VecDeque<Idle>)>>,
}

#[derive(Debug)]
struct Idle {
    sender: SendRequest<ClientBody>,
    since: Instant,
}

/// The client's request body on its way upstream. A failure to read it reaches the request's
/// error as hyper's user-body error caused by the client side's own `hyper::Error`, so a
/// broken client body is answered 400 and not blamed on the upstream.
#[derive(Debug)]
pub struct ClientBody {
    inner: Incoming,
}

/// The upstream's response body on its way to the client; returns its connection to the pool
/// once the body has been read to the end.
#[derive(Debug)]
pub struct UpstreamBody {
    inner: Incoming,
    release: Option<Release>,
}

/// A connection waiting for its response body to finish before it can be reused.
#[derive(Debug)]
struct Release {
    pool: Arc<Pool>,
    authority: Authority,
    sender: SendRequest<ClientBody>,
}

/// Why forwarding failed, as a bounded metric label plus the response to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    Connect,
    Timeout,
    Protocol,
    /// The client's own request body was malformed or cut off (not the upstream's fault).
    ClientBody,
}

// === impl ClientBody ===

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// === impl UpstreamBody ===

impl UpstreamBody {
    fn new(inner: Incoming, release: Option<Release>) -> Self {
        let mut body = Self { inner, release };
        if body.inner.is_end_stream() {
            body.finished();
        }
        body
    }

    /// The whole body was read: the connection can take the next request.
    fn finished(&mut self) {
        if let Some(r) = self.release.take() {
            r.pool.put(r.authority, r.sender);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(None) => self.finished(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.finished(),
            // An error or a body dropped half-read leaves the connection unusable: dropping
            // the sender lets hyper close it.
            Poll::Ready(Some(Err(_))) => self.release = None,
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// === impl Upstreams ===

impl Default for Upstreams {
    fn default() -> Self {
        Self { pool: Arc::new(Pool { idle: Mutex::new(Vec::new()) }) }
    }
}

impl Upstreams {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends `req` to `base` (scheme + authority), keeping the request's path and query.
    pub async fn send(
        &self,
        base: &Uri,
        req: Request<Incoming>,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let authority = base.authority().cloned().ok_or(UpstreamError::Protocol)?;
        let mut req = req.map(|inner| ClientBody { inner });
        // HTTP/1.1 origin-form: the path and query only; the Host header names the site.
        let path = req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(path);
        *req.version_mut() = http::Version::HTTP_11;
        match tokio::time::timeout(response_timeout, self.pool.clone().send(authority, req, connect_timeout)).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(e),
        }
    }
}

// === impl Pool ===

impl Pool {
    async fn send(
        self: Arc<Self>,
        authority: Authority,
        mut req: Request<ClientBody>,
        connect_timeout: Duration,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        loop {
            let (mut sender, reused) = match self.checkout(&authority).await {
                Some(s) => (s, true),
                // Boxed: connecting is rare, and its large state would otherwise be carried
                // (and moved) by every request's future.
                None => (Box::pin(self.connect(&authority, connect_timeout)).await?, false),
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                        // The connection now belongs to the upgraded tunnel.
                        return Ok(resp.map(|b| UpstreamBody::new(b, None)));
                    }
                    let release = Release { pool: self.clone(), authority, sender };
                    return Ok(resp.map(|b| UpstreamBody::new(b, Some(release))));
                }
                Err(mut e) => match e.take_message() {
                    // Not a byte was written: the upstream closed an idle connection just as
                    // it was taken. Try the next idle one, or a new connection.
                    Some(back) if reused => req = back,
                    _ => {
                        let e = e.into_error();
                        if is_client_body_error(&e) {
                            return Err(UpstreamError::ClientBody);
                        }
                        tracing::debug!(error = %e, "upstream request failed");
                        return Err(UpstreamError::Protocol);
                    }
                },
            }
        }
    }

    /// The most recently used idle connection to `authority` that is ready for a request.
    async fn checkout(&self, authority: &Authority) -> Option<SendRequest<ClientBody>> {
        loop {
            let idle = self.lock().iter_mut().find(|(a, _)| a == authority)?.1.pop_back()?;
            let mut sender = idle.sender;
            if sender.is_closed() || idle.since.elapsed() > IDLE_TIMEOUT {
                continue;
            }
            // Usually ready at once; otherwise the connection task is still finishing the
            // previous exchange, or finds the connection closed.
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    /// Returns a connection whose response is complete; drops the stalest ones.
    fn put(&self, authority: Authority, sender: SendRequest<ClientBody>) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.lock();
        let at = match idle.iter().position(|(a, _)| *a == authority) {
            Some(at) => at,
            None => {
                idle.push((authority, VecDeque::new()));
                idle.len() - 1
            }
        };
        let stack = &mut idle[at].1;
        while stack.front().is_some_and(|i| i.sender.is_closed() || now.duration_since(i.since) > IDLE_TIMEOUT) {
            stack.pop_front();
        }
        if stack.len() >= MAX_IDLE_PER_AUTHORITY {
            stack.pop_front();
        }
        stack.push_back(Idle { sender, since: now });
    }

    async fn connect(
        &self,
        authority: &Authority,
        timeout: Duration,
    ) -> Result<SendRequest<ClientBody>, UpstreamError> {
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(80);
        let stream = match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%authority, error = %e, "upstream connect failed");
                return Err(UpstreamError::Connect);
            }
            Err(_) => return Err(UpstreamError::Connect),
        };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::Builder::new()
            .max_buf_size(UPSTREAM_BUFFER)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|_| UpstreamError::Connect)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Authority, VecDeque<Idle>)>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// True when sending failed because the client's request body could not be read: hyper
/// reports an error of the outgoing body as a user error whose cause is that body's error,
/// and only [`ClientBody`] yields `hyper::Error`s.
fn is_client_body_error(e: &hyper::Error) -> bool {
    e.is_user() && std::error::Error::source(e).is_some_and(|cause| cause.is::<hyper::Error>())
}

// === impl UpstreamError ===

impl UpstreamError {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Protocol => "protocol",
            Self::ClientBody => "client_body",
        }
    }

    pub fn failure(self) -> Failure {
        match self {
            Self::Timeout => Failure::GatewayTimeout,
            Self::Connect | Self::Protocol => Failure::BadGateway,
            Self::ClientBody => Failure::BadRequest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_failure_kinds_are_the_metric_kinds() {
        // ClientBody is the client's fault: counted as a rejection, never as an upstream error.
        let kinds =
            [UpstreamError::Connect, UpstreamError::Timeout, UpstreamError::Protocol].map(UpstreamError::as_str);
        assert_eq!(kinds, crate::metrics::UPSTREAM_ERROR_KINDS);
    }
}
