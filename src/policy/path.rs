//! Request paths: how geogate reads them, the readings rules match against, and the forms
//! refused before any rule runs.
//!
//! The upstream decides what a path means, and upstreams disagree (Rails routes
//! `/signup.json` to the sign-up action, Express folds case, IIS trims a trailing dot). So a
//! path has more than one reading:
//!
//! - the **strict** reading, [`normalize_path`]: the path as a normalising server reads it;
//!   geogate's canonical form, shown by `explain` and used by the router;
//! - the **framework** readings, [`PathReadings`]: the strict one plus every other reading a
//!   common framework may route by. Block and tag rules match if *any* reading matches,
//!   ASCII case-insensitively, so a block rule catches every disguise of the path. Allow
//!   rules match only if *every* reading matches, byte for byte, so an allow rule never
//!   covers a path that some upstream routes elsewhere.
//!
//! Forms that stacks read in incompatible ways are refused before either reading is needed
//! ([`screen`]): see [`PathRefusal`].
//!
//! # The strict reading, in order
//! 1. cut the query (`?`) and fragment (`#`);
//! 2. percent-decode repeatedly until no valid `%XX` remains (`/%2573ignup` -> `/signup`; a
//!    backend that decodes twice must not see more than we do). `%2F` decodes to `/` too;
//!    invalid escapes stay as written;
//! 3. `\` becomes `/` (IIS and some frameworks);
//! 4. path parameters are dropped from each segment (`/signup;jsessionid=x` -> `/signup`);
//! 5. empty and `.` segments are dropped and `..` pops one (never above the root), so `//`,
//!    `/./`, `/x/../` and a trailing `/` disappear;
//! 6. `%`, `?` and `#` left in the result are re-encoded (`%25`, `%3F`, `%23`) so that the
//!    function is idempotent.
//!
//! Case is kept; the matchers decide how to compare it. An already-clean path is returned
//! borrowed; only odd paths allocate.
//!
//! # The framework readings, beyond the strict one
//! - **Unicode compatibility forms folded** (NFKC, as Python's and some Java stacks do):
//!   `/ｓｉｇｎｕｐ` and `/ſignup` read as `/signup`;
//! - **trailing dots and spaces trimmed** from every segment (Windows-backed servers:
//!   `/signup.`, `/signup%20`);
//! - **a format suffix dropped** from the last segment (Rails' `(.:format)`, Spring MVC's suffix
//!   patterns before 5.3): `/signup.json`, `/api/v1/accounts.XML`, `/signup.tar.gz`; a leading
//!   dot (`/.well-known`) is not a suffix;
//! - **cut at a decoded `?` or `#`** (stacks that decode before they split): `/signup%3Fx`.
//!   Reached only where a listener lets encoded delimiters through;
//! - **dot segments kept as names** (routers that never resolve them: a `/signup/<rest>`
//!   route in Flask, Django, Express or Rails matches `/signup/..`).

use std::borrow::Cow;

use unicode_normalization::UnicodeNormalization;

pub use crate::config::EncodedDelimiters;

#[cfg(test)]
mod tests;

/// Why a request path is refused before policy. `as_str` is the bounded metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathRefusal {
    /// Decodes (at any depth) to a control character: `%00`, `%0a`, `%09`, `%7f`. Servers
    /// truncate at NUL, trim whitespace or split lines; none of it has a legitimate reading.
    Control,
    /// Decodes to `?` or `#` (`%3F`, `%23`, `%253F`): a stack that decodes before it splits
    /// reads a shorter path than one that does not.
    EncodedDelimiter,
    /// Decodes to bytes that are not UTF-8, overlong forms included (`%c0%af` is an old `/`).
    InvalidUtf8,
    /// Holds a character whose compatibility form is a delimiter or control character (the
    /// fullwidth solidus `／` is `/` after NFKC).
    AmbiguousUnicode,
}

/// The readings of one request path that rules match against; built once per request, on
/// first need.
#[derive(Clone, Debug)]
pub struct PathReadings<'a> {
    strict: Cow<'a, str>,
    /// Further framework readings, each different from `strict` and from each other.
    others: Vec<String>,
}

// === impl PathRefusal ===

impl PathRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Control => "path_control",
            Self::EncodedDelimiter => "path_encoded_delimiter",
            Self::InvalidUtf8 => "path_invalid_utf8",
            Self::AmbiguousUnicode => "path_ambiguous_unicode",
        }
    }

    /// Every label, for metrics initialised at zero.
    pub const ALL: [Self; 4] = [Self::Control, Self::EncodedDelimiter, Self::InvalidUtf8, Self::AmbiguousUnicode];
}

/// Checks a raw request path (a query is allowed and not examined) for forms that have no
/// single reading. Cheap for ordinary paths: one scan when there is no `%` and no non-ASCII.
pub fn screen(raw: &str, delimiters: EncodedDelimiters) -> Result<(), PathRefusal> {
    let cut = raw.find(['?', '#']).map_or(raw, |i| &raw[..i]);
    let bytes = cut.as_bytes();
    if !bytes.iter().any(|&b| b == b'%' || b == 0x7f || !(0x20..0x80).contains(&b)) {
        return Ok(());
    }
    let decoded = decode_fully(bytes);
    if decoded.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(PathRefusal::Control);
    }
    if delimiters == EncodedDelimiters::Refuse && decoded.iter().any(|&b| b == b'?' || b == b'#') {
        return Err(PathRefusal::EncodedDelimiter);
    }
    let text = std::str::from_utf8(&decoded).map_err(|_| PathRefusal::InvalidUtf8)?;
    if !text.is_ascii() && text.chars().filter(|c| !c.is_ascii()).any(folds_into_syntax) {
        return Err(PathRefusal::AmbiguousUnicode);
    }
    Ok(())
}

/// True when NFKC turns `c` into something that changes a path's structure.
fn folds_into_syntax(c: char) -> bool {
    std::iter::once(c).nfkc().any(|f| matches!(f, '/' | '\\' | '?' | '#') || f.is_control())
}

/// Normalises a request path (or path-and-query) for matching: the strict reading; see the
/// module doc.
pub fn normalize_path(raw: &str) -> Cow<'_, str> {
    let cut = raw.find(['?', '#']).map_or(raw, |i| &raw[..i]);
    if is_clean(cut) {
        return Cow::Borrowed(cut);
    }
    let decoded = decode_fully(cut.as_bytes());
    let text = String::from_utf8_lossy(&decoded);
    Cow::Owned(join_segments(&text, Segments::Strict))
}

/// How [`join_segments`] treats each segment.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Segments {
    /// Dot segments resolved: the strict reading.
    Strict,
    /// Dot segments resolved, trailing dots and spaces dropped from each segment.
    Trimmed,
    /// Dot segments kept as names: what a router that never resolves them matches.
    Literal,
}

/// Splits on `/` and `\`, drops `;params` and empty segments, treats dot segments as `mode`
/// says, and joins with `%`, `?` and `#` re-encoded.
fn join_segments(text: &str, mode: Segments) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in text.split(['/', '\\']) {
        let mut segment = segment.split(';').next().unwrap_or("");
        if mode == Segments::Trimmed {
            segment = segment.trim_end_matches(' ');
        }
        match segment {
            "" => {}
            s if mode == Segments::Literal => segments.push(s),
            "." => {}
            ".." => {
                segments.pop();
            }
            s if mode == Segments::Trimmed => match s.trim_end_matches(['.', ' ']) {
                "" => {}
                s => segments.push(s),
            },
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(text.len() + 1);
    if segments.is_empty() {
        out.push('/');
    }
    for s in segments {
        out.push('/');
        for c in s.chars() {
            match c {
                '%' => out.push_str("%25"),
                '?' => out.push_str("%3F"),
                '#' => out.push_str("%23"),
                c => out.push(c),
            }
        }
    }
    out
}

/// True when normalisation would return the path unchanged.
fn is_clean(p: &str) -> bool {
    let b = p.as_bytes();
    if b.first() != Some(&b'/') {
        return false;
    }
    if b.len() > 1 && b.last() == Some(&b'/') {
        return false;
    }
    if b.iter().any(|c| matches!(c, b'%' | b';' | b'\\' | b'?' | b'#')) {
        return false;
    }
    // Empty (`//`), `.` and `..` segments; the leading `/` gives an empty first piece.
    !p[1..].split('/').any(|s| s.is_empty() && p.len() > 1 || s == "." || s == "..")
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// One left-to-right decoding pass; `None` when there was nothing to decode.
fn decode_once(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut changed = false;
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' && i + 2 < input.len() {
            if let (Some(h), Some(l)) = (hex(input[i + 1]), hex(input[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                changed = true;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    changed.then_some(out)
}

/// Decodes until no valid escape remains. Terminates: every pass that changes anything
/// shortens the input by at least two bytes.
fn decode_fully(input: &[u8]) -> Vec<u8> {
    let mut current = input.to_vec();
    while let Some(next) = decode_once(&current) {
        current = next;
    }
    current
}

// === impl PathReadings ===

impl<'a> PathReadings<'a> {
    /// Every reading of `raw`; see the module doc.
    pub fn new(raw: &'a str) -> Self {
        let strict = normalize_path(raw);
        let mut others = Vec::new();
        let cut = raw.find(['?', '#']).map_or(raw, |i| &raw[..i]);
        let push = |s: String, others: &mut Vec<String>| {
            if s != *strict && !others.contains(&s) {
                others.push(s);
            }
        };
        let needs_work = !strict.is_ascii()
            || strict.contains(['.', ' ', '%'])
            || cut.bytes().any(|b| b == b'%' || b == b'.' || b >= 0x80);
        if needs_work {
            let decoded = decode_fully(cut.as_bytes());
            let text = String::from_utf8_lossy(&decoded);
            let folded: Cow<'_, str> =
                if text.is_ascii() { Cow::Borrowed(&text) } else { Cow::Owned(text.nfkc().collect()) };
            // A stack that decodes before it splits reads only up to a decoded `?` or `#`.
            let short = folded.find(['?', '#']).map_or(&*folded, |i| &folded[..i]);
            let trimmed = join_segments(short, Segments::Trimmed);
            if let Some(bare) = without_format_suffix(&trimmed) {
                push(bare, &mut others);
            }
            push(trimmed, &mut others);
            // Frameworks that route without resolving dot segments read `/signup/..` as a
            // path below `/signup` (Flask, Django, Express, Rails with a `/signup/*rest` route).
            push(join_segments(short, Segments::Literal), &mut others);
        }
        Self { strict, others }
    }

    /// The strict reading ([`normalize_path`]).
    pub fn strict(&self) -> &str {
        &self.strict
    }

    /// Every reading, the strict one first.
    pub fn all(&self) -> impl Iterator<Item = &str> {
        std::iter::once(&*self.strict).chain(self.others.iter().map(String::as_str))
    }
}

/// `/a/b.json` -> `/a/b`: the last segment cut at its first dot, unless the dot leads it.
fn without_format_suffix(path: &str) -> Option<String> {
    let start = path.rfind('/').map_or(0, |i| i + 1);
    let last = &path[start..];
    let dot = last.find('.').filter(|&i| i > 0)?;
    let stem = last[..dot].trim_end_matches(' ');
    (!stem.is_empty()).then(|| format!("{}{stem}", &path[..start]))
}
