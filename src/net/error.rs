//! How a fetch (or a callback) failed.

use std::time::Duration;

use hyper::StatusCode;

use crate::budget::OverBudget;

/// A failed fetch, as the client sees it.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL itself is unusable: 400 naming `url`.
    #[error("{0}")]
    BadUrl(String),
    /// Off, a host not on the list, or an address the guard refuses: 403.
    #[error("{0}")]
    Forbidden(String),
    /// The source is larger than `--max-body`: 413.
    #[error("the source is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// Could not connect, bad status, too many redirects...: 502.
    #[error("{0}")]
    Failed(String),
    /// The TLS handshake failed (an untrusted or mismatched certificate, an
    /// old protocol): 502 `source_tls`.
    #[error("{0}")]
    Tls(String),
    /// Past `--source-timeout`: 504.
    #[error("the source did not answer within {0:?}")]
    Timeout(Duration),
    /// The front holds its limit of client data (`--max-inflight-bytes`): 503.
    #[error(transparent)]
    Busy(#[from] OverBudget),
}

impl FetchError {
    pub fn status(&self) -> StatusCode {
        match self {
            FetchError::BadUrl(_) => StatusCode::BAD_REQUEST,
            FetchError::Forbidden(_) => StatusCode::FORBIDDEN,
            FetchError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            FetchError::Failed(_) | FetchError::Tls(_) => StatusCode::BAD_GATEWAY,
            FetchError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            FetchError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            FetchError::BadUrl(_) => "bad_parameter",
            FetchError::Forbidden(_) => "source_forbidden",
            FetchError::TooLarge { .. } => "source_too_large",
            FetchError::Failed(_) => "source_failed",
            FetchError::Tls(_) => "source_tls",
            FetchError::Timeout(_) => "source_timeout",
            FetchError::Busy(_) => "server_busy",
        }
    }
}
