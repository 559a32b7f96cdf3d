//! Connections: the accept loop, the per-connection timeouts, and the drain at shutdown.
//!
//! axum's own `serve` has no header, idle or write timeout and waits without bound at
//! shutdown for a client that sent half a request; this loop serves the same router through
//! hyper's HTTP/1 connection with:
//!
//! * a header timeout (hyper's `header_read_timeout`), which also bounds how long a
//!   keep-alive connection may sit idle between requests (the timer starts when hyper starts
//!   reading the next request head);
//! * a write-stall timeout ([`StallTimeout`]): a response write that makes no progress for
//!   that long (a client that stopped reading) closes the connection;
//! * a cap on open connections: at the cap the loop stops accepting (the kernel's backlog
//!   holds new clients) and says so (a `tracing` warning), instead of running out of
//!   descriptors;
//! * a drain: at shutdown the listener closes, every connection finishes its request in
//!   flight and closes, and whatever is still open after the drain timeout is closed.
//!
//! The body timeout lives in the router's guard (`routes::guard`), which reads each body
//! under its deadline.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Sleep;

/// The connection-level limits of [`run`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    pub(crate) header_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) drain_timeout: Duration,
    pub(crate) max_connections: usize,
}

/// Accepts on `listener` until `shutdown` completes, then drains (see the module docs).
pub(crate) async fn run(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    let mut at_cap_reported = false;
    loop {
        let permit = match open.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if !at_cap_reported {
                    tracing::warn!(
                        limit = limits.max_connections,
                        "connections at the limit; new clients wait in the listen backlog"
                    );
                    at_cap_reported = true;
                }
                tokio::select! {
                    () = &mut shutdown => break,
                    p = open.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                }
            }
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors (EMFILE/ENFILE), a connection reset before accept:
                    // say so, pause briefly, and go on; the listener itself is still good.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if at_cap_reported && open.available_permits() > 0 {
            at_cap_reported = false;
        }
        let app = app.clone();
        let drain = drain_rx.clone();
        connections.spawn(async move {
            serve_connection(stream, app, limits, drain).await;
            drop(permit);
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = drain_tx.send(true);
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            drain = ?limits.drain_timeout,
            "closing the connections still open after the drain"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

/// One HTTP/1.1 connection until the client closes it, a timeout closes it, or the drain
/// asks it to finish its request in flight and close.
async fn serve_connection(
    stream: TcpStream,
    app: Router,
    limits: ConnLimits,
    mut drain: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(StallTimeout::new(stream, limits.write_timeout));
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // End of input while a request is in flight means the client is gone: its request is
        // dropped before it reaches the encoder and its slot is freed (as nginx does by
        // default). A half-closed socket cannot be told apart from a closed one without
        // writing to it, so a client that half-closes is taken as gone too.
        .half_close(false)
        .keep_alive(true)
        .serve_connection(io, TowerToHyperService::new(app));
    tokio::pin!(connection);
    let draining = async move {
        // Err: the loop is gone, which only happens after it asked for the drain.
        let _ = drain.wait_for(|draining| *draining).await;
    };
    tokio::select! {
        _ = connection.as_mut() => {}
        () = draining => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.as_mut().await;
        }
    }
}

/// A stream whose writes fail with `TimedOut` once one has made no progress for `limit`
/// (a client that stopped reading its response). Reads pass through: the header and body
/// timeouts bound them.
#[derive(Debug)]
pub(crate) struct StallTimeout<S> {
    inner: S,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> StallTimeout<S> {
    pub(crate) fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Maps a pending write to `TimedOut` once it has been pending for `limit`; any other
    /// outcome resets the clock.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing of the response within the write timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallTimeout<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallTimeout<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_write_the_peer_never_reads_times_out() {
        // A duplex pipe with a 64-byte buffer and nobody reading the other end.
        let (near, _far) = tokio::io::duplex(64);
        let mut s = StallTimeout::new(near, Duration::from_millis(50));
        let err = s
            .write_all(&[0u8; 4096])
            .await
            .expect_err("the peer reads nothing");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_reading_is_not_cut_off() {
        let (near, mut far) = tokio::io::duplex(64);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            let mut total = 0;
            while total < 1024 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                total += tokio::io::AsyncReadExt::read(&mut far, &mut buf)
                    .await
                    .expect("read");
            }
            total
        });
        // Each write waits ~10 ms for the reader, 64 reads in all (≥ 640 ms): past the 300 ms
        // limit in total, never in one stall; the limit is per stall, not per response.
        let mut s = StallTimeout::new(near, Duration::from_millis(300));
        s.write_all(&[1u8; 1024])
            .await
            .expect("progress resets the clock");
        assert_eq!(reader.await.expect("reader"), 1024);
    }
}
