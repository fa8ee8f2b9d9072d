//! Checks `[server]`, `[[listener]]` (with its client-IP and client-header settings) and `[admin]`.

use super::*;

impl<'a> Checker<'a> {
    pub(super) fn server(&mut self, f: FileServer) -> ServerConfig {
        let d = ServerConfig::default();
        let worker_threads = f.worker_threads.as_ref().map(|_| {
            let n = self.int("server.worker_threads", &f.worker_threads, 1, 1, 1024);
            usize::try_from(n).ok().and_then(NonZeroUsize::new).unwrap_or(NonZeroUsize::MIN)
        });
        let engines = [("geogate", Http1Engine::Geogate), ("hyper", Http1Engine::Hyper)];
        let http1 = f.http1.as_ref().and_then(|v| self.one_of("server.http1", v, &engines)).unwrap_or(d.http1);
        ServerConfig {
            worker_threads,
            shutdown_grace: self.duration("server.shutdown_grace", &f.shutdown_grace, d.shutdown_grace, true),
            http1,
        }
    }

    pub(super) fn listeners(&mut self, file: &[S<FileListener>]) -> Vec<ListenerConfig> {
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
            let tls = l.tls.as_ref().and_then(|t| self.tls(&format!("{key}.tls"), t));
            let mut client_headers = self.client_headers(&key, l, &client_ip);
            client_headers.https = tls.is_some();
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
            out.push(ListenerConfig {
                name,
                address,
                client_ip,
                default_host,
                client_headers,
                encoded_delimiters,
                tls,
            });
        }
        out
    }

    /// `tls = { cert, key }` or `tls = { certificates = [...] }`: the shape and that each file
    /// can be opened. What the files hold is checked when the snapshot compiles (each error
    /// naming its file), so `geogate check` reports both.
    pub(super) fn tls(&mut self, key: &str, t: &S<FileTls>) -> Option<TlsConfig> {
        let span = t.span();
        let t = t.get_ref();
        let mut certificates = Vec::new();
        let mut ok = true;
        match (&t.cert, &t.key, &t.certificates) {
            (_, _, Some(list)) if t.cert.is_some() || t.key.is_some() => {
                self.at(
                    &format!("{key}.certificates"),
                    list,
                    "`certificates` cannot be combined with `cert`/`key`".into(),
                    "move the pair into the list (its first entry is the default certificate)",
                );
                return None;
            }
            (None, None, Some(list)) => {
                if list.get_ref().is_empty() {
                    self.at(
                        &format!("{key}.certificates"),
                        list,
                        "`certificates` is empty".into(),
                        r#"e.g. certificates = [{ cert = "a.crt", key = "a.key" }]"#,
                    );
                    return None;
                }
                for (j, pair) in list.get_ref().iter().enumerate() {
                    let p = pair.get_ref();
                    match self.cert_pair(
                        &format!("{key}.certificates[{j}]"),
                        p.cert.as_ref(),
                        p.key.as_ref(),
                        pair.span(),
                    ) {
                        Some(c) => certificates.push(c),
                        None => ok = false,
                    }
                }
            }
            (c, k, _) => match self.cert_pair(key, c.as_ref(), k.as_ref(), span) {
                Some(c) => certificates.push(c),
                None => ok = false,
            },
        }
        (ok && !certificates.is_empty()).then_some(TlsConfig { certificates })
    }

    /// One `cert` + `key`: both given, and both files can be opened.
    fn cert_pair(
        &mut self,
        key: &str,
        cert: Option<&S<String>>,
        private: Option<&S<String>>,
        span: Range<usize>,
    ) -> Option<CertPair> {
        let cert = self.pem_file(key, "cert", cert, &span);
        let private = self.pem_file(key, "key", private, &span);
        Some(CertPair { cert: cert?, key: private? })
    }

    fn pem_file(&mut self, key: &str, leaf: &str, v: Option<&S<String>>, span: &Range<usize>) -> Option<PathBuf> {
        let k = format!("{key}.{leaf}");
        let Some(v) = v else {
            self.err(
                &k,
                Some(span.clone()),
                format!("`{leaf}` is required"),
                &format!(r#"e.g. {leaf} = "/etc/geogate/tls/tls.{}""#, if leaf == "cert" { "crt" } else { "key" }),
            );
            return None;
        };
        let path = self.file_path(&k, v)?;
        if let Err(e) = std::fs::File::open(&path) {
            self.at(
                &k,
                v,
                format!("cannot open {}: {e}", path.display()),
                "a PEM file; relative paths resolve against the config file's directory",
            );
            return None;
        }
        Some(path)
    }

    /// `host` or `host:port`, as a `Host` header would carry it; stored lower-case without a
    /// trailing dot, the form the proxy judges and forwards.
    pub(super) fn default_host(&mut self, key: &str, v: &S<String>) -> Option<String> {
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
    pub(super) fn client_headers(&mut self, key: &str, l: &FileListener, client_ip: &ClientIpConfig) -> ClientHeaders {
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

    pub(super) fn client_ip(&mut self, key: &str, c: &S<FileClientIp>) -> ClientIpConfig {
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

    pub(super) fn admin(&mut self, f: FileAdmin, listeners: &[ListenerConfig]) -> AdminConfig {
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
}
