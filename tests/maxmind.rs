//! MaxMind downloads against a local stand-in of MaxMind's download service: basic auth,
//! `Last-Modified`/`If-Modified-Since`, a published SHA-256, a redirect to another host,
//! and the ways it fails (bad credentials, 429 quota, 5xx, corrupt archives, checksum
//! mismatches, archives without a database). Nothing leaves 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use common::fixtures::Fixture;
use geogate::config::{Location, MaxMindSource, RemoteSource, SourceKind};
use geogate::reload::maxmind::{self, MaxMindError};
use geogate::reload::remote::Fetched;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use support::*;
use tokio::net::TcpListener;

const EDITION: &str = "GeoLite2-City";
const ACCOUNT: u64 = 123456;
const KEY: &str = "mm-test-KEY-5f2c9a";
/// base64("123456:mm-test-KEY-5f2c9a")
const BASIC: &str = "Basic MTIzNDU2Om1tLXRlc3QtS0VZLTVmMmM5YQ==";
const RELEASE_1: &str = "Tue, 01 Dec 2026 10:00:00 GMT";
const RELEASE_2: &str = "Fri, 04 Dec 2026 10:00:00 GMT";

/// How the stand-in answers.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Ok,
    Unauthorized,
    /// 429, with `Retry-After: n` if given.
    Quota(Option<u64>),
    ServerError,
    /// The archive is not a gzip stream (its checksum is right).
    CorruptArchive,
    /// The checksum file publishes another archive's digest.
    WrongChecksum,
    /// A valid tar.gz holding no `.mmdb`.
    NoMmdb,
}

/// MaxMind's download service, as far as geogate sees it.
struct StandIn {
    mode: Mutex<Mode>,
    mmdb: Mutex<Vec<u8>>,
    last_modified: Mutex<&'static str>,
    /// Archive GETs answer with a redirect to `http://localhost:port/presigned/...`.
    redirect: AtomicBool,
    addr: OnceLock<SocketAddr>,
    heads: AtomicU32,
    archive_gets: AtomicU32,
    checksum_gets: AtomicU32,
    presigned_gets: AtomicU32,
    /// An `Authorization` header reached the presigned (other-host) URL.
    auth_leaked: AtomicBool,
    /// A request to the service arrived without the right credentials.
    bad_auth: AtomicU32,
}

impl StandIn {
    async fn start(mode: Mode, mmdb: Vec<u8>) -> Arc<Self> {
        let me = Arc::new(Self {
            mode: Mutex::new(mode),
            mmdb: Mutex::new(mmdb),
            last_modified: Mutex::new(RELEASE_1),
            redirect: AtomicBool::new(false),
            addr: OnceLock::new(),
            heads: AtomicU32::new(0),
            archive_gets: AtomicU32::new(0),
            checksum_gets: AtomicU32::new(0),
            presigned_gets: AtomicU32::new(0),
            auth_leaked: AtomicBool::new(false),
            bad_auth: AtomicU32::new(0),
        });
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        me.addr.set(l.local_addr().unwrap()).unwrap();
        let server = me.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let server = server.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let server = server.clone();
                        async move { Ok::<_, Infallible>(server.answer(&req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc).await;
                });
            }
        });
        me
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr.get().unwrap())
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn requests(&self) -> u32 {
        self.heads.load(Ordering::SeqCst)
            + self.archive_gets.load(Ordering::SeqCst)
            + self.checksum_gets.load(Ordering::SeqCst)
    }

    fn archive(&self) -> Vec<u8> {
        match *self.mode.lock().unwrap() {
            Mode::CorruptArchive => b"\x1f\x8b\x08\x00 this is not a gzip stream".to_vec(),
            Mode::NoMmdb => targz(&[("GeoLite2-City_20261201/LICENSE.txt", b"licence")]),
            _ => targz(&[
                ("GeoLite2-City_20261201/COPYRIGHT.txt", b"copyright"),
                ("GeoLite2-City_20261201/GeoLite2-City.mmdb", &self.mmdb.lock().unwrap()),
                ("GeoLite2-City_20261201/LICENSE.txt", b"licence"),
            ]),
        }
    }

    fn answer(&self, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let reply = |status: StatusCode, body: Vec<u8>| {
            Response::builder().status(status).body(Full::new(Bytes::from(body))).unwrap()
        };
        let path = req.uri().path();
        if path.starts_with("/presigned/") {
            self.presigned_gets.fetch_add(1, Ordering::SeqCst);
            if req.headers().contains_key("authorization") {
                self.auth_leaked.store(true, Ordering::SeqCst);
            }
            let lm = *self.last_modified.lock().unwrap();
            return Response::builder()
                .header("last-modified", lm)
                .body(Full::new(Bytes::from(self.archive())))
                .unwrap();
        }
        if path != format!("/geoip/databases/{EDITION}/download") {
            return reply(StatusCode::NOT_FOUND, b"no such edition".to_vec());
        }
        let suffix = req.uri().query().unwrap_or("");
        let is_head = req.method() == http::Method::HEAD;
        match (is_head, suffix) {
            (true, _) => self.heads.fetch_add(1, Ordering::SeqCst),
            (false, "suffix=tar.gz") => self.archive_gets.fetch_add(1, Ordering::SeqCst),
            (false, "suffix=tar.gz.sha256") => self.checksum_gets.fetch_add(1, Ordering::SeqCst),
            _ => return reply(StatusCode::BAD_REQUEST, b"bad suffix".to_vec()),
        };
        let mode = *self.mode.lock().unwrap();
        if req.headers().get("authorization").and_then(|v| v.to_str().ok()) != Some(BASIC) || mode == Mode::Unauthorized
        {
            self.bad_auth.fetch_add(1, Ordering::SeqCst);
            return reply(StatusCode::UNAUTHORIZED, b"Invalid account ID or license key".to_vec());
        }
        match mode {
            Mode::Quota(retry) => {
                let mut r = Response::builder().status(StatusCode::TOO_MANY_REQUESTS);
                if let Some(s) = retry {
                    r = r.header("retry-after", s.to_string());
                }
                return r.body(Full::new(Bytes::from_static(b"Daily download limit reached"))).unwrap();
            }
            Mode::ServerError => return reply(StatusCode::INTERNAL_SERVER_ERROR, b"oops".to_vec()),
            _ => {}
        }
        let lm = *self.last_modified.lock().unwrap();
        let ims = req.headers().get("if-modified-since").and_then(|v| v.to_str().ok());
        if ims == Some(lm) && suffix == "suffix=tar.gz" {
            return Response::builder().status(StatusCode::NOT_MODIFIED).body(Full::new(Bytes::new())).unwrap();
        }
        let archive = self.archive();
        if suffix == "suffix=tar.gz.sha256" {
            let digest =
                if mode == Mode::WrongChecksum { Sha256::digest(b"another archive") } else { Sha256::digest(&archive) };
            let line = format!("{}  GeoLite2-City_20261201.tar.gz\n", hex(&digest));
            return reply(StatusCode::OK, line.into_bytes());
        }
        if !is_head && self.redirect.load(Ordering::SeqCst) {
            let port = self.addr.get().unwrap().port();
            return Response::builder()
                .status(StatusCode::FOUND)
                .header(
                    "location",
                    format!("http://localhost:{port}/presigned/GeoLite2-City.tar.gz?X-Amz-Signature=abc"),
                )
                .body(Full::new(Bytes::new()))
                .unwrap();
        }
        let body = if is_head { Vec::new() } else { archive };
        Response::builder().header("last-modified", lm).body(Full::new(Bytes::from(body))).unwrap()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn targz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        tar.append_data(&mut h, name, *data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

/// A GeoLite2-City-shaped database where 5.0.0.0/8 is DE (the fixture says RU).
fn release_2_mmdb() -> Vec<u8> {
    let mut w = mmdb_writer::Writer::builder("GeoLite2-City")
        .ip_version(mmdb_writer::IpVersion::V6)
        .ipv4_aliasing(mmdb_writer::Ipv4Aliasing::Enabled)
        .build_epoch(UNIX_EPOCH + Duration::from_secs(1_800_000_000))
        .build();
    for net in ["5.0.0.0/8", "80.0.0.0/8"] {
        w.insert(net.parse::<ipnet::IpNet>().unwrap(), &serde_json::json!({"country": {"iso_code": "DE"}})).unwrap();
    }
    w.to_bytes().unwrap()
}

/// The `[[source]]` of a MaxMind database served by `server`.
fn source_toml(server: &StandIn, cache: &Path, key_file: &Path, cap: u32) -> String {
    format!(
        r#"
[[source]]
name = "geo"
type = "mmdb"
cache = "{cache}"
poll_interval = "200ms"
timeout = "5s"
maxmind = {{ edition = "{EDITION}", account_id = {ACCOUNT}, license_key_file = "{key}", url = "{url}", max_downloads_per_day = {cap} }}
"#,
        cache = cache.display(),
        key = key_file.display(),
        url = server.url(),
    )
}

fn proxy_toml(source: &str) -> String {
    format!(
        r#"
[[listener]]
name = "public"
address = "127.0.0.1:0"
client_ip = {{ source = "x-forwarded-for", trusted = ["127.0.0.1/32"] }}

[[upstream]]
name = "app"
url = "http://{{upstream}}"

[admin]
enabled = false

[reload]
watch = false
# Release 2 is a two-network database: the drop guard would (rightly) refuse it.
max_network_drop_percent = 100
{source}
[policy]
default = "allow"

[[rule]]
name = "ru"
action = "block"
countries = ["RU"]
"#
    )
}

/// A scratch directory with the key file; the cache path inside it.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("maxmind.key"), format!("{KEY}\n")).unwrap();
        Self { dir }
    }
    fn key(&self) -> PathBuf {
        self.dir.path().join("maxmind.key")
    }
    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache").join("GeoLite2-City.mmdb")
    }
    /// The checked source settings, through the real config parser.
    fn source(&self, server: &StandIn, cap: u32) -> (RemoteSource, MaxMindSource) {
        let text =
            proxy_toml(&source_toml(server, &self.cache(), &self.key(), cap)).replace("{upstream}", "127.0.0.1:9");
        let config = geogate::config::parse(&text, None).unwrap_or_else(|e| panic!("{e}"));
        assert!(!format!("{config:?}").contains(KEY), "the licence key is in the config's Debug output");
        match &config.sources[0].kind {
            SourceKind::Mmdb { location: Location::Remote(r), .. } => (r.clone(), *r.maxmind.clone().unwrap()),
            other => panic!("not a remote mmdb: {other:?}"),
        }
    }
    /// Every file in the cache directory but the cache and its state: leftovers.
    fn leftovers(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.cache().parent().unwrap()) else { return Vec::new() };
        dir.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "GeoLite2-City.mmdb" && n != "GeoLite2-City.mmdb.maxmind.json")
            .collect()
    }
    fn state(&self) -> maxmind::State {
        maxmind::State::load(&self.cache())
    }
}

fn assert_no_key(e: &MaxMindError) {
    let shown = format!("{e} / {e:?}");
    assert!(!shown.contains(KEY), "the licence key is in an error: {shown}");
    assert!(!shown.contains("MTIzNDU2"), "the basic-auth value is in an error: {shown}");
}

#[tokio::test]
async fn a_release_is_verified_extracted_and_then_revalidated_with_a_free_head() {
    let server = StandIn::start(Mode::Ok, Fixture::Geoip2City.bytes()).await;
    server.redirect.store(true, Ordering::SeqCst);
    let s = Scratch::new();
    let (r, mm) = s.source(&server, 6);

    assert_eq!(maxmind::fetch(&r, &mm).await.unwrap(), Fetched::Updated);
    assert_eq!(std::fs::read(s.cache()).unwrap(), Fixture::Geoip2City.bytes(), "the cache is not the archive's mmdb");
    assert_eq!(server.checksum_gets.load(Ordering::SeqCst), 1);
    assert_eq!(server.archive_gets.load(Ordering::SeqCst), 1);
    assert_eq!(server.presigned_gets.load(Ordering::SeqCst), 1, "the redirect was not followed");
    assert!(!server.auth_leaked.load(Ordering::SeqCst), "the credentials were sent to the redirect's other host");
    assert_eq!(server.bad_auth.load(Ordering::SeqCst), 0, "a request went without the right basic auth");
    assert_eq!(s.state().last_modified.as_deref(), Some(RELEASE_1));
    assert_eq!(s.state().downloads.len(), 2, "the two GETs are not counted");
    assert!(s.leftovers().is_empty(), "temporary files left: {:?}", s.leftovers());

    // Unchanged: one HEAD with If-Modified-Since, answered 304, and no GET.
    assert_eq!(maxmind::fetch(&r, &mm).await.unwrap(), Fetched::NotModified);
    assert_eq!(server.heads.load(Ordering::SeqCst), 1);
    assert_eq!(server.archive_gets.load(Ordering::SeqCst) + server.checksum_gets.load(Ordering::SeqCst), 2);
    assert_eq!(s.state().downloads.len(), 2, "a HEAD was counted as a download");

    // A new release: downloaded again.
    *server.mmdb.lock().unwrap() = release_2_mmdb();
    *server.last_modified.lock().unwrap() = RELEASE_2;
    assert_eq!(maxmind::fetch(&r, &mm).await.unwrap(), Fetched::Updated);
    assert_eq!(std::fs::read(s.cache()).unwrap(), release_2_mmdb());
    assert_eq!(s.state().last_modified.as_deref(), Some(RELEASE_2));
}

#[tokio::test]
async fn refused_credentials_keep_the_cache_and_never_show_the_key() {
    let server = StandIn::start(Mode::Unauthorized, Fixture::Geoip2City.bytes()).await;
    let s = Scratch::new();
    let (r, mm) = s.source(&server, 6);
    std::fs::create_dir_all(s.cache().parent().unwrap()).unwrap();
    std::fs::write(s.cache(), b"the cached copy").unwrap();
    let e = maxmind::fetch(&r, &mm).await.unwrap_err();
    assert_eq!(e.result(), "auth", "{e}");
    assert!(e.to_string().contains("123456"), "the error should name the account: {e}");
    assert_no_key(&e);
    assert_eq!(std::fs::read(s.cache()).unwrap(), b"the cached copy");
    assert_eq!(e.backoff(Duration::from_millis(200), 1), maxmind::AUTH_BACKOFF, "an auth failure must not retry soon");

    // A missing key file is an auth failure that names the file, not a crash.
    std::fs::remove_file(s.key()).unwrap();
    let e = maxmind::fetch(&r, &mm).await.unwrap_err();
    assert_eq!(e.result(), "auth");
    assert!(e.to_string().contains("maxmind.key"), "{e}");
}

#[tokio::test]
async fn a_checksum_mismatch_is_refused_and_the_cache_untouched() {
    let server = StandIn::start(Mode::WrongChecksum, Fixture::Geoip2City.bytes()).await;
    let s = Scratch::new();
    let (r, mm) = s.source(&server, 6);
    std::fs::create_dir_all(s.cache().parent().unwrap()).unwrap();
    std::fs::write(s.cache(), b"the cached copy").unwrap();
    let e = maxmind::fetch(&r, &mm).await.unwrap_err();
    assert_eq!(e.result(), "checksum", "{e}");
    assert!(e.to_string().contains("SHA-256 mismatch"), "{e}");
    assert_no_key(&e);
    assert_eq!(std::fs::read(s.cache()).unwrap(), b"the cached copy");
    assert!(s.leftovers().is_empty(), "temporary files left: {:?}", s.leftovers());
    assert_eq!(s.state().last_modified, None, "a refused archive's Last-Modified was remembered");
}

#[tokio::test]
async fn corrupt_archives_and_archives_without_a_database_are_refused() {
    for (mode, what) in [(Mode::CorruptArchive, "corrupt archive"), (Mode::NoMmdb, "no .mmdb")] {
        let server = StandIn::start(mode, Fixture::Geoip2City.bytes()).await;
        let s = Scratch::new();
        let (r, mm) = s.source(&server, 6);
        std::fs::create_dir_all(s.cache().parent().unwrap()).unwrap();
        std::fs::write(s.cache(), b"the cached copy").unwrap();
        let e = maxmind::fetch(&r, &mm).await.unwrap_err();
        assert_eq!(e.result(), "corrupt", "{mode:?}: {e}");
        assert!(e.to_string().contains(what), "{mode:?}: {e}");
        assert_eq!(std::fs::read(s.cache()).unwrap(), b"the cached copy", "{mode:?}");
        assert!(s.leftovers().is_empty(), "{mode:?}: temporary files left: {:?}", s.leftovers());
    }
    // A database that does not open is refused too.
    let server = StandIn::start(Mode::Ok, b"not a database at all".to_vec()).await;
    let s = Scratch::new();
    let (r, mm) = s.source(&server, 6);
    let e = maxmind::fetch(&r, &mm).await.unwrap_err();
    assert_eq!(e.result(), "corrupt", "{e}");
    assert!(!s.cache().exists(), "an unreadable database was installed");
}

#[tokio::test]
async fn quota_429_waits_for_retry_after_even_across_a_restart() {
    let server = StandIn::start(Mode::Quota(Some(1)), Fixture::Geoip2City.bytes()).await;
    let s = Scratch::new();
    let (r, mm) = s.source(&server, 6);
    let e = maxmind::fetch(&r, &mm).await.unwrap_err();
    assert_eq!(e.result(), "quota", "{e}");
    assert_eq!(e.backoff(r.poll_interval, 1), Duration::from_secs(1), "Retry-After was not honoured");
    let asked = server.requests();
    // Within the wait, even a fresh attempt (as after a restart: the state is re-read from
    // disk) does not reach the service.
    let e = maxmind::fetch(&r, &mm).await.unwrap_err();
    assert_eq!(e.result(), "quota");
    assert_eq!(server.requests(), asked, "the service was asked again inside Retry-After");
    assert!(s.state().quota_until.is_some(), "the quota wait is not persisted");

    // Once the wait is over, the download goes through.
    server.set(Mode::Ok);
    let started = Instant::now();
    loop {
        match maxmind::fetch(&r, &mm).await {
            Ok(f) => {
                assert_eq!(f, Fetched::Updated);
                break;
            }
            Err(e) => assert_eq!(e.result(), "quota", "{e}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10), "still waiting after 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Without Retry-After, the wait is hours.
    let server = StandIn::start(Mode::Quota(None), Fixture::Geoip2City.bytes()).await;
    let s = Scratch::new();
    let (r, mm) = s.source(&server, 6);
    let e = maxmind::fetch(&r, &mm).await.unwrap_err();
    assert_eq!(e.backoff(r.poll_interval, 1), maxmind::QUOTA_BACKOFF);
}

#[tokio::test]
async fn the_daily_cap_stops_downloads_and_survives_a_restart() {
    let server = StandIn::start(Mode::Ok, Fixture::Geoip2City.bytes()).await;
    let s = Scratch::new();
    let (r, mm) = s.source(&server, 2);
    assert_eq!(maxmind::fetch(&r, &mm).await.unwrap(), Fetched::Updated);
    // A new release the same day: two more GETs would exceed the cap of 2.
    *server.last_modified.lock().unwrap() = RELEASE_2;
    let gets = server.archive_gets.load(Ordering::SeqCst) + server.checksum_gets.load(Ordering::SeqCst);
    let e = maxmind::fetch(&r, &mm).await.unwrap_err();
    assert_eq!(e.result(), "capped", "{e}");
    assert!(e.backoff(r.poll_interval, 1) > Duration::from_secs(23 * 3600), "the cap should wait for the day to pass");
    assert_eq!(
        server.archive_gets.load(Ordering::SeqCst) + server.checksum_gets.load(Ordering::SeqCst),
        gets,
        "a capped source downloaded"
    );
    assert_eq!(std::fs::read(s.cache()).unwrap(), Fixture::Geoip2City.bytes());
    // The count is on disk: a restart (a fresh load of the state) is still capped.
    assert_eq!(s.state().downloads.len(), 2);
    assert_eq!(maxmind::fetch(&r, &mm).await.unwrap_err().result(), "capped");
}

fn metric(p: &Proxy, line_start: &str) -> f64 {
    let text = p.running.as_ref().unwrap().metrics.render();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 5.1.2.3 is RU in the fixture and DE in release 2; 80.1.2.3 is DE in both.
async fn ru_blocked(p: &Proxy) -> bool {
    let (st, _, _) = get(p.addr, "/", &[("x-forwarded-for", "5.1.2.3")]).await;
    let (de, _, _) = get(p.addr, "/", &[("x-forwarded-for", "80.1.2.3")]).await;
    assert_eq!(de, StatusCode::OK);
    st == StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS
}

#[tokio::test]
async fn a_failing_service_never_stops_a_process_with_a_cache_and_a_release_reloads() {
    let up = upstream().await;
    let server = StandIn::start(Mode::ServerError, Fixture::Geoip2City.bytes()).await;
    let s = Scratch::new();
    std::fs::create_dir_all(s.cache().parent().unwrap()).unwrap();
    std::fs::write(s.cache(), Fixture::Geoip2City.bytes()).unwrap();
    // The cache came from release 1, so polls start with a HEAD.
    std::fs::write(
        s.cache().with_file_name("GeoLite2-City.mmdb.maxmind.json"),
        format!(r#"{{"last_modified":"{RELEASE_1}","downloads":[],"quota_until":null}}"#),
    )
    .unwrap();
    let p = Proxy::start(&proxy_toml(&source_toml(&server, &s.cache(), &s.key(), 6)), &up).await;
    assert!(ru_blocked(&p).await, "the cached database does not serve");
    let failed = r#"geogate_source_downloads_total{result="http_error",source="geo"}"#;
    until("a failed poll is counted", || metric(&p, failed) >= 2.0).await;
    assert!(metric(&p, r#"geogate_source_download_failures{source="geo"}"#) >= 2.0);
    assert!(ru_blocked(&p).await, "serving changed while the service failed");

    // The service recovers with a new release: downloaded, reloaded, served.
    *server.mmdb.lock().unwrap() = release_2_mmdb();
    *server.last_modified.lock().unwrap() = RELEASE_2;
    server.set(Mode::Ok);
    until("the new release is downloaded", || {
        metric(&p, r#"geogate_source_downloads_total{result="ok",source="geo"}"#) >= 1.0
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while ru_blocked(&p).await {
        assert!(Instant::now() < deadline, "release 2 (5.0.0.0/8 = DE) is not served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(&p, r#"geogate_source_download_failures{source="geo"}"#), 0.0);
    p.shutdown().await;

    // Refused credentials at start-up: still serves from the cache, and does not retry soon.
    server.set(Mode::Unauthorized);
    let before = server.requests();
    let p = Proxy::start(&proxy_toml(&source_toml(&server, &s.cache(), &s.key(), 6)), &up).await;
    assert!(!ru_blocked(&p).await, "the cached release 2 does not serve");
    until("the refused poll is counted", || {
        metric(&p, r#"geogate_source_downloads_total{result="auth",source="geo"}"#) >= 1.0
    })
    .await;
    // Polls are every 200 ms; after an auth failure the next is hours away.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(server.requests(), before + 1, "refused credentials were retried at the poll interval");
    p.shutdown().await;
}

#[tokio::test]
async fn without_a_cache_a_failing_download_refuses_the_start_cleanly() {
    let up = upstream().await;
    let server = StandIn::start(Mode::Unauthorized, Fixture::Geoip2City.bytes()).await;
    let s = Scratch::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("geogate.toml");
    let text = proxy_toml(&source_toml(&server, &s.cache(), &s.key(), 6)).replace("{upstream}", &up.addr.to_string());
    std::fs::write(&path, &text).unwrap();
    let config = geogate::config::load(&path).unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let source = geogate::reload::ConfigSource::File { path, listen: None, upstream: None };
    let e = geogate::app::start(source, config, rx).await.expect_err("started without any data");
    assert!(!e.to_string().contains(KEY), "{e}");
}
