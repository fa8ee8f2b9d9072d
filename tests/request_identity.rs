//! One path, one host, one client address: what geogate judges is what the upstream reads.
//!
//! End to end over HTTP/1.0, HTTP/1.1 (raw bytes, so odd forms reach the proxy unchanged) and
//! h2 (prior knowledge): path forms a framework routes to the sign-up action are blocked;
//! forms with no single reading are refused with 400 and counted; the host judged is the
//! only `Host` forwarded; and every client-address header the upstream receives names the
//! address geogate decided.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use support::*;
use tokio::net::TcpStream;

/// RU client 203.0.113.7, DE client 192.0.2.7 (see `GEO_SOURCES`), via trusted XFF.
const RU: &str = "203.0.113.7";
const DE: &str = "192.0.2.7";

fn config(listener_extra: &str) -> String {
    format!(
        r#"
[[listener]]
name = "public"
address = "127.0.0.1:0"
client_ip = {{ source = "x-forwarded-for", trusted = ["127.0.0.1/32"] }}
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
name = "console-signup"
action = "block"
countries = ["DE"]
hosts = ["console.example.com"]
paths = ["/signup"]
methods = ["POST"]

[[rule]]
name = "public-pages"
action = "allow"
countries = ["RU"]
paths = ["/public"]

[[rule]]
name = "signup"
action = "block"
countries = ["RU"]
paths = ["/signup", "/api/v1/accounts"]
methods = ["POST"]
"#
    )
}

/// A raw HTTP/1.x exchange on a fresh connection: status and body. The request must make the
/// server close (HTTP/1.0, or `Connection: close`); a connection left open fails the test
/// instead of passing as an empty answer.
async fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let text = raw_closed(addr, request, Duration::from_secs(10)).await;
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

fn post(path: &str, client: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: app.example.com\r\nX-Forwarded-For: {client}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// The headers the upstream saw, from the echo in a raw response body.
fn seen(body: &str) -> Vec<(String, String)> {
    echoed(&Bytes::from(body.to_owned()))
}

async fn rejected(p: &Proxy, reason: &str) -> f64 {
    let admin = p.admin.unwrap();
    let (status, _, body) = get(admin, "/metrics", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8_lossy(&body);
    let series = format!("geogate_rejected_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no series {series} in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

async fn h2(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let s = TcpStream::connect(addr).await.unwrap();
    let (tx, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(s)).await.unwrap();
    tokio::spawn(conn);
    tx
}

#[tokio::test]
async fn paths_frameworks_route_to_signup_are_blocked_and_other_resources_forwarded() {
    let up = upstream().await;
    let p = Proxy::start(&config(""), &up).await;
    for path in [
        "/signup",
        "/signup.json",
        "/SIGNUP.JSON",
        "/api/v1/accounts.json",
        "/api/v1/accounts.xml",
        "/signup.",
        "/signup%20",
        "/signup%20/",
        "/signup;jsessionid=1",
        "/%EF%BD%93ignup",
        "/%C5%BFignup",
        "/x/..%2fsignup",
        "/signup/..",
        "/signup/%2e%2e/public",
        "/api/v1/accounts/../x",
    ] {
        let (status, _) = exchange(p.addr, &post(path, RU)).await;
        assert_eq!(status, 451, "POST {path} from RU was not blocked");
    }
    for path in ["/signups", "/signup-help", "/api/v1/accountsettings", "/api/v1/accounts2", "/signupx.json"] {
        let (status, body) = exchange(p.addr, &post(path, RU)).await;
        assert_eq!(status, 200, "POST {path} from RU was not forwarded: {body}");
        assert!(body.contains(&format!("\"path\":\"{path}\"")), "{body}");
    }
    p.shutdown().await;
}

#[tokio::test]
async fn allow_rules_read_the_path_strictly() {
    let up = upstream().await;
    let p = Proxy::start(&config(""), &up).await;
    // `public-pages` allows RU on /public; the sign-up block below it must still see what
    // the allow rule does not cover. /public.json and /PUBLIC are not /public to every
    // framework, so the allow rule leaves them to the rules below (here: the default).
    let (status, _) = exchange(p.addr, &post("/public/signup", RU)).await;
    assert_eq!(status, 200);
    let (status, _) = exchange(p.addr, &post("/public/../signup", RU)).await;
    assert_eq!(status, 451, "an allow rule covered a path that reads as /signup");
    let (status, _) = exchange(p.addr, &post("/public%2f..%2fsignup.json", RU)).await;
    assert_eq!(status, 451);
    // Normalised, this is /public; a router that keeps dot segments reads it below /signup.
    // Not every reading is /public, so the allow rule does not cover it.
    let (status, _) = exchange(p.addr, &post("/signup/%2e%2e/public", RU)).await;
    assert_eq!(status, 451, "an allow rule covered a path some framework routes to /signup");
    p.shutdown().await;
}

#[tokio::test]
async fn ambiguous_paths_are_refused_counted_and_never_forwarded() {
    let up = upstream().await;
    let p = Proxy::start(&config(""), &up).await;
    let cases = [
        ("/signup%00", "path_control"),
        ("/signup%0a", "path_control"),
        ("/signup%0d%0a", "path_control"),
        ("/signup%09", "path_control"),
        ("/signup%2500", "path_control"),
        ("/signup%23x", "path_encoded_delimiter"),
        ("/signup%3F", "path_encoded_delimiter"),
        ("/%c0%afsignup", "path_invalid_utf8"),
        ("/signup%ff", "path_invalid_utf8"),
        ("/x%ef%bc%8fsignup", "path_ambiguous_unicode"),
    ];
    for (path, _) in cases {
        // From DE, whom no rule blocks here: the refusal comes before policy.
        let (status, body) = exchange(p.addr, &post(path, DE)).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(!body.contains("\"headers\""), "{path} reached the upstream");
    }
    assert_eq!(rejected(&p, "path_control").await, 5.0);
    assert_eq!(rejected(&p, "path_encoded_delimiter").await, 2.0);
    assert_eq!(rejected(&p, "path_invalid_utf8").await, 2.0);
    assert_eq!(rejected(&p, "path_ambiguous_unicode").await, 1.0);
    // HTTP/1.0 and h2 take the same path.
    let (status, _) = exchange(
        p.addr,
        format!("GET /signup%00 HTTP/1.0\r\nHost: a.example\r\nX-Forwarded-For: {DE}\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status, 400);
    let mut tx = h2(p.addr).await;
    let req =
        Request::get("http://app.example.com/signup%0a").header("x-forwarded-for", DE).body(Full::default()).unwrap();
    assert_eq!(tx.send_request(req).await.unwrap().status(), StatusCode::BAD_REQUEST);
    assert_eq!(rejected(&p, "path_control").await, 7.0);
    p.shutdown().await;
}

#[tokio::test]
async fn encoded_delimiters_pass_where_the_listener_allows_them_and_still_cannot_dodge() {
    let up = upstream().await;
    let p = Proxy::start(&config(r#"encoded_delimiters = "allow""#), &up).await;
    let (status, body) = exchange(p.addr, &post("/docs/a%3Fb", DE)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("/docs/a%3Fb"), "forwarded path changed: {body}");
    let (status, _) = exchange(p.addr, &post("/signup%3Fx", RU)).await;
    assert_eq!(status, 451, "a decoded ? let /signup dodge the block");
    p.shutdown().await;
}

#[tokio::test]
async fn the_host_judged_is_the_only_host_forwarded() {
    let up = upstream().await;
    let p = Proxy::start(&config(r#"default_host = "Console.Example.com""#), &up).await;
    let req = |line: &str, hosts: &str| {
        format!("{line}\r\n{hosts}X-Forwarded-For: {DE}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes()
    };
    // Absolute-form: its authority replaces Host, for the verdict and for the upstream.
    let (status, body) =
        exchange(p.addr, &req("POST http://other.example.com/signup HTTP/1.1", "Host: console.example.com\r\n")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header_of(&seen(&body), "host"), ["other.example.com"]);
    let (status, _) =
        exchange(p.addr, &req("POST http://console.example.com/signup HTTP/1.1", "Host: other.example.com\r\n")).await;
    assert_eq!(status, 451);
    // Canonical form: case, trailing dot; the port is kept.
    let (status, body) = exchange(p.addr, &req("GET /x HTTP/1.1", "Host: Console.Example.COM.:8080\r\n")).await;
    assert_eq!(status, 200);
    assert_eq!(header_of(&seen(&body), "host"), ["console.example.com:8080"]);
    assert_eq!(header_of(&seen(&body), "x-forwarded-host"), ["console.example.com:8080"]);
    let (status, _) = exchange(p.addr, &req("POST /signup HTTP/1.1", "Host: CONSOLE.example.com.\r\n")).await;
    assert_eq!(status, 451);
    // Refused: two Host lines, an encoded or invalid host, HTTP/1.1 without Host.
    for (line, hosts, reason) in [
        ("POST /signup HTTP/1.1", "Host: other.example.com\r\nHost: console.example.com\r\n", "host_multiple"),
        ("POST /signup HTTP/1.1", "Host: console%2eexample.com\r\n", "host_invalid"),
        ("POST /signup HTTP/1.1", "Host: console.example.com:\r\n", "host_invalid"),
        ("POST /signup HTTP/1.1", "", "host_missing"),
    ] {
        let before = rejected(&p, reason).await;
        let (status, body) = exchange(p.addr, &req(line, hosts)).await;
        assert_eq!(status, 400, "{hosts:?}: {body}");
        assert_eq!(rejected(&p, reason).await, before + 1.0, "{hosts:?}");
    }
    // HTTP/1.0 without Host: judged and forwarded under the listener's default host.
    let (status, _) = exchange(p.addr, &req("POST /signup HTTP/1.0", "")).await;
    assert_eq!(status, 451, "default_host was not judged");
    let (status, body) = exchange(p.addr, &req("GET /x HTTP/1.0", "")).await;
    assert_eq!(status, 200);
    assert_eq!(header_of(&seen(&body), "host"), ["console.example.com"]);
    p.shutdown().await;

    // Without a default host, a request with no host at all is refused.
    let p = Proxy::start(&config(""), &up).await;
    let (status, _) = exchange(p.addr, &req("GET /x HTTP/1.0", "")).await;
    assert_eq!(status, 400);
    assert_eq!(rejected(&p, "host_missing").await, 1.0);
    p.shutdown().await;
}

#[tokio::test]
async fn h2_host_and_authority_must_agree() {
    let up = upstream().await;
    let p = Proxy::start(&config(""), &up).await;
    let mut tx = h2(p.addr).await;
    let req = Request::post("http://console.example.com/signup")
        .header("host", "other.example.com")
        .header("x-forwarded-for", DE)
        .body(Full::default())
        .unwrap();
    assert_eq!(tx.send_request(req).await.unwrap().status(), StatusCode::BAD_REQUEST);
    assert_eq!(rejected(&p, "host_conflict").await, 1.0);
    let req =
        Request::post("http://Console.Example.com/signup").header("x-forwarded-for", DE).body(Full::default()).unwrap();
    assert_eq!(tx.send_request(req).await.unwrap().status(), StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
    let req = Request::get("http://console.example.com/x").header("x-forwarded-for", DE).body(Full::default()).unwrap();
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(header_of(&echoed(&body), "host"), ["console.example.com"]);
    p.shutdown().await;
}

#[tokio::test]
async fn every_client_address_header_names_the_decided_client() {
    let up = upstream().await;
    let p = Proxy::start(&config(""), &up).await;
    let forged = "X-Real-IP: 8.8.8.8\r\nTrue-Client-IP: 8.8.8.8\r\nCF-Connecting-IP: 8.8.8.8\r\n\
                  Fastly-Client-IP: 8.8.8.8\r\nX-Client-IP: 8.8.8.8\r\nX-Cluster-Client-IP: 8.8.8.8\r\n\
                  X_Real_IP: 8.8.8.8\r\nX-Geo-Client-IP: 8.8.8.8\r\nForwarded: for=8.8.8.8\r\n";
    for version in ["HTTP/1.0", "HTTP/1.1"] {
        // The client claims 8.8.8.8 on the left of the chain; the trusted hop says 203.0.113.7.
        let request = format!(
            "GET /x {version}\r\nHost: app.example.com\r\n{forged}X-Forwarded-For: 8.8.8.8, {RU}\r\nConnection: close\r\n\r\n"
        );
        let (status, body) = exchange(p.addr, request.as_bytes()).await;
        assert_eq!(status, 200, "{body}");
        let h = seen(&body);
        assert_eq!(header_of(&h, "x-geo-client-ip"), [RU], "{version}");
        assert_eq!(header_of(&h, "x-forwarded-for"), [format!("{RU}, 127.0.0.1")], "{version}");
        assert_eq!(
            header_of(&h, "forwarded"),
            [format!("for={RU}, for=127.0.0.1;host=\"app.example.com\";proto=http")]
        );
        for name in [
            "x-real-ip",
            "x_real_ip",
            "true-client-ip",
            "cf-connecting-ip",
            "fastly-client-ip",
            "x-client-ip",
            "x-cluster-client-ip",
        ] {
            assert!(header_of(&h, name).is_empty(), "{version}: {name} reached the upstream: {h:?}");
        }
    }
    let mut tx = h2(p.addr).await;
    let req = Request::get("http://app.example.com/x")
        .header("x-forwarded-for", format!("8.8.8.8, {RU}"))
        .header("x-real-ip", "8.8.8.8")
        .header("forwarded", "for=8.8.8.8")
        .body(Full::default())
        .unwrap();
    let body = tx.send_request(req).await.unwrap().into_body().collect().await.unwrap().to_bytes();
    let h = echoed(&body);
    assert_eq!(header_of(&h, "x-geo-client-ip"), [RU]);
    assert_eq!(header_of(&h, "x-forwarded-for"), [format!("{RU}, 127.0.0.1")]);
    assert!(header_of(&h, "x-real-ip").is_empty());
    p.shutdown().await;
}

#[tokio::test]
async fn passed_and_renamed_client_headers_are_configurable_per_listener() {
    let up = upstream().await;
    let p = Proxy::start(
        &config(
            r#"client_ip_header = "X-Client-Address"
pass_client_headers = ["cf-connecting-ip"]"#,
        ),
        &up,
    )
    .await;
    let request = format!(
        "GET /x HTTP/1.1\r\nHost: app.example.com\r\nCF-Connecting-IP: 8.8.8.8\r\nX-Real-IP: 8.8.8.8\r\nX-Client-Address: 8.8.8.8\r\nX-Forwarded-For: {DE}\r\nConnection: close\r\n\r\n"
    );
    let (_, body) = exchange(p.addr, request.as_bytes()).await;
    let h = seen(&body);
    assert_eq!(header_of(&h, "cf-connecting-ip"), ["8.8.8.8"]);
    assert_eq!(header_of(&h, "x-client-address"), [DE]);
    assert!(header_of(&h, "x-real-ip").is_empty());
    assert!(header_of(&h, "x-geo-client-ip").is_empty());
    p.shutdown().await;
}
