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
//! - [`proto`]: the wire types and framing; the only place bincode appears.
//! - [`engine`]: decode / ops / encode under limits. Pure functions, run only
//!   inside worker processes.
//! - [`worker`]: the blocking serve loop of `pixfork-worker` around the engine.
//! - [`pool`]: slots, dispatch queue, deadlines, spawning and respawning workers.
//! - [`front`]: the hyper service: routes, parameters, limits, JSON errors.
//! - [`master`]: wires flags, listener, pool and front together, and drains on
//!   SIGTERM/SIGINT.
//! - [`config`]: the flags shared by both binaries (sizes, durations).

pub mod config;
pub mod engine;
pub mod front;
pub mod jobs;
pub mod master;
pub mod metrics;
pub mod pool;
pub mod proto;
pub mod sandbox;
pub mod systemd;
pub mod worker;
