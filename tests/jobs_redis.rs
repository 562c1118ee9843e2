//! Background jobs on the Redis store: a real `redis-server` per test (on a
//! free loopback port, no persistence, stopped by its pid at the end) and
//! one or two real pixfork instances sharing it.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{corpus_file, decode_dims, wait_for, Server};
use nix::sys::signal::Signal;
use serde_json::Value;

const CAT: &str = "valid/jpeg/photo_cat_320x240_progressive.jpg";

/// A `redis-server` of this test; killed and reaped on drop.
struct Redis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    /// Extra `redis-server` arguments (settings under test).
    extra: Vec<String>,
}

/// A free port below the kernel's ephemeral range (32768 and up), so no
/// listener that binds port 0 (pixfork, a proxy of another test) can take
/// it between this check and redis-server binding it.
fn free_port() -> u16 {
    for _ in 0..100 {
        let port = 20_000 + (fastrand::u16(..) % 12_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000-32000")
}

fn ping(port: u16) -> bool {
    let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 7];
    c.write_all(b"PING\r\n").is_ok() && c.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

impl Redis {
    fn start() -> Redis {
        Redis::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Redis {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("pixfork-redis-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut r = Redis {
            child: None,
            port: free_port(),
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        r.spawn();
        r
    }

    /// (Re)starts the server on this guard's port.
    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs it)");
        self.child = Some(child);
        let port = self.port;
        wait_for("redis-server answers PING", Duration::from_secs(10), || {
            ping(port).then_some(())
        });
        // The answer must come from this server: a port picked free can be
        // taken by another test's listener before redis-server binds it,
        // and then redis-server exits at once.
        std::thread::sleep(Duration::from_millis(50));
        let exited = self
            .child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_some());
        assert!(
            !exited,
            "redis-server could not bind port {port} (taken meanwhile); rerun the test"
        );
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (by its pid) and reaps it.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A pixfork on `redis` (its `--state-dir` is unused by the Redis store but
/// still points at a private temp path).
fn instance(redis: &Redis, extra: &[&str]) -> Server {
    let url = redis.url();
    let state = std::env::temp_dir().join(format!("pixfork-redis-state-{}", redis.port));
    let state = state.to_str().expect("utf-8").to_string();
    let mut flags = vec!["--jobs-url", &url, "--state-dir", &state];
    flags.extend_from_slice(extra);
    Server::start(&flags)
}

fn submit(s: &Server, path_and_query: &str, body: &[u8]) -> String {
    let r = s.post(&format!("/v1/jobs/{path_and_query}"), body);
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.header("location").is_some());
    r.json()["id"].as_str().expect("id").to_string()
}

fn status(s: &Server, id: &str) -> Value {
    let r = s.get(&format!("/v1/jobs/{id}"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

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

/// Which of the two servers ran a job, by the pid inside its `instance`.
fn runner_of(v: &Value, a: &Server, b: &Server) -> &'static str {
    let inst = v["instance"].as_str().unwrap_or("");
    if inst.contains(&format!(":{}:", a.pid)) {
        "a"
    } else if inst.contains(&format!(":{}:", b.pid)) {
        "b"
    } else {
        panic!("unknown instance in {v}")
    }
}

#[test]
fn two_instances_share_one_queue() {
    let redis = Redis::start();
    let a = instance(&redis, &[]);
    let b = instance(&redis, &[]);
    let img = corpus_file(CAT);
    let started = Instant::now();
    let ids: Vec<String> = (0..100)
        .map(|_| submit(&a, "resize?width=64", &img))
        .collect();
    let done = wait_finished(&a, &ids, Duration::from_secs(90));
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "redis: 100 jobs (resize 320x240 -> 64 wide) on 2 instances x 1 job slot in {elapsed:.2} s = {:.1} jobs/s",
        100.0 / elapsed
    );
    let mut share: HashMap<&str, usize> = HashMap::new();
    for (i, id) in ids.iter().enumerate() {
        let v = &done[id];
        assert_eq!(v["status"], "done", "{v}");
        assert_eq!(v["attempts"], 1, "{v}");
        *share.entry(runner_of(v, &a, &b)).or_default() += 1;
        // Readable from either instance.
        let from = if i % 2 == 0 { &a } else { &b };
        let r = from.get(&format!("/v1/jobs/{id}/result"));
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("image/jpeg"));
        assert_eq!(decode_dims(&r.body), (64, 48, 1));
    }
    eprintln!("redis: share of the 100 jobs: {share:?}");
    assert!(share.get("a").is_some_and(|n| *n > 0), "{share:?}");
    assert!(share.get("b").is_some_and(|n| *n > 0), "{share:?}");
    let st = b.get("/v1/jobs").json();
    assert_eq!(
        (st["done"].as_u64(), st["queued"].as_u64()),
        (Some(100), Some(0)),
        "{st}"
    );
    assert!(a.stop().success());
    assert!(b.stop().success());
}

#[test]
fn jobs_of_a_killed_instance_are_taken_over() {
    let redis = Redis::start();
    let flags = ["--job-claim-timeout", "2s"];
    let a = instance(&redis, &flags);
    let mut b = instance(&redis, &flags);
    b.readyz();
    // Body i has i+1 bytes; the sleep op's JSON result echoes the size.
    let ids: Vec<String> = (0..30)
        .map(|i| submit(&a, "__sleep?ms=200", &vec![b'x'; i + 1]))
        .collect();
    let on_b = wait_for("a job running on b", Duration::from_secs(20), || {
        ids.iter().find(|id| {
            let v = status(&a, id);
            v["status"] == "running" && runner_of(&v, &a, &b) == "b"
        })
    })
    .clone();
    b.signal(Signal::SIGKILL);
    assert!(!b.wait_exit(Duration::from_secs(10)).success());
    b.assert_no_workers_left();

    let done = wait_finished(&a, &ids, Duration::from_secs(60));
    for (i, id) in ids.iter().enumerate() {
        let v = &done[id];
        assert_eq!(v["status"], "done", "{v}");
        let r = a.get(&format!("/v1/jobs/{id}/result"));
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["bytes"], i + 1, "result of job {i}");
    }
    // The job cut off on b was finished by a, as a second attempt.
    let v = &done[&on_b];
    assert_eq!(runner_of(v, &a, &b), "a", "{v}");
    assert_eq!(v["attempts"], 2, "{v}");
    assert!(a.logs().contains("took over a job"), "{}", a.logs());
    assert!(a.stop().success());
}

#[test]
fn redis_down_answers_503_and_poison_and_recovery_work() {
    let mut redis = Redis::start();
    let s = instance(&redis, &[]);
    let img = corpus_file(CAT);

    // Poison on Redis too: two attempts, then job_poison.
    let poison = submit(&s, "__segv", b"");
    let v = wait_finished(&s, std::slice::from_ref(&poison), Duration::from_secs(20));
    assert_eq!(v[&poison]["error"]["code"], "job_poison", "{}", v[&poison]);
    assert_eq!(v[&poison]["attempts"], 2);

    let first = submit(&s, "resize?width=64", &img);
    wait_finished(&s, std::slice::from_ref(&first), Duration::from_secs(20));

    redis.stop();
    let t = Instant::now();
    let r = s.post("/v1/jobs/resize?width=64", &img);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (503, "job_store_unavailable")
    );
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "answered in {:?}",
        t.elapsed()
    );
    let r = s.get(&format!("/v1/jobs/{first}"));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (503, "job_store_unavailable")
    );
    // The synchronous API does not depend on Redis.
    assert_eq!(s.post("/v1/resize?width=64", &img).status, 200);

    // Redis back (empty: no persistence): jobs are accepted and run again.
    redis.spawn();
    let id = wait_for("submission accepted again", Duration::from_secs(20), || {
        let r = s.post("/v1/jobs/resize?width=64", &img);
        (r.status == 202).then(|| r.json()["id"].as_str().map(str::to_string))
    })
    .expect("id");
    let v = wait_finished(&s, std::slice::from_ref(&id), Duration::from_secs(20));
    assert_eq!(v[&id]["status"], "done", "{}", v[&id]);
    assert!(s.stop().success());
}

#[test]
fn a_redis_that_may_evict_jobs_is_refused_at_start() {
    let redis = Redis::start_with(&["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"]);
    let url = redis.url();
    let state = common::temp_dir();
    let state = state.to_str().expect("utf-8").to_string();
    let mut s = Server::spawn(&["--jobs-url", &url, "--state-dir", &state]);
    let st = s.wait_exit(Duration::from_secs(20));
    assert!(!st.success());
    let logs = s.logs();
    assert!(
        logs.contains("maxmemory-policy allkeys-lru") && logs.contains("noeviction"),
        "{logs}"
    );
    let _ = std::fs::remove_dir_all(state);
}

#[test]
fn redis_limits_and_expiry_hold_across_instances() {
    let redis = Redis::start();
    let a = instance(
        &redis,
        &[
            "--job-slots",
            "1",
            "--max-queued-jobs",
            "2",
            "--job-ttl",
            "2s",
        ],
    );
    let b = instance(
        &redis,
        &[
            "--job-slots",
            "1",
            "--max-queued-jobs",
            "2",
            "--job-ttl",
            "2s",
        ],
    );
    // Both instances busy, two queued: the limit is shared.
    let busy: Vec<String> = (0..2)
        .map(|_| submit(&a, "__sleep?ms=4000", b"x"))
        .collect();
    wait_for("both running", Duration::from_secs(10), || {
        busy.iter()
            .all(|id| status(&a, id)["status"] == "running")
            .then_some(())
    });
    let queued: Vec<String> = (0..2)
        .map(|_| submit(&b, "__sleep?ms=10", b"xyz"))
        .collect();
    let r = a.post("/v1/jobs/__sleep?ms=10", b"x");
    assert_eq!((r.status, r.error_code().as_str()), (503, "job_queue_full"));
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(b.get("/v1/jobs").json()["bytes"], 2 + 6, "inputs held");
    // Still queued after the TTL: failed as expired.
    for id in &queued {
        let v = wait_for("expired", Duration::from_secs(10), || {
            let v = status(&a, id);
            (v["status"] == "failed").then_some(v)
        });
        assert_eq!(v["error"]["code"], "expired", "{v}");
    }
    let done = wait_finished(&a, &busy, Duration::from_secs(20));
    for id in &busy {
        assert_eq!(done[id]["status"], "done", "{}", done[id]);
    }
    // Inputs of finished and expired jobs are no longer counted.
    wait_for("bytes released", Duration::from_secs(5), || {
        (a.get("/v1/jobs").json()["bytes"] == 0).then_some(())
    });
    assert!(a.stop().success());
    assert!(b.stop().success());
}

#[test]
fn a_redis_outage_is_visible_and_the_sync_api_stays_ready() {
    let mut redis = Redis::start();
    let s = instance(&redis, &[]);
    let id = submit(&s, "resize?width=16", &corpus_file(CAT));
    wait_finished(&s, std::slice::from_ref(&id), Duration::from_secs(20));
    assert_eq!(s.metric("pixfork_job_store_up"), Some(1.0));
    assert_eq!(s.metric("pixfork_jobs{state=\"done\"}"), Some(1.0));
    redis.stop();
    let ready = wait_for("the store seen down", Duration::from_secs(10), || {
        let r = s.get("/readyz");
        let v = r.json();
        (v["job_store"] == "down").then_some((r.status, v))
    });
    assert_eq!(ready.0, 200, "the sync API stays ready: {}", ready.1);
    assert_eq!(s.metric("pixfork_job_store_up"), Some(0.0));
    // The last known counts stay, rather than dropping to nothing.
    assert_eq!(s.metric("pixfork_jobs{state=\"done\"}"), Some(1.0));
    assert_eq!(s.post("/v1/resize?width=8", &corpus_file(CAT)).status, 200);
    redis.spawn();
    wait_for("the store seen up", Duration::from_secs(15), || {
        (s.readyz()["job_store"] == "up").then_some(())
    });
    assert!(s.stop().success());
}

/// What the proxy drops: the next answer that delivers a stream entry, or
/// the next answer to the claim script.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Lose {
    Delivery,
    Claim,
}

/// A TCP proxy in front of Redis that can lose one answer: it forwards
/// the command, then closes both sides instead of forwarding the reply,
/// as a network that fails at the worst moment would.
struct LossyProxy {
    port: u16,
    armed: std::sync::Arc<std::sync::Mutex<Option<Lose>>>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl LossyProxy {
    fn start(redis_port: u16) -> LossyProxy {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let armed: Arc<Mutex<Option<Lose>>> = Arc::new(Mutex::new(None));
        let dropped = Arc::new(AtomicUsize::new(0));
        let (armed2, dropped2) = (armed.clone(), dropped.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", redis_port)) else {
                    continue;
                };
                // Set by the client side when it forwarded a command whose
                // answer is to be lost.
                let pending: Arc<Mutex<Option<Lose>>> = Arc::new(Mutex::new(None));
                let (mut c_in, mut s_out) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                let (armed, p1) = (armed2.clone(), pending.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 1 << 16];
                    while let Ok(n) = c_in.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let text = String::from_utf8_lossy(&buf[..n]).to_string();
                        let kind = if text.contains("XREADGROUP") && text.contains("\r\n>\r\n") {
                            Some(Lose::Delivery)
                        } else if text.contains("stopped answering") {
                            Some(Lose::Claim)
                        } else {
                            None
                        };
                        if let (Some(kind), Ok(mut a)) = (kind, armed.lock()) {
                            if *a == Some(kind) {
                                if let Ok(mut p) = p1.lock() {
                                    *p = Some(kind);
                                }
                            }
                            let _ = &mut a;
                        }
                        if s_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = s_out.shutdown(std::net::Shutdown::Both);
                });
                let (mut s_in, mut c_out) = (server, client);
                let (armed, dropped, p2) = (armed2.clone(), dropped2.clone(), pending);
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 1 << 16];
                    while let Ok(n) = s_in.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let want = p2.lock().ok().and_then(|p| *p);
                        // An empty delivery (nil: nothing new) is passed on.
                        let empty = buf[..n].starts_with(b"*-1") || buf[..n].starts_with(b"_");
                        if want.is_some() && !(want == Some(Lose::Delivery) && empty) {
                            if let Ok(mut a) = armed.lock() {
                                *a = None;
                            }
                            dropped.fetch_add(1, Ordering::SeqCst);
                            let _ = c_out.shutdown(std::net::Shutdown::Both);
                            let _ = s_in.shutdown(std::net::Shutdown::Both);
                            break;
                        }
                        if c_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_out.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        LossyProxy {
            port,
            armed,
            dropped,
        }
    }

    fn arm(&self, what: Lose) {
        if let Ok(mut a) = self.armed.lock() {
            *a = Some(what);
        }
    }

    fn dropped(&self) -> usize {
        self.dropped.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[test]
fn a_lost_answer_does_not_stall_a_job_or_count_as_a_crash() {
    let redis = Redis::start();
    let proxy = LossyProxy::start(redis.port);
    let url = format!("redis://127.0.0.1:{}/0", proxy.port);
    let state = common::temp_dir();
    let state = state.to_str().expect("utf-8").to_string();
    // A long claim timeout: waiting for a takeover would fail the test.
    let s = Server::start(&[
        "--jobs-url",
        &url,
        "--state-dir",
        &state,
        "--job-claim-timeout",
        "60s",
    ]);
    for what in [Lose::Delivery, Lose::Claim] {
        let before = proxy.dropped();
        proxy.arm(what);
        // The connection a lost answer broke may fail one more command
        // (503, nothing stored) before the client reconnects.
        let id = wait_for("a submission", Duration::from_secs(10), || {
            let r = s.post("/v1/jobs/resize?width=16", &corpus_file(CAT));
            (r.status == 202).then(|| r.json()["id"].as_str().expect("id").to_string())
        });
        // Polled by hand: a poll may also meet the broken connection.
        let done = wait_for("the job done", Duration::from_secs(15), || {
            let r = s.get(&format!("/v1/jobs/{id}"));
            let v = (r.status == 200).then(|| r.json())?;
            (v["status"] == "done" || v["status"] == "failed").then_some(v)
        });
        assert_eq!(proxy.dropped(), before + 1, "{what:?}: an answer was lost");
        assert_eq!(done["status"], "done", "{what:?}: {done}");
        assert_eq!(done["attempts"], 1, "{what:?}: no crash counted: {done}");
    }
    assert!(s
        .metric("pixfork_job_lost_replies_total")
        .is_some_and(|n| n >= 1.0));
    assert!(
        !s.logs().contains("took over a job"),
        "an instance does not take a job over from itself: {}",
        s.logs()
    );
    assert!(s.stop().success());
    let _ = std::fs::remove_dir_all(state);
}

#[test]
fn jobs_lost_with_a_redis_restart_answer_410_job_lost() {
    let mut redis = Redis::start();
    let s = instance(&redis, &[]);
    let ids: Vec<String> = (0..3)
        .map(|_| submit(&s, "resize?width=16", &corpus_file(CAT)))
        .collect();
    wait_finished(&s, &ids, Duration::from_secs(20));
    // Redis restarts without persistence: everything is gone.
    redis.stop();
    redis.spawn();
    wait_for("the reset noticed", Duration::from_secs(15), || {
        (s.metric("pixfork_job_store_resets_total") == Some(1.0)).then_some(())
    });
    for id in &ids {
        let r = s.get(&format!("/v1/jobs/{id}"));
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (410, "job_lost"),
            "{id}"
        );
        let r = s.get(&format!("/v1/jobs/{id}/result"));
        assert_eq!(r.status, 410);
    }
    // A mistyped id is still not found.
    let r = s.get("/v1/jobs/0123456789abcdef0123456789abcdef");
    assert_eq!((r.status, r.error_code().as_str()), (404, "job_not_found"));
    let logs = s.logs();
    assert_eq!(
        logs.matches("lost its data (restarted without persistence")
            .count(),
        1,
        "logged once at error level: {logs}"
    );
    // New jobs work, under the new epoch.
    let id = submit(&s, "resize?width=16", &corpus_file(CAT));
    let done = wait_finished(&s, std::slice::from_ref(&id), Duration::from_secs(20));
    assert_eq!(done[&id]["status"], "done");
    assert_ne!(id[..8], ids[0][..8], "a new epoch");
    assert!(s.stop().success());
}

#[test]
fn with_persistence_a_redis_kill_loses_no_job_and_is_no_reset() {
    let mut redis = Redis::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let s = instance(&redis, &["--job-slots", "1"]);
    let img = corpus_file(CAT);
    // One job runs while twenty wait.
    let mut ids = vec![submit(&s, "__sleep?ms=1500", b"x")];
    wait_for("the first job running", Duration::from_secs(10), || {
        (status(&s, &ids[0])["status"] == "running").then_some(())
    });
    ids.extend((0..20).map(|_| submit(&s, "resize?width=16", &img)));
    assert!(s.get("/v1/jobs").json()["queued"].as_u64() >= Some(15));
    // SIGKILL mid-queue, then the same data dir: the AOF is replayed.
    redis.stop();
    redis.spawn();
    let done = wait_finished(&s, &ids, Duration::from_secs(60));
    for id in &ids {
        assert_eq!(done[id]["status"], "done", "{}", done[id]);
    }
    assert_eq!(
        s.metric("pixfork_job_store_resets_total"),
        Some(0.0),
        "a store that kept its data is not reported as reset"
    );
    assert!(!s.logs().contains("lost its data"));
    assert!(s.stop().success());
}
