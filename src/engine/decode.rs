//! Decoding: header first (limits), then pixels.
//!
//! Each format's decoder is built directly rather than through
//! `ImageReader`, because the animation entry points (`PngDecoder::apng`,
//! `WebPDecoder::has_animation`, GIF frames) hang off the concrete types. The
//! order is always: parse the header, check the canvas against the limits,
//! only then let the decoder allocate.

use std::io::Cursor;

use image::codecs::bmp::BmpDecoder;
use image::codecs::gif::GifDecoder;
use image::codecs::ico::IcoDecoder;
use image::codecs::jpeg::JpegDecoder;
use image::codecs::png::PngDecoder;
use image::codecs::tiff::TiffDecoder;
use image::codecs::webp::WebPDecoder;
use image::metadata::{LoopCount, Orientation};
use image::{AnimationDecoder, ColorType, DynamicImage, Frames, ImageDecoder, RgbaImage};

use crate::proto::Limits;

use super::error::EngineError;
use super::libjpeg;
use super::limits::{check_canvas, decoder_limits, FrameBudget};
use super::sniff::{self, InputFormat};
use super::Tuning;

/// A decoded input: pixels plus what `info` reports about the file.
pub struct Decoded {
    pub format: InputFormat,
    /// Stored width (before EXIF orientation); the canvas for animations.
    pub width: u32,
    /// Stored height (before EXIF orientation).
    pub height: u32,
    /// The decoder's colour type (what the pixels were decoded as).
    pub color_type: ColorType,
    /// EXIF orientation; `NoTransforms` when absent or unreadable.
    pub orientation: Orientation,
    /// The embedded ICC profile the pixels are in, if any (`colour.rs`
    /// converts them to sRGB before the ops, unless `icc=keep` keeps it).
    pub icc: Option<Vec<u8>>,
    pub content: Content,
}

/// The pixels of an image: one picture or an animation.
pub enum Content {
    Still(DynamicImage),
    Animation(Animation),
}

/// A multi-frame image, every frame a fully composited canvas.
pub struct Animation {
    /// At least two frames, all the same size.
    pub frames: Vec<AnimFrame>,
    /// `Some(0)`: forever; `Some(n)`: n loops; `None`: not stated (play once).
    pub loop_count: Option<u32>,
}

/// One composited animation frame and how long it is shown.
pub struct AnimFrame {
    pub image: RgbaImage,
    pub delay_ms: u32,
}

impl Content {
    /// Width and height of the (first) picture.
    pub fn dimensions(&self) -> (u32, u32) {
        match self {
            Content::Still(img) => (img.width(), img.height()),
            Content::Animation(anim) => {
                anim.frames.first().map_or((0, 0), |f| f.image.dimensions())
            }
        }
    }

    /// Number of frames (1 for a still).
    pub fn frame_count(&self) -> u32 {
        match self {
            Content::Still(_) => 1,
            Content::Animation(anim) => u32::try_from(anim.frames.len()).unwrap_or(u32::MAX),
        }
    }
}

/// How small and how exact the first op lets the decoded picture be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    /// The stored size it needs at least.
    pub least: (u32, u32),
    /// The op smooths away the finest detail anyway (a blur), so libjpeg
    /// may use its faster, less exact integer inverse DCT: 1.1 ms of the
    /// 14.8 of the half-size bench photo, errors of a level or two in
    /// detail the blur removes.
    pub coarse: bool,
}

/// Given the stored size of the image and its EXIF orientation, what the
/// first op needs of it (`None`: all of it, exactly). A decoder that can
/// produce a smaller picture directly (JPEG's DCT scaling) uses it; the
/// others ignore it.
pub type Need<'a> = &'a dyn Fn(u32, u32, Orientation) -> Option<Wanted>;

/// Sniffs, checks limits and decodes every frame of `input`. With `need`,
/// a JPEG may come back smaller than its stored size (never smaller than
/// `need` asks); `Decoded::width`/`height` still give the stored size.
pub fn decode(
    input: &[u8],
    limits: &Limits,
    need: Option<Need<'_>>,
    tuning: &Tuning,
) -> Result<Decoded, EngineError> {
    match decode_once(input, limits, need, tuning) {
        // A header flaw Pillow (and browsers) read past: one more try on a
        // mended copy (`sniff::mended`); if that fails too, the first
        // error stands. The copy is as large as the input, which the body
        // limit bounds.
        Err(first @ EngineError::Corrupt(_)) => match sniff::mended(input) {
            Some(copy) => decode_once(&copy, limits, need, tuning).map_err(|_| first),
            None => Err(first),
        },
        other => other,
    }
}

fn decode_once(
    input: &[u8],
    limits: &Limits,
    need: Option<Need<'_>>,
    tuning: &Tuning,
) -> Result<Decoded, EngineError> {
    let format = sniff::detect(input)?;
    let err = |e| EngineError::decoding(e, format);
    let cursor = Cursor::new(input);
    match format {
        InputFormat::Jpeg => {
            // zune-jpeg's header parse: the limits check and the fallback
            // decoder. It cannot read arithmetic-coded JPEGs, which libjpeg
            // can, so its error only counts once libjpeg has refused too.
            let header = JpegDecoder::new(cursor);
            if let Ok(decoder) = &header {
                let (w, h) = decoder.dimensions();
                check_canvas(w, h, limits)?;
            }
            if !sniff::jpeg_is_complete(input) {
                header.map_err(err)?;
                return Err(EngineError::Corrupt(
                    "JPEG data ends early (no end-of-image marker)".to_string(),
                ));
            }
            if tuning.libjpeg {
                let plan = |w, h, orientation| match need.and_then(|need| need(w, h, orientation)) {
                    Some(Wanted { least, coarse }) if tuning.shrink_on_load => {
                        (libjpeg::shrink_factor((w, h), least), coarse)
                    }
                    _ => (1, false),
                };
                if let Some(picture) = libjpeg::decode(input, limits, &plan)? {
                    let (width, height) = picture.stored;
                    return Ok(Decoded {
                        format,
                        width,
                        height,
                        color_type: picture.image.color(),
                        orientation: picture.orientation,
                        icc: header.ok().as_mut().and_then(icc_of),
                        content: Content::Still(picture.image),
                    });
                }
            }
            decode_still(header.map_err(err)?, format, limits)
        }
        InputFormat::Png => {
            if let Some((w, h)) = sniff::png_dimensions(input) {
                check_canvas(w, h, limits)?;
            }
            let mut decoder =
                PngDecoder::with_limits(cursor, decoder_limits(limits, false)).map_err(err)?;
            let (w, h) = decoder.dimensions();
            check_canvas(w, h, limits)?;
            if decoder.is_apng().unwrap_or(false) {
                let icc = icc_of(&mut decoder);
                let mut decoded = decode_apng(decoder, limits)?;
                decoded.icc = icc;
                Ok(decoded)
            } else {
                decode_still(decoder, format, limits)
            }
        }
        InputFormat::Gif => decode_gif(input, limits),
        InputFormat::Webp => {
            let mut decoder = WebPDecoder::new(cursor).map_err(err)?;
            let (w, h) = decoder.dimensions();
            check_canvas(w, h, limits)?;
            if decoder.has_animation() {
                let icc = icc_of(&mut decoder);
                let mut decoded = decode_animated_webp(decoder, limits)?;
                decoded.icc = icc;
                Ok(decoded)
            } else {
                decode_still(decoder, format, limits)
            }
        }
        InputFormat::Bmp => {
            let decoder = BmpDecoder::new(cursor).map_err(err)?;
            decode_still(decoder, format, limits)
        }
        InputFormat::Tiff => {
            if sniff::tiff_is_tiled_planar(input) {
                return Err(EngineError::Unsupported(
                    "tiled TIFF with separate colour planes is not supported".to_string(),
                ));
            }
            let decoder = TiffDecoder::new(cursor).map_err(err)?;
            decode_still(decoder, format, limits)
        }
        InputFormat::Ico => {
            let decoder = IcoDecoder::new(cursor).map_err(err)?;
            decode_still(decoder, format, limits)
        }
        // Their decoders build on this module's types, so the engine
        // dispatches to them before calling here (`engine::decode_input`).
        InputFormat::Avif | InputFormat::Heif | InputFormat::Jxl | InputFormat::Svg => Err(
            EngineError::Internal(format!("{} reached the wrong decoder", format.label())),
        ),
    }
}

/// Every frame of a GIF, composited.
fn decode_gif(input: &[u8], limits: &Limits) -> Result<Decoded, EngineError> {
    let format = InputFormat::Gif;
    let err = |e| EngineError::decoding(e, format);
    let mut decoder = GifDecoder::new(Cursor::new(input)).map_err(err)?;
    let (w, h) = decoder.dimensions();
    // The canvas must be refused here: the frame iterator allocates
    // it (and composites into it) without any limit of its own.
    check_canvas(w, h, limits)?;
    decoder
        .set_limits(decoder_limits(limits, true))
        .map_err(err)?;
    let color_type = decoder.color_type();
    // Always through the frame iterator, even for a still GIF: a file
    // cut after its first frame only fails when every frame is read.
    let frames = collect_frames(decoder.into_frames(), w, h, format, limits)?;
    Ok(finish_animation(
        format,
        (w, h),
        color_type,
        Orientation::NoTransforms,
        frames,
        sniff::gif_loop_count(input),
    ))
}

/// Reads the orientation without ever failing the request: broken EXIF is
/// common in the wild and must not cost the client its image.
fn orientation_of(decoder: &mut impl ImageDecoder) -> Orientation {
    match decoder.orientation() {
        Ok(Orientation::NoTransforms) | Err(_) => {}
        Ok(found) => return found,
    }
    // `image` reads EXIF that starts with its TIFF header. Some writers
    // keep JPEG's `Exif\0\0` prefix in WebP's and PNG's EXIF chunks, which
    // browsers and Pillow still honour: read those too, so the same
    // picture comes out the same whatever its container.
    match decoder.exif_metadata() {
        Ok(Some(exif)) => exif
            .strip_prefix(b"Exif\0\0")
            .and_then(Orientation::from_exif_chunk)
            .unwrap_or(Orientation::NoTransforms),
        _ => Orientation::NoTransforms,
    }
}

/// The embedded ICC profile, if the decoder finds a non-empty one; a
/// broken one is no reason to fail the request.
fn icc_of(decoder: &mut impl ImageDecoder) -> Option<Vec<u8>> {
    decoder
        .icc_profile()
        .ok()
        .flatten()
        .filter(|p| !p.is_empty())
}

fn decode_still(
    mut decoder: impl ImageDecoder,
    format: InputFormat,
    limits: &Limits,
) -> Result<Decoded, EngineError> {
    let (width, height) = decoder.dimensions();
    check_canvas(width, height, limits)?;
    decoder
        .set_limits(decoder_limits(limits, true))
        .map_err(|e| EngineError::decoding(e, format))?;
    let orientation = orientation_of(&mut decoder);
    let icc = icc_of(&mut decoder);
    let color_type = decoder.color_type();
    let image =
        DynamicImage::from_decoder(decoder).map_err(|e| EngineError::decoding(e, format))?;
    Ok(Decoded {
        format,
        width,
        height,
        color_type,
        orientation,
        icc,
        content: Content::Still(image),
    })
}

fn decode_apng<R>(mut decoder: PngDecoder<R>, limits: &Limits) -> Result<Decoded, EngineError>
where
    R: std::io::BufRead + std::io::Seek,
{
    let format = InputFormat::Png;
    let err = |e| EngineError::decoding(e, format);
    let (w, h) = decoder.dimensions();
    decoder
        .set_limits(decoder_limits(limits, true))
        .map_err(err)?;
    let orientation = orientation_of(&mut decoder);
    let color_type = decoder.color_type();
    let apng = decoder.apng().map_err(err)?;
    let loop_count = loop_count_of(apng.loop_count());
    let frames = collect_frames(apng.into_frames(), w, h, format, limits)?;
    Ok(finish_animation(
        format,
        (w, h),
        color_type,
        orientation,
        frames,
        Some(loop_count),
    ))
}

fn decode_animated_webp<R>(
    mut decoder: WebPDecoder<R>,
    limits: &Limits,
) -> Result<Decoded, EngineError>
where
    R: std::io::BufRead + std::io::Seek,
{
    let format = InputFormat::Webp;
    let (w, h) = decoder.dimensions();
    decoder
        .set_limits(decoder_limits(limits, true))
        .map_err(|e| EngineError::decoding(e, format))?;
    let orientation = orientation_of(&mut decoder);
    let color_type = decoder.color_type();
    let loop_count = loop_count_of(decoder.loop_count());
    let frames = collect_frames(decoder.into_frames(), w, h, format, limits)?;
    Ok(finish_animation(
        format,
        (w, h),
        color_type,
        orientation,
        frames,
        Some(loop_count),
    ))
}

/// `image`'s loop count in our convention (0 = forever).
fn loop_count_of(count: LoopCount) -> u32 {
    match count {
        LoopCount::Infinite => 0,
        LoopCount::Finite(n) => n.get(),
    }
}

/// Decodes every frame, enforcing the frame and total-pixel budgets as it
/// goes (so an over-limit animation is refused without decoding the rest).
fn collect_frames(
    frames: Frames<'_>,
    width: u32,
    height: u32,
    format: InputFormat,
    limits: &Limits,
) -> Result<Vec<AnimFrame>, EngineError> {
    let mut budget = FrameBudget::new(width, height, limits);
    let mut out = Vec::new();
    for frame in frames {
        let frame = frame.map_err(|e| EngineError::decoding(e, format))?;
        budget.admit()?;
        let (num, den) = frame.delay().numer_denom_ms();
        let delay_ms = if den == 0 {
            0
        } else {
            u32::try_from((u64::from(num) + u64::from(den) / 2) / u64::from(den))
                .unwrap_or(u32::MAX)
        };
        let image = frame.into_buffer();
        if image.dimensions() != (width, height) {
            return Err(EngineError::Corrupt(format!(
                "{} animation frame is {}x{}, not the {width}x{height} canvas",
                format.label(),
                image.width(),
                image.height()
            )));
        }
        out.push(AnimFrame { image, delay_ms });
    }
    if out.is_empty() {
        return Err(EngineError::Corrupt(format!(
            "{} image contains no frames",
            format.label()
        )));
    }
    Ok(out)
}

/// A one-frame "animation" is a still image; more frames stay an animation.
pub(super) fn finish_animation(
    format: InputFormat,
    (width, height): (u32, u32),
    color_type: ColorType,
    orientation: Orientation,
    mut frames: Vec<AnimFrame>,
    loop_count: Option<u32>,
) -> Decoded {
    let content = if frames.len() == 1 {
        match frames.pop() {
            Some(frame) => Content::Still(DynamicImage::ImageRgba8(frame.image)),
            None => Content::Animation(Animation { frames, loop_count }),
        }
    } else {
        Content::Animation(Animation { frames, loop_count })
    };
    Decoded {
        format,
        width,
        height,
        color_type,
        orientation,
        icc: None,
        content,
    }
}
