//! The `overlay` op against the real server: a registered image
//! (`--overlay NAME=FILE`) composited where gravity and offsets say, with
//! opacity, scale and tiling; on every frame of an animation; over a
//! transparent base; inside pipelines and background jobs; from a second
//! URL source; and the 400s and refused starts of everything else. Every
//! expected pixel is computed here from the images the test made.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use common::Server;
use image::{DynamicImage, ImageFormat, Rgba, RgbaImage};

const BLUE: [u8; 4] = [0, 0, 255, 255];
const RED: [u8; 4] = [255, 0, 0, 255];

fn encode(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), format)
        .expect("encode");
    out
}

/// The base: 200 x 100 solid blue.
fn base_png() -> Vec<u8> {
    encode(
        DynamicImage::ImageRgba8(RgbaImage::from_pixel(200, 100, Rgba(BLUE))),
        ImageFormat::Png,
    )
}

/// The overlay: 20 x 10, its left half opaque red, its right half fully
/// transparent (so alpha must be honoured for the right half to vanish).
fn logo() -> RgbaImage {
    RgbaImage::from_fn(20, 10, |x, _| {
        if x < 10 {
            Rgba(RED)
        } else {
            Rgba([0, 255, 0, 0])
        }
    })
}

fn logo_file() -> (std::path::PathBuf, String) {
    let dir = common::temp_dir();
    let path = dir.join("logo.png");
    std::fs::write(
        &path,
        encode(DynamicImage::ImageRgba8(logo()), ImageFormat::Png),
    )
    .expect("write logo");
    let spec = format!("logo={}", path.display());
    (dir, spec)
}

fn server_with_logo(extra: &[&str]) -> (Server, std::path::PathBuf) {
    let (dir, spec) = logo_file();
    let mut args = vec!["--overlay", spec.as_str()];
    args.extend_from_slice(extra);
    (Server::start(&args), dir)
}

fn decoded(r: &common::Resp) -> RgbaImage {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    image::load_from_memory(&r.body)
        .expect("decodable output")
        .into_rgba8()
}

/// Every pixel of `out` against `want(x, y)`, within `tol` per channel.
fn assert_pixels(out: &RgbaImage, tol: u8, want: impl Fn(u32, u32) -> [u8; 4]) {
    for (x, y, px) in out.enumerate_pixels() {
        let w = want(x, y);
        let close = px.0.iter().zip(w).all(|(a, b)| a.abs_diff(b) <= tol);
        assert!(close, "pixel ({x}, {y}) is {:?}, want {w:?}", px.0);
    }
}

/// The reference: `over` drawn at (`ox`, `oy`) on solid `base`, with
/// opacity, "source over" in straight alpha.
fn composed(
    base: [u8; 4],
    over: &RgbaImage,
    ox: i64,
    oy: i64,
    opacity: f32,
) -> impl Fn(u32, u32) -> [u8; 4] + '_ {
    move |x, y| {
        let (sx, sy) = (i64::from(x) - ox, i64::from(y) - oy);
        if sx < 0 || sy < 0 || sx >= i64::from(over.width()) || sy >= i64::from(over.height()) {
            return base;
        }
        let s = over.get_pixel(sx as u32, sy as u32).0;
        let sa = f32::from(s[3]) / 255.0 * opacity;
        let da = f32::from(base[3]) / 255.0;
        let oa = sa + da * (1.0 - sa);
        if oa <= 0.0 {
            return [0, 0, 0, 0];
        }
        let mix = |i: usize| {
            let v = (f32::from(s[i]) * sa + f32::from(base[i]) * da * (1.0 - sa)) / oa;
            v.round() as u8
        };
        [mix(0), mix(1), mix(2), (oa * 255.0).round() as u8]
    }
}

#[test]
fn a_registered_overlay_lands_where_gravity_and_offsets_say() {
    let (s, dir) = server_with_logo(&[]);
    let base = base_png();
    let logo = logo();
    // South-east, 5 px in from the right and 7 from the bottom.
    let out = decoded(&s.post(
        "/v1/overlay?image=logo&gravity=southeast&x=5&y=7&format=png",
        &base,
    ));
    assert_eq!(out.dimensions(), (200, 100));
    assert_pixels(
        &out,
        0,
        composed(BLUE, &logo, 200 - 20 - 5, 100 - 10 - 7, 1.0),
    );
    // The default is the centre; negative offsets move outwards.
    let out = decoded(&s.post("/v1/overlay?image=logo&x=-3&format=png", &base));
    assert_pixels(&out, 0, composed(BLUE, &logo, 90 - 3, 45, 1.0));
    // Half opacity blends with the base.
    let out = decoded(&s.post(
        "/v1/overlay?image=logo&gravity=northwest&opacity=0.5&format=png",
        &base,
    ));
    assert_pixels(&out, 1, composed(BLUE, &logo, 0, 0, 0.5));
    // scale=0.5: the overlay is resized to half the base's width (100 x 50).
    let out = decoded(&s.post(
        "/v1/overlay?image=logo&gravity=northwest&scale=0.5&format=png",
        &base,
    ));
    assert_eq!(*out.get_pixel(20, 25), Rgba(RED));
    assert_eq!(
        *out.get_pixel(80, 25),
        Rgba(BLUE),
        "the transparent half stays see-through"
    );
    assert_eq!(
        *out.get_pixel(150, 75),
        Rgba(BLUE),
        "outside the scaled overlay"
    );
    // tile=true: a grid through the placed copy covers every pixel.
    let out = decoded(&s.post(
        "/v1/overlay?image=logo&gravity=northwest&x=4&tile=true&format=png",
        &base,
    ));
    assert_pixels(&out, 0, |x, _| {
        if (i64::from(x) - 4).rem_euclid(20) < 10 {
            RED
        } else {
            BLUE
        }
    });
    s.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn every_frame_of_an_animation_gets_it_and_alpha_is_kept() {
    let (s, dir) = server_with_logo(&[]);
    // A 3-frame GIF, one flat colour a frame, with its own delays.
    let colours = [[0u8, 0, 255, 255], [0, 200, 0, 255], [250, 250, 250, 255]];
    let mut gif = Vec::new();
    {
        let mut enc = image::codecs::gif::GifEncoder::new(&mut gif);
        enc.set_repeat(image::codecs::gif::Repeat::Infinite)
            .expect("repeat");
        for (i, c) in colours.iter().enumerate() {
            let frame = image::Frame::from_parts(
                RgbaImage::from_pixel(60, 40, Rgba(*c)),
                0,
                0,
                image::Delay::from_numer_denom_ms(100 * (i as u32 + 1), 1),
            );
            enc.encode_frame(frame).expect("frame");
        }
    }
    let r = s.post("/v1/overlay?image=logo&gravity=northeast", &gif);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("image/gif"));
    use image::AnimationDecoder;
    let frames = image::codecs::gif::GifDecoder::new(std::io::Cursor::new(&r.body))
        .expect("gif")
        .into_frames()
        .collect_frames()
        .expect("frames");
    assert_eq!(frames.len(), 3);
    let logo = logo();
    for (i, frame) in frames.iter().enumerate() {
        assert_eq!(frame.delay().numer_denom_ms(), (100 * (i as u32 + 1), 1));
        // GIF palettes are exact for four colours.
        assert_pixels(
            frame.buffer(),
            0,
            composed(colours[i], &logo, 60 - 20, 0, 1.0),
        );
    }
    // A transparent base keeps its transparency outside the overlay and
    // takes the overlay's pixels where it is opaque.
    let clear = encode(
        DynamicImage::ImageRgba8(RgbaImage::from_pixel(50, 30, Rgba([0, 0, 0, 0]))),
        ImageFormat::Png,
    );
    let out = decoded(&s.post(
        "/v1/overlay?image=logo&gravity=southwest&format=png",
        &clear,
    ));
    assert_pixels(&out, 0, composed([0, 0, 0, 0], &logo, 0, 20, 1.0));
    s.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn pipelines_and_jobs_run_it_like_a_single_request() {
    let (s, dir) = server_with_logo(&[]);
    let base = base_png();
    // A pipeline equals its steps run one after the other.
    let piped = s.post(
        "/v1/pipeline?ops=resize(width=100),overlay(image=logo,gravity=south,opacity=0.8)&format=png",
        &base,
    );
    let resized = s.post("/v1/resize?width=100&format=png", &base);
    assert_eq!(resized.status, 200);
    let stepped = s.post(
        "/v1/overlay?image=logo&gravity=south&opacity=0.8&format=png",
        &resized.body,
    );
    assert_eq!(
        piped.status,
        200,
        "{}",
        String::from_utf8_lossy(&piped.body)
    );
    assert_eq!(decoded(&piped), decoded(&stepped));
    // A background job with an overlay gives the synchronous result.
    let query = "overlay?image=logo&gravity=southeast&format=png";
    let id = common::jobs::submit(&s, query, &base);
    let done = common::jobs::wait_status(&s, &id, "done", Duration::from_secs(30));
    assert_eq!(done["status"], "done");
    let result = s.get(&format!("/v1/jobs/{id}/result"));
    assert_eq!(
        decoded(&result),
        decoded(&s.post(&format!("/v1/{query}"), &base))
    );
    // An unknown name is refused at submission, nothing stored.
    let r = s.post("/v1/jobs/overlay?image=nope", &base);
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "image");
    s.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_overlay_requests_are_clear_400s_and_reach_no_worker() {
    let (s, dir) = server_with_logo(&[]);
    let base = base_png();
    // The registry is listed for clients (and the playground).
    let listed = s.get("/v1/overlays");
    assert_eq!(listed.status, 200);
    let logo_png = encode(DynamicImage::ImageRgba8(logo()), ImageFormat::Png);
    assert_eq!(
        listed.json(),
        serde_json::json!({"overlays": [{"name": "logo", "bytes": logo_png.len()}]})
    );
    assert_eq!(s.post("/v1/overlays", b"").status, 405);
    let served = s.requests_served();
    let cases: &[(&str, &str, &str)] = &[
        ("/v1/overlay?image=nope", "image", "registered: logo"),
        ("/v1/overlay", "image", "image=NAME"),
        ("/v1/overlay?image=logo&image_url=http://example.com/a.png", "image_url", "not both"),
        ("/v1/overlay?image_url=http://example.com/a.png", "image_url", "URL sources are off"),
        ("/v1/overlay?image=logo&gravity=smart", "gravity", "must be one of"),
        ("/v1/overlay?image=logo&opacity=2", "opacity", "at most 1"),
        ("/v1/overlay?image=logo&scale=0", "scale", "above 0"),
        ("/v1/overlay?image=a%20b", "image", "name of 1 to 64"),
        (
            "/v1/pipeline?ops=overlay(image=logo),overlay(image=logo),overlay(image=logo),overlay(image=logo),overlay(image=logo)",
            "ops",
            "at most 4 overlay",
        ),
        ("/v1/pipeline?ops=blur(sigma=1),overlay(image=nope)", "ops[1].image", "no overlay named"),
        ("/v1/jobs/overlay?image_url=http://example.com/a.png", "image_url", "--overlay"),
    ];
    for (path, param, words) in cases {
        let r = s.post(path, &base);
        assert_eq!(
            r.status,
            400,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let e = r.json();
        assert_eq!(e["error"]["param"], *param, "{path}: {e}");
        let message = e["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(words), "{path}: {message}");
    }
    assert_eq!(
        s.requests_served(),
        served,
        "no bad request reached a worker"
    );
    s.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_overlay_that_is_not_an_image_stops_the_start() {
    let dir = common::temp_dir();
    let bad = dir.join("notes.txt");
    std::fs::write(&bad, b"this is not an image").expect("write");
    let missing = dir.join("missing.png");
    for (spec, words) in [
        (format!("logo={}", bad.display()), "--overlay logo"),
        (format!("logo={}", missing.display()), "cannot read"),
        ("logo".to_string(), "NAME=FILE"),
    ] {
        let out = std::process::Command::new(common::BIN)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--workers",
                "1",
                "--cache-size",
                "0",
            ])
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(["--overlay", &spec])
            .output()
            .expect("run");
        assert!(!out.status.success(), "{spec} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(words), "{spec}: {err}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A loopback origin serving fixed files by path.
fn origin(files: Vec<(&'static str, Vec<u8>)>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind origin");
    let addr = listener.local_addr().expect("addr");
    let files = Arc::new(files);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let files = files.clone();
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut stream = stream;
                let path = common::read_request_path(&stream)?;
                match files.iter().find(|(p, _)| *p == path) {
                    Some((_, body)) => {
                        write!(
                            stream,
                            "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )?;
                        stream.write_all(body)?;
                    }
                    None => stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )?,
                }
                stream.flush()
            });
        }
    });
    addr
}

#[test]
fn image_url_fetches_a_second_source_under_the_same_rules() {
    let logo_png = encode(DynamicImage::ImageRgba8(logo()), ImageFormat::Png);
    let up = origin(vec![("/base.png", base_png()), ("/logo.png", logo_png)]);
    let enc = |u: String| -> String { form_urlencoded::byte_serialize(u.as_bytes()).collect() };
    let (base_url, logo_url) = (
        enc(format!("http://{up}/base.png")),
        enc(format!("http://{up}/logo.png")),
    );
    // Private addresses are refused for the overlay as for the source.
    let strict = Server::start(&["--allow-url-source"]);
    let r = strict.post(
        &format!("/v1/overlay?image_url={logo_url}&format=png"),
        &base_png(),
    );
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.error_code(), "source_forbidden");
    strict.stop();

    let s = Server::start(&["--allow-url-source", "--allow-private-sources"]);
    let logo = logo();
    let want = composed(BLUE, &logo, 0, 90, 1.0);
    // Body as the base, URL as the overlay.
    let r = s.post(
        &format!("/v1/overlay?image_url={logo_url}&gravity=southwest&format=png"),
        &base_png(),
    );
    assert_pixels(&decoded(&r), 0, &want);
    // Both from URLs, by GET, and the same again from the result cache's
    // point of view: the same ETag for the same bytes.
    let path =
        format!("/v1/overlay?url={base_url}&image_url={logo_url}&gravity=southwest&format=png");
    let first = s.get(&path);
    assert_pixels(&decoded(&first), 0, &want);
    let again = s.get(&path);
    assert_eq!(first.header("etag"), again.header("etag"));
    // An overlay URL that fails is the source's 502.
    let missing = enc(format!("http://{up}/missing.png"));
    let r = s.get(&format!("/v1/overlay?url={base_url}&image_url={missing}"));
    assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.error_code(), "source_failed");
    s.stop();
}

#[test]
fn edges_sizes_and_colour_types() {
    let (dir, spec) = logo_file();
    let other = dir.join("logo2.png");
    let mut flipped = logo();
    image::imageops::flip_horizontal_in_place(&mut flipped);
    std::fs::write(
        &other,
        encode(DynamicImage::ImageRgba8(flipped), ImageFormat::Png),
    )
    .expect("write logo2");
    let spec2 = format!("logo2={}", other.display());
    let s = Server::start(&[
        "--overlay",
        &spec,
        "--overlay",
        &spec2,
        "--max-pixels",
        "1000000",
        "--cache-size",
        "64MiB",
    ]);
    let base = base_png();
    // Offsets far outside the picture leave it untouched; an overlay
    // larger than the picture is clipped to it.
    let out = decoded(&s.post("/v1/overlay?image=logo&x=-65535&y=65535&format=png", &base));
    assert_pixels(&out, 0, |_, _| BLUE);
    let tiny = encode(
        DynamicImage::ImageRgba8(RgbaImage::from_pixel(8, 4, Rgba(BLUE))),
        ImageFormat::Png,
    );
    let out = decoded(&s.post("/v1/overlay?image=logo&gravity=northwest&format=png", &tiny));
    assert_eq!(out.dimensions(), (8, 4));
    assert_pixels(&out, 0, |_, _| RED);
    // A scale that would make the overlay larger than --max-pixels is a
    // 413 before it is made (a 20 x 10 logo at a 4000-wide base's full
    // width would be 4000 x 2000).
    let wide = encode(
        DynamicImage::ImageRgba8(RgbaImage::from_pixel(4000, 10, Rgba(BLUE))),
        ImageFormat::Png,
    );
    let r = s.post("/v1/overlay?image=logo&scale=1", &wide);
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.error_code(), "image_too_large");
    // 16-bit stays 16-bit; grey becomes colour (the overlay is red).
    let deep = encode(
        DynamicImage::ImageRgb16(image::ImageBuffer::from_pixel(
            30,
            20,
            image::Rgb([0u16, 0, 65535]),
        )),
        ImageFormat::Png,
    );
    let r = s.post("/v1/overlay?image=logo&gravity=northwest&format=png", &deep);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let out = image::load_from_memory(&r.body).expect("png");
    assert_eq!(out.color(), image::ColorType::Rgb16);
    let out = out.into_rgb16();
    assert_eq!(out.get_pixel(0, 0).0, [65535, 0, 0]);
    assert_eq!(out.get_pixel(15, 5).0, [0, 0, 65535]);
    let grey = encode(
        DynamicImage::ImageLuma8(image::GrayImage::from_pixel(30, 20, image::Luma([90]))),
        ImageFormat::Png,
    );
    let out = image::load_from_memory(
        &s.post("/v1/overlay?image=logo&gravity=northwest&format=png", &grey)
            .body,
    )
    .expect("png");
    assert_eq!(out.color(), image::ColorType::Rgb8);
    assert_eq!(out.into_rgb8().get_pixel(0, 0).0, [255, 0, 0]);
    // Another overlay is another result: another ETag; the same request
    // again is the cache's.
    let a = s.post("/v1/overlay?image=logo&format=png", &base);
    let b = s.post("/v1/overlay?image=logo2&format=png", &base);
    assert_eq!((a.status, b.status), (200, 200));
    assert_ne!(a.header("etag"), b.header("etag"));
    assert_ne!(a.body, b.body);
    let again = s.post("/v1/overlay?image=logo&format=png", &base);
    assert_eq!(again.header("etag"), a.header("etag"));
    let timing = again.header("server-timing").unwrap_or("");
    assert!(timing.starts_with("cache;desc=hit"), "{timing}");
    s.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_changed_overlay_file_gives_a_new_etag_after_a_restart() {
    let (dir, spec) = logo_file();
    let base = base_png();
    let first = {
        let s = Server::start(&["--overlay", &spec]);
        let r = s.post("/v1/overlay?image=logo&format=png", &base);
        s.stop();
        r
    };
    // The same name, another picture.
    let path = dir.join("logo.png");
    let blank = RgbaImage::from_pixel(20, 10, Rgba([0, 0, 0, 128]));
    std::fs::write(
        &path,
        encode(DynamicImage::ImageRgba8(blank), ImageFormat::Png),
    )
    .expect("rewrite logo");
    let s = Server::start(&["--overlay", &spec]);
    let second = s.post("/v1/overlay?image=logo&format=png", &base);
    assert_eq!((first.status, second.status), (200, 200));
    assert_ne!(first.header("etag"), second.header("etag"));
    s.stop();
    let _ = std::fs::remove_dir_all(dir);
}
