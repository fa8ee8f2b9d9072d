//! The path and host patterns of rules, and how each compares against a request.
//!
//! Path patterns are normalised like paths ([`normalize_path`]) when compiled. How a pattern
//! compares depends on the rule's [`PathMatch`]: `framework` tries every reading of the path
//! ([`PathReadings::all`]) ASCII case-insensitively and matches if any does; `strict`
//! matches only if every reading does, byte for byte.
//!
//! Organisation globs (`as_orgs`) are plain text globs: `*` matches any run of characters,
//! compared ASCII case-insensitively ([`glob_matches_ignore_case`]).

use super::path::{normalize_path, PathReadings};
use crate::config::PathMatch;

/// A path pattern, compiled from a normalised pattern (case kept).
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
        let normalized = normalize_path(pattern).into_owned();
        if normalized.contains('*') {
            Self::Glob(normalized.into_boxed_str())
        } else {
            Self::Prefix(normalized.into_boxed_str())
        }
    }

    /// Whether the request path, read as `mode` says, matches.
    pub(super) fn matches_readings(&self, readings: &PathReadings<'_>, mode: PathMatch) -> bool {
        match mode {
            // Every reading must match: only a path that all frameworks read as the pattern.
            PathMatch::Strict => readings.all().all(|p| self.matches(p, false)),
            PathMatch::Framework => readings.all().any(|p| self.matches(p, true)),
        }
    }

    /// `path` must be normalised; `fold` compares ASCII case-insensitively.
    pub(super) fn matches(&self, path: &str, fold: bool) -> bool {
        let p = path.as_bytes();
        match self {
            Self::Prefix(pat) => {
                let pat = pat.as_bytes();
                if pat == b"/" {
                    return true;
                }
                p.len() >= pat.len() && eq(&p[..pat.len()], pat, fold) && (p.len() == pat.len() || p[pat.len()] == b'/')
            }
            Self::Glob(pat) => {
                let pat = pat.as_bytes();
                glob(pat, p, fold) || p.iter().enumerate().any(|(i, &c)| c == b'/' && i > 0 && glob(pat, &p[..i], fold))
            }
        }
    }
}

fn eq(a: &[u8], b: &[u8], fold: bool) -> bool {
    if fold {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// Whole-input wildcard match, `*` never crossing `/`; `fold`: ASCII case-insensitive.
/// Iterative with single backtrack point per segment: O(len(p) * len(s)) worst case, no heap.
pub(super) fn glob(pat: &[u8], s: &[u8], fold: bool) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < pat.len() && pat[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < pat.len() && (pat[pi] == s[si] || fold && pat[pi].eq_ignore_ascii_case(&s[si])) {
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
/// Whether `text` matches `glob` (`*` = any run of bytes, possibly empty), ASCII
/// case-insensitively; `glob` is already lower-case. Linear time: the classic two-pointer
/// walk that backtracks only to the last `*`. No allocation.
pub(crate) fn glob_matches_ignore_case(glob: &str, text: &str) -> bool {
    let (g, t) = (glob.as_bytes(), text.as_bytes());
    let (mut gi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if gi < g.len() && g[gi] == b'*' {
            star = Some((gi, ti));
            gi += 1;
        } else if gi < g.len() && g[gi] == t[ti].to_ascii_lowercase() {
            gi += 1;
            ti += 1;
        } else if let Some((sg, st)) = star {
            gi = sg + 1;
            ti = st + 1;
            star = Some((sg, st + 1));
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|&b| b == b'*')
}
