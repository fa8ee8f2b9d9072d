//! A database file read in place: a private copy, mapped read-only.
//!
//! Mapping the file itself would leave geogate at the mercy of whoever writes it: a file
//! truncated in place (`cp new.mmdb geo.mmdb` truncates before it writes) makes every access
//! to a page past the new end a `SIGBUS`, which kills the process. So the file is first copied,
//! in one streamed pass, into an unlinked file of our own in the scratch directory
//! (`TMPDIR`, else `/tmp`), and that copy is mapped. Nobody else can open, truncate or write
//! it; replacing or truncating the original while it is read changes nothing. The copy's
//! pages are file-backed page cache, not anonymous memory: under a cgroup memory limit the
//! kernel reclaims them instead of killing the process. (A scratch directory on tmpfs would
//! make them shared memory that counts against the limit: point `TMPDIR` at a disk-backed
//! directory, as the Kubernetes kit does.) The copy is gone when the map is dropped.
//!
//! Where no private file can be made (a read-only root without a writable `TMPDIR`, a full
//! disk), the file is read into the heap instead, with one warning: the memory is anonymous
//! then, but the database still loads and nothing can change under it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::Mmap;
use sha2::{Digest, Sha256};

use super::hex;

/// Identity and version of a file without reading it: device, inode, size, mtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileStamp {
    /// The stamp of the file at `path`, if it can be read.
    pub fn of_path(path: &Path) -> Option<Self> {
        std::fs::metadata(path).ok().map(|m| Self::of_metadata(&m))
    }

    /// The stamp of an open file (whatever its name now points at).
    fn of_file(file: &File) -> Option<Self> {
        file.metadata().ok().map(|m| Self::of_metadata(&m))
    }

    fn of_metadata(m: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        }
    }
}

/// A file's content hash, taken while the file kept one stamp: the same file found with that
/// stamp again holds the same content (as far as stamps tell; geogate trusts them to skip
/// reading an unchanged database too), so it need not be hashed again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownHash {
    pub stamp: FileStamp,
    /// Lower-case hex SHA-256.
    pub sha256: String,
}

/// A private, read-only mapping of a copy of a file (or, failing that, a heap copy).
#[derive(Debug)]
pub struct MappedFile {
    map: Option<Held>,
    /// Lower-case hex SHA-256 of the content, computed while copying.
    sha256: String,
}

#[derive(Debug)]
enum Held {
    Mapped(Mmap),
    Heap(Vec<u8>),
}

// === impl MappedFile ===

impl MappedFile {
    /// Copies `path` into the scratch directory and maps the copy.
    pub fn open(path: &Path) -> io::Result<Self> {
        Self::open_known(path, None)
    }

    /// [`MappedFile::open`], hashing the content only if `known` does not already describe
    /// it: when the file opened has `known`'s stamp before and after the copy, its hash is
    /// `known`'s. (On the shipped database a hash is about 4 ms; on DB-IP City, about 70.)
    pub fn open_known(path: &Path, known: Option<&KnownHash>) -> io::Result<Self> {
        let mut source = File::open(path)?;
        let mut hasher = Sha256::new();
        if source.metadata()?.len() == 0 {
            return Ok(Self { map: None, sha256: hex(hasher.finalize().as_slice()) });
        }
        if let Some(known) = known.filter(|k| FileStamp::of_file(&source) == Some(k.stamp)) {
            if let Ok(m) = Self::copy_and_map(&mut source, None) {
                if FileStamp::of_file(&source) == Some(known.stamp) {
                    return Ok(Self { map: Some(Held::Mapped(m)), sha256: known.sha256.clone() });
                }
            }
            // Written to while copied, or no scratch copy: the usual way, from the start.
            return Self::open_known(path, None);
        }
        match Self::copy_and_map(&mut source, Some(&mut hasher)) {
            Ok(m) => Ok(Self { map: Some(Held::Mapped(m)), sha256: hex(hasher.finalize().as_slice()) }),
            Err(e) => {
                tracing::warn!(
                    path = %path.display(),
                    scratch = %std::env::temp_dir().display(),
                    error = %e,
                    "no private copy of the database could be made in the scratch directory (TMPDIR); \
                     reading it into memory instead"
                );
                let bytes = std::fs::read(path)?;
                let sha256 = hex(Sha256::digest(&bytes).as_slice());
                Ok(Self { map: Some(Held::Heap(bytes)), sha256 })
            }
        }
    }

    /// The private copy, hashed on the way if `hasher` is given, mapped.
    fn copy_and_map(source: &mut File, hasher: Option<&mut Sha256>) -> io::Result<Mmap> {
        let (mut copy, scratch) = private_file()?;
        // The name goes at once: from here on the copy is reachable only through `copy`.
        let _ = std::fs::remove_file(&scratch);
        let Some(hasher) = hasher else {
            // Nothing to see on the way: the kernel copies (`copy_file_range` where it can).
            io::copy(source, &mut copy)?;
            return map(&copy);
        };
        read_chunks(source, |chunk| {
            hasher.update(chunk);
            copy.write_all(chunk)
        })?;
        copy.flush()?;
        map(&copy)
    }

    pub fn bytes(&self) -> &[u8] {
        match &self.map {
            Some(Held::Mapped(m)) => m,
            Some(Held::Heap(v)) => v,
            None => &[],
        }
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
    }
}

/// Lower-case hex SHA-256 of a file's content, read in 1 MiB pieces (no whole copy in memory).
pub fn sha256_file(path: &Path) -> io::Result<String> {
    hash_file(path).map(|(sha256, _)| sha256)
}

/// [`sha256_file`], with the stamp the file kept while it was read (`None` if it changed
/// meanwhile): what [`MappedFile::open_known`] needs to skip hashing it again.
pub fn hash_file(path: &Path) -> io::Result<(String, Option<KnownHash>)> {
    let mut f = File::open(path)?;
    let before = FileStamp::of_file(&f);
    let mut hasher = Sha256::new();
    read_chunks(&mut f, |chunk| {
        hasher.update(chunk);
        Ok(())
    })?;
    let sha256 = hex(hasher.finalize().as_slice());
    let known =
        before.filter(|&b| FileStamp::of_file(&f) == Some(b)).map(|stamp| KnownHash { stamp, sha256: sha256.clone() });
    Ok((sha256, known))
}

/// Reads `source` to its end in 1 MiB pieces, handing each to `each`; a reload's compile is
/// paced by the KiB read ([`crate::pace::ticks`]).
fn read_chunks(source: &mut File, mut each: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        each(&buf[..n])?;
        crate::pace::ticks((n / 1024) as u32);
    }
}

/// Maps `file` read-only.
#[allow(unsafe_code)]
fn map(file: &File) -> io::Result<Mmap> {
    // SAFETY: the mapping is undefined behaviour only if the file changes while mapped. This
    // file is our own private copy: created with O_EXCL, unlinked before it was written (see
    // `MappedFile::open`), so no other process can open it, and this process never writes to
    // it after this point. The mapping is read-only and private.
    unsafe { Mmap::map(file) }
}

/// A new file in the scratch directory that did not exist before (O_EXCL).
fn private_file() -> io::Result<(File, PathBuf)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir();
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".geogate-{}-{n}.mmdb", std::process::id()));
        match OpenOptions::new().read(true).write(true).create_new(true).open(&path) {
            Ok(f) => return Ok((f, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_copy_is_private_and_survives_the_original_being_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.mmdb");
        let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let mapped = MappedFile::open(&path).unwrap();
        // Truncated and rewritten in place, as `cp` does: the mapping still reads the copy.
        std::fs::write(&path, b"short").unwrap();
        assert_eq!(mapped.bytes().len(), content.len());
        assert!(mapped.bytes() == &content[..], "the mapped copy changed with the original");
        assert_eq!(mapped.sha256(), super::super::sha256_hex(&content));
        // No name is left behind in the scratch directory.
        let leftovers = std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(&format!(".geogate-{}-", std::process::id())))
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn an_empty_file_maps_to_no_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.mmdb");
        std::fs::write(&path, b"").unwrap();
        assert!(MappedFile::open(&path).unwrap().bytes().is_empty());
    }

    #[test]
    fn a_hash_taken_under_the_same_stamp_is_not_taken_again_and_any_other_file_is_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.mmdb");
        let content: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let (sha256, known) = hash_file(&path).unwrap();
        assert_eq!(sha256, super::super::sha256_hex(&content));
        let known = known.expect("the file did not change while it was hashed");
        assert_eq!(Some(known.stamp), FileStamp::of_path(&path));

        // The same file, same stamp: the known hash is taken as it is (a made-up one shows it).
        let told = KnownHash { stamp: known.stamp, sha256: "told".into() };
        let mapped = MappedFile::open_known(&path, Some(&told)).unwrap();
        assert_eq!(mapped.sha256(), "told");
        assert!(mapped.bytes() == &content[..]);

        // Replaced since (another inode under the name): hashed, whatever was known.
        let other: Vec<u8> = content.iter().map(|b| b ^ 0x5a).collect();
        let next = dir.path().join("db.mmdb.new");
        std::fs::write(&next, &other).unwrap();
        std::fs::rename(&next, &path).unwrap();
        let mapped = MappedFile::open_known(&path, Some(&told)).unwrap();
        assert_eq!(mapped.sha256(), super::super::sha256_hex(&other));
        assert!(mapped.bytes() == &other[..]);
    }
}
