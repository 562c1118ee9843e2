//! Mutation fuzzing on stable Rust: three targets, each fed seeded random
//! mutations of real inputs for a bounded time, in-process (no server).
//!
//! - `engine`: the worker's decode + ops + encode (`engine::run`) on
//!   corrupted corpus files (bit flips, truncations, overwritten runs,
//!   splices, inserted bytes) under a handful of tasks. A panic is a bug
//!   (the worker would survive it, but lose its process); a C decoder that
//!   aborts or faults kills this test binary, which fails the run just as
//!   loudly. Every case must also finish within a bound (a hang is a bug).
//! - `frames`: the wire (`proto::read_frame`) on mutated valid frames: a
//!   typed error or a message, never a panic, never a payload past the cap.
//! - `params`: the query parser (`catalogue::parse_request`) on random
//!   strings built from real names, values and hostile characters.
//!
//! These are not coverage-guided (cargo-fuzz needs a nightly compiler);
//! the seeds are the shared corpus and the generators know the formats'
//! shapes, so the mutations stay close to real files. Each target runs
//! `FUZZ_SECONDS` (default 20; the test command runs the default) from
//! seed `FUZZ_SEED` (default: fixed, so CI repeats itself); a longer hunt:
//! `FUZZ_SECONDS=3600 FUZZ_SEED=$RANDOM cargo test --release --features
//! test-ops --test fuzz -- --nocapture`. Each target prints its case count.
//! A failing case is saved (the panic message says where) so that it can
//! be kept as a regression test.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{corpus, env_or};

use pixfork::catalogue::parse_request;
use pixfork::engine::{self, Product};
use pixfork::proto::{self, Limits, ToWorker};

fn budget() -> Duration {
    Duration::from_secs_f64(env_or("FUZZ_SECONDS", 20.0))
}

fn rng(target: u64) -> fastrand::Rng {
    fastrand::Rng::with_seed(env_or("FUZZ_SEED", 0x5eed_2026_1201u64) ^ target)
}

/// Valid corpus files small enough to mutate quickly.
fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in [
        "valid/jpeg",
        "valid/png",
        "valid/gif",
        "valid/webp",
        "valid/bmp",
        "valid/tiff",
    ] {
        let Ok(entries) = std::fs::read_dir(corpus().join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(bytes) = std::fs::read(e.path()) else {
                continue;
            };
            if bytes.len() <= 256 * 1024 {
                out.push((format!("{dir}/{}", e.file_name().to_string_lossy()), bytes));
            }
        }
    }
    out.sort();
    assert!(out.len() >= 20, "only {} seed files", out.len());
    out
}

/// One random corruption of `data` (with `other` for splices).
fn mutate(rng: &mut fastrand::Rng, data: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    if out.is_empty() {
        return out;
    }
    for _ in 0..rng.usize(1..=3) {
        if out.is_empty() {
            break;
        }
        let len = out.len();
        match rng.u8(0..6) {
            // Flip bits, mostly in the headers where the structure is.
            0 => {
                for _ in 0..rng.usize(1..=8) {
                    let at = if rng.bool() {
                        rng.usize(0..len.min(512))
                    } else {
                        rng.usize(0..len)
                    };
                    if let Some(b) = out.get_mut(at) {
                        *b ^= 1 << rng.u8(0..8);
                    }
                }
            }
            1 => out.truncate(rng.usize(0..len)),
            2 => {
                let at = rng.usize(0..len);
                let n = rng.usize(1..=64).min(len - at);
                for b in &mut out[at..at + n] {
                    *b = rng.u8(..);
                }
            }
            3 => {
                let at = rng.usize(0..len);
                let from = rng.usize(0..other.len().max(1));
                let tail = &other[from.min(other.len())..];
                out.truncate(at);
                out.extend_from_slice(&tail[..tail.len().min(64 * 1024)]);
            }
            4 => {
                let at = rng.usize(0..=len);
                let junk: Vec<u8> = (0..rng.usize(1..=32)).map(|_| rng.u8(..)).collect();
                out.splice(at..at, junk);
            }
            // Interesting values in 16/32-bit fields (sizes, counts, offsets).
            _ => {
                let at = rng.usize(0..len.min(1024));
                let v: &[u8] = match rng.u8(0..4) {
                    0 => &[0xff, 0xff],
                    1 => &[0, 0],
                    2 => &[0x7f, 0xff, 0xff, 0xff],
                    _ => &[0x80, 0, 0, 1],
                };
                for (i, b) in v.iter().enumerate() {
                    if let Some(slot) = out.get_mut(at + i) {
                        *slot = *b;
                    }
                }
            }
        }
    }
    out
}

/// The tasks the engine target runs, as the front would parse them.
const TASKS: &[(&str, &str)] = &[
    ("resize", "width=37"),
    ("resize", "width=300&height=200&fit=cover&gravity=smart"),
    ("info", ""),
    ("rotate", "angle=90"),
    ("blur", "sigma=3&format=png"),
    ("convert", "format=webp"),
    ("convert", "format=gif"),
    ("pipeline", "ops=trim,pixelate(size=4),sepia&format=jpeg"),
];

/// Longest a single case may take (the inputs are at most 256 KiB).
const CASE_LIMIT: Duration = Duration::from_secs(10);

/// Decode limits for the engine target: a mutated header may claim any
/// size, and a case should cost milliseconds, not the production limit's
/// hundreds of megabytes (those limits have tests of their own).
const LIMITS: Limits = Limits {
    max_pixels: 4_000_000,
    max_frames: 100,
    max_total_pixels: 20_000_000,
};

/// Runs one input through one task; `Err` describes a bug.
fn engine_case(input: &[u8], (op, query): (&str, &str)) -> Result<bool, String> {
    let task = parse_request(op, Some(query), LIMITS)
        .map_err(|e| format!("task {op}?{query} does not parse: {e}"))?
        .task;
    let started = Instant::now();
    let ran = catch_unwind(AssertUnwindSafe(|| engine::run(&task, input)));
    let took = started.elapsed();
    let (result, _) = ran.map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!("{op}?{query} panicked: {msg}")
    })?;
    if took > CASE_LIMIT {
        return Err(format!("{op}?{query} took {took:?}"));
    }
    match result {
        Ok(Product::Image { bytes, .. }) if bytes.is_empty() => {
            Err(format!("{op}?{query} produced an empty image"))
        }
        Ok(_) => Ok(true),
        Err(_) => Ok(false),
    }
}

fn save_crash(name: &str, input: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join("pixfork-fuzz-crashes");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(name);
    let _ = std::fs::write(&path, input);
    path
}

#[test]
fn engine_survives_corrupted_images() {
    let seeds = seeds();
    let mut rng = rng(1);
    let end = Instant::now() + budget();
    let (mut cases, mut decoded) = (0u64, 0u64);
    while Instant::now() < end {
        let (name, data) = &seeds[rng.usize(0..seeds.len())];
        let (_, other) = &seeds[rng.usize(0..seeds.len())];
        let input = mutate(&mut rng, data, other);
        let task = TASKS[rng.usize(0..TASKS.len())];
        match engine_case(&input, task) {
            Ok(ok) => decoded += u64::from(ok),
            Err(bug) => {
                let saved = save_crash(&format!("engine-{cases}.bin"), &input);
                panic!(
                    "case {cases} from {name}: {bug} (input saved to {})",
                    saved.display()
                );
            }
        }
        cases += 1;
    }
    eprintln!("fuzz engine: {cases} cases, {decoded} still decoded, 0 crashes");
    assert!(cases > 50, "only {cases} cases ran");
}

#[test]
fn frames_decode_or_fail_typed() {
    let mut rng = rng(2);
    let tasks: Vec<proto::Task> = TASKS
        .iter()
        .filter_map(|(op, q)| parse_request(op, Some(q), Limits::default()).ok())
        .map(|p| p.task)
        .collect();
    let end = Instant::now() + budget();
    let mut cases = 0u64;
    let cap = 64 * 1024;
    while Instant::now() < end {
        let msg = ToWorker::Request(proto::Request {
            id: rng.u64(..),
            task: tasks[rng.usize(0..tasks.len())].clone(),
            attachments: Vec::new(),
        });
        let payload: Vec<u8> = (0..rng.usize(0..2048)).map(|_| rng.u8(..)).collect();
        let mut frame = Vec::new();
        proto::write_frame(&mut frame, &msg, &payload).expect("write");
        let bad = mutate(&mut rng, &frame, &payload);
        let mut buf = Vec::new();
        let got = catch_unwind(AssertUnwindSafe(|| {
            proto::read_frame::<_, ToWorker>(&mut std::io::Cursor::new(&bad), cap, &mut buf)
        }));
        match got {
            Err(_) => {
                let saved = save_crash(&format!("frame-{cases}.bin"), &bad);
                panic!(
                    "read_frame panicked on case {cases} (saved to {})",
                    saved.display()
                );
            }
            Ok(_) => assert!(buf.len() as u64 <= cap, "payload past the cap"),
        }
        cases += 1;
    }
    eprintln!("fuzz frames: {cases} cases, 0 panics");
    assert!(cases > 1000);
}

#[test]
fn the_query_parser_never_panics() {
    const NAMES: &[&str] = &[
        "resize",
        "thumbnail",
        "crop",
        "rotate",
        "blur",
        "pipeline",
        "pad",
        "trim",
        "info",
        "convert",
        "sharpen",
        "hue",
        "nope",
        "",
        "__sleep",
    ];
    const KEYS: &[&str] = &[
        "width",
        "height",
        "fit",
        "gravity",
        "enlarge",
        "x",
        "y",
        "angle",
        "sigma",
        "amount",
        "format",
        "quality",
        "colors",
        "ops",
        "url",
        "callback_url",
        "background",
        "top",
        "size",
        "value",
        "degrees",
        "factor",
        "autorotate",
        "lossless",
        "progressive",
        "compression",
        "",
    ];
    const VALUES: &[&str] = &[
        "0",
        "1",
        "-1",
        "400",
        "65535",
        "65536",
        "4294967296",
        "1e30",
        "NaN",
        "inf",
        "-0",
        "0.5",
        "true",
        "false",
        "cover",
        "smart",
        "webp",
        "auto",
        "ffffff",
        "ff00ff80",
        "white",
        "resize(width=4),blur(sigma=2)",
        "resize(width=4",
        "blur(sigma=)",
        ")(",
        ",,",
        "%00",
        "%FF%FE",
        "\u{1F600}",
        "a=b",
        "&",
        "=",
        "(((((((((",
        "http://127.0.0.1/x",
    ];
    let mut rng = rng(3);
    let end = Instant::now() + budget();
    let mut cases = 0u64;
    while Instant::now() < end {
        let op = NAMES[rng.usize(0..NAMES.len())];
        let mut query = String::new();
        for i in 0..rng.usize(0..6) {
            if i > 0 {
                query.push('&');
            }
            query.push_str(KEYS[rng.usize(0..KEYS.len())]);
            if rng.u8(0..8) > 0 {
                query.push('=');
                let v = VALUES[rng.usize(0..VALUES.len())];
                if rng.bool() {
                    query.push_str(v);
                } else {
                    query.extend(form_urlencoded::byte_serialize(v.as_bytes()));
                }
            }
        }
        if rng.u8(0..10) == 0 {
            // Raw noise, percent signs and all.
            query = (0..rng.usize(0..64))
                .map(|_| char::from(rng.u8(32..127)))
                .collect();
        }
        let parsed = catch_unwind(|| parse_request(op, Some(&query), Limits::default()).is_ok());
        assert!(parsed.is_ok(), "parse_request panicked on {op}?{query}");
        cases += 1;
    }
    eprintln!("fuzz params: {cases} cases, 0 panics");
    assert!(cases > 1000);
}
