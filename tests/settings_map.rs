//! `docs/settings.md` cannot drift: every key `src/config/file.rs` accepts has a row, every
//! row names a key that exists, each says `applied` or `restart`, and the `restart` rows are
//! exactly the keys `src/reload/restart.rs` refuses on reload.

use std::collections::BTreeSet;

const FILE_RS: &str = include_str!("../src/config/file.rs");
const RESTART_RS: &str = include_str!("../src/reload/restart.rs");
const MAP: &str = include_str!("../docs/settings.md");

/// The TOML table each struct of `file.rs` is read from.
fn prefix(file_struct: &str) -> Option<&'static str> {
    Some(match file_struct {
        "FileConfig" => "",
        "FileServer" => "server.",
        "FileListener" => "listener.",
        "FileClientIp" => "listener.client_ip.",
        "FileTls" => "listener.tls.",
        "FileCertPair" => "listener.tls.certificates.",
        "FileAdmin" => "admin.",
        "FileUpstream" => "upstream.",
        "FileRoute" => "route.",
        "FileSource" => "source.",
        "FileFields" => "source.fields.",
        "FileSet" => "source.set.",
        "FileMaxMind" => "source.maxmind.",
        "FilePolicy" => "policy.",
        "FileTagHeaders" => "policy.tag_headers.",
        "FileBlock" => "policy.block.",
        "FileRule" => "rule.",
        "FileLimits" => "limits.",
        "FileReload" => "reload.",
        "FileAccessLog" => "access_log.",
        _ => return None,
    })
}

/// Every leaf or table key serde accepts, as `table.key`.
fn config_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut current: Option<&str> = None;
    let mut rename: Option<String> = None;
    for line in FILE_RS.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("pub(super) struct ") {
            let name = rest.split([' ', '{']).next().unwrap_or("");
            current = Some(prefix(name).unwrap_or_else(|| panic!("{name}: map it to a table in this test")));
            continue;
        }
        if t == "}" {
            current = None;
            continue;
        }
        if let Some(r) = t.split("rename = \"").nth(1) {
            rename = r.split('"').next().map(str::to_owned);
        }
        if let (Some(p), Some(field)) = (current, t.strip_prefix("pub ")) {
            let field = field.split(':').next().unwrap_or("");
            let key = rename.take().unwrap_or_else(|| field.to_owned());
            keys.insert(format!("{p}{key}"));
        }
    }
    // The top-level tables themselves are not settings.
    for table in [
        "server",
        "listener",
        "admin",
        "upstream",
        "route",
        "source",
        "policy",
        "rule",
        "limits",
        "reload",
        "access_log",
    ] {
        keys.remove(table);
    }
    keys
}

/// `(key, reload)` of each row of the map's table.
fn map_rows() -> Vec<(String, String)> {
    MAP.lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 3, "row {l:?} must have key, read by, reload");
            (cells[0].trim_matches('`').to_owned(), cells[2].to_owned())
        })
        .collect()
}

/// The backticked keys in the first column of `restart.rs`'s module-doc table.
fn restart_keys() -> BTreeSet<String> {
    RESTART_RS
        .lines()
        .filter_map(|l| l.strip_prefix("//! | "))
        .filter(|l| !l.starts_with("key") && !l.starts_with("---"))
        .flat_map(|l| {
            let first = l.split(" | ").next().unwrap_or("");
            first.split('`').skip(1).step_by(2).map(str::to_owned).collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_key_has_one_row_with_its_reload_behaviour() {
    let keys = config_keys();
    assert!(keys.len() > 80, "found only {} keys: did file.rs change style?", keys.len());
    let rows = map_rows();
    let mut seen = BTreeSet::new();
    for (key, reload) in &rows {
        assert!(seen.insert(key.clone()), "{key} has two rows");
        assert!(reload == "applied" || reload == "restart", "{key}: reload is {reload:?}");
        assert!(keys.contains(key), "docs/settings.md names `{key}`, which src/config/file.rs does not accept");
    }
    let missing: Vec<&String> = keys.iter().filter(|k| !seen.contains(*k)).collect();
    assert!(missing.is_empty(), "keys without a row in docs/settings.md: {missing:?}");
}

#[test]
fn restart_rows_are_exactly_what_a_reload_refuses() {
    let documented: BTreeSet<String> = map_rows().into_iter().filter(|(_, r)| r == "restart").map(|(k, _)| k).collect();
    let refused = restart_keys();
    assert!(refused.len() >= 10, "restart.rs table not found: {refused:?}");
    assert_eq!(documented, refused, "docs/settings.md restart rows vs src/reload/restart.rs");
}
