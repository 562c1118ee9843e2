//! Which version of a URL source is current, while its origin says so.
//!
//! A fetched source whose origin gave it a lifetime (`Cache-Control:
//! max-age`, or `s-maxage`) is remembered, as the hash of the bytes
//! fetched, for that long, at most a day: within it a request for that URL
//! knows its result's name without fetching, so a `304` or a cache hit
//! costs no trip to the origin. Bounded: the most
//! recently used URLs of up to 2 KiB each, a few thousand of them.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

/// URLs remembered at most.
const MAX_URLS: usize = 4096;
/// Longer URLs are not remembered (they are fetched every time).
const MAX_URL_LEN: usize = 2048;
/// The longest an origin's word is taken for.
const MAX_FRESH: Duration = Duration::from_secs(24 * 3600);

/// The version of a URL source last fetched: the hash of its bytes, and
/// the `Last-Modified` its origin sent (passed on to clients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceVersion {
    pub digest: [u8; 32],
    pub last_modified: Option<String>,
}

pub struct Sources {
    known: Mutex<LruCache<String, (SourceVersion, Instant)>>,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            known: Mutex::new(LruCache::new(
                std::num::NonZeroUsize::new(MAX_URLS).unwrap_or(std::num::NonZeroUsize::MIN),
            )),
        }
    }
}

impl Sources {
    /// The current version of `url`, if its origin's lifetime holds.
    pub fn fresh(&self, url: &str) -> Option<SourceVersion> {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        match known.get(url) {
            Some((v, until)) if Instant::now() < *until => Some(v.clone()),
            Some(_) => {
                known.pop(url);
                None
            }
            None => None,
        }
    }

    /// Remembers `version` of `url` for `fresh_for` (capped at a day).
    pub fn remember(&self, url: &str, version: SourceVersion, fresh_for: Duration) {
        if url.len() > MAX_URL_LEN || fresh_for.is_zero() {
            return;
        }
        let until = Instant::now() + fresh_for.min(MAX_FRESH);
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.put(url.to_string(), (version, until));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_hold_for_their_lifetime_only() {
        let s = Sources::default();
        let v = SourceVersion {
            digest: [7; 32],
            last_modified: None,
        };
        s.remember("http://h/a", v.clone(), Duration::from_secs(60));
        assert_eq!(s.fresh("http://h/a"), Some(v.clone()));
        s.remember("http://h/b", v.clone(), Duration::ZERO);
        assert_eq!(s.fresh("http://h/b"), None);
        s.remember("http://h/c", v.clone(), Duration::from_nanos(1));
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(s.fresh("http://h/c"), None, "expired");
        let long = format!("http://h/{}", "x".repeat(MAX_URL_LEN));
        s.remember(&long, v, Duration::from_secs(60));
        assert_eq!(s.fresh(&long), None);
    }
}
