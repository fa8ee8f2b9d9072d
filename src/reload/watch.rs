//! File watching: the config, every list, every database and every TLS certificate and key,
//! debounced into reloads.
//!
//! Watches the parent directories, not the files: editors save by write-and-rename, `mv`
//! replaces the inode, and a Kubernetes ConfigMap update swaps the `..data` symlink in the
//! mounted directory. Any event naming a watched file, or a `..`-prefixed entry (the
//! ConfigMap machinery), schedules one reload after `reload.debounce` of quiet. After each
//! reload the watched set is recomputed from the configuration now serving.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use super::{ConfigSource, Reloader, Trigger};
use crate::config::{Config, ListLocation, Location, SourceKind};

/// The files a configuration reads: its own file, every local source file, the certificate
/// and key files of its TLS listeners, and the CA, certificate and key files of its HTTPS
/// upstreams.
pub fn watched_files(source: &ConfigSource, config: &Config) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let ConfigSource::File { path, .. } = source {
        files.push(path.clone());
    }
    for s in &config.sources {
        match &s.kind {
            SourceKind::Mmdb { location, .. }
            | SourceKind::Ranges { location, .. }
            | SourceKind::List { location: ListLocation::File(location), .. } => match location {
                Location::Path(p) => files.push(p.clone()),
                Location::Remote(r) => files.push(r.cache.clone()),
            },
            SourceKind::List { location: ListLocation::Inline(_), .. } => {}
        }
    }
    for pair in config.listeners.iter().filter_map(|l| l.tls.as_ref()).flat_map(|t| &t.certificates) {
        files.push(pair.cert.clone());
        files.push(pair.key.clone());
    }
    for tls in config.upstreams.iter().filter_map(|u| u.tls.as_ref()) {
        files.extend(tls.ca.iter().cloned());
        if let Some(pair) = &tls.client_cert {
            files.push(pair.cert.clone());
            files.push(pair.key.clone());
        }
    }
    files
}

/// Starts the watcher task; logs and gives up (reloads still work by signal and admin) if
/// the platform watcher cannot start.
pub fn spawn(reloader: Arc<Reloader>, config: &Config, mut shutdown: watch::Receiver<bool>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<PathBuf>();
    let interesting: Arc<Mutex<BTreeSet<OsString>>> = Arc::new(Mutex::new(BTreeSet::new()));
    let filter = interesting.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        for p in event.paths {
            let Some(name) = p.file_name().map(|n| n.to_os_string()) else { continue };
            let k8s = name.to_string_lossy().starts_with("..");
            let wanted = filter.lock().map(|set| set.contains(&name)).unwrap_or(true);
            if k8s || wanted {
                let _ = tx.send(p);
            }
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "file watching unavailable; reload by SIGHUP or POST /-/reload");
            return;
        }
    };
    let debounce = config.reload.debounce;
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    rewatch(&mut watcher, &mut dirs, &interesting, &watched_files(reloader.config_source(), config));
    tokio::spawn(async move {
        loop {
            let first = tokio::select! {
                p = rx.recv() => p,
                _ = shutdown.changed() => None,
            };
            let Some(first) = first else { break };
            tracing::debug!(path = %first.display(), "change seen; waiting for quiet");
            // Debounce: wait until no event arrived for `debounce`.
            loop {
                match tokio::time::timeout(debounce, rx.recv()).await {
                    Ok(Some(_)) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            reloader.reload(Trigger::Watch).await;
            let config = reloader.current().load_full().config.clone();
            rewatch(&mut watcher, &mut dirs, &interesting, &watched_files(reloader.config_source(), &config));
        }
        drop(watcher);
    });
}

fn rewatch(
    watcher: &mut notify::RecommendedWatcher,
    dirs: &mut BTreeSet<PathBuf>,
    interesting: &Mutex<BTreeSet<OsString>>,
    files: &[PathBuf],
) {
    let mut names = BTreeSet::new();
    for f in files {
        if let Some(n) = f.file_name() {
            names.insert(n.to_os_string());
        }
        let dir = f.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !dirs.contains(dir) {
            match watcher.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    dirs.insert(dir.to_path_buf());
                }
                Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cannot watch directory"),
            }
        }
    }
    if let Ok(mut set) = interesting.lock() {
        *set = names;
    }
}
