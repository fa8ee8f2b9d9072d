//! `policy::normalize_path`: never panics, is idempotent, and its output is in normal form
//! (absolute, no query/fragment, no empty, `.` or `..` segments, no trailing slash).
#![no_main]

use std::borrow::Cow;

use geogate::policy::normalize_path;
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
});
