//! `proxy_protocol::parse`: never panics; a complete header is self-delimiting (re-parsing
//! exactly its bytes gives the same answer), every shorter prefix of it is `Incomplete` (the
//! parser is incremental), an error never turns into success with more bytes, and the
//! addresses it reports are canonical.
#![no_main]

use geogate::proxy_protocol::{parse, Parse, DEFAULT_MAX_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let result = parse(data, DEFAULT_MAX_LEN);
    match &result {
        Ok(Parse::Complete { header, consumed }) => {
            let consumed = *consumed;
            assert!(consumed > 0 && consumed <= data.len(), "consumed {consumed} of {}", data.len());
            let again = parse(&data[..consumed], DEFAULT_MAX_LEN);
            assert!(matches!(again, Ok(p) if p == Parse::Complete { header: *header, consumed }), "{again:?}");
            // A sample of shorter prefixes: all of the first 32, and a few more.
            let mut cuts: Vec<usize> = (0..consumed.min(32)).collect();
            cuts.extend([consumed / 2, consumed.saturating_sub(2), consumed - 1]);
            for cut in cuts {
                let p = parse(&data[..cut], DEFAULT_MAX_LEN);
                assert!(matches!(p, Ok(Parse::Incomplete)), "prefix {cut} of a {consumed}-byte header gave {p:?}");
            }
            assert!(header.version == 1 || header.version == 2);
            assert_eq!(header.source.is_some(), header.destination.is_some());
            for addr in [header.source, header.destination].into_iter().flatten() {
                assert_eq!(addr.ip(), addr.ip().to_canonical(), "{addr} is not canonical");
            }
            if header.version == 1 {
                assert!(consumed <= geogate::proxy_protocol::V1_MAX_LEN);
            } else {
                assert!(consumed <= DEFAULT_MAX_LEN);
            }
        }
        Ok(Parse::Incomplete) => {
            // Every prefix of a valid prefix is a valid prefix.
            let p = parse(&data[..data.len() / 2], DEFAULT_MAX_LEN);
            assert!(matches!(p, Ok(Parse::Incomplete)), "{p:?}");
        }
        Err(e) => {
            let _ = (e.to_string(), e.kind());
            // Incremental reading relies on this: bytes that were refused stay refused.
            let mut longer = data.to_vec();
            longer.extend_from_slice(b"\r\n\r\n\0\r\nQUIT\n PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
            let p = parse(&longer, DEFAULT_MAX_LEN);
            assert!(p.is_err(), "error {e} became {p:?} with more bytes");
        }
    }
});
