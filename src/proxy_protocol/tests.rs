// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn complete(buf: &[u8]) -> (ProxyHeader, usize) {
    match parse(buf, DEFAULT_MAX_LEN) {
        Ok(Parse::Complete { header, consumed }) => (header, consumed),
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn err_kind(buf: &[u8]) -> &'static str {
    match parse(buf, DEFAULT_MAX_LEN) {
        Err(e) => e.kind(),
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn header(version: u8, src: Option<&str>, dst: Option<&str>) -> ProxyHeader {
    ProxyHeader { source: src.map(sa), destination: dst.map(sa), version }
}

/// Every proper prefix of a valid header is `Incomplete`, and trailing data is not consumed.
fn assert_prefixes_incomplete(full: &[u8]) {
    let (want, consumed) = complete(full);
    assert_eq!(consumed, full.len());
    for cut in 0..full.len() {
        assert_eq!(parse(&full[..cut], DEFAULT_MAX_LEN).unwrap(), Parse::Incomplete, "cut at {cut}");
    }
    let mut more = full.to_vec();
    more.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(complete(&more), (want, full.len()));
}

// --- v1 ---

#[test]
fn v1_valid() {
    let cases: &[(&str, ProxyHeader)] = &[
        (
            "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n",
            header(1, Some("192.0.2.1:56324"), Some("198.51.100.2:443")),
        ),
        (
            "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
            header(1, Some("0.0.0.0:0"), Some("255.255.255.255:65535")),
        ),
        (
            "PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n",
            header(1, Some("[2001:db8::1]:1"), Some("[2001:db8::2]:2")),
        ),
        (
            "PROXY TCP6 ::ffff:192.0.2.1 ::1 80 81\r\n",
            header(1, Some("192.0.2.1:80"), Some("[::1]:81")),
        ),
        (
            "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
            header(
                1,
                Some("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
                Some("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
            ),
        ),
        ("PROXY UNKNOWN\r\n", header(1, None, None)),
        (
            "PROXY UNKNOWN ffff:: whatever goes here 1 2\r\n",
            header(1, None, None),
        ),
    ];
    for (text, want) in cases {
        assert!(text.len() <= V1_MAX_LEN, "{text}");
        assert_eq!(complete(text.as_bytes()), (*want, text.len()), "{text}");
        assert_prefixes_incomplete(text.as_bytes());
    }
}

#[test]
fn v1_longest_line_is_accepted_and_one_more_byte_is_not() {
    // 107 bytes exactly: UNKNOWN with padding.
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(V1_MAX_LEN - 2, b'x');
    line.extend_from_slice(b"\r\n");
    assert_eq!(line.len(), V1_MAX_LEN);
    assert_eq!(complete(&line), (header(1, None, None), V1_MAX_LEN));

    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(V1_MAX_LEN - 1, b'x');
    long.extend_from_slice(b"\r\n");
    assert_eq!(err_kind(&long), "too_long");
    // Without any CRLF, refused once 107 bytes are in.
    assert_eq!(err_kind(&long[..V1_MAX_LEN]), "too_long");
    assert_eq!(parse(&long[..V1_MAX_LEN - 1], DEFAULT_MAX_LEN).unwrap(), Parse::Incomplete);
}

#[test]
fn v1_invalid() {
    let cases: &[(&str, &str)] = &[
        ("PROXY TCP4 010.0.0.1 192.0.2.2 1 2\r\n", "malformed"),
        ("PROXY TCP4 192.0.2.1 192.0.2.02 1 2\r\n", "malformed"),
        ("PROXY TCP4 127.1 192.0.2.2 1 2\r\n", "malformed"),
        ("PROXY TCP4 2001:db8::1 192.0.2.2 1 2\r\n", "malformed"),
        ("PROXY TCP6 192.0.2.1 2001:db8::2 1 2\r\n", "malformed"),
        ("PROXY TCP6 fe80::1%eth0 2001:db8::2 1 2\r\n", "malformed"),
        ("PROXY TCP4 192.0.2.1 192.0.2.2 01 2\r\n", "malformed"),
        ("PROXY TCP4 192.0.2.1 192.0.2.2 1 65536\r\n", "malformed"),
        ("PROXY TCP4 192.0.2.1 192.0.2.2 +1 2\r\n", "malformed"),
        ("PROXY TCP4 192.0.2.1 192.0.2.2 -1 2\r\n", "malformed"),
        ("PROXY TCP4 192.0.2.1 192.0.2.2 1 \r\n", "malformed"),
        ("PROXY TCP4 192.0.2.1 192.0.2.2 1\r\n", "malformed"),
        ("PROXY TCP4 192.0.2.1 192.0.2.2 1 2 3\r\n", "malformed"),
        ("PROXY TCP4  192.0.2.1 192.0.2.2 1 2\r\n", "malformed"),
        ("PROXY TCP4 192.0.2.1 192.0.2.2 1 2 \r\n", "malformed"),
        ("PROXY TCP4 192.0.2.1\t192.0.2.2 1 2\r\n", "malformed"),
        ("PROXY tcp4 192.0.2.1 192.0.2.2 1 2\r\n", "malformed"),
        ("PROXY UDP4 192.0.2.1 192.0.2.2 1 2\r\n", "malformed"),
        ("PROXY UNKNOWNX\r\n", "malformed"),
        ("PROXY \r\n", "malformed"),
        ("PROXY TCP4 192.0.2.1 192.0.2.2 1 2\n", "malformed"),
        ("PROXY TCP4 192.0.2.1 192.0.2.2 1 2\rX", "malformed"),
        ("PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\r\n", "malformed"),
        ("PROXY\r\n", "bad_signature"),
        ("PROXy TCP4", "bad_signature"),
        ("PROX ", "bad_signature"),
        ("GET / HTTP/1.1\r\n", "bad_signature"),
    ];
    for (text, kind) in cases {
        assert_eq!(err_kind(text.as_bytes()), *kind, "{text:?}");
    }
    // Non-ASCII is refused as soon as it is seen, without waiting for the CRLF.
    assert_eq!(err_kind(b"PROXY TCP4 1\xff"), "malformed");
    assert_eq!(err_kind(b"PROXY TCP4 1\0"), "malformed");
}

#[test]
fn garbage_is_refused_on_the_first_byte() {
    for first in 0u8..=255 {
        if first == b'P' || first == b'\r' {
            continue;
        }
        assert_eq!(err_kind(&[first]), "bad_signature", "{first:#x}");
    }
    assert_eq!(err_kind(b"\r\n\r\n\0\r\nQUIX"), "bad_signature");
    assert_eq!(err_kind(b"\r\r"), "bad_signature");
    assert_eq!(err_kind(b"PX"), "bad_signature");
    assert_eq!(parse(b"", DEFAULT_MAX_LEN).unwrap(), Parse::Incomplete);
    assert_eq!(parse(b"PROX", DEFAULT_MAX_LEN).unwrap(), Parse::Incomplete);
    assert_eq!(parse(b"\r\n\r\n\0", DEFAULT_MAX_LEN).unwrap(), Parse::Incomplete);
}

// --- v2 ---

fn v2(ver_cmd: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(ver_cmd);
    out.push(family);
    out.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn inet4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut b = src.to_vec();
    b.extend_from_slice(&dst);
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&dport.to_be_bytes());
    b
}

fn inet6(src: &str, dst: &str, sport: u16, dport: u16) -> Vec<u8> {
    let mut b = src.parse::<Ipv6Addr>().unwrap().octets().to_vec();
    b.extend_from_slice(&dst.parse::<Ipv6Addr>().unwrap().octets());
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&dport.to_be_bytes());
    b
}

fn tlvs() -> Vec<u8> {
    // PP2_TYPE_ALPN "h2", PP2_TYPE_AUTHORITY "example.com", PP2_TYPE_NOOP (empty).
    let mut t = vec![0x01, 0x00, 0x02, b'h', b'2'];
    t.extend_from_slice(&[0x02, 0x00, 0x0b]);
    t.extend_from_slice(b"example.com");
    t.extend_from_slice(&[0x04, 0x00, 0x00]);
    t
}

#[test]
fn v2_valid() {
    let with_tlvs = |mut body: Vec<u8>| {
        body.extend_from_slice(&tlvs());
        body
    };
    let cases: Vec<(Vec<u8>, ProxyHeader)> = vec![
        (
            v2(0x21, 0x11, &inet4([192, 0, 2, 1], [198, 51, 100, 2], 56324, 443)),
            header(2, Some("192.0.2.1:56324"), Some("198.51.100.2:443")),
        ),
        (
            v2(0x21, 0x11, &with_tlvs(inet4([10, 0, 0, 1], [10, 0, 0, 2], 0, 65535))),
            header(2, Some("10.0.0.1:0"), Some("10.0.0.2:65535")),
        ),
        (
            v2(0x21, 0x21, &inet6("2001:db8::1", "2001:db8::2", 1234, 80)),
            header(2, Some("[2001:db8::1]:1234"), Some("[2001:db8::2]:80")),
        ),
        (
            v2(0x21, 0x21, &with_tlvs(inet6("::ffff:192.0.2.9", "::1", 1, 2))),
            header(2, Some("192.0.2.9:1"), Some("[::1]:2")),
        ),
        // LOCAL: no address, whatever the family says; the block is skipped.
        (v2(0x20, 0x00, &[]), header(2, None, None)),
        (v2(0x20, 0x11, &inet4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2)), header(2, None, None)),
        (v2(0x20, 0xff, &tlvs()), header(2, None, None)),
        // PROXY over UNSPEC or AF_UNIX: no IP address.
        (v2(0x21, 0x00, &[]), header(2, None, None)),
        (v2(0x21, 0x00, &tlvs()), header(2, None, None)),
        (v2(0x21, 0x31, &[0u8; 216]), header(2, None, None)),
        (v2(0x21, 0x32, &with_tlvs(vec![b'/'; 216])), header(2, None, None)),
    ];
    for (bytes, want) in &cases {
        assert_eq!(complete(bytes), (*want, bytes.len()), "{bytes:x?}");
        assert_prefixes_incomplete(bytes);
    }
}

#[test]
fn v2_invalid() {
    let addr4 = inet4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (v2(0x11, 0x11, &addr4), "bad_version"),
        (v2(0x31, 0x11, &addr4), "bad_version"),
        (v2(0x01, 0x11, &addr4), "bad_version"),
        (v2(0x22, 0x11, &addr4), "bad_command"),
        (v2(0x2f, 0x11, &addr4), "bad_command"),
        (v2(0x21, 0x12, &addr4), "bad_family"),
        (v2(0x21, 0x22, &[0; 36]), "bad_family"),
        (v2(0x21, 0x10, &addr4), "bad_family"),
        (v2(0x21, 0x41, &addr4), "bad_family"),
        (v2(0x21, 0x13, &addr4), "bad_family"),
        (v2(0x21, 0x11, &addr4[..11]), "malformed"),
        (v2(0x21, 0x21, &addr4), "malformed"),
        (v2(0x21, 0x31, &[0; 215]), "malformed"),
        (v2(0x21, 0x11, &[0; 4096]), "too_long"),
    ];
    for (bytes, kind) in &cases {
        assert_eq!(err_kind(bytes), *kind, "{:x?}", &bytes[..16]);
        // Refused from the fixed 16 bytes alone, without waiting for the body.
        assert_eq!(err_kind(&bytes[..16]), *kind, "{:x?}", &bytes[..16]);
    }
    // Version and command are checked as soon as byte 13 arrives, the family at byte 14.
    assert_eq!(err_kind(&v2(0x11, 0x11, &addr4)[..13]), "bad_version");
    assert_eq!(err_kind(&v2(0x21, 0x12, &addr4)[..14]), "bad_family");
}

#[test]
fn v2_length_cap() {
    let body = inet4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2);
    let bytes = v2(0x21, 0x11, &body);
    assert_eq!(bytes.len(), 28);
    assert!(matches!(parse(&bytes, 28), Ok(Parse::Complete { .. })));
    assert!(matches!(parse(&bytes, 27), Err(ProxyProtocolError::V2TooLong { len: 28, max: 27 })));
    // The largest length field, refused under the default cap before any body byte arrives.
    let mut huge = V2_SIGNATURE.to_vec();
    huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    assert_eq!(err_kind(&huge), "too_long");
    // Accepted (incomplete) under a cap that allows it.
    assert_eq!(parse(&huge, 16 + 65535).unwrap(), Parse::Incomplete);
}

#[test]
fn error_kinds_are_bounded() {
    let errors = [
        ProxyProtocolError::BadSignature,
        ProxyProtocolError::V1TooLong,
        ProxyProtocolError::V1Malformed("x"),
        ProxyProtocolError::BadVersion(1),
        ProxyProtocolError::BadCommand(2),
        ProxyProtocolError::BadFamily(3),
        ProxyProtocolError::V2Truncated { family: 0x11, len: 3 },
        ProxyProtocolError::V2TooLong { len: 1, max: 0 },
        ProxyProtocolError::Timeout(Duration::from_secs(1)),
        ProxyProtocolError::Eof(3),
        ProxyProtocolError::Io(io::Error::other("x")),
    ];
    for e in &errors {
        assert!(e.kind().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        assert!(!e.to_string().is_empty());
    }
}

// --- async read and Rewind ---

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn read_header_returns_leftover_and_rewind_replays_it() {
    let (mut client, mut server) = tokio::io::duplex(64);
    let sent = [&b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"[..], b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"].concat();
    let writer = tokio::spawn(async move {
        // Two writes, to exercise reading across chunks.
        client.write_all(&sent[..20]).await.unwrap();
        client.write_all(&sent[20..]).await.unwrap();
        client.shutdown().await.unwrap();
        client
    });
    let (header_seen, leftover) = read_header(&mut server, TIMEOUT, DEFAULT_MAX_LEN).await.unwrap();
    assert_eq!(header_seen, header(1, Some("192.0.2.1:56324"), Some("198.51.100.2:443")));
    let mut rewind = Rewind::new(leftover, server);
    let mut rest = Vec::new();
    rewind.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    drop(writer.await.unwrap());
}

#[tokio::test]
async fn accept_v2_and_write_through_rewind() {
    let (mut client, server) = tokio::io::duplex(1024);
    let mut sent = v2(0x21, 0x21, &inet6("2001:db8::1", "2001:db8::2", 1, 2));
    sent.extend_from_slice(b"hello");
    client.write_all(&sent).await.unwrap();
    let (seen, mut stream) = accept(server, TIMEOUT, DEFAULT_MAX_LEN).await.unwrap();
    assert_eq!(seen, header(2, Some("[2001:db8::1]:1"), Some("[2001:db8::2]:2")));
    // Replay may come in small reads; the bytes are the same.
    let mut first = [0u8; 2];
    stream.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"he");
    client.write_all(b" world").await.unwrap();
    client.shutdown().await.unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"llo world");
    // Writes go to the inner stream.
    stream.write_all(b"pong").await.unwrap();
    stream.flush().await.unwrap();
    let mut back = [0u8; 4];
    client.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"pong");
    let (unreplayed, _inner) = stream.into_inner();
    assert!(unreplayed.is_empty());
}

#[tokio::test]
async fn stalled_reader_times_out() {
    let (mut client, mut server) = tokio::io::duplex(64);
    // A valid start, then silence.
    client.write_all(b"PROXY TCP4 1.2").await.unwrap();
    let timeout = Duration::from_millis(50);
    let err = read_header(&mut server, timeout, DEFAULT_MAX_LEN).await.unwrap_err();
    assert_eq!(err.kind(), "timeout", "{err}");
    drop(client);
}

#[tokio::test]
async fn eof_and_garbage_fail_fast() {
    let (mut client, mut server) = tokio::io::duplex(64);
    client.write_all(b"PROXY TCP4").await.unwrap();
    drop(client);
    let err = read_header(&mut server, TIMEOUT, DEFAULT_MAX_LEN).await.unwrap_err();
    assert!(matches!(err, ProxyProtocolError::Eof(10)), "{err}");

    // Garbage is refused without waiting for more bytes (the writer stays open).
    let (mut client, mut server) = tokio::io::duplex(64);
    client.write_all(b"G").await.unwrap();
    let err = read_header(&mut server, TIMEOUT, DEFAULT_MAX_LEN).await.unwrap_err();
    assert_eq!(err.kind(), "bad_signature");
}

#[tokio::test]
async fn oversized_stream_is_bounded() {
    // A v1 line that never ends: refused at 107 bytes, not read forever.
    let (mut client, mut server) = tokio::io::duplex(8192);
    client.write_all(b"PROXY UNKNOWN ").await.unwrap();
    client.write_all(&[b'x'; 4000]).await.unwrap();
    let err = read_header(&mut server, TIMEOUT, DEFAULT_MAX_LEN).await.unwrap_err();
    assert_eq!(err.kind(), "too_long");
}

// --- properties ---

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn parse_never_panics(buf in prop::collection::vec(any::<u8>(), 0..300), max_len in 0usize..5000) {
        let _ = parse(&buf, max_len);
    }

    #[test]
    fn parse_never_panics_near_valid(
        prefix in prop_oneof![Just(b"PROXY ".to_vec()), Just(V2_SIGNATURE.to_vec())],
        rest in prop::collection::vec(prop_oneof![
            3 => prop::sample::select(b"TCP46UNKOW 0123456789.:abcdef\r\n".to_vec()),
            1 => any::<u8>(),
        ], 0..300),
    ) {
        let mut buf = prefix;
        buf.extend_from_slice(&rest);
        if let Ok(Parse::Complete { consumed, header }) = parse(&buf, DEFAULT_MAX_LEN) {
            prop_assert!(consumed <= buf.len());
            // Decided by the first `consumed` bytes alone, and canonical.
            prop_assert_eq!(
                parse(&buf[..consumed], DEFAULT_MAX_LEN).unwrap(),
                Parse::Complete { header, consumed }
            );
            for addr in [header.source, header.destination].into_iter().flatten() {
                prop_assert_eq!(addr.ip(), addr.ip().to_canonical());
            }
        }
    }

    #[test]
    fn v1_round_trip(src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), sport: u16, dport: u16) {
        let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
        let line = format!("PROXY TCP4 {src} {dst} {sport} {dport}\r\n");
        let (seen, consumed) = complete(line.as_bytes());
        prop_assert_eq!(consumed, line.len());
        prop_assert_eq!(seen.source, Some(SocketAddr::from((src, sport))));
        prop_assert_eq!(seen.destination, Some(SocketAddr::from((dst, dport))));
    }

    #[test]
    fn v2_round_trip(src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), sport: u16, dport: u16, tlv_len in 0usize..64) {
        let (src, dst) = (Ipv6Addr::from(src), Ipv6Addr::from(dst));
        let mut body = inet6(&src.to_string(), &dst.to_string(), sport, dport);
        body.extend(std::iter::repeat_n(0xAA, tlv_len));
        let bytes = v2(0x21, 0x21, &body);
        let (seen, consumed) = complete(&bytes);
        prop_assert_eq!(consumed, bytes.len());
        prop_assert_eq!(seen.source, Some(SocketAddr::new(IpAddr::V6(src).to_canonical(), sport)));
        prop_assert_eq!(seen.destination, Some(SocketAddr::new(IpAddr::V6(dst).to_canonical(), dport)));
    }
}

#[test]
fn kinds_lists_every_kind() {
    let all = [
        ProxyProtocolError::BadSignature,
        ProxyProtocolError::V1TooLong,
        ProxyProtocolError::V1Malformed("x"),
        ProxyProtocolError::BadVersion(3),
        ProxyProtocolError::BadCommand(3),
        ProxyProtocolError::BadFamily(3),
        ProxyProtocolError::V2Truncated { family: 0x11, len: 1 },
        ProxyProtocolError::V2TooLong { len: 1, max: 0 },
        ProxyProtocolError::Timeout(Duration::from_secs(1)),
        ProxyProtocolError::Eof(0),
        ProxyProtocolError::Io(std::io::Error::other("x")),
    ];
    let kinds: std::collections::BTreeSet<&str> = all.iter().map(ProxyProtocolError::kind).collect();
    assert_eq!(kinds, ProxyProtocolError::KINDS.into_iter().collect());
}
