//! `--send-timeout`: a client that stops taking its response is cut off.
//!
//! hyper has read timeouts for headers, none for writing. A client that
//! never reads (a small receive window, or none at all) keeps its response
//! pending in our socket for as long as it likes, and a few thousand such
//! clients fill the connection cap. [`SendTimeout`] wraps a connection's
//! socket: when a write cannot make progress, a timer starts; progress
//! stops it; if it fires first, the write fails with `TimedOut` and hyper
//! closes the connection. As nginx's `send_timeout`, it bounds the wait
//! between two successful writes, not the whole response, so a slow but
//! steady reader of a large image is not cut off.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::metrics::Metrics;

/// A socket whose writes fail when they make no progress for `limit`.
pub(super) struct SendTimeout<S> {
    inner: S,
    limit: Duration,
    /// Running while a write waits for the client; `None` after progress.
    stalled: Option<Pin<Box<Sleep>>>,
    metrics: Arc<Metrics>,
}

impl<S> SendTimeout<S> {
    pub(super) fn new(inner: S, limit: Duration, metrics: Arc<Metrics>) -> Self {
        SendTimeout {
            inner,
            limit,
            stalled: None,
            metrics,
        }
    }

    /// After the inner write returned `poll`: stop the timer on progress,
    /// start (or check) it while the client takes nothing.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let limit = self.limit;
                let timer = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        self.stalled = None;
                        self.metrics.send_timeouts.inc();
                        Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("the client took none of its response for {limit:?}"),
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn a_write_nobody_takes_fails_after_the_limit() {
        // A pipe whose reader never reads: the writer fills it and stalls.
        let (ours, _theirs) = tokio::io::duplex(1024);
        let metrics = Metrics::new();
        let mut io = SendTimeout::new(ours, Duration::from_secs(5), metrics.clone());
        let err = io.write_all(&[0u8; 4096]).await.expect_err("nobody reads");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(metrics.send_timeouts.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_reading_is_not_cut_off() {
        use tokio::io::AsyncReadExt;
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let metrics = Metrics::new();
        let mut io = SendTimeout::new(ours, Duration::from_secs(5), metrics.clone());
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let mut total = 0;
            while total < 8192 {
                // Each pause is under the limit; the whole is well over it.
                tokio::time::sleep(Duration::from_secs(4)).await;
                total += theirs.read(&mut buf).await.expect("read");
            }
        });
        io.write_all(&[0u8; 8192]).await.expect("written");
        reader.await.expect("reader");
        assert_eq!(metrics.send_timeouts.get(), 0);
    }
}
