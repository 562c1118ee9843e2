//! The op catalogue: what the API can do, described once.
//!
//! Every operation is one row of the table in `ops.rs`: its parameters,
//! their types, ranges, defaults and help, and how their values become a
//! [`proto::Op`](crate::proto::Op). The parser ([`parse_request`]) reads
//! that table, and so do `GET /v1/ops` ([`ops_listing`]) and
//! `/openapi.json` ([`describe_param`]), so a parameter cannot be accepted
//! by one part of the service and documented differently by another.
//!
//! The front parses requests with it, and the job runner parses a stored
//! job's query again with the very same rules, so the catalogue knows
//! nothing of HTTP: its errors ([`ParamError`]) carry a status number and
//! a code, and each caller turns them into its own answer.
//!
//! # Pieces (imports run down this list, never up)
//!
//! - `error`: [`ParamError`], the one way a parameter can be wrong.
//! - `spec`: the row types ([`OpSpec`], [`ParamSpec`], [`Kind`]) and the
//!   check of one raw value against its kind.
//! - `test_ops`: the test-only ops (crash, hang, sandbox probes).
//! - `output`: the output parameters every op takes ([`OUTPUT_PARAMS`])
//!   and the worker's `OutputSpec` made of them.
//! - `ops`: the table ([`OPS`]). Adding an op is editing this file (and
//!   the engine).
//! - `parse`: query string to [`Task`](crate::proto::Task), pipelines and
//!   the job form.
//! - `presets`: the operator's named pipelines ([`Presets`]).
//! - `overlays`: the operator's registered overlay images ([`Overlays`])
//!   and the bytes a task's overlay ops need.
//! - `listing`: the table as the JSON of `GET /v1/ops`.

mod error;
mod listing;
mod ops;
mod output;
mod overlays;
mod parse;
mod presets;
mod spec;
mod test_ops;

pub use error::{bad, ParamError};
pub use listing::ops_listing;
pub use ops::{find_op, public_ops, resolve_linear, OPS};
pub use output::OUTPUT_PARAMS;
pub use overlays::{Attachment, OverlayError, Overlays, MAX_OVERLAYS};
pub use parse::{
    callback_not_here, parse_job, parse_pipeline, parse_preset, parse_request, parse_task, Parsed,
    CALLBACK_PARAM, MAX_PIPELINE_OPS, PIPELINE,
};
pub use presets::{PresetError, Presets};
pub use spec::{
    describe_param, parse_color, Kind, OpSpec, ParamSpec, Values, COLOR_NAMES, COLOR_PATTERN,
    MAX_URL_LEN, NAME_PATTERN,
};
