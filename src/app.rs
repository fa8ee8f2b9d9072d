//! Start-up wiring: first snapshot, listeners, admin, reload triggers, shutdown drain.
//!
//! Order matters: the first snapshot is compiled before any listener binds, so the proxy
//! never serves without data (unless `reload.on_no_data` says how to); listeners bind before
//! the admin reports ready; SIGTERM/SIGINT stop accepting and drain within
//! `server.shutdown_grace`.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::config::{Config, ListLocation, OnNoData, SourceKind};
use crate::metrics::Metrics;
use crate::proxy::{forward::Upstreams, server, ProxyContext};
use crate::reload::{self, ConfigSource, Reloader, Trigger};
use crate::snapshot::{self, Snapshot};

/// Why geogate could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("no loadable data at start-up (reload.on_no_data = \"refuse\"):\n{0}")]
    NoData(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("runtime: {0}")]
    Runtime(String),
}

// === impl AppError ===

impl AppError {
    /// 64 for configuration problems, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => 64,
            _ => 1,
        }
    }
}

/// Sets up logging: the access log (target `geogate::access`) as JSON lines on stdout,
/// everything else as JSON lines on stderr; `GEOGATE_LOG` filters (default `info`).
pub fn init_tracing() {
    use tracing_subscriber::filter::{filter_fn, EnvFilter};
    use tracing_subscriber::prelude::*;
    let filter = EnvFilter::try_from_env("GEOGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let access = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(std::io::stdout)
        .with_filter(filter_fn(|m| m.target() == "geogate::access"));
    let errors = tracing_subscriber::fmt::layer()
        .json()
        .with_writer(std::io::stderr)
        .with_filter(filter_fn(|m| m.target() != "geogate::access"));
    let _ = tracing_subscriber::registry().with(filter).with(access).with(errors).try_init();
}

/// Runs geogate until SIGTERM/SIGINT.
pub fn run(source: ConfigSource) -> Result<(), AppError> {
    let config = source.load().map_err(AppError::Config)?;
    // One worker: a current-thread runtime serves on the main thread with no work-stealing
    // machinery or cross-thread wake-ups (measurably faster for a single-core sidecar).
    let mut rt = match config.server.worker_threads {
        Some(n) if n.get() == 1 => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.get());
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let rt = rt.enable_all().build().map_err(|e| AppError::Runtime(e.to_string()))?;
    tracing::info!(worker_threads = rt.metrics().num_workers(), "runtime started");
    rt.block_on(async move {
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let running = start(source, config, shutdown_rx).await?;
        wait_for_termination().await;
        tracing::info!("shutting down: no new connections; draining in-flight requests");
        let _ = shutdown_tx.send(true);
        running.join().await;
        Ok(())
    })
}

/// A started geogate: the tasks to wait for at shutdown, and what tests need to reach it.
#[derive(Debug)]
pub struct Running {
    pub current: Arc<ArcSwap<Snapshot>>,
    pub metrics: Metrics,
    pub reloader: Arc<Reloader>,
    /// Bound public addresses, in listener order (port 0 resolved).
    pub listen_addrs: Vec<std::net::SocketAddr>,
    pub admin_addr: Option<std::net::SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Waits for the listeners to drain (after the shutdown signal was sent).
    pub async fn join(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Compiles the first snapshot, binds everything and spawns the tasks. Tests call this
/// directly with port-0 listeners.
pub async fn start(source: ConfigSource, config: Config, shutdown: watch::Receiver<bool>) -> Result<Running, AppError> {
    let metrics = Metrics::new().map_err(|e| AppError::Runtime(e.to_string()))?;
    reload::remote::prefetch(&config, &metrics).await;
    let config = Arc::new(config);
    let first = {
        let c = config.clone();
        tokio::task::spawn_blocking(move || snapshot::compile(c, 1))
            .await
            .map_err(|e| AppError::Runtime(e.to_string()))?
    };
    let (first, degraded) = match first {
        Ok(s) => (s, false),
        Err(e) => match config.reload.on_no_data {
            OnNoData::Refuse => return Err(AppError::NoData(e.to_string())),
            mode => {
                tracing::error!(errors = %e, ?mode, "no loadable data; serving degraded until a reload succeeds");
                (degraded_snapshot(&config, mode).map_err(|e| AppError::NoData(e.to_string()))?, true)
            }
        },
    };
    metrics.reloads.with_label_values(&["startup", if degraded { "failed" } else { "ok" }]).inc();
    reload::record_snapshot(&metrics, &first);
    let current = Arc::new(ArcSwap::from_pointee(first));

    let mut listeners = Vec::new();
    let mut listen_addrs = Vec::new();
    for l in &config.listeners {
        let tcp = TcpListener::bind(l.address).await.map_err(|source| AppError::Bind { addr: l.address, source })?;
        listen_addrs.push(tcp.local_addr().unwrap_or(l.address));
        listeners.push(tcp);
    }
    let reloader = Arc::new(Reloader::new(current.clone(), metrics.clone(), source));
    let admin_addr = match config.admin.address {
        Some(addr) => {
            let tcp = TcpListener::bind(addr).await.map_err(|source| AppError::Bind { addr, source })?;
            let bound = tcp.local_addr().unwrap_or(addr);
            tokio::spawn(crate::admin::serve(tcp, reloader.clone(), metrics.clone(), shutdown.clone()));
            Some(bound)
        }
        None => None,
    };
    spawn_triggers(&reloader, &config, shutdown.clone(), degraded);

    let ctx = Arc::new(ProxyContext::new(current.clone(), metrics.clone(), Upstreams::new()));
    let mut tasks = Vec::new();
    // One cap for the process, as documented: every listener draws from the same permits.
    let permits = Arc::new(tokio::sync::Semaphore::new(config.limits.max_connections.get()));
    for (i, (tcp, l)) in listeners.into_iter().zip(config.listeners.iter()).enumerate() {
        tracing::info!(listener = %l.name, address = %listen_addrs[i], "listening");
        tasks.push(tokio::spawn(server::serve(
            tcp,
            i,
            permits.clone(),
            ctx.clone(),
            shutdown.clone(),
            config.server.shutdown_grace,
        )));
    }
    Ok(Running { current, metrics, reloader, listen_addrs, admin_addr, tasks })
}

/// SIGHUP, file watching, periodic re-checks and remote sources, each feeding the reloader.
fn spawn_triggers(reloader: &Arc<Reloader>, config: &Config, shutdown: watch::Receiver<bool>, degraded: bool) {
    if let Ok(mut hup) = signal(SignalKind::hangup()) {
        let r = reloader.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    s = hup.recv() => if s.is_none() { break },
                    _ = stop.changed() => break,
                }
                r.reload(Trigger::Signal).await;
            }
        });
    }
    if config.reload.watch {
        reload::watch::spawn(reloader.clone(), config, shutdown.clone());
    }
    if let Some(every) = config.reload.check_interval {
        let r = reloader.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => { r.reload(Trigger::Interval).await; }
                    _ = stop.changed() => break,
                }
            }
        });
    }
    reload::remote::spawn(reloader.clone(), config, shutdown.clone());
    if degraded {
        // Keep trying until real data loads.
        let r = reloader.clone();
        let mut stop = shutdown;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                    _ = stop.changed() => break,
                }
                if r.reload(Trigger::Startup).await.result == "ok" {
                    break;
                }
            }
        });
    }
}

/// A snapshot with no data: fail-open keeps the rules (everything is unknown), fail-closed
/// blocks every request.
fn degraded_snapshot(config: &Config, mode: OnNoData) -> Result<Snapshot, snapshot::CompileError> {
    let mut c = config.clone();
    // Keep list names (as empty inline lists) so rules that name them still compile.
    c.sources.retain(|s| matches!(s.kind, SourceKind::List { .. }));
    for s in &mut c.sources {
        if let SourceKind::List { location, set } = &mut s.kind {
            *location = ListLocation::Inline(Vec::new());
            *set = None;
        }
    }
    if mode == OnNoData::FailClosed {
        c.policy.rules.clear();
        c.policy.default_action = crate::config::ActionConfig::Block;
    }
    // Generation 0 so the first real snapshot is generation 1.
    snapshot::compile(Arc::new(c), 0)
}

async fn wait_for_termination() {
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
