//! The offline commands: `geogate lookup`, `geogate check` and `geogate explain`.
//!
//! Each takes a compiled [`Snapshot`] (or table) and writes text or JSON; `main.rs` only
//! parses arguments and maps results to exit codes.

use std::io::{self, BufRead, Write};
use std::net::IpAddr;

use serde_json::json;

use crate::config::DbFormat;
use crate::geo::{Answer, GeoRecord};
use crate::snapshot::Snapshot;
use crate::table::GeoTable;

/// How a `lookup` run went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LookupSummary {
    pub answered: u64,
    pub bad: u64,
}

/// Output format for `lookup` and `explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `ip<TAB>country<TAB>subdivision<TAB>lists<TAB>asn`, `-` where none.
    Text,
    /// One JSON object per line.
    Json,
    /// [`Json`](Self::Json) plus each database source's own answer (`sources`).
    JsonWithSources,
}

/// Whether the file at `path` is a MaxMind DB or a range file, from its first bytes: gzip, or
/// text whose first data line starts with two addresses, is a range file; anything else is
/// read as a MaxMind DB (whose reader then names what is wrong with it).
pub fn detect_format(path: &std::path::Path) -> io::Result<DbFormat> {
    use std::io::Read;
    let mut head = Vec::with_capacity(8192);
    std::fs::File::open(path)?.take(8192).read_to_end(&mut head)?;
    Ok(if crate::source::ranges::sniff(&head) { DbFormat::Ranges } else { DbFormat::Mmdb })
}

/// Parses one address strictly: no octal, hex, short or integer IPv4 forms, no zone ids,
/// no surrounding junk (`std`'s parser already refuses all of those).
pub fn parse_ip(text: &str) -> Result<IpAddr, String> {
    text.parse::<IpAddr>().map_err(|_| {
        if text.is_empty() {
            "empty line".to_owned()
        } else {
            "not an IPv4 or IPv6 address in standard notation".to_owned()
        }
    })
}

/// Answers each address in `inputs` in order; bad ones are reported on `err` and skipped.
/// Streams: memory does not grow with the input.
pub fn lookup_lines<R: BufRead, W: Write, E: Write>(
    snapshot: &Snapshot,
    input: R,
    out: &mut W,
    err: &mut E,
    format: Format,
) -> io::Result<LookupSummary> {
    let mut summary = LookupSummary::default();
    let mut line_no = 0u64;
    let mut input = input;
    let mut buf = Vec::with_capacity(64);
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        line_no += 1;
        let raw = String::from_utf8_lossy(&buf);
        let text = raw.trim_end_matches(['\n', '\r']);
        lookup_one(snapshot, text, line_no, out, err, format, &mut summary)?;
    }
    Ok(summary)
}

/// Answers addresses given as arguments; argument `i` is reported as "argument i".
pub fn lookup_args<W: Write, E: Write>(
    snapshot: &Snapshot,
    args: &[String],
    out: &mut W,
    err: &mut E,
    format: Format,
) -> io::Result<LookupSummary> {
    let mut summary = LookupSummary::default();
    for (i, a) in args.iter().enumerate() {
        lookup_one(snapshot, a, i as u64 + 1, out, err, format, &mut summary)?;
    }
    Ok(summary)
}

fn lookup_one<W: Write, E: Write>(
    snapshot: &Snapshot,
    text: &str,
    line_no: u64,
    out: &mut W,
    err: &mut E,
    format: Format,
    summary: &mut LookupSummary,
) -> io::Result<()> {
    match parse_ip(text) {
        Ok(ip) => {
            let answer = snapshot.table.lookup(ip);
            write_answer(&snapshot.table, snapshot, text, ip, &answer, out, format)?;
            summary.answered += 1;
        }
        Err(why) => {
            writeln!(err, "line {line_no}: {text:?}: {why}")?;
            summary.bad += 1;
        }
    }
    Ok(())
}

fn write_answer<W: Write>(
    table: &GeoTable,
    snapshot: &Snapshot,
    text: &str,
    ip: IpAddr,
    a: &Answer,
    out: &mut W,
    format: Format,
) -> io::Result<()> {
    match format {
        Format::Text => {
            let country = a.geo.country.as_ref().map_or("-", |c| c.as_str());
            let sub = a.geo.subdivision.as_deref().unwrap_or("-");
            let lists = table.list_label(a);
            let lists = lists.as_deref().unwrap_or("-");
            match a.geo.asn {
                Some(asn) => writeln!(out, "{text}\t{country}\t{sub}\t{lists}\t{asn}"),
                None => writeln!(out, "{text}\t{country}\t{sub}\t{lists}\t-"),
            }
        }
        Format::Json | Format::JsonWithSources => {
            let mut v = answer_json(snapshot, a);
            if format == Format::JsonWithSources {
                v["sources"] = sources_json(snapshot, a);
            }
            v["ip"] = json!(text);
            v["canonical"] = json!(ip.to_canonical().to_string());
            writeln!(out, "{v}")
        }
    }
}

/// What the table says about an address, as a JSON object (shared by `lookup --json` and
/// `explain`).
pub fn answer_json(snapshot: &Snapshot, a: &Answer) -> serde_json::Value {
    let mut v = record_json(a.geo);
    v["source"] = json!(a.source.and_then(|s| snapshot.provenance.get(s as usize)).map(|p| p.name.as_str()));
    v["lists"] = json!(a.lists.ids().filter_map(|i| snapshot.table.list_name(i)).collect::<Vec<_>>());
    v
}

/// One record's fields as a JSON object.
pub fn record_json(g: &GeoRecord) -> serde_json::Value {
    json!({
        "country": g.country.map(|c| c.to_string()),
        "subdivision": g.subdivision.as_deref(),
        "registered_country": g.registered_country.map(|c| c.to_string()),
        "represented_country": g.represented_country.map(|c| c.to_string()),
        "anonymous_proxy": g.anonymous_proxy,
        "satellite_provider": g.satellite_provider,
        "asn": g.asn,
        "as_org": g.as_org.as_deref(),
    })
}

/// Each database source's own answer, keyed by source name (`null` where it has no data; the
/// keys come out sorted by name).
pub fn sources_json(snapshot: &Snapshot, a: &Answer) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (i, (source, p)) in snapshot.config.sources.iter().zip(&snapshot.provenance).enumerate() {
        if p.kind == "list" {
            continue;
        }
        let Ok(i) = u16::try_from(i) else { continue };
        let view = a.views.iter().find(|v| v.source == i).map(|v| record_json(v.geo));
        out.insert(source.name.clone(), view.unwrap_or(serde_json::Value::Null));
    }
    serde_json::Value::Object(out)
}

/// The human summary printed by `geogate check`.
pub fn check_summary(s: &Snapshot) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let origin = s.config.origin.as_ref().map_or("built-in defaults".to_owned(), |p| p.display().to_string());
    let _ = writeln!(o, "config: {origin}: OK");
    let _ = writeln!(o, "sources ({}), later overrides earlier:", s.provenance.len());
    for p in &s.provenance {
        let built = p.build_epoch.map_or("-".to_owned(), format_epoch);
        let _ = writeln!(
            o,
            "  {:<16} {:<4} {:<7} {:>9} IPv4 + {:>9} IPv6 networks  built {}  {} bytes  sha256 {}  {}",
            p.name,
            p.kind,
            p.schema,
            p.networks_v4,
            p.networks_v6,
            built,
            p.bytes,
            &p.sha256[..p.sha256.len().min(12)],
            p.origin
        );
    }
    let t = s.table.stats();
    let _ = writeln!(
        o,
        "table: {} IPv4 ranges, {} IPv6 ranges after merging, {} distinct answers, {} bytes ({:.2} MiB) heap",
        t.ranges_v4,
        t.ranges_v6,
        t.answers,
        t.heap_bytes,
        t.heap_bytes as f64 / 1048576.0
    );
    let c = &s.config;
    let _ = writeln!(
        o,
        "policy: {} rules, default {:?}; {} listeners, {} upstreams, {} routes",
        c.policy.rules.len(),
        c.policy.default_action,
        c.listeners.len(),
        c.upstreams.len(),
        c.routes.len()
    );
    for (listener, tls) in c.listeners.iter().zip(&s.tls) {
        for cert in tls.iter().flat_map(|t| t.certificates.iter()) {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let days = (cert.not_after - i64::try_from(now).unwrap_or(i64::MAX)) / 86400;
            let _ = writeln!(
                o,
                "tls: listener {:?}: {} [{}] serial {}, expires in {days} days",
                listener.name,
                cert.cert_path.display(),
                cert.names.join(", "),
                cert.serial
            );
        }
    }
    let _ = writeln!(o, "compile time: {:.3} s", s.compile_time.as_secs_f64());
    o
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (UTC), without a date library.
pub fn format_epoch(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_formatting() {
        assert_eq!(format_epoch(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_epoch(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_epoch(1_781_725_900), "2026-06-17T19:51:40Z");
    }

    #[test]
    fn strict_addresses() {
        for bad in
            ["010.0.0.1", "0x7f.1", "127.1", "2130706433", "1.2.3.4 x", " 1.2.3.4", "fe80::1%eth0", "", "1.2.3.4/32"]
        {
            assert!(parse_ip(bad).is_err(), "{bad:?}");
        }
        for good in ["1.2.3.4", "::1", "::ffff:1.2.3.4", "2001:db8::1"] {
            assert!(parse_ip(good).is_ok(), "{good:?}");
        }
    }
}

/// A full explanation, rendered as text for the terminal or JSON for the admin API.
#[derive(Debug, Clone)]
pub struct ExplainReport {
    pub value: serde_json::Value,
}

impl ExplainReport {
    pub fn to_json(&self) -> &serde_json::Value {
        &self.value
    }

    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let v = &self.value;
        let s = |k: &str| v[k].as_str().map(str::to_owned).unwrap_or_else(|| v[k].to_string());
        let mut o = String::new();
        let _ = writeln!(o, "client ip:   {} ({})", s("client_ip"), s("resolution"));
        let d = &v["data"];
        let _ = writeln!(
            o,
            "data:        source={} prefix={} range={}..{}",
            d["source"].as_str().unwrap_or("-"),
            d["prefix"].as_str().unwrap_or("-"),
            d["range_first"].as_str().unwrap_or("-"),
            d["range_last"].as_str().unwrap_or("-")
        );
        let _ = writeln!(
            o,
            "             country={} subdivision={} registered_country={} lists={} anonymous_proxy={} satellite_provider={}",
            d["country"].as_str().unwrap_or("-"),
            d["subdivision"].as_str().unwrap_or("-"),
            d["registered_country"].as_str().unwrap_or("-"),
            d["lists"].as_array().map_or("-".to_owned(), |l| {
                let names: Vec<&str> = l.iter().filter_map(|x| x.as_str()).collect();
                if names.is_empty() { "-".to_owned() } else { names.join(",") }
            }),
            d["anonymous_proxy"],
            d["satellite_provider"]
        );
        let _ = writeln!(
            o,
            "             asn={} as_org={}",
            d["asn"].as_u64().map_or("-".to_owned(), |n| format!("AS{n}")),
            d["as_org"].as_str().unwrap_or("-")
        );
        if let Some(sources) = v["sources"].as_object() {
            for (name, view) in sources {
                let text = if view.is_null() {
                    "no data".to_owned()
                } else {
                    format!(
                        "country={} subdivision={} asn={}",
                        view["country"].as_str().unwrap_or("-"),
                        view["subdivision"].as_str().unwrap_or("-"),
                        view["asn"].as_u64().map_or("-".to_owned(), |n| format!("AS{n}"))
                    )
                };
                let _ = writeln!(o, "  source {name:<16} {text}");
            }
        }
        let _ = writeln!(
            o,
            "request:     {} {} host={} (path as matched: {})",
            s("method"),
            s("path"),
            s("host"),
            s("normalized_path")
        );
        if let Some(steps) = v["rules"].as_array() {
            for st in steps {
                let _ = writeln!(
                    o,
                    "  rule[{}] {:<20} {}",
                    st["index"],
                    st["name"].as_str().unwrap_or(""),
                    st["outcome"].as_str().unwrap_or("")
                );
            }
        }
        let _ = writeln!(o, "verdict:     {} (action={}, dry_run_matches={})", s("summary"), s("action"), v["dry_run"]);
        let _ = write!(o, "snapshot:    generation {}", v["generation"]);
        o
    }
}

/// `geogate explain`: which data matches `ip` and which rule decides, and why.
pub fn explain(
    snapshot: &Snapshot,
    ip: &str,
    host: Option<&str>,
    path: &str,
    method: &str,
) -> Result<ExplainReport, String> {
    explain_value(snapshot, ip, host, path, method, None, None).map(|value| ExplainReport { value })
}

/// The explanation as JSON. With `peer` (and optionally `forwarded`, the value of the first
/// listener's client-IP header) the client IP is resolved as a request would be; otherwise
/// `ip` is taken as the client.
pub fn explain_value(
    snapshot: &Snapshot,
    ip: &str,
    host: Option<&str>,
    path: &str,
    method: &str,
    peer: Option<&str>,
    forwarded: Option<&str>,
) -> Result<serde_json::Value, String> {
    use crate::config::ClientIpSource;
    use crate::policy::RequestFacts;
    let method: http::Method = method.parse().map_err(|_| format!("{method:?} is not an HTTP method"))?;
    let (client, resolution) = match (peer, snapshot.config.listeners.first()) {
        (Some(peer), Some(listener)) => {
            let peer = parse_ip(peer).map_err(|e| format!("peer {peer:?}: {e}"))?;
            let mut headers = http::HeaderMap::new();
            if let Some(v) = forwarded.and_then(|v| http::HeaderValue::from_str(v).ok()) {
                let name = match &listener.client_ip.source {
                    ClientIpSource::XForwardedFor => Some(http::HeaderName::from_static("x-forwarded-for")),
                    ClientIpSource::Forwarded => Some(http::header::FORWARDED),
                    ClientIpSource::Header(n) => Some(n.clone()),
                    _ => None,
                };
                if let Some(n) = name {
                    headers.insert(n, v);
                }
            }
            let res = crate::client_ip::resolve(&listener.client_ip, peer, &headers);
            let text = res.describe(&listener.client_ip);
            match crate::client_ip::effective_ip(&res, peer, &listener.client_ip) {
                crate::client_ip::Decision::Lookup(ip) => (ip, text),
                other => {
                    return Ok(
                        json!({ "resolution": text, "decision": other.as_str(), "generation": snapshot.generation }),
                    )
                }
            }
        }
        _ => (parse_ip(ip).map_err(|e| format!("ip {ip:?}: {e}"))?, "given directly".to_owned()),
    };
    let located = snapshot.table.locate(client);
    let a = located.answer;
    let facts = RequestFacts { host, path, method: &method };
    let ex = snapshot.policy.explain(&facts, Some(&a));
    let rules: Vec<serde_json::Value> = ex
        .steps
        .iter()
        .map(|st| json!({ "index": st.rule, "name": st.name, "outcome": format!("{:?}", st.outcome) }))
        .collect();
    let dry: Vec<&str> =
        snapshot.policy.dry_run_matches(ex.verdict.dry_run).filter_map(|r| snapshot.policy.rule_name(r)).collect();
    let mut data = answer_json(snapshot, &a);
    data["prefix"] = json!(located.prefix(client).to_string());
    data["range_first"] = json!(located.first.to_string());
    data["range_last"] = json!(located.last.to_string());
    Ok(json!({
        "client_ip": client.to_canonical().to_string(),
        "resolution": resolution,
        "data": data,
        "host": host,
        "method": method.as_str(),
        "path": path,
        "normalized_path": ex.normalized_path,
        "rules": rules,
        "rule": ex.verdict.rule.and_then(|r| snapshot.policy.rule_name(r)),
        "rule_view": ex.verdict.rule.map(|r| snapshot.policy.rule_view(r)),
        "sources": sources_json(snapshot, &a),
        "action": ex.verdict.action.name(),
        "summary": ex.summary,
        "dry_run": dry,
        "generation": snapshot.generation,
    }))
}
