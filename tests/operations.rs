//! Running it for real: systemd notifications, socket activation, signals,
//! per-core tuning flags, recycling and metrics — against the real binary.

mod common;

use std::collections::HashSet;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{corpus_file, wait_for, Server};
use nix::sys::signal::Signal;

fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("pixfork-test-{}-{name}", std::process::id()))
}

/// Collects datagrams from a NOTIFY_SOCKET until `until` holds.
fn read_notifications(
    sock: &UnixDatagram,
    seen: &mut Vec<String>,
    what: &str,
    until: impl Fn(&[String]) -> bool,
) {
    let end = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    while !until(seen) {
        assert!(
            Instant::now() < end,
            "timed out waiting for {what}; got {seen:?}"
        );
        if let Ok(n) = sock.recv(&mut buf) {
            for line in String::from_utf8_lossy(&buf[..n]).lines() {
                seen.push(line.to_string());
            }
        }
    }
}

#[test]
fn systemd_notify_protocol() {
    let path = temp_path("notify.sock");
    let _ = std::fs::remove_file(&path);
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let s = Server::spawn_with(
        &[],
        &[],
        &[
            ("NOTIFY_SOCKET", path.to_str().expect("utf-8 path")),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let mut seen = Vec::new();
    read_notifications(&sock, &mut seen, "READY=1", |s| {
        s.iter().any(|l| l == "READY=1")
    });
    // READY=1 comes only after every worker said hello.
    let slots = s.slots();
    assert_eq!(slots.len(), 2);
    assert!(
        slots
            .iter()
            .all(|(_, pid, st)| st == "ready" && pid.is_some()),
        "{slots:?}"
    );
    read_notifications(&sock, &mut seen, "STATUS and two watchdog pings", |s| {
        s.iter().any(|l| l.starts_with("STATUS=workers:"))
            && s.iter().filter(|l| *l == "WATCHDOG=1").count() >= 2
    });

    seen.clear();
    s.signal(Signal::SIGHUP);
    read_notifications(&sock, &mut seen, "RELOADING=1 then READY=1", |s| {
        let reloading = s.iter().position(|l| l == "RELOADING=1");
        reloading.is_some_and(|r| s[r..].iter().any(|l| l == "READY=1"))
    });
    assert!(
        seen.iter().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{seen:?}"
    );

    seen.clear();
    s.signal(Signal::SIGTERM);
    read_notifications(&sock, &mut seen, "STOPPING=1", |s| {
        s.iter().any(|l| l == "STOPPING=1")
    });
    let mut s = s;
    assert!(s.wait_exit(Duration::from_secs(20)).success());
    s.assert_no_workers_left();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn socket_activation_through_systemd_socket_activate() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    // systemd-socket-activate binds the port and starts pixfork on the first
    // connection; pixfork must take the socket from LISTEN_FDS instead of
    // binding --listen (given a bogus one here). Make that first connection.
    let trigger = {
        let addr = addr.clone();
        thread::spawn(move || {
            wait_for(
                "a connection to the activated socket",
                Duration::from_secs(20),
                || {
                    common::agent()
                        .get(&format!("http://{addr}/healthz"))
                        .call()
                        .ok()
                },
            )
            .status()
            .as_u16()
        })
    };
    let s = Server::spawn_with(
        &["systemd-socket-activate", "-l", &addr],
        &["--listen", "127.0.0.1:1"],
        &[],
    );
    assert_eq!(trigger.join().expect("trigger"), 200);
    assert_eq!(s.addr.port(), port, "pixfork serves on the passed socket");
    s.wait_all_ready();
    assert!(s
        .logs()
        .contains("using the socket passed by the service manager"));
    let r = s.post(
        "/v1/resize?width=10",
        &corpus_file("valid/png/tiny_1x1.png"),
    );
    assert_eq!(r.status, 200);
    assert!(s.stop().success());
}

#[test]
fn sigterm_finishes_ten_slow_requests() {
    let s = Server::start(&[]);
    let handles: Vec<_> = (0..10)
        .map(|_| {
            let url = s.url("/v1/__sleep?ms=400");
            common::post_in_thread(url)
        })
        .collect();
    // All 10 accepted: 2 running, 8 queued.
    wait_for("10 requests accepted", Duration::from_secs(10), || {
        let v = s.readyz();
        let busy = v["slots"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|x| x["state"] == "busy").count());
        (busy == 2 && v["queued"].as_u64() == Some(8)).then_some(())
    });
    let pids = s.worker_pids();
    let status = s.stop();
    assert!(status.success(), "exit status {status:?}");
    for h in handles {
        assert_eq!(h.join().expect("thread").expect("response"), 200);
    }
    for pid in pids {
        assert!(!common::process_exists(pid), "worker {pid} remains");
    }
}

#[test]
fn sighup_replaces_every_worker_under_load_without_a_failure() {
    let s = Server::start(&[]);
    let before: HashSet<u32> = s.worker_pids().into_iter().collect();
    let photo = Arc::new(corpus_file("valid/jpeg/photo_cat_320x240_progressive.jpg"));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU32::new(0));
    let loaders: Vec<_> = (0..4)
        .map(|_| {
            let (url, photo, stop, done) = (
                s.url("/v1/resize?width=64"),
                photo.clone(),
                stop.clone(),
                done.clone(),
            );
            thread::spawn(move || {
                let agent = common::agent();
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) && done.load(Ordering::Relaxed) < 2000 {
                    let mut r = agent.post(&url).send(&photo[..]).expect("request");
                    if r.status().as_u16() != 200 {
                        failures.push((
                            r.status().as_u16(),
                            r.body_mut().read_to_string().unwrap_or_default(),
                        ));
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                failures
            })
        })
        .collect();
    wait_for("load running", Duration::from_secs(20), || {
        (done.load(Ordering::Relaxed) >= 50).then_some(())
    });
    s.signal(Signal::SIGHUP);
    wait_for(
        "every slot has a new worker",
        Duration::from_secs(30),
        || {
            let slots = s.slots();
            (slots.len() == 2
                && slots.iter().all(|(_, p, st)| {
                    p.is_some_and(|p| !before.contains(&p)) && (st == "ready" || st == "busy")
                }))
            .then_some(())
        },
    );
    let at_reload = done.load(Ordering::Relaxed);
    wait_for(
        "more load after the reload",
        Duration::from_secs(20),
        || (done.load(Ordering::Relaxed) >= at_reload + 50).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    let failures: Vec<_> = loaders
        .into_iter()
        .flat_map(|h| h.join().expect("loader"))
        .collect();
    let total = done.load(Ordering::Relaxed);
    eprintln!(
        "SIGHUP under load: {total} requests, {} failures",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "failed requests during reload: {failures:?}"
    );
    assert!(total >= 100);
    assert!(s.logs().contains("reason=\"reload\""));
    assert!(s.stop().success());
}

#[test]
fn ttin_and_ttou_change_the_slot_count() {
    let s = Server::start(&[]);
    let count = |s: &Server| s.slots().len();
    s.signal(Signal::SIGTTIN);
    wait_for("3 slots", Duration::from_secs(10), || {
        (count(&s) == 3).then_some(())
    });
    s.wait_all_ready();
    assert_eq!(
        s.slots().iter().map(|x| x.0).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    s.signal(Signal::SIGTTOU);
    wait_for("2 slots", Duration::from_secs(10), || {
        (count(&s) == 2).then_some(())
    });
    s.signal(Signal::SIGTTOU);
    wait_for("1 slot", Duration::from_secs(10), || {
        (count(&s) == 1).then_some(())
    });
    s.signal(Signal::SIGTTOU);
    // Never below one: wait for the refusal to be logged, then count.
    wait_for("refusal logged", Duration::from_secs(10), || {
        s.logs().contains("keeping the last worker").then_some(())
    });
    assert_eq!(count(&s), 1);
    let r = s.post(
        "/v1/resize?width=10",
        &corpus_file("valid/png/tiny_1x1.png"),
    );
    assert_eq!(r.status, 200);
    assert!(s.zombie_children().is_empty());
    assert!(s.stop().success());
}

fn own_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list")
        .trim()
        .to_string();
    let mut cpus = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                cpus.extend(a.parse::<usize>().expect("cpu")..=b.parse::<usize>().expect("cpu"))
            }
            None => cpus.push(part.parse().expect("cpu")),
        }
    }
    cpus
}

fn proc_field(pid: u32, file: &str, prefix: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .expect("proc file")
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("{prefix} in /proc/{pid}/{file}"))
        .to_string()
}

#[test]
fn pinning_niceness_and_memory_limit_reach_the_workers() {
    let s = Server::start(&[
        "--pin-workers",
        "--worker-nice",
        "7",
        "--worker-memory-limit",
        "256MiB",
        "--max-pixels",
        "200000000",
    ]);
    let cpus = own_cpus();
    for (slot, pid, _) in s.slots() {
        let pid = pid.expect("pid");
        let allowed = proc_field(pid, "status", "Cpus_allowed_list:");
        let want = cpus[slot as usize % cpus.len()];
        assert_eq!(
            allowed.split_whitespace().nth(1),
            Some(want.to_string().as_str()),
            "slot {slot}"
        );
        let limits = proc_field(pid, "limits", "Max address space");
        assert!(limits.contains(&(256u64 << 20).to_string()), "{limits}");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let nice = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(16));
        assert_eq!(nice, Some("7"), "worker niceness");
    }
    // The front itself stays unpinned and at its own priority.
    let front = proc_field(s.pid, "status", "Cpus_allowed_list:");
    let mine = proc_field(std::process::id(), "status", "Cpus_allowed_list:");
    assert_eq!(
        front.split_whitespace().nth(1),
        mine.split_whitespace().nth(1),
        "front pinned?"
    );
    let front_stat = std::fs::read_to_string(format!("/proc/{}/stat", s.pid)).expect("stat");
    let front_nice = front_stat
        .rsplit_once(')')
        .and_then(|(_, r)| r.split_whitespace().nth(16).map(str::to_string));
    assert_eq!(front_nice.as_deref(), Some("0"), "front niceness");

    // A request that needs more memory than the limit fails alone (a flip
    // decodes all 99 MP, ~300 MB)...
    let bomb = corpus_file("invalid/limits/jpeg_9643x10328_99mp.jpg");
    let r = s.post("/v1/flip", &bomb);
    assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.error_code(), "worker_out_of_memory");
    // ...while a thumbnail of it fits: shrink-on-load decodes it at 1/8.
    let thumb = s.post("/v1/resize?width=100", &bomb);
    assert_eq!(
        thumb.status,
        200,
        "{}",
        String::from_utf8_lossy(&thumb.body)
    );
    // ...and the next one succeeds.
    let ok = s.post(
        "/v1/resize?width=100",
        &corpus_file("valid/jpeg/photo_cat_320x240_progressive.jpg"),
    );
    assert_eq!(ok.status, 200);
    let metrics = s.get("/metrics");
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("pixfork_worker_deaths_total{reason=\"memory\"} 1"),
        "{text}"
    );
    assert!(s.stop().success());
}

#[test]
fn max_requests_recycles_every_slot_without_a_failure() {
    let s = Server::start(&["--max-requests", "5"]);
    let before: HashSet<u32> = s.worker_pids().into_iter().collect();
    let img = corpus_file("valid/png/tiny_1x1.png");
    let mut used = HashSet::new();
    for _ in 0..20 {
        let r = s.post("/v1/resize?width=1", &img);
        assert_eq!(r.status, 200);
        // The worker that served it, from the log line's pid is not exposed
        // in the response; track slots' pids instead.
        for p in s.worker_pids() {
            used.insert(p);
        }
    }
    wait_for("every slot recycled", Duration::from_secs(10), || {
        let v = s.readyz();
        let slots = v["slots"].as_array()?.clone();
        slots
            .iter()
            .all(|x| {
                x["restarts"].as_u64().unwrap_or(0) >= 1
                    && !before.contains(&(x["pid"].as_u64().unwrap_or(0) as u32))
            })
            .then_some(())
    });
    assert!(used.len() >= 4, "pids seen: {used:?}");
    let text = String::from_utf8_lossy(&s.get("/metrics").body).to_string();
    let recycled: u64 =
        metric(&text, "pixfork_worker_deaths_total{reason=\"recycle\"}").unwrap_or(0.0) as u64;
    assert!(recycled >= 2, "{text}");
    assert!(s.stop().success());
}

/// The value of one sample line, by its exact name and labels.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
}

/// Every line is a comment, a blank, or `name{labels} value`.
fn assert_exposition_format(text: &str) {
    let mut samples = 0;
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        assert!(
            value.parse::<f64>().is_ok() || value == "+Inf",
            "bad value in {line:?}"
        );
        let name = series.split('{').next().unwrap_or("");
        assert!(name.starts_with("pixfork_"), "unprefixed metric {line:?}");
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad name {line:?}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(
                    labels.starts_with('{') && labels.ends_with('}'),
                    "bad labels {line:?}"
                );
            }
        }
        samples += 1;
    }
    assert!(samples > 10, "{text}");
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics ends with # EOF"
    );
}

#[test]
fn metrics_parse_and_move() {
    let s = Server::start(&[]);
    let text0 = String::from_utf8_lossy(&s.get("/metrics").body).to_string();
    assert_exposition_format(&text0);
    assert!(text0.contains("pixfork_build_info{version="), "{text0}");
    assert_eq!(
        metric(&text0, "pixfork_workers{state=\"ready\"}"),
        Some(2.0),
        "{text0}"
    );

    let img = corpus_file("valid/png/tiny_1x1.png");
    for _ in 0..3 {
        assert_eq!(s.post("/v1/resize?width=1", &img).status, 200);
    }
    assert_eq!(s.post("/v1/blur?sigma=0", &img).status, 400);
    assert_eq!(s.post("/v1/__segv", b"").status, 502);
    s.wait_all_ready();
    let text = String::from_utf8_lossy(&s.get("/metrics").body).to_string();
    assert_exposition_format(&text);
    assert_eq!(
        metric(
            &text,
            "pixfork_requests_total{op=\"resize\",status=\"200\"}"
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "pixfork_requests_total{op=\"blur\",status=\"400\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "pixfork_requests_total{op=\"__segv\",status=\"502\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "pixfork_worker_deaths_total{reason=\"crash\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "pixfork_worker_starts_total"),
        Some(3.0),
        "{text}"
    );
    assert!(
        metric(
            &text,
            "pixfork_request_duration_seconds_count{op=\"resize\"}"
        ) == Some(3.0),
        "{text}"
    );
    assert!(
        metric(&text, "pixfork_request_body_bytes_total").unwrap_or(0.0) >= 3.0 * img.len() as f64
    );
    assert!(s.stop().success());
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let dir = common::temp_dir();
    let units = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contrib/systemd");
    for name in ["pixfork.service", "pixfork.socket"] {
        let text = std::fs::read_to_string(units.join(name)).expect("unit file");
        // verify checks that ExecStart exists: point it at the built binary.
        let text = text.replace("/usr/local/bin/pixfork", common::BIN);
        std::fs::write(dir.join(name), text).expect("write unit");
    }
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.join("pixfork.socket"))
        .arg(dir.join("pixfork.service"))
        .output()
        .expect("systemd-analyze (package systemd) runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // verify exits 0 on some problems (an unknown Type=, say): read its words too.
    assert!(out.status.success(), "{said}");
    assert!(
        said.trim().is_empty(),
        "systemd-analyze verify said:\n{said}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
