//! The embedded store: one SQLite file in WAL mode under `--state-dir`.
//!
//! One dedicated thread owns the connection and runs every call in order
//! (closures sent over a channel, answers back over oneshots), so a slow
//! disk never blocks a tokio worker thread, and SQLite's single-writer rule
//! costs nothing: there is only one writer. `synchronous = FULL` makes every
//! commit durable before it returns, which is what lets the front answer 202
//! only after the job is on disk.
//!
//! A lock file (`flock`) keeps a second instance off the same state dir:
//! recovery re-queues every `running` row, which is only right when the
//! process that was running them is gone.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use bytes::Bytes;
use nix::fcntl::{Flock, FlockArg};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::oneshot;

use super::{StoreError, StoreLimits};
use crate::jobs::model::{
    checksum, expired_message, now_ms, Claimed, Dims, Finished, JobError, JobRecord, JobStats,
    Lookup, NewJob, Removed, Requeue, ResultLookup, Status, Submit, EXPIRED_CODE, EXPIRED_STATUS,
    INPUT_CORRUPT_CODE, MAX_CRASHES, POISON_CODE, POISON_STATUS,
};
use crate::jobs::JobsError;

/// Database file name inside the state dir.
pub const DB_FILE: &str = "jobs.sqlite3";
const LOCK_FILE: &str = "jobs.lock";
/// Every store epoch this state dir has had, one a line: outside the
/// database, so that a database that was lost or replaced is recognised
/// (its jobs' ids answer 410 `job_lost`, not 404).
const EPOCHS_FILE: &str = "jobs.epochs";
/// Schema version in `PRAGMA user_version`; a newer file is refused rather
/// than misread. 2 added the blobs' checksums (rows from version 1 have
/// none, and are served unchecked).
const SCHEMA_VERSION: i64 = 2;

/// How often the sweeper runs `PRAGMA quick_check` (also run at start). It
/// reads every page, so it is not run more often.
const CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Blobs are the last columns so that reading a row's small fields never
/// walks a blob's overflow pages. `expired` rows are tombstones: no blobs,
/// kept so that their id answers 410 instead of 404.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT    NOT NULL UNIQUE,
    op            TEXT    NOT NULL,
    query         TEXT    NOT NULL,
    status        TEXT    NOT NULL
                  CHECK (status IN ('queued', 'running', 'done', 'failed', 'expired')),
    created_ms    INTEGER NOT NULL,
    started_ms    INTEGER,
    finished_ms   INTEGER,
    expired_ms    INTEGER,
    attempts      INTEGER NOT NULL DEFAULT 0,
    crashes       INTEGER NOT NULL DEFAULT 0,
    token         TEXT,
    instance      TEXT,
    error_status  INTEGER,
    error_code    TEXT,
    error_message TEXT,
    content_type  TEXT,
    width         INTEGER,
    height        INTEGER,
    frames        INTEGER,
    input_crc     INTEGER,
    result_crc    INTEGER,
    input         BLOB,
    result        BLOB
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, seq);
CREATE INDEX IF NOT EXISTS jobs_by_finish ON jobs (status, finished_ms);
";

type Call = Box<dyn FnOnce(&mut Connection) + Send>;

enum Msg {
    Call(Call),
    /// Close the database, then answer.
    Close(oneshot::Sender<()>),
}

/// Handle to the database thread; cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    tx: mpsc::Sender<Msg>,
    limits: StoreLimits,
    /// When `quick_check` last ran (it runs at open).
    checked: std::sync::Arc<std::sync::Mutex<std::time::Instant>>,
    /// This database's epoch (see [`super::Epochs`]).
    epoch: String,
    /// Epochs of databases this state dir had before.
    past: Vec<String>,
    /// Opening found the database lost or replaced.
    pub reset: bool,
}

impl SqliteStore {
    /// Creates the state dir, takes its lock, opens (or creates) the
    /// database and recovers from an unclean stop: every job left `running`
    /// goes back to `queued` with one more crash counted (and is failed as
    /// poison when that makes [`MAX_CRASHES`]). Returns the store and how
    /// many jobs were re-queued.
    pub async fn open(dir: &Path, limits: StoreLimits) -> Result<(SqliteStore, usize), JobsError> {
        let (tx, rx) = mpsc::channel::<Msg>();
        let (ready_tx, ready_rx) = oneshot::channel();
        let dir = dir.to_path_buf();
        std::thread::Builder::new()
            .name("pixfork-jobs-db".into())
            .spawn(move || {
                let (conn, lock, opened) = match open_db(&dir) {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(opened));
                serve(conn, lock, rx);
            })
            .map_err(|e| JobsError::Store(format!("cannot start the database thread: {e}")))?;
        let opened = ready_rx
            .await
            .map_err(|_| JobsError::Store("the database thread stopped while opening".into()))??;
        let checked = std::sync::Arc::new(std::sync::Mutex::new(std::time::Instant::now()));
        Ok((
            SqliteStore {
                tx,
                limits,
                checked,
                epoch: opened.epoch,
                past: opened.past,
                reset: opened.reset,
            },
            opened.recovered,
        ))
    }

    /// Runs `f` on the database thread.
    async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let call: Call = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        self.tx
            .send(Msg::Call(call))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?.map_err(classify)
    }

    /// Stores a new job in one transaction, committed (and fsynced) before
    /// this returns, unless the store holds its limit of queued jobs or of
    /// bytes: checked in the same transaction, so the limit holds exactly.
    pub async fn submit(&self, job: NewJob) -> Result<Submit, StoreError> {
        let limits = self.limits;
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (queued, bytes) = held(&tx)?;
            if queued >= limits.max_queued_jobs {
                return Ok(Submit::TooManyJobs {
                    max: limits.max_queued_jobs,
                });
            }
            if bytes.saturating_add(job.input.len() as u64) > limits.max_job_bytes {
                return Ok(Submit::TooManyBytes {
                    max: limits.max_job_bytes,
                });
            }
            tx.execute(
                "INSERT INTO jobs (id, op, query, status, created_ms, input, input_crc)
                 VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?6)",
                params![
                    job.id,
                    job.op,
                    job.query,
                    job.created_ms,
                    &job.input[..],
                    checksum(&job.input)
                ],
            )?;
            tx.commit()?;
            Ok(Submit::Stored)
        })
        .await
    }

    /// Takes the oldest queued job and marks it running under a new token.
    /// A job whose stored input fails its checksum is failed on the spot
    /// (`job_input_corrupt`) and the next one is taken.
    pub async fn claim(&self, instance: &str) -> Result<Option<Claimed>, StoreError> {
        let instance = instance.to_string();
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let claimed = loop {
                let row = tx
                    .query_row(
                        "SELECT seq, id, op, query, attempts, crashes, input, input_crc FROM jobs
                         WHERE status = 'queued' ORDER BY seq LIMIT 1",
                        [],
                        |r| {
                            Ok((
                                r.get::<_, i64>(0)?,
                                r.get::<_, String>(1)?,
                                r.get::<_, String>(2)?,
                                r.get::<_, String>(3)?,
                                r.get::<_, u32>(4)?,
                                r.get::<_, u32>(5)?,
                                r.get::<_, Option<Vec<u8>>>(6)?,
                                r.get::<_, Option<u32>>(7)?,
                            ))
                        },
                    )
                    .optional()?;
                let Some((seq, id, op, query, attempts, crashes, input, crc)) = row else {
                    break None;
                };
                let input = input.unwrap_or_default();
                if crc.is_some_and(|c| c != checksum(&input)) {
                    tracing::error!(job_id = %id, "the stored input of a job fails its checksum; the job is failed");
                    tx.execute(
                        "UPDATE jobs SET status = 'failed', finished_ms = ?2, input = NULL,
                                error_status = 500, error_code = ?3, error_message = ?4
                         WHERE seq = ?1",
                        params![
                            seq,
                            now_ms(),
                            INPUT_CORRUPT_CODE,
                            "the job's stored input is damaged (it fails its checksum); it was not run"
                        ],
                    )?;
                    continue;
                }
                let token = uuid::Uuid::new_v4().simple().to_string();
                tx.execute(
                    "UPDATE jobs SET status = 'running', attempts = attempts + 1,
                            started_ms = ?2, token = ?3, instance = ?4
                     WHERE seq = ?1",
                    params![seq, now_ms(), token, instance],
                )?;
                break Some(Claimed {
                    id,
                    op,
                    query,
                    input: Bytes::from(input),
                    attempts: attempts + 1,
                    crashes,
                    token,
                    entry: String::new(),
                });
            };
            tx.commit()?;
            Ok(claimed)
        })
        .await
    }

    /// Writes the end of a run, unless the claim is no longer ours. Returns
    /// whether it was written: the `status = 'running' AND token = ?` guard
    /// is what makes a job end exactly once.
    pub async fn finish(&self, job: &Claimed, end: Finished) -> Result<bool, StoreError> {
        let id = job.id.clone();
        let token = job.token.clone();
        self.call(move |conn| {
            let status = end.status().as_str();
            let (err, content_type, dims, body) = match end {
                Finished::Done {
                    content_type,
                    dims,
                    body,
                } => (None, Some(content_type), dims, Some(body)),
                Finished::Failed(e) => (Some(e), None, None, None),
            };
            let n = conn.execute(
                "UPDATE jobs SET status = ?3, finished_ms = ?4, token = NULL,
                        error_status = ?5, error_code = ?6, error_message = ?7,
                        content_type = ?8, width = ?9, height = ?10, frames = ?11,
                        result = ?12, result_crc = ?13, input = NULL
                 WHERE id = ?1 AND token = ?2 AND status = 'running'",
                params![
                    id,
                    token,
                    status,
                    now_ms(),
                    err.as_ref().map(|e| e.status),
                    err.as_ref().map(|e| e.code.as_str()),
                    err.as_ref().map(|e| e.message.as_str()),
                    content_type,
                    dims.map(|d| d.width),
                    dims.map(|d| d.height),
                    dims.map(|d| d.frames),
                    body.as_deref(),
                    body.as_deref().map(checksum),
                ],
            )?;
            Ok(n == 1)
        })
        .await
    }

    /// Puts a claimed job back in the queue (see [`Requeue`]).
    pub async fn requeue(&self, job: &Claimed, why: Requeue) -> Result<bool, StoreError> {
        let id = job.id.clone();
        let token = job.token.clone();
        self.call(move |conn| {
            let (crash, undo) = match why {
                Requeue::Crash => (1, 0),
                Requeue::Release => (0, 1),
            };
            let n = conn.execute(
                "UPDATE jobs SET status = 'queued', token = NULL,
                        crashes = crashes + ?3, attempts = attempts - ?4
                 WHERE id = ?1 AND token = ?2 AND status = 'running'",
                params![id, token, crash, undo],
            )?;
            Ok(n == 1)
        })
        .await
    }

    pub async fn get(&self, id: &str) -> Result<Lookup<JobRecord>, StoreError> {
        let id = id.to_string();
        self.call(move |conn| {
            let row = conn
                .query_row(
                    "SELECT id, op, status, created_ms, started_ms, finished_ms, attempts,
                            instance, error_status, error_code, error_message
                     FROM jobs WHERE id = ?1",
                    [&id],
                    |r| {
                        let raw: String = r.get(2)?;
                        let error = match r.get::<_, Option<u16>>(8)? {
                            Some(status) => Some(JobError {
                                status,
                                code: r.get::<_, Option<String>>(9)?.unwrap_or_default(),
                                message: r.get::<_, Option<String>>(10)?.unwrap_or_default(),
                            }),
                            None => None,
                        };
                        let Some(status) = Status::parse(&raw) else {
                            return Ok(None);
                        };
                        Ok(Some(JobRecord {
                            id: r.get(0)?,
                            op: r.get(1)?,
                            status,
                            created_ms: r.get(3)?,
                            started_ms: r.get(4)?,
                            finished_ms: r.get(5)?,
                            attempts: r.get(6)?,
                            instance: r.get(7)?,
                            error,
                        }))
                    },
                )
                .optional()?;
            Ok(match row {
                None => Lookup::Missing,
                Some(None) => Lookup::Expired,
                Some(Some(rec)) => Lookup::Found(rec),
            })
        })
        .await
    }

    pub async fn result(&self, id: &str) -> Result<ResultLookup, StoreError> {
        let id = id.to_string();
        self.call(move |conn| {
            let row = conn
                .query_row(
                    "SELECT status, error_status, error_code, error_message, content_type,
                            width, height, frames, result, result_crc
                     FROM jobs WHERE id = ?1",
                    [&id],
                    |r| {
                        let raw: String = r.get(0)?;
                        Ok(match Status::parse(&raw) {
                            None => ResultLookup::Expired,
                            Some(Status::Failed) => ResultLookup::Failed(JobError {
                                status: r.get::<_, Option<u16>>(1)?.unwrap_or(500),
                                code: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                                message: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                            }),
                            Some(Status::Done) => {
                                let dims = match (
                                    r.get::<_, Option<u32>>(5)?,
                                    r.get::<_, Option<u32>>(6)?,
                                    r.get::<_, Option<u32>>(7)?,
                                ) {
                                    (Some(width), Some(height), Some(frames)) => Some(Dims {
                                        width,
                                        height,
                                        frames,
                                    }),
                                    _ => None,
                                };
                                let body = r.get::<_, Option<Vec<u8>>>(8)?.unwrap_or_default();
                                match r.get::<_, Option<u32>>(9)? {
                                    Some(crc) if crc != checksum(&body) => ResultLookup::Corrupt,
                                    _ => ResultLookup::Ready {
                                        content_type: r
                                            .get::<_, Option<String>>(4)?
                                            .unwrap_or_default(),
                                        dims,
                                        body: Bytes::from(body),
                                    },
                                }
                            }
                            Some(s) => ResultLookup::NotReady(s),
                        })
                    },
                )
                .optional()?;
            Ok(row.unwrap_or(ResultLookup::Missing))
        })
        .await
    }

    /// Cancels a queued job or removes a finished one; a running one stays.
    pub async fn remove(&self, id: &str) -> Result<Removed, StoreError> {
        let id = id.to_string();
        self.call(move |conn| {
            let status: Option<String> = conn
                .query_row("SELECT status FROM jobs WHERE id = ?1", [&id], |r| r.get(0))
                .optional()?;
            Ok(match status.as_deref() {
                None => Removed::Missing,
                Some("expired") => Removed::Expired,
                Some("running") => Removed::Running,
                Some(_) => {
                    // The guard repeats the check: nothing runs between the
                    // two statements (one thread), but the SQL says it alone.
                    let n = conn.execute(
                        "DELETE FROM jobs WHERE id = ?1 AND status IN ('queued', 'done', 'failed')",
                        [&id],
                    )?;
                    if n == 1 {
                        Removed::Deleted
                    } else {
                        Removed::Running
                    }
                }
            })
        })
        .await
    }

    /// Fails jobs still queued since before `cutoff_ms` (code `expired`),
    /// turns jobs finished before it into tombstones (blobs dropped) and
    /// forgets tombstones older than `forget_ms`. Returns how many jobs
    /// expired, both kinds.
    pub async fn sweep(&self, cutoff_ms: i64, forget_ms: i64) -> Result<usize, StoreError> {
        let due = self
            .checked
            .lock()
            .map(|t| t.elapsed() >= CHECK_EVERY)
            .unwrap_or(false);
        if due {
            if let Ok(mut t) = self.checked.lock() {
                *t = std::time::Instant::now();
            }
            if let Err(found) = self.call(|conn| quick_check(conn)).await? {
                return Err(StoreError::Damaged(format!("integrity check: {found}")));
            }
        }
        let ttl = self.limits.ttl;
        self.call(move |conn| {
            let stale = conn.execute(
                "UPDATE jobs SET status = 'failed', finished_ms = ?2, input = NULL,
                        error_status = ?3, error_code = ?4, error_message = ?5
                 WHERE status = 'queued' AND created_ms < ?1",
                params![
                    cutoff_ms,
                    now_ms(),
                    EXPIRED_STATUS,
                    EXPIRED_CODE,
                    expired_message(ttl)
                ],
            )?;
            let expired = conn.execute(
                "UPDATE jobs SET status = 'expired', expired_ms = ?2, input = NULL, result = NULL
                 WHERE status IN ('done', 'failed') AND finished_ms < ?1",
                params![cutoff_ms, now_ms()],
            )?;
            conn.execute(
                "DELETE FROM jobs WHERE status = 'expired' AND expired_ms < ?1",
                [forget_ms],
            )?;
            // Hand the freed pages back to the file system a little at a time.
            conn.execute_batch("PRAGMA incremental_vacuum(2048);")?;
            Ok(stale + expired)
        })
        .await
    }

    pub async fn stats(&self) -> Result<JobStats, StoreError> {
        self.call(|conn| {
            let mut stats = JobStats {
                available: true,
                ..JobStats::default()
            };
            let mut stmt =
                conn.prepare_cached("SELECT status, COUNT(*) FROM jobs GROUP BY status")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (status, n) = row?;
                let n = u64::try_from(n).unwrap_or(0);
                match status.as_str() {
                    "queued" => stats.queued = n,
                    "running" => stats.running = n,
                    "done" => stats.done = n,
                    "failed" => stats.failed = n,
                    "expired" => stats.expired = n,
                    _ => {}
                }
            }
            let oldest: Option<i64> = conn
                .query_row(
                    "SELECT created_ms FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(created) = oldest {
                stats.oldest_queued_age_secs = (now_ms() - created).max(0) as f64 / 1000.0;
            }
            stats.bytes = held(conn)?.1;
            Ok(stats)
        })
        .await
    }

    /// This database's epoch, the first 8 hex digits of every job id.
    pub fn epoch(&self) -> String {
        self.epoch.clone()
    }

    /// Whether `epoch` belongs to a database this state dir had before.
    pub fn was_epoch(&self, epoch: &str) -> bool {
        self.past.iter().any(|e| e == epoch)
    }

    /// Ends the database thread after the calls already sent and waits
    /// until the connection is closed (the WAL checkpointed into the main
    /// file) and the lock released, so the process may exit right after.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// The database thread's loop.
/// The lock is released only after the connection is closed: nobody may
/// open the database while this thread still has it open.
fn serve(mut conn: Connection, lock: Flock<File>, rx: mpsc::Receiver<Msg>) {
    while let Ok(msg) = rx.recv() {
        match msg {
            // A panic inside one call must not take the store down for
            // every later request: its caller sees `Closed` (its oneshot
            // is dropped) and the thread goes on.
            Msg::Call(call) => {
                let run = std::panic::AssertUnwindSafe(|| call(&mut conn));
                if std::panic::catch_unwind(run).is_err() {
                    tracing::error!("a job database call panicked");
                }
            }
            Msg::Close(done) => {
                if let Err((_, e)) = conn.close() {
                    tracing::warn!("closing the job database: {e}");
                }
                drop(lock);
                let _ = done.send(());
                return;
            }
        }
    }
    // Every sender is gone without a Close (the process is ending).
    drop(conn);
    drop(lock);
}

/// Queued jobs, and bytes of inputs and results held. `length()` of a blob
/// reads the record header only, never the blob's pages.
fn held(conn: &Connection) -> rusqlite::Result<(u64, u64)> {
    conn.query_row(
        "SELECT COUNT(*) FILTER (WHERE status = 'queued'),
                COALESCE(SUM(LENGTH(input)), 0) + COALESCE(SUM(LENGTH(result)), 0)
         FROM jobs",
        [],
        |r| {
            Ok((
                u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
            ))
        },
    )
}

/// Whether a SQLite error means the file itself is damaged (as opposed to
/// busy, read-only, missing...): such damage will not heal by retrying.
fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

/// A call's error as the rest of the service sees it: damage and a full
/// disk are told apart from "unavailable right now".
fn classify(e: rusqlite::Error) -> StoreError {
    if is_damage(&e) {
        StoreError::Damaged(e.to_string())
    } else if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
        StoreError::Full(e.to_string())
    } else {
        StoreError::Sqlite(e)
    }
}

fn store_err(path: &Path, e: rusqlite::Error) -> JobsError {
    if is_damage(&e) {
        return JobsError::Damaged {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
    }
    JobsError::Database {
        path: path.to_path_buf(),
        source: e,
    }
}

/// `PRAGMA quick_check`: `Ok` when the file's structure is sound, else what
/// SQLite found (the first few problems).
fn quick_check(conn: &Connection) -> rusqlite::Result<Result<(), String>> {
    let mut stmt = conn.prepare("PRAGMA quick_check(5)")?;
    let found: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(if found.len() == 1 && found[0] == "ok" {
        Ok(())
    } else {
        Err(found.join("; "))
    })
}

/// What opening found besides the connection.
struct Opened {
    recovered: usize,
    epoch: String,
    past: Vec<String>,
    /// The database is new but the state dir had one before.
    reset: bool,
}

/// The database's epoch (made at its first open) and the state dir's
/// earlier ones. A database made while the state dir remembers others was
/// lost or replaced: said at error level, once, here.
fn epochs(conn: &Connection, dir: &Path) -> rusqlite::Result<(String, Vec<String>, bool)> {
    let file = dir.join(EPOCHS_FILE);
    let known: Vec<String> = std::fs::read_to_string(&file)
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| super::valid_epoch(l))
        .collect();
    let stored: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| {
            r.get(0)
        })
        .optional()?;
    let mut reset = false;
    let epoch = match stored {
        Some(e) => e,
        None => {
            let e = super::new_epoch();
            conn.execute("INSERT INTO meta (key, value) VALUES ('epoch', ?1)", [&e])?;
            if !known.is_empty() {
                tracing::error!(
                    "the job database in {} is new, but this state dir had one before (epochs \
                     {}): every job accepted there is lost; their ids answer 410 job_lost",
                    dir.display(),
                    known.join(", ")
                );
                reset = true;
            }
            e
        }
    };
    if !known.contains(&epoch) {
        use std::io::Write;
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
            .and_then(|mut f| writeln!(f, "{epoch}").and_then(|()| f.sync_all()));
        if let Err(e) = appended {
            tracing::warn!("cannot record the store epoch in {}: {e}", file.display());
        }
    }
    let past = known.into_iter().filter(|e| *e != epoch).collect();
    Ok((epoch, past, reset))
}

/// Opens the database under `dir`: lock, pragmas, schema, recovery.
fn open_db(dir: &Path) -> Result<(Connection, Flock<File>, Opened), JobsError> {
    std::fs::create_dir_all(dir).map_err(|source| JobsError::StateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let lock_path = dir.join(LOCK_FILE);
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| JobsError::StateDir {
            path: lock_path.clone(),
            source,
        })?;
    let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        JobsError::Locked {
            path: dir.to_path_buf(),
            reason: errno.desc().to_string(),
        }
    })?;

    let path: PathBuf = dir.join(DB_FILE);
    let mut conn = Connection::open(&path).map_err(|e| store_err(&path, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| store_err(&path, e))?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| store_err(&path, e))?;
    if version > SCHEMA_VERSION {
        return Err(JobsError::Store(format!(
            "{} has schema version {version}, newer than this pixfork understands ({SCHEMA_VERSION})",
            path.display()
        )));
    }
    // auto_vacuum only takes effect before the first table exists.
    conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")
        .map_err(|e| store_err(&path, e))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| store_err(&path, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(JobsError::Store(format!(
            "{} cannot use WAL mode (journal_mode is {mode})",
            path.display()
        )));
    }
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA journal_size_limit = 67108864;",
    )
    .map_err(|e| store_err(&path, e))?;
    if let Err(reason) = quick_check(&conn).map_err(|e| store_err(&path, e))? {
        return Err(JobsError::Damaged { path, reason });
    }
    conn.execute_batch(SCHEMA)
        .map_err(|e| store_err(&path, e))?;
    if version == 1 {
        // Version 2 added the checksums; older rows keep none.
        conn.execute_batch(
            "ALTER TABLE jobs ADD COLUMN input_crc INTEGER;
             ALTER TABLE jobs ADD COLUMN result_crc INTEGER;",
        )
        .map_err(|e| store_err(&path, e))?;
    }
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(|e| store_err(&path, e))?;
    let recovered = recover(&mut conn).map_err(|e| store_err(&path, e))?;
    let (epoch, past, reset) = epochs(&conn, dir).map_err(|e| store_err(&path, e))?;
    Ok((
        conn,
        lock,
        Opened {
            recovered,
            epoch,
            past,
            reset,
        },
    ))
}

/// After an unclean stop nobody runs the `running` jobs any more: re-queue
/// them, counting the cut-off attempt as a crash (it may be what killed the
/// process), and fail the ones that reach the poison limit that way.
fn recover(conn: &mut Connection) -> rusqlite::Result<usize> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let requeued = tx.execute(
        "UPDATE jobs SET status = 'queued', token = NULL, crashes = crashes + 1
         WHERE status = 'running'",
        [],
    )?;
    let poisoned = tx.execute(
        "UPDATE jobs SET status = 'failed', finished_ms = ?1, input = NULL,
                error_status = ?2, error_code = ?3, error_message = ?4
         WHERE status = 'queued' AND crashes >= ?5",
        params![
            now_ms(),
            POISON_STATUS,
            POISON_CODE,
            super::poison_message("it was running when the service stopped abruptly"),
            MAX_CRASHES
        ],
    )?;
    tx.commit()?;
    if requeued > 0 {
        tracing::warn!(
            requeued,
            poisoned,
            "re-queued jobs that were running when the service last stopped"
        );
    }
    Ok(requeued.saturating_sub(poisoned))
}
