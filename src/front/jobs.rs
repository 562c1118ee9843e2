//! The `/v1/jobs` routes: HTTP in front of the job system ([`Jobs`]),
//! which knows nothing of HTTP.
//!
//! | route | answer |
//! |---|---|
//! | `POST /v1/jobs/{op}?params` | 202 `{id, status, status_url, result_url}` + `Location` |
//! | `GET /v1/jobs/{id}` | the job's status JSON |
//! | `GET /v1/jobs/{id}/result` | the result bytes; 409 not done, the job's error when failed |
//! | `DELETE /v1/jobs/{id}` | 204: cancel a queued job or remove a finished one; 409 running |
//! | `GET /v1/jobs` | counts by status ([`JobStats`](crate::jobs::JobStats)) |
//!
//! A submission may name `callback_url=http://...`: the status JSON is
//! POSTed there when the job ends (see `jobs::callback`).
//!
//! Unknown ids are 404 `job_not_found`; ids whose job expired after
//! `--job-ttl` are 410 `job_expired` (for a day, then 404).

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::app::{json, not_allowed, App, Resp};
use super::body::{drain, read_body};
use super::error::{bad, ApiError};
use crate::catalogue;
use crate::jobs::model::{
    status_json, JobError, Lookup, Removed, ResultLookup, Submit, EXPIRED_CODE, INPUT_CORRUPT_CODE,
    POISON_CODE, STORE_FULL_CODE,
};
use crate::jobs::{Jobs, StoreError};
use crate::net;
use crate::proto::{Op, Task};

pub(super) async fn route(
    app: &App,
    req: Request<Incoming>,
    request_id: &str,
) -> Result<Resp, ApiError> {
    let jobs = &app.jobs;
    if let Some(keys) = &app.cfg.api_keys {
        if !keys.allows(req.headers()) {
            super::body::drain_unless_waiting(req).await;
            return Err(super::auth::unauthorized());
        }
    }
    let path = req.uri().path().to_string();
    let rest = path
        .strip_prefix("/v1/jobs")
        .unwrap_or_default()
        .trim_matches('/');
    let parts: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('/').collect()
    };
    let method = req.method().clone();
    match (parts.as_slice(), method) {
        ([], Method::GET) => stats(jobs).await,
        ([], m) => Err(not_allowed(&m, "GET")),
        ([op], Method::POST) => submit(jobs, req, op, app, request_id).await,
        ([id], Method::GET) => status(jobs, id).await,
        ([id], Method::DELETE) => remove(jobs, id).await,
        // One segment is a job id (GET, DELETE) or an op name (POST).
        ([id], m) if valid_id(id) => Err(not_allowed(&m, "GET, DELETE")),
        ([_], m) => Err(not_allowed(&m, "POST")),
        ([id, "result"], Method::GET) => result(jobs, id).await,
        ([_, "result"], m) => Err(not_allowed(&m, "GET")),
        _ => Err(ApiError::NotFound(path)),
    }
}

fn job_error(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Job {
        status,
        code,
        message: message.into(),
        permanent: false,
    }
}

/// A store failure as the client sees it: 503 `job_store_unavailable`,
/// with `Retry-After` only when waiting can help (not for a damaged store,
/// which needs its operator).
fn unavailable(e: StoreError) -> ApiError {
    let (message, permanent) = match &e {
        StoreError::Damaged(why) => (
            format!(
                "the job store is damaged ({why}); background jobs are off until the operator \
                 repairs it (the synchronous routes work)"
            ),
            true,
        ),
        StoreError::Full(_) => (
            "the disk (or memory) holding the job store is full; try again later".to_string(),
            false,
        ),
        _ => (
            format!("the job store is unavailable, try again later ({e})"),
            false,
        ),
    };
    tracing::warn!("job store unavailable: {e}");
    ApiError::Job {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "job_store_unavailable",
        message,
        permanent,
    }
}

fn not_found(id: &str) -> ApiError {
    job_error(
        StatusCode::NOT_FOUND,
        "job_not_found",
        format!("no job with id {id:?}"),
    )
}

/// An id the store does not know: 410 `job_lost` when it was accepted by
/// this store before it lost its data (its epoch is a past one), else 404.
async fn missing(jobs: &Jobs, id: &str) -> ApiError {
    if jobs.is_lost(id).await {
        job_error(
            StatusCode::GONE,
            "job_lost",
            format!(
                "job {id} was accepted, but the job store lost its data since (a Redis restart \
                 without persistence, or a database moved aside); it cannot be recovered: \
                 submit it again"
            ),
        )
    } else {
        not_found(id)
    }
}

fn expired(id: &str) -> ApiError {
    job_error(
        StatusCode::GONE,
        "job_expired",
        format!("job {id} finished longer than --job-ttl ago; its result was deleted"),
    )
}

/// Ids are 32 lowercase hex digits; anything else cannot be a job, and is
/// answered without asking the store.
fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Jobs made only of test ops need no image (as on the sync route).
fn needs_body(task: &Task) -> bool {
    !task.ops.iter().all(|op| {
        matches!(
            op,
            Op::TestSleep { .. } | Op::TestPanic | Op::TestAbort | Op::TestSegv
        )
    })
}

async fn submit(
    jobs: &Jobs,
    req: Request<Incoming>,
    op: &str,
    app: &App,
    request_id: &str,
) -> Result<Resp, ApiError> {
    let query = req.uri().query().unwrap_or("").to_string();
    // Validated exactly as the sync route, overlay names included, before
    // anything is stored; a refused client still gets to read its 400.
    let parsed = catalogue::parse_job(op, Some(&query), jobs.limits()).and_then(|(task, cb)| {
        app.cfg.overlays.attachments(&task)?;
        Ok((task, cb))
    });
    let (task, callback) = match parsed {
        Ok(p) => p,
        Err(e) => {
            drain(req.into_body()).await;
            return Err(e.into());
        }
    };
    if let Some(url) = &callback {
        if let Err(e) = net::check_callback_url(jobs.callback_guard(), url) {
            drain(req.into_body()).await;
            return Err(bad(
                catalogue::CALLBACK_PARAM,
                format!("callback_url cannot be used: {e}"),
            ));
        }
    }
    // Capped by --max-body, as a synchronous request, so any stored input
    // reaches a worker.
    let limit = jobs.max_input_bytes();
    // Held against --max-inflight-bytes until the store has the bytes.
    let mut hold = app.budget.hold();
    let input = read_body(req, limit, app.cfg.body_timeout, &mut hold).await?;
    if input.is_empty() && needs_body(&task) {
        return Err(ApiError::EmptyBody);
    }
    let bytes = input.len();
    let (id, verdict) = jobs.submit(op, query, input).await.map_err(unavailable)?;
    match verdict {
        Submit::Stored => {}
        Submit::TooManyJobs { max } => {
            return Err(job_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "job_queue_full",
                format!("{max} jobs are waiting already (--max-queued-jobs); try again later"),
            ))
        }
        Submit::TooManyBytes { max } => {
            return Err(job_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "job_queue_full",
                format!(
                "the job store holds its limit of {max} bytes (--max-job-bytes); try again later"
            ),
            ))
        }
    }
    tracing::info!(request_id, job_id = %id, op, bytes, "job accepted");
    let status_url = format!("/v1/jobs/{id}");
    let result_url = format!("/v1/jobs/{id}/result");
    let mut resp = json(
        StatusCode::ACCEPTED,
        &json!({
            "id": id,
            "status": "queued",
            "status_url": status_url,
            "result_url": result_url,
        }),
    );
    if let Ok(v) = HeaderValue::from_str(&status_url) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

async fn status(jobs: &Jobs, id: &str) -> Result<Resp, ApiError> {
    if !valid_id(id) {
        return Err(not_found(id));
    }
    match jobs.get(id).await.map_err(unavailable)? {
        Lookup::Found(rec) => Ok(json(StatusCode::OK, &status_json(&rec))),
        Lookup::Expired => Err(expired(id)),
        Lookup::Missing => Err(missing(jobs, id).await),
    }
}

async fn result(jobs: &Jobs, id: &str) -> Result<Resp, ApiError> {
    if !valid_id(id) {
        return Err(not_found(id));
    }
    match jobs.result(id).await.map_err(unavailable)? {
        ResultLookup::Missing => Err(missing(jobs, id).await),
        ResultLookup::Expired => Err(expired(id)),
        ResultLookup::NotReady(s) => Err(job_error(
            StatusCode::CONFLICT,
            "job_not_done",
            format!(
                "job {id} is {}; poll /v1/jobs/{id} until it is done",
                s.as_str()
            ),
        )),
        ResultLookup::Failed(e) => Err(failed(&e)),
        ResultLookup::Corrupt => {
            tracing::error!(job_id = %id, "the stored result of a job fails its checksum; not served");
            Err(job_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "job_result_corrupt",
                format!(
                    "the stored result of job {id} is damaged (it fails its checksum) and is not \
                     served; submit the job again"
                ),
            ))
        }
        ResultLookup::Ready {
            content_type,
            dims,
            body,
        } => {
            let mut resp = Response::new(Full::new(body));
            let h = resp.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&content_type) {
                h.insert(header::CONTENT_TYPE, v);
            }
            if let Some(d) = dims {
                h.insert("x-image-width", HeaderValue::from(d.width));
                h.insert("x-image-height", HeaderValue::from(d.height));
                h.insert("x-image-frames", HeaderValue::from(d.frames));
            }
            Ok(resp)
        }
    }
}

/// A failed job's error as the sync route would have answered it.
fn failed(e: &JobError) -> ApiError {
    job_error(
        StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        static_code(&e.code),
        e.message.clone(),
    )
}

/// Every code a job can fail with, so a stored code becomes the
/// `&'static str` that [`ApiError`] carries.
const KNOWN_CODES: &[&str] = &[
    "bad_parameter",
    "unknown_parameter",
    "unknown_op",
    "empty_body",
    "unsupported_format",
    "corrupt_image",
    "image_too_large",
    "internal_error",
    "worker_crashed",
    "worker_timeout",
    "worker_out_of_memory",
    POISON_CODE,
    EXPIRED_CODE,
    INPUT_CORRUPT_CODE,
    STORE_FULL_CODE,
    "result_too_large",
];

fn static_code(code: &str) -> &'static str {
    KNOWN_CODES
        .iter()
        .find(|c| **c == code)
        .copied()
        .unwrap_or("job_failed")
}

async fn remove(jobs: &Jobs, id: &str) -> Result<Resp, ApiError> {
    if !valid_id(id) {
        return Err(not_found(id));
    }
    match jobs.remove(id).await.map_err(unavailable)? {
        Removed::Deleted => {
            tracing::info!(job_id = %id, "job deleted");
            let mut resp = Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = StatusCode::NO_CONTENT;
            Ok(resp)
        }
        Removed::Running => Err(job_error(
            StatusCode::CONFLICT,
            "job_running",
            format!("job {id} is running and cannot be deleted now; delete it once it is done"),
        )),
        Removed::Expired => Err(expired(id)),
        Removed::Missing => Err(missing(jobs, id).await),
    }
}

async fn stats(jobs: &Jobs) -> Result<Resp, ApiError> {
    let s = jobs.try_stats().await.map_err(unavailable)?;
    Ok(json(StatusCode::OK, &s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_lowercase_hex() {
        assert!(valid_id(&uuid::Uuid::new_v4().simple().to_string()));
        assert!(!valid_id("resize"));
        assert!(!valid_id("../../etc/passwd"));
        assert!(!valid_id(&"A".repeat(32)));
    }

    #[test]
    fn every_job_code_is_listed() {
        for code in KNOWN_CODES.iter().chain(&["job_failed"]) {
            assert!(
                crate::front::error::ERROR_CODES.contains(code),
                "{code} is not in ERROR_CODES"
            );
        }
    }

    #[test]
    fn stored_codes_map_back() {
        assert_eq!(static_code("corrupt_image"), "corrupt_image");
        assert_eq!(static_code("job_poison"), "job_poison");
        assert_eq!(static_code("something_new"), "job_failed");
    }
}
