//! HEIF-family input: HEIC/HEIF (HEVC) and AVIF (AV1), through libheif.
//!
//! libheif owns the container: it stitches grids, applies `irot`/`imir`/
//! `clap` (so the picture comes out upright, as the file says it is shown),
//! joins the alpha auxiliary image, and converts YCbCr of any bit depth to
//! RGB with the file's matrix and range. An image sequence (animated AVIF)
//! is read track frame by track frame.
//!
//! Bounds, all set before libheif reads a byte: its security limits get
//! `--max-pixels` (per image) and `--max-frames` (per sequence), and the
//! size of each image is checked against the limits from its header before
//! any decode. Threads: libheif's own grid threads are off (tiles decode one
//! after another) and each codec is asked for one thread; dav1d then runs in
//! the calling thread, libde265 starts one worker thread (it has no
//! threadless mode), which the sandbox allows (see `sandbox.rs`).

use image::metadata::Orientation;
use image::{ColorType, DynamicImage, ImageBuffer, Luma, Rgb, Rgba, RgbaImage};
use libheif_rs::{
    ColorSpace, DecodingOptions, HeifContext, HeifError, HeifErrorCode, HeifErrorSubCode, Image,
    LibHeif, RgbChroma, SecurityLimits,
};

use crate::proto::Limits;

use super::decode::{finish_animation, AnimFrame, Content, Decoded};
use super::error::{clip, EngineError};
use super::format::InputFormat;
use super::limits::{check_canvas, FrameBudget};

/// Initialises libheif (its codec registry). Called once at worker start,
/// before the sandbox, and again harmlessly per decode (reference counted).
pub fn prepare() {
    let _ = library();
}

fn library() -> &'static LibHeif {
    static LIB: std::sync::OnceLock<LibHeif> = std::sync::OnceLock::new();
    LIB.get_or_init(LibHeif::new)
}

/// Decodes the primary image (or, for an image sequence, every frame).
pub fn decode(input: &[u8], format: InputFormat, limits: &Limits) -> Result<Decoded, EngineError> {
    let err = |e: HeifError| map_error(e, format);
    let mut ctx = HeifContext::new().map_err(err)?;
    let mut security = SecurityLimits::new();
    security.set_max_image_size_pixels(limits.max_pixels);
    security.set_max_sequence_frames(limits.max_frames);
    ctx.set_security_limits(&security).map_err(err)?;
    ctx.set_max_decoding_threads(0);
    ctx.read_bytes(input).map_err(err)?;

    if ctx.has_sequence() {
        if let Some(decoded) = decode_sequence(&ctx, format, limits)? {
            return Ok(decoded);
        }
    }

    let handle = ctx.primary_image_handle().map_err(err)?;
    let (width, height) = (handle.width(), handle.height());
    check_canvas(width, height, limits)?;
    let alpha = handle.has_alpha_channel();
    let deep = handle.luma_bits_per_pixel() > 8;
    let grey = matches!(
        handle.preferred_decoding_colorspace(),
        Ok(ColorSpace::Monochrome)
    ) && !alpha;
    let space = if grey {
        ColorSpace::Monochrome
    } else {
        ColorSpace::Rgb(chroma(alpha, deep))
    };
    let image = library().decode(&handle, space, options()).map_err(err)?;
    let picture = to_dynamic(&image, space, format)?;
    Ok(Decoded {
        format,
        width: picture.width(),
        height: picture.height(),
        color_type: picture.color(),
        orientation: Orientation::NoTransforms,
        // An ICC profile (`prof`/`rICC`); libheif applies none itself.
        icc: handle.color_profile_raw().map(|p| p.data),
        content: Content::Still(picture),
    })
}

/// Every frame of the first visual track, or `None` when the file has no
/// visual track (its still image is then used).
fn decode_sequence(
    ctx: &HeifContext<'_>,
    format: InputFormat,
    limits: &Limits,
) -> Result<Option<Decoded>, EngineError> {
    let err = |e: HeifError| map_error(e, format);
    let Some(track) = ctx.track(0) else {
        return Ok(None);
    };
    let size = track.image_resolution().map_err(err)?;
    let (width, height) = (u32::from(size.width), u32::from(size.height));
    check_canvas(width, height, limits)?;
    let timescale = u64::from(track.timescale().max(1));
    let space = ColorSpace::Rgb(RgbChroma::Rgba);
    let mut budget = FrameBudget::new(width, height, limits);
    let mut frames = Vec::new();
    loop {
        let image = match track.decode_next_image(space, options()) {
            Ok(image) => image,
            Err(e) if matches!(e.code, HeifErrorCode::EndOfSequence) => break,
            Err(e) => return Err(err(e)),
        };
        budget.admit()?;
        let delay_ms = u64::from(image.duration()) * 1000 / timescale;
        let picture = to_dynamic(&image, space, format)?.into_rgba8();
        if picture.dimensions() != (width, height) {
            return Err(EngineError::Corrupt(format!(
                "{} sequence frame is {}x{}, not the {width}x{height} track size",
                format.label(),
                picture.width(),
                picture.height()
            )));
        }
        frames.push(AnimFrame {
            image: picture,
            delay_ms: u32::try_from(delay_ms).unwrap_or(u32::MAX),
        });
    }
    if frames.is_empty() {
        return Ok(None);
    }
    Ok(Some(finish_animation(
        format,
        (width, height),
        ColorType::Rgba8,
        Orientation::NoTransforms,
        frames,
        // Sequences loop by default in every viewer; the edit list that
        // could say otherwise is not read.
        Some(0),
    )))
}

/// One codec thread: dav1d then decodes in the calling thread. The edit
/// list is ignored: it can repeat the track without end, and the loop
/// count is the viewer's business.
fn options() -> Option<DecodingOptions> {
    let mut options = DecodingOptions::new()?;
    options.set_num_codec_threads(1);
    options.set_ignore_sequence_edit_list(true);
    Some(options)
}

fn chroma(alpha: bool, deep: bool) -> RgbChroma {
    match (alpha, deep) {
        (false, false) => RgbChroma::Rgb,
        (true, false) => RgbChroma::Rgba,
        (false, true) => RgbChroma::HdrRgbLe,
        (true, true) => RgbChroma::HdrRgbaLe,
    }
}

/// Copies libheif's interleaved (or, for grey, single-plane) buffer into
/// an `image` buffer; samples deeper than 8 bits are widened to 16 bits
/// (10-bit 1023 becomes 65535), as PNG and the ops expect.
fn to_dynamic(
    image: &Image,
    space: ColorSpace,
    format: InputFormat,
) -> Result<DynamicImage, EngineError> {
    let planes = image.planes();
    let plane = match space {
        ColorSpace::Monochrome => planes.y,
        _ => planes.interleaved,
    }
    .ok_or_else(|| {
        EngineError::Internal(format!(
            "{} decoder returned no pixel plane",
            format.label()
        ))
    })?;
    let (w, h) = (plane.width, plane.height);
    let channels: usize = match space {
        ColorSpace::Monochrome => 1,
        ColorSpace::Rgb(RgbChroma::Rgb | RgbChroma::HdrRgbLe | RgbChroma::HdrRgbBe) => 3,
        _ => 4,
    };
    let deep = plane.storage_bits_per_pixel as usize > 8 * channels;
    let bytes_per_sample = if deep { 2 } else { 1 };
    let row = w as usize * channels * bytes_per_sample;
    let mut samples = Vec::with_capacity(row * h as usize);
    for y in 0..h as usize {
        let start = y * plane.stride;
        let line = plane.data.get(start..start + row).ok_or_else(|| {
            EngineError::Internal(format!("{} pixel plane is short", format.label()))
        })?;
        samples.extend_from_slice(line);
    }
    let short = || EngineError::Internal(format!("{} pixel buffer size", format.label()));
    if !deep {
        return match channels {
            1 => ImageBuffer::<Luma<u8>, _>::from_raw(w, h, samples).map(DynamicImage::ImageLuma8),
            3 => ImageBuffer::<Rgb<u8>, _>::from_raw(w, h, samples).map(DynamicImage::ImageRgb8),
            _ => RgbaImage::from_raw(w, h, samples).map(DynamicImage::ImageRgba8),
        }
        .ok_or_else(short);
    }
    let bits = u32::from(plane.bits_per_pixel.clamp(9, 16));
    let wide: Vec<u16> = samples
        .chunks_exact(2)
        .map(|b| widen(u16::from_le_bytes([b[0], b[1]]), bits))
        .collect();
    match channels {
        1 => ImageBuffer::<Luma<u16>, _>::from_raw(w, h, wide).map(DynamicImage::ImageLuma16),
        3 => ImageBuffer::<Rgb<u16>, _>::from_raw(w, h, wide).map(DynamicImage::ImageRgb16),
        _ => ImageBuffer::<Rgba<u16>, _>::from_raw(w, h, wide).map(DynamicImage::ImageRgba16),
    }
    .ok_or_else(short)
}

/// A `bits`-deep sample scaled to 16 bits by bit replication (exact at 0
/// and at full scale).
fn widen(v: u16, bits: u32) -> u16 {
    let v = u32::from(v).min((1 << bits) - 1);
    let up = (v << (16 - bits)) | (v >> (2 * bits).saturating_sub(16));
    u16::try_from(up).unwrap_or(u16::MAX)
}

fn map_error(e: HeifError, format: InputFormat) -> EngineError {
    let label = format.label();
    let message = clip(format!("{label}: {}", e.message));
    match (e.code, e.sub_code) {
        (_, HeifErrorSubCode::SecurityLimitExceeded)
        | (HeifErrorCode::MemoryAllocationError, _) => EngineError::TooLarge(message),
        (
            HeifErrorCode::UnsupportedFeature
            | HeifErrorCode::UnsupportedFileType
            | HeifErrorCode::DecoderPluginError,
            HeifErrorSubCode::UnsupportedCodec
            | HeifErrorSubCode::UnsupportedImageType
            | HeifErrorSubCode::UnsupportedBitDepth
            | HeifErrorSubCode::UnsupportedColorConversion
            | HeifErrorSubCode::UnsupportedDataVersion,
        ) => EngineError::Unsupported(message),
        (HeifErrorCode::UnsupportedFeature | HeifErrorCode::UnsupportedFileType, _) => {
            EngineError::Unsupported(message)
        }
        _ => EngineError::Corrupt(message),
    }
}

#[cfg(test)]
mod tests {
    use super::widen;

    #[test]
    fn widening_keeps_black_and_full_scale() {
        assert_eq!(widen(0, 10), 0);
        assert_eq!(widen(1023, 10), 65535);
        assert_eq!(widen(4095, 12), 65535);
        assert_eq!(widen(512, 10), 32800);
    }
}
