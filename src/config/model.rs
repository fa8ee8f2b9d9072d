//! The checked configuration: what `FileConfig` becomes once every value has been validated.
//!
//! Everything here is already correct by construction (parsed addresses, durations, non-zero
//! limits, names that resolve), so the modules above `config` never re-validate.

use std::net::SocketAddr;
use std::num::{NonZeroU16, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, Method, StatusCode, Uri};
use ipnet::IpNet;

use crate::geo::{CountryCode, GeoRecord};

/// A whole, checked geogate configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Where the file was read from (`None` for built-in defaults / command-line only).
    pub origin: Option<PathBuf>,
    pub server: ServerConfig,
    pub listeners: Vec<ListenerConfig>,
    pub admin: AdminConfig,
    pub upstreams: Vec<UpstreamConfig>,
    pub routes: Vec<RouteConfig>,
    /// Index into `upstreams` used when no route matches.
    pub default_upstream: usize,
    /// Databases and lists, in precedence order: a later source overrides an earlier one.
    pub sources: Vec<SourceConfig>,
    pub policy: PolicyConfig,
    pub limits: Limits,
    pub reload: ReloadConfig,
    pub access_log: AccessLogConfig,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    /// Tokio worker threads; `None` = one per CPU.
    pub worker_threads: Option<NonZeroUsize>,
    /// How long SIGTERM/SIGINT waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// Which code serves HTTP/1.1 requests.
    pub http1: Http1Engine,
}

/// The code that serves HTTP/1.1 requests on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Http1Engine {
    /// geogate's own path for plain requests to HTTP/1.1 upstreams, hyper for the rest.
    Geogate,
    /// hyper for every request (the reference, and a way back).
    Hyper,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ListenerConfig {
    pub name: String,
    pub address: SocketAddr,
    pub client_ip: ClientIpConfig,
    /// Host judged and forwarded for requests that carry none (HTTP/1.0 without `Host`, h2
    /// without `:authority`): `host[:port]`, lower-case, no trailing dot. `None`: answer 400.
    pub default_host: Option<String>,
    /// What the upstream is told about the client address (and the scheme it arrived by).
    pub client_headers: ClientHeaders,
    /// Whether paths holding an encoded `?` or `#` are refused.
    pub encoded_delimiters: EncodedDelimiters,
    /// TLS termination; `None` = cleartext.
    pub tls: Option<TlsConfig>,
}

/// A TLS listener's certificates (loaded and checked when a snapshot compiles).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// In order; chosen by SNI against each certificate's names, the first as the default.
    pub certificates: Vec<CertPair>,
}

/// One PEM certificate chain and its private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The client-address headers the upstream receives (see `proxy::headers`).
#[derive(Clone, Debug, PartialEq)]
pub struct ClientHeaders {
    /// Carries the client address geogate decided (`X-Geo-Client-IP`); `None` = not sent.
    pub upstream: Option<HeaderName>,
    /// Client-address headers passed as the client sent them instead of removed/rewritten.
    pub pass: Vec<HeaderName>,
    /// The listener terminates TLS: `X-Forwarded-Proto` and `Forwarded: proto=` say `https`.
    pub https: bool,
}

/// How a listener determines the client IP.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientIpConfig {
    pub source: ClientIpSource,
    /// Peers (and forwarding hops) whose word is believed. Empty = nobody.
    pub trusted: Vec<IpNet>,
    pub on_unresolved: OnUnresolved,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientIpSource {
    /// The TCP peer address.
    Peer,
    /// `X-Forwarded-For`, walked right to left past trusted hops.
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=`, walked right to left past trusted hops.
    Forwarded,
    /// A single-address header such as `CF-Connecting-IP` or `X-Real-IP`.
    Header(HeaderName),
    /// PROXY protocol v1/v2 header, required on the listener, accepted from trusted peers only.
    ProxyProtocol,
}

/// What to do when no client IP can be determined (malformed header, `unknown`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnUnresolved {
    /// Block the request (default: the safe choice).
    Block,
    /// Decide as if the TCP peer were the client.
    UsePeer,
    /// Let the request through untagged, counted as unresolved.
    Allow,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AdminConfig {
    /// `None` = no admin listener.
    pub address: Option<SocketAddr>,
    /// Bearer token required for `POST /-/reload`, if set.
    pub reload_token: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct UpstreamConfig {
    pub name: std::sync::Arc<str>,
    /// `http://host:port` or `https://host:port` (no path); the authority is what geogate
    /// connects to, and for `https` the name its certificate must carry (and the SNI sent).
    pub url: Uri,
    /// The HTTP version spoken to it.
    pub protocol: UpstreamProtocol,
    /// TLS to the upstream: `Some` exactly when `url` is `https://`.
    pub tls: Option<UpstreamTlsConfig>,
}

/// `protocol` of an `[[upstream]]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 on pooled keep-alive connections (default).
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge over cleartext (`h2c`), one shared connection.
    H2c,
    /// HTTP/2 over TLS (ALPN `h2` only), one shared connection.
    H2,
    /// Over TLS, ALPN offers `h2` and `http/1.1` and the upstream chooses. (`auto` on a
    /// cleartext upstream is checked into [`UpstreamProtocol::Http1`].)
    Auto,
}

/// How geogate verifies an HTTPS upstream and proves itself to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpstreamTlsConfig {
    /// A PEM bundle of the CAs trusted for this upstream, replacing the built-in roots.
    pub ca: Option<PathBuf>,
    /// A client certificate and key presented to the upstream (mutual TLS).
    pub client_cert: Option<CertPair>,
}

/// Chooses an upstream by host and path prefix; first match wins.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteConfig {
    /// Exact host (lower-case, no port) or `*.suffix`; `None` = any host.
    pub host: Option<String>,
    /// Path prefix; `None` = any path.
    pub path_prefix: Option<String>,
    /// Index into `Config::upstreams`.
    pub upstream: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SourceConfig {
    pub name: String,
    pub kind: SourceKind,
    /// Which of a database's own region names (`RU:Crimea`) the compile keeps.
    pub region_names: RegionNames,
}

/// `region_names` of a database source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RegionNames {
    /// The names some rule's `subdivisions` mention (default): the table stays as small as
    /// the country table where no rule asks for regions.
    #[default]
    Named,
    /// Every name (larger table; for lookups, tags and logs of every region).
    All,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SourceKind {
    /// A MaxMind DB file.
    Mmdb { location: Location, schema: MmdbSchema },
    /// A named CIDR list; `set` optionally overrides the geo data of its addresses.
    List { location: ListLocation, set: Option<GeoRecord> },
    /// A range file (CSV/TSV, optionally gzip), a database like an mmdb.
    Ranges { location: Location, layout: RangeLayout },
}

/// How the columns of a range file are laid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeLayout {
    /// Detected from the first data line (see [`crate::source::ranges`]).
    Auto,
    /// One of the published layouts.
    Known(KnownRangeLayout),
    /// Declared: the column of each position; `delimiter` `None` = detected (tab or comma).
    Columns { delimiter: Option<u8>, columns: Vec<RangeColumn> },
}

/// The published range-file layouts geogate knows by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KnownRangeLayout {
    /// ip-location-db country: `start,end,country_code`.
    Country,
    /// ip-location-db ASN: `start,end,asn,"organisation"`.
    Asn,
    /// ip-location-db city: `start,end,country_code,state1,state2,city,postcode,latitude,longitude,timezone`.
    City,
    /// iptoasn: `start<TAB>end<TAB>asn<TAB>country<TAB>description`.
    Iptoasn,
}

// === impl RangeColumn ===

impl RangeColumn {
    /// A column by its name in `columns = [...]`: `start`, `end`, `country`, `subdivision`,
    /// `asn`, `as_org`, and `-` or `skip` for one to ignore.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "start" => Self::Start,
            "end" => Self::End,
            "country" => Self::Country,
            "subdivision" => Self::Subdivision,
            "asn" => Self::Asn,
            "as_org" => Self::AsOrg,
            "-" | "skip" => Self::Skip,
            _ => return None,
        })
    }
}

/// What one column of a range file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeColumn {
    /// The first address of the range.
    Start,
    /// The last address of the range (inclusive).
    End,
    /// An ISO 3166-1 alpha-2 code.
    Country,
    /// An ISO 3166-2 code (`UA-43`, or `43` under the country) or a region name.
    Subdivision,
    /// An AS number (`13238` or `AS13238`); 0 means none.
    Asn,
    /// The organisation operating the AS.
    AsOrg,
    /// Ignored.
    Skip,
}

/// Where a file comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Location {
    Path(PathBuf),
    /// Polled over HTTP; the last good copy is kept in `cache` so a restart works offline.
    Remote(RemoteSource),
}

#[derive(Clone, Debug, PartialEq)]
pub enum ListLocation {
    File(Location),
    /// Entries written in the config itself.
    Inline(Vec<String>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct RemoteSource {
    /// The file polled; for a MaxMind source, the edition's `tar.gz` permalink.
    pub url: Uri,
    pub cache: PathBuf,
    pub poll_interval: Duration,
    pub timeout: Duration,
    pub max_bytes: u64,
    /// Set for a database from MaxMind's download service (`maxmind = {...}`); boxed, since
    /// most remote sources are not MaxMind's.
    pub maxmind: Option<Box<MaxMindSource>>,
}

/// How to download one MaxMind edition. Holds where the licence key is, never the key: it is
/// read at each download (so a rotated secret applies without a restart) and lives only in
/// the request's `Authorization` header.
#[derive(Clone, Debug, PartialEq)]
pub struct MaxMindSource {
    /// `GeoLite2-City`, `GeoLite2-ASN`, `GeoIP2-Country`, ...
    pub edition: String,
    pub account_id: u64,
    pub license_key: LicenseKeyFrom,
    /// The published SHA-256 of the archive (`suffix=tar.gz.sha256`).
    pub checksum_url: Uri,
    /// Archive and checksum GETs allowed per rolling 24 hours (persisted beside the cache).
    pub max_downloads_per_day: u32,
}

/// Where a MaxMind licence key is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LicenseKeyFrom {
    /// A file holding the key (surrounding whitespace ignored), e.g. a mounted secret.
    File(PathBuf),
    /// An environment variable of the geogate process.
    Env(String),
}

/// Which fields of an mmdb record mean what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MmdbSchema {
    /// GeoIP2/GeoLite2/DB-IP fields or a flat `country_code`, whichever the records carry.
    Auto,
    GeoIp2,
    Flat,
    /// GeoLite2-ASN / GeoIP2-ISP / DB-IP ASN: `autonomous_system_number` and
    /// `autonomous_system_organization`.
    Asn,
    /// Dotted paths, e.g. `location.cc` or `subdivisions.-1.iso_code`.
    Custom(FieldPaths),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldPaths {
    pub country: Option<String>,
    pub registered_country: Option<String>,
    pub represented_country: Option<String>,
    pub subdivision: Option<String>,
    pub anonymous_proxy: Option<String>,
    pub satellite_provider: Option<String>,
    pub asn: Option<String>,
    pub as_org: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PolicyConfig {
    /// Ordered rules; the first enforced match decides.
    pub rules: Vec<RuleConfig>,
    /// What happens when no rule matches.
    pub default_action: ActionConfig,
    pub tag_headers: TagHeaders,
    /// The block response used by rules that do not override it.
    pub block: BlockResponse,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RuleConfig {
    pub name: String,
    pub action: ActionConfig,
    /// Evaluated, logged and counted as a would-be verdict, never enforced.
    pub dry_run: bool,
    pub matcher: RuleMatch,
    /// Overrides `PolicyConfig::block` for this rule (block rules only).
    pub block: Option<BlockResponse>,
}

/// A rule matches when the client matches ANY of the geo criteria (or there are none) AND the
/// request matches EVERY request criterion that is present.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleMatch {
    pub countries: Vec<CountryCode>,
    /// Full ISO 3166-2 codes, upper-case (`UA-43`), or `CC:Name` for a database's own region
    /// names (`RU:Crimea`; compared case- and accent-insensitively).
    pub subdivisions: Vec<String>,
    /// AS numbers.
    pub asns: Vec<u32>,
    /// AS organisation globs (`*` for any run of characters), lower-case.
    pub as_orgs: Vec<String>,
    /// Whose answer the geo criteria test.
    pub view: GeoView,
    pub registered_countries: Vec<CountryCode>,
    /// List names (resolved against the list sources at compile time).
    pub lists: Vec<String>,
    pub anonymous_proxy: bool,
    pub satellite_provider: bool,
    /// Addresses with no geo data at all.
    pub unknown: bool,
    /// Exact hosts (lower-case) or `*.suffix`.
    pub hosts: Vec<String>,
    /// Path patterns: a prefix, or a glob when it contains `*`.
    pub paths: Vec<String>,
    /// How `paths` read the request path; `None` = by action (allow: strict, else framework).
    pub path_match: Option<PathMatch>,
    pub methods: Vec<Method>,
}

/// Whose answer a rule's geo criteria test (lists are the same in every view).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum GeoView {
    /// The layered answer: every source field by field, later sources over earlier ones.
    #[default]
    Layered,
    /// Any database source's own answer (block where any database places the client there).
    Any,
    /// Every database source that has data for the address (and at least one).
    All,
    /// The named database source's own answer.
    Source(String),
}

/// Whether a listener lets paths holding an encoded `?` or `#` through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EncodedDelimiters {
    /// Refuse them with 400 (default): stacks that decode before they split read a shorter path.
    #[default]
    Refuse,
    /// Let them through; block rules also match the path cut at them.
    Allow,
}

/// How a rule's path patterns read the request path (see `policy`'s module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathMatch {
    /// Every reading a common framework may route by, case-insensitively.
    Framework,
    /// The strict reading only, case-sensitively.
    Strict,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionConfig {
    Allow,
    Block,
    /// Tag with the listed headers (a subset of the configured tag headers).
    Tag(Vec<TagKind>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TagKind {
    Country,
    Subdivision,
    Restricted,
    Rule,
    Asn,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TagHeaders {
    pub country: HeaderName,
    pub subdivision: HeaderName,
    pub restricted: HeaderName,
    pub rule: HeaderName,
    pub asn: HeaderName,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BlockResponse {
    pub status: StatusCode,
    /// Body for clients that accept `application/json` (and the default for non-browsers).
    pub json_body: String,
    /// Body for clients that accept `text/html`.
    pub html_body: String,
    /// If set, browsers (Accept: text/html) are redirected here with `redirect_status` instead.
    pub redirect: Option<Uri>,
    /// The 3xx status used with `redirect` (default 302).
    pub redirect_status: StatusCode,
    /// The `grpc-status` of the answer to a gRPC request (`content-type: application/grpc*`),
    /// 1 to 16; default 7, PERMISSION_DENIED.
    pub grpc_status: u8,
    /// The `grpc-message` of that answer (sent percent-encoded).
    pub grpc_message: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: NonZeroUsize,
    pub max_headers: NonZeroUsize,
    pub max_connections: NonZeroUsize,
    pub upstream_connect_timeout: Duration,
    pub upstream_response_timeout: Duration,
    pub proxy_protocol_timeout: Duration,
    pub max_h2_streams: NonZeroU16,
    /// Once a write to a client blocks, the client must take `min_send_rate` bytes per second
    /// of it, averaged over this long, or its connection is closed (zero: never).
    pub send_timeout: Duration,
    /// Bytes per second a client whose writes block must take (see `send_timeout`).
    pub min_send_rate: u64,
    /// The kernel send buffer of each client connection (`SO_SNDBUF`); 0 leaves it to the
    /// kernel's autotuning.
    pub send_buffer_bytes: u64,
    /// A TLS handshake (after any PROXY header) must finish within this.
    pub tls_handshake_timeout: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ReloadConfig {
    /// Watch the config, lists and databases for changes.
    pub watch: bool,
    pub debounce: Duration,
    /// Re-read databases this often even without a change event (`None` = never).
    pub check_interval: Option<Duration>,
    /// Refuse a database whose network count fell by more than this percentage.
    pub max_network_drop_percent: Option<f64>,
    /// Refuse a database with fewer networks than this.
    pub min_networks: usize,
    pub on_no_data: OnNoData,
    /// The share of wall time a reload's compile works, 0.01 to 1.0: it works
    /// [`ReloadConfig::COMPILE_QUANTUM`] at a time and rests in between (1.0: no rests).
    pub compile_cpu_share: f64,
}

/// What to do at start-up when no source can be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnNoData {
    /// Refuse to start (default).
    Refuse,
    /// Serve with an empty table: every address is unknown, rules decide.
    FailOpen,
    /// Serve, blocking every request until data loads.
    FailClosed,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AccessLogConfig {
    pub enabled: bool,
    /// Fraction of allowed requests logged, 0.0..=1.0; blocks are always logged.
    pub sample: f64,
}
