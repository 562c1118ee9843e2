//! API fuzzing with schemathesis (from PyPI; `scripts/test.sh` installs it):
//! it reads the real server's `/openapi.json`, generates requests for every
//! route (valid ones, invalid ones, odd methods) and checks each response
//! against the document: no 5xx, only documented status codes, content
//! types and headers, bodies that match their schemas, 405 with a correct
//! `Allow` for methods a route does not take.
//!
//! One check is left out: `positive_data_acceptance` expects every
//! schema-valid request to succeed, but a schema cannot say "the body must
//! be a decodable image" or "resize needs a width or a height", so random
//! bytes that are schema-valid rightly get 415 or 400.
//!
//! The run is bounded (`SCHEMATHESIS_SECONDS`, default 60) and seeded, so
//! CI repeats it; for a longer hunt, run `st` by hand as the README says.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;

#[test]
fn schemathesis_finds_no_server_error_and_no_departure_from_the_document() {
    let seconds: u64 = common::env_or("SCHEMATHESIS_SECONDS", 60);
    let s = Server::start(&[]);
    // schemathesis keeps a cache folder in its working directory.
    let scratch = common::temp_dir();
    let mut child = Command::new("st")
        .current_dir(&scratch)
        .args([
            "--no-color",
            "run",
            &s.url("/openapi.json"),
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-time",
            &seconds.to_string(),
            "--workers",
            "2",
            "--seed",
            "20261201",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run schemathesis (`st`): {e}; scripts/test.sh installs it with pip")
        });
    // The run ends by itself after --max-time; this bound only catches a
    // hang (of schemathesis or of the server).
    let deadline = Instant::now() + Duration::from_secs(seconds + 120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for st") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("schemathesis did not finish within {} s", seconds + 120);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = child.wait_with_output().expect("st output");
    let report = String::from_utf8_lossy(&output.stdout);
    let tail: Vec<&str> = report.lines().rev().take(60).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    eprintln!("{}", tail.join("\n"));
    assert!(
        status.success(),
        "schemathesis found problems (exit {status}):\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Nothing it sent took a worker down, and the service still answers.
    assert_eq!(s.get("/healthz").status, 200);
    assert_eq!(s.total_restarts(), 0, "no worker died");
    assert!(s.stop().success());
    let _ = std::fs::remove_dir_all(&scratch);
}
