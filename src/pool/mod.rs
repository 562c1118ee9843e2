//! The worker pool: numbered slots, a bounded dispatch queue, deadlines, and
//! a supervisor per slot that spawns, reaps and respawns its worker.
//!
//! Each slot is one tokio task that owns its worker outright (the child
//! handle and the master end of the socket). Slots *pull* jobs from one
//! bounded MPMC queue, so a slot only takes work while its worker is alive
//! and idle, and an idle worker that dies is noticed (and replaced) before
//! any request is sent to it. Because the slot task, not the HTTP handler,
//! talks to the worker, a client that disconnects mid-request never leaves
//! a socket half-read: the reply is read and dropped, and the slot goes on.

mod slot;
mod spawn;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::budget::Hold;
use crate::metrics::Metrics;
use crate::proto::{Limits, Outcome, Task, Timing};

pub use spawn::SpawnError;

/// Settings of a pool, taken from the master's flags.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub worker_bin: PathBuf,
    pub workers: usize,
    pub queue_depth: usize,
    pub queue_timeout: Duration,
    pub timeout: Duration,
    pub limits: Limits,
    /// Largest input a worker accepts (the front's body cap).
    pub max_payload: u64,
    /// Niceness of worker processes (the front keeps its own priority).
    pub worker_nice: i32,
    /// Scheduling policy of worker processes.
    pub worker_sched: crate::proto::WorkerSched,
    /// Pin slot i to the i-th allowed CPU (modulo their number).
    pub pin_workers: bool,
    /// Address-space limit of each worker (RLIMIT_AS), in bytes.
    pub worker_memory_limit: Option<u64>,
    /// Replace a worker after this many requests (plus a random jitter).
    pub max_requests: Option<u64>,
    pub max_requests_jitter: u64,
    /// Run workers without their seccomp sandbox.
    pub no_sandbox: bool,
    /// User the workers switch to when started as root.
    pub worker_user: String,
    /// The workers' log filter (the master's `PIXFORK_LOG`), passed as a
    /// flag since workers get no environment.
    pub worker_log: Option<String>,
}

/// Why a request got no answer from a worker. The front maps each to a
/// status code; none of them is the client's fault.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PoolError {
    #[error("all workers are busy and the queue is full")]
    QueueFull,
    #[error("no worker became free within {0:?}")]
    QueueTimeout(Duration),
    #[error("worker {pid} in slot {slot} died while processing the request ({reason})")]
    WorkerDied {
        slot: usize,
        pid: u32,
        reason: String,
    },
    #[error("worker {pid} in slot {slot} did not finish within {limit:?} and was killed")]
    Timeout {
        slot: usize,
        pid: u32,
        limit: Duration,
    },
    #[error("worker {pid} in slot {slot} ran out of memory while processing the request (see --worker-memory-limit)")]
    OutOfMemory { slot: usize, pid: u32 },
    #[error("the service is shutting down")]
    ShuttingDown,
}

/// A successful round trip to a worker (the outcome itself may still be a
/// typed image error such as a corrupt input).
#[derive(Debug)]
pub struct Done {
    pub outcome: Outcome,
    pub payload: Vec<u8>,
    pub timing: Timing,
    pub slot: usize,
    pub pid: u32,
    /// Time spent waiting for a free worker.
    pub queued: Duration,
    /// Time from sending the request to receiving the whole reply.
    pub worker: Duration,
}

/// The bytes of one request, with the budget hold that accounts for them
/// (none for background jobs, whose inputs live in the job store).
#[derive(Debug)]
pub struct Input {
    pub bytes: Bytes,
    /// The images of the task's `overlay` ops, in op order (shared with
    /// the registry for named overlays: no copy per request).
    pub attachments: Vec<Bytes>,
    pub hold: Option<Hold>,
}

impl From<Bytes> for Input {
    fn from(bytes: Bytes) -> Input {
        Input {
            bytes,
            attachments: Vec::new(),
            hold: None,
        }
    }
}

/// A queued job's input, shared between the queue and the requester. The
/// requester empties it when it goes away (its [`InputGuard`] drops), so a
/// client that disconnects frees its body at once, not when a slot reaches
/// its job; a slot takes the input out when it starts the job.
type InputCell = Arc<Mutex<Option<Input>>>;

/// Empties an [`InputCell`] when the requester's future ends, however.
struct InputGuard(InputCell);

impl Drop for InputGuard {
    fn drop(&mut self) {
        if let Ok(mut input) = self.0.lock() {
            input.take();
        }
    }
}

/// One queued request.
struct Job {
    id: u64,
    request_id: String,
    task: Task,
    input: InputCell,
    enqueued: Instant,
    /// Fired when a slot takes the job; if the requester has gone (dropped
    /// the receiver) the slot skips the job instead of running it. Taken
    /// (`None`) once fired, so a job sent again is not announced twice.
    started: Option<oneshot::Sender<()>>,
    reply: oneshot::Sender<Result<Done, PoolError>>,
    /// Already sent once to a worker that went away without answering it:
    /// a job is sent again at most once.
    retried: bool,
}

/// What a slot is doing, as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotState {
    Starting,
    Ready,
    Busy,
    Dead,
}

impl SlotState {
    fn from_u8(v: u8) -> SlotState {
        match v {
            1 => SlotState::Ready,
            2 => SlotState::Busy,
            3 => SlotState::Dead,
            _ => SlotState::Starting,
        }
    }
}

/// Live counters of one slot, shared between its task and the front.
#[derive(Debug)]
pub struct SlotStatus {
    index: usize,
    state: AtomicU8,
    pid: AtomicU32,
    served: AtomicU64,
    restarts: AtomicU64,
    /// Worker starts that failed in this slot (before or at the hello).
    spawn_failures: AtomicU64,
    /// Why the last start failed, until a start succeeds again.
    spawn_error: Mutex<Option<String>>,
}

impl SlotStatus {
    fn new(index: usize) -> Self {
        SlotStatus {
            index,
            state: AtomicU8::new(0),
            pid: AtomicU32::new(0),
            served: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            spawn_failures: AtomicU64::new(0),
            spawn_error: Mutex::new(None),
        }
    }

    fn set(&self, state: SlotState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    /// Records a failed worker start (`Some`) or a successful one (`None`).
    fn spawn_result(&self, error: Option<String>) {
        if error.is_some() {
            self.spawn_failures.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut e) = self.spawn_error.lock() {
            *e = error;
        }
    }
}

/// A point-in-time view of one slot.
#[derive(Debug, Clone, Serialize)]
pub struct SlotSnapshot {
    pub slot: usize,
    pub pid: Option<u32>,
    pub state: SlotState,
    pub requests: u64,
    pub restarts: u64,
    pub spawn_failures: u64,
    /// Why the last worker start in this slot failed; `None` once a start
    /// has succeeded since.
    pub spawn_error: Option<String>,
}

/// Orders a slot obeys between two requests.
pub(crate) enum SlotCmd {
    /// Start a new worker, then retire the current one (SIGHUP).
    Replace { ack: oneshot::Sender<bool> },
    /// Finish the current request, stop the worker and end the slot (SIGTTOU).
    Retire,
}

/// A slot as the pool sees it: its counters and its order channel.
struct SlotEntry {
    status: Arc<SlotStatus>,
    control: mpsc::UnboundedSender<SlotCmd>,
}

pub(crate) struct Shared {
    cfg: PoolConfig,
    metrics: Arc<Metrics>,
    /// CPUs this process may run on, for `--pin-workers`.
    cpus: Vec<usize>,
    jobs: async_channel::Receiver<Job>,
    slots: Mutex<Vec<SlotEntry>>,
    /// Flips to true when the pool stops: idle slots then close their workers.
    stop: watch::Receiver<bool>,
    /// How long a stopping worker may take to exit before it is killed:
    /// shortened by [`Pool::shutdown`] to fit the shutdown deadline.
    close_grace: Mutex<Duration>,
}

impl Shared {
    /// The CPU slot `index` is pinned to, when pinning is on.
    fn cpu_for(&self, index: usize) -> Option<usize> {
        (self.cfg.pin_workers && !self.cpus.is_empty()).then(|| self.cpus[index % self.cpus.len()])
    }
}

/// Waits up to `limit` for a slot to start the job. The hand-over is atomic:
/// at the timeout the receiver is closed first (so a slot's later `send`
/// fails and it skips the job) and only then checked for a start that won
/// the race, so a job is either started and awaited, or refused and never
/// run. (Refusing a job a slot had just started let the job runner queue
/// it again: it ran twice.)
async fn wait_started(
    mut started: oneshot::Receiver<()>,
    limit: Duration,
) -> Result<(), PoolError> {
    match tokio::time::timeout(limit, &mut started).await {
        Ok(Ok(())) => Ok(()),
        // The slot dropped the job without starting it: only at shutdown.
        Ok(Err(_)) => Err(PoolError::ShuttingDown),
        Err(_) if settle(&mut started) => Ok(()),
        Err(_) => Err(PoolError::QueueTimeout(limit)),
    }
}

/// Closes `started` and tells whether a start got in before the close:
/// after it, a slot's `send` fails, so the answer is final.
fn settle(started: &mut oneshot::Receiver<()>) -> bool {
    started.close();
    started.try_recv().is_ok()
}

/// The CPUs this process may run on, in order.
fn allowed_cpus() -> Vec<usize> {
    match nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..nix::sched::CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Handle to the pool; cheap to clone.
#[derive(Clone)]
pub struct Pool {
    shared: Arc<Shared>,
    queue: async_channel::Sender<Job>,
    stop: Arc<watch::Sender<bool>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    next_id: Arc<AtomicU64>,
}

impl Pool {
    /// Spawns every worker and waits for each hello. Any failure here is a
    /// boot error: the caller should exit non-zero instead of limping on
    /// with a broken binary or configuration.
    pub async fn start(cfg: PoolConfig, metrics: Arc<Metrics>) -> Result<Pool, SpawnError> {
        let (queue, jobs) = async_channel::bounded(cfg.queue_depth.max(1));
        let (stop_tx, stop_rx) = watch::channel(false);
        let count = cfg.workers.max(1);
        let shared = Arc::new(Shared {
            cfg,
            metrics,
            cpus: allowed_cpus(),
            jobs,
            slots: Mutex::new(Vec::new()),
            stop: stop_rx,
            close_grace: Mutex::new(slot::CLOSE_GRACE),
        });

        let mut boots = Vec::with_capacity(count);
        for index in 0..count {
            let cfg = shared.cfg.clone();
            let cpu = shared.cpu_for(index);
            boots.push(tokio::spawn(async move {
                spawn::spawn_worker(&cfg, index, cpu).await
            }));
        }
        let mut workers = Vec::with_capacity(count);
        let mut first_error = None;
        for boot in boots {
            match boot.await {
                Ok(Ok(w)) => workers.push(w),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(join) => {
                    first_error
                        .get_or_insert(SpawnError::Io(std::io::Error::other(join.to_string())));
                }
            }
        }
        if let Some(e) = first_error {
            for w in workers {
                w.kill_and_reap().await;
            }
            return Err(e);
        }
        shared.metrics.worker_starts.inc_by(workers.len() as u64);

        let pool = Pool {
            shared: shared.clone(),
            queue,
            stop: Arc::new(stop_tx),
            tasks: Arc::new(Mutex::new(Vec::new())),
            next_id: Arc::new(AtomicU64::new(1)),
        };
        for (index, worker) in workers.into_iter().enumerate() {
            pool.add_slot(index, Some(worker));
        }
        Ok(pool)
    }

    fn add_slot(&self, index: usize, worker: Option<spawn::Worker>) {
        let status = Arc::new(SlotStatus::new(index));
        let (control, orders) = mpsc::unbounded_channel();
        if let Ok(mut slots) = self.shared.slots.lock() {
            slots.push(SlotEntry {
                status: status.clone(),
                control,
            });
        }
        let task = tokio::spawn(slot::run(self.shared.clone(), status, orders, worker));
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.retain(|t| !t.is_finished());
            tasks.push(task);
        }
    }

    /// Adds one slot (SIGTTIN). Its number is one past the highest in use,
    /// so slot numbers stay stable. Returns that number.
    pub fn add_worker(&self) -> Option<usize> {
        if *self.shared.stop.borrow() {
            return None;
        }
        let index = match self.shared.slots.lock() {
            Ok(slots) => slots.iter().map(|s| s.status.index + 1).max().unwrap_or(0),
            Err(_) => return None,
        };
        self.add_slot(index, None);
        Some(index)
    }

    /// Removes the highest-numbered slot (SIGTTOU), never the last one. Its
    /// request in flight finishes first. Returns the removed slot's number.
    pub fn remove_worker(&self) -> Option<usize> {
        let entry = {
            let mut slots = self.shared.slots.lock().ok()?;
            if slots.len() <= 1 {
                return None;
            }
            let pos = slots
                .iter()
                .enumerate()
                .max_by_key(|(_, s)| s.status.index)
                .map(|(i, _)| i)?;
            slots.remove(pos)
        };
        let _ = entry.control.send(SlotCmd::Retire);
        Some(entry.status.index)
    }

    /// Replaces every worker, one slot at a time (SIGHUP): each slot starts
    /// its new worker before retiring the old one, between two requests, so
    /// no request fails and at most one slot is out of service at a time.
    /// Returns how many workers were replaced.
    pub async fn reload(&self) -> usize {
        let controls: Vec<mpsc::UnboundedSender<SlotCmd>> = match self.shared.slots.lock() {
            Ok(slots) => slots.iter().map(|s| s.control.clone()).collect(),
            Err(_) => return 0,
        };
        let mut replaced = 0;
        for control in controls {
            let (ack, done) = oneshot::channel();
            if control.send(SlotCmd::Replace { ack }).is_err() {
                continue;
            }
            // A busy slot answers after its request; bound the wait by the
            // request deadline plus a worker start.
            let limit = self.shared.cfg.timeout + Duration::from_secs(15);
            if let Ok(Ok(true)) = tokio::time::timeout(limit, done).await {
                replaced += 1;
            }
        }
        replaced
    }

    /// Whether a request could be queued right now: the front asks before
    /// it reads a body or fetches a source, so a full service answers 503
    /// without taking the bytes first. (Nothing is reserved: a request
    /// admitted here may still find the queue full once its body is in.)
    pub fn has_room(&self) -> Result<(), PoolError> {
        if *self.shared.stop.borrow() || self.queue.is_closed() {
            Err(PoolError::ShuttingDown)
        } else if self.queue.is_full() {
            Err(PoolError::QueueFull)
        } else {
            Ok(())
        }
    }

    /// Runs `task` on `input` in some worker. Waits at most the queue
    /// timeout for a free worker (answering [`PoolError::QueueFull`] at once
    /// when the queue is full), then at most the request deadline.
    pub async fn run(
        &self,
        request_id: &str,
        task: Task,
        input: impl Into<Input>,
    ) -> Result<Done, PoolError> {
        if *self.shared.stop.borrow() {
            return Err(PoolError::ShuttingDown);
        }
        let input: InputCell = Arc::new(Mutex::new(Some(input.into())));
        let _guard = InputGuard(input.clone());
        let (started_tx, started_rx) = oneshot::channel();
        let (reply_tx, reply_rx) = oneshot::channel();
        let job = Job {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            request_id: request_id.to_string(),
            task,
            input,
            enqueued: Instant::now(),
            started: Some(started_tx),
            reply: reply_tx,
            retried: false,
        };
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(async_channel::TrySendError::Full(_)) => return Err(PoolError::QueueFull),
            Err(async_channel::TrySendError::Closed(_)) => return Err(PoolError::ShuttingDown),
        }
        wait_started(started_rx, self.shared.cfg.queue_timeout).await?;
        // The slot enforces the deadline itself and always answers; the
        // extra margin only guards against a bug there.
        let limit = self.shared.cfg.timeout + Duration::from_secs(5);
        match tokio::time::timeout(limit, reply_rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(PoolError::ShuttingDown),
            Err(_) => Err(PoolError::Timeout {
                slot: usize::MAX,
                pid: 0,
                limit: self.shared.cfg.timeout,
            }),
        }
    }

    /// Snapshot of every slot, for `/readyz`.
    pub fn slots(&self) -> Vec<SlotSnapshot> {
        let Ok(slots) = self.shared.slots.lock() else {
            return Vec::new();
        };
        slots
            .iter()
            .map(|e| {
                let s = &e.status;
                let pid = s.pid.load(Ordering::Relaxed);
                SlotSnapshot {
                    slot: s.index,
                    pid: (pid != 0).then_some(pid),
                    state: SlotState::from_u8(s.state.load(Ordering::Relaxed)),
                    requests: s.served.load(Ordering::Relaxed),
                    restarts: s.restarts.load(Ordering::Relaxed),
                    spawn_failures: s.spawn_failures.load(Ordering::Relaxed),
                    spawn_error: s.spawn_error.lock().ok().and_then(|e| e.clone()),
                }
            })
            .collect()
    }

    /// Jobs waiting for a worker.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Stops the pool: jobs already queued are still served, then each
    /// worker is asked to exit (its socket is closed), killed if it does not
    /// within `grace`, and reaped. Returns when every slot task has ended.
    pub async fn shutdown(&self, grace: Duration) {
        if let Ok(mut g) = self.shared.close_grace.lock() {
            *g = grace.min(slot::CLOSE_GRACE);
        }
        self.queue.close();
        let _ = self.stop.send(true);
        let tasks: Vec<JoinHandle<()>> = match self.tasks.lock() {
            Ok(mut t) => t.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        let all = async {
            for t in tasks {
                let _ = t.await;
            }
        };
        // A worker still busy past this is killed with the process (it
        // dies with its parent).
        if tokio::time::timeout(grace + Duration::from_millis(200), all)
            .await
            .is_err()
        {
            tracing::warn!("workers did not stop in time");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_that_races_the_queue_timeout_is_settled_once() {
        // The slot started the job just as the wait timed out: it counts.
        let (tx, mut rx) = oneshot::channel();
        tx.send(()).expect("start");
        assert!(settle(&mut rx));
        // No start yet: refused, and a slot's start after that fails, so
        // the slot skips the job instead of running it behind our back.
        let (tx, mut rx) = oneshot::channel::<()>();
        assert!(!settle(&mut rx));
        assert!(tx.send(()).is_err(), "a start after the refusal must fail");
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_nobody_starts_times_out() {
        let (_tx, rx) = oneshot::channel::<()>();
        assert!(matches!(
            wait_started(rx, Duration::from_secs(1)).await,
            Err(PoolError::QueueTimeout(_))
        ));
    }
}
