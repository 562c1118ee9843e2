//! One slot's supervisor: keep a worker alive in this slot and feed it jobs.

use std::process::ExitStatus;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;
use tracing::Instrument;

use super::spawn::{describe_exit, spawn_worker, Worker};
use super::{Done, PoolError, Shared, SlotCmd, SlotState, SlotStatus};
use crate::metrics::DeathReason;
use crate::proto::Request;
use crate::proto::EXIT_OUT_OF_MEMORY;

/// A worker that lived at least this long resets the crash-loop backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How long a worker whose socket broke may take to finish dying.
const DEATH_GRACE: Duration = Duration::from_millis(500);
/// How long a worker may take to exit after its socket is closed.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

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
    /// The worker failed while serving `request_id` and is already reaped.
    Failed {
        request_id: String,
        reason: String,
        cause: DeathReason,
    },
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
                        w
                    }
                    Err(e) => {
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

        let end = serve(&shared, &status, &mut orders, &mut w).await;
        let lived = w.started.elapsed();
        let pid = w.pid;
        match end {
            End::Closed | End::Retired => {
                status.set(SlotState::Dead);
                let exit = w.close(CLOSE_GRACE).await;
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
                        tracing::error!(
                            slot,
                            pid,
                            "cannot start a replacement worker, keeping the old one: {e}"
                        );
                        worker = Some(w);
                        if let Some(ack) = ack {
                            let _ = ack.send(false);
                        }
                    }
                }
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
            }
            End::Failed {
                request_id,
                reason,
                cause,
            } => {
                shared.metrics.death(cause);
                tracing::warn!(
                    slot,
                    pid,
                    request_id,
                    "worker died while serving a request ({reason})"
                );
            }
        }
        drop(w);
        status.set(SlotState::Dead);
        status.restarts.fetch_add(1, Ordering::Relaxed);
        // The first quick death is refilled at once; only a crash loop
        // (deaths in a row, each soon after its start) backs off.
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

/// Feeds jobs to a live worker until it dies, must be replaced, or the
/// queue closes. Orders are only taken between two requests.
async fn serve(
    shared: &Shared,
    status: &SlotStatus,
    orders: &mut mpsc::UnboundedReceiver<SlotCmd>,
    w: &mut Worker,
) -> End {
    let cfg = &shared.cfg;
    loop {
        if w.recycle_after.is_some_and(|n| w.served >= n) {
            return End::Replace {
                reason: DeathReason::Recycle,
                ack: None,
            };
        }
        let job = tokio::select! {
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
        };
        // The requester may have gone (client disconnected, queue timeout):
        // then the job is skipped, not run.
        if job.started.send(()).is_err() {
            continue;
        }
        let queued = job.enqueued.elapsed();
        status.set(SlotState::Busy);
        let sent = Instant::now();
        let request = Request {
            id: job.id,
            task: job.task,
        };
        let span = tracing::debug_span!("job", request_id = %job.request_id, slot = status.index, pid = w.pid);
        match timeout(cfg.timeout, w.call(request, &job.input).instrument(span)).await {
            Ok(Ok((reply, payload))) => {
                w.served += 1;
                status.served.fetch_add(1, Ordering::Relaxed);
                status.set(SlotState::Ready);
                let _ = job.reply.send(Ok(Done {
                    outcome: reply.outcome,
                    payload,
                    timing: reply.timing,
                    slot: status.index,
                    pid: w.pid,
                    queued,
                    worker: sent.elapsed(),
                }));
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
                let _ = job.reply.send(Err(err));
                return End::Failed {
                    request_id: job.request_id,
                    reason,
                    cause,
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
                };
            }
        }
    }
}
