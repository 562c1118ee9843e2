//! The input formats the engine decodes: a leaf module, so that the
//! sniffer (which finds the format) and the errors (which name it) both
//! depend on it and not on each other.

use crate::proto::OutputFormat;

/// The input formats the engine decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    Jpeg,
    Png,
    Gif,
    Webp,
    Bmp,
    Tiff,
    Ico,
}

impl InputFormat {
    /// Lower-case name, as reported by the `info` op.
    pub fn name(self) -> &'static str {
        match self {
            InputFormat::Jpeg => "jpeg",
            InputFormat::Png => "png",
            InputFormat::Gif => "gif",
            InputFormat::Webp => "webp",
            InputFormat::Bmp => "bmp",
            InputFormat::Tiff => "tiff",
            InputFormat::Ico => "ico",
        }
    }

    /// Upper-case name for error messages.
    pub fn label(self) -> &'static str {
        match self {
            InputFormat::Jpeg => "JPEG",
            InputFormat::Png => "PNG",
            InputFormat::Gif => "GIF",
            InputFormat::Webp => "WebP",
            InputFormat::Bmp => "BMP",
            InputFormat::Tiff => "TIFF",
            InputFormat::Ico => "ICO",
        }
    }

    /// The output format used when the request names none (for a still
    /// image): stay in the input's family; formats we cannot write become PNG
    /// because it is lossless and keeps alpha and 16-bit depth.
    pub fn default_output(self) -> OutputFormat {
        match self {
            InputFormat::Jpeg => OutputFormat::Jpeg,
            InputFormat::Gif => OutputFormat::Gif,
            InputFormat::Webp => OutputFormat::Webp,
            InputFormat::Png | InputFormat::Bmp | InputFormat::Tiff | InputFormat::Ico => {
                OutputFormat::Png
            }
        }
    }
}
