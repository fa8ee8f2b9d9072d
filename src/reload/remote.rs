//! Remote sources: a list or database fetched over `http://`, polled with ETag /
//! If-Modified-Since, size-capped and time-limited, written atomically to a cache file so a
//! restart works offline. A changed download triggers a reload; the reload guards still
//! decide whether it serves. MaxMind sources (`maxmind = {...}`) are fetched by
//! [`super::maxmind`] instead; every poll of either kind is counted in
//! `geogate_source_downloads_total`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{Reloader, Trigger};
use crate::config::{Config, ListLocation, Location, RemoteSource, SourceKind};
use crate::metrics::Metrics;

/// Validators remembered between polls (and restarts), stored beside the cache file.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// What one poll did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// New content written to the cache.
    Updated,
    /// 304, or the same bytes as the cache.
    NotModified,
}

/// Why a poll failed; the cache is left as it was.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{url}: larger than max_bytes = {max}")]
    TooLarge { url: String, max: u64 },
    #[error("{url}: timed out after {secs:.1}s")]
    Timeout { url: String, secs: f64 },
    #[error("writing cache {path}: {source}")]
    Cache { path: PathBuf, source: std::io::Error },
}

/// Every remote source of a configuration, with its source name.
pub fn remote_sources(config: &Config) -> Vec<(String, RemoteSource)> {
    config
        .sources
        .iter()
        .filter_map(|s| match &s.kind {
            SourceKind::Mmdb { location: Location::Remote(r), .. }
            | SourceKind::Ranges { location: Location::Remote(r), .. }
            | SourceKind::List { location: ListLocation::File(Location::Remote(r)), .. } => {
                Some((s.name.clone(), r.clone()))
            }
            _ => None,
        })
        .collect()
}

/// The `result` label of a plain remote source's poll.
fn result_label(outcome: &Result<Fetched, FetchError>) -> &'static str {
    match outcome {
        Ok(Fetched::Updated) => "ok",
        Ok(Fetched::NotModified) => "not_modified",
        Err(FetchError::Cache { .. }) => "io_error",
        Err(_) => "http_error",
    }
}

/// Fetches every remote source whose cache file is missing (before the first compile). A
/// failure is logged and counted; whether the process may start without that source is the
/// first compile's and `[reload] on_no_data`'s decision.
pub async fn prefetch(config: &Config, metrics: &Metrics) {
    for (name, r) in remote_sources(config) {
        init_series(metrics, &name, r.maxmind.is_some());
    }
    for (name, r) in remote_sources(config) {
        if r.cache.exists() {
            continue;
        }
        let (result, error) = match &r.maxmind {
            Some(mm) => match super::maxmind::fetch(&r, mm).await {
                Ok(f) => (if f == Fetched::Updated { "ok" } else { "not_modified" }, None),
                Err(e) => (e.result(), Some(e.to_string())),
            },
            None => {
                let outcome = fetch(&r).await;
                (result_label(&outcome), outcome.err().map(|e| e.to_string()))
            }
        };
        let failures = u32::from(error.is_some());
        record(metrics, &name, result, failures);
        if let Some(error) = error {
            tracing::error!(source = %name, result, %error, "initial fetch of a remote source failed");
        }
    }
}

/// The `result` values a plain remote source's polls can have.
pub const REMOTE_RESULTS: &[&str] = &["ok", "not_modified", "http_error", "io_error"];

/// Creates a source's download series at 0 before its first poll, so they are scraped from
/// the start and `increase()` sees the first failure (a series born at 1 shows no increase).
fn init_series(metrics: &Metrics, source: &str, maxmind: bool) {
    let results = if maxmind { super::maxmind::RESULTS } else { REMOTE_RESULTS };
    for result in results {
        metrics.source_downloads.with_label_values(&[source, result]);
    }
    metrics.source_download_failures.with_label_values(&[source]).set(0);
}

/// Counts one poll's outcome and sets the source's failed-in-a-row gauge.
pub fn record(metrics: &Metrics, source: &str, result: &str, failures: u32) {
    metrics.source_downloads.with_label_values(&[source, result]).inc();
    metrics.source_download_failures.with_label_values(&[source]).set(i64::from(failures));
}

/// Starts one polling task per remote source.
pub fn spawn(reloader: Arc<Reloader>, config: &Config, shutdown: watch::Receiver<bool>) {
    for (name, r) in remote_sources(config) {
        if let Some(mm) = r.maxmind.clone() {
            super::maxmind::spawn(reloader.clone(), name, r, *mm, shutdown.clone());
            continue;
        }
        let reloader = reloader.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(r.poll_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failures = 0u32;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => break,
                }
                let outcome = fetch(&r).await;
                failures = if outcome.is_ok() { 0 } else { failures.saturating_add(1) };
                record(reloader.metrics(), &name, result_label(&outcome), failures);
                match outcome {
                    Ok(Fetched::Updated) => {
                        reloader.reload(Trigger::Remote).await;
                    }
                    Ok(Fetched::NotModified) => tracing::debug!(url = %r.url, "remote source not modified"),
                    Err(e) => tracing::warn!(error = %e, "remote source poll failed; keeping the cached copy"),
                }
            }
        });
    }
}

fn validators_path(cache: &Path) -> PathBuf {
    let mut name = cache.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".validators.json");
    cache.with_file_name(name)
}

/// One conditional GET; on 200 writes the body atomically to the cache.
pub async fn fetch(r: &RemoteSource) -> Result<Fetched, FetchError> {
    let url = r.url.to_string();
    let http_err = |m: String| FetchError::Http { url: url.clone(), message: m };
    let vpath = validators_path(&r.cache);
    let old: Validators = if r.cache.exists() {
        std::fs::read(&vpath).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    } else {
        Validators::default()
    };
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(r.timeout));
    let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let mut req =
        Request::get(r.url.clone()).header(header::USER_AGENT, concat!("geogate/", env!("CARGO_PKG_VERSION")));
    if let Some(e) = &old.etag {
        req = req.header(header::IF_NONE_MATCH, e);
    }
    if let Some(m) = &old.last_modified {
        req = req.header(header::IF_MODIFIED_SINCE, m);
    }
    let req = req.body(Empty::new()).map_err(|e| http_err(e.to_string()))?;
    let timeout = FetchError::Timeout { url: url.clone(), secs: r.timeout.as_secs_f64() };
    let work = async {
        let resp = client.request(req).await.map_err(|e| http_err(e.to_string()))?;
        let status = resp.status();
        if status == StatusCode::NOT_MODIFIED {
            return Ok((Fetched::NotModified, None));
        }
        if status != StatusCode::OK {
            return Err(http_err(format!("HTTP status {status}")));
        }
        if let Some(len) = resp.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        {
            if len > r.max_bytes {
                return Err(FetchError::TooLarge { url: url.clone(), max: r.max_bytes });
            }
        }
        let validators = Validators {
            etag: resp.headers().get(header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned),
            last_modified: resp.headers().get(header::LAST_MODIFIED).and_then(|v| v.to_str().ok()).map(str::to_owned),
        };
        let limit = usize::try_from(r.max_bytes).unwrap_or(usize::MAX);
        let body = Limited::new(resp.into_body(), limit)
            .collect()
            .await
            .map_err(|_| FetchError::TooLarge { url: url.clone(), max: r.max_bytes })?
            .to_bytes();
        Ok((Fetched::Updated, Some((body, validators))))
    };
    let (fetched, payload) = tokio::time::timeout(r.timeout, work).await.map_err(|_| timeout)??;
    let Some((body, validators)) = payload else { return Ok(fetched) };
    let cache = r.cache.clone();
    tokio::task::spawn_blocking(move || write_cache(&cache, &body, &validators))
        .await
        .map_err(|e| FetchError::Cache { path: r.cache.clone(), source: std::io::Error::other(e.to_string()) })?
}

/// Writes `body` to `cache` via a temporary file and rename, so readers never see half a
/// file. Identical content counts as not modified.
fn write_cache(cache: &Path, body: &[u8], validators: &Validators) -> Result<Fetched, FetchError> {
    let io = |source| FetchError::Cache { path: cache.to_path_buf(), source };
    if let Some(dir) = cache.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let same = std::fs::read(cache).map(|old| old == body).unwrap_or(false);
    let vpath = validators_path(cache);
    let vjson = serde_json::to_vec(validators).unwrap_or_default();
    atomic_write(&vpath, &vjson).map_err(io)?;
    if same {
        return Ok(Fetched::NotModified);
    }
    atomic_write(cache, body).map_err(io)?;
    Ok(Fetched::Updated)
}

fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp_name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Default poll settings, for documentation and config defaults.
pub const DEFAULT_POLL: Duration = Duration::from_secs(300);
