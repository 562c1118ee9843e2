//! Test harness: start the real `pixfork` binary on a free loopback port,
//! talk HTTP to it, and check that it leaves nothing behind.
#![allow(dead_code)]

pub mod jobs;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_pixfork");

/// The shared test corpus, beside the checkout.
pub fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus")
}

/// `name` from the environment, parsed, or `default` when unset or not a
/// `T` (the knobs of the long-running tests: seconds, seeds).
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

pub fn corpus_file(rel: &str) -> Vec<u8> {
    let p = corpus().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// One of Pillow's own test images, fetched into `target/pillow-images`
/// by `scripts/pillow-images.sh` (which `scripts/test.sh` runs).
pub fn pillow_image(name: &str) -> Vec<u8> {
    let p = pillow_image_path(name);
    std::fs::read(&p).unwrap_or_else(|e| {
        panic!(
            "read {}: {e} (scripts/pillow-images.sh fetches it)",
            p.display()
        )
    })
}

/// Runs a Python snippet with Pillow (to make inputs at test time);
/// `args` become `sys.argv[1:]`.
pub fn pillow(script: &str, args: &[&std::path::Path]) {
    run_tool(
        Command::new("python3").arg("-c").arg(script).args(args),
        "python3 (scripts/test.sh installs Pillow)",
    );
}

/// Runs a tool that makes a test input and expects it to succeed; `what`
/// names it (and where it comes from) in the failure.
pub fn run_tool(command: &mut Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where [`pillow_image`] reads `name` from.
pub fn pillow_image_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/pillow-images")
        .join(name)
}

/// Compares pixfork's lossless decodes with Pillow's, through
/// `tests/fidelity/compare.py`: for each (source file, our PNG of it), one
/// JSON object with `mad` (mean absolute difference per RGBA channel, at 8
/// bits, premultiplied) or `error`, in the order given.
pub fn compare_with_pillow(pairs: &[(PathBuf, PathBuf)]) -> Vec<serde_json::Value> {
    use std::io::Write;
    let list: String = pairs
        .iter()
        .map(|(source, ours)| format!("{}\t{}\n", source.display(), ours.display()))
        .collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fidelity/compare.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (scripts/test.sh installs Pillow)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(list.as_bytes())
        .expect("write the list");
    let out = child.wait_with_output().expect("compare.py");
    assert!(
        out.status.success(),
        "compare.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(results.len(), pairs.len(), "one answer per file");
    results
}

/// Posts each file to `convert?format=png`, expects 200, and checks the
/// decode against Pillow's within 2 levels per channel.
pub fn assert_decodes_as_pillow(s: &Server, dir: &std::path::Path, files: &[PathBuf]) {
    let mut pairs = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let bytes = std::fs::read(file).expect("read input");
        let r = s.post("/v1/convert?format=png", &bytes);
        assert_eq!(
            r.status,
            200,
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&r.body)
        );
        let ours = dir.join(format!("ours{i}.png"));
        std::fs::write(&ours, &r.body).expect("write our decode");
        pairs.push((file.clone(), ours));
    }
    for ((file, _), result) in pairs.iter().zip(compare_with_pillow(&pairs)) {
        let mad = mad_of(&result);
        assert!(
            mad.len() == 4 && mad.iter().all(|&m| m <= 2.0),
            "{}: {result}",
            file.display()
        );
    }
}

/// The per-channel mean absolute differences of one
/// [`compare_with_pillow`] result (empty when it has an error instead).
pub fn mad_of(result: &serde_json::Value) -> Vec<f64> {
    result["mad"]
        .as_array()
        .map(|m| m.iter().filter_map(|v| v.as_f64()).collect())
        .unwrap_or_default()
}

/// One line of MANIFEST.tsv.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: String,
    pub format: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub frames: Option<u32>,
    pub valid: bool,
    /// `any`: a 200 or a 4xx is right (formats supported since the corpus
    /// was written; `tests/formats.rs` checks them).
    pub any: bool,
}

pub fn manifest() -> Vec<Entry> {
    manifest_file("MANIFEST.tsv")
}

/// The lines of one of the corpus's manifests (same columns in both).
pub fn manifest_file(name: &str) -> Vec<Entry> {
    let text = std::fs::read_to_string(corpus().join(name)).expect("manifest");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Entry {
                path: f[0].to_string(),
                format: f[1].to_string(),
                width: f[2].parse().ok(),
                height: f[3].parse().ok(),
                frames: f[4].parse().ok(),
                valid: f[5] == "valid",
                any: f[5] == "any",
            }
        })
        .collect()
}

/// Polls `cond` every 20 ms until it holds or `deadline` passes.
pub fn wait_for<T>(what: &str, deadline: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        if Instant::now() > end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body[..self.body.len().min(300)])
            )
        })
    }

    /// The `error.code` of a JSON error body (asserting its shape).
    pub fn error_code(&self) -> String {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "error responses are JSON"
        );
        let v = self.json();
        assert!(v["error"]["message"].is_string(), "error.message in {v}");
        v["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("error.code in {v}"))
            .to_string()
    }
}

/// POSTs an empty body to `url` on a thread of its own; joins to the status.
pub fn post_in_thread(url: String) -> std::thread::JoinHandle<Result<u16, ureq::Error>> {
    std::thread::spawn(move || {
        agent()
            .post(&url)
            .send(&[][..])
            .map(|r| r.status().as_u16())
    })
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn to_resp(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Resp {
    let mut r = r.unwrap_or_else(|e| panic!("request failed: {e}"));
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let status = r.status().as_u16();
    let body = r
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .expect("read body");
    Resp {
        status,
        headers,
        body,
    }
}

pub struct Server {
    child: Option<Child>,
    /// A state dir made for this server, removed when it is dropped.
    own_state: Option<PathBuf>,
    pub addr: SocketAddr,
    pub pid: u32,
    logs: Arc<Mutex<String>>,
    agent: ureq::Agent,
    /// Every worker pid ever seen in /readyz, checked to be gone at the end.
    seen_workers: Mutex<Vec<u32>>,
}

impl Server {
    /// Starts pixfork with 2 workers on a free port plus `extra` flags, and
    /// waits until every slot is ready.
    pub fn start(extra: &[&str]) -> Server {
        let s = Server::spawn(extra);
        s.wait_all_ready();
        s
    }

    /// Starts pixfork without waiting for readiness.
    pub fn spawn(extra: &[&str]) -> Server {
        Server::spawn_with(&[], extra, &[])
    }

    /// Starts `prefix... pixfork --listen 127.0.0.1:0 [--workers 2] extra...`
    /// with extra environment variables. `prefix` lets a test run the master
    /// under a wrapper that execs it (such as systemd-socket-activate).
    pub fn spawn_with(prefix: &[&str], extra: &[&str], envs: &[(&str, &str)]) -> Server {
        let mut args: Vec<&str> = prefix.iter().skip(1).copied().collect();
        if !prefix.is_empty() {
            args.push(BIN);
        }
        if !extra.contains(&"--listen") {
            args.extend(["--listen", "127.0.0.1:0"]);
        }
        if !extra.contains(&"--workers") {
            args.extend(["--workers", "2"]);
        }
        // Each server gets its own job store unless the test shares one.
        let own_state = (!extra.contains(&"--state-dir")).then(temp_dir);
        let state_arg = own_state.as_ref().map(|d| d.display().to_string());
        if let Some(dir) = &state_arg {
            args.extend(["--state-dir", dir.as_str()]);
        }
        // Most tests count what workers run for repeated identical
        // requests: the result cache is off unless a test turns it on.
        if !extra.contains(&"--cache-size") && !extra.contains(&"--cache-dir") {
            args.extend(["--cache-size", "0"]);
        }
        args.extend_from_slice(extra);
        let program = prefix.first().copied().unwrap_or(BIN);
        let mut child = Command::new(program)
            .args(&args)
            .envs(envs.iter().copied())
            .env("PIXFORK_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pixfork");
        let pid = child.id();
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("listening") {
                    if let Some(addr) = line
                        .split("addr=")
                        .nth(1)
                        .and_then(|r| r.split_whitespace().next())
                    {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(addr.to_string());
                        }
                    }
                }
                if std::env::var_os("PIXFORK_TEST_ECHO").is_some() {
                    eprintln!("[pixfork {pid}] {line}");
                }
                if let Ok(mut l) = sink.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a,
            Err(_) => {
                // Never leave the process behind a failed start.
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "pixfork did not log its address; logs:\n{}",
                    logs.lock().map(|l| l.clone()).unwrap_or_default()
                )
            }
        };
        Server {
            child: Some(child),
            own_state,
            addr: addr.parse().expect("address"),
            pid,
            logs,
            agent: agent(),
            seen_workers: Mutex::new(Vec::new()),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn logs(&self) -> String {
        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> Resp {
        to_resp(self.agent.get(&self.url(path)).call())
    }

    pub fn post(&self, path: &str, body: &[u8]) -> Resp {
        to_resp(self.agent.post(&self.url(path)).send(body))
    }

    pub fn post_with(&self, path: &str, body: &[u8], headers: &[(&str, &str)]) -> Resp {
        let mut req = self.agent.post(&self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        to_resp(req.send(body))
    }

    /// The `/readyz` JSON (any status); records worker pids.
    pub fn readyz(&self) -> serde_json::Value {
        let v = self.get("/readyz").json();
        if let Some(slots) = v["slots"].as_array() {
            let mut seen = self.seen_workers.lock().expect("lock");
            for s in slots {
                if let Some(pid) = s["pid"].as_u64() {
                    if !seen.contains(&(pid as u32)) {
                        seen.push(pid as u32);
                    }
                }
            }
        }
        v
    }

    /// Requests the workers have run, summed over the slots.
    pub fn requests_served(&self) -> u64 {
        self.readyz()["slots"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v["requests"].as_u64()).sum())
            .unwrap_or(0)
    }

    /// (slot, pid, state) of every slot.
    pub fn slots(&self) -> Vec<(u64, Option<u32>, String)> {
        self.readyz()["slots"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        (
                            s["slot"].as_u64().unwrap_or(u64::MAX),
                            s["pid"].as_u64().map(|p| p as u32),
                            s["state"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn wait_all_ready(&self) {
        wait_for("every slot ready", Duration::from_secs(30), || {
            let slots = self.slots();
            (!slots.is_empty()
                && slots
                    .iter()
                    .all(|(_, pid, st)| st == "ready" && pid.is_some()))
            .then_some(())
        });
    }

    /// Waits until every slot is ready and at least one runs a worker that
    /// is not in `before` (a crashed or killed worker was replaced).
    pub fn wait_new_worker(&self, before: &[u32]) {
        wait_for("a fresh worker", Duration::from_secs(3), || {
            let now = self.slots();
            (now.iter().all(|(_, p, st)| st == "ready" && p.is_some())
                && now
                    .iter()
                    .any(|(_, p, _)| !before.contains(&p.unwrap_or(0))))
            .then_some(())
        });
    }

    /// The value of the `/metrics` sample `series` (name with its labels,
    /// exactly as exposed, e.g. `pixfork_send_timeouts_total`), if any.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let text = String::from_utf8(self.get("/metrics").body).unwrap_or_default();
        text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
    }

    /// Restarts summed over all slots, from `/readyz`.
    pub fn total_restarts(&self) -> u64 {
        self.readyz()["slots"]
            .as_array()
            .map(|a| a.iter().map(|x| x["restarts"].as_u64().unwrap_or(0)).sum())
            .unwrap_or(0)
    }

    pub fn worker_pids(&self) -> Vec<u32> {
        self.slots().into_iter().filter_map(|(_, p, _)| p).collect()
    }

    /// Sends a signal to the master.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), sig)
            .expect("signal master");
    }

    /// SIGTERM, wait for exit (bounded), then check that no worker survived.
    pub fn stop(mut self) -> ExitStatus {
        let _ = self.worker_pids();
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let status = self.wait_exit(Duration::from_secs(40));
        self.assert_no_workers_left();
        status
    }

    /// Waits for the master to exit (bounded); SIGKILLs it on timeout.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let end = Instant::now() + deadline;
        loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                return st;
            }
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "pixfork did not exit within {deadline:?}; logs:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every worker pid seen during the test is gone: not running, not a
    /// zombie (the master reaped it), not orphaned.
    pub fn assert_no_workers_left(&self) {
        let seen = self.seen_workers.lock().expect("lock").clone();
        wait_for("all workers gone", Duration::from_secs(10), || {
            seen.iter().all(|pid| !process_exists(*pid)).then_some(())
        });
    }

    /// Children of the master that are zombies right now.
    pub fn zombie_children(&self) -> Vec<u32> {
        children_of(self.pid)
            .into_iter()
            .filter(|(_, state)| *state == 'Z')
            .map(|(pid, _)| pid)
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = self.own_state.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("pixfork-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// True while /proc/<pid> exists with a command line of a pixfork worker
/// (pids are reused; a different process with the same pid does not count).
pub fn process_exists(pid: u32) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmd) => {
            let is_worker = String::from_utf8_lossy(&cmd).contains("pixfork-worker");
            let zombie_or_running = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok();
            // A zombie has an empty cmdline: count it via its stat name.
            let stat_name =
                std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            (is_worker || stat_name.contains("(pixfork-worker)")) && zombie_or_running
        }
        Err(_) => false,
    }
}

/// (pid, state) of every process whose parent is `ppid`.
pub fn children_of(ppid: u32) -> Vec<(u32, char)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the ")" that closes the command name: state, ppid, ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let parent: u32 = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        if parent == ppid {
            out.push((pid, state));
        }
    }
    out
}

/// Decodes an output image: (width, height, frames).
pub fn decode_dims(bytes: &[u8]) -> (u32, u32, u32) {
    use image::AnimationDecoder;
    let format = image::guess_format(bytes).expect("output format");
    if format == image::ImageFormat::Gif {
        let dec = image::codecs::gif::GifDecoder::new(std::io::Cursor::new(bytes)).expect("gif");
        let frames = dec.into_frames().collect_frames().expect("gif frames");
        let first = frames.first().expect("a frame").buffer();
        return (first.width(), first.height(), frames.len() as u32);
    }
    let img = image::load_from_memory(bytes).expect("decodable output");
    (img.width(), img.height(), 1)
}

/// Every frame of a GIF with its delay in ms.
pub fn gif_frames(bytes: &[u8]) -> Vec<(image::RgbaImage, u32)> {
    use image::AnimationDecoder;
    let dec = image::codecs::gif::GifDecoder::new(std::io::Cursor::new(bytes)).expect("gif header");
    dec.into_frames()
        .collect_frames()
        .expect("gif frames")
        .into_iter()
        .map(|f| {
            let (n, d) = f.delay().numer_denom_ms();
            (f.into_buffer(), (n + d / 2) / d.max(1))
        })
        .collect()
}

/// Reads one HTTP/1 request head from `stream` (for the small origins the
/// tests run) and returns its target path; the headers are read and
/// dropped, so the caller can answer at once.
pub fn read_request_path(stream: impl std::io::Read) -> std::io::Result<String> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            return Ok(path);
        }
    }
}
