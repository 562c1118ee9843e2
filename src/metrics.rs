//! Prometheus metrics, exposed at `GET /metrics`.
//!
//! Built on `prometheus-client` (the Prometheus project's own Rust client) so
//! the exposition format is right by construction. Counters and histograms
//! are updated where things happen; gauges that describe the pool's current
//! state are read from it at scrape time, so they can never drift.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub op: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: &'static str,
}

/// Why a worker process ended, as the `reason` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeathReason {
    /// Died on its own (signal, abort, panic, protocol error).
    Crash,
    /// Killed at the request deadline.
    Timeout,
    /// Replaced after `--max-requests`.
    Recycle,
    /// Ran out of memory (`--worker-memory-limit`).
    Memory,
    /// Replaced by SIGHUP.
    Reload,
    /// Removed by SIGTTOU or stopped at shutdown.
    Stop,
}

impl DeathReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeathReason::Crash => "crash",
            DeathReason::Timeout => "timeout",
            DeathReason::Recycle => "recycle",
            DeathReason::Memory => "memory",
            DeathReason::Reload => "reload",
            DeathReason::Stop => "stop",
        }
    }
}

/// Every metric of the service.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<OpLabels, Histogram>,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub queue_depth: Gauge,
    pub workers: Family<StateLabels, Gauge>,
    pub worker_starts: Counter,
    pub worker_deaths: Family<ReasonLabels, Counter>,
    /// Worker starts that failed (a broken binary or flag, a protocol
    /// mismatch after an upgrade in place).
    pub worker_spawn_failures: Counter,
    /// Requests sent again to a fresh worker, by why (`worker_gone`: the
    /// worker went away without answering; `memory`: it ran out of memory
    /// after earlier requests).
    pub request_retries: Family<ReasonLabels, Counter>,
    /// Client connections open now.
    pub connections: Gauge,
    /// Connections closed because the client took none of its response
    /// for `--send-timeout`.
    pub send_timeouts: Counter,
    /// Request-body and source bytes held now (read at scrape time).
    pub inflight_body_bytes: Gauge,
    pub jobs: Family<StateLabels, Gauge>,
    /// 1 while the job store answers, 0 while it does not (the job gauges
    /// then keep their last known values).
    pub job_store_up: Gauge,
    /// Bytes of job inputs and results the store holds.
    pub job_store_bytes: Gauge,
    /// Times the job store was found to have lost its data (a new epoch).
    pub job_store_resets: Counter,
    /// Job claims whose answer from the store was lost and that were taken
    /// back by the same instance (not counted as crashes).
    pub job_lost_replies: Counter,
    pub jobs_oldest_queued_age: Gauge<f64, AtomicU64>,
    /// Job callbacks by how they ended: `delivered`, `failed` (after every
    /// retry), `refused` (the address guard said no).
    pub job_callbacks: Family<ResultLabels, Counter>,
    /// Result cache lookups that found an intact entry (no worker ran).
    pub cache_hits: Counter,
    /// Result cache lookups that found nothing usable.
    pub cache_misses: Counter,
    /// Entries removed to stay under `--cache-size`.
    pub cache_evictions: Counter,
    /// Entries found damaged on read (dropped and recomputed).
    pub cache_corrupt: Counter,
    /// Bytes and entries the result cache holds on disk.
    pub cache_bytes: Gauge,
    pub cache_entries: Gauge,
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~16 s: thumbnails take tens of ms, big animations seconds.
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("pixfork");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<OpLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let bytes_in = Counter::default();
        let bytes_out = Counter::default();
        let queue_depth = Gauge::default();
        let workers = Family::<StateLabels, Gauge>::default();
        let worker_starts = Counter::default();
        let worker_deaths = Family::<ReasonLabels, Counter>::default();
        let worker_spawn_failures = Counter::default();
        let request_retries = Family::<ReasonLabels, Counter>::default();
        let connections = Gauge::default();
        let send_timeouts = Counter::default();
        let inflight_body_bytes = Gauge::default();
        let jobs = Family::<StateLabels, Gauge>::default();
        let job_store_up = Gauge::default();
        let job_store_bytes = Gauge::default();
        let job_store_resets = Counter::default();
        let job_lost_replies = Counter::default();
        let jobs_oldest_queued_age = Gauge::<f64, AtomicU64>::default();
        let job_callbacks = Family::<ResultLabels, Counter>::default();
        let cache_hits = Counter::default();
        let cache_misses = Counter::default();
        let cache_evictions = Counter::default();
        let cache_corrupt = Counter::default();
        let cache_bytes = Gauge::default();
        let cache_entries = Gauge::default();
        let build = Family::<VersionLabels, Gauge>::default();
        build
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);

        registry.register(
            "requests",
            "HTTP requests by op and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to answer a request, by op",
            latency.clone(),
        );
        registry.register(
            "request_body_bytes",
            "Request body bytes received",
            bytes_in.clone(),
        );
        registry.register(
            "response_body_bytes",
            "Response body bytes sent",
            bytes_out.clone(),
        );
        registry.register(
            "queue_depth",
            "Requests waiting for a free worker",
            queue_depth.clone(),
        );
        registry.register("workers", "Worker slots by state", workers.clone());
        registry.register(
            "worker_starts",
            "Worker processes started",
            worker_starts.clone(),
        );
        registry.register(
            "worker_deaths",
            "Worker processes that ended, by reason",
            worker_deaths.clone(),
        );
        registry.register(
            "worker_spawn_failures",
            "Worker starts that failed before or at the hello",
            worker_spawn_failures.clone(),
        );
        registry.register(
            "request_retries",
            "Requests sent again to a fresh worker, by reason",
            request_retries.clone(),
        );
        registry.register(
            "connections",
            "Client connections open",
            connections.clone(),
        );
        registry.register(
            "send_timeouts",
            "Connections closed because the client stopped taking its response",
            send_timeouts.clone(),
        );
        registry.register(
            "inflight_body_bytes",
            "Request-body and URL-source bytes held in memory",
            inflight_body_bytes.clone(),
        );
        registry.register("jobs", "Background jobs by status", jobs.clone());
        registry.register(
            "job_store_up",
            "1 while the job store answers, else 0 (job gauges keep their last values)",
            job_store_up.clone(),
        );
        registry.register(
            "job_lost_replies",
            "Job claims whose answer was lost and that the same instance took back",
            job_lost_replies.clone(),
        );
        registry.register(
            "job_store_resets",
            "Times the job store was found to have lost its data",
            job_store_resets.clone(),
        );
        registry.register(
            "job_store_bytes",
            "Bytes of job inputs and results the job store holds",
            job_store_bytes.clone(),
        );
        registry.register(
            "jobs_oldest_queued_age_seconds",
            "Age of the oldest queued background job",
            jobs_oldest_queued_age.clone(),
        );
        registry.register(
            "job_callbacks",
            "Job callbacks by result (delivered, failed, refused)",
            job_callbacks.clone(),
        );
        registry.register(
            "cache_hits",
            "Requests answered from the result cache",
            cache_hits.clone(),
        );
        registry.register(
            "cache_misses",
            "Result cache lookups that found nothing usable",
            cache_misses.clone(),
        );
        registry.register(
            "cache_evictions",
            "Result cache entries removed to stay under --cache-size",
            cache_evictions.clone(),
        );
        registry.register(
            "cache_corrupt",
            "Result cache entries found damaged and dropped",
            cache_corrupt.clone(),
        );
        registry.register(
            "cache_bytes",
            "Bytes the result cache holds on disk",
            cache_bytes.clone(),
        );
        registry.register(
            "cache_entries",
            "Entries the result cache holds",
            cache_entries.clone(),
        );
        registry.register("build_info", "Build version", build);
        Arc::new(Metrics {
            registry,
            requests,
            latency,
            bytes_in,
            bytes_out,
            queue_depth,
            workers,
            worker_starts,
            worker_deaths,
            worker_spawn_failures,
            request_retries,
            connections,
            send_timeouts,
            inflight_body_bytes,
            jobs,
            job_store_up,
            job_store_bytes,
            job_store_resets,
            job_lost_replies,
            jobs_oldest_queued_age,
            job_callbacks,
            cache_hits,
            cache_misses,
            cache_evictions,
            cache_corrupt,
            cache_bytes,
            cache_entries,
        })
    }

    /// Counts one worker death.
    pub fn death(&self, reason: DeathReason) {
        self.worker_deaths
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// Counts one finished HTTP request.
    pub fn request(&self, op: &str, status: u16, seconds: f64, bytes_in: u64, bytes_out: u64) {
        self.requests
            .get_or_create(&RequestLabels {
                op: op.to_string(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&OpLabels { op: op.to_string() })
            .observe(seconds);
        self.bytes_in.inc_by(bytes_in);
        self.bytes_out.inc_by(bytes_out);
    }

    /// Renders the exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
