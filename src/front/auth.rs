//! Who may make the service work: signed URLs for `GET ...?url=` (so a
//! CDN can be pointed at pixfork without making it an open proxy) and API
//! keys for everything else that runs an op or touches jobs.
//!
//! # Signed URLs
//!
//! With `--url-signing-key`, every image `GET` must end with `&sig=SIG`,
//! where SIG is the unpadded base64url HMAC-SHA256, under the key, of the
//! request target's bytes before `&sig=` (path and query exactly as sent).
//! An `expires=UNIX_SECONDS` inside the signed part is honoured. The check
//! runs on the raw bytes, before any decoding, so two spellings of one URL
//! are two different signatures, never one signature for two meanings.
//!
//! # API keys
//!
//! With `--api-key-file`, `POST /v1/...` and every `/v1/jobs` route need
//! `Authorization: Bearer KEY`. A signed `GET` needs no key. Keys are
//! compared in constant time: each is kept only as its HMAC under a random
//! per-process secret, and the presented one is verified against those.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use hyper::header::{self, HeaderMap};
use ring::hmac;

use super::error::ApiError;

/// Why the signing key or the key file could not be used: a boot error.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("--url-signing-key must be hex (an even number of 0-9a-f digits, at least 32): {0}")]
    BadKey(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} holds no key (one key a line; # starts a comment)")]
    NoKeys(String),
}

/// The URL-signing key.
#[derive(Clone)]
pub struct Signer {
    key: hmac::Key,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

impl Signer {
    /// From hex digits (`--url-signing-key`), or the first line of a file
    /// holding them (`--url-signing-key-file`). At least 16 bytes.
    pub fn from_hex(hex: &str) -> Result<Signer, AuthSetupError> {
        let hex = hex.trim();
        let bad = || AuthSetupError::BadKey(format!("{} characters", hex.len()));
        if hex.len() < 32
            || !hex.len().is_multiple_of(2)
            || !hex.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(bad());
        }
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
        Ok(Signer {
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
        })
    }

    pub fn from_file(path: &Path) -> Result<Signer, AuthSetupError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthSetupError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Signer::from_hex(text.lines().next().unwrap_or(""))
    }

    /// The signature of `signed` (what a client computes).
    pub fn sign(&self, signed: &[u8]) -> String {
        let tag = hmac::sign(&self.key, signed);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    /// Checks the signature of a request target (`path?query`). Returns
    /// the query without `sig` and `expires`, for the parser, and the
    /// `expires` it held.
    pub fn verify(&self, target: &str) -> Result<(String, Option<u64>), ApiError> {
        let Some(at) = target.rfind("&sig=") else {
            return Err(bad_signature(
                "this server only accepts signed URLs: add &sig= (see the README)",
            ));
        };
        let (signed, sig) = (&target[..at], &target[at + "&sig=".len()..]);
        let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sig.as_bytes())
            .map_err(|_| bad_signature("sig is not unpadded base64url (is it last?)"))?;
        hmac::verify(&self.key, signed.as_bytes(), &tag)
            .map_err(|_| bad_signature("the signature does not match this URL"))?;
        let query = signed.split_once('?').map_or("", |(_, q)| q);
        let mut kept = Vec::new();
        let mut expires = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("expires", v)) => {
                    let deadline: u64 = v.parse().map_err(|_| {
                        bad_signature("expires must be a whole number of Unix seconds")
                    })?;
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    expires = Some(deadline);
                    if now > deadline {
                        return Err(ApiError::Auth {
                            status: hyper::StatusCode::FORBIDDEN,
                            code: "expired_signature",
                            message: format!("this signed URL expired at {deadline} (now {now})"),
                        });
                    }
                }
                _ => kept.push(pair),
            }
        }
        Ok((kept.join("&"), expires))
    }
}

fn bad_signature(message: &str) -> ApiError {
    ApiError::Auth {
        status: hyper::StatusCode::FORBIDDEN,
        code: "bad_signature",
        message: message.to_string(),
    }
}

/// The API keys of `--api-key-file`, kept as HMACs under a secret of this
/// process only.
#[derive(Clone)]
pub struct ApiKeys {
    secret: hmac::Key,
    tags: Vec<hmac::Tag>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.tags.len())
    }
}

impl ApiKeys {
    /// One key a line; blank lines and `#` comments are skipped.
    pub fn from_file(path: &Path) -> Result<ApiKeys, AuthSetupError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthSetupError::Read {
            path: path.display().to_string(),
            source,
        })?;
        ApiKeys::from_lines(&text).ok_or_else(|| AuthSetupError::NoKeys(path.display().to_string()))
    }

    fn from_lines(text: &str) -> Option<ApiKeys> {
        let mut seed = [0u8; 32];
        for b in &mut seed {
            *b = fastrand::u8(..);
        }
        let secret = hmac::Key::new(hmac::HMAC_SHA256, &seed);
        let tags: Vec<hmac::Tag> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|k| hmac::sign(&secret, k.as_bytes()))
            .collect();
        (!tags.is_empty()).then_some(ApiKeys { secret, tags })
    }

    /// Whether the request carries `Authorization: Bearer <a listed key>`.
    /// Every listed key is tried, so the time taken does not depend on
    /// which one (or how much of one) matched.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(presented) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
        else {
            return false;
        };
        let mut ok = false;
        for tag in &self.tags {
            ok |= hmac::verify(&self.secret, presented.as_bytes(), tag.as_ref()).is_ok();
        }
        ok
    }
}

/// The 401 of a request without a valid key.
pub fn unauthorized() -> ApiError {
    ApiError::Auth {
        status: hyper::StatusCode::UNAUTHORIZED,
        code: "unauthorized",
        message: "this route needs an API key: Authorization: Bearer KEY".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn a_signed_target_verifies_and_loses_sig_and_expires() {
        let s = Signer::from_hex(KEY).expect("key");
        let target = "/v1/resize?width=300&url=https%3A%2F%2Fexample.com%2Fa.jpg";
        let signed = format!("{target}&sig={}", s.sign(target.as_bytes()));
        assert_eq!(
            s.verify(&signed).expect("valid"),
            (
                "width=300&url=https%3A%2F%2Fexample.com%2Fa.jpg".to_string(),
                None
            )
        );
        // One byte changed: refused.
        let tampered = signed.replace("width=300", "width=301");
        assert!(matches!(
            s.verify(&tampered),
            Err(ApiError::Auth {
                code: "bad_signature",
                ..
            })
        ));
        assert!(matches!(
            s.verify(target),
            Err(ApiError::Auth {
                code: "bad_signature",
                ..
            })
        ));
        // Expiry inside the signed part.
        let past = "/v1/resize?width=3&url=x&expires=1000";
        let signed = format!("{past}&sig={}", s.sign(past.as_bytes()));
        assert!(matches!(
            s.verify(&signed),
            Err(ApiError::Auth {
                code: "expired_signature",
                ..
            })
        ));
        let future = "/v1/resize?width=3&url=x&expires=99999999999";
        let signed = format!("{future}&sig={}", s.sign(future.as_bytes()));
        assert_eq!(
            s.verify(&signed).expect("valid"),
            ("width=3&url=x".to_string(), Some(99_999_999_999))
        );
    }

    #[test]
    fn keys_are_read_and_checked() {
        let keys = ApiKeys::from_lines("# ops\nalpha\n\n  beta  \n").expect("keys");
        let mut h = HeaderMap::new();
        assert!(!keys.allows(&h));
        h.insert(
            header::AUTHORIZATION,
            "Bearer beta".parse().expect("header"),
        );
        assert!(keys.allows(&h));
        h.insert(
            header::AUTHORIZATION,
            "Bearer gamma".parse().expect("header"),
        );
        assert!(!keys.allows(&h));
        h.insert(
            header::AUTHORIZATION,
            "Basic alpha".parse().expect("header"),
        );
        assert!(!keys.allows(&h));
        assert!(ApiKeys::from_lines("# nothing\n").is_none());
        assert!(Signer::from_hex("abc").is_err());
    }
}
