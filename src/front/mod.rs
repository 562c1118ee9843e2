//! The HTTP front: routes, body limits, JSON errors, request ids and timing.
//!
//! It parses and validates, then hands plain data to the [`Pool`]; it never
//! decodes an image, so `/healthz` answers in microseconds even while every
//! worker is busy.

pub mod error;
pub mod fetch;
pub mod openapi;
pub mod params;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::pool::{Done, Pool, SlotState};
use crate::proto::{Limits, Outcome};
use error::ApiError;

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
    pub sources: fetch::SourceConfig,
}

/// Shared state of every connection.
pub struct App {
    pub pool: Pool,
    pub cfg: FrontConfig,
    /// Background jobs (`/v1/jobs/...`).
    pub jobs: crate::jobs::Jobs,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Every response of the service.
pub type Resp = Response<Full<Bytes>>;

/// What the access log says about a request besides method, path and status.
#[derive(Default)]
struct Trace {
    op: Option<&'static str>,
    done: Option<(usize, u32)>,
    bytes_in: u64,
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

/// Keeps a client's `X-Request-Id` when it is short and printable, so ids
/// can be followed across services; otherwise makes a fresh one.
fn request_id(req: &Request<Incoming>) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string())
}

/// The hyper service function: never fails, every error is a JSON response.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let started = Instant::now();
    let id = request_id(&req);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut trace = Trace::default();
    let mut resp = match route(&app, req, &id, &mut trace).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    let elapsed = started.elapsed();
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        headers.insert("x-request-id", v);
    }
    let total = format!("total;dur={:.3}", elapsed.as_secs_f64() * 1000.0);
    let timing = match headers.get("server-timing").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {total}"),
        None => total,
    };
    if let Ok(v) = HeaderValue::from_str(&timing) {
        headers.insert("server-timing", v);
    }
    let status = resp.status().as_u16();
    let ms = elapsed.as_secs_f64() * 1000.0;
    let bytes_out = hyper::body::Body::size_hint(resp.body())
        .exact()
        .unwrap_or(0);
    let label = match path.as_str() {
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        "/metrics" => "metrics",
        _ => trace.op.unwrap_or("unknown"),
    };
    app.metrics.request(
        label,
        status,
        elapsed.as_secs_f64(),
        trace.bytes_in,
        bytes_out,
    );
    let (slot, pid) = trace.done.map_or((None, None), |(s, p)| (Some(s), Some(p)));
    if path == "/healthz" || path == "/readyz" {
        tracing::debug!(request_id = %id, %method, %path, status, ms, "request");
    } else {
        tracing::info!(request_id = %id, %method, %path, op = trace.op, slot, pid, status, ms, "request");
    }
    Ok(resp)
}

async fn route(
    app: &App,
    req: Request<Incoming>,
    id: &str,
    trace: &mut Trace,
) -> Result<Resp, ApiError> {
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/healthz" => {
            if req.method() != Method::GET && req.method() != Method::HEAD {
                return Err(not_allowed(&req, "GET"));
            }
            Ok(json(StatusCode::OK, &serde_json::json!({"status": "ok"})))
        }
        "/readyz" => {
            if req.method() != Method::GET && req.method() != Method::HEAD {
                return Err(not_allowed(&req, "GET"));
            }
            Ok(readyz(&app.pool))
        }
        "/metrics" => {
            if req.method() != Method::GET && req.method() != Method::HEAD {
                return Err(not_allowed(&req, "GET"));
            }
            Ok(metrics(app).await)
        }
        p if p == "/v1/jobs" || p.starts_with("/v1/jobs/") => {
            trace.op = Some("jobs");
            crate::jobs::route(app, req, id).await
        }
        "/v1/ops" => {
            trace.op = Some("ops");
            if req.method() != Method::GET && req.method() != Method::HEAD {
                return Err(not_allowed(&req, "GET"));
            }
            Ok(json(StatusCode::OK, &params::ops_listing()))
        }
        "/openapi.json" => {
            trace.op = Some("openapi");
            if req.method() != Method::GET && req.method() != Method::HEAD {
                return Err(not_allowed(&req, "GET"));
            }
            Ok(json(
                StatusCode::OK,
                &openapi::document(app.cfg.sources.enabled),
            ))
        }
        _ => {
            let Some(op_name) = path.strip_prefix("/v1/") else {
                return Err(ApiError::NotFound(path));
            };
            let label = if op_name == params::PIPELINE {
                Some(params::PIPELINE)
            } else {
                params::find_op(op_name).map(|spec| spec.name)
            };
            let Some(label) = label else {
                drain(req.into_body()).await;
                return Err(ApiError::UnknownOp(op_name.to_string()));
            };
            trace.op = Some(label);
            image_route(app, req, op_name, id, trace).await
        }
    }
}

/// `POST /v1/{op}` and `POST /v1/pipeline` (image in the body), and with
/// `--allow-url-source` also `GET` with `url=`: parse, get the image, run it
/// on a worker, answer with the image (or the info JSON).
async fn image_route(
    app: &App,
    req: Request<Incoming>,
    op_name: &str,
    id: &str,
    trace: &mut Trace,
) -> Result<Resp, ApiError> {
    let sources = &app.cfg.sources;
    let from_url = req.method() == Method::GET && sources.enabled;
    if req.method() != Method::POST && !from_url {
        let allow = if sources.enabled { "GET, POST" } else { "POST" };
        return Err(not_allowed(&req, allow));
    }
    let parsed = params::parse_request(op_name, req.uri().query(), app.cfg.limits).and_then(|p| {
        match (&p.url, from_url) {
            (Some(_), false) if !sources.enabled => Err(error::bad(
                "url",
                "url= is not accepted: URL sources are off on this server (see --allow-url-source)",
            )),
            (Some(_), false) => Err(error::bad(
                "url",
                "url= goes with GET; a POST sends the image as its body",
            )),
            (None, true) => Err(error::bad("url", "a GET needs url=http://...")),
            _ if p.callback_url.is_some() => Err(params::callback_not_here()),
            _ => Ok(p),
        }
    });
    let parsed = match parsed {
        Ok(p) => p,
        Err(e) => {
            // Read (a bounded amount of) the image the client is sending, so
            // it gets to read the 400 instead of a reset.
            drain(req.into_body()).await;
            return Err(e);
        }
    };
    let mut task = parsed.task;
    if parsed.auto_format && accepts_webp(req.headers()) {
        task.output.format = Some(crate::proto::OutputFormat::Webp);
    }
    let body = match &parsed.url {
        Some(url) => fetch::fetch(sources, url).await?,
        None => read_body(req, app.cfg.max_body, app.cfg.body_timeout).await?,
    };
    trace.bytes_in = body.len() as u64;
    if body.is_empty() && !is_test_only(&task) {
        return Err(ApiError::EmptyBody);
    }
    let done = app.pool.run(id, task, body).await?;
    trace.done = Some((done.slot, done.pid));
    let mut resp = into_response(done)?;
    if parsed.auto_format {
        resp.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Accept"));
    }
    Ok(resp)
}

/// Whether `Accept` names `image/webp` with a non-zero quality. Wildcards do
/// not count: browsers that decode WebP list it explicitly, and `*/*` from a
/// script says nothing about what it can show.
fn accepts_webp(headers: &hyper::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            if !media.eq_ignore_ascii_case("image/webp") {
                return false;
            }
            // q=0 means "not acceptable".
            !parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            })
        })
}

/// Test ops need no image, so their requests may have empty bodies.
fn is_test_only(task: &crate::proto::Task) -> bool {
    task.ops.iter().all(|op| op.is_test())
}

fn not_allowed(req: &Request<Incoming>, allow: &'static str) -> ApiError {
    ApiError::MethodNotAllowed {
        method: req.method().to_string(),
        allow,
    }
}

/// Reads the body under the cap: a declared length over it is refused before
/// a byte is read, and a chunked body is cut off as soon as it passes it.
pub async fn read_body(
    req: Request<Incoming>,
    max: u64,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let expects_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if declared.is_some_and(|len| len > max) {
        // A client waiting for "100 Continue" has sent nothing yet: answer
        // at once. Otherwise read (and drop) a bounded amount of what it is
        // sending, so it gets to read our 413 instead of a connection reset.
        if !expects_continue {
            drain(req.into_body()).await;
        }
        return Err(ApiError::BodyTooLarge { limit: max });
    }
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let mut body = req.into_body();
    let mut buf = bytes::BytesMut::with_capacity(declared.map_or(64 * 1024, |n| n as usize));
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(frame)) => frame.map_err(|e| ApiError::BodyRead(e.to_string()))?,
            Ok(None) => break,
            Err(_) => return Err(ApiError::BodyTimeout(timeout)),
        };
        if let Some(data) = frame.data_ref() {
            if buf.len() + data.len() > limit {
                drain(body).await;
                return Err(ApiError::BodyTooLarge { limit: max });
            }
            buf.extend_from_slice(data);
        }
    }
    Ok(buf.freeze())
}

/// Most a rejected body is read for before the connection is dropped.
const DRAIN_BYTES: usize = 64 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Reads and discards up to [`DRAIN_BYTES`] / [`DRAIN_TIME`] of a body we
/// refuse. Closing a socket with unread data makes the kernel send a reset,
/// which can destroy our error response before the client reads it.
async fn drain(mut body: Incoming) {
    let work = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                seen += data.len();
            }
            if seen > DRAIN_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, work).await;
}

fn into_response(done: Done) -> Result<Resp, ApiError> {
    let t = done.timing;
    let timing = format!(
        "queue;dur={:.3}, decode;dur={:.3}, ops;dur={:.3}, encode;dur={:.3}, worker;dur={:.3}",
        done.queued.as_secs_f64() * 1000.0,
        t.decode_us as f64 / 1000.0,
        t.ops_us as f64 / 1000.0,
        t.encode_us as f64 / 1000.0,
        done.worker.as_secs_f64() * 1000.0,
    );
    let mut resp = match done.outcome {
        Outcome::Image(meta) => {
            let mut resp = Response::new(Full::new(Bytes::from(done.payload)));
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(meta.format.mime()),
            );
            h.insert("x-image-width", HeaderValue::from(meta.width));
            h.insert("x-image-height", HeaderValue::from(meta.height));
            h.insert("x-image-frames", HeaderValue::from(meta.frames));
            resp
        }
        Outcome::Info(info) => json(StatusCode::OK, &info),
        Outcome::Error(e) => return Err(ApiError::Work(e)),
    };
    if let Ok(v) = HeaderValue::from_str(&timing) {
        resp.headers_mut().insert("server-timing", v);
    }
    Ok(resp)
}

/// `GET /metrics`: pool gauges are read now, so they cannot drift.
async fn metrics(app: &App) -> Resp {
    use crate::metrics::StateLabels;
    let m = &app.metrics;
    let slots = app.pool.slots();
    for (state, name) in [
        (SlotState::Starting, "starting"),
        (SlotState::Ready, "ready"),
        (SlotState::Busy, "busy"),
        (SlotState::Dead, "dead"),
    ] {
        let n = slots.iter().filter(|s| s.state == state).count();
        m.workers
            .get_or_create(&StateLabels { state: name })
            .set(n as i64);
    }
    m.queue_depth.set(app.pool.queued() as i64);
    let jobs = app.jobs.stats().await;
    if jobs.available {
        for (name, n) in [
            ("queued", jobs.queued),
            ("running", jobs.running),
            ("done", jobs.done),
            ("failed", jobs.failed),
            ("expired", jobs.expired),
        ] {
            m.jobs
                .get_or_create(&StateLabels { state: name })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        m.jobs_oldest_queued_age.set(jobs.oldest_queued_age_secs);
    }
    let mut resp = Response::new(Full::new(Bytes::from(m.encode())));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}

fn readyz(pool: &Pool) -> Resp {
    let slots = pool.slots();
    let ready = slots
        .iter()
        .filter(|s| matches!(s.state, SlotState::Ready | SlotState::Busy))
        .count();
    let status = if ready > 0 {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(
        status,
        &serde_json::json!({
            "ready": ready > 0,
            "workers_ready": ready,
            "queued": pool.queued(),
            "slots": slots,
        }),
    )
}

/// Accepts connections until `shutdown` resolves, then stops accepting and
/// waits up to `grace` for requests in flight (idle keep-alive connections
/// are closed at once).
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        // Take a connection slot before accepting: at the cap, new clients
        // queue in the kernel backlog rather than in this process.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors or similar: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let header_timeout = app.cfg.header_timeout;
                let app = app.clone();
                let svc = service_fn(move |req| handle(app.clone(), req));
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .serve_connection(TokioIo::new(stream), svc);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("connection ended with an error: {e}");
                    }
                    drop(permit);
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("stopped accepting; draining requests in flight");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("graceful timeout of {grace:?} passed with requests still in flight");
    }
}
