//! The output parameters every image-producing operation takes (format,
//! quality, ...: top-level query parameters of a pipeline too), and how
//! their values become the worker's [`OutputSpec`].

use super::spec::{p, Kind, ParamSpec, Values};
use crate::proto::{KeepMeta, OutputFormat, OutputSpec, PngCompression};

/// Output parameters accepted by every image-producing operation (top-level
/// query parameters of a pipeline).
pub const OUTPUT_PARAMS: &[ParamSpec] = &[
    p(
        "format",
        Kind::Choice(&["jpeg", "jpg", "png", "gif", "webp", "avif", "auto"]),
        false,
        None,
        "output format; default: the input's family (animated input stays an animated GIF); \
         auto: AVIF when the request's Accept lists image/avif, else WebP when it lists image/webp, \
         else the default (the response then has Vary: Accept)",
    ),
    p(
        "quality",
        Kind::UInt { min: 1, max: 100 },
        false,
        Some("80"),
        "JPEG, lossy WebP and AVIF quality",
    ),
    p(
        "effort",
        Kind::UInt { min: 0, max: 9 },
        false,
        Some("4"),
        "AVIF encoder effort: 0 fastest, 9 smallest files",
    ),
    p(
        "progressive",
        Kind::Bool,
        false,
        Some("false"),
        "progressive JPEG",
    ),
    p(
        "compression",
        Kind::Choice(&["fast", "default", "best"]),
        false,
        Some("fast"),
        "PNG deflate effort",
    ),
    p(
        "colors",
        Kind::UInt { min: 2, max: 256 },
        false,
        Some("256"),
        "most colours of a GIF palette (per frame)",
    ),
    p(
        "lossless",
        Kind::Bool,
        false,
        Some("false"),
        "lossless WebP instead of lossy",
    ),
    p(
        "icc",
        Kind::Choice(&["srgb", "keep"]),
        false,
        Some("srgb"),
        "an embedded colour profile: srgb converts the pixels to sRGB and drops it; keep leaves \
         them as they are and embeds the profile in JPEG, PNG and WebP output (AVIF and GIF \
         output, and ops that paint sRGB colours (pad, background, overlay, sepia, hue, rotate \
         off a right angle) convert as with srgb; format=auto then prefers WebP to AVIF)",
    ),
    p(
        "keep",
        Kind::Choice(&["none", "copyright", "all"]),
        false,
        Some("none"),
        "metadata copied into JPEG, PNG and WebP output: none strips EXIF and XMP (GPS, camera \
         serials); copyright keeps EXIF Artist and Copyright and XMP dc:creator, dc:rights and \
         xmpRights; all keeps EXIF (orientation reset to 1 when autorotated) and XMP whole, and \
         the colour profile as icc=keep unless icc=srgb is given",
    ),
    p(
        "autorotate",
        Kind::Bool,
        false,
        Some("true"),
        "apply the EXIF orientation first; false keeps the stored pixels",
    ),
    p(
        "page",
        Kind::UInt {
            min: 0,
            max: 65535,
        },
        false,
        Some("0"),
        "which page of a multi-page TIFF to read (0-based)",
    ),
    p(
        "dpr",
        Kind::Float {
            min: 1.0,
            max: 5.0,
            exclusive_min: false,
            exclusive_max: false,
        },
        false,
        Some("1"),
        "device pixel ratio: multiplies width and height of resize and thumbnail \
         (still never larger than the source unless enlarge)",
    ),
];

fn output_format(word: &str) -> Option<OutputFormat> {
    match word {
        "jpeg" | "jpg" => Some(OutputFormat::Jpeg),
        "png" => Some(OutputFormat::Png),
        "gif" => Some(OutputFormat::Gif),
        "webp" => Some(OutputFormat::Webp),
        "avif" => Some(OutputFormat::Avif),
        _ => None,
    }
}

/// The output parameters of a request as the worker's [`OutputSpec`];
/// `true` when `format=auto` leaves the choice to the front.
pub(super) fn output_spec(values: &Values) -> (OutputSpec, bool) {
    let mut output = OutputSpec::default();
    let mut auto = false;
    match values.choice("format") {
        Some("auto") => auto = true,
        Some(word) => output.format = output_format(word),
        None => {}
    }
    if let Some(q) = values.u8("quality") {
        output.quality = q;
    }
    if let Some(e) = values.u8("effort") {
        output.effort = e;
    }
    if let Some(b) = values.bool("progressive") {
        output.progressive = b;
    }
    output.compression = match values.choice("compression") {
        Some("default") => PngCompression::Default,
        Some("best") => PngCompression::Best,
        _ => PngCompression::Fast,
    };
    if let Some(c) = values.u64("colors").and_then(|c| u16::try_from(c).ok()) {
        output.colors = c;
    }
    if let Some(b) = values.bool("lossless") {
        output.lossless = b;
    }
    output.keep_meta = match values.choice("keep") {
        Some("copyright") => KeepMeta::Copyright,
        Some("all") => KeepMeta::All,
        _ => KeepMeta::None,
    };
    // keep=all keeps the profile too, unless icc=srgb says otherwise.
    output.keep_icc = match values.choice("icc") {
        Some(icc) => icc == "keep",
        None => output.keep_meta == KeepMeta::All,
    };
    if let Some(b) = values.bool("autorotate") {
        output.autorotate = b;
    }
    if let Some(page) = values.u64("page").and_then(|p| u32::try_from(p).ok()) {
        output.page = page;
    }
    (output, auto)
}
