//! The public side: accept loop, per-request flow, header rewriting, forwarding and the
//! responses geogate makes itself.
//!
//! `server` accepts and runs connections; `handler` decides each request under one
//! snapshot; `authority` decides its one host; `headers` rewrites; `routing` picks the
//! upstream; `forward` sends; `respond` builds every synthetic response.

pub mod authority;
pub mod forward;
pub mod handler;
pub mod headers;
pub mod respond;
pub mod routing;
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
}
