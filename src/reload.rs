//! Reloads: a trigger asks, the snapshot is compiled off the request path, compared with the
//! one serving, checked by the guards, and stored in one step — or nothing changes.
//!
//! ```text
//! trigger (watch | SIGHUP | POST /-/reload | remote poll | MaxMind download | interval)
//!   └ Reloader::reload ── one at a time (mutex)
//!       └ a fresh thread at background priority: read config → load sources → compile
//!         table + policy
//!       └ a start-up-only key changed? "refused" (`restart`)
//!       └ same fingerprint? "unchanged" : guards pass? store : "refused"
//!       └ the old snapshot is dropped on a blocking thread once no request holds it
//! ```
//!
//! A failure at any step keeps the serving snapshot, logs why and counts it in
//! `geogate_reloads_total{result="failed"|"refused"}`.

pub mod maxmind;
pub mod priority;
pub mod remote;
pub mod restart;
pub mod series;
pub mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::Serialize;
use tokio::sync::{watch as channel, Mutex};

use crate::config::{self, Config, SourceKind};
use crate::metrics::Metrics;
use crate::pace;
use crate::snapshot::{self, Snapshot, TableOrigin};

/// What asked for a reload; the `trigger` label of the reload metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Startup,
    Watch,
    Signal,
    Admin,
    Remote,
    Interval,
}

/// Every `result` of a reload, the `result` label of `geogate_reloads_total`.
pub const RESULTS: [&str; 4] = ["ok", "unchanged", "failed", "refused"];

/// How one reload went; also the JSON answer of `POST /-/reload`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    pub trigger: Trigger,
    /// `ok`, `unchanged`, `failed` or `refused`.
    pub result: &'static str,
    /// Generation serving after this reload.
    pub generation: u64,
    pub changed: bool,
    pub duration_ms: f64,
    /// Of `duration_ms`, the time the compile rested to leave the cores to requests
    /// (`reload.compile_cpu_share`).
    pub rested_ms: f64,
    /// How the new snapshot's table was made (`ok` only): `built`, `{"patched": {"intervals": N}}`
    /// or `shared`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<TableOrigin>,
    pub errors: Vec<String>,
}

/// When a reload started, and how long its compile rested.
#[derive(Clone, Copy)]
struct Timing {
    started: Instant,
    rested: Duration,
}

/// How a reload stopped short of a new snapshot.
enum Step {
    Failed(Vec<String>),
    Refused(Vec<String>),
    Unchanged,
}

/// Where the configuration comes from on every reload.
#[derive(Clone, Debug)]
pub enum ConfigSource {
    /// Re-read this file, then apply the command-line overrides again.
    File { path: PathBuf, listen: Option<String>, upstream: Option<String> },
    /// Built-in defaults (plus overrides): sources are re-read, the config itself is fixed.
    Fixed(Arc<Config>),
}

/// Owns the reload procedure for the one serving snapshot.
#[derive(Debug)]
pub struct Reloader {
    current: Arc<ArcSwap<Snapshot>>,
    metrics: Metrics,
    source: ConfigSource,
    lock: Mutex<()>,
    status: channel::Sender<Option<Outcome>>,
}

// === impl Trigger ===

impl Trigger {
    pub const ALL: [Self; 6] = [Self::Startup, Self::Watch, Self::Signal, Self::Admin, Self::Remote, Self::Interval];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Startup => "startup",
            Self::Watch => "watch",
            Self::Signal => "signal",
            Self::Admin => "admin",
            Self::Remote => "remote",
            Self::Interval => "interval",
        }
    }
}

// === impl ConfigSource ===

impl ConfigSource {
    /// Reads and checks the configuration (blocking).
    pub fn load(&self) -> Result<Config, String> {
        match self {
            Self::File { path, listen, upstream } => {
                let c = config::load(path).map_err(|e| e.to_string())?;
                apply_overrides(c, listen.as_deref(), upstream.as_deref())
            }
            Self::Fixed(c) => Ok((**c).clone()),
        }
    }
}

/// Applies `--listen` and `--upstream` to a loaded configuration.
pub fn apply_overrides(mut c: Config, listen: Option<&str>, upstream: Option<&str>) -> Result<Config, String> {
    if let Some(l) = listen {
        c = c.with_listen(config::parse_listen_arg(l).map_err(|e| e.to_string())?);
    }
    if let Some(u) = upstream {
        c = c.with_upstream(config::parse_upstream_arg(u).map_err(|e| e.to_string())?);
    }
    Ok(c)
}

// === impl Reloader ===

impl Reloader {
    pub fn new(current: Arc<ArcSwap<Snapshot>>, metrics: Metrics, source: ConfigSource) -> Self {
        let (status, _) = channel::channel(None);
        Self { current, metrics, source, lock: Mutex::new(()), status }
    }

    /// The snapshot cell this reloader swaps.
    pub fn current(&self) -> &Arc<ArcSwap<Snapshot>> {
        &self.current
    }

    /// The last reload's outcome, for the admin API and tests.
    pub fn subscribe(&self) -> channel::Receiver<Option<Outcome>> {
        self.status.subscribe()
    }

    /// The metric handles, for the remote-source pollers.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The configuration source, for the watchers (which files to watch).
    pub fn config_source(&self) -> &ConfigSource {
        &self.source
    }

    /// Compiles a new snapshot and swaps it in if it differs and passes the guards.
    pub async fn reload(&self, trigger: Trigger) -> Outcome {
        let _one_at_a_time = self.lock.lock().await;
        let started = Instant::now();
        let prev = self.current.load_full();
        let generation = prev.generation + 1;
        let source = self.source.clone();
        let previous = prev.clone();
        // Settings first, then a cheap "did anything change" (file stamps and hashes), and only
        // then a compile, which reuses what the unchanged databases compiled to.
        let (compiled, rested) = in_background(move || {
            let cfg = match source.load() {
                Ok(cfg) => cfg,
                Err(e) => return (Err(Step::Failed(vec![e])), Duration::ZERO),
            };
            let restart = restart::restart_required(&previous.config, &cfg);
            if !restart.is_empty() {
                let why = restart
                    .into_iter()
                    .map(|key| format!("{key} changed: only a restart applies it; nothing was reloaded"))
                    .collect();
                return (Err(Step::Refused(why)), Duration::ZERO);
            }
            // Paced by the settings being loaded, so a new share applies to this reload.
            let (compiled, rested) =
                pace::paced(cfg.reload.compile_pace(), || snapshot::recompile(cfg, generation, &previous));
            let step = match compiled {
                Ok(Some(next)) => Ok(next),
                Ok(None) => Err(Step::Unchanged),
                Err(e) => Err(Step::Failed(e.errors.iter().map(|p| p.to_string()).collect())),
            };
            (step, rested)
        })
        .await
        .unwrap_or_else(|e| (Err(Step::Failed(vec![e])), Duration::ZERO));
        let timing = Timing { started, rested };
        self.metrics.reload_duration.observe(started.elapsed().as_secs_f64());

        let outcome = match compiled {
            Err(Step::Failed(errors)) => self.outcome(trigger, "failed", prev.generation, timing, errors, None),
            Err(Step::Refused(errors)) => self.outcome(trigger, "refused", prev.generation, timing, errors, None),
            Err(Step::Unchanged) => self.outcome(trigger, "unchanged", prev.generation, timing, Vec::new(), None),
            Ok(next) if next.fingerprint() == prev.fingerprint() => {
                drop_off_path(Arc::new(next));
                self.outcome(trigger, "unchanged", prev.generation, timing, Vec::new(), None)
            }
            Ok(next) => match guards(&prev, &next) {
                Err(errors) => {
                    drop_off_path(Arc::new(next));
                    self.outcome(trigger, "refused", prev.generation, timing, errors, None)
                }
                Ok(()) => {
                    let next = Arc::new(next);
                    let table = next.table_origin;
                    self.record(&next);
                    let old = self.current.swap(next);
                    drop(prev);
                    drop_off_path(old);
                    self.outcome(trigger, "ok", generation, timing, Vec::new(), Some(table))
                }
            },
        };
        match outcome.result {
            "ok" => tracing::info!(
                trigger = trigger.as_str(),
                generation,
                ms = outcome.duration_ms,
                rested_ms = outcome.rested_ms,
                table = ?outcome.table,
                "reloaded"
            ),
            "unchanged" => tracing::info!(trigger = trigger.as_str(), "reload: no change"),
            _ => tracing::error!(
                trigger = trigger.as_str(),
                result = outcome.result,
                errors = %outcome.errors.join("; "),
                "reload failed; the serving snapshot is kept"
            ),
        }
        outcome
    }

    fn outcome(
        &self,
        trigger: Trigger,
        result: &'static str,
        generation: u64,
        timing: Timing,
        errors: Vec<String>,
        table: Option<TableOrigin>,
    ) -> Outcome {
        self.metrics.reloads.with_label_values(&[trigger.as_str(), result]).inc();
        let o = Outcome {
            trigger,
            result,
            generation,
            changed: result == "ok",
            duration_ms: timing.started.elapsed().as_secs_f64() * 1000.0,
            rested_ms: timing.rested.as_secs_f64() * 1000.0,
            table,
            errors,
        };
        self.status.send_replace(Some(o.clone()));
        o
    }

    /// Publishes the gauges describing a snapshot about to serve.
    pub fn record(&self, s: &Snapshot) {
        record_snapshot(&self.metrics, s);
    }
}

/// Sets the snapshot gauges (generation, load time, sizes, database build times) and creates
/// at 0 every series the snapshot's configuration names ([`series::zero_known`]).
pub fn record_snapshot(m: &Metrics, s: &Snapshot) {
    series::zero_known(m, s);
    m.snapshot_generation.set(i64::try_from(s.generation).unwrap_or(i64::MAX));
    let loaded = s.loaded_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    m.snapshot_loaded.set(i64::try_from(loaded).unwrap_or(0));
    let (n4, n6) = s.networks();
    m.networks.with_label_values(&["ipv4"]).set(n4 as i64);
    m.networks.with_label_values(&["ipv6"]).set(n6 as i64);
    let t = s.table.stats();
    m.ranges.with_label_values(&["ipv4"]).set(t.ranges_v4 as i64);
    m.ranges.with_label_values(&["ipv6"]).set(t.ranges_v6 as i64);
    m.table_bytes.set(t.heap_bytes as i64);
    m.reload_cache_bytes.set(i64::try_from(s.cached_bytes()).unwrap_or(i64::MAX));
    m.tls_cert_expiry.reset();
    for (listener, tls) in s.config.listeners.iter().zip(&s.tls) {
        for c in tls.iter().flat_map(|t| t.certificates.iter()) {
            m.tls_cert_expiry.with_label_values(&[listener.name.as_str(), c.label.as_str()]).set(c.not_after);
        }
    }
    m.database_build.reset();
    for p in &s.provenance {
        if let Some(epoch) = p.build_epoch {
            m.database_build.with_label_values(&[&p.name]).set(i64::try_from(epoch).unwrap_or(0));
        }
    }
}

/// The sanity guards: a database that shrank too much or is below the floor is refused, so
/// a truncated download cannot open the gates.
pub fn guards(prev: &Snapshot, next: &Snapshot) -> Result<(), Vec<String>> {
    let r = &next.config.reload;
    let mut errors = Vec::new();
    for (source, p) in next.config.sources.iter().zip(&next.provenance) {
        if !matches!(source.kind, SourceKind::Mmdb { .. } | SourceKind::Ranges { .. }) {
            continue;
        }
        let now = p.networks_v4 + p.networks_v6;
        if now < r.min_networks {
            errors
                .push(format!("source {:?}: {now} networks is below reload.min_networks = {}", p.name, r.min_networks));
        }
        let Some(max_drop) = r.max_network_drop_percent else { continue };
        if let Some(old) = prev.provenance.iter().find(|o| o.name == p.name && o.kind == p.kind) {
            let before = old.networks_v4 + old.networks_v6;
            if before > 0 && now < before {
                let drop_pct = (before - now) as f64 * 100.0 / before as f64;
                if drop_pct > max_drop {
                    errors.push(format!(
                        "source {:?}: network count fell {drop_pct:.1}% ({before} -> {now}), more than \
                         reload.max_network_drop_percent = {max_drop}",
                        p.name
                    ));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Runs `work` on a new thread at a lower priority ([`priority`]) and waits for it without blocking the
/// runtime. A fresh thread (not the blocking pool) so the lowered priority dies with it.
async fn in_background<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("geogate-reload".into())
        .spawn(move || {
            priority::lower_for_compile();
            // The receiver is gone only if the reload itself was dropped; nothing to tell.
            let _ = tx.send(work());
        })
        .map_err(|e| format!("cannot start the reload thread: {e}"))?;
    rx.await.map_err(|_| "the reload thread stopped without an answer (it panicked; see the log)".to_owned())
}

/// Drops a snapshot on a blocking thread once no request holds it, so freeing a large table
/// never lands on a request.
pub fn drop_off_path(old: Arc<Snapshot>) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        drop(old);
        return;
    };
    handle.spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&old) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(old);
    });
}

/// Seconds since the Unix epoch, for gauges.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
