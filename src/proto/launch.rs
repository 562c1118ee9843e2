//! How the master starts a worker: what both sides of the command line
//! and of the exit status agree on. Plain data, like the rest of the wire.

/// Linux scheduling policy of the workers (`--worker-sched`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkerSched {
    /// The normal time-sharing policy, at `--worker-nice`.
    Other,
    /// SCHED_BATCH: treated as CPU-bound, never preempts on wake-up.
    Batch,
    /// SCHED_IDLE: runs whenever no normal-priority task wants the CPU, so
    /// the front (and anything else on the machine) preempts a worker at
    /// once; `--worker-nice` is then moot.
    Idle,
}

impl WorkerSched {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerSched::Other => "other",
            WorkerSched::Batch => "batch",
            WorkerSched::Idle => "idle",
        }
    }
}

/// Exit code of a worker that caught a panic: it has answered the request
/// with an internal error, and exits so a fresh process takes the slot
/// rather than trusting state a panic may have left half-updated.
pub const EXIT_AFTER_PANIC: i32 = 70;

/// Exit code of a worker whose allocation failed (usually its
/// `--worker-memory-limit`): the master turns it into a clear
/// `worker_out_of_memory` instead of a generic crash.
pub const EXIT_OUT_OF_MEMORY: i32 = 71;
