//! URL sources (`GET /v1/{op}?url=`) against tiny HTTP servers this test
//! runs on loopback addresses: off by default, private addresses refused,
//! redirects checked hop by hop, the byte cap applied while streaming, the
//! timeout enforced, upstream failures mapped to 502.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Server;

/// A small PNG made here (the fetched image).
fn png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 90]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("png");
    out
}

/// A one-thread-per-connection HTTP/1.0-style server with fixed routes.
/// `other` is the address redirects to "the other server" point at.
struct Upstream {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

fn serve(bind: &str, other: Option<SocketAddr>) -> Upstream {
    let listener = TcpListener::bind(bind).expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let image = Arc::new(png());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            let image = image.clone();
            std::thread::spawn(move || {
                let _ = answer(stream, &image, addr, other);
            });
        }
    });
    Upstream { addr, hits }
}

fn answer(
    mut stream: TcpStream,
    image: &[u8],
    me: SocketAddr,
    other: Option<SocketAddr>,
) -> std::io::Result<()> {
    let path = common::read_request_path(&stream)?;
    let redirect = |to: String| {
        format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    };
    match path.as_str() {
        "/img.png" => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                image.len()
            )?;
            stream.write_all(image)?;
        }
        "/redirect-same" => stream.write_all(redirect("/img.png".into()).as_bytes())?,
        "/redirect-other" => {
            let to = other.map_or(me, |o| o);
            stream.write_all(redirect(format!("http://{to}/img.png")).as_bytes())?;
        }
        "/loop" => stream.write_all(redirect("/loop".into()).as_bytes())?,
        "/missing" => stream.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?,
        "/declared-big" => stream.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\nConnection: close\r\n\r\n",
        )?,
        "/endless" => {
            // No length: the body runs until we close, far past the cap.
            stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")?;
            let chunk = vec![0u8; 64 * 1024];
            for _ in 0..(64 * 16) {
                stream.write_all(&chunk)?;
            }
        }
        "/slow" => {
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")?;
            std::thread::sleep(Duration::from_secs(5));
        }
        _ => stream.write_all(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?,
    }
    stream.flush()
}

fn get(s: &Server, upstream: SocketAddr, path: &str) -> common::Resp {
    let url = format!("http://{upstream}{path}");
    let encoded: String = form_urlencoded::byte_serialize(url.as_bytes()).collect();
    s.get(&format!("/v1/resize?width=20&format=png&url={encoded}"))
}

fn code(r: &common::Resp) -> String {
    r.error_code()
}

#[test]
fn off_by_default_and_private_addresses_refused() {
    let up = serve("127.0.0.1:0", None);
    // Without the flag: GET stays 405, url= on a POST is a 400 naming it.
    let s = Server::start(&[]);
    assert_eq!(get(&s, up.addr, "/img.png").status, 405);
    let r = s.post("/v1/flip?url=http://127.0.0.1/x.png", b"");
    assert_eq!(
        (r.status, r.json()["error"]["param"].clone()),
        (400, "url".into())
    );
    assert!(s.stop().success());

    // With it: loopback is refused before any connection is made.
    let s = Server::start(&["--allow-url-source"]);
    let r = get(&s, up.addr, "/img.png");
    assert_eq!((r.status, code(&r).as_str()), (403, "source_forbidden"));
    let r = s.get("/v1/resize?width=20&url=http%3A%2F%2F%5B%3A%3Affff%3A127.0.0.1%5D%3A9%2Fa");
    assert_eq!(
        (r.status, code(&r).as_str()),
        (403, "source_forbidden"),
        "mapped IPv6"
    );
    let r = s.get("/v1/resize?width=20&url=ftp%3A%2F%2Fexample.com%2Fa.png");
    assert_eq!(
        (r.status, r.json()["error"]["param"].clone()),
        (400, "url".into())
    );
    let r = s.get("/v1/resize?width=20");
    assert_eq!(
        (r.status, r.json()["error"]["param"].clone()),
        (400, "url".into())
    );
    assert_eq!(
        up.hits.load(Ordering::SeqCst),
        0,
        "nothing reached the upstream"
    );
    assert!(s.stop().success());
}

#[test]
fn allowed_sources_stream_under_the_cap_and_the_deadline() {
    let up = serve("127.0.0.1:0", None);
    let s = Server::start(&[
        "--allow-url-source",
        "--allow-private-sources",
        "--max-body",
        "1MiB",
        "--source-timeout",
        "1s",
    ]);
    let r = get(&s, up.addr, "/img.png");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(common::decode_dims(&r.body), (20, 15, 1));
    // A pipeline from a URL too.
    let url: String =
        form_urlencoded::byte_serialize(format!("http://{}/img.png", up.addr).as_bytes()).collect();
    let r = s.get(&format!("/v1/pipeline?ops=flip,resize(width=10)&url={url}"));
    assert_eq!(r.status, 200);
    let r = get(&s, up.addr, "/redirect-same");
    assert_eq!(r.status, 200, "a redirect is followed");

    let r = get(&s, up.addr, "/declared-big");
    assert_eq!((r.status, code(&r).as_str()), (413, "source_too_large"));
    let started = std::time::Instant::now();
    let r = get(&s, up.addr, "/endless");
    assert_eq!((r.status, code(&r).as_str()), (413, "source_too_large"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cut while streaming"
    );
    let started = std::time::Instant::now();
    let r = get(&s, up.addr, "/slow");
    assert_eq!((r.status, code(&r).as_str()), (504, "source_timeout"));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let r = get(&s, up.addr, "/missing");
    assert_eq!((r.status, code(&r).as_str()), (502, "source_failed"));
    let r = get(&s, up.addr, "/loop");
    assert_eq!((r.status, code(&r).as_str()), (502, "source_failed"));
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("redirect"));
    // Nothing is listening on port 9 of loopback: a connect failure.
    let r = s.get("/v1/resize?width=20&url=http%3A%2F%2F127.0.0.1%3A9%2Fa.png");
    assert_eq!((r.status, code(&r).as_str()), (502, "source_failed"));
    assert!(s.stop().success());
}

/// The first hop is allowed by an explicit network (127.0.0.1/32); its
/// redirect to another loopback address (127.0.0.2) is checked again after
/// resolution and refused, and that server never sees a connection.
#[test]
fn every_redirect_hop_is_checked() {
    let private = serve("127.0.0.2:0", None);
    let up = serve("127.0.0.1:0", Some(private.addr));
    let s = Server::start(&[
        "--allow-url-source",
        "--allowed-private-networks",
        "127.0.0.1/32",
    ]);
    let r = get(&s, up.addr, "/img.png");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = get(&s, up.addr, "/redirect-same");
    assert_eq!(r.status, 200);
    let r = get(&s, up.addr, "/redirect-other");
    assert_eq!((r.status, code(&r).as_str()), (403, "source_forbidden"));
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("127.0.0.2"));
    let r = get(&s, private.addr, "/img.png");
    assert_eq!((r.status, code(&r).as_str()), (403, "source_forbidden"));
    assert_eq!(private.hits.load(Ordering::SeqCst), 0, "never contacted");
    assert!(s.stop().success());

    // A host allow-list refuses every other name, first hop or redirect.
    let s = Server::start(&[
        "--allow-url-source",
        "--allow-private-sources",
        "--allowed-source-hosts",
        "images.example.com",
    ]);
    let r = get(&s, up.addr, "/img.png");
    assert_eq!((r.status, code(&r).as_str()), (403, "source_forbidden"));
    assert!(s.stop().success());
}
