//! Forwarding to upstreams: pooled keep-alive HTTP/1.1 connections, or one shared HTTP/2
//! connection per upstream (see [`super::h2pool`]), cleartext or TLS (see [`super::connect`]).
//!
//! ```text
//! protocol  http1 ─ idle HTTP/1.1 stack per upstream ─ or connect (TLS: ALPN http/1.1)
//!           h2c/h2 ─ the shared HTTP/2 connection ─ or connect (h2c: prior knowledge; TLS: ALPN h2)
//!           auto ─ the shared HTTP/2 one, else an idle HTTP/1.1 one, else connect and let ALPN choose
//! ```
//!
//! Each upstream has a stack of idle HTTP/1.1 connections (`hyper::client::conn::http1`
//! senders, each driven by its own connection task). A request takes the most recently used
//! idle connection that is still open, or connects a new one; the response body hands the
//! connection back to the pool when it reaches its end, so nothing is spawned per request.
//! A request that a reused connection could not even start (the upstream had just closed
//! it) is retried once on a new connection; nothing of it had been sent.
//!
//! Bodies stream both ways (the client's `Incoming` goes straight into the upstream request),
//! frame by frame, trailers included: between HTTP/2 clients and HTTP/2 upstreams they pass
//! both ways (gRPC's `grpc-status` is a response trailer). HTTP/1.1 carries trailers only in
//! chunked bodies whose `Trailer` header declares them, and hyper's HTTP/1 side sends them
//! only then (and, as a server, only to a client that sent `TE: trailers`); `TE` and
//! `Trailer` are stripped as hop-by-hop, so over HTTP/1.1 on either side they are dropped.
//! The connect timeout bounds the TCP connect and the TLS handshake; the response timeout
//! covers the wait for the response head only, so long downloads are not cut off.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HeaderValue;
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::client::conn::http2;
use hyper_util::rt::TokioIo;

use super::connect;
use super::h2pool::{self, H2Connections};
use super::respond::Failure;
use crate::config::UpstreamProtocol;
use crate::tls::client::UpstreamTls;

/// How long an idle upstream connection is kept.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Idle connections kept per upstream authority; more are closed when they come back.
pub(super) const MAX_IDLE_PER_AUTHORITY: usize = 256;
/// Most bytes read ahead from an upstream connection (hyper's default is about 400 KiB): what
/// a client that reads slowly can make geogate hold per connection, and the largest upstream
/// response head accepted. (Per stream on HTTP/2: its flow-control window.)
pub(super) const UPSTREAM_BUFFER: usize = 64 * 1024;

/// The pooled upstream client.
#[derive(Clone, Debug)]
pub struct Upstreams {
    pool: Arc<Pool>,
}

/// Idle connections per upstream authority. A configuration names a handful of upstreams,
/// so a short list searched in order beats hashing the authority on every request.
#[derive(Debug)]
struct Pool {
    idle: Mutex<Vec<(PoolKey, VecDeque<Idle>)>>,
    h2: H2Connections,
}

/// Where and how to send one request, copied out of the snapshot for it.
#[derive(Clone, Debug)]
pub struct Target {
    /// `scheme://host:port` of the upstream.
    pub base: Uri,
    pub protocol: UpstreamProtocol,
    /// The TLS client of an `https://` upstream.
    pub tls: Option<Arc<UpstreamTls>>,
}

/// What a pooled connection was made for: the authority, and the TLS client it was
/// handshaken with (the same `Arc` while a reload leaves the upstream's TLS unchanged; a
/// changed one starts new connections, and the old ones age out).
#[derive(Clone, Debug)]
pub(super) struct PoolKey {
    pub(super) authority: Authority,
    pub(super) tls: Option<Arc<UpstreamTls>>,
}

/// A connection ready for one request.
enum Conn {
    Http1(SendRequest<ClientBody>),
    Http2(http2::SendRequest<ClientBody>),
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
    key: PoolKey,
    sender: SendRequest<ClientBody>,
}

/// Why forwarding failed, as a bounded metric label plus the response to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    Connect,
    Timeout,
    Protocol,
    /// The TLS handshake with an `https://` upstream failed (certificate not trusted, wrong
    /// name, client certificate refused ...).
    Tls,
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
            r.pool.put(r.key, r.sender);
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
        Self { pool: Arc::new(Pool { idle: Mutex::new(Vec::new()), h2: H2Connections::default() }) }
    }
}

impl Upstreams {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends `req` to `target`, keeping the request's path and query. `te_trailers`: the
    /// client said it accepts trailers (`TE: trailers`, which the hop-by-hop stripping
    /// removed); an HTTP/2 upstream is told the same, as gRPC servers require. (An HTTP/1.1
    /// upstream is not: there `TE` stays a hop-by-hop header geogate does not pass on.)
    pub async fn send(
        &self,
        target: &Target,
        req: Request<Incoming>,
        te_trailers: bool,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let authority = target.base.authority().cloned().ok_or(UpstreamError::Protocol)?;
        let req = req.map(|inner| ClientBody { inner });
        let key = PoolKey { authority, tls: target.tls.clone() };
        let work = self.pool.clone().send(key, target.protocol, req, te_trailers, connect_timeout);
        match tokio::time::timeout(response_timeout, work).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(e),
        }
    }
}

// === impl PoolKey ===

impl PartialEq for PoolKey {
    fn eq(&self, other: &Self) -> bool {
        self.authority == other.authority
            && match (&self.tls, &other.tls) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

// === impl Pool ===

impl Pool {
    async fn send(
        self: Arc<Self>,
        key: PoolKey,
        protocol: UpstreamProtocol,
        mut req: Request<ClientBody>,
        te_trailers: bool,
        connect_timeout: Duration,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        loop {
            let (conn, reused) = match self.checkout(&key, protocol).await {
                Some(c) => (c, true),
                // Boxed: connecting is rare, and its large state would otherwise be carried
                // (and moved) by every request's future.
                None => Box::pin(self.connect_once(&key, protocol, connect_timeout)).await?,
            };
            let result = match conn {
                Conn::Http1(mut sender) => {
                    to_http1(&mut req);
                    match sender.try_send_request(req).await {
                        Ok(resp) => {
                            if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                                // The connection now belongs to the upgraded tunnel.
                                return Ok(resp.map(|b| UpstreamBody::new(b, None)));
                            }
                            let release = Release { pool: self.clone(), key, sender };
                            return Ok(resp.map(|b| UpstreamBody::new(b, Some(release))));
                        }
                        Err(e) => e,
                    }
                }
                Conn::Http2(mut sender) => {
                    to_http2(&mut req, &key, te_trailers);
                    match sender.try_send_request(req).await {
                        // Streams are independent: nothing goes back to a pool.
                        Ok(resp) => return Ok(resp.map(|b| UpstreamBody::new(b, None))),
                        Err(e) => {
                            // A connection that could not take a stream is not handed out again.
                            if e.message().is_some() {
                                self.h2.forget(&key);
                            }
                            e
                        }
                    }
                }
            };
            let mut e = result;
            match e.take_message() {
                // Not a byte was written: the upstream closed an idle connection just as it
                // was taken (or refused the stream). Try the next one, or a new connection.
                Some(back) if reused => req = back,
                _ => {
                    let e = e.into_error();
                    if is_client_body_error(&e) {
                        return Err(UpstreamError::ClientBody);
                    }
                    if is_tls_error(&e) {
                        // TLS 1.3: an upstream that refuses geogate's client certificate says
                        // so after the client's side of the handshake, on the first read.
                        tracing::warn!(error = %e, "upstream TLS session failed");
                        return Err(UpstreamError::Tls);
                    }
                    tracing::debug!(error = %e, "upstream request failed");
                    return Err(UpstreamError::Protocol);
                }
            }
        }
    }

    /// A connection to `key` ready for a request: the shared HTTP/2 one, or the most recently
    /// used idle HTTP/1.1 one that is still open (`auto` looks for either).
    async fn checkout(&self, key: &PoolKey, protocol: UpstreamProtocol) -> Option<Conn> {
        if protocol != UpstreamProtocol::Http1 {
            if let Some(mut sender) = self.h2.get(key) {
                if sender.ready().await.is_ok() {
                    return Some(Conn::Http2(sender));
                }
                self.h2.forget(key);
            }
            if protocol != UpstreamProtocol::Auto {
                return None;
            }
        }
        loop {
            let idle = self.lock().iter_mut().find(|(k, _)| k == key)?.1.pop_back()?;
            let mut sender = idle.sender;
            if sender.is_closed() || idle.since.elapsed() > IDLE_TIMEOUT {
                continue;
            }
            // Usually ready at once; otherwise the connection task is still finishing the
            // previous exchange, or finds the connection closed.
            if sender.ready().await.is_ok() {
                return Some(Conn::Http1(sender));
            }
        }
    }

    /// A new connection; for an upstream that may speak HTTP/2, under its connect lock, so
    /// that a burst of requests finding none opens one: those that waited take the one the
    /// first made. (`auto` stops taking the lock once ALPN has chosen HTTP/1.1 for it, seen
    /// as a connection pooled under its key.) `true` when it is not new.
    async fn connect_once(
        &self,
        key: &PoolKey,
        protocol: UpstreamProtocol,
        timeout: Duration,
    ) -> Result<(Conn, bool), UpstreamError> {
        let shared = match protocol {
            UpstreamProtocol::Http1 => false,
            UpstreamProtocol::H2c | UpstreamProtocol::H2 => true,
            UpstreamProtocol::Auto => !self.lock().iter().any(|(k, _)| k == key),
        };
        if !shared {
            return Ok((self.connect(key, protocol, timeout).await?, false));
        }
        let lock = self.h2.connect_lock(key);
        let _connecting = lock.lock().await;
        if let Some(conn) = self.checkout(key, protocol).await {
            return Ok((conn, true));
        }
        Ok((self.connect(key, protocol, timeout).await?, false))
    }

    /// Returns a connection whose response is complete; drops the stalest ones.
    fn put(&self, key: PoolKey, sender: SendRequest<ClientBody>) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.lock();
        let at = match idle.iter().position(|(k, _)| *k == key) {
            Some(at) => at,
            None => {
                idle.push((key, VecDeque::new()));
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

    /// A new connection, in the protocol `protocol` and ALPN settle on. A new HTTP/2
    /// connection becomes the upstream's shared one.
    async fn connect(
        &self,
        key: &PoolKey,
        protocol: UpstreamProtocol,
        timeout: Duration,
    ) -> Result<Conn, UpstreamError> {
        let connected = connect::connect(&key.authority, key.tls.as_deref(), timeout).await?;
        let h2 = match protocol {
            UpstreamProtocol::Http1 => false,
            UpstreamProtocol::H2c | UpstreamProtocol::H2 => true,
            UpstreamProtocol::Auto => connected.alpn_h2,
        };
        if h2 {
            let sender = h2pool::handshake(connected.stream).await?;
            self.h2.put(key.clone(), sender.clone());
            return Ok(Conn::Http2(sender));
        }
        let (sender, conn) = http1::Builder::new()
            .max_buf_size(UPSTREAM_BUFFER)
            .handshake(TokioIo::new(connected.stream))
            .await
            .map_err(|_| UpstreamError::Connect)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(Conn::Http1(sender))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(PoolKey, VecDeque<Idle>)>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// HTTP/1.1 origin-form: the path and query only; the Host header names the site.
fn to_http1(req: &mut Request<ClientBody>) {
    req.headers_mut().remove(http::header::TE);
    if let Some(authority) = req.uri().authority() {
        // Back from an HTTP/2 attempt, which carried the host in `:authority`.
        if !req.headers().contains_key(http::header::HOST) {
            if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
                req.headers_mut().insert(http::header::HOST, v);
            }
        }
    }
    let path = req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    *req.uri_mut() = Uri::from(path);
    *req.version_mut() = http::Version::HTTP_11;
}

/// HTTP/2: the scheme and the host judged go in the pseudo-headers (`:scheme`,
/// `:authority`), which take the place of `Host` (RFC 9113 §8.3.1); `TE: trailers`, the one
/// `TE` HTTP/2 allows, when the client sent it.
fn to_http2(req: &mut Request<ClientBody>, key: &PoolKey, te_trailers: bool) {
    if te_trailers {
        req.headers_mut().insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
    let authority = req
        .headers_mut()
        .remove(http::header::HOST)
        .and_then(|h| Authority::try_from(h.as_bytes()).ok())
        .or_else(|| req.uri().authority().cloned())
        .unwrap_or_else(|| key.authority.clone());
    let path = req.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    let scheme = if key.tls.is_some() { http::uri::Scheme::HTTPS } else { http::uri::Scheme::HTTP };
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(scheme);
    parts.authority = Some(authority);
    parts.path_and_query = Some(path);
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
    *req.version_mut() = http::Version::HTTP_2;
}

/// True when sending failed because the client's request body could not be read: hyper
/// reports an error of the outgoing body as a user error whose cause is that body's error,
/// and only [`ClientBody`] yields `hyper::Error`s.
fn is_client_body_error(e: &hyper::Error) -> bool {
    e.is_user() && std::error::Error::source(e).is_some_and(|cause| cause.is::<hyper::Error>())
}

/// True when the connection failed in TLS: an alert from the upstream (such as
/// `certificate_required`) or a TLS protocol error, somewhere in the error's causes.
fn is_tls_error(e: &hyper::Error) -> bool {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.is::<rustls::Error>()
            || c.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return true;
        }
        cause = c.source();
    }
    false
}

// === impl UpstreamError ===

impl UpstreamError {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Protocol => "protocol",
            Self::Tls => "tls",
            Self::ClientBody => "client_body",
        }
    }

    pub fn failure(self) -> Failure {
        match self {
            Self::Timeout => Failure::GatewayTimeout,
            Self::Connect | Self::Protocol | Self::Tls => Failure::BadGateway,
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
        let kinds = [UpstreamError::Connect, UpstreamError::Timeout, UpstreamError::Protocol, UpstreamError::Tls]
            .map(UpstreamError::as_str);
        assert_eq!(kinds, crate::metrics::UPSTREAM_ERROR_KINDS);
    }
}
