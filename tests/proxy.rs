//! End-to-end behaviour of the proxy: real sockets on 127.0.0.1, a real upstream, the real
//! config parser. Each test states the input and the expected outcome.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(client_ip: &str, rules: &str, extra: &str) -> String {
    format!(
        r#"
[[listener]]
name = "public"
address = "127.0.0.1:0"
client_ip = {client_ip}

[[upstream]]
name = "app"
url = "http://{{upstream}}"

[admin]
enabled = false

[reload]
watch = false

{GEO_SOURCES}

[policy]
default = "allow"

{rules}
{extra}
"#
    )
}

const XFF_TRUSTED: &str = r#"{ source = "x-forwarded-for", trusted = ["127.0.0.1/32"] }"#;

const SCENARIO: &str = r#"
[[rule]]
name = "partners"
action = "allow"
lists = ["partners"]

[[rule]]
name = "signup"
action = "block"
countries = ["RU"]
paths = ["/signup", "/api/v1/accounts"]
methods = ["POST"]

[[rule]]
name = "occupied"
action = "block"
subdivisions = ["UA-43"]

[[rule]]
name = "restricted"
action = "tag"
countries = ["RU"]
"#;

#[tokio::test]
async fn block_tag_and_allow_by_route_and_country() {
    let up = upstream().await;
    let p = Proxy::start(&config(XFF_TRUSTED, SCENARIO, ""), &up).await;
    // RU client, POST /signup: blocked with 451, JSON body for an API client.
    let req = Request::post("/signup")
        .header("host", "a")
        .header("x-forwarded-for", "203.0.113.7")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (st, h, body) = send(p.addr, req).await;
    assert_eq!(st, StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
    assert_eq!(h["content-type"], "application/json");
    assert!(String::from_utf8_lossy(&body).contains("unavailable_for_legal_reasons"));
    // Same client, browser: HTML page.
    let req = Request::post("/signup")
        .header("host", "a")
        .header("accept", "text/html")
        .header("x-forwarded-for", "203.0.113.7")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (st, h, _) = send(p.addr, req).await;
    assert_eq!(st, StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    // RU client, GET /dashboard: tagged and forwarded.
    let (st, _, body) = get(p.addr, "/dashboard", &[("x-forwarded-for", "203.0.113.7")]).await;
    assert_eq!(st, StatusCode::OK);
    let h = echoed(&body);
    assert_eq!(header_of(&h, "x-geo-country"), ["RU"]);
    assert_eq!(header_of(&h, "x-geo-restricted"), ["true"]);
    assert_eq!(header_of(&h, "x-geo-rule"), ["restricted"]);
    // Partner range inside RU: allowed untagged, even on sign-up.
    let req = Request::post("/signup")
        .header("host", "a")
        .header("x-forwarded-for", "203.0.113.200")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (st, _, body) = send(p.addr, req).await;
    assert_eq!(st, StatusCode::OK);
    assert!(header_of(&echoed(&body), "x-geo-country").is_empty());
    // Crimea: everything blocked.
    let (st, _, _) = get(p.addr, "/anything", &[("x-forwarded-for", "198.51.100.9")]).await;
    assert_eq!(st, StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
    // DE: allowed, untagged.
    let (st, _, body) = get(p.addr, "/", &[("x-forwarded-for", "192.0.2.1")]).await;
    assert_eq!(st, StatusCode::OK);
    assert!(header_of(&echoed(&body), "x-geo-country").is_empty());
    // Normalised paths cannot dodge the sign-up rule.
    for path in ["//signup", "/./signup", "/x/../signup", "/signup?x=1", "/%73ignup"] {
        let req = Request::post(path)
            .header("host", "a")
            .header("x-forwarded-for", "203.0.113.7")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (st, _, _) = send(p.addr, req).await;
        assert_eq!(st, StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS, "{path}");
    }
    p.shutdown().await;
}

#[tokio::test]
async fn dry_run_rule_is_counted_not_enforced() {
    let up = upstream().await;
    let rules = r#"
[[rule]]
name = "try-ru"
action = "block"
dry_run = true
countries = ["RU"]
"#;
    let p = Proxy::start(&config(XFF_TRUSTED, rules, ""), &up).await;
    let (st, _, _) = get(p.addr, "/", &[("x-forwarded-for", "203.0.113.7")]).await;
    assert_eq!(st, StatusCode::OK);
    let m = p.running.as_ref().unwrap().metrics.render();
    assert!(
        m.lines().any(|l| l.starts_with("geogate_dry_run_matches_total") && l.contains("try-ru") && l.ends_with(" 1")),
        "{m}"
    );
    p.shutdown().await;
}

#[tokio::test]
async fn spoofed_xff_from_untrusted_peer_is_ignored() {
    let up = upstream().await;
    // Only 10.0.0.0/8 is trusted; the test client (127.0.0.1) is not.
    let cfg = config(
        r#"{ source = "x-forwarded-for", trusted = ["10.0.0.0/8"] }"#,
        "[[rule]]\nname = \"ru\"\naction = \"block\"\ncountries = [\"RU\"]\n",
        "",
    );
    let p = Proxy::start(&cfg, &up).await;
    let (st, _, body) = get(p.addr, "/", &[("x-forwarded-for", "203.0.113.7")]).await;
    assert_eq!(st, StatusCode::OK, "the header must not be believed");
    // An untrusted peer's chain is not passed on: the upstream reads only the real peer, so
    // an application reading the leftmost entry cannot be fooled either.
    let h = echoed(&body);
    assert_eq!(header_of(&h, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(header_of(&h, "x-geo-client-ip"), ["127.0.0.1"]);
    p.shutdown().await;
}

#[tokio::test]
async fn xff_walks_right_to_left_over_several_lines() {
    let up = upstream().await;
    let cfg = config(
        r#"{ source = "x-forwarded-for", trusted = ["127.0.0.1/32", "10.0.0.0/8"] }"#,
        "[[rule]]\nname = \"ru\"\naction = \"block\"\ncountries = [\"RU\"]\n",
        "",
    );
    let p = Proxy::start(&cfg, &up).await;
    // Leftmost entry spoofed as DE; the first untrusted from the right is RU: blocked.
    let (st, _, _) =
        get(p.addr, "/", &[("x-forwarded-for", "192.0.2.1, 203.0.113.7"), ("x-forwarded-for", "10.1.1.1")]).await;
    assert_eq!(st, StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
    // Leftmost RU, but the client (first untrusted from the right) is DE: allowed.
    let (st, _, _) =
        get(p.addr, "/", &[("x-forwarded-for", "203.0.113.7"), ("x-forwarded-for", "192.0.2.1, 10.0.0.1")]).await;
    assert_eq!(st, StatusCode::OK);
    // A malformed entry is never skipped to reach one further left: unresolved -> blocked (default).
    let (st, _, _) = get(p.addr, "/", &[("x-forwarded-for", "192.0.2.1, 010.0.0.1")]).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    p.shutdown().await;
}

#[tokio::test]
async fn forwarded_header_is_understood() {
    let up = upstream().await;
    let cfg = config(
        r#"{ source = "forwarded", trusted = ["127.0.0.1/32"] }"#,
        "[[rule]]\nname = \"de\"\naction = \"block\"\ncountries = [\"DE\"]\n",
        "",
    );
    let p = Proxy::start(&cfg, &up).await;
    let (st, _, _) = get(p.addr, "/", &[("forwarded", r#"for="[2001:db8:de::1]:4711";proto=http"#)]).await;
    assert_eq!(st, StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
    let (st, _, _) = get(p.addr, "/", &[("forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43")]).await;
    assert_eq!(st, StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
    let (st, _, _) = get(p.addr, "/", &[("forwarded", "for=unknown")]).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "unknown cannot be resolved: blocked by default");
    p.shutdown().await;
}

#[tokio::test]
async fn forged_tag_headers_are_stripped_and_connection_cannot_strip_ours() {
    let up = upstream().await;
    let p = Proxy::start(&config(XFF_TRUSTED, SCENARIO, ""), &up).await;
    // A DE client forges RU tags in several spellings and asks to strip geogate's headers.
    let (st, _, body) = get(
        p.addr,
        "/",
        &[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-geo-country", "US"),
            ("X_Geo_Country", "US"),
            ("x-geo-restricted", "false"),
            ("connection", "X-Forwarded-For, X-Geo-Country, X-Secret"),
            ("x-secret", "hop"),
            ("keep-alive", "timeout=1"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
        ],
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let h = echoed(&body);
    assert_eq!(header_of(&h, "x-geo-country"), ["RU"], "only geogate's own tag survives: {h:?}");
    assert!(header_of(&h, "x_geo_country").is_empty());
    assert_eq!(header_of(&h, "x-geo-restricted"), ["true"]);
    assert_eq!(header_of(&h, "x-forwarded-for"), ["203.0.113.7, 127.0.0.1"]);
    for hop in ["x-secret", "keep-alive", "te", "proxy-authorization"] {
        assert!(header_of(&h, hop).is_empty(), "{hop} forwarded: {h:?}");
    }
    // Untagged requests are cleaned too.
    let (_, _, body) = get(p.addr, "/", &[("x-forwarded-for", "192.0.2.1"), ("x-geo-country", "RU")]).await;
    assert!(header_of(&echoed(&body), "x-geo-country").is_empty());
    // Hop-by-hop headers of the upstream's response are not passed back.
    let (_, h, _) = get(p.addr, "/", &[]).await;
    assert_eq!(h["x-upstream"], "yes");
    assert!(h.get("keep-alive").is_none());
    p.shutdown().await;
}

#[tokio::test]
async fn ipv4_mapped_peer_matches_ipv4_trust_and_rules() {
    let up = upstream().await;
    let cfg = config(XFF_TRUSTED, "[[rule]]\nname = \"ru\"\naction = \"block\"\ncountries = [\"RU\"]\n", "")
        .replace("address = \"127.0.0.1:0\"", "address = \"[::]:0\"");
    let p = Proxy::start(&cfg, &up).await;
    // Connecting over IPv4 to a dual-stack socket: the peer is ::ffff:127.0.0.1.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], p.addr.port()));
    let (st, _, _) = get(addr, "/", &[("x-forwarded-for", "::ffff:203.0.113.7")]).await;
    assert_eq!(st, StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS, "mapped client must hit the IPv4 rule");
    p.shutdown().await;
}

fn proxy_v1(src: &str) -> Vec<u8> {
    format!("PROXY TCP4 {src} 127.0.0.1 40000 80\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

fn proxy_v2(src: [u8; 4]) -> Vec<u8> {
    let mut v = b"\r\n\r\n\x00\r\nQUIT\n".to_vec();
    v.extend_from_slice(&[0x21, 0x11, 0x00, 12]);
    v.extend_from_slice(&src);
    v.extend_from_slice(&[127, 0, 0, 1, 0x9c, 0x40, 0x00, 0x50]);
    v.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    v
}

#[tokio::test]
async fn proxy_protocol_v1_and_v2_from_trusted_peer() {
    let up = upstream().await;
    let rules = "[[rule]]\nname = \"ru\"\naction = \"block\"\ncountries = [\"RU\"]\n";
    let p = Proxy::start(&config(r#"{ source = "proxy-protocol", trusted = ["127.0.0.1/32"] }"#, rules, ""), &up).await;
    // Each request says `Connection: close`: answered, then closed.
    let out = raw_closed(p.addr, &proxy_v1("203.0.113.7"), Duration::from_secs(5)).await;
    assert!(out.starts_with("HTTP/1.1 451"), "{out}");
    let out = raw_closed(p.addr, &proxy_v1("192.0.2.1"), Duration::from_secs(5)).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let out = raw_closed(p.addr, &proxy_v2([203, 0, 113, 7]), Duration::from_secs(5)).await;
    assert!(out.starts_with("HTTP/1.1 451"), "{out}");
    let out = raw_closed(p.addr, &proxy_v2([192, 0, 2, 1]), Duration::from_secs(5)).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    // No PROXY header on a PROXY listener: closed without an answer.
    let out = raw_closed(p.addr, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Duration::from_secs(5)).await;
    assert_eq!(out, "");
    p.shutdown().await;
}

#[tokio::test]
async fn proxy_protocol_refused_from_untrusted_peer() {
    let up = upstream().await;
    let p = Proxy::start(&config(r#"{ source = "proxy-protocol", trusted = ["10.0.0.0/8"] }"#, "", ""), &up).await;
    let out = raw_closed(p.addr, &proxy_v1("192.0.2.1"), Duration::from_secs(5)).await;
    assert_eq!(out, "", "an untrusted peer's PROXY header must not be read");
    let m = p.running.as_ref().unwrap().metrics.render();
    assert!(m.lines().any(|l| l == "geogate_rejected_total{reason=\"proxy_protocol_untrusted\"} 1"), "{m}");
    p.shutdown().await;
}

#[tokio::test]
async fn websocket_upgrade_is_tunnelled_after_the_verdict() {
    let up = upstream().await;
    let p = Proxy::start(&config(XFF_TRUSTED, SCENARIO, ""), &up).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"ping-through-tunnel").await.unwrap();
    let mut got = Vec::new();
    while got.len() < 19 {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(&got, b"ping-through-tunnel");
    // A blocked client never gets the upgrade: a 451, and the connection stays open as an
    // ordinary keep-alive one.
    let out = raw_open(p.addr, b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX-Forwarded-For: 198.51.100.1\r\n\r\n", Duration::from_secs(2)).await;
    assert!(out.starts_with("HTTP/1.1 451"), "{out}");
    p.shutdown().await;
}

#[tokio::test]
async fn http2_prior_knowledge_is_served_and_tagged() {
    let up = upstream().await;
    let p = Proxy::start(&config(XFF_TRUSTED, SCENARIO, ""), &up).await;
    let s = TcpStream::connect(p.addr).await.unwrap();
    let (mut tx, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(s)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://app.example.com/h2")
        .header("x-forwarded-for", "203.0.113.7")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let h = echoed(&body);
    assert_eq!(header_of(&h, "x-geo-country"), ["RU"]);
    assert_eq!(header_of(&h, "host"), ["app.example.com"]);
    let req = Request::post("http://app.example.com/signup")
        .header("x-forwarded-for", "203.0.113.7")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(tx.send_request(req).await.unwrap().status(), StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
    p.shutdown().await;
}

#[tokio::test]
async fn large_bodies_stream_both_ways() {
    let up = upstream().await;
    let p = Proxy::start(&config(XFF_TRUSTED, "", ""), &up).await;
    const N: usize = 100 * 1024 * 1024;
    // Upload 100 MB generated on the fly; the upstream counts it.
    let s = TcpStream::connect(p.addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::post("/sink")
        .header("host", "a")
        .header("content-length", N.to_string())
        .body(counted_body(N))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(String::from_utf8_lossy(&body), format!("{{\"received\":{N}}}"));
    // Download 100 MB, counted frame by frame (never held whole here either).
    let s = TcpStream::connect(p.addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await.unwrap();
    tokio::spawn(conn);
    let resp = tx
        .send_request(
            Request::get(format!("/stream?bytes={N}")).header("host", "a").body(Full::new(Bytes::new())).unwrap(),
        )
        .await
        .unwrap();
    let mut body = resp.into_body();
    let mut total = 0;
    while let Some(f) = body.frame().await {
        total += f.unwrap().data_ref().map_or(0, |d| d.len());
    }
    assert_eq!(total, N);
    p.shutdown().await;
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_upstream_is_504() {
    let up = upstream().await;
    // Reserve a port and close it: nothing listens there.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let cfg = config(XFF_TRUSTED, "", "[limits]\nupstream_response_timeout = \"1s\"\n")
        .replace("{upstream}", &dead.to_string());
    let p = Proxy::start(&cfg, &up).await;
    let (st, _, body) = get(p.addr, "/", &[]).await;
    assert_eq!(st, StatusCode::BAD_GATEWAY);
    assert!(String::from_utf8_lossy(&body).contains("bad_gateway"));
    p.shutdown().await;

    let cfg = config(XFF_TRUSTED, "", "[limits]\nupstream_response_timeout = \"1s\"\n");
    let p = Proxy::start(&cfg, &up).await;
    let (st, _, _) = get(p.addr, "/slow", &[]).await;
    assert_eq!(st, StatusCode::GATEWAY_TIMEOUT);
    let m = p.running.as_ref().unwrap().metrics.render();
    assert!(
        m.lines().any(|l| l.starts_with("geogate_upstream_errors_total{")
            && l.contains("kind=\"timeout\"")
            && l.ends_with(" 1")),
        "{m}"
    );
    p.shutdown().await;
}

#[tokio::test]
async fn smuggling_shapes_are_refused_and_nothing_is_forwarded() {
    let up = upstream().await;
    let p = Proxy::start(&config(XFF_TRUSTED, "", ""), &up).await;
    let cases: &[&[u8]] = &[
        b"POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /sink HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        b"POST /sink HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"POST /sink HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /sink HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    ];
    for c in cases {
        // A framing error leaves the stream unreadable: answered, then closed.
        let out = raw_closed(p.addr, c, Duration::from_secs(3)).await;
        assert!(
            out.contains("HTTP/1.1 400") || out.starts_with("HTTP/1.1 501"),
            "{:?} -> {out}",
            String::from_utf8_lossy(c)
        );
        assert!(!out.contains("received"), "forwarded: {out}");
    }
    p.shutdown().await;
}

#[tokio::test]
async fn slowloris_is_cut_off_and_header_floods_get_431() {
    let up = upstream().await;
    let p = Proxy::start(
        &config(XFF_TRUSTED, "", "[limits]\nheader_read_timeout = \"1s\"\nmax_header_bytes = 8192\nmax_headers = 20\n"),
        &up,
    )
    .await;
    // Slowloris: a header that never ends.
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ").await.unwrap();
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if s.write_all(b"a").await.is_err() {
                break;
            }
            let mut b = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(200), s.read(&mut b)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => out.extend_from_slice(&b[..n]),
                Err(_) => {}
            }
        }
    })
    .await;
    assert!(r.is_ok(), "slow client was not cut off");
    let out = String::from_utf8_lossy(&out);
    assert!(out.is_empty() || out.starts_with("HTTP/1.1 408"), "{out}");
    // Too large a header block.
    let big = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    let out = raw_closed(p.addr, big.as_bytes(), Duration::from_secs(3)).await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    // Too many headers.
    let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..50 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let out = raw_closed(p.addr, many.as_bytes(), Duration::from_secs(3)).await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    p.shutdown().await;
}

#[tokio::test]
async fn connection_cap_holds_extra_connections_until_one_closes() {
    let up = upstream().await;
    let p = Proxy::start(&config(XFF_TRUSTED, "", "[limits]\nmax_connections = 1\n"), &up).await;
    // The first connection holds the only slot (keep-alive).
    let s1 = TcpStream::connect(p.addr).await.unwrap();
    let (mut tx1, c1) = hyper::client::conn::http1::handshake(TokioIo::new(s1)).await.unwrap();
    let c1 = tokio::spawn(c1);
    let r =
        tx1.send_request(Request::get("/").header("host", "a").body(Full::new(Bytes::new())).unwrap()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The second is not served while the first is open.
    let second = tokio::spawn({
        let addr = p.addr;
        async move { get(addr, "/", &[]).await.0 }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!second.is_finished(), "second connection served beyond the cap");
    drop(tx1);
    let _ = c1.await;
    let st = tokio::time::timeout(Duration::from_secs(5), second).await.unwrap().unwrap();
    assert_eq!(st, StatusCode::OK);
    p.shutdown().await;
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let up = upstream().await;
    let p = Proxy::start(&config(XFF_TRUSTED, "", "[server]\nshutdown_grace = \"10s\"\n"), &up).await;
    let addr = p.addr;
    // /slow takes 3 s; shut down while it is in flight.
    let inflight = tokio::spawn(async move { get(addr, "/slow", &[]).await.0 });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    p.shutdown().await;
    assert_eq!(inflight.await.unwrap(), StatusCode::OK, "in-flight request was dropped");
    assert!(started.elapsed() < Duration::from_secs(10));
    // And nothing listens any more.
    assert!(TcpStream::connect(addr).await.is_err());
}

/// An upstream on 127.0.0.1 that counts the connections it accepts and hands each one to
/// `serve`; returns its address and the counter.
async fn counting_upstream<F, Fut>(serve: F) -> (std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(serve(s));
        }
    });
    (addr, accepted)
}

/// Answers one request and closes the connection without announcing `Connection: close`,
/// the way an upstream's idle timeout looks from the proxy.
async fn answer_once_then_close(mut s: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n").await;
}

/// Answers every request on the connection (keep-alive).
async fn answer_all(s: TcpStream) {
    let svc = hyper::service::service_fn(|_req| async {
        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok\n"))))
    });
    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc).await;
}

#[tokio::test]
async fn upstream_closing_idle_connections_loses_no_request() {
    let up = upstream().await;
    // An upstream that closes each connection after one response: every request still gets
    // its answer, on a new connection each time.
    let (addr, accepted) = counting_upstream(answer_once_then_close).await;
    let cfg = config(XFF_TRUSTED, "", "").replace("{upstream}", &addr.to_string());
    let p = Proxy::start(&cfg, &up).await;
    for i in 0..5 {
        let (st, _, body) = get(p.addr, "/", &[]).await;
        assert_eq!(st, StatusCode::OK, "request {i}");
        assert_eq!(&body[..], b"ok\n");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 5);
    p.shutdown().await;
}

#[tokio::test]
async fn pooled_upstream_connection_serves_many_requests() {
    let (addr, accepted) = counting_upstream(answer_all).await;
    let up = upstream().await;
    let cfg = config(XFF_TRUSTED, "", "").replace("{upstream}", &addr.to_string());
    let p = Proxy::start(&cfg, &up).await;
    for i in 0..20 {
        let (st, _, body) = get(p.addr, "/", &[]).await;
        assert_eq!(st, StatusCode::OK, "request {i}");
        assert_eq!(&body[..], b"ok\n");
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1, "sequential requests share one connection");
    p.shutdown().await;
}
