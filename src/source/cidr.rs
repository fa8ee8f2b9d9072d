//! CIDR lists: one IP address or CIDR network per line.
//!
//! Format: `#` starts a comment (whole line or trailing), blank lines are skipped, IPv4 and
//! IPv6 may be mixed, a bare address means `/32` or `/128`. A UTF-8 BOM and CRLF line endings
//! are accepted. Parsing is strict because a lenient reading of a block list silently blocks
//! the wrong people: `010.0.0.1`, `127.1`, `0x7f.0.0.1`, `2130706433`, zone ids, `/08`, two
//! tokens on one line and host bits set (`10.0.0.1/8`) are all errors. Every bad line is
//! reported at once, with its number, its text and why.
//!
//! IPv4-mapped entries (`::ffff:a.b.c.d/p`, p ≥ 96) are stored as IPv4 `/p-96`: lookups
//! canonicalise `::ffff:a.b.c.d` to `a.b.c.d` first, so the mapped form would never match.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{quote, sha256_hex, Provenance, SourceError};

/// A parsed list. Networks are sorted and exact duplicates removed; they may still nest or
/// overlap (the table resolves that).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CidrList {
    pub name: String,
    pub v4: Vec<Ipv4Net>,
    pub v6: Vec<Ipv6Net>,
    pub provenance: Provenance,
}

/// One bad line of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number (for inline lists: the entry's index + 1).
    pub line: usize,
    /// The line as written (without the line ending).
    pub text: String,
    /// Why it was refused, with a hint where one helps.
    pub reason: String,
}

/// Parses the text of a list. `origin` names it in errors and provenance.
pub fn parse(name: &str, origin: &str, text: &str) -> Result<CidrList, SourceError> {
    // A BOM is what some Windows editors write first; it is not part of the first entry.
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    // `lines()` splits on `\n` and drops a `\r` before it, so CRLF files read the same.
    let lines = body.lines().enumerate().map(|(i, l)| (i + 1, l));
    build(name, origin, lines, text.as_bytes())
}

/// Reads and parses a list file.
pub fn load(name: &str, path: &Path) -> Result<CidrList, SourceError> {
    let origin = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| SourceError::Io { origin: origin.clone(), source })?;
    // Invalid UTF-8 is reported as bad lines (with U+FFFD in the quoted text) rather than as
    // one opaque error, so the operator sees where it is. Inside a comment it is harmless.
    let text = String::from_utf8_lossy(&bytes);
    let mut list = parse(name, &origin, &text)?;
    // Provenance describes the file's bytes, not the lossy text.
    list.provenance.bytes = bytes.len() as u64;
    list.provenance.sha256 = sha256_hex(&bytes);
    Ok(list)
}

/// Parses entries written in the configuration itself. Entry `i` is reported as line `i + 1`
/// of origin `"inline"`; comments and blank entries are accepted as in a file.
pub fn from_entries(name: &str, entries: &[String]) -> Result<CidrList, SourceError> {
    let joined = entries.join("\n");
    let lines = entries.iter().enumerate().map(|(i, e)| (i + 1, e.as_str()));
    build(name, "inline", lines, joined.as_bytes())
}

fn build<'a>(
    name: &str,
    origin: &str,
    lines: impl Iterator<Item = (usize, &'a str)>,
    raw: &[u8],
) -> Result<CidrList, SourceError> {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    let mut errors = Vec::new();
    for (line, text) in lines {
        match parse_line(text) {
            Ok(None) => {}
            Ok(Some(IpNet::V4(net))) => v4.push(net),
            Ok(Some(IpNet::V6(net))) => v6.push(net),
            Err(reason) => errors.push(LineError { line, text: text.to_owned(), reason }),
        }
    }
    if !errors.is_empty() {
        return Err(SourceError::List { origin: origin.to_owned(), errors });
    }
    v4.sort_unstable();
    v4.dedup();
    v6.sort_unstable();
    v6.dedup();
    let provenance = Provenance {
        name: name.to_owned(),
        kind: "list",
        origin: origin.to_owned(),
        schema: "list".to_owned(),
        database_type: None,
        build_epoch: None,
        networks_v4: v4.len(),
        networks_v6: v6.len(),
        bytes: raw.len() as u64,
        sha256: sha256_hex(raw),
    };
    Ok(CidrList { name: name.to_owned(), v4, v6, provenance })
}

/// One line: `Ok(None)` for blank and comment lines, the network, or why the line is bad.
fn parse_line(line: &str) -> Result<Option<IpNet>, String> {
    let content = match line.find('#') {
        Some(i) => &line[..i],
        None => line,
    };
    let mut tokens = content.split_whitespace();
    let Some(token) = tokens.next() else {
        return Ok(None);
    };
    if let Some(extra) = tokens.next() {
        return Err(format!(
            "expected one address or CIDR per line, found another token {extra:?} \
             (use '#' for comments)"
        ));
    }
    parse_entry(token).map(Some)
}

/// One address or CIDR, strictly.
fn parse_entry(token: &str) -> Result<IpNet, String> {
    let (addr_text, prefix_text) = match token.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (token, None),
    };
    // std's parsers are strict: no octal or hex parts, no shortened IPv4 (`127.1`), no bare
    // integers, no zone ids. That is exactly the strictness a block list needs.
    let addr: IpAddr = addr_text.parse().map_err(|_| address_hint(addr_text))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix_text {
        None => max,
        Some(p) => parse_prefix(p, max)?,
    };
    let net = IpNet::new(addr, prefix).map_err(|_| format!("prefix /{prefix} is too long"))?;
    if net.trunc() != net {
        return Err(format!("host bits are set after /{prefix}; did you mean {}?", net.trunc()));
    }
    match net {
        IpNet::V6(v6) => canonical_v6(v6),
        v4 => Ok(v4),
    }
}

/// A decimal prefix length without sign or leading zeros, at most `max`.
fn parse_prefix(text: &str, max: u8) -> Result<u8, String> {
    let well_formed = !text.is_empty()
        && text.len() <= 3
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    match text.parse::<u8>() {
        Ok(p) if well_formed && p <= max => Ok(p),
        Ok(p) if well_formed => Err(format!("prefix /{p} is longer than /{max}")),
        _ => Err(format!("bad prefix length {text:?}: expected a decimal number 0..={max}")),
    }
}

/// IPv4-mapped networks become IPv4 networks, because lookups see the IPv4 form.
fn canonical_v6(net: Ipv6Net) -> Result<IpNet, String> {
    let mapped = Ipv6Net::new(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96).map_err(|e| e.to_string())?;
    if mapped.contains(&net) {
        let octets = net.addr().octets();
        let v4 = Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]);
        return Ipv4Net::new(v4, net.prefix_len() - 96).map(IpNet::V4).map_err(|e| e.to_string());
    }
    if net.contains(&mapped) {
        return Err(format!(
            "/{} covers all of ::ffff:0:0/96 (IPv4-mapped addresses) and more; \
             write the IPv4 part as 0.0.0.0/0 and the rest separately",
            net.prefix_len()
        ));
    }
    Ok(IpNet::V6(net))
}

/// Why an address did not parse, with a hint for the usual mistakes.
fn address_hint(text: &str) -> String {
    let quoted = quote(text);
    if text.is_empty() {
        return "missing address before '/'".to_owned();
    }
    if text.contains('%') {
        return format!("{quoted} has a zone id ('%...'), which a list cannot use");
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return format!("{quoted} is a bare integer; write the address in dotted form");
    }
    if text.contains('.') && !text.contains(':') {
        let parts: Vec<&str> = text.split('.').collect();
        if parts.len() != 4 {
            return format!("{quoted} is not a dotted-quad IPv4 address (exactly four parts needed)");
        }
        if parts.iter().any(|p| p.len() > 1 && (p.starts_with('0') || p.starts_with("0x"))) {
            return format!(
                "{quoted} has a part with a leading zero or 0x, which some tools read \
                 as octal or hex; write plain decimal"
            );
        }
    }
    format!("{quoted} is not an IP address or CIDR")
}

// === impl LineError ===

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {}", self.line, quote(&self.text), self.reason)
    }
}

#[cfg(test)]
mod tests;
