//! What every connection shares: the [`App`] (pool, jobs, settings,
//! metrics), the response type, and small helpers of every route.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};
use serde::Serialize;

use super::auth::{ApiKeys, Signer};
use super::error::ApiError;
use super::playground::Playground;
use crate::budget::ByteBudget;
use crate::net::SourceConfig;
use crate::pool::Pool;
use crate::proto::Limits;

/// Most connections served at once; further clients wait in the kernel's
/// accept backlog instead of costing a task and a buffer each.
pub const MAX_CONNECTIONS: usize = 4096;

/// What the front needs besides the pool.
#[derive(Debug, Clone)]
pub struct FrontConfig {
    pub max_body: u64,
    pub limits: Limits,
    /// How long a client may take to send its request headers.
    pub header_timeout: Duration,
    /// How long a client may take to send a whole request body: a
    /// slow-body client (slowloris) cannot hold a connection longer.
    pub body_timeout: Duration,
    /// URL sources (`GET /v1/{op}?url=`), off unless `--allow-url-source`.
    pub sources: SourceConfig,
    /// `--url-signing-key`: image GETs must be signed.
    pub signer: Option<Signer>,
    /// `--api-key-file`: POSTs and job routes need a key.
    pub api_keys: Option<ApiKeys>,
    /// `--cache-control`: overrides the defaults of successful images.
    pub cache_control: Option<HeaderValue>,
    /// `--preset`, `--preset-file`: `/v1/preset/NAME`.
    pub presets: Arc<crate::catalogue::Presets>,
    /// `--overlay NAME=FILE`: the images `overlay?image=NAME` composites.
    pub overlays: Arc<crate::catalogue::Overlays>,
    /// How long a response may wait for the client to take more of it
    /// (between two successful writes, as nginx's `send_timeout`): a client
    /// that stops reading cannot hold its connection longer.
    pub send_timeout: Duration,
    /// `--linear-resize`: what a resize or thumbnail without `linear=` does.
    pub linear_resize: bool,
    /// `GET /` and its files; `None` with `--no-playground`.
    pub playground: Option<Arc<Playground>>,
}

/// Shared state of every connection.
pub struct App {
    pub pool: Pool,
    pub cfg: FrontConfig,
    /// Background jobs (`/v1/jobs/...`).
    pub jobs: crate::jobs::Jobs,
    /// Finished results kept on disk (`--cache-dir`, `--cache-size`).
    pub cache: crate::cache::ResultCache,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Request bodies and URL sources held at once (`--max-inflight-bytes`).
    pub budget: ByteBudget,
    /// Set when the drain begins: every response then closes its
    /// connection, so keep-alive clients learn of the stop.
    pub draining: AtomicBool,
}

/// Every response of the service.
pub type Resp = Response<Full<Bytes>>;

/// What the access log says about a request besides method, path and status.
#[derive(Default)]
pub(super) struct Trace {
    pub op: Option<&'static str>,
    pub done: Option<(usize, u32)>,
    pub bytes_in: u64,
}

/// A JSON response.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Resp {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub(super) fn not_allowed(method: &Method, allow: &'static str) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        allow,
    }
}
