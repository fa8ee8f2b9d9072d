//! Live reloads end to end: real sockets on 127.0.0.1:0, a real upstream, the real config
//! parser, reloads by the admin API, the file watcher and the remote poller. Each test states
//! its input and the expected outcome; none sleeps for a fixed time where a deadline loop or
//! a readiness signal works.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::fixtures::Fixture;
use geogate::app::{self, Running};
use geogate::config::DEFAULT_JSON_BODY;
use geogate::reload::ConfigSource;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use support::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

// --- helpers -----------------------------------------------------------------------------

const XFF_TRUSTED: &str = r#"{ source = "x-forwarded-for", trusted = ["127.0.0.1/32"] }"#;

/// Writes `bytes` to `path` through a temporary file and a rename, as deploy tools do, so a
/// reload never reads half a file.
fn write_atomic(path: &Path, bytes: impl AsRef<[u8]>) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// POST /-/reload on the admin listener; the status and the JSON outcome.
async fn admin_reload(admin: SocketAddr) -> (StatusCode, Value) {
    let req = Request::post("/-/reload").header("host", "admin").body(Full::new(Bytes::new())).unwrap();
    let (st, _, body) = send(admin, req).await;
    let v = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("reload answer is not JSON ({e}): {body:?}"));
    (st, v)
}

async fn admin_json(admin: SocketAddr, path: &str) -> Value {
    let (st, _, body) = get(admin, path, &[]).await;
    assert_eq!(st, StatusCode::OK, "{path}: {body:?}");
    serde_json::from_slice(&body).unwrap()
}

/// The series of the Prometheus text named `name` that carry every one of `labels`, as
/// (labels text, value).
fn series<'a>(text: &'a str, name: &str, labels: &[(&str, &str)]) -> Vec<(&'a str, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(series, v)| {
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            let all = labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            (n == name && all).then(|| (rest, v.parse::<f64>().unwrap()))
        })
        .collect()
}

/// The sum of the series `name` with `labels`. Panics when there is none: a renamed metric or
/// label must not read as 0.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found = series(text, name, labels);
    assert!(!found.is_empty(), "no series {name}{labels:?} in:\n{text}");
    found.iter().map(|(_, v)| v).sum()
}

/// A counter series that was never incremented (absent, or present at 0: known label values
/// are created at 0). To keep a rename from passing, the family must be exported and every
/// label name in `labels` must occur on one of its series.
fn never_counted(text: &str, name: &str, labels: &[(&str, &str)]) {
    let family = series(text, name, &[]);
    assert!(!family.is_empty(), "no series {name} at all in:\n{text}");
    for (k, _) in labels {
        let key = format!("{k}=\"");
        assert!(family.iter().any(|(l, _)| l.contains(&key)), "{name} has no label {k} in:\n{text}");
    }
    let found = series(text, name, labels);
    assert!(found.iter().all(|(_, v)| *v == 0.0), "{name}{labels:?} was counted: {found:?}");
}

fn generation(p: &Proxy) -> u64 {
    p.running.as_ref().unwrap().current.load().generation
}

fn metrics_text(p: &Proxy) -> String {
    p.running.as_ref().unwrap().metrics.render()
}

/// Polls `check` every 20 ms until it holds or `limit` passes.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One response as the load clients see it.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// Decides whether a reply is right for the client address it was sent for; `Ok` carries a
/// label counted per test (e.g. which snapshot side answered).
type Check = Arc<dyn Fn(&str, &Reply) -> Result<&'static str, String> + Send + Sync>;

/// What the load clients saw.
#[derive(Debug, Default)]
struct LoadReport {
    requests: u64,
    labels: BTreeMap<&'static str, u64>,
    failures: Vec<String>,
}

/// Starts `clients` tasks sending GETs round-robin over `ips` (as X-Forwarded-For) until
/// `stop` is set. Even clients keep one connection alive, odd ones open a connection per
/// request, so both the accept path and long-lived connections cross every swap.
fn start_load(
    addr: SocketAddr,
    clients: usize,
    ips: &'static [&'static str],
    check: Check,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<LoadReport>> {
    (0..clients)
        .map(|c| {
            let check = check.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let keep_alive = c % 2 == 0;
                let mut report = LoadReport::default();
                let mut conn: Option<SendRequest<Full<Bytes>>> = None;
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let ip = ips[i % ips.len()];
                    i += 1;
                    report.requests += 1;
                    let outcome = tokio::time::timeout(Duration::from_secs(5), one_request(addr, &mut conn, ip)).await;
                    let result = match outcome {
                        Err(_) => Err("no answer within 5 s".to_owned()),
                        Ok(Err(e)) => Err(e),
                        Ok(Ok(reply)) => check(ip, &reply),
                    };
                    match result {
                        Ok(label) => *report.labels.entry(label).or_default() += 1,
                        Err(e) => {
                            conn = None;
                            if report.failures.len() < 10 {
                                report.failures.push(format!("{ip}: {e}"));
                            }
                        }
                    }
                    if !keep_alive {
                        conn = None;
                    }
                }
                report
            })
        })
        .collect()
}

async fn one_request(addr: SocketAddr, conn: &mut Option<SendRequest<Full<Bytes>>>, ip: &str) -> Result<Reply, String> {
    if conn.as_ref().is_none_or(|c| c.is_closed()) {
        let s = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
        let (tx, driver) =
            hyper::client::conn::http1::handshake(TokioIo::new(s)).await.map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(driver);
        *conn = Some(tx);
    }
    let tx = conn.as_mut().ok_or("no connection")?;
    tx.ready().await.map_err(|e| format!("connection not ready: {e}"))?;
    let req = Request::get("/api/v1/items")
        .header("host", "app.example.com")
        .header("x-forwarded-for", ip)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = tx.send_request(req).await.map_err(|e| format!("request: {e}"))?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
    Ok(Reply { status: parts.status, headers: parts.headers, body })
}

async fn finish_load(stop: &AtomicBool, tasks: Vec<tokio::task::JoinHandle<LoadReport>>) -> LoadReport {
    stop.store(true, Ordering::Relaxed);
    let mut total = LoadReport::default();
    for t in tasks {
        let r = t.await.unwrap();
        total.requests += r.requests;
        for (k, v) in r.labels {
            *total.labels.entry(k).or_default() += v;
        }
        total.failures.extend(r.failures);
    }
    total
}

/// The headers the upstream received, from a 200's JSON echo; an error if the body is not
/// a complete echo (a truncated or foreign body).
fn upstream_saw(reply: &Reply) -> Result<Vec<(String, String)>, String> {
    let v: Value = serde_json::from_slice(&reply.body)
        .map_err(|e| format!("200 with a body that is not a full echo ({e}): {:?}", reply.body))?;
    if v["path"] != "/api/v1/items" {
        return Err(format!("echo of the wrong path: {v}"));
    }
    Ok(v["headers"]
        .as_array()
        .ok_or("echo without headers")?
        .iter()
        .map(|p| (p[0].as_str().unwrap_or("").to_owned(), p[1].as_str().unwrap_or("").to_owned()))
        .collect())
}

/// A 451 with the configured JSON body, complete, and the deciding rule in `x-geogate-rule`.
fn blocked_by(reply: &Reply) -> Result<String, String> {
    if reply.status != StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS {
        return Err(format!("expected 451, got {}", reply.status));
    }
    if reply.body != DEFAULT_JSON_BODY.as_bytes() {
        return Err(format!("451 with an unexpected body: {:?}", reply.body));
    }
    Ok(reply.headers.get("x-geogate-rule").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned())
}

/// A geogate started from a config file outside the support builder's layout.
struct Gate {
    running: Running,
    shutdown: watch::Sender<bool>,
}

impl Gate {
    async fn start(config_path: &Path) -> Gate {
        let config = geogate::config::load(config_path).unwrap_or_else(|e| panic!("config: {e}"));
        let (shutdown, rx) = watch::channel(false);
        let source = ConfigSource::File { path: config_path.to_path_buf(), listen: None, upstream: None };
        let running = app::start(source, config, rx).await.unwrap_or_else(|e| panic!("start: {e}"));
        Gate { running, shutdown }
    }

    fn addr(&self) -> SocketAddr {
        self.running.listen_addrs[0]
    }

    fn generation(&self) -> u64 {
        self.running.current.load().generation
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

// --- 1. many reloads under load ----------------------------------------------------------

/// A config whose rule set stays the same (so the expected answers do not move) while one
/// harmless setting alternates with `variant`, so every reload really swaps.
fn steady_config(variant: usize) -> String {
    format!(
        r#"
[[listener]]
name = "public"
address = "127.0.0.1:0"
client_ip = {XFF_TRUSTED}

[admin]
# 127.0.0.2: the checker refuses the admin on the same address as a listener, even for port 0.
address = "127.0.0.2:0"

[reload]
watch = false

[[upstream]]
name = "app"
url = "http://{{upstream}}"

[[source]]
name = "de"
type = "list"
entries = ["192.0.2.0/24"]
set = {{ country = "DE" }}

[[source]]
name = "ru"
type = "list"
path = "ru.txt"
set = {{ country = "RU" }}

[policy]
default = "allow"

[[rule]]
name = "block-ru"
action = "block"
countries = ["RU"]

[[rule]]
name = "tag-de"
action = "tag"
countries = ["DE"]

[limits]
max_headers = {}
"#,
        100 + variant % 2
    )
}

const STEADY_IPS: &[&str] = &["203.0.113.7", "192.0.2.1", "8.8.8.8", "203.0.113.250"];

/// 4 clients (2 keep-alive, 2 connection-per-request) send requests without pause while
/// the admin API reloads 60 times, alternating the list file and a config setting so every
/// reload swaps a new snapshot. Expected: every reload answers 200 "ok" with the generation
/// one higher; every response is complete and right (RU 451 with the block body, DE 200
/// tagged, others 200 untagged); not one failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_reloads_under_load_lose_no_request() {
    let up = upstream().await;
    let p = Proxy::start_with_files(&steady_config(0), &up, &[("ru.txt", b"203.0.113.0/24\n")]).await;
    let admin = p.admin.unwrap();
    let check: Check = Arc::new(|ip, reply| match ip {
        "203.0.113.7" | "203.0.113.250" => match blocked_by(reply)?.as_str() {
            "block-ru" => Ok("blocked"),
            other => Err(format!("blocked by {other:?}")),
        },
        _ => {
            if reply.status != StatusCode::OK {
                return Err(format!("expected 200, got {} {:?}", reply.status, reply.body));
            }
            let h = upstream_saw(reply)?;
            let tags = (header_of(&h, "x-geo-country"), header_of(&h, "x-geo-rule"));
            let want: (Vec<&str>, Vec<&str>) =
                if ip == "192.0.2.1" { (vec!["DE"], vec!["tag-de"]) } else { (vec![], vec![]) };
            if tags != want {
                return Err(format!("tags {tags:?}, expected {want:?}"));
            }
            Ok("forwarded")
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(p.addr, 4, STEADY_IPS, check, stop.clone());

    let lists: [&[u8]; 2] = [b"203.0.113.0/24\n", b"203.0.113.0/24\n198.18.0.0/15\n"];
    let started = Instant::now();
    assert_eq!(generation(&p), 1);
    for i in 1..=60usize {
        let gen = i as u64;
        // Odd steps change the list file, even steps the config: both paths reload.
        if i % 2 == 1 {
            write_atomic(&p.dir.path().join("ru.txt"), lists[(i / 2 + 1) % 2]);
        } else {
            write_atomic(&p.config_path, steady_config(i / 2).replace("{upstream}", &up.addr.to_string()));
        }
        let (st, v) = admin_reload(admin).await;
        assert_eq!(st, StatusCode::OK, "reload {i}: {v}");
        assert_eq!(v["result"], "ok", "reload {i}: {v}");
        assert_eq!(v["changed"], true);
        assert_eq!(v["generation"], gen + 1, "reload {i}: {v}");
        // Let some requests cross each snapshot.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let report = finish_load(&stop, load).await;
    assert!(report.failures.is_empty(), "{} failures, first ones: {:#?}", report.failures.len(), report.failures);
    assert_eq!(generation(&p), 61);
    assert!(
        report.requests >= 200 && report.labels.contains_key("blocked") && report.labels.contains_key("forwarded"),
        "too little load to prove anything: {report:?}"
    );
    let m = metrics_text(&p);
    assert_eq!(metric(&m, "geogate_reloads_total", &[("trigger", "admin"), ("result", "ok")]), 60.0);
    assert_eq!(metric(&m, "geogate_snapshot_generation", &[]), 61.0);
    eprintln!("{} requests across 60 reloads in {:?}: {:?}", report.requests, started.elapsed(), report.labels);
    p.shutdown().await;
}

// --- 2. atomicity -------------------------------------------------------------------------

/// Side A and side B differ in BOTH the config (rule names) and the list file (which address
/// is RU), so a response combining one side's policy with the other side's table would show.
fn atomic_config(side: char) -> String {
    format!(
        r#"
[[listener]]
name = "public"
address = "127.0.0.1:0"
client_ip = {XFF_TRUSTED}

[admin]
# 127.0.0.2: the checker refuses the admin on the same address as a listener, even for port 0.
address = "127.0.0.2:0"

[reload]
watch = false

[[upstream]]
name = "app"
url = "http://{{upstream}}"

[[source]]
name = "de"
type = "list"
entries = ["203.0.113.0/24"]
set = {{ country = "DE" }}

[[source]]
name = "ru"
type = "list"
path = "ru.txt"
set = {{ country = "RU" }}

[policy]
default = "allow"

[[rule]]
name = "block-ru-{side}"
action = "block"
countries = ["RU"]

[[rule]]
name = "tag-{side}"
action = "tag"
"#
    )
}

/// Side A: .7 is RU. Side B: .99 is RU. Every other address of the /24 is DE.
const ATOMIC_LISTS: [&str; 2] = ["203.0.113.7/32\n", "203.0.113.99/32\n"];
const ATOMIC_IPS: &[&str] = &["203.0.113.7", "203.0.113.99", "203.0.113.50"];

/// What one snapshot side answers for an address: `Some(rule)` for a 451 by that rule,
/// `None` for a 200 tagged DE by `tag-<side>`.
fn atomic_expectation(side: char, ip: &str) -> Option<String> {
    let ru = match side {
        'a' => "203.0.113.7",
        _ => "203.0.113.99",
    };
    (ip == ru).then(|| format!("block-ru-{side}"))
}

fn atomic_side_of(ip: &str, reply: &Reply) -> Result<char, String> {
    let matches = |side: char| -> Result<bool, String> {
        Ok(match atomic_expectation(side, ip) {
            Some(rule) => reply.status == StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS && blocked_by(reply)? == rule,
            None => {
                reply.status == StatusCode::OK && {
                    let h = upstream_saw(reply)?;
                    header_of(&h, "x-geo-country") == ["DE"]
                        && header_of(&h, "x-geo-rule") == [format!("tag-{side}").as_str()]
                        && header_of(&h, "x-geo-restricted") == ["true"]
                }
            }
        })
    };
    match (matches('a')?, matches('b')?) {
        (true, false) => Ok('a'),
        (false, true) => Ok('b'),
        (true, true) => Ok('-'),
        (false, false) => Err(format!(
            "answer from neither side: {} rule={:?} body={:?}",
            reply.status,
            reply.headers.get("x-geogate-rule"),
            reply.body
        )),
    }
}

/// The config (rule names) and the list (which address is RU) flip together 60 times, each
/// flip written atomically and then reloaded through the admin API, while 4 clients query
/// the flipping addresses and `/-/explain` is polled. Expected: every proxied response is
/// exactly side A's answer or side B's (a 451 names the block rule of the side whose table
/// made the address RU; a 200 carries the DE tag and the tag rule of the same side), both
/// sides are seen, and every explain answer's generation parity matches its rule and data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_response_comes_from_one_snapshot() {
    let up = upstream().await;
    let p = Proxy::start_with_files(&atomic_config('a'), &up, &[("ru.txt", ATOMIC_LISTS[0].as_bytes())]).await;
    let admin = p.admin.unwrap();
    let check: Check = Arc::new(|ip, reply| {
        Ok(match atomic_side_of(ip, reply)? {
            'a' => "side a",
            'b' => "side b",
            _ => "either",
        })
    });
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(p.addr, 4, ATOMIC_IPS, check, stop.clone());
    // Explain reads one snapshot too: generation 1, 3, 5... is side A, 2, 4, 6... side B.
    let explain_stop = stop.clone();
    let explainer = tokio::spawn(async move {
        let mut seen = 0u32;
        while !explain_stop.load(Ordering::Relaxed) {
            let v = admin_json(admin, "/-/explain?ip=203.0.113.7").await;
            let side = if v["generation"].as_u64().unwrap() % 2 == 1 { 'a' } else { 'b' };
            let (rule, country) = match side {
                'a' => ("block-ru-a", "RU"),
                _ => ("tag-b", "DE"),
            };
            assert_eq!((v["rule"].as_str(), v["data"]["country"].as_str()), (Some(rule), Some(country)), "{v}");
            seen += 1;
        }
        seen
    });

    let up_addr = up.addr.to_string();
    for i in 1..=60usize {
        let side = if i % 2 == 1 { 'b' } else { 'a' };
        write_atomic(&p.config_path, atomic_config(side).replace("{upstream}", &up_addr));
        write_atomic(&p.dir.path().join("ru.txt"), ATOMIC_LISTS[i % 2]);
        let (st, v) = admin_reload(admin).await;
        assert_eq!((st, v["result"].as_str()), (StatusCode::OK, Some("ok")), "flip {i}: {v}");
        assert_eq!(v["generation"], i as u64 + 1);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let report = finish_load(&stop, load).await;
    let explained = explainer.await.unwrap();
    assert!(report.failures.is_empty(), "mixed or failed responses: {:#?}", report.failures);
    assert!(
        report.labels.get("side a").is_some_and(|&n| n > 10) && report.labels.get("side b").is_some_and(|&n| n > 10),
        "both sides must be seen under load: {report:?}"
    );
    assert!(explained > 10, "explain polled only {explained} times");
    p.shutdown().await;
}

// --- 3. failed and refused reloads --------------------------------------------------------

fn mmdb_config(extra: &str) -> String {
    format!(
        r#"
[[listener]]
name = "public"
address = "127.0.0.1:0"
client_ip = {XFF_TRUSTED}

[admin]
# 127.0.0.2: the checker refuses the admin on the same address as a listener, even for port 0.
address = "127.0.0.2:0"

[reload]
watch = false
max_network_drop_percent = 20.0
{extra}

[[upstream]]
name = "app"
url = "http://{{upstream}}"

[[source]]
name = "geo"
type = "mmdb"
path = "geo.mmdb"

[policy]
default = "allow"

[[rule]]
name = "block-ru"
action = "block"
countries = ["RU"]
"#
    )
}

/// The answers that must not move while reloads fail: RU blocked, DE and no-data allowed.
async fn assert_original_answers(p: &Proxy) {
    for (ip, want) in [
        ("5.1.1.1", StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS),
        ("80.0.0.1", StatusCode::OK),
        ("8.8.8.8", StatusCode::OK),
    ] {
        let (st, _, _) = get(p.addr, "/", &[("x-forwarded-for", ip)]).await;
        assert_eq!(st, want, "{ip}");
    }
}

/// A truncated database, a config with a syntax error and one with an unknown key, each
/// followed by POST /-/reload. Expected for each: 422 with `result = "failed"` and the errors
/// in JSON (naming the file / the key), the generation and fingerprint unchanged, the same
/// answers served, and `geogate_reloads_total{result="failed"}` one higher. Restoring the
/// files then reloads as "unchanged".
#[tokio::test]
async fn corrupt_database_and_bad_config_keep_the_old_snapshot() {
    let up = upstream().await;
    let db = Fixture::FlatCountry.bytes();
    let cfg = mmdb_config("");
    let p = Proxy::start_with_files(&cfg, &up, &[("geo.mmdb", &db)]).await;
    let admin = p.admin.unwrap();
    let before = admin_json(admin, "/-/snapshot").await;
    assert_original_answers(&p).await;
    let db_path = p.dir.path().join("geo.mmdb");
    let cfg_text = cfg.replace("{upstream}", &up.addr.to_string());

    let bad_config_syntax = cfg_text.replace("[reload]", "[reload");
    let bad_config_key = cfg_text.replace("watch = false", "watch = false\nwatch_harder = true");
    type Step<'a> = (&'a str, &'a Path, Vec<u8>, &'a str);
    let steps: [Step; 3] = [
        ("truncated database", &db_path, db[..db.len() / 2].to_vec(), "geo.mmdb"),
        ("syntax error", &p.config_path, bad_config_syntax.into_bytes(), "geogate.toml"),
        ("unknown key", &p.config_path, bad_config_key.into_bytes(), "watch_harder"),
    ];
    for (n, (what, path, content, mentioned)) in steps.into_iter().enumerate() {
        let original = std::fs::read(path).unwrap();
        write_atomic(path, &content);
        let (st, v) = admin_reload(admin).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {v}");
        assert_eq!(v["result"], "failed", "{what}: {v}");
        assert_eq!(v["changed"], false);
        assert_eq!(v["generation"], 1, "{what}: {v}");
        let errors = v["errors"].as_array().unwrap();
        assert!(!errors.is_empty(), "{what}: no errors in {v}");
        assert!(errors.iter().any(|e| e.as_str().unwrap().contains(mentioned)), "{what}: {mentioned} not in {v}");
        assert_eq!(generation(&p), 1, "{what}");
        let now = admin_json(admin, "/-/snapshot").await;
        assert_eq!(now["fingerprint"], before["fingerprint"], "{what}");
        assert_eq!(now["table"], before["table"], "{what}");
        assert_original_answers(&p).await;
        let m = metrics_text(&p);
        assert_eq!(metric(&m, "geogate_reloads_total", &[("result", "failed")]), (n + 1) as f64, "{what}\n{m}");
        write_atomic(path, original);
    }
    // Back to the original files: nothing to swap.
    let (st, v) = admin_reload(admin).await;
    assert_eq!((st, v["result"].as_str(), v["generation"].as_u64()), (StatusCode::OK, Some("unchanged"), Some(1)));
    p.shutdown().await;
}

/// The guard: the database is replaced by a valid one with about half the networks (the
/// IPv4-only build of the same fixture) while `max_network_drop_percent = 20`. Expected: 422
/// `result = "refused"` naming the guard, generation unchanged, the same answers, and
/// `geogate_reloads_total{result="refused"}` = 1. With the limit raised to 100 (off) in the
/// config, the same database then loads (generation 2).
#[tokio::test]
async fn database_that_lost_too_many_networks_is_refused() {
    let up = upstream().await;
    let cfg = mmdb_config("");
    let p = Proxy::start_with_files(&cfg, &up, &[("geo.mmdb", &Fixture::FlatCountry.bytes())]).await;
    let admin = p.admin.unwrap();
    let before = admin_json(admin, "/-/snapshot").await;
    let count =
        |s: &Value| s["sources"][0]["networks_v4"].as_u64().unwrap() + s["sources"][0]["networks_v6"].as_u64().unwrap();
    let old_networks = count(&before);

    write_atomic(&p.dir.path().join("geo.mmdb"), Fixture::FlatCountryV4Only.bytes());
    let (st, v) = admin_reload(admin).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["result"], "refused", "{v}");
    assert_eq!(v["generation"], 1);
    let error = v["errors"][0].as_str().unwrap();
    assert!(error.contains("max_network_drop_percent") && error.contains("\"geo\""), "{error}");
    assert_eq!(generation(&p), 1);
    assert_eq!(count(&admin_json(admin, "/-/snapshot").await), old_networks);
    assert_original_answers(&p).await;
    let m = metrics_text(&p);
    assert_eq!(metric(&m, "geogate_reloads_total", &[("trigger", "admin"), ("result", "refused")]), 1.0, "{m}");
    assert_eq!(metric(&m, "geogate_reloads_total", &[("result", "ok")]), 1.0, "only the startup: {m}");

    // Turning the guard off lets the smaller database in.
    write_atomic(&p.config_path, mmdb_config("").replace("20.0", "100.0").replace("{upstream}", &up.addr.to_string()));
    let (st, v) = admin_reload(admin).await;
    assert_eq!((st, v["result"].as_str(), v["generation"].as_u64()), (StatusCode::OK, Some("ok"), Some(2)), "{v}");
    assert!(count(&admin_json(admin, "/-/snapshot").await) < old_networks);
    assert_original_answers(&p).await;
    p.shutdown().await;
}

/// A flat database of 16,384 IPv4 /24s under 10.0.0.0/10, every `ru_every`-th one RU and the
/// rest DE: enough tree for a compile to outlast many 100 µs steps.
fn many_networks(ru_every: u32) -> Vec<u8> {
    let mut w = mmdb_writer::Writer::builder("Geogate-Test-Flat").ip_version(mmdb_writer::IpVersion::V6).build();
    for i in 0..16_384u32 {
        let net = ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(0x0a00_0000 | (i << 8)), 24).unwrap();
        let country = if i % ru_every == 0 { "RU" } else { "DE" };
        w.insert(ipnet::IpNet::V4(net), &serde_json::json!({ "country_code": country })).unwrap();
    }
    w.to_bytes().unwrap()
}

/// `reload.compile_cpu_share`: at 0.02 a reload's compile rests (the answer's `rested_ms`, a
/// part of `duration_ms`); the same change with the share set to 1.0 in the same reload's
/// configuration rests not at all, so the setting applies to the reload that reads it.
#[tokio::test]
async fn a_reload_compiles_at_the_configured_cpu_share() {
    let up = upstream().await;
    let cfg = mmdb_config("compile_cpu_share = 0.02");
    let p = Proxy::start_with_files(&cfg, &up, &[("geo.mmdb", &many_networks(2))]).await;
    let admin = p.admin.unwrap();
    let db = p.dir.path().join("geo.mmdb");

    write_atomic(&db, many_networks(3));
    let (st, v) = admin_reload(admin).await;
    assert_eq!((st, v["result"].as_str()), (StatusCode::OK, Some("ok")), "{v}");
    let (rested, took) = (v["rested_ms"].as_f64().unwrap(), v["duration_ms"].as_f64().unwrap());
    assert!(rested > 0.0 && rested < took, "rested {rested} ms of {took} ms: {v}");

    let flat_out = cfg.replace("0.02", "1.0").replace("{upstream}", &up.addr.to_string());
    write_atomic(&p.config_path, flat_out);
    write_atomic(&db, many_networks(2));
    let (st, v) = admin_reload(admin).await;
    assert_eq!((st, v["result"].as_str(), v["generation"].as_u64()), (StatusCode::OK, Some("ok"), Some(3)), "{v}");
    assert_eq!(v["rested_ms"].as_f64(), Some(0.0), "{v}");
    p.shutdown().await;
}

// --- 4. file watching ------------------------------------------------------------------------

fn watched_config(rule: &str, upstream: SocketAddr, extra_list: &Path) -> String {
    format!(
        r#"
[[listener]]
name = "public"
address = "127.0.0.1:0"
client_ip = {XFF_TRUSTED}

[admin]
enabled = false

[reload]
watch = true
debounce = "100ms"

[[upstream]]
name = "app"
url = "http://{upstream}"

[[source]]
name = "ru"
type = "list"
path = "ru.txt"
set = {{ country = "RU" }}

[[source]]
name = "by"
type = "list"
path = "{}"
set = {{ country = "BY" }}

[policy]
default = "allow"

[[rule]]
name = "{rule}"
action = "block"
countries = ["RU"]

[[rule]]
name = "block-by"
action = "block"
countries = ["BY"]
"#,
        extra_list.display()
    )
}

/// Builds one ConfigMap "timestamp" directory and returns its name.
fn configmap_version(dir: &Path, name: &str, config: &str, ru: &str) -> String {
    let v = dir.join(name);
    std::fs::create_dir(&v).unwrap();
    std::fs::write(v.join("geogate.toml"), config).unwrap();
    std::fs::write(v.join("ru.txt"), ru).unwrap();
    name.to_owned()
}

async fn status_for(addr: SocketAddr, ip: &str) -> (StatusCode, Option<String>) {
    let (st, h, _) = get(addr, "/", &[("x-forwarded-for", ip)]).await;
    (st, h.get("x-geogate-rule").and_then(|v| v.to_str().ok()).map(str::to_owned))
}

/// A Kubernetes-style ConfigMap mount: `geogate.toml -> ..data/geogate.toml`,
/// `ru.txt -> ..data/ru.txt`, `..data -> ..2026_01_01`, with `[reload] watch = true,
/// debounce = "100ms"`. The update is made as the kubelet does: a new timestamp directory, a
/// new `..data_tmp` symlink, renamed over `..data`. Expected within 10 s: a new generation
/// with the new rule name and the new list (203.0.113.7 allowed, 198.51.100.7 blocked by
/// `block-v2`). Then a plain `mv` of a new file over the watched BY list (outside the mount):
/// another generation, 192.0.2.1 blocked by `block-by`.
#[tokio::test]
async fn configmap_symlink_swap_and_mv_over_a_list_are_picked_up() {
    let up = upstream().await;
    let mount = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let by_list = other.path().join("by.txt");
    std::fs::write(&by_list, "10.9.9.0/24\n").unwrap();
    let m = mount.path();
    let v1 = configmap_version(m, "..2026_01_01", &watched_config("block-v1", up.addr, &by_list), "203.0.113.0/24\n");
    std::os::unix::fs::symlink(&v1, m.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/geogate.toml", m.join("geogate.toml")).unwrap();
    std::os::unix::fs::symlink("..data/ru.txt", m.join("ru.txt")).unwrap();

    let gate = Gate::start(&m.join("geogate.toml")).await;
    assert_eq!(
        status_for(gate.addr(), "203.0.113.7").await,
        (StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS, Some("block-v1".into()))
    );
    assert_eq!(status_for(gate.addr(), "198.51.100.7").await.0, StatusCode::OK);

    // The kubelet's atomic update.
    let v2 = configmap_version(m, "..2026_01_02", &watched_config("block-v2", up.addr, &by_list), "198.51.100.0/24\n");
    std::os::unix::fs::symlink(&v2, m.join("..data_tmp")).unwrap();
    std::fs::rename(m.join("..data_tmp"), m.join("..data")).unwrap();
    std::fs::remove_dir_all(m.join(&v1)).unwrap();
    eventually(Duration::from_secs(10), "the ConfigMap swap is reloaded", || async { gate.generation() >= 2 }).await;
    assert_eq!(status_for(gate.addr(), "203.0.113.7").await.0, StatusCode::OK);
    assert_eq!(
        status_for(gate.addr(), "198.51.100.7").await,
        (StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS, Some("block-v2".into()))
    );
    assert_eq!(status_for(gate.addr(), "192.0.2.1").await.0, StatusCode::OK);

    // `mv` of a new file over the list.
    let after_swap = gate.generation();
    let staged = other.path().join("by.txt.new");
    std::fs::write(&staged, "192.0.2.0/24\n").unwrap();
    std::fs::rename(&staged, &by_list).unwrap();
    eventually(Duration::from_secs(10), "the moved list is reloaded", || async { gate.generation() > after_swap })
        .await;
    assert_eq!(
        status_for(gate.addr(), "192.0.2.1").await,
        (StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS, Some("block-by".into()))
    );
    let text = gate.running.metrics.render();
    assert!(metric(&text, "geogate_reloads_total", &[("trigger", "watch"), ("result", "ok")]) >= 2.0, "{text}");
    never_counted(&text, "geogate_reloads_total", &[("result", "failed")]);
}

// --- 5. remote sources -----------------------------------------------------------------------

/// A tiny HTTP server for one list with an ETag; answers 304 to a matching If-None-Match.
#[derive(Default)]
struct ListServer {
    body: Mutex<(String, String)>,
    full: AtomicU32,
    not_modified: AtomicU32,
}

impl ListServer {
    fn set(&self, body: &str, etag: &str) {
        *self.body.lock().unwrap() = (body.to_owned(), etag.to_owned());
    }

    async fn start(self: &Arc<Self>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let me = self.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let me = me.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let me = me.clone();
                        async move { Ok::<_, Infallible>(me.answer(&req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc).await;
                });
            }
        });
        addr
    }

    fn answer(&self, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let (body, etag) = self.body.lock().unwrap().clone();
        let mut r = if req.uri().path() != "/list.txt" {
            Response::builder().status(StatusCode::NOT_FOUND).body(Full::new(Bytes::new()))
        } else if req.headers().get("if-none-match").is_some_and(|v| v.as_bytes() == etag.as_bytes()) {
            self.not_modified.fetch_add(1, Ordering::SeqCst);
            Response::builder().status(StatusCode::NOT_MODIFIED).body(Full::new(Bytes::new()))
        } else {
            self.full.fetch_add(1, Ordering::SeqCst);
            Response::builder().body(Full::new(Bytes::from(body)))
        }
        .unwrap();
        r.headers_mut().insert("etag", etag.parse().unwrap());
        r
    }
}

/// A list source `url = "http://127.0.0.1:PORT/list.txt"` with `cache` and
/// `poll_interval = "200ms"`, served with an ETag. Expected: the first fetch at start-up
/// writes the cache (203.0.113.7 blocked at generation 1); later polls carry If-None-Match
/// and get 304: no swap, no remote reload counted; a 200 with the same bytes under a new ETag
/// is no change either; a new body with a new ETag swaps within 10 s (generation 2,
/// 198.51.100.7 blocked, 203.0.113.7 allowed, cache rewritten, one remote "ok" reload).
#[tokio::test]
async fn remote_list_is_polled_with_etag_and_swaps_only_on_change() {
    let up = upstream().await;
    let server = Arc::new(ListServer::default());
    server.set("203.0.113.0/24\n", "\"v1\"");
    let list_addr = server.start().await;
    let cfg = format!(
        r#"
[[listener]]
name = "public"
address = "127.0.0.1:0"
client_ip = {XFF_TRUSTED}

[admin]
enabled = false

[reload]
watch = false

[[upstream]]
name = "app"
url = "http://{{upstream}}"

[[source]]
name = "remote-ru"
type = "list"
url = "http://{list_addr}/list.txt"
cache = "cache/remote-ru.txt"
poll_interval = "200ms"
timeout = "2s"
set = {{ country = "RU" }}

[policy]
default = "allow"

[[rule]]
name = "block-ru"
action = "block"
countries = ["RU"]
"#
    );
    let p = Proxy::start(&cfg, &up).await;
    let cache = p.dir.path().join("cache/remote-ru.txt");
    assert_eq!(std::fs::read_to_string(&cache).unwrap(), "203.0.113.0/24\n", "the start-up fetch fills the cache");
    assert_eq!(server.full.load(Ordering::SeqCst), 1);
    assert_eq!(status_for(p.addr, "203.0.113.7").await.0, StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);

    // Conditional polls: 304, nothing reloads.
    eventually(Duration::from_secs(10), "three 304 answers", || async {
        server.not_modified.load(Ordering::SeqCst) >= 3
    })
    .await;
    assert_eq!(generation(&p), 1);
    never_counted(&metrics_text(&p), "geogate_reloads_total", &[("trigger", "remote")]);

    // Same bytes, new validator: fetched in full, but no change.
    server.set("203.0.113.0/24\n", "\"v1-again\"");
    eventually(Duration::from_secs(10), "the same body fetched again", || async {
        server.full.load(Ordering::SeqCst) >= 2
    })
    .await;
    let seen = server.not_modified.load(Ordering::SeqCst);
    eventually(Duration::from_secs(10), "the new ETag sent back", || async {
        server.not_modified.load(Ordering::SeqCst) > seen
    })
    .await;
    assert_eq!(generation(&p), 1);
    never_counted(&metrics_text(&p), "geogate_reloads_total", &[("trigger", "remote"), ("result", "ok")]);

    // New content: swapped.
    server.set("198.51.100.0/24\n", "\"v2\"");
    eventually(Duration::from_secs(10), "the new list swapped in", || async { generation(&p) == 2 }).await;
    assert_eq!(std::fs::read_to_string(&cache).unwrap(), "198.51.100.0/24\n");
    assert_eq!(status_for(p.addr, "198.51.100.7").await.0, StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
    assert_eq!(status_for(p.addr, "203.0.113.7").await.0, StatusCode::OK);
    let seen = server.not_modified.load(Ordering::SeqCst);
    eventually(Duration::from_secs(10), "polls settle on 304 again", || async {
        server.not_modified.load(Ordering::SeqCst) >= seen + 2
    })
    .await;
    assert_eq!(generation(&p), 2, "a 304 after the swap changes nothing");
    let m = metrics_text(&p);
    assert_eq!(metric(&m, "geogate_reloads_total", &[("trigger", "remote"), ("result", "ok")]), 1.0, "{m}");
    p.shutdown().await;
}
