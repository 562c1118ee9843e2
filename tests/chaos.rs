//! Chaos under load: steady concurrent traffic while workers are killed,
//! stopped and crashed at random. Every response must be a 200 or one of the
//! documented failures (502 worker died, 504 deadline), nothing may hang,
//! and afterwards the service is whole again: every slot ready, no zombie,
//! the master's descriptors back to their start count, its memory flat.
//!
//! Bounded: `CHAOS_SECONDS` (default 30) of load from 32 connections,
//! loopback only.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{corpus_file, wait_for, Server};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn chaos_under_load() {
    let seconds: u64 = common::env_or("CHAOS_SECONDS", 30);
    let s = Server::start(&[
        "--timeout",
        "2s",
        "--queue-depth",
        "256",
        "--queue-timeout",
        "20s",
    ]);
    let photo = Arc::new(corpus_file("valid/jpeg/photo_cat_320x240_progressive.jpg"));

    // Warm up, then take the baselines.
    for _ in 0..20 {
        assert_eq!(s.post("/v1/resize?width=64", &photo).status, 200);
    }
    let fds_before = fd_count(s.pid);
    let rss_before = rss_kib(s.pid);

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let documented = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..32)
        .map(|i| {
            let (url, photo, stop, ok, documented) = (
                s.url(if i % 4 == 0 {
                    "/v1/blur?sigma=2"
                } else {
                    "/v1/resize?width=64"
                }),
                photo.clone(),
                stop.clone(),
                ok.clone(),
                documented.clone(),
            );
            thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(30)))
                    .build()
                    .into();
                let mut bad = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match agent.post(&url).send(&photo[..]) {
                        Ok(mut r) => {
                            let status = r.status().as_u16();
                            let body = r.body_mut().read_to_vec().unwrap_or_default();
                            match status {
                                200 => ok.fetch_add(1, Ordering::Relaxed),
                                502 | 504 => documented.fetch_add(1, Ordering::Relaxed),
                                other => {
                                    bad.push(format!(
                                        "{other}: {}",
                                        String::from_utf8_lossy(&body)
                                    ));
                                    0
                                }
                            };
                        }
                        Err(e) => bad.push(format!("transport error after {:?}: {e}", t.elapsed())),
                    }
                    assert!(
                        t.elapsed() < Duration::from_secs(25),
                        "a request hung for {:?}",
                        t.elapsed()
                    );
                }
                bad
            })
        })
        .collect();

    // The chaos monkey: every 200-400 ms, one random worker gets SIGKILL,
    // SIGSEGV, or SIGSTOP (then SIGCONT 100-3000 ms later, past the 2 s
    // deadline some of the time).
    let mut rng = fastrand::Rng::with_seed(20261122);
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut kills = 0;
    let mut stops = 0;
    let mut segvs = 0;
    let mut stopped: Vec<(u32, Instant)> = Vec::new();
    while Instant::now() < end {
        thread::sleep(Duration::from_millis(rng.u64(200..400)));
        stopped.retain(|(pid, until)| {
            if Instant::now() >= *until {
                let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGCONT);
                false
            } else {
                true
            }
        });
        let pids = s.worker_pids();
        if pids.is_empty() {
            continue;
        }
        let pid = pids[rng.usize(..pids.len())];
        let target = Pid::from_raw(pid as i32);
        match rng.u8(0..3) {
            0 => {
                let _ = kill(target, Signal::SIGKILL);
                kills += 1;
            }
            1 => {
                let _ = kill(target, Signal::SIGSEGV);
                segvs += 1;
            }
            _ => {
                if kill(target, Signal::SIGSTOP).is_ok() {
                    stopped.push((
                        pid,
                        Instant::now() + Duration::from_millis(rng.u64(100..3000)),
                    ));
                    stops += 1;
                }
            }
        }
    }
    for (pid, _) in stopped {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
    }
    stop.store(true, Ordering::Relaxed);
    let bad: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("client thread"))
        .collect();
    let (ok, documented) = (
        ok.load(Ordering::Relaxed),
        documented.load(Ordering::Relaxed),
    );
    eprintln!(
        "chaos: {seconds}s, {} requests: {ok} ok, {documented} documented 502/504, {} other; \
         {kills} SIGKILL, {segvs} SIGSEGV, {stops} SIGSTOP",
        ok + documented + bad.len() as u64,
        bad.len()
    );
    assert!(
        bad.is_empty(),
        "undocumented responses: {:?}",
        &bad[..bad.len().min(10)]
    );
    assert!(ok > 100, "the service kept serving: {ok} ok");

    // Whole again: every slot ready, a request succeeds, no zombie.
    s.wait_all_ready();
    assert_eq!(s.post("/v1/resize?width=64", &photo).status, 200);
    assert!(
        s.zombie_children().is_empty(),
        "zombies: {:?}",
        s.zombie_children()
    );
    // Client connections are gone; the master's descriptors come back to
    // their count before the chaos (the load's sockets and every dead
    // worker's socketpair end are closed).
    let fds = wait_for(
        "master descriptors back to the start count",
        Duration::from_secs(10),
        || {
            let n = fd_count(s.pid);
            (n <= fds_before).then_some(n)
        },
    );
    let rss_after = rss_kib(s.pid);
    eprintln!(
        "master fds {fds_before} -> {fds}; RSS {} KiB -> {} KiB",
        rss_before, rss_after
    );
    assert!(
        rss_after < rss_before + 30 * 1024,
        "master RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert!(s.stop().success());
}
