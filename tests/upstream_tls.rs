//! HTTPS upstreams end to end: a private CA made by the test (`rcgen`), TLS upstreams run by
//! the test (HTTP/1.1 or HTTP/2 by ALPN, with or without a required client certificate), a
//! real geogate in front of them, and its configuration checks for the TLS keys.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/pki.rs"]
mod pki;
mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pki::{Leaf, Pki};
use support::*;
use tokio::net::TcpListener;

/// What a TLS upstream has seen.
#[derive(Default)]
struct Seen {
    /// TCP connections accepted.
    connections: AtomicUsize,
    /// TLS handshakes that succeeded.
    handshakes: AtomicUsize,
    /// HTTP requests answered.
    requests: AtomicUsize,
}

/// A TLS upstream on 127.0.0.1:0 speaking what ALPN chose (h2, else HTTP/1.1). Each answer
/// names the HTTP version, the Host or `:authority`, and the path it received.
async fn tls_upstream(config: Arc<rustls::ServerConfig>) -> (SocketAddr, Arc<Seen>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let s2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else { break };
            s2.connections.fetch_add(1, Ordering::SeqCst);
            let (acceptor, seen) = (acceptor.clone(), s2.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                seen.handshakes.fetch_add(1, Ordering::SeqCst);
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let svc = service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    async move {
                        seen.requests.fetch_add(1, Ordering::SeqCst);
                        let host = req
                            .uri()
                            .authority()
                            .map(|a| a.to_string())
                            .or_else(|| req.headers().get("host").map(|h| h.to_str().unwrap().to_owned()))
                            .unwrap_or_default();
                        let body = format!("{:?} {} {}", req.version(), host, req.uri().path());
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                    }
                });
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), svc).await;
                }
            });
        }
    });
    (addr, seen)
}

/// A geogate forwarding everything to `https://localhost:<port>` with `upstream_extra` keys,
/// and `files` beside its configuration.
async fn proxy(port: u16, upstream_extra: &str, files: &[(&str, &[u8])]) -> Proxy {
    let toml = format!(
        r#"
[[listener]]
name = "public"
address = "127.0.0.1:0"

[[upstream]]
name = "app"
url = "https://localhost:{port}"
{upstream_extra}

[admin]
address = "127.0.0.1:0"

[reload]
watch = false

{GEO_SOURCES}
"#
    );
    // `{upstream}` is not used: the url names the TLS upstream itself.
    let unused = Upstream { addr: SocketAddr::from(([127, 0, 0, 1], 9)) };
    Proxy::start_with_files(&toml, &unused, files).await
}

fn files<'a>(list: &'a [(&'a str, &'a String)]) -> Vec<(&'a str, &'a [u8])> {
    list.iter().map(|(n, s)| (*n, s.as_bytes())).collect()
}

/// geogate's `/metrics` text.
async fn metrics(p: &Proxy) -> String {
    let (st, _, body) = get(p.admin.unwrap(), "/metrics", &[]).await;
    assert_eq!(st, StatusCode::OK);
    String::from_utf8(body.to_vec()).unwrap()
}

/// The value of the `geogate_upstream_errors_total` series of `kind` for upstream `app`.
fn upstream_errors(metrics: &str, kind: &str) -> f64 {
    let prefix = format!("geogate_upstream_errors_total{{kind=\"{kind}\",upstream=\"app\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix}in\n{metrics}"))
        .trim()
        .parse()
        .unwrap()
}

fn body_text(body: &Bytes) -> String {
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn https_upstream_verified_by_private_ca_and_pooled() {
    let pki = Pki::new("upstream CA");
    let leaf = pki.leaf(&["localhost"]);
    let (addr, seen) = tls_upstream(Pki::server(&leaf, &[b"http/1.1"], None)).await;
    let ca = pki.ca_pem();
    let p = proxy(addr.port(), r#"ca = "ca.pem""#, &files(&[("ca.pem", &ca)])).await;
    for i in 0..3 {
        let (st, _, body) = get(p.addr, &format!("/page/{i}"), &[]).await;
        assert_eq!(st, StatusCode::OK, "{}", body_text(&body));
        assert_eq!(body_text(&body), format!("HTTP/1.1 app.example.com /page/{i}"));
    }
    assert_eq!(seen.requests.load(Ordering::SeqCst), 3);
    // Pooled: the three requests went over one TLS connection.
    assert_eq!(seen.handshakes.load(Ordering::SeqCst), 1, "connections are reused");
    assert_eq!(upstream_errors(&metrics(&p).await, "tls"), 0.0, "the tls kind exists at 0");
    p.shutdown().await;
}

#[tokio::test]
async fn https_upstream_with_untrusted_certificate_is_refused() {
    let pki = Pki::new("upstream CA");
    let other = Pki::new("some other CA");
    let leaf = pki.leaf(&["localhost"]);
    let (addr, seen) = tls_upstream(Pki::server(&leaf, &[b"http/1.1"], None)).await;
    // A CA that did not sign the upstream's certificate.
    let wrong = other.ca_pem();
    let p = proxy(addr.port(), r#"ca = "ca.pem""#, &files(&[("ca.pem", &wrong)])).await;
    let (st, _, _) = get(p.addr, "/", &[]).await;
    assert_eq!(st, StatusCode::BAD_GATEWAY);
    // The built-in roots do not trust a private CA either.
    let q = proxy(addr.port(), "", &[]).await;
    let (st, _, _) = get(q.addr, "/", &[]).await;
    assert_eq!(st, StatusCode::BAD_GATEWAY);
    assert_eq!(seen.requests.load(Ordering::SeqCst), 0, "nothing reached the upstream");
    assert_eq!(seen.handshakes.load(Ordering::SeqCst), 0);
    assert!(seen.connections.load(Ordering::SeqCst) >= 2);
    assert_eq!(upstream_errors(&metrics(&p).await, "tls"), 1.0);
    assert_eq!(upstream_errors(&metrics(&q).await, "tls"), 1.0);
    p.shutdown().await;
    q.shutdown().await;
}

#[tokio::test]
async fn https_upstream_with_wrong_name_is_refused() {
    let pki = Pki::new("upstream CA");
    let leaf = pki.leaf(&["app.internal"]);
    let (addr, seen) = tls_upstream(Pki::server(&leaf, &[b"http/1.1"], None)).await;
    let ca = pki.ca_pem();
    let p = proxy(addr.port(), r#"ca = "ca.pem""#, &files(&[("ca.pem", &ca)])).await;
    let (st, _, _) = get(p.addr, "/", &[]).await;
    assert_eq!(st, StatusCode::BAD_GATEWAY, "the certificate is for app.internal, the url says localhost");
    assert_eq!(seen.requests.load(Ordering::SeqCst), 0);
    assert_eq!(upstream_errors(&metrics(&p).await, "tls"), 1.0);
    p.shutdown().await;
}

#[tokio::test]
async fn mtls_upstream_needs_the_client_certificate() {
    let pki = Pki::new("upstream CA");
    let clients = Pki::new("client CA");
    let leaf = pki.leaf(&["localhost"]);
    let client: Leaf = clients.leaf(&["geogate.internal"]);
    let (addr, seen) = tls_upstream(Pki::server(&leaf, &[b"http/1.1"], Some(&clients))).await;
    let ca = pki.ca_pem();
    let with = proxy(
        addr.port(),
        r#"ca = "ca.pem"
client_cert = "client.crt"
client_key = "client.key""#,
        &files(&[("ca.pem", &ca), ("client.crt", &client.cert_pem), ("client.key", &client.key_pem)]),
    )
    .await;
    let (st, _, body) = get(with.addr, "/hello", &[]).await;
    assert_eq!(st, StatusCode::OK, "{}", body_text(&body));
    assert!(body_text(&body).ends_with(" /hello"));
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1);

    let without = proxy(addr.port(), r#"ca = "ca.pem""#, &files(&[("ca.pem", &ca)])).await;
    let (st, _, _) = get(without.addr, "/hello", &[]).await;
    assert_eq!(st, StatusCode::BAD_GATEWAY);
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        1,
        "the upstream answered no request without a client certificate"
    );
    // TLS 1.3: the client's side of the handshake ends before the server judges its
    // certificate, so the refusal (an alert) arrives as the first read fails: still `tls`.
    let m = metrics(&without).await;
    assert_eq!(upstream_errors(&m, "tls"), 1.0, "{m}");
    assert_eq!(upstream_errors(&m, "protocol"), 0.0, "{m}");
    with.shutdown().await;
    without.shutdown().await;
}

#[tokio::test]
async fn auto_protocol_takes_h2_when_alpn_offers_it() {
    let pki = Pki::new("upstream CA");
    let leaf = pki.leaf(&["localhost"]);
    let ca = pki.ca_pem();
    // An upstream that speaks h2 gets HTTP/2, on one shared connection.
    let (addr, seen) = tls_upstream(Pki::server(&leaf, &[b"h2", b"http/1.1"], None)).await;
    let p = proxy(addr.port(), "ca = \"ca.pem\"\nprotocol = \"auto\"", &files(&[("ca.pem", &ca)])).await;
    let mut tasks = Vec::new();
    for i in 0..4 {
        let a = p.addr;
        tasks.push(tokio::spawn(async move { get(a, &format!("/x{i}"), &[]).await }));
    }
    let (st, _, body) = get(p.addr, "/first", &[]).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body_text(&body), "HTTP/2.0 app.example.com /first");
    for t in tasks {
        let (st, _, body) = t.await.unwrap();
        assert_eq!(st, StatusCode::OK);
        assert!(body_text(&body).starts_with("HTTP/2.0 app.example.com /x"), "{}", body_text(&body));
    }
    assert_eq!(seen.requests.load(Ordering::SeqCst), 5);
    // One shared connection, even for the burst of first requests.
    assert_eq!(seen.handshakes.load(Ordering::SeqCst), 1, "HTTP/2 connection shared");
    p.shutdown().await;

    // An upstream that offers only http/1.1 gets HTTP/1.1 from the same setting.
    let (addr, _) = tls_upstream(Pki::server(&leaf, &[b"http/1.1"], None)).await;
    let p = proxy(addr.port(), "ca = \"ca.pem\"\nprotocol = \"auto\"", &files(&[("ca.pem", &ca)])).await;
    let (st, _, body) = get(p.addr, "/one", &[]).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body_text(&body), "HTTP/1.1 app.example.com /one");
    p.shutdown().await;
}

/// `geogate check` (the config loader) names the key, its position and a fix for each bad
/// TLS setting of an upstream.
#[test]
fn upstream_tls_settings_are_checked_with_positions() {
    let pki = Pki::new("upstream CA");
    let leaf = pki.leaf(&["localhost"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), pki.ca_pem()).unwrap();
    std::fs::write(dir.path().join("not-a-cert.pem"), "hello\n").unwrap();
    std::fs::write(dir.path().join("client.crt"), &leaf.cert_pem).unwrap();
    // A certificate where a key belongs.
    std::fs::write(dir.path().join("bad.key"), &leaf.cert_pem).unwrap();
    let toml = format!(
        r#"[[listener]]
name = "public"
address = "127.0.0.1:0"

[[upstream]]
name = "a"
url = "https://localhost:8443"
ca = "missing.pem"

[[upstream]]
name = "b"
url = "https://localhost:8443"
ca = "not-a-cert.pem"
client_cert = "client.crt"
client_key = "bad.key"

[[upstream]]
name = "c"
url = "http://127.0.0.1:3000"
ca = "ca.pem"
protocol = "h2"

[[upstream]]
name = "d"
url = "https://localhost:8443"
client_cert = "client.crt"
protocol = "h2c"

[[upstream]]
name = "e"
url = "https://localhost:8443"
ca = "ca.pem"
protocol = "auto"
{GEO_SOURCES}"#
    );
    let path = dir.path().join("geogate.toml");
    std::fs::write(&path, toml).unwrap();
    let err = geogate::config::load(&path).unwrap_err().to_string();
    let expect = [
        ("upstream[0].ca", "8:6", "missing.pem"),
        ("upstream[1].ca", "13:6", "no PEM certificate"),
        ("upstream[1].client_key", "15:14", "no usable PEM private key"),
        ("upstream[2].ca", "20:6", "applies to an https:// upstream only"),
        ("upstream[2].protocol", "21:12", "`h2` is HTTP/2 over TLS"),
        ("upstream[3].client_key", "26:15", "`client_cert` without `client_key`"),
        ("upstream[3].protocol", "27:12", "`h2c` is HTTP/2 over cleartext"),
    ];
    for (key, pos, what) in expect {
        let line = err
            .lines()
            .find(|l| l.contains(&format!(":{pos}: {key}: ")))
            .unwrap_or_else(|| panic!("no error for {key} at {pos} in:\n{err}"));
        assert!(line.contains(what), "{line}");
        assert!(line.contains('('), "a hint: {line}");
    }
    assert!(!err.contains("upstream[4]"), "a good https upstream is accepted:\n{err}");
    assert_eq!(err.lines().count(), expect.len(), "{err}");
}

/// The CA file is read with each snapshot: a reload after it was replaced verifies new
/// connections against the new one (and a reload with nothing changed says so).
#[tokio::test]
async fn a_reload_reads_the_ca_file_again() {
    let pki = Pki::new("upstream CA");
    let other = Pki::new("some other CA");
    let leaf = pki.leaf(&["localhost"]);
    let (addr, seen) = tls_upstream(Pki::server(&leaf, &[b"http/1.1"], None)).await;
    let wrong = other.ca_pem();
    let p = proxy(addr.port(), r#"ca = "ca.pem""#, &files(&[("ca.pem", &wrong)])).await;
    let (st, _, _) = get(p.addr, "/", &[]).await;
    assert_eq!(st, StatusCode::BAD_GATEWAY);

    let reload = |admin: SocketAddr| async move {
        let req = Request::post("/-/reload").header("host", "admin").body(Full::new(Bytes::new())).unwrap();
        let (_, _, body) = send(admin, req).await;
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()
    };
    assert_eq!(reload(p.admin.unwrap()).await["result"], "unchanged", "same files, same snapshot");
    let tmp = p.dir.path().join("ca.pem.tmp");
    std::fs::write(&tmp, pki.ca_pem()).unwrap();
    std::fs::rename(&tmp, p.dir.path().join("ca.pem")).unwrap();
    let answer = reload(p.admin.unwrap()).await;
    assert_eq!(answer["result"], "ok", "a new CA file is a change: {answer}");
    let (st, _, body) = get(p.addr, "/after", &[]).await;
    assert_eq!(st, StatusCode::OK, "{}", body_text(&body));
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1);

    // A CA file that no longer holds a certificate fails the reload; the running one stays.
    std::fs::write(p.dir.path().join("ca.pem"), "not a certificate\n").unwrap();
    let answer = reload(p.admin.unwrap()).await;
    assert_ne!(answer["result"], "ok", "{answer}");
    assert!(answer.to_string().contains("ca.pem"), "the error names the file: {answer}");
    let (st, _, _) = get(p.addr, "/still", &[]).await;
    assert_eq!(st, StatusCode::OK);
    p.shutdown().await;
}
