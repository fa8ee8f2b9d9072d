//! `FileConfig -> Config`: every value validated, every error collected, none fatal until the end.
//!
//! Each helper returns `Option<T>`: `None` means an error was recorded, and the caller carries on
//! with a placeholder so later sections are still checked.
//!
//! This module holds the [`Checker`], its error recording and the value checks every section
//! shares (names, addresses, URLs, durations, countries, CIDRs, patterns, paths); each section
//! of the file is checked in a child module of its own: `listeners` (`[server]`,
//! `[[listener]]`, `[admin]`), `upstreams` (`[[upstream]]`, `[[route]]`), `sources`
//! (`[[source]]`), `maxmind` (a source's `maxmind = {...}`), `policy` (`[policy]`,
//! `[[rule]]`) and `runtime` (`[limits]`, `[reload]`, `[access_log]`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::num::{NonZeroU16, NonZeroUsize};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use http::{HeaderName, Method, StatusCode, Uri};
use ipnet::IpNet;

use super::defaults::*;
use super::duration::{self, parse_duration};
use super::error::{ConfigError, ConfigErrors, Position};
use super::file::*;
use super::model::*;
use crate::geo::{CountryCode, GeoRecord, MAX_LISTS};

mod listeners;
mod maxmind;
mod policy;
mod runtime;
mod sources;
mod upstreams;

/// The largest number of `dry_run` rules (the policy records them in a 64-bit set).
pub const MAX_DRY_RUN_RULES: usize = 64;

/// Largest `html_file` read into memory.
const MAX_HTML_FILE: u64 = 1 << 20;

/// Headers geogate itself owns or that would break proxying if used as tag headers.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "content-type",
    "cookie",
    "set-cookie",
    "authorization",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
];

pub(super) struct Checker<'a> {
    text: &'a str,
    file: Option<PathBuf>,
    /// Relative paths resolve against this (the config file's directory).
    base: Option<PathBuf>,
    errors: Vec<ConfigError>,
}

/// Parsed `[[source]]` data needed by later sections.
struct SourceNames {
    all: Vec<String>,
    lists: Vec<String>,
    /// mmdb and range-file sources: the ones a rule's `view` can name.
    databases: Vec<String>,
}

// === impl Checker ===

impl<'a> Checker<'a> {
    pub(super) fn new(text: &'a str, origin: Option<&Path>) -> Self {
        let base = origin.map(|p| match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        });
        Self { text, file: origin.map(Path::to_path_buf), base, errors: Vec::new() }
    }

    pub(super) fn check(mut self, f: FileConfig) -> Result<Config, ConfigErrors> {
        let server = self.server(f.server.unwrap_or_default());
        let listeners = self.listeners(&f.listener);
        let admin = self.admin(f.admin.unwrap_or_default(), &listeners);
        let (upstreams, upstream_names) = self.upstreams(&f.upstream);
        let routes = self.routes(&f.route, &upstream_names);
        let default_upstream = match &f.default_upstream {
            Some(name) => self.lookup_name("default_upstream", name, &upstream_names, "[[upstream]]").unwrap_or(0),
            None => 0,
        };
        let (sources, names) = self.sources(&f.source);
        let policy = self.policy(f.policy.unwrap_or_default(), &f.rule, &names, &listeners);
        let limits = self.limits(f.limits.unwrap_or_default());
        let reload = self.reload(f.reload.unwrap_or_default());
        let access_log = self.access_log(f.access_log.unwrap_or_default());

        let config = Config {
            origin: self.file.clone(),
            server,
            listeners,
            admin,
            upstreams,
            routes,
            default_upstream,
            sources,
            policy,
            limits,
            reload,
            access_log,
        };
        match ConfigErrors::from_vec(self.errors) {
            Some(errors) => Err(errors),
            None => Ok(config),
        }
    }

    // --- error recording ---

    fn err(&mut self, key: &str, span: Option<Range<usize>>, message: String, hint: &str) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            position: span.map(|s| Position::of(self.text, s.start)),
            key: key.to_owned(),
            message,
            hint: (!hint.is_empty()).then(|| hint.to_owned()),
        });
    }

    fn at<T>(&mut self, key: &str, v: &S<T>, message: String, hint: &str) {
        self.err(key, Some(v.span()), message, hint);
    }

    fn required<'v, T>(&mut self, key: &str, v: &'v Option<S<T>>, table: Range<usize>, what: &str) -> Option<&'v S<T>> {
        if v.is_none() {
            self.err(key, Some(table), format!("missing `{}`", leaf(key)), what);
        }
        v.as_ref()
    }

    // --- value checkers ---

    fn name(&mut self, key: &str, v: &S<String>, seen: &mut HashSet<String>, kind: &str) -> String {
        let s = v.get_ref();
        let valid =
            !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid {
            self.at(
                key,
                v,
                format!("invalid name `{s}`"),
                "use 1 to 64 letters, digits, `-`, `_` or `.`; names appear in headers and metrics",
            );
        } else if !seen.insert(s.clone()) {
            self.at(key, v, format!("duplicate {kind} name `{s}`"), "every name must be unique");
        }
        s.clone()
    }

    fn lookup_name(&mut self, key: &str, v: &S<String>, names: &[String], kind: &str) -> Option<usize> {
        let found = names.iter().position(|n| n == v.get_ref());
        if found.is_none() {
            let known =
                if names.is_empty() { "none are defined".to_owned() } else { format!("defined: {}", names.join(", ")) };
            self.at(key, v, format!("no {kind} named `{}`", v.get_ref()), &known);
        }
        found
    }

    fn socket_addr(&mut self, key: &str, v: &S<String>) -> Option<SocketAddr> {
        match SocketAddr::from_str(v.get_ref()) {
            Ok(a) => Some(a),
            Err(_) => {
                self.at(
                    key,
                    v,
                    format!("`{}` is not an IP address and port", v.get_ref()),
                    r#"write e.g. "0.0.0.0:8080" or "[::]:8080"; host names are not resolved"#,
                );
                None
            }
        }
    }

    /// An `http://` URL. With `origin_only`, nothing but scheme, host and port (an upstream).
    /// An `http://` URL (also `https://` when `https` is allowed).
    fn http_url(&mut self, key: &str, v: &S<String>, origin_only: bool, https: bool) -> Option<Uri> {
        let s = v.get_ref();
        let uri = match Uri::from_str(s) {
            Ok(u) => u,
            Err(e) => {
                self.at(key, v, format!("`{s}` is not a URL: {e}"), r#"write e.g. "http://127.0.0.1:3000""#);
                return None;
            }
        };
        if uri.scheme_str() != Some("http") && !(https && uri.scheme_str() == Some("https")) {
            let hint = if https {
                r#"write e.g. "http://127.0.0.1:3000" or "https://app.internal:8443""#
            } else if uri.scheme_str() == Some("https") {
                "geogate fetches sources over plain HTTP; terminate TLS elsewhere"
            } else {
                r#"write e.g. "http://127.0.0.1:3000""#
            };
            self.at(key, v, format!("`{s}` is not an http:// URL"), hint);
            return None;
        }
        let Some(authority) = uri.authority() else {
            self.at(key, v, format!("`{s}` has no host"), r#"write e.g. "http://127.0.0.1:3000""#);
            return None;
        };
        if authority.as_str().contains('@') {
            self.at(key, v, format!("`{s}` carries credentials"), "remove the user:password@ part");
            return None;
        }
        if origin_only {
            let path_ok = matches!(uri.path(), "" | "/") && uri.query().is_none();
            if !path_ok {
                self.at(
                    key,
                    v,
                    format!("`{s}` has a path or query"),
                    "an upstream is scheme://host:port only; geogate forwards the request's own path",
                );
                return None;
            }
        }
        Some(uri)
    }

    fn duration(&mut self, key: &str, v: &Option<S<RawDuration>>, default: Duration, allow_zero: bool) -> Duration {
        let Some(v) = v else { return default };
        let text = match v.get_ref() {
            RawDuration::Text(t) => t.clone(),
            RawDuration::Number(n) => {
                self.at(key, v, format!("duration `{n}` is a bare number"), &duration::hint(n));
                return default;
            }
        };
        match parse_duration(&text) {
            Ok(d) if d.is_zero() && !allow_zero => {
                self.at(key, v, "must be greater than zero".into(), r#"e.g. "10s""#);
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.at(key, v, format!("invalid duration: {e}"), &duration::hint(&text));
                default
            }
        }
    }

    fn int(&mut self, key: &str, v: &Option<S<i64>>, default: u64, min: u64, max: u64) -> u64 {
        let Some(v) = v else { return default };
        let n = *v.get_ref();
        match u64::try_from(n) {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                self.at(key, v, format!("{n} is out of range"), &format!("use a whole number from {min} to {max}"));
                default
            }
        }
    }

    /// A number in `range`; outside it, an error saying `{value} is not {what}` with `hint`.
    fn fraction(
        &mut self,
        key: &str,
        v: &Option<S<f64>>,
        default: f64,
        range: std::ops::RangeInclusive<f64>,
        (what, hint): (&str, &str),
    ) -> f64 {
        let Some(v) = v else { return default };
        let x = *v.get_ref();
        if range.contains(&x) {
            x
        } else {
            self.at(key, v, format!("{x} is not {what}"), hint);
            default
        }
    }

    fn nonzero(&mut self, key: &str, v: &Option<S<i64>>, default: NonZeroUsize, min: u64) -> NonZeroUsize {
        let n = self.int(key, v, default.get() as u64, min.max(1), u32::MAX as u64);
        usize::try_from(n).ok().and_then(NonZeroUsize::new).unwrap_or(default)
    }

    fn country(&mut self, key: &str, v: &S<String>) -> Option<CountryCode> {
        let c = CountryCode::parse(v.get_ref());
        if c.is_none() {
            self.at(
                key,
                v,
                format!("`{}` is not a country code", v.get_ref()),
                r#"use an ISO 3166-1 alpha-2 code such as "RU" or "BY""#,
            );
        }
        c
    }

    fn subdivision(&mut self, key: &str, v: &S<String>) -> Option<String> {
        let s = v.get_ref();
        if let Some((cc, name)) = s.split_once(':') {
            return match (CountryCode::parse(cc), name.trim()) {
                (Some(cc), name) if !name.is_empty() => Some(format!("{cc}:{name}")),
                _ => {
                    self.at(
                        key,
                        v,
                        format!("`{s}` is not a subdivision name"),
                        r#"write a database's own region name under its country, e.g. "RU:Crimea""#,
                    );
                    None
                }
            };
        }
        let ok = match s.split_once('-') {
            Some((cc, sub)) => {
                CountryCode::parse(cc).is_some()
                    && (1..=3).contains(&sub.len())
                    && sub.bytes().all(|b| b.is_ascii_alphanumeric())
            }
            None => false,
        };
        if !ok {
            self.at(
                key,
                v,
                format!("`{s}` is not a subdivision code"),
                r#"use an ISO 3166-2 code such as "UA-43" (country, dash, 1 to 3 letters or digits) or a region name such as "RU:Crimea""#,
            );
            return None;
        }
        Some(s.to_ascii_uppercase())
    }

    /// A network; a bare address means just that address (/32 or /128).
    fn cidr(&mut self, key: &str, v: &S<String>) -> Option<IpNet> {
        let s = v.get_ref().trim();
        let net = match IpNet::from_str(s) {
            Ok(n) => n,
            Err(_) => match std::net::IpAddr::from_str(s) {
                Ok(ip) => IpNet::from(ip),
                Err(_) => {
                    self.at(
                        key,
                        v,
                        format!("`{s}` is not a CIDR network"),
                        r#"write e.g. "10.0.0.0/8", "2001:db8::/32" or a single address"#,
                    );
                    return None;
                }
            },
        };
        if net.trunc() != net {
            self.at(key, v, format!("`{s}` has host bits set"), &format!("did you mean `{}`?", net.trunc()));
            return None;
        }
        Some(net)
    }

    fn header_name(&mut self, key: &str, v: &S<String>) -> Option<HeaderName> {
        match HeaderName::from_str(v.get_ref()) {
            Ok(h) => Some(h),
            Err(_) => {
                self.at(
                    key,
                    v,
                    format!("`{}` is not a valid header name", v.get_ref()),
                    r#"use letters, digits and `-`, e.g. "X-Geo-Country""#,
                );
                None
            }
        }
    }

    fn method(&mut self, key: &str, v: &S<String>) -> Option<Method> {
        let s = v.get_ref();
        let token = !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_');
        if !token {
            let hint = format!("methods are upper-case tokens, e.g. \"{}\"", s.to_ascii_uppercase());
            self.at(key, v, format!("`{s}` is not an HTTP method"), &hint);
            return None;
        }
        Method::from_bytes(s.as_bytes()).ok()
    }

    fn status(&mut self, key: &str, v: &S<i64>, range: Range<u16>, hint: &str) -> Option<StatusCode> {
        let n = *v.get_ref();
        let code = u16::try_from(n).ok().filter(|c| range.contains(c)).and_then(|c| StatusCode::from_u16(c).ok());
        if code.is_none() {
            self.at(key, v, format!("{n} is not allowed here"), hint);
        }
        code
    }

    /// `example.com` or `*.example.com`, stored lower-case without a trailing dot.
    fn host_pattern(&mut self, key: &str, v: &S<String>) -> Option<String> {
        let s = v.get_ref().trim_end_matches('.').to_ascii_lowercase();
        let body = s.strip_prefix("*.").unwrap_or(&s);
        let ok = !body.is_empty() && body.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
            || (body.starts_with('[') && body.ends_with(']') && !s.starts_with('*'));
        if !ok {
            let hint = if s.contains(':') && !body.starts_with('[') {
                "hosts match without the port; remove `:port`"
            } else {
                r#"write an exact host ("console.example.com") or a suffix ("*.example.com")"#
            };
            self.at(key, v, format!("`{}` is not a host pattern", v.get_ref()), hint);
            return None;
        }
        Some(s)
    }

    /// A path prefix, or a glob when it contains `*`.
    fn path_pattern(&mut self, key: &str, v: &S<String>) -> Option<String> {
        let s = v.get_ref();
        let ok = s.starts_with('/')
            && !s.bytes().any(|b| b == b'?' || b == b'#' || b.is_ascii_whitespace() || b.is_ascii_control());
        if !ok {
            self.at(
                key,
                v,
                format!("`{s}` is not a path pattern"),
                r#"start with `/`, no query or fragment, e.g. "/signup" or "/api/*/accounts""#,
            );
            return None;
        }
        Some(s.clone())
    }

    fn file_path(&mut self, key: &str, v: &S<String>) -> Option<PathBuf> {
        let s = v.get_ref();
        if s.is_empty() {
            self.at(key, v, "empty path".into(), "relative paths resolve against the config file's directory");
            return None;
        }
        Some(self.resolve(Path::new(s)))
    }

    fn resolve(&self, p: &Path) -> PathBuf {
        match &self.base {
            Some(base) if p.is_relative() => base.join(p),
            _ => p.to_path_buf(),
        }
    }

    fn one_of<T: Clone>(&mut self, key: &str, v: &S<String>, choices: &[(&str, T)]) -> Option<T> {
        let found = choices.iter().find(|(n, _)| *n == v.get_ref()).map(|(_, t)| t.clone());
        if found.is_none() {
            let names: Vec<String> = choices.iter().map(|(n, _)| format!("\"{n}\"")).collect();
            self.at(key, v, format!("unknown value `{}`", v.get_ref()), &format!("use one of {}", names.join(", ")));
        }
        found
    }

    // --- sections ---
}

/// The last component of a key path (`name` of `rule[2].name`).
fn leaf(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}
