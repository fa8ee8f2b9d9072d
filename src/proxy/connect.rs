//! Opening one connection to an upstream: TCP, then TLS for an `https://` upstream.
//!
//! The TLS client configuration comes from the snapshot ([`crate::tls::client`]); the server
//! name verified (and sent as SNI, unless it is an IP address) is the upstream URL's host.
//! What ALPN settled on tells the caller whether the connection speaks HTTP/2.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::Authority;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::forward::UpstreamError;
use crate::tls::client::UpstreamTls;

/// A connection to an upstream, cleartext or TLS.
#[derive(Debug)]
pub enum UpstreamStream {
    Plain(TcpStream),
    /// Boxed: a TLS session is large, and most upstreams are cleartext.
    Tls(Box<TlsStream<TcpStream>>),
}

/// A new connection and whether the upstream chose HTTP/2 by ALPN.
#[derive(Debug)]
pub struct Connected {
    pub stream: UpstreamStream,
    pub alpn_h2: bool,
}

/// Connects to `authority` (TLS with `tls`), all within `timeout`. A TCP failure is
/// [`UpstreamError::Connect`]; a refused handshake (unknown CA, wrong name, no client
/// certificate the upstream accepts) is [`UpstreamError::Tls`].
pub async fn connect(
    authority: &Authority,
    tls: Option<&UpstreamTls>,
    timeout: Duration,
) -> Result<Connected, UpstreamError> {
    let work = async {
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(if tls.is_some() { 443 } else { 80 });
        let stream = TcpStream::connect((host, port)).await.map_err(|e| {
            tracing::debug!(%authority, error = %e, "upstream connect failed");
            UpstreamError::Connect
        })?;
        let _ = stream.set_nodelay(true);
        let Some(tls) = tls else {
            return Ok(Connected { stream: UpstreamStream::Plain(stream), alpn_h2: false });
        };
        let name = ServerName::try_from(host.to_owned()).map_err(|e| {
            tracing::debug!(%authority, error = %e, "upstream host is not a TLS server name");
            UpstreamError::Tls
        })?;
        let connector = tokio_rustls::TlsConnector::from(tls.client_config.clone());
        let stream = connector.connect(name, stream).await.map_err(|e| {
            tracing::warn!(%authority, error = %e, "upstream TLS handshake failed");
            UpstreamError::Tls
        })?;
        let alpn_h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok(Connected { stream: UpstreamStream::Tls(Box::new(stream)), alpn_h2 })
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(UpstreamError::Connect),
    }
}

// === impl UpstreamStream ===

impl AsyncRead for UpstreamStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
