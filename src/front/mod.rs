//! The HTTP front: routes, body limits, JSON errors, request ids and timing.
//!
//! It parses and validates, then hands plain data to the [`Pool`](crate::pool::Pool); it never
//! decodes an image, so `/healthz` answers in microseconds even while every
//! worker is busy.
//!
//! # Pieces (each imports only those above it)
//!
//! - [`error`]: [`ApiError`](error::ApiError): every failure with its
//!   status and stable code.
//! - `app`: the shared [`App`] and the response helpers.
//! - [`auth`]: signed URLs and API keys.
//! - `body`: request bodies under a cap and a deadline.
//! - `caching`: ETags, `304 Not Modified`, `Cache-Control`.
//! - `playground`: `GET /`, the page built into the binary.
//! - `image`: the image routes (`/v1/{op}`, `/v1/pipeline`).
//! - `jobs`: the `/v1/jobs` routes over the job system.
//! - `status`: `/readyz` and `/metrics`.
//! - [`openapi`]: `/openapi.json`, generated from the op catalogue.
//! - `router`: the service function: routing, request ids, timing, logs.
//! - `send_timeout`: cutting off a client that stops taking its response.
//! - `server`: accepting connections and draining them on shutdown.

mod app;
pub mod auth;
mod body;
mod caching;
pub mod error;
mod image;
mod jobs;
pub mod openapi;
pub mod playground;
mod router;
mod send_timeout;
mod server;
mod status;

pub use app::{json, App, FrontConfig, Resp, MAX_CONNECTIONS};
pub use image::check_overlays;
pub use router::handle;
pub use server::serve;
