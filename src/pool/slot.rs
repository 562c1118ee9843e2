//! One slot's supervisor: keep a worker alive in this slot and feed it jobs.
//!
//! What a death costs, by cause:
//!
//! - A worker that cannot start (exec fails, no or a wrong hello) or dies
//!   idle soon after starting is a broken installation or flag: the slot
//!   backs off (100 ms doubling to 10 s) and reports it in `/readyz`.
//! - A worker killed by a request (crash, deadline, memory) costs that
//!   request only: the slot starts a fresh worker at once, with no backoff,
//!   however often it happens, so a stream of poison requests cannot hold
//!   a slot down.
//! - A worker that went away without answering a request it never
//!   processed (it exited on its own, or was gone before the request was
//!   written), or that ran out of memory after earlier requests, gets that
//!   request sent once more to a fresh worker: the engine is a pure
//!   function, so running it again is safe, and it answers what a fresh
//!   worker would.

use std::process::ExitStatus;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;
use tracing::Instrument;

use super::spawn::{describe_exit, spawn_worker, CallError, Worker};
use super::{Done, Input, Job, PoolError, Shared, SlotCmd, SlotState, SlotStatus};
use crate::metrics::{DeathReason, ReasonLabels};
use crate::proto::{Request, EXIT_AFTER_PANIC, EXIT_OUT_OF_MEMORY};

/// A worker that lived at least this long resets the crash-loop backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Longest wait between two tries to replace a worker due for recycling.
const RECYCLE_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How long a worker whose socket broke may take to finish dying.
const DEATH_GRACE: Duration = Duration::from_millis(500);
/// How long a worker may take to exit after its socket is closed.
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// How a worker's service in this slot ended.
enum End {
    /// The queue was closed: the pool is stopping.
    Closed,
    /// The slot was removed (SIGTTOU).
    Retired,
    /// Replace the worker by a new one: on order (`ack`) or after
    /// `--max-requests` (no `ack`).
    Replace {
        reason: DeathReason,
        ack: Option<oneshot::Sender<bool>>,
    },
    /// The worker exited while idle (or right after answering).
    Exited(Option<ExitStatus>),
    /// The worker answered and said it exits now (it caught a panic).
    Exiting,
    /// The worker failed while serving `request_id` and is already reaped.
    /// `retry`: the job, unanswered, to send to the next worker.
    Failed {
        request_id: String,
        reason: String,
        cause: DeathReason,
        retry: Option<Box<Retry>>,
    },
}

/// A job whose worker went away without answering it: it is sent once
/// more, to the next worker of the slot, with the input it already took.
struct Retry {
    job: Job,
    input: Input,
    /// The answer the job gets if no fresh worker can be started.
    err: PoolError,
}

fn exit_reason(exit: Option<ExitStatus>) -> DeathReason {
    if exit.and_then(|e| e.code()) == Some(EXIT_OUT_OF_MEMORY) {
        DeathReason::Memory
    } else {
        DeathReason::Crash
    }
}

pub(super) async fn run(
    shared: Arc<Shared>,
    status: Arc<SlotStatus>,
    mut orders: mpsc::UnboundedReceiver<SlotCmd>,
    mut worker: Option<Worker>,
) {
    let slot = status.index;
    let mut backoff = Duration::ZERO;
    let mut quick_deaths: u32 = 0;
    // A replacement after --max-requests that failed to start waits this
    // long before the next try (doubling), while the old worker serves on.
    let mut recycle_backoff = BACKOFF_MIN;
    // A job whose worker went away without answering it, for the next one.
    let mut pending: Option<Box<Retry>> = None;
    loop {
        let mut w = match worker.take() {
            Some(w) => w,
            None => {
                if *shared.stop.borrow() {
                    break;
                }
                status.set(SlotState::Starting);
                status.pid.store(0, Ordering::Relaxed);
                match spawn_worker(&shared.cfg, slot, shared.cpu_for(slot)).await {
                    Ok(w) => {
                        shared.metrics.worker_starts.inc();
                        status.spawn_result(None);
                        w
                    }
                    Err(e) => {
                        shared.metrics.worker_spawn_failures.inc();
                        status.spawn_result(Some(e.to_string()));
                        // The job waiting for a fresh worker gets its
                        // original answer rather than waiting for a start
                        // that may not come.
                        if let Some(retry) = pending.take() {
                            let _ = retry.job.reply.send(Err(retry.err));
                        }
                        backoff = (backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
                        tracing::error!(slot, "cannot start worker: {e}; retrying in {backoff:?}");
                        status.set(SlotState::Dead);
                        if pause(&shared, backoff).await {
                            break;
                        }
                        continue;
                    }
                }
            }
        };
        status.pid.store(w.pid, Ordering::Relaxed);
        status.set(SlotState::Ready);
        tracing::info!(slot, pid = w.pid, "worker ready");

        let end = serve(&shared, &status, &mut orders, &mut w, pending.take()).await;
        let lived = w.started.elapsed();
        let pid = w.pid;
        match end {
            End::Closed | End::Retired => {
                status.set(SlotState::Dead);
                let grace = shared.close_grace.lock().map_or(CLOSE_GRACE, |g| *g);
                let exit = w.close(grace).await;
                shared.metrics.death(DeathReason::Stop);
                tracing::info!(slot, pid, "worker stopped ({})", describe_exit(exit));
                status.pid.store(0, Ordering::Relaxed);
                break;
            }
            End::Replace { reason, ack } => {
                // Start the successor first: if it cannot start, keep the
                // old worker rather than leave the slot empty.
                match spawn_worker(&shared.cfg, slot, shared.cpu_for(slot)).await {
                    Ok(new) => {
                        shared.metrics.worker_starts.inc();
                        status.spawn_result(None);
                        recycle_backoff = BACKOFF_MIN;
                        let exit = w.close(CLOSE_GRACE).await;
                        shared.metrics.death(reason);
                        status.restarts.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(
                            slot,
                            pid,
                            new_pid = new.pid,
                            reason = reason.as_str(),
                            "worker replaced ({})",
                            describe_exit(exit)
                        );
                        worker = Some(new);
                        if let Some(ack) = ack {
                            let _ = ack.send(true);
                        }
                    }
                    Err(e) => {
                        shared.metrics.worker_spawn_failures.inc();
                        status.spawn_result(Some(e.to_string()));
                        if reason == DeathReason::Recycle {
                            w.recycle_retry_at = Some(Instant::now() + recycle_backoff);
                            tracing::error!(
                                slot,
                                pid,
                                "cannot start a replacement worker, keeping the old one \
                                 and trying again in {recycle_backoff:?}: {e}"
                            );
                            recycle_backoff = (recycle_backoff * 2).min(RECYCLE_BACKOFF_MAX);
                        } else {
                            tracing::error!(
                                slot,
                                pid,
                                "cannot start a replacement worker, keeping the old one: {e}"
                            );
                        }
                        worker = Some(w);
                        if let Some(ack) = ack {
                            let _ = ack.send(false);
                        }
                    }
                }
                continue;
            }
            End::Exiting => {
                status.set(SlotState::Dead);
                let exit = w.close(DEATH_GRACE).await;
                shared.metrics.death(exit_reason(exit));
                status.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    slot,
                    pid,
                    "worker exited after answering ({})",
                    describe_exit(exit)
                );
                // Caused by a request: replaced at once, never backed off.
                continue;
            }
            End::Exited(exit) => {
                let exit = match exit {
                    Some(e) => Some(e),
                    None => w.kill().await,
                };
                shared.metrics.death(exit_reason(exit));
                tracing::warn!(
                    slot,
                    pid,
                    "worker died while idle ({})",
                    describe_exit(exit)
                );
                drop(w);
                status.set(SlotState::Dead);
                status.restarts.fetch_add(1, Ordering::Relaxed);
                // The first quick death is refilled at once; only a crash
                // loop (idle deaths in a row, each soon after its start:
                // a bad flag, a broken binary) backs off.
                quick_deaths = if lived >= HEALTHY_AFTER {
                    0
                } else {
                    quick_deaths + 1
                };
                backoff = match quick_deaths {
                    0 | 1 => Duration::ZERO,
                    n => BACKOFF_MIN
                        .saturating_mul(1 << (n - 2).min(16))
                        .min(BACKOFF_MAX),
                };
                if !backoff.is_zero() && pause(&shared, backoff).await {
                    break;
                }
                continue;
            }
            End::Failed {
                request_id,
                reason,
                cause,
                retry,
            } => {
                shared.metrics.death(cause);
                if retry.is_some() {
                    tracing::warn!(
                        slot,
                        pid,
                        request_id,
                        "worker went away without answering ({reason}); sending the request to a fresh worker"
                    );
                } else {
                    tracing::warn!(
                        slot,
                        pid,
                        request_id,
                        "worker died while serving a request ({reason})"
                    );
                }
                pending = retry;
            }
        }
        // A request killed the worker: replace it at once. Backing off here
        // would let every poison request take the slot down for longer.
        drop(w);
        status.set(SlotState::Dead);
        status.restarts.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(retry) = pending.take() {
        let _ = retry.job.reply.send(Err(retry.err));
    }
    status.set(SlotState::Dead);
}

/// Sleeps for `d` unless the pool stops first; returns true when stopping.
async fn pause(shared: &Shared, d: Duration) -> bool {
    let mut stop = shared.stop.clone();
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    }
}

/// Whether a job whose worker failed may be sent once more to a fresh one,
/// and under which `request_retries` reason.
fn retry_reason(
    job: &Job,
    w: &Worker,
    err: &CallError,
    exit: Option<ExitStatus>,
) -> Option<&'static str> {
    if job.retried {
        return None;
    }
    let code = exit.and_then(|e| e.code());
    match err {
        // Gone before it had the request: the request did nothing to it.
        CallError::Unsent(_) => Some("worker_gone"),
        // It read the request and left without a word, by exiting on its
        // own (a clean exit, or the exit after a panic it already answered
        // for): not this request's doing.
        CallError::NoReply if matches!(code, Some(0) | Some(EXIT_AFTER_PANIC)) => {
            Some("worker_gone")
        }
        // Out of memory in a worker that served before: the memory it kept
        // from earlier requests counts against the limit, so a fresh worker
        // decides whether this request fits.
        _ if code == Some(EXIT_OUT_OF_MEMORY) && w.served > 0 => Some("memory"),
        _ => None,
    }
}

/// Feeds jobs to a live worker until it dies, must be replaced, or the
/// queue closes. Orders are only taken between two requests. `first`: a
/// job the previous worker left unanswered, run before any other.
async fn serve(
    shared: &Shared,
    status: &SlotStatus,
    orders: &mut mpsc::UnboundedReceiver<SlotCmd>,
    w: &mut Worker,
    mut first: Option<Box<Retry>>,
) -> End {
    let cfg = &shared.cfg;
    loop {
        let recycle_due = w.recycle_after.is_some_and(|n| w.served >= n)
            && w.recycle_retry_at.is_none_or(|t| Instant::now() >= t);
        if recycle_due && first.is_none() {
            return End::Replace {
                reason: DeathReason::Recycle,
                ack: None,
            };
        }
        let (mut job, kept) = match first.take() {
            Some(retry) => {
                let Retry { mut job, input, .. } = *retry;
                job.retried = true;
                (job, Some(input))
            }
            None => (
                tokio::select! {
                    biased;
                    exit = w.exited() => return End::Exited(exit.ok()),
                    order = orders.recv() => match order {
                        Some(SlotCmd::Replace { ack }) => return End::Replace { reason: DeathReason::Reload, ack: Some(ack) },
                        Some(SlotCmd::Retire) | None => return End::Retired,
                    },
                    job = shared.jobs.recv() => match job {
                        Ok(job) => job,
                        Err(_) => return End::Closed,
                    },
                },
                None,
            ),
        };
        // The requester may have gone (client disconnected, queue timeout):
        // then the job is skipped, not run, and its input is already freed.
        if let Some(started) = job.started.take() {
            if started.send(()).is_err() {
                continue;
            }
        } else if job.reply.is_closed() {
            continue;
        }
        let taken = kept.or_else(|| job.input.lock().ok().and_then(|mut i| i.take()));
        let Some(input) = taken else {
            continue;
        };
        let queued = job.enqueued.elapsed();
        status.set(SlotState::Busy);
        let sent = Instant::now();
        let request = Request {
            id: job.id,
            task: job.task.clone(),
            attachments: input.attachments.iter().map(|a| a.len() as u64).collect(),
        };
        let mut parts: Vec<&[u8]> = Vec::with_capacity(1 + input.attachments.len());
        parts.push(&input.bytes);
        parts.extend(input.attachments.iter().map(|a| &a[..]));
        let span = tracing::debug_span!("job", request_id = %job.request_id, slot = status.index, pid = w.pid);
        let call = w.call(request, &parts).instrument(span);
        match timeout(cfg.timeout, call).await {
            Ok(Ok((reply, payload))) => {
                w.served += 1;
                status.served.fetch_add(1, Ordering::Relaxed);
                status.set(SlotState::Ready);
                let exiting = reply.exiting;
                let _ = job.reply.send(Ok(Done {
                    outcome: reply.outcome,
                    payload,
                    timing: reply.timing,
                    slot: status.index,
                    pid: w.pid,
                    queued,
                    worker: sent.elapsed(),
                }));
                if exiting {
                    // Never hand another request to a worker on its way out.
                    status.set(SlotState::Dead);
                    return End::Exiting;
                }
            }
            Ok(Err(e)) => {
                let (exit, killed) = w.reap_after_failure(DEATH_GRACE).await;
                let cause = exit_reason(exit);
                let reason = if killed {
                    format!("{e}; killed")
                } else {
                    describe_exit(exit)
                };
                let err = match cause {
                    DeathReason::Memory => PoolError::OutOfMemory {
                        slot: status.index,
                        pid: w.pid,
                    },
                    _ => PoolError::WorkerDied {
                        slot: status.index,
                        pid: w.pid,
                        reason: reason.clone(),
                    },
                };
                let request_id = job.request_id.clone();
                let retry = match retry_reason(&job, w, &e, exit) {
                    Some(why) => {
                        shared
                            .metrics
                            .request_retries
                            .get_or_create(&ReasonLabels { reason: why })
                            .inc();
                        Some(Box::new(Retry { job, input, err }))
                    }
                    None => {
                        let _ = job.reply.send(Err(err));
                        None
                    }
                };
                return End::Failed {
                    request_id,
                    reason,
                    cause,
                    retry,
                };
            }
            Err(_) => {
                w.kill().await;
                let _ = job.reply.send(Err(PoolError::Timeout {
                    slot: status.index,
                    pid: w.pid,
                    limit: cfg.timeout,
                }));
                return End::Failed {
                    request_id: job.request_id,
                    reason: format!("deadline of {:?} passed; killed", cfg.timeout),
                    cause: DeathReason::Timeout,
                    retry: None,
                };
            }
        }
    }
}
