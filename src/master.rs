//! The master process: pool + front, and the signals that stop them.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::budget::ByteBudget;
use crate::cache::{CacheConfig, ResultCache};
use crate::config::MasterArgs;
use crate::front::auth::{ApiKeys, Signer};
use crate::front::playground::{PageSettings, Playground};
use crate::front::{self, App, FrontConfig};
use crate::jobs::{Jobs, JobsConfig};
use crate::metrics::Metrics;
use crate::net::SourceConfig;
use crate::pool::{Pool, PoolConfig, SpawnError};
use crate::systemd;
use hyper::header::HeaderValue;

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
    #[error("job store failed to start: {0}")]
    Jobs(#[from] crate::jobs::JobsError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("{0}")]
    Flags(String),
    #[error(transparent)]
    Tls(#[from] crate::net::TlsSetupError),
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    #[error(transparent)]
    Preset(#[from] crate::catalogue::PresetError),
    #[error(transparent)]
    Overlay(#[from] crate::catalogue::OverlayError),
    #[error(transparent)]
    Auth(#[from] crate::front::auth::AuthSetupError),
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

/// Handles SIGHUP (rolling worker replacement), SIGTTIN and SIGTTOU (one
/// worker more or less) for the life of the process. One task handles them
/// in order, so two quick SIGHUPs run two reloads, never two at once.
fn spawn_pool_signals(pool: Pool) -> Result<(), MasterError> {
    let mut hup = signal(SignalKind::hangup()).map_err(MasterError::Signals)?;
    let mut ttin =
        signal(SignalKind::from_raw(nix::libc::SIGTTIN)).map_err(MasterError::Signals)?;
    let mut ttou =
        signal(SignalKind::from_raw(nix::libc::SIGTTOU)).map_err(MasterError::Signals)?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    tracing::info!("SIGHUP received: replacing workers one slot at a time");
                    systemd::reloading();
                    let replaced = pool.reload().await;
                    tracing::info!(replaced, "reload finished");
                    systemd::ready(&systemd::status_line(&pool));
                }
                _ = ttin.recv() => match pool.add_worker() {
                    Some(slot) => tracing::info!(slot, "SIGTTIN: added a worker slot"),
                    None => tracing::warn!("SIGTTIN: cannot add a worker now"),
                },
                _ = ttou.recv() => match pool.remove_worker() {
                    Some(slot) => tracing::info!(slot, "SIGTTOU: removing a worker slot"),
                    None => tracing::warn!("SIGTTOU: keeping the last worker"),
                },
            }
        }
    });
    Ok(())
}

/// The part of `--shutdown-timeout` kept for stopping the workers, after
/// requests and jobs have had the rest.
fn pool_stop_time(timeout: Duration) -> Duration {
    (timeout / 6).clamp(Duration::from_millis(500), Duration::from_secs(5))
}

/// Runs the service on `listener` until SIGTERM/SIGINT, then stops within
/// `--shutdown-timeout`: accepting ends at once; requests in flight and
/// running jobs finish together until the drain deadline (jobs still
/// running then go back to the queue); then the workers stop and are
/// reaped.
pub async fn run(args: MasterArgs, listener: TcpListener) -> Result<(), MasterError> {
    if args.max_inflight_bytes < args.max_body {
        return Err(MasterError::Flags(format!(
            "--max-inflight-bytes ({}) must be at least --max-body ({}): \
             a single request would otherwise always be refused",
            args.max_inflight_bytes, args.max_body
        )));
    }
    let signer = match (&args.url_signing_key, &args.url_signing_key_file) {
        (Some(hex), _) => Some(Signer::from_hex(hex)?),
        (None, Some(path)) => Some(Signer::from_file(path)?),
        (None, None) => None,
    };
    let api_keys = args
        .api_key_file
        .as_deref()
        .map(ApiKeys::from_file)
        .transpose()?;
    let mut presets = crate::catalogue::Presets::default();
    for def in &args.presets {
        presets.add(def)?;
    }
    if let Some(path) = &args.preset_file {
        presets.add_file(path)?;
    }
    let overlays = Arc::new(crate::catalogue::Overlays::load(
        &args.overlays,
        args.max_body,
    )?);
    let cache_control = args
        .cache_control
        .as_deref()
        .map(HeaderValue::from_str)
        .transpose()
        .map_err(|_| MasterError::Flags("--cache-control must be a valid header value".into()))?;
    let shutdown = shutdown_signal().await?;
    let workers = args.worker_count();
    let metrics = Metrics::new();
    let cache = ResultCache::open(
        CacheConfig {
            dir: args
                .cache_dir
                .clone()
                .unwrap_or_else(|| args.state_dir.join("cache")),
            max_bytes: args.cache_size,
        },
        metrics.clone(),
    )
    .await?;
    let pool = Pool::start(
        PoolConfig {
            worker_bin: worker_bin(&args)?,
            workers,
            queue_depth: args.queue_depth,
            queue_timeout: args.queue_timeout,
            timeout: args.timeout,
            limits: args.limits(),
            // Workers take sync bodies and job inputs alike; both are
            // capped by --max-body, and so is each overlay image that
            // travels with them.
            max_payload: args
                .max_body
                .saturating_mul(1 + crate::catalogue::MAX_OVERLAYS as u64),
            worker_nice: args.worker_nice,
            worker_sched: args.worker_sched,
            pin_workers: args.pin_workers,
            worker_memory_limit: args.worker_memory_limit,
            max_requests: args.max_requests,
            max_requests_jitter: args.max_requests_jitter,
            no_sandbox: args.no_sandbox,
            worker_user: args.worker_user.clone(),
            worker_log: std::env::var("PIXFORK_LOG").ok(),
        },
        metrics.clone(),
    )
    .await?;
    crate::front::check_overlays(&pool, &overlays, args.limits())
        .await
        .map_err(MasterError::Flags)?;
    let tls = crate::net::client_config(args.source_ca.as_deref())?;
    let guard = |enabled: bool, hosts: &[String], max_redirects: u32| SourceConfig {
        enabled,
        allowed_hosts: hosts
            .iter()
            .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect(),
        allow_private: args.allow_private_sources,
        private_networks: args.allowed_private_networks.clone(),
        timeout: args.source_timeout,
        max_redirects,
        max_bytes: args.max_body,
        tls: Some(tls.clone()),
        conns: Default::default(),
    };
    let sources = guard(
        args.allow_url_source,
        &args.allowed_source_hosts,
        args.source_max_redirects,
    );
    // Callbacks are always on (they reach only public addresses, or the
    // listed private networks) and never follow redirects.
    let callbacks = guard(true, &args.allowed_callback_hosts, 0);
    let jobs = match Jobs::start(
        JobsConfig {
            state_dir: args.state_dir.clone(),
            jobs_url: args.jobs_url.clone(),
            max_queued_jobs: args.max_queued_jobs,
            max_job_bytes: args.max_job_bytes,
            max_input_bytes: args.max_body,
            job_ttl: args.job_ttl,
            claim_timeout: args.job_claim_timeout,
            job_slots: args.job_slot_count(),
            limits: args.limits(),
            linear_resize: args.linear_resize,
            callbacks,
            overlays: overlays.clone(),
        },
        pool.clone(),
        metrics.clone(),
    )
    .await
    {
        Ok(j) => j,
        Err(e) => {
            pool.shutdown(pool_stop_time(args.shutdown_timeout)).await;
            return Err(e.into());
        }
    };
    spawn_pool_signals(pool.clone())?;
    tracing::info!(workers, "ready");
    systemd::ready(&systemd::status_line(&pool));
    systemd::spawn_heartbeat(pool.clone());
    let playground = (!args.no_playground).then(|| {
        Arc::new(Playground::new(PageSettings {
            url_sources: sources.enabled,
            api_keys: api_keys.is_some(),
            signed_urls: signer.is_some(),
        }))
    });
    let app = Arc::new(App {
        pool: pool.clone(),
        cfg: FrontConfig {
            max_body: args.max_body,
            limits: args.limits(),
            header_timeout: args.header_timeout,
            body_timeout: args.body_timeout,
            sources,
            send_timeout: args.send_timeout,
            linear_resize: args.linear_resize,
            signer,
            api_keys,
            cache_control,
            presets: Arc::new(presets),
            overlays,
            playground,
        },
        jobs: jobs.clone(),
        cache,
        metrics,
        budget: ByteBudget::new(args.max_inflight_bytes),
        draining: AtomicBool::new(false),
    });
    // One deadline for the whole stop, fixed when the signal arrives.
    let timeout = args.shutdown_timeout;
    let (stop_tx, stop_rx) = watch::channel(None::<Instant>);
    tokio::spawn(async move {
        shutdown.await;
        systemd::stopping();
        let _ = stop_tx.send(Some(Instant::now() + timeout));
    });
    let drain_deadline = |mut rx: watch::Receiver<Option<Instant>>| async move {
        let end = match rx.wait_for(Option::is_some).await {
            Ok(d) => d.unwrap_or_else(Instant::now),
            Err(_) => Instant::now(),
        };
        end - pool_stop_time(timeout)
    };
    // Requests in flight and running jobs drain together.
    tokio::join!(
        front::serve(listener, app, drain_deadline(stop_rx.clone())),
        async {
            let deadline = drain_deadline(stop_rx.clone()).await;
            jobs.shutdown(deadline).await;
        }
    );
    let end = (*stop_rx.borrow()).unwrap_or_else(Instant::now);
    pool.shutdown(end.saturating_duration_since(Instant::now()))
        .await;
    tracing::info!("stopped");
    Ok(())
}
