//! TLS listeners end to end: certificates made by the test (a private CA and leaves signed by
//! it, `rcgen`), a real geogate, a rustls client that verifies against the CA.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A private CA that signs the test's leaf certificates.
struct Pki {
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

/// A leaf certificate as files hold it, plus its DER to compare with what a client was shown.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Pki {
    fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "geogate test CA");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        Self { ca, ca_key }
    }

    fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_with(names, |_| {})
    }

    fn leaf_with(&self, names: &[&str], edit: impl FnOnce(&mut rcgen::CertificateParams)) -> Leaf {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
        edit(&mut params);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
    }

    fn client(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(geogate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

fn write_pair(dir: &Path, stem: &str, leaf: &Leaf) {
    write_atomic(&dir.join(format!("{stem}.crt")), &leaf.cert_pem);
    write_atomic(&dir.join(format!("{stem}.key")), &leaf.key_pem);
}

fn write_atomic(path: &Path, bytes: impl AsRef<[u8]>) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn config(listener_extra: &str, extra: &str) -> String {
    format!(
        r#"
[[listener]]
name = "public"
address = "127.0.0.1:0"
{listener_extra}

[[upstream]]
name = "app"
url = "http://{{upstream}}"

[admin]
address = "127.0.0.1:0"

[reload]
watch = false

{GEO_SOURCES}

[policy]
default = "allow"

[[rule]]
name = "signup"
action = "block"
countries = ["RU"]
paths = ["/signup"]

[[rule]]
name = "crimea"
action = "tag"
subdivisions = ["UA-43"]

{extra}
"#
    )
}

const XFF: &str = r#"client_ip = { source = "x-forwarded-for", trusted = ["127.0.0.1/32"] }"#;
const ONE_CERT: &str = r#"tls = { cert = "a.crt", key = "a.key" }"#;

/// Starts geogate with the pairs written as `<stem>.crt` / `<stem>.key` next to its config.
async fn start(toml: &str, up: &Upstream, pairs: &[(&str, &Leaf)]) -> Proxy {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for (stem, leaf) in pairs {
        files.push((format!("{stem}.crt"), leaf.cert_pem.clone().into_bytes()));
        files.push((format!("{stem}.key"), leaf.key_pem.clone().into_bytes()));
    }
    let files: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    Proxy::start_with_files(toml, up, &files).await
}

async fn tls_connect<S: AsyncRead + AsyncWrite + Unpin>(
    connector: &tokio_rustls::TlsConnector,
    io: S,
    name: &str,
) -> std::io::Result<TlsStream<S>> {
    let name = ServerName::try_from(name.to_owned()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), connector.connect(name, io)).await.expect("handshake hung")
}

/// The leaf certificate the server showed on `s`.
fn served<S>(s: &TlsStream<S>) -> CertificateDer<'static> {
    s.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned()
}

/// One request over `s` with HTTP/1.1 or HTTP/2 (as ALPN chose); status, headers, body.
async fn request<S>(s: TlsStream<S>, req: Request<Full<Bytes>>) -> (StatusCode, http::HeaderMap, Bytes)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let h2 = s.get_ref().1.alpn_protocol() == Some(b"h2");
    let resp = if h2 {
        let (mut tx, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s)).await.unwrap();
        tokio::spawn(conn);
        tx.send_request(req).await.unwrap()
    } else {
        let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await.unwrap();
        tokio::spawn(conn);
        tx.send_request(req).await.unwrap()
    };
    let (parts, body) = resp.into_parts();
    (parts.status, parts.headers, body.collect().await.unwrap().to_bytes())
}

fn req(method: &str, path: &str, client: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(format!("https://app.example.com{path}"))
        .header("x-forwarded-for", client)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

async fn admin_reload(admin: SocketAddr) -> Value {
    let req = Request::post("/-/reload").header("host", "admin").body(Full::new(Bytes::new())).unwrap();
    let (_, _, body) = send(admin, req).await;
    serde_json::from_slice(&body).unwrap()
}

fn metric(p: &Proxy, name: &str, label: &str) -> f64 {
    let text = p.running.as_ref().unwrap().metrics.render();
    text.lines()
        .find(|l| l.starts_with(name) && l.contains(label))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn http1_and_h2_over_tls_block_tag_and_say_https() {
    let pki = Pki::new();
    let a = pki.leaf(&["app.example.com", "127.0.0.1"]);
    let up = upstream().await;
    let p = start(&config(&format!("{XFF}\n{ONE_CERT}"), ""), &up, &[("a", &a)]).await;

    for alpn in [&[b"http/1.1".as_slice()][..], &[b"h2".as_slice(), b"http/1.1".as_slice()][..]] {
        let client = pki.client(alpn);
        let s = tls_connect(&client, TcpStream::connect(p.addr).await.unwrap(), "app.example.com").await.unwrap();
        let want: &[u8] = alpn[0];
        assert_eq!(s.get_ref().1.alpn_protocol(), Some(want), "ALPN");
        assert_eq!(served(&s), a.der);
        let (st, _, body) = request(s, req("GET", "/hello", "192.0.2.1")).await;
        assert_eq!(st, StatusCode::OK, "{body:?}");
        let seen = echoed(&body);
        assert_eq!(header_of(&seen, "x-forwarded-proto"), ["https"], "{seen:?}");
        assert!(header_of(&seen, "forwarded")[0].ends_with("proto=https"), "{seen:?}");

        // Blocked as on cleartext.
        let s = tls_connect(&client, TcpStream::connect(p.addr).await.unwrap(), "app.example.com").await.unwrap();
        let (st, _, _) = request(s, req("POST", "/signup", "203.0.113.7")).await;
        assert_eq!(st, StatusCode::from_u16(451).unwrap());

        // Tagged as on cleartext.
        let s = tls_connect(&client, TcpStream::connect(p.addr).await.unwrap(), "app.example.com").await.unwrap();
        let (st, _, body) = request(s, req("GET", "/", "198.51.100.7")).await;
        assert_eq!(st, StatusCode::OK);
        let seen = echoed(&body);
        assert_eq!(header_of(&seen, "x-geo-subdivision"), ["UA-43"], "{seen:?}");
    }
    // A client-sent X-Forwarded-Proto, even from a trusted peer, cannot say `http` here.
    let client = pki.client(&[b"http/1.1"]);
    let s = tls_connect(&client, TcpStream::connect(p.addr).await.unwrap(), "app.example.com").await.unwrap();
    let mut r = req("GET", "/", "192.0.2.1");
    r.headers_mut().insert("x-forwarded-proto", "http".parse().unwrap());
    let (_, _, body) = request(s, r).await;
    assert_eq!(header_of(&echoed(&body), "x-forwarded-proto"), ["https"]);
    p.shutdown().await;
}

#[tokio::test]
async fn sni_picks_the_certificate_and_the_first_is_the_default() {
    let pki = Pki::new();
    let a = pki.leaf(&["a.example.com", "127.0.0.1"]);
    let b = pki.leaf(&["b.example.com", "*.b.example.net"]);
    let up = upstream().await;
    let tls = r#"tls = { certificates = [{ cert = "a.crt", key = "a.key" }, { cert = "b.crt", key = "b.key" }] }"#;
    let p = start(&config(tls, ""), &up, &[("a", &a), ("b", &b)]).await;
    let client = pki.client(&[b"http/1.1"]);
    for (name, want) in [
        ("a.example.com", &a),
        ("b.example.com", &b),
        ("x.b.example.net", &b),
        ("B.Example.Com", &b),
        ("127.0.0.1", &a),
    ] {
        let s = tls_connect(&client, TcpStream::connect(p.addr).await.unwrap(), name).await.unwrap();
        assert!(served(&s) == want.der, "{name}: wrong certificate");
    }
    // A name neither serves: the default (first) is shown, and the client refuses it.
    let e = tls_connect(&client, TcpStream::connect(p.addr).await.unwrap(), "other.example.org").await.unwrap_err();
    assert!(e.to_string().contains("not valid for name"), "{e}");
    let text = p.running.as_ref().unwrap().metrics.render();
    assert!(
        text.contains(
            r#"geogate_tls_certificate_expiry_timestamp_seconds{certificate="b.example.com",listener="public"}"#
        ),
        "{text}"
    );
    p.shutdown().await;
}

/// A TLS 1.1 ClientHello (legacy version 0x0302, no supported_versions extension), as an
/// old client sends it.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // ECDHE-RSA-AES128-SHA, AES128-SHA
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut hs = vec![0x01, 0x00, 0x00, u8::try_from(body.len()).unwrap()];
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01, 0x00, u8::try_from(hs.len()).unwrap()];
    record.extend_from_slice(&hs);
    record
}

#[tokio::test]
async fn tls_1_1_is_refused_with_a_protocol_version_alert() {
    let pki = Pki::new();
    let a = pki.leaf(&["app.example.com"]);
    let up = upstream().await;
    let p = start(&config(ONE_CERT, ""), &up, &[("a", &a)]).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(&tls11_client_hello()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await.expect("not closed").ok();
    // One alert record: type 21, fatal (2), protocol_version (70); then the close.
    assert!(out.len() >= 7 && out[0] == 0x15 && out[5] == 2 && out[6] == 70, "{out:?}");
    assert_eq!(metric(&p, "geogate_tls_handshake_failures_total", r#"reason="protocol_version""#), 1.0);
    // A TLS 1.2-only client is served.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(geogate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let client = tokio_rustls::TlsConnector::from(Arc::new(config));
    let s = tls_connect(&client, TcpStream::connect(p.addr).await.unwrap(), "app.example.com").await.unwrap();
    assert_eq!(s.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    drop(s);
    p.shutdown().await;
}

#[tokio::test]
async fn a_stalled_handshake_is_cut_at_the_timeout() {
    let pki = Pki::new();
    let a = pki.leaf(&["app.example.com"]);
    let up = upstream().await;
    let p = start(&config(ONE_CERT, "[limits]\ntls_handshake_timeout = \"300ms\"\n"), &up, &[("a", &a)]).await;
    // Half a TLS 1.2 ClientHello, then silence.
    let mut hello = tls11_client_hello();
    hello[9..11].copy_from_slice(&[0x03, 0x03]);
    let started = Instant::now();
    let out = raw_closed(p.addr, &hello[..20], Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert_eq!(out, "");
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "{took:?}");
    assert_eq!(metric(&p, "geogate_tls_handshake_failures_total", r#"reason="timeout""#), 1.0);
    // Plain HTTP on the TLS port is not TLS.
    raw_closed(p.addr, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Duration::from_secs(5)).await;
    assert_eq!(metric(&p, "geogate_tls_handshake_failures_total", r#"reason="not_tls""#), 1.0);
    p.shutdown().await;
}

#[tokio::test]
async fn proxy_header_then_tls_on_one_listener() {
    let pki = Pki::new();
    let a = pki.leaf(&["app.example.com"]);
    let up = upstream().await;
    let listener = format!("client_ip = {{ source = \"proxy-protocol\", trusted = [\"127.0.0.1/32\"] }}\n{ONE_CERT}");
    let p = start(&config(&listener, ""), &up, &[("a", &a)]).await;
    let client = pki.client(&[b"h2", b"http/1.1"]);
    for (ip, want) in [("203.0.113.7", StatusCode::from_u16(451).unwrap()), ("192.0.2.1", StatusCode::OK)] {
        let mut tcp = TcpStream::connect(p.addr).await.unwrap();
        tcp.write_all(format!("PROXY TCP4 {ip} 127.0.0.1 4711 443\r\n").as_bytes()).await.unwrap();
        let s = tls_connect(&client, tcp, "app.example.com").await.unwrap();
        let r = Request::post("https://app.example.com/signup").body(Full::new(Bytes::new())).unwrap();
        let (st, _, body) = request(s, r).await;
        assert_eq!(st, want, "{ip}: {body:?}");
        if st == StatusCode::OK {
            let seen = echoed(&body);
            assert_eq!(header_of(&seen, "x-forwarded-for"), [ip], "{seen:?}");
            assert_eq!(header_of(&seen, "x-forwarded-proto"), ["https"]);
        }
    }
    p.shutdown().await;
}

#[tokio::test]
async fn rotation_serves_the_new_certificate_and_bad_pairs_keep_the_old() {
    let pki = Pki::new();
    let first = pki.leaf(&["app.example.com"]);
    let up = upstream().await;
    let p = start(&config(ONE_CERT, ""), &up, &[("a", &first)]).await;
    let admin = p.admin.unwrap();
    let dir = p.dir.path().to_path_buf();
    let client = pki.client(&[b"http/1.1"]);
    let connect = || async { tls_connect(&client, TcpStream::connect(p.addr).await.unwrap(), "app.example.com").await };

    // A connection opened before the rotation, kept alive across it.
    let kept = connect().await.unwrap();
    assert_eq!(served(&kept), first.der);
    let (mut kept_tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(kept)).await.unwrap();
    tokio::spawn(conn);

    // Refused pairs: each names its file, and the first certificate is still served.
    let other = pki.leaf(&["app.example.com"]);
    let expired = pki.leaf_with(&["app.example.com"], |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    let mismatched = Leaf { cert_pem: other.cert_pem.clone(), key_pem: first.key_pem.clone(), der: other.der.clone() };
    let garbage =
        Leaf { cert_pem: "not a certificate\n".into(), key_pem: first.key_pem.clone(), der: other.der.clone() };
    for (what, leaf, names) in [
        ("expired", &expired, "a.crt: the certificate expired"),
        ("mismatched", &mismatched, "a.key: this key does not belong to the certificate"),
        ("garbage", &garbage, "a.crt: no PEM certificate"),
    ] {
        write_pair(&dir, "a", leaf);
        let outcome = admin_reload(admin).await;
        assert_eq!(outcome["result"], "failed", "{what}: {outcome}");
        let errors = outcome["errors"].to_string();
        assert!(errors.contains(names), "{what}: {errors}");
        assert_eq!(served(&connect().await.unwrap()), first.der, "{what}: the old certificate must stay");
    }
    std::fs::remove_file(dir.join("a.key")).unwrap();
    let outcome = admin_reload(admin).await;
    assert_eq!(outcome["result"], "failed", "{outcome}");
    assert!(outcome["errors"].to_string().contains("a.key"), "{outcome}");

    // A good new pair: reloaded (not "unchanged": the settings are the same, the files not),
    // new connections get it, the listener stayed up, the kept connection still works.
    let second = pki.leaf(&["app.example.com", "www.example.com"]);
    write_pair(&dir, "a", &second);
    let outcome = admin_reload(admin).await;
    assert_eq!(outcome["result"], "ok", "{outcome}");
    assert_eq!(served(&connect().await.unwrap()), second.der);
    let r = Request::get("/").header("host", "app.example.com").body(Full::new(Bytes::new())).unwrap();
    assert_eq!(kept_tx.send_request(r).await.unwrap().status(), StatusCode::OK);
    // The same files again: nothing to do.
    assert_eq!(admin_reload(admin).await["result"], "unchanged");
    p.shutdown().await;
}

#[tokio::test]
async fn check_names_the_tls_keys_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("geogate.toml");
    let bad = r#"
[[listener]]
name = "public"
address = "127.0.0.1:0"
tls = { cert = "missing.crt" }

[[listener]]
name = "other"
address = "127.0.0.1:0"
tls = { cert = "a.crt", key = "a.key", certificates = [] }

[[upstream]]
name = "app"
url = "http://127.0.0.1:1"

[limits]
tls_handshake_timeout = 5
"#;
    std::fs::write(&path, bad).unwrap();
    let e = geogate::config::load(&path).unwrap_err().to_string();
    for want in [
        "listener[0].tls.cert",
        "missing.crt",
        "listener[0].tls.key",
        "`key` is required",
        "listener[1].tls.certificates",
        "cannot be combined",
        "limits.tls_handshake_timeout",
        "geogate.toml:5:",
    ] {
        assert!(e.contains(want), "missing {want:?} in:\n{e}");
    }
}

#[tokio::test]
async fn sessions_resume_with_tls_1_2_and_1_3_and_across_a_reload() {
    let pki = Pki::new();
    let a = pki.leaf(&["app.example.com"]);
    let up = upstream().await;
    let p = start(&config(ONE_CERT, ""), &up, &[("a", &a)]).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.der().clone()).unwrap();
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let config = rustls::ClientConfig::builder_with_provider(geogate::tls::provider())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        let client = tokio_rustls::TlsConnector::from(Arc::new(config));
        let mut kinds = Vec::new();
        for i in 0..3 {
            if i == 2 {
                // A reload with a new certificate keeps the resumption state.
                write_pair(p.dir.path(), "a", &pki.leaf(&["app.example.com"]));
                assert_eq!(admin_reload(p.admin.unwrap()).await["result"], "ok");
            }
            let mut s =
                tls_connect(&client, TcpStream::connect(p.addr).await.unwrap(), "app.example.com").await.unwrap();
            // TLS 1.3 tickets arrive after the handshake: read until the server has sent them.
            s.write_all(b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n").await.unwrap();
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out).await;
            kinds.push(s.get_ref().1.handshake_kind());
        }
        use rustls::HandshakeKind::{Full, Resumed};
        assert_eq!(kinds[0], Some(Full), "{version:?}");
        assert_eq!(kinds[1..], [Some(Resumed), Some(Resumed)], "{version:?}");
    }
    p.shutdown().await;
}

/// One version of a Kubernetes Secret volume: `..<version>/tls.crt` and `tls.key`.
fn secret_version(dir: &Path, version: &str, leaf: &Leaf) -> String {
    let v = dir.join(version);
    std::fs::create_dir(&v).unwrap();
    std::fs::write(v.join("tls.crt"), &leaf.cert_pem).unwrap();
    std::fs::write(v.join("tls.key"), &leaf.key_pem).unwrap();
    version.to_owned()
}

/// A Secret mounted as a directory, as the kubelet lays it out (`tls.crt -> ..data/tls.crt`,
/// `..data -> ..2026_01_01`), with `[reload] watch = true`. A renewal is made as the kubelet
/// makes it: a new version directory, a `..data_tmp` link renamed over `..data`. Expected
/// within 10 s, without any explicit reload: new connections get the new certificate.
#[tokio::test]
async fn a_secret_volume_swap_is_picked_up_by_the_file_watch() {
    let pki = Pki::new();
    let first = pki.leaf(&["app.example.com"]);
    let secret = tempfile::tempdir().unwrap();
    let m = secret.path();
    let v1 = secret_version(m, "..2026_01_01", &first);
    std::os::unix::fs::symlink(&v1, m.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/tls.crt", m.join("tls.crt")).unwrap();
    std::os::unix::fs::symlink("..data/tls.key", m.join("tls.key")).unwrap();
    let tls =
        format!("tls = {{ cert = \"{}\", key = \"{}\" }}", m.join("tls.crt").display(), m.join("tls.key").display());
    let up = upstream().await;
    let cfg = config(&tls, "").replace("watch = false", "watch = true\ndebounce = \"100ms\"");
    let p = start(&cfg, &up, &[]).await;
    let client = pki.client(&[b"http/1.1"]);
    let served_now = || async {
        served(&tls_connect(&client, TcpStream::connect(p.addr).await.unwrap(), "app.example.com").await.unwrap())
    };
    assert_eq!(served_now().await, first.der);

    let second = pki.leaf(&["app.example.com"]);
    let v2 = secret_version(m, "..2026_01_02", &second);
    std::os::unix::fs::symlink(&v2, m.join("..data_tmp")).unwrap();
    std::fs::rename(m.join("..data_tmp"), m.join("..data")).unwrap();
    std::fs::remove_dir_all(m.join(&v1)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_now().await != second.der {
        assert!(Instant::now() < deadline, "the renewed Secret was not loaded within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p.shutdown().await;
}
