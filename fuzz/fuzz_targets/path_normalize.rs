//! `policy::normalize_path`, `PathReadings` and `screen`: never panic; the strict reading is
//! idempotent and in normal form (absolute, no query/fragment, no empty, `.` or `..`
//! segments, no trailing slash); the framework readings include the strict one and are all
//! absolute; a path the screen lets through decodes to UTF-8 without control characters.
#![no_main]

use std::borrow::Cow;

use geogate::config::EncodedDelimiters;
use geogate::policy::{normalize_path, screen, PathReadings, PathRefusal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    let once = normalize_path(&raw);
    let twice = normalize_path(&once);
    assert_eq!(once, twice, "not idempotent for {raw:?}");

    let p: &str = &once;
    assert!(p.starts_with('/'), "{p:?}");
    assert!(!p.contains(['?', '#', '\\', ';']), "{p:?}");
    assert!(p == "/" || !p.ends_with('/'), "{p:?}");
    if p != "/" {
        assert!(p[1..].split('/').all(|s| !s.is_empty() && s != "." && s != ".."), "{p:?}");
    }
    if let Cow::Borrowed(b) = once {
        // Borrowed means "already clean": it must be the input up to `?`/`#`.
        assert!(raw.starts_with(b), "{b:?} is not a prefix of {raw:?}");
    }

    let readings = PathReadings::new(&raw);
    assert_eq!(readings.strict(), p);
    for r in readings.all() {
        assert!(r.starts_with('/'), "reading {r:?} of {raw:?}");
        assert!(!r.contains(['?', '#', '\\', ';']), "reading {r:?} of {raw:?}");
    }

    let strict = screen(&raw, EncodedDelimiters::Refuse);
    let lenient = screen(&raw, EncodedDelimiters::Allow);
    // Allowing encoded delimiters refuses nothing more, and only ever lets those through.
    match (strict, lenient) {
        (Ok(()), l) => assert_eq!(l, Ok(()), "{raw:?}"),
        (Err(PathRefusal::EncodedDelimiter), _) => {}
        (Err(e), l) => assert_eq!(l, Err(e), "{raw:?}"),
    }
    if strict.is_ok() {
        assert!(!p.chars().any(char::is_control), "screened path {raw:?} reads as {p:?}");
    }
});
