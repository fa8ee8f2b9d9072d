//! Range files: the CSV/TSV feeds of IP ranges most free geo and AS databases publish,
//! plain or gzip-compressed, read into a [`SourceLayer`] like an mmdb.
//!
//! # Formats
//! One range per line: its first and last address (inclusive; IPv4 or IPv6, both ends of one
//! family), then data fields. Lines end in `\n` or `\r\n`; blank lines and lines starting
//! with `#` are skipped and a UTF-8 BOM is ignored. The first data line may be a header
//! (`start,end,...`): it is skipped when its first field (for declared columns: its `start`
//! field) is a word (a letter first, no `:`), not an address. Fields are separated by tabs
//! when the first range line has a tab, else by commas (or by the declared delimiter).
//! Outside tab-separated files a field may be quoted (`"Foo, Inc."`, with `""` for a
//! literal quote); unquoted fields are trimmed. The layouts:
//!
//! | layout    | fields                                                                      |
//! |-----------|-----------------------------------------------------------------------------|
//! | `country` | `start,end,country`                                                         |
//! | `asn`     | `start,end,asn,org`                                                         |
//! | `city`    | `start,end,country,state1,state2,city,postcode,latitude,longitude,timezone` |
//! | `iptoasn` | `start<TAB>end<TAB>asn<TAB>country<TAB>description`                         |
//! | `columns` | declared: `start`, `end`, `country`, `subdivision`, `asn`, `as_org`, `-`    |
//!
//! Every line must have exactly the layout's number of fields. `auto` picks a known layout
//! from the first range line: tab-separated with 5 or more fields is `iptoasn`; 3 fields with
//! a two-letter third is `country`, 4 with an AS number third is `asn`, 6 or more with a
//! two-letter third is `city`. Anything else is an error naming the line and asking for
//! `layout` or `columns`. [`sniff`] tells a range file from other files by its first bytes.
//!
//! # Values
//! Countries are two letters in either case; empty, `ZZ`, `XX` and `--` (and iptoasn's
//! `None`) mean none; anything else is a bad line. AS numbers are `13238` or `AS13238`, 0
//! meaning none (for iptoasn "not routed", so its description is dropped too). A `city`
//! region (`state1`) that is an ISO 3166-2 code (`UA-43`) is kept as the code; a name becomes
//! `CC:Name` ([`named_subdivision`]). A declared `subdivision` column also takes a bare code
//! under the country (`43` is `UA-43`). A region name without a country is dropped. A line
//! whose record ends up empty (iptoasn's `Not routed`) is a gap: ordered and checked like any
//! range, but no data. IPv6 ranges wholly inside `::ffff:0:0/96` are stored as IPv4 ranges,
//! since lookups canonicalise IPv4-mapped addresses to IPv4.
//!
//! Records are interned: equal records share one index in the layer, and equal strings
//! (organisations, subdivisions) one `Arc<str>`.
//!
//! # Order and overlaps
//! Ranges need not be CIDR-aligned: they are kept exact. Each family (IPv4 and IPv6 may be
//! mixed in one file) is expected in ascending order, and is then streamed straight into the
//! layer. The first range that goes backwards (starts at or before the end of the previous
//! range of its family) ends that pass: the file is read a second time collecting both
//! families' ranges, which are sorted by start. So disjoint ranges in any order load to the
//! same layer as sorted input (for a file with IPv4 lines before IPv6 ones). Where ranges
//! overlap, the narrower one wins for the addresses they share (as the longer prefix does in a
//! CIDR list), the later line between two equal ones; each overlap is counted and the load logs
//! one warning with the count and the first pair (published feeds have a few: ip-location-db's
//! ASN file of 2026-06-17 has one). The second pass describes the bytes it read.
//!
//! # Memory
//! The file is streamed, through a gzip decoder when it starts with `1f 8b`, and its SHA-256
//! is computed as the bytes go by: the decompressed text is never held, only one reused line
//! buffer (at most 64 KiB: a longer line is a bad line). What grows is the layer (its ranges
//! after merging equal neighbours) and the distinct records; only an unsorted file also holds
//! its ranges (24 bytes per IPv4 range, 48 per IPv6 range) for sorting.
//!
//! # Errors
//! Every malformed line (bad address, reversed range, wrong number of fields, bad country or
//! AS number, overlap, text that is not UTF-8, a line over 64 KiB) is collected, and the load
//! fails with [`SourceError::Ranges`], which shows the first [`MAX_REPORTED_LINES`] found as
//! `file:line` and counts the rest. A file with no range carrying data is
//! [`SourceError::NoNetworks`], an empty one [`SourceError::Empty`], a read error or a corrupt
//! gzip stream [`SourceError::Io`]. The load runs under `catch_unwind`, like the mmdb reader.

use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

use flate2::bufread::MultiGzDecoder;
use hashbrown::{HashMap, HashSet};
use sha2::{Digest, Sha256};

use super::{hex, panic_message, quote, LineError, Provenance, SourceError};
use crate::config::{KnownRangeLayout, RangeColumn, RangeLayout};
use crate::geo::{named_subdivision, parse_asn, CountryCode, GeoRecord, RegionFilter};
use crate::table::SourceLayer;

/// How many bad lines a [`SourceError::Ranges`] keeps and shows; the rest are only counted.
pub const MAX_REPORTED_LINES: usize = 20;

/// Longest line kept; a longer one is a bad line, so a binary file without newlines is never
/// read into memory whole.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// Read buffer of the file and of the decompressed text.
const BUFFER_BYTES: usize = 64 * 1024;

/// The first two bytes of every gzip member.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The record of a gap (a range whose record is empty): ordered and checked for overlaps like
/// any range, never pushed.
const GAP: u32 = u32::MAX;

/// Reads a range file (plain or gzip, detected by the `1f 8b` magic) from disk, streaming: the
/// whole decompressed text is never held. See the module documentation for the formats.
pub fn load_layer(name: &str, path: &Path, layout: &RangeLayout) -> Result<(SourceLayer, Provenance), SourceError> {
    let origin = path.display().to_string();
    guarded(&origin, || load(name, &origin, layout, &RegionFilter::all(), || File::open(path)))
}

/// [`load_layer`] over bytes in memory (plain or gzip); `origin` names them in errors and
/// provenance.
pub fn load_layer_bytes(
    name: &str,
    origin: &str,
    bytes: &[u8],
    layout: &RangeLayout,
) -> Result<(SourceLayer, Provenance), SourceError> {
    load_layer_filtered(name, origin, bytes, layout, &RegionFilter::all())
}

/// [`load_layer_bytes`] keeping only the region names `regions` keeps (the compile's path).
pub fn load_layer_filtered(
    name: &str,
    origin: &str,
    bytes: &[u8],
    layout: &RangeLayout,
    regions: &RegionFilter,
) -> Result<(SourceLayer, Provenance), SourceError> {
    guarded(origin, || load(name, origin, layout, regions, || Ok(bytes)))
}

/// True when `head` (the first few KiB of a file) looks like a range file: the gzip magic, or
/// a first data line (after blank and comment lines and an optional header) whose first two
/// fields, comma or tab separated, are IP addresses. Used to detect file types by content; a
/// CIDR list (`10.0.0.0/8` per line) or an mmdb is not a range file.
pub fn sniff(head: &[u8]) -> bool {
    if head.starts_with(&GZIP_MAGIC) {
        return true;
    }
    let mut fields = Fields::default();
    let mut header_allowed = true;
    for (i, raw) in head.split(|&b| b == b'\n').enumerate() {
        let line = content(raw, i == 0);
        if is_blank_or_comment(line) {
            continue;
        }
        let text = match std::str::from_utf8(line) {
            Ok(text) => text,
            // `head` may end inside a character; what comes before it still counts.
            Err(e) if e.error_len().is_none() => {
                line.get(..e.valid_up_to()).and_then(|valid| std::str::from_utf8(valid).ok()).unwrap_or_default()
            }
            Err(_) => return false,
        };
        // The line may be cut at the end of `head`: the fields split before the cut count.
        let _ = split(text, guess_delimiter(text), &mut fields);
        if fields.len() >= 2 && parse_addr(fields.get(0)).is_some() && parse_addr(fields.get(1)).is_some() {
            return true;
        }
        if header_allowed && is_header(fields.get(0)) {
            header_allowed = false;
            continue;
        }
        return false;
    }
    false
}

/// The message of [`SourceError::Ranges`]: `origin: N bad lines in the range file`, then each
/// kept line as `origin:line: "text": reason`, then `and N more`.
pub(super) fn bad_lines<'a>(origin: &'a str, errors: &'a [LineError], more: &usize) -> impl fmt::Display + 'a {
    BadLines { origin, errors, more: *more }
}

/// Second line of defence: the reader is written not to panic on any input, but a panic here
/// would take down a reload thread (or start-up) over a bad file.
fn guarded<T>(origin: &str, f: impl FnOnce() -> Result<T, SourceError>) -> Result<T, SourceError> {
    panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(SourceError::Panicked { origin: origin.to_owned(), message: panic_message(payload.as_ref()) })
    })
}

/// Streams the input once; reads it again, collecting, if a family turned out unsorted.
fn load<R: Read>(
    name: &str,
    origin: &str,
    layout: &RangeLayout,
    regions: &RegionFilter,
    open: impl Fn() -> io::Result<R>,
) -> Result<(SourceLayer, Provenance), SourceError> {
    let io_error = |source| SourceError::Io { origin: origin.to_owned(), source };
    if let Some(loaded) = read_pass(name, origin, layout, regions, open().map_err(io_error)?, Mode::Stream)? {
        return Ok(loaded);
    }
    read_pass(name, origin, layout, regions, open().map_err(io_error)?, Mode::Collect)?.ok_or_else(|| {
        SourceError::Panicked {
            origin: origin.to_owned(),
            message: "the collecting pass over a range file asked for another pass".to_owned(),
        }
    })
}

/// One pass over the input. `None`: a stream pass met an unsorted family (see [`Flow`]).
fn read_pass<R: Read>(
    name: &str,
    origin: &str,
    layout: &RangeLayout,
    regions: &RegionFilter,
    raw: R,
    mode: Mode,
) -> Result<Option<(SourceLayer, Provenance)>, SourceError> {
    let io_error = |source| SourceError::Io { origin: origin.to_owned(), source };
    let mut hashed = Hashing { inner: raw, sha256: Sha256::new(), bytes: 0 };
    let mut parser = Parser::new(layout, mode);
    parser.values.regions = regions.clone();
    let flow = {
        let mut input = BufReader::with_capacity(BUFFER_BYTES, &mut hashed);
        let head = input.fill_buf().map_err(io_error)?;
        if head.is_empty() {
            return Err(SourceError::Empty { origin: origin.to_owned() });
        }
        if head.starts_with(&GZIP_MAGIC) {
            let mut text = BufReader::with_capacity(BUFFER_BYTES, MultiGzDecoder::new(input));
            parser.read(&mut text).map_err(|e| io_error(io::Error::new(e.kind(), format!("gzip stream: {e}"))))?
        } else {
            parser.read(&mut input).map_err(io_error)?
        }
    };
    match flow {
        Flow::Restart => Ok(None),
        Flow::Go | Flow::Stop => {
            let bytes = hashed.bytes;
            let sha256 = hex(&hashed.sha256.finalize());
            parser.finish(name, origin, bytes, sha256).map(Some)
        }
    }
}

/// Reads one line (through its `\n`) into `buf`, keeping at most [`MAX_LINE_BYTES`] (plus a
/// line ending). Returns the bytes consumed (0 at the end) and whether the line was cut.
fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<(usize, bool)> {
    buf.clear();
    let (mut consumed, mut cut) = (0, false);
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok((consumed, cut));
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (available.get(..=i).unwrap_or(available), true),
            None => (available, false),
        };
        let room = (MAX_LINE_BYTES + 2).saturating_sub(buf.len());
        cut |= chunk.len() > room;
        buf.extend_from_slice(chunk.get(..room).unwrap_or(chunk));
        let n = chunk.len();
        reader.consume(n);
        consumed += n;
        if done {
            return Ok((consumed, cut));
        }
    }
}

/// A line without its line ending (and, for the first line, without a BOM).
fn content(raw: &[u8], first: bool) -> &[u8] {
    let line = raw.strip_suffix(b"\n").unwrap_or(raw);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if first {
        line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(line)
    } else {
        line
    }
}

fn is_blank_or_comment(line: &[u8]) -> bool {
    matches!(line.trim_ascii_start().first(), None | Some(b'#'))
}

/// Tab when the line has one, else comma.
fn guess_delimiter(text: &str) -> u8 {
    if text.contains('\t') {
        b'\t'
    } else {
        b','
    }
}

/// Whether a first field names a column (`start`, `ip_from`, `network start`) rather than
/// being a mistyped address: a letter first, then letters, digits, `_`, `-`, `.` or spaces.
fn is_header(field: &str) -> bool {
    field.starts_with(|c: char| c.is_ascii_alphabetic())
        && field.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' '))
        && parse_addr(field).is_none()
}

/// Splits `line` into `fields`. Tab-separated fields are taken as they are (trimmed); with
/// any other delimiter a field may be quoted. On an error the fields before it are kept.
fn split(line: &str, delimiter: u8, fields: &mut Fields) -> Result<(), String> {
    fields.clear();
    let delim = char::from(delimiter);
    if delimiter == b'\t' {
        for field in line.split(delim) {
            fields.push(field.trim());
        }
        return Ok(());
    }
    let blank = |c: char| c == ' ' && c != delim;
    let mut rest = line;
    loop {
        let Some(mut body) = rest.trim_start_matches(blank).strip_prefix('"') else {
            match rest.find(delim) {
                Some(i) => {
                    fields.push(rest.get(..i).unwrap_or_default().trim());
                    rest = rest.get(i + delim.len_utf8()..).unwrap_or_default();
                    continue;
                }
                None => {
                    fields.push(rest.trim());
                    return Ok(());
                }
            }
        };
        let start = fields.text.len();
        loop {
            let Some(i) = body.find('"') else {
                return Err("a quoted field has no closing quote".to_owned());
            };
            fields.text.push_str(body.get(..i).unwrap_or_default());
            let after = body.get(i + 1..).unwrap_or_default();
            match after.strip_prefix('"') {
                Some(again) => {
                    fields.text.push('"');
                    body = again;
                }
                None => {
                    body = after;
                    break;
                }
            }
        }
        fields.spans.push(start..fields.text.len());
        let after = body.trim_start_matches(blank);
        if after.is_empty() {
            return Ok(());
        }
        match after.strip_prefix(delim) {
            Some(next) => rest = next,
            None => return Err(format!("unexpected text {} after a closing quote", quote(after))),
        }
    }
}

/// An IPv4 or IPv6 address, strictly (std's parsers: no octal, no shortened forms, no zones).
fn parse_addr(text: &str) -> Option<IpAddr> {
    text.parse().ok()
}

/// Both ends of a range, of one family, in order.
fn parse_span(start: &str, end: &str) -> Result<Span, String> {
    let first = parse_addr(start).ok_or_else(|| address_hint("start", start))?;
    let last = parse_addr(end).ok_or_else(|| address_hint("end", end))?;
    let span = match (first, last) {
        (IpAddr::V4(a), IpAddr::V4(b)) => Span::V4(a.into(), b.into()),
        (IpAddr::V6(a), IpAddr::V6(b)) => match (a.to_ipv4_mapped(), b.to_ipv4_mapped()) {
            // Lookups see `::ffff:a.b.c.d` as `a.b.c.d`.
            (Some(a), Some(b)) => Span::V4(a.into(), b.into()),
            _ => Span::V6(a.into(), b.into()),
        },
        _ => return Err(format!("start {first} and end {last} are not of the same family")),
    };
    let (_, from, to) = span.bounds();
    if from > to {
        return Err(format!("reversed range: start {first} is after end {last}"));
    }
    Ok(span)
}

/// Why an address did not parse, with a hint for the usual mistakes.
fn address_hint(which: &str, text: &str) -> String {
    if text.is_empty() {
        format!("missing {which} address")
    } else if text.bytes().all(|b| b.is_ascii_digit()) {
        format!("{which} {} is a bare integer; write the address in dotted (or IPv6) form", quote(text))
    } else {
        format!("{which} {} is not an IP address", quote(text))
    }
}

/// A country field: `None` for no country.
fn parse_country(field: &str, flavor: Flavor) -> Result<Option<CountryCode>, String> {
    let none = ["", "--"].contains(&field)
        || field.eq_ignore_ascii_case("ZZ")
        || field.eq_ignore_ascii_case("XX")
        || (flavor == Flavor::Iptoasn && field == "None");
    if none {
        return Ok(None);
    }
    CountryCode::parse(field).map(Some).ok_or_else(|| {
        format!("bad country code {}: expected two letters (ISO 3166-1 alpha-2), or empty", quote(field))
    })
}

/// An AS number field: `None` when empty (0 is handled by the caller).
fn parse_asn_field(field: &str) -> Result<Option<u32>, String> {
    if field.is_empty() {
        return Ok(None);
    }
    parse_asn(field).map(Some).ok_or_else(|| {
        format!("bad AS number {}: expected 0 to 4294967295, optionally with an AS prefix", quote(field))
    })
}

/// A full ISO 3166-2 code: two letters, `-`, one to three letters or digits (`UA-43`, `GB-ENG`).
fn is_iso_code(text: &str) -> bool {
    match text.as_bytes() {
        [a, b, b'-', rest @ ..] => {
            a.is_ascii_alphabetic()
                && b.is_ascii_alphabetic()
                && (1..=3).contains(&rest.len())
                && rest.iter().all(u8::is_ascii_alphanumeric)
        }
        _ => false,
    }
}

/// The part of a code after the country (`43`, `KYI`): one to three digits or upper-case letters.
fn is_bare_code(text: &str) -> bool {
    (1..=3).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
}

/// Splits one line by the plan and reads its range and record.
fn parse_line(plan: &Plan, text: &str, fields: &mut Fields, values: &mut Values) -> Result<(Span, GeoRecord), String> {
    split(text, plan.delimiter, fields)?;
    if fields.len() != plan.columns.len() {
        return Err(format!(
            "expected {} {} fields ({}), found {}",
            plan.columns.len(),
            delimiter_name(plan.delimiter),
            plan.flavor.describe(),
            fields.len()
        ));
    }
    let (mut start, mut end, mut country, mut subdivision, mut asn, mut org) = ("", "", "", "", "", "");
    for (i, column) in plan.columns.iter().enumerate() {
        let field = fields.get(i);
        match column {
            RangeColumn::Start => start = field,
            RangeColumn::End => end = field,
            RangeColumn::Country => country = field,
            RangeColumn::Subdivision => subdivision = field,
            RangeColumn::Asn => asn = field,
            RangeColumn::AsOrg => org = field,
            RangeColumn::Skip => {}
        }
    }
    let span = parse_span(start, end)?;
    let country = parse_country(country, plan.flavor)?;
    let asn = parse_asn_field(asn)?.filter(|&n| n != 0);
    // iptoasn's AS 0 is "not routed": its description is not an organisation.
    let org = if org.is_empty() || (plan.flavor == Flavor::Iptoasn && asn.is_none()) { None } else { Some(org) };
    let record = GeoRecord {
        country,
        subdivision: values.subdivision(subdivision, country, plan.flavor == Flavor::Columns),
        asn,
        as_org: org.map(|o| intern(&mut values.strings, o)),
        ..GeoRecord::default()
    };
    Ok((span, record))
}

/// The interned copy of `s`.
fn intern(strings: &mut HashSet<crate::geo::SharedStr>, s: &str) -> crate::geo::SharedStr {
    if let Some(known) = strings.get(s) {
        return known.clone();
    }
    let fresh = crate::geo::SharedStr::from(s);
    strings.insert(fresh.clone());
    fresh
}

fn delimiter_name(delimiter: u8) -> String {
    match delimiter {
        b'\t' => "tab-separated".to_owned(),
        b',' => "comma-separated".to_owned(),
        d => format!("{:?}-separated", char::from(d)),
    }
}

/// Overlapping ranges found while sorting: how many, and the first pair, for the warning.
#[derive(Debug, Default)]
struct Overlaps {
    count: usize,
    first: Option<String>,
}

/// Sorts one family's collected ranges by start and makes them disjoint: where ranges overlap,
/// the narrowest covering range wins, the later line between equal widths. Returns the
/// disjoint pieces in order (each keeps its winner's record and line).
fn sort_disjoint<K>(
    mut ranges: Vec<Collected<K>>,
    overlaps: &mut Overlaps,
    show: impl Fn(K) -> String,
) -> Vec<Collected<K>>
where
    K: Copy + Ord + Into<u128> + TryFrom<u128>,
{
    ranges.sort_unstable_by_key(|r| (r.first, r.line));
    // Count overlaps: a start at or before the furthest end so far.
    let mut reach: Option<usize> = None;
    let mut any = false;
    for (i, r) in ranges.iter().enumerate() {
        if let Some(p) = reach.map(|p| &ranges[p]).filter(|p| r.first <= p.last) {
            any = true;
            overlaps.count += 1;
            overlaps.first.get_or_insert_with(|| {
                format!(
                    "line {} ({}-{}) overlaps line {} ({}-{})",
                    r.line,
                    show(r.first),
                    show(r.last),
                    p.line,
                    show(p.first),
                    show(p.last)
                )
            });
        }
        if reach.is_none_or(|p| r.last > ranges[p].last) {
            reach = Some(i);
        }
    }
    if !any {
        return ranges;
    }
    // Only clusters of overlapping ranges need the sweep (the real ASN feed has one overlap in
    // 412k ranges); every other range passes through as it is, so the sweep's boundary list
    // stays the size of the clusters, not of the file.
    let mut out: Vec<Collected<K>> = Vec::with_capacity(ranges.len());
    let mut start = 0;
    while start < ranges.len() {
        let (mut end, mut reach) = (start + 1, ranges[start].last);
        while end < ranges.len() && ranges[end].first <= reach {
            reach = reach.max(ranges[end].last);
            end += 1;
        }
        if end - start == 1 {
            out.push(ranges[start]);
        } else {
            sweep(&ranges[start..end], &mut out);
        }
        start = end;
    }
    out
}

/// Makes one cluster of overlapping ranges (sorted by start) disjoint onto `out`: at each
/// boundary the narrowest open range (then the latest line) decides.
fn sweep<K>(ranges: &[Collected<K>], out: &mut Vec<Collected<K>>)
where
    K: Copy + Ord + Into<u128> + TryFrom<u128>,
{
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let width = |r: &Collected<K>| r.last.into() - r.first.into();
    let mut bounds: Vec<u128> = Vec::with_capacity(2 * ranges.len());
    for r in ranges {
        bounds.push(r.first.into());
        if let Some(next) = r.last.into().checked_add(1) {
            bounds.push(next);
        }
    }
    bounds.sort_unstable();
    bounds.dedup();
    let mut open: BinaryHeap<(Reverse<u128>, usize, usize)> = BinaryHeap::new();
    let mut next = 0;
    for (b, &pos) in bounds.iter().enumerate() {
        while next < ranges.len() && ranges[next].first.into() <= pos {
            open.push((Reverse(width(&ranges[next])), ranges[next].line, next));
            next += 1;
        }
        while open.peek().is_some_and(|&(_, _, i)| ranges[i].last.into() < pos) {
            open.pop();
        }
        let Some(&(_, _, winner)) = open.peek() else { continue };
        let end = bounds.get(b + 1).map_or(ranges[winner].last.into(), |&n| n - 1).min(ranges[winner].last.into());
        let (Ok(first), Ok(last)) = (K::try_from(pos), K::try_from(end)) else { continue };
        let w = &ranges[winner];
        match out.last_mut() {
            Some(prev) if prev.record == w.record && prev.line == w.line && prev.last.into() + 1 == pos => {
                prev.last = last
            }
            _ => out.push(Collected { first, last, record: w.record, line: w.line }),
        }
    }
}

/// Whether a pass streams into the layer or collects ranges to sort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// The normal case: ranges pushed as read; an unsorted family asks for a restart.
    Stream,
    /// After a restart: every range collected, sorted, checked, then pushed.
    Collect,
}

/// What the line loop does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    /// Read on (at the end of the input: done).
    Go,
    /// Stop reading: the file cannot be read on (its layout is unknown); errors are recorded.
    Stop,
    /// A stream pass met a range out of order: read again in [`Mode::Collect`].
    Restart,
}

/// How lines are read, once the layout is settled.
#[derive(Clone, Debug)]
struct Plan {
    flavor: Flavor,
    delimiter: u8,
    /// The column of each field; every line has exactly this many fields.
    columns: Vec<RangeColumn>,
}

/// Which layout a plan came from (its schema name and its special values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavor {
    Country,
    Asn,
    City,
    Iptoasn,
    Columns,
}

/// One line's range.
#[derive(Clone, Copy, Debug)]
enum Span {
    V4(u32, u32),
    V6(u128, u128),
}

/// A range kept by a collecting pass.
#[derive(Clone, Copy, Debug)]
struct Collected<K> {
    first: K,
    last: K,
    /// The parser's record id, or [`GAP`].
    record: u32,
    line: usize,
}

/// The fields of one line, reused from line to line: their text back to back, and where each
/// one is.
#[derive(Default, Debug)]
struct Fields {
    text: String,
    spans: Vec<Range<usize>>,
}

/// String interning and a scratch buffer for building subdivision names.
#[derive(Default, Debug)]
struct Values {
    strings: HashSet<crate::geo::SharedStr>,
    scratch: String,
    /// The region names to keep, and the names already dropped.
    regions: RegionFilter,
    dropped: HashSet<String>,
}

/// The bad lines found: the first [`MAX_REPORTED_LINES`], and a count of the rest.
#[derive(Default, Debug)]
struct Errors {
    kept: Vec<LineError>,
    more: usize,
}

/// Counts and hashes the bytes read through it.
struct Hashing<R> {
    inner: R,
    sha256: Sha256,
    bytes: u64,
}

/// State of one pass over a file.
struct Parser<'l> {
    layout: &'l RangeLayout,
    mode: Mode,
    /// Set from the first range line.
    plan: Option<Plan>,
    /// A data line has been read: a header is no longer allowed.
    seen_data: bool,
    /// Bytes of text read (after decompression).
    text_bytes: u64,
    fields: Fields,
    values: Values,
    /// Distinct records: their layer index (stream) or id (collect).
    records: HashMap<GeoRecord, u32>,
    /// Stream mode: the layer being built, and the end of the last range of each family.
    layer: SourceLayer,
    tails: [Option<u128>; 2],
    /// Collect mode: every range of each family.
    v4: Vec<Collected<u32>>,
    v6: Vec<Collected<u128>>,
    /// Ranges with data per family.
    counts: [usize; 2],
    errors: Errors,
    /// Collect mode: overlapping ranges resolved (narrowest wins), for the warning.
    overlaps: Overlaps,
}

/// Displays [`SourceError::Ranges`].
struct BadLines<'a> {
    origin: &'a str,
    errors: &'a [LineError],
    more: usize,
}

// === impl Parser ===

impl<'l> Parser<'l> {
    fn new(layout: &'l RangeLayout, mode: Mode) -> Self {
        Self {
            layout,
            mode,
            plan: None,
            seen_data: false,
            text_bytes: 0,
            fields: Fields::default(),
            values: Values::default(),
            records: HashMap::new(),
            layer: SourceLayer::new(),
            tails: [None, None],
            v4: Vec::new(),
            v6: Vec::new(),
            counts: [0, 0],
            errors: Errors::default(),
            overlaps: Overlaps::default(),
        }
    }

    /// Reads every line of `text` (or until a line stops or restarts the pass).
    fn read(&mut self, text: &mut impl BufRead) -> io::Result<Flow> {
        let mut buf = Vec::new();
        let mut line = 0usize;
        loop {
            let (n, cut) = read_line(text, &mut buf)?;
            if n == 0 {
                return Ok(Flow::Go);
            }
            self.text_bytes += n as u64;
            line += 1;
            let flow = self.line(line, &buf, cut);
            if flow != Flow::Go {
                return Ok(flow);
            }
        }
    }

    /// One line, as read (with its line ending).
    fn line(&mut self, line: usize, raw: &[u8], cut: bool) -> Flow {
        let bytes = content(raw, line == 1);
        if cut {
            self.seen_data = true;
            self.errors.push(line, bytes, format!("longer than {MAX_LINE_BYTES} bytes; is this a range file?"));
            return Flow::Go;
        }
        if is_blank_or_comment(bytes) {
            return Flow::Go;
        }
        let header_allowed = !self.seen_data;
        self.seen_data = true;
        let Ok(text) = std::str::from_utf8(bytes) else {
            self.errors.push(line, bytes, "not UTF-8 text; is this a range file?".to_owned());
            return Flow::Go;
        };
        if self.plan.is_none() {
            let delimiter = match self.layout {
                RangeLayout::Columns { delimiter: Some(d), .. } => *d,
                _ => guess_delimiter(text),
            };
            if header_allowed {
                // The start column is the first but where declared otherwise.
                let start = match self.layout {
                    RangeLayout::Columns { columns, .. } => {
                        columns.iter().position(|&c| c == RangeColumn::Start).unwrap_or(0)
                    }
                    _ => 0,
                };
                let _ = split(text, delimiter, &mut self.fields);
                if is_header(self.fields.get(start)) {
                    return Flow::Go;
                }
            }
            match Plan::resolve(self.layout, delimiter, text, &mut self.fields) {
                Ok(plan) => self.plan = Some(plan),
                Err(reason) => {
                    self.errors.push(line, bytes, reason);
                    return Flow::Stop;
                }
            }
        }
        let Some(plan) = self.plan.as_ref() else {
            return Flow::Stop;
        };
        match parse_line(plan, text, &mut self.fields, &mut self.values) {
            Ok((span, record)) => self.add(line, bytes, span, record),
            Err(reason) => {
                self.errors.push(line, bytes, reason);
                Flow::Go
            }
        }
    }

    /// Adds one valid range.
    fn add(&mut self, line: usize, text: &[u8], span: Span, record: GeoRecord) -> Flow {
        let (family, first, last) = span.bounds();
        match self.mode {
            Mode::Stream => {
                if self.tails[family].is_some_and(|end| first <= end) {
                    return Flow::Restart;
                }
                self.tails[family] = Some(last);
                if record.is_empty() {
                    return Flow::Go;
                }
                let index = match self.records.get(&record) {
                    Some(&index) => index,
                    None => {
                        let index = self.layer.push_record(record.clone());
                        self.records.insert(record, index);
                        index
                    }
                };
                let pushed = match span {
                    Span::V4(a, b) => self.layer.push_range_v4(a, b, index),
                    Span::V6(a, b) => self.layer.push_range_v6(a, b, index),
                };
                match pushed {
                    Ok(()) => self.counts[family] += 1,
                    Err(e) => self.errors.push(line, text, e.to_string()),
                }
            }
            Mode::Collect => {
                let record = if record.is_empty() {
                    GAP
                } else if let Some(&id) = self.records.get(&record) {
                    id
                } else {
                    let Some(id) = u32::try_from(self.records.len()).ok().filter(|&id| id != GAP) else {
                        self.errors.push(line, text, "too many distinct records".to_owned());
                        return Flow::Go;
                    };
                    self.records.insert(record, id);
                    id
                };
                match span {
                    Span::V4(first, last) => self.v4.push(Collected { first, last, record, line }),
                    Span::V6(first, last) => self.v6.push(Collected { first, last, record, line }),
                }
            }
        }
        Flow::Go
    }

    /// Collect mode: sorts and checks the ranges, then (if every line was good) builds the
    /// layer from them, records numbered in order of first use (IPv4, then IPv6).
    fn build_collected(&mut self) {
        let mut overlaps = Overlaps::default();
        let v4 = sort_disjoint(std::mem::take(&mut self.v4), &mut overlaps, |a| Ipv4Addr::from(a).to_string());
        let v6 = sort_disjoint(std::mem::take(&mut self.v6), &mut overlaps, |a| Ipv6Addr::from(a).to_string());
        self.overlaps = overlaps;
        if !self.errors.is_empty() {
            return;
        }
        let mut by_id: Vec<Option<GeoRecord>> = vec![None; self.records.len()];
        for (record, id) in self.records.drain() {
            if let Some(slot) = by_id.get_mut(id as usize) {
                *slot = Some(record);
            }
        }
        let mut index_of = vec![GAP; by_id.len()];
        let mut index = |layer: &mut SourceLayer, id: u32| -> Option<u32> {
            let slot = index_of.get_mut(id as usize)?;
            if *slot == GAP {
                *slot = layer.push_record(by_id.get_mut(id as usize)?.take()?);
            }
            Some(*slot)
        };
        for r in v4.iter().filter(|r| r.record != GAP) {
            let pushed = index(&mut self.layer, r.record).map(|i| self.layer.push_range_v4(r.first, r.last, i));
            report_push(&mut self.errors, &mut self.counts[0], r.line, pushed);
        }
        drop(v4);
        for r in v6.iter().filter(|r| r.record != GAP) {
            let pushed = index(&mut self.layer, r.record).map(|i| self.layer.push_range_v6(r.first, r.last, i));
            report_push(&mut self.errors, &mut self.counts[1], r.line, pushed);
        }
    }

    fn finish(
        mut self,
        name: &str,
        origin: &str,
        bytes: u64,
        sha256: String,
    ) -> Result<(SourceLayer, Provenance), SourceError> {
        if self.text_bytes == 0 {
            return Err(SourceError::Empty { origin: origin.to_owned() });
        }
        if self.mode == Mode::Collect {
            self.build_collected();
        }
        if !self.errors.is_empty() {
            return Err(self.errors.into_error(origin));
        }
        if self.counts == [0, 0] {
            return Err(SourceError::NoNetworks { origin: origin.to_owned() });
        }
        if self.overlaps.count > 0 {
            tracing::warn!(
                source = name,
                origin,
                overlaps = self.overlaps.count,
                first = self.overlaps.first.as_deref().unwrap_or(""),
                "overlapping ranges: the narrower range wins where two overlap (the later line between equal ones)"
            );
        }
        let mut layer = self.layer;
        layer.shrink();
        let provenance = Provenance {
            name: name.to_owned(),
            kind: "ranges",
            origin: origin.to_owned(),
            schema: self.plan.as_ref().map_or("auto", |p| p.flavor.schema()).to_owned(),
            database_type: None,
            build_epoch: None,
            networks_v4: self.counts[0],
            networks_v6: self.counts[1],
            bytes,
            sha256,
        };
        Ok((layer, provenance))
    }
}

/// Counts a range pushed by [`Parser::build_collected`], or records why it was not.
fn report_push(
    errors: &mut Errors,
    count: &mut usize,
    line: usize,
    pushed: Option<Result<(), crate::table::LayerError>>,
) {
    match pushed {
        Some(Ok(())) => *count += 1,
        Some(Err(e)) => errors.push(line, b"", e.to_string()),
        None => errors.push(line, b"", "internal error: unknown record".to_owned()),
    }
}

// === impl Plan ===

impl Plan {
    /// Settles the layout at the first range line (`text`).
    fn resolve(layout: &RangeLayout, delimiter: u8, text: &str, fields: &mut Fields) -> Result<Self, String> {
        match layout {
            RangeLayout::Known(known) => Ok(Self::known(*known, delimiter)),
            RangeLayout::Columns { columns, .. } => {
                for (needed, name) in [(RangeColumn::Start, "start"), (RangeColumn::End, "end")] {
                    if columns.iter().filter(|&&c| c == needed).count() != 1 {
                        return Err(format!("the declared columns need exactly one {name:?} column"));
                    }
                }
                Ok(Self { flavor: Flavor::Columns, delimiter, columns: columns.clone() })
            }
            RangeLayout::Auto => {
                let _ = split(text, delimiter, fields);
                let n = fields.len();
                let third = fields.get(2);
                let two_letters = CountryCode::parse(third).is_some() || third == "--";
                let known = if delimiter == b'\t' && n >= 5 {
                    Some(KnownRangeLayout::Iptoasn)
                } else if n == 3 && two_letters {
                    Some(KnownRangeLayout::Country)
                } else if n == 4 && parse_asn(third).is_some() {
                    Some(KnownRangeLayout::Asn)
                } else if n >= 6 && two_letters {
                    Some(KnownRangeLayout::City)
                } else {
                    None
                };
                known.map(|k| Self::known(k, delimiter)).ok_or_else(|| {
                    format!(
                        "cannot tell the layout of the file from this line ({n} {} fields); set the \
                         source's layout = \"country\", \"asn\", \"city\" or \"iptoasn\", or declare \
                         its columns = [\"start\", \"end\", ...]",
                        delimiter_name(delimiter)
                    )
                })
            }
        }
    }

    fn known(known: KnownRangeLayout, delimiter: u8) -> Self {
        use RangeColumn::{AsOrg, Asn, Country, End, Skip, Start, Subdivision};
        let (flavor, columns) = match known {
            KnownRangeLayout::Country => (Flavor::Country, vec![Start, End, Country]),
            KnownRangeLayout::Asn => (Flavor::Asn, vec![Start, End, Asn, AsOrg]),
            KnownRangeLayout::City => {
                (Flavor::City, vec![Start, End, Country, Subdivision, Skip, Skip, Skip, Skip, Skip, Skip])
            }
            KnownRangeLayout::Iptoasn => (Flavor::Iptoasn, vec![Start, End, Asn, Country, AsOrg]),
        };
        Self { flavor, delimiter, columns }
    }
}

// === impl Flavor ===

impl Flavor {
    /// The provenance schema.
    fn schema(self) -> &'static str {
        match self {
            Self::Country => "country",
            Self::Asn => "asn",
            Self::City => "city",
            Self::Iptoasn => "iptoasn",
            Self::Columns => "columns",
        }
    }

    /// The fields, for a message about a line with the wrong number of them.
    fn describe(self) -> &'static str {
        match self {
            Self::Country => "country layout: start,end,country",
            Self::Asn => "asn layout: start,end,asn,org",
            Self::City => "city layout: start,end,country,state1,state2,city,postcode,latitude,longitude,timezone",
            Self::Iptoasn => "iptoasn layout: start,end,asn,country,description",
            Self::Columns => "the declared columns",
        }
    }
}

// === impl Span ===

impl Span {
    /// Family index (0 = IPv4, 1 = IPv6), first and last address.
    fn bounds(self) -> (usize, u128, u128) {
        match self {
            Self::V4(a, b) => (0, u128::from(a), u128::from(b)),
            Self::V6(a, b) => (1, a, b),
        }
    }
}

// === impl Fields ===

impl Fields {
    fn clear(&mut self) {
        self.text.clear();
        self.spans.clear();
    }

    fn len(&self) -> usize {
        self.spans.len()
    }

    /// Field `i`, or `""` past the end.
    fn get(&self, i: usize) -> &str {
        self.spans.get(i).and_then(|r| self.text.get(r.clone())).unwrap_or_default()
    }

    fn push(&mut self, field: &str) {
        let start = self.text.len();
        self.text.push_str(field);
        self.spans.push(start..self.text.len());
    }
}

// === impl Values ===

impl Values {
    /// A subdivision field under `country`: an ISO 3166-2 code as the code (upper-cased), with
    /// `bare_codes` a bare code under the country as `CC-code`, else a name as `CC:Name`.
    fn subdivision(
        &mut self,
        field: &str,
        country: Option<CountryCode>,
        bare_codes: bool,
    ) -> Option<crate::geo::SharedStr> {
        if field.is_empty() {
            return None;
        }
        self.scratch.clear();
        if is_iso_code(field) {
            self.scratch.extend(field.chars().map(|c| c.to_ascii_uppercase()));
            return Some(intern(&mut self.strings, &self.scratch));
        }
        let country = country?;
        if bare_codes && is_bare_code(field) {
            let _ = write!(self.scratch, "{country}-{field}");
            return Some(intern(&mut self.strings, &self.scratch));
        }
        // The form `named_subdivision` gives, built without allocating to look it up.
        let _ = write!(self.scratch, "{country}:{}", field.trim());
        if let Some(known) = self.strings.get(self.scratch.as_str()) {
            return Some(known.clone());
        }
        if self.dropped.contains(self.scratch.as_str()) {
            return None;
        }
        if !self.regions.keeps(&self.scratch) {
            self.dropped.insert(self.scratch.clone());
            return None;
        }
        let name = named_subdivision(country, field)?;
        self.strings.insert(name.clone());
        Some(name)
    }
}

// === impl Errors ===

impl Errors {
    fn push(&mut self, line: usize, text: &[u8], reason: String) {
        if self.kept.len() < MAX_REPORTED_LINES {
            self.kept.push(LineError { line, text: String::from_utf8_lossy(text).into_owned(), reason });
        } else {
            self.more += 1;
        }
    }

    fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    fn into_error(mut self, origin: &str) -> SourceError {
        self.kept.sort_by_key(|e| e.line);
        SourceError::Ranges { origin: origin.to_owned(), errors: self.kept, more: self.more }
    }
}

// === impl Hashing ===

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let read = buf.get(..n).unwrap_or(buf);
        self.sha256.update(read);
        self.bytes += read.len() as u64;
        Ok(read.len())
    }
}

// === impl BadLines ===

impl fmt::Display for BadLines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { origin, errors, more } = self;
        let total = errors.len() + more;
        write!(f, "{origin}: {total} bad line{} in the range file", if total == 1 { "" } else { "s" })?;
        for e in errors.iter() {
            write!(f, "\n  {origin}:{}: {}: {}", e.line, quote(&e.text), e.reason)?;
        }
        if *more > 0 {
            write!(f, "\n  and {more} more")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
