//! Configuration errors: each names the file, the position, the key path and a fix.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// A 1-based line and column (the column counts characters, not bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// One problem in a configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    /// The file, when the configuration came from one.
    pub file: Option<PathBuf>,
    /// Where in the file; `None` for problems with no single place (e.g. a missing table).
    pub position: Option<Position>,
    /// The key path, e.g. `rule[2].countries[1]` (empty for the file as a whole).
    pub key: String,
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

/// Every problem found in a configuration, in file order. Never empty.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigErrors(Vec<ConfigError>);

// === impl Position ===

impl Position {
    /// The position of byte `offset` in `text` (clamped to the text, and to a char boundary).
    pub fn of(text: &str, offset: usize) -> Self {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Self { line, column }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

// === impl ConfigError ===

impl ConfigError {
    /// An error about a value given outside any file (command line, built-in defaults).
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { file: None, position: None, key: key.into(), message: message.into(), hint: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Converts serde/TOML's single error. The key path is recovered from the position, because
    /// toml 0.8 does not expose the path it was deserializing.
    pub(super) fn from_toml(text: &str, file: Option<PathBuf>, err: &toml::de::Error) -> Self {
        let span = err.span();
        let message = err.message().trim().to_owned();
        let hint = if message.starts_with("unknown field") {
            Some("check the spelling against the expected keys".to_owned())
        } else if message.starts_with("invalid type") {
            Some("strings need quotes, lists need [ ], durations are strings like \"10s\"".to_owned())
        } else if message.starts_with("duplicate key") {
            Some("each key may appear once per table".to_owned())
        } else {
            None
        };
        Self {
            file,
            position: span.as_ref().map(|s| Position::of(text, s.start)),
            key: span.map(|s| key_path_at(text, s)).unwrap_or_default(),
            message,
            hint,
        }
    }

    fn render(&self) -> String {
        let mut out = match &self.file {
            Some(f) => f.display().to_string(),
            None => "<config>".to_owned(),
        };
        if let Some(p) = self.position {
            out.push_str(&format!(":{p}"));
        }
        out.push_str(": ");
        if !self.key.is_empty() {
            out.push_str(&self.key);
            out.push_str(": ");
        }
        out.push_str(&self.message);
        if let Some(h) = &self.hint {
            out.push_str(&format!(" ({h})"));
        }
        out
    }
}

// === impl ConfigErrors ===

impl ConfigErrors {
    /// `None` when there is nothing to report.
    pub fn from_vec(mut errors: Vec<ConfigError>) -> Option<Self> {
        if errors.is_empty() {
            return None;
        }
        // File order reads best; errors without a position go last, in the order found.
        errors.sort_by_key(|e| e.position.map_or((usize::MAX, usize::MAX), |p| (p.line, p.column)));
        Some(Self(errors))
    }

    pub fn one(error: ConfigError) -> Self {
        Self(vec![error])
    }

    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false; present because clippy pairs it with `len`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    pub fn into_vec(self) -> Vec<ConfigError> {
        self.0
    }

    fn render(&self) -> String {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        lines.join("\n")
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Best-effort key path (`rule[1].contries`) for a byte range, from the nearest table header
/// above it and the key written at the start of its line. Good enough for serde's one error;
/// checked values carry their exact path instead.
fn key_path_at(text: &str, span: Range<usize>) -> String {
    let start = span.start.min(text.len());
    let mut table = String::new();
    let mut counts: Vec<(String, usize)> = Vec::new();
    let mut line_start = 0;
    let mut current_line = "";
    for line in text.split_inclusive('\n') {
        let end = line_start + line.len();
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let name = name.trim().to_owned();
            let idx = match counts.iter_mut().find(|(n, _)| *n == name) {
                Some((_, c)) => {
                    *c += 1;
                    *c
                }
                None => {
                    counts.push((name.clone(), 0));
                    0
                }
            };
            table = format!("{name}[{idx}]");
        } else if let Some(name) = trimmed.strip_prefix('[').and_then(|r| r.split(']').next()) {
            table = name.trim().to_owned();
        }
        if start < end || end == text.len() {
            current_line = line;
            line_start = end - line.len();
            break;
        }
        line_start = end;
    }
    let trimmed = current_line.trim_start();
    if trimmed.starts_with('[') {
        // The header itself (e.g. an unknown table name): name the table.
        let name = trimmed.trim_start_matches('[');
        let name = name.split(']').next().unwrap_or("").trim();
        return name.to_owned();
    }
    let mut path = table;
    if let Some((key, _)) = trimmed.split_once('=') {
        let key = key.trim().trim_matches('"');
        if !key.is_empty() {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
        }
    }
    // Inside an inline table the offending key is the spanned text itself.
    let col = start.saturating_sub(line_start);
    let spanned = text.get(span.clone()).unwrap_or("");
    let is_ident = !spanned.is_empty() && spanned.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let leading_key = trimmed.split('=').next().unwrap_or("").trim();
    let after_equals = current_line.get(..col).is_some_and(|s| s.contains('='));
    if is_ident && spanned != leading_key && after_equals {
        path.push('.');
        path.push_str(spanned);
    }
    path
}
