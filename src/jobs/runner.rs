//! The runner: takes jobs from the store while a job slot is free, runs
//! each on the shared worker pool, and writes how it ended. Also the
//! sweeper that expires old results.
//!
//! Fairness: a semaphore of `--job-slots` permits is taken *before* a job is
//! claimed and held until its end is written, so background jobs never
//! occupy more workers than that (interactive requests keep the rest), and
//! an instance never holds queued work it cannot start — with Redis, the
//! other instances get it instead.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

use super::model::{
    millis, now_ms, Claimed, Dims, Finished, JobError, Requeue, MAX_CRASHES, POISON_CODE,
    POISON_STATUS, STORE_FULL_CODE, STORE_FULL_STATUS, TOMBSTONE_KEEP,
};
use super::store::{poison_message, StoreError};
use super::Inner;
use crate::catalogue::{self, ParamError};
use crate::pool::{Done, Input, PoolError};
use crate::proto::{Outcome, WorkError};

/// With nothing queued, the SQLite runner sleeps until a submission wakes
/// it; this is only the safety net for a missed wake-up.
const IDLE_POLL: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Most the sweeper waits between two passes (shorter for short TTLs).
const SWEEP_MAX: Duration = Duration::from_secs(30);

/// Claims jobs while a slot is free, until the job system stops.
pub(super) async fn claim_loop(inner: Arc<Inner>) {
    let mut stop = inner.stop.subscribe();
    let mut backoff = Duration::ZERO;
    let mut throttle = Throttle::new();
    loop {
        if *stop.borrow() {
            break;
        }
        let permit = tokio::select! {
            p = inner.slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let claimed = inner.store.claim(&inner.instance).await;
        inner.saw(&claimed);
        match claimed {
            Ok(Some(job)) => {
                if !backoff.is_zero() {
                    tracing::info!(store = inner.store.kind(), "job store reachable again");
                    backoff = Duration::ZERO;
                }
                tokio::spawn(run_job(inner.clone(), job, permit));
            }
            Ok(None) => {
                drop(permit);
                if !backoff.is_zero() {
                    tracing::info!(store = inner.store.kind(), "job store reachable again");
                    backoff = Duration::ZERO;
                }
                if !inner.store.claim_blocks() {
                    tokio::select! {
                        _ = inner.wake.notified() => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                }
            }
            Err(e) => {
                drop(permit);
                if let Some(held) = throttle.tick() {
                    tracing::warn!(
                        store = inner.store.kind(),
                        held,
                        "cannot take jobs from the store: {e}"
                    );
                }
                backoff = (backoff * 2).clamp(BACKOFF_MIN * 2, BACKOFF_MAX);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        }
    }
}

/// What to write once an attempt is over.
#[derive(Clone)]
pub(super) enum Step {
    Finish(Finished),
    Requeue(Requeue),
}

/// Runs one claimed job and writes its end; the permit is the job slot.
async fn run_job(inner: Arc<Inner>, job: Claimed, _permit: OwnedSemaphorePermit) {
    let span = tracing::info_span!("job", job_id = %job.id, op = %job.op, attempt = job.attempts);
    async move {
        let started = Instant::now();
        let step = attempt(&inner, &job).await;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let written = commit(&inner, &job, &step).await;
        match (&step, written) {
            (Step::Finish(end), Some(true)) => {
                if let Some(url) = super::callback::url_in(&job.query) {
                    super::callback::spawn(inner.clone(), job.id.clone(), url);
                }
                let code = match end {
                    Finished::Failed(e) => Some(e.code.as_str()),
                    Finished::Done { .. } => None,
                };
                tracing::info!(
                    status = end.status().as_str(),
                    code,
                    attempts = job.attempts,
                    instance = %inner.instance,
                    ms,
                    "job finished"
                );
            }
            (Step::Requeue(Requeue::Crash), Some(true)) => {
                tracing::warn!(
                    ms,
                    "job attempt killed its worker or timed out; re-queued for another try"
                );
            }
            (Step::Requeue(Requeue::Release), Some(true)) => {
                tracing::info!("job released back to the queue (stopping)");
            }
            (_, Some(false)) => tracing::warn!(
                "job was taken over by another instance meanwhile; this attempt's end is dropped"
            ),
            (_, None) => tracing::error!(
                "the job's end is not written yet (stopping, or a full store: see above); \
                 it is written later, or recovery runs the job again"
            ),
        }
    }
    .instrument(span)
    .await
}

/// Tries to store a result on a full store before the job is failed with
/// `store_full` instead (a failure, without the result, is small enough to
/// fit where the result did not).
const FULL_TRIES: u32 = 3;
/// Tries to store that failure before the slot is freed anyway (the job is
/// then written by the sweeper once the store has room).
const FAIL_TRIES: u32 = 3;
/// At most one warning this often while a write keeps failing.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// A log line at most every [`LOG_EVERY`], saying how many were held back:
/// a failing store is reported all along, without flooding the log.
pub(super) struct Throttle {
    last: Option<Instant>,
    held: u32,
}

impl Throttle {
    pub(super) fn new() -> Throttle {
        Throttle {
            last: None,
            held: 0,
        }
    }

    /// Whether to log now, and how many were held back since the last one.
    pub(super) fn tick(&mut self) -> Option<u32> {
        if self.last.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            self.held += 1;
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.held))
    }
}

/// The end written instead of a result a full store cannot take.
fn store_full(e: &StoreError) -> Finished {
    Finished::Failed(JobError {
        status: STORE_FULL_STATUS,
        code: STORE_FULL_CODE.into(),
        message: format!("the result could not be stored: {e}; submit the job again later"),
    })
}

/// Writes the end of an attempt, retrying while the store is unavailable,
/// until written or the job system gives up on in-flight jobs (`None`).
/// `Some(false)`: the claim was no longer ours, nothing was written. On a
/// full store the retries are bounded: the result gives way to a
/// `store_full` failure, and if even that cannot be written the job's slot
/// is freed and the sweeper writes it later.
async fn commit(inner: &Inner, job: &Claimed, step: &Step) -> Option<bool> {
    let mut abandon = inner.abandon.subscribe();
    let mut backoff = BACKOFF_MIN;
    let mut throttle = Throttle::new();
    let mut replaced: Option<Step> = None;
    let mut full = 0u32;
    loop {
        let current = replaced.as_ref().unwrap_or(step);
        let r = match current {
            // Cheap clone: the result body is reference-counted.
            Step::Finish(end) => inner.store.finish(job, end.clone()).await,
            Step::Requeue(why) => inner.store.requeue(job, *why).await,
        };
        match r {
            Ok(written) => return Some(written),
            Err(e @ StoreError::Full(_)) => {
                full += 1;
                let storing_result = matches!(current, Step::Finish(Finished::Done { .. }));
                if storing_result && full >= FULL_TRIES {
                    tracing::error!("the job store is full ({e}): the job fails with store_full");
                    replaced = Some(Step::Finish(store_full(&e)));
                    full = 0;
                    continue;
                }
                if !storing_result && full >= FAIL_TRIES {
                    tracing::error!(
                        "the job store is full ({e}): the job's end is kept in memory and written \
                         when there is room; its slot is free"
                    );
                    if let Ok(mut s) = inner.stranded.lock() {
                        s.push((job.clone(), current.clone()));
                    }
                    return None;
                }
                if let Some(held) = throttle.tick() {
                    tracing::warn!(held, "cannot write the job's state ({e}); retrying");
                }
            }
            Err(e) => {
                if let Some(held) = throttle.tick() {
                    tracing::warn!(held, "cannot write the job's state ({e}); retrying");
                }
            }
        }
        if *abandon.borrow() {
            return None;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = abandon.wait_for(|a| *a) => return None,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Writes the ends a full store could not take (see [`commit`]); called
/// by the sweeper. An end that is still refused stays for the next pass.
pub(super) async fn write_stranded(inner: &Inner) {
    let pending: Vec<(Claimed, Step)> = match inner.stranded.lock() {
        Ok(mut s) => std::mem::take(&mut *s),
        Err(_) => return,
    };
    for (job, step) in pending {
        let r = match &step {
            Step::Finish(end) => inner.store.finish(&job, end.clone()).await,
            Step::Requeue(why) => inner.store.requeue(&job, *why).await,
        };
        match r {
            Ok(_) => {
                tracing::info!(job_id = %job.id, "wrote the end of a job the full store had refused")
            }
            Err(e) => {
                tracing::warn!(job_id = %job.id, "the job store still refuses a job's end: {e}");
                if let Ok(mut s) = inner.stranded.lock() {
                    s.push((job, step));
                }
            }
        }
    }
}

/// One attempt: run the job on the pool until it has an end, needs another
/// attempt, or must go back to the queue.
async fn attempt(inner: &Inner, job: &Claimed) -> Step {
    // Parsed again from the stored query: the same validation as at
    // submission, under the limits this instance runs with.
    let task = match catalogue::parse_job(&job.op, Some(&job.query), inner.cfg.limits) {
        Ok((mut t, _callback)) => {
            catalogue::resolve_linear(&mut t.ops, inner.cfg.linear_resize);
            t
        }
        Err(e) => return Step::Finish(Finished::Failed(param_error(&e))),
    };
    // Named overlays only (parse_job refuses image_url=); a name this
    // instance was not started with fails the job as a bad parameter.
    let attachments = match inner.cfg.overlays.attachments(&task) {
        Ok(a) => a
            .into_iter()
            .filter_map(|a| match a {
                catalogue::Attachment::Ready { bytes, .. } => Some(bytes),
                catalogue::Attachment::Fetch(_) => None,
            })
            .collect::<Vec<_>>(),
        Err(e) => return Step::Finish(Finished::Failed(param_error(&e))),
    };
    let mut abandon = inner.abandon.subscribe();
    let mut backoff = BACKOFF_MIN;
    loop {
        let input = Input {
            bytes: job.input.clone(),
            attachments: attachments.clone(),
            hold: None,
        };
        let run = inner.pool.run(&job.id, task.clone(), input);
        let result = tokio::select! {
            r = with_heartbeat(inner, job, run) => r,
            _ = abandon.wait_for(|a| *a) => return Step::Requeue(Requeue::Release),
        };
        match result {
            Ok(done) => return Step::Finish(outcome(inner, done)),
            // The pool is full of interactive work right now: wait and try
            // again. Not the job's fault, so not an attempt.
            Err(PoolError::QueueFull | PoolError::QueueTimeout(_)) => {
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = abandon.wait_for(|a| *a) => return Step::Requeue(Requeue::Release),
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Err(PoolError::ShuttingDown) => return Step::Requeue(Requeue::Release),
            // The worker died or ran past its deadline on this input.
            Err(e) => {
                if job.crashes + 1 >= MAX_CRASHES {
                    tracing::warn!("job failed as poison: {e}");
                    return Step::Finish(Finished::Failed(JobError {
                        status: POISON_STATUS,
                        code: POISON_CODE.into(),
                        message: poison_message(&format!("last: {e}")),
                    }));
                }
                tracing::warn!("job attempt failed: {e}");
                return Step::Requeue(Requeue::Crash);
            }
        }
    }
}

/// Awaits `fut`, proving every so often that this instance still works on
/// the job (Redis only), so no other instance takes it over meanwhile.
async fn with_heartbeat<F: Future>(inner: &Inner, job: &Claimed, fut: F) -> F::Output {
    let Some(every) = inner.store.heartbeat_every(inner.cfg.claim_timeout) else {
        return fut.await;
    };
    let mut fut = std::pin::pin!(fut);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            out = &mut fut => return out,
            _ = tick.tick() => match inner.store.heartbeat(job).await {
                Ok(true) => {}
                Ok(false) => tracing::warn!("job was taken over by another instance"),
                Err(e) => tracing::warn!("job heartbeat failed: {e}"),
            },
        }
    }
}

/// A worker's answer as the end of the job.
fn outcome(inner: &Inner, done: Done) -> Finished {
    match done.outcome {
        Outcome::Image(meta) => {
            if done.payload.len() as u64 > inner.cfg.max_job_bytes {
                return Finished::Failed(JobError {
                    status: 413,
                    code: "result_too_large".into(),
                    message: format!(
                        "the result has {} bytes, more than the limit of {} (--max-job-bytes)",
                        done.payload.len(),
                        inner.cfg.max_job_bytes
                    ),
                });
            }
            Finished::Done {
                content_type: meta.format.mime().to_string(),
                dims: Some(Dims {
                    width: meta.width,
                    height: meta.height,
                    frames: meta.frames,
                }),
                body: Bytes::from(done.payload),
            }
        }
        Outcome::Info(info) => match serde_json::to_vec(&info) {
            Ok(body) => Finished::Done {
                content_type: "application/json".into(),
                dims: None,
                body: Bytes::from(body),
            },
            Err(e) => Finished::Failed(JobError {
                status: 500,
                code: "internal_error".into(),
                message: format!("cannot encode the result: {e}"),
            }),
        },
        // The same status and code as the synchronous route.
        Outcome::Error(w) => Finished::Failed(work_error(w)),
    }
}

/// A stored query the parser refuses (limits changed since submission):
/// the same status and code as the synchronous route.
fn param_error(e: &ParamError) -> JobError {
    JobError {
        status: e.status(),
        code: e.code().to_string(),
        message: e.to_string(),
    }
}

/// The engine's typed failure, as the synchronous route would answer it.
fn work_error(w: WorkError) -> JobError {
    JobError {
        status: w.kind.status(),
        code: w.kind.code().to_string(),
        message: w.message,
    }
}

/// Expires finished jobs past `--job-ttl`, every half TTL (at most 30 s),
/// so a result is gone at most about 1.5 TTL after its job finished.
pub(super) async fn sweep_loop(inner: Arc<Inner>) {
    let mut stop = inner.stop.subscribe();
    let ttl = inner.cfg.job_ttl;
    let every = (ttl / 2).clamp(Duration::from_millis(100), SWEEP_MAX);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let now = now_ms();
        let cutoff = now.saturating_sub(millis(ttl));
        let forget = now.saturating_sub(millis(TOMBSTONE_KEEP));
        write_stranded(&inner).await;
        match inner.store.sweep(cutoff, forget).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "expired finished jobs"),
            Err(e) => tracing::warn!("cannot expire old jobs: {e}"),
        }
    }
}
