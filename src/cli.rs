//! The offline commands: `geogate lookup`, `geogate check` and `geogate explain`.
//!
//! Each takes a compiled [`Snapshot`] (or table) and writes text or JSON; `main.rs` only
//! parses arguments and maps results to exit codes.

use std::io::{self, BufRead, Write};
use std::net::IpAddr;

use serde_json::json;

use crate::geo::Answer;
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
    /// `ip<TAB>country<TAB>subdivision<TAB>lists`, `-` where none.
    Text,
    /// One JSON object per line.
    Json,
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
            write_answer(&snapshot.table, snapshot, text, ip, answer, out, format)?;
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
            match table.list_label(a) {
                Some(lists) => writeln!(out, "{text}\t{country}\t{sub}\t{lists}"),
                None => writeln!(out, "{text}\t{country}\t{sub}\t-"),
            }
        }
        Format::Json => {
            let lists: Vec<&str> = a.lists.ids().filter_map(|i| table.list_name(i)).collect();
            let source = a.source.and_then(|s| snapshot.provenance.get(s as usize)).map(|p| p.name.as_str());
            let v = json!({
                "ip": text,
                "canonical": ip.to_canonical().to_string(),
                "country": a.geo.country.map(|c| c.to_string()),
                "subdivision": a.geo.subdivision.as_deref(),
                "registered_country": a.geo.registered_country.map(|c| c.to_string()),
                "represented_country": a.geo.represented_country.map(|c| c.to_string()),
                "anonymous_proxy": a.geo.anonymous_proxy,
                "satellite_provider": a.geo.satellite_provider,
                "lists": lists,
                "source": source,
            });
            writeln!(out, "{v}")
        }
    }
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
        for bad in ["010.0.0.1", "0x7f.1", "127.1", "2130706433", "1.2.3.4 x", " 1.2.3.4", "fe80::1%eth0", "", "1.2.3.4/32"] {
            assert!(parse_ip(bad).is_err(), "{bad:?}");
        }
        for good in ["1.2.3.4", "::1", "::ffff:1.2.3.4", "2001:db8::1"] {
            assert!(parse_ip(good).is_ok(), "{good:?}");
        }
    }
}
