//! The worker's sandbox: after its hello, a worker gives up everything its
//! serve loop does not need.
//!
//! A decoder bug exploited by a hostile image runs inside a process that can
//! read and write only the socket it already holds, allocate memory, tell
//! the time and exit. It cannot open a file, create a socket, exec a program
//! or send a signal to another process (`tgkill` is allowed only with its
//! own pid as the target, which is how `abort()` raises SIGABRT; `kill` and
//! `tkill` not at all): the kernel kills it on the first such system call
//! (SIGSYS), the master answers that request with 502 and starts a fresh
//! worker. So even a worker that runs as the master's user (as under the
//! shipped unit's `DynamicUser`) cannot stop or kill the master or its
//! siblings. Before the filter, a worker started as root
//! switches to an unprivileged user, and no-new-privileges is set so no
//! exec could ever regain them.
//!
//! Threads: one decoder (libde265, for HEIC) cannot decode without a
//! worker thread of its own, so `clone` is allowed, but only with
//! `CLONE_THREAD` set: a new thread in this process, under this filter,
//! never a new process. `clone3`, whose flags sit in memory where a filter
//! cannot read them, answers `ENOSYS`, and glibc then falls back to
//! `clone`. A thread can do nothing the process could not.

use std::collections::BTreeMap;

use nix::libc;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// Why the sandbox could not be applied. The worker refuses to serve
/// unsandboxed unless the operator passed `--no-sandbox`.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("unknown user {0:?}")]
    NoSuchUser(String),
    #[error("cannot look up user {user:?}: {source}")]
    Lookup { user: String, source: nix::Error },
    #[error("cannot switch to user {user:?}: {source}")]
    SwitchUser { user: String, source: nix::Error },
    #[error("cannot build the seccomp filter: {0}")]
    Build(String),
    #[error("the kernel refused the seccomp filter: {0}")]
    Apply(String),
}

/// System calls the serve loop makes once it runs: socket I/O on descriptors
/// it already has, memory management, futexes, time, and exiting (including
/// the abort path, which signals itself). Everything else kills the process.
const ALLOWED: &[libc::c_long] = &[
    libc::SYS_read,
    libc::SYS_readv,
    libc::SYS_recvfrom,
    libc::SYS_recvmsg,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_sendto,
    libc::SYS_sendmsg,
    libc::SYS_close,
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_futex,
    libc::SYS_sched_yield,
    libc::SYS_getrandom,
    // glibc's qsort (used by libwebp's encoder) asks sysinfo(2) for the
    // physical memory size once to pick its sort buffer; read-only, harmless.
    libc::SYS_sysinfo,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    // Rust's SIGSEGV handler restores the default action before the
    // fault repeats, so a real segfault is reported as SIGSEGV.
    libc::SYS_rt_sigaction,
    libc::SYS_sigaltstack,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_exit,
    libc::SYS_exit_group,
    // A new thread's start-up in glibc (see the module docs on threads).
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    // Refused with ENOSYS by the second filter; allowed here so that the
    // kill action of this one does not win.
    libc::SYS_clone3,
];

/// Compiles the allow-list for the running architecture; `pid` is this
/// process, the only one `tgkill` may target (abort's SIGABRT to itself).
fn filter(pid: u32) -> Result<BpfProgram, SandboxError> {
    let build = |e: seccompiler::BackendError| SandboxError::Build(e.to_string());
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALLOWED.iter().map(|&nr| (nr, Vec::new())).collect();
    let own_tgid =
        SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, u64::from(pid))
            .map_err(build)?;
    rules.insert(
        libc::SYS_tgkill,
        vec![SeccompRule::new(vec![own_tgid]).map_err(build)?],
    );
    let thread = libc::CLONE_THREAD as u64;
    let only_threads = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(thread),
        thread,
    )
    .map_err(build)?;
    rules.insert(
        libc::SYS_clone,
        vec![SeccompRule::new(vec![only_threads]).map_err(build)?],
    );
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|e: seccompiler::BackendError| SandboxError::Build(e.to_string()))?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        arch,
    )
    .map_err(|e| SandboxError::Build(e.to_string()))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| SandboxError::Build(e.to_string()))
}

/// The second filter: `clone3` fails with `ENOSYS` (its flags cannot be
/// checked), everything else is left to the first.
fn clone3_filter() -> Result<BpfProgram, SandboxError> {
    let build = |e: seccompiler::BackendError| SandboxError::Build(e.to_string());
    let rules: BTreeMap<i64, Vec<SeccompRule>> =
        std::iter::once((libc::SYS_clone3, Vec::new())).collect();
    let arch = std::env::consts::ARCH.try_into().map_err(build)?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(|e| SandboxError::Build(e.to_string()))?;
    filter.try_into().map_err(build)
}

/// Switches to `user` when running as root (no-op otherwise). The kernel
/// clears the parent-death signal on a credential change: the caller must
/// set it again afterwards.
pub fn drop_privileges(user: Option<&str>) -> Result<(), SandboxError> {
    match user {
        Some(name) if nix::unistd::geteuid().is_root() => drop_to(name),
        _ => Ok(()),
    }
}

/// Installs the filter (and no-new-privileges). Must run after everything
/// that needs a forbidden call (logging set-up, rlimits, affinity, the
/// privilege drop). A panic message is then printed by a hook that only
/// writes, since the default hook may open files to symbolise a backtrace.
pub fn install_filter() -> Result<(), SandboxError> {
    let program = filter(std::process::id())?;
    let clone3 = clone3_filter()?;
    std::panic::set_hook(Box::new(|info| {
        eprintln!("pixfork-worker: {info}");
    }));
    // The permissive one first: applying a filter takes prctl and seccomp
    // calls, which the allow-list refuses once it is on.
    seccompiler::apply_filter(&clone3).map_err(|e| SandboxError::Apply(e.to_string()))?;
    seccompiler::apply_filter(&program).map_err(|e| SandboxError::Apply(e.to_string()))
}

fn drop_to(name: &str) -> Result<(), SandboxError> {
    let lookup = |source| SandboxError::Lookup {
        user: name.to_string(),
        source,
    };
    let switch = |source| SandboxError::SwitchUser {
        user: name.to_string(),
        source,
    };
    let user = nix::unistd::User::from_name(name)
        .map_err(lookup)?
        .ok_or_else(|| SandboxError::NoSuchUser(name.to_string()))?;
    nix::unistd::setgroups(&[user.gid]).map_err(switch)?;
    nix::unistd::setgid(user.gid).map_err(switch)?;
    nix::unistd::setuid(user.uid).map_err(switch)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn filter_compiles_for_this_architecture() {
        let program = super::filter(std::process::id()).expect("filter");
        assert!(program.len() > super::ALLOWED.len());
        assert!(!super::clone3_filter().expect("clone3 filter").is_empty());
    }
}
