//! The playground at `GET /`, driven in a real browser: the Debian
//! Chromium, through Playwright (`tests/browser/playground.mjs`), against
//! the real server. `scripts/test.sh` installs both.
//!
//! `PIXFORK_PLAYGROUND_SCREENSHOT=path.png` also saves a screenshot of the
//! page after a run (the README's picture is made this way).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{corpus, Server};

const PHOTO: &str = "valid/jpeg/photo_portrait_800x533_baseline.jpg";
/// The registered overlay the page must offer.
const LOGO: &str = "valid/png/palette_trns_300x225.png";
/// Chromium cannot show HEIC: the page must fall back to the server's PNG.
const HEIC: &str = "valid/heic/alpha_8bit_512x512_icc.heic";

/// The browser binary: `CHROMIUM`, else the Debian package's.
fn chromium() -> String {
    if let Ok(path) = std::env::var("CHROMIUM") {
        return path;
    }
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if std::path::Path::new(candidate).exists() {
            return candidate.to_string();
        }
    }
    panic!("no chromium found (scripts/test.sh installs the Debian package; or set CHROMIUM)");
}

/// Runs the browser script against `server` and returns what it saw.
fn drive(server: &Server) -> serde_json::Value {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in tests/browser (scripts/test.sh runs npm ci there)"
    );
    let base = format!("http://{}", server.addr);
    let mut cmd = Command::new("node");
    cmd.current_dir(&dir)
        .env("CHROMIUM", chromium())
        .arg("playground.mjs")
        .arg(&base)
        .arg(corpus().join(PHOTO))
        .arg(corpus().join(HEIC));
    if let Ok(shot) = std::env::var("PIXFORK_PLAYGROUND_SCREENSHOT") {
        cmd.arg(shot);
    }
    let out = cmd
        .output()
        .expect("run node (scripts/test.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser script failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("browser script printed no JSON ({e}): {stdout}"));
    assert!(
        seen.get("failure").is_none(),
        "the browser run stopped: {}\nserver log:\n{}",
        seen["failure"],
        server.logs()
    );
    seen
}

#[test]
fn the_playground_works_in_a_real_browser() {
    let logo = format!("logo={}", corpus().join(LOGO).display());
    let server = Server::start(&["--overlay", &logo]);
    let seen = drive(&server);

    // The page ran cleanly under its own Content-Security-Policy.
    for key in [
        "console_errors",
        "page_errors",
        "csp_violations",
        "failed_loads",
    ] {
        assert_eq!(seen[key], serde_json::json!([]), "{key}: {}", seen[key]);
    }

    // The op chooser lists exactly the ops of /v1/ops, in its order.
    let ops = server.get("/v1/ops").json();
    let names: Vec<&str> = ops["ops"]
        .as_array()
        .expect("ops")
        .iter()
        .map(|o| o["name"].as_str().expect("name"))
        .collect();
    let options: Vec<&str> = seen["op_options"]
        .as_array()
        .expect("op_options")
        .iter()
        .map(|v| v.as_str().expect("option"))
        .collect();
    assert_eq!(options, names);

    // Upload, resize to width 200, run: the image shown is 200 wide and the
    // curl line is the request that made it.
    assert_eq!(seen["before_size"], "800 × 533");
    let resize = &seen["resize"];
    assert_eq!(resize["natural_width"], 200, "{resize}");
    assert_eq!(resize["error_hidden"], true);
    let curl = resize["curl"].as_str().expect("curl");
    assert!(
        curl.contains(&format!("'http://{}/v1/resize?width=200'", server.addr)),
        "{curl}"
    );
    assert!(
        curl.contains("--data-binary @'photo_portrait_800x533_baseline.jpg'"),
        "{curl}"
    );
    assert!(resize["format"]
        .as_str()
        .is_some_and(|f| f.contains("image/jpeg")));
    let stages: Vec<&str> = resize["timing_stages"]
        .as_array()
        .expect("timing")
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    for stage in ["queue", "decode", "encode", "total"] {
        assert!(stages.contains(&stage), "Server-Timing stages {stages:?}");
    }

    // A bad parameter: the page shows the server's own error.
    let direct = server.post("/v1/resize?width=0", &common::corpus_file(PHOTO));
    assert_eq!(direct.status, 400);
    let err = direct.json();
    let message = err["error"]["message"].as_str().expect("message");
    let shown = seen["bad"]["error"].as_str().expect("error text");
    assert_eq!(seen["bad"]["error_visible"], true);
    assert!(shown.contains("bad_parameter"), "{shown}");
    assert!(
        shown.contains(message),
        "page shows {shown:?}, server said {message:?}"
    );
    assert!(shown.contains("width"), "{shown}");

    // Enter in a field runs the request, and a success hides the error.
    assert_eq!(seen["enter"]["natural_width"], 120);
    assert_eq!(seen["enter"]["error_hidden"], true);

    // Two steps become one pipeline request.
    let pipeline = &seen["pipeline"];
    assert_eq!(pipeline["natural_width"], 200, "{pipeline}");
    assert_eq!(
        pipeline["steps"],
        serde_json::json!(["resize(width=200)", "blur(sigma=2)"])
    );
    let curl = pipeline["curl"].as_str().expect("curl");
    assert!(
        curl.contains("/v1/pipeline?ops=resize(width=200),blur(sigma=2)'"),
        "{curl}"
    );

    // info answers JSON, shown as JSON.
    assert_eq!(seen["info"]["width"], 800);
    assert_eq!(seen["info"]["height"], 533);
    assert_eq!(seen["info"]["format"], "jpeg");

    // The registered overlay is offered for overlay's image=, and runs.
    assert_eq!(seen["overlay_choices"], serde_json::json!(["logo"]));
    assert_eq!(seen["overlay"]["natural_width"], 800);
    let curl = seen["overlay"]["curl"].as_str().unwrap_or("");
    assert!(
        curl.contains("/v1/overlay?") && curl.contains("image=logo"),
        "{curl}"
    );
    assert!(curl.contains("gravity=southeast"), "{curl}");
    // HEIC: the browser cannot decode it, the page shows the server's PNG.
    assert_eq!(seen["heic_before_width"], 512);
    assert_eq!(seen["heic_before_meta"], "heif");

    // A phone: nothing wider than the screen.
    let phone = &seen["phone"];
    assert!(
        phone["scroll_width"].as_u64() <= phone["inner_width"].as_u64(),
        "the page scrolls sideways on a phone: {phone}"
    );
}

#[test]
fn the_page_is_served_with_its_headers_and_settings() {
    let server = Server::start(&["--allow-url-source"]);
    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").expect("CSP");
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    let html = String::from_utf8_lossy(&page.body);
    assert!(
        html.contains(r#"data-url-sources="true""#),
        "the page is told URL sources are on"
    );
    assert!(html.contains(r#"data-api-keys="false""#));
    for (path, kind) in [
        ("/playground/app.js", "text/javascript"),
        ("/playground/style.css", "text/css"),
    ] {
        let r = server.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.header("content-type")
                .is_some_and(|t| t.starts_with(kind)),
            "{path}"
        );
        // the ETag revalidates to a 304
        let etag = r.header("etag").expect("etag").to_string();
        let again = common::agent()
            .get(&server.url(path))
            .header("If-None-Match", &etag)
            .call()
            .expect("revalidate");
        assert_eq!(again.status().as_u16(), 304, "{path}");
    }
    let post = server.post("/", b"x");
    assert_eq!(post.status, 405);
    assert_eq!(post.error_code(), "method_not_allowed");
    assert_eq!(server.get("/playground/other.js").status, 404);
}

#[test]
fn no_playground_makes_the_root_a_404() {
    let by_flag = Server::start(&["--no-playground"]);
    let by_env = Server::spawn_with(&[], &[], &[("PIXFORK_NO_PLAYGROUND", "true")]);
    by_env.wait_all_ready();
    for server in [&by_flag, &by_env] {
        for path in ["/", "/playground/app.js", "/playground/style.css"] {
            let r = server.get(path);
            assert_eq!(r.status, 404, "{path}");
            assert_eq!(r.error_code(), "not_found");
        }
        // the API is untouched
        assert_eq!(server.get("/v1/ops").status, 200);
    }
}
