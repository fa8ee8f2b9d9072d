//! The public side: accept loop, per-request flow, header rewriting, forwarding and the
//! responses geogate makes itself.
//!
//! `server` accepts and runs connections (hyper, or `h1`, geogate's own HTTP/1.1 path,
//! with `drain` telling both to finish at shutdown); `handler` decides each request under one
//! snapshot; `authority` decides its one host; `headers` rewrites; `routing` picks the
//! upstream; `forward` sends (pooling HTTP/1.1 connections, `h2pool` sharing HTTP/2 ones,
//! `connect` opening them, with TLS for an https:// upstream); `respond` builds every
//! synthetic response.

pub mod authority;
pub mod connect;
pub mod drain;
pub mod forward;
pub mod h1;
mod h2pool;
pub mod handler;
pub mod headers;
pub mod respond;
pub mod routing;
pub mod send_guard;
pub mod server;
pub mod sniff;

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

/// What every request handler shares.
#[derive(Debug)]
pub struct ProxyContext {
    /// The snapshot serving requests; swapped whole by the reloader.
    pub current: Arc<ArcSwap<Snapshot>>,
    pub metrics: Metrics,
    pub upstreams: forward::Upstreams,
    /// Idle upstream connections of the HTTP/1.1 fast path.
    h1_pool: h1::StreamPool,
}

/// Reasons a request is refused before policy, besides path and host refusals.
const REQUEST_REJECTIONS: [&str; 4] = ["smuggling_cl_te", "smuggling_te", "smuggling_cl", "bad_request_body"];

/// Connections refused by `server`: an untrusted PROXY-protocol peer, no protocol preface in
/// time, a client that stopped taking its responses (a bad PROXY header counts under its
/// `ProxyProtocolError::kind`).
const CONNECTION_REJECTIONS: [&str; 3] = [UNTRUSTED_PROXY_PEER, PREFACE_TIMEOUT, SLOW_READER];
pub(crate) const UNTRUSTED_PROXY_PEER: &str = "proxy_protocol_untrusted";
pub(crate) const PREFACE_TIMEOUT: &str = "preface_timeout";
pub(crate) const SLOW_READER: &str = "slow_reader";

/// Every `action` of `geogate_request_duration_seconds` (`handler` sets them; `error` when none).
const ACTIONS: [&str; 7] = ["allow", "tag", "block", "unresolved_allow", "unresolved_block", "bad_request", "error"];

// === impl ProxyContext ===

impl ProxyContext {
    /// The shared state, with every refusal series and every per-action latency series present
    /// at 0 from the first scrape, so dashboards and alerts see a zero rather than no data.
    /// (The series a configuration names are created as each snapshot is installed.)
    pub fn new(current: Arc<ArcSwap<Snapshot>>, metrics: Metrics, upstreams: forward::Upstreams) -> Self {
        let reasons = REQUEST_REJECTIONS
            .into_iter()
            .chain(CONNECTION_REJECTIONS)
            .chain(crate::proxy_protocol::ProxyProtocolError::KINDS)
            .chain(crate::policy::PathRefusal::ALL.map(|r| r.as_str()))
            .chain(authority::HostError::ALL.map(|e| e.as_str()));
        for reason in reasons {
            crate::metrics::zero(&metrics.rejected, &[reason]);
        }
        for action in ACTIONS {
            crate::metrics::zero(&metrics.request_duration, &[action]);
        }
        for failure in crate::tls::HandshakeFailure::ALL {
            metrics.tls_handshake_failures.with_label_values(&[failure.as_str()]);
        }
        Self { current, metrics, upstreams, h1_pool: h1::StreamPool::default() }
    }
}
