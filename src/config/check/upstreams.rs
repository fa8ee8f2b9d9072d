//! Checks `[[upstream]]` and `[[route]]`.

use super::*;

/// What an upstream's TLS file must hold.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PemKind {
    Ca,
    Cert,
    Key,
}

/// Largest certificate or key file read (a bundle of every public CA is about 200 KiB).
const MAX_PEM_FILE: u64 = 1 << 20;

/// The file's bytes, refusing what is not a regular file or is larger than [`MAX_PEM_FILE`].
fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    let m = std::fs::metadata(path)?;
    if !m.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if m.len() > MAX_PEM_FILE {
        return Err(std::io::Error::other("larger than 1 MiB; is this a PEM file?"));
    }
    std::fs::read(path)
}

impl<'a> Checker<'a> {
    pub(super) fn upstreams(&mut self, file: &[S<FileUpstream>]) -> (Vec<UpstreamConfig>, Vec<String>) {
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
                .required(&format!("{key}.url"), &u.url, span.clone(), r#"e.g. url = "http://127.0.0.1:3000""#)
                .and_then(|v| self.http_url(&format!("{key}.url"), v, true, true))
                .unwrap_or_else(|| Uri::from_static(DEFAULT_UPSTREAM));
            let https = url.scheme_str() == Some("https");
            let protocol = self.upstream_protocol(&key, u, https);
            let tls = if https {
                Some(self.upstream_tls(&key, u))
            } else {
                for (leaf, v) in [("ca", &u.ca), ("client_cert", &u.client_cert), ("client_key", &u.client_key)] {
                    if let Some(v) = v {
                        self.at(
                            &format!("{key}.{leaf}"),
                            v,
                            format!("`{leaf}` applies to an https:// upstream only"),
                            "write the url as https://..., or remove this",
                        );
                    }
                }
                None
            };
            ordered.push(name.clone());
            out.push(UpstreamConfig { name: name.into(), url, protocol, tls });
        }
        (out, ordered)
    }

    /// `protocol`, judged against the scheme: `h2c` is cleartext, `h2` is over TLS, and
    /// `auto` (ALPN) on a cleartext upstream means HTTP/1.1.
    fn upstream_protocol(&mut self, key: &str, u: &FileUpstream, https: bool) -> UpstreamProtocol {
        let Some(v) = &u.protocol else { return UpstreamProtocol::Http1 };
        let k = format!("{key}.protocol");
        let choices = [
            ("http1", UpstreamProtocol::Http1),
            ("h2c", UpstreamProtocol::H2c),
            ("h2", UpstreamProtocol::H2),
            ("auto", UpstreamProtocol::Auto),
        ];
        match self.one_of(&k, v, &choices) {
            Some(UpstreamProtocol::H2c) if https => {
                self.at(
                    &k,
                    v,
                    "`h2c` is HTTP/2 over cleartext, and this upstream is https://".into(),
                    r#"use "h2" or "auto" over TLS"#,
                );
                UpstreamProtocol::H2
            }
            Some(UpstreamProtocol::H2) if !https => {
                self.at(
                    &k,
                    v,
                    "`h2` is HTTP/2 over TLS, and this upstream is http://".into(),
                    r#"use "h2c" for HTTP/2 over cleartext"#,
                );
                UpstreamProtocol::H2c
            }
            Some(UpstreamProtocol::Auto) if !https => UpstreamProtocol::Http1,
            Some(p) => p,
            None => UpstreamProtocol::Http1,
        }
    }

    /// `ca`, `client_cert` and `client_key` of an https:// upstream. Each file is read and
    /// parsed here, so `geogate check` points at the key that names a missing or wrong file;
    /// the snapshot reads them again when it builds the TLS client (and checks the pair).
    fn upstream_tls(&mut self, key: &str, u: &FileUpstream) -> UpstreamTlsConfig {
        let ca = u.ca.as_ref().and_then(|v| self.pem_upstream_file(&format!("{key}.ca"), v, PemKind::Ca));
        let cert = u
            .client_cert
            .as_ref()
            .map(|v| (v, self.pem_upstream_file(&format!("{key}.client_cert"), v, PemKind::Cert)));
        let private =
            u.client_key.as_ref().map(|v| (v, self.pem_upstream_file(&format!("{key}.client_key"), v, PemKind::Key)));
        let client_cert = match (cert, private) {
            (None, None) => None,
            (Some((_, Some(cert))), Some((_, Some(key)))) => Some(CertPair { cert, key }),
            (Some((v, _)), None) => {
                self.at(
                    &format!("{key}.client_key"),
                    v,
                    "`client_cert` without `client_key`".into(),
                    r#"add client_key = "client.key", the certificate's private key"#,
                );
                None
            }
            (None, Some((v, _))) => {
                self.at(
                    &format!("{key}.client_cert"),
                    v,
                    "`client_key` without `client_cert`".into(),
                    r#"add client_cert = "client.crt", the key's certificate"#,
                );
                None
            }
            // A file that failed has its own error already.
            (Some(_), Some(_)) => None,
        };
        UpstreamTlsConfig { ca, client_cert }
    }

    /// A PEM file of `kind` that can be read and holds at least one such item.
    fn pem_upstream_file(&mut self, key: &str, v: &S<String>, kind: PemKind) -> Option<PathBuf> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let path = self.file_path(key, v)?;
        let hint = match kind {
            PemKind::Ca => "a PEM bundle of CA certificates (-----BEGIN CERTIFICATE-----); relative paths resolve against the config file's directory",
            PemKind::Cert => "a PEM certificate chain, the client certificate first; relative paths resolve against the config file's directory",
            PemKind::Key => "a PEM private key (PKCS#8, RSA or EC) without a passphrase; relative paths resolve against the config file's directory",
        };
        let bytes = match read_limited(&path) {
            Ok(b) => b,
            Err(e) => {
                self.at(key, v, format!("cannot read {}: {e}", path.display()), hint);
                return None;
            }
        };
        let problem = match kind {
            PemKind::Ca | PemKind::Cert => {
                let certs: Result<Vec<CertificateDer<'_>>, _> = CertificateDer::pem_slice_iter(&bytes).collect();
                match certs {
                    Err(e) => Some(format!("{}: unreadable PEM: {e}", path.display())),
                    Ok(c) if c.is_empty() => Some(format!("{}: no PEM certificate found", path.display())),
                    Ok(c) if kind == PemKind::Ca => {
                        let mut roots = rustls::RootCertStore::empty();
                        let (_, bad) = roots.add_parsable_certificates(c);
                        (bad > 0 || roots.is_empty()).then(|| {
                            format!("{}: {bad} certificate(s) cannot be used as a trust anchor", path.display())
                        })
                    }
                    Ok(_) => None,
                }
            }
            PemKind::Key => match PrivateKeyDer::from_pem_slice(&bytes) {
                Ok(_) => None,
                Err(e) => Some(format!("{}: no usable PEM private key: {e}", path.display())),
            },
        };
        if let Some(message) = problem {
            self.at(key, v, message, hint);
            return None;
        }
        Some(path)
    }

    pub(super) fn routes(&mut self, file: &[S<FileRoute>], upstreams: &[String]) -> Vec<RouteConfig> {
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
}
