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
    /// AVIF: AV1 in HEIF (stills, grids, sequences).
    Avif,
    /// HEIC/HEIF: HEVC in HEIF (iPhone photos).
    Heif,
    /// JPEG XL, bare codestream or container.
    Jxl,
    /// SVG, rasterised by resvg.
    Svg,
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
            InputFormat::Avif => "avif",
            InputFormat::Heif => "heif",
            InputFormat::Jxl => "jxl",
            InputFormat::Svg => "svg",
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
            InputFormat::Avif => "AVIF",
            InputFormat::Heif => "HEIF",
            InputFormat::Jxl => "JPEG XL",
            InputFormat::Svg => "SVG",
        }
    }

    /// The output format used when the request names none (for a still
    /// image): stay in the input's family; formats we cannot write become PNG
    /// because it is lossless and keeps alpha and 16-bit depth. HEIC is a
    /// camera format browsers do not show, so a photo becomes a JPEG (PNG
    /// when it has alpha, decided by the encoder).
    pub fn default_output(self) -> OutputFormat {
        match self {
            InputFormat::Jpeg | InputFormat::Heif => OutputFormat::Jpeg,
            InputFormat::Gif => OutputFormat::Gif,
            InputFormat::Webp => OutputFormat::Webp,
            InputFormat::Avif => OutputFormat::Avif,
            InputFormat::Png
            | InputFormat::Bmp
            | InputFormat::Tiff
            | InputFormat::Ico
            | InputFormat::Jxl
            | InputFormat::Svg => OutputFormat::Png,
        }
    }
}
