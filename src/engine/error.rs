//! The engine's typed failures and how `image` errors map onto them.
//!
//! Every failure carries a short, human message (it ends up in the JSON error
//! body) and one of the [`ErrorKind`]s the front maps to an HTTP status. The
//! mapping from `image::ImageError` lives here so that every decoder path
//! classifies damage, unsupported features and limits the same way.

use std::error::Error as _;

use image::error::{ImageError, LimitErrorKind};

use crate::proto::{ErrorKind, OutputFormat, WorkError};

use super::format::InputFormat;

/// Longest message we pass on; decoder errors can embed long dumps.
const MAX_MESSAGE: usize = 200;

/// A failure inside the engine, one variant per [`ErrorKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The request asks for something this image cannot give (crop outside it).
    #[error("{0}")]
    BadParameter(String),
    /// Not an image we decode, or a variant of one the decoders lack.
    #[error("{0}")]
    Unsupported(String),
    /// The data is damaged or ends early.
    #[error("{0}")]
    Corrupt(String),
    /// Over the pixel, frame or memory limits.
    #[error("{0}")]
    TooLarge(String),
    /// A bug or an encoder failure: not the client's fault.
    #[error("{0}")]
    Internal(String),
}

impl EngineError {
    /// The wire classification of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::BadParameter(_) => ErrorKind::BadParameter,
            EngineError::Unsupported(_) => ErrorKind::Unsupported,
            EngineError::Corrupt(_) => ErrorKind::Corrupt,
            EngineError::TooLarge(_) => ErrorKind::TooLarge,
            EngineError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// Classifies an error raised while reading `format` data.
    ///
    /// Decoding, parameter and I/O errors all mean the bytes are not a valid
    /// image (an in-memory reader only fails on truncation), so they are
    /// `Corrupt`; `Unsupported` and `Limits` keep their meaning.
    pub(crate) fn decoding(err: ImageError, format: InputFormat) -> EngineError {
        let label = format.label();
        match &err {
            ImageError::Unsupported(u) => {
                EngineError::Unsupported(clip(format!("unsupported {label} variant: {u}")))
            }
            ImageError::Limits(l) => match l.kind() {
                LimitErrorKind::DimensionError => EngineError::TooLarge(format!(
                    "{label} image dimensions exceed the decoder limits"
                )),
                _ => EngineError::TooLarge(format!(
                    "{label} image needs more memory than the decoder limits allow"
                )),
            },
            ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                EngineError::Corrupt(format!("{label} data ends early"))
            }
            ImageError::IoError(io) => {
                EngineError::Corrupt(clip(format!("{label} data could not be read: {io}")))
            }
            ImageError::Decoding(_) => {
                if gif_memory_limit(&err) {
                    return EngineError::TooLarge(
                        "GIF frame needs more memory than the decoder limits allow".to_string(),
                    );
                }
                match err.source() {
                    Some(src) => EngineError::Corrupt(clip(format!("corrupt {label} data: {src}"))),
                    None => EngineError::Corrupt(format!("corrupt {label} data")),
                }
            }
            ImageError::Parameter(p) => {
                EngineError::Corrupt(clip(format!("corrupt {label} data: {p}")))
            }
            ImageError::Encoding(e) => EngineError::Internal(clip(format!("{e}"))),
            // `ImageError` is non-exhaustive: a future variant is most likely damage.
            #[allow(unreachable_patterns)]
            _ => EngineError::Corrupt(clip(format!("corrupt {label} data: {err}"))),
        }
    }

    /// Classifies an error raised while writing `format`: always our fault.
    pub(crate) fn encoding(err: impl std::fmt::Display, format: OutputFormat) -> EngineError {
        EngineError::Internal(clip(format!("failed to encode {}: {err}", format.name())))
    }
}

impl From<EngineError> for WorkError {
    fn from(err: EngineError) -> WorkError {
        WorkError {
            kind: err.kind(),
            message: err.to_string(),
        }
    }
}

/// The gif crate reports its own 50 MB per-frame cap as a decoding error; it
/// is a size problem, not damage.
fn gif_memory_limit(err: &ImageError) -> bool {
    err.source()
        .and_then(|s| s.downcast_ref::<gif::DecodingError>())
        .is_some_and(|g| {
            matches!(
                g,
                gif::DecodingError::MemoryLimit | gif::DecodingError::OutOfMemory
            )
        })
}

/// One tidy line of at most [`MAX_MESSAGE`] characters: decoder messages
/// can hold Debug dumps (the png crate prints `ChunkType { type: IDAT, .. }`)
/// and quotes that mean nothing to a client.
pub(super) fn clip(message: String) -> String {
    let one_line = tidy_chunk_types(&message)
        .replace(['\n', '\r', '\t'], " ")
        .replace('"', "");
    let one_line = one_line.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= MAX_MESSAGE {
        return one_line;
    }
    let mut out: String = one_line.chars().take(MAX_MESSAGE).collect();
    out.push('…');
    out
}

/// `ChunkType { type: IDAT, critical: true, .. }` becomes `IDAT`.
fn tidy_chunk_types(message: &str) -> String {
    const OPEN: &str = "ChunkType { type: ";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(OPEN) {
        let after = &rest[start + OPEN.len()..];
        let Some(close) = after.find('}') else {
            break;
        };
        let name = after[..close].split(',').next().unwrap_or("").trim();
        out.push_str(&rest[..start]);
        out.push_str(name);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tidied() {
        let raw = "CRC error: expected 0x1 have 0x2 while decoding ChunkType { type: IDAT, \
                   critical: true, private: false, reserved: false, safecopy: false } chunk.";
        assert_eq!(
            clip(raw.to_string()),
            "CRC error: expected 0x1 have 0x2 while decoding IDAT chunk."
        );
        assert_eq!(
            clip("\"Premature End of image\" ".to_string()),
            "Premature End of image"
        );
        assert_eq!(clip("a\nb".to_string()), "a b");
        let long = "x".repeat(500);
        assert_eq!(clip(long).chars().count(), MAX_MESSAGE + 1);
    }
}
