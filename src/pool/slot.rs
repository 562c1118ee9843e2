//! One slot's supervisor: keep a worker alive in this slot and feed it jobs.

use std::process::ExitStatus;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::timeout;
use tracing::Instrument;

use super::spawn::{describe_exit, spawn_worker, Worker};
use super::{Done, PoolError, Shared, SlotState, SlotStatus};
use crate::proto::Request;

/// A worker that lived at least this long resets the crash-loop backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How long a worker whose socket broke may take to finish dying.
const DEATH_GRACE: Duration = Duration::from_millis(500);
/// How long a worker may take to exit after its socket is closed at shutdown.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// How a worker's service in this slot ended.
enum End {
    /// The queue was closed: the pool is stopping.
    Closed,
    /// The worker exited while idle (or right after answering).
    Exited(Option<ExitStatus>),
    /// The worker failed while serving `request_id` and is already reaped.
    Failed { request_id: String, reason: String },
}

pub(super) async fn run(shared: Arc<Shared>, status: Arc<SlotStatus>, mut worker: Option<Worker>) {
    let slot = status.index;
    let mut backoff = Duration::ZERO;
    loop {
        let mut w = match worker.take() {
            Some(w) => w,
            None => {
                if *shared.stop.borrow() {
                    break;
                }
                status.set(SlotState::Starting);
                status.pid.store(0, Ordering::Relaxed);
                match spawn_worker(&shared.cfg, slot).await {
                    Ok(w) => w,
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

        let end = serve(&shared, &status, &mut w).await;
        let lived = w.started.elapsed();
        match end {
            End::Closed => {
                status.set(SlotState::Dead);
                let exit = w.close(CLOSE_GRACE).await;
                tracing::info!(
                    slot,
                    pid = w_pid(&status),
                    "worker stopped ({})",
                    describe_exit(exit)
                );
                status.pid.store(0, Ordering::Relaxed);
                break;
            }
            End::Exited(exit) => {
                let exit = match exit {
                    Some(e) => Some(e),
                    None => w.kill().await,
                };
                tracing::warn!(
                    slot,
                    pid = w_pid(&status),
                    "worker died while idle ({})",
                    describe_exit(exit)
                );
            }
            End::Failed { request_id, reason } => {
                tracing::warn!(
                    slot,
                    pid = w_pid(&status),
                    request_id,
                    "worker died while serving a request ({reason})"
                );
            }
        }
        drop(w);
        status.set(SlotState::Dead);
        status.restarts.fetch_add(1, Ordering::Relaxed);
        backoff = if lived >= HEALTHY_AFTER {
            Duration::ZERO
        } else {
            (backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX)
        };
        if !backoff.is_zero() && pause(&shared, backoff).await {
            break;
        }
    }
    status.set(SlotState::Dead);
}

fn w_pid(status: &SlotStatus) -> u32 {
    status.pid.load(Ordering::Relaxed)
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

/// Feeds jobs to a live worker until it dies or the queue closes.
async fn serve(shared: &Shared, status: &SlotStatus, w: &mut Worker) -> End {
    let cfg = &shared.cfg;
    loop {
        let job = tokio::select! {
            biased;
            exit = w.exited() => return End::Exited(exit.ok()),
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
                let reason = if killed {
                    format!("{e}; killed")
                } else {
                    describe_exit(exit)
                };
                let _ = job.reply.send(Err(PoolError::WorkerDied {
                    slot: status.index,
                    pid: w.pid,
                    reason: reason.clone(),
                }));
                return End::Failed {
                    request_id: job.request_id,
                    reason,
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
                };
            }
        }
    }
}
