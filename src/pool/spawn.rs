//! Starting one worker process and talking to it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};

use super::PoolConfig;
use crate::proto::{self, FromWorker, Hello, ProtoError, Reply, Request, ToWorker};

/// The descriptor number the worker finds its socket on.
pub const WORKER_FD: i32 = 3;

/// How long a fresh worker may take to answer the hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a worker could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot create the worker socket: {0}")]
    Socket(nix::Error),
    #[error("cannot start worker {bin}: {source}")]
    Exec { bin: String, source: std::io::Error },
    #[error("worker i/o failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("worker in slot {slot} failed its hello: {source}")]
    Hello { slot: usize, source: ProtoError },
    #[error("worker in slot {slot} did not say hello within {HELLO_TIMEOUT:?}")]
    HelloTimeout { slot: usize },
    #[error("worker in slot {slot} says it is pid {claimed}, but pid {actual} was started")]
    WrongPid {
        slot: usize,
        claimed: u32,
        actual: u32,
    },
}

/// How a round trip to a worker failed. Which side of the exchange broke
/// tells whether the request can safely be sent again elsewhere.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The request could not be written: the worker was gone before it
    /// had the whole request, so the request cannot have harmed it.
    #[error("the worker was gone before it got the request: {0}")]
    Unsent(ProtoError),
    /// The request was written and the worker closed its socket before a
    /// single byte of reply.
    #[error("the worker closed its socket without replying")]
    NoReply,
    /// Anything else: a torn or malformed reply, or another request's id.
    #[error(transparent)]
    Broken(ProtoError),
}

/// A live worker process and the master's end of its socket.
pub struct Worker {
    pub pid: u32,
    pub started: Instant,
    /// Requests this process has answered.
    pub served: u64,
    /// Replace the process after this many requests (`--max-requests` plus
    /// its own jitter, so workers started together do not recycle together).
    pub recycle_after: Option<u64>,
    /// A replacement failed to start: try again only after this instant,
    /// and keep serving on this worker meanwhile.
    pub recycle_retry_at: Option<Instant>,
    child: Child,
    stream: UnixStream,
}

/// Makes `fd` the worker's descriptor [`WORKER_FD`], inheritable across exec.
/// Runs in the forked child before exec, so it may only make
/// async-signal-safe calls: dup2 and fcntl are.
fn install_fd(fd: i32) -> std::io::Result<()> {
    if fd == WORKER_FD {
        // SAFETY: fcntl on a descriptor we own; clearing FD_CLOEXEC on the
        // one descriptor the worker must inherit.
        if unsafe { nix::libc::fcntl(fd, nix::libc::F_SETFD, 0) } == -1 {
            return Err(std::io::Error::last_os_error());
        }
    } else {
        // SAFETY: dup2 is async-signal-safe; the new descriptor does not
        // carry FD_CLOEXEC, so only this copy survives the exec, while the
        // original (CLOEXEC) is closed by it.
        if unsafe { nix::libc::dup2(fd, WORKER_FD) } == -1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Starts the worker for `slot` and completes the hello exchange.
///
/// Both socket ends are created CLOEXEC, so a worker spawned concurrently by
/// another slot can never inherit this pair (an inherited copy would keep
/// the socket open after this worker dies and hide its death). Only inside
/// the forked child is the child end duplicated onto fd 3 without CLOEXEC.
///
/// Must be called from a runtime thread, never from `spawn_blocking`: the
/// worker's parent-death signal fires when the *thread* that forked it ends,
/// and blocking-pool threads end when idle.
pub async fn spawn_worker(
    cfg: &PoolConfig,
    slot: usize,
    cpu: Option<usize>,
) -> Result<Worker, SpawnError> {
    let (master_end, child_end): (OwnedFd, OwnedFd) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(SpawnError::Socket)?;
    let child_fd = child_end.as_raw_fd();

    let mut cmd = Command::new(&cfg.worker_bin);
    cmd.arg("--fd")
        .arg(WORKER_FD.to_string())
        .arg("--slot")
        .arg(slot.to_string())
        .arg("--parent-pid")
        .arg(std::process::id().to_string())
        .arg("--max-payload")
        .arg(cfg.max_payload.to_string())
        .arg(format!("--nice={}", cfg.worker_nice))
        .arg(format!("--sched={}", cfg.worker_sched.as_str()));
    if let Some(cpu) = cpu {
        cmd.arg("--cpu").arg(cpu.to_string());
    }
    if cfg.no_sandbox {
        cmd.arg("--no-sandbox");
    } else {
        cmd.arg("--user").arg(&cfg.worker_user);
    }
    if let Some(limit) = cfg.worker_memory_limit {
        cmd.arg("--memory-limit").arg(limit.to_string());
    }
    // A worker starts with an empty environment: the master's may hold
    // secrets (a Redis URL with its password) that an exploited decoder
    // could read from its own memory or /proc, and service-manager
    // variables (NOTIFY_SOCKET, LISTEN_FDS...) are the master's alone.
    // What a worker needs comes as flags.
    cmd.env_clear();
    if let Some(filter) = &cfg.worker_log {
        cmd.arg("--log").arg(filter);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    // SAFETY: the closure runs between fork and exec and only calls
    // async-signal-safe functions (dup2/fcntl), allocating nothing.
    unsafe {
        cmd.pre_exec(move || install_fd(child_fd));
    }
    let child = cmd.spawn().map_err(|source| SpawnError::Exec {
        bin: cfg.worker_bin.display().to_string(),
        source,
    })?;
    drop(child_end);
    let pid = child.id().unwrap_or(0);

    let std_stream = std::os::unix::net::UnixStream::from(master_end);
    std_stream.set_nonblocking(true)?;
    let stream = UnixStream::from_std(std_stream)?;
    let recycle_after = cfg
        .max_requests
        .map(|n| n.saturating_add(fastrand::u64(0..=cfg.max_requests_jitter)));
    let mut worker = Worker {
        pid,
        started: Instant::now(),
        served: 0,
        recycle_after,
        recycle_retry_at: None,
        child,
        stream,
    };

    match tokio::time::timeout(HELLO_TIMEOUT, worker.hello(slot)).await {
        Ok(Ok(())) => Ok(worker),
        Ok(Err(e)) => {
            worker.kill_and_reap().await;
            Err(e)
        }
        Err(_) => {
            worker.kill_and_reap().await;
            Err(SpawnError::HelloTimeout { slot })
        }
    }
}

impl Worker {
    async fn hello(&mut self, slot: usize) -> Result<(), SpawnError> {
        let ours = ToWorker::Hello(Hello {
            version: proto::PROTOCOL_VERSION,
            pid: std::process::id(),
        });
        let hello_err = |source| SpawnError::Hello { slot, source };
        proto::write_frame_async(&mut self.stream, &ours, &[])
            .await
            .map_err(hello_err)?;
        let (theirs, _): (FromWorker, _) = proto::read_frame_async(&mut self.stream, 0)
            .await
            .map_err(hello_err)?;
        let theirs = match theirs {
            FromWorker::Hello(h) => h,
            FromWorker::Reply(_) => {
                return Err(hello_err(ProtoError::Unexpected("reply before hello")))
            }
        };
        proto::check_hello(&theirs).map_err(hello_err)?;
        if theirs.pid != self.pid {
            return Err(SpawnError::WrongPid {
                slot,
                claimed: theirs.pid,
                actual: self.pid,
            });
        }
        Ok(())
    }

    /// Sends one request (its payload: the input, then its overlay images)
    /// and reads its reply, reading no more payload than
    /// the request's limits can produce. Any error leaves the socket in an
    /// unknown state: the caller must kill the worker, never reuse it.
    pub async fn call(
        &mut self,
        request: Request,
        payload: &[&[u8]],
    ) -> Result<(Reply, Vec<u8>), CallError> {
        let id = request.id;
        let max_reply = request.task.limits.max_reply_bytes();
        proto::write_frame_parts_async(&mut self.stream, &ToWorker::Request(request), payload)
            .await
            .map_err(CallError::Unsent)?;
        let (msg, payload): (FromWorker, Vec<u8>) =
            match proto::read_frame_async(&mut self.stream, max_reply).await {
                Ok(frame) => frame,
                Err(ProtoError::Closed) => return Err(CallError::NoReply),
                Err(e) => return Err(CallError::Broken(e)),
            };
        match msg {
            FromWorker::Reply(r) if r.id == id => Ok((r, payload)),
            FromWorker::Reply(_) => Err(CallError::Broken(ProtoError::Unexpected(
                "reply with another request's id",
            ))),
            FromWorker::Hello(_) => Err(CallError::Broken(ProtoError::Unexpected(
                "hello in place of a reply",
            ))),
        }
    }

    /// Resolves when the worker process exits (cancel-safe).
    pub async fn exited(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Kills the worker (SIGKILL; harmless if it already exited) and reaps it.
    pub async fn kill_and_reap(mut self) -> Option<ExitStatus> {
        self.kill().await
    }

    /// Kills and reaps in place; the worker must not be used afterwards.
    pub async fn kill(&mut self) -> Option<ExitStatus> {
        let _ = self.child.start_kill();
        self.child.wait().await.ok()
    }

    /// After the socket broke: give a dying worker a moment to finish exiting
    /// so its real exit status (say SIGSEGV) is reported rather than the
    /// SIGKILL we would otherwise send it; then kill and reap.
    pub async fn reap_after_failure(&mut self, wait: Duration) -> (Option<ExitStatus>, bool) {
        match tokio::time::timeout(wait, self.child.wait()).await {
            Ok(status) => (status.ok(), false),
            Err(_) => (self.kill().await, true),
        }
    }

    /// Asks the worker to exit by closing its socket, waits up to `grace`,
    /// then kills it. Always reaps.
    pub async fn close(self, grace: Duration) -> Option<ExitStatus> {
        let Worker {
            mut child, stream, ..
        } = self;
        drop(stream);
        match tokio::time::timeout(grace, child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                let _ = child.start_kill();
                child.wait().await.ok()
            }
        }
    }
}

/// A human description of how a worker ended, for logs and 502 bodies.
pub fn describe_exit(status: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        None => "exit status unknown".to_string(),
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(sig)) => {
                let name = nix::sys::signal::Signal::try_from(sig)
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|_| format!("signal {sig}"));
                if s.core_dumped() {
                    format!("killed by {name} (core dumped)")
                } else {
                    format!("killed by {name}")
                }
            }
            (None, None) => "exit status unknown".to_string(),
        },
    }
}
