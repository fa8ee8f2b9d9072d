//! HTTP/2 conformance of the public listener (RFC 9113), checked with frames written by hand on a
//! raw TCP socket, against a real geogate and a real upstream.
//!
//! h2spec is the usual tool for this, but no registry reachable here ships it (not in Debian
//! bookworm, not on npm or PyPI), so these tests cover the cases that matter most for a proxy
//! facing the internet: the connection preface, SETTINGS, stream limits, rapid reset, and
//! malformed requests (connection-specific headers, upper-case names, pseudo-header errors).
//!
//! Two deviations of the `h2` crate (0.4.20) from RFC 9113 are kept as ignored tests, since
//! geogate cannot change them without patching h2: a PING before the client's SETTINGS is
//! answered instead of refused (§3.4), and a SETTINGS of bad length gets PROTOCOL_ERROR instead
//! of FRAME_SIZE_ERROR (§6.5; the connection is closed either way).
//!
//! The client side is deliberately minimal: HPACK "literal without indexing, new name" only,
//! never Huffman, so every byte we send is visible in the test. Responses are not HPACK-decoded;
//! a `:status 200` is recognised by its static-table index (`0x88`), which is how every encoder
//! writes it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Frame types (RFC 9113 §6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;

// Flags.
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

// Error codes (RFC 9113 §7).
const PROTOCOL_ERROR: u32 = 0x1;
const FRAME_SIZE_ERROR: u32 = 0x6;
const REFUSED_STREAM: u32 = 0x7;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// How long any one expectation may take; generous for a loaded CI machine.
const WAIT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Eq)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// What happened to one stream (or to the connection, first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Response HEADERS whose first header-block byte is this (0x88 = `:status 200`).
    Response(u8),
    /// RST_STREAM with this error code.
    Reset(u32),
    /// GOAWAY with this error code, before the stream got anything.
    GoAway(u32),
    /// EOF before anything about the stream.
    Closed,
}

fn config(limits: &str) -> String {
    format!(
        r#"
[[listener]]
name = "public"
address = "127.0.0.1:0"

[[upstream]]
name = "app"
url = "http://{{upstream}}"

[admin]
enabled = false

[reload]
watch = false

{GEO_SOURCES}

[policy]
default = "allow"

[limits]
{limits}
"#
    )
}

// === frame encoding ===

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    assert!(len < 1 << 24);
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend((stream & 0x7fff_ffff).to_be_bytes());
    out.extend(payload);
    out
}

fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let payload: Vec<u8> =
        pairs.iter().flat_map(|(id, v)| id.to_be_bytes().into_iter().chain(v.to_be_bytes())).collect();
    frame(SETTINGS, 0, 0, &payload)
}

fn rst_stream(stream: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &code.to_be_bytes())
}

/// HPACK integer with an `n`-bit prefix (RFC 7541 §5.1), first byte's high bits zero.
fn hpack_int(out: &mut Vec<u8>, value: usize, n: u32) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(u8::try_from(value).unwrap());
        return;
    }
    out.push(u8::try_from(max).unwrap());
    let mut rest = value - max;
    while rest >= 128 {
        out.push(u8::try_from(rest % 128).unwrap() | 0x80);
        rest /= 128;
    }
    out.push(u8::try_from(rest).unwrap());
}

/// A header block of "literal without indexing, new name" fields, in the order given.
fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_int(&mut out, name.len(), 7);
        out.extend(name.as_bytes());
        hpack_int(&mut out, value.len(), 7);
        out.extend(value.as_bytes());
    }
    out
}

fn get_fields(path: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![(":method", "GET"), (":scheme", "http"), (":authority", "app.example.com"), (":path", path)]
}

fn headers(stream: u32, fields: &[(&str, &str)], end_stream: bool) -> Vec<u8> {
    let flags = END_HEADERS | if end_stream { END_STREAM } else { 0 };
    frame(HEADERS, flags, stream, &block(fields))
}

// === connection ===

struct Conn {
    io: TcpStream,
    buf: Vec<u8>,
    /// Frames read but not yet looked at by `fate`.
    seen: Vec<Frame>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        Conn { io: TcpStream::connect(addr).await.unwrap(), buf: Vec::new(), seen: Vec::new() }
    }

    /// Preface and an empty SETTINGS; waits for the server's SETTINGS and ACKs it.
    async fn handshake(addr: SocketAddr) -> (Conn, Frame) {
        let mut c = Conn::open(addr).await;
        let mut hello = PREFACE.to_vec();
        hello.extend(settings(&[]));
        c.send(&hello).await;
        let deadline = Instant::now() + WAIT;
        let server_settings = loop {
            let f = c.next(deadline).await.expect("server SETTINGS");
            if f.kind == SETTINGS && f.flags & ACK == 0 {
                break f;
            }
            c.seen.push(f);
        };
        c.send(&frame(SETTINGS, ACK, 0, &[])).await;
        (c, server_settings)
    }

    async fn send(&mut self, bytes: &[u8]) {
        // The server may close mid-write (that is what some tests provoke); the reads tell.
        let _ = self.io.write_all(bytes).await;
    }

    /// The next frame, or `None` on EOF, reset or deadline.
    async fn next(&mut self, deadline: Instant) -> Option<Frame> {
        loop {
            if self.buf.len() >= 9 {
                let len = usize::from(self.buf[0]) << 16 | usize::from(self.buf[1]) << 8 | usize::from(self.buf[2]);
                if self.buf.len() >= 9 + len {
                    let head: Vec<u8> = self.buf.drain(..9 + len).collect();
                    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
                    return Some(Frame { kind: head[3], flags: head[4], stream, payload: head[9..].to_vec() });
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match timeout_at(deadline, self.io.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads until `stream` gets HEADERS or RST_STREAM, the connection a GOAWAY, or EOF.
    async fn fate(&mut self, stream: u32) -> Fate {
        if let Some(fate) = self.seen.iter().find_map(|f| fate_of(f, stream)) {
            return fate;
        }
        let deadline = Instant::now() + WAIT;
        while let Some(f) = self.next(deadline).await {
            let fate = fate_of(&f, stream);
            self.seen.push(f);
            if let Some(fate) = fate {
                return fate;
            }
        }
        Fate::Closed
    }

    /// Reads to EOF (or the deadline) and returns the GOAWAY code, if one came.
    async fn goaway(&mut self) -> Option<u32> {
        if let Some(code) = self.seen.iter().find_map(goaway_code) {
            return Some(code);
        }
        let deadline = Instant::now() + WAIT;
        while let Some(f) = self.next(deadline).await {
            if let Some(code) = goaway_code(&f) {
                return Some(code);
            }
        }
        None
    }
}

fn fate_of(f: &Frame, stream: u32) -> Option<Fate> {
    match f.kind {
        HEADERS if f.stream == stream => Some(Fate::Response(f.payload.first().copied().unwrap_or(0))),
        RST_STREAM if f.stream == stream => Some(Fate::Reset(u32::from_be_bytes(f.payload[..4].try_into().unwrap()))),
        GOAWAY => goaway_code(f).map(Fate::GoAway),
        _ => None,
    }
}

fn goaway_code(f: &Frame) -> Option<u32> {
    (f.kind == GOAWAY && f.payload.len() >= 8).then(|| u32::from_be_bytes(f.payload[4..8].try_into().unwrap()))
}

/// The value of one parameter in a SETTINGS payload.
fn setting(f: &Frame, id: u16) -> Option<u32> {
    f.payload
        .chunks_exact(6)
        .find(|p| u16::from_be_bytes([p[0], p[1]]) == id)
        .map(|p| u32::from_be_bytes([p[2], p[3], p[4], p[5]]))
}

/// Sends one request with `fields` on a fresh connection, then a valid GET on the next stream,
/// and returns both fates: a stream error must not take the connection down.
async fn request_then_valid(addr: SocketAddr, fields: &[(&str, &str)]) -> (Fate, Fate) {
    let (mut c, _) = Conn::handshake(addr).await;
    c.send(&headers(1, fields, true)).await;
    let first = c.fate(1).await;
    c.send(&headers(3, &get_fields("/after"), true)).await;
    let second = c.fate(3).await;
    (first, second)
}

const OK: Fate = Fate::Response(0x88);

// === tests ===

#[tokio::test]
async fn valid_request_is_answered_and_settings_acked() {
    let up = upstream().await;
    let p = Proxy::start(&config(""), &up).await;
    let (mut c, server_settings) = Conn::handshake(p.addr).await;
    assert_eq!(server_settings.stream, 0);
    assert_eq!(setting(&server_settings, 0x3), Some(100), "MAX_CONCURRENT_STREAMS = limits.max_h2_streams");
    c.send(&headers(1, &get_fields("/hello"), true)).await;
    assert_eq!(c.fate(1).await, OK);
    // Our SETTINGS was acknowledged (RFC 9113 §6.5.3).
    assert!(c.seen.iter().any(|f| f.kind == SETTINGS && f.flags & ACK != 0 && f.payload.is_empty()));
    // The body arrives on stream 1 and ends it.
    let deadline = Instant::now() + WAIT;
    while !c.seen.iter().any(|f| f.kind == DATA && f.stream == 1 && f.flags & END_STREAM != 0) {
        let f = c.next(deadline).await.expect("DATA with END_STREAM on stream 1");
        c.seen.push(f);
    }
    // PING is answered with the same payload (§6.7).
    c.send(&frame(PING, 0, 0, b"geogate!")).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let f = c.next(deadline).await.expect("PING ACK");
        if f.kind == PING {
            assert_eq!((f.flags, f.payload.as_slice()), (ACK, &b"geogate!"[..]));
            break;
        }
    }
}

#[tokio::test]
async fn invalid_preface_is_not_served_as_http2() {
    let up = upstream().await;
    let p = Proxy::start(&config(""), &up).await;
    // Almost the preface: the auto-detecting listener must not start HTTP/2 on it, and must
    // close the connection (whatever HTTP/1 says first).
    let mut c = Conn::open(p.addr).await;
    c.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n").await;
    c.send(&settings(&[])).await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(WAIT, c.io.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "connection left open after a bad preface");
    let text = String::from_utf8_lossy(&out);
    assert!(out.is_empty() || text.starts_with("HTTP/1.1 4") || text.starts_with("HTTP/1.1 5"), "{text:?}");
}

#[tokio::test]
#[ignore = "finding: h2 0.4.20 accepts a PING before the client's SETTINGS (answers PING ACK), RFC 9113 §3.4 says PROTOCOL_ERROR"]
async fn first_frame_must_be_settings() {
    let up = upstream().await;
    let p = Proxy::start(&config(""), &up).await;
    // §3.4: the preface is followed by SETTINGS; anything else is a connection PROTOCOL_ERROR.
    let mut c = Conn::open(p.addr).await;
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(PING, 0, 0, b"12345678"));
    c.send(&hello).await;
    assert_eq!(c.goaway().await, Some(PROTOCOL_ERROR));
}

#[tokio::test]
async fn settings_of_bad_length_closes_the_connection() {
    let up = upstream().await;
    let p = Proxy::start(&config(""), &up).await;
    let (mut c, _) = Conn::handshake(p.addr).await;
    // §6.5 wants FRAME_SIZE_ERROR; h2 0.4.20 says PROTOCOL_ERROR (see the ignored test below).
    // Either way the connection must end with an error GOAWAY.
    c.send(&frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0])).await;
    let code = c.goaway().await;
    assert!(matches!(code, Some(FRAME_SIZE_ERROR | PROTOCOL_ERROR)), "{code:?}");
}

#[tokio::test]
#[ignore = "finding: h2 0.4.20 answers a SETTINGS of bad length with PROTOCOL_ERROR, RFC 9113 §6.5 says FRAME_SIZE_ERROR"]
async fn settings_of_bad_length_is_a_frame_size_error() {
    let up = upstream().await;
    let p = Proxy::start(&config(""), &up).await;
    let (mut c, _) = Conn::handshake(p.addr).await;
    c.send(&frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0])).await;
    assert_eq!(c.goaway().await, Some(FRAME_SIZE_ERROR));
}

#[tokio::test]
async fn streams_beyond_max_concurrent_are_refused() {
    let up = upstream().await;
    let p = Proxy::start(&config("max_h2_streams = 4"), &up).await;
    let (mut c, server_settings) = Conn::handshake(p.addr).await;
    assert_eq!(setting(&server_settings, 0x3), Some(4));
    // Four slow requests (the upstream answers /slow after 3 s) hold every slot; two more must
    // be refused with REFUSED_STREAM (§5.1.2), which tells the client they were not processed.
    let mut burst = Vec::new();
    for stream in [1, 3, 5, 7, 9, 11] {
        burst.extend(headers(stream, &get_fields("/slow"), true));
    }
    c.send(&burst).await;
    assert_eq!(c.fate(9).await, Fate::Reset(REFUSED_STREAM));
    assert_eq!(c.fate(11).await, Fate::Reset(REFUSED_STREAM));
    for stream in [1, 3, 5, 7] {
        assert_eq!(c.fate(stream).await, OK, "stream {stream}");
    }
}

#[tokio::test]
async fn rapid_reset_is_answered_with_goaway() {
    let up = upstream().await;
    let p = Proxy::start(&config(""), &up).await;
    let (mut c, _) = Conn::handshake(p.addr).await;
    // CVE-2023-44487: open and cancel streams as fast as possible. The server must give up on
    // the connection (GOAWAY, ENHANCE_YOUR_CALM by h2's accounting) rather than keep working.
    let mut burst = Vec::new();
    for i in 0..2000u32 {
        let stream = 1 + 2 * i;
        burst.extend(headers(stream, &get_fields("/slow"), true));
        burst.extend(rst_stream(stream, CANCEL));
    }
    c.send(&burst).await;
    assert_eq!(c.goaway().await, Some(ENHANCE_YOUR_CALM));
}

#[tokio::test]
async fn connection_specific_headers_are_malformed() {
    let up = upstream().await;
    let p = Proxy::start(&config(""), &up).await;
    // §8.2.2: connection-specific fields make the request malformed: stream PROTOCOL_ERROR.
    for (name, value) in [
        ("connection", "keep-alive"),
        ("transfer-encoding", "chunked"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("upgrade", "websocket"),
        ("te", "gzip"),
    ] {
        let mut fields = get_fields("/");
        fields.push((name, value));
        let fates = request_then_valid(p.addr, &fields).await;
        assert_eq!(fates, (Fate::Reset(PROTOCOL_ERROR), OK), "{name}: {value}");
    }
    // `te: trailers` is the one allowed value.
    let mut fields = get_fields("/");
    fields.push(("te", "trailers"));
    assert_eq!(request_then_valid(p.addr, &fields).await, (OK, OK));
}

#[tokio::test]
async fn uppercase_header_name_is_malformed() {
    let up = upstream().await;
    let p = Proxy::start(&config(""), &up).await;
    // §8.2.1: a field name with upper-case characters makes the request malformed.
    let mut fields = get_fields("/");
    fields.push(("X-Forwarded-For", "203.0.113.7"));
    let (first, _) = request_then_valid(p.addr, &fields).await;
    assert!(matches!(first, Fate::Reset(PROTOCOL_ERROR) | Fate::GoAway(PROTOCOL_ERROR)), "upper-case name: {first:?}");
}

#[tokio::test]
async fn pseudo_header_errors_are_malformed() {
    let up = upstream().await;
    let p = Proxy::start(&config(""), &up).await;
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("missing :method", vec![(":scheme", "http"), (":authority", "a"), (":path", "/")]),
        ("missing :path", vec![(":method", "GET"), (":scheme", "http"), (":authority", "a")]),
        ("missing :scheme", vec![(":method", "GET"), (":authority", "a"), (":path", "/")]),
        ("empty :path", vec![(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "")]),
        ("duplicate :path", {
            let mut f = get_fields("/");
            f.push((":path", "/x"));
            f
        }),
        ("pseudo after regular", {
            let mut f = get_fields("/");
            f.insert(0, ("accept", "*/*"));
            f
        }),
        ("unknown pseudo", {
            let mut f = get_fields("/");
            f.push((":foo", "bar"));
            f
        }),
        ("response pseudo in request", {
            let mut f = get_fields("/");
            f.push((":status", "200"));
            f
        }),
    ];
    let mut wrong = Vec::new();
    for (what, fields) in &cases {
        let (first, _) = request_then_valid(p.addr, fields).await;
        if !matches!(first, Fate::Reset(PROTOCOL_ERROR) | Fate::GoAway(PROTOCOL_ERROR)) {
            wrong.push(format!("{what}: {first:?}"));
        }
    }
    assert!(wrong.is_empty(), "not treated as malformed: {wrong:#?}");
}
