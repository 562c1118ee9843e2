//! The front's place in the CPU scheduler: short slices for its threads.
//!
//! The front's threads sleep almost all the time and run for microseconds
//! (parse a request, queue it, copy a reply). The workers run for
//! milliseconds at a stretch. Linux's fair scheduler (EEVDF, 6.6 and later)
//! lets a running task finish its slice (1.4 ms on a 2-core machine: 0.7 ms
//! times 1 + log2 of the CPU count) before a task that just woke up
//! gets the CPU, even a task of a much higher weight such as the front next
//! to workers at nice 10. Every wake-up of the front (a probe's request
//! arriving, a worker's reply) could wait for that, which is where the
//! milliseconds of `/healthz` latency under load came from.
//!
//! Measured on 2 cores (`/healthz` at 20 req/s from the scheduled send time
//! while W1 saturates both workers, 20 s runs, four rounds interleaved):
//! p99 1.09 / 1.09 / 0.65 / 2.43 ms with the short slice against
//! 1.26 / 3.09 / 2.91 / 1.87 ms without; the worst sample 3.2-4.1 ms
//! against 4.6-5.1. What is left is mostly not ours: the kernel's 4 ms tick
//! and kernel threads that cannot be preempted for milliseconds.
//!
//! Since Linux 6.12 a task can ask for a shorter slice (`sched_setattr` with
//! `sched_runtime` under `SCHED_OTHER`), and a task with a shorter slice may
//! preempt on wake-up. The front asks for the shortest one (0.1 ms, the
//! default of `--front-slice`) on each of its runtime's threads. It costs the front nothing (it never runs that
//! long) and costs the workers a context switch per request the front takes.
//! No privilege is needed; an older kernel ignores the field, and a kernel
//! that refuses it leaves the default in place: this is a latency
//! refinement, never a reason to fail.

/// The slice the front's threads ask for by default (`--front-slice`):
/// the kernel's minimum.
pub const FRONT_SLICE_NS: u64 = 100_000;

/// Asks the scheduler for a `slice_ns` slice for the calling thread, keeping
/// its normal policy and its niceness. Returns the error the kernel gave,
/// for a log line; callers carry on either way.
pub fn request_slice(slice_ns: u64) -> std::io::Result<()> {
    // getpriority(2) returns the niceness itself, so -1 is a valid answer:
    // errno tells an error apart. The calling thread only (who = 0 is the
    // caller's thread id under Linux's per-thread niceness).
    nix::errno::Errno::clear();
    // SAFETY: getpriority(2) reads the caller's own niceness; no memory is
    // involved.
    let nice = unsafe { nix::libc::getpriority(nix::libc::PRIO_PROCESS, 0) };
    if nice == -1 && nix::errno::Errno::last_raw() != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let attr = nix::libc::sched_attr {
        size: std::mem::size_of::<nix::libc::sched_attr>() as u32,
        sched_policy: nix::libc::SCHED_OTHER as u32,
        // Children (the workers, spawned from these threads) start from the
        // default slice rather than inherit this one.
        sched_flags: nix::libc::SCHED_FLAG_RESET_ON_FORK as u64,
        sched_nice: nice,
        sched_priority: 0,
        sched_runtime: slice_ns,
        sched_deadline: 0,
        sched_period: 0,
    };
    // SAFETY: sched_setattr(2) on the calling thread (pid 0) with a fully
    // initialised sched_attr whose `size` is its own size; the kernel only
    // reads it during the call.
    let rc = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_sched_setattr,
            0,
            &attr as *const nix::libc::sched_attr,
            0,
        )
    };
    if rc == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The slice thread `tid` (0: the calling thread) has now, in
/// nanoseconds, as the kernel reports it (`sched_getattr`'s
/// `sched_runtime`; 0 on kernels without custom slices). For the tests,
/// which check the front's threads and the workers from outside.
pub fn slice_of(tid: i32) -> std::io::Result<u64> {
    let mut attr = nix::libc::sched_attr {
        size: 0,
        sched_policy: 0,
        sched_flags: 0,
        sched_nice: 0,
        sched_priority: 0,
        sched_runtime: 0,
        sched_deadline: 0,
        sched_period: 0,
    };
    let size = std::mem::size_of::<nix::libc::sched_attr>() as u32;
    // SAFETY: sched_getattr(2) writes at most `size` bytes into `attr`,
    // which is exactly that large and lives across the call.
    let rc = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_sched_getattr,
            tid,
            &mut attr as *mut nix::libc::sched_attr,
            size,
            0,
        )
    };
    if rc == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(attr.sched_runtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_gets_the_slice_it_asks_for_and_keeps_its_niceness() {
        std::thread::spawn(|| {
            // SAFETY: setpriority(2) on this test thread only.
            let rc = unsafe { nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, 3) };
            assert_eq!(rc, 0);
            request_slice(FRONT_SLICE_NS).expect("sched_setattr");
            // SAFETY: getpriority(2) on this thread; 3 is not -1, so no
            // errno check is needed.
            let nice = unsafe { nix::libc::getpriority(nix::libc::PRIO_PROCESS, 0) };
            assert_eq!(nice, 3, "the niceness survives");
            let slice = slice_of(0).expect("sched_getattr");
            // Kernels before 6.12 keep no custom slice and report 0.
            assert!(slice == FRONT_SLICE_NS || slice == 0, "slice {slice}");
        })
        .join()
        .expect("test thread");
    }
}
