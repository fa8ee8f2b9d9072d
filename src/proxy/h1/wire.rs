//! HTTP/1.1 heads on the wire for the fast path: a request head parsed in place (httparse,
//! hyper's own parser) and judged suitable or not, the rewritten request written out, the
//! upstream's response head parsed and written to the client with its hop-by-hop headers
//! removed, and geogate's own responses written.
//!
//! Everything here works on byte slices and a caller's reused output buffer; the only
//! allocations are the ones an `http::Request` needs (its header map, and names outside
//! the standard set but for the few in [`COMMON_NAMES`]), as in hyper.

use std::mem::MaybeUninit;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, Uri, Version};

/// Header lines parsed per head; hyper's default `max_headers`. A head with more goes to
/// hyper, which answers it by the configured limit.
pub const MAX_HEADERS: usize = 100;

// Hop-by-hop headers and the names a `Connection` line may not remove: the lists hyper's
// path strips and protects by (`proxy::headers`), so both paths agree.
use super::super::headers::{HOP_BY_HOP, PROTECTED};

/// Response header names the fast path acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Connection,
    TransferEncoding,
    ContentLength,
    Date,
    /// Another hop-by-hop name ([`HOP_BY_HOP`] but `connection` and `transfer-encoding`).
    HopByHop,
    Other,
}

impl Known {
    /// Classifies a name by its length first: most names match no length here.
    fn of(name: &[u8]) -> Self {
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        match name.len() {
            4 if is(b"date") => Self::Date,
            10 if is(b"connection") => Self::Connection,
            14 if is(b"content-length") => Self::ContentLength,
            17 if is(b"transfer-encoding") => Self::TransferEncoding,
            2 | 7 | 10 | 16 | 18 | 19 if HOP_BY_HOP.iter().any(|n| is(n.as_str().as_bytes())) => Self::HopByHop,
            _ => Self::Other,
        }
    }
}

/// Most `Connection` tokens of one response honoured.
const MAX_TOKENS: usize = 16;

/// Byte range in a head.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    start: u32,
    end: u32,
}

/// Where the parts of a complete request head lie, and what the fast path needs to know.
#[derive(Debug)]
pub struct Layout {
    /// Length of the head, CRLF CRLF included.
    pub len: usize,
    method: Span,
    target: Span,
    headers: [(Span, Span); MAX_HEADERS],
    count: usize,
    /// The body's length (`Content-Length`, or 0 without one).
    pub content_length: u64,
    /// The client asked to close after this exchange.
    pub close: bool,
}

impl Default for Layout {
    fn default() -> Self {
        Self {
            len: 0,
            method: Span::default(),
            target: Span::default(),
            headers: [(Span::default(), Span::default()); MAX_HEADERS],
            count: 0,
            content_length: 0,
            close: false,
        }
    }
}

/// What a look at the buffered bytes found.
#[derive(Debug)]
pub enum Probe {
    /// More bytes are needed.
    Partial,
    /// A request hyper must serve: not HTTP/1.1, an upgrade, `Expect`, a chunked or
    /// ambiguous body, a head httparse refuses, more header lines than allowed ...
    Unsuitable,
    /// A complete, suitable head, described by the layout passed in.
    Complete,
}

/// A parsed request, ready for the handler's decision.
#[derive(Debug)]
pub struct Head {
    pub req: Request<()>,
    pub content_length: u64,
    pub close: bool,
}

/// How the upstream's response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes; the client connection closes after it too.
    Close,
}

/// A complete response head, already written for the client.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: http::StatusCode,
    /// Length of the upstream's head.
    pub len: usize,
    pub framing: Framing,
    /// The upstream will keep the connection open.
    pub keep_alive: bool,
}

/// What the upstream sent.
#[derive(Debug)]
pub enum Response1 {
    Partial,
    /// An interim 1xx response of this many bytes, dropped (as hyper's client drops them).
    Interim(usize),
    Complete(ResponseHead),
}

/// A response head the fast path cannot pass on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed upstream response head")]
pub struct BadResponse;

fn span(base: &[u8], part: &[u8]) -> Span {
    let start = part.as_ptr() as usize - base.as_ptr() as usize;
    Span { start: start as u32, end: (start + part.len()) as u32 }
}

fn slice(buf: &[u8], s: Span) -> &[u8] {
    &buf[s.start as usize..s.end as usize]
}

/// Looks at the bytes buffered so far for one request head; when it is complete and
/// suitable, `layout` (reused from request to request) says where its parts are.
pub fn probe(buf: &[u8], max_headers: usize, layout: &mut Layout) -> Probe {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Probe::Partial,
        Err(_) => return Probe::Unsuitable,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Probe::Unsuitable;
    };
    if req.headers.len() > max_headers || method == "CONNECT" || !target.starts_with('/') {
        return Probe::Unsuitable;
    }
    layout.len = len;
    layout.method = span(buf, method.as_bytes());
    layout.target = span(buf, target.as_bytes());
    layout.count = req.headers.len();
    layout.close = false;
    let mut length: Option<u64> = None;
    for (i, h) in req.headers.iter().enumerate() {
        let name = h.name.as_bytes();
        layout.headers[i] = (span(buf, name), span(buf, h.value));
        if name.eq_ignore_ascii_case(b"content-length") {
            match (parse_length(h.value), length) {
                (Some(n), None) => length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => return Probe::Unsuitable,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"upgrade")
            || name.eq_ignore_ascii_case(b"expect")
        {
            return Probe::Unsuitable;
        } else if name.eq_ignore_ascii_case(b"connection") && tokens(h.value).any(|t| t.eq_ignore_ascii_case(b"close"))
        {
            layout.close = true;
        }
    }
    layout.content_length = length.unwrap_or(0);
    Probe::Complete
}

/// Names outside `http`'s standard set that nearly every request through a load balancer
/// carries. `HeaderName::from_bytes` copies such a name into a new allocation on every
/// request; a constant costs nothing to clone.
static COMMON_NAMES: [HeaderName; 5] = [
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("x-request-id"),
];

/// A request header name as `HeaderName::from_bytes` makes it (lower case), without its
/// allocation for the [`COMMON_NAMES`].
fn header_name(raw: &[u8]) -> Option<HeaderName> {
    for known in &COMMON_NAMES {
        if raw.len() == known.as_str().len() && raw.eq_ignore_ascii_case(known.as_str().as_bytes()) {
            return Some(known.clone());
        }
    }
    HeaderName::from_bytes(raw).ok()
}

/// The request of a complete head (`head` holds exactly the bytes `probe` saw); `None` if
/// `http` refuses its method, target or a header name, for hyper to answer.
pub fn build(head: &Bytes, layout: &Layout) -> Option<Head> {
    let method = Method::from_bytes(slice(head, layout.method)).ok()?;
    let uri = Uri::from_maybe_shared(head.slice(layout.target.start as usize..layout.target.end as usize)).ok()?;
    // Room for the forwarding and tag headers geogate adds, so the map does not grow.
    let mut headers = HeaderMap::with_capacity(layout.count + 6);
    for &(name, value) in &layout.headers[..layout.count] {
        let name = header_name(slice(head, name))?;
        // Repeated identical lengths (the only repeats `probe` lets through) are one length
        // (RFC 9110 §8.6), forwarded once.
        if name == http::header::CONTENT_LENGTH && headers.contains_key(&name) {
            continue;
        }
        let value = HeaderValue::from_maybe_shared(head.slice(value.start as usize..value.end as usize)).ok()?;
        headers.append(name, value);
    }
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    Some(Head { req, content_length: layout.content_length, close: layout.close })
}

/// Writes the (rewritten) request head for an HTTP/1.1 upstream: origin-form target, the
/// headers in the map's order, names in lower case as hyper writes them. The body is framed
/// by its length even when the client named `Content-Length` in `Connection` (and so had it
/// stripped), as hyper's client frames a body by its size.
pub fn write_request(out: &mut Vec<u8>, req: &Request<()>, content_length: u64) {
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.uri().path_and_query().map_or("/", |p| p.as_str()).as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_headers(out, req.headers());
    if content_length > 0 && !req.headers().contains_key(http::header::CONTENT_LENGTH) {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa(content_length, &mut [0u8; 20]));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn write_headers(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Parses the upstream's response head in `buf` and, when it is complete, writes the head
/// the client gets into `out`: hop-by-hop headers and the names `Connection` lists removed,
/// `Content-Length` dropped when `Transfer-Encoding` frames the body, `Date` added when the
/// upstream sent none, `Connection: close` when the client connection ends after it.
pub fn response(
    buf: &[u8],
    request_is_head: bool,
    client_close: bool,
    out: &mut Vec<u8>,
) -> Result<Response1, BadResponse> {
    // Left uninitialised: httparse writes the lines it finds (no 3 KiB cleared per head).
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut resp, buf, &mut headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(Response1::Partial),
        Err(_) => return Err(BadResponse),
    };
    let code = resp.code.ok_or(BadResponse)?;
    let status = http::StatusCode::from_u16(code).map_err(|_| BadResponse)?;
    if status.is_informational() {
        // 101 without an upgrade asked for is a broken upstream.
        return if code == 101 { Err(BadResponse) } else { Ok(Response1::Interim(len)) };
    }
    let http11 = resp.version == Some(1);
    let mut tokens_seen: [&[u8]; MAX_TOKENS] = [&[]; MAX_TOKENS];
    let mut token_count = 0;
    let mut keep_alive = http11;
    // `Transfer-Encoding` lines form one list (RFC 9110 §5.3): its last coding, over every
    // line, decides the framing; a line with no coding adds nothing.
    let mut te = false;
    let mut chunked_last = false;
    let mut length: Option<u64> = None;
    let mut bad_length = false;
    let mut has_date = false;
    let mut kinds = [Known::Other; MAX_HEADERS];
    for (h, kind) in resp.headers.iter().zip(kinds.iter_mut()) {
        *kind = Known::of(h.name.as_bytes());
        if *kind == Known::Connection {
            for t in tokens(h.value) {
                if t.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive |= !http11;
                }
                if token_count < MAX_TOKENS {
                    tokens_seen[token_count] = t;
                    token_count += 1;
                }
            }
        } else if *kind == Known::TransferEncoding {
            te = true;
            if let Some(last) = tokens(h.value).last() {
                chunked_last = last.eq_ignore_ascii_case(b"chunked");
            }
        } else if *kind == Known::ContentLength {
            match (parse_length(h.value), length) {
                (Some(n), None) => length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => bad_length = true,
            }
        } else if *kind == Known::Date {
            has_date = true;
        }
    }
    let no_body = request_is_head || code == 204 || code == 304;
    let framing = if no_body {
        Framing::Empty
    } else if te {
        if chunked_last {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else if bad_length {
        return Err(BadResponse);
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    if framing == Framing::Close {
        keep_alive = false;
    }
    let listed = &tokens_seen[..token_count];

    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    match resp.reason.filter(|r| !r.is_empty()) {
        Some(r) => out.extend_from_slice(r.as_bytes()),
        None => out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes()),
    }
    out.extend_from_slice(b"\r\n");
    for (h, kind) in resp.headers.iter().zip(kinds) {
        let name = h.name.as_bytes();
        let dropped = match kind {
            Known::Connection | Known::HopByHop => true,
            Known::ContentLength => te || code == 204,
            Known::TransferEncoding => no_body,
            Known::Date | Known::Other => {
                !listed.is_empty()
                    && listed.iter().any(|t| name.eq_ignore_ascii_case(t))
                    && !PROTECTED.iter().any(|p| name.eq_ignore_ascii_case(p.as_str().as_bytes()))
            }
        };
        if dropped {
            continue;
        }
        let at = out.len();
        out.extend_from_slice(name);
        out[at..].make_ascii_lowercase();
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(&date::now());
        out.extend_from_slice(b"\r\n");
    }
    if client_close || framing == Framing::Close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Response1::Complete(ResponseHead { status, len, framing, keep_alive }))
}

/// Writes one of geogate's own responses (a block page, an error) with its fixed body.
pub fn write_own(out: &mut Vec<u8>, resp: &Response<impl Sized>, body: &[u8], request_is_head: bool, close: bool) {
    let status = resp.status();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let headers = resp.headers();
    write_headers(out, headers);
    if !headers.contains_key(http::header::CONTENT_LENGTH) {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa(body.len() as u64, &mut [0u8; 20]));
        out.extend_from_slice(b"\r\n");
    }
    if !headers.contains_key(http::header::DATE) {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(&date::now());
        out.extend_from_slice(b"\r\n");
    }
    if close && !headers.contains_key(http::header::CONNECTION) {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !request_is_head {
        out.extend_from_slice(body);
    }
}

/// Whether a response geogate made says `Connection: close`.
pub fn says_close(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .any(|v| tokens(v.as_bytes()).any(|t| t.eq_ignore_ascii_case(b"close")))
}

fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// A `Content-Length` value: digits only, at most 19 of them (hyper's rule too).
fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// The comma-separated tokens of a header value, blanks trimmed, empty ones skipped.
fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(<[u8]>::trim_ascii).filter(|t| !t.is_empty())
}

/// The `Date` value, formatted once a second per thread (as hyper caches its own).
mod date {
    use std::cell::Cell;
    use std::time::{SystemTime, UNIX_EPOCH};

    thread_local!(static CACHE: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) });

    pub fn now() -> [u8; 29] {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        CACHE.with(|c| {
            let (at, text) = c.get();
            if at == secs {
                return text;
            }
            let mut text = [0u8; 29];
            let formatted = httpdate::fmt_http_date(now);
            if formatted.len() == text.len() {
                text.copy_from_slice(formatted.as_bytes());
            }
            c.set((secs, text));
            text
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8]) -> Layout {
        let mut layout = Layout::default();
        match probe(buf, MAX_HEADERS, &mut layout) {
            Probe::Complete => layout,
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(buf)),
        }
    }

    #[test]
    fn a_plain_request_is_parsed_in_place_and_written_back() {
        let raw = b"GET /a/b?x=1 HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 192.0.2.1\r\nContent-Length: 3\r\n\r\nabcGET";
        let layout = complete(raw);
        assert_eq!(layout.len, raw.len() - 6);
        assert_eq!(layout.content_length, 3);
        assert!(!layout.close);
        let twice = b"POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n";
        let l = complete(twice);
        let req = build(&Bytes::copy_from_slice(twice), &l).unwrap().req;
        assert_eq!(req.headers().get_all("content-length").iter().count(), 1);
        let head = Bytes::copy_from_slice(&raw[..layout.len]);
        let parsed = build(&head, &layout).unwrap();
        assert_eq!(parsed.req.uri().path(), "/a/b");
        assert_eq!(parsed.req.headers()["x-forwarded-for"], "192.0.2.1");
        let mut out = Vec::new();
        write_request(&mut out, &parsed.req, 3);
        assert_eq!(
            out,
            b"GET /a/b?x=1 HTTP/1.1\r\nhost: example.com\r\nx-forwarded-for: 192.0.2.1\r\ncontent-length: 3\r\n\r\n"
        );
        // Stripped (the client listed it in `Connection`): the body's length is said again.
        let mut req = parsed.req;
        req.headers_mut().remove("content-length");
        let mut out = Vec::new();
        write_request(&mut out, &req, 3);
        assert!(out.ends_with(b"x-forwarded-for: 192.0.2.1\r\ncontent-length: 3\r\n\r\n"));
    }

    #[test]
    fn common_names_are_the_names_from_bytes_makes() {
        for raw in [
            "X-Forwarded-For",
            "x-forwarded-for",
            "X-FORWARDED-PROTO",
            "x-Forwarded-Host",
            "X-Real-IP",
            "X-Request-Id",
            "X_Forwarded_For",
            "X-Forwarded-Fo",
            "X-Forwarded-Forx",
            "Host",
            "x-geo-country",
        ] {
            let made = header_name(raw.as_bytes()).unwrap();
            assert_eq!(made, HeaderName::from_bytes(raw.as_bytes()).unwrap(), "{raw}");
            assert_eq!(made.as_str(), raw.to_ascii_lowercase(), "{raw}");
        }
        assert!(header_name(b"bad name").is_none());
    }

    #[test]
    fn requests_for_hyper_are_recognised() {
        let cases: [&[u8]; 11] = [
            b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
            b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
        ];
        for raw in cases {
            assert!(
                matches!(probe(raw, MAX_HEADERS, &mut Layout::default()), Probe::Unsuitable),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(21));
        assert!(matches!(probe(many.as_bytes(), 20, &mut Layout::default()), Probe::Unsuitable));
        assert!(matches!(probe(many.as_bytes(), 21, &mut Layout::default()), Probe::Complete));
        assert!(matches!(probe(b"GET / HTTP/1.1\r\nHost: a\r\n", MAX_HEADERS, &mut Layout::default()), Probe::Partial));
        assert!(complete(b"GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n").close);
    }

    fn respond(raw: &[u8], head: bool, close: bool) -> (ResponseHead, String) {
        let mut out = Vec::new();
        match response(raw, head, close, &mut out).unwrap() {
            Response1::Complete(h) => (h, String::from_utf8(out).unwrap()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn response_heads_lose_hop_by_hop_headers_and_keep_their_framing() {
        let (h, out) = respond(
            b"HTTP/1.1 200 Fine\r\nDate: x\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nX-Forwarded-For: 1.2.3.4\r\nContent-Length: 5\r\n\r\nhello",
            false,
            false,
        );
        assert_eq!(h.framing, Framing::Length(5));
        assert!(h.keep_alive);
        assert_eq!(out, "HTTP/1.1 200 Fine\r\ndate: x\r\nx-forwarded-for: 1.2.3.4\r\ncontent-length: 5\r\n\r\n");

        let (h, out) =
            respond(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n", false, true);
        assert_eq!(h.framing, Framing::Chunked);
        assert!(out.contains("transfer-encoding: chunked\r\n") && !out.contains("content-length"), "{out}");
        assert!(out.contains("\r\ndate: ") && out.ends_with("connection: close\r\n\r\n"), "{out}");

        // Several lines are one list: an empty line after `chunked` changes nothing (a fuzz
        // finding: the last line alone used to decide), a later coding does.
        let (h, _) = respond(b"HTTP/1.1 200 \r\ntransfer-encoding:chunked\r\ntransfer-encoding:\r\n\r\n", false, false);
        assert_eq!(h.framing, Framing::Chunked);
        let (h, _) =
            respond(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", false, false);
        assert_eq!(h.framing, Framing::Close);
        let (h, _) = respond(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true, false);
        assert_eq!(h.framing, Framing::Empty);
        let (h, out) = respond(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", false, false);
        assert_eq!(h.framing, Framing::Empty);
        assert!(out.contains("content-length: 9\r\n"), "{out}");
        // A 204 has no content whatever it says; its length is not passed on.
        let (h, out) = respond(b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n", false, false);
        assert_eq!(h.framing, Framing::Empty);
        assert!(!out.contains("content-length"), "{out}");
        let (h, out) = respond(b"HTTP/1.0 200 OK\r\n\r\n", false, false);
        assert_eq!((h.framing, h.keep_alive), (Framing::Close, false));
        assert!(out.ends_with("connection: close\r\n\r\n"));
        let (h, _) = respond(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", false, false);
        assert!(!h.keep_alive);
        let (h, _) = respond(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", false, false);
        assert!(h.keep_alive);
    }

    #[test]
    fn every_hop_by_hop_name_is_known_in_any_case() {
        for name in HOP_BY_HOP.iter().map(|n| n.as_str().as_bytes()) {
            for spelled in [name.to_vec(), name.to_ascii_uppercase()] {
                let kind = Known::of(&spelled);
                assert!(
                    matches!(kind, Known::Connection | Known::TransferEncoding | Known::HopByHop),
                    "{:?}",
                    String::from_utf8_lossy(&spelled)
                );
            }
        }
        assert_eq!(Known::of(b"Content-Length"), Known::ContentLength);
        assert_eq!(Known::of(b"TRANSFER-ENCODING"), Known::TransferEncoding);
        for other in [&b"x-upgrade"[..], b"tee", b"keep-alives", b"content-type", b"dates"] {
            assert_eq!(Known::of(other), Known::Other, "{:?}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn interim_and_broken_responses() {
        let mut out = Vec::new();
        assert!(matches!(
            response(b"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n", false, false, &mut out),
            Ok(Response1::Interim(37))
        ));
        assert!(matches!(response(b"HTTP/1.1 200 OK\r\n", false, false, &mut out), Ok(Response1::Partial)));
        for bad in [
            &b"HTTP/1.1 101 Switching Protocols\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"SSH-2.0-OpenSSH\r\n\r\n",
        ] {
            assert_eq!(
                response(bad, false, false, &mut out).unwrap_err(),
                BadResponse,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn own_responses_carry_length_date_and_close() {
        let resp = Response::builder().status(451).header("content-type", "application/json").body(()).unwrap();
        let mut out = Vec::new();
        write_own(&mut out, &resp, b"{}", false, true);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 451 Unavailable For Legal Reasons\r\ncontent-type: application/json\r\ncontent-length: 2\r\ndate: "), "{text}");
        assert!(text.ends_with("GMT\r\nconnection: close\r\n\r\n{}"), "{text}");
        let mut out = Vec::new();
        write_own(&mut out, &resp, b"{}", true, false);
        assert!(String::from_utf8(out).unwrap().ends_with("GMT\r\n\r\n"));
    }
}
