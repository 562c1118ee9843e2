//! Latency probe for the bench: what a health checker or an interactive
//! client sees while the workers are saturated.
//!
//! `cargo run --release --example probe -- sched HOST:PORT PATH SECONDS RATE`
//!   GETs PATH at a fixed RATE per second on one keep-alive connection and
//!   counts each latency from the request's scheduled send time; prints
//!   `n=… p50_ms=… p99_ms=… max_ms=… errors=…`.
//!
//! `cargo run --release --example probe -- ready HOST:PORT WORKERS TIMEOUT_S`
//!   polls `GET /readyz` every millisecond until every one of WORKERS slots
//!   is `ready`, and prints `ready_unix_ns=…` (the bench subtracts the time
//!   it started the server).
//!
//! Plain blocking std I/O and a hand-rolled HTTP/1.1 exchange, so the probe
//! itself adds microseconds, not the milliseconds it is there to measure.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One keep-alive connection that GETs paths and returns status + body.
struct Conn {
    addr: String,
    reader: Option<BufReader<TcpStream>>,
}

impl Conn {
    fn new(addr: &str) -> Conn {
        Conn {
            addr: addr.to_string(),
            reader: None,
        }
    }

    fn get(&mut self, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
        let result = self.try_get(path);
        if result.is_err() {
            // Reconnect on the next call.
            self.reader = None;
        }
        result
    }

    fn try_get(&mut self, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
        if self.reader.is_none() {
            let stream = TcpStream::connect(&self.addr)?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            self.reader = Some(BufReader::new(stream));
        }
        let reader = self
            .reader
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no connection"))?;
        write!(
            reader.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n",
            self.addr
        )?;
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                return Err(std::io::Error::other("connection closed in headers"));
            }
            if header == "\r\n" {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        Ok((status, body))
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Prints the latency summary the bench parses.
fn report(mut samples: Vec<f64>, errors: u64) -> ExitCode {
    samples.sort_by(f64::total_cmp);
    println!(
        "n={} p50_ms={:.3} p99_ms={:.3} max_ms={:.3} errors={errors}",
        samples.len(),
        percentile(&samples, 50.0),
        percentile(&samples, 99.0),
        samples.last().copied().unwrap_or(f64::NAN),
    );
    ExitCode::SUCCESS
}

/// `GET path` at a fixed `rate` per second on one keep-alive connection;
/// each latency is counted from the request's scheduled send time, so a
/// stall delays every request scheduled behind it and is counted for each
/// (no coordinated omission).
fn scheduled(addr: &str, path: &str, seconds: f64, rate: f64) -> ExitCode {
    let mut conn = Conn::new(addr);
    let mut samples = Vec::new();
    let mut errors = 0u64;
    let start = Instant::now();
    let count = (seconds * rate) as u64;
    for i in 0..count {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        match conn.get(path) {
            Ok((200, _)) => samples.push(due.elapsed().as_secs_f64() * 1000.0),
            _ => errors += 1,
        }
    }
    report(samples, errors)
}

fn ready(addr: &str, workers: usize, timeout: f64) -> ExitCode {
    let mut conn = Conn::new(addr);
    let end = Instant::now() + Duration::from_secs_f64(timeout);
    while Instant::now() < end {
        if let Ok((200, body)) = conn.get("/readyz") {
            let up = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["workers_ready"].as_u64())
                .unwrap_or(0);
            if up >= workers as u64 {
                let ns = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                println!("ready_unix_ns={ns}");
                return ExitCode::SUCCESS;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    eprintln!("probe: {addr} not ready with {workers} workers after {timeout} s");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: f64| -> f64 {
        args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default)
    };
    match args.first().map(String::as_str) {
        Some("sched") if args.len() >= 5 => {
            scheduled(&args[1], &args[2], num(3, 10.0), num(4, 20.0))
        }
        Some("ready") if args.len() >= 3 => ready(&args[1], num(2, 1.0) as usize, num(3, 20.0)),
        _ => {
            eprintln!(
                "usage: probe sched HOST:PORT PATH SECONDS RATE | probe ready HOST:PORT WORKERS TIMEOUT_S"
            );
            ExitCode::from(2)
        }
    }
}
