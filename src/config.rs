//! Command-line flags of the master, and the value parsers they use. (The
//! worker's own flags are in [`worker`](crate::worker): the master passes
//! them, people do not.)
//!
//! Every master flag can also be set through an environment variable
//! (`PIXFORK_<FLAG>`), which is how the systemd unit and containers configure
//! the service without editing a command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::net::Network;
use crate::proto::{Limits, WorkerSched};

/// Parses `30s`, `500ms`, `2m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?}: {e} (try 30s or 500ms)"))
}

/// Parses `--front-slice`: 0, or a duration the kernel accepts as a slice
/// (it would clamp anything else silently).
pub fn parse_slice(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() || (Duration::from_micros(100)..=Duration::from_millis(100)).contains(&d) {
        Ok(d)
    } else {
        Err(format!(
            "slice {s:?} is outside 100us..100ms (0 keeps the kernel's default)"
        ))
    }
}

/// Parses a byte size: `1048576`, `512KiB`, `32MiB`, `1GiB` (decimal `MB` also accepted).
pub fn parse_size(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("invalid size {s:?}: {e} (try 32MiB)"))
}

/// Output style of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Flags of `pixfork`, the front/master process.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "pixfork",
    version,
    about = "Image-processing HTTP service: a tokio/hyper front over pre-forked, crash-isolated workers"
)]
pub struct MasterArgs {
    /// Address to listen on. Port 0 picks a free port; the bound address is logged.
    #[arg(long, env = "PIXFORK_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Number of worker processes [default: the number of available cores].
    #[arg(long, env = "PIXFORK_WORKERS", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub workers: Option<u32>,

    /// Path of the `pixfork-worker` binary [default: beside this executable].
    #[arg(long, env = "PIXFORK_WORKER_BIN")]
    pub worker_bin: Option<PathBuf>,

    /// Pin worker slot i to CPU i (modulo the CPUs this process may use); the
    /// front stays unpinned.
    #[arg(long, env = "PIXFORK_PIN_WORKERS")]
    pub pin_workers: bool,

    /// Niceness of the workers (0-19): higher runs them at a lower priority
    /// than the front, so probes and new connections stay fast under load
    /// (measured /healthz p99 under saturation: about 3 ms at 5, 1 ms at 10).
    #[arg(long, env = "PIXFORK_WORKER_NICE", default_value_t = 10, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub worker_nice: i32,

    /// Scheduling policy of the workers: `other` (normal, at --worker-nice),
    /// `batch` or `idle` (the front and every normal task preempt a worker
    /// at once: lowest probe latency under load, but workers only get the
    /// CPU time normal tasks leave).
    #[arg(long, env = "PIXFORK_WORKER_SCHED", value_enum, default_value_t = WorkerSched::Other)]
    pub worker_sched: WorkerSched,

    /// The scheduler slice the front's threads ask for (Linux 6.12 and
    /// later; see src/sched.rs): with a slice shorter than the workers' the
    /// front preempts a busy worker the moment a request or a reply
    /// arrives. Between 100us and 100ms; 0 keeps the kernel's default.
    #[arg(long, env = "PIXFORK_FRONT_SLICE", default_value = "100us", value_parser = parse_slice)]
    pub front_slice: Duration,

    /// Resize and thumbnail in linear light unless a request says
    /// `linear=false` (see the `linear` parameter): truer to fine detail,
    /// slower (no shrink-on-load, 16-bit filtering). Off: the stored sRGB
    /// values are filtered, as other image servers do.
    #[arg(long, env = "PIXFORK_LINEAR_RESIZE")]
    pub linear_resize: bool,

    /// Address-space limit of each worker (RLIMIT_AS), e.g. `1GiB`. A request
    /// that needs more fails alone with 502 `worker_out_of_memory`.
    #[arg(long, env = "PIXFORK_WORKER_MEMORY_LIMIT", value_parser = parse_size)]
    pub worker_memory_limit: Option<u64>,

    /// Run workers without their sandbox (seccomp allow-list, no new
    /// privileges, unprivileged user). Only for debugging.
    #[arg(long, env = "PIXFORK_NO_SANDBOX")]
    pub no_sandbox: bool,

    /// User the workers switch to when pixfork runs as root.
    #[arg(long, env = "PIXFORK_WORKER_USER", default_value = "nobody")]
    pub worker_user: String,

    /// Replace a worker after it has served this many requests (bounds slow
    /// leaks and fragmentation) [default: never].
    #[arg(long, env = "PIXFORK_MAX_REQUESTS")]
    pub max_requests: Option<u64>,

    /// Add a random 0..=N to each worker's --max-requests so workers do not
    /// all recycle at once.
    #[arg(long, env = "PIXFORK_MAX_REQUESTS_JITTER", default_value_t = 0)]
    pub max_requests_jitter: u64,

    /// Deadline of one request inside a worker; past it the worker is killed
    /// and the client gets 504.
    #[arg(long, env = "PIXFORK_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Requests that may wait for a free worker; past it requests get 503 at once.
    #[arg(long, env = "PIXFORK_QUEUE_DEPTH", default_value_t = 64)]
    pub queue_depth: usize,

    /// Longest wait for a free worker before answering 503.
    #[arg(long, env = "PIXFORK_QUEUE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub queue_timeout: Duration,

    /// Largest request body; larger bodies get 413 before they are read.
    #[arg(long, env = "PIXFORK_MAX_BODY", default_value = "32MiB", value_parser = parse_size)]
    pub max_body: u64,

    /// How long a client may take to send its request headers (slow clients
    /// cannot hold a connection longer).
    #[arg(long, env = "PIXFORK_HEADER_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// How long a client may take to send a whole request body (408 past it).
    #[arg(long, env = "PIXFORK_BODY_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub body_timeout: Duration,

    /// How long a response may wait for the client to take more of it
    /// (between two successful writes); a client that stops reading is
    /// disconnected after it.
    #[arg(long, env = "PIXFORK_SEND_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub send_timeout: Duration,

    /// Most request-body and URL-source bytes held in memory at once, over
    /// all requests; past it requests get 503 `server_busy` before more is
    /// read. At least --max-body.
    #[arg(long, env = "PIXFORK_MAX_INFLIGHT_BYTES", default_value = "1GiB", value_parser = parse_size)]
    pub max_inflight_bytes: u64,

    /// Largest width x height of one image (of the canvas, for animations).
    #[arg(long, env = "PIXFORK_MAX_PIXELS", default_value_t = 50_000_000)]
    pub max_pixels: u64,

    /// Largest number of frames of an animation.
    #[arg(long, env = "PIXFORK_MAX_FRAMES", default_value_t = 1000)]
    pub max_frames: u32,

    /// Largest width x height summed over all frames of an animation.
    #[arg(long, env = "PIXFORK_MAX_TOTAL_PIXELS", default_value_t = 200_000_000)]
    pub max_total_pixels: u64,

    /// The whole stop after SIGTERM/SIGINT: requests in flight and running
    /// jobs finish within it (jobs still running then go back to the queue,
    /// not counted as crashes), then the workers stop. Keep it below the
    /// service manager's stop timeout (the shipped unit has 45s).
    /// `--graceful-timeout` is its old name.
    #[arg(long, alias = "graceful-timeout", env = "PIXFORK_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// A named pipeline, `NAME=OPS` in the grammar of `/v1/pipeline?ops=`
    /// (repeatable): `/v1/preset/NAME` runs it.
    #[arg(long = "preset", value_name = "NAME=OPS")]
    pub presets: Vec<String>,

    /// An image for the `overlay` op, `NAME=FILE` (repeatable, or
    /// comma-separated, so a FILE cannot hold a comma): read at start,
    /// checked by a worker, then composited by `overlay?image=NAME`. At
    /// most --max-body bytes.
    #[arg(
        long = "overlay",
        env = "PIXFORK_OVERLAY",
        value_name = "NAME=FILE",
        value_delimiter = ','
    )]
    pub overlays: Vec<String>,

    /// A file of presets, one `NAME=OPS` a line (`#` comments).
    #[arg(long, env = "PIXFORK_PRESET_FILE")]
    pub preset_file: Option<PathBuf>,

    /// Folder of the result cache [default: `cache` under --state-dir].
    #[arg(long, env = "PIXFORK_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Most bytes the result cache keeps on disk (least recently used
    /// entries go first); 0 turns it off.
    #[arg(long, env = "PIXFORK_CACHE_SIZE", default_value = "1GiB", value_parser = parse_size)]
    pub cache_size: u64,

    /// Folder of the embedded job store (SQLite) [the systemd unit uses its StateDirectory].
    #[arg(long, env = "PIXFORK_STATE_DIR", default_value = "pixfork-state")]
    pub state_dir: PathBuf,

    /// Shared job store for several instances, e.g. `redis://127.0.0.1:6379/0`
    /// [default: the embedded store under --state-dir].
    #[arg(long, env = "PIXFORK_JOBS_URL")]
    pub jobs_url: Option<String>,

    /// Most background jobs waiting to run; past it a submission gets 503
    /// `job_queue_full` and nothing is stored.
    #[arg(long, env = "PIXFORK_MAX_QUEUED_JOBS", default_value_t = 10_000)]
    pub max_queued_jobs: u64,

    /// Most bytes the job store holds, inputs and results together; past
    /// it a submission gets 503 `job_queue_full`. (One job's input is
    /// capped by --max-body, like a synchronous request.)
    #[arg(long, env = "PIXFORK_MAX_JOB_BYTES", default_value = "4GiB", value_parser = parse_size)]
    pub max_job_bytes: u64,

    /// A job's time to live: a job not started within it ends `failed`
    /// with code `expired`; a finished job and its result are kept this
    /// long after it ends.
    #[arg(long, env = "PIXFORK_JOB_TTL", default_value = "24h", value_parser = parse_duration)]
    pub job_ttl: Duration,

    /// With Redis: a job claimed by an instance that went silent this long is
    /// taken over by another.
    #[arg(long, env = "PIXFORK_JOB_CLAIM_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub job_claim_timeout: Duration,

    /// Most workers background jobs may hold at once [default: all but one].
    #[arg(long, env = "PIXFORK_JOB_SLOTS")]
    pub job_slots: Option<usize>,

    /// Turn off the playground page at `GET /` (then `/` is a 404).
    #[arg(long, env = "PIXFORK_NO_PLAYGROUND")]
    pub no_playground: bool,

    /// Let clients name the image by `url=` (GET /v1/{op}?url=http://...)
    /// instead of sending it. Off by default: it makes pixfork fetch from
    /// addresses chosen by clients.
    #[arg(long, env = "PIXFORK_ALLOW_URL_SOURCE")]
    pub allow_url_source: bool,

    /// Hosts URL sources may name, comma-separated (`img.example.com`, or
    /// `*.example.com` for subdomains) [default: any public host].
    #[arg(long, env = "PIXFORK_ALLOWED_SOURCE_HOSTS", value_delimiter = ',')]
    pub allowed_source_hosts: Vec<String>,

    /// Let URL sources and job callbacks reach loopback, private,
    /// link-local and other non-public addresses (refused by default).
    #[arg(long, env = "PIXFORK_ALLOW_PRIVATE_SOURCES")]
    pub allow_private_sources: bool,

    /// Non-public networks URL sources and job callbacks may reach anyway,
    /// comma-separated CIDRs (`10.1.0.0/16`, `127.0.0.1/32`); every other
    /// private address stays refused, redirects included.
    #[arg(long, env = "PIXFORK_ALLOWED_PRIVATE_NETWORKS", value_delimiter = ',', value_parser = Network::parse)]
    pub allowed_private_networks: Vec<Network>,

    /// Hosts a background job's `callback_url` may name, comma-separated
    /// (`hooks.example.com`, or `*.example.com`) [default: any host whose
    /// addresses are public, or inside --allowed-private-networks].
    #[arg(long, env = "PIXFORK_ALLOWED_CALLBACK_HOSTS", value_delimiter = ',')]
    pub allowed_callback_hosts: Vec<String>,

    /// A PEM file of CA certificates trusted for `https://` sources and job
    /// callbacks, besides the built-in Mozilla roots (private origins).
    #[arg(long, env = "PIXFORK_SOURCE_CA")]
    pub source_ca: Option<PathBuf>,

    /// Key of signed URLs, as hex (at least 16 bytes): every image GET must
    /// then end with `&sig=` (see the README).
    #[arg(
        long,
        env = "PIXFORK_URL_SIGNING_KEY",
        conflicts_with = "url_signing_key_file",
        hide_env_values = true
    )]
    pub url_signing_key: Option<String>,

    /// A file whose first line is the URL-signing key (hex).
    #[arg(long, env = "PIXFORK_URL_SIGNING_KEY_FILE")]
    pub url_signing_key_file: Option<PathBuf>,

    /// A file of API keys, one a line (`#` comments): `POST /v1/...` and the
    /// job routes then need `Authorization: Bearer KEY`.
    #[arg(long, env = "PIXFORK_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,

    /// `Cache-Control` of successful image responses [default: `public,
    /// max-age=31536000, immutable` for signed URLs, `public, max-age=3600`
    /// otherwise].
    #[arg(long, env = "PIXFORK_CACHE_CONTROL")]
    pub cache_control: Option<String>,

    /// Longest time a URL source may take: resolving, connecting, redirects and body.
    #[arg(long, env = "PIXFORK_SOURCE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub source_timeout: Duration,

    /// Most redirects a URL source may take.
    #[arg(long, env = "PIXFORK_SOURCE_MAX_REDIRECTS", default_value_t = 3)]
    pub source_max_redirects: u32,

    /// Log output format.
    #[arg(long, env = "PIXFORK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl MasterArgs {
    /// The decode limits every request carries to its worker.
    pub fn limits(&self) -> Limits {
        Limits {
            max_pixels: self.max_pixels,
            max_frames: self.max_frames,
            max_total_pixels: self.max_total_pixels,
        }
    }

    /// Workers background jobs may hold: the flag, or all but one (at least one).
    pub fn job_slot_count(&self) -> usize {
        self.job_slots
            .unwrap_or_else(|| self.worker_count().saturating_sub(1))
            .max(1)
    }

    /// Worker count: the flag, or the cores this process may run on.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            Some(n) => n as usize,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("32MiB"), Ok(32 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn defaults_parse() {
        let a = MasterArgs::try_parse_from(["pixfork"]).expect("defaults");
        assert_eq!(a.max_body, 32 << 20);
        assert_eq!(a.timeout, Duration::from_secs(30));
        assert_eq!(a.limits(), Limits::default());
        assert!(a.worker_count() >= 1);
    }
}
