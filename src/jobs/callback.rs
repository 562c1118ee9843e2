//! Job callbacks: a job submitted with `callback_url=http://...` POSTs its
//! status JSON (exactly what `GET /v1/jobs/{id}` answers) to that URL once
//! it is done or failed.
//!
//! The URL lives in the job's stored query string, so whichever instance
//! finishes the job (with Redis, not always the one that took it) sends the
//! callback. Every attempt goes through the SSRF guard of URL sources
//! ([`net::post_json`]): the name is resolved and each address checked
//! at send time, so a name that later points at a private address is
//! refused.
//!
//! Up to four attempts: a connection error, a timeout, a 5xx or a 429 is
//! retried after 1 s, 5 s and 25 s; any other answer ends it. Callbacks are
//! not stored: one still waiting for a retry when the instance stops, or
//! cut off by a crash, is not sent (a stop is logged). The status route
//! stays the source of truth; a receiver should treat a callback as a hint
//! to fetch the result, which also makes a repeated delivery harmless.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::StatusCode;

use super::model::{status_json, Lookup};
use super::Inner;
use crate::catalogue::CALLBACK_PARAM;
use crate::metrics::ResultLabels;
use crate::net::{self, FetchError};

/// Waits before the second, third and fourth attempt.
const RETRY_AFTER: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(25),
];

/// How one attempt went.
enum Attempt {
    Delivered(StatusCode),
    /// Worth another try later.
    Retry(String),
    /// Another try cannot help.
    GiveUp(&'static str, String),
}

fn classify(result: Result<StatusCode, FetchError>) -> Attempt {
    match result {
        Ok(s) if s.is_success() => Attempt::Delivered(s),
        Ok(s) if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            Attempt::Retry(format!("the receiver answered {s}"))
        }
        Ok(s) => Attempt::GiveUp("failed", format!("the receiver answered {s}")),
        Err(e @ (FetchError::Failed(_) | FetchError::Timeout(_) | FetchError::Busy(_))) => {
            Attempt::Retry(e.to_string())
        }
        Err(e @ FetchError::Forbidden(_)) => Attempt::GiveUp("refused", e.to_string()),
        Err(e @ (FetchError::BadUrl(_) | FetchError::TooLarge { .. } | FetchError::Tls(_))) => {
            Attempt::GiveUp("failed", e.to_string())
        }
    }
}

/// The `callback_url` of a stored query string, if it has one.
pub(super) fn url_in(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == CALLBACK_PARAM)
        .map(|(_, v)| v.into_owned())
}

/// Sends the callback of job `id` (just finished) in the background.
pub(super) fn spawn(inner: Arc<Inner>, id: String, url: String) {
    tokio::spawn(async move {
        let result = deliver(&inner, &id, &url).await;
        inner
            .metrics
            .job_callbacks
            .get_or_create(&ResultLabels { result })
            .inc();
    });
}

/// Delivers with retries; returns the metric label of the end.
async fn deliver(inner: &Inner, id: &str, url: &str) -> &'static str {
    // Read back what was just written, so the receiver gets exactly what a
    // poll would show (timestamps, attempts, error).
    let body = match inner.store.get(id).await {
        Ok(Lookup::Found(rec)) => match serde_json::to_vec(&status_json(&rec)) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                tracing::warn!(job_id = %id, "cannot encode the callback: {e}");
                return "failed";
            }
        },
        Ok(_) => {
            tracing::info!(job_id = %id, "job gone before its callback was sent; not sent");
            return "failed";
        }
        Err(e) => {
            tracing::warn!(job_id = %id, "cannot read the job for its callback: {e}");
            return "failed";
        }
    };
    let mut stop = inner.stop.subscribe();
    let cfg = &inner.cfg.callbacks;
    for attempt in 0..=RETRY_AFTER.len() {
        match classify(net::post_json(cfg, url, body.clone()).await) {
            Attempt::Delivered(status) => {
                tracing::info!(job_id = %id, %status, attempt = attempt + 1, "job callback delivered");
                return "delivered";
            }
            Attempt::GiveUp(label, why) => {
                tracing::warn!(job_id = %id, "job callback not delivered: {why}");
                return label;
            }
            Attempt::Retry(why) => {
                let Some(wait) = RETRY_AFTER.get(attempt) else {
                    tracing::warn!(
                        job_id = %id,
                        attempts = attempt + 1,
                        "job callback not delivered, giving up: {why}"
                    );
                    return "failed";
                };
                tracing::info!(job_id = %id, "job callback failed ({why}); retrying in {wait:?}");
                tokio::select! {
                    _ = tokio::time::sleep(*wait) => {}
                    _ = stop.wait_for(|s| *s) => {
                        tracing::warn!(job_id = %id, "stopping: job callback dropped before its retry");
                        return "failed";
                    }
                }
            }
        }
    }
    "failed"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_is_found_in_the_stored_query() {
        assert_eq!(
            url_in("width=10&callback_url=http%3A%2F%2Fh%3A1%2Fx%3Fa%3D1").as_deref(),
            Some("http://h:1/x?a=1")
        );
        assert_eq!(url_in("width=10"), None);
    }

    #[test]
    fn only_passing_failures_are_retried() {
        let retried = |r| matches!(classify(r), Attempt::Retry(_));
        assert!(retried(Ok(StatusCode::SERVICE_UNAVAILABLE)));
        assert!(retried(Ok(StatusCode::TOO_MANY_REQUESTS)));
        assert!(retried(Err(FetchError::Failed("refused".into()))));
        assert!(retried(Err(FetchError::Timeout(Duration::from_secs(1)))));
        assert!(!retried(Ok(StatusCode::NOT_FOUND)));
        assert!(!retried(Ok(StatusCode::FOUND)));
        assert!(!retried(Err(FetchError::Forbidden("private".into()))));
        assert!(matches!(
            classify(Ok(StatusCode::NO_CONTENT)),
            Attempt::Delivered(_)
        ));
    }
}
