//! The master process: pool + front, and the signals that stop them.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::MasterArgs;
use crate::front::{self, App, FrontConfig};
use crate::pool::{Pool, PoolConfig, SpawnError};

/// Exit code when workers cannot boot (as gunicorn's worker boot error):
/// restarting the service will not help, the installation must be fixed.
pub const EXIT_BOOT_ERROR: u8 = 3;

/// Why the master could not run.
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error("worker binary not found at {0} (build it, or pass --worker-bin)")]
    WorkerBinMissing(PathBuf),
    #[error("cannot locate this executable: {0}")]
    CurrentExe(std::io::Error),
    #[error("workers failed to start: {0}")]
    Boot(#[from] SpawnError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// `--worker-bin`, or `pixfork-worker` beside this executable.
pub fn worker_bin(args: &MasterArgs) -> Result<PathBuf, MasterError> {
    let path = match &args.worker_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(MasterError::CurrentExe)?
            .with_file_name("pixfork-worker"),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(MasterError::WorkerBinMissing(path))
    }
}

/// Resolves on the first SIGTERM or SIGINT. A second one of either ends the
/// process at once (workers follow through their parent-death signal).
async fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, MasterError> {
    let mut term = signal(SignalKind::terminate()).map_err(MasterError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(MasterError::Signals)?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!("{name} received: draining (send it again to stop at once)");
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
            tracing::warn!("second signal: stopping now");
            std::process::exit(130);
        });
    })
}

/// Runs the service on `listener` until SIGTERM/SIGINT, then drains:
/// stop accepting, finish accepted requests (up to the graceful timeout),
/// stop and reap every worker.
pub async fn run(args: MasterArgs, listener: TcpListener) -> Result<(), MasterError> {
    let shutdown = shutdown_signal().await?;
    let workers = args.worker_count();
    let pool = Pool::start(PoolConfig {
        worker_bin: worker_bin(&args)?,
        workers,
        queue_depth: args.queue_depth,
        queue_timeout: args.queue_timeout,
        timeout: args.timeout,
        limits: args.limits(),
        max_payload: args.max_body,
    })
    .await?;
    tracing::info!(workers, "ready");
    let app = Arc::new(App {
        pool: pool.clone(),
        cfg: FrontConfig {
            max_body: args.max_body,
            limits: args.limits(),
        },
    });
    front::serve(listener, app, shutdown, args.graceful_timeout).await;
    pool.shutdown(args.graceful_timeout).await;
    tracing::info!("stopped");
    Ok(())
}
