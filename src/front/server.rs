//! Accepting connections: the connection cap, per-connection settings,
//! and the graceful drain.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::app::{App, MAX_CONNECTIONS};
use super::router::handle;
use super::send_timeout::SendTimeout;

/// How long a connection must go without a request, once the drain has
/// begun, before it is closed. A keep-alive client may have a request on
/// the wire at any moment; closing its idle connection at the very instant
/// of SIGTERM dropped such requests (about 1 in 3,600 under load). During
/// the drain every response says `Connection: close`, so a client learns
/// of the stop on its next request, and a connection is closed only once
/// it has been quiet this long, or at the drain deadline.
const IDLE_LINGER: Duration = Duration::from_secs(1);

/// What the drain needs to know of one connection.
#[derive(Default)]
struct Activity {
    /// Requests being answered on it now.
    in_flight: AtomicUsize,
    /// When the last request ended (or began), as time since `base`.
    last_ms: AtomicU64,
}

/// Accepts connections until `shutdown` resolves with the drain deadline,
/// then stops accepting and lets every connection finish: requests in
/// flight are answered (with `Connection: close`), idle connections close
/// once quiet for [`IDLE_LINGER`], and whatever is left at the deadline is
/// closed.
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = Instant>) {
    let (drain_tx, drain_rx) = watch::channel(None::<Instant>);
    let mut shutdown = std::pin::pin!(shutdown);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let base = Instant::now();
    let deadline = loop {
        // Take a connection slot before accepting: at the cap, new clients
        // queue in the kernel backlog rather than in this process.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break Instant::now(),
            },
            d = &mut shutdown => break d,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors or similar: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(stream, app.clone(), drain_rx.clone(), base, permit));
            }
            d = &mut shutdown => break d,
        }
    };
    drop(listener);
    app.draining.store(true, Ordering::Relaxed);
    let _ = drain_tx.send(Some(deadline));
    tracing::info!("stopped accepting; draining requests in flight");
    let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
    if tokio::time::timeout_at(deadline, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("the shutdown deadline passed with requests still in flight");
    }
}

/// Serves one connection until it ends, or until the drain closes it.
async fn connection(
    stream: TcpStream,
    app: Arc<App>,
    mut drain: watch::Receiver<Option<Instant>>,
    base: Instant,
    permit: OwnedSemaphorePermit,
) {
    let metrics = app.metrics.clone();
    let activity = Arc::new(Activity::default());
    // A connection that has not sent anything yet counts as active since
    // it was accepted: its first request may be on the wire.
    activity
        .last_ms
        .store(base.elapsed().as_millis() as u64, Ordering::SeqCst);
    let stream = SendTimeout::new(stream, app.cfg.send_timeout, metrics.clone());
    let header_timeout = app.cfg.header_timeout;
    let seen = activity.clone();
    let svc = service_fn(move |req| {
        let app = app.clone();
        let seen = seen.clone();
        async move {
            seen.in_flight.fetch_add(1, Ordering::SeqCst);
            let resp = handle(app, req).await;
            seen.last_ms
                .store(base.elapsed().as_millis() as u64, Ordering::SeqCst);
            seen.in_flight.fetch_sub(1, Ordering::SeqCst);
            resp
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), svc);
    let mut conn = std::pin::pin!(conn);
    metrics.connections.inc();
    let ended = tokio::select! {
        r = conn.as_mut() => Some(r),
        _ = drain.wait_for(|d| d.is_some()) => None,
    };
    let ended = match ended {
        Some(r) => r,
        None => {
            let deadline = (*drain.borrow()).unwrap_or_else(Instant::now);
            let drain_began = base.elapsed();
            // Draining: wait for a quiet moment (or the deadline), then
            // ask hyper to close between requests. Quiet counts from the
            // later of the last request and the start of the drain.
            loop {
                let last = Duration::from_millis(activity.last_ms.load(Ordering::SeqCst));
                let quiet_for = base.elapsed().saturating_sub(last.max(drain_began));
                let idle = activity.in_flight.load(Ordering::SeqCst) == 0;
                if Instant::now() >= deadline || (idle && quiet_for >= IDLE_LINGER) {
                    break;
                }
                tokio::select! {
                    r = conn.as_mut() => {
                        metrics.connections.dec();
                        log_end(r);
                        drop(permit);
                        return;
                    }
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout_at(deadline.max(Instant::now()), conn.as_mut()).await {
                Ok(r) => r,
                Err(_) => Ok(()),
            }
        }
    };
    log_end(ended);
    metrics.connections.dec();
    drop(permit);
}

fn log_end(r: Result<(), hyper::Error>) {
    if let Err(e) = r {
        tracing::debug!("connection ended with an error: {e}");
    }
}
