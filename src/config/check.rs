//! `FileConfig -> Config`: every value validated, every error collected, none fatal until the end.
//!
//! Each helper returns `Option<T>`: `None` means an error was recorded, and the caller carries on
//! with a placeholder so later sections are still checked.

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
    fn http_url(&mut self, key: &str, v: &S<String>, origin_only: bool) -> Option<Uri> {
        let s = v.get_ref();
        let uri = match Uri::from_str(s) {
            Ok(u) => u,
            Err(e) => {
                self.at(key, v, format!("`{s}` is not a URL: {e}"), r#"write e.g. "http://127.0.0.1:3000""#);
                return None;
            }
        };
        if uri.scheme_str() != Some("http") {
            let hint = if uri.scheme_str() == Some("https") {
                "geogate speaks plain HTTP to its upstreams and sources; terminate TLS elsewhere"
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

    fn server(&mut self, f: FileServer) -> ServerConfig {
        let d = ServerConfig::default();
        let worker_threads = f.worker_threads.as_ref().map(|_| {
            let n = self.int("server.worker_threads", &f.worker_threads, 1, 1, 1024);
            usize::try_from(n).ok().and_then(NonZeroUsize::new).unwrap_or(NonZeroUsize::MIN)
        });
        ServerConfig {
            worker_threads,
            shutdown_grace: self.duration("server.shutdown_grace", &f.shutdown_grace, d.shutdown_grace, true),
        }
    }

    fn listeners(&mut self, file: &[S<FileListener>]) -> Vec<ListenerConfig> {
        if file.is_empty() {
            self.err(
                "listener",
                None,
                "no [[listener]] defined".into(),
                r#"add [[listener]] with name = "public" and address = "0.0.0.0:8080""#,
            );
        }
        let mut names = HashSet::new();
        let mut addrs: Vec<SocketAddr> = Vec::new();
        let mut out = Vec::new();
        for (i, l) in file.iter().enumerate() {
            let key = format!("listener[{i}]");
            let span = l.span();
            let l = l.get_ref();
            let name = match self.required(&format!("{key}.name"), &l.name, span.clone(), r#"e.g. name = "public""#) {
                Some(n) => self.name(&format!("{key}.name"), n, &mut names, "listener"),
                None => String::new(),
            };
            let address = self
                .required(&format!("{key}.address"), &l.address, span.clone(), r#"e.g. address = "0.0.0.0:8080""#)
                .and_then(|a| {
                    let parsed = self.socket_addr(&format!("{key}.address"), a)?;
                    // Port 0 asks the kernel for a free port: two of those never collide.
                    if parsed.port() != 0 && addrs.contains(&parsed) {
                        self.at(
                            &format!("{key}.address"),
                            a,
                            format!("{parsed} is used by another listener"),
                            "every listener needs its own address",
                        );
                    }
                    addrs.push(parsed);
                    Some(parsed)
                })
                .unwrap_or(DEFAULT_LISTEN);
            let client_ip = match &l.client_ip {
                Some(c) => self.client_ip(&format!("{key}.client_ip"), c),
                None => ClientIpConfig::default(),
            };
            let default_host =
                l.default_host.as_ref().and_then(|h| self.default_host(&format!("{key}.default_host"), h));
            let client_headers = self.client_headers(&key, l, &client_ip);
            let encoded_delimiters = match &l.encoded_delimiters {
                None => EncodedDelimiters::Refuse,
                Some(v) => self
                    .one_of(
                        &format!("{key}.encoded_delimiters"),
                        v,
                        &[("refuse", EncodedDelimiters::Refuse), ("allow", EncodedDelimiters::Allow)],
                    )
                    .unwrap_or_default(),
            };
            out.push(ListenerConfig { name, address, client_ip, default_host, client_headers, encoded_delimiters });
        }
        out
    }

    /// `host` or `host:port`, as a `Host` header would carry it; stored lower-case without a
    /// trailing dot, the form the proxy judges and forwards.
    fn default_host(&mut self, key: &str, v: &S<String>) -> Option<String> {
        match crate::host::canonical(v.get_ref().as_bytes()) {
            Some(h) => Some(h.header().to_owned()),
            None => {
                self.at(
                    key,
                    v,
                    format!("`{}` is not a host name or address with an optional port", v.get_ref()),
                    r#"e.g. default_host = "console.example.com""#,
                );
                None
            }
        }
    }

    /// `client_ip_header` and `pass_client_headers` of a listener.
    fn client_headers(&mut self, key: &str, l: &FileListener, client_ip: &ClientIpConfig) -> ClientHeaders {
        let mut out = ClientHeaders::default();
        if let Some(v) = &l.client_ip_header {
            out.upstream =
                if v.get_ref().is_empty() { None } else { self.header_name(&format!("{key}.client_ip_header"), v) };
        }
        for (j, h) in l.pass_client_headers.iter().flatten().enumerate() {
            let hk = format!("{key}.pass_client_headers[{j}]");
            let Some(name) = self.header_name(&hk, h) else { continue };
            if !CLIENT_ADDRESS_HEADERS.contains(&name.as_str()) {
                self.at(
                    &hk,
                    h,
                    format!("`{name}` is not a client-address header geogate rewrites"),
                    &format!("one of: {}", CLIENT_ADDRESS_HEADERS.join(", ")),
                );
                continue;
            }
            if out.upstream.as_ref() == Some(&name) {
                self.at(
                    &hk,
                    h,
                    format!("`{name}` is the client_ip_header geogate writes itself"),
                    "remove it from pass_client_headers",
                );
                continue;
            }
            if let ClientIpSource::Header(source) = &client_ip.source {
                if *source == name {
                    self.at(
                        &hk,
                        h,
                        format!("`{name}` is this listener's client-IP source: geogate rewrites it to the address it decided"),
                        "remove it from pass_client_headers",
                    );
                    continue;
                }
            }
            out.pass.push(name);
        }
        out
    }

    fn client_ip(&mut self, key: &str, c: &S<FileClientIp>) -> ClientIpConfig {
        let span = c.span();
        let c = c.get_ref();
        #[derive(Clone, PartialEq)]
        enum Kind {
            Peer,
            Xff,
            Forwarded,
            Header,
            Proxy,
        }
        let kind = match &c.source {
            None => Some(Kind::Peer),
            Some(s) if s.get_ref().starts_with("header:") => {
                let name = s.get_ref().trim_start_matches("header:");
                self.at(
                    &format!("{key}.source"),
                    s,
                    format!("`{}` is not a source", s.get_ref()),
                    &format!(r#"write source = "header", header = "{name}""#),
                );
                None
            }
            Some(s) => self.one_of(
                &format!("{key}.source"),
                s,
                &[
                    ("peer", Kind::Peer),
                    ("x-forwarded-for", Kind::Xff),
                    ("forwarded", Kind::Forwarded),
                    ("header", Kind::Header),
                    ("proxy-protocol", Kind::Proxy),
                ],
            ),
        };
        let header_key = format!("{key}.header");
        let header = match (&kind, &c.header) {
            (Some(Kind::Header), None) => {
                self.err(
                    &header_key,
                    Some(span.clone()),
                    "source = \"header\" needs `header`".into(),
                    r#"e.g. header = "CF-Connecting-IP""#,
                );
                None
            }
            (Some(Kind::Header), Some(h)) => {
                let name = self.header_name(&header_key, h);
                if let Some(n) = &name {
                    if n == "x-forwarded-for" || n == "forwarded" {
                        self.at(
                            &header_key,
                            h,
                            format!("`{n}` is a list of hops, not a single address"),
                            &format!(r#"use source = "{n}" instead"#),
                        );
                    }
                }
                name
            }
            (Some(_), Some(h)) => {
                self.at(
                    &header_key,
                    h,
                    "`header` applies only with source = \"header\"".into(),
                    "remove it, or set source = \"header\"",
                );
                None
            }
            _ => None,
        };
        let mut trusted = Vec::new();
        for (j, t) in c.trusted.iter().flatten().enumerate() {
            if let Some(net) = self.cidr(&format!("{key}.trusted[{j}]"), t) {
                trusted.push(net);
            }
        }
        let trusted_given = c.trusted.as_ref().is_some_and(|t| !t.is_empty());
        match &kind {
            Some(Kind::Peer) if trusted_given => {
                self.err(
                    &format!("{key}.trusted"),
                    Some(span.clone()),
                    "`trusted` has no effect with source = \"peer\"".into(),
                    "remove it, or set the source that the trusted peers send",
                );
            }
            Some(k) if *k != Kind::Peer && !trusted_given => {
                self.err(
                    &format!("{key}.trusted"),
                    Some(span.clone()),
                    "`trusted` is empty: trusting nobody means the header is never believed".into(),
                    r#"list the proxies or load balancers in front of geogate, e.g. trusted = ["10.0.0.0/8"]"#,
                );
            }
            _ => {}
        }
        let on_unresolved = match &c.on_unresolved {
            None => OnUnresolved::Block,
            Some(v) => self
                .one_of(
                    &format!("{key}.on_unresolved"),
                    v,
                    &[
                        ("block", OnUnresolved::Block),
                        ("use-peer", OnUnresolved::UsePeer),
                        ("allow", OnUnresolved::Allow),
                    ],
                )
                .unwrap_or(OnUnresolved::Block),
        };
        let source = match kind {
            Some(Kind::Xff) => ClientIpSource::XForwardedFor,
            Some(Kind::Forwarded) => ClientIpSource::Forwarded,
            Some(Kind::Proxy) => ClientIpSource::ProxyProtocol,
            Some(Kind::Header) => ClientIpSource::Header(header.unwrap_or(HeaderName::from_static("x-real-ip"))),
            Some(Kind::Peer) | None => ClientIpSource::Peer,
        };
        ClientIpConfig { source, trusted, on_unresolved }
    }

    fn admin(&mut self, f: FileAdmin, listeners: &[ListenerConfig]) -> AdminConfig {
        let enabled = f.enabled.as_ref().is_none_or(|e| *e.get_ref());
        let address = match &f.address {
            Some(a) if !a.get_ref().is_empty() => {
                let parsed = self.socket_addr("admin.address", a);
                if let Some(p) = parsed {
                    // Port 0 lets the OS pick a free port for each socket: no clash possible.
                    if enabled && p.port() != 0 && listeners.iter().any(|l| l.address == p) {
                        self.at(
                            "admin.address",
                            a,
                            format!("{p} is also a proxy listener"),
                            "give the admin listener its own port",
                        );
                    }
                }
                parsed.unwrap_or(DEFAULT_ADMIN)
            }
            _ => DEFAULT_ADMIN,
        };
        let reload_token = f.reload_token.as_ref().and_then(|t| {
            let s = t.get_ref();
            if s.is_empty() || s.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
                self.at(
                    "admin.reload_token",
                    t,
                    "invalid reload token".into(),
                    "use printable ASCII without spaces, or leave the key out",
                );
                return None;
            }
            Some(s.clone())
        });
        AdminConfig { address: enabled.then_some(address), reload_token }
    }

    fn upstreams(&mut self, file: &[S<FileUpstream>]) -> (Vec<UpstreamConfig>, Vec<String>) {
        if file.is_empty() {
            self.err(
                "upstream",
                None,
                "no [[upstream]] defined".into(),
                r#"add [[upstream]] with name = "app" and url = "http://127.0.0.1:3000""#,
            );
        }
        let mut names = HashSet::new();
        let mut out = Vec::new();
        let mut ordered = Vec::new();
        for (i, u) in file.iter().enumerate() {
            let key = format!("upstream[{i}]");
            let span = u.span();
            let u = u.get_ref();
            let name = match self.required(&format!("{key}.name"), &u.name, span.clone(), r#"e.g. name = "app""#) {
                Some(n) => self.name(&format!("{key}.name"), n, &mut names, "upstream"),
                None => String::new(),
            };
            let url = self
                .required(&format!("{key}.url"), &u.url, span, r#"e.g. url = "http://127.0.0.1:3000""#)
                .and_then(|v| self.http_url(&format!("{key}.url"), v, true))
                .unwrap_or_else(|| Uri::from_static(DEFAULT_UPSTREAM));
            ordered.push(name.clone());
            out.push(UpstreamConfig { name: name.into(), url });
        }
        (out, ordered)
    }

    fn routes(&mut self, file: &[S<FileRoute>], upstreams: &[String]) -> Vec<RouteConfig> {
        let mut out = Vec::new();
        for (i, r) in file.iter().enumerate() {
            let key = format!("route[{i}]");
            let span = r.span();
            let r = r.get_ref();
            let host = r.host.as_ref().and_then(|h| self.host_pattern(&format!("{key}.host"), h));
            let path_prefix = r.path_prefix.as_ref().and_then(|p| self.path_pattern(&format!("{key}.path_prefix"), p));
            if let Some(p) = &r.path_prefix {
                if p.get_ref().contains('*') {
                    self.at(&format!("{key}.path_prefix"), p, "routes match a plain prefix".into(), "remove the `*`");
                }
            }
            let upstream = self
                .required(&format!("{key}.upstream"), &r.upstream, span, r#"e.g. upstream = "api""#)
                .and_then(|u| self.lookup_name(&format!("{key}.upstream"), u, upstreams, "upstream"))
                .unwrap_or(0);
            out.push(RouteConfig { host, path_prefix, upstream });
        }
        out
    }

    fn sources(&mut self, file: &[S<FileSource>]) -> (Vec<SourceConfig>, SourceNames) {
        if file.is_empty() {
            self.err(
                "source",
                None,
                "no [[source]] defined".into(),
                r#"add [[source]] with name = "geoip", type = "mmdb", path = "geoip/geo-whois-asn-country.mmdb""#,
            );
        }
        if file.len() > usize::from(u16::MAX) {
            self.err("source", None, "too many sources".into(), "use at most 65535");
        }
        let mut seen = HashSet::new();
        let mut names = SourceNames { all: Vec::new(), lists: Vec::new(), databases: Vec::new() };
        let mut out = Vec::new();
        for (i, s) in file.iter().enumerate() {
            let key = format!("source[{i}]");
            let span = s.span();
            let s = s.get_ref();
            let k = |leaf: &str| format!("{key}.{leaf}");
            let name = match self.required(&k("name"), &s.name, span.clone(), r#"e.g. name = "geoip""#) {
                Some(n) => self.name(&k("name"), n, &mut seen, "source"),
                None => String::new(),
            };
            #[derive(Clone, Copy, PartialEq)]
            enum T {
                Mmdb,
                List,
                Ranges,
            }
            let kind = match self.required(
                &k("type"),
                &s.kind,
                span.clone(),
                r#"type = "mmdb", type = "ranges" or type = "list""#,
            ) {
                Some(t) => self.one_of(&k("type"), t, &[("mmdb", T::Mmdb), ("list", T::List), ("ranges", T::Ranges)]),
                None => None,
            };
            let is_list = kind.map(|t| t == T::List);
            if kind != Some(T::Ranges) {
                for (leaf, v) in [("layout", &s.layout), ("delimiter", &s.delimiter)] {
                    if let Some(v) = v {
                        self.at(&k(leaf), v, format!("`{leaf}` applies only to type = \"ranges\""), "");
                    }
                }
                if let Some(v) = &s.columns {
                    self.at(&k("columns"), v, "`columns` applies only to type = \"ranges\"".into(), "");
                }
            }
            // Where the data comes from: exactly one of path, url (and, for lists, entries).
            let given: Vec<&str> =
                [("path", s.path.is_some()), ("url", s.url.is_some()), ("entries", s.entries.is_some())]
                    .iter()
                    .filter(|(_, g)| *g)
                    .map(|(n, _)| *n)
                    .collect();
            let choices = if is_list == Some(true) { "`path`, `url` or `entries`" } else { "`path` or `url`" };
            if given.is_empty() && is_list.is_some() {
                self.err(
                    &key,
                    Some(span.clone()),
                    format!("a source needs one of {choices}"),
                    "relative paths resolve against the config file's directory",
                );
            } else if given.len() > 1 {
                self.err(
                    &key,
                    Some(span.clone()),
                    format!("`{}` cannot be combined", given.join("` and `")),
                    &format!("give exactly one of {choices}"),
                );
            }
            let location = self.location(&key, s);
            let kind = match is_list {
                Some(false) if kind == Some(T::Ranges) => {
                    for (leaf, given) in [("entries", s.entries.is_some()), ("set", s.set.is_some())] {
                        if given {
                            self.err(
                                &k(leaf),
                                Some(span.clone()),
                                format!("`{leaf}` applies only to type = \"list\""),
                                "",
                            );
                        }
                    }
                    for (leaf, given) in [("schema", s.schema.is_some()), ("fields", s.fields.is_some())] {
                        if given {
                            self.err(
                                &k(leaf),
                                Some(span.clone()),
                                format!("`{leaf}` applies only to type = \"mmdb\""),
                                "a range file's columns are named by `layout` or `columns`",
                            );
                        }
                    }
                    names.databases.push(name.clone());
                    let layout = self.range_layout(&key, s);
                    SourceKind::Ranges { location: location.unwrap_or_else(|| Location::Path(PathBuf::new())), layout }
                }
                Some(false) => {
                    names.databases.push(name.clone());
                    if let Some(e) = &s.entries {
                        self.at(&k("entries"), e, "`entries` applies only to type = \"list\"".into(), "");
                    }
                    if let Some(e) = &s.set {
                        self.at(&k("set"), e, "`set` applies only to type = \"list\"".into(), "");
                    }
                    let schema = self.schema(&key, s);
                    SourceKind::Mmdb { location: location.unwrap_or_else(|| Location::Path(PathBuf::new())), schema }
                }
                Some(true) => {
                    if let Some(e) = &s.schema {
                        self.at(&k("schema"), e, "`schema` applies only to type = \"mmdb\"".into(), "");
                    }
                    if let Some(e) = &s.fields {
                        self.at(&k("fields"), e, "`fields` applies only to type = \"mmdb\"".into(), "");
                    }
                    let list_location = match &s.entries {
                        Some(entries) => {
                            let mut out = Vec::new();
                            for (j, e) in entries.get_ref().iter().enumerate() {
                                if let Some(net) = self.cidr(&format!("{key}.entries[{j}]"), e) {
                                    out.push(net.to_string());
                                }
                            }
                            ListLocation::Inline(out)
                        }
                        None => ListLocation::File(location.unwrap_or_else(|| Location::Path(PathBuf::new()))),
                    };
                    let set = s.set.as_ref().and_then(|set| self.set(&k("set"), set));
                    if names.lists.len() == MAX_LISTS {
                        self.err(
                            &key,
                            Some(span.clone()),
                            format!("more than {MAX_LISTS} list sources"),
                            "merge lists; each list needs a bit in every table entry",
                        );
                    }
                    names.lists.push(name.clone());
                    SourceKind::List { location: list_location, set }
                }
                None => SourceKind::List { location: ListLocation::Inline(Vec::new()), set: None },
            };
            names.all.push(name.clone());
            let region_names = match &s.region_names {
                None => RegionNames::Named,
                Some(v) if is_list == Some(true) => {
                    self.at(&k("region_names"), v, "`region_names` applies only to databases".into(), "");
                    RegionNames::Named
                }
                Some(v) => self
                    .one_of(&k("region_names"), v, &[("named", RegionNames::Named), ("all", RegionNames::All)])
                    .unwrap_or_default(),
            };
            out.push(SourceConfig { name, kind, region_names });
        }
        (out, names)
    }

    fn location(&mut self, key: &str, s: &FileSource) -> Option<Location> {
        let k = |leaf: &str| format!("{key}.{leaf}");
        if let Some(url) = &s.url {
            let url = self.http_url(&k("url"), url, false);
            let cache = match &s.cache {
                Some(c) => self.file_path(&k("cache"), c),
                None => {
                    if let Some(u) = &s.url {
                        self.at(
                            &k("cache"),
                            u,
                            "a remote source needs `cache`".into(),
                            r#"e.g. cache = "cache/geoip.mmdb"; the last good copy lets a restart work offline"#,
                        );
                    }
                    None
                }
            };
            let poll_interval = self.duration(&k("poll_interval"), &s.poll_interval, DEFAULT_POLL_INTERVAL, false);
            let timeout = self.duration(&k("timeout"), &s.timeout, DEFAULT_REMOTE_TIMEOUT, false);
            let max_bytes = self.int(&k("max_bytes"), &s.max_bytes, DEFAULT_MAX_BYTES, 1, i64::MAX as u64);
            return Some(Location::Remote(RemoteSource {
                url: url?,
                cache: cache?,
                poll_interval,
                timeout,
                max_bytes,
            }));
        }
        let remote_only: [(&str, Option<Range<usize>>); 4] = [
            ("cache", s.cache.as_ref().map(S::span)),
            ("poll_interval", s.poll_interval.as_ref().map(S::span)),
            ("timeout", s.timeout.as_ref().map(S::span)),
            ("max_bytes", s.max_bytes.as_ref().map(S::span)),
        ];
        for (leaf, span) in remote_only {
            if let Some(span) = span {
                self.err(
                    &k(leaf),
                    Some(span),
                    format!("`{leaf}` applies only to a remote source (`url`)"),
                    "remove it, or set `url`",
                );
            }
        }
        let path = s.path.as_ref()?;
        self.file_path(&k("path"), path).map(Location::Path)
    }

    fn schema(&mut self, key: &str, s: &FileSource) -> MmdbSchema {
        #[derive(Clone, PartialEq)]
        enum K {
            Auto,
            GeoIp2,
            Flat,
            Asn,
            Custom,
        }
        let kind = match &s.schema {
            None => K::Auto,
            Some(v) => self
                .one_of(
                    &format!("{key}.schema"),
                    v,
                    &[
                        ("auto", K::Auto),
                        ("geoip2", K::GeoIp2),
                        ("flat", K::Flat),
                        ("asn", K::Asn),
                        ("custom", K::Custom),
                    ],
                )
                .unwrap_or(K::Auto),
        };
        match (&kind, &s.fields) {
            (K::Custom, None) => {
                if let Some(v) = &s.schema {
                    self.at(
                        &format!("{key}.fields"),
                        v,
                        "schema = \"custom\" needs `fields`".into(),
                        r#"e.g. fields = { country = "location.cc" }"#,
                    );
                }
                MmdbSchema::Custom(FieldPaths::default())
            }
            (K::Custom, Some(f)) => {
                let fk = format!("{key}.fields");
                let g = f.get_ref();
                let mut path = |leaf: &str, v: &Option<S<String>>| -> Option<String> {
                    let v = v.as_ref()?;
                    let s = v.get_ref();
                    if s.is_empty() || s.split('.').any(str::is_empty) {
                        self.at(
                            &format!("{fk}.{leaf}"),
                            v,
                            format!("`{s}` is not a field path"),
                            r#"dotted keys, e.g. "country.iso_code" or "subdivisions.-1.iso_code""#,
                        );
                        return None;
                    }
                    Some(s.clone())
                };
                let paths = FieldPaths {
                    country: path("country", &g.country),
                    registered_country: path("registered_country", &g.registered_country),
                    represented_country: path("represented_country", &g.represented_country),
                    subdivision: path("subdivision", &g.subdivision),
                    anonymous_proxy: path("anonymous_proxy", &g.anonymous_proxy),
                    satellite_provider: path("satellite_provider", &g.satellite_provider),
                    asn: path("asn", &g.asn),
                    as_org: path("as_org", &g.as_org),
                };
                if paths == FieldPaths::default() {
                    self.at(&fk, f, "`fields` names no field".into(), r#"e.g. fields = { country = "location.cc" }"#);
                }
                MmdbSchema::Custom(paths)
            }
            (_, Some(f)) => {
                self.at(
                    &format!("{key}.fields"),
                    f,
                    "`fields` applies only with schema = \"custom\"".into(),
                    "remove it, or set schema = \"custom\"",
                );
                MmdbSchema::Auto
            }
            (K::Auto, None) => MmdbSchema::Auto,
            (K::GeoIp2, None) => MmdbSchema::GeoIp2,
            (K::Flat, None) => MmdbSchema::Flat,
            (K::Asn, None) => MmdbSchema::Asn,
        }
    }

    /// A range file's layout: `layout` by name, or `columns` (with an optional `delimiter`).
    fn range_layout(&mut self, key: &str, s: &FileSource) -> RangeLayout {
        let k = |leaf: &str| format!("{key}.{leaf}");
        let delimiter = s.delimiter.as_ref().and_then(|d| match d.get_ref().as_str() {
            "," | "comma" => Some(b','),
            "\t" | "tab" => Some(b'\t'),
            ";" => Some(b';'),
            "|" => Some(b'|'),
            other => {
                self.at(&k("delimiter"), d, format!("`{other}` is not a delimiter"), r#"use ",", "tab", ";" or "|""#);
                None
            }
        });
        match (&s.layout, &s.columns) {
            (Some(l), Some(_)) => {
                self.at(&k("columns"), l, "`layout` and `columns` cannot be combined".into(), "give one of them");
                RangeLayout::Auto
            }
            (Some(l), None) => {
                if let Some(d) = &s.delimiter {
                    self.at(&k("delimiter"), d, "`delimiter` applies only with `columns`".into(), "");
                }
                let known = self.one_of(
                    &k("layout"),
                    l,
                    &[
                        ("auto", None),
                        ("country", Some(KnownRangeLayout::Country)),
                        ("asn", Some(KnownRangeLayout::Asn)),
                        ("city", Some(KnownRangeLayout::City)),
                        ("iptoasn", Some(KnownRangeLayout::Iptoasn)),
                    ],
                );
                match known.flatten() {
                    Some(k) => RangeLayout::Known(k),
                    None => RangeLayout::Auto,
                }
            }
            (None, Some(c)) => {
                let mut columns = Vec::new();
                for (j, name) in c.get_ref().iter().enumerate() {
                    match RangeColumn::from_name(name.get_ref()) {
                        Some(col) => columns.push(col),
                        None => self.at(
                            &format!("{key}.columns[{j}]"),
                            name,
                            format!("`{}` is not a column", name.get_ref()),
                            r#"columns are "start", "end", "country", "subdivision", "asn", "as_org" or "-" (ignored)"#,
                        ),
                    }
                }
                for needed in [RangeColumn::Start, RangeColumn::End] {
                    if columns.iter().filter(|&&c| c == needed).count() != 1 {
                        self.at(
                            &k("columns"),
                            c,
                            format!("`columns` needs exactly one {:?} column", needed).to_lowercase(),
                            r#"e.g. columns = ["start", "end", "country"]"#,
                        );
                    }
                }
                if !columns.iter().any(|c| !matches!(c, RangeColumn::Start | RangeColumn::End | RangeColumn::Skip)) {
                    self.at(&k("columns"), c, "`columns` names no data column".into(), r#"add "country", "asn", ..."#);
                }
                RangeLayout::Columns { delimiter, columns }
            }
            (None, None) => {
                if let Some(d) = &s.delimiter {
                    self.at(&k("delimiter"), d, "`delimiter` applies only with `columns`".into(), "");
                }
                RangeLayout::Auto
            }
        }
    }

    /// An AS number written as `13238` or `"AS13238"`.
    fn asn(&mut self, key: &str, v: &S<FileAsn>) -> Option<u32> {
        let parsed = match v.get_ref() {
            FileAsn::Number(n) => u32::try_from(*n).ok(),
            FileAsn::Text(t) => crate::geo::parse_asn(t.trim()),
        };
        if parsed.is_none() {
            let shown = match v.get_ref() {
                FileAsn::Number(n) => n.to_string(),
                FileAsn::Text(t) => format!("{t:?}"),
            };
            self.at(key, v, format!("{shown} is not an AS number"), "use 0 to 4294967295, e.g. 13238 or \"AS13238\"");
        }
        parsed
    }

    fn set(&mut self, key: &str, set: &S<FileSet>) -> Option<GeoRecord> {
        let g = set.get_ref();
        let k = |leaf: &str| format!("{key}.{leaf}");
        let record = GeoRecord {
            country: g.country.as_ref().and_then(|c| self.country(&k("country"), c)),
            registered_country: g.registered_country.as_ref().and_then(|c| self.country(&k("registered_country"), c)),
            represented_country: g
                .represented_country
                .as_ref()
                .and_then(|c| self.country(&k("represented_country"), c)),
            subdivision: g.subdivision.as_ref().and_then(|c| self.subdivision(&k("subdivision"), c)).map(Into::into),
            anonymous_proxy: g.anonymous_proxy.unwrap_or(false),
            satellite_provider: g.satellite_provider.unwrap_or(false),
            asn: g.asn.as_ref().and_then(|a| self.asn(&k("asn"), a)).filter(|&a| a != 0),
            as_org: g.as_org.as_ref().map(|o| o.get_ref().trim()).filter(|o| !o.is_empty()).map(Into::into),
        };
        if let (Some(c), Some(sub), Some(v)) = (record.country, &record.subdivision, &g.subdivision) {
            if !sub.starts_with(c.as_str()) || sub.as_bytes().get(2).is_some_and(|b| !matches!(b, b'-' | b':')) {
                self.at(
                    &k("subdivision"),
                    v,
                    format!("`{sub}` is not in country {c}"),
                    "make country and subdivision agree",
                );
            }
        }
        if record.is_empty() {
            // An empty `set` says nothing; treat it as absent rather than erasing geo data.
            return None;
        }
        Some(record)
    }

    fn tag_kinds(&mut self, key: &str, list: &[S<String>], span: Range<usize>) -> Vec<TagKind> {
        let mut out = Vec::new();
        for (j, t) in list.iter().enumerate() {
            let kind = self.one_of(
                &format!("{key}[{j}]"),
                t,
                &[
                    ("country", TagKind::Country),
                    ("subdivision", TagKind::Subdivision),
                    ("restricted", TagKind::Restricted),
                    ("rule", TagKind::Rule),
                    ("asn", TagKind::Asn),
                ],
            );
            if let Some(kind) = kind {
                if !out.contains(&kind) {
                    out.push(kind);
                }
            }
        }
        if list.is_empty() {
            self.err(
                key,
                Some(span),
                "`tag` is empty".into(),
                r#"name at least one of "country", "subdivision", "restricted", "rule", or use action "allow""#,
            );
        }
        out
    }

    fn policy(
        &mut self,
        f: FilePolicy,
        rules: &[S<FileRule>],
        sources: &SourceNames,
        listeners: &[ListenerConfig],
    ) -> PolicyConfig {
        let default_kind = match &f.default {
            None => Some("allow"),
            Some(v) => self.one_of("policy.default", v, &[("allow", "allow"), ("block", "block"), ("tag", "tag")]),
        };
        let default_action = match (default_kind, &f.tag) {
            (Some("tag"), Some(tags)) => ActionConfig::Tag(self.tag_kinds("policy.tag", tags.get_ref(), tags.span())),
            (Some("tag"), None) => ActionConfig::tag_default(),
            (Some("block"), _) => ActionConfig::Block,
            _ => ActionConfig::Allow,
        };
        if let (Some(kind), Some(tags)) = (default_kind, &f.tag) {
            if kind != "tag" {
                self.at(
                    "policy.tag",
                    tags,
                    "`tag` applies only with default = \"tag\"".into(),
                    "remove it, or set default = \"tag\"",
                );
            }
        }
        let tag_headers = self.tag_headers(f.tag_headers.unwrap_or_default(), listeners);
        let block =
            self.block("policy.block", &f.block.unwrap_or_default(), &BlockResponse::default()).unwrap_or_default();
        let mut out = Vec::new();
        let mut names = HashSet::new();
        let mut dry_runs = 0;
        let mut catch_all: Option<(usize, String)> = None;
        for (i, r) in rules.iter().enumerate() {
            let key = format!("rule[{i}]");
            let span = r.span();
            let rule = self.rule(&key, r.get_ref(), span.clone(), &mut names, sources, &block);
            if rule.dry_run {
                dry_runs += 1;
                if dry_runs == MAX_DRY_RUN_RULES + 1 {
                    self.err(
                        &format!("{key}.dry_run"),
                        Some(span.clone()),
                        format!("more than {MAX_DRY_RUN_RULES} dry_run rules"),
                        "promote or remove some dry-run rules",
                    );
                }
            }
            if let Some((j, name)) = &catch_all {
                self.err(
                    &key,
                    Some(span.clone()),
                    format!("unreachable: rule[{j}] `{name}` above matches every request"),
                    "move this rule above it, or give that rule some criteria",
                );
            } else if !rule.dry_run && rule.matcher == RuleMatch::default() {
                catch_all = Some((i, rule.name.clone()));
            }
            out.push(rule);
        }
        PolicyConfig { rules: out, default_action, tag_headers, block }
    }

    fn tag_headers(&mut self, f: FileTagHeaders, listeners: &[ListenerConfig]) -> TagHeaders {
        let d = TagHeaders::default();
        let mut seen: Vec<HeaderName> = Vec::new();
        let mut one = |this: &mut Self, leaf: &str, v: &Option<S<String>>, default: HeaderName| -> HeaderName {
            let key = format!("policy.tag_headers.{leaf}");
            let name = match v {
                None => default,
                Some(v) => match this.header_name(&key, v) {
                    Some(n) => n,
                    None => return default,
                },
            };
            let span = v.as_ref().map(S::span);
            if RESERVED_HEADERS.contains(&name.as_str()) {
                this.err(
                    &key,
                    span,
                    format!("`{name}` cannot be a tag header"),
                    "geogate or HTTP itself owns this header; pick an X-... name",
                );
            } else if seen.contains(&name) {
                this.err(&key, span, format!("`{name}` is used for two tags"), "each tag needs its own header");
            } else if listeners.iter().any(|l| l.client_ip.source == ClientIpSource::Header(name.clone())) {
                this.err(
                    &key,
                    span,
                    format!("`{name}` is also a client-IP header"),
                    &format!("geogate strips tag headers sent by clients; set {key} to another name"),
                );
            }
            seen.push(name.clone());
            name
        };
        TagHeaders {
            country: one(self, "country", &f.country, d.country),
            subdivision: one(self, "subdivision", &f.subdivision, d.subdivision),
            restricted: one(self, "restricted", &f.restricted, d.restricted),
            rule: one(self, "rule", &f.rule, d.rule),
            asn: one(self, "asn", &f.asn, d.asn),
        }
    }

    /// Block-response keys merged over `base`; `None` when none is given.
    fn block(&mut self, key: &str, f: &FileBlock, base: &BlockResponse) -> Option<BlockResponse> {
        let given = f.status.is_some()
            || f.json_body.is_some()
            || f.html_body.is_some()
            || f.html_file.is_some()
            || f.redirect.is_some()
            || f.redirect_status.is_some();
        if !given {
            return None;
        }
        let k = |leaf: &str| {
            if key.is_empty() {
                leaf.to_owned()
            } else {
                format!("{key}.{leaf}")
            }
        };
        let mut out = base.clone();
        if let Some(s) = &f.status {
            out.status = self
                .status(
                    &k("status"),
                    s,
                    400..600,
                    "a block answers with a 4xx or 5xx status, e.g. 451 or 403; use `redirect` to redirect",
                )
                .unwrap_or(out.status);
        }
        if let Some(b) = &f.json_body {
            out.json_body = b.get_ref().clone();
        }
        match (&f.html_body, &f.html_file) {
            (Some(_), Some(file)) => {
                self.at(&k("html_file"), file, "`html_body` and `html_file` cannot be combined".into(), "keep one")
            }
            (Some(b), None) => out.html_body = b.get_ref().clone(),
            (None, Some(file)) => {
                if let Some(body) = self.read_html(&k("html_file"), file) {
                    out.html_body = body;
                }
            }
            (None, None) => {}
        }
        if let Some(r) = &f.redirect {
            let s = r.get_ref();
            let uri = Uri::from_str(s).ok().filter(|u| match u.scheme_str() {
                Some("http" | "https") => u.authority().is_some(),
                None => s.starts_with('/') && !s.starts_with("//"),
                Some(_) => false,
            });
            match uri {
                Some(u) => out.redirect = Some(u),
                None => self.at(
                    &k("redirect"),
                    r,
                    format!("`{s}` is not a redirect target"),
                    r#"use an absolute http(s) URL or a path, e.g. "https://example.com/unavailable""#,
                ),
            }
        }
        if let Some(s) = &f.redirect_status {
            if f.redirect.is_none() && base.redirect.is_none() {
                self.at(
                    &k("redirect_status"),
                    s,
                    "`redirect_status` without `redirect`".into(),
                    "set `redirect`, or remove this",
                );
            }
            out.redirect_status = self
                .status(&k("redirect_status"), s, 300..400, "use 301, 302, 303, 307 or 308")
                .unwrap_or(out.redirect_status);
        }
        Some(out)
    }

    fn read_html(&mut self, key: &str, v: &S<String>) -> Option<String> {
        let path = self.file_path(key, v)?;
        let result = std::fs::metadata(&path).and_then(|m| {
            // A FIFO or device reports length 0 and would block or never end: regular files only,
            // and never read more than the limit whatever the metadata says.
            if !m.is_file() {
                return Err(std::io::Error::other("not a regular file"));
            }
            if m.len() > MAX_HTML_FILE {
                return Err(std::io::Error::other("larger than 1 MiB"));
            }
            let mut text = String::new();
            std::io::Read::read_to_string(
                &mut std::io::Read::take(std::fs::File::open(&path)?, MAX_HTML_FILE + 1),
                &mut text,
            )?;
            if text.len() as u64 > MAX_HTML_FILE {
                return Err(std::io::Error::other("larger than 1 MiB"));
            }
            Ok(text)
        });
        match result {
            Ok(s) => Some(s),
            Err(e) => {
                self.at(
                    key,
                    v,
                    format!("cannot read {}: {e}", path.display()),
                    "relative paths resolve against the config file's directory",
                );
                None
            }
        }
    }

    fn rule(
        &mut self,
        key: &str,
        r: &FileRule,
        span: Range<usize>,
        names: &mut HashSet<String>,
        sources: &SourceNames,
        base: &BlockResponse,
    ) -> RuleConfig {
        let k = |leaf: &str| format!("{key}.{leaf}");
        let name = match self.required(&k("name"), &r.name, span.clone(), r#"e.g. name = "block-signup-ru""#) {
            Some(n) => self.name(&k("name"), n, names, "rule"),
            None => String::new(),
        };
        let kind = match self.required(&k("action"), &r.action, span.clone(), r#"action = "allow", "block" or "tag""#) {
            Some(a) => self.one_of(&k("action"), a, &[("allow", "allow"), ("block", "block"), ("tag", "tag")]),
            None => None,
        };
        let mut matcher = RuleMatch {
            anonymous_proxy: r.anonymous_proxy,
            satellite_provider: r.satellite_provider,
            unknown: r.unknown,
            ..RuleMatch::default()
        };
        for (j, c) in r.countries.iter().enumerate() {
            matcher.countries.extend(self.country(&format!("{key}.countries[{j}]"), c));
        }
        for (j, c) in r.registered_countries.iter().enumerate() {
            matcher.registered_countries.extend(self.country(&format!("{key}.registered_countries[{j}]"), c));
        }
        for (j, c) in r.subdivisions.iter().enumerate() {
            matcher.subdivisions.extend(self.subdivision(&format!("{key}.subdivisions[{j}]"), c));
        }
        for (j, a) in r.asns.iter().enumerate() {
            matcher.asns.extend(self.asn(&format!("{key}.asns[{j}]"), a));
        }
        for (j, o) in r.as_orgs.iter().enumerate() {
            let glob = o.get_ref().trim();
            if glob.is_empty() || glob.bytes().all(|b| b == b'*') {
                self.at(
                    &format!("{key}.as_orgs[{j}]"),
                    o,
                    format!("`{glob}` matches every organisation or none"),
                    r#"name part of the organisation, e.g. "*yandex*""#,
                );
            } else {
                matcher.as_orgs.push(glob.to_lowercase());
            }
        }
        if let Some(v) = &r.view {
            matcher.view = match v.get_ref().as_str() {
                "layered" => GeoView::Layered,
                "any" => GeoView::Any,
                "all" => GeoView::All,
                name if sources.databases.iter().any(|d| d == name) => GeoView::Source(name.to_owned()),
                name => {
                    let hint = if sources.lists.iter().any(|l| l == name) {
                        format!("`{name}` is a list; lists are matched with `lists`, the same in every view")
                    } else {
                        format!(r#""layered", "any", "all" or a database source: {}"#, sources.databases.join(", "))
                    };
                    self.at(&k("view"), v, format!("no view `{name}`"), &hint);
                    GeoView::Layered
                }
            };
        }
        for (j, l) in r.lists.iter().enumerate() {
            let lk = format!("{key}.lists[{j}]");
            if sources.lists.contains(l.get_ref()) {
                matcher.lists.push(l.get_ref().clone());
            } else if sources.all.contains(l.get_ref()) {
                self.at(
                    &lk,
                    l,
                    format!("source `{}` is not a list", l.get_ref()),
                    "rules match lists by name; a database is matched by countries/subdivisions",
                );
            } else {
                let known = if sources.lists.is_empty() {
                    "no type = \"list\" source is defined".to_owned()
                } else {
                    format!("lists: {}", sources.lists.join(", "))
                };
                self.at(&lk, l, format!("no list named `{}`", l.get_ref()), &known);
            }
        }
        for (j, h) in r.hosts.iter().enumerate() {
            matcher.hosts.extend(self.host_pattern(&format!("{key}.hosts[{j}]"), h));
        }
        for (j, p) in r.paths.iter().enumerate() {
            matcher.paths.extend(self.path_pattern(&format!("{key}.paths[{j}]"), p));
        }
        for (j, m) in r.methods.iter().enumerate() {
            matcher.methods.extend(self.method(&format!("{key}.methods[{j}]"), m));
        }
        if let Some(v) = &r.path_match {
            matcher.path_match =
                self.one_of(&k("path_match"), v, &[("framework", PathMatch::Framework), ("strict", PathMatch::Strict)]);
            if r.paths.is_empty() {
                self.at(
                    &k("path_match"),
                    v,
                    "`path_match` has no effect without `paths`".into(),
                    "remove it, or add paths",
                );
            }
        }
        let action = match kind {
            Some("block") => ActionConfig::Block,
            Some("tag") => match &r.tag {
                Some(t) => ActionConfig::Tag(self.tag_kinds(&k("tag"), t.get_ref(), t.span())),
                None => ActionConfig::tag_all(),
            },
            _ => ActionConfig::Allow,
        };
        if kind.is_some() && kind != Some("tag") {
            if let Some(t) = &r.tag {
                self.at(
                    &k("tag"),
                    t,
                    "`tag` applies only to action = \"tag\"".into(),
                    "remove it, or set action = \"tag\"",
                );
            }
        }
        let overrides = FileBlock {
            status: r.status.clone(),
            json_body: r.json_body.clone(),
            html_body: r.html_body.clone(),
            html_file: r.html_file.clone(),
            redirect: r.redirect.clone(),
            redirect_status: r.redirect_status.clone(),
        };
        let block = self.block(key, &overrides, base);
        if block.is_some() && kind.is_some() && kind != Some("block") {
            let first = [&r.status, &r.redirect_status]
                .into_iter()
                .flatten()
                .map(S::span)
                .chain([&r.json_body, &r.html_body, &r.html_file, &r.redirect].into_iter().flatten().map(S::span))
                .min_by_key(|s| s.start);
            self.err(
                key,
                first,
                "block-response keys apply only to action = \"block\"".into(),
                "remove status/json_body/html_body/html_file/redirect, or set action = \"block\"",
            );
        }
        RuleConfig {
            name,
            action,
            dry_run: r.dry_run,
            matcher,
            block: if kind == Some("block") { block } else { None },
        }
    }

    fn limits(&mut self, f: FileLimits) -> Limits {
        let d = Limits::default();
        let max_h2 = self.int(
            "limits.max_h2_streams",
            &f.max_h2_streams,
            u64::from(d.max_h2_streams.get()),
            1,
            u64::from(u16::MAX),
        );
        Limits {
            header_read_timeout: self.duration(
                "limits.header_read_timeout",
                &f.header_read_timeout,
                d.header_read_timeout,
                false,
            ),
            idle_timeout: self.duration("limits.idle_timeout", &f.idle_timeout, d.idle_timeout, false),
            max_header_bytes: self.nonzero(
                "limits.max_header_bytes",
                &f.max_header_bytes,
                d.max_header_bytes,
                MIN_HEADER_BYTES as u64,
            ),
            max_headers: self.nonzero("limits.max_headers", &f.max_headers, d.max_headers, 1),
            max_connections: self.nonzero("limits.max_connections", &f.max_connections, d.max_connections, 1),
            upstream_connect_timeout: self.duration(
                "limits.upstream_connect_timeout",
                &f.upstream_connect_timeout,
                d.upstream_connect_timeout,
                false,
            ),
            upstream_response_timeout: self.duration(
                "limits.upstream_response_timeout",
                &f.upstream_response_timeout,
                d.upstream_response_timeout,
                false,
            ),
            proxy_protocol_timeout: self.duration(
                "limits.proxy_protocol_timeout",
                &f.proxy_protocol_timeout,
                d.proxy_protocol_timeout,
                false,
            ),
            max_h2_streams: u16::try_from(max_h2).ok().and_then(NonZeroU16::new).unwrap_or(d.max_h2_streams),
        }
    }

    fn reload(&mut self, f: FileReload) -> ReloadConfig {
        let d = ReloadConfig::default();
        let check_interval = f
            .check_interval
            .as_ref()
            .map(|_| self.duration("reload.check_interval", &f.check_interval, Duration::from_secs(3600), false));
        let max_network_drop_percent = match &f.max_network_drop_percent {
            None => d.max_network_drop_percent,
            Some(v) => {
                let p = *v.get_ref();
                if !(0.0..=100.0).contains(&p) {
                    self.at(
                        "reload.max_network_drop_percent",
                        v,
                        format!("{p} is not a percentage"),
                        "use 0.0 to 100.0; 100 turns the guard off",
                    );
                    d.max_network_drop_percent
                } else if p >= 100.0 {
                    None
                } else {
                    Some(p)
                }
            }
        };
        let min_networks = self.int("reload.min_networks", &f.min_networks, 0, 0, u32::MAX as u64);
        let on_no_data = match &f.on_no_data {
            None => d.on_no_data,
            Some(v) => self
                .one_of(
                    "reload.on_no_data",
                    v,
                    &[
                        ("refuse", OnNoData::Refuse),
                        ("fail-open", OnNoData::FailOpen),
                        ("fail-closed", OnNoData::FailClosed),
                    ],
                )
                .unwrap_or(d.on_no_data),
        };
        ReloadConfig {
            watch: f.watch.unwrap_or(d.watch),
            debounce: self.duration("reload.debounce", &f.debounce, d.debounce, true),
            check_interval,
            max_network_drop_percent,
            min_networks: usize::try_from(min_networks).unwrap_or(usize::MAX),
            on_no_data,
        }
    }

    fn access_log(&mut self, f: FileAccessLog) -> AccessLogConfig {
        let d = AccessLogConfig::default();
        let sample = match &f.sample {
            None => d.sample,
            Some(v) => {
                let s = *v.get_ref();
                if (0.0..=1.0).contains(&s) {
                    s
                } else {
                    self.at(
                        "access_log.sample",
                        v,
                        format!("{s} is not a fraction"),
                        "use 0.0 (none) to 1.0 (every allowed request); blocks are always logged",
                    );
                    d.sample
                }
            }
        };
        AccessLogConfig { enabled: f.enabled.unwrap_or(d.enabled), sample }
    }
}

/// The last component of a key path (`name` of `rule[2].name`).
fn leaf(key: &str) -> &str {
    key.rsplit('.').next().unwrap_or(key)
}
