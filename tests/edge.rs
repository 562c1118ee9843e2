//! pixfork behind a CDN: HTTPS origins (a real TLS server with a
//! certificate made by this test), signed URLs, API keys, ETags and 304s,
//! Cache-Control, the result cache.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{corpus_file, decode_dims, temp_dir, Server};

const PNG: &str = "valid/png/palette_trns_300x225.png";
const CAT: &str = "valid/jpeg/photo_cat_320x240_progressive.jpg";

/// A key for the signing tests (hex of bytes 0..32).
const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// Answers one HTTP request on `stream` with the corpus PNG (or a redirect).
fn answer(stream: &mut (impl Read + Write), png: &[u8]) {
    let path = common::read_request_path(&mut *stream).unwrap_or_else(|_| "/".to_string());
    if let Some(to) = path.strip_prefix("/to/") {
        let _ = write!(
            stream,
            "HTTP/1.1 302 Found\r\nLocation: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            to.replace("%3A", ":")
        );
    } else {
        // Under /fresh/ the origin gives its answer a lifetime.
        let lifetime = if path.starts_with("/fresh/") {
            "Cache-Control: public, max-age=600\r\n"
        } else {
            ""
        };
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {}\r\nETag: \"v1\"\r\nLast-Modified: Wed, 02 Dec 2026 06:00:00 GMT\r\n{lifetime}Connection: close\r\n\r\n",
            png.len()
        );
        let _ = stream.write_all(png);
    }
    let _ = stream.flush();
}

/// A plain HTTP origin; counts its connections.
fn http_origin() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let png = corpus_file(PNG);
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            answer(&mut s, &png);
        }
    });
    (addr, hits)
}

/// A CA and a certificate for 127.0.0.1 it signed, made now; the CA's PEM
/// is written to a file for `--source-ca`.
struct Pki {
    ca_file: std::path::PathBuf,
    cert: rustls::pki_types::CertificateDer<'static>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA cert");
    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().expect("ip"))];
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let cert = params.signed_by(&key, &issuer).expect("server cert");
    let dir = temp_dir();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write CA");
    Pki {
        ca_file,
        cert: cert.der().clone(),
        key: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    }
}

/// An HTTPS origin with the certificate of `pki`; counts its connections.
fn https_origin(pki: &Pki) -> (SocketAddr, Arc<AtomicUsize>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![pki.cert.clone()], pki.key.clone_key())
        .expect("server config");
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let png = corpus_file(PNG);
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                continue;
            };
            let png = png.clone();
            std::thread::spawn(move || {
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                answer(&mut tls, &png);
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    (addr, hits)
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[test]
fn https_sources_verified_against_the_given_ca() {
    let pki = pki();
    let (origin, _) = https_origin(&pki);
    let ca = pki.ca_file.display().to_string();
    let s = Server::start(&[
        "--allow-url-source",
        "--allowed-private-networks",
        "127.0.0.1/32",
        "--source-ca",
        &ca,
    ]);
    let url = format!("https://{origin}/a.png");
    let r = s.get(&format!("/v1/resize?width=30&format=png&url={}", enc(&url)));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(decode_dims(&r.body).0, 30);
    assert_eq!(
        r.header("last-modified"),
        Some("Wed, 02 Dec 2026 06:00:00 GMT")
    );
    // https to http is a downgrade: refused.
    let (plain, plain_hits) = http_origin();
    let down = format!("https://{origin}/to/http%3A//{plain}/a.png");
    let r = s.get(&format!("/v1/resize?width=30&url={}", enc(&down)));
    assert_eq!((r.status, r.error_code().as_str()), (502, "source_failed"));
    assert_eq!(plain_hits.load(Ordering::SeqCst), 0);
    assert!(s.stop().success());

    // Without the CA, the same origin is not trusted.
    let s = Server::start(&[
        "--allow-url-source",
        "--allowed-private-networks",
        "127.0.0.1/32",
    ]);
    let r = s.get(&format!("/v1/resize?width=30&url={}", enc(&url)));
    assert_eq!((r.status, r.error_code().as_str()), (502, "source_tls"));
    assert!(s.stop().success());
    let _ = std::fs::remove_dir_all(pki.ca_file.parent().expect("dir"));
}

/// The signature of `target` under [`KEY`], computed here independently.
fn sign(target: &str) -> String {
    let bytes: Vec<u8> = (0..32u8).collect();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &bytes);
    let tag = ring::hmac::sign(&key, target.as_bytes());
    base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        tag.as_ref(),
    )
}

#[test]
fn signed_urls_and_api_keys() {
    let (origin, hits) = http_origin();
    let dir = temp_dir();
    let keys = dir.join("keys");
    std::fs::write(&keys, "# the team\nsecret-one\nsecret-two\n").expect("keys");
    let keys = keys.display().to_string();
    let s = Server::start(&[
        "--allow-url-source",
        "--allowed-private-networks",
        "127.0.0.1/32",
        "--url-signing-key",
        KEY,
        "--api-key-file",
        &keys,
    ]);
    let target = format!(
        "/v1/resize?width=30&url={}",
        enc(&format!("http://{origin}/a.png"))
    );
    // Unsigned, tampered, expired: 403 before the origin is asked.
    let r = s.get(&target);
    assert_eq!((r.status, r.error_code().as_str()), (403, "bad_signature"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let tampered = format!(
        "{}&sig={}",
        target.replace("width=30", "width=31"),
        sign(&target)
    );
    assert_eq!(s.get(&tampered).error_code(), "bad_signature");
    let expired = format!("{target}&expires=1000");
    let r = s.get(&format!("{expired}&sig={}", sign(&expired)));
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (403, "expired_signature")
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    // Signed (with or without a future expiry): served, with no API key,
    // and cached for a year.
    let r = s.get(&format!("{target}&sig={}", sign(&target)));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    // One that expires is kept by caches no longer than it is valid.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let later = format!("{target}&expires={}", now + 600);
    let r = s.get(&format!("{later}&sig={}", sign(&later)));
    assert_eq!(r.status, 200);
    let age: u64 = r
        .header("cache-control")
        .and_then(|v| v.strip_prefix("public, max-age="))
        .and_then(|v| v.parse().ok())
        .expect("a max-age and no immutable");
    assert!((590..=600).contains(&age), "{age}");

    // POSTs and job routes need a key; probes and docs do not.
    let img = corpus_file(CAT);
    let r = s.post("/v1/resize?width=10", &img);
    assert_eq!((r.status, r.error_code().as_str()), (401, "unauthorized"));
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = s.post_with(
        "/v1/resize?width=10",
        &img,
        &[("Authorization", "Bearer nope")],
    );
    assert_eq!(r.status, 401);
    let r = s.post_with(
        "/v1/resize?width=10",
        &img,
        &[("Authorization", "Bearer secret-two")],
    );
    assert_eq!(r.status, 200);
    // What a key let in is for that client only: no shared cache may
    // hand it to the next one.
    assert_eq!(r.header("cache-control"), Some("private, max-age=3600"));
    assert_eq!(s.get("/v1/jobs").status, 401);
    for open in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/ops",
        "/openapi.json",
    ] {
        assert_eq!(s.get(open).status, 200, "{open}");
    }
    assert!(s.stop().success());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn etags_304s_and_cache_control() {
    let dir = temp_dir();
    let state = dir.display().to_string();
    let (origin, _) = http_origin();
    let flags = url_sources(&state, &[]);
    let s = Server::start(&flags);
    let img = corpus_file(CAT);
    let r = s.post("/v1/resize?width=40", &img);
    assert_eq!(r.status, 200);
    let etag = r.header("etag").expect("an ETag").to_string();
    assert!(etag.starts_with('"') && etag.len() == 34, "strong: {etag}");
    assert_eq!(r.header("cache-control"), Some("public, max-age=3600"));
    // Same request, same ETag; another op or format, another one.
    assert_eq!(
        s.post("/v1/resize?width=40", &img).header("etag"),
        Some(etag.as_str())
    );
    assert_ne!(
        s.post("/v1/resize?width=41", &img).header("etag"),
        Some(etag.as_str())
    );
    assert_ne!(
        s.post("/v1/resize?width=40&format=png", &img)
            .header("etag"),
        Some(etag.as_str())
    );
    // format=auto: the negotiated format is part of it, and Vary says so.
    let webp = s.post_with(
        "/v1/resize?width=40&format=auto",
        &img,
        &[("Accept", "image/webp")],
    );
    assert_eq!(webp.header("vary"), Some("Accept"));
    assert_ne!(webp.header("etag"), Some(etag.as_str()));

    // A GET by URL with a matching If-None-Match: 304, no worker touched.
    let path = format!(
        "/v1/resize?width=40&url={}",
        enc(&format!("http://{origin}/a.png"))
    );
    let first = s.get(&path);
    assert_eq!(first.status, 200);
    let url_etag = first.header("etag").expect("etag").to_string();
    let before = s.requests_served();
    let mut req = common::agent().get(&s.url(&path));
    req = req.header("If-None-Match", &url_etag);
    let r = req.call().expect("conditional GET");
    assert_eq!(r.status().as_u16(), 304);
    assert_eq!(s.requests_served(), before, "a 304 runs nothing");
    // HEAD: the same headers, no body.
    let r = common::agent().head(&s.url(&path)).call().expect("HEAD");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers().get("etag").and_then(|v| v.to_str().ok()),
        Some(url_etag.as_str())
    );
    let mut body = Vec::new();
    r.into_body()
        .into_reader()
        .read_to_end(&mut body)
        .expect("HEAD body");
    assert!(body.is_empty(), "a HEAD has no body");
    // Errors are never cached.
    let r = s.post("/v1/resize?width=0", &img);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(s.stop().success());

    // The same request gets the same ETag after a restart.
    let s = Server::start(&flags);
    assert_eq!(
        s.post("/v1/resize?width=40", &img).header("etag"),
        Some(etag.as_str())
    );
    assert_eq!(s.get(&path).header("etag"), Some(url_etag.as_str()));
    assert!(s.stop().success());

    // --cache-control replaces the default.
    let s = Server::start(&["--cache-control", "private, max-age=60"]);
    assert_eq!(
        s.post("/v1/resize?width=40", &img).header("cache-control"),
        Some("private, max-age=60")
    );
    assert!(s.stop().success());
    let _ = std::fs::remove_dir_all(dir);
}

/// The fenced code block of `lang` that follows "**Signed URLs.**" in the
/// README: the examples there are the ones this test runs.
fn readme_example(lang: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let from = readme
        .find("**Signed URLs.**")
        .expect("the signing section");
    let fence = format!("```{lang}\n");
    let start = readme[from..].find(&fence).expect("the example") + from + fence.len();
    let end = readme[start..].find("```").expect("its end") + start;
    readme[start..end].to_string()
}

#[test]
fn the_readme_signing_examples_sign_as_the_server_checks() {
    let target = "/v1/resize?width=300&url=https%3A%2F%2Fexample.com%2Fa.jpg";
    let expected = format!("{target}&sig={}", sign(target));
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    assert!(
        readme.contains(&format!("`{expected}`")),
        "the README shows {expected}"
    );
    for (lang, program, flag) in [
        ("python", "python3", "-c"),
        ("js", "node", "-e"),
        ("sh", "sh", "-c"),
    ] {
        let code = readme_example(lang);
        let out = std::process::Command::new(program)
            .args([flag, &code])
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(
            out.status.success(),
            "{lang}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            expected,
            "{lang}"
        );
    }
    // And the server accepts that signature.
    let (origin, _) = http_origin();
    let s = Server::start(&[
        "--allow-url-source",
        "--allowed-private-networks",
        "127.0.0.1/32",
        "--url-signing-key",
        KEY,
    ]);
    let local = format!(
        "/v1/resize?width=30&url={}",
        enc(&format!("http://{origin}/a.png"))
    );
    let py = readme_example("python").replace(
        "/v1/resize?width=300&url=https%3A%2F%2Fexample.com%2Fa.jpg",
        &local,
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &py])
        .output()
        .expect("python3");
    let signed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(s.get(&signed).status, 200, "{signed}");
    assert!(s.stop().success());
}

/// The `cache` stage of `Server-Timing`: `hit`, `miss`, or "" without one.
fn cache_of(r: &common::Resp) -> &str {
    let timing = r.header("server-timing").unwrap_or("");
    timing
        .split(',')
        .find_map(|part| part.trim().strip_prefix("cache;desc="))
        .unwrap_or("")
}

/// Flags of a server with its own state dir and URL sources from this
/// machine's loopback origins, plus `extra`.
fn url_sources<'a>(state: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut flags = vec![
        "--state-dir",
        state,
        "--allow-url-source",
        "--allowed-private-networks",
        "127.0.0.1/32",
    ];
    flags.extend_from_slice(extra);
    flags
}

/// Waits until the cache holds `n` entries (they are written in the
/// background, after the response).
fn wait_entries(s: &Server, n: f64) {
    common::wait_for(
        &format!("{n} cache entries"),
        std::time::Duration::from_secs(10),
        || (s.metric("pixfork_cache_entries") == Some(n)).then_some(()),
    );
}

fn cache_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for sub in std::fs::read_dir(dir.join("cache"))
        .expect("cache dir")
        .flatten()
    {
        if sub.file_name().len() == 2 {
            for f in std::fs::read_dir(sub.path()).expect("sub").flatten() {
                out.push(f.path());
            }
        }
    }
    out
}

#[test]
fn the_result_cache_serves_repeats_without_a_worker_across_restarts() {
    let dir = temp_dir();
    let state = dir.display().to_string();
    let (origin, hits) = http_origin();
    let flags = url_sources(&state, &["--cache-size", "64MiB"]);
    let s = Server::start(&flags);
    let img = corpus_file(CAT);
    let first = s.post("/v1/resize?width=40", &img);
    assert_eq!(first.status, 200);
    assert_eq!(cache_of(&first), "miss");
    wait_entries(&s, 1.0);
    let before = s.requests_served();
    let again = s.post("/v1/resize?width=40", &img);
    assert_eq!(again.status, 200);
    assert_eq!(cache_of(&again), "hit");
    assert_eq!(again.body, first.body, "the same bytes");
    assert_eq!(again.header("etag"), first.header("etag"));
    assert_eq!(again.header("content-type"), Some("image/jpeg"));
    assert_eq!(again.header("x-image-width"), Some("40"));
    assert_eq!(s.requests_served(), before, "a hit touches no worker");
    // Another op is another entry.
    let other = s.post("/v1/resize?width=41", &img);
    assert_eq!(cache_of(&other), "miss");
    wait_entries(&s, 2.0);

    // By URL: the source is fetched (its origin gave no lifetime), the
    // op runs once.
    let path = format!(
        "/v1/resize?width=30&url={}",
        enc(&format!("http://{origin}/a.png"))
    );
    let miss = s.get(&path);
    assert_eq!(miss.status, 200);
    wait_entries(&s, 3.0);
    let before = s.requests_served();
    let hit = s.get(&path);
    assert_eq!(cache_of(&hit), "hit");
    assert_eq!(hit.body, miss.body);
    assert_eq!(s.requests_served(), before);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "fetched each time: no lifetime"
    );

    // An origin that gives a lifetime is not asked again within it: a hit
    // and a 304 cost no fetch.
    // (Another width: the same bytes under another URL are the same
    // source, so width=30 would already be cached.)
    let fresh = format!(
        "/v1/resize?width=31&url={}",
        enc(&format!("http://{origin}/fresh/a.png"))
    );
    let miss = s.get(&fresh);
    assert_eq!(miss.status, 200);
    wait_entries(&s, 4.0);
    let fetched = hits.load(Ordering::SeqCst);
    let hit = s.get(&fresh);
    assert_eq!(cache_of(&hit), "hit");
    let etag = hit.header("etag").expect("etag").to_string();
    let r = common::agent()
        .get(&s.url(&fresh))
        .header("If-None-Match", &etag)
        .call()
        .expect("conditional");
    assert_eq!(r.status().as_u16(), 304);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        fetched,
        "no fetch within the lifetime"
    );
    assert_eq!(s.metric("pixfork_cache_hits_total"), Some(3.0));
    assert_eq!(s.metric("pixfork_cache_misses_total"), Some(4.0));
    let bytes = s.metric("pixfork_cache_bytes").expect("bytes");
    assert!(bytes > 0.0);
    assert!(s.stop().success());
    assert_eq!(cache_files(&dir).len(), 4);

    // After a restart the entries are still there.
    let s = Server::start(&flags);
    assert_eq!(s.metric("pixfork_cache_entries"), Some(4.0));
    assert_eq!(s.metric("pixfork_cache_bytes"), Some(bytes));
    let before = s.requests_served();
    let r = s.post("/v1/resize?width=40", &img);
    assert_eq!(cache_of(&r), "hit");
    assert_eq!(r.body, first.body);
    assert_eq!(s.requests_served(), before);
    assert!(s.stop().success());

    // --cache-size 0: off, every request runs.
    let s = Server::start(&["--state-dir", state.as_str(), "--cache-size", "0"]);
    let r = s.post("/v1/resize?width=40", &img);
    assert_eq!(cache_of(&r), "", "no cache stage");
    assert_eq!(s.requests_served(), 1);
    s.post("/v1/resize?width=40", &img);
    assert_eq!(s.requests_served(), 2);
    assert!(s.stop().success());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_damaged_entry_is_dropped_and_recomputed_never_served() {
    let dir = temp_dir();
    let state = dir.display().to_string();
    let flags = ["--state-dir", state.as_str(), "--cache-size", "64MiB"];
    let s = Server::start(&flags);
    let img = corpus_file(CAT);
    let first = s.post("/v1/resize?width=40&format=png", &img);
    assert_eq!(first.status, 200);
    wait_entries(&s, 1.0);
    let files = cache_files(&dir);
    assert_eq!(files.len(), 1);
    // One flipped bit in the middle of the stored image.
    let mut bytes = std::fs::read(&files[0]).expect("entry");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&files[0], &bytes).expect("damage");
    let before = s.requests_served();
    let r = s.post("/v1/resize?width=40&format=png", &img);
    assert_eq!(r.status, 200);
    assert_eq!(cache_of(&r), "miss");
    assert_eq!(r.body, first.body, "recomputed, not the damaged bytes");
    assert_eq!(s.requests_served(), before + 1);
    assert_eq!(s.metric("pixfork_cache_corrupt_total"), Some(1.0));
    // Written again whole.
    wait_entries(&s, 1.0);
    let r = s.post("/v1/resize?width=40&format=png", &img);
    assert_eq!(cache_of(&r), "hit");
    assert_eq!(r.body, first.body);

    // A file cut short while the server is down: found at the next read.
    assert!(s.stop().success());
    let files = cache_files(&dir);
    let bytes = std::fs::read(&files[0]).expect("entry");
    std::fs::write(&files[0], &bytes[..bytes.len() / 3]).expect("truncate");
    let s = Server::start(&flags);
    let r = s.post("/v1/resize?width=40&format=png", &img);
    assert_eq!(cache_of(&r), "miss");
    assert_eq!(r.body, first.body);
    assert!(s.stop().success());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_cache_keeps_to_its_size_evicting_the_least_recently_used() {
    let dir = temp_dir();
    let state = dir.display().to_string();
    let img = corpus_file(CAT);
    // Learn an entry's size with a big cache first.
    let size = {
        let s = Server::start(&["--state-dir", state.as_str(), "--cache-size", "64MiB"]);
        s.post("/v1/resize?width=100&format=png", &img);
        wait_entries(&s, 1.0);
        let n = s.metric("pixfork_cache_bytes").expect("bytes");
        assert!(s.stop().success());
        std::fs::remove_dir_all(dir.join("cache")).expect("clear");
        n as u64
    };
    // Room for three such entries (widths 100..103 are about the same size).
    let cap = (size * 35 / 10).to_string();
    let s = Server::start(&["--state-dir", state.as_str(), "--cache-size", cap.as_str()]);
    let run = |w: u32| s.post(&format!("/v1/resize?width={w}&format=png"), &img);
    let timing = |r: &common::Resp| cache_of(r).to_string();
    for (n, w) in [(1.0, 100), (2.0, 101), (3.0, 102)] {
        run(w);
        wait_entries(&s, n);
    }
    // Use 100 again, so 101 is the least recently used when 103 comes.
    assert_eq!(timing(&run(100)), "hit");
    run(103);
    common::wait_for("an eviction", std::time::Duration::from_secs(10), || {
        (s.metric("pixfork_cache_evictions_total") == Some(1.0)).then_some(())
    });
    assert_eq!(s.metric("pixfork_cache_entries"), Some(3.0));
    assert!(s.metric("pixfork_cache_bytes").expect("bytes") <= cap.parse::<f64>().expect("cap"));
    assert_eq!(timing(&run(100)), "hit");
    assert_eq!(timing(&run(102)), "hit");
    assert_eq!(timing(&run(103)), "hit");
    assert_eq!(timing(&run(101)), "miss", "101 was evicted");
    // 101 is kept again and pushes out the least recently used; the
    // files of evicted entries are removed (in the background).
    common::wait_for(
        "three entry files",
        std::time::Duration::from_secs(10),
        || {
            (s.metric("pixfork_cache_evictions_total") == Some(2.0) && cache_files(&dir).len() == 3)
                .then_some(())
        },
    );
    assert!(s.stop().success());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn concurrent_identical_misses_run_the_op_once() {
    let dir = temp_dir();
    let state = dir.display().to_string();
    let s = Server::start(&[
        "--state-dir",
        state.as_str(),
        "--cache-size",
        "64MiB",
        "--workers",
        "1",
    ]);
    // A slow op (a strong blur of a 13 MP photo: about a second), so all
    // the requests arrive while the first one runs.
    let img = Arc::new(corpus_file(
        "valid/jpeg/photo_dragonfly_4224x3168_13mp_progressive.jpg",
    ));
    let url = s.url("/v1/blur?sigma=40&format=png");
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let (img, url) = (img.clone(), url.clone());
            std::thread::spawn(move || {
                let r = common::agent().post(&url).send(&img[..]).expect("post");
                let timing = r
                    .headers()
                    .get("server-timing")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let mut body = Vec::new();
                r.into_body()
                    .into_reader()
                    .read_to_end(&mut body)
                    .expect("body");
                (timing, body)
            })
        })
        .collect();
    let answers: Vec<_> = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect();
    assert_eq!(s.requests_served(), 1, "one run for six identical requests");
    let misses = answers
        .iter()
        .filter(|(t, _)| t.contains("cache;desc=miss"))
        .count();
    assert_eq!(misses, 1);
    assert!(answers
        .iter()
        .all(|(_, b)| *b == answers[0].1 && !b.is_empty()));
    assert!(s.stop().success());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn presets_and_dpr() {
    let dir = temp_dir();
    let file = dir.join("presets");
    std::fs::write(
        &file,
        "# the site's avatars\navatar = thumbnail(width=40),grayscale\n\n",
    )
    .expect("preset file");
    let file_arg = file.display().to_string();
    let s = Server::start(&[
        "--preset",
        "small=resize(width=50),flop",
        "--preset-file",
        file_arg.as_str(),
    ]);
    let img = corpus_file(CAT); // 320 x 240
    let dims = |r: &common::Resp| {
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let d = decode_dims(&r.body);
        (d.0, d.1)
    };
    assert_eq!(dims(&s.post("/v1/preset/small", &img)), (50, 38));
    assert_eq!(dims(&s.post("/v1/preset/avatar", &img)), (40, 40));
    // The query adds output settings and dpr, nothing else.
    let r = s.post("/v1/preset/small?format=png&dpr=2", &img);
    assert_eq!(dims(&r), (100, 75));
    assert_eq!(r.header("content-type"), Some("image/png"));
    let r = s.post("/v1/preset/small?width=10", &img);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "unknown_parameter")
    );
    let r = s.post("/v1/preset/nosuch", &img);
    assert_eq!((r.status, r.error_code().as_str()), (404, "unknown_op"));
    let list = s.get("/v1/presets").json();
    assert_eq!(
        list["presets"],
        serde_json::json!([
            {"name": "avatar", "ops": "thumbnail(width=40),grayscale"},
            {"name": "small", "ops": "resize(width=50),flop"},
        ])
    );
    let doc = s.get("/openapi.json").json();
    assert!(doc["paths"]["/v1/preset/{name}"]["post"].is_object());

    // dpr multiplies resize and thumbnail sizes, in single ops and
    // pipelines, and never enlarges past the source unless asked.
    assert_eq!(
        dims(&s.post("/v1/resize?width=100&dpr=2", &img)),
        (200, 150)
    );
    assert_eq!(
        dims(&s.post("/v1/resize?width=100&dpr=1.5", &img)),
        (150, 113)
    );
    assert_eq!(
        dims(&s.post("/v1/resize?width=200&dpr=2", &img)),
        (320, 240)
    );
    assert_eq!(
        dims(&s.post("/v1/resize?width=200&dpr=2&enlarge=true", &img)),
        (400, 300)
    );
    assert_eq!(
        dims(&s.post("/v1/thumbnail?width=50&dpr=3", &img)),
        (150, 150)
    );
    assert_eq!(
        dims(&s.post("/v1/pipeline?ops=resize(width%3D60),flip&dpr=2", &img)),
        (120, 90)
    );
    for bad in ["0.5", "6", "two"] {
        let r = s.post(&format!("/v1/resize?width=100&dpr={bad}"), &img);
        assert_eq!(
            (r.status, r.json()["error"]["param"].as_str()),
            (400, Some("dpr")),
            "{bad}"
        );
    }
    let r = s.post("/v1/resize?width=60000&dpr=2&enlarge=true", &img);
    assert_eq!(
        (r.status, r.json()["error"]["param"].as_str()),
        (400, Some("dpr"))
    );
    assert!(s.stop().success());

    // A preset that does not parse stops the start, naming it.
    let out = std::process::Command::new(common::BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--preset",
            "broken=resize(width=0)",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("preset broken"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A plain HTTP origin that keeps connections open (HTTP/1.1 keep-alive);
/// counts connections and requests.
fn keepalive_origin() -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (conns, reqs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (c, r) = (conns.clone(), reqs.clone());
    let png = corpus_file(PNG);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            c.fetch_add(1, Ordering::SeqCst);
            let (r, png) = (r.clone(), png.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut stream = stream;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                    }
                    r.fetch_add(1, Ordering::SeqCst);
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {}\r\n\r\n",
                        png.len()
                    );
                    if stream.write_all(head.as_bytes()).is_err() || stream.write_all(&png).is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, conns, reqs)
}

#[test]
fn source_connections_are_kept_alive_for_the_same_checked_place() {
    let (origin, conns, reqs) = keepalive_origin();
    let s = Server::start(&[
        "--allow-url-source",
        "--allowed-private-networks",
        "127.0.0.1/32",
    ]);
    for i in 0..5 {
        let path = format!(
            "/v1/resize?width={}&url={}",
            20 + i,
            enc(&format!("http://{origin}/a.png"))
        );
        assert_eq!(s.get(&path).status, 200);
    }
    assert_eq!(reqs.load(Ordering::SeqCst), 5);
    assert_eq!(
        conns.load(Ordering::SeqCst),
        1,
        "one connection for five fetches"
    );
    // Another host name for the same address is another place (its own
    // TLS name, its own guard decision): a connection of its own.
    let port = origin.port();
    let path = format!(
        "/v1/resize?width=20&url={}",
        enc(&format!("http://localhost:{port}/a.png"))
    );
    let r = s.get(&path);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(conns.load(Ordering::SeqCst), 2);
    assert!(s.stop().success());
}
