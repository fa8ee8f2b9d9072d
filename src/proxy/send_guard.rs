//! Slow readers: a client connection must keep taking what geogate sends it.
//!
//! A client that reads its responses a few bytes at a time (a "slow read" attack, or a
//! client that stopped reading) otherwise holds its connection, an upstream connection and
//! the response bytes in between for as long as it likes. [`SendGuard`] wraps the client's
//! stream: once a write to it blocks (the kernel's send buffer is full) or is only partly
//! taken, the client must accept at least `min_bytes` within `timeout`, or the next write
//! fails with `TimedOut` and the connection is closed. A write taken whole ends the wait.
//!
//! A connection cut off this way is reset (`SO_LINGER` 0), not closed: a close would leave
//! the unsent bytes in the kernel's send buffer, trickling out to the slow reader at its
//! pace behind the FIN, so the kernel would go on holding that memory and the client would
//! go on holding its connection. A reset drops them at once.
//!
//! Nothing is measured on the fast path: a write the kernel takes whole costs one
//! comparison. The timer is allocated the first time a connection's writes block.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A client stream whose writes must make progress (see the module docs).
#[derive(Debug)]
pub struct SendGuard<S> {
    inner: S,
    timeout: Duration,
    min_bytes: u64,
    /// Bytes taken since the current wait began; `None` while writes go through whole.
    waiting: Option<u64>,
    /// The current wait's deadline (allocated on the first wait).
    deadline: Option<Pin<Box<Sleep>>>,
    /// Counted once when the client is cut off.
    cut_off: Option<IntCounter>,
}

/// A stream that can be made to end with a reset instead of an orderly close.
pub trait Resettable {
    /// Makes the coming close a reset (`SO_LINGER` 0); errors are ignored (the close follows).
    fn reset_on_close(&self);
}

impl Resettable for tokio::net::TcpStream {
    fn reset_on_close(&self) {
        let _ = self.set_zero_linger();
    }
}

impl Resettable for tokio::io::DuplexStream {
    fn reset_on_close(&self) {}
}

impl<S: Resettable> SendGuard<S> {
    /// Guards `inner`: a blocked write must see `min_rate` bytes per second taken, averaged
    /// over `timeout`. A zero timeout turns the guard off.
    pub fn new(inner: S, timeout: Duration, min_rate: u64) -> Self {
        let min_bytes = (u128::from(min_rate) * timeout.as_millis() / 1000).max(1);
        Self {
            inner,
            timeout,
            min_bytes: u64::try_from(min_bytes).unwrap_or(u64::MAX),
            waiting: None,
            deadline: None,
            cut_off: None,
        }
    }

    /// Counts on `counter` the connection this guard cuts off, if it does.
    pub fn counting(mut self, counter: IntCounter) -> Self {
        self.cut_off = Some(counter);
        self
    }

    /// Accounts for one write's outcome; `Err` once the client has been too slow.
    fn account(
        &mut self,
        cx: &mut Context<'_>,
        offered: usize,
        result: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if self.timeout.is_zero() {
            return result;
        }
        match result {
            Poll::Ready(Ok(n)) if n >= offered => {
                // Taken whole: the client keeps up.
                self.waiting = None;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Ok(n)) => {
                self.progress(n as u64);
                Poll::Ready(Ok(n))
            }
            Poll::Pending => {
                if self.waiting.is_none() {
                    self.start_wait();
                }
                match self.deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
                    Some(Poll::Ready(())) => {
                        if self.waiting.unwrap_or(0) < self.min_bytes {
                            if let Some(c) = self.cut_off.take() {
                                c.inc();
                            }
                            self.inner.reset_on_close();
                            return Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "client took too little of the response within send_timeout",
                            )));
                        }
                        // Enough was taken in this window: a new one begins.
                        self.start_wait();
                        // Register the new deadline with this task.
                        if let Some(d) = self.deadline.as_mut() {
                            let _ = d.as_mut().poll(cx);
                        }
                        Poll::Pending
                    }
                    _ => Poll::Pending,
                }
            }
            other => other,
        }
    }

    fn start_wait(&mut self) {
        self.waiting = Some(0);
        let at = Instant::now() + self.timeout;
        match self.deadline.as_mut() {
            Some(d) => d.as_mut().reset(at),
            None => self.deadline = Some(Box::pin(tokio::time::sleep_until(at))),
        }
    }

    fn progress(&mut self, n: u64) {
        match self.waiting.as_mut() {
            Some(w) => *w = w.saturating_add(n),
            // A partial write opens a wait too: the send buffer just filled up.
            None => {
                self.start_wait();
                self.waiting = Some(n);
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendGuard<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Resettable + Unpin> AsyncWrite for SendGuard<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.account(cx, buf.len(), result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let offered = bufs.iter().map(|b| b.len()).sum();
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.account(cx, offered, result)
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
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Writes `total` bytes through a guard while the peer reads `chunk` bytes every
    /// `every`; returns how many bytes were written and the error, if any.
    async fn run(
        timeout_ms: u64,
        min_rate: u64,
        chunk: usize,
        every: Duration,
        total: usize,
    ) -> (usize, Option<io::ErrorKind>) {
        // A small duplex buffer plays the kernel's send buffer.
        let (near, mut far) = tokio::io::duplex(1024);
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; chunk];
            loop {
                tokio::time::sleep(every).await;
                match far.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        });
        let mut guard = SendGuard::new(near, Duration::from_millis(timeout_ms), min_rate);
        let data = vec![b'x'; 512];
        let mut written = 0;
        let mut error = None;
        while written < total {
            match guard.write(&data).await {
                Ok(n) => written += n,
                Err(e) => {
                    error = Some(e.kind());
                    break;
                }
            }
        }
        drop(guard);
        reader.abort();
        (written, error)
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_is_cut_off_after_the_timeout() {
        let started = Instant::now();
        // 32 bytes every 5 s is 6 bytes/s, against 1 KiB/s required.
        let (written, error) = run(10_000, 1024, 32, Duration::from_secs(5), 64 * 1024).await;
        assert_eq!(error, Some(io::ErrorKind::TimedOut));
        assert!(written < 4096, "{written}");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_secs(10) && waited < Duration::from_secs(21), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_reads_slowly_but_enough_is_served() {
        // 1 KiB every 500 ms is 2 KiB/s: above the 1 KiB/s floor, for a minute of windows.
        let (written, error) = run(10_000, 1024, 1024, Duration::from_millis(500), 120 * 1024).await;
        assert_eq!(error, None);
        assert_eq!(written, 120 * 1024);
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_timeout_turns_the_guard_off() {
        let (near, _far) = tokio::io::duplex(64);
        let mut guard = SendGuard::new(near, Duration::ZERO, 1024);
        let blocked = tokio::time::timeout(Duration::from_secs(3600), guard.write_all(&[0u8; 256])).await;
        assert!(blocked.is_err(), "the write should still be waiting, not failed");
    }
}
