//! Forwarding to upstreams over pooled keep-alive HTTP/1.1 connections.
//!
//! One `hyper_util` client pools connections per upstream authority. Bodies stream both
//! ways (the client's `Incoming` goes straight into the upstream request). The connect
//! timeout is set on the connector; the response timeout covers the wait for the response
//! head only, so long downloads are not cut off.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::respond::Failure;

/// The pooled upstream client.
#[derive(Clone, Debug)]
pub struct Upstreams {
    client: Client<HttpConnector, ClientBody>,
}

/// The client's request body on its way upstream; remembers whether reading it failed, so a
/// broken client body is answered 400 and not blamed on the upstream.
#[derive(Debug)]
pub struct ClientBody {
    inner: Incoming,
    failed: Arc<AtomicBool>,
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
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &r {
            self.failed.store(true, Ordering::Release);
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

impl Upstreams {
    pub fn new(connect_timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Self { client }
    }

    /// Sends `req` to `base` (scheme + authority), keeping the request's path and query.
    pub async fn send(
        &self,
        base: &Uri,
        req: Request<Incoming>,
        response_timeout: Duration,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let failed = Arc::new(AtomicBool::new(false));
        let mut req = req.map(|inner| ClientBody { inner, failed: failed.clone() });
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let mut parts = base.clone().into_parts();
        parts.path_and_query = path.parse().ok();
        *req.uri_mut() = Uri::from_parts(parts).map_err(|_| UpstreamError::Protocol)?;
        *req.version_mut() = http::Version::HTTP_11;
        match tokio::time::timeout(response_timeout, self.client.request(req)).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) if e.is_connect() => Err(UpstreamError::Connect),
            Ok(Err(_)) if failed.load(Ordering::Acquire) => Err(UpstreamError::ClientBody),
            Ok(Err(_)) => Err(UpstreamError::Protocol),
        }
    }
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
