//! The service function: request id, routing, and what every response
//! gets on its way out (timing, access log, metrics).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, StatusCode};

use super::app::{json, not_allowed, App, Resp, Trace};
use super::body::drain;
use super::error::ApiError;
use super::image::{image_route, PRESET_PREFIX};
use super::{jobs, openapi, status};
use crate::catalogue;

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
    if app.draining.load(std::sync::atomic::Ordering::Relaxed) {
        headers.insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    }
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
                return Err(not_allowed(req.method(), "GET"));
            }
            Ok(json(StatusCode::OK, &serde_json::json!({"status": "ok"})))
        }
        "/readyz" => {
            if req.method() != Method::GET && req.method() != Method::HEAD {
                return Err(not_allowed(req.method(), "GET"));
            }
            Ok(status::readyz(&app.pool, &app.jobs))
        }
        "/metrics" => {
            if req.method() != Method::GET && req.method() != Method::HEAD {
                return Err(not_allowed(req.method(), "GET"));
            }
            Ok(status::metrics(app).await)
        }
        p if p == "/v1/jobs" || p.starts_with("/v1/jobs/") => {
            trace.op = Some("jobs");
            jobs::route(app, req, id).await
        }
        "/v1/presets" => {
            trace.op = Some("presets");
            if req.method() != Method::GET && req.method() != Method::HEAD {
                return Err(not_allowed(req.method(), "GET"));
            }
            let presets: Vec<_> = app
                .cfg
                .presets
                .list()
                .map(|(name, ops)| serde_json::json!({ "name": name, "ops": ops }))
                .collect();
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "presets": presets }),
            ))
        }
        "/v1/overlays" => {
            trace.op = Some("overlays");
            if req.method() != Method::GET && req.method() != Method::HEAD {
                return Err(not_allowed(req.method(), "GET"));
            }
            let overlays: Vec<_> = app
                .cfg
                .overlays
                .iter()
                .map(|(name, bytes)| serde_json::json!({ "name": name, "bytes": bytes.len() }))
                .collect();
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({ "overlays": overlays }),
            ))
        }
        "/v1/ops" => {
            trace.op = Some("ops");
            if req.method() != Method::GET && req.method() != Method::HEAD {
                return Err(not_allowed(req.method(), "GET"));
            }
            Ok(json(StatusCode::OK, &catalogue::ops_listing()))
        }
        "/openapi.json" => {
            trace.op = Some("openapi");
            if req.method() != Method::GET && req.method() != Method::HEAD {
                return Err(not_allowed(req.method(), "GET"));
            }
            Ok(json(
                StatusCode::OK,
                &openapi::document(app.cfg.sources.enabled),
            ))
        }
        p if app.cfg.playground.as_ref().is_some_and(|pg| pg.serves(p)) => {
            trace.op = Some("playground");
            match &app.cfg.playground {
                Some(pg) => pg.respond(req.method(), p, req.headers()),
                None => Err(ApiError::NotFound(path)),
            }
        }
        _ => {
            let Some(op_name) = path.strip_prefix("/v1/") else {
                return Err(ApiError::NotFound(path));
            };
            let label = if op_name == catalogue::PIPELINE {
                Some(catalogue::PIPELINE)
            } else if op_name.starts_with(PRESET_PREFIX) {
                Some("preset")
            } else {
                catalogue::find_op(op_name).map(|spec| spec.name)
            };
            let Some(label) = label else {
                drain(req.into_body()).await;
                return Err(crate::catalogue::ParamError::UnknownOp(op_name.to_string()).into());
            };
            trace.op = Some(label);
            image_route(app, req, op_name, id, trace).await
        }
    }
}
