//! Test builders: a real upstream on 127.0.0.1:0 and a real geogate started from TOML.
//!
//! The upstream answers every request with a JSON echo of what it received (method, path,
//! headers), and has a few special paths: `/stream?bytes=N` (streams N bytes back),
//! `/sink` (counts the request body and reports it), `/slow` (answers after 3 s),
//! `/ws` (accepts an HTTP/1.1 upgrade and echoes bytes).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use geogate::app::{self, Running};
use geogate::reload::ConfigSource;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

type UpBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A running test upstream.
pub struct Upstream {
    pub addr: SocketAddr,
}

pub async fn upstream() -> Upstream {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { break };
            tokio::spawn(async move {
                let svc = service_fn(upstream_handle);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Upstream { addr }
}

async fn upstream_handle(mut req: Request<Incoming>) -> Result<Response<UpBody>, Infallible> {
    let path = req.uri().path().to_owned();
    match path.as_str() {
        "/stream" => {
            let n: usize =
                req.uri().query().and_then(|q| q.strip_prefix("bytes=")).and_then(|v| v.parse().ok()).unwrap_or(0);
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            return Ok(Response::new(BodyExt::boxed(Counted { left: n, chunk })));
        }
        "/sink" => {
            let mut body = req.into_body();
            let mut total = 0usize;
            while let Some(f) = body.frame().await {
                match f {
                    Ok(f) => total += f.data_ref().map_or(0, |d| d.len()),
                    Err(_) => break,
                }
            }
            return Ok(Response::new(full(format!("{{\"received\":{total}}}"))));
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        "/ws" => {
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on.await {
                    let mut io = TokioIo::new(up);
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            let mut r = Response::new(full(String::new()));
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut().insert("connection", "upgrade".parse().unwrap());
            r.headers_mut().insert("upgrade", "websocket".parse().unwrap());
            return Ok(r);
        }
        _ => {}
    }
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let echo = serde_json::json!({ "method": req.method().as_str(), "path": path, "headers": headers });
    let mut r = Response::new(full(echo.to_string()));
    r.headers_mut().insert("x-upstream", "yes".parse().unwrap());
    r.headers_mut().insert("keep-alive", "timeout=5".parse().unwrap());
    Ok(r)
}

fn full(s: String) -> UpBody {
    BodyExt::boxed(Full::new(Bytes::from(s)))
}

/// A body of `left` bytes sent in 64 KiB frames, generated on the fly (flat memory).
struct Counted {
    left: usize,
    chunk: Bytes,
}

impl hyper::body::Body for Counted {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len());
        self.left -= n;
        std::task::Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }
}

/// A request body of `n` bytes, generated on the fly.
pub fn counted_body(n: usize) -> impl hyper::body::Body<Data = Bytes, Error = Infallible> + Send + Unpin {
    Counted { left: n, chunk: Bytes::from(vec![b'y'; 64 * 1024]) }
}

/// A running geogate with its config directory; shuts down when dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub running: Option<Running>,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    shutdown: watch::Sender<bool>,
}

impl Proxy {
    /// Starts geogate from `toml`; `{upstream}` is replaced by the upstream's address.
    pub async fn start(toml: &str, up: &Upstream) -> Proxy {
        Self::start_with_files(toml, up, &[]).await
    }

    pub async fn start_with_files(toml: &str, up: &Upstream, files: &[(&str, &[u8])]) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let path = dir.path().join("geogate.toml");
        std::fs::write(&path, toml.replace("{upstream}", &up.addr.to_string())).unwrap();
        let config = geogate::config::load(&path).unwrap_or_else(|e| panic!("config: {e}"));
        let (tx, rx) = watch::channel(false);
        let source = ConfigSource::File { path: path.clone(), listen: None, upstream: None };
        let running = app::start(source, config, rx).await.unwrap_or_else(|e| panic!("start: {e}"));
        Proxy {
            addr: running.listen_addrs[0],
            admin: running.admin_addr,
            running: Some(running),
            dir,
            config_path: path,
            shutdown: tx,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends the shutdown signal and waits for the drain.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(r) = self.running.take() {
            r.join().await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// One HTTP/1.1 request over a fresh connection; returns status, headers and body.
pub async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> (StatusCode, http::HeaderMap, Bytes) {
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await.unwrap();
    tokio::spawn(conn);
    let resp = tx.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, body)
}

/// A GET with extra headers (each pair appended, so repeats make several lines).
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (StatusCode, http::HeaderMap, Bytes) {
    let mut b = Request::get(path).header("host", "app.example.com");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(addr, b.body(Full::new(Bytes::new())).unwrap()).await
}

/// The headers the upstream saw, from its JSON echo.
pub fn echoed(body: &Bytes) -> Vec<(String, String)> {
    let v: serde_json::Value =
        serde_json::from_slice(body).unwrap_or_else(|_| panic!("not an echo: {}", String::from_utf8_lossy(body)));
    v["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().to_owned(), p[1].as_str().unwrap().to_owned()))
        .collect()
}

pub fn header_of<'a>(h: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    h.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
}

/// Writes raw bytes on a fresh connection and reads until the peer closes it (a reset counts
/// as a close); returns what arrived before. Panics if the connection is still open after
/// `wait`: "closed without an answer" must not pass on a connection left hanging.
pub async fn raw_closed(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let (out, closed) = raw_exchange(addr, bytes, wait).await;
    assert!(closed, "the connection was still open after {wait:?}; it sent {out:?}");
    out
}

/// Writes raw bytes on a fresh connection and reads for `wait`; returns what arrived. Panics
/// if the peer closes the connection within `wait` (for answers after which it stays open).
pub async fn raw_open(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let (out, closed) = raw_exchange(addr, bytes, wait).await;
    assert!(!closed, "the connection was closed within {wait:?}; it sent {out:?}");
    out
}

/// What arrived, and whether the peer closed (EOF or reset) before `wait` passed.
async fn raw_exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> (String, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The server may refuse and close before reading everything: a failed write is an answer.
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    // On a read error, `read_to_end` keeps the bytes read so far in `out`.
    let closed = tokio::time::timeout(wait, s.read_to_end(&mut out)).await.is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// The shared part of most test configs: one listener, one upstream, client IP from XFF
/// trusted from 127.0.0.1, geo data from inline lists with `set`.
pub const GEO_SOURCES: &str = r#"
[[source]]
name = "ru"
type = "list"
entries = ["203.0.113.0/24"]
set = { country = "RU" }

[[source]]
name = "crimea"
type = "list"
entries = ["198.51.100.0/24"]
set = { country = "UA", subdivision = "UA-43" }

[[source]]
name = "de"
type = "list"
entries = ["192.0.2.0/24", "2001:db8:de::/48"]
set = { country = "DE" }

[[source]]
name = "partners"
type = "list"
entries = ["203.0.113.128/25"]
"#;

pub fn shared_arc<T>(t: T) -> Arc<T> {
    Arc::new(t)
}
