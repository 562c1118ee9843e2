//! HTTP caching: the strong `ETag` of a result, `304 Not Modified` for a
//! matching `If-None-Match`, and `Cache-Control`.
//!
//! A result is named by what decides its bytes: the source (a hash of its
//! bytes, from a body or a URL alike), the canonical
//! op list with the output settings (the negotiated format included), and
//! pixfork's version (a new release may encode differently). The same
//! request therefore gets the same ETag on every restart and instance, and
//! the result cache uses the same name as its key.

use hyper::header::{self, HeaderMap, HeaderValue};

use crate::proto::Task;

/// The name of a source: the BLAKE3 hash of its bytes. A URL source is
/// named by what was fetched, not by the validators its origin sent (a
/// weak or time-based ETag, or a Last-Modified with one-second resolution,
/// does not pin the bytes).
pub(super) type Digest = [u8; 32];

pub(super) fn digest(bytes: &[u8]) -> Digest {
    *blake3::hash(bytes).as_bytes()
}

/// The identity of a result: 32 hex digits (128 bits of BLAKE3).
/// `overlays` are the digests of the overlay images, in op order: an
/// overlay is named by its bytes too, so a changed file or URL gives a
/// new result name.
pub(super) fn result_key(source: &Digest, overlays: &[Digest], task: &Task) -> String {
    let mut h = blake3::Hasher::new();
    // The tag is bumped when the same request's bytes change within one
    // version number (v4: embedded ICC profiles are applied, damaged JPEG
    // scans refused), so no cache or client keeps serving the old ones.
    h.update(b"pixfork result v4\0");
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(b"\0");
    h.update(source);
    h.update(&(overlays.len() as u64).to_le_bytes());
    for d in overlays {
        h.update(d);
    }
    // The ops and output settings, as plain data in a fixed order. Limits
    // are left out: they decide whether a result is made, not its bytes.
    let canonical = serde_json::to_vec(&(&task.ops, &task.output)).unwrap_or_default();
    h.update(&canonical);
    h.finalize().to_hex()[..32].to_string()
}

/// The strong ETag of a result key.
pub(super) fn etag(key: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{key}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

/// Whether `If-None-Match` names `key` (or is `*`). Comparison is weak,
/// as RFC 9110 has it for `If-None-Match`: `W/"x"` matches `"x"`.
pub(super) fn not_modified(headers: &HeaderMap, key: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| {
            tag == "*"
                || tag
                    .trim_start_matches("W/")
                    .trim_matches('"')
                    .eq_ignore_ascii_case(key)
        })
}

/// Who was let in, as far as caches downstream go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Grant {
    /// No signature or key needed.
    Open,
    /// A signed URL, with its `expires` (Unix seconds) when it has one.
    Signed { expires: Option<u64> },
    /// An API key in `Authorization`: a shared cache must not answer the
    /// next request (without a key) with this response.
    Key,
}

/// `Cache-Control` of a successful image response.
pub(super) fn cache_control(configured: Option<&HeaderValue>, grant: Grant) -> HeaderValue {
    match (configured, grant) {
        (_, Grant::Key) => HeaderValue::from_static("private, max-age=3600"),
        // A signed URL that expires is kept no longer than it is valid.
        (_, Grant::Signed { expires: Some(at) }) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let left = at.saturating_sub(now).min(31_536_000);
            HeaderValue::from_str(&format!("public, max-age={left}"))
                .unwrap_or(HeaderValue::from_static("no-store"))
        }
        (Some(v), _) => v.clone(),
        // A signed URL is an immutable name for one result.
        (None, Grant::Signed { expires: None }) => {
            HeaderValue::from_static("public, max-age=31536000, immutable")
        }
        (None, Grant::Open) => HeaderValue::from_static("public, max-age=3600"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Limits, Op, OutputFormat, OutputSpec};

    fn task(width: u32, format: Option<OutputFormat>) -> Task {
        Task {
            ops: vec![Op::Resize {
                width: Some(width),
                height: None,
                fit: crate::proto::Fit::Contain,
                gravity: crate::proto::Gravity::Centre,
                enlarge: false,
                linear: None,
            }],
            output: OutputSpec {
                format,
                ..OutputSpec::default()
            },
            limits: Limits::default(),
        }
    }

    #[test]
    fn the_key_follows_source_ops_and_format_only() {
        let (img, other) = (digest(b"image"), digest(b"imagf"));
        let a = result_key(&img, &[], &task(10, None));
        assert_eq!(a.len(), 32);
        assert_eq!(a, result_key(&img, &[], &task(10, None)));
        assert_ne!(a, result_key(&other, &[], &task(10, None)));
        assert_ne!(a, result_key(&img, &[], &task(11, None)));
        assert_ne!(
            a,
            result_key(&img, &[], &task(10, Some(OutputFormat::Webp)))
        );
        let mut other_limits = task(10, None);
        other_limits.limits.max_pixels = 7;
        assert_eq!(a, result_key(&img, &[], &other_limits));
        // The overlay's bytes are part of the name.
        let logo = result_key(&img, &[digest(b"logo")], &task(10, None));
        assert_ne!(a, logo);
        assert_ne!(logo, result_key(&img, &[digest(b"logo2")], &task(10, None)));
    }

    #[test]
    fn cache_control_follows_who_was_let_in() {
        let cc = |c: Option<&HeaderValue>, g| -> Option<String> {
            cache_control(c, g).to_str().ok().map(String::from)
        };
        let mine = HeaderValue::from_static("public, max-age=60");
        assert_eq!(
            cc(None, Grant::Open).as_deref(),
            Some("public, max-age=3600")
        );
        assert_eq!(
            cc(Some(&mine), Grant::Open).as_deref(),
            Some("public, max-age=60")
        );
        assert_eq!(
            cc(None, Grant::Signed { expires: None }).as_deref(),
            Some("public, max-age=31536000, immutable")
        );
        assert_eq!(
            cc(Some(&mine), Grant::Key).as_deref(),
            Some("private, max-age=3600")
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let soon = cc(
            None,
            Grant::Signed {
                expires: Some(now + 100),
            },
        )
        .expect("value");
        let age: u64 = soon
            .strip_prefix("public, max-age=")
            .and_then(|v| v.parse().ok())
            .expect("a max-age");
        assert!((95..=100).contains(&age), "{soon}");
    }

    #[test]
    fn if_none_match_lists_and_weak_tags() {
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, "abc"));
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", W/\"abc\""),
        );
        assert!(not_modified(&h, "abc"));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"abd\""));
        assert!(!not_modified(&h, "abc"));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(not_modified(&h, "abc"));
    }
}
