//! Crash isolation: a worker that dies, hangs or panics costs exactly one
//! request; the other requests succeed and the slot is refilled.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{corpus_file, wait_for, Server};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The pid busy in some slot other than `except`, once one is.
fn busy_pid(s: &Server, except: Option<u32>) -> Option<(u64, u32)> {
    s.slots()
        .into_iter()
        .find(|(_, pid, st)| st == "busy" && pid.is_some() && *pid != except)
        .and_then(|(slot, pid, _)| pid.map(|p| (slot, p)))
}

fn pid_of_slot(s: &Server, slot: u64) -> Option<u32> {
    s.slots()
        .into_iter()
        .find(|(i, _, _)| *i == slot)
        .and_then(|(_, p, st)| (st == "ready").then_some(p).flatten())
}

#[test]
fn killed_worker_costs_only_its_request() {
    let s = Server::start(&[]);
    let url_a = s.url("/v1/__sleep?ms=20000");
    let a = thread::spawn(move || {
        let r = common::agent().post(&url_a).send(&[][..]);
        r.map(|mut r| {
            (
                r.status().as_u16(),
                r.body_mut().read_to_string().unwrap_or_default(),
            )
        })
    });
    let (slot_a, pid_a) = wait_for("request A busy", Duration::from_secs(10), || {
        busy_pid(&s, None)
    });

    let url_b = s.url("/v1/__sleep?ms=1500");
    let b = thread::spawn(move || {
        common::agent()
            .post(&url_b)
            .send(&[][..])
            .map(|r| r.status().as_u16())
    });
    wait_for("request B busy", Duration::from_secs(10), || {
        busy_pid(&s, Some(pid_a))
    });

    kill(Pid::from_raw(pid_a as i32), Signal::SIGKILL).expect("kill worker");
    let killed_at = Instant::now();
    let (status_a, body_a) = a.join().expect("thread A").expect("response A");
    assert_eq!(status_a, 502, "{body_a}");
    assert!(
        body_a.contains("worker_crashed") && body_a.contains("SIGKILL"),
        "{body_a}"
    );
    assert_eq!(b.join().expect("thread B").expect("response B"), 200);

    let new_pid = wait_for("slot refilled", Duration::from_secs(2), || {
        pid_of_slot(&s, slot_a).filter(|p| *p != pid_a)
    });
    assert!(killed_at.elapsed() < Duration::from_secs(3));
    assert_ne!(new_pid, pid_a);
    wait_for("death logged", Duration::from_secs(5), || {
        s.logs().contains(&format!("pid={pid_a}")).then_some(())
    });
    assert!(s.zombie_children().is_empty(), "no zombie");
    assert!(s.stop().success());
}

#[test]
fn hung_worker_is_killed_at_the_deadline() {
    let s = Server::start(&["--timeout", "1s"]);
    let before: Vec<u32> = s.worker_pids();
    let t = Instant::now();
    let r = s.post("/v1/__sleep?ms=30000", b"");
    let took = t.elapsed();
    assert_eq!(r.status, 504);
    assert_eq!(r.error_code(), "worker_timeout");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    wait_for("slot refilled", Duration::from_secs(2), || {
        let now = s.slots();
        (now.len() == 2
            && now.iter().all(|(_, p, st)| st == "ready" && p.is_some())
            && now
                .iter()
                .filter(|(_, p, _)| !before.contains(&p.unwrap_or(0)))
                .count()
                == 1)
            .then_some(())
    });
    let ok = s.post(
        "/v1/resize?width=10",
        &corpus_file("valid/png/tiny_1x1.png"),
    );
    assert_eq!(ok.status, 200);
    assert!(s.stop().success());
}

#[test]
fn panic_abort_and_segfault_cost_one_request_each() {
    let s = Server::start(&[]);
    let good = corpus_file("valid/jpeg/photo_cat_320x240_progressive.jpg");
    for (op, status, code, detail) in [
        ("__panic", 500, "internal_error", "test panic"),
        ("__abort", 502, "worker_crashed", "SIGABRT"),
        ("__segv", 502, "worker_crashed", "SIGSEGV"),
    ] {
        let before = s.worker_pids();
        let r = s.post(&format!("/v1/{op}"), b"");
        assert_eq!(r.status, status, "{op}");
        assert_eq!(r.error_code(), code, "{op}");
        let msg = r.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(msg.contains(detail), "{op}: {msg}");
        // The slot is refilled and the service keeps working.
        s.wait_new_worker(&before);
        for _ in 0..4 {
            assert_eq!(
                s.post("/v1/resize?width=50", &good).status,
                200,
                "after {op}"
            );
        }
    }
    let restarts = s.total_restarts();
    assert_eq!(restarts, 3);
    assert!(s.zombie_children().is_empty());
    assert!(s.stop().success());
}

#[test]
fn full_queue_answers_503_at_once() {
    let s = Server::start(&[
        "--workers",
        "1",
        "--queue-depth",
        "1",
        "--queue-timeout",
        "5s",
    ]);
    let busy_url = s.url("/v1/__sleep?ms=2000");
    let busy = thread::spawn(move || {
        common::agent()
            .post(&busy_url)
            .send(&[][..])
            .map(|r| r.status().as_u16())
    });
    wait_for("worker busy", Duration::from_secs(5), || busy_pid(&s, None));

    let burst: Vec<_> = (0..12)
        .map(|_| {
            let url = s.url("/v1/__sleep?ms=10");
            thread::spawn(move || {
                let t = Instant::now();
                let mut r = common::agent().post(&url).send(&[][..]).expect("response");
                let retry = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap_or("").to_string());
                let body = r.body_mut().read_to_string().unwrap_or_default();
                (r.status().as_u16(), retry, body, t.elapsed())
            })
        })
        .collect();
    let mut ok = 0;
    let mut full = 0;
    for h in burst {
        let (status, retry, body, took) = h.join().expect("burst thread");
        match status {
            200 => ok += 1,
            503 => {
                full += 1;
                assert_eq!(retry.as_deref(), Some("1"), "Retry-After on 503");
                assert!(body.contains("queue_full"), "{body}");
                assert!(
                    took < Duration::from_secs(1),
                    "503 must be fast, took {took:?}"
                );
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert_eq!(
        busy.join().expect("busy thread").expect("busy response"),
        200
    );
    assert!(
        full >= 10,
        "at most one request fits the queue: {ok} ok, {full} full"
    );
    assert!(ok <= 2);
    assert!(s.stop().success());
}

#[test]
fn a_worker_that_fails_its_hello_stops_the_master() {
    let mut s = Server::spawn(&["--worker-bin", "/bin/false"]);
    let status = s.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(3), "boot error exit code");
    let logs = s.logs();
    assert!(
        logs.contains("workers failed to start") && logs.contains("hello"),
        "{logs}"
    );
}

#[test]
fn sigterm_drains_requests_in_flight() {
    let s = Server::start(&[]);
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let url = s.url("/v1/__sleep?ms=1500");
            common::post_in_thread(url)
        })
        .collect();
    wait_for("both workers busy", Duration::from_secs(5), || {
        (s.slots().iter().filter(|(_, _, st)| st == "busy").count() == 2).then_some(())
    });
    let status = s.stop();
    assert!(status.success(), "{status:?}");
    for h in handles {
        assert_eq!(h.join().expect("thread").expect("response"), 200);
    }
}

#[test]
fn the_sandbox_kills_a_worker_that_opens_a_file_or_a_socket() {
    let s = Server::start(&[]);
    let good = corpus_file("valid/png/tiny_1x1.png");
    for op in ["__open", "__socket"] {
        let before = s.worker_pids();
        let r = s.post(&format!("/v1/{op}"), b"");
        assert_eq!(r.status, 502, "{op}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.error_code(), "worker_crashed");
        let msg = r.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(
            msg.contains("SIGSYS"),
            "{op}: killed by the kernel's seccomp: {msg}"
        );
        s.wait_new_worker(&before);
        assert_eq!(s.post("/v1/resize?width=1", &good).status, 200);
    }
    // Started as root, workers run as an unprivileged user.
    if nix::unistd::geteuid().is_root() {
        for pid in s.worker_pids() {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
            let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or("");
            assert!(
                !uid.split_whitespace().skip(1).any(|u| u == "0"),
                "worker {pid} {uid}"
            );
            let nnp = status
                .lines()
                .find(|l| l.starts_with("NoNewPrivs:"))
                .unwrap_or("");
            assert!(nnp.ends_with('1'), "{nnp}");
            let seccomp = status
                .lines()
                .find(|l| l.starts_with("Seccomp:"))
                .unwrap_or("");
            assert!(seccomp.ends_with('2'), "filter mode: {seccomp}");
        }
    }
    assert!(s.stop().success());
}

#[test]
fn without_the_sandbox_the_same_calls_succeed() {
    let s = Server::start(&["--no-sandbox"]);
    for op in ["__open", "__socket"] {
        let r = s.post(&format!("/v1/{op}"), b"");
        assert_eq!(r.status, 200, "{op}: {}", String::from_utf8_lossy(&r.body));
    }
    assert!(s.stop().success());
}
