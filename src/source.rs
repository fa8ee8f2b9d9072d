//! Source readers: MaxMind DB files, range files and CIDR lists, turned into plain network data.
//!
//! ```text
//! .mmdb file ─ mmdb::load_layer ─> SourceLayer (ranges, records) + Provenance
//! .csv/.tsv(.gz) range file ─ ranges::load_layer ─> SourceLayer + Provenance
//! list file / inline entries ─ cidr::parse ─> CidrList { v4, v6, provenance }
//! ```
//!
//! Readers do I/O and validation only; merging sources and longest-prefix lookups are the
//! table's job. Every reader is total: bad input of any shape (missing, empty, truncated,
//! random or bit-flipped files, malformed lines) gives a [`SourceError`] that names the file,
//! never a panic. Each loaded source carries a [`Provenance`] so operators can tell exactly
//! which bytes a running snapshot was built from.

pub mod cidr;
pub mod mapped;
pub mod mmdb;
pub mod ranges;

use std::fmt;

use sha2::{Digest, Sha256};

pub use self::cidr::LineError;

/// Where a source's data came from and what it holds, as shown by `check`, `/-/explain` and
/// the reload log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Provenance {
    /// Source name from the configuration.
    pub name: String,
    /// `"mmdb"`, `"ranges"` or `"list"`.
    pub kind: &'static str,
    /// The file path as given, or `"inline"` for entries written in the configuration.
    pub origin: String,
    /// `"geoip2"`, `"flat"` (or `"geoip2+flat"` when an auto-detected database holds both
    /// shapes), `"custom"` or `"list"`.
    pub schema: String,
    /// The mmdb metadata `database_type`, e.g. `GeoLite2-Country`.
    pub database_type: Option<String>,
    /// The mmdb metadata `build_epoch` (seconds since the Unix epoch).
    pub build_epoch: Option<u64>,
    /// Number of IPv4 networks produced.
    pub networks_v4: usize,
    /// Number of IPv6 networks produced (for an mmdb, including the IPv4 aliases).
    pub networks_v6: usize,
    /// Size of the input in bytes.
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the input bytes.
    pub sha256: String,
}

/// Why a source could not be loaded. Every variant names the file (`origin`).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{origin}: cannot read: {source}")]
    Io {
        origin: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{origin}: the file is empty")]
    Empty { origin: String },

    #[error("{origin}: not a valid MaxMind DB: {source}")]
    Mmdb {
        origin: String,
        #[source]
        source: maxminddb::MaxMindDbError,
    },

    #[error("{origin}: corrupt MaxMind DB: {reason}")]
    Corrupt { origin: String, reason: String },

    #[error("{origin}: the database holds no networks with data")]
    NoNetworks { origin: String },

    #[error(
        "{origin}: none of the {records} records carries a field of the {schema} schema \
         (database_type {database_type:?}); is this a geo database? \
         set the source's schema (or custom field paths) to match its records"
    )]
    NoGeoData { origin: String, schema: String, database_type: String, records: usize },

    #[error("{origin}: {}", LineErrors(.errors))]
    List { origin: String, errors: Vec<LineError> },

    /// A range file with bad lines: the first [`ranges::MAX_REPORTED_LINES`] found, by line,
    /// and how many more there were.
    #[error("{}", ranges::bad_lines(.origin, .errors, .more))]
    Ranges { origin: String, errors: Vec<LineError>, more: usize },

    #[error("{origin}: internal error while loading (please report): {message}")]
    Panicked { origin: String, message: String },
}

/// How many bad lines an error message lists before summarising the rest.
const MAX_REPORTED_LINES: usize = 100;

/// Displays a list of bad lines, capped so a binary file fed as a list stays readable.
struct LineErrors<'a>(&'a [LineError]);

// === impl SourceError ===

impl SourceError {
    /// The file (or `"inline"`) the error is about.
    pub fn origin(&self) -> &str {
        match self {
            Self::Io { origin, .. }
            | Self::Empty { origin }
            | Self::Mmdb { origin, .. }
            | Self::Corrupt { origin, .. }
            | Self::NoNetworks { origin }
            | Self::NoGeoData { origin, .. }
            | Self::List { origin, .. }
            | Self::Ranges { origin, .. }
            | Self::Panicked { origin, .. } => origin,
        }
    }
}

// === impl LineErrors ===

impl fmt::Display for LineErrors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} bad line{}", if n == 1 { "" } else { "s" })?;
        for e in self.0.iter().take(MAX_REPORTED_LINES) {
            write!(f, "\n  {e}")?;
        }
        if n > MAX_REPORTED_LINES {
            write!(f, "\n  and {} more", n - MAX_REPORTED_LINES)?;
        }
        Ok(())
    }
}

/// Longest piece of a bad line quoted in a message; the full text stays in [`LineError::text`].
const MAX_QUOTED_CHARS: usize = 80;

/// `text` in quotes, shortened so a garbage line stays readable.
fn quote(text: &str) -> String {
    if text.chars().count() <= MAX_QUOTED_CHARS {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(MAX_QUOTED_CHARS).collect();
        format!("{head:?}...")
    }
}

/// Lower-case hex SHA-256 of `bytes`.
fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex of a digest.
pub(crate) fn hex(digest: &[u8]) -> String {
    use fmt::Write;
    let mut hex = String::with_capacity(2 * digest.len());
    for b in digest {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// Text of a caught panic payload, for [`SourceError::Panicked`].
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn list_error_is_capped() {
        let errors: Vec<LineError> =
            (1..=150).map(|line| LineError { line, text: "x".into(), reason: "bad".into() }).collect();
        let msg = SourceError::List { origin: "l.txt".into(), errors }.to_string();
        assert!(msg.starts_with("l.txt: 150 bad lines"), "{msg}");
        assert!(msg.contains("line 100:") && !msg.contains("line 101:"), "{msg}");
        assert!(msg.ends_with("and 50 more"), "{msg}");
    }
}
