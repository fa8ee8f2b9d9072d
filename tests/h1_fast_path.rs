//! geogate's own HTTP/1.1 path (`proxy::h1`): what it must do that hyper did for it, and the
//! hand-over to hyper in the middle of a connection. Real sockets on 127.0.0.1; upstreams
//! written byte by byte where the framing is the point.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn config(upstream: &str, extra: &str) -> String {
    format!(
        r#"
[[listener]]
name = "public"
address = "127.0.0.1:0"
client_ip = {{ source = "x-forwarded-for", trusted = ["127.0.0.1/32"] }}

[[upstream]]
name = "app"
url = "http://{upstream}"

[admin]
enabled = false

[reload]
watch = false

{GEO_SOURCES}

[policy]
default = "allow"
{extra}
"#
    )
}

/// An upstream that reads each request (head and `Content-Length` body) and writes the
/// bytes `answer` gives for its path; `close` after the answer when it says so. Counts the
/// connections it accepts.
async fn scripted<F>(answer: F) -> (std::net::SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(&str) -> (Vec<u8>, bool) + Send + Sync + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some((path, used)) = read_request(&mut s, &mut buf).await else { return };
                    buf.drain(..used);
                    let (bytes, close) = answer(&path);
                    if s.write_all(&bytes).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// Reads one request into `buf`; its path and how many bytes of `buf` it took.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, usize)> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(n)) = req.parse(buf) {
            let len: usize = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map_or(0, |h| std::str::from_utf8(h.value).unwrap().parse().unwrap());
            if buf.len() >= n + len {
                return Some((req.path.unwrap().to_owned(), n + len));
            }
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
}

/// Reads from `s` until `done` says the bytes so far are complete, or 5 s pass.
async fn read_until(s: &mut TcpStream, done: impl Fn(&str) -> bool) -> String {
    let mut out = Vec::new();
    let work = async {
        let mut chunk = [0u8; 4096];
        while !done(&String::from_utf8_lossy(&out)) {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), work).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn requests_for_hyper_take_over_a_connection_in_order() {
    let up = upstream().await;
    let p = Proxy::start(&config(&up.addr.to_string(), ""), &up).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    // Three pipelined requests in one write: a plain GET (geogate's own path), a chunked
    // upload (hyper's), and a GET after it (hyper keeps the connection from there on).
    let h = "Host: app.example.com\r\nX-Forwarded-For: 192.0.2.1\r\n";
    let burst = format!(
        "GET /first HTTP/1.1\r\n{h}\r\nPOST /second HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /third HTTP/1.1\r\n{h}\r\n"
    );
    s.write_all(burst.as_bytes()).await.unwrap();
    let out = read_until(&mut s, |o| o.contains("/third")).await;
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 3, "{out}");
    let at = |p: &str| out.find(&format!("\"path\":\"{p}\"")).unwrap_or_else(|| panic!("{p} missing: {out}"));
    assert!(at("/first") < at("/second") && at("/second") < at("/third"), "{out}");
    p.shutdown().await;
}

#[tokio::test]
async fn chunked_and_close_delimited_bodies_pass_whole() {
    let up = upstream().await;
    let (addr, _) = scripted(|path| match path {
        // Passed through as framed: the chunk extension and the trailer arrive as sent.
        "/chunked" => (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n"
                .to_vec(),
            false,
        ),
        "/length" => {
            let mut r = b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n".to_vec();
            r.extend(std::iter::repeat_n(b'z', 200_000));
            (r, false)
        }
        // HTTP/1.0 without a length: the body ends when the upstream closes.
        _ => (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end".to_vec(), true),
    })
    .await;
    let p = Proxy::start(&config(&addr.to_string(), ""), &up).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: app.example.com\r\n\r\n");

    s.write_all(get("/chunked").as_bytes()).await.unwrap();
    let out = read_until(&mut s, |o| o.ends_with("X-Sum: 11\r\n\r\n")).await;
    assert!(out.contains("\r\ntransfer-encoding: chunked\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n"), "{out}");
    assert!(!out.contains("content-length"), "{out}");

    // The same client connection goes on: a long body, counted to its last byte.
    s.write_all(get("/length").as_bytes()).await.unwrap();
    let out = read_until(&mut s, |o| o.split_once("\r\n\r\n").is_some_and(|(_, b)| b.len() >= 200_000)).await;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    assert_eq!(body.len(), 200_000, "{}", &out[..out.len().min(300)]);

    s.write_all(get("/close").as_bytes()).await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await.expect("connection closed").unwrap();
    let out = String::from_utf8_lossy(&rest);
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("\r\nconnection: close\r\n") && out.ends_with("\r\n\r\nuntil the end"), "{out}");
    p.shutdown().await;
}

#[tokio::test]
async fn a_post_never_meets_an_upstream_connection_closed_while_idle() {
    let up = upstream().await;
    // The upstream closes every connection after its answer, without saying so: a POST (which
    // is never sent twice) must not be written to the closed one.
    let (addr, accepted) = scripted(|_| (b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok".to_vec(), true)).await;
    let p = Proxy::start(&config(&addr.to_string(), ""), &up).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    for i in 0..4 {
        s.write_all(b"POST /orders HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 5\r\n\r\nhello").await.unwrap();
        let out = read_until(&mut s, |o| o.ends_with("\r\n\r\nok")).await;
        assert!(out.starts_with("HTTP/1.1 201 Created\r\n"), "request {i}: {out}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
    p.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502_and_the_client_keeps_its_connection() {
    let up = upstream().await;
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let p = Proxy::start(&config(&closed.to_string(), ""), &up).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    for _ in 0..2 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n").await.unwrap();
        let out = read_until(&mut s, |o| o.ends_with("}\n")).await;
        assert!(out.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{out}");
        assert!(out.contains("\"error\":\"bad_gateway\"") && !out.contains("connection: close"), "{out}");
    }
    p.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_idle_keep_alive_connections_at_once() {
    let up = upstream().await;
    let p = Proxy::start(&config(&up.addr.to_string(), "[server]\nshutdown_grace = \"20s\"\n"), &up).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n").await.unwrap();
    let out = read_until(&mut s, |o| o.contains("\"path\":\"/\"") && o.ends_with('}')).await;
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    // The connection now waits for its next request: shutdown must not wait the 20 s grace.
    let started = std::time::Instant::now();
    p.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(10), "shutdown waited {:?}", started.elapsed());
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0))), "{read:?} {rest:?}");
}

#[tokio::test]
async fn server_http1_hyper_puts_every_request_on_hyper() {
    let up = upstream().await;
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\n\r\n";
    let (addr, _) = scripted(move |_| (chunked.to_vec(), false)).await;
    for (engine, extension_kept) in [("geogate", true), ("hyper", false)] {
        let cfg = config(&addr.to_string(), &format!("[server]\nhttp1 = \"{engine}\"\n"));
        let p = Proxy::start(&cfg, &up).await;
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n").await.unwrap();
        let out = read_until(&mut s, |o| o.ends_with("0\r\n\r\n")).await;
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n") && out.contains("hello"), "{engine}: {out}");
        // geogate's path passes the body as framed; hyper decodes it and frames it anew.
        assert_eq!(out.contains("5;ext=1\r\n"), extension_kept, "{engine}: {out}");
        p.shutdown().await;
    }
}
