//! pixfork: an image-processing HTTP service built as one tokio/hyper front
//! process over N pre-forked, crash-isolated worker processes.
//!
//! The front never touches pixels, so it always answers fast; a worker that
//! panics, segfaults, hangs or runs out of memory costs only its own request
//! and is replaced at once. Only plain data crosses the process boundary:
//! a bincode header and the raw image bytes over a Unix socket.
//!
//! # Layout
//!
//! Imports only point down this list (`tests/layout.rs` checks it;
//! ARCHITECTURE.md draws the map):
//!
//! - [`master`]: wires flags, listener, pool, jobs and front together, and
//!   handles the signals (drain, reload, one worker more or less).
//! - [`config`]: the master's flags and their value parsers.
//! - [`systemd`]: sd_notify, the watchdog and socket activation.
//! - [`sched`]: the short scheduler slice the front's threads ask for.
//! - [`front`]: the hyper service: routes (image, jobs, status), body
//!   limits, JSON errors.
//! - [`jobs`]: durable background jobs: the SQLite and Redis stores, the
//!   runner, callbacks. No HTTP routing.
//! - [`cache`]: finished results on disk, keyed like their ETags, with
//!   single flight for concurrent identical misses.
//! - [`catalogue`]: every op and its parameters in one table, and the
//!   parser that reads it (query string to [`proto::Task`]).
//! - [`net`]: outbound HTTP to client-chosen addresses: the SSRF guard, URL
//!   sources, job callbacks.
//! - [`pool`]: slots, dispatch queue, deadlines, spawning and respawning
//!   workers.
//! - [`metrics`]: the Prometheus registry.
//! - [`worker`]: the worker's flags and the blocking serve loop of
//!   `pixfork-worker` around the engine.
//! - [`sandbox`]: the worker's seccomp allow-list and privilege drop.
//! - [`engine`]: decode / ops / encode under limits. Pure functions, run
//!   only inside worker processes.
//! - [`proto`]: the wire types and framing; the only place bincode appears.

pub mod budget;
pub mod cache;
pub mod catalogue;
pub mod config;
pub mod engine;
pub mod front;
pub mod jobs;
pub mod master;
pub mod metrics;
pub mod net;
pub mod pool;
pub mod proto;
pub mod sandbox;
pub mod sched;
pub mod systemd;
pub mod worker;
