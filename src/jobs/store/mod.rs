//! The two job stores behind one enum, so the HTTP layer and the runner are
//! written once. An enum rather than a trait object: there are exactly two
//! stores, and async methods on an enum need no boxing.

pub mod redis;
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use self::redis::RedisStore;
use self::sqlite::SqliteStore;
use super::model::{
    Claimed, Finished, JobRecord, JobStats, Lookup, NewJob, Removed, Requeue, ResultLookup, Submit,
};
use super::{JobsConfig, JobsError};
use crate::metrics::Metrics;

/// Why a store call failed. Every variant means "the store is unavailable"
/// to a client (503), never "your job is wrong"; `Damaged` means it will
/// stay so until the operator acts.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("redis: {0}")]
    Redis(::redis::RedisError),
    #[error("the job store is closed")]
    Closed,
    #[error("unexpected data in the job store: {0}")]
    Unexpected(String),
    /// The store is damaged (a failed integrity check, a corrupt page):
    /// it will not heal on its own; the operator must repair or move it.
    #[error("the job store is damaged: {0}")]
    Damaged(String),
    /// The disk (or Redis memory) holding the store is full.
    #[error("the job store is full: {0}")]
    Full(String),
}

impl From<::redis::RedisError> for StoreError {
    /// Redis out of memory under `noeviction` refuses writes with `OOM`:
    /// the store is full, not down.
    fn from(e: ::redis::RedisError) -> StoreError {
        if e.code() == Some("OOM") {
            StoreError::Full(e.to_string())
        } else {
            StoreError::Redis(e)
        }
    }
}

/// A store's epoch: 8 hex digits made when the store is first used, and
/// the first 8 digits of every job id it hands out. A store that lost its
/// data (Redis restarted without persistence, a database moved aside) gets
/// a new epoch; the old one is remembered, so an id from before answers
/// 410 `job_lost` rather than the 404 of a mistyped id.
pub fn new_epoch() -> String {
    format!("{:08x}", fastrand::u32(..))
}

/// Whether `e` looks like an epoch.
pub fn valid_epoch(e: &str) -> bool {
    e.len() == 8 && e.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The bounds of a store, from the master's flags.
#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    pub max_queued_jobs: u64,
    pub max_job_bytes: u64,
    pub ttl: Duration,
}

/// The message of a job failed as poison.
pub fn poison_message(last: &str) -> String {
    format!(
        "the job was stopped after {} attempts that each killed the worker running it \
         or were cut off ({last}); it is not retried",
        super::model::MAX_CRASHES
    )
}

pub enum Store {
    Sqlite(SqliteStore),
    Redis(Box<RedisStore>),
    /// A store that could not be opened because it is damaged: every call
    /// fails with [`StoreError::Damaged`], and the synchronous API serves
    /// on without it.
    Broken(String),
}

impl Store {
    /// The embedded store under `state_dir`, or Redis with `--jobs-url`.
    /// Returns the store and how many jobs recovery re-queued.
    pub async fn open(
        cfg: &JobsConfig,
        instance: &str,
        metrics: &Arc<Metrics>,
    ) -> Result<(Store, usize), JobsError> {
        let limits = StoreLimits {
            max_queued_jobs: cfg.max_queued_jobs,
            max_job_bytes: cfg.max_job_bytes,
            ttl: cfg.job_ttl,
        };
        match &cfg.jobs_url {
            Some(url) => {
                let s = RedisStore::open(url, instance, cfg.claim_timeout, limits, metrics.clone())
                    .await?;
                Ok((Store::Redis(Box::new(s)), 0))
            }
            None => match SqliteStore::open(&cfg.state_dir, limits).await {
                Ok((s, recovered)) => {
                    if s.reset {
                        metrics.job_store_resets.inc();
                    }
                    Ok((Store::Sqlite(s), recovered))
                }
                Err(JobsError::Damaged { path, reason }) => {
                    tracing::error!(
                        "the job database {} is damaged ({reason}). pixfork serves the \
                         synchronous API; the job routes answer 503 until it is repaired. To \
                         recover: stop pixfork, move {} and its -wal and -shm files aside (a \
                         new, empty store is made at the next start), or salvage it with \
                         `sqlite3 {} .recover`",
                        path.display(),
                        path.display(),
                        path.display()
                    );
                    Ok((
                        Store::Broken(format!("{} is damaged: {reason}", path.display())),
                        0,
                    ))
                }
                Err(e) => Err(e),
            },
        }
    }

    /// The epoch new job ids start with, as last read.
    pub fn epoch(&self) -> String {
        match self {
            Store::Sqlite(s) => s.epoch(),
            Store::Redis(s) => s.epoch(),
            Store::Broken(_) => "00000000".into(),
        }
    }

    /// The epoch for a new job: Redis checks it when due (a store that
    /// lost its data gets a new one before it takes new jobs).
    pub async fn current_epoch(&self) -> Result<String, StoreError> {
        match self {
            Store::Sqlite(s) => Ok(s.epoch()),
            Store::Redis(s) => s.current_epoch().await,
            Store::Broken(r) => Err(Store::broken(r)),
        }
    }

    /// Whether a job id's epoch is one this store had before it lost its
    /// data (so the job was accepted, and is gone).
    pub async fn was_epoch(&self, epoch: &str) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => Ok(s.was_epoch(epoch)),
            Store::Redis(s) => s.was_epoch(epoch).await,
            Store::Broken(r) => Err(Store::broken(r)),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Store::Sqlite(_) | Store::Broken(_) => "sqlite",
            Store::Redis(_) => "redis",
        }
    }

    /// The error every call of a broken store gets.
    fn broken(reason: &str) -> StoreError {
        StoreError::Damaged(reason.to_string())
    }

    /// True when [`Store::claim`] waits for new work itself (Redis blocks in
    /// `XREADGROUP`); the SQLite runner waits for a wake-up instead.
    pub fn claim_blocks(&self) -> bool {
        matches!(self, Store::Redis(_))
    }

    pub async fn submit(&self, job: NewJob) -> Result<Submit, StoreError> {
        match self {
            Store::Sqlite(s) => s.submit(job).await,
            Store::Redis(s) => s.submit(job).await,
            Store::Broken(r) => Err(Store::broken(r)),
        }
    }

    pub async fn claim(&self, instance: &str) -> Result<Option<Claimed>, StoreError> {
        match self {
            Store::Sqlite(s) => s.claim(instance).await,
            Store::Redis(s) => s.claim(instance).await,
            Store::Broken(r) => Err(Store::broken(r)),
        }
    }

    /// How often a running job must prove it is alive (`None`: never, the
    /// store has no other instance that could take it over).
    pub fn heartbeat_every(&self, claim_timeout: Duration) -> Option<Duration> {
        match self {
            Store::Sqlite(_) | Store::Broken(_) => None,
            Store::Redis(_) => Some((claim_timeout / 3).max(Duration::from_millis(100))),
        }
    }

    pub async fn heartbeat(&self, job: &Claimed) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(_) => Ok(true),
            Store::Redis(s) => s.heartbeat(job).await,
            Store::Broken(r) => Err(Store::broken(r)),
        }
    }

    pub async fn finish(&self, job: &Claimed, end: Finished) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.finish(job, end).await,
            Store::Redis(s) => s.finish(job, end).await,
            Store::Broken(r) => Err(Store::broken(r)),
        }
    }

    pub async fn requeue(&self, job: &Claimed, why: Requeue) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => s.requeue(job, why).await,
            Store::Redis(s) => s.requeue(job, why).await,
            Store::Broken(r) => Err(Store::broken(r)),
        }
    }

    pub async fn get(&self, id: &str) -> Result<Lookup<JobRecord>, StoreError> {
        match self {
            Store::Sqlite(s) => s.get(id).await,
            Store::Redis(s) => s.get(id).await,
            Store::Broken(r) => Err(Store::broken(r)),
        }
    }

    pub async fn result(&self, id: &str) -> Result<ResultLookup, StoreError> {
        match self {
            Store::Sqlite(s) => s.result(id).await,
            Store::Redis(s) => s.result(id).await,
            Store::Broken(r) => Err(Store::broken(r)),
        }
    }

    pub async fn remove(&self, id: &str) -> Result<Removed, StoreError> {
        match self {
            Store::Sqlite(s) => s.remove(id).await,
            Store::Redis(s) => s.remove(id).await,
            Store::Broken(r) => Err(Store::broken(r)),
        }
    }

    pub async fn sweep(&self, cutoff_ms: i64, forget_ms: i64) -> Result<usize, StoreError> {
        match self {
            Store::Sqlite(s) => s.sweep(cutoff_ms, forget_ms).await,
            Store::Redis(s) => s.sweep(cutoff_ms, forget_ms).await,
            Store::Broken(r) => Err(Store::broken(r)),
        }
    }

    pub async fn stats(&self) -> Result<JobStats, StoreError> {
        match self {
            Store::Sqlite(s) => s.stats().await,
            Store::Redis(s) => s.stats().await,
            Store::Broken(r) => Err(Store::broken(r)),
        }
    }

    /// Lets go of the store: the SQLite thread closes the database.
    pub async fn close(&self) {
        if let Store::Sqlite(s) = self {
            s.close().await;
        }
    }
}
