//! Configuration: `geogate.toml` in, a checked [`Config`] out, or every error at once.
//!
//! ```text
//! geogate.toml ──toml+serde──▶ FileConfig ──check──▶ Config ──snapshot::compile──▶ Snapshot
//!   (text)        (file.rs:      (raw strings,    (check.rs:     (model.rs: parsed,
//!                  syntax, types, spans kept)      every value     non-zero, names
//!                  unknown keys)                   validated)      resolved to indices)
//! ```
//!
//! Stage one (serde) stops at its first error, as serde must: a syntax error, a value of the
//! wrong type, or an unknown key (every table has `deny_unknown_fields`). Everything after that is
//! read as plain strings and numbers with their spans, so stage two reports *every* semantic
//! error together. Each [`ConfigError`] prints as `file:line:col: key: message (hint)`.
//!
//! Relative paths in a file resolve against the file's directory; with no file (built-in
//! defaults, `parse(text, None)`) they are left relative to the working directory.
//!
//! # Reference
//! Every key with its default. Durations are strings: one whole number and one unit,
//! `ms`, `s`, `m` or `h` (`"500ms"`, `"10s"`, `"5m"`, `"1h"`); bare numbers, fractions and
//! compounds (`"1h30m"`) are refused. Names (listeners, upstreams, sources, rules) are 1–64
//! characters of `A-Z a-z 0-9 - _ .`, unique within their kind.
//!
//! ```toml
//! # Top-level keys must come before the first [table].
//! default_upstream = "console"      # upstream used when no [[route]] matches; default: the first
//!
//! [server]
//! worker_threads = 2                # 1 to 1024; default: one per CPU
//! shutdown_grace = "30s"            # in-flight requests get this long after SIGTERM
//!
//! [[listener]]                      # at least one
//! name = "public"                   # required
//! address = "0.0.0.0:8080"          # required; IP:port, IPv6 as "[::]:8080"
//! # client_ip: where the client address comes from. Default { source = "peer" }.
//! #   source = "peer" | "x-forwarded-for" | "forwarded" | "header" | "proxy-protocol"
//! #   header = "CF-Connecting-IP"   # required with, and only with, source = "header"
//! #   trusted = ["10.0.0.0/8"]      # CIDRs or single addresses whose word is believed;
//! #                                 # required (non-empty) for every source but "peer",
//! #                                 # refused with "peer"
//! #   on_unresolved = "block"       # "block" (default) | "use-peer" | "allow"
//! client_ip = { source = "x-forwarded-for", trusted = ["10.0.0.0/8"], on_unresolved = "block" }
//!
//! [admin]
//! enabled = true                    # false: no admin listener
//! address = "127.0.0.1:9901"        # "" or absent: this default
//! reload_token = "s3cret"           # bearer token for POST /-/reload; default: none
//!
//! [[upstream]]                      # at least one
//! name = "console"                  # required
//! url = "http://127.0.0.1:3000"     # required; http:// only, no path (or just "/"), no query
//!
//! [[upstream]]
//! name = "api"
//! url = "http://127.0.0.1:3001"
//!
//! [[route]]                         # first match wins (plain prefix of the raw path); default none
//! host = "api.example.com"          # exact host or "*.example.com"; no port; default any
//! path_prefix = "/api/"             # default any
//! upstream = "api"                  # required; an upstream name
//!
//! [[source]]                        # at least one; later sources override earlier ones
//! name = "geoip"                    # required
//! type = "mmdb"                     # required: "mmdb" | "list"
//! path = "geoip/geo-whois-asn-country.mmdb"   # exactly one of path / url (/ entries for lists)
//! schema = "auto"                   # mmdb only: "auto" | "geoip2" | "flat" | "custom"
//! # fields = { country = "location.cc", registered_country = "…", represented_country = "…",
//! #            subdivision = "subdivisions.-1.iso_code", anonymous_proxy = "…",
//! #            satellite_provider = "…" }   # required with, and only with, schema = "custom"
//! # Remote (instead of path):
//! # url = "http://mirror.internal/geo.mmdb"   # http:// only
//! # cache = "cache/geo.mmdb"        # required with url: last good copy, used offline
//! # poll_interval = "5m"            # default "5m"
//! # timeout = "10s"                 # default "10s"
//! # max_bytes = 200000000           # default 200000000
//!
//! [[source]]
//! name = "partners"                 # the name rules use in `lists = [...]`
//! type = "list"                     # list id = position among the list sources (at most 64)
//! path = "lists/partners.txt"       # one CIDR per line, `#` comments; or:
//! # entries = ["203.0.113.0/24"]    # inline; no host bits; a bare address is a /32 or /128
//! set = { country = "DE" }          # optional: geo data for these networks, overriding earlier
//!                                   # sources (country, registered_country, represented_country,
//!                                   # subdivision, anonymous_proxy, satellite_provider)
//!
//! [policy]
//! default = "allow"                 # when no rule matches: "allow" | "block" | "tag"
//! # tag = ["country"]              # only with default = "tag"; default country + subdivision
//!
//! [policy.tag_headers]              # headers set by `tag`; distinct, and not hop-by-hop, Host,
//! country = "X-Geo-Country"         # Forwarded or X-Forwarded-* (may also be written inline:
//! subdivision = "X-Geo-Subdivision" # tag_headers = { country = "…", … } under [policy])
//! restricted = "X-Geo-Restricted"
//! rule = "X-Geo-Rule"
//!
//! [policy.block]                    # the response of every block rule that does not override it
//! status = 451                      # 4xx or 5xx; default 451
//! json_body = '{"error":"unavailable_for_legal_reasons","message":"This service is not available in your region."}'
//! html_body = "<!doctype html>…"    # default: a small page; or html_file = "blocked.html" (≤ 1 MiB)
//! # redirect = "https://example.com/unavailable"   # browsers are redirected instead; default none
//! # redirect_status = 302           # 3xx, only with redirect; default 302
//!
//! [[rule]]                          # in order; the first enforced match decides
//! name = "block-signup"             # required; sent in the rule tag header, used in metrics
//! action = "block"                  # required: "allow" | "block" | "tag"
//! dry_run = false                   # record the would-be verdict, keep evaluating (≤ 64 rules)
//! # Geo criteria: the client matches if ANY of them matches (no geo criteria: everyone).
//! countries = ["RU", "BY"]          # the address's country (not registered/represented)
//! subdivisions = ["UA-43"]          # ISO 3166-2, stored upper-case
//! registered_countries = ["RU"]     # the network's registration country
//! lists = ["partners"]              # names of type = "list" sources
//! anonymous_proxy = false
//! satellite_provider = false
//! unknown = false                   # no geo data, or the client IP could not be resolved
//! # Request criteria: each one given must match.
//! hosts = ["console.example.com", "*.example.com"]  # case-insensitive, port ignored
//! paths = ["/signup", "/api/*/accounts"]            # segment prefix, or a glob with `*`
//! methods = ["POST"]                # upper-case; matched case-insensitively
//! # tag = ["country", "rule"]      # action = "tag" only; default all four of them
//! # status / json_body / html_body / html_file / redirect / redirect_status: action = "block"
//! # only; override [policy.block] for this rule.
//!
//! [limits]                          # durations here must be greater than zero
//! header_read_timeout = "10s"
//! idle_timeout = "60s"
//! max_header_bytes = 16384          # at least 8192 (hyper's minimum buffer)
//! max_headers = 100
//! max_connections = 10000
//! upstream_connect_timeout = "5s"
//! upstream_response_timeout = "30s"
//! proxy_protocol_timeout = "5s"
//! max_h2_streams = 100              # 1 to 65535
//!
//! [reload]
//! watch = true                      # watch the config, lists and databases
//! debounce = "200ms"
//! # check_interval = "1h"          # re-read sources periodically; default never
//! max_network_drop_percent = 20.0   # refuse a database that lost more networks; 100 = off
//! min_networks = 0                  # refuse a database with fewer networks
//! on_no_data = "refuse"             # at start-up with no data: "refuse" | "fail-open" | "fail-closed"
//! compile_cpu_share = 0.25          # a reload's compile works 100 µs, then rests 300 µs; 1.0 = no rests
//!
//! [access_log]
//! enabled = true
//! sample = 1.0                      # fraction of allowed requests logged; blocks always are
//! ```
//!
//! Rules are evaluated by [`crate::policy`]; its module doc states the matching semantics.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use http::Uri;

mod check;
mod defaults;
mod duration;
mod error;
mod file;
mod model;

pub use check::MAX_DRY_RUN_RULES;
pub use defaults::{
    CLIENT_ADDRESS_HEADERS, DEFAULT_ADMIN, DEFAULT_CLIENT_IP_HEADER, DEFAULT_DB, DEFAULT_HTML_BODY, DEFAULT_JSON_BODY,
    DEFAULT_LISTEN, DEFAULT_UPSTREAM, MIN_HEADER_BYTES,
};
pub use duration::{parse_duration, DurationError};
pub use error::{ConfigError, ConfigErrors, Position};
pub use model::*;

/// Reads and checks a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::one(ConfigError {
            file: Some(path.to_path_buf()),
            ..ConfigError::new("", format!("cannot read the configuration: {e}"))
        })
    })?;
    parse(&text, Some(path))
}

/// Checks configuration text. `origin` is the file it came from: used in messages and as the
/// base for relative paths.
pub fn parse(text: &str, origin: Option<&Path>) -> Result<Config, ConfigErrors> {
    let raw: file::FileConfig = toml::from_str(text)
        .map_err(|e| ConfigErrors::one(ConfigError::from_toml(text, origin.map(Path::to_path_buf), &e)))?;
    check::Checker::new(text, origin).check(raw)
}

/// The built-in configuration: listen on `0.0.0.0:8080`, forward to `http://127.0.0.1:3000`,
/// admin on `127.0.0.1:9901`, the shipped database, client IP from the TCP peer, no rules, and
/// every request tagged with country and subdivision.
pub fn defaults() -> Config {
    Config {
        origin: None,
        server: ServerConfig::default(),
        listeners: vec![ListenerConfig::new("public", DEFAULT_LISTEN)],
        admin: AdminConfig::default(),
        upstreams: vec![UpstreamConfig::new("default".into(), Uri::from_static(DEFAULT_UPSTREAM))],
        routes: Vec::new(),
        default_upstream: 0,
        sources: vec![SourceConfig {
            name: "geoip".to_owned(),
            kind: SourceKind::Mmdb { location: Location::Path(PathBuf::from(DEFAULT_DB)), schema: MmdbSchema::Auto },
            region_names: RegionNames::Named,
        }],
        policy: PolicyConfig { default_action: ActionConfig::tag_default(), ..PolicyConfig::default() },
        limits: Limits::default(),
        reload: ReloadConfig::default(),
        access_log: AccessLogConfig::default(),
    }
}

/// Parses a `--list NAME=FILE` argument.
pub fn parse_list_arg(arg: &str) -> Result<(String, PathBuf), ConfigError> {
    match arg.split_once('=') {
        Some((name, file)) if valid_name(name) && !file.is_empty() => Ok((name.to_owned(), PathBuf::from(file))),
        _ => Err(ConfigError::new("--list", format!("`{arg}` is not NAME=FILE"))
            .with_hint("e.g. --list partners=lists/partners.txt; names use A-Z a-z 0-9 - _ .")),
    }
}

/// Parses a `--listen ADDR` argument.
pub fn parse_listen_arg(arg: &str) -> Result<SocketAddr, ConfigError> {
    SocketAddr::from_str(arg).map_err(|_| {
        ConfigError::new("--listen", format!("`{arg}` is not an IP address and port"))
            .with_hint("e.g. 0.0.0.0:8080 or [::]:8080")
    })
}

/// Parses an `--upstream URL` argument (same rules as `upstream.url`).
pub fn parse_upstream_arg(arg: &str) -> Result<Uri, ConfigError> {
    let bad = |why: &str| {
        ConfigError::new("--upstream", format!("`{arg}` {why}"))
            .with_hint("e.g. http://127.0.0.1:3000 (http only, no path)")
    };
    let uri = Uri::from_str(arg).map_err(|_| bad("is not a URL"))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(bad("is not an http://host:port URL"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(bad("has a path or query"));
    }
    Ok(uri)
}

/// A database named on the command line (`--db FILE`), in the format its content shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbArg {
    pub path: PathBuf,
    pub format: DbFormat,
}

/// What a `--db` file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbFormat {
    Mmdb,
    /// A range file (CSV/TSV, maybe gzip).
    Ranges,
}

/// A source name from a file name: its stem (before `.mmdb`, `.csv`, `.csv.gz`...), other
/// characters than `A-Z a-z 0-9 - _ .` replaced by `_`, at most 64 characters.
fn source_name_of(path: &Path) -> String {
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let mut stem = file.as_str();
    for ext in [".gz", ".mmdb", ".csv", ".tsv", ".txt"] {
        stem = stem.strip_suffix(ext).unwrap_or(stem);
    }
    let name: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).take(60).collect();
    if name.is_empty() {
        "db".to_owned()
    } else {
        name
    }
}

/// `name`, or `name-2`, `name-3`... for the first that `taken` refuses.
fn unique_name(name: &str, taken: impl Fn(&str) -> bool) -> String {
    if !taken(name) {
        return name.to_owned();
    }
    (2..).map(|i| format!("{name}-{i}")).find(|n| !taken(n)).unwrap_or_else(|| name.to_owned())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

// === impl Config ===

impl Config {
    /// `--listen ADDR`: serve on this one address. The first listener's name and client-IP
    /// settings are kept; other listeners are dropped.
    pub fn with_listen(mut self, address: SocketAddr) -> Self {
        let mut first = self.listeners.into_iter().next().unwrap_or_else(|| ListenerConfig::new("public", address));
        first.address = address;
        self.listeners = vec![first];
        self
    }

    /// `--upstream URL`: send every request here. Other upstreams and all routes are dropped.
    pub fn with_upstream(mut self, url: Uri) -> Self {
        let name = self.upstreams.get(self.default_upstream).map_or_else(|| "default".into(), |u| u.name.clone());
        self.upstreams = vec![UpstreamConfig::new(name, url)];
        self.routes.clear();
        self.default_upstream = 0;
        self
    }

    /// `--db FILE ... --list NAME=FILE ...`: the built-in defaults with these sources instead
    /// of the shipped database (databases first, then lists, so lists override).
    pub fn from_sources(dbs: &[DbArg], lists: &[(String, PathBuf)]) -> Result<Self, ConfigErrors> {
        let mut errors = Vec::new();
        if lists.len() > crate::geo::MAX_LISTS {
            errors.push(ConfigError::new("--list", format!("more than {} lists", crate::geo::MAX_LISTS)));
        }
        let mut sources = Vec::new();
        for db in dbs {
            let location = Location::Path(db.path.clone());
            let kind = match db.format {
                DbFormat::Mmdb => SourceKind::Mmdb { location, schema: MmdbSchema::Auto },
                DbFormat::Ranges => SourceKind::Ranges { location, layout: RangeLayout::Auto },
            };
            let name = unique_name(&source_name_of(&db.path), |n| sources.iter().any(|s: &SourceConfig| s.name == n));
            // `lookup --db`: no policy to narrow the names, so every one is shown.
            sources.push(SourceConfig { name, kind, region_names: RegionNames::All });
        }
        for (name, path) in lists {
            if !valid_name(name) {
                errors.push(
                    ConfigError::new("--list", format!("`{name}` is not a valid list name"))
                        .with_hint("use 1 to 64 of A-Z a-z 0-9 - _ ."),
                );
            } else if sources.iter().any(|s| s.name == *name) {
                errors.push(ConfigError::new("--list", format!("duplicate list name `{name}`")));
            }
            sources.push(SourceConfig {
                name: name.clone(),
                kind: SourceKind::List { location: ListLocation::File(Location::Path(path.clone())), set: None },
                region_names: RegionNames::Named,
            });
        }
        if sources.is_empty() {
            errors.push(
                ConfigError::new("--db", "no database or list given").with_hint("pass --db FILE or --list NAME=FILE"),
            );
        }
        if let Some(errors) = ConfigErrors::from_vec(errors) {
            return Err(errors);
        }
        Ok(Self { sources, ..defaults() })
    }

    /// Names of the list sources in list-id order (bit `i` of a `ListSet` is `list_names()[i]`).
    pub fn list_names(&self) -> Vec<String> {
        self.sources.iter().filter(|s| matches!(s.kind, SourceKind::List { .. })).map(|s| s.name.clone()).collect()
    }
}

#[cfg(test)]
mod tests;
