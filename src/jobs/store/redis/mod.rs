//! The shared store: Redis, for several instances working one queue.
//!
//! - The queue is a stream (`pixfork:jobs:stream`) read through one consumer
//!   group; each instance reads with its own consumer name, so an entry is
//!   delivered to exactly one of them and stays in that consumer's pending
//!   list until it is acknowledged.
//! - A job's metadata is a hash (`pixfork:job:{id}`), its input and result
//!   are plain keys beside it. A finished job reads as expired once
//!   `--job-ttl` has passed; the sweeper then deletes its keys and leaves a
//!   small tombstone key so its id answers 410 instead of 404. (A far later
//!   `PEXPIRE` is only the safety net for a store no instance sweeps.)
//! - `pixfork:jobs:bytes` counts the bytes of inputs and results held; every
//!   script that adds or drops one updates it, so `--max-job-bytes` is
//!   checked in the same step as a submission. Scripts build some key names
//!   from the job id, so a single Redis (or a primary with replicas) is
//!   supported, not Redis Cluster.
//! - Sorted sets per status (`pixfork:jobs:{status}`) make the counts and the
//!   oldest queued job O(log n) to read.
//! - Every state change of a claimed job (claim, heartbeat, finish, requeue)
//!   is one Lua script, atomic on the server, and each one first checks the
//!   claim token stored in the hash. A slow instance whose job was taken
//!   over by another can therefore neither finish it a second time nor
//!   steal it back: a job ends exactly once.
//! - An instance that dies leaves its entries pending; any instance takes
//!   them over with `XAUTOCLAIM` once they have been idle for
//!   `--job-claim-timeout`. A live instance keeps its running jobs' entries
//!   fresh with a heartbeat (`XCLAIM ... JUSTID`), so a long job is not
//!   taken over while it is still being worked on.
//!
//! Two connections: the blocking `XREADGROUP` would stall every other
//! command multiplexed on its connection, so it has its own.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::streams::{StreamAutoClaimReply, StreamId, StreamInfoConsumersReply, StreamReadReply};
use ::redis::{Client, RedisError, Value};
use bytes::Bytes;

mod decode;
mod epoch;
mod scripts;
mod setup;

use self::decode::{dims, entry_job_id, int, record, text};
use self::scripts::{
    bytes_key, gone_key, input_key, job_key, result_key, set_key, stream_key, Scripts,
    CONSUMER_FORGET, GROUP, PREFIX,
};
use self::setup::{check_config, create_group};
use super::{StoreError, StoreLimits};
use crate::jobs::model::{
    expired_message, millis, now_ms, Claimed, Finished, JobError, JobRecord, JobStats, Lookup,
    NewJob, Removed, Requeue, ResultLookup, Status, Submit, EXPIRED_CODE, EXPIRED_STATUS,
    MAX_CRASHES, POISON_CODE, POISON_STATUS, TOMBSTONE_KEEP,
};
use crate::jobs::JobsError;
use crate::metrics::Metrics;

/// How long one `XREADGROUP` waits for a new entry. Short, so a stopping
/// instance is not held up by it.
const READ_BLOCK: Duration = Duration::from_millis(1000);
/// Longest wait for any other reply: inputs and results are up to
/// `--max-job-bytes`, so this is generous.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Where the periodic `XAUTOCLAIM` scan is.
struct Reclaim {
    cursor: String,
    last: Option<Instant>,
}

pub struct RedisStore {
    conn: ConnectionManager,
    reader: ConnectionManager,
    consumer: String,
    claim_timeout: Duration,
    limits: StoreLimits,
    reclaim: Mutex<Reclaim>,
    /// When the byte counter was last recounted.
    recounted: Mutex<Option<Instant>>,
    scripts: Scripts,
    metrics: Arc<Metrics>,
    /// The store's epoch as this instance knows it (empty until read).
    epoch: Mutex<String>,
    /// When the epoch was last checked against Redis.
    epoch_checked: Mutex<Option<Instant>>,
    /// Jobs this instance is running now: an entry of ours whose job is
    /// not among them is a claim whose answer was lost.
    running_here: Mutex<HashSet<String>>,
    /// An answer from Redis was lost (an error after the command may have
    /// run): read this consumer's own pending entries before new ones.
    reread: AtomicBool,
}

/// How often the epoch is checked (a store that lost its data is noticed
/// within this, by any instance that runs).
const EPOCH_EVERY: Duration = Duration::from_secs(1);

/// The replies of the stats pipeline: five counts, the oldest queued job
/// with its score, the byte counter.
type StatsReply = (u64, u64, u64, u64, u64, Vec<(String, f64)>, Option<i64>);

/// How often an instance recounts the byte counter from the jobs' hashes.
const RECOUNT_EVERY: Duration = Duration::from_secs(600);

impl RedisStore {
    /// Connects lazily: a Redis that is down at boot makes job requests
    /// answer 503 until it is back, instead of taking the synchronous API
    /// down with it. A malformed URL is a boot error.
    pub async fn open(
        url: &str,
        consumer: &str,
        claim_timeout: Duration,
        limits: StoreLimits,
        metrics: Arc<Metrics>,
    ) -> Result<RedisStore, JobsError> {
        let client = Client::open(url).map_err(|e| JobsError::RedisUrl {
            reason: e.to_string(),
        })?;
        let base = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(
            client.clone(),
            base.clone().set_response_timeout(Some(RESPONSE_TIMEOUT)),
        )
        .map_err(|e| JobsError::Store(format!("redis client: {e}")))?;
        let reader = ConnectionManager::new_lazy_with_config(
            client,
            base.set_response_timeout(Some(READ_BLOCK + RESPONSE_TIMEOUT)),
        )
        .map_err(|e| JobsError::Store(format!("redis client: {e}")))?;
        let store = RedisStore {
            conn,
            reader,
            consumer: consumer.to_string(),
            claim_timeout,
            limits,
            recounted: Mutex::new(None),
            metrics,
            epoch: Mutex::new(String::new()),
            epoch_checked: Mutex::new(None),
            running_here: Mutex::new(HashSet::new()),
            reread: AtomicBool::new(false),
            reclaim: Mutex::new(Reclaim {
                cursor: "0-0".into(),
                last: None,
            }),
            scripts: Scripts::load(),
        };
        match create_group(store.conn.clone()).await {
            Ok(()) => {
                check_config(store.conn.clone()).await?;
                if let Err(e) = store.check_epoch().await {
                    tracing::warn!("cannot read the job store's epoch yet: {e}");
                }
            }
            Err(e) => tracing::warn!(
                "redis job store not reachable yet ({e}); job requests answer 503 until it is \
                 (its eviction and persistence settings are not checked)"
            ),
        }
        Ok(store)
    }

    /// Runs a read-only pipeline, once more if the connection had dropped
    /// (a Redis restart): reads are safe to repeat, and the client has
    /// reconnected after the first failure, so a poll right after a Redis
    /// restart is answered rather than refused.
    async fn read<T: ::redis::FromRedisValue>(
        &self,
        pipe: &::redis::Pipeline,
    ) -> Result<T, StoreError> {
        match pipe.query_async(&mut self.conn.clone()).await {
            Err(e) if e.is_connection_dropped() || e.is_io_error() => {
                Ok(pipe.query_async(&mut self.conn.clone()).await?)
            }
            r => Ok(r?),
        }
    }

    /// Remembers that a command's answer may have been lost.
    fn lost<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if r.is_err() {
            self.reread.store(true, Ordering::Relaxed);
        }
        r
    }

    /// This consumer's own pending entries whose jobs it does not run now:
    /// delivered to it, but the delivery or the claim's answer was lost.
    async fn own_pending(&self) -> Result<Vec<(String, String)>, StoreError> {
        let entries = self.read_group(&self.conn, 16, None, "0").await?;
        let running = self
            .running_here
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        Ok(entries
            .iter()
            .filter_map(entry_job_id)
            .filter(|(_, id)| !running.contains(id))
            .collect())
    }

    /// Whether this instance is running job `id` now.
    fn runs_here(&self, id: &str) -> bool {
        self.running_here
            .lock()
            .map(|r| r.contains(id))
            .unwrap_or(true)
    }

    /// Forgets a job this instance ran (its end was written, or it is no
    /// longer ours).
    fn done_here(&self, id: &str) {
        if let Ok(mut r) = self.running_here.lock() {
            r.remove(id);
        }
    }

    /// How long a finished job's keys live in Redis: past `--job-ttl` the
    /// job reads as expired and the sweeper deletes them (counting their
    /// bytes out); this expiry is only the safety net for a store no
    /// instance sweeps.
    fn keep(&self) -> Duration {
        self.limits.ttl + TOMBSTONE_KEEP
    }

    /// Whether a job that finished at `finished_ms` is past `--job-ttl`.
    fn past_ttl(&self, finished_ms: Option<i64>) -> bool {
        finished_ms.is_some_and(|f| f + millis(self.limits.ttl) < now_ms())
    }

    /// Checks the limits and writes input, metadata, queue membership and
    /// the stream entry in one script. If its answer is lost, the job is
    /// removed again (unless an instance already took it), so a 503 leaves
    /// no job behind.
    pub async fn submit(&self, job: NewJob) -> Result<Submit, StoreError> {
        let r: Result<String, RedisError> = self
            .scripts
            .submit
            .key(job_key(&job.id))
            .key(input_key(&job.id))
            .key(set_key("queued"))
            .key(stream_key())
            .key(bytes_key())
            .arg(&job.id)
            .arg(&job.op)
            .arg(&job.query)
            .arg(job.created_ms)
            .arg(&job.input[..])
            .arg(self.limits.max_queued_jobs)
            .arg(self.limits.max_job_bytes)
            .invoke_async(&mut self.conn.clone())
            .await;
        match r {
            Ok(verdict) => Ok(match verdict.as_str() {
                "too_many_jobs" => Submit::TooManyJobs {
                    max: self.limits.max_queued_jobs,
                },
                "too_many_bytes" => Submit::TooManyBytes {
                    max: self.limits.max_job_bytes,
                },
                _ => Submit::Stored,
            }),
            Err(e) => {
                if let Err(c) = self.remove(&job.id).await {
                    tracing::warn!(job_id = %job.id, "could not clean up a failed submission: {c}");
                }
                Err(e.into())
            }
        }
    }

    /// Takes one job: first, when due, one entry left pending by a silent
    /// instance (`XAUTOCLAIM`), else a new entry (`XREADGROUP`, blocking up
    /// to a second). Called only when a job slot is free, so an instance
    /// never holds entries it cannot run.
    pub async fn claim(&self, instance: &str) -> Result<Option<Claimed>, StoreError> {
        self.current_epoch().await?;
        // An answer was lost: this consumer's own pending entries first (a
        // delivery or a claim whose reply never came), before new ones,
        // rather than waiting for another instance to take them over.
        if self.reread.swap(false, Ordering::Relaxed) {
            let pending = self.lost(self.own_pending().await)?;
            for (entry, id) in pending {
                tracing::info!(job_id = %id, entry = %entry, "taking back a job whose delivery or claim answer was lost");
                if let Some(job) = self.lost(self.claim_entry(&entry, &id, instance).await)? {
                    return Ok(Some(job));
                }
            }
        }
        // Entries that turn out to be cancelled or finished are dropped and
        // the next one is tried; a bounded number per call.
        for _ in 0..16 {
            let entry = match self.lost(self.reclaim_one().await)? {
                Some(e) => Some(e),
                None => self.lost(self.read_one().await)?,
            };
            let Some((entry, id)) = entry else {
                return Ok(None);
            };
            if let Some(job) = self.lost(self.claim_entry(&entry, &id, instance).await)? {
                return Ok(Some(job));
            }
        }
        Ok(None)
    }

    /// One `XAUTOCLAIM` step when due: every half claim timeout, and again
    /// at once after it found something.
    async fn reclaim_one(&self) -> Result<Option<(String, String)>, StoreError> {
        let every = (self.claim_timeout / 2).max(Duration::from_millis(200));
        let cursor = {
            let Ok(r) = self.reclaim.lock() else {
                return Ok(None);
            };
            if r.last.is_some_and(|t| t.elapsed() < every) {
                return Ok(None);
            }
            r.cursor.clone()
        };
        let reply: StreamAutoClaimReply = ::redis::cmd("XAUTOCLAIM")
            .arg(stream_key())
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(millis(self.claim_timeout))
            .arg(&cursor)
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.group_lost(e))?;
        let found = self.first_job(reply.claimed).await;
        if let Ok(mut r) = self.reclaim.lock() {
            r.cursor = reply.next_stream_id.clone();
            // Keep scanning while the scan has not wrapped or found work.
            let more = found.is_some() || reply.next_stream_id != "0-0";
            r.last = if more { None } else { Some(Instant::now()) };
        }
        Ok(found)
    }

    async fn read_one(&self) -> Result<Option<(String, String)>, StoreError> {
        let entries = self
            .read_group(&self.reader, 1, Some(READ_BLOCK), ">")
            .await?;
        Ok(self.first_job(entries).await)
    }

    /// `XREADGROUP` for this consumer: up to `count` entries after `from`
    /// (`0`: its own pending ones; `>`: new ones), waiting up to `block`.
    async fn read_group(
        &self,
        conn: &ConnectionManager,
        count: usize,
        block: Option<Duration>,
        from: &str,
    ) -> Result<Vec<StreamId>, StoreError> {
        let mut cmd = ::redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(millis(block));
        }
        let reply: Option<StreamReadReply> = cmd
            .arg("STREAMS")
            .arg(stream_key())
            .arg(from)
            .query_async(&mut conn.clone())
            .await
            .map_err(|e| self.group_lost(e))?;
        Ok(reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default())
    }

    /// The first entry that names a job. Entries that do not (written by
    /// something else) are acknowledged and deleted, or they would be
    /// reclaimed forever.
    async fn first_job(&self, entries: Vec<StreamId>) -> Option<(String, String)> {
        let mut found = None;
        for e in entries {
            match entry_job_id(&e) {
                Some(job) if found.is_none() => found = Some(job),
                Some(_) => {}
                None => {
                    tracing::warn!(entry = %e.id, "dropping a job stream entry without a job id");
                    let r: Result<(), RedisError> = ::redis::pipe()
                        .cmd("XACK")
                        .arg(stream_key())
                        .arg(GROUP)
                        .arg(&e.id)
                        .ignore()
                        .cmd("XDEL")
                        .arg(stream_key())
                        .arg(&e.id)
                        .ignore()
                        .query_async(&mut self.conn.clone())
                        .await;
                    if let Err(err) = r {
                        tracing::warn!("cannot drop stream entry {}: {err}", e.id);
                    }
                }
            }
        }
        found
    }

    /// Redis lost the group (restarted without persistence, or flushed):
    /// recreate it in the background; the next read finds it.
    fn group_lost(&self, e: RedisError) -> StoreError {
        if e.code() == Some("NOGROUP") {
            let conn = self.conn.clone();
            tokio::spawn(async move {
                if let Err(e) = create_group(conn).await {
                    tracing::warn!("cannot recreate the job consumer group: {e}");
                }
            });
        }
        e.into()
    }

    async fn claim_entry(
        &self,
        entry: &str,
        id: &str,
        instance: &str,
    ) -> Result<Option<Claimed>, StoreError> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let reply: Value = self
            .scripts
            .claim
            .key(job_key(id))
            .key(stream_key())
            .key(set_key("queued"))
            .key(set_key("running"))
            .key(set_key("failed"))
            .key(input_key(id))
            .key(gone_key(id))
            .key(bytes_key())
            .arg(GROUP)
            .arg(entry)
            .arg(&token)
            .arg(instance)
            .arg(now_ms())
            .arg(MAX_CRASHES)
            .arg(super::poison_message(
                "it was running on an instance that stopped answering",
            ))
            .arg(millis(self.keep()))
            .arg(millis(self.keep()))
            .arg(id)
            .arg(POISON_STATUS)
            .arg(POISON_CODE)
            .arg(if self.runs_here(id) { "0" } else { "1" })
            .invoke_async(&mut self.conn.clone())
            .await?;
        let Value::Array(items) = reply else {
            return Err(StoreError::Unexpected(format!(
                "claim script answered {reply:?}"
            )));
        };
        let mut it = items.into_iter();
        let verdict = it.next().and_then(|v| text(&v)).unwrap_or_default();
        match verdict.as_str() {
            "run" => {}
            "resume" => {
                self.metrics.job_lost_replies.inc();
                tracing::info!(job_id = %id, "resuming a job whose claim answer was lost (no crash counted)");
            }
            "takeover" => {}
            "poisoned" => {
                tracing::warn!(job_id = %id, "failed a job as poison: its attempts kept dying");
                return Ok(None);
            }
            _ => return Ok(None),
        }
        let op = it.next().and_then(|v| text(&v)).unwrap_or_default();
        let query = it.next().and_then(|v| text(&v)).unwrap_or_default();
        let attempts = it.next().and_then(|v| int(&v)).unwrap_or(1);
        let crashes = it.next().and_then(|v| int(&v)).unwrap_or(0);
        let input = match it.next() {
            Some(Value::BulkString(b)) => Bytes::from(b),
            _ => Bytes::new(),
        };
        if verdict == "takeover" {
            let previous = it.next().and_then(|v| text(&v)).unwrap_or_default();
            tracing::warn!(job_id = %id, entry = %entry, previous = %previous, "took over a job from an instance that went silent");
        }
        if let Ok(mut r) = self.running_here.lock() {
            r.insert(id.to_string());
        }
        Ok(Some(Claimed {
            id: id.to_string(),
            op,
            query,
            input,
            attempts: u32::try_from(attempts).unwrap_or(1),
            crashes: u32::try_from(crashes).unwrap_or(0),
            token,
            entry: entry.to_string(),
        }))
    }

    /// Refreshes the claim of a running job; false when it was taken over.
    pub async fn heartbeat(&self, job: &Claimed) -> Result<bool, StoreError> {
        let n: i64 = self
            .scripts
            .heartbeat
            .key(job_key(&job.id))
            .key(stream_key())
            .arg(&job.token)
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(&job.entry)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(n == 1)
    }

    pub async fn finish(&self, job: &Claimed, end: Finished) -> Result<bool, StoreError> {
        let status = end.status().as_str();
        let (err, content_type, dims, body) = match end {
            Finished::Done {
                content_type,
                dims,
                body,
            } => (None, content_type, dims, body),
            Finished::Failed(e) => (Some(e), String::new(), None, Bytes::new()),
        };
        let n: i64 = self
            .scripts
            .finish
            .key(job_key(&job.id))
            .key(stream_key())
            .key(set_key("running"))
            .key(set_key(status))
            .key(input_key(&job.id))
            .key(result_key(&job.id))
            .key(gone_key(&job.id))
            .key(bytes_key())
            .arg(&job.token)
            .arg(GROUP)
            .arg(&job.entry)
            .arg(&job.id)
            .arg(now_ms())
            .arg(millis(self.keep()).max(1))
            .arg(millis(self.keep()))
            .arg(status)
            .arg(&body[..])
            .arg(err.as_ref().map_or(String::new(), |e| e.status.to_string()))
            .arg(err.as_ref().map_or("", |e| e.code.as_str()))
            .arg(err.as_ref().map_or("", |e| e.message.as_str()))
            .arg(content_type)
            .arg(dims.map_or(String::new(), |d| d.width.to_string()))
            .arg(dims.map_or(String::new(), |d| d.height.to_string()))
            .arg(dims.map_or(String::new(), |d| d.frames.to_string()))
            .invoke_async(&mut self.conn.clone())
            .await?;
        self.done_here(&job.id);
        Ok(n == 1)
    }

    pub async fn requeue(&self, job: &Claimed, why: Requeue) -> Result<bool, StoreError> {
        let n: i64 = self
            .scripts
            .requeue
            .key(job_key(&job.id))
            .key(stream_key())
            .key(set_key("running"))
            .key(set_key("queued"))
            .arg(&job.token)
            .arg(GROUP)
            .arg(&job.entry)
            .arg(&job.id)
            .arg(match why {
                Requeue::Crash => "crash",
                Requeue::Release => "release",
            })
            .invoke_async(&mut self.conn.clone())
            .await?;
        self.done_here(&job.id);
        Ok(n == 1)
    }

    pub async fn get(&self, id: &str) -> Result<Lookup<JobRecord>, StoreError> {
        let (hash, gone): (HashMap<String, String>, bool) = self
            .read(
                ::redis::pipe()
                    .atomic()
                    .cmd("HGETALL")
                    .arg(job_key(id))
                    .cmd("EXISTS")
                    .arg(gone_key(id)),
            )
            .await?;
        if hash.is_empty() {
            return Ok(if gone {
                Lookup::Expired
            } else {
                Lookup::Missing
            });
        }
        Ok(match record(id, &hash) {
            Some(rec) if !self.past_ttl(rec.finished_ms) => Lookup::Found(rec),
            _ => Lookup::Expired,
        })
    }

    pub async fn result(&self, id: &str) -> Result<ResultLookup, StoreError> {
        let (hash, body, gone): (HashMap<String, String>, Option<Vec<u8>>, bool) = self
            .read(
                ::redis::pipe()
                    .atomic()
                    .cmd("HGETALL")
                    .arg(job_key(id))
                    .cmd("GET")
                    .arg(result_key(id))
                    .cmd("EXISTS")
                    .arg(gone_key(id)),
            )
            .await?;
        if hash.is_empty() {
            return Ok(if gone {
                ResultLookup::Expired
            } else {
                ResultLookup::Missing
            });
        }
        let Some(rec) = record(id, &hash).filter(|r| !self.past_ttl(r.finished_ms)) else {
            return Ok(ResultLookup::Expired);
        };
        Ok(match rec.status {
            Status::Failed => ResultLookup::Failed(rec.error.unwrap_or(JobError {
                status: 500,
                code: "internal_error".into(),
                message: "the job failed".into(),
            })),
            Status::Done => match body {
                // The result key expires with the hash; between the two a
                // reader may see one without the other.
                None => ResultLookup::Expired,
                Some(body) => ResultLookup::Ready {
                    content_type: hash.get("content_type").cloned().unwrap_or_default(),
                    dims: dims(&hash),
                    body: Bytes::from(body),
                },
            },
            s => ResultLookup::NotReady(s),
        })
    }

    pub async fn remove(&self, id: &str) -> Result<Removed, StoreError> {
        let verdict: String = self
            .scripts
            .remove
            .key(job_key(id))
            .key(input_key(id))
            .key(result_key(id))
            .key(gone_key(id))
            .key(set_key("queued"))
            .key(set_key("done"))
            .key(set_key("failed"))
            .key(bytes_key())
            .arg(id)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match verdict.as_str() {
            "deleted" => Removed::Deleted,
            "running" => Removed::Running,
            "expired" => Removed::Expired,
            _ => Removed::Missing,
        })
    }

    pub async fn sweep(&self, cutoff_ms: i64, forget_ms: i64) -> Result<usize, StoreError> {
        let n: i64 = self
            .scripts
            .sweep
            .key(set_key("done"))
            .key(set_key("failed"))
            .key(set_key("expired"))
            .key(set_key("queued"))
            .key(bytes_key())
            .arg(cutoff_ms)
            .arg(now_ms())
            .arg(forget_ms)
            .arg(format!("{PREFIX}:job:"))
            .arg(millis(TOMBSTONE_KEEP))
            .arg(EXPIRED_STATUS)
            .arg(EXPIRED_CODE)
            .arg(expired_message(self.limits.ttl))
            .arg(millis(self.keep()))
            .invoke_async(&mut self.conn.clone())
            .await?;
        self.forget_dead_consumers().await?;
        self.recount_when_due().await?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Recounts the byte counter every [`RECOUNT_EVERY`] (and once at the
    /// first sweep).
    async fn recount_when_due(&self) -> Result<(), StoreError> {
        let due = self
            .recounted
            .lock()
            .map(|r| r.is_none_or(|t| t.elapsed() >= RECOUNT_EVERY))
            .unwrap_or(false);
        if !due {
            return Ok(());
        }
        let total: i64 = self
            .scripts
            .recount
            .key(set_key("queued"))
            .key(set_key("running"))
            .key(set_key("done"))
            .key(bytes_key())
            .arg(format!("{PREFIX}:job:"))
            .invoke_async(&mut self.conn.clone())
            .await?;
        if let Ok(mut r) = self.recounted.lock() {
            *r = Some(Instant::now());
        }
        tracing::debug!(bytes = total, "recounted the job store's bytes");
        Ok(())
    }

    async fn forget_dead_consumers(&self) -> Result<(), StoreError> {
        let info: StreamInfoConsumersReply = ::redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(stream_key())
            .arg(GROUP)
            .query_async(&mut self.conn.clone())
            .await?;
        let idle_limit = CONSUMER_FORGET.max(self.claim_timeout * 10);
        for c in info.consumers {
            let idle = Duration::from_millis(u64::try_from(c.idle).unwrap_or(0));
            if c.name == self.consumer || c.pending > 0 || idle < idle_limit {
                continue;
            }
            let n: i64 = self
                .scripts
                .forget_consumer
                .key(stream_key())
                .arg(GROUP)
                .arg(&c.name)
                .invoke_async(&mut self.conn.clone())
                .await?;
            if n >= 0 {
                tracing::info!(consumer = %c.name, "forgot the job consumer of a gone instance");
            }
        }
        Ok(())
    }

    pub async fn stats(&self) -> Result<JobStats, StoreError> {
        let (queued, running, done, failed, expired, oldest, bytes): StatsReply = self
            .read(
                ::redis::pipe()
                    .atomic()
                    .cmd("ZCARD")
                    .arg(set_key("queued"))
                    .cmd("ZCARD")
                    .arg(set_key("running"))
                    .cmd("ZCARD")
                    .arg(set_key("done"))
                    .cmd("ZCARD")
                    .arg(set_key("failed"))
                    .cmd("ZCARD")
                    .arg(set_key("expired"))
                    .cmd("ZRANGE")
                    .arg(set_key("queued"))
                    .arg(0)
                    .arg(0)
                    .arg("WITHSCORES")
                    .cmd("GET")
                    .arg(bytes_key()),
            )
            .await?;
        let oldest_queued_age_secs = oldest.first().map_or(0.0, |(_, created)| {
            ((now_ms() as f64 - created) / 1000.0).max(0.0)
        });
        Ok(JobStats {
            available: true,
            queued,
            running,
            done,
            failed,
            expired,
            oldest_queued_age_secs,
            bytes: bytes.map_or(0, |b| u64::try_from(b).unwrap_or(0)),
        })
    }
}
