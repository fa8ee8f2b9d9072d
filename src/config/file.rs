//! The raw file shape: exactly what serde reads from `geogate.toml`, before any checking.
//!
//! Every table refuses unknown keys (a typo must never silently fall back to a default). Leaf
//! values are kept as strings or plain numbers wrapped in [`toml::Spanned`], so that `check`
//! can validate them all, collect every error at once, and point at the exact line and column.
//! Values that are required are still `Option` here: a missing one becomes a collected error
//! with a position instead of serde's first-error-only "missing field".

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// A value with its byte range in the file.
pub(super) type S<T> = Spanned<T>;

/// A list of spanned strings (countries, hosts, CIDRs, ...).
pub(super) type Strings = Vec<S<String>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub default_upstream: Option<S<String>>,
    pub server: Option<FileServer>,
    #[serde(default)]
    pub listener: Vec<S<FileListener>>,
    pub admin: Option<FileAdmin>,
    #[serde(default)]
    pub upstream: Vec<S<FileUpstream>>,
    #[serde(default)]
    pub route: Vec<S<FileRoute>>,
    #[serde(default)]
    pub source: Vec<S<FileSource>>,
    pub policy: Option<FilePolicy>,
    #[serde(default)]
    pub rule: Vec<S<FileRule>>,
    pub limits: Option<FileLimits>,
    pub reload: Option<FileReload>,
    pub access_log: Option<FileAccessLog>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileServer {
    pub worker_threads: Option<S<i64>>,
    pub shutdown_grace: Option<S<RawDuration>>,
    pub http1: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileListener {
    pub name: Option<S<String>>,
    pub address: Option<S<String>>,
    pub client_ip: Option<S<FileClientIp>>,
    pub default_host: Option<S<String>>,
    pub client_ip_header: Option<S<String>>,
    pub pass_client_headers: Option<Strings>,
    pub encoded_delimiters: Option<S<String>>,
    pub tls: Option<S<FileTls>>,
}

/// `tls = { cert, key }` or `tls = { certificates = [{ cert, key }, ...] }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTls {
    pub cert: Option<S<String>>,
    pub key: Option<S<String>>,
    pub certificates: Option<S<Vec<S<FileCertPair>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileCertPair {
    pub cert: Option<S<String>>,
    pub key: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileClientIp {
    pub source: Option<S<String>>,
    pub header: Option<S<String>>,
    pub trusted: Option<Strings>,
    pub on_unresolved: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAdmin {
    pub enabled: Option<S<bool>>,
    pub address: Option<S<String>>,
    pub reload_token: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileUpstream {
    pub name: Option<S<String>>,
    pub url: Option<S<String>>,
    pub protocol: Option<S<String>>,
    pub ca: Option<S<String>>,
    pub client_cert: Option<S<String>>,
    pub client_key: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRoute {
    pub host: Option<S<String>>,
    pub path_prefix: Option<S<String>>,
    pub upstream: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSource {
    pub name: Option<S<String>>,
    #[serde(rename = "type")]
    pub kind: Option<S<String>>,
    pub path: Option<S<String>>,
    pub url: Option<S<String>>,
    pub cache: Option<S<String>>,
    pub poll_interval: Option<S<RawDuration>>,
    pub timeout: Option<S<RawDuration>>,
    pub max_bytes: Option<S<i64>>,
    pub schema: Option<S<String>>,
    pub fields: Option<S<FileFields>>,
    pub entries: Option<S<Strings>>,
    pub set: Option<S<FileSet>>,
    pub layout: Option<S<String>>,
    pub region_names: Option<S<String>>,
    pub columns: Option<S<Strings>>,
    pub delimiter: Option<S<String>>,
    pub maxmind: Option<S<FileMaxMind>>,
}

/// `maxmind = { ... }` of a `[[source]]`: a database from MaxMind's download service.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileMaxMind {
    pub edition: Option<S<String>>,
    pub account_id: Option<S<i64>>,
    pub license_key_file: Option<S<String>>,
    pub license_key_env: Option<S<String>>,
    pub url: Option<S<String>>,
    pub max_downloads_per_day: Option<S<i64>>,
}

/// An AS number as written: `13238` or `"AS13238"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum FileAsn {
    Number(i64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileFields {
    pub country: Option<S<String>>,
    pub registered_country: Option<S<String>>,
    pub represented_country: Option<S<String>>,
    pub subdivision: Option<S<String>>,
    pub anonymous_proxy: Option<S<String>>,
    pub satellite_provider: Option<S<String>>,
    pub asn: Option<S<String>>,
    pub as_org: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSet {
    pub country: Option<S<String>>,
    pub registered_country: Option<S<String>>,
    pub represented_country: Option<S<String>>,
    pub subdivision: Option<S<String>>,
    pub anonymous_proxy: Option<bool>,
    pub satellite_provider: Option<bool>,
    pub asn: Option<S<FileAsn>>,
    pub as_org: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FilePolicy {
    pub default: Option<S<String>>,
    pub tag: Option<S<Strings>>,
    pub tag_headers: Option<FileTagHeaders>,
    pub block: Option<FileBlock>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTagHeaders {
    pub country: Option<S<String>>,
    pub subdivision: Option<S<String>>,
    pub restricted: Option<S<String>>,
    pub rule: Option<S<String>>,
    pub asn: Option<S<String>>,
}

/// The block-response keys, shared by `[policy.block]` and each block rule.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileBlock {
    pub status: Option<S<i64>>,
    pub json_body: Option<S<String>>,
    pub html_body: Option<S<String>>,
    pub html_file: Option<S<String>>,
    pub redirect: Option<S<String>>,
    pub redirect_status: Option<S<i64>>,
    pub grpc_status: Option<S<i64>>,
    pub grpc_message: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRule {
    pub name: Option<S<String>>,
    pub action: Option<S<String>>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub countries: Strings,
    #[serde(default)]
    pub subdivisions: Strings,
    #[serde(default)]
    pub asns: Vec<S<FileAsn>>,
    #[serde(default)]
    pub as_orgs: Strings,
    pub view: Option<S<String>>,
    #[serde(default)]
    pub registered_countries: Strings,
    #[serde(default)]
    pub lists: Strings,
    #[serde(default)]
    pub anonymous_proxy: bool,
    #[serde(default)]
    pub satellite_provider: bool,
    #[serde(default)]
    pub unknown: bool,
    #[serde(default)]
    pub hosts: Strings,
    #[serde(default)]
    pub paths: Strings,
    pub path_match: Option<S<String>>,
    #[serde(default)]
    pub methods: Strings,
    pub tag: Option<S<Strings>>,
    // Block overrides, flat on the rule (serde's `flatten` cannot be combined with
    // `deny_unknown_fields`, so they are repeated here and viewed as a `FileBlock` by `check`).
    pub status: Option<S<i64>>,
    pub json_body: Option<S<String>>,
    pub html_body: Option<S<String>>,
    pub html_file: Option<S<String>>,
    pub redirect: Option<S<String>>,
    pub redirect_status: Option<S<i64>>,
    pub grpc_status: Option<S<i64>>,
    pub grpc_message: Option<S<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLimits {
    pub header_read_timeout: Option<S<RawDuration>>,
    pub idle_timeout: Option<S<RawDuration>>,
    pub max_header_bytes: Option<S<i64>>,
    pub max_headers: Option<S<i64>>,
    pub max_connections: Option<S<i64>>,
    pub upstream_connect_timeout: Option<S<RawDuration>>,
    pub upstream_response_timeout: Option<S<RawDuration>>,
    pub proxy_protocol_timeout: Option<S<RawDuration>>,
    pub max_h2_streams: Option<S<i64>>,
    pub send_timeout: Option<S<RawDuration>>,
    pub min_send_rate: Option<S<i64>>,
    pub send_buffer_bytes: Option<S<i64>>,
    pub tls_handshake_timeout: Option<S<RawDuration>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileReload {
    pub watch: Option<bool>,
    pub debounce: Option<S<RawDuration>>,
    pub check_interval: Option<S<RawDuration>>,
    pub max_network_drop_percent: Option<S<f64>>,
    pub min_networks: Option<S<i64>>,
    pub on_no_data: Option<S<String>>,
    pub compile_cpu_share: Option<S<f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAccessLog {
    pub enabled: Option<bool>,
    pub sample: Option<S<f64>>,
}

/// A duration as written. Numbers are accepted by serde only so that `check` can refuse them
/// with a useful hint (`write "10s"`) and a position, rather than a bare type error.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum RawDuration {
    Text(String),
    Number(String),
}

// === impl RawDuration ===

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a duration string such as "500ms", "10s", "5m" or "1h""#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDuration, E> {
                Ok(RawDuration::Text(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawDuration, E> {
                Ok(RawDuration::Number(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawDuration, E> {
                Ok(RawDuration::Number(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawDuration, E> {
                Ok(RawDuration::Number(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}
