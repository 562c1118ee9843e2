//! Hostile clients: slow headers, slow bodies, vanishing clients, pipelining,
//! huge headers. None of them may hold or harm the service.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{corpus_file, Server};

/// Reads until the peer closes (or `limit` passes); returns what came and
/// whether the connection was closed within the limit.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let end = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        match stream.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).to_string(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return (String::from_utf8_lossy(&got).to_string(), true),
        }
    }
    (String::from_utf8_lossy(&got).to_string(), false)
}

#[test]
fn slow_headers_are_cut_off() {
    let s = Server::start(&["--header-timeout", "1s"]);
    let mut c = TcpStream::connect(s.addr).expect("connect");
    c.write_all(b"POST /v1/resize?width=10 HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    let started = Instant::now();
    // Trickle a header byte now and then, never finishing the headers.
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(5) {
        if c.write_all(b"X").is_err() {
            closed = true;
            break;
        }
        let (_, gone) = read_until_closed(&mut c, Duration::from_millis(300));
        if gone {
            closed = true;
            break;
        }
    }
    assert!(closed, "a slow-header client held its connection for 5 s");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(s.get("/healthz").status, 200);
    assert!(s.stop().success());
}

#[test]
fn slow_bodies_get_408() {
    let s = Server::start(&["--body-timeout", "1s"]);
    let mut c = TcpStream::connect(s.addr).expect("connect");
    c.write_all(b"POST /v1/resize?width=10 HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        .expect("write");
    c.write_all(&[0u8; 100]).expect("write");
    let started = Instant::now();
    let (reply, closed) = read_until_closed(&mut c, Duration::from_secs(5));
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("body_timeout"), "{reply}");
    assert!(closed, "connection closed after the 408");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(s.stop().success());
}

#[test]
fn many_slow_clients_do_not_starve_a_normal_one() {
    let s = Server::start(&["--header-timeout", "10s"]);
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut c = TcpStream::connect(s.addr).expect("connect");
            let _ = c.write_all(b"GET /healthz HTTP/1.1\r\nHo");
            c
        })
        .collect();
    let t = Instant::now();
    let r = s.post(
        "/v1/resize?width=10",
        &corpus_file("valid/png/tiny_1x1.png"),
    );
    assert_eq!(r.status, 200);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    for c in &mut slow {
        let _ = c.write_all(b"st: x\r\n\r\n");
    }
    drop(slow);
    assert!(s.stop().success());
}

#[test]
fn a_client_that_vanishes_mid_request_harms_nothing() {
    let s = Server::start(&[]);
    let photo = corpus_file("valid/jpeg/photo_cat_320x240_progressive.jpg");
    for _ in 0..5 {
        let mut c = TcpStream::connect(s.addr).expect("connect");
        let head = format!(
            "POST /v1/__sleep?ms=300 HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            photo.len()
        );
        c.write_all(head.as_bytes()).expect("write");
        c.write_all(&photo).expect("write");
        drop(c); // gone before the answer
    }
    // The abandoned requests finish or are skipped; no worker is harmed.
    common::wait_for("workers idle again", Duration::from_secs(10), || {
        let slots = s.slots();
        slots.iter().all(|(_, _, st)| st == "ready").then_some(())
    });
    let restarts = s.total_restarts();
    assert_eq!(restarts, 0, "no worker was killed for a vanished client");
    assert_eq!(s.post("/v1/resize?width=10", &photo).status, 200);
    assert!(s.stop().success());
}

#[test]
fn pipelined_and_keep_alive_requests_behave() {
    let s = Server::start(&[]);
    let mut c = TcpStream::connect(s.addr).expect("connect");
    c.write_all(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .expect("write");
    let (replies, closed) = read_until_closed(&mut c, Duration::from_secs(5));
    assert!(closed);
    let statuses: Vec<&str> = replies
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &replies[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, vec!["200", "200", "404"], "{replies}");
    // Keep-alive: one agent, many requests, one connection.
    let img = corpus_file("valid/png/tiny_1x1.png");
    for _ in 0..20 {
        assert_eq!(s.post("/v1/resize?width=1", &img).status, 200);
    }
    assert!(s.stop().success());
}

#[test]
fn huge_headers_are_rejected() {
    let s = Server::start(&[]);
    let mut c = TcpStream::connect(s.addr).expect("connect");
    let big = "a".repeat(1 << 20);
    let _ =
        c.write_all(format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes());
    let (reply, closed) = read_until_closed(&mut c, Duration::from_secs(5));
    assert!(closed, "connection closed");
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 431"),
        "{reply}"
    );
    assert_eq!(s.get("/healthz").status, 200, "service unharmed");
    assert!(s.stop().success());
}
