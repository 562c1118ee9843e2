//! Durable background jobs: the front stores a job ([`Jobs::submit`]) and
//! answers 202 at once; a runner executes it on the shared worker pool; the
//! client polls its status and fetches its result (the routes are in the
//! front; this module knows nothing of HTTP).
//!
//! # Pieces
//!
//! - [`model`]: the plain data both stores speak (statuses, records, stats).
//! - [`store`]: the embedded SQLite store (default, under `--state-dir`) and
//!   the Redis store (`--jobs-url`, shared by several instances), behind one
//!   enum so everything else is written once.
//! - `runner`: claims jobs while one of `--job-slots` permits is free, runs
//!   them with [`Pool::run`], writes their end; and the TTL sweeper.
//! - `callback`: the POST to a job's `callback_url` when it ends (through
//!   the outbound client, [`net`](crate::net)).
//!
//! # Guarantees
//!
//! - A 202 is sent only after the job is committed (SQLite: fsynced WAL
//!   commit; Redis: one MULTI acknowledged by the server).
//! - A job ends exactly once as `done` or `failed` (or is deleted by its
//!   client): every store write of a claimed job is guarded by the claim's
//!   token and by `status = running`, and a finished job never returns to
//!   the queue.
//! - A job whose attempt kills its worker (or times out, or is cut off by a
//!   crash of the whole instance) is retried once; the second such attempt
//!   fails it with `job_poison`.

mod callback;
pub mod model;
mod runner;
pub mod store;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::net::SourceConfig;
use crate::pool::Pool;
use crate::proto::Limits;

pub use model::JobStats;
use model::{now_ms, JobRecord, Lookup, NewJob, Removed, ResultLookup, Submit};
use store::Store;
pub use store::StoreError;

/// The most of the shutdown time kept for writing the releases of jobs
/// still running at the deadline.
const RELEASE_TIME: Duration = Duration::from_secs(2);
/// Time the store may take to close even when the deadline has passed
/// (the SQLite thread finishes its last call and checkpoints).
const STORE_CLOSE_TIME: Duration = Duration::from_millis(500);

/// Settings of the job system, from the master's flags.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    pub state_dir: std::path::PathBuf,
    pub jobs_url: Option<String>,
    /// `--max-queued-jobs`: jobs waiting to run.
    pub max_queued_jobs: u64,
    /// `--max-job-bytes`: inputs and results held by the store, together.
    pub max_job_bytes: u64,
    /// One job's input (`--max-body`).
    pub max_input_bytes: u64,
    pub job_ttl: std::time::Duration,
    pub claim_timeout: std::time::Duration,
    pub job_slots: usize,
    pub limits: Limits,
    /// `--linear-resize`: what a job's resize without `linear=` does (the
    /// default of the instance that runs the job).
    pub linear_resize: bool,
    /// The guard for `callback_url` (the source guard's address rules, with
    /// `--allowed-callback-hosts` as its host list).
    pub callbacks: SourceConfig,
    /// `--overlay`: the images a job's `overlay?image=NAME` composites.
    pub overlays: std::sync::Arc<crate::catalogue::Overlays>,
}

/// Why the job system could not start. Each one stops the master with a
/// message that names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error("job store: {0}")]
    Store(String),
    #[error(
        "cannot use the state dir {path}: {source} (--state-dir must be a writable directory)"
    )]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the state dir {path} is in use by another pixfork ({reason}); give each instance its own --state-dir, or share jobs with --jobs-url")]
    Locked { path: PathBuf, reason: String },
    #[error("cannot open the job database {path}: {source}")]
    Database {
        path: PathBuf,
        source: rusqlite::Error,
    },
    /// The database exists but is damaged (not a database, a corrupt page,
    /// a failed integrity check): the service starts without jobs.
    #[error("the job database {path} is damaged: {reason}")]
    Damaged { path: PathBuf, reason: String },
    // The URL itself is not repeated: it may carry a password.
    #[error("invalid --jobs-url: {reason} (expected redis://host:port/db)")]
    RedisUrl { reason: String },
}

/// How the job store is doing, as `/readyz` and `/metrics` report it.
/// Only the job routes depend on it: the synchronous API stays ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StoreHealth {
    Up = 0,
    /// Unreachable or failing right now (it may come back on its own).
    Down = 1,
    /// Damaged: it will not come back on its own (see the log).
    Corrupt = 2,
}

impl StoreHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreHealth::Up => "up",
            StoreHealth::Down => "down",
            StoreHealth::Corrupt => "corrupt",
        }
    }

    fn from_u8(v: u8) -> StoreHealth {
        match v {
            0 => StoreHealth::Up,
            1 => StoreHealth::Down,
            _ => StoreHealth::Corrupt,
        }
    }
}

/// Everything the runner, the sweeper and the routes share.
struct Inner {
    store: Store,
    cfg: JobsConfig,
    pool: Pool,
    metrics: Arc<Metrics>,
    /// Names this process in job records and, with Redis, is its consumer
    /// name in the group.
    instance: String,
    /// A job was submitted: the SQLite runner stops waiting.
    wake: Notify,
    /// `--job-slots` permits; a claimed job holds one until its end is written.
    slots: Arc<Semaphore>,
    /// The store's health as last seen ([`StoreHealth`] as a number).
    health: AtomicU8,
    /// Ends of jobs a full store refused, written by the sweeper later.
    stranded: Mutex<Vec<(model::Claimed, runner::Step)>>,
    /// Stops the claim loop and the sweeper.
    stop: watch::Sender<bool>,
    /// Makes jobs still running after the shutdown grace go back to the queue.
    abandon: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// Handle to the job system; cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

impl Jobs {
    /// Opens the store (recovering jobs an unclean stop left running) and
    /// starts the runner and the sweeper.
    pub async fn start(
        cfg: JobsConfig,
        pool: Pool,
        metrics: Arc<Metrics>,
    ) -> Result<Jobs, JobsError> {
        let instance = instance_name();
        let (store, recovered) = Store::open(&cfg, &instance, &metrics).await?;
        let slots = cfg.job_slots.max(1);
        let inner = Arc::new(Inner {
            store,
            pool,
            metrics,
            instance,
            wake: Notify::new(),
            slots: Arc::new(Semaphore::new(slots)),
            health: AtomicU8::new(StoreHealth::Up as u8),
            stranded: Mutex::new(Vec::new()),
            stop: watch::channel(false).0,
            abandon: watch::channel(false).0,
            tasks: Mutex::new(Vec::new()),
            cfg,
        });
        let runner = tokio::spawn(runner::claim_loop(inner.clone()));
        let sweeper = tokio::spawn(runner::sweep_loop(inner.clone()));
        if let Ok(mut t) = inner.tasks.lock() {
            t.extend([runner, sweeper]);
        }
        tracing::info!(
            store = inner.store.kind(),
            instance = %inner.instance,
            job_slots = slots,
            recovered,
            "job system ready"
        );
        Ok(Jobs { inner })
    }

    /// Stops taking new work at once, lets running jobs finish until
    /// `deadline`, hands those still running back to the queue (a release,
    /// not a crash: the next attempt is not counted against the job) and
    /// closes the store, all by `deadline`. Queued jobs stay stored for
    /// the next start.
    pub async fn shutdown(&self, deadline: tokio::time::Instant) {
        let inner = &self.inner;
        let _ = inner.stop.send(true);
        let tasks: Vec<JoinHandle<()>> = match inner.tasks.lock() {
            Ok(mut t) => t.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        let all = u32::try_from(inner.cfg.job_slots.max(1)).unwrap_or(u32::MAX);
        // The last part of the time is for writing the releases.
        let now = tokio::time::Instant::now();
        let release = (deadline.saturating_duration_since(now) / 10).min(RELEASE_TIME);
        let finish_by = deadline - release;
        let wait = async {
            for t in tasks {
                let _ = t.await;
            }
            inner.slots.acquire_many(all).await.map(drop)
        };
        if tokio::time::timeout_at(finish_by, wait).await.is_err() {
            tracing::warn!(
                "jobs still running at the shutdown deadline: handing them back to the queue"
            );
            let _ = inner.abandon.send(true);
            let _ = tokio::time::timeout_at(deadline, inner.slots.acquire_many(all)).await;
        }
        inner.slots.close();
        let close_by = deadline.max(tokio::time::Instant::now() + STORE_CLOSE_TIME);
        if tokio::time::timeout_at(close_by, inner.store.close())
            .await
            .is_err()
        {
            tracing::warn!("the job store did not close in time");
        }
        tracing::info!("job system stopped");
    }

    /// The decode limits a job's query is parsed under.
    pub fn limits(&self) -> Limits {
        self.inner.cfg.limits
    }

    /// Largest input of one job (`--max-body`).
    pub fn max_input_bytes(&self) -> u64 {
        self.inner.cfg.max_input_bytes
    }

    /// The guard a job's `callback_url` must pass.
    pub fn callback_guard(&self) -> &SourceConfig {
        &self.inner.cfg.callbacks
    }

    /// Stores a new job (durably: see the guarantees above) and wakes the
    /// runner, unless the store is at `--max-queued-jobs` or
    /// `--max-job-bytes` (then nothing is stored). `query` has been
    /// validated by the caller; it is stored as sent and parsed again when
    /// the job runs. Returns the new job's id and the verdict.
    pub async fn submit(
        &self,
        op: &str,
        query: String,
        input: Bytes,
    ) -> Result<(String, Submit), StoreError> {
        // The store's epoch, then 24 random hex digits.
        let random = uuid::Uuid::new_v4().simple().to_string();
        let epoch = self.inner.store.current_epoch().await?;
        let id = format!("{epoch}{}", &random[..24]);
        let verdict = self
            .inner
            .store
            .submit(NewJob {
                id: id.clone(),
                op: op.to_string(),
                query,
                input,
                created_ms: now_ms(),
            })
            .await?;
        if verdict == Submit::Stored {
            self.inner.wake.notify_one();
        }
        Ok((id, verdict))
    }

    /// Whether `id`, which the store does not know, names a job it accepted
    /// before it lost its data: its epoch is an earlier one of this store.
    pub async fn is_lost(&self, id: &str) -> bool {
        let epoch = id.get(..8).unwrap_or("");
        if epoch == self.inner.store.epoch() {
            return false;
        }
        self.inner.store.was_epoch(epoch).await.unwrap_or(false)
    }

    /// A job's record, for its status document.
    pub async fn get(&self, id: &str) -> Result<Lookup<JobRecord>, StoreError> {
        self.inner.store.get(id).await
    }

    /// A job's result, or why there is none.
    pub async fn result(&self, id: &str) -> Result<ResultLookup, StoreError> {
        self.inner.store.result(id).await
    }

    /// Cancels a queued job or removes a finished one.
    pub async fn remove(&self, id: &str) -> Result<Removed, StoreError> {
        self.inner.store.remove(id).await
    }

    /// Counts by status, or why the store cannot tell.
    pub async fn try_stats(&self) -> Result<JobStats, StoreError> {
        let r = self.inner.store.stats().await;
        self.inner.saw(&r);
        r
    }

    /// The store's health as last seen (by the runner, which touches the
    /// store at least every second or two, or by the last call).
    pub fn health(&self) -> StoreHealth {
        StoreHealth::from_u8(self.inner.health.load(Ordering::Relaxed))
    }

    /// Counts by status and the age of the oldest queued job. Never fails:
    /// when the store cannot be read, `available` is false.
    pub async fn stats(&self) -> JobStats {
        match self.inner.store.stats().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot read job stats: {e}");
                JobStats::default()
            }
        }
    }
}

impl Inner {
    /// Records what a store call says of the store's health. Corruption
    /// is sticky: only a restart (after the operator's repair) clears it.
    fn saw<T>(&self, r: &Result<T, StoreError>) {
        let now = match r {
            Ok(_) => StoreHealth::Up,
            Err(StoreError::Damaged(_)) => StoreHealth::Corrupt,
            Err(_) => StoreHealth::Down,
        };
        let _ = self
            .health
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                (old != StoreHealth::Corrupt as u8).then_some(now as u8)
            });
    }
}

/// `host:pid:random`: readable in a status JSON, unique across restarts
/// (a restarted instance must not inherit its old Redis consumer's claims).
fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &nonce[..6])
}
