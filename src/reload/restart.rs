//! Settings a running process cannot take from a reload, and the check that names them.
//!
//! Everything a request or a new connection reads comes from the snapshot serving (limits,
//! timeouts, trust lists, the PROXY-protocol requirement, routes, upstreams, policy, tag
//! headers, access log, reload guards), so a reload applies it. What is fixed when the process
//! starts is listed here: a reload that changes any of it is refused, naming each key, rather
//! than answered `ok` while the old value stays in force.
//!
//! | key | why it needs a restart |
//! |---|---|
//! | `server.worker_threads` | the runtime is built once |
//! | `server.shutdown_grace` | the drain deadline is armed at start-up |
//! | `listener.name`, `listener.address`, the number of listeners | sockets are bound at start-up |
//! | `listener.tls` added or removed (its certificates reload) | connections already accepted keep the scheme they were accepted with |
//! | `limits.max_connections` | one process-wide permit pool, sized at start-up |
//! | `admin.enabled`, `admin.address` | the admin socket is bound at start-up |
//! | `reload.watch`, `reload.debounce`, `reload.check_interval` | the trigger tasks start once |
//! | `reload.on_no_data` | it decides only how a process starts without data |
//! | `source.url`, `source.cache`, `source.poll_interval`, `source.timeout`, `source.max_bytes` of a remote source, or a remote source added or removed | its poller starts once |
//! | `source.maxmind`, `source.maxmind.edition`, `source.maxmind.account_id`, `source.maxmind.license_key_file`, `source.maxmind.license_key_env`, `source.maxmind.url`, `source.maxmind.max_downloads_per_day` | the MaxMind poller starts once (the key itself is read at each download) |

use crate::config::{Config, ListLocation, Location, RemoteSource, SourceKind};

/// Every key whose change `next` asks for that only a restart can apply; empty if none.
pub fn restart_required(prev: &Config, next: &Config) -> Vec<String> {
    let mut keys = Vec::new();
    let mut differs = |key: String, changed: bool| {
        if changed {
            keys.push(key);
        }
    };
    differs("server.worker_threads".into(), prev.server.worker_threads != next.server.worker_threads);
    differs("server.shutdown_grace".into(), prev.server.shutdown_grace != next.server.shutdown_grace);
    if prev.listeners.len() == next.listeners.len() {
        for (i, (a, b)) in prev.listeners.iter().zip(&next.listeners).enumerate() {
            differs(format!("listener[{i}].name"), a.name != b.name);
            differs(format!("listener[{i}].address"), a.address != b.address);
            differs(format!("listener[{i}].tls (added or removed)"), a.tls.is_some() != b.tls.is_some());
        }
    } else {
        differs("listener".into(), true);
    }
    differs("limits.max_connections".into(), prev.limits.max_connections != next.limits.max_connections);
    differs("admin.address".into(), prev.admin.address != next.admin.address);
    differs("reload.watch".into(), prev.reload.watch != next.reload.watch);
    differs("reload.debounce".into(), prev.reload.debounce != next.reload.debounce);
    differs("reload.check_interval".into(), prev.reload.check_interval != next.reload.check_interval);
    differs("reload.on_no_data".into(), prev.reload.on_no_data != next.reload.on_no_data);
    let before = remotes(prev);
    let after = remotes(next);
    for (name, r) in &after {
        match before.iter().find(|(n, _)| n == name) {
            Some((_, old)) if old == r => {}
            Some(_) => keys.push(format!("source `{name}` (remote settings)")),
            None => keys.push(format!("source `{name}` (remote source added)")),
        }
    }
    for (name, _) in &before {
        if !after.iter().any(|(n, _)| n == name) {
            keys.push(format!("source `{name}` (remote source removed)"));
        }
    }
    keys
}

fn remotes(c: &Config) -> Vec<(&str, &RemoteSource)> {
    c.sources
        .iter()
        .filter_map(|s| match &s.kind {
            SourceKind::Mmdb { location: Location::Remote(r), .. }
            | SourceKind::Ranges { location: Location::Remote(r), .. }
            | SourceKind::List { location: ListLocation::File(Location::Remote(r)), .. } => Some((s.name.as_str(), r)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn cfg(extra: &str) -> Config {
        crate::config::parse(&cfg_text(extra), None).unwrap()
    }

    fn cfg_text(extra: &str) -> String {
        format!(
            "[[listener]]\nname = \"public\"\naddress = \"127.0.0.1:8080\"\n[[upstream]]\nname = \"app\"\nurl = \"http://127.0.0.1:3000\"\n[[source]]\nname = \"l\"\ntype = \"list\"\nentries = [\"192.0.2.0/24\"]\n{extra}"
        )
    }

    #[test]
    fn live_settings_need_no_restart() {
        let a = cfg("[limits]\nupstream_connect_timeout = \"5s\"\n");
        let b = cfg("[limits]\nupstream_connect_timeout = \"1s\"\nheader_read_timeout = \"3s\"\n[policy]\ndefault = \"block\"\n");
        assert_eq!(restart_required(&a, &b), Vec::<String>::new());
    }

    #[test]
    fn start_up_settings_are_named() {
        let a = cfg("");
        let b = cfg("[server]\nworker_threads = 3\n[limits]\nmax_connections = 5\n[admin]\naddress = \"127.0.0.1:9999\"\n[reload]\nwatch = false\n");
        assert_eq!(
            restart_required(&a, &b),
            ["server.worker_threads", "limits.max_connections", "admin.address", "reload.watch"]
        );
        let moved = crate::config::parse(&cfg_text("").replace("127.0.0.1:8080", "127.0.0.1:8081"), None).unwrap();
        assert_eq!(restart_required(&a, &moved), ["listener[0].address"]);
        let remote = cfg(
            "[[source]]\nname = \"r\"\ntype = \"list\"\nurl = \"http://127.0.0.1:1/l.txt\"\ncache = \"/tmp/l.txt\"\n",
        );
        assert_eq!(restart_required(&a, &remote), ["source `r` (remote source added)"]);
        assert_eq!(restart_required(&remote, &a), ["source `r` (remote source removed)"]);
    }
}
