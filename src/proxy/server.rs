//! The accept loop and the per-connection task.
//!
//! The loop only accepts: it waits for a connection permit (the process-wide
//! `max_connections` cap), accepts, and spawns. The connection task reads a PROXY header where the listener requires
//! one (trusted peers only, bounded in size and time), runs the TLS handshake on a TLS
//! listener (see [`crate::tls`]; the certificates of the snapshot serving at accept), then
//! serves HTTP/1.1 and HTTP/2 (ALPN or prior knowledge) with upgrades. Shutdown stops
//! accepting, then lets hyper finish in-flight requests until the grace deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use super::drain::{Drain, DrainWatch};
use super::h1;
use super::handler::{self, ConnInfo};
use super::send_guard::SendGuard;
use super::ProxyContext;
use crate::client_ip;
use crate::config::{ClientIpConfig, ClientIpSource, Http1Engine, Limits};
use crate::proxy_protocol;

/// Largest PROXY v2 header accepted (address block plus TLVs).
const PROXY_HEADER_MAX: usize = 4096;

/// Serves one public listener until `shutdown` turns true, then drains for `grace`.
///
/// `permits` is the process-wide connection cap (`limits.max_connections`), shared by every
/// listener. Everything else a connection uses (the PROXY-protocol requirement and trust
/// list, timeouts, hyper's limits) is read from the snapshot serving when it is accepted, so
/// a reload applies to the next connection.
pub async fn serve(
    listener: TcpListener,
    index: usize,
    permits: Arc<Semaphore>,
    ctx: Arc<ProxyContext>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let drain = Drain::new();
    // hyper's builder for the limits of one snapshot generation, rebuilt when it changes.
    let mut built: Option<(u64, Arc<auto::Builder<TokioExecutor>>)> = None;
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let (settings, builder) = {
            let snapshot = ctx.current.load();
            let limits = &snapshot.config.limits;
            let builder = match &built {
                Some((generation, b)) if *generation == snapshot.generation => b.clone(),
                _ => {
                    let b = Arc::new(http_builder(limits));
                    built = Some((snapshot.generation, b.clone()));
                    b
                }
            };
            let settings = ConnSettings {
                client_ip: snapshot.config.listeners.get(index).map(|l| l.client_ip.clone()).unwrap_or_default(),
                pp_timeout: limits.proxy_protocol_timeout,
                header_timeout: limits.header_read_timeout,
                max_head: limits.max_header_bytes.get().max(8192),
                max_headers: limits.max_headers.get(),
                own_http1: snapshot.config.server.http1 == Http1Engine::Geogate,
                send_timeout: limits.send_timeout,
                min_send_rate: limits.min_send_rate,
                send_buffer: limits.send_buffer_bytes,
                tls: snapshot.tls.get(index).and_then(Option::as_ref).map(|t| t.server_config.clone()),
                tls_timeout: limits.tls_handshake_timeout,
            };
            (settings, builder)
        };
        let ctx = ctx.clone();
        let watcher = drain.watch();
        tokio::spawn(async move {
            ctx.metrics.open_connections.inc();
            serve_connection(stream, remote, index, &settings, ctx.clone(), &builder, watcher).await;
            ctx.metrics.open_connections.dec();
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, drain.shutdown()).await.is_err() {
        tracing::warn!(grace_s = grace.as_secs_f64(), "shutdown grace expired with requests in flight");
    }
}

/// What one connection takes from the snapshot serving when it was accepted.
struct ConnSettings {
    client_ip: ClientIpConfig,
    pp_timeout: Duration,
    header_timeout: Duration,
    max_head: usize,
    max_headers: usize,
    /// `server.http1 = "geogate"`: geogate's own HTTP/1.1 path serves what it can.
    own_http1: bool,
    send_timeout: Duration,
    min_send_rate: u64,
    send_buffer: u64,
    /// The TLS server configuration of a TLS listener.
    tls: Option<Arc<rustls::ServerConfig>>,
    tls_timeout: Duration,
}

fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    {
        let mut h1 = b.http1();
        h1.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes.get().max(8192))
            .keep_alive(true);
        if limits.max_headers.get() != 100 {
            // hyper moves header storage to the heap when this is set; only pay that if asked.
            h1.max_headers(limits.max_headers.get());
        }
    }
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(u32::from(limits.max_h2_streams.get()))
        .max_pending_accept_reset_streams(Some(20))
        .max_local_error_reset_streams(Some(100))
        .max_header_list_size(u32::try_from(limits.max_header_bytes.get()).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(limits.idle_timeout))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    index: usize,
    settings: &ConnSettings,
    ctx: Arc<ProxyContext>,
    builder: &auto::Builder<TokioExecutor>,
    watcher: DrainWatch,
) {
    let tcp_peer = remote.ip().to_canonical();
    let mut peer = tcp_peer;
    // A client must keep taking what it is sent (slow readers), on every protocol; and the
    // kernel holds at most send_buffer_bytes for it meanwhile (on loopback its autotuning
    // starts a socket at about 1.4 MB).
    if let Ok(size) = usize::try_from(settings.send_buffer) {
        if size > 0 {
            let _ = socket2::SockRef::from(&stream).set_send_buffer_size(size);
        }
    }
    let stream = SendGuard::new(stream, settings.send_timeout, settings.min_send_rate)
        .counting(ctx.metrics.rejected.with_label_values(&[super::SLOW_READER]));
    let io = if settings.client_ip.source == ClientIpSource::ProxyProtocol {
        if !client_ip::is_trusted(&settings.client_ip, tcp_peer) {
            ctx.metrics.rejected.with_label_values(&[super::UNTRUSTED_PROXY_PEER]).inc();
            tracing::debug!(%tcp_peer, "PROXY header from an untrusted peer refused");
            return;
        }
        let mut stream = stream;
        match proxy_protocol::read_header(&mut stream, settings.pp_timeout, PROXY_HEADER_MAX).await {
            Ok((header, rest)) => {
                if let Some(src) = header.source {
                    peer = src.ip().to_canonical();
                }
                proxy_protocol::Rewind::new(rest, stream)
            }
            Err(e) => {
                ctx.metrics.rejected.with_label_values(&[e.kind()]).inc();
                tracing::debug!(%tcp_peer, error = %e, "bad PROXY header");
                return;
            }
        }
    } else {
        proxy_protocol::Rewind::new(bytes::Bytes::new(), stream)
    };
    let conn = Conn { tcp_peer, peer, index, settings, ctx, builder, watcher };
    match &settings.tls {
        None => serve_http(io, conn).await,
        Some(config) => match crate::tls::handshake(config.clone(), io, settings.tls_timeout).await {
            Ok(tls) => serve_http(tls, conn).await,
            Err((reason, error)) => {
                conn.ctx.metrics.tls_handshake_failures.with_label_values(&[reason.as_str()]).inc();
                tracing::debug!(%tcp_peer, reason = reason.as_str(), error = ?error, "TLS handshake failed");
            }
        },
    }
}

/// One accepted connection, past the PROXY header, about to speak HTTP.
struct Conn<'a> {
    tcp_peer: std::net::IpAddr,
    peer: std::net::IpAddr,
    index: usize,
    settings: &'a ConnSettings,
    ctx: Arc<ProxyContext>,
    builder: &'a auto::Builder<TokioExecutor>,
    watcher: DrainWatch,
}

/// Serves HTTP on `io` (the TCP stream, or the TLS stream over it) until it closes: HTTP/1.1
/// on geogate's own path while its requests suit it (see [`h1`]), the rest on hyper.
async fn serve_http<S>(io: S, conn: Conn<'_>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Conn { tcp_peer, peer, index, settings, ctx, builder, mut watcher } = conn;
    // hyper's header timeout starts only once it has chosen HTTP/1; until the first bytes
    // decide the protocol, a silent client would hold the connection forever. Read up to the
    // HTTP/2 preface (or the first byte that cannot start it) under the same deadline.
    let io = match read_preface(io, settings.header_timeout).await {
        Some(io) => io,
        None => {
            ctx.metrics.rejected.with_label_values(&[super::PREFACE_TIMEOUT]).inc();
            return;
        }
    };
    let framing = super::sniff::Framing::new();
    let info = Arc::new(ConnInfo { tcp_peer, peer, listener: index, framing: framing.clone() });
    let h2 = io.prefix().starts_with(H2_PREFACE);
    let io = if settings.own_http1 && !h2 && h1::upstreams_are_http1(&ctx.current.load()) {
        let h1_settings = h1::Settings {
            header_timeout: settings.header_timeout,
            max_head: settings.max_head,
            max_headers: settings.max_headers,
        };
        match h1::serve(io, &info, &ctx, h1_settings, &mut watcher).await {
            h1::Ended::Closed => return,
            h1::Ended::Handover(io) => io,
        }
    } else {
        io
    };
    let io = super::sniff::HeadWatch::new(io, framing, settings.max_head);
    let service = service_fn(move |req| handler::handle(ctx.clone(), info.clone(), req));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = watcher.signalled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%tcp_peer, error = %e, "connection ended with an error");
    }
    drop(watcher);
}

/// The HTTP/2 connection preface; anything else is HTTP/1.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads until the bytes decide between HTTP/1 and HTTP/2 (the whole preface, or the first
/// byte that differs from it), within `timeout`; returns the stream with those bytes put back,
/// or `None` if the client closed or stalled.
async fn read_preface<S>(mut io: S, timeout: Duration) -> Option<proxy_protocol::Rewind<S>>
where
    S: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::with_capacity(H2_PREFACE.len());
    let work = async {
        let mut chunk = [0u8; 64];
        loop {
            let n = io.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            let k = buf.len().min(H2_PREFACE.len());
            if buf.len() >= H2_PREFACE.len() || buf[..k] != H2_PREFACE[..k] {
                return Some(());
            }
        }
    };
    tokio::time::timeout(timeout, work).await.ok()??;
    Some(proxy_protocol::Rewind::new(bytes::Bytes::from(buf), io))
}
