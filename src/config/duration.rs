//! The duration syntax: one non-negative integer and one unit, `ms`, `s`, `m` or `h`.
//!
//! Deliberately tiny and strict: a bare number (seconds? milliseconds?), a fraction, a compound
//! (`1h30m`), a sign, spaces or an upper-case unit (`M` could be months) are refused, so every
//! value in a file reads exactly one way.

use std::time::Duration;

/// Why a duration string was refused; the `Display` text includes how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("`{0}` has no unit")]
    NoUnit(String),
    #[error("`{0}` does not start with a whole number")]
    NoNumber(String),
    #[error("`{0}` has an unknown unit; use ms, s, m or h")]
    BadUnit(String),
    #[error("`{0}` is too large")]
    Overflow(String),
}

/// Parses `"500ms"`, `"10s"`, `"5m"`, `"1h"`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return Err(DurationError::NoNumber(text.to_owned()));
    }
    if unit.is_empty() {
        return Err(DurationError::NoUnit(text.to_owned()));
    }
    let n: u64 = number.parse().map_err(|_| DurationError::Overflow(text.to_owned()))?;
    let overflow = || DurationError::Overflow(text.to_owned());
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs).ok_or_else(overflow),
        "h" => n.checked_mul(3600).map(Duration::from_secs).ok_or_else(overflow),
        _ => Err(DurationError::BadUnit(text.to_owned())),
    }
}

/// A hint for a refused duration: what the writer most likely meant.
pub(super) fn hint(text: &str) -> String {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return format!(r#"add a unit, e.g. "{t}s" or "{t}ms""#);
    }
    if t.contains('.') {
        return r#"use a whole number of a smaller unit, e.g. "1500ms" instead of "1.5s""#.into();
    }
    r#"write one whole number and one unit: "500ms", "10s", "5m" or "1h""#.into()
}
