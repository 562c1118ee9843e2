//! API errors and their JSON bodies.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{header, Response, StatusCode};
use serde::Serialize;

use crate::budget::OverBudget;
use crate::catalogue::ParamError;
use crate::net::FetchError;
use crate::pool::PoolError;
use crate::proto::WorkError;

/// Every `error.code` the API can answer, for the OpenAPI document (its
/// error schema lists them, so a client generator and the API fuzzer know
/// them all). The README's error table explains each.
pub const ERROR_CODES: &[&str] = &[
    // parameters and routes
    "bad_parameter",
    "bad_signature",
    "expired_signature",
    "unauthorized",
    "unknown_parameter",
    "unknown_op",
    "not_found",
    "method_not_allowed",
    // request bodies
    "body_too_large",
    "empty_body",
    "bad_body",
    "body_timeout",
    "server_busy",
    // the image
    "unsupported_format",
    "corrupt_image",
    "image_too_large",
    "internal_error",
    // the pool
    "queue_full",
    "queue_timeout",
    "shutting_down",
    "worker_crashed",
    "worker_out_of_memory",
    "worker_timeout",
    // URL sources
    "source_forbidden",
    "source_too_large",
    "source_failed",
    "source_timeout",
    "source_tls",
    // background jobs
    "job_not_found",
    "job_expired",
    "job_lost",
    "job_not_done",
    "job_running",
    "job_queue_full",
    "job_store_unavailable",
    "job_result_corrupt",
    "job_input_corrupt",
    "store_full",
    "job_poison",
    "job_failed",
    "expired",
    "result_too_large",
];

/// Everything that can go wrong with a request, as the client sees it.
/// Each variant has one status and one stable `code` string.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A parameter (or operation name) the catalogue refuses: 400 naming
    /// the parameter, 404 for an unknown operation.
    #[error(transparent)]
    Param(#[from] ParamError),
    #[error("no route for {0}")]
    NotFound(String),
    #[error("method {method} not allowed here; use {allow}")]
    MethodNotAllowed { method: String, allow: &'static str },
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(std::time::Duration),
    #[error("request body is empty; send the image bytes as the body")]
    EmptyBody,
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    /// The front holds its limit of request data (`--max-inflight-bytes`):
    /// 503, before more is read.
    #[error(transparent)]
    ServerBusy(#[from] OverBudget),
    /// A typed failure from the engine (corrupt, unsupported, too large...).
    #[error("{}", .0.message)]
    Work(WorkError),
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A URL source that could not be fetched (403, 413, 502, 504; 400 for
    /// a bad `url`).
    #[error(transparent)]
    Source(#[from] FetchError),
    /// No or a wrong signature (403), an expired one (403), no API key (401).
    #[error("{message}")]
    Auth {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    /// Errors of the jobs API (409 not done, 410 expired, 503 store down...).
    /// `permanent`: a 503 that retrying will not cure (a damaged store), so
    /// no `Retry-After` invites it.
    #[error("{message}")]
    Job {
        status: StatusCode,
        code: &'static str,
        message: String,
        permanent: bool,
    },
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    param: Option<&'a str>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Param(p) => {
                StatusCode::from_u16(p.status()).unwrap_or(StatusCode::BAD_REQUEST)
            }
            ApiError::EmptyBody => StatusCode::BAD_REQUEST,
            ApiError::BodyRead(_) => StatusCode::BAD_REQUEST,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::ServerBusy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Work(w) => {
                StatusCode::from_u16(w.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            ApiError::Job { status, .. } | ApiError::Auth { status, .. } => *status,
            ApiError::Source(f) => f.status(),
            ApiError::Pool(p) => match p {
                PoolError::QueueFull | PoolError::QueueTimeout(_) | PoolError::ShuttingDown => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                PoolError::WorkerDied { .. } | PoolError::OutOfMemory { .. } => {
                    StatusCode::BAD_GATEWAY
                }
                PoolError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            },
        }
    }

    /// Stable machine-readable code, documented in the README.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Param(p) => p.code(),
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::BodyTooLarge { .. } => "body_too_large",
            ApiError::EmptyBody => "empty_body",
            ApiError::BodyRead(_) => "bad_body",
            ApiError::BodyTimeout(_) => "body_timeout",
            ApiError::ServerBusy(_) => "server_busy",
            ApiError::Work(w) => w.kind.code(),
            ApiError::Job { code, .. } | ApiError::Auth { code, .. } => code,
            ApiError::Source(f) => f.code(),
            ApiError::Pool(p) => match p {
                PoolError::QueueFull => "queue_full",
                PoolError::QueueTimeout(_) => "queue_timeout",
                PoolError::ShuttingDown => "shutting_down",
                PoolError::WorkerDied { .. } => "worker_crashed",
                PoolError::OutOfMemory { .. } => "worker_out_of_memory",
                PoolError::Timeout { .. } => "worker_timeout",
            },
        }
    }

    fn param(&self) -> Option<&str> {
        match self {
            ApiError::Param(ParamError::BadParameter { param, .. }) => Some(param),
            ApiError::Param(ParamError::UnknownParameter(p)) => Some(p),
            ApiError::Source(FetchError::BadUrl(_)) => Some("url"),
            _ => None,
        }
    }

    /// The JSON error response. Request id and timing headers are added by
    /// the caller, as for every response.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let status = self.status();
        let body = Body {
            error: Inner {
                code: self.code(),
                message: self.to_string(),
                param: self.param(),
            },
        };
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"error\":{}}".to_vec());
        let mut resp = Response::new(Full::new(Bytes::from(json)));
        *resp.status_mut() = status;
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        let permanent = matches!(
            self,
            ApiError::Job {
                permanent: true,
                ..
            }
        );
        if status == StatusCode::SERVICE_UNAVAILABLE && !permanent {
            headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        // An error is about this request only: no cache may keep it.
        headers.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
        if let ApiError::MethodNotAllowed { allow, .. } = &self {
            headers.insert(header::ALLOW, header::HeaderValue::from_static(allow));
        }
        resp
    }
}

/// Shorthand for a parameter error that names the parameter.
pub fn bad(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::Param(crate::catalogue::bad(param, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_code_is_listed() {
        let samples = [
            bad("x", "y"),
            ApiError::Param(ParamError::UnknownParameter("x".into())),
            ApiError::Param(ParamError::UnknownOp("x".into())),
            ApiError::NotFound("/".into()),
            ApiError::MethodNotAllowed {
                method: "PUT".into(),
                allow: "GET",
            },
            ApiError::BodyTooLarge { limit: 1 },
            ApiError::EmptyBody,
            ApiError::BodyRead("x".into()),
            ApiError::BodyTimeout(Duration::from_secs(1)),
            ApiError::ServerBusy(OverBudget { limit: 1 }),
            ApiError::Pool(PoolError::QueueFull),
            ApiError::Pool(PoolError::QueueTimeout(Duration::from_secs(1))),
            ApiError::Pool(PoolError::ShuttingDown),
            ApiError::Pool(PoolError::OutOfMemory { slot: 0, pid: 1 }),
            ApiError::Source(FetchError::Forbidden("x".into())),
            ApiError::Source(FetchError::TooLarge { limit: 1 }),
            ApiError::Source(FetchError::Failed("x".into())),
            ApiError::Source(FetchError::Timeout(Duration::from_secs(1))),
        ];
        for e in samples {
            assert!(
                ERROR_CODES.contains(&e.code()),
                "{} is not listed",
                e.code()
            );
        }
        for kind in [
            crate::proto::ErrorKind::BadParameter,
            crate::proto::ErrorKind::Unsupported,
            crate::proto::ErrorKind::Corrupt,
            crate::proto::ErrorKind::TooLarge,
            crate::proto::ErrorKind::Internal,
        ] {
            assert!(ERROR_CODES.contains(&kind.code()));
        }
    }
}
