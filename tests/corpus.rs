//! Every file of the shared corpus through the real service.

mod common;

use std::time::{Duration, Instant};

use common::{corpus_file, decode_dims, manifest, Server};

/// Upright size: EXIF orientations 5..8 swap the stored width and height.
fn upright(path: &str, w: u32, h: u32) -> (u32, u32) {
    let swapped = [
        "orientation_5",
        "orientation_6",
        "orientation_7",
        "orientation_8",
    ]
    .iter()
    .any(|o| path.contains(o));
    if swapped {
        (h, w)
    } else {
        (w, h)
    }
}

#[test]
fn every_valid_file_resizes_and_describes() {
    let s = Server::start(&[]);
    let mut checked = 0;
    for e in manifest().into_iter().filter(|e| e.valid) {
        let body = corpus_file(&e.path);
        let (w, h) = (e.width.expect("width"), e.height.expect("height"));
        let frames = e.frames.unwrap_or(1);

        let info = s.post("/v1/info", &body);
        assert_eq!(
            info.status,
            200,
            "{}: info {}",
            e.path,
            String::from_utf8_lossy(&info.body)
        );
        let v = info.json();
        assert_eq!(v["width"].as_u64(), Some(w as u64), "{}: {v}", e.path);
        assert_eq!(v["height"].as_u64(), Some(h as u64), "{}: {v}", e.path);
        assert_eq!(v["frames"].as_u64(), Some(frames as u64), "{}: {v}", e.path);
        assert_eq!(v["bytes"].as_u64(), Some(body.len() as u64), "{}", e.path);

        let r = s.post("/v1/resize?width=100", &body);
        assert_eq!(
            r.status,
            200,
            "{}: resize {}",
            e.path,
            String::from_utf8_lossy(&r.body)
        );
        let (uw, uh) = upright(&e.path, w, h);
        let ew = uw.min(100);
        let eh = ((uh as f64 * ew as f64 / uw as f64).round() as u32).max(1);
        let (ow, oh, of) = decode_dims(&r.body);
        assert_eq!(ow, ew, "{}: width", e.path);
        assert!(
            oh.abs_diff(eh) <= 1,
            "{}: height {oh}, expected {eh}",
            e.path
        );
        assert_eq!(of, frames, "{}: frames", e.path);
        assert_eq!(r.header("x-image-width"), Some(ow.to_string().as_str()));
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} valid files found");
    assert_eq!(s.total_restarts(), 0, "no worker died on valid input");
    assert!(s.stop().success());
}

/// Files the manifest calls invalid that Pillow reads (its "Pillow" column
/// says ok) and pixfork now reads the same way, as the formats work asks;
/// tests/formats.rs checks their pixels against Pillow's.
const READ_LENIENTLY: &[&str] = &[
    // planes != 1: a field that means nothing for a BMP.
    "invalid/bmp_bad/bmp_bad_planes.bmp",
];

#[test]
fn files_read_leniently_decode() {
    let s = Server::start(&[]);
    for path in READ_LENIENTLY {
        let entry = manifest().into_iter().find(|e| e.path == *path);
        assert!(
            entry.is_some_and(|e| !e.valid),
            "{path} is still listed as invalid"
        );
        let r = s.post("/v1/convert?format=png", &corpus_file(path));
        assert_eq!(
            r.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    s.stop();
}

#[test]
fn every_invalid_file_is_a_clean_4xx() {
    let s = Server::start(&[]);
    let good = corpus_file("valid/png/tiny_1x1.png");
    let mut checked = 0;
    for e in manifest()
        .into_iter()
        .filter(|e| !e.valid && !e.any && !READ_LENIENTLY.contains(&e.path.as_str()))
    {
        let body = corpus_file(&e.path);
        for route in ["/v1/resize?width=50", "/v1/info"] {
            let t = Instant::now();
            let r = s.post(route, &body);
            let took = t.elapsed();
            assert!(
                (400..500).contains(&r.status),
                "{} {route}: status {} body {}",
                e.path,
                r.status,
                String::from_utf8_lossy(&r.body)
            );
            let code = r.error_code();
            if e.path.starts_with("invalid/limits/") {
                assert!(
                    matches!(r.status, 413 | 422),
                    "{}: {} {code}",
                    e.path,
                    r.status
                );
            }
            if e.path.starts_with("invalid/unsupported/") {
                assert!(
                    matches!(r.status, 415 | 422),
                    "{}: {} {code}",
                    e.path,
                    r.status
                );
            }
            assert!(took < Duration::from_secs(10), "{} took {took:?}", e.path);
        }
        // The service is unharmed: liveness and a valid request right after.
        assert_eq!(s.get("/healthz").status, 200, "after {}", e.path);
        assert_eq!(
            s.post("/v1/resize?width=1", &good).status,
            200,
            "after {}",
            e.path
        );
        checked += 1;
    }
    assert!(checked >= 60, "only {checked} invalid files found");
    assert_eq!(s.total_restarts(), 0, "no worker died on invalid input");
    assert!(s.stop().success());
}
