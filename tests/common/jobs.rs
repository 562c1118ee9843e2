//! Helpers for the background-job tests: submit, poll, wait.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use super::{wait_for, Server};

/// Submits a job, checks the 202, returns its id.
pub fn submit(s: &Server, path_and_query: &str, body: &[u8]) -> String {
    let r = s.post(&format!("/v1/jobs/{path_and_query}"), body);
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    r.json()["id"].as_str().expect("id").to_string()
}

/// A job's status document (asserting 200).
pub fn status(s: &Server, id: &str) -> Value {
    let r = s.get(&format!("/v1/jobs/{id}"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

/// Polls until `id` has `status` (bounded).
pub fn wait_status(s: &Server, id: &str, want: &str, deadline: Duration) -> Value {
    wait_for(&format!("job {id} {want}"), deadline, || {
        let v = status(s, id);
        (v["status"] == want).then_some(v)
    })
}

/// Polls every job until it is done or failed; returns their documents.
pub fn wait_finished(s: &Server, ids: &[String], deadline: Duration) -> HashMap<String, Value> {
    let mut out: HashMap<String, Value> = HashMap::new();
    wait_for("jobs finished", deadline, || {
        for id in ids {
            if out.contains_key(id) {
                continue;
            }
            let v = status(s, id);
            if v["status"] == "done" || v["status"] == "failed" {
                out.insert(id.clone(), v);
            }
        }
        (out.len() == ids.len()).then_some(())
    });
    out
}

/// `GET /v1/jobs` (asserting 200).
pub fn stats(s: &Server) -> Value {
    let r = s.get("/v1/jobs");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}
