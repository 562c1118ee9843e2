//! Accepting connections: the connection cap, per-connection settings,
//! and the graceful drain.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::app::{App, MAX_CONNECTIONS};
use super::router::handle;
use super::send_timeout::SendTimeout;

/// Accepts connections until `shutdown` resolves, then stops accepting and
/// waits up to `grace` for requests in flight (idle keep-alive connections
/// are closed at once).
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        // Take a connection slot before accepting: at the cap, new clients
        // queue in the kernel backlog rather than in this process.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
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
                let header_timeout = app.cfg.header_timeout;
                let stream = SendTimeout::new(stream, app.cfg.send_timeout, app.metrics.clone());
                let metrics = app.metrics.clone();
                let app = app.clone();
                let svc = service_fn(move |req| handle(app.clone(), req));
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .serve_connection(TokioIo::new(stream), svc);
                let conn = graceful.watch(conn);
                metrics.connections.inc();
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("connection ended with an error: {e}");
                    }
                    metrics.connections.dec();
                    drop(permit);
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("stopped accepting; draining requests in flight");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("graceful timeout of {grace:?} passed with requests still in flight");
    }
}
