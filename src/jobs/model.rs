//! The plain data both stores speak: what a job is, what a lookup finds, and
//! what a finished run leaves behind. No HTTP and no store types in here, so
//! the HTTP layer and the runner work the same over SQLite and Redis.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;

/// Attempts that may kill their worker (or be cut off by a crash of the
/// instance running them) before a job is failed as poison. Two, so that one
/// unlucky crash of an innocent job is retried, and a job that crashes every
/// worker it touches is stopped before it eats the pool.
pub const MAX_CRASHES: u32 = 2;

/// The error code of a job failed because its input kept crashing workers.
pub const POISON_CODE: &str = "job_poison";

/// HTTP status of a poison job's error: what the synchronous route answers
/// for a crashed worker (502), since that is what happened, twice.
pub const POISON_STATUS: u16 = 502;

/// The error code of a job that waited in the queue past `--job-ttl`.
pub const EXPIRED_CODE: &str = "expired";

/// HTTP status of that error: the job is gone for good, not worth retrying
/// as it is.
pub const EXPIRED_STATUS: u16 = 410;

/// The message of a job that expired in the queue.
pub fn expired_message(ttl: Duration) -> String {
    format!(
        "the job waited longer than --job-ttl ({}) without starting; it was not run",
        humantime::format_duration(ttl)
    )
}

/// The error code of a job whose stored input failed its checksum.
pub const INPUT_CORRUPT_CODE: &str = "job_input_corrupt";

/// The error code of a job whose result could not be stored: the disk (or
/// the Redis memory) holding the job store is full. 507 Insufficient
/// Storage says exactly that.
pub const STORE_FULL_CODE: &str = "store_full";
pub const STORE_FULL_STATUS: u16 = 507;

/// The CRC-32 a stored blob carries, checked before it is used or served.
pub fn checksum(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// What a submission found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submit {
    Stored,
    /// `--max-queued-jobs` jobs are waiting already.
    TooManyJobs {
        max: u64,
    },
    /// The store holds `--max-job-bytes` (this input would pass it).
    TooManyBytes {
        max: u64,
    },
}

/// Where a job is in its life. Every accepted job moves
/// `queued -> running -> done|failed`, possibly going back from `running` to
/// `queued` when its attempt was cut off; `done` and `failed` are final.
/// (`expired` exists only as a tombstone inside the stores.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Running,
    Done,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Done => "done",
            Status::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "queued" => Some(Status::Queued),
            "running" => Some(Status::Running),
            "done" => Some(Status::Done),
            "failed" => Some(Status::Failed),
            _ => None,
        }
    }
}

/// Why a job failed, with the status and code the synchronous route would
/// have answered for the same input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// A job as `GET /v1/jobs/{id}` shows it (never the bytes).
#[derive(Debug, Clone)]
pub struct JobRecord {
    pub id: String,
    pub op: String,
    pub status: Status,
    /// Unix milliseconds.
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    /// How many times the job was started (an attempt cut off by a crash
    /// counts; a retry because the pool was momentarily full does not).
    pub attempts: u32,
    /// The instance that ran (or runs) the latest attempt.
    pub instance: Option<String>,
    pub error: Option<JobError>,
}

/// What looking a job up found. `Expired` is kept apart from `Missing` so
/// that a client polling an old id learns it is gone (410), not unknown (404).
#[derive(Debug)]
pub enum Lookup<T> {
    Found(T),
    Expired,
    Missing,
}

/// A job accepted by `POST /v1/jobs/{op}`, before it is stored.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    pub op: String,
    /// The query string as sent; parsed again when the job runs, so the
    /// stored job does not depend on the wire types of one version.
    pub query: String,
    pub input: Bytes,
    pub created_ms: i64,
}

/// A job this instance took from the queue and must finish, requeue or
/// release. `token` proves the claim is still ours: a store refuses to
/// finish a job whose claim was taken over by another instance.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub op: String,
    pub query: String,
    pub input: Bytes,
    pub attempts: u32,
    /// Earlier attempts that killed their worker or were cut off.
    pub crashes: u32,
    pub token: String,
    /// The Redis stream entry that carries the job (empty for SQLite).
    pub entry: String,
}

/// Size of an image result, echoed as `X-Image-*` headers as the sync route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub width: u32,
    pub height: u32,
    pub frames: u32,
}

/// How a run ended, to be written by [`Store::finish`](super::store::Store::finish).
#[derive(Debug, Clone)]
pub enum Finished {
    Done {
        content_type: String,
        dims: Option<Dims>,
        body: Bytes,
    },
    Failed(JobError),
}

impl Finished {
    pub fn status(&self) -> Status {
        match self {
            Finished::Done { .. } => Status::Done,
            Finished::Failed(_) => Status::Failed,
        }
    }
}

/// Why a claimed job goes back to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// Its attempt killed the worker (or timed out): counts toward poison.
    Crash,
    /// This instance is stopping: not the job's fault, the attempt is undone.
    Release,
}

/// What `GET /v1/jobs/{id}/result` finds.
#[derive(Debug)]
pub enum ResultLookup {
    Missing,
    Expired,
    NotReady(Status),
    Failed(JobError),
    Ready {
        content_type: String,
        dims: Option<Dims>,
        body: Bytes,
    },
    /// The stored result fails its checksum: it is never served.
    Corrupt,
}

/// What `DELETE /v1/jobs/{id}` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    Deleted,
    Running,
    Expired,
    Missing,
}

/// Counts of jobs by status, for `/metrics` and `GET /v1/jobs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JobStats {
    /// False when the store could not be read; the counts are then zero.
    pub available: bool,
    pub queued: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
    /// Tombstones of jobs whose results were dropped after `--job-ttl`
    /// (kept for [`TOMBSTONE_KEEP`], so a late poll gets 410, not 404).
    pub expired: u64,
    /// Age of the oldest queued job in seconds (0 when none is queued).
    pub oldest_queued_age_secs: f64,
    /// Bytes the store holds for jobs: inputs of queued and running jobs,
    /// results of done ones (bounded by `--max-job-bytes`).
    pub bytes: u64,
}

/// How long the tombstone of an expired job is kept after its expiry.
pub const TOMBSTONE_KEEP: Duration = Duration::from_secs(24 * 3600);

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Unix milliseconds as an RFC 3339 UTC timestamp (`2024-05-01T12:00:00.123Z`).
pub fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

/// A duration in whole milliseconds, for store arithmetic.
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A job's status document: what `GET /v1/jobs/{id}` answers and what a
/// callback POSTs, built in one place so the two always agree.
pub fn status_json(rec: &JobRecord) -> serde_json::Value {
    let mut v = serde_json::json!({
        "id": rec.id,
        "op": rec.op,
        "status": rec.status.as_str(),
        "created_at": rfc3339(rec.created_ms),
        "attempts": rec.attempts,
        "status_url": format!("/v1/jobs/{}", rec.id),
        "result_url": format!("/v1/jobs/{}/result", rec.id),
    });
    if let Some(t) = rec.started_ms {
        v["started_at"] = serde_json::json!(rfc3339(t));
    }
    if let Some(t) = rec.finished_ms {
        v["finished_at"] = serde_json::json!(rfc3339(t));
    }
    if let Some(i) = &rec.instance {
        v["instance"] = serde_json::json!(i);
    }
    if let Some(e) = &rec.error {
        v["error"] = serde_json::json!({"code": e.code, "message": e.message});
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_millis() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn statuses_round_trip() {
        for s in [
            Status::Queued,
            Status::Running,
            Status::Done,
            Status::Failed,
        ] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("expired"), None);
    }
}
