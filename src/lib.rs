//! geogate: a geo-blocking reverse proxy.
//!
//! For each request geogate works out the real client IP from trusted hops only, looks it up in
//! an immutable in-memory prefix table compiled from GeoIP databases and CIDR lists, and by
//! per-route rules blocks the request, tags it with headers for the upstream, or lets it through.
//!
//! # Layout
//! Dependencies point down this list; a module may use only those below it.
//!
//! | module | responsibility |
//! |---|---|
//! | [`app`] | start-up wiring: first snapshot, listeners, admin, reloader, shutdown drain |
//! | [`proxy`] | accept loop, per-request flow, forwarding (HTTP/1.1 pooled, HTTP/2 shared, cleartext or TLS), synthetic responses |
//! | [`admin`] | admin listener: metrics, health, reload, explain |
//! | [`reload`] | reload triggers, compile off the request path, compare, store |
//! | [`cli`] | the `lookup`, `check` and `explain` commands (text and JSON output) |
//! | [`diff`] | `geogate diff`: where a candidate snapshot changes verdicts, over the whole space |
//! | [`snapshot`] | `Snapshot` and `compile(&Config) -> Snapshot` |
//! | [`policy`] | rules to verdict; pure |
//! | [`tls`] | TLS listeners: certificate pairs checked and loaded, rustls config, SNI, handshake; the TLS client of each HTTPS upstream |
//! | [`proxy_protocol`] | PROXY protocol v1/v2 header reader; pure parser plus a bounded async read |
//! | [`client_ip`] | peer + forwarding headers + trusted CIDRs to a canonical client IP; pure |
//! | [`source`] | mmdb, range-file and CIDR-list readers producing `(network, GeoRecord)` data |
//! | [`table`] | the immutable IPv4/IPv6 longest-prefix table; no I/O, no async |
//! | [`host`] | `Host` values: valid forms and the canonical one judged and forwarded; pure |
//! | [`config`] | `geogate.toml -> FileConfig -> Config`, every error with key and position |
//! | [`metrics`] | the process's own Prometheus registry and typed handles |
//! | [`alloc`] | the allocator tuning a compile needs (freed memory returned at once) |
//! | [`pace`] | pacing of background work: a reload's compile rests between short bursts of work |
//! | [`geo`] | plain data types: country codes, geo records, list sets, answers |

pub mod admin;
pub mod alloc;
pub mod app;
pub mod cli;
pub mod client_ip;
pub mod config;
pub mod diff;
pub mod geo;
pub mod host;
pub mod metrics;
pub mod pace;
pub mod policy;
pub mod proxy;
pub mod proxy_protocol;
pub mod reload;
pub mod snapshot;
pub mod source;
pub mod table;
pub mod tls;
