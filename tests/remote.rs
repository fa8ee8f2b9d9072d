//! Remote databases end to end, against a local stand-in server: fetched at start-up into the
//! cache, revalidated with `If-Modified-Since`, capped by `max_bytes`, and served from the
//! cache when the server is gone at the next start.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::fixtures::Fixture;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use support::*;
use tokio::net::TcpListener;

const LAST_MODIFIED: &str = "Tue, 01 Dec 2026 10:00:00 GMT";

/// Serves one database at `/geo.mmdb` with a fixed `Last-Modified`; answers 304 when the
/// request's `If-Modified-Since` equals it. Counts what it answered.
#[derive(Default)]
struct DbServer {
    body: Mutex<Vec<u8>>,
    full: AtomicU32,
    not_modified: AtomicU32,
    conditional: AtomicU32,
}

impl DbServer {
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
        let ims = req.headers().get("if-modified-since").map(|v| v.as_bytes().to_vec());
        if ims.is_some() {
            self.conditional.fetch_add(1, Ordering::SeqCst);
        }
        let r = if ims.as_deref() == Some(LAST_MODIFIED.as_bytes()) {
            self.not_modified.fetch_add(1, Ordering::SeqCst);
            Response::builder().status(StatusCode::NOT_MODIFIED).body(Full::new(Bytes::new()))
        } else {
            self.full.fetch_add(1, Ordering::SeqCst);
            let body = self.body.lock().unwrap().clone();
            Response::builder().header("last-modified", LAST_MODIFIED).body(Full::new(Bytes::from(body)))
        };
        r.unwrap()
    }
}

fn config(url: &str, cache: &std::path::Path, max_bytes: u64) -> String {
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

[[source]]
name = "geo"
type = "mmdb"
url = "{url}"
cache = "{cache}"
poll_interval = "200ms"
max_bytes = {max_bytes}

[policy]
default = "allow"

[[rule]]
name = "ru"
action = "block"
countries = ["RU"]
"#,
        cache = cache.display()
    )
}

/// 5.1.2.3 is RU in the fixture (5.0.0.0/8), 80.1.2.3 is DE.
async fn ru_blocked(p: &Proxy) -> bool {
    let (st, _, _) = get(p.addr, "/", &[("x-forwarded-for", "5.1.2.3")]).await;
    let (de, _, _) = get(p.addr, "/", &[("x-forwarded-for", "80.1.2.3")]).await;
    assert_eq!(de, StatusCode::OK);
    st == StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn remote_database_is_cached_revalidated_and_served_offline() {
    let up = upstream().await;
    let server = Arc::new(DbServer::default());
    *server.body.lock().unwrap() = Fixture::Geoip2City.bytes();
    let addr = server.start().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache").join("geo.mmdb");
    let url = format!("http://{addr}/geo.mmdb");

    let p = Proxy::start(&config(&url, &cache, 10_000_000), &up).await;
    assert!(ru_blocked(&p).await, "the fetched database does not serve");
    assert_eq!(std::fs::read(&cache).unwrap(), Fixture::Geoip2City.bytes(), "the cache is not the download");
    // Later polls revalidate with the Last-Modified the first answer gave, and get 304.
    until("a conditional poll answered 304", || server.not_modified.load(Ordering::SeqCst) >= 2).await;
    assert_eq!(server.full.load(Ordering::SeqCst), 1, "an unchanged database was downloaded again");
    p.shutdown().await;

    // The server is gone: a restart serves from the cache.
    let offline = config("http://127.0.0.1:1/geo.mmdb", &cache, 10_000_000);
    let p = Proxy::start(&offline, &up).await;
    assert!(ru_blocked(&p).await, "starting offline did not use the cache");
    p.shutdown().await;
}

#[tokio::test]
async fn a_download_larger_than_max_bytes_is_refused_and_the_cache_kept() {
    let up = upstream().await;
    let server = Arc::new(DbServer::default());
    let db = Fixture::Geoip2City.bytes();
    *server.body.lock().unwrap() = db.clone();
    let addr = server.start().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("geo.mmdb");
    let url = format!("http://{addr}/geo.mmdb");
    // Start from a cached copy with no validators, so every poll downloads in full.
    std::fs::write(&cache, &db).unwrap();
    let max = u64::try_from(db.len()).unwrap() - 1;
    let p = Proxy::start(&config(&url, &cache, max), &up).await;
    assert!(ru_blocked(&p).await);
    until("polls answered in full", || server.full.load(Ordering::SeqCst) >= 2).await;
    assert_eq!(std::fs::read(&cache).unwrap(), db, "a download over max_bytes touched the cache");
    assert!(!cache.with_file_name("geo.mmdb.validators.json").exists(), "a refused download wrote validators");
    assert!(ru_blocked(&p).await, "serving changed after a refused download");
    p.shutdown().await;
}
