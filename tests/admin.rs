//! The admin listener end to end: health and readiness, POST /-/reload and its bearer token,
//! explain, the snapshot summary, routing (404/405), `/metrics` read by a strict Prometheus
//! text-format parser, and the public listener never serving any of it. Real sockets on
//! 127.0.0.1:0, a real upstream, the real config parser. Each test states its input and the
//! expected outcome.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use bytes::Bytes;
use common::fixtures::{Fixture, BUILD_EPOCH};
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::Value;
use support::*;

// --- helpers -----------------------------------------------------------------------------

const RULES: &str = r#"
[policy]
default = "allow"

[[rule]]
name = "try-by"
action = "block"
dry_run = true
countries = ["BY"]

[[rule]]
name = "block-ru"
action = "block"
countries = ["RU"]

[[rule]]
name = "tag-de"
action = "tag"
countries = ["DE"]
"#;

/// One listener trusting XFF from 127.0.0.1, one PROXY-protocol listener trusting only
/// 10.0.0.0/8, a TLS listener (certificate for tls.example.com), an admin listener on port 0,
/// two upstreams (`dead` on a closed port, routed for `/dead/`), the flat mmdb fixture plus a
/// RU list (a remote one whose server is gone, served from its cache).
fn config(admin_extra: &str) -> String {
    format!(
        r#"
[[listener]]
name = "public"
address = "127.0.0.1:0"
client_ip = {{ source = "x-forwarded-for", trusted = ["127.0.0.1/32"] }}

[admin]
# 127.0.0.2: the checker refuses the admin on the same address as a listener, even for port 0.
address = "127.0.0.2:0"
{admin_extra}

[reload]
watch = false

[[listener]]
name = "pp"
address = "127.0.0.3:0"
client_ip = {{ source = "proxy-protocol", trusted = ["10.0.0.0/8"] }}

[[listener]]
name = "tls"
address = "127.0.0.4:0"
tls = {{ cert = "tls.crt", key = "tls.key" }}

[[upstream]]
name = "app"
url = "http://{{upstream}}"

[[upstream]]
name = "dead"
url = "http://127.0.0.1:1"

[[route]]
path_prefix = "/dead/"
upstream = "dead"

[[source]]
name = "geo"
type = "mmdb"
path = "geo.mmdb"

# Remote, with its server gone: served from the cache, every poll counted as failed.
[[source]]
name = "ru-extra"
type = "list"
url = "http://127.0.0.1:1/ru.txt"
cache = "ru.txt"
set = {{ country = "RU" }}
{RULES}
"#
    )
}

async fn start(admin_extra: &str) -> (Proxy, SocketAddr) {
    let up = upstream().await;
    let (cert, key) = tls_pair();
    let p = Proxy::start_with_files(
        &config(admin_extra),
        &up,
        &[
            ("geo.mmdb", &Fixture::FlatCountry.bytes()),
            ("ru.txt", b"203.0.113.0/24\n"),
            ("tls.crt", cert.as_bytes()),
            ("tls.key", key.as_bytes()),
        ],
    )
    .await;
    let admin = p.admin.expect("admin listener");
    (p, admin)
}

/// A self-signed certificate for tls.example.com and its key, PEM.
fn tls_pair() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["tls.example.com".to_owned()]).unwrap().self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, Bytes) {
    let mut b = Request::builder().method(method).uri(path).header("host", "admin");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(addr, b.body(Full::new(Bytes::new())).unwrap()).await
}

fn json(body: &Bytes) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

// --- a strict Prometheus text-format (0.0.4) parser ------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

#[derive(Debug, Default)]
struct Family {
    help: Option<String>,
    kind: Option<String>,
    samples: Vec<Sample>,
}

/// Parses the exposition strictly: HELP and TYPE at most once per family and before its
/// samples, each family's samples contiguous, valid metric and label names, label values
/// with only the `\\`, `\"`, `\n` escapes, no duplicate label or series, numeric values, and
/// histograms whose buckets are cumulative and end in `+Inf` equal to `_count`.
fn parse_exposition(text: &str) -> Result<BTreeMap<String, Family>, String> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut closed: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut series = BTreeSet::new();
    let mut enter = |family: &str, current: &mut Option<String>| -> Result<(), String> {
        if current.as_deref() != Some(family) {
            if let Some(prev) = current.take() {
                closed.insert(prev);
            }
            if closed.contains(family) {
                return Err(format!("samples of {family} are not contiguous"));
            }
            *current = Some(family.to_owned());
        }
        Ok(())
    };
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let rest = rest.trim_start_matches(' ');
            let (keyword, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            if keyword != "HELP" && keyword != "TYPE" {
                continue; // a plain comment
            }
            let (name, arg) = rest.split_once(' ').ok_or_else(|| at("HELP/TYPE without a value".into()))?;
            check_metric_name(name).map_err(at)?;
            enter(name, &mut current).map_err(at)?;
            let f = families.entry(name.to_owned()).or_default();
            if !f.samples.is_empty() {
                return Err(at(format!("{keyword} after samples")));
            }
            if keyword == "HELP" {
                if f.help.is_some() {
                    return Err(at("second HELP".into()));
                }
                f.help = Some(unescape(arg, false).map_err(at)?);
            } else {
                if f.kind.is_some() {
                    return Err(at("second TYPE".into()));
                }
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&arg) {
                    return Err(at(format!("unknown type {arg}")));
                }
                f.kind = Some(arg.to_owned());
            }
            continue;
        }
        let sample = parse_sample(line).map_err(at)?;
        let family = family_of(&sample.name, &families).ok_or_else(|| at("sample of an undeclared family".into()))?;
        enter(&family, &mut current).map_err(at)?;
        if !series.insert((sample.name.clone(), sample.labels.clone())) {
            return Err(at("duplicate series".into()));
        }
        families.get_mut(&family).ok_or_else(|| at("no family".into()))?.samples.push(sample);
    }
    for (name, f) in &families {
        if f.kind.as_deref() == Some("histogram") {
            check_histogram(name, f)?;
        }
    }
    Ok(families)
}

/// The family a sample name belongs to: its own name, or a histogram/summary base name.
fn family_of(name: &str, families: &BTreeMap<String, Family>) -> Option<String> {
    if families.get(name).is_some_and(|f| f.kind.is_some()) {
        return Some(name.to_owned());
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            let kind = families.get(base).and_then(|f| f.kind.as_deref());
            let ok = match suffix {
                "_bucket" => kind == Some("histogram"),
                _ => matches!(kind, Some("histogram" | "summary")),
            };
            if ok {
                return Some(base.to_owned());
            }
        }
    }
    None
}

fn check_metric_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("bad metric name {name:?}"))
    }
}

fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') && !name.starts_with("__") {
        Ok(())
    } else {
        Err(format!("bad label name {name:?}"))
    }
}

/// HELP text allows `\\` and `\n`; label values also `\"`.
fn unescape(s: &str, quotes: bool) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quotes => out.push('"'),
            other => return Err(format!("bad escape \\{other:?}")),
        }
    }
    Ok(out)
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ if s.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) => {
            s.parse().map_err(|_| format!("bad value {s:?}"))
        }
        _ => Err(format!("bad value {s:?}")),
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    check_metric_name(name)?;
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(body)?;
        labels = parsed;
        rest = &body[after..];
    }
    let rest = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let mut parts = rest.split(' ');
    let value = parse_value(parts.next().ok_or("no value")?)?;
    if let Some(ts) = parts.next() {
        ts.parse::<i64>().map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if parts.next().is_some() {
        return Err("trailing text".into());
    }
    Ok(Sample { name: name.to_owned(), labels, value })
}

/// Parses `a="x",b="y"}` (the text after `{`); returns the labels and the index after `}`.
fn parse_labels(body: &str) -> Result<(Vec<(String, String)>, usize), String> {
    let b = body.as_bytes();
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut i = 0;
    loop {
        if b.get(i) == Some(&b'}') {
            return Ok((labels, i + 1));
        }
        let eq = body[i..].find('=').ok_or("label without =")? + i;
        let lname = &body[i..eq];
        check_label_name(lname)?;
        if b.get(eq + 1) != Some(&b'"') {
            return Err(format!("label {lname} value not quoted"));
        }
        let mut j = eq + 2;
        let mut escaped = false;
        loop {
            match b.get(j) {
                None => return Err("unterminated label value".into()),
                Some(b'\\') if !escaped => escaped = true,
                Some(b'"') if !escaped => break,
                _ => escaped = false,
            }
            j += 1;
        }
        let value = unescape(&body[eq + 2..j], true)?;
        if labels.iter().any(|(n, _)| n == lname) {
            return Err(format!("label {lname} twice"));
        }
        labels.push((lname.to_owned(), value));
        i = j + 1;
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => {}
            _ => return Err("expected , or } after a label".into()),
        }
    }
}

/// Buckets per series cumulative, ordered by `le`, ending in `+Inf` = `_count`.
fn check_histogram(name: &str, f: &Family) -> Result<(), String> {
    type Labels = Vec<(String, String)>;
    let mut buckets: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
    let mut counts: BTreeMap<Labels, f64> = BTreeMap::new();
    for s in &f.samples {
        let others: Vec<(String, String)> = s.labels.iter().filter(|(n, _)| n != "le").cloned().collect();
        if s.name == format!("{name}_bucket") {
            let le = s.labels.iter().find(|(n, _)| n == "le").ok_or(format!("{name}: bucket without le"))?;
            buckets.entry(others).or_default().push((parse_value(&le.1)?, s.value));
        } else if s.name == format!("{name}_count") {
            counts.insert(others, s.value);
        } else if s.name != format!("{name}_sum") {
            return Err(format!("{name}: unexpected sample {}", s.name));
        }
    }
    if buckets.is_empty() {
        return Err(format!("{name}: histogram without buckets"));
    }
    for (labels, b) in &buckets {
        let ordered = b.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
        let last = b.last().ok_or("no buckets")?;
        if !ordered || last.0 != f64::INFINITY || counts.get(labels) != Some(&last.1) {
            return Err(format!("{name}{labels:?}: buckets not cumulative or +Inf != _count: {b:?}"));
        }
    }
    Ok(())
}

/// The sum of the samples `name` of `family` that carry every one of `labels`. Panics when
/// there is none: a renamed metric or label must not read as 0.
fn value(families: &BTreeMap<String, Family>, family: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let f = families.get(family).unwrap_or_else(|| panic!("no family {family}"));
    let matching: Vec<f64> = f
        .samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.iter().any(|(n, x)| n == k && x == v)))
        .map(|s| s.value)
        .collect();
    assert!(!matching.is_empty(), "no series {name}{labels:?} in {family}");
    matching.iter().sum()
}

#[test]
fn the_parser_is_strict() {
    let good =
        "# HELP a_total An \\\\ escaped\\nhelp.\n# TYPE a_total counter\na_total{x=\"q\\\"uo\\\\te\\n\",y=\"\"} 3\n\
                # TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1.5\nh_count 2\n";
    let f = parse_exposition(good).unwrap();
    assert_eq!(f["a_total"].samples[0].labels[0].1, "q\"uo\\te\n");
    assert_eq!(f["a_total"].help.as_deref(), Some("An \\ escaped\nhelp."));
    for bad in [
        "a 1\n",                                                    // no TYPE
        "# TYPE a gauge\na{x=\"1\"} one\n",                         // bad value
        "# TYPE a gauge\na{x=1} 1\n",                               // unquoted
        "# TYPE a gauge\na{x=\"\\t\"} 1\n",                         // bad escape
        "# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n",                   // label twice
        "# TYPE a gauge\na 1\na 2\n",                               // duplicate series
        "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x=\"1\"} 1\n", // not contiguous
        "# TYPE a gauge\na{1x=\"1\"} 1\n",                          // bad label name
        "# TYPE a wibble\n",                                        // bad type
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 0\nh_count 1\n",
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted: {bad:?}");
    }
}

// --- /metrics ------------------------------------------------------------------------------

/// Every metric family `src/metrics.rs` registers, with the type it must be exported as.
const FAMILIES: &[(&str, &str)] = &[
    ("geogate_requests_total", "counter"),
    ("geogate_dry_run_matches_total", "counter"),
    ("geogate_request_duration_seconds", "histogram"),
    ("geogate_upstream_duration_seconds", "histogram"),
    ("geogate_upstream_errors_total", "counter"),
    ("geogate_client_ip_resolutions_total", "counter"),
    ("geogate_rejected_total", "counter"),
    ("geogate_open_connections", "gauge"),
    ("geogate_reloads_total", "counter"),
    ("geogate_reload_duration_seconds", "histogram"),
    ("geogate_snapshot_generation", "gauge"),
    ("geogate_snapshot_loaded_timestamp_seconds", "gauge"),
    ("geogate_table_networks", "gauge"),
    ("geogate_table_ranges", "gauge"),
    ("geogate_table_bytes", "gauge"),
    ("geogate_reload_cache_bytes", "gauge"),
    ("geogate_database_build_timestamp_seconds", "gauge"),
    ("geogate_source_downloads_total", "counter"),
    ("geogate_source_download_failures", "gauge"),
    ("geogate_tls_certificate_expiry_timestamp_seconds", "gauge"),
    ("geogate_tls_handshake_failures_total", "counter"),
];

/// The metric names written in `src/metrics.rs` (outside its tests), so a new metric cannot
/// be added without this test knowing its type.
fn names_in_metrics_source() -> BTreeSet<String> {
    let src = include_str!("../src/metrics.rs");
    let src = src.split("#[cfg(test)]").next().unwrap_or(src);
    src.split('"')
        .filter(|t| t.starts_with("geogate_") && t.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        .map(str::to_owned)
        .collect()
}

/// The label values each label may take with this test's config: bounded sets only.
fn allowed(family: &str, label: &str) -> Option<&'static [&'static str]> {
    const ACTIONS: &[&str] = &["allow", "block", "tag", "unresolved_block", "unresolved_allow", "bad_request", "error"];
    const RULES: &[&str] = &["", "try-by", "block-ru", "tag-de"];
    Some(match (family, label) {
        ("geogate_requests_total" | "geogate_request_duration_seconds", "action") => ACTIONS,
        ("geogate_requests_total", "rule") => RULES,
        // The countries the policy names, plus the two catch-alls.
        ("geogate_requests_total", "country") => &["BY", "DE", "RU", "other", "unknown"],
        ("geogate_dry_run_matches_total", "rule") => RULES,
        ("geogate_dry_run_matches_total", "action") => &["allow", "block", "tag"],
        ("geogate_upstream_duration_seconds" | "geogate_upstream_errors_total", "upstream") => &["app", "dead"],
        ("geogate_upstream_errors_total", "kind") => &["connect", "timeout", "protocol", "tls"],
        ("geogate_client_ip_resolutions_total", "source") => {
            &["peer", "x-forwarded-for", "forwarded", "header", "proxy-protocol"]
        }
        ("geogate_client_ip_resolutions_total", "outcome") => &[
            "peer",
            "proxy_protocol",
            "untrusted_peer",
            "header_missing",
            "header",
            "all_trusted",
            "malformed",
            "unknown_token",
            "obfuscated",
        ],
        ("geogate_rejected_total", "reason") => &[
            "smuggling_cl_te",
            "smuggling_te",
            "smuggling_cl",
            "proxy_protocol_untrusted",
            "preface_timeout",
            "slow_reader",
            "bad_signature",
            "too_long",
            "malformed",
            "bad_version",
            "bad_command",
            "bad_family",
            "timeout",
            "eof",
            "io",
            "bad_request_body",
            "path_control",
            "path_encoded_delimiter",
            "path_invalid_utf8",
            "path_ambiguous_unicode",
            "host_multiple",
            "host_invalid",
            "host_conflict",
            "host_missing",
        ],
        ("geogate_reloads_total", "trigger") => &["startup", "watch", "signal", "admin", "remote", "interval"],
        ("geogate_reloads_total", "result") => &["ok", "unchanged", "failed", "refused"],
        ("geogate_table_networks" | "geogate_table_ranges", "family") => &["ipv4", "ipv6"],
        ("geogate_database_build_timestamp_seconds", "source") => &["geo"],
        ("geogate_source_downloads_total" | "geogate_source_download_failures", "source") => &["ru-extra"],
        ("geogate_source_downloads_total", "result") => geogate::reload::remote::REMOTE_RESULTS,
        ("geogate_tls_certificate_expiry_timestamp_seconds", "listener") => &["tls"],
        ("geogate_tls_certificate_expiry_timestamp_seconds", "certificate") => &["tls.example.com"],
        ("geogate_tls_handshake_failures_total", "reason") => &[
            "timeout",
            "protocol_version",
            "no_shared_cipher",
            "no_shared_alpn",
            "bad_certificate",
            "not_tls",
            "eof",
            "other",
        ],
        _ => return None,
    })
}

/// Traffic that touches every metric: an allowed, a tagged, a blocked, a dry-run-matched,
/// a no-data and an unresolvable client, a request to a dead upstream, an untrusted PROXY
/// protocol peer and one reload. Then GET /metrics on the admin listener, parsed strictly.
/// Expected: the text/plain 0.0.4 content type; every family of `src/metrics.rs` present with
/// the right TYPE and a HELP; `process_*` families from the process collector; every label
/// value from its bounded set (no IP, no path anywhere); and the counts of this traffic.
#[tokio::test]
async fn metrics_parse_strictly_with_every_family_and_bounded_labels() {
    let (p, admin) = start("").await;
    for (ip, path, want) in [
        ("3.3.3.3", "/", StatusCode::OK),                            // US: allow, "other"
        ("80.0.0.1", "/", StatusCode::OK),                           // DE: tag
        ("5.1.1.1", "/", StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS), // RU: block
        ("37.0.0.1", "/", StatusCode::OK),                           // BY: dry-run block only
        ("8.8.8.8", "/", StatusCode::OK),                            // no data: "unknown"
        ("010.0.0.1", "/", StatusCode::FORBIDDEN),                   // malformed XFF: unresolved
        ("80.0.0.1", "/dead/x", StatusCode::BAD_GATEWAY),            // connect refused
        ("203.0.113.9", "/a/path/that/must/not/appear?q=1", StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS),
    ] {
        let (st, _, _) = get(p.addr, path, &[("x-forwarded-for", ip)]).await;
        assert_eq!(st, want, "{ip} {path}");
    }
    // A PROXY-protocol listener refuses a peer it does not trust: counted as rejected.
    let pp = p.running.as_ref().unwrap().listen_addrs[1];
    let refused = raw_closed(pp, b"PROXY TCP4 5.1.1.1 127.0.0.1 1234 80\r\n", std::time::Duration::from_secs(2)).await;
    assert_eq!(refused, "", "the untrusted PROXY peer is dropped without an answer");
    let (st, _, _) = call(admin, "POST", "/-/reload", &[]).await;
    assert_eq!(st, StatusCode::OK);

    let (st, h, body) = call(admin, "GET", "/metrics", &[]).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h["content-type"], "text/plain; version=0.0.4");
    let text = String::from_utf8(body.to_vec()).unwrap();
    let families = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));

    let declared: BTreeSet<String> = FAMILIES.iter().map(|(n, _)| (*n).to_owned()).collect();
    assert_eq!(names_in_metrics_source(), declared, "src/metrics.rs and this test disagree on the metric names");
    for (name, kind) in FAMILIES {
        let f = families.get(*name).unwrap_or_else(|| panic!("{name} missing\n{text}"));
        assert_eq!(f.kind.as_deref(), Some(*kind), "{name}");
        assert!(f.help.as_deref().is_some_and(|h| !h.is_empty()), "{name} has no HELP");
        assert!(!f.samples.is_empty(), "{name} has no samples\n{text}");
    }
    assert!(families.contains_key("process_resident_memory_bytes"), "the process collector is registered");
    for (name, f) in &families {
        assert!(name.starts_with("geogate_") || name.starts_with("process_"), "foreign family {name}");
        for s in &f.samples {
            for (label, v) in &s.labels {
                if label == "le" {
                    parse_value(v).unwrap();
                    continue;
                }
                let set = allowed(name, label).unwrap_or_else(|| panic!("{name}: unexpected label {label}"));
                assert!(set.contains(&v.as_str()), "{name}{{{label}={v:?}}} is outside its bounded set {set:?}");
            }
        }
    }
    assert!(!text.contains("203.0.113") && !text.contains("/a/path"), "an IP or a path leaked into a label");

    // Every geogate_* metric the shipped dashboard and alerts name is exported by this running
    // geogate (histograms through their _bucket/_sum/_count series).
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["deploy/grafana/geogate-dashboard.json", "deploy/prometheus/alerts.yml"] {
        let used = metric_names_in(&std::fs::read_to_string(root.join(file)).unwrap());
        assert!(!used.is_empty(), "{file} names no geogate metric");
        for name in used {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix).filter(|f| families.contains_key(*f)))
                .unwrap_or(&name);
            assert!(families.contains_key(family), "{file} names {name}, which a running geogate does not export");
        }
    }

    let v = |family: &str, name: &str, labels: &[(&str, &str)]| value(&families, family, name, labels);
    let req = "geogate_requests_total";
    assert_eq!(v(req, req, &[("action", "allow"), ("rule", ""), ("country", "other")]), 1.0);
    assert_eq!(v(req, req, &[("action", "block"), ("rule", "block-ru"), ("country", "RU")]), 2.0);
    // DE twice: once forwarded, once to the dead upstream (the verdict comes first).
    assert_eq!(v(req, req, &[("action", "tag"), ("rule", "tag-de"), ("country", "DE")]), 2.0);
    assert_eq!(v(req, req, &[("action", "allow"), ("country", "unknown")]), 1.0);
    assert_eq!(v(req, req, &[("action", "unresolved_block")]), 1.0);
    let dry = "geogate_dry_run_matches_total";
    assert_eq!(v(dry, dry, &[("rule", "try-by"), ("action", "block")]), 1.0);
    let ue = "geogate_upstream_errors_total";
    assert_eq!(v(ue, ue, &[("upstream", "dead"), ("kind", "connect")]), 1.0);
    let rej = "geogate_rejected_total";
    assert_eq!(v(rej, rej, &[("reason", "proxy_protocol_untrusted")]), 1.0);
    let rl = "geogate_reloads_total";
    assert_eq!(v(rl, rl, &[("trigger", "startup"), ("result", "ok")]), 1.0);
    assert_eq!(v(rl, rl, &[("trigger", "admin"), ("result", "unchanged")]), 1.0);
    let rd = "geogate_reload_duration_seconds";
    assert_eq!(v(rd, "geogate_reload_duration_seconds_count", &[]), 1.0);
    assert_eq!(v("geogate_snapshot_generation", "geogate_snapshot_generation", &[]), 1.0);
    let db = "geogate_database_build_timestamp_seconds";
    assert_eq!(v(db, db, &[("source", "geo")]), BUILD_EPOCH as f64);
    let nets = "geogate_table_networks";
    assert!(v(nets, nets, &[("family", "ipv4")]) > 0.0 && v(nets, nets, &[("family", "ipv6")]) > 0.0);
    assert!(v("geogate_table_bytes", "geogate_table_bytes", &[]) > 0.0);
    // The admin config's database layer is kept for the next reload, and counted.
    assert!(v("geogate_reload_cache_bytes", "geogate_reload_cache_bytes", &[]) > 0.0);
    let loaded = v("geogate_snapshot_loaded_timestamp_seconds", "geogate_snapshot_loaded_timestamp_seconds", &[]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((now - loaded).abs() < 120.0, "loaded {loaded}, now {now}");
    p.shutdown().await;
}

/// A fresh geogate before any request, then after a reload that names a new rule and a new
/// upstream. Expected: /metrics already shows at 0 every series the configuration and the
/// proxy's fixed label sets make known (the shipped dashboard and alerts read them, and a
/// series that appears only with its first event reads as "no data"); the dry-run rule is
/// not counted as an enforced one; after the reload the new rule's and upstream's series are
/// there at 0 too, and the counted ones kept their values.
#[tokio::test]
async fn every_known_series_exists_at_zero_before_any_traffic() {
    let (p, admin) = start("").await;
    let scrape = || async move {
        let (st, _, body) = call(admin, "GET", "/metrics", &[]).await;
        assert_eq!(st, StatusCode::OK);
        let text = String::from_utf8(body.to_vec()).unwrap();
        parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    };
    let families = scrape().await;
    let zero = |family: &str, name: &str, labels: &[(&str, &str)]| {
        assert_eq!(value(&families, family, name, labels), 0.0, "{name}{labels:?}");
    };
    let req = "geogate_requests_total";
    zero(req, req, &[("action", "block"), ("rule", "block-ru"), ("country", "RU")]);
    zero(req, req, &[("action", "block"), ("rule", "block-ru"), ("country", "other")]);
    zero(req, req, &[("action", "tag"), ("rule", "tag-de"), ("country", "DE")]);
    zero(req, req, &[("action", "allow"), ("rule", ""), ("country", "unknown")]);
    zero(req, req, &[("action", "unresolved_block"), ("rule", ""), ("country", "unknown")]);
    let enforced_dry_run =
        families[req].samples.iter().any(|s| s.labels.iter().any(|(k, v)| k == "rule" && v == "try-by"));
    assert!(!enforced_dry_run, "the dry-run rule is not an enforced rule of geogate_requests_total");
    let dry = "geogate_dry_run_matches_total";
    zero(dry, dry, &[("rule", "try-by"), ("action", "block")]);
    let rd = "geogate_request_duration_seconds";
    for action in ["allow", "tag", "block", "unresolved_block", "bad_request"] {
        zero(rd, "geogate_request_duration_seconds_count", &[("action", action)]);
    }
    let ud = "geogate_upstream_duration_seconds";
    zero(ud, "geogate_upstream_duration_seconds_count", &[("upstream", "dead")]);
    let ue = "geogate_upstream_errors_total";
    zero(ue, ue, &[("upstream", "dead"), ("kind", "connect")]);
    zero(ue, ue, &[("upstream", "app"), ("kind", "timeout")]);
    let ci = "geogate_client_ip_resolutions_total";
    zero(ci, ci, &[("source", "x-forwarded-for"), ("outcome", "malformed")]);
    zero(ci, ci, &[("source", "proxy-protocol"), ("outcome", "proxy_protocol")]);
    let rej = "geogate_rejected_total";
    for reason in [
        "smuggling_cl_te",
        "bad_request_body",
        "proxy_protocol_untrusted",
        "preface_timeout",
        "slow_reader",
        "bad_signature",
        "host_missing",
    ] {
        zero(rej, rej, &[("reason", reason)]);
    }
    let rl = "geogate_reloads_total";
    zero(rl, rl, &[("trigger", "admin"), ("result", "failed")]);
    zero(rl, rl, &[("trigger", "watch"), ("result", "refused")]);
    assert_eq!(value(&families, rl, rl, &[("trigger", "startup"), ("result", "ok")]), 1.0);

    // A reload naming a new rule and a new upstream creates their series at 0 as well.
    let (st, _, _) = get(p.addr, "/", &[("x-forwarded-for", "5.1.1.1")]).await;
    assert_eq!(st, StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
    let toml = std::fs::read_to_string(&p.config_path).unwrap();
    let toml = toml.replace("name = \"tag-de\"", "name = \"tag-de-v2\"").replacen(
        "[[route]]",
        "[[upstream]]\nname = \"spare\"\nurl = \"http://127.0.0.1:2\"\n\n[[route]]",
        1,
    );
    std::fs::write(&p.config_path, toml).unwrap();
    let (st, _, body) = call(admin, "POST", "/-/reload", &[]).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(json(&body)["result"], "ok", "{}", String::from_utf8_lossy(&body));
    let families = scrape().await;
    let zero = |family: &str, name: &str, labels: &[(&str, &str)]| {
        assert_eq!(value(&families, family, name, labels), 0.0, "{name}{labels:?}");
    };
    zero(req, req, &[("action", "tag"), ("rule", "tag-de-v2"), ("country", "DE")]);
    zero(ue, ue, &[("upstream", "spare"), ("kind", "protocol")]);
    zero(ud, "geogate_upstream_duration_seconds_count", &[("upstream", "spare")]);
    let blocked = value(&families, req, req, &[("action", "block"), ("rule", "block-ru"), ("country", "RU")]);
    assert_eq!(blocked, 1.0, "a counted series keeps its count");
    p.shutdown().await;
}

/// Every `geogate_…` identifier in a text (PromQL inside JSON or YAML). Recording-rule names
/// (`geogate:…`) use a colon and are not metrics, so they are not matched.
fn metric_names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("geogate_") {
        let start = i + pos;
        let boundary = start == 0
            || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_' || bytes[start - 1] == b':');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let is_metric = boundary && bytes.get(end) != Some(&b':');
        if is_metric {
            out.insert(text[start..end].to_owned());
        }
        i = end.max(start + 1);
    }
    out
}

/// Whether any `trigger="admin"` reload was counted (its series exist from the start, at 0).
fn admin_reloads_counted(text: &str) -> bool {
    let admin: Vec<&str> =
        text.lines().filter(|l| l.starts_with("geogate_reloads_total{") && l.contains("trigger=\"admin\"")).collect();
    assert!(!admin.is_empty(), "no trigger=\"admin\" reload series in:\n{text}");
    admin.iter().any(|l| !l.ends_with(" 0"))
}

// --- the admin API ---------------------------------------------------------------------------

/// GET /healthz and /readyz after start; unknown paths and wrong methods. Expected: 200 "ok",
/// 200 "ready"; 404 for unknown paths; 405 for a known path with the wrong method.
#[tokio::test]
async fn health_readiness_and_routing() {
    let (p, admin) = start("").await;
    let (st, _, body) = call(admin, "GET", "/healthz", &[]).await;
    assert_eq!((st, &body[..]), (StatusCode::OK, &b"ok\n"[..]));
    let (st, _, body) = call(admin, "GET", "/readyz", &[]).await;
    assert_eq!((st, &body[..]), (StatusCode::OK, &b"ready\n"[..]));
    for path in ["/", "/nope", "/metrics/x", "/-/reload/", "/-/explain/x"] {
        assert_eq!(call(admin, "GET", path, &[]).await.0, StatusCode::NOT_FOUND, "GET {path}");
    }
    for (method, path) in [
        ("GET", "/-/reload"),
        ("POST", "/metrics"),
        ("PUT", "/healthz"),
        ("DELETE", "/-/snapshot"),
        ("POST", "/-/explain"),
        ("POST", "/readyz"),
    ] {
        assert_eq!(call(admin, method, path, &[]).await.0, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
    }
    assert_eq!(p.running.as_ref().unwrap().current.load().generation, 1, "GET /-/reload must not reload");
    p.shutdown().await;
}

/// A start-up with no loadable data and `on_no_data = "fail-open"`. Expected: /healthz 200
/// but /readyz 503 (generation 0, degraded).
#[tokio::test]
async fn readyz_is_503_while_serving_without_data() {
    let up = upstream().await;
    let cfg = config("").replace("[reload]", "[reload]\non_no_data = \"fail-open\"");
    let (cert, key) = tls_pair();
    let files: &[(&str, &[u8])] =
        &[("ru.txt", b"203.0.113.0/24\n"), ("tls.crt", cert.as_bytes()), ("tls.key", key.as_bytes())];
    let p = Proxy::start_with_files(&cfg, &up, files).await; // no geo.mmdb
    let admin = p.admin.unwrap();
    assert_eq!(call(admin, "GET", "/healthz", &[]).await.0, StatusCode::OK);
    let (st, _, body) = call(admin, "GET", "/readyz", &[]).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{body:?}");
    p.shutdown().await;
}

/// `reload_token = "s3cret"`. POST /-/reload without a token, with a wrong one, with a
/// prefix of it and with another scheme. Expected: 401 with a JSON error each time and no
/// reload counted; with `Bearer s3cret` (scheme in any case) 200 and the JSON outcome.
#[tokio::test]
async fn reload_requires_the_bearer_token_when_set() {
    let (p, admin) = start(r#"reload_token = "s3cret""#).await;
    for auth in
        [None, Some("Bearer wrong"), Some("Bearer s3cre"), Some("Bearer s3cretX"), Some("Basic s3cret"), Some("s3cret")]
    {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        let (st, h, body) = call(admin, "POST", "/-/reload", &headers).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(h["content-type"], "application/json");
        assert!(json(&body)["error"].as_str().unwrap().contains("token"), "{body:?}");
    }
    let m = p.running.as_ref().unwrap().metrics.render();
    assert!(!admin_reloads_counted(&m), "a refused call must not reload:\n{m}");
    for auth in ["Bearer s3cret", "bearer s3cret"] {
        let (st, _, body) = call(admin, "POST", "/-/reload", &[("authorization", auth)]).await;
        assert_eq!(st, StatusCode::OK, "{auth}: {body:?}");
        assert_eq!(json(&body)["result"], "unchanged");
    }
    p.shutdown().await;
}

/// POST /-/reload with nothing changed, then after the list file changed. Expected: JSON with
/// trigger, result, generation, changed, duration_ms and errors; "unchanged" keeps generation
/// 1, the change gives generation 2 with `changed: true`.
#[tokio::test]
async fn reload_answers_json() {
    let (p, admin) = start("").await;
    let (st, h, body) = call(admin, "POST", "/-/reload", &[]).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h["content-type"], "application/json");
    let v = json(&body);
    assert_eq!(v["trigger"], "admin");
    assert_eq!(v["result"], "unchanged");
    assert_eq!(v["generation"], 1);
    assert_eq!(v["changed"], false);
    assert!(v["duration_ms"].as_f64().is_some_and(|d| d >= 0.0), "{v}");
    assert_eq!(v["errors"], serde_json::json!([]));

    std::fs::write(p.dir.path().join("ru.txt"), "203.0.113.0/24\n198.51.100.0/24\n").unwrap();
    let v = json(&call(admin, "POST", "/-/reload", &[]).await.2);
    assert_eq!(
        (v["result"].as_str(), v["generation"].as_u64(), v["changed"].as_bool()),
        (Some("ok"), Some(2), Some(true))
    );
    assert!(v["duration_ms"].as_f64().unwrap() > 0.0);
    let (st, _, _) = get(p.addr, "/", &[("x-forwarded-for", "198.51.100.1")]).await;
    assert_eq!(st, StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
    p.shutdown().await;
}

/// GET /-/explain for a blocked address (RU from the list overriding the database), an
/// allowed one (US from the database) and bad queries. Expected: JSON naming the rule, the
/// action, the data source and the stored prefix; 400 without `ip` or with a bad address.
#[tokio::test]
async fn explain_names_rule_action_prefix_and_source() {
    let (p, admin) = start("").await;
    let (st, h, body) = call(admin, "GET", "/-/explain?ip=203.0.113.9&path=%2Fsign%20up&method=POST", &[]).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(h["content-type"], "application/json");
    let v = json(&body);
    assert_eq!(v["action"], "block", "{v}");
    assert_eq!(v["rule"], "block-ru");
    assert_eq!(v["data"]["source"], "ru-extra");
    assert_eq!(v["data"]["prefix"], "203.0.113.0/24");
    assert_eq!(v["data"]["country"], "RU");
    assert_eq!(v["client_ip"], "203.0.113.9");
    assert_eq!(v["path"], "/sign up");
    assert_eq!(v["method"], "POST");
    assert_eq!(v["generation"], 1);

    let v = json(&call(admin, "GET", "/-/explain?ip=3.3.3.3", &[]).await.2);
    assert_eq!(v["action"], "allow", "{v}");
    assert_eq!(v["rule"], Value::Null);
    assert_eq!(v["data"]["source"], "geo");
    assert_eq!(v["data"]["country"], "US");
    // The stored entry around the address: inside the database's 3.0.0.0/8, holding 3.3.3.3.
    let prefix: ipnet::IpNet = v["data"]["prefix"].as_str().unwrap().parse().unwrap();
    let network: ipnet::IpNet = "3.0.0.0/8".parse().unwrap();
    assert!(network.contains(&prefix) && prefix.contains(&"3.3.3.3".parse::<std::net::IpAddr>().unwrap()), "{v}");

    let v = json(&call(admin, "GET", "/-/explain?ip=37.0.0.1", &[]).await.2);
    assert_eq!((v["action"].as_str(), v["dry_run"][0].as_str()), (Some("allow"), Some("try-by")), "{v}");

    for q in ["/-/explain", "/-/explain?ip=", "/-/explain?ip=010.0.0.1", "/-/explain?ip=1.2.3.4&method=G%20T"] {
        let (st, _, body) = call(admin, "GET", q, &[]).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}");
        assert!(json(&body)["error"].is_string(), "{q}");
    }
    p.shutdown().await;
}

/// GET /-/snapshot. Expected: the generation, each source with kind, origin, build date and
/// age (the fixture's build epoch), network counts and hash, and the table sizes.
#[tokio::test]
async fn snapshot_summary_lists_sources_and_sizes() {
    let (p, admin) = start("").await;
    let v = json(&call(admin, "GET", "/-/snapshot", &[]).await.2);
    assert_eq!(v["generation"], 1);
    assert_eq!(v["rules"], 3);
    assert!(v["fingerprint"].as_str().is_some_and(|f| f.len() == 64));
    let geo = &v["sources"][0];
    assert_eq!(geo["name"], "geo");
    assert_eq!(geo["kind"], "mmdb");
    assert_eq!(geo["build_epoch"], BUILD_EPOCH);
    assert_eq!(geo["built"], "2023-11-14T22:13:20Z");
    let age = geo["age_days"].as_f64().unwrap();
    assert!(age > 700.0, "{age}");
    assert!(geo["networks_v4"].as_u64().unwrap() > 0);
    assert_eq!(geo["sha256"].as_str().unwrap().len(), 64);
    assert!(geo["origin"].as_str().unwrap().ends_with("geo.mmdb"));
    let list = &v["sources"][1];
    assert_eq!((list["name"].as_str(), list["kind"].as_str()), (Some("ru-extra"), Some("list")));
    assert_eq!(list["networks_v4"], 1);
    assert_eq!(list["build_epoch"], Value::Null);
    for key in ["ranges_v4", "ranges_v6", "answers", "heap_bytes"] {
        assert!(v["table"][key].as_u64().is_some_and(|n| n > 0), "table.{key}: {v}");
    }
    // A small IPv4 table may need no internal node; the count is still reported.
    assert!(v["table"]["nodes_v4"].is_u64() && v["table"]["nodes_v6"].is_u64(), "{v}");
    p.shutdown().await;
}

/// The admin paths requested on the PUBLIC listener. Expected: each is proxied to the
/// upstream like any other path (the JSON echo of that path), never answered by the admin:
/// no metrics text, and POST /-/reload there reloads nothing.
#[tokio::test]
async fn admin_is_not_served_on_the_public_listener() {
    let (p, _) = start("").await;
    for path in ["/metrics", "/healthz", "/readyz", "/-/snapshot", "/-/explain?ip=1.2.3.4"] {
        let (st, h, body) = get(p.addr, path, &[("x-forwarded-for", "3.3.3.3")]).await;
        assert_eq!(st, StatusCode::OK, "{path}");
        assert_eq!(h["x-upstream"], "yes", "{path} was not forwarded");
        assert!(!String::from_utf8_lossy(&body).contains("geogate_"), "{path} leaked metrics");
        let echo: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(echo["path"], path.split('?').next().unwrap());
    }
    let req = Request::post("/-/reload")
        .header("host", "app.example.com")
        .header("x-forwarded-for", "3.3.3.3")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (st, h, _) = send(p.addr, req).await;
    assert_eq!((st, h.get("x-upstream").is_some()), (StatusCode::OK, true));
    // The policy still applies to these paths: a RU client is blocked, not shown metrics.
    let (st, _, _) = get(p.addr, "/metrics", &[("x-forwarded-for", "5.1.1.1")]).await;
    assert_eq!(st, StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
    let m = p.running.as_ref().unwrap().metrics.render();
    assert!(!admin_reloads_counted(&m), "the public POST /-/reload reloaded:\n{m}");
    p.shutdown().await;
}
