//! The wire between the master and its workers.
//!
//! Only plain data crosses the process boundary: a bincode header (request
//! id, op list, output spec, limits) and the raw image bytes as the frame
//! payload. [`types`] holds the messages, [`frame`] turns them into bytes and
//! back. Every bincode call lives in this module.

pub mod frame;
pub mod launch;
pub mod types;

pub use frame::{
    decode_header, encode_header, read_frame, read_frame_async, write_frame, write_frame_async,
    write_frame_parts_async, ProtoError, MAX_HEADER_LEN,
};
pub use launch::{WorkerSched, EXIT_AFTER_PANIC, EXIT_OUT_OF_MEMORY};
pub use types::*;

/// Bumped whenever a message changes shape. The first frame each way is a
/// [`Hello`] carrying it; a worker binary from another build is refused with
/// a clear message instead of a garbled reply.
pub const PROTOCOL_VERSION: u32 = 10;

/// Checks a peer's hello against ours.
pub fn check_hello(hello: &Hello) -> Result<(), ProtoError> {
    if hello.version == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(ProtoError::VersionMismatch {
            peer: hello.version,
            ours: PROTOCOL_VERSION,
        })
    }
}

#[cfg(test)]
mod tests;
