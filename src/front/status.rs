//! The operator's routes: `/readyz` (slots) and `/metrics` (Prometheus).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use std::time::Duration;

use super::app::{json, App, Resp};
use crate::pool::{Pool, SlotState};

/// Longest a scrape waits for the job store's counts.
const STATS_WAIT: Duration = Duration::from_millis(500);

/// `GET /metrics`: pool gauges are read now, so they cannot drift.
pub(super) async fn metrics(app: &App) -> Resp {
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
    m.inflight_body_bytes
        .set(i64::try_from(app.budget.in_use()).unwrap_or(i64::MAX));
    // A scrape must not hang on a store that does not answer: after a short
    // wait the store counts as down, and the job gauges keep their last
    // known values (a backlog alert must not see a 0 that is not real).
    let jobs = tokio::time::timeout(STATS_WAIT, app.jobs.try_stats()).await;
    let up = matches!(jobs, Ok(Ok(_)));
    m.job_store_up.set(i64::from(up));
    if let Ok(Ok(jobs)) = jobs {
        m.job_store_bytes
            .set(i64::try_from(jobs.bytes).unwrap_or(i64::MAX));
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

pub(super) fn readyz(pool: &Pool, jobs: &crate::jobs::Jobs) -> Resp {
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
            // A slot whose last worker start failed (a broken binary, a
            // protocol mismatch after an upgrade in place) still serves on
            // its old worker if it has one; this flags it for the operator.
            "degraded": slots.iter().any(|s| s.spawn_error.is_some()),
            "workers_ready": ready,
            // Reported, never counted against readiness: the synchronous
            // API works without the job store.
            "job_store": jobs.health().as_str(),
            "queued": pool.queued(),
            "slots": slots,
        }),
    )
}
