//! Durable background jobs: `POST /v1/jobs/{op}` answers 202 at once and the
//! work runs on the shared worker pool.
//!
//! PLACEHOLDER: the store and runner are being written; until then every
//! jobs route answers 404. Nothing here is final.

use hyper::body::Incoming;
use hyper::Request;

use crate::front::error::ApiError;
use crate::front::{App, Resp};
use crate::pool::Pool;
use crate::proto::Limits;

/// Settings of the job system, from the master's flags.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    pub state_dir: std::path::PathBuf,
    pub jobs_url: Option<String>,
    pub max_job_bytes: u64,
    pub job_ttl: std::time::Duration,
    pub claim_timeout: std::time::Duration,
    pub job_slots: usize,
    pub limits: Limits,
}

/// Why the job system could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error("job store: {0}")]
    Store(String),
}

/// Handle to the job system; cheap to clone.
#[derive(Clone)]
pub struct Jobs {}

impl Jobs {
    /// Opens the store and starts the runner.
    pub async fn start(_cfg: JobsConfig, _pool: Pool) -> Result<Jobs, JobsError> {
        Ok(Jobs {})
    }

    /// Stops taking new work; jobs in flight finish or stay queued on disk.
    pub async fn shutdown(&self) {}
}

/// Serves `/v1/jobs` and `/v1/jobs/...`.
pub async fn route(_app: &App, req: Request<Incoming>, _id: &str) -> Result<Resp, ApiError> {
    Err(ApiError::NotFound(req.uri().path().to_string()))
}
