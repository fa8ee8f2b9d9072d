//! Regression tests for what the fuzz targets in `fuzz/` found, each named after its finding
//! and holding the minimised input; plus the generator of the mmdb seed corpus.
//!
//! A test for a finding that is not fixed yet is `#[ignore = "finding: ..."]`, so the suite
//! stays green while the finding is open; the fix removes the `ignore`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::fixtures::Fixture;
use geogate::config::MmdbSchema;
use geogate::source::mmdb::load_bytes;

/// Writes the mmdb fixtures into `fuzz/corpus/mmdb/` as seeds. Run by hand when the fixtures
/// change: `GEOGATE_WRITE_FUZZ_SEEDS=1 cargo test --test fuzz_regressions -- --ignored write_mmdb_seeds`.
#[test]
#[ignore = "writes files; run by hand with GEOGATE_WRITE_FUZZ_SEEDS=1"]
fn write_mmdb_seeds() {
    if std::env::var_os("GEOGATE_WRITE_FUZZ_SEEDS").is_none() {
        eprintln!("GEOGATE_WRITE_FUZZ_SEEDS is not set; nothing written");
        return;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/mmdb");
    std::fs::create_dir_all(&dir).unwrap();
    for fixture in Fixture::ALL {
        fixture.write_in(&dir);
    }
}

/// The committed seeds are what the fixtures produce and load cleanly, so the mmdb target
/// starts from valid databases (a stale seed would be caught here).
#[test]
fn mmdb_seeds_are_current_fixtures() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/mmdb");
    for fixture in Fixture::ALL {
        let path = dir.join(fixture.file_name());
        let seed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(seed, fixture.bytes(), "{} is stale: regenerate with write_mmdb_seeds", path.display());
        load_bytes("seed", fixture.file_name(), seed, &MmdbSchema::Auto).unwrap();
    }
}

/// Finding (by review while writing the `config` target, which skips `html_file` for this
/// reason): the checker reads `html_file` after a size check on `metadata().len()`, which is 0
/// for a FIFO or a device. `/dev/zero` then grows memory without bound and a FIFO blocks the
/// config load (and a reload thread) forever. Expected: a non-regular file is refused at once.
#[test]
fn html_file_that_is_not_a_regular_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("blocked.html");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let text = format!(
        "[[listener]]\nname = \"p\"\naddress = \"127.0.0.1:0\"\n\n[[upstream]]\nname = \"a\"\n\
         url = \"http://127.0.0.1:1\"\n\n[[source]]\nname = \"l\"\ntype = \"list\"\nentries = []\n\n\
         [policy.block]\nhtml_file = {:?}\n",
        fifo.display().to_string()
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(geogate::config::parse(&text, None).map(|_| ()).map_err(|e| e.to_string()));
    });
    let result = rx.recv_timeout(std::time::Duration::from_secs(5));
    if result.is_err() {
        // Unblock the reader so the thread can end, then report the hang.
        let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
    }
    let result = result.expect("config::parse still blocked on a FIFO after 5 s");
    assert!(result.is_err(), "a FIFO was accepted as html_file");
}

/// h1_wire: `Transfer-Encoding: chunked` then an empty `Transfer-Encoding` line. The lines are
/// one list whose last coding is `chunked` (RFC 9110 §5.3), as the client reading the written
/// head sees it; the body was framed by the last line alone, so as close-delimited.
#[test]
fn h1_wire_empty_transfer_encoding_line_after_chunked() {
    use geogate::proxy::h1::wire::{response, Framing, Response1};
    let input = b"HTTP/1.1 200 \r\ntransfer-encoding:chunked\r\ntransfer-encoding:\r\n\r\n";
    let mut out = Vec::new();
    match response(input, false, false, &mut out).unwrap() {
        Response1::Complete(head) => assert_eq!(head.framing, Framing::Chunked),
        other => panic!("{other:?}"),
    }
}
