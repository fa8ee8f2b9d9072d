//! PROXY protocol v1 (text) and v2 (binary) header reader.
//!
//! A pure, incremental parser ([`parse`]) plus a read bounded in size and time ([`read_header`])
//! and a stream wrapper ([`Rewind`]) that replays the bytes read past the header, so the HTTP
//! server sees the connection exactly as if nothing had been read.
//!
//! ```text
//! TcpStream ─ read_header(io, timeout, max_len) ─ (ProxyHeader, leftover) ─ Rewind::new(leftover, io) ─ hyper
//! ```
//!
//! Whether a peer may send a PROXY header at all (trusted peers only) is the caller's decision;
//! this module only reads one. It follows haproxy's `proxy-protocol.txt`, strictly:
//! - Anything that cannot be the start of a v1 (`PROXY `) or v2 (12-byte signature) header is
//!   refused at once, without waiting for more bytes.
//! - v1: single spaces, `TCP4`/`TCP6`/`UNKNOWN`, addresses parsed by std (no leading zeros, no
//!   short forms) and of the family announced, ports decimal 0..=65535 without sign or leading
//!   zeros, CRLF within 107 bytes. `UNKNOWN` ignores the rest of the line, as the spec requires.
//! - v2: version 2, command LOCAL (no address: the connection is the proxy's own, e.g. a health
//!   check) or PROXY; over PROXY, TCP over IPv4/IPv6 gives addresses, UNSPEC and AF_UNIX give none,
//!   anything else (UDP, unknown nibbles) is refused since it cannot describe an HTTP client. TLVs
//!   are skipped. The whole header must fit in `max_len` ([`DEFAULT_MAX_LEN`] is a sane default).
//! - Addresses are canonicalised (`::ffff:a.b.c.d` becomes `a.b.c.d`) for the caller.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

#[cfg(test)]
mod tests;

/// The v2 signature: chosen by the spec so that it cannot start any text protocol.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 header, CRLF included (spec §2.1).
pub const V1_MAX_LEN: usize = 107;
/// A reasonable cap on a v2 header (fixed part, addresses and TLVs).
pub const DEFAULT_MAX_LEN: usize = 4096;

const V1_PREFIX: &[u8] = b"PROXY ";
const V2_FIXED_LEN: usize = 16;
/// How much `read_header` asks the socket for at a time; whatever lands past the header is
/// returned to the caller, so the chunk size only trades syscalls for copying.
const READ_CHUNK: usize = 512;

/// What a PROXY header says about the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The original client, canonical; `None` for v1 `UNKNOWN`, v2 `LOCAL`, UNSPEC and AF_UNIX.
    pub source: Option<SocketAddr>,
    /// The address the client connected to, canonical; `None` whenever `source` is.
    pub destination: Option<SocketAddr>,
    /// 1 or 2.
    pub version: u8,
}

/// The result of [`parse`] on a buffer holding the start of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parse {
    /// So far a valid prefix of a header; read more bytes.
    Incomplete,
    /// A full header occupying the first `consumed` bytes of the buffer.
    Complete { header: ProxyHeader, consumed: usize },
}

/// Why a PROXY header was refused. `kind` is the bounded metric label.
#[derive(Debug, thiserror::Error)]
pub enum ProxyProtocolError {
    #[error("not a PROXY protocol header (neither the v1 nor the v2 signature)")]
    BadSignature,
    #[error("PROXY v1 header not terminated by CRLF within {V1_MAX_LEN} bytes")]
    V1TooLong,
    #[error("malformed PROXY v1 header: {0}")]
    V1Malformed(&'static str),
    #[error("unsupported PROXY v2 version {0} (only 2 exists)")]
    BadVersion(u8),
    #[error("unsupported PROXY v2 command {0:#x} (expected LOCAL or PROXY)")]
    BadCommand(u8),
    #[error("unsupported PROXY v2 address family/transport {0:#04x}")]
    BadFamily(u8),
    #[error("PROXY v2 address block of {len} bytes is too short for family {family:#04x}")]
    V2Truncated { family: u8, len: usize },
    #[error("PROXY v2 header of {len} bytes exceeds the {max}-byte limit")]
    V2TooLong { len: usize, max: usize },
    #[error("no complete PROXY header within {0:?}")]
    Timeout(Duration),
    #[error("connection closed after {0} bytes, before the PROXY header was complete")]
    Eof(usize),
    #[error("reading the PROXY header: {0}")]
    Io(#[from] io::Error),
}

/// A stream that first replays `prefix` (bytes read past a PROXY header), then reads from `inner`.
/// Writes go straight to `inner`.
#[derive(Debug)]
pub struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

/// Parses the PROXY header at the start of `buf`.
///
/// `max_len` caps a v2 header's total size; v1 is always capped at [`V1_MAX_LEN`]. Returns an
/// error as soon as the bytes seen cannot begin a valid header.
pub fn parse(buf: &[u8], max_len: usize) -> Result<Parse, ProxyProtocolError> {
    match buf.first() {
        None => Ok(Parse::Incomplete),
        Some(b'P') => parse_v1(buf),
        Some(b'\r') => parse_v2(buf, max_len),
        Some(_) => Err(ProxyProtocolError::BadSignature),
    }
}

/// Reads one PROXY header from `io`, within `timeout` and at most about `max_len` bytes.
///
/// Returns the header and the bytes read past it (the start of the proxied stream), which must be
/// replayed, e.g. with [`Rewind`].
pub async fn read_header<S>(
    io: &mut S,
    timeout: Duration,
    max_len: usize,
) -> Result<(ProxyHeader, Bytes), ProxyProtocolError>
where
    S: AsyncRead + Unpin,
{
    // One deadline for the whole header: a client trickling a byte at a time cannot extend it.
    match tokio::time::timeout(timeout, read_until_parsed(io, max_len)).await {
        Ok(result) => result,
        Err(_elapsed) => Err(ProxyProtocolError::Timeout(timeout)),
    }
}

/// [`read_header`], then wraps the stream so the leftover bytes are replayed.
pub async fn accept<S>(
    mut io: S,
    timeout: Duration,
    max_len: usize,
) -> Result<(ProxyHeader, Rewind<S>), ProxyProtocolError>
where
    S: AsyncRead + Unpin,
{
    let (header, leftover) = read_header(&mut io, timeout, max_len).await?;
    Ok((header, Rewind::new(leftover, io)))
}

async fn read_until_parsed<S>(io: &mut S, max_len: usize) -> Result<(ProxyHeader, Bytes), ProxyProtocolError>
where
    S: AsyncRead + Unpin,
{
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        // `parse` refuses a v1 line past 107 bytes and a v2 header past `max_len`, so the buffer
        // never grows beyond max(107, max_len) + READ_CHUNK.
        if let Parse::Complete { header, consumed } = parse(&buf, max_len)? {
            let leftover = buf.split_off(consumed).freeze();
            return Ok((header, leftover));
        }
        buf.reserve(READ_CHUNK);
        let n = io.read_buf(&mut (&mut buf).limit(READ_CHUNK)).await?;
        if n == 0 {
            return Err(ProxyProtocolError::Eof(buf.len()));
        }
    }
}

fn parse_v1(buf: &[u8]) -> Result<Parse, ProxyProtocolError> {
    use ProxyProtocolError::{V1Malformed, V1TooLong};

    let seen = buf.len().min(V1_PREFIX.len());
    if buf[..seen] != V1_PREFIX[..seen] {
        return Err(ProxyProtocolError::BadSignature);
    }
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    // Fail fast on a byte that cannot be in the line, rather than waiting for 107 bytes.
    let Some(end) = window.iter().position(|&b| !(b' '..=b'~').contains(&b)) else {
        return if buf.len() >= V1_MAX_LEN { Err(V1TooLong) } else { Ok(Parse::Incomplete) };
    };
    if window[end] != b'\r' {
        return Err(V1Malformed("line holds a byte that is not printable ASCII before CRLF"));
    }
    match buf.get(end + 1) {
        None if end + 2 > V1_MAX_LEN => return Err(V1TooLong),
        None => return Ok(Parse::Incomplete),
        Some(b'\n') if end + 2 > V1_MAX_LEN => return Err(V1TooLong),
        Some(b'\n') => {}
        Some(_) => return Err(V1Malformed("CR not followed by LF")),
    }
    let consumed = end + 2;
    let line = buf.get(V1_PREFIX.len()..end).ok_or(V1Malformed("no protocol"))?;

    if line == b"UNKNOWN" || line.starts_with(b"UNKNOWN ") {
        // The spec: the receiver must ignore anything presented before the CRLF.
        return Ok(Parse::Complete { header: ProxyHeader { source: None, destination: None, version: 1 }, consumed });
    }

    let mut fields = line.split(|&b| b == b' ');
    let mut next = |what| fields.next().ok_or(V1Malformed(what));
    let proto = next("no protocol")?;
    let (src, dst) = (next("no source address")?, next("no destination address")?);
    let (sport, dport) = (next("no source port")?, next("no destination port")?);
    if fields.next().is_some() {
        return Err(V1Malformed("extra fields (or spaces) after the destination port"));
    }
    let (src, dst) = match proto {
        b"TCP4" => (v1_addr::<Ipv4Addr>(src)?, v1_addr::<Ipv4Addr>(dst)?),
        b"TCP6" => (v1_addr::<Ipv6Addr>(src)?, v1_addr::<Ipv6Addr>(dst)?),
        _ => return Err(V1Malformed("protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let sport = v1_port(sport)?;
    let dport = v1_port(dport)?;
    Ok(Parse::Complete {
        header: ProxyHeader {
            source: Some(SocketAddr::new(src, sport)),
            destination: Some(SocketAddr::new(dst, dport)),
            version: 1,
        },
        consumed,
    })
}

/// An address of the family the protocol announced, canonical.
fn v1_addr<A>(field: &[u8]) -> Result<IpAddr, ProxyProtocolError>
where
    A: std::str::FromStr + Into<IpAddr>,
{
    std::str::from_utf8(field)
        .ok()
        .and_then(|s| s.parse::<A>().ok())
        .map(|a| a.into().to_canonical())
        .ok_or(ProxyProtocolError::V1Malformed("address is not a strict address of the announced family"))
}

/// Decimal 0..=65535, no sign, no leading zeros.
fn v1_port(field: &[u8]) -> Result<u16, ProxyProtocolError> {
    let bad = ProxyProtocolError::V1Malformed("port is not a decimal 0-65535 without leading zeros");
    if field.is_empty()
        || field.len() > 5
        || (field.len() > 1 && field[0] == b'0')
        || !field.iter().all(u8::is_ascii_digit)
    {
        return Err(bad);
    }
    let value = field.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    u16::try_from(value).map_err(|_| bad)
}

fn parse_v2(buf: &[u8], max_len: usize) -> Result<Parse, ProxyProtocolError> {
    use ProxyProtocolError::{BadCommand, BadFamily, BadVersion, V2TooLong, V2Truncated};

    let seen = buf.len().min(V2_SIGNATURE.len());
    if buf[..seen] != V2_SIGNATURE[..seen] {
        return Err(ProxyProtocolError::BadSignature);
    }
    // Check each fixed byte as soon as it arrives, so garbage is refused without waiting.
    let Some(&ver_cmd) = buf.get(12) else {
        return Ok(Parse::Incomplete);
    };
    if ver_cmd >> 4 != 2 {
        return Err(BadVersion(ver_cmd >> 4));
    }
    let local = match ver_cmd & 0x0f {
        0x0 => true,
        0x1 => false,
        other => return Err(BadCommand(other)),
    };
    let Some(&family) = buf.get(13) else {
        return Ok(Parse::Incomplete);
    };
    // With LOCAL the spec says the family is ignored; with PROXY it must be one we can use.
    let addr_len = match family {
        _ if local => 0,
        0x00 => 0,
        0x11 => 12,
        0x21 => 36,
        0x31 | 0x32 => 216,
        other => return Err(BadFamily(other)),
    };
    let Some(len_bytes) = buf.get(14..16) else {
        return Ok(Parse::Incomplete);
    };
    let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
    let total = V2_FIXED_LEN + len;
    if total > max_len {
        return Err(V2TooLong { len: total, max: max_len });
    }
    if len < addr_len {
        return Err(V2Truncated { family, len });
    }
    let Some(block) = buf.get(V2_FIXED_LEN..total) else {
        return Ok(Parse::Incomplete);
    };
    let (source, destination) = match (local, family) {
        (false, 0x11) => {
            let ip = |at: usize| IpAddr::V4(Ipv4Addr::new(block[at], block[at + 1], block[at + 2], block[at + 3]));
            let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
            (Some(SocketAddr::new(ip(0), port(8))), Some(SocketAddr::new(ip(4), port(10))))
        }
        (false, 0x21) => {
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&block[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(octets)).to_canonical()
            };
            let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
            (Some(SocketAddr::new(ip(0), port(32))), Some(SocketAddr::new(ip(16), port(34))))
        }
        // LOCAL, UNSPEC, AF_UNIX: no IP address to report; TLVs after the block are skipped.
        _ => (None, None),
    };
    Ok(Parse::Complete { header: ProxyHeader { source, destination, version: 2 }, consumed: total })
}

// === impl ProxyProtocolError ===

impl ProxyProtocolError {
    /// Bounded metric label.
    /// Every [`kind`](Self::kind): the PROXY-header `reason`s of `geogate_rejected_total`.
    pub const KINDS: [&'static str; 9] =
        ["bad_signature", "too_long", "malformed", "bad_version", "bad_command", "bad_family", "timeout", "eof", "io"];

    pub fn kind(&self) -> &'static str {
        match self {
            ProxyProtocolError::BadSignature => "bad_signature",
            ProxyProtocolError::V1TooLong | ProxyProtocolError::V2TooLong { .. } => "too_long",
            ProxyProtocolError::V1Malformed(_) | ProxyProtocolError::V2Truncated { .. } => "malformed",
            ProxyProtocolError::BadVersion(_) => "bad_version",
            ProxyProtocolError::BadCommand(_) => "bad_command",
            ProxyProtocolError::BadFamily(_) => "bad_family",
            ProxyProtocolError::Timeout(_) => "timeout",
            ProxyProtocolError::Eof(_) => "eof",
            ProxyProtocolError::Io(_) => "io",
        }
    }
}

// === impl Rewind ===

impl<S> Rewind<S> {
    /// Replays `prefix` before reading from `inner`.
    pub fn new(prefix: Bytes, inner: S) -> Self {
        Rewind { prefix, inner }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The bytes still to be replayed.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The bytes not yet replayed, and the inner stream.
    pub fn into_inner(self) -> (Bytes, S) {
        (self.prefix, self.inner)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
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
