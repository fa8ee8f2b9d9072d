//! Working out the client IP from the TCP peer and the forwarding headers that trusted hops add.
//!
//! Pure: no I/O, no async, no panics, and no heap allocation on the request path (headers are walked
//! in place, from the right; the validated chain is held inline up to eight addresses). It is fuzzed, so every input (any header bytes) is a valid input.
//!
//! ```text
//! resolve(cfg, peer, headers) -> Resolution { client, outcome }   what the headers say, and why
//! effective_ip(&resolution, peer, cfg) -> Decision                 what the proxy does about it
//! ```
//!
//! # Rules
//! - Every address is canonicalised ([`IpAddr::to_canonical`], so `::ffff:a.b.c.d` is `a.b.c.d`)
//!   before any trust check or comparison.
//! - A header from an untrusted peer is never believed: the client is the peer.
//! - `X-Forwarded-For` / `Forwarded` are walked right to left (the rightmost entry was written by the
//!   hop nearest to us); trusted hops are skipped; the first untrusted entry is the client. A
//!   malformed, `unknown` or obfuscated entry reached before that makes the request *unresolved*:
//!   it is never skipped, since whoever wrote it is a hop we cannot place.
//! - Entries left of the client are never examined. This is a security property, not laziness:
//!   they are written by the client itself, and if garbage there could make a request unresolved,
//!   a client could opt itself out of geo-blocking wherever `on_unresolved = "allow"`.
//! - Entry indices in outcomes count from the right, 0-based, across all header lines (lines are
//!   joined in order, as RFC 9110 §5.3 combines them).
//!
//! # Decisions (where the RFCs leave room)
//! - An empty or whitespace-only header line contributes no entries; if there are no entries at
//!   all the header counts as missing and the client is the (trusted) peer (`header_missing`).
//! - An empty element between commas (`a,,b`, a trailing `a,`) is malformed, in both headers.
//! - Ports are 1 to 5 decimal digits, at most 65535, without leading zeros; they are discarded.
//! - `X-Forwarded-For` accepts `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]` and
//!   `[2001:db8::1]:80`; `unknown` (any case) is reported as `unknown_token`; anything else is
//!   malformed. Addresses are parsed by std, which refuses `010.0.0.1`, `127.1`, `0x7f.0.0.1`,
//!   `2130706433` and zone ids rather than reinterpreting them.
//! - `Forwarded`: an element without `for=` (or with two) is malformed: we cannot tell which hop it
//!   stands for, so we cannot walk past it. An unquoted IPv6 (`for=[::1]` or `for=::1`) is refused
//!   as malformed, as RFC 7239 §6 requires quoting (`[` and `:` are not token characters); a proxy
//!   writing it is misconfigured and `/-/explain` says so. OWS around `;` is tolerated because
//!   common proxies emit `for=1.2.3.4; proto=https`.
//! - A named single-address header (`X-Real-IP`, `CF-Connecting-IP`) must be exactly one line with
//!   exactly one address; its value is the client whether or not that address is trusted.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::header::{HeaderMap, HeaderName, FORWARDED};

use crate::config::{ClientIpConfig, ClientIpSource, OnUnresolved};

/// `X-Forwarded-For`; `http` has no constant for it (it was never standardised).
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

#[cfg(test)]
mod tests;

/// What the peer and the headers say about the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolution {
    /// The client address, canonical; `None` when it could not be determined (see `outcome`).
    pub client: Option<IpAddr>,
    /// How `client` was found, or why it was not.
    pub outcome: Outcome,
}

/// How the client IP was found, or why it was not. `as_str` is the bounded metric label.
///
/// `index` counts header entries from the right (0 = written by the hop nearest to us).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The source is the TCP peer.
    Peer,
    /// The source is the PROXY protocol header (the caller passed its address as the peer).
    ProxyProtocol,
    /// Forwarding headers were ignored because the peer is not trusted; the client is the peer.
    UntrustedPeer,
    /// The peer is trusted but sent no (or only empty) forwarding header; the client is the peer.
    HeaderMissing,
    /// The client came from the header entry at `index`.
    Header { index: usize },
    /// Every entry is a trusted hop; the client is the leftmost one, at `index`.
    AllTrusted { index: usize },
    /// The entry at `index` could not be parsed (unresolved).
    Malformed { index: usize, reason: Malformed },
    /// The entry at `index` is `unknown` (unresolved).
    UnknownToken { index: usize },
    /// The entry at `index` is an obfuscated identifier such as `_hidden` (unresolved).
    Obfuscated { index: usize },
}

/// Why an entry is malformed; for `/-/explain`, not for metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Nothing between two commas.
    EmptyElement,
    /// Not an IP address in an accepted form (or not visible ASCII).
    BadAddress,
    /// The port after the address is not a decimal 0..=65535 without leading zeros.
    BadPort,
    /// A single-address header was sent on more than one line.
    MultipleLines,
    /// A single-address header holds a list.
    MultipleValues,
    /// A `Forwarded` element without a `for=` parameter.
    MissingFor,
    /// A `Forwarded` element with more than one `for=` parameter.
    DuplicateFor,
    /// A `Forwarded` value that must be quoted (IPv6 or a port) is not.
    Unquoted,
    /// A `Forwarded` element that does not follow RFC 7239 syntax.
    Syntax,
}

/// What the proxy should do with the request, once `on_unresolved` is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Look this (canonical) address up and apply the policy.
    Lookup(IpAddr),
    /// Unresolved and `on_unresolved = "block"`: refuse the request.
    Block,
    /// Unresolved and `on_unresolved = "allow"`: let it through untagged, counted as unresolved.
    Allow,
}

/// One parsed forwarding entry.
enum Node {
    Ip(IpAddr),
    Unknown,
    Obfuscated,
}

/// Longest `for=` value we unescape: `"[` + 45-char IPv6 + `]:` + 5-digit port is 54 bytes, and
/// obfuscated identifiers longer than this are not worth distinguishing from malformed input.
const MAX_NODE_LEN: usize = 64;

/// Determines the client IP for one request.
///
/// `peer` is the TCP peer, or on a PROXY-protocol listener the source the PROXY header gave.
pub fn resolve(cfg: &ClientIpConfig, peer: IpAddr, headers: &HeaderMap) -> Resolution {
    let peer = peer.to_canonical();
    match &cfg.source {
        ClientIpSource::Peer => resolved(peer, Outcome::Peer),
        ClientIpSource::ProxyProtocol => resolved(peer, Outcome::ProxyProtocol),
        _ if !is_trusted(cfg, peer) => resolved(peer, Outcome::UntrustedPeer),
        ClientIpSource::XForwardedFor => walk(cfg, peer, xff_entries(headers)),
        ClientIpSource::Forwarded => walk(cfg, peer, forwarded_entries(headers)),
        ClientIpSource::Header(name) => single(peer, headers, name),
    }
}

/// Applies `on_unresolved`: turns a resolution into what the proxy does.
pub fn effective_ip(res: &Resolution, peer: IpAddr, cfg: &ClientIpConfig) -> Decision {
    match (res.client, cfg.on_unresolved) {
        (Some(ip), _) => Decision::Lookup(ip),
        (None, OnUnresolved::Block) => Decision::Block,
        (None, OnUnresolved::UsePeer) => Decision::Lookup(peer.to_canonical()),
        (None, OnUnresolved::Allow) => Decision::Allow,
    }
}

/// The validated forwarding chain of a resolved request, left to right: the client, then
/// every trusted hop between it and the peer (the peer itself is not included). Empty when
/// the client is the peer or the headers were not believed. This is what the upstream is
/// told: the entries left of the client were written by the client and are dropped.
pub fn validated_chain(cfg: &ClientIpConfig, headers: &HeaderMap, res: &Resolution) -> Chain {
    let mut chain = Chain::default();
    let last = match res.outcome {
        Outcome::Header { index } | Outcome::AllTrusted { index } => index,
        _ => return chain,
    };
    match &cfg.source {
        ClientIpSource::XForwardedFor => chain.extend_ips(xff_entries(headers), last),
        ClientIpSource::Forwarded => chain.extend_ips(forwarded_entries(headers), last),
        ClientIpSource::Header(_) => res.client.into_iter().for_each(|ip| chain.push(ip)),
        ClientIpSource::Peer | ClientIpSource::ProxyProtocol => {}
    }
    chain.reverse();
    chain
}

/// Addresses a [`Chain`] holds without allocating.
const CHAIN_INLINE: usize = 8;

/// A [`validated_chain`]: a list of addresses, held inline up to [`CHAIN_INLINE`] of them
/// (any real chain), on the heap beyond. Reads as a slice.
#[derive(Clone, Debug)]
pub struct Chain {
    inline: [IpAddr; CHAIN_INLINE],
    len: usize,
    heap: Vec<IpAddr>,
}

impl Default for Chain {
    fn default() -> Self {
        Self { inline: [IpAddr::V4(Ipv4Addr::UNSPECIFIED); CHAIN_INLINE], len: 0, heap: Vec::new() }
    }
}

impl Chain {
    fn push(&mut self, ip: IpAddr) {
        if self.heap.is_empty() && self.len < CHAIN_INLINE {
            self.inline[self.len] = ip;
            self.len += 1;
        } else {
            if self.heap.is_empty() {
                self.heap.extend_from_slice(&self.inline[..self.len]);
            }
            self.heap.push(ip);
        }
    }

    /// The addresses of entries `0..=last` (rightmost first), which the walk already validated.
    fn extend_ips<I>(&mut self, entries: I, last: usize)
    where
        I: Iterator<Item = Result<Node, Malformed>>,
    {
        for entry in entries.take(last + 1) {
            if let Ok(Node::Ip(ip)) = entry {
                self.push(ip);
            }
        }
    }

    fn reverse(&mut self) {
        if self.heap.is_empty() {
            self.inline[..self.len].reverse();
        } else {
            self.heap.reverse();
        }
    }
}

impl std::ops::Deref for Chain {
    type Target = [IpAddr];

    fn deref(&self) -> &[IpAddr] {
        if self.heap.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.heap
        }
    }
}

/// Whether `ip` (canonicalised here) is a trusted peer or hop.
pub fn is_trusted(cfg: &ClientIpConfig, ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    // A trusted net written as IPv4-mapped IPv6 (`::ffff:10.0.0.0/104`) must still match the
    // canonical IPv4 form, or trust would depend on how the operator spelled the network.
    let mapped = match ip {
        IpAddr::V4(v4) => Some(IpAddr::V6(v4.to_ipv6_mapped())),
        IpAddr::V6(_) => None,
    };
    cfg.trusted.iter().any(|net| net.contains(&ip) || mapped.is_some_and(|m| net.contains(&m)))
}

fn resolved(ip: IpAddr, outcome: Outcome) -> Resolution {
    Resolution { client: Some(ip), outcome }
}

fn unresolved(outcome: Outcome) -> Resolution {
    Resolution { client: None, outcome }
}

/// Walks entries (rightmost first) past trusted hops to the first untrusted one.
fn walk<I>(cfg: &ClientIpConfig, peer: IpAddr, entries: I) -> Resolution
where
    I: Iterator<Item = Result<Node, Malformed>>,
{
    let mut leftmost = None;
    for (index, entry) in entries.enumerate() {
        match entry {
            Err(reason) => return unresolved(Outcome::Malformed { index, reason }),
            Ok(Node::Unknown) => return unresolved(Outcome::UnknownToken { index }),
            Ok(Node::Obfuscated) => return unresolved(Outcome::Obfuscated { index }),
            Ok(Node::Ip(ip)) if is_trusted(cfg, ip) => leftmost = Some((index, ip)),
            Ok(Node::Ip(ip)) => return resolved(ip, Outcome::Header { index }),
        }
    }
    match leftmost {
        Some((index, ip)) => resolved(ip, Outcome::AllTrusted { index }),
        None => resolved(peer, Outcome::HeaderMissing),
    }
}

/// `X-Forwarded-For` entries, rightmost first, parsed lazily so the walk stops reading at the client.
fn xff_entries(headers: &HeaderMap) -> impl Iterator<Item = Result<Node, Malformed>> + '_ {
    headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .rev()
        .map(|line| trim_ows(line.as_bytes()))
        .filter(|line| !line.is_empty())
        .flat_map(|line| line.rsplit(|&b| b == b','))
        .map(|entry| parse_plain_entry(trim_ows(entry)))
}

/// `Forwarded` elements' `for=` nodes, rightmost first.
fn forwarded_entries(headers: &HeaderMap) -> impl Iterator<Item = Result<Node, Malformed>> + '_ {
    headers
        .get_all(FORWARDED)
        .iter()
        .rev()
        .map(|line| trim_ows(line.as_bytes()))
        .filter(|line| !line.is_empty())
        .flat_map(|line| ElementsRev { rest: Some(line) })
        .map(|element| parse_forwarded_element(trim_ows(element)))
}

/// A single-address header such as `X-Real-IP`.
fn single(peer: IpAddr, headers: &HeaderMap, name: &HeaderName) -> Resolution {
    let mut lines = headers.get_all(name).iter();
    let Some(first) = lines.next() else {
        return resolved(peer, Outcome::HeaderMissing);
    };
    let malformed = |reason| unresolved(Outcome::Malformed { index: 0, reason });
    if lines.next().is_some() {
        return malformed(Malformed::MultipleLines);
    }
    let value = trim_ows(first.as_bytes());
    if value.is_empty() {
        return resolved(peer, Outcome::HeaderMissing);
    }
    if value.contains(&b',') {
        return malformed(Malformed::MultipleValues);
    }
    match parse_plain_entry(value) {
        Ok(Node::Ip(ip)) => resolved(ip, Outcome::Header { index: 0 }),
        Ok(Node::Unknown) => unresolved(Outcome::UnknownToken { index: 0 }),
        Ok(Node::Obfuscated) => unresolved(Outcome::Obfuscated { index: 0 }),
        Err(reason) => malformed(reason),
    }
}

/// Parses an `X-Forwarded-For` (or single-header) entry, already trimmed.
fn parse_plain_entry(entry: &[u8]) -> Result<Node, Malformed> {
    if entry.is_empty() {
        return Err(Malformed::EmptyElement);
    }
    if entry.eq_ignore_ascii_case(b"unknown") {
        return Ok(Node::Unknown);
    }
    parse_addr_port(entry).map(Node::Ip)
}

/// `a.b.c.d`, `a.b.c.d:port`, bare IPv6, `[v6]`, `[v6]:port`; canonical result.
fn parse_addr_port(s: &[u8]) -> Result<IpAddr, Malformed> {
    if let Some(rest) = s.strip_prefix(b"[") {
        let close = rest.iter().position(|&b| b == b']').ok_or(Malformed::BadAddress)?;
        let (inner, after) = rest.split_at(close);
        let v6: Ipv6Addr = parse_ascii(inner)?;
        match &after[1..] {
            [] => {}
            [b':', port @ ..] => check_port(port)?,
            _ => return Err(Malformed::BadAddress),
        }
        return Ok(IpAddr::V6(v6).to_canonical());
    }
    let colons = s.iter().filter(|&&b| b == b':').count();
    match colons {
        0 => parse_ascii::<Ipv4Addr>(s).map(IpAddr::V4),
        1 => {
            let (addr, port) = split_at_byte(s, b':');
            check_port(port)?;
            parse_ascii::<Ipv4Addr>(addr).map(IpAddr::V4)
        }
        _ => parse_ascii::<Ipv6Addr>(s).map(|v6| IpAddr::V6(v6).to_canonical()),
    }
}

fn parse_ascii<T: std::str::FromStr>(s: &[u8]) -> Result<T, Malformed> {
    std::str::from_utf8(s).ok().and_then(|s| s.parse().ok()).ok_or(Malformed::BadAddress)
}

/// 1..=5 decimal digits, no leading zero (except `0` itself), at most 65535.
fn check_port(s: &[u8]) -> Result<(), Malformed> {
    let ok = !s.is_empty()
        && s.len() <= 5
        && s.iter().all(u8::is_ascii_digit)
        && (s.len() == 1 || s[0] != b'0')
        && s.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) <= 65535;
    if ok {
        Ok(())
    } else {
        Err(Malformed::BadPort)
    }
}

/// Splits at the first `sep`, dropping it; the second half is empty if there is none.
fn split_at_byte(s: &[u8], sep: u8) -> (&[u8], &[u8]) {
    match s.iter().position(|&b| b == sep) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &[]),
    }
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Splits one `Forwarded` line into comma-separated elements from the right, skipping commas
/// inside quoted strings.
///
/// Scanning from the right is what lets us stop at the client without ever tokenising the
/// client-written part on the left (see the module doc). A quote seen from the right closes a
/// quoted-string; its opener is the first `"` to the left preceded by an even run of backslashes
/// (an odd run means the quote is itself escaped). This is exact for well-formed input; on
/// malformed input it may cut elements wrongly, but every element is then validated left to right
/// by [`parse_forwarded_element`], so a bad cut is reported as malformed at that element, and the
/// elements to its right (written by hops nearer to us) are cut exactly as they would be anyway.
/// Each byte is visited a bounded number of times, so this is linear in the line length.
struct ElementsRev<'a> {
    /// `None` once the leftmost element has been returned.
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for ElementsRev<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let s = self.rest?;
        let mut i = s.len();
        while i > 0 {
            match s[i - 1] {
                b',' => {
                    self.rest = Some(&s[..i - 1]);
                    return Some(&s[i..]);
                }
                b'"' => i = quoted_string_start(s, i - 1),
                _ => i -= 1,
            }
        }
        self.rest = None;
        Some(s)
    }
}

/// Given `s[close] == b'"'`, the index of the matching opening quote (0 if unterminated).
fn quoted_string_start(s: &[u8], close: usize) -> usize {
    let mut j = close;
    while j > 0 {
        j -= 1;
        if s[j] == b'"' {
            let backslashes = s[..j].iter().rev().take_while(|&&b| b == b'\\').count();
            if backslashes % 2 == 0 {
                return j;
            }
            // The quote is escaped; its backslashes are content too, so skip past them.
            j -= backslashes;
        }
    }
    0
}

/// Parses one `Forwarded` element (`pair *( ";" pair )`) and returns its `for=` node.
fn parse_forwarded_element(element: &[u8]) -> Result<Node, Malformed> {
    if element.is_empty() {
        return Err(Malformed::EmptyElement);
    }
    let mut buf = [0u8; MAX_NODE_LEN];
    let mut found: Option<(usize, bool)> = None;
    let mut s = element;
    loop {
        s = trim_ows_start(s);
        // Empty pairs (`a=b;;c=d`) are allowed by `[ forwarded-pair ] *( ";" [ forwarded-pair ] )`.
        if !s.is_empty() && s[0] != b';' {
            let name_len = s.iter().take_while(|&&b| is_tchar(b)).count();
            if name_len == 0 || s.get(name_len) != Some(&b'=') {
                return Err(Malformed::Syntax);
            }
            let is_for = s[..name_len].eq_ignore_ascii_case(b"for");
            s = &s[name_len + 1..];
            if is_for && found.is_some() {
                return Err(Malformed::DuplicateFor);
            }
            let (len, quoted, rest) = if s.first() == Some(&b'"') {
                let (len, rest) = unquote(&s[1..], is_for.then_some(&mut buf))?;
                (len, true, rest)
            } else {
                let len = s.iter().take_while(|&&b| is_tchar(b)).count();
                match s.first() {
                    _ if len > 0 => {}
                    Some(b'[' | b':') => return Err(Malformed::Unquoted),
                    _ => return Err(Malformed::Syntax),
                }
                if is_for {
                    if len > MAX_NODE_LEN {
                        return Err(Malformed::BadAddress);
                    }
                    buf[..len].copy_from_slice(&s[..len]);
                }
                (len, false, &s[len..])
            };
            if is_for {
                found = Some((len, quoted));
            }
            s = trim_ows_start(rest);
        }
        match s {
            [] => break,
            [b';', rest @ ..] => s = rest,
            [b'[' | b':', ..] => return Err(Malformed::Unquoted),
            _ => return Err(Malformed::Syntax),
        }
    }
    let (len, quoted) = found.ok_or(Malformed::MissingFor)?;
    parse_node(&buf[..len], quoted)
}

/// Reads a quoted-string body (after the opening quote), unescaping into `out` if given.
/// Returns the unescaped length and what follows the closing quote.
fn unquote<'a>(s: &'a [u8], mut out: Option<&mut [u8; MAX_NODE_LEN]>) -> Result<(usize, &'a [u8]), Malformed> {
    let mut len = 0;
    let mut i = 0;
    loop {
        let byte = match s.get(i) {
            None => return Err(Malformed::Syntax),
            Some(b'"') => return Ok((len, &s[i + 1..])),
            Some(b'\\') => {
                i += 1;
                match s.get(i) {
                    Some(&b) if is_qd_byte(b) => b,
                    _ => return Err(Malformed::Syntax),
                }
            }
            Some(&b) if is_qd_byte(b) => b,
            Some(_) => return Err(Malformed::Syntax),
        };
        if let Some(out) = out.as_deref_mut() {
            *out.get_mut(len).ok_or(Malformed::BadAddress)? = byte;
        }
        len += 1;
        i += 1;
    }
}

/// RFC 7239 §6 `node`: `nodename [ ":" node-port ]`.
fn parse_node(value: &[u8], quoted: bool) -> Result<Node, Malformed> {
    if value.first() == Some(&b'[') {
        // Token values cannot contain `[`, so this only happens quoted; kept for robustness.
        if !quoted {
            return Err(Malformed::Unquoted);
        }
        let close = value.iter().position(|&b| b == b']').ok_or(Malformed::BadAddress)?;
        let v6: Ipv6Addr = parse_ascii(&value[1..close])?;
        match &value[close + 1..] {
            [] => {}
            [b':', port @ ..] => check_node_port(port)?,
            _ => return Err(Malformed::BadAddress),
        }
        return Ok(Node::Ip(IpAddr::V6(v6).to_canonical()));
    }
    // Unquoted values are tokens and so hold no `:`; only a quoted value can carry a port here.
    let name = match value.iter().position(|&b| b == b':') {
        Some(i) => {
            check_node_port(&value[i + 1..])?;
            &value[..i]
        }
        None => value,
    };
    if name.eq_ignore_ascii_case(b"unknown") {
        Ok(Node::Unknown)
    } else if is_obfuscated(name) {
        Ok(Node::Obfuscated)
    } else {
        parse_ascii::<Ipv4Addr>(name).map(|v4| Node::Ip(IpAddr::V4(v4)))
    }
}

/// `port / obfport`.
fn check_node_port(s: &[u8]) -> Result<(), Malformed> {
    if is_obfuscated(s) {
        Ok(())
    } else {
        check_port(s)
    }
}

/// `"_" 1*( ALPHA / DIGIT / "." / "_" / "-")`.
fn is_obfuscated(s: &[u8]) -> bool {
    match s {
        [b'_', rest @ ..] => {
            !rest.is_empty() && rest.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        }
        _ => false,
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
        )
}

/// HTAB, SP, VCHAR and obs-text: what may appear in a quoted-string (escaped or not).
fn is_qd_byte(b: u8) -> bool {
    b == b'\t' || (b >= b' ' && b != 0x7f)
}

fn trim_ows_start(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    s
}

// === impl Resolution ===

impl Resolution {
    /// Whether a client address was determined.
    pub fn is_resolved(&self) -> bool {
        self.client.is_some()
    }

    /// A sentence for `/-/explain`, naming the header the listener reads.
    pub fn describe(&self, cfg: &ClientIpConfig) -> String {
        let header = match &cfg.source {
            ClientIpSource::XForwardedFor => "x-forwarded-for",
            ClientIpSource::Forwarded => FORWARDED.as_str(),
            ClientIpSource::Header(name) => name.as_str(),
            ClientIpSource::Peer => "(none)",
            ClientIpSource::ProxyProtocol => "(PROXY protocol)",
        };
        match self.client {
            Some(ip) => format!("client {ip}: {} [header {header}]", self.outcome),
            None => format!("unresolved: {} [header {header}]", self.outcome),
        }
    }
}

/// The `source` label of `geogate_client_ip_resolutions_total` for a configured source.
pub fn source_label(s: &ClientIpSource) -> &'static str {
    match s {
        ClientIpSource::Peer => "peer",
        ClientIpSource::XForwardedFor => "x-forwarded-for",
        ClientIpSource::Forwarded => "forwarded",
        ClientIpSource::Header(_) => "header",
        ClientIpSource::ProxyProtocol => "proxy-protocol",
    }
}

// === impl Outcome ===

impl Outcome {
    /// The `outcome` labels ([`Outcome::as_str`]) a resolution from source `s` can end in.
    pub fn labels_for(s: &ClientIpSource) -> &'static [&'static str] {
        match s {
            ClientIpSource::Peer => &["peer"],
            ClientIpSource::ProxyProtocol => &["proxy_protocol"],
            // Obfuscated identifiers (`_hidden`) exist only in `Forwarded`'s node syntax.
            ClientIpSource::Forwarded => &[
                "untrusted_peer",
                "header_missing",
                "header",
                "all_trusted",
                "malformed",
                "unknown_token",
                "obfuscated",
            ],
            ClientIpSource::XForwardedFor => {
                &["untrusted_peer", "header_missing", "header", "all_trusted", "malformed", "unknown_token"]
            }
            // One address, not a chain: no hop to skip, so never `all_trusted`.
            ClientIpSource::Header(_) => &["untrusted_peer", "header_missing", "header", "malformed", "unknown_token"],
        }
    }

    /// Bounded metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Peer => "peer",
            Outcome::ProxyProtocol => "proxy_protocol",
            Outcome::UntrustedPeer => "untrusted_peer",
            Outcome::HeaderMissing => "header_missing",
            Outcome::Header { .. } => "header",
            Outcome::AllTrusted { .. } => "all_trusted",
            Outcome::Malformed { .. } => "malformed",
            Outcome::UnknownToken { .. } => "unknown_token",
            Outcome::Obfuscated { .. } => "obfuscated",
        }
    }

    /// Whether this outcome leaves the client undetermined.
    pub fn is_unresolved(&self) -> bool {
        matches!(self, Outcome::Malformed { .. } | Outcome::UnknownToken { .. } | Outcome::Obfuscated { .. })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Peer => f.write_str("the TCP peer (listener uses the peer address)"),
            Outcome::ProxyProtocol => f.write_str("the source address of the PROXY protocol header"),
            Outcome::UntrustedPeer => {
                f.write_str("the TCP peer; it is not trusted, so its forwarding headers were ignored")
            }
            Outcome::HeaderMissing => f.write_str("the TCP peer; it is trusted but sent no forwarding header"),
            Outcome::Header { index } => {
                write!(f, "header entry {index} from the right, the first not from a trusted hop")
            }
            Outcome::AllTrusted { index } => {
                write!(f, "every entry is a trusted hop; took the leftmost (entry {index} from the right)")
            }
            Outcome::Malformed { index, reason } => {
                write!(f, "entry {index} from the right is malformed ({reason}) and cannot be skipped")
            }
            Outcome::UnknownToken { index } => {
                write!(f, "entry {index} from the right is `unknown`; the hop before it cannot be placed")
            }
            Outcome::Obfuscated { index } => {
                write!(f, "entry {index} from the right is an obfuscated identifier, not an address")
            }
        }
    }
}

// === impl Malformed ===

impl Malformed {
    /// Short stable name, for logs and `/-/explain`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Malformed::EmptyElement => "empty_element",
            Malformed::BadAddress => "bad_address",
            Malformed::BadPort => "bad_port",
            Malformed::MultipleLines => "multiple_lines",
            Malformed::MultipleValues => "multiple_values",
            Malformed::MissingFor => "missing_for",
            Malformed::DuplicateFor => "duplicate_for",
            Malformed::Unquoted => "unquoted",
            Malformed::Syntax => "syntax",
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Malformed::EmptyElement => "empty element between commas",
            Malformed::BadAddress => "not an IP address in an accepted form",
            Malformed::BadPort => "port is not a decimal 0-65535 without leading zeros",
            Malformed::MultipleLines => "a single-address header sent on several lines",
            Malformed::MultipleValues => "a single-address header holding a list",
            Malformed::MissingFor => "element has no for= parameter",
            Malformed::DuplicateFor => "element has more than one for= parameter",
            Malformed::Unquoted => "IPv6 addresses and ports must be quoted (RFC 7239 section 6)",
            Malformed::Syntax => "not RFC 7239 syntax",
        })
    }
}

// === impl Decision ===

impl Decision {
    /// Bounded metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Lookup(_) => "lookup",
            Decision::Block => "block",
            Decision::Allow => "allow",
        }
    }
}
