//! The serve loop of `pixfork-worker`.
//!
//! Deliberately boring: one thread, blocking reads and writes on the socket
//! inherited from the master, one request at a time. No async runtime — a
//! worker never waits on more than one thing, and the master owns every
//! deadline (it kills a worker that overruns instead of asking it to stop).

use std::io::{BufReader, BufWriter};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};

use clap::Parser;

use crate::engine::{self, Product};
use crate::proto::{
    self, ErrorKind, FromWorker, Hello, Outcome, ProtoError, Reply, ToWorker, WorkError,
    WorkerSched,
};

/// Flags of `pixfork-worker`. The master passes them; people do not run
/// workers by hand.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "pixfork-worker",
    version,
    about = "pixfork image worker (started by pixfork)"
)]
pub struct WorkerArgs {
    /// The inherited Unix socket connected to the master.
    #[arg(long, default_value_t = 3)]
    pub fd: i32,

    /// Slot number, for logs.
    #[arg(long, default_value_t = 0)]
    pub slot: usize,

    /// The master's pid: if it is already gone at start-up, exit at once.
    #[arg(long)]
    pub parent_pid: Option<i32>,

    /// Largest request payload accepted from the master, in bytes.
    #[arg(long, default_value_t = 32 << 20)]
    pub max_payload: u64,

    /// Niceness to run at (0 = same priority as the master).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub nice: i32,

    /// Scheduling policy to run under.
    #[arg(long, value_enum, default_value_t = WorkerSched::Other)]
    pub sched: WorkerSched,

    /// Pin this worker to one CPU.
    #[arg(long)]
    pub cpu: Option<usize>,

    /// Address-space limit (RLIMIT_AS) in bytes.
    #[arg(long)]
    pub memory_limit: Option<u64>,

    /// Serve without the seccomp sandbox.
    #[arg(long)]
    pub no_sandbox: bool,

    /// When started as root, switch to this user after the hello.
    #[arg(long)]
    pub user: Option<String>,

    /// Log filter (`warn`, `pixfork=debug`...): workers get no environment,
    /// so the master passes its own `PIXFORK_LOG` here.
    #[arg(long, default_value = "warn")]
    pub log: String,
}

pub use crate::proto::{EXIT_AFTER_PANIC, EXIT_OUT_OF_MEMORY};

/// The worker's global allocator: the system allocator, except that a failed
/// allocation ends the process with [`EXIT_OUT_OF_MEMORY`] instead of the
/// standard library's abort, which the master could not tell from any other
/// SIGABRT.
pub struct ExitOnOom;

#[cold]
fn out_of_memory() -> ! {
    const MSG: &[u8] = b"pixfork-worker: out of memory (an allocation failed), exiting\n";
    // SAFETY: write(2) on stderr with a static buffer and _exit(2) are both
    // async-signal-safe and allocate nothing, which is the point: the heap is
    // exhausted. _exit skips destructors, which is what we want here.
    unsafe {
        nix::libc::write(2, MSG.as_ptr().cast(), MSG.len());
        nix::libc::_exit(EXIT_OUT_OF_MEMORY)
    }
}

// SAFETY: every method forwards to `System` with the same arguments and
// returns its result unchanged; the only addition is exiting the process
// when the result is null, which upholds every GlobalAlloc contract.
unsafe impl std::alloc::GlobalAlloc for ExitOnOom {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: forwarded verbatim; the caller upholds `alloc`'s contract.
        let p = unsafe { std::alloc::System.alloc(layout) };
        if p.is_null() {
            out_of_memory();
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: forwarded verbatim; the caller upholds `alloc_zeroed`'s contract.
        let p = unsafe { std::alloc::System.alloc_zeroed(layout) };
        if p.is_null() {
            out_of_memory();
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded verbatim; the caller upholds `realloc`'s contract.
        let p = unsafe { std::alloc::System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            out_of_memory();
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: forwarded verbatim; the caller upholds `dealloc`'s contract.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

/// Why the serve loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Proto(#[from] ProtoError),
    #[error("the master (pid {0}) is gone")]
    Orphaned(i32),
    #[error("could not set the parent-death signal: {0}")]
    Pdeathsig(nix::Error),
    #[error("the engine panicked: {0}")]
    Panicked(String),
    #[error("cannot enter the sandbox: {0} (pass --no-sandbox to run without it)")]
    Sandbox(#[from] crate::sandbox::SandboxError),
    #[error("cannot apply {what}: {source}")]
    Setup {
        what: &'static str,
        source: nix::Error,
    },
}

/// Applies the per-worker tuning the master passed: niceness, scheduling
/// policy, CPU pinning and the address-space limit. Done before the hello,
/// so a setting the kernel refuses is a boot error the master reports.
fn apply_tuning(args: &WorkerArgs) -> Result<(), WorkerError> {
    if args.nice != 0 {
        // SAFETY: setpriority(2) on our own process; no memory is involved.
        let rc = unsafe { nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, args.nice) };
        if rc == -1 {
            return Err(WorkerError::Setup {
                what: "--nice",
                source: nix::Error::last(),
            });
        }
    }
    let policy = match args.sched {
        WorkerSched::Other => None,
        WorkerSched::Batch => Some(nix::libc::SCHED_BATCH),
        WorkerSched::Idle => Some(nix::libc::SCHED_IDLE),
    };
    if let Some(policy) = policy {
        let param = nix::libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler(2) on our own process (pid 0) with a
        // valid, initialised sched_param that outlives the call; batch and
        // idle take priority 0 and need no privilege.
        let rc = unsafe { nix::libc::sched_setscheduler(0, policy, &param) };
        if rc == -1 {
            return Err(WorkerError::Setup {
                what: "--sched",
                source: nix::Error::last(),
            });
        }
    }
    if let Some(cpu) = args.cpu {
        let mut set = nix::sched::CpuSet::new();
        set.set(cpu)
            .and_then(|()| nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set))
            .map_err(|source| WorkerError::Setup {
                what: "--cpu",
                source,
            })?;
    }
    if let Some(limit) = args.memory_limit {
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_AS, limit, limit)
            .map_err(|source| WorkerError::Setup {
                what: "--memory-limit",
                source,
            })?;
    }
    Ok(())
}

/// Binds this process's life to the master's: if the master dies for any
/// reason, even SIGKILL, the kernel sends us SIGKILL. The check on the
/// parent pid closes the race where the master died before the prctl.
fn die_with_parent(parent: Option<i32>) -> Result<(), WorkerError> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(WorkerError::Pdeathsig)?;
    if let Some(ppid) = parent {
        if nix::unistd::getppid().as_raw() != ppid {
            return Err(WorkerError::Orphaned(ppid));
        }
    }
    Ok(())
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Largest amount of freed heap a worker keeps for its next request.
const KEEP_FREED: i32 = 256 << 20;

/// Lets glibc's allocator keep freed memory for the next request instead
/// of handing it back to the kernel at once. A request allocates a few
/// large buffers (decoded pixels, resize and encode buffers); by default
/// each one above 128 KiB is a fresh mmap whose pages the kernel faults in
/// and zeroes again, which was 6 % of a blur request's time in a profile.
/// A worker then holds on to about its largest request's memory, which
/// `--worker-memory-limit` bounds and `--max-requests` recycling returns.
/// Public so the in-process benchmark runs under the same allocator.
pub fn keep_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt(3) only sets tunables of glibc's allocator; it is
    // called before this process starts any thread, and both values are in
    // the documented ranges (the mmap threshold's maximum is 32 MiB on
    // 64-bit targets).
    unsafe {
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, 32 << 20);
        nix::libc::mallopt(nix::libc::M_TRIM_THRESHOLD, KEEP_FREED);
    }
}

/// Returns the heap's free top to the kernel. Under `--memory-limit` the
/// address space a worker keeps from one request counts against the next
/// one's limit; trimming after each request keeps that small (the master
/// also re-runs, on a fresh worker, a request that ran out of memory in a
/// used one, so what fits a fresh worker always fits).
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim(3) only returns free heap memory to the kernel
    // (brk and madvise, both allowed by the sandbox); it takes no pointer.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// Runs the worker until the master closes the socket (`Ok`) or something
/// breaks (`Err`; the binary exits non-zero and the master respawns the slot).
pub fn serve(args: &WorkerArgs) -> Result<(), WorkerError> {
    die_with_parent(args.parent_pid)?;
    apply_tuning(args)?;
    keep_freed_memory();
    let fd: RawFd = args.fd;
    // SAFETY: the master passes the child end of a socketpair as `fd`
    // (dup2'd to this number just before exec, CLOEXEC cleared only there);
    // nothing else in this process knows the descriptor, so taking ownership
    // of it here is sound and it is closed exactly once, on drop.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    let mut reader =
        BufReader::with_capacity(64 * 1024, stream.try_clone().map_err(ProtoError::Io)?);
    let mut writer = BufWriter::with_capacity(64 * 1024, stream);
    let mut input = Vec::new();

    // Hello: the master speaks first; we always answer with our version so
    // the master can report a mismatch clearly, then check theirs.
    let first: ToWorker = proto::read_frame(&mut reader, 0, &mut input)?;
    let theirs = match first {
        ToWorker::Hello(h) => h,
        ToWorker::Request(_) => return Err(ProtoError::Unexpected("request before hello").into()),
    };
    let ours = Hello {
        version: proto::PROTOCOL_VERSION,
        pid: std::process::id(),
    };
    proto::write_frame(&mut writer, &FromWorker::Hello(ours), &[])?;
    proto::check_hello(&theirs)?;
    #[cfg(feature = "test-ops")]
    engine::set_test_parent(nix::unistd::getppid().as_raw());
    // Codec state that reads nothing at request time: libheif's registry,
    // the SVG font built into the binary.
    engine::prepare();
    if !args.no_sandbox {
        crate::sandbox::drop_privileges(args.user.as_deref())?;
        // A credential change clears the parent-death signal: set it again.
        die_with_parent(args.parent_pid)?;
        crate::sandbox::install_filter()?;
    }
    tracing::debug!(slot = args.slot, "worker ready");

    loop {
        let msg: ToWorker = match proto::read_frame(&mut reader, args.max_payload, &mut input) {
            Ok(m) => m,
            Err(ProtoError::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let req = match msg {
            ToWorker::Request(r) => r,
            ToWorker::Hello(_) => return Err(ProtoError::Unexpected("second hello").into()),
        };
        let ran = match req.split_payload(&input) {
            Ok((image, overlays)) => catch_unwind(AssertUnwindSafe(|| {
                engine::run_with_overlays(&req.task, image, &overlays)
            })),
            // The master sent lengths that do not fit its own payload: a bug
            // on that side, answered as one (the worker stays usable).
            Err(why) => Ok((
                Err(WorkError {
                    kind: ErrorKind::Internal,
                    message: format!("malformed request: {why}"),
                }),
                Default::default(),
            )),
        };
        let (outcome, payload, timing, panicked) = match ran {
            Ok((Ok(Product::Image { bytes, meta }), timing)) => {
                (Outcome::Image(meta), bytes, timing, None)
            }
            Ok((Ok(Product::Info(info)), timing)) => {
                (Outcome::Info(info), Vec::new(), timing, None)
            }
            Ok((Err(e), timing)) => (Outcome::Error(e), Vec::new(), timing, None),
            Err(p) => {
                let msg = panic_message(p.as_ref());
                let err = WorkError {
                    kind: ErrorKind::Internal,
                    message: format!("the image engine failed unexpectedly: {msg}"),
                };
                (
                    Outcome::Error(err),
                    Vec::new(),
                    Default::default(),
                    Some(msg),
                )
            }
        };
        let reply = FromWorker::Reply(Reply {
            id: req.id,
            outcome,
            timing,
            // Said in the reply, so the master never queues another request
            // behind it on this process.
            exiting: panicked.is_some(),
        });
        proto::write_frame(&mut writer, &reply, &payload)?;
        if let Some(msg) = panicked {
            return Err(WorkerError::Panicked(msg));
        }
        drop(payload);
        // Give large buffers back: one huge request must not pin its memory
        // in this worker for the rest of its life.
        if input.capacity() > 64 << 20 {
            input = Vec::new();
        }
        if args.memory_limit.is_some() {
            release_freed_memory();
        }
    }
}
