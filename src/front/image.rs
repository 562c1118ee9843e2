//! The image routes: `POST /v1/{op}`, `POST /v1/pipeline`, and with URL
//! sources their `GET ?url=` twins. Parse, get the bytes, run them on a
//! worker, answer with the image (or the info JSON).

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::app::{json, not_allowed, App, Resp, Trace};
use super::body::{drain, drain_unless_waiting, read_body};
use super::error::{self, ApiError};
use crate::catalogue;
use crate::net;
use crate::pool::{Done, Input};
use crate::proto::Outcome;

/// `POST /v1/{op}` and `POST /v1/pipeline` (image in the body), and with
/// `--allow-url-source` also `GET` with `url=`: parse, get the image, run it
/// on a worker, answer with the image (or the info JSON).
pub(super) async fn image_route(
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
        return Err(not_allowed(req.method(), allow));
    }
    let parsed = catalogue::parse_request(op_name, req.uri().query(), app.cfg.limits)
        .map_err(ApiError::from)
        .and_then(|p| match (&p.url, from_url) {
            (Some(_), false) if !sources.enabled => Err(error::bad(
                "url",
                "url= is not accepted: URL sources are off on this server (see --allow-url-source)",
            )),
            (Some(_), false) => Err(error::bad(
                "url",
                "url= goes with GET; a POST sends the image as its body",
            )),
            (None, true) => Err(error::bad("url", "a GET needs url=http://...")),
            _ if p.callback_url.is_some() => Err(catalogue::callback_not_here().into()),
            _ => Ok(p),
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
    // Admission before the bytes: a full queue answers 503 now, without
    // reading the body or fetching the source first.
    if let Err(full) = app.pool.has_room() {
        if parsed.url.is_none() {
            drain_unless_waiting(req).await;
        }
        return Err(full.into());
    }
    let mut hold = app.budget.hold();
    let body = match &parsed.url {
        Some(url) => net::fetch(sources, url, &mut hold).await?,
        None => read_body(req, app.cfg.max_body, app.cfg.body_timeout, &mut hold).await?,
    };
    trace.bytes_in = body.len() as u64;
    if body.is_empty() && !is_test_only(&task) {
        return Err(ApiError::EmptyBody);
    }
    // The hold travels with the bytes: the budget is given back when the
    // pool is done with them, or at once if this client goes away.
    let input = Input {
        bytes: body,
        hold: Some(hold),
    };
    let done = app.pool.run(id, task, input).await?;
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
