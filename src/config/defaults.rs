//! Built-in defaults: one place for every value a file may leave out.
//!
//! `check` starts from these, and `config::defaults()` assembles them into a whole `Config`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::{NonZeroU16, NonZeroUsize};
use std::time::Duration;

use http::{HeaderName, StatusCode};

use super::model::*;

/// Default JSON body of a block response.
pub const DEFAULT_JSON_BODY: &str =
    r#"{"error":"unavailable_for_legal_reasons","message":"This service is not available in your region."}"#;

/// `grpc-status` of a blocked gRPC call: 7, PERMISSION_DENIED.
pub const DEFAULT_GRPC_STATUS: u8 = 7;

/// `grpc-message` of a blocked gRPC call.
pub const DEFAULT_GRPC_MESSAGE: &str = "This service is not available in your region.";

/// Default HTML body of a block response: small, self-contained, readable on a phone.
pub const DEFAULT_HTML_BODY: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Not available in your region</title>
<style>
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;background:#f6f8fa}
main{max-width:32rem;margin:15vh auto;padding:2rem;background:#fff;border:1px solid #d0d7de;border-radius:8px}
h1{font-size:1.4rem;margin:0 0 .5rem}
p{margin:.5rem 0;color:#57606a}
</style>
</head>
<body>
<main>
<h1>Not available in your region</h1>
<p>This service is not available in your region.</p>
<p>If you believe this is a mistake, please contact support.</p>
</main>
</body>
</html>
"#;

pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8080);
pub const DEFAULT_ADMIN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9901);
pub const DEFAULT_UPSTREAM: &str = "http://127.0.0.1:3000";
/// The shipped database, relative to the working directory (the repository or image root).
pub const DEFAULT_DB: &str = "geoip/geo-whois-asn-country.mmdb";

/// The header that carries the client address geogate decided to the upstream.
pub const DEFAULT_CLIENT_IP_HEADER: &str = "x-geo-client-ip";

/// Headers that name a client address. geogate removes them from requests, or rewrites them
/// to the address it decided, unless a listener's `pass_client_headers` names them: an
/// application reading any of them must never see an address the client chose.
pub const CLIENT_ADDRESS_HEADERS: [&str; 9] = [
    "x-forwarded-for",
    "forwarded",
    "x-real-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "x-original-forwarded-for",
];

pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(300);
pub const DEFAULT_REMOTE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_BYTES: u64 = 200_000_000;

/// MaxMind's download service (`maxmind.url`); the paths below it are MaxMind's permalinks.
pub const DEFAULT_MAXMIND_URL: &str = "https://download.maxmind.com";
/// A MaxMind source's poll: each poll is one free HEAD request; GeoLite2 is published twice a
/// week and GeoIP2 at most daily, so twice a day picks up a release within 12 hours.
pub const DEFAULT_MAXMIND_POLL_INTERVAL: Duration = Duration::from_secs(12 * 3600);
/// A whole archive (GeoLite2-City is ~35 MB) must arrive within this, not a list's 10 s.
pub const DEFAULT_MAXMIND_TIMEOUT: Duration = Duration::from_secs(300);
/// Archive and checksum GETs per source per rolling 24 hours. GeoLite accounts may make 30
/// downloads a day (paid accounts 2,000), counted per account: 6 is three updates a day (each a
/// checksum and an archive), and three editions on one account stay at 18 of the 30.
pub const DEFAULT_MAXMIND_MAX_DOWNLOADS_PER_DAY: u64 = 6;

/// hyper refuses (panics on) an HTTP/1 read buffer below 8 KiB.
pub const MIN_HEADER_BYTES: usize = 8192;

fn nz(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

// === impl ServerConfig ===

impl Default for ServerConfig {
    fn default() -> Self {
        Self { worker_threads: None, shutdown_grace: Duration::from_secs(30), http1: Http1Engine::Geogate }
    }
}

// === impl ListenerConfig ===

impl ListenerConfig {
    /// A listener with every setting at its default: client IP from the TCP peer, no default
    /// host, `X-Geo-Client-IP` to the upstream, encoded delimiters refused.
    pub fn new(name: &str, address: SocketAddr) -> Self {
        Self {
            name: name.to_owned(),
            address,
            client_ip: ClientIpConfig::default(),
            default_host: None,
            client_headers: ClientHeaders::default(),
            encoded_delimiters: EncodedDelimiters::default(),
            tls: None,
        }
    }
}

// === impl ClientHeaders ===

impl Default for ClientHeaders {
    fn default() -> Self {
        Self { upstream: Some(HeaderName::from_static(DEFAULT_CLIENT_IP_HEADER)), pass: Vec::new(), https: false }
    }
}

// === impl ClientIpConfig ===

impl Default for ClientIpConfig {
    fn default() -> Self {
        Self { source: ClientIpSource::Peer, trusted: Vec::new(), on_unresolved: OnUnresolved::Block }
    }
}

// === impl AdminConfig ===

impl Default for AdminConfig {
    fn default() -> Self {
        Self { address: Some(DEFAULT_ADMIN), reload_token: None }
    }
}

// === impl UpstreamConfig ===

impl UpstreamConfig {
    /// An HTTP/1.1 upstream at `url`; an `https://` one verified against the built-in roots.
    pub fn new(name: std::sync::Arc<str>, url: http::Uri) -> Self {
        let tls = (url.scheme_str() == Some("https")).then(UpstreamTlsConfig::default);
        Self { name, url, protocol: UpstreamProtocol::Http1, tls }
    }
}

// === impl TagHeaders ===

impl Default for TagHeaders {
    fn default() -> Self {
        Self {
            country: HeaderName::from_static("x-geo-country"),
            subdivision: HeaderName::from_static("x-geo-subdivision"),
            restricted: HeaderName::from_static("x-geo-restricted"),
            rule: HeaderName::from_static("x-geo-rule"),
            asn: HeaderName::from_static("x-geo-asn"),
        }
    }
}

// === impl BlockResponse ===

impl Default for BlockResponse {
    fn default() -> Self {
        Self {
            status: StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
            json_body: DEFAULT_JSON_BODY.to_owned(),
            html_body: DEFAULT_HTML_BODY.to_owned(),
            redirect: None,
            redirect_status: StatusCode::FOUND,
            grpc_status: DEFAULT_GRPC_STATUS,
            grpc_message: DEFAULT_GRPC_MESSAGE.to_owned(),
        }
    }
}

// === impl ActionConfig ===

impl ActionConfig {
    /// `tag` on a rule, with no `tag = [...]`, sets all four headers.
    pub fn tag_all() -> Self {
        Self::Tag(vec![TagKind::Country, TagKind::Subdivision, TagKind::Restricted, TagKind::Rule])
    }

    /// `default = "tag"`, with no `tag = [...]`, sets country and subdivision.
    pub fn tag_default() -> Self {
        Self::Tag(vec![TagKind::Country, TagKind::Subdivision])
    }
}

// === impl PolicyConfig ===

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            default_action: ActionConfig::Allow,
            tag_headers: TagHeaders::default(),
            block: BlockResponse::default(),
        }
    }
}

// === impl Limits ===

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: nz(16 * 1024),
            max_headers: nz(100),
            max_connections: nz(10_000),
            upstream_connect_timeout: Duration::from_secs(5),
            upstream_response_timeout: Duration::from_secs(30),
            proxy_protocol_timeout: Duration::from_secs(5),
            max_h2_streams: NonZeroU16::new(100).unwrap_or(NonZeroU16::MIN),
            send_timeout: Duration::from_secs(10),
            min_send_rate: 1024,
            send_buffer_bytes: 128 * 1024,
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

// === impl ReloadConfig ===

impl Default for ReloadConfig {
    fn default() -> Self {
        Self {
            watch: true,
            debounce: Duration::from_millis(200),
            check_interval: None,
            max_network_drop_percent: Some(20.0),
            min_networks: 0,
            on_no_data: OnNoData::Refuse,
            compile_cpu_share: 0.25,
        }
    }
}

impl ReloadConfig {
    /// How long a paced compile works between two rests. Shorter than a proxied request takes
    /// under load (about 600 µs at the soak's median), so that no request waits out a whole
    /// burst of compile (docs/performance.md, "A reload paced in 100 µs steps").
    pub const COMPILE_QUANTUM: Duration = Duration::from_micros(100);

    /// The pace of a reload's compile under [`ReloadConfig::compile_cpu_share`] (`None`: flat out).
    pub fn compile_pace(&self) -> Option<crate::pace::Pace> {
        let share = self.compile_cpu_share;
        (share < 1.0).then(|| crate::pace::Pace {
            work: Self::COMPILE_QUANTUM,
            rest: Self::COMPILE_QUANTUM.mul_f64((1.0 - share) / share.max(0.01)),
        })
    }
}

// === impl AccessLogConfig ===

impl Default for AccessLogConfig {
    fn default() -> Self {
        Self { enabled: true, sample: 1.0 }
    }
}
