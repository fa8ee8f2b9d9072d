//! Watches HTTP/1 request heads as hyper reads them, to catch what hyper hides.
//!
//! hyper follows RFC 9112 §6.3 for a request carrying both `Transfer-Encoding` and
//! `Content-Length`: it drops `Content-Length`, decodes by `Transfer-Encoding` and closes the
//! connection afterwards. That is safe for hyper, but the request still reaches the handler
//! with no trace of the conflict, and geogate's rule is that a smuggling shape is refused with
//! nothing forwarded. So this reader parses each request head it passes through (with
//! `httparse`, as hyper does), follows the body framing to find the next head, and records
//! the ordinal of the first request whose head had both headers. The handler counts
//! requests on the connection and refuses the flagged one.
//!
//! It stops watching (and never flags) on anything it does not follow: an HTTP/2 preface,
//! an upgrade or CONNECT, a head it cannot parse (hyper will reject it anyway), or a head
//! larger than the configured limit.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Shared between the reader and the request handler of one connection.
#[derive(Debug)]
pub struct Framing {
    /// Ordinal of the first request whose head had both Content-Length and Transfer-Encoding.
    flagged: AtomicU64,
    /// Requests the handler has seen on this connection.
    handled: AtomicU64,
}

/// An `AsyncRead + AsyncWrite` that watches request heads (see the module doc).
#[derive(Debug)]
pub struct HeadWatch<S> {
    inner: S,
    framing: Arc<Framing>,
    state: State,
    head: Vec<u8>,
    max_head: usize,
    requests: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Fixed(u64),
    ChunkSize { value: u64, digits: bool, in_ext: bool, cr: bool },
    ChunkData(u64),
    ChunkDataEnd { cr: bool },
    Trailer { line_len: usize, cr: bool },
    Off,
}

const MAX_HEADERS: usize = 256;

// === impl Framing ===

impl Framing {
    pub fn new() -> Arc<Self> {
        Arc::new(Self { flagged: AtomicU64::new(u64::MAX), handled: AtomicU64::new(0) })
    }

    /// Called once per request by the handler; true if this request's head had both
    /// Content-Length and Transfer-Encoding.
    pub fn next_request_is_conflicting(&self) -> bool {
        let n = self.handled.fetch_add(1, Ordering::AcqRel);
        self.flagged.load(Ordering::Acquire) == n
    }
}

// === impl HeadWatch ===

impl<S> HeadWatch<S> {
    pub fn new(inner: S, framing: Arc<Framing>, max_head: usize) -> Self {
        Self { inner, framing, state: State::Head, head: Vec::new(), max_head, requests: 0 }
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.state {
                State::Off => return,
                State::Head if self.head.is_empty() => {
                    // Common case: the whole head arrived in this read; parse it in place.
                    match self.parse_head_in(data) {
                        Some(n) => data = &data[n.min(data.len())..],
                        None => {
                            if self.state == State::Head {
                                self.head.extend_from_slice(data);
                            }
                            return;
                        }
                    }
                }
                State::Head => {
                    let before = self.head.len();
                    self.head.extend_from_slice(data);
                    match self.parse_head() {
                        Some(n) => {
                            // Bytes of `data` beyond the head belong to the body or next head.
                            let used = n - before;
                            self.head.clear();
                            data = &data[used.min(data.len())..];
                        }
                        None => {
                            if self.head.len() > self.max_head {
                                self.state = State::Off;
                            }
                            return;
                        }
                    }
                }
                State::Fixed(left) => {
                    let n = (data.len() as u64).min(left);
                    data = &data[n as usize..];
                    self.state = if left == n { State::Head } else { State::Fixed(left - n) };
                }
                State::ChunkData(left) => {
                    let n = (data.len() as u64).min(left);
                    data = &data[n as usize..];
                    self.state = if left == n { State::ChunkDataEnd { cr: false } } else { State::ChunkData(left - n) };
                }
                _ => {
                    self.step_byte(data[0]);
                    data = &data[1..];
                }
            }
        }
    }

    /// One byte of chunk-size line, chunk terminator or trailer section.
    fn step_byte(&mut self, b: u8) {
        self.state = match self.state {
            State::ChunkSize { value, digits, in_ext, cr } => match b {
                b'\n' if digits => {
                    if value == 0 {
                        State::Trailer { line_len: 0, cr: false }
                    } else {
                        State::ChunkData(value)
                    }
                }
                b'\r' if !cr => State::ChunkSize { value, digits, in_ext, cr: true },
                _ if cr => State::Off,
                b';' => State::ChunkSize { value, digits, in_ext: true, cr },
                _ if in_ext => State::ChunkSize { value, digits, in_ext, cr },
                _ => match (b as char).to_digit(16) {
                    Some(d) if value >> 59 == 0 => {
                        State::ChunkSize { value: value * 16 + u64::from(d), digits: true, in_ext, cr }
                    }
                    _ => State::Off,
                },
            },
            State::ChunkDataEnd { cr } => match b {
                b'\r' if !cr => State::ChunkDataEnd { cr: true },
                b'\n' => State::ChunkSize { value: 0, digits: false, in_ext: false, cr: false },
                _ => State::Off,
            },
            State::Trailer { line_len, cr } => match b {
                b'\n' if line_len == 0 => State::Head,
                b'\n' => State::Trailer { line_len: 0, cr: false },
                b'\r' if !cr => State::Trailer { line_len, cr: true },
                _ if line_len > self.max_head => State::Off,
                _ => State::Trailer { line_len: line_len + 1, cr: false },
            },
            s => s,
        };
    }

    /// Parses the buffered head; returns its length once complete.
    fn parse_head(&mut self) -> Option<usize> {
        let head = std::mem::take(&mut self.head);
        let r = self.parse_head_in(&head);
        self.head = head;
        r
    }

    /// Parses a head at the start of `buf`; returns its length once complete.
    fn parse_head_in(&mut self, buf: &[u8]) -> Option<usize> {
        if self.requests == 0 && buf.starts_with(b"PRI * HTTP/2.0") {
            self.state = State::Off;
            return None;
        }
        // Uninitialised slots: zeroing 256 headers per request would cost more than the parse.
        let mut headers = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let n = match req.parse_with_uninit_headers(buf, &mut headers) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return None,
            Err(_) => {
                self.state = State::Off;
                return None;
            }
        };
        let (mut te, mut cl, mut upgrade) = (None::<&[u8]>, None::<&[u8]>, false);
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                te = Some(h.value);
            } else if h.name.eq_ignore_ascii_case("content-length") {
                cl = Some(h.value);
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
        }
        let index = self.requests;
        self.requests += 1;
        if te.is_some() && cl.is_some() {
            let _ = self.framing.flagged.compare_exchange(u64::MAX, index, Ordering::AcqRel, Ordering::Acquire);
            // hyper closes the connection after this request; nothing further to follow.
            self.state = State::Off;
            return Some(n);
        }
        if upgrade || req.method == Some("CONNECT") {
            self.state = State::Off;
            return Some(n);
        }
        self.state = match (te, cl) {
            (Some(v), _) if ends_with_chunked(v) => {
                State::ChunkSize { value: 0, digits: false, in_ext: false, cr: false }
            }
            (Some(_), _) => State::Off,
            (None, Some(v)) => match std::str::from_utf8(v).ok().and_then(|s| s.trim().parse::<u64>().ok()) {
                Some(0) => State::Head,
                Some(len) => State::Fixed(len),
                None => State::Off,
            },
            (None, None) => State::Head,
        };
        Some(n)
    }
}

fn ends_with_chunked(v: &[u8]) -> bool {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.rsplit(',').next())
        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
}

impl<S: AsyncRead + Unpin> AsyncRead for HeadWatch<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            if this.state != State::Off {
                this.feed(&buf.filled()[before..]);
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadWatch<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flagged(input: &[&[u8]]) -> (u64, u64) {
        let f = Framing::new();
        let mut w = HeadWatch::new((), f.clone(), 16 * 1024);
        for chunk in input {
            w.feed(chunk);
        }
        (f.flagged.load(Ordering::Acquire), w.requests)
    }

    #[test]
    fn flags_cl_te_in_either_order_and_position() {
        let bad1 = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let bad2 = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n";
        assert_eq!(flagged(&[bad1]).0, 0);
        assert_eq!(flagged(&[bad2]).0, 0);
        // Third request on the connection, after a fixed and a chunked body, split oddly.
        let good1 = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
        let good2 =
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n";
        let all = [&good1[..], &good2[..], &bad1[..]].concat();
        for split in [1, 3, 7, 50, all.len()] {
            let chunks: Vec<&[u8]> = all.chunks(split).collect();
            assert_eq!(flagged(&chunks), (2, 3), "split {split}");
        }
    }

    #[test]
    fn plain_traffic_is_never_flagged() {
        let get = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let all = [&get[..], &get[..], &get[..]].concat();
        assert_eq!(flagged(&[&all]), (u64::MAX, 3));
        // HTTP/2 preface: stop watching.
        assert_eq!(flagged(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]).0, u64::MAX);
        // A body that looks like a smuggled head is skipped as body.
        let body = b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
        let head = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n", body.len());
        assert_eq!(flagged(&[head.as_bytes(), body, get]), (u64::MAX, 2));
    }
}
