//! pixfork behind a CDN: HTTPS origins (a real TLS server with a
//! certificate made by this test), signed URLs, API keys, ETags and 304s,
//! Cache-Control.

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
    let mut reader = BufReader::new(&mut *stream);
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    if let Some(to) = path.strip_prefix("/to/") {
        let _ = write!(
            stream,
            "HTTP/1.1 302 Found\r\nLocation: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            to.replace("%3A", ":")
        );
    } else {
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {}\r\nETag: \"v1\"\r\nLast-Modified: Wed, 02 Dec 2026 06:00:00 GMT\r\nConnection: close\r\n\r\n",
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
    let later = format!("{target}&expires=99999999999");
    assert_eq!(s.get(&format!("{later}&sig={}", sign(&later))).status, 200);

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
    let flags = [
        "--state-dir",
        state.as_str(),
        "--allow-url-source",
        "--allowed-private-networks",
        "127.0.0.1/32",
    ];
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
    let served = |s: &Server| -> u64 {
        s.readyz()["slots"]
            .as_array()
            .map(|a| a.iter().map(|x| x["requests"].as_u64().unwrap_or(0)).sum())
            .unwrap_or(0)
    };
    let before = served(&s);
    let mut req = common::agent().get(&s.url(&path));
    req = req.header("If-None-Match", &url_etag);
    let r = req.call().expect("conditional GET");
    assert_eq!(r.status().as_u16(), 304);
    assert_eq!(served(&s), before, "a 304 runs nothing");
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
