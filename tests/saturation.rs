//! The front stays responsive while every worker is saturated with real
//! image work. The bound is generous on purpose: it catches a frozen front,
//! not a slow one (the benchmark reports the real figures).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{corpus_file, Server};

#[test]
fn healthz_stays_fast_while_workers_are_saturated() {
    let s = Server::start(&[]);
    let photo = Arc::new(corpus_file(
        "valid/jpeg/photo_ladybird_2560x1600_baseline.jpg",
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let loaders: Vec<_> = (0..4)
        .map(|_| {
            let (url, photo, stop) = (s.url("/v1/resize?width=400"), photo.clone(), stop.clone());
            thread::spawn(move || {
                let agent = common::agent();
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let r = agent.post(&url).send(&photo[..]).expect("load request");
                    assert_eq!(r.status().as_u16(), 200);
                    n += 1;
                }
                n
            })
        })
        .collect();
    // Let the load build up until both workers are busy.
    common::wait_for("workers saturated", Duration::from_secs(10), || {
        (s.slots().iter().filter(|(_, _, st)| st == "busy").count() == 2).then_some(())
    });

    let agent = common::agent();
    let mut samples = Vec::new();
    let end = Instant::now() + Duration::from_secs(4);
    while Instant::now() < end {
        let t = Instant::now();
        let r = agent.get(&s.url("/healthz")).call().expect("healthz");
        samples.push(t.elapsed());
        assert_eq!(r.status().as_u16(), 200);
        thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let served: u32 = loaders.into_iter().map(|h| h.join().expect("loader")).sum();
    samples.sort();
    let p = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    eprintln!(
        "healthz under saturation: n={} p50={:?} p99={:?} max={:?}; {served} resizes served",
        samples.len(),
        p(0.5),
        p(0.99),
        p(1.0)
    );
    assert!(served > 0);
    assert!(
        p(1.0) < Duration::from_millis(250),
        "front froze: max {:?}",
        p(1.0)
    );
    assert!(s.stop().success());
}

/// The front's threads run with the shortest scheduler slice, so that they
/// preempt a busy worker as soon as they wake (src/sched.rs says why); the
/// workers, forked from those threads, keep the kernel's default.
#[test]
fn front_threads_ask_for_short_slices_and_workers_do_not_inherit_them() {
    let s = Server::start(&[]);
    // One request first, so the runtime has started the threads it uses.
    let r = common::agent()
        .get(&s.url("/healthz"))
        .call()
        .expect("healthz");
    assert_eq!(r.status().as_u16(), 200);
    // The main thread and the runtime's threads: the ones that take
    // requests and replies. (The job store's own thread, which only does
    // disk I/O, keeps the default.)
    let tasks = std::fs::read_dir(format!("/proc/{}/task", s.pid)).expect("master's threads");
    let tids: Vec<i32> = tasks
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|tid| {
            let comm = std::fs::read_to_string(format!("/proc/{}/task/{tid}/comm", s.pid));
            comm.is_ok_and(|c| c.trim() == "pixfork" || c.trim() == "tokio-rt-worker")
        })
        .collect();
    assert!(tids.len() >= 3, "threads: {tids:?}");
    for tid in &tids {
        let slice = pixfork::sched::slice_of(*tid).expect("sched_getattr of a front thread");
        assert_eq!(
            slice,
            pixfork::sched::FRONT_SLICE_NS,
            "front thread {tid} runs with a {slice} ns slice"
        );
    }
    let workers = s.worker_pids();
    assert_eq!(workers.len(), 2);
    for pid in workers {
        let slice = pixfork::sched::slice_of(pid as i32).expect("sched_getattr of a worker");
        assert!(
            slice > pixfork::sched::FRONT_SLICE_NS,
            "worker {pid} runs with a {slice} ns slice, not the kernel's default"
        );
    }
    assert!(s.stop().success());
}
