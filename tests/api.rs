//! The HTTP surface: routes, parameters, limits, headers.

mod common;

use common::{corpus_file, decode_dims, Server};

#[test]
fn api_contract() {
    let s = Server::start(&["--max-body", "2MiB"]);
    let photo = corpus_file("valid/jpeg/photo_cat_320x240_progressive.jpg");

    // Liveness and readiness.
    let h = s.get("/healthz");
    assert_eq!(h.status, 200);
    assert!(h.header("x-request-id").is_some());
    let ready = s.readyz();
    assert_eq!(
        ready["slots"].as_array().map(|a| a.len()),
        Some(2),
        "{ready}"
    );

    // A transform: image bytes back, typed headers, timing, request id echo.
    let r = s.post_with(
        "/v1/resize?width=160&format=png",
        &photo,
        &[("x-request-id", "abc-123")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/png"));
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    let timing = r.header("server-timing").expect("server-timing");
    assert!(
        timing.contains("worker;dur=") && timing.contains("total;dur="),
        "{timing}"
    );
    assert_eq!(decode_dims(&r.body), (160, 120, 1));

    // Each single op of this issue.
    for (q, dims) in [
        ("rotate?angle=90", (240, 320)),
        ("rotate?angle=180", (320, 240)),
        ("flip", (320, 240)),
        ("flop", (320, 240)),
        ("grayscale", (320, 240)),
        ("blur?sigma=2", (320, 240)),
        ("crop?x=10&y=20&width=100&height=50", (100, 50)),
        ("crop?x=300&y=200&width=100&height=100", (20, 40)),
        ("convert?format=webp", (320, 240)),
        ("convert?format=gif", (320, 240)),
        ("resize?width=100&height=100", (100, 75)),
        ("resize?height=60", (80, 60)),
        ("resize?width=1000", (320, 240)),
        ("resize?width=640&enlarge=true", (640, 480)),
    ] {
        let r = s.post(&format!("/v1/{q}"), &photo);
        assert_eq!(r.status, 200, "{q}: {}", String::from_utf8_lossy(&r.body));
        let (w, h, _) = decode_dims(&r.body);
        assert_eq!((w, h), dims, "{q}");
    }
    let q = s.post("/v1/convert?format=jpeg&quality=10", &photo);
    let q90 = s.post("/v1/convert?format=jpeg&quality=95", &photo);
    assert!(q.body.len() < q90.body.len(), "quality changes the size");

    // Errors: status, JSON body, the parameter named.
    let cases: &[(&str, u16, &str)] = &[
        ("/v1/explode", 404, "unknown_op"),
        ("/v1/resize", 400, "bad_parameter"),
        ("/v1/resize?width=-5", 400, "bad_parameter"),
        ("/v1/resize?width=abc", 400, "bad_parameter"),
        ("/v1/resize?width=10&bogus=1", 400, "unknown_parameter"),
        ("/v1/blur?sigma=0", 400, "bad_parameter"),
        ("/v1/blur?sigma=1000", 400, "bad_parameter"),
        ("/v1/rotate?angle=360", 400, "bad_parameter"),
        ("/v1/resize?width=10&format=tiff", 400, "bad_parameter"),
        ("/v1/resize?width=10&quality=101", 400, "bad_parameter"),
        (
            "/v1/crop?x=1000&y=0&width=10&height=10",
            400,
            "bad_parameter",
        ),
        ("/elsewhere", 404, "not_found"),
    ];
    for (path, status, code) in cases {
        let r = s.post(path, &photo);
        assert_eq!(
            r.status,
            *status,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.error_code(), *code, "{path}");
        assert!(r.header("x-request-id").is_some());
    }
    let named = s.post("/v1/blur?sigma=-1", &photo).json();
    assert_eq!(named["error"]["param"], "sigma");
    assert!(named["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("sigma"));

    // Method and body errors.
    let r = s.get("/v1/resize?width=10");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    assert_eq!(r.error_code(), "method_not_allowed");
    let r = s.post("/v1/resize?width=10", b"");
    assert_eq!((r.status, r.error_code().as_str()), (400, "empty_body"));
    let big = vec![0u8; (2 << 20) + 1];
    let r = s.post("/v1/resize?width=10", &big);
    assert_eq!((r.status, r.error_code().as_str()), (413, "body_too_large"));
    let r = s.post("/v1/resize?width=10", b"hello, I am text");
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (415, "unsupported_format")
    );

    // Info is JSON describing the input.
    let r = s.post("/v1/info", &photo);
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["format"], "jpeg");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert_eq!(v["has_alpha"], false);

    // Animated GIF: every frame transformed, delays kept.
    let gif = corpus_file("valid/gif/anim_210x210_20frames_varied_delays.gif");
    let before = s.post("/v1/info", &gif).json();
    let r = s.post("/v1/flip", &gif);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("image/gif"));
    let after = s.post("/v1/info", &r.body).json();
    assert_eq!(after["frames"], 20);
    assert_eq!(after["delays_ms"], before["delays_ms"], "delays kept");
    assert_eq!(after["loop_count"], before["loop_count"], "loop count kept");

    assert!(s.stop().success());
}
