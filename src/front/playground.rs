//! `GET /`: the playground, a page for learning the API in a browser.
//!
//! Three plain files under `assets/playground/`, built into the binary so
//! the page works offline and cannot drift from the server that serves it.
//! The page builds its forms from `GET /v1/ops` and sends requests to the
//! real API, so it needs no route of its own beyond these files, and a new
//! op appears on it without touching it. `--no-playground` turns it off.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};

use super::error::ApiError;

/// A response of the page (the front's `Resp`, spelled out here so this
/// module needs nothing of `app`, which holds a `Playground`).
type Resp = Response<Full<Bytes>>;

const INDEX: &str = include_str!("../../assets/playground/index.html");
const SCRIPT: &str = include_str!("../../assets/playground/app.js");
const STYLE: &str = include_str!("../../assets/playground/style.css");

/// What the page may load: only its own files and the API on this origin;
/// results are shown from `blob:` URLs. No inline script, no framing, so
/// a hostile image name or error message can never run as code.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// The page's files, with the server's settings written into the HTML.
#[derive(Debug)]
pub struct Playground {
    files: [Asset; 3],
}

#[derive(Debug)]
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: Bytes,
    etag: HeaderValue,
}

impl Asset {
    fn new(path: &'static str, content_type: &'static str, body: String) -> Asset {
        let digest = ring::digest::digest(&ring::digest::SHA256, body.as_bytes());
        let hex: String = digest.as_ref()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Asset {
            path,
            content_type,
            body: Bytes::from(body),
            etag: HeaderValue::from_str(&format!("\"{hex}\""))
                .unwrap_or_else(|_| HeaderValue::from_static("\"0\"")),
        }
    }
}

/// What the page cannot learn from `/v1/ops`: whether it may offer a URL
/// field, whether POSTs need an API key, and whether GETs must be signed.
#[derive(Debug, Clone, Copy)]
pub struct PageSettings {
    pub url_sources: bool,
    pub api_keys: bool,
    pub signed_urls: bool,
}

impl Playground {
    pub fn new(settings: PageSettings) -> Playground {
        let flag = |on: bool| if on { "true" } else { "false" };
        let index = INDEX
            .replace("{{URL_SOURCES}}", flag(settings.url_sources))
            .replace("{{API_KEYS}}", flag(settings.api_keys))
            .replace("{{SIGNED_URLS}}", flag(settings.signed_urls));
        Playground {
            files: [
                Asset::new("/", "text/html; charset=utf-8", index),
                Asset::new(
                    "/playground/app.js",
                    "text/javascript; charset=utf-8",
                    SCRIPT.to_string(),
                ),
                Asset::new(
                    "/playground/style.css",
                    "text/css; charset=utf-8",
                    STYLE.to_string(),
                ),
            ],
        }
    }

    /// Whether `path` is one of the page's files.
    pub fn serves(&self, path: &str) -> bool {
        self.files.iter().any(|a| a.path == path)
    }

    /// Answers `GET`/`HEAD` of one of the page's files, `304` when the
    /// browser has it already (the ETag is the content's hash, so a new
    /// build is fetched again and an unchanged one never is).
    pub fn respond(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Resp, ApiError> {
        if method != Method::GET && method != Method::HEAD {
            return Err(ApiError::MethodNotAllowed {
                method: method.to_string(),
                allow: "GET",
            });
        }
        let Some(asset) = self.files.iter().find(|a| a.path == path) else {
            return Err(ApiError::NotFound(path.to_string()));
        };
        let fresh = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim() == asset.etag.to_str().unwrap_or(""))
            });
        let (status, body) = if fresh {
            (StatusCode::NOT_MODIFIED, Bytes::new())
        } else {
            // hyper leaves out a HEAD's body and keeps its length
            (StatusCode::OK, asset.body.clone())
        };
        let mut resp = Response::new(Full::new(body));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        h.insert(header::ETAG, asset.etag.clone());
        // Revalidate every time: a cheap 304, and an upgrade shows at once.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(url_sources: bool) -> Playground {
        Playground::new(PageSettings {
            url_sources,
            api_keys: false,
            signed_urls: false,
        })
    }

    #[test]
    fn settings_are_written_into_the_page() {
        let on = page(true);
        let html = std::str::from_utf8(&on.files[0].body).unwrap();
        assert!(html.contains(r#"data-url-sources="true""#));
        assert!(html.contains(r#"data-api-keys="false""#));
        assert!(!html.contains("{{"), "a placeholder was left in the page");
        assert_ne!(on.files[0].etag, page(false).files[0].etag);
    }

    #[test]
    fn if_none_match_gives_304_and_other_methods_405() {
        let pg = page(false);
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, pg.files[1].etag.clone());
        let r = pg
            .respond(&Method::GET, "/playground/app.js", &headers)
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        let r = pg
            .respond(&Method::GET, "/playground/app.js", &HeaderMap::new())
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(pg.respond(&Method::POST, "/", &HeaderMap::new()).is_err());
        assert!(!pg.serves("/playground/other.js"));
    }
}
