//! Request-path normalisation and the path/host pattern matchers.
//!
//! Matching happens on a normalised path so that spelling tricks cannot dodge a rule. The
//! steps, in order (each is a form some backend treats as the plain path):
//!
//! 1. cut the query (`?`) and fragment (`#`);
//! 2. percent-decode repeatedly until no valid `%XX` remains (`/%2573ignup` -> `/signup`; a
//!    backend that decodes twice must not see more than we do). `%2F` decodes to `/` too:
//!    over-matching a block rule is the safe side; invalid escapes stay as written;
//! 3. `\` becomes `/` (IIS and some frameworks);
//! 4. path parameters are dropped from each segment (`/signup;jsessionid=x` -> `/signup`);
//! 5. empty and `.` segments are dropped and `..` pops one (never above the root), so `//`,
//!    `/./`, `/x/../` and a trailing `/` disappear;
//! 6. `%`, `?` and `#` left in the result are re-encoded (`%25`, `%3F`, `%23`) so that the
//!    function is idempotent.
//!
//! Case is kept: the matchers compare ASCII case-insensitively instead (see the policy doc),
//! which saves an allocation for ordinary mixed-case paths. An already-clean path is returned
//! borrowed; only odd paths allocate.

use std::borrow::Cow;

/// Normalises a request path (or path-and-query) for matching; see the module doc.
pub fn normalize_path(raw: &str) -> Cow<'_, str> {
    let cut = raw.find(['?', '#']).map_or(raw, |i| &raw[..i]);
    if is_clean(cut) {
        return Cow::Borrowed(cut);
    }
    let decoded = decode_fully(cut.as_bytes());
    let text = String::from_utf8_lossy(&decoded);
    let text = text.replace('\\', "/");
    let mut segments: Vec<&str> = Vec::new();
    for segment in text.split('/') {
        let segment = segment.split(';').next().unwrap_or("");
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
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
    Cow::Owned(out)
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

/// A path pattern, compiled from a normalised, lower-case pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum PathPattern {
    /// Matches the path itself and everything below it (`/signup`, `/signup/x`; not `/signupx`).
    Prefix(Box<str>),
    /// `*` matches any run of characters within one segment; like a prefix, the glob matches
    /// the whole path or any leading run of whole segments.
    Glob(Box<str>),
}

/// A host pattern: exact, or `*.suffix` (stored as `.suffix`), lower-case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum HostPattern {
    Exact(Box<str>),
    Suffix(Box<str>),
}

// === impl PathPattern ===

impl PathPattern {
    pub(super) fn new(pattern: &str) -> Self {
        let normalized = normalize_path(pattern).to_ascii_lowercase();
        if normalized.contains('*') {
            Self::Glob(normalized.into_boxed_str())
        } else {
            Self::Prefix(normalized.into_boxed_str())
        }
    }

    /// `path` must be normalised.
    pub(super) fn matches(&self, path: &str) -> bool {
        let p = path.as_bytes();
        match self {
            Self::Prefix(pat) => {
                let pat = pat.as_bytes();
                if pat == b"/" {
                    return true;
                }
                p.len() >= pat.len()
                    && p[..pat.len()].eq_ignore_ascii_case(pat)
                    && (p.len() == pat.len() || p[pat.len()] == b'/')
            }
            Self::Glob(pat) => {
                let pat = pat.as_bytes();
                glob(pat, p) || p.iter().enumerate().any(|(i, &c)| c == b'/' && i > 0 && glob(pat, &p[..i]))
            }
        }
    }
}

/// Whole-input wildcard match, ASCII case-insensitive, `*` never crossing `/`.
/// Iterative with single backtrack point per segment: O(len(p) * len(s)) worst case, no heap.
pub(super) fn glob(pat: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < pat.len() && pat[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < pat.len() && pat[pi].eq_ignore_ascii_case(&s[si]) {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            // Let the last `*` swallow one more character, unless that is a `/`.
            if s[ss] == b'/' {
                return false;
            }
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    pat[pi..].iter().all(|&c| c == b'*')
}

// === impl HostPattern ===

impl HostPattern {
    pub(super) fn new(pattern: &str) -> Self {
        let p = pattern.trim_end_matches('.').to_ascii_lowercase();
        match p.strip_prefix('*') {
            Some(suffix) => Self::Suffix(suffix.into()),
            None => Self::Exact(p.into()),
        }
    }

    /// `host` is without port and trailing dot, any case.
    pub(super) fn matches(&self, host: &str) -> bool {
        let h = host.as_bytes();
        match self {
            Self::Exact(p) => h.eq_ignore_ascii_case(p.as_bytes()),
            Self::Suffix(s) => {
                let s = s.as_bytes();
                h.len() > s.len() && h[h.len() - s.len()..].eq_ignore_ascii_case(s)
            }
        }
    }
}

/// The host of a `Host` header or URI authority, without port or trailing dot.
pub(super) fn bare_host(host: &str) -> &str {
    let host = if let Some(rest) = host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`: keep the brackets, as patterns write them.
        match rest.find(']') {
            Some(i) => &host[..i + 2],
            None => host,
        }
    } else {
        match host.rsplit_once(':') {
            // A bare IPv6 address has several colons and no port.
            Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        }
    };
    host.strip_suffix('.').unwrap_or(host)
}
