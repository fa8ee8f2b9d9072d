//! MaxMind downloads: a database fetched from MaxMind's download service (or a mirror of it)
//! with an account ID and licence key, checked, and installed into the source's cache file.
//!
//! ```text
//! poll (every poll_interval; after a failure, its backoff)
//!   └ HEAD  …/geoip/databases/{edition}/download?suffix=tar.gz   If-Modified-Since
//!       304, or the Last-Modified already installed → not_modified (HEADs do not count
//!       against MaxMind's download limit)
//!   └ daily cap: 2 more GETs would exceed max_downloads_per_day in 24 h? → capped
//!   └ GET   …?suffix=tar.gz.sha256   → "<hex>  <file>"
//!   └ GET   …?suffix=tar.gz          If-Modified-Since; streamed to a temp file, hashed,
//!                                    size-capped
//!   └ SHA-256 equal? .mmdb extracted? opens? → renamed over the cache → reload
//! ```
//!
//! Every failure leaves the cache as it was: geogate keeps serving the last good database and
//! counts the failure (`geogate_source_downloads_total{result}`,
//! `geogate_source_download_failures`), which `GeogateDatabaseDownloadFailing` alerts on. A
//! failed download never stops a process that has a cached copy; one with no cache at all
//! starts only as `[reload] on_no_data` allows.
//!
//! Backoff: 401/403 (or an unreadable key) waits [`AUTH_BACKOFF`]; 429 waits `Retry-After`,
//! else [`QUOTA_BACKOFF`], and that wait is persisted so a restart does not retry early; the
//! cap waits until the oldest counted download is 24 h old; anything else (5xx, network,
//! corrupt archive, checksum mismatch) doubles from `min(poll_interval, 1 min)` up to
//! `min(poll_interval, 1 h)`, with ±20 % jitter so a fleet does not retry in step.
//!
//! The per-source state (Last-Modified installed, the GETs of the last 24 h, a quota wait) is
//! kept beside the cache in `<cache>.maxmind.json`, so a restart neither resets the cap nor
//! downloads an unchanged database again.

mod archive;
mod client;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{header, Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

pub use archive::ArchiveError;
pub use client::LicenseKey;

use super::remote::Fetched;
use super::{Reloader, Trigger};
use crate::config::{MaxMindSource, RemoteSource};
use client::{Downloader, RequestError};

/// Wait after the service refused the credentials: they will not fix themselves, and
/// retrying would only add failed logins. A restart retries at once (after fixing the key).
pub const AUTH_BACKOFF: Duration = Duration::from_secs(6 * 3600);
/// Wait after a 429 without `Retry-After`: MaxMind's limit is per rolling 24 hours.
pub const QUOTA_BACKOFF: Duration = Duration::from_secs(6 * 3600);
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Largest checksum file read.
const MAX_CHECKSUM_BYTES: usize = 4096;
const DAY: u64 = 24 * 3600;

/// Every `result` value of a MaxMind source's polls ([`MaxMindError::result`], `ok`,
/// `not_modified`).
pub const RESULTS: &[&str] =
    &["ok", "not_modified", "auth", "quota", "capped", "checksum", "corrupt", "http_error", "io_error"];

/// Why a MaxMind download failed; the cache is left as it was.
#[derive(Debug, thiserror::Error)]
pub enum MaxMindError {
    #[error("MaxMind licence key: {0}")]
    Key(String),
    #[error("{url}: MaxMind refused account {account_id}'s licence key (HTTP {status}); check license_key_file / license_key_env and that the account may download this edition")]
    Auth { url: String, account_id: u64, status: u16 },
    #[error("{url}: MaxMind's download limit is reached (HTTP 429); next try in {}s", .retry_after.as_secs())]
    Quota { url: String, retry_after: Duration },
    #[error("max_downloads_per_day = {cap} reached (GETs in the last 24 h); next download in {}s", .wait.as_secs())]
    Capped { cap: u32, wait: Duration },
    #[error("{url}: {source}")]
    Archive { url: String, source: ArchiveError },
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{url}: larger than max_bytes = {max}")]
    TooLarge { url: String, max: u64 },
    #[error("{url}: timed out after {secs:.1}s")]
    Timeout { url: String, secs: f64 },
    #[error("cache {path}: {source}")]
    Cache { path: PathBuf, source: std::io::Error },
}

/// What is remembered between polls and restarts, in `<cache>.maxmind.json`.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    /// `Last-Modified` of the archive the cache was extracted from.
    pub last_modified: Option<String>,
    /// Unix seconds of each GET sent in the last 24 hours (the daily cap counts these).
    pub downloads: Vec<u64>,
    /// Unix second before which the service said not to try again (429).
    pub quota_until: Option<u64>,
}

// === impl MaxMindError ===

impl MaxMindError {
    /// The `result` label of `geogate_source_downloads_total`.
    pub fn result(&self) -> &'static str {
        match self {
            Self::Key(_) | Self::Auth { .. } => "auth",
            Self::Quota { .. } => "quota",
            Self::Capped { .. } => "capped",
            Self::Archive { source: ArchiveError::Checksum { .. } | ArchiveError::ChecksumFile(_), .. } => "checksum",
            Self::Archive { source: ArchiveError::Corrupt(_) | ArchiveError::TooLarge(_), .. } => "corrupt",
            Self::Archive { source: ArchiveError::Io { .. }, .. } | Self::Cache { .. } => "io_error",
            Self::Http { .. } | Self::TooLarge { .. } | Self::Timeout { .. } => "http_error",
        }
    }

    /// How long to wait before the next attempt, after `failures` failed ones in a row.
    pub fn backoff(&self, poll: Duration, failures: u32) -> Duration {
        match self {
            Self::Key(_) | Self::Auth { .. } => AUTH_BACKOFF,
            Self::Quota { retry_after, .. } => *retry_after,
            Self::Capped { wait, .. } => *wait,
            _ => {
                let base = poll.min(Duration::from_secs(60));
                let ceiling = poll.min(Duration::from_secs(3600));
                let doubled = base.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
                jitter(doubled.min(ceiling))
            }
        }
    }
}

/// ±20 %, from the clock's low bits (enough to spread a fleet; nothing depends on it).
fn jitter(d: Duration) -> Duration {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |t| t.subsec_nanos());
    let factor = 0.8 + f64::from(nanos % 1000) / 1000.0 * 0.4;
    d.mul_f64(factor)
}

fn now() -> u64 {
    super::unix_now()
}

// === impl State ===

impl State {
    fn path(cache: &Path) -> PathBuf {
        let mut name = cache.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(".maxmind.json");
        cache.with_file_name(name)
    }

    /// The state beside `cache`; unreadable or absent is a fresh one. Without a cache file
    /// the remembered `Last-Modified` is dropped (it describes a file that is not there).
    pub fn load(cache: &Path) -> Self {
        let mut s: Self =
            std::fs::read(Self::path(cache)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        if !cache.exists() {
            s.last_modified = None;
        }
        s.prune(now());
        s
    }

    fn save(&self, cache: &Path) -> std::io::Result<()> {
        if let Some(dir) = cache.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let path = Self::path(cache);
        let tmp = archive::sibling(&path, "tmp");
        std::fs::write(&tmp, serde_json::to_vec(self).unwrap_or_default())?;
        std::fs::rename(&tmp, &path)
    }

    fn prune(&mut self, now: u64) {
        self.downloads.retain(|&t| t + DAY > now && t <= now + 60);
    }

    /// `Some(wait)` when `n` more GETs would pass the cap.
    fn capped(&self, cap: u32, n: usize, now: u64) -> Option<Duration> {
        let cap = cap as usize;
        if self.downloads.len() + n <= cap {
            return None;
        }
        // Wait until enough of the counted GETs are older than a day.
        let mut sorted = self.downloads.clone();
        sorted.sort_unstable();
        let must_expire = (self.downloads.len() + n).saturating_sub(cap);
        let at = sorted.get(must_expire.saturating_sub(1)).map_or(now, |t| t + DAY);
        Some(Duration::from_secs(at.saturating_sub(now).max(1)))
    }
}

/// One download attempt for a MaxMind source: see the module doc for the steps.
pub async fn fetch(r: &RemoteSource, mm: &MaxMindSource) -> Result<Fetched, MaxMindError> {
    let mut state = State::load(&r.cache);
    let started = now();
    if let Some(until) = state.quota_until.filter(|&u| u > started) {
        return Err(MaxMindError::Quota { url: r.url.to_string(), retry_after: Duration::from_secs(until - started) });
    }
    state.quota_until = None;
    let timeout = r.timeout;
    let result = match tokio::time::timeout(timeout, attempt(r, mm, &mut state)).await {
        Ok(res) => res,
        Err(_) => Err(MaxMindError::Timeout { url: r.url.to_string(), secs: timeout.as_secs_f64() }),
    };
    if let Err(MaxMindError::Quota { retry_after, .. }) = &result {
        state.quota_until = Some(now() + retry_after.as_secs());
    }
    // The counted GETs must survive whatever happened, or a crash loop would reset the cap.
    if let Err(source) = state.save(&r.cache) {
        tracing::warn!(path = %State::path(&r.cache).display(), error = %source, "cannot save the MaxMind download state");
    }
    let _ = std::fs::remove_file(archive::sibling(&r.cache, "download"));
    result
}

async fn attempt(r: &RemoteSource, mm: &MaxMindSource, state: &mut State) -> Result<Fetched, MaxMindError> {
    let key = LicenseKey::read(&mm.license_key).map_err(MaxMindError::Key)?;
    let dl = Downloader::new(mm.account_id, &key, r.timeout).map_err(MaxMindError::Key)?;
    drop(key);
    let archive_url = r.url.to_string();
    let http_err = |url: &str, e: RequestError| MaxMindError::Http { url: url.to_owned(), message: e.to_string() };
    let ims = state.last_modified.clone();

    // HEAD first: free, and answers "unchanged" on almost every poll.
    if ims.is_some() {
        let head = dl.send(Method::HEAD, &r.url, ims.as_deref()).await.map_err(|e| http_err(&archive_url, e))?;
        check_status(&head, &archive_url, mm)?;
        if head.status() == StatusCode::NOT_FOUND {
            return Err(MaxMindError::Http {
                url: archive_url,
                message: "HTTP status 404 (is the edition ID right, and may this account download it?)".into(),
            });
        }
        if head.status() == StatusCode::NOT_MODIFIED || (head.status().is_success() && last_modified(&head) == ims) {
            return Ok(Fetched::NotModified);
        }
    }

    if let Some(wait) = state.capped(mm.max_downloads_per_day, 2, now()) {
        return Err(MaxMindError::Capped { cap: mm.max_downloads_per_day, wait });
    }

    let sum_url = mm.checksum_url.to_string();
    state.downloads.push(now());
    let resp = dl.send(Method::GET, &mm.checksum_url, None).await.map_err(|e| http_err(&sum_url, e))?;
    check_status(&resp, &sum_url, mm)?;
    if resp.status() != StatusCode::OK {
        return Err(MaxMindError::Http { url: sum_url, message: format!("HTTP status {}", resp.status()) });
    }
    let body = http_body_util::Limited::new(resp.into_body(), MAX_CHECKSUM_BYTES)
        .collect()
        .await
        .map_err(|e| MaxMindError::Http { url: sum_url.clone(), message: e.to_string() })?
        .to_bytes();
    let expected =
        archive::parse_checksum(&body).map_err(|source| MaxMindError::Archive { url: sum_url.clone(), source })?;

    state.downloads.push(now());
    let resp = dl.send(Method::GET, &r.url, ims.as_deref()).await.map_err(|e| http_err(&archive_url, e))?;
    check_status(&resp, &archive_url, mm)?;
    if resp.status() == StatusCode::NOT_MODIFIED {
        return Ok(Fetched::NotModified);
    }
    if resp.status() != StatusCode::OK {
        return Err(MaxMindError::Http { url: archive_url, message: format!("HTTP status {}", resp.status()) });
    }
    let new_last_modified = last_modified(&resp);
    let tmp = archive::sibling(&r.cache, "download");
    let actual = stream_to_file(resp.into_body(), &tmp, r.max_bytes, &archive_url).await?;

    let (tmp2, cache, edition, max) = (tmp.clone(), r.cache.clone(), mm.edition.clone(), r.max_bytes);
    tokio::task::spawn_blocking(move || archive::install(&tmp2, &actual, &expected, &edition, &cache, max))
        .await
        .map_err(|e| MaxMindError::Cache { path: r.cache.clone(), source: std::io::Error::other(e.to_string()) })?
        .map_err(|source| MaxMindError::Archive { url: archive_url.clone(), source })?;
    state.last_modified = new_last_modified;
    Ok(Fetched::Updated)
}

/// 401/403 and 429 mean the same whichever request got them.
fn check_status(resp: &http::Response<Incoming>, url: &str, mm: &MaxMindSource) -> Result<(), MaxMindError> {
    match resp.status() {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            Err(MaxMindError::Auth { url: url.to_owned(), account_id: mm.account_id, status: resp.status().as_u16() })
        }
        StatusCode::TOO_MANY_REQUESTS => {
            Err(MaxMindError::Quota { url: url.to_owned(), retry_after: retry_after(resp) })
        }
        s if s.is_server_error() => {
            Err(MaxMindError::Http { url: url.to_owned(), message: format!("HTTP status {s}") })
        }
        _ => Ok(()),
    }
}

/// `Retry-After` in seconds or as an HTTP date, within [1 s, 24 h]; [`QUOTA_BACKOFF`] without.
fn retry_after(resp: &http::Response<Incoming>) -> Duration {
    let Some(v) = resp.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()) else {
        return QUOTA_BACKOFF;
    };
    let d = match v.trim().parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => match httpdate::parse_http_date(v) {
            Ok(at) => at.duration_since(SystemTime::now()).unwrap_or_default(),
            Err(_) => return QUOTA_BACKOFF,
        },
    };
    d.clamp(Duration::from_secs(1), MAX_RETRY_AFTER)
}

fn last_modified(resp: &http::Response<Incoming>) -> Option<String> {
    resp.headers().get(header::LAST_MODIFIED).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Streams `body` to `path`, at most `max` bytes; answers its SHA-256 in hex.
async fn stream_to_file(mut body: Incoming, path: &Path, max: u64, url: &str) -> Result<String, MaxMindError> {
    let io = |source| MaxMindError::Cache { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
    }
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    let mut hasher = Sha256::new();
    let mut written = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| MaxMindError::Http { url: url.to_owned(), message: e.to_string() })?;
        let Ok(data) = frame.into_data() else { continue };
        written += data.len() as u64;
        if written > max {
            return Err(MaxMindError::TooLarge { url: url.to_owned(), max });
        }
        hasher.update(&data);
        file.write_all(&data).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    Ok(crate::source::hex(hasher.finalize().as_slice()))
}

/// Starts the poller of one MaxMind source.
pub fn spawn(
    reloader: Arc<Reloader>,
    name: String,
    r: RemoteSource,
    mm: MaxMindSource,
    shutdown: watch::Receiver<bool>,
) {
    let mut stop = shutdown;
    tokio::spawn(async move {
        let mut failures = 0u32;
        let mut delay = Duration::ZERO;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.changed() => break,
            }
            let outcome = fetch(&r, &mm).await;
            delay = r.poll_interval;
            match outcome {
                Ok(fetched) => {
                    failures = 0;
                    let result = if fetched == Fetched::Updated { "ok" } else { "not_modified" };
                    super::remote::record(reloader.metrics(), &name, result, failures);
                    if fetched == Fetched::Updated {
                        tracing::info!(source = %name, edition = %mm.edition, "MaxMind database downloaded; reloading");
                        reloader.reload(Trigger::Remote).await;
                    } else {
                        tracing::debug!(source = %name, edition = %mm.edition, "MaxMind database not modified");
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    super::remote::record(reloader.metrics(), &name, e.result(), failures);
                    delay = e.backoff(r.poll_interval, failures);
                    tracing::warn!(
                        source = %name,
                        edition = %mm.edition,
                        result = e.result(),
                        error = %e,
                        retry_in_s = delay.as_secs(),
                        "MaxMind download failed; serving the cached copy"
                    );
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_cap_counts_a_rolling_day_and_says_how_long_to_wait() {
        let now = 1_000_000;
        let mut s = State { downloads: vec![now - DAY - 1, now - 3600, now - 60], ..State::default() };
        s.prune(now);
        assert_eq!(s.downloads.len(), 2, "a GET older than a day still counts");
        assert_eq!(s.capped(4, 2, now), None);
        // Two more would make 4 of a cap of 3: one of the two must age out, the older first.
        assert_eq!(s.capped(3, 2, now), Some(Duration::from_secs(DAY - 3600)));
        assert_eq!(s.capped(2, 2, now), Some(Duration::from_secs(DAY - 60)));
    }

    #[test]
    fn backoff_doubles_within_the_poll_interval_and_waits_long_on_auth() {
        let poll = Duration::from_secs(12 * 3600);
        let http = MaxMindError::Http { url: "u".into(), message: "m".into() };
        let within = |d: Duration, want: u64| {
            let w = Duration::from_secs(want);
            assert!(d >= w.mul_f64(0.79) && d <= w.mul_f64(1.21), "{d:?} not ~{w:?}");
        };
        within(http.backoff(poll, 1), 60);
        within(http.backoff(poll, 3), 240);
        within(http.backoff(poll, 30), 3600);
        within(http.backoff(Duration::from_secs(2), 5), 2);
        let auth = MaxMindError::Auth { url: "u".into(), account_id: 1, status: 401 };
        assert_eq!(auth.backoff(poll, 1), AUTH_BACKOFF);
        assert_eq!(auth.result(), "auth");
    }
}
