//! In-process throughput of one request type, on one thread.
//!
//! `cargo run --release --example inproc -- FILE OP QUERY [SECONDS] [--no-libjpeg]
//! [--no-shrink] [--old-blur] [--old-jpeg-encoder] [--neuquant]`
//!
//! The flags turn one fast path off each ([`Tuning`]), so the bench can put
//! every fast path's before and after side by side from one run.
//! Runs exactly what a worker runs for `POST /v1/OP?QUERY` — the same
//! parameter parser ([`parse_task`]) and the same engine entry point
//! ([`engine::run_tuned`], which [`engine::run`] calls) — in a loop, with no socket, no HTTP and no process
//! boundary. The bench script divides the server's requests per second by
//! `workers × this figure` to get the efficiency of everything around the
//! engine (HTTP, queueing, IPC).
//!
//! Prints one line of `key=value` pairs: requests per second, the mean
//! milliseconds of each engine stage, and the output size.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use pixfork::catalogue::parse_task;
use pixfork::engine::{self, Product, Tuning};
use pixfork::proto::Limits;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [file, op, query, rest @ ..] = args.as_slice() else {
        eprintln!("usage: inproc FILE OP QUERY [SECONDS]");
        return ExitCode::from(2);
    };
    let seconds: f64 = rest.first().and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let mut tuning = Tuning::default();
    for flag in rest.iter().filter(|a| a.starts_with("--")) {
        match flag.as_str() {
            "--no-libjpeg" => tuning.libjpeg = false,
            "--no-shrink" => tuning.shrink_on_load = false,
            "--old-blur" => tuning.fast_blur = false,
            "--old-jpeg-encoder" => tuning.libjpeg_encode = false,
            "--neuquant" => tuning.fast_gif = false,
            other => {
                eprintln!("inproc: unknown flag {other}");
                return ExitCode::from(2);
            }
        }
    }
    let input = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("inproc: cannot read {file}: {e}");
            return ExitCode::from(2);
        }
    };
    let query = (!query.is_empty()).then_some(query.as_str());
    let task = match parse_task(op, query, Limits::default()) {
        Ok(task) => task,
        Err(e) => {
            eprintln!("inproc: bad request: {e:?}");
            return ExitCode::from(2);
        }
    };

    // The worker's allocator settings, then one untimed run: page in the
    // code, size the allocator's arenas.
    pixfork::worker::keep_freed_memory();
    if let (Err(e), _) = engine::run_tuned(&task, &input, &[], &tuning) {
        eprintln!("inproc: the engine refused the request: {e:?}");
        return ExitCode::FAILURE;
    }

    let budget = Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let (mut n, mut decode, mut ops, mut encode, mut out_bytes) = (0u64, 0u64, 0u64, 0u64, 0usize);
    while started.elapsed() < budget || n < 3 {
        let (result, timing) = engine::run_tuned(&task, &input, &[], &tuning);
        if let Ok(Product::Image { bytes, .. }) = &result {
            out_bytes = bytes.len();
        }
        decode += timing.decode_us;
        ops += timing.ops_us;
        encode += timing.encode_us;
        n += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let per = |us: u64| us as f64 / n as f64 / 1000.0;
    println!(
        "req_per_s={:.2} n={n} decode_ms={:.2} ops_ms={:.2} encode_ms={:.2} out_bytes={out_bytes}",
        n as f64 / elapsed,
        per(decode),
        per(ops),
        per(encode),
    );
    ExitCode::SUCCESS
}
