//! The job store under its limits and its faults, and the stop: bounded
//! queues and bytes, jobs that expire in the queue, one deadline for the
//! whole stop with no crash counted, and a keep-alive request racing it.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::jobs::{stats, submit, wait_finished, wait_status};
use common::{corpus_file, temp_dir, wait_for, Server};

const CAT: &str = "valid/jpeg/photo_cat_320x240_progressive.jpg";

#[test]
fn the_queue_and_the_stored_bytes_are_bounded() {
    let s = Server::start(&["--job-slots", "1", "--max-queued-jobs", "2"]);
    let running = submit(&s, "__sleep?ms=3000", b"x");
    wait_status(&s, &running, "running", Duration::from_secs(10));
    submit(&s, "__sleep?ms=10", b"x");
    submit(&s, "__sleep?ms=10", b"x");
    let r = s.post("/v1/jobs/__sleep?ms=10", b"x");
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.error_code(), "job_queue_full");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.json()["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("--max-queued-jobs")));
    assert_eq!(
        stats(&s)["queued"],
        2,
        "nothing of the refused job is stored"
    );
    assert!(s.stop().success());

    let s = Server::start(&["--job-slots", "1", "--max-job-bytes", "1000"]);
    let first = submit(&s, "__sleep?ms=3000", &[b'x'; 600]);
    let r = s.post("/v1/jobs/__sleep?ms=10", &[b'x'; 600]);
    assert_eq!(r.status, 503);
    assert_eq!(r.error_code(), "job_queue_full");
    assert!(r.json()["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("--max-job-bytes")));
    assert_eq!(stats(&s)["bytes"], 600);
    // A job's input is dropped when it ends: its bytes are free again.
    wait_finished(&s, std::slice::from_ref(&first), Duration::from_secs(20));
    submit(&s, "__sleep?ms=10", &[b'x'; 600]);
    assert!(s.stop().success());
}

#[test]
fn a_job_still_queued_past_the_ttl_expires() {
    let s = Server::start(&["--job-slots", "1", "--job-ttl", "1s"]);
    let running = submit(&s, "__sleep?ms=4000", b"x");
    wait_status(&s, &running, "running", Duration::from_secs(10));
    let waiting = submit(&s, "resize?width=8", &corpus_file(CAT));
    let v = wait_status(&s, &waiting, "failed", Duration::from_secs(10));
    assert_eq!(v["error"]["code"], "expired", "{v}");
    assert_eq!(v["attempts"], 0, "it never ran: {v}");
    let r = s.get(&format!("/v1/jobs/{waiting}/result"));
    assert_eq!(r.status, 410);
    assert_eq!(r.error_code(), "expired");
    assert!(s.stop().success());
}

#[test]
fn the_stop_fits_its_timeout_and_counts_no_crash() {
    let dir = temp_dir();
    let dir_arg = dir.display().to_string();
    let flags = ["--state-dir", dir_arg.as_str(), "--job-slots", "1"];
    let mut with_timeout = flags.to_vec();
    with_timeout.extend(["--shutdown-timeout", "2s"]);
    let mut s1 = Server::start(&with_timeout);
    let id = submit(&s1, "__sleep?ms=6000", b"x");
    wait_status(&s1, &id, "running", Duration::from_secs(10));
    let signalled = Instant::now();
    s1.signal(nix::sys::signal::Signal::SIGTERM);
    let st = s1.wait_exit(Duration::from_secs(20));
    let took = signalled.elapsed();
    assert!(st.success(), "{st:?}");
    assert!(
        took < Duration::from_millis(3500),
        "the stop took {took:?} with --shutdown-timeout 2s"
    );
    assert!(s1.logs().contains("handing them back to the queue"));
    s1.assert_no_workers_left();

    // Restarted, the job runs again; its cut-off attempt was released, not
    // counted as a crash, so this is its first attempt.
    let s2 = Server::start(&flags);
    let done = wait_finished(&s2, std::slice::from_ref(&id), Duration::from_secs(30));
    assert_eq!(done[&id]["status"], "done", "{}", done[&id]);
    assert_eq!(done[&id]["attempts"], 1, "{}", done[&id]);
    assert!(s2.stop().success());
    let _ = std::fs::remove_dir_all(dir);
}

/// Reads one HTTP/1.1 response (headers and a Content-Length body).
fn read_response(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("read a response line");
        assert!(n > 0, "the connection closed before a response: {head:?}");
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).expect("body");
    (head, body)
}

#[test]
fn a_keep_alive_request_racing_the_stop_is_answered() {
    let mut s = Server::start(&["--workers", "1", "--shutdown-timeout", "10s"]);
    let mut idle = TcpStream::connect(s.addr).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
    let (head, _) = read_response(&mut idle);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // A request in flight keeps the drain going.
    let busy = common::post_in_thread(s.url("/v1/__sleep?ms=3000"));
    wait_for("the worker busy", Duration::from_secs(5), || {
        s.slots()
            .iter()
            .any(|(_, _, st)| st == "busy")
            .then_some(())
    });
    s.signal(nix::sys::signal::Signal::SIGTERM);
    wait_for("the drain", Duration::from_secs(5), || {
        s.logs().contains("stopped accepting").then_some(())
    });
    // The idle keep-alive connection was not cut under the client: its
    // next request is answered, and told the connection ends.
    write!(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
    let (head, _) = read_response(&mut idle);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    let mut rest = Vec::new();
    assert_eq!(idle.read_to_end(&mut rest).expect("closed"), 0);
    assert_eq!(busy.join().expect("thread").expect("sleep"), 200);
    assert!(s.wait_exit(Duration::from_secs(20)).success());
}

#[test]
fn an_idle_connection_is_closed_soon_after_the_stop_begins() {
    let mut s = Server::start(&["--workers", "1", "--shutdown-timeout", "20s"]);
    let mut idle = TcpStream::connect(s.addr).expect("connect");
    write!(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").expect("request");
    let (head, _) = read_response(&mut idle);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let busy = common::post_in_thread(s.url("/v1/__sleep?ms=4000"));
    wait_for("the worker busy", Duration::from_secs(5), || {
        s.slots()
            .iter()
            .any(|(_, _, st)| st == "busy")
            .then_some(())
    });
    s.signal(nix::sys::signal::Signal::SIGTERM);
    // The drain does not wait for the whole timeout on a quiet client.
    idle.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut rest = Vec::new();
    assert_eq!(
        idle.read_to_end(&mut rest)
            .expect("closed within the linger"),
        0
    );
    assert_eq!(busy.join().expect("thread").expect("sleep"), 200);
    assert!(s.wait_exit(Duration::from_secs(20)).success());
}

/// Stops `s` cleanly (the database is checkpointed into its file).
fn stop_clean(s: Server) {
    assert!(s.stop().success());
}

#[test]
fn a_damaged_database_file_does_not_stop_the_service() {
    for damage in ["header", "truncate"] {
        let dir = temp_dir();
        let (s, id) = one_finished_job(&dir, "resize?width=16");
        stop_clean(s);
        let db = dir.join("jobs.sqlite3");
        let mut bytes = std::fs::read(&db).expect("read the database");
        match damage {
            "header" => bytes[..100].copy_from_slice(&[0x5a; 100]),
            _ => bytes.truncate(bytes.len() / 3),
        }
        std::fs::write(&db, &bytes).expect("damage the database");

        let s = start_in(&dir);
        assert_eq!(
            s.post("/v1/resize?width=8", &corpus_file(CAT)).status,
            200,
            "{damage}: the synchronous API serves"
        );
        let ready = s.readyz();
        assert_eq!(ready["ready"], true, "{damage}: {ready}");
        assert_eq!(ready["job_store"], "corrupt", "{damage}: {ready}");
        for r in [
            s.get("/v1/jobs"),
            s.get(&format!("/v1/jobs/{id}")),
            s.post("/v1/jobs/resize?width=8", &corpus_file(CAT)),
        ] {
            assert_eq!(r.status, 503, "{damage}");
            assert_eq!(r.error_code(), "job_store_unavailable", "{damage}");
            assert!(
                r.json()["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("damaged")),
                "{damage}"
            );
            assert_eq!(
                r.header("retry-after"),
                None,
                "{damage}: not 'try again later'"
            );
        }
        let logs = s.logs();
        assert!(
            logs.contains("is damaged") && logs.contains("aside"),
            "{logs}"
        );
        assert!(s.stop().success());
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// pixfork with its job store in `dir`.
fn start_in(dir: &std::path::Path) -> Server {
    let arg = dir.display().to_string();
    Server::start(&["--state-dir", arg.as_str()])
}

/// pixfork with its job store in `dir`, and one job (`query` on the cat
/// photo) that has finished there.
fn one_finished_job(dir: &std::path::Path, query: &str) -> (Server, String) {
    let s = start_in(dir);
    let id = submit(&s, query, &corpus_file(CAT));
    wait_finished(&s, std::slice::from_ref(&id), Duration::from_secs(20));
    (s, id)
}

#[test]
fn a_damaged_result_is_never_served() {
    let dir = temp_dir();
    let (s, id) = one_finished_job(&dir, "resize?width=64");
    let result = s.get(&format!("/v1/jobs/{id}/result"));
    assert_eq!(result.status, 200);
    stop_clean(s);
    // Flip bytes in the middle of the stored result, in the file itself.
    let db = dir.join("jobs.sqlite3");
    let mut bytes = std::fs::read(&db).expect("read the database");
    let probe = &result.body[result.body.len() / 2..result.body.len() / 2 + 64];
    let at = bytes
        .windows(probe.len())
        .position(|w| w == probe)
        .expect("the result is in the database file");
    for b in &mut bytes[at..at + 32] {
        *b ^= 0xff;
    }
    std::fs::write(&db, &bytes).expect("damage the result");

    let s = start_in(&dir);
    assert_eq!(
        s.readyz()["job_store"],
        "up",
        "the file's structure is sound"
    );
    let r = s.get(&format!("/v1/jobs/{id}/result"));
    assert_eq!(r.status, 500);
    assert_eq!(r.error_code(), "job_result_corrupt");
    assert!(s.stop().success());
    let _ = std::fs::remove_dir_all(dir);
}

/// A small tmpfs, unmounted on drop: a disk that fills up for real.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = temp_dir();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(
            ok.success(),
            "mounting a tmpfs needs root (the test command runs as root)"
        );
        SmallDisk(dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_full_disk_fails_the_job_and_frees_its_slot() {
    let disk = SmallDisk::mount("6m");
    let dir_arg = disk.0.display().to_string();
    let s = Server::start(&["--state-dir", dir_arg.as_str(), "--job-slots", "1"]);
    // 1.5 MB in, some 14 MB of PNG out: the result cannot be stored.
    let big = submit(
        &s,
        "convert?format=png",
        &corpus_file("valid/jpeg/photo_dragonfly_4224x3168_13mp_progressive.jpg"),
    );
    let v = wait_finished(&s, std::slice::from_ref(&big), Duration::from_secs(60));
    assert_eq!(v[&big]["status"], "failed", "{}", v[&big]);
    assert_eq!(v[&big]["error"]["code"], "store_full", "{}", v[&big]);
    let r = s.get(&format!("/v1/jobs/{big}/result"));
    assert_eq!((r.status, r.error_code().as_str()), (507, "store_full"));
    // The slot is free and the queue moves on.
    let small = submit(&s, "resize?width=8", &corpus_file(CAT));
    let v = wait_finished(&s, std::slice::from_ref(&small), Duration::from_secs(20));
    assert_eq!(v[&small]["status"], "done", "{}", v[&small]);
    assert!(s.stop().success());
}

#[test]
fn a_database_moved_aside_answers_410_for_its_jobs() {
    let dir = temp_dir();
    let (s, id) = one_finished_job(&dir, "resize?width=16");
    stop_clean(s);
    for f in ["jobs.sqlite3", "jobs.sqlite3-wal", "jobs.sqlite3-shm"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let s = start_in(&dir);
    let r = s.get(&format!("/v1/jobs/{id}"));
    assert_eq!((r.status, r.error_code().as_str()), (410, "job_lost"));
    assert_eq!(s.metric("pixfork_job_store_resets_total"), Some(1.0));
    assert!(s.logs().contains("job_lost"));
    let r = s.get("/v1/jobs/0123456789abcdef0123456789abcdef");
    assert_eq!(r.status, 404);
    assert!(s.stop().success());
    let _ = std::fs::remove_dir_all(dir);
}
