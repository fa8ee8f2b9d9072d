//! The HTTP/1.1 fast path's wire code (`proxy::h1::wire`, `proxy::h1::chunked`): never
//! panics, and byte 0 (mod 3) picks what else is checked.
//!
//! - `0`, a request head (`probe`, `build`, `write_request`): a complete head lies within the
//!   input, is self-delimiting (re-probing exactly its bytes, into the reused layout, gives the
//!   same length, body length and close flag) and no shorter prefix of it is complete; a
//!   partial head's prefixes stay partial and an unsuitable one stays unsuitable with more
//!   bytes; a built request is written as a head httparse reads whole, with the method, the
//!   target (less any `#fragment`, which `http::Uri` drops), exactly one `content-length`
//!   carrying the body's length when there is a body (also when the handler stripped it), and
//!   that the probe again finds complete with the same length and close flag.
//! - `1`, a response head (`response`; byte 1: bit 0 the request was HEAD, bit 1 the client
//!   asked to close): an interim answer is a whole 1xx head at the front and writes nothing;
//!   a complete head lies within the input, no shorter prefix is complete, and re-reading its
//!   bytes alone gives the same answer; the head written for the client is read whole by
//!   httparse, keeps the status, carries no hop-by-hop line (`connection` only as `close`,
//!   when the client or the framing closes), never both `content-length` and
//!   `transfer-encoding`, and frames the body for the client (RFC 9112 §6.3) exactly as the
//!   fast path will forward it; an error stays an error with more bytes.
//! - `2`, a chunked body (`ChunkedScan`; bytes 1 and 2 give two split points): the body fed
//!   whole, in three pieces, and byte by byte gives the same answer (error or not, done or
//!   not, bytes consumed); a feed that does not finish the body takes all it is given; a
//!   finished body is self-delimiting.
#![no_main]

use bytes::Bytes;
use geogate::proxy::h1::chunked::{ChunkedScan, Malformed};
use geogate::proxy::h1::wire::{
    build, probe, response, write_request, Framing, Layout, Probe, Response1, ResponseHead, MAX_HEADERS,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 3 {
        0 => request(rest),
        1 => {
            let Some((&flags, rest)) = rest.split_first() else { return };
            response_head(rest, flags & 1 != 0, flags & 2 != 0);
        }
        _ => {
            let [a, b, body @ ..] = rest else { return };
            chunked(body, *a, *b);
        }
    }
});

/// Prefix lengths worth trying below `len`: all of the first 32, the ends of lines (where a
/// head could wrongly be taken as complete), and a few more.
fn cuts(head: &[u8]) -> Vec<usize> {
    let len = head.len();
    let mut cuts: Vec<usize> = (0..len.min(32)).collect();
    cuts.extend((1..len).filter(|&i| matches!(head[i - 1], b'\r' | b'\n')));
    cuts.extend([len / 2, len.saturating_sub(2), len.saturating_sub(1)]);
    cuts.retain(|&c| c < len);
    cuts
}

fn probe_fresh(buf: &[u8]) -> (Probe, Layout) {
    let mut layout = Layout::default();
    let p = probe(buf, MAX_HEADERS, &mut layout);
    (p, layout)
}

/// A `content-length` value as a number (digits only, as geogate and hyper read it).
fn length_value(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn is(h: &httparse::Header<'_>, name: &str) -> bool {
    h.name.eq_ignore_ascii_case(name)
}

fn request(data: &[u8]) {
    let mut layout = Layout::default();
    match probe(data, MAX_HEADERS, &mut layout) {
        Probe::Partial => {
            let p = probe_fresh(&data[..data.len() / 2]).0;
            assert!(matches!(p, Probe::Partial), "half of a partial head gave {p:?}");
            return;
        }
        Probe::Unsuitable => {
            let mut longer = data.to_vec();
            longer.extend_from_slice(b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
            let p = probe_fresh(&longer).0;
            assert!(matches!(p, Probe::Unsuitable), "an unsuitable head became {p:?} with more bytes");
            return;
        }
        Probe::Complete => {}
    }
    let (len, content_length, close) = (layout.len, layout.content_length, layout.close);
    assert!(len > 0 && len <= data.len(), "head of {len} bytes in {}", data.len());

    // Self-delimiting, and the reused layout is fully rewritten (the server reuses one per
    // connection); then the layout describes `data[..len]` for `build`.
    let head = &data[..len];
    let again = probe(head, MAX_HEADERS, &mut layout);
    assert!(matches!(again, Probe::Complete), "the head alone gave {again:?}");
    assert_eq!((layout.len, layout.content_length, layout.close), (len, content_length, close));
    for cut in cuts(head) {
        let p = probe_fresh(&head[..cut]).0;
        assert!(!matches!(p, Probe::Complete), "prefix {cut} of a {len}-byte head is complete");
    }

    let Some(mut parsed) = build(&Bytes::copy_from_slice(head), &layout) else { return };
    assert_eq!((parsed.content_length, parsed.close), (content_length, close));

    // What the client sent, as httparse reads it.
    let mut sent_headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut sent = httparse::Request::new(&mut sent_headers);
    assert!(matches!(sent.parse(head), Ok(httparse::Status::Complete(n)) if n == len));
    let sent_method = sent.method.unwrap();
    let sent_target = sent.path.unwrap();
    let forwarded_target = sent_target.split('#').next().unwrap();

    for stripped in [false, true] {
        if stripped {
            // The handler strips names the client listed in `Connection`, `Content-Length`
            // included; the body must still be framed.
            parsed.req.headers_mut().remove(http::header::CONTENT_LENGTH);
        }
        let mut out = Vec::new();
        write_request(&mut out, &parsed.req, parsed.content_length);
        let text = String::from_utf8_lossy(&out);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS + 1];
        let mut written = httparse::Request::new(&mut headers);
        match written.parse(&out) {
            Ok(httparse::Status::Complete(n)) => assert_eq!(n, out.len(), "{text:?}"),
            other => panic!("written head {text:?} parses as {other:?}"),
        }
        assert_eq!(written.method, Some(sent_method), "{text:?}");
        assert_eq!(written.method, Some(parsed.req.method().as_str()), "{text:?}");
        assert_eq!(written.path, Some(forwarded_target), "{text:?}");
        assert_eq!(written.version, Some(1), "{text:?}");
        let lengths: Vec<Option<u64>> =
            written.headers.iter().filter(|h| is(h, "content-length")).map(|h| length_value(h.value)).collect();
        if content_length > 0 {
            assert_eq!(lengths, [Some(content_length)], "{text:?}");
        } else {
            assert!(lengths.is_empty() || lengths == [Some(0)], "{text:?}");
        }
        if !stripped {
            // Written out, the request is again one the fast path takes, with the same body
            // length and close flag.
            let (p, l) = probe_fresh(&out);
            assert!(matches!(p, Probe::Complete), "written head {text:?} probes as {p:?}");
            assert_eq!((l.len, l.content_length, l.close), (out.len(), content_length, close), "{text:?}");
        }
    }
}

/// How a client reads the body of the head it got (RFC 9112 §6.3), if it has one.
fn client_framing(headers: &[httparse::Header<'_>], no_body: bool) -> Option<Framing> {
    if no_body {
        return Some(Framing::Empty);
    }
    // Several `Transfer-Encoding` lines are one list (RFC 9110 §5.3); the last coding decides.
    let mut te = false;
    let mut last: Option<&[u8]> = None;
    for h in headers.iter().filter(|h| is(h, "transfer-encoding")) {
        te = true;
        for t in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii).filter(|t| !t.is_empty()) {
            last = Some(t);
        }
    }
    if te {
        return Some(if last.is_some_and(|t| t.eq_ignore_ascii_case(b"chunked")) {
            Framing::Chunked
        } else {
            Framing::Close
        });
    }
    let mut length = None;
    for h in headers.iter().filter(|h| is(h, "content-length")) {
        let n = length_value(h.value)?;
        if length.is_some_and(|m| m != n) {
            return None;
        }
        length = Some(n);
    }
    Some(length.map_or(Framing::Close, Framing::Length))
}

fn same_head(a: &ResponseHead, b: &ResponseHead) -> bool {
    (a.status, a.len, a.framing, a.keep_alive) == (b.status, b.len, b.framing, b.keep_alive)
}

/// The written head without its `date` lines (the added one follows the clock).
fn without_date(out: &[u8]) -> Vec<&[u8]> {
    out.split(|&b| b == b'\n').filter(|l| !l.starts_with(b"date: ")).collect()
}

fn response_head(data: &[u8], request_is_head: bool, client_close: bool) {
    let mut out = Vec::new();
    let head = match response(data, request_is_head, client_close, &mut out) {
        Ok(Response1::Partial) => {
            let p = response(&data[..data.len() / 2], request_is_head, client_close, &mut Vec::new());
            assert!(matches!(p, Ok(Response1::Partial)), "half of a partial head gave {p:?}");
            return;
        }
        Err(e) => {
            let _ = e.to_string();
            let mut longer = data.to_vec();
            longer.extend_from_slice(b"\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            let p = response(&longer, request_is_head, client_close, &mut Vec::new());
            assert!(p.is_err(), "an error became {p:?} with more bytes");
            return;
        }
        Ok(Response1::Interim(n)) => {
            assert!(n > 0 && n <= data.len(), "interim head of {n} bytes in {}", data.len());
            assert!(out.is_empty(), "an interim response wrote {:?}", String::from_utf8_lossy(&out));
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut front = httparse::Response::new(&mut headers);
            assert!(matches!(front.parse(&data[..n]), Ok(httparse::Status::Complete(m)) if m == n));
            assert!(matches!(front.code, Some(100..=199)) && front.code != Some(101), "{:?}", front.code);
            return;
        }
        Ok(Response1::Complete(head)) => head,
    };
    let len = head.len;
    assert!(len > 0 && len <= data.len(), "head of {len} bytes in {}", data.len());
    let text = String::from_utf8_lossy(&out).into_owned();

    let mut again_out = Vec::new();
    match response(&data[..len], request_is_head, client_close, &mut again_out) {
        Ok(Response1::Complete(again)) => {
            assert!(same_head(&again, &head), "{again:?} != {head:?}");
            assert_eq!(without_date(&again_out), without_date(&out));
        }
        other => panic!("the head alone gave {other:?}"),
    }
    for cut in cuts(&data[..len]) {
        let p = response(&data[..cut], request_is_head, client_close, &mut Vec::new());
        assert!(matches!(p, Ok(Response1::Partial) | Err(_)), "prefix {cut} of a {len}-byte head gave {p:?}");
    }

    // The head the client reads.
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS + 2];
    let mut written = httparse::Response::new(&mut headers);
    match written.parse(&out) {
        Ok(httparse::Status::Complete(n)) => assert_eq!(n, out.len(), "{text:?}"),
        other => panic!("written head {text:?} parses as {other:?}"),
    }
    assert_eq!(written.version, Some(1), "{text:?}");
    assert_eq!(written.code, Some(head.status.as_u16()), "{text:?}");
    assert!(!head.status.is_informational(), "{text:?}");
    let hs = written.headers;
    for h in hs.iter() {
        if is(h, "connection") {
            assert_eq!(h.value, b"close", "{text:?}");
        }
        for hop in
            ["keep-alive", "te", "trailer", "upgrade", "proxy-authenticate", "proxy-authorization", "proxy-connection"]
        {
            assert!(!is(h, hop), "{hop} line in {text:?}");
        }
    }
    let has = |name: &str| hs.iter().any(|h| is(h, name));
    assert!(!(has("content-length") && has("transfer-encoding")), "{text:?}");
    let code = head.status.as_u16();
    let no_body = request_is_head || code == 204 || code == 304;
    assert_eq!(head.framing == Framing::Empty, no_body, "{head:?}");
    if head.framing == Framing::Empty {
        assert!(!has("transfer-encoding"), "{text:?}");
    }
    if code == 204 {
        assert!(!has("content-length"), "{text:?}");
    }
    let closes = hs.iter().any(|h| is(h, "connection") && h.value == b"close");
    if client_close || head.framing == Framing::Close {
        assert!(closes, "{text:?}");
    }
    if head.framing == Framing::Close {
        assert!(!head.keep_alive, "{head:?}");
    }
    // The fast path forwards the body's bytes as they come, by `head.framing`; the client
    // must find the same end in what it was given.
    let seen = client_framing(hs, no_body);
    assert_eq!(seen, Some(head.framing), "the client reads {text:?} as {seen:?}");
}

/// Feeds the pieces in turn until the body ends: `Some(bytes of the body)` when it does.
fn scan<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Result<Option<usize>, Malformed> {
    let mut s = ChunkedScan::new();
    let mut used = 0;
    for piece in pieces {
        if s.is_done() {
            break;
        }
        let n = s.feed(piece)?;
        assert!(n <= piece.len());
        if !s.is_done() {
            assert_eq!(n, piece.len(), "an unfinished body left bytes");
        }
        used += n;
    }
    Ok(s.is_done().then_some(used))
}

fn chunked(body: &[u8], a: u8, b: u8) {
    let len = body.len();
    let a = usize::from(a) % (len + 1);
    let b = a + usize::from(b) % (len - a + 1);
    let whole = scan([body]);
    let split = scan([&body[..a], &body[a..b], &body[b..]]);
    assert_eq!(split, whole, "split at {a},{b}");
    let bytewise = scan(body.chunks(1));
    assert_eq!(bytewise, whole, "fed byte by byte");
    if let Ok(Some(end)) = whole {
        assert!(end > 0 && end <= len);
        assert_eq!(scan([&body[..end]]), Ok(Some(end)));
        assert_eq!(scan([&body[..end - 1]]), Ok(None));
    }
}
