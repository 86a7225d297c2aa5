//! What a connection may hold before it has sent a request: the listener
//! admits at most `max_connections` at once (more are closed at accept),
//! and closes one that moves no byte, in or out, for `idle_timeout_seconds`
//! — a client that never sends its first byte, sends only the HTTP/2
//! preface, or stops inside a HEADERS frame. Request headers have their own
//! time limit (HTTP/1) and size limits, and HTTP/2 peers must answer pings.
//! Every byte received and sent on client connections is counted (below
//! TLS), for `/v1/metrics`.

use std::future::{ready, Future, Ready};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// An `axum_server` acceptor that caps and watches connections; it wraps
/// the TCP stream, under TLS when the gateway serves HTTPS.
#[derive(Clone)]
pub struct Guarded {
    permits: Arc<Semaphore>,
    idle: Duration,
    traffic: Arc<Traffic>,
}

impl Guarded {
    pub fn new(max_connections: usize, idle: Duration, traffic: Arc<Traffic>) -> Guarded {
        Guarded { permits: Arc::new(Semaphore::new(max_connections)), idle, traffic }
    }
}

/// Bytes received from and sent to clients, on every connection together.
#[derive(Default)]
pub struct Traffic {
    pub received: AtomicU64,
    pub sent: AtomicU64,
}

impl<I, S> axum_server::accept::Accept<I, S> for Guarded {
    type Stream = Watched<I>;
    type Service = S;
    type Future = Ready<io::Result<(Watched<I>, S)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        ready(match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Ok((Watched::new(stream, self.idle, permit, self.traffic.clone()), service)),
            Err(_) => {
                tracing::warn!("connection refused: max_connections reached");
                Err(io::Error::other("too many connections"))
            }
        })
    }
}

/// A stream that fails with `TimedOut` once nothing has moved for `idle`.
pub struct Watched<I> {
    inner: I,
    idle: Duration,
    last: Instant,
    timer: Pin<Box<Sleep>>,
    traffic: Arc<Traffic>,
    _permit: OwnedSemaphorePermit,
}

impl<I> Watched<I> {
    fn new(inner: I, idle: Duration, permit: OwnedSemaphorePermit, traffic: Arc<Traffic>) -> Watched<I> {
        let now = Instant::now();
        Watched { inner, idle, last: now, timer: Box::pin(tokio::time::sleep_until(now + idle)), traffic, _permit: permit }
    }

    /// Pending I/O: an error once the connection has been idle too long.
    /// The timer is moved forward lazily, only when it fires.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let due = self.last + self.idle;
            if Instant::now() >= due {
                return true;
            }
            self.timer.as_mut().reset(due);
        }
    }
}

impl<I> Watched<I> {
    /// A write's outcome: bytes written count as activity; a write still
    /// pending fails once the connection has been idle too long.
    fn wrote(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.last = Instant::now();
                    self.traffic.sent.fetch_add(n as u64, Ordering::Relaxed);
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(e) => Poll::Ready(e),
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the connection was idle too long")
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                let n = buf.filled().len() - before;
                if n > 0 {
                    self.last = Instant::now();
                    self.traffic.received.fetch_add(n as u64, Ordering::Relaxed);
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(cx, r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Header limits and HTTP/2 keep-alive: a client gets `header_timeout` to
/// send its request headers (slowloris), at most 100 headers (HTTP/1) or
/// 64 KiB of them (HTTP/2), and an HTTP/2 peer that stops answering pings
/// is dropped.
pub fn limit_protocols(b: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>, header_timeout: Duration, idle: Duration) {
    b.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout).max_headers(100);
    b.http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(100)
        .max_header_list_size(64 << 10)
        .max_pending_accept_reset_streams(20)
        .keep_alive_interval(Some((idle / 2).max(Duration::from_secs(1))))
        .keep_alive_timeout((idle / 2).max(Duration::from_secs(1)));
}
