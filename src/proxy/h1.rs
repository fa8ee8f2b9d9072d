//! The HTTP/1.1 fast path: geogate's own request loop for plain HTTP/1.1 traffic to
//! HTTP/1.1 upstreams, with hyper kept for everything else and as the reference.
//!
//! ```text
//! client bytes ─ httparse (in place) ─ suitable? ─ no ─▶ hyper, from this request on
//!                                        │ yes
//!                     handler::decide (the same decision as hyper's path)
//!                          │ respond                     │ forward
//!               own response written          head rewritten into one buffer with the
//!                                              body bytes at hand ─▶ pooled upstream stream
//!                                              response head filtered ─▶ client, body
//!                                              passed through as framed (length, chunked)
//! ```
//!
//! A request is *suitable* when it is HTTP/1.1 in origin form with no `Transfer-Encoding`,
//! `Upgrade` or `Expect`, one valid `Content-Length` at most, a head httparse accepts within
//! the configured limits, and every upstream of the snapshot serving it speaks HTTP/1.1.
//! Anything else (HTTP/1.0, chunked uploads, WebSocket, `100-continue`, malformed heads,
//! which hyper answers 400 or 431) goes to hyper with the bytes read so far, and the rest of
//! the connection stays there, so hyper's answers to odd input are unchanged.
//!
//! What it saves against hyper's server and client: no header map for the response, no
//! per-request timer (one lazily re-armed deadline per connection), no channel or task
//! between the request and its upstream connection, the request head and the body bytes
//! already read written upstream in one call, and the response head and the first body
//! bytes written to the client in one call. See docs/performance.md for the measurements.

pub mod chunked;
mod pool;
pub mod wire;

pub(super) use pool::StreamPool;

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Response};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, Sleep};

use self::chunked::ChunkedScan;
use self::wire::{Framing, Probe, Response1, ResponseHead};
use super::connect::{self, UpstreamStream};
use super::drain::DrainWatch;
use super::forward::{PoolKey, UpstreamError};
use super::handler::{self, ConnInfo, LogLine, Plan};
use super::respond::{self, Body, Failure};
use super::ProxyContext;
use crate::config::UpstreamProtocol;
use crate::proxy_protocol::Rewind;
use crate::snapshot::Snapshot;

/// Bytes read from the client at a time.
const READ_CHUNK: usize = 8 * 1024;
/// Bytes read from an upstream at a time.
const UPSTREAM_CHUNK: usize = 16 * 1024;

/// What a connection takes from the snapshot it was accepted under.
#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    pub header_timeout: Duration,
    pub max_head: usize,
    pub max_headers: usize,
}

/// How the fast path left a connection.
pub(super) enum Ended<S> {
    Closed,
    /// The next request is for hyper: the bytes read of it, and the stream.
    Handover(Rewind<S>),
}

/// After one exchange.
enum Next {
    KeepAlive,
    Close,
    Handover(Bytes),
}

/// One connection's reused buffers and deadlines.
struct Conn {
    /// Bytes from the client not yet used.
    rbuf: BytesMut,
    /// The request as written upstream.
    out: Vec<u8>,
    /// Bytes from the upstream.
    ubuf: BytesMut,
    /// What goes to the client.
    cout: Vec<u8>,
    /// Where the parts of the current request head are.
    layout: Box<wire::Layout>,
    header_deadline: Deadline,
    response_deadline: Deadline,
}

/// Whether hyper's path is needed for every request under `snapshot`: an upstream that may
/// speak HTTP/2.
pub(super) fn upstreams_are_http1(snapshot: &Snapshot) -> bool {
    snapshot.config.upstreams.iter().all(|u| u.protocol == UpstreamProtocol::Http1)
}

/// Serves HTTP/1.1 requests on `io` until the connection ends or a request needs hyper.
pub(super) async fn serve<S>(
    io: Rewind<S>,
    info: &Arc<ConnInfo>,
    ctx: &ProxyContext,
    settings: Settings,
    drain: &mut DrainWatch,
) -> Ended<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (prefix, mut io) = io.into_inner();
    let mut conn = Conn {
        rbuf: BytesMut::with_capacity(READ_CHUNK.max(prefix.len())),
        out: Vec::new(),
        ubuf: BytesMut::new(),
        cout: Vec::new(),
        layout: Box::default(),
        header_deadline: Deadline::new(),
        response_deadline: Deadline::new(),
    };
    conn.rbuf.extend_from_slice(&prefix);
    loop {
        match conn.exchange(&mut io, info, ctx, settings, drain).await {
            Next::KeepAlive => {}
            Next::Close => {
                let _ = io.shutdown().await;
                return Ended::Closed;
            }
            Next::Handover(prefix) => return Ended::Handover(Rewind::new(prefix, io)),
        }
    }
}

impl Conn {
    /// One request and its response.
    async fn exchange<S>(
        &mut self,
        io: &mut S,
        info: &ConnInfo,
        ctx: &ProxyContext,
        settings: Settings,
        drain: &mut DrainWatch,
    ) -> Next
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // The head, within the header-read timeout (counted from when it is awaited, as
        // hyper counts it). Between requests, a shutdown closes the connection.
        self.header_deadline.set(Instant::now() + settings.header_timeout);
        loop {
            if !self.rbuf.is_empty() {
                match wire::probe(&self.rbuf, settings.max_headers, &mut self.layout) {
                    // hyper's limit is its read buffer: a head must fit in `max_head` bytes.
                    Probe::Complete if self.layout.len <= settings.max_head => break,
                    Probe::Partial if self.rbuf.len() < settings.max_head => {}
                    Probe::Complete | Probe::Partial | Probe::Unsuitable => {
                        return Next::Handover(self.rbuf.split().freeze())
                    }
                }
            }
            let between = self.rbuf.is_empty();
            self.rbuf.reserve(READ_CHUNK);
            let read = tokio::select! {
                biased;
                r = io.read_buf(&mut self.rbuf) => r,
                () = self.header_deadline.expired() => return Next::Close,
                () = drain.signalled(), if between => return Next::Close,
            };
            if !matches!(read, Ok(n) if n > 0) {
                return Next::Close;
            }
        }
        let head = self.rbuf.split_to(self.layout.len).freeze();
        let Some(parsed) = wire::build(&head, &self.layout) else {
            return Next::Handover(rejoin(&head, &mut self.rbuf));
        };
        let mut req = parsed.req;
        let started = std::time::Instant::now();
        let mut log = LogLine::default();
        let plan = {
            let snapshot = ctx.current.load();
            if !upstreams_are_http1(&snapshot) {
                return Next::Handover(rejoin(&head, &mut self.rbuf));
            }
            handler::decide(ctx, &snapshot, info, &mut req, false, None, &mut log)
        };
        drop(head);
        let is_head = req.method() == Method::HEAD;
        let fwd = match plan {
            Plan::Respond(resp) => {
                // The request's body is not forwarded: skipped when it is already here,
                // otherwise the connection closes after the answer.
                let here = parsed.content_length <= self.rbuf.len() as u64;
                if here {
                    self.rbuf.advance(parsed.content_length as usize);
                }
                let close = parsed.close || !here || drain.is_signalled();
                return self.own(io, ctx, &log, started, resp, is_head, close).await;
            }
            Plan::Forward(fwd) => fwd,
        };

        let Some(authority) = fwd.target.base.authority().cloned() else {
            return self.own(io, ctx, &log, started, respond::failure(Failure::Internal), is_head, true).await;
        };
        let key = PoolKey { authority, tls: fwd.target.tls.clone() };
        self.out.clear();
        wire::write_request(&mut self.out, &req, parsed.content_length);
        // Only requests that cannot change anything are sent again on a new connection.
        let idempotent = matches!(
            *req.method(),
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
        );
        drop(req);
        let here = usize::try_from(parsed.content_length).unwrap_or(usize::MAX).min(self.rbuf.len());
        self.out.extend_from_slice(&self.rbuf[..here]);
        self.rbuf.advance(here);
        let mut body_left = parsed.content_length - here as u64;
        let retry = idempotent && body_left == 0;
        let client_close = parsed.close || drain.is_signalled();

        let sent = std::time::Instant::now();
        self.response_deadline.set(Instant::now() + fwd.response_timeout);
        let upstream = Upstream {
            pool: &ctx.h1_pool,
            key: &key,
            connect_timeout: fwd.connect_timeout,
            retry,
            is_head,
            client_close,
        };
        let result = tokio::select! {
            biased;
            r = upstream.send(io, &mut self.rbuf, &self.out, &mut body_left, &mut self.ubuf, &mut self.cout) => r,
            () = self.response_deadline.expired() => Err(UpstreamError::Timeout),
        };
        ctx.metrics.upstream_duration.with_label_values(&[&fwd.upstream]).observe(sent.elapsed().as_secs_f64());
        let (stream, head) = match result {
            Ok(r) => r,
            Err(UpstreamError::ClientBody) => {
                ctx.metrics.rejected.with_label_values(&["bad_request_body"]).inc();
                log.client_body_failed();
                let resp = respond::failure(Failure::BadRequest);
                return self.own(io, ctx, &log, started, resp, is_head, true).await;
            }
            Err(e) => {
                ctx.metrics.upstream_errors.with_label_values(&[&fwd.upstream, e.as_str()]).inc();
                tracing::warn!(upstream = %fwd.upstream, kind = e.as_str(), "upstream request failed");
                let close = client_close || body_left > 0;
                return self.own(io, ctx, &log, started, respond::failure(e.failure()), is_head, close).await;
            }
        };
        handler::record(ctx, &log, started, head.status);
        let close = client_close || head.framing == Framing::Close;
        match self.pass_body(io, stream, &head).await {
            Some(Some(stream)) => ctx.h1_pool.put(&key, stream),
            Some(None) => {}
            None => return Next::Close,
        }
        if close {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }

    /// Writes one of geogate's own responses.
    #[allow(clippy::too_many_arguments)]
    async fn own<S>(
        &mut self,
        io: &mut S,
        ctx: &ProxyContext,
        log: &LogLine,
        started: std::time::Instant,
        resp: Response<Body>,
        is_head: bool,
        close: bool,
    ) -> Next
    where
        S: AsyncWrite + Unpin,
    {
        let (parts, body) = resp.into_parts();
        let body = match body {
            Body::Fixed(full) => full.collect().await.map(|c| c.to_bytes()).unwrap_or_default(),
            Body::Upstream(_) => Bytes::new(),
        };
        let resp = Response::from_parts(parts, ());
        let close = close || wire::says_close(resp.headers());
        self.cout.clear();
        wire::write_own(&mut self.cout, &resp, &body, is_head, close);
        handler::record(ctx, log, started, resp.status());
        if io.write_all(&self.cout).await.is_err() || io.flush().await.is_err() || close {
            return Next::Close;
        }
        Next::KeepAlive
    }

    /// Sends the response head (already in `cout`) and the body to the client. `None`: the
    /// client connection must close (either side broke off); otherwise the upstream
    /// connection, when it can take another request.
    async fn pass_body<S>(
        &mut self,
        io: &mut S,
        mut up: UpstreamStream,
        head: &ResponseHead,
    ) -> Option<Option<UpstreamStream>>
    where
        S: AsyncWrite + Unpin,
    {
        self.ubuf.advance(head.len);
        let mut clean = head.keep_alive;
        let mut scan = ChunkedScan::new();
        // What of the bytes at hand belongs to the body; the first of them go out with the head.
        let mut left = match head.framing {
            Framing::Empty => 0,
            Framing::Length(n) => n,
            Framing::Chunked | Framing::Close => u64::MAX,
        };
        let mut first = true;
        loop {
            let take = match head.framing {
                Framing::Chunked => scan.feed(&self.ubuf).ok()?,
                _ => usize::try_from(left).unwrap_or(usize::MAX).min(self.ubuf.len()),
            };
            if take < self.ubuf.len() {
                // Bytes after the end of the response: the connection is out of step.
                clean = false;
            }
            let done = match head.framing {
                Framing::Chunked => scan.is_done(),
                Framing::Close => false,
                _ => {
                    left -= take as u64;
                    left == 0
                }
            };
            let wrote = if first {
                first = false;
                self.cout.extend_from_slice(&self.ubuf[..take]);
                io.write_all(&self.cout).await
            } else {
                io.write_all(&self.ubuf[..take]).await
            };
            wrote.ok()?;
            if done {
                io.flush().await.ok()?;
                return Some(clean.then_some(up));
            }
            io.flush().await.ok()?;
            self.ubuf.clear();
            self.ubuf.reserve(UPSTREAM_CHUNK);
            match up.read_buf(&mut self.ubuf).await {
                Ok(0) if head.framing == Framing::Close => return Some(None),
                Ok(n) if n > 0 => {}
                _ => return None,
            }
        }
    }
}

/// Where one request goes.
struct Upstream<'a> {
    pool: &'a StreamPool,
    key: &'a PoolKey,
    connect_timeout: Duration,
    /// The request may be sent again on a new connection if a pooled one turns out closed.
    retry: bool,
    is_head: bool,
    client_close: bool,
}

impl Upstream<'_> {
    /// Sends `request` (head and the body bytes at hand), then the rest of the body from the
    /// client, and reads the response head, written for the client into `cout`.
    async fn send<S>(
        &self,
        io: &mut S,
        rbuf: &mut BytesMut,
        request: &[u8],
        body_left: &mut u64,
        ubuf: &mut BytesMut,
        cout: &mut Vec<u8>,
    ) -> Result<(UpstreamStream, ResponseHead), UpstreamError>
    where
        S: AsyncRead + Unpin,
    {
        loop {
            let (mut up, reused) = match self.pool.take(self.key) {
                Some(s) => (s, true),
                None => (Box::pin(self.connect()).await?, false),
            };
            // A pooled connection the upstream closed meanwhile fails here or on the first
            // read, before any byte of a response: then an idempotent request is sent again.
            let again = reused && self.retry;
            if let Err(e) = write(&mut up, request).await {
                if again {
                    continue;
                }
                return Err(io_error(&e));
            }
            while *body_left > 0 {
                if rbuf.is_empty() {
                    rbuf.reserve(READ_CHUNK);
                    if !matches!(io.read_buf(rbuf).await, Ok(n) if n > 0) {
                        return Err(UpstreamError::ClientBody);
                    }
                }
                let n = usize::try_from(*body_left).unwrap_or(usize::MAX).min(rbuf.len());
                write(&mut up, &rbuf[..n]).await.map_err(|e| io_error(&e))?;
                rbuf.advance(n);
                *body_left -= n as u64;
            }
            ubuf.clear();
            loop {
                if !ubuf.is_empty() {
                    cout.clear();
                    match wire::response(ubuf, self.is_head, self.client_close, cout) {
                        Ok(Response1::Complete(head)) => return Ok((up, head)),
                        Ok(Response1::Interim(len)) => {
                            ubuf.advance(len);
                            continue;
                        }
                        Ok(Response1::Partial) if ubuf.len() < super::forward::UPSTREAM_BUFFER => {}
                        Ok(Response1::Partial) | Err(_) => return Err(UpstreamError::Protocol),
                    }
                }
                ubuf.reserve(UPSTREAM_CHUNK);
                match up.read_buf(ubuf).await {
                    Ok(n) if n > 0 => {}
                    Ok(_) if again && ubuf.is_empty() => break,
                    Ok(_) => return Err(UpstreamError::Protocol),
                    Err(_) if again && ubuf.is_empty() => break,
                    Err(e) => return Err(io_error(&e)),
                }
            }
        }
    }

    async fn connect(&self) -> Result<UpstreamStream, UpstreamError> {
        let connected = connect::connect(&self.key.authority, self.key.tls.as_deref(), self.connect_timeout).await?;
        Ok(connected.stream)
    }
}

async fn write(up: &mut UpstreamStream, bytes: &[u8]) -> std::io::Result<()> {
    up.write_all(bytes).await?;
    up.flush().await
}

/// A failed read or write on an upstream connection: TLS when rustls refused the session
/// (an upstream refusing geogate's client certificate says so on the first read).
fn io_error(e: &std::io::Error) -> UpstreamError {
    if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
        UpstreamError::Tls
    } else {
        UpstreamError::Protocol
    }
}

/// The bytes of a head already split off, put back in front of what followed it.
fn rejoin(head: &Bytes, rest: &mut BytesMut) -> Bytes {
    let mut all = BytesMut::with_capacity(head.len() + rest.len());
    all.extend_from_slice(head);
    all.extend_from_slice(&rest.split());
    all.freeze()
}

/// A deadline re-armed lazily: moving it later costs nothing; the timer is touched only
/// when it fires before the deadline (then it is set to the deadline) or when the deadline
/// moves earlier. One timer per connection instead of one per request.
struct Deadline {
    sleep: Option<Pin<Box<Sleep>>>,
    at: Instant,
}

impl Deadline {
    fn new() -> Self {
        Self { sleep: None, at: Instant::now() }
    }

    fn set(&mut self, at: Instant) {
        self.at = at;
        if let Some(sleep) = &mut self.sleep {
            if at < sleep.deadline() {
                sleep.as_mut().reset(at);
            }
        }
    }

    /// Resolves once the deadline has passed.
    fn expired(&mut self) -> impl Future<Output = ()> + '_ {
        let at = self.at;
        poll_fn(move |cx| {
            let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
            loop {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if Instant::now() >= at {
                    return Poll::Ready(());
                }
                sleep.as_mut().reset(at);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_deadline_moved_later_fires_at_the_later_time() {
        let start = Instant::now();
        let mut d = Deadline::new();
        d.set(start + Duration::from_secs(1));
        // Armed by a first wait that ends early.
        assert!(tokio::time::timeout(Duration::from_millis(10), d.expired()).await.is_err());
        d.set(start + Duration::from_secs(5));
        d.expired().await;
        assert!(Instant::now() >= start + Duration::from_secs(5), "{:?}", Instant::now() - start);
        // Moved earlier than the armed timer: fires then.
        let now = Instant::now();
        d.set(now + Duration::from_secs(60));
        assert!(tokio::time::timeout(Duration::from_millis(10), d.expired()).await.is_err());
        d.set(now + Duration::from_secs(2));
        d.expired().await;
        assert!(Instant::now() - now < Duration::from_secs(3));
    }
}
