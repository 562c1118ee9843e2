//! Redis replies read back into the jobs model.

use std::collections::HashMap;

use ::redis::streams::StreamId;
use ::redis::Value;

use crate::jobs::model::{Dims, JobError, JobRecord, Status};

/// The (entry id, job id) of a stream entry, when it carries one.
pub(super) fn entry_job_id(e: &StreamId) -> Option<(String, String)> {
    e.map.get("id").and_then(text).map(|id| (e.id.clone(), id))
}

pub(super) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(super) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        other => text(other).and_then(|s| s.parse().ok()),
    }
}

pub(super) fn field<T: std::str::FromStr>(h: &HashMap<String, String>, k: &str) -> Option<T> {
    h.get(k)
        .filter(|v| !v.is_empty())
        .and_then(|v| v.parse().ok())
}

pub(super) fn dims(h: &HashMap<String, String>) -> Option<Dims> {
    Some(Dims {
        width: field(h, "width")?,
        height: field(h, "height")?,
        frames: field(h, "frames")?,
    })
}

/// A job hash as a record; `None` when it is not a job's (wrong status).
pub(super) fn record(id: &str, h: &HashMap<String, String>) -> Option<JobRecord> {
    let status = Status::parse(h.get("status")?)?;
    let error = field::<u16>(h, "error_status").map(|status| JobError {
        status,
        code: h.get("error_code").cloned().unwrap_or_default(),
        message: h.get("error_message").cloned().unwrap_or_default(),
    });
    Some(JobRecord {
        id: id.to_string(),
        op: h.get("op").cloned().unwrap_or_default(),
        status,
        created_ms: field(h, "created_ms").unwrap_or(0),
        started_ms: field(h, "started_ms"),
        finished_ms: field(h, "finished_ms"),
        attempts: field(h, "attempts").unwrap_or(0),
        instance: h.get("instance").filter(|s| !s.is_empty()).cloned(),
        error,
    })
}
