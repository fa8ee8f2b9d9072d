//! Forwarding to upstreams over pooled keep-alive HTTP/1.1 connections.
//!
//! One `hyper_util` client pools connections per upstream authority. Bodies stream both
//! ways (the client's `Incoming` goes straight into the upstream request). The connect
//! timeout is set on the connector; the response timeout covers the wait for the response
//! head only, so long downloads are not cut off.

use std::time::Duration;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::respond::Failure;

/// The pooled upstream client.
#[derive(Clone, Debug)]
pub struct Upstreams {
    client: Client<HttpConnector, Incoming>,
}

/// Why forwarding failed, as a bounded metric label plus the response to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    Connect,
    Timeout,
    Protocol,
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
        mut req: Request<Incoming>,
        response_timeout: Duration,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let mut parts = base.clone().into_parts();
        parts.path_and_query = path.parse().ok();
        *req.uri_mut() = Uri::from_parts(parts).map_err(|_| UpstreamError::Protocol)?;
        *req.version_mut() = http::Version::HTTP_11;
        match tokio::time::timeout(response_timeout, self.client.request(req)).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) if e.is_connect() => Err(UpstreamError::Connect),
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
        }
    }

    pub fn failure(self) -> Failure {
        match self {
            Self::Timeout => Failure::GatewayTimeout,
            Self::Connect | Self::Protocol => Failure::BadGateway,
        }
    }
}
