//! Every setting means what it says, at start-up and after a reload: each test sets a key,
//! observes the behaviour it documents, and where the key is reloadable changes it, reloads,
//! and observes the new behaviour. Keys only a restart can apply are refused by name.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const RU: &str = "203.0.113.7";

/// A config with one listener (`client_ip` as given), the admin API on a free port, the
/// shared geo sources and `rest` (policy, rules, limits).
fn config(client_ip: &str, rest: &str) -> String {
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
address = "127.0.0.1:0"

[reload]
watch = false

{GEO_SOURCES}
{rest}
"#
    )
}

const XFF: &str = r#"{ source = "x-forwarded-for", trusted = ["127.0.0.1/32"] }"#;

/// Rewrites the running proxy's config file (with `{upstream}` filled in) and reloads it by
/// the admin API; returns the JSON outcome.
async fn reload_with(p: &Proxy, up: &Upstream, text: &str) -> Value {
    std::fs::write(&p.config_path, text.replace("{upstream}", &up.addr.to_string())).unwrap();
    let req = Request::post("/-/reload").header("host", "admin").body(Full::new(Bytes::new())).unwrap();
    let (_, _, body) = send(p.admin.unwrap(), req).await;
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("reload answer is not JSON ({e}): {body:?}"))
}

/// Raw bytes on a fresh connection; the whole answer once the proxy closes (a connection left
/// open fails the test).
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    raw_closed(addr, request, Duration::from_secs(10)).await
}

fn get_with(path: &str, xff: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: app.example.com\r\nX-Forwarded-For: {xff}\r\n{extra}Connection: close\r\n\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn redirect_status_is_the_one_configured() {
    let up = upstream().await;
    let rules = r#"
[policy]
default = "allow"

[policy.block]
redirect = "https://example.com/unavailable"
redirect_status = 307

[[rule]]
name = "signup"
action = "block"
countries = ["RU"]
paths = ["/signup"]
redirect = "https://example.com/signup-unavailable"
redirect_status = 303

[[rule]]
name = "ru"
action = "block"
countries = ["RU"]
"#;
    let p = Proxy::start(&config(XFF, rules), &up).await;
    let html = "Accept: text/html\r\n";
    let out = exchange(p.addr, &get_with("/signup", RU, html)).await;
    assert!(out.starts_with("HTTP/1.1 303 "), "{out}");
    assert!(out.contains("location: https://example.com/signup-unavailable\r\n"), "{out}");
    let out = exchange(p.addr, &get_with("/x", RU, html)).await;
    assert!(out.starts_with("HTTP/1.1 307 "), "{out}");
    // API clients get the block status, not a redirect.
    let out = exchange(p.addr, &get_with("/x", RU, "Accept: application/json\r\n")).await;
    assert!(out.starts_with("HTTP/1.1 451 "), "{out}");
    p.shutdown().await;
}

#[tokio::test]
async fn unresolved_clients_let_through_still_meet_the_policy() {
    let up = upstream().await;
    let allow = r#"{ source = "x-forwarded-for", trusted = ["127.0.0.1/32"], on_unresolved = "allow" }"#;
    let rules = r#"
[policy]
default = "allow"

[[rule]]
name = "admin-pages"
action = "block"
paths = ["/admin"]

[[rule]]
name = "no-data"
action = "block"
unknown = true
paths = ["/signup"]
"#;
    let p = Proxy::start(&config(allow, rules), &up).await;
    // "garbage" cannot be parsed: the client is unresolved, and `on_unresolved = "allow"`.
    let out = exchange(p.addr, &get_with("/signup", "garbage", "")).await;
    assert!(out.starts_with("HTTP/1.1 451 "), "an `unknown` rule did not see the unresolved client: {out}");
    let out = exchange(p.addr, &get_with("/admin", "garbage", "")).await;
    assert!(out.starts_with("HTTP/1.1 451 "), "a rule without geo criteria skipped the unresolved client: {out}");
    let out = exchange(p.addr, &get_with("/other", "garbage", "")).await;
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    assert!(!out.contains("x-geo-client-ip"), "an unresolved client was named to the upstream: {out}");
    p.shutdown().await;
}

#[tokio::test]
async fn fail_closed_blocks_unresolved_clients_too() {
    let up = upstream().await;
    let text = r#"
[[listener]]
name = "public"
address = "127.0.0.1:0"
client_ip = { source = "x-forwarded-for", trusted = ["127.0.0.1/32"], on_unresolved = "allow" }

[[upstream]]
name = "app"
url = "http://{upstream}"

[admin]
enabled = false

[reload]
watch = false
on_no_data = "fail-closed"

[[source]]
name = "geo"
type = "mmdb"
path = "missing.mmdb"

[policy]
default = "allow"
"#;
    let p = Proxy::start(text, &up).await;
    for xff in ["garbage", RU, "192.0.2.1"] {
        let out = exchange(p.addr, &get_with("/", xff, "")).await;
        assert!(out.starts_with("HTTP/1.1 451 "), "fail-closed let {xff:?} through: {out}");
    }
    p.shutdown().await;
}

#[tokio::test]
async fn max_connections_is_one_cap_for_every_listener() {
    let up = upstream().await;
    let text = config(XFF, "[limits]\nmax_connections = 1\n").replacen(
        "[[upstream]]",
        "[[listener]]\nname = \"second\"\naddress = \"127.0.0.1:0\"\n\n[[upstream]]",
        1,
    );
    let p = Proxy::start(&text, &up).await;
    let second = p.running.as_ref().unwrap().listen_addrs[1];
    // The only permit is held by an open keep-alive connection on the first listener.
    let s1 = TcpStream::connect(p.addr).await.unwrap();
    let (mut tx1, c1) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s1)).await.unwrap();
    let c1 = tokio::spawn(c1);
    let r =
        tx1.send_request(Request::get("/").header("host", "a").body(Full::<Bytes>::default()).unwrap()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let other = tokio::spawn(async move { get(second, "/", &[]).await.0 });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!other.is_finished(), "the second listener served a connection beyond the process-wide cap");
    drop(tx1);
    let _ = c1.await;
    let st = tokio::time::timeout(Duration::from_secs(5), other).await.unwrap().unwrap();
    assert_eq!(st, StatusCode::OK);
    p.shutdown().await;
}

#[tokio::test]
async fn a_reload_applies_limits_to_new_connections() {
    let up = upstream().await;
    let before = config(XFF, "[limits]\nmax_header_bytes = 65536\n");
    let p = Proxy::start(&before, &up).await;
    let big = format!("X-Big: {}\r\n", "a".repeat(20_000));
    let out = exchange(p.addr, &get_with("/", RU, &big)).await;
    assert!(out.starts_with("HTTP/1.1 200 "), "{}", &out[..out.len().min(200)]);
    let outcome = reload_with(&p, &up, &config(XFF, "[limits]\nmax_header_bytes = 8192\n")).await;
    assert_eq!(outcome["result"], "ok", "{outcome}");
    let out = exchange(p.addr, &get_with("/", RU, &big)).await;
    assert!(out.starts_with("HTTP/1.1 431 "), "the reloaded max_header_bytes was not applied: {out}");
    p.shutdown().await;
}

#[tokio::test]
async fn a_reload_applies_the_upstream_connect_timeout() {
    let up = upstream().await;
    // An upstream whose accept queue is full: the kernel drops further SYNs, so a connect
    // hangs until geogate's connect timeout fires.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full = sock.listen(0).unwrap();
    let full_addr = full.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(full_addr)).await {
            fillers.push(s);
        }
    }
    let with = |timeout: &str| {
        config(
            XFF,
            &format!("[limits]\nupstream_connect_timeout = \"{timeout}\"\nupstream_response_timeout = \"60s\"\n"),
        )
        .replace("http://{upstream}", &format!("http://{full_addr}"))
    };
    let p = Proxy::start(&with("60s"), &up).await;
    let outcome = reload_with(&p, &up, &with("300ms")).await;
    assert_eq!(outcome["result"], "ok", "{outcome}");
    let out = exchange(p.addr, &get_with("/", RU, "")).await;
    assert!(out.starts_with("HTTP/1.1 502 "), "the reloaded connect timeout was not applied: {out}");
    drop(fillers);
    p.shutdown().await;
}

fn proxy_v1(src: &str) -> Vec<u8> {
    format!("PROXY TCP4 {src} 127.0.0.1 40000 80\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

#[tokio::test]
async fn a_reload_applies_the_proxy_protocol_trust_list() {
    let up = upstream().await;
    let trusting = config(r#"{ source = "proxy-protocol", trusted = ["127.0.0.1/32"] }"#, "");
    let p = Proxy::start(&trusting, &up).await;
    let out = exchange(p.addr, &proxy_v1(RU)).await;
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    // The operator removes the balancer's address from `trusted` and reloads.
    let outcome = reload_with(&p, &up, &config(r#"{ source = "proxy-protocol", trusted = ["10.0.0.0/8"] }"#, "")).await;
    assert_eq!(outcome["result"], "ok", "{outcome}");
    // Refused: the connection is closed (or reset, since the request was never read) with no
    // answer at all.
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(&proxy_v1(RU)).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the connection was left open");
    assert!(
        out.is_empty(),
        "a PROXY header from a peer no longer trusted was accepted: {}",
        String::from_utf8_lossy(&out)
    );
    p.shutdown().await;
}

#[tokio::test]
async fn keys_only_a_restart_applies_are_refused_by_name() {
    let up = upstream().await;
    let text = config(XFF, "[limits]\nmax_connections = 100\n");
    let p = Proxy::start(&text, &up).await;
    let changed = text
        .replace("max_connections = 100", "max_connections = 5")
        .replace("[reload]\nwatch = false", "[reload]\nwatch = false\ncheck_interval = \"1h\"");
    let outcome = reload_with(&p, &up, &changed).await;
    assert_eq!(outcome["result"], "refused", "{outcome}");
    assert_eq!(outcome["changed"], false);
    let errors = outcome["errors"].to_string();
    assert!(errors.contains("limits.max_connections"), "{errors}");
    assert!(errors.contains("reload.check_interval"), "{errors}");
    // The serving snapshot is untouched, and the refusal is counted.
    let (_, _, body) = get(p.admin.unwrap(), "/metrics", &[]).await;
    let text = String::from_utf8_lossy(&body);
    let refused = text
        .lines()
        .find(|l| l.starts_with("geogate_reloads_total{") && l.contains("result=\"refused\"") && l.contains("admin"))
        .unwrap_or_else(|| panic!("no refused reload counted:\n{text}"));
    assert!(refused.ends_with(" 1"), "{refused}");
    let out = exchange(p.addr, &get_with("/", RU, "")).await;
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    p.shutdown().await;
}

#[tokio::test]
async fn every_start_up_only_key_is_refused_by_name() {
    let up = upstream().await;
    let base = config(XFF, "");
    let p = Proxy::start(&base, &up).await;
    std::fs::write(p.dir.path().join("cache.txt"), "192.0.2.0/24\n").unwrap();
    let admin_line = "[admin]\naddress = \"127.0.0.1:0\"";
    let cases: [(&str, String); 10] = [
        ("server.worker_threads", format!("[server]\nworker_threads = 3\n{base}")),
        ("server.shutdown_grace", format!("[server]\nshutdown_grace = \"1s\"\n{base}")),
        ("listener[0].name", base.replace("name = \"public\"", "name = \"renamed\"")),
        ("listener[0].address", base.replace("address = \"127.0.0.1:0\"\nclient_ip", "address = \"127.0.0.1:1\"\nclient_ip")),
        ("listener", base.replacen("[[upstream]]", "[[listener]]\nname = \"b\"\naddress = \"127.0.0.1:0\"\n\n[[upstream]]", 1)),
        ("admin.address", base.replace(admin_line, "[admin]\nenabled = false")),
        ("reload.watch", base.replace("watch = false", "watch = true")),
        ("reload.debounce", base.replace("watch = false", "watch = false\ndebounce = \"2s\"")),
        ("reload.on_no_data", base.replace("watch = false", "watch = false\non_no_data = \"fail-open\"")),
        (
            "source `remote` (remote source added)",
            format!(
                "{base}\n[[source]]\nname = \"remote\"\ntype = \"list\"\nurl = \"http://127.0.0.1:1/l.txt\"\ncache = \"{}\"\n",
                p.dir.path().join("cache.txt").display()
            ),
        ),
    ];
    for (key, text) in cases {
        let outcome = reload_with(&p, &up, &text).await;
        assert_eq!(outcome["result"], "refused", "{key}: {outcome}");
        let errors = outcome["errors"].as_array().unwrap();
        assert!(errors.iter().any(|e| e.as_str().unwrap().starts_with(key)), "{key} not named: {outcome}");
    }
    // Back to the original text: nothing changed, nothing refused.
    let outcome = reload_with(&p, &up, &base).await;
    assert_eq!(outcome["result"], "unchanged", "{outcome}");
    p.shutdown().await;
}

#[tokio::test]
async fn a_reload_applies_every_request_setting_at_once() {
    let up = upstream().await;
    let rules = |status: u16, tag_name: &str, prefix: &str| {
        format!(
            r#"
[policy]
default = "allow"
tag_headers = {{ country = "{tag_name}" }}

[policy.block]
status = {status}

[[route]]
path_prefix = "{prefix}"
upstream = "other"

[[upstream]]
name = "other"
url = "http://127.0.0.1:1"

[[rule]]
name = "signup"
action = "block"
countries = ["RU"]
paths = ["/signup"]

[[rule]]
name = "tag-ru"
action = "tag"
countries = ["RU"]
tag = ["country"]
"#
        )
    };
    let before = config(XFF, &rules(451, "X-Geo-Country", "/old"));
    let p = Proxy::start(&before, &up).await;
    let answer = |path: &'static str| {
        let addr = p.addr;
        async move { exchange(addr, &get_with(path, RU, "")).await }
    };
    assert!(answer("/signup").await.starts_with("HTTP/1.1 451 "));
    // `other` is a dead address: a request routed there is answered 502.
    assert!(answer("/old/x").await.starts_with("HTTP/1.1 502 "));
    let out = answer("/new/x").await;
    assert!(out.starts_with("HTTP/1.1 200 ") && out.contains("x-geo-country"), "{out}");
    assert!(answer("/docs/a%3Fb").await.starts_with("HTTP/1.1 400 "));
    assert!(answer("/SIGNUP").await.starts_with("HTTP/1.1 451 "));
    let after = config(XFF, &rules(403, "X-Country", "/new"))
        .replace(
            "client_ip = {",
            "client_ip_header = \"X-Client\"\ndefault_host = \"console.example.com\"\n\
             encoded_delimiters = \"allow\"\npass_client_headers = [\"x-real-ip\"]\nclient_ip = {",
        )
        .replace("paths = [\"/signup\"]", "paths = [\"/signup\"]\npath_match = \"strict\"");
    let outcome = reload_with(&p, &up, &after).await;
    assert_eq!(outcome["result"], "ok", "{outcome}");
    // policy.block.status
    assert!(answer("/signup").await.starts_with("HTTP/1.1 403 "), "block status not reloaded");
    // route.path_prefix
    assert!(answer("/new/x").await.starts_with("HTTP/1.1 502 "), "route not reloaded");
    assert!(answer("/old/x").await.starts_with("HTTP/1.1 200 "), "route not reloaded");
    // policy.tag_headers.country and listener.client_ip_header
    let out = answer("/x").await;
    let seen = echoed(&Bytes::from(out.split_once("\r\n\r\n").unwrap().1.to_owned()));
    assert_eq!(header_of(&seen, "x-country"), ["RU"], "{seen:?}");
    assert!(header_of(&seen, "x-geo-country").is_empty(), "{seen:?}");
    assert_eq!(header_of(&seen, "x-client"), [RU]);
    assert!(header_of(&seen, "x-geo-client-ip").is_empty());
    // listener.encoded_delimiters and rule.path_match
    assert!(answer("/docs/a%3Fb").await.starts_with("HTTP/1.1 200 "), "encoded_delimiters not reloaded");
    assert!(answer("/SIGNUP").await.starts_with("HTTP/1.1 200 "), "path_match not reloaded");
    // listener.pass_client_headers
    let out = exchange(p.addr, &get_with("/x", RU, "X-Real-IP: 8.8.8.8\r\n")).await;
    assert!(out.contains("[\"x-real-ip\",\"8.8.8.8\"]"), "pass_client_headers not reloaded: {out}");
    // listener.default_host
    let out = exchange(p.addr, format!("GET /x HTTP/1.0\r\nX-Forwarded-For: {RU}\r\n\r\n").as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 200 ") || out.starts_with("HTTP/1.0 200 "), "{out}");
    assert!(out.contains("[\"host\",\"console.example.com\"]"), "{out}");
    p.shutdown().await;
}

#[tokio::test]
async fn block_responses_take_every_configured_form() {
    let up = upstream().await;
    let page = "<!doctype html><p>Not from here.</p>";
    let rules = r#"
[policy]
default = "allow"

[policy.block]
status = 403
json_body = '{"error":"policy"}'
html_body = "<p>default page</p>"

[[rule]]
name = "signup"
action = "block"
countries = ["RU"]
paths = ["/signup"]
status = 451
json_body = '{"error":"signup_closed"}'
html_file = "blocked.html"

[[rule]]
name = "ru"
action = "block"
countries = ["RU"]
"#;
    let text = config(XFF, rules);
    let p = Proxy::start_with_files(&text, &up, &[("blocked.html", page.as_bytes())]).await;
    let api = "Accept: application/json\r\n";
    let browser = "Accept: text/html,application/xhtml+xml\r\n";
    let out = exchange(p.addr, &get_with("/signup", RU, api)).await;
    assert!(out.starts_with("HTTP/1.1 451 ") && out.ends_with(r#"{"error":"signup_closed"}"#), "{out}");
    assert!(out.contains("content-type: application/json"), "{out}");
    let out = exchange(p.addr, &get_with("/signup", RU, browser)).await;
    assert!(out.starts_with("HTTP/1.1 451 ") && out.ends_with(page), "{out}");
    assert!(out.contains("content-type: text/html"), "{out}");
    // The rule without overrides answers with [policy.block].
    let out = exchange(p.addr, &get_with("/x", RU, api)).await;
    assert!(out.starts_with("HTTP/1.1 403 ") && out.ends_with(r#"{"error":"policy"}"#), "{out}");
    let out = exchange(p.addr, &get_with("/x", RU, browser)).await;
    assert!(out.starts_with("HTTP/1.1 403 ") && out.ends_with("<p>default page</p>"), "{out}");
    assert!(out.contains("x-geogate-rule: ru"), "{out}");
    p.shutdown().await;
}

#[tokio::test]
async fn custom_tag_headers_are_sent_in_subsets_and_forgeries_stripped() {
    let up = upstream().await;
    let rules = r#"
[policy]
default = "allow"
tag_headers = { country = "X-Country", subdivision = "X-Region", restricted = "X-Restricted", rule = "X-Why" }

[[rule]]
name = "crimea"
action = "tag"
subdivisions = ["UA-43"]
tag = ["subdivision", "rule"]
"#;
    let p = Proxy::start(&config(XFF, rules), &up).await;
    let forged = "X-Country: US\r\nX_Region: none\r\nx-restricted: false\r\nX-WHY: forged\r\n";
    let body = |out: &str| echoed(&Bytes::from(out.split_once("\r\n\r\n").unwrap().1.to_owned()));
    // Tagged: only the subset, with geogate's values.
    let out = exchange(p.addr, &get_with("/", "198.51.100.7", forged)).await;
    let h = body(&out);
    assert_eq!(header_of(&h, "x-region"), ["UA-43"], "{h:?}");
    assert_eq!(header_of(&h, "x-why"), ["crimea"], "{h:?}");
    for absent in ["x-country", "x_region", "x-restricted", "x-geo-country", "x-geo-rule"] {
        assert!(header_of(&h, absent).is_empty(), "{absent}: {h:?}");
    }
    // Not tagged: every forged spelling is still removed.
    let out = exchange(p.addr, &get_with("/", "192.0.2.7", forged)).await;
    let h = body(&out);
    for absent in ["x-country", "x_region", "x-restricted", "x-why"] {
        assert!(header_of(&h, absent).is_empty(), "{absent}: {h:?}");
    }
    p.shutdown().await;
}

#[tokio::test]
async fn routes_choose_by_host_and_fall_back_to_default_upstream() {
    let up = upstream().await;
    // `default_upstream` is a top-level key: it precedes the first table.
    let routes = "[[upstream]]\nname = \"dead\"\nurl = \"http://127.0.0.1:1\"\n\n\
                  [[route]]\nhost = \"*.dead.example\"\nupstream = \"dead\"\n\n[admin]";
    let text = format!("default_upstream = \"app\"\n{}", config(XFF, "").replacen("[admin]", routes, 1));
    let p = Proxy::start(&text, &up).await;
    let host = |h: &str| format!("GET / HTTP/1.1\r\nHost: {h}\r\nX-Forwarded-For: {RU}\r\nConnection: close\r\n\r\n");
    let out = exchange(p.addr, host("a.dead.example").as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 502 "), "route by host not taken: {out}");
    let out = exchange(p.addr, host("A.DEAD.EXAMPLE.:8080").as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 502 "), "the router did not read the canonical host: {out}");
    let out = exchange(p.addr, host("dead.example").as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 200 "), "default_upstream not used: {out}");
    p.shutdown().await;
}

#[tokio::test]
async fn fail_open_serves_with_rules_and_no_data() {
    let up = upstream().await;
    let text = r#"
[[listener]]
name = "public"
address = "127.0.0.1:0"
client_ip = { source = "x-forwarded-for", trusted = ["127.0.0.1/32"] }

[[upstream]]
name = "app"
url = "http://{upstream}"

[admin]
enabled = false

[reload]
watch = false
on_no_data = "fail-open"

[[source]]
name = "geo"
type = "mmdb"
path = "missing.mmdb"

[policy]
default = "allow"

[[rule]]
name = "ru"
action = "block"
countries = ["RU"]

[[rule]]
name = "no-data"
action = "tag"
unknown = true
"#;
    let p = Proxy::start(text, &up).await;
    // Every address is unknown: the country rule never matches, the `unknown` rule does.
    let out = exchange(p.addr, &get_with("/", RU, "")).await;
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    assert!(out.contains("[\"x-geo-rule\",\"no-data\"]"), "{out}");
    p.shutdown().await;
}
