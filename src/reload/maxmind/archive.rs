//! What a downloaded MaxMind archive must pass before it may replace the cache: the published
//! SHA-256, a readable `tar.gz` holding the edition's `.mmdb`, and a database `maxminddb`
//! opens. Blocking file work, run off the runtime.
//!
//! Nothing here writes by a name taken from the archive: the `.mmdb` entry is copied to a
//! temporary file of our own beside the cache and renamed over it only once it opened.

use std::fs::File;
use std::io::{self, Read, Write};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

/// Why an archive was refused; the cache is untouched.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("checksum file: {0}")]
    ChecksumFile(String),
    #[error("SHA-256 mismatch: the archive hashes to {actual}, MaxMind publishes {expected}")]
    Checksum { expected: String, actual: String },
    #[error("corrupt archive: {0}")]
    Corrupt(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("cache {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// The hex digest of a `.sha256` file (`<64 hex digits>  <file name>`), lower-cased.
pub fn parse_checksum(body: &[u8]) -> Result<String, ArchiveError> {
    let text = std::str::from_utf8(body).map_err(|_| ArchiveError::ChecksumFile("not text".into()))?;
    let digest = text.split_whitespace().next().unwrap_or("");
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ArchiveError::ChecksumFile("does not start with a 64-digit hex SHA-256".into()));
    }
    Ok(digest.to_ascii_lowercase())
}

/// Checks `archive` (already hashed to `actual`) against `expected`, takes the `.mmdb` out,
/// checks that it opens, and renames it over `cache`. `max_bytes` caps the extracted file.
pub fn install(
    archive: &Path,
    actual: &str,
    expected: &str,
    edition: &str,
    cache: &Path,
    max_bytes: u64,
) -> Result<(), ArchiveError> {
    if !actual.eq_ignore_ascii_case(expected) {
        return Err(ArchiveError::Checksum { expected: expected.to_owned(), actual: actual.to_owned() });
    }
    let tmp = sibling(cache, "extract");
    let result = extract(archive, edition, &tmp, max_bytes).and_then(|()| validate(&tmp)).and_then(|()| {
        std::fs::rename(&tmp, cache).map_err(|source| ArchiveError::Io { path: cache.to_path_buf(), source })
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A temporary name beside `path` (same directory, so a rename is atomic).
pub fn sibling(path: &Path, what: &str) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".{what}.{}", std::process::id()));
    path.with_file_name(name)
}

/// Copies the edition's `.mmdb` (or the only `.mmdb`) out of the `tar.gz` into `out`.
fn extract(archive: &Path, edition: &str, out: &Path, max_bytes: u64) -> Result<(), ArchiveError> {
    let corrupt = |e: io::Error| ArchiveError::Corrupt(e.to_string());
    let io_err = |source| ArchiveError::Io { path: out.to_path_buf(), source };
    let file = File::open(archive).map_err(|source| ArchiveError::Io { path: archive.to_path_buf(), source })?;
    let mut tar = tar::Archive::new(GzDecoder::new(io::BufReader::new(file)));
    let wanted = format!("{edition}.mmdb");
    let (mut found, mut exact, mut others) = (false, false, 0usize);
    for entry in tar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(corrupt)?.into_owned();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else { continue };
        if !name.ends_with(".mmdb") {
            continue;
        }
        let is_exact = name == wanted;
        if found && (exact || !is_exact) {
            others += 1;
            continue;
        }
        if entry.header().size().map_err(corrupt)? > max_bytes {
            return Err(ArchiveError::TooLarge(format!(
                "{name} in the archive is larger than max_bytes = {max_bytes}"
            )));
        }
        let mut f = File::create(out).map_err(io_err)?;
        let copied = io::copy(&mut (&mut entry).take(max_bytes + 1), &mut f).map_err(corrupt)?;
        if copied > max_bytes {
            return Err(ArchiveError::TooLarge(format!(
                "{name} in the archive is larger than max_bytes = {max_bytes}"
            )));
        }
        f.flush().map_err(io_err)?;
        f.sync_all().map_err(io_err)?;
        if found {
            others += 1;
        }
        found = true;
        exact = is_exact;
    }
    if !found {
        return Err(ArchiveError::Corrupt("no .mmdb file in the archive".into()));
    }
    if others > 0 && !exact {
        return Err(ArchiveError::Corrupt(format!("{} .mmdb files in the archive, none named {wanted}", others + 1)));
    }
    Ok(())
}

/// The extracted file must open as a MaxMind DB (metadata and search tree in bounds).
fn validate(path: &Path) -> Result<(), ArchiveError> {
    let mapped = crate::source::mapped::MappedFile::open(path)
        .map_err(|source| ArchiveError::Io { path: path.to_path_buf(), source })?;
    let opened = panic::catch_unwind(AssertUnwindSafe(|| {
        maxminddb::Reader::from_source(mapped.bytes()).map(|r| r.metadata().node_count)
    }));
    match opened {
        Ok(Ok(nodes)) if nodes > 0 => Ok(()),
        Ok(Ok(_)) => Err(ArchiveError::Corrupt("the .mmdb has an empty search tree".into())),
        Ok(Err(e)) => Err(ArchiveError::Corrupt(format!("the .mmdb does not open: {e}"))),
        Err(_) => Err(ArchiveError::Corrupt("the .mmdb does not open (the reader panicked)".into())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn checksum_files_are_read_like_sha256sum_output() {
        let hex = "AB".repeat(32);
        assert_eq!(
            parse_checksum(format!("{hex}  GeoLite2-City_20261201.tar.gz\n").as_bytes()).unwrap(),
            hex.to_lowercase()
        );
        assert_eq!(parse_checksum(hex.as_bytes()).unwrap(), hex.to_lowercase());
        for bad in ["", "xyz  file", &"a".repeat(63), "<html>error</html>"] {
            assert!(parse_checksum(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_mismatched_checksum_is_refused_before_the_archive_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("db.mmdb");
        std::fs::write(&cache, b"old").unwrap();
        let e = install(&dir.path().join("absent.tar.gz"), &"0".repeat(64), &"1".repeat(64), "X", &cache, 1 << 20);
        assert!(matches!(e, Err(ArchiveError::Checksum { .. })), "{e:?}");
        assert_eq!(std::fs::read(&cache).unwrap(), b"old");
    }
}
