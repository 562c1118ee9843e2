//! Background jobs on the embedded (SQLite) store: the real binary, a fresh
//! state dir per test, HTTP only.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{corpus_file, decode_dims, wait_for, Server};
use nix::sys::signal::Signal;
use serde_json::Value;

const CAT: &str = "valid/jpeg/photo_cat_320x240_progressive.jpg";

/// A fresh directory under the system temp dir, removed at the end (even
/// when a test fails halfway, and even if it left files immutable).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let p =
            std::env::temp_dir().join(format!("pixfork-jobs-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.0) {
            for e in entries.flatten() {
                let _ = std::process::Command::new("chattr")
                    .arg("-i")
                    .arg(e.path())
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Submits a job, checks the 202 shape, returns its id.
fn submit(s: &Server, path_and_query: &str, body: &[u8]) -> String {
    let r = s.post(&format!("/v1/jobs/{path_and_query}"), body);
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    let id = v["id"].as_str().expect("id").to_string();
    assert_eq!(v["status"], "queued");
    assert_eq!(v["status_url"], format!("/v1/jobs/{id}"));
    assert_eq!(v["result_url"], format!("/v1/jobs/{id}/result"));
    assert_eq!(
        r.header("location"),
        Some(format!("/v1/jobs/{id}").as_str())
    );
    id
}

fn status(s: &Server, id: &str) -> Value {
    let r = s.get(&format!("/v1/jobs/{id}"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

/// Polls every job until it is done or failed; returns their status JSON.
fn wait_finished(s: &Server, ids: &[String], deadline: Duration) -> HashMap<String, Value> {
    let mut out: HashMap<String, Value> = HashMap::new();
    wait_for("jobs finished", deadline, || {
        for id in ids {
            if out.contains_key(id) {
                continue;
            }
            let v = status(s, id);
            if v["status"] == "done" || v["status"] == "failed" {
                out.insert(id.clone(), v);
            }
        }
        (out.len() == ids.len()).then_some(())
    });
    out
}

fn delete(s: &Server, path: &str) -> (u16, String) {
    let mut r = common::agent().delete(&s.url(path)).call().expect("DELETE");
    (
        r.status().as_u16(),
        r.body_mut().read_to_string().unwrap_or_default(),
    )
}

fn stats(s: &Server) -> Value {
    let r = s.get("/v1/jobs");
    assert_eq!(r.status, 200);
    r.json()
}

fn is_rfc3339_utc(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 24 && s.ends_with('Z') && s.as_bytes()[10] == b'T')
}

#[test]
fn fifty_resizes_finish_and_decode() {
    let dir = TempDir::new("fifty");
    let s = Server::start(&["--state-dir", dir.path()]);
    let img = corpus_file(CAT);

    // Latency of the synchronous route and of the 202 path, same input.
    let mut sync_ms = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let r = s.post("/v1/resize?width=64", &img);
        assert_eq!(r.status, 200);
        sync_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }

    let started = Instant::now();
    let mut accept_ms = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        ids.push(submit(&s, "resize?width=64", &img));
        accept_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let done = wait_finished(&s, &ids, Duration::from_secs(60));
    let elapsed = started.elapsed().as_secs_f64();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    eprintln!(
        "sqlite: 50 jobs (resize 320x240 -> 64 wide, 1 job slot) submitted and finished in {elapsed:.2} s \
         = {:.1} jobs/s; median 202 latency {:.2} ms vs median sync request {:.2} ms",
        50.0 / elapsed,
        median(&mut accept_ms),
        median(&mut sync_ms)
    );

    for id in &ids {
        let v = &done[id];
        assert_eq!(v["status"], "done", "{v}");
        assert_eq!(v["op"], "resize");
        assert_eq!(v["attempts"], 1, "{v}");
        assert!(v.get("error").is_none(), "{v}");
        for k in ["created_at", "started_at", "finished_at"] {
            assert!(is_rfc3339_utc(&v[k]), "{k} in {v}");
        }
        assert!(v["instance"]
            .as_str()
            .is_some_and(|i| i.contains(&format!(":{}:", s.pid))));
        let r = s.get(&format!("/v1/jobs/{id}/result"));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("image/jpeg"));
        assert_eq!(r.header("x-image-width"), Some("64"));
        assert_eq!(decode_dims(&r.body), (64, 48, 1));
    }
    let st = stats(&s);
    assert_eq!(st["done"], 50, "{st}");
    assert_eq!(st["queued"], 0, "{st}");
    assert!(s.stop().success());
}

#[test]
fn api_validates_and_follows_the_job_life() {
    let dir = TempDir::new("api");
    let s = Server::start(&[
        "--state-dir",
        dir.path(),
        // One job's input is capped by --max-body (--max-job-bytes bounds
        // the whole store).
        "--max-body",
        "64KiB",
        "--job-slots",
        "1",
    ]);
    let img = corpus_file(CAT);

    // Refused before anything is stored.
    let r = s.post("/v1/jobs/resize?width=0", &img);
    assert_eq!((r.status, r.error_code().as_str()), (400, "bad_parameter"));
    let r = s.post("/v1/jobs/resize?widht=5", &img);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "unknown_parameter")
    );
    let r = s.post("/v1/jobs/enhance", &img);
    assert_eq!((r.status, r.error_code().as_str()), (404, "unknown_op"));
    let r = s.post("/v1/jobs/resize?width=5", b"");
    assert_eq!((r.status, r.error_code().as_str()), (400, "empty_body"));
    let r = s.post("/v1/jobs/resize?width=5", &vec![0u8; 65 * 1024]);
    assert_eq!((r.status, r.error_code().as_str()), (413, "body_too_large"));
    let st = stats(&s);
    assert_eq!(
        st["queued"].as_u64().unwrap_or(99) + st["done"].as_u64().unwrap_or(99),
        0
    );

    // Unknown ids, wrong methods.
    let unknown = "0123456789abcdef0123456789abcdef";
    let r = s.get(&format!("/v1/jobs/{unknown}"));
    assert_eq!((r.status, r.error_code().as_str()), (404, "job_not_found"));
    let r = s.get(&format!("/v1/jobs/{unknown}/result"));
    assert_eq!((r.status, r.error_code().as_str()), (404, "job_not_found"));
    assert_eq!(delete(&s, &format!("/v1/jobs/{unknown}")).0, 404);
    assert_eq!(s.get("/v1/jobs/not-an-id").status, 404);
    let r = s.post(&format!("/v1/jobs/{unknown}/result"), b"x");
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (405, "method_not_allowed")
    );

    // One slot: a slow job runs, the next waits in the queue.
    let slow = submit(&s, "__sleep?ms=1500", b"");
    let queued = submit(&s, "resize?width=32", &img);
    wait_for("slow job running", Duration::from_secs(10), || {
        (status(&s, &slow)["status"] == "running").then_some(())
    });
    assert_eq!(status(&s, &queued)["status"], "queued");
    for id in [&slow, &queued] {
        let r = s.get(&format!("/v1/jobs/{id}/result"));
        assert_eq!((r.status, r.error_code().as_str()), (409, "job_not_done"));
    }
    let (code, body) = delete(&s, &format!("/v1/jobs/{slow}"));
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("job_running"), "{body}");
    // Cancelling a queued job: gone at once, and never run.
    assert_eq!(delete(&s, &format!("/v1/jobs/{queued}")).0, 204);
    assert_eq!(s.get(&format!("/v1/jobs/{queued}")).status, 404);

    let done = wait_finished(&s, std::slice::from_ref(&slow), Duration::from_secs(10));
    assert_eq!(done[&slow]["status"], "done");
    // A test op's result is the engine's JSON description.
    let r = s.get(&format!("/v1/jobs/{slow}/result"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json()["format"], "none");
    // Removing a finished job.
    assert_eq!(delete(&s, &format!("/v1/jobs/{slow}")).0, 204);
    assert_eq!(s.get(&format!("/v1/jobs/{slow}/result")).status, 404);
    assert!(
        !s.logs()
            .contains(&format!("job_id={queued} op=resize attempt=1")),
        "the cancelled job never ran"
    );
    assert!(s.stop().success());
}

#[test]
fn sigkill_with_jobs_in_flight_loses_none_and_runs_each_once() {
    let dir = TempDir::new("sigkill");
    let flags = ["--state-dir", dir.path(), "--job-slots", "2"];
    let mut s1 = Server::start(&flags);
    s1.readyz(); // records the worker pids, checked below
                 // Body i has i+1 bytes: each result (the sleep op's JSON echoes the
                 // input size) proves it belongs to its own job.
    let ids: Vec<String> = (0..20)
        .map(|i| submit(&s1, "__sleep?ms=300", &vec![b'x'; i + 1]))
        .collect();
    // Kill when some jobs are done and others are running.
    let before: HashMap<String, Value> =
        wait_for("jobs done and running", Duration::from_secs(20), || {
            let all: HashMap<String, Value> =
                ids.iter().map(|id| (id.clone(), status(&s1, id))).collect();
            let done = all.values().filter(|v| v["status"] == "done").count();
            let running = all.values().filter(|v| v["status"] == "running").count();
            (done >= 2 && running >= 1).then_some(all)
        });
    s1.signal(Signal::SIGKILL);
    assert!(!s1.wait_exit(Duration::from_secs(10)).success());
    s1.assert_no_workers_left();

    let s2 = Server::start(&flags);
    let after = wait_finished(&s2, &ids, Duration::from_secs(60));
    let mut reran = 0;
    for (i, id) in ids.iter().enumerate() {
        let v = &after[id];
        assert_eq!(v["status"], "done", "{v}");
        let attempts = v["attempts"].as_u64().unwrap_or(0);
        assert!((1..=2).contains(&attempts), "{v}");
        if attempts == 2 {
            reran += 1;
        }
        // Done before the kill: not run again, same finish time.
        if before[id]["status"] == "done" {
            assert_eq!(v["finished_at"], before[id]["finished_at"], "{v}");
            assert_eq!(attempts, 1);
        }
        let r = s2.get(&format!("/v1/jobs/{id}/result"));
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["bytes"], i + 1, "result of job {i}");
        // Finished exactly once across both processes' logs.
        let line = format!("job_id={id} ");
        let finishes = [s1.logs(), s2.logs()]
            .iter()
            .flat_map(|l| l.lines().map(str::to_string).collect::<Vec<_>>())
            .filter(|l| l.contains(&line) && l.contains("job finished"))
            .count();
        assert!(finishes <= 1, "job {id} finished {finishes} times");
    }
    // The jobs cut off by the kill were re-queued with the attempt counted.
    assert!(
        reran >= 1,
        "a job running at the kill counts a second attempt"
    );
    assert!(
        s2.logs().contains("re-queued jobs that were running"),
        "{}",
        s2.logs()
    );
    assert!(s2.stop().success());
}

/// (status, code) of the synchronous route for the same input.
fn sync_error(s: &Server, body: &[u8]) -> (u16, String) {
    let r = s.post("/v1/resize?width=64", body);
    (r.status, r.error_code())
}

#[test]
fn bad_input_and_poison_jobs_fail_and_the_pool_stays_healthy() {
    let dir = TempDir::new("fail");
    let s = Server::start(&["--state-dir", dir.path()]);
    for rel in [
        "invalid/truncated/jpeg_cut_inside_sof_header.jpg",
        "invalid/garbage/plain_text.txt",
    ] {
        let body = corpus_file(rel);
        let (want_status, want_code) = sync_error(&s, &body);
        assert!((400..500).contains(&want_status), "{rel}: {want_status}");
        let id = submit(&s, "resize?width=64", &body);
        let v = wait_finished(&s, std::slice::from_ref(&id), Duration::from_secs(20))
            .remove(&id)
            .expect("status");
        assert_eq!(v["status"], "failed", "{rel}: {v}");
        assert_eq!(v["error"]["code"], want_code.as_str(), "{rel}: {v}");
        assert!(v["error"]["message"].is_string());
        assert_eq!(v["attempts"], 1, "a bad input is not retried: {v}");
        let r = s.get(&format!("/v1/jobs/{id}/result"));
        assert_eq!(
            (r.status, r.error_code()),
            (want_status, want_code),
            "{rel}"
        );
    }

    // A job that kills its worker: retried once, then failed as poison.
    let id = submit(&s, "__segv", b"");
    let v = wait_finished(&s, std::slice::from_ref(&id), Duration::from_secs(20))
        .remove(&id)
        .expect("status");
    assert_eq!(v["status"], "failed", "{v}");
    assert_eq!(v["error"]["code"], "job_poison", "{v}");
    assert_eq!(v["attempts"], 2, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("2 attempts") && m.contains("died")),
        "{v}"
    );
    let r = s.get(&format!("/v1/jobs/{id}/result"));
    assert_eq!((r.status, r.error_code().as_str()), (502, "job_poison"));

    // The pool is whole again: every slot ready, sync and job work succeed.
    s.wait_all_ready();
    let r = s.post("/v1/resize?width=64", &corpus_file(CAT));
    assert_eq!(r.status, 200);
    let ok = submit(&s, "resize?width=64", &corpus_file(CAT));
    let v = wait_finished(&s, std::slice::from_ref(&ok), Duration::from_secs(20));
    assert_eq!(v[&ok]["status"], "done");
    assert!(s.stop().success());
}

#[test]
fn results_expire_after_the_ttl() {
    let dir = TempDir::new("ttl");
    let s = Server::start(&["--state-dir", dir.path(), "--job-ttl", "2s"]);
    let id = submit(&s, "resize?width=64", &corpus_file(CAT));
    wait_finished(&s, std::slice::from_ref(&id), Duration::from_secs(20));
    assert_eq!(s.get(&format!("/v1/jobs/{id}/result")).status, 200);
    let t = Instant::now();
    wait_for("result expired", Duration::from_secs(10), || {
        (s.get(&format!("/v1/jobs/{id}/result")).status == 410).then_some(())
    });
    // Finished at least ~2 s before it expired.
    assert!(
        t.elapsed() > Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );
    let r = s.get(&format!("/v1/jobs/{id}/result"));
    assert_eq!(r.error_code(), "job_expired");
    let r = s.get(&format!("/v1/jobs/{id}"));
    assert_eq!((r.status, r.error_code().as_str()), (410, "job_expired"));
    assert_eq!(delete(&s, &format!("/v1/jobs/{id}")).0, 410);
    // Expired is not unknown.
    assert_eq!(
        s.get("/v1/jobs/0123456789abcdef0123456789abcdef").status,
        404
    );
    let st = stats(&s);
    assert_eq!(
        (st["expired"].as_u64(), st["done"].as_u64()),
        (Some(1), Some(0)),
        "{st}"
    );
    assert!(s.stop().success());
}

#[test]
fn unusable_or_shared_state_dir_stops_the_boot() {
    // A file where the state dir should be.
    let dir = TempDir::new("bootfile");
    let file = dir.0.join("not-a-dir");
    std::fs::write(&file, b"x").expect("write");
    let file = file.to_str().expect("utf-8");
    let mut s = Server::spawn(&["--state-dir", file]);
    let st = s.wait_exit(Duration::from_secs(20));
    assert!(!st.success());
    let logs = s.logs();
    assert!(
        logs.contains("cannot use the state dir") && logs.contains(file),
        "{logs}"
    );

    // A second instance on a state dir in use.
    let shared = TempDir::new("bootlock");
    let s1 = Server::start(&["--state-dir", shared.path()]);
    let mut s2 = Server::spawn(&["--state-dir", shared.path()]);
    assert!(!s2.wait_exit(Duration::from_secs(20)).success());
    assert!(
        s2.logs().contains("in use by another pixfork"),
        "{}",
        s2.logs()
    );
    assert!(s1.stop().success());
}

/// Marks a file immutable: even root's writes through open descriptors fail
/// (EPERM), which is how this test makes the disk refuse writes at runtime.
fn chattr(flag: &str, p: &Path) {
    let ok = std::process::Command::new("chattr")
        .arg(flag)
        .arg(p)
        .status()
        .expect("run chattr (e2fsprogs)")
        .success();
    assert!(
        ok,
        "chattr {flag} {} (needs ext4-like temp dir)",
        p.display()
    );
}

#[test]
fn a_disk_that_refuses_writes_answers_503_and_recovers() {
    let dir = TempDir::new("disk");
    let s = Server::start(&["--state-dir", dir.path()]);
    let img = corpus_file(CAT);
    let first = submit(&s, "resize?width=64", &img);
    wait_finished(&s, std::slice::from_ref(&first), Duration::from_secs(20));
    let db = dir.0.join("jobs.sqlite3");
    let wal = dir.0.join("jobs.sqlite3-wal");
    assert!(wal.exists(), "WAL mode");
    chattr("+i", &wal);
    chattr("+i", &db);

    let r = s.post("/v1/jobs/resize?width=64", &img);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (503, "job_store_unavailable")
    );
    assert_eq!(r.header("retry-after"), Some("1"));
    // The sync route does not need the store.
    assert_eq!(s.post("/v1/resize?width=64", &img).status, 200);

    chattr("-i", &db);
    chattr("-i", &wal);
    // Nothing of the refused submission was stored; the store works again.
    let st = stats(&s);
    assert_eq!(
        (st["done"].as_u64(), st["queued"].as_u64()),
        (Some(1), Some(0)),
        "{st}"
    );
    let again = submit(&s, "resize?width=64", &img);
    let v = wait_finished(&s, std::slice::from_ref(&again), Duration::from_secs(20));
    assert_eq!(v[&again]["status"], "done");
    assert_eq!(s.get(&format!("/v1/jobs/{first}/result")).status, 200);
    assert!(s.stop().success());
}

#[test]
fn sigterm_finishes_running_jobs_and_keeps_queued_ones() {
    let dir = TempDir::new("drain");
    let flags = ["--state-dir", dir.path(), "--job-slots", "1"];
    let s1 = Server::start(&flags);
    let ids: Vec<String> = (0..3)
        .map(|i| submit(&s1, "__sleep?ms=800", &vec![b'x'; i + 1]))
        .collect();
    wait_for("first job running", Duration::from_secs(10), || {
        (status(&s1, &ids[0])["status"] == "running").then_some(())
    });
    // Drain: the running job finishes, the queued ones stay on disk.
    assert!(s1.stop().success());

    let s2 = Server::start(&flags);
    let first = status(&s2, &ids[0]);
    assert_eq!(
        first["status"], "done",
        "the running job finished before exit: {first}"
    );
    let done = wait_finished(&s2, &ids, Duration::from_secs(20));
    for id in &ids {
        assert_eq!(done[id]["status"], "done", "{}", done[id]);
        assert_eq!(
            done[id]["attempts"], 1,
            "a clean stop costs no attempt: {}",
            done[id]
        );
    }
    assert!(s2.stop().success());
}

/// A webhook receiver on loopback: records every POST (path, content type,
/// JSON body) and answers 200, except that `/flaky` answers 503 to its
/// first request.
struct Receiver {
    addr: std::net::SocketAddr,
    got: std::sync::Arc<std::sync::Mutex<Vec<(String, String, Value)>>>,
}

impl Receiver {
    fn start() -> Receiver {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = got.clone();
        std::thread::spawn(move || {
            let mut flaky_seen = false;
            for mut stream in listener.incoming().flatten() {
                let Ok(clone) = stream.try_clone() else {
                    continue;
                };
                let mut reader = BufReader::new(clone);
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let (mut len, mut ctype) = (0usize, String::new());
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    let lower = h.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if let Some(v) = lower.strip_prefix("content-type:") {
                        ctype = v.trim().to_string();
                    }
                }
                let mut body = vec![0u8; len.min(1 << 20)];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let answer: &[u8] = if path == "/flaky" && !flaky_seen {
                    flaky_seen = true;
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                };
                let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if let Ok(mut g) = sink.lock() {
                    g.push((path, ctype, json));
                }
                let _ = stream.write_all(answer);
            }
        });
        Receiver { addr, got }
    }

    fn url(&self, path: &str) -> String {
        let url = format!("http://{}{path}", self.addr);
        form_urlencoded::byte_serialize(url.as_bytes()).collect()
    }

    fn received(&self) -> Vec<(String, String, Value)> {
        self.got.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

/// The value of one Prometheus sample, 0 when it is not there yet.
fn metric(s: &Server, sample: &str) -> f64 {
    let text = String::from_utf8_lossy(&s.get("/metrics").body).to_string();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(sample)
                .map(|v| v.trim().parse().unwrap_or(0.0))
        })
        .unwrap_or(0.0)
}

#[test]
fn callbacks_post_the_final_status_and_pass_the_address_guard() {
    let hook = Receiver::start();
    let s = Server::start(&["--allowed-private-networks", "127.0.0.1/32"]);
    let img = corpus_file(CAT);

    // Refused before anything is stored, naming callback_url.
    for (q, why) in [
        ("callback_url=ftp%3A%2F%2Fexample.com%2Fh", "not http(s)"),
        ("callback_url=http%3A%2F%2F10.0.0.1%2Fh", "private"),
        (
            "callback_url=http%3A%2F%2Fu%3Ap%40example.com%2Fh",
            "credentials",
        ),
        ("callback_url=not-a-url", "not a url"),
        (
            "callback_url=http%3A%2F%2Fa%2F&callback_url=http%3A%2F%2Fb%2F",
            "twice",
        ),
    ] {
        let r = s.post(&format!("/v1/jobs/resize?width=32&{q}"), &img);
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (400, "bad_parameter"),
            "{why}"
        );
        assert_eq!(r.json()["error"]["param"], "callback_url", "{why}");
    }
    let r = s.post(
        &format!("/v1/resize?width=32&callback_url={}", hook.url("/h")),
        &img,
    );
    assert_eq!((r.status, r.error_code().as_str()), (400, "bad_parameter"));
    assert_eq!(r.json()["error"]["param"], "callback_url");
    assert_eq!(stats(&s)["queued"], 0);

    let done = submit(
        &s,
        &format!("resize?width=32&callback_url={}", hook.url("/done")),
        &img,
    );
    let failed = submit(
        &s,
        &format!("resize?width=32&callback_url={}", hook.url("/failed")),
        b"not an image",
    );
    let flaky = submit(
        &s,
        &format!("pipeline?ops=grayscale&callback_url={}", hook.url("/flaky")),
        &img,
    );
    let got = wait_for("three callbacks delivered", Duration::from_secs(30), || {
        let got = hook.received();
        (got.iter().filter(|(p, _, _)| p != "/flaky").count() == 2
            && got.iter().filter(|(p, _, _)| p == "/flaky").count() == 2)
            .then_some(got)
    });
    for (path, ctype, body) in &got {
        assert_eq!(ctype, "application/json", "{path}");
        let id = body["id"].as_str().expect("id in the callback");
        // Exactly what a poll answers.
        assert_eq!(body, &status(&s, id), "{path}");
        let (want_id, want_status) = match path.as_str() {
            "/done" => (&done, "done"),
            "/failed" => (&failed, "failed"),
            _ => (&flaky, "done"),
        };
        assert_eq!(
            (id, body["status"].as_str()),
            (want_id.as_str(), Some(want_status))
        );
    }
    let failed_body = &got
        .iter()
        .find(|(p, _, _)| p == "/failed")
        .expect("failed")
        .2;
    assert_eq!(failed_body["error"]["code"], "unsupported_format");
    wait_for("callback metric", Duration::from_secs(5), || {
        (metric(&s, "pixfork_job_callbacks_total{result=\"delivered\"}") == 3.0).then_some(())
    });
    assert!(s.stop().success());

    // Without the private network allowed, a name that resolves to
    // loopback passes submission but is refused when the callback is sent.
    let strict = Server::start(&[]);
    let before = hook.received().len();
    let url = format!("http://localhost:{}/sneaky", hook.addr.port());
    let q: String = form_urlencoded::byte_serialize(url.as_bytes()).collect();
    let id = submit(&strict, &format!("resize?width=32&callback_url={q}"), &img);
    wait_finished(&strict, std::slice::from_ref(&id), Duration::from_secs(30));
    wait_for("callback refused", Duration::from_secs(10), || {
        (metric(&strict, "pixfork_job_callbacks_total{result=\"refused\"}") == 1.0).then_some(())
    });
    assert_eq!(
        hook.received().len(),
        before,
        "nothing reached the receiver"
    );
    assert!(strict.logs().contains("job callback not delivered"));
    assert!(strict.stop().success());
}
