//! HTTP caching: the strong `ETag` of a result, `304 Not Modified` for a
//! matching `If-None-Match`, and `Cache-Control`.
//!
//! A result is named by what decides its bytes: the source (a hash of its
//! bytes, or the URL with the validators its origin sent), the canonical
//! op list with the output settings (the negotiated format included), and
//! pixfork's version (a new release may encode differently). The same
//! request therefore gets the same ETag on every restart and instance, and
//! the result cache uses the same name as its key.

use hyper::header::{self, HeaderMap, HeaderValue};

use crate::proto::Task;

/// What a result is made from, as far as its bytes go.
pub(super) enum Source<'a> {
    /// Bytes sent in the request body (or a source without validators).
    Bytes(&'a [u8]),
    /// A URL source whose origin named its version (`ETag`,
    /// `Last-Modified`): the URL and those name the bytes.
    Url {
        url: &'a str,
        etag: Option<&'a str>,
        last_modified: Option<&'a str>,
    },
}

/// The identity of a result: 32 hex digits (128 bits of BLAKE3).
pub(super) fn result_key(source: &Source<'_>, task: &Task) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"pixfork result v1\0");
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(b"\0");
    match source {
        Source::Bytes(bytes) => {
            h.update(b"bytes\0");
            h.update(blake3::hash(bytes).as_bytes());
        }
        Source::Url {
            url,
            etag,
            last_modified,
        } => {
            h.update(b"url\0");
            for part in [Some(*url), *etag, *last_modified] {
                h.update(part.unwrap_or("").as_bytes());
                h.update(b"\0");
            }
        }
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

/// `Cache-Control` of a successful image response.
pub(super) fn cache_control(configured: Option<&HeaderValue>, signed: bool) -> HeaderValue {
    match configured {
        Some(v) => v.clone(),
        // A signed URL is an immutable name for one result.
        None if signed => HeaderValue::from_static("public, max-age=31536000, immutable"),
        None => HeaderValue::from_static("public, max-age=3600"),
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
        let a = result_key(&Source::Bytes(b"image"), &task(10, None));
        assert_eq!(a.len(), 32);
        assert_eq!(a, result_key(&Source::Bytes(b"image"), &task(10, None)));
        assert_ne!(a, result_key(&Source::Bytes(b"imagf"), &task(10, None)));
        assert_ne!(a, result_key(&Source::Bytes(b"image"), &task(11, None)));
        assert_ne!(
            a,
            result_key(
                &Source::Bytes(b"image"),
                &task(10, Some(OutputFormat::Webp))
            )
        );
        let mut other_limits = task(10, None);
        other_limits.limits.max_pixels = 7;
        assert_eq!(a, result_key(&Source::Bytes(b"image"), &other_limits));
        let url = |etag| Source::Url {
            url: "https://o/a.jpg",
            etag,
            last_modified: None,
        };
        assert_ne!(
            result_key(&url(Some("\"1\"")), &task(10, None)),
            result_key(&url(Some("\"2\"")), &task(10, None))
        );
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
