//! Encoding. Output never carries the input's metadata (EXIF, ICC, XMP,
//! comments): the encoders below are given bare pixels, which strips GPS
//! tags and other private data and keeps responses small.
//!
//! An animation written as GIF keeps every frame, its delay and its loop
//! count. Written as JPEG, PNG or WebP it becomes its first frame only: those
//! encoders (as available in pure Rust here) write stills.

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::codecs::webp::WebPEncoder;
use image::{DynamicImage, GrayImage, RgbImage, RgbaImage};

use crate::proto::{ImageMeta, OutputFormat};

use super::decode::{AnimFrame, Content};
use super::error::EngineError;

/// NeuQuant speed for GIF palettes: 10 is the gif crate's recommended
/// balance; 1 (image's default) is several times slower for little gain.
const GIF_QUANT_SPEED: i32 = 10;

/// Largest side each output format can store.
fn max_side(format: OutputFormat) -> u32 {
    match format {
        OutputFormat::Jpeg | OutputFormat::Gif => u32::from(u16::MAX),
        OutputFormat::Webp => 16383,
        OutputFormat::Png => i32::MAX as u32,
    }
}

/// Encodes `content` as `format`. See the module docs for animations.
pub fn encode(
    content: Content,
    format: OutputFormat,
    quality: u8,
) -> Result<(Vec<u8>, ImageMeta), EngineError> {
    let (width, height) = content.dimensions();
    let side = max_side(format);
    if width > side || height > side {
        return Err(EngineError::BadParameter(format!(
            "a {width}x{height} image is too large for {} (at most {side} pixels per side)",
            format.name()
        )));
    }
    let frames = match (content, format) {
        (Content::Animation(anim), OutputFormat::Gif) => {
            let frames = u32::try_from(anim.frames.len()).unwrap_or(u32::MAX);
            let bytes = encode_gif(anim.frames, width, height, anim.loop_count)?;
            return Ok((bytes, meta(format, width, height, frames)));
        }
        (Content::Animation(anim), _) => match anim.frames.into_iter().next() {
            Some(first) => DynamicImage::ImageRgba8(first.image),
            None => {
                return Err(EngineError::Internal(
                    "animation without frames reached the encoder".to_string(),
                ))
            }
        },
        (Content::Still(image), _) => image,
    };
    let image = frames;
    let bytes = match format {
        OutputFormat::Jpeg => encode_jpeg(image, quality)?,
        OutputFormat::Png => encode_png(image)?,
        OutputFormat::Webp => encode_webp(image)?,
        OutputFormat::Gif => encode_gif(
            vec![AnimFrame {
                image: image.into_rgba8(),
                delay_ms: 0,
            }],
            width,
            height,
            None,
        )?,
    };
    Ok((bytes, meta(format, width, height, 1)))
}

fn meta(format: OutputFormat, width: u32, height: u32, frames: u32) -> ImageMeta {
    ImageMeta {
        format,
        width,
        height,
        frames,
    }
}

/// Baseline JPEG at `quality`. JPEG has no alpha, so translucent pixels are
/// composited onto white (what a browser shows them on by default) instead of
/// revealing whatever colour the transparent pixels happen to hold.
fn encode_jpeg(image: DynamicImage, quality: u8) -> Result<Vec<u8>, EngineError> {
    let quality = quality.clamp(1, 100);
    let flat = match (image.color().has_color(), image.color().has_alpha()) {
        (true, true) => DynamicImage::ImageRgb8(flatten_rgba(&image.into_rgba8())),
        (true, false) => DynamicImage::ImageRgb8(image.into_rgb8()),
        (false, true) => DynamicImage::ImageLuma8(flatten_luma_alpha(&image.into_luma_alpha8())),
        (false, false) => DynamicImage::ImageLuma8(image.into_luma8()),
    };
    let mut out = Vec::new();
    flat.write_with_encoder(JpegEncoder::new_with_quality(&mut out, quality))
        .map_err(|e| EngineError::encoding(e, OutputFormat::Jpeg))?;
    Ok(out)
}

/// `c` over white with coverage `a`, rounded.
fn over_white(c: u8, a: u8) -> u8 {
    let (c, a) = (u32::from(c), u32::from(a));
    let v = (c * a + 255 * (255 - a) + 127) / 255;
    u8::try_from(v).unwrap_or(u8::MAX)
}

fn flatten_rgba(rgba: &RgbaImage) -> RgbImage {
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        image::Rgb([over_white(r, a), over_white(g, a), over_white(b, a)])
    })
}

fn flatten_luma_alpha(la: &image::GrayAlphaImage) -> GrayImage {
    GrayImage::from_fn(la.width(), la.height(), |x, y| {
        let [l, a] = la.get_pixel(x, y).0;
        image::Luma([over_white(l, a)])
    })
}

/// PNG with fast deflate and adaptive filters: most of PNG's size win at a
/// fraction of the default level's time. 16-bit images stay 16-bit; float
/// images (from TIFF) become 16-bit, PNG's deepest integer format.
fn encode_png(image: DynamicImage) -> Result<Vec<u8>, EngineError> {
    let image = match image {
        DynamicImage::ImageRgb32F(_) => DynamicImage::ImageRgb16(image.into_rgb16()),
        DynamicImage::ImageRgba32F(_) => DynamicImage::ImageRgba16(image.into_rgba16()),
        other => other,
    };
    let mut out = Vec::new();
    let encoder =
        PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Adaptive);
    image
        .write_with_encoder(encoder)
        .map_err(|e| EngineError::encoding(e, OutputFormat::Png))?;
    Ok(out)
}

/// Lossless WebP (the only WebP encoder in pure Rust), from 8-bit RGB(A).
fn encode_webp(image: DynamicImage) -> Result<Vec<u8>, EngineError> {
    let image = if image.color().has_alpha() {
        DynamicImage::ImageRgba8(image.into_rgba8())
    } else {
        DynamicImage::ImageRgb8(image.into_rgb8())
    };
    let mut out = Vec::new();
    image
        .write_with_encoder(WebPEncoder::new_lossless(&mut out))
        .map_err(|e| EngineError::encoding(e, OutputFormat::Webp))?;
    Ok(out)
}

/// A GIF of full-canvas frames, each with its own NeuQuant palette.
///
/// Frames are disposed to background: every frame is a complete canvas, so
/// nothing of the previous one may show through its transparent pixels.
/// `loop_count`: `None` writes no NETSCAPE block (plays once), `Some(0)`
/// loops forever, `Some(n)` repeats n times.
fn encode_gif(
    frames: Vec<AnimFrame>,
    width: u32,
    height: u32,
    loop_count: Option<u32>,
) -> Result<Vec<u8>, EngineError> {
    let fail = |e: gif::EncodingError| EngineError::encoding(e, OutputFormat::Gif);
    let (w, h) = match (u16::try_from(width), u16::try_from(height)) {
        (Ok(w), Ok(h)) => (w, h),
        _ => {
            return Err(EngineError::BadParameter(format!(
                "a {width}x{height} image is too large for gif"
            )))
        }
    };
    let mut encoder = gif::Encoder::new(Vec::new(), w, h, &[]).map_err(fail)?;
    if let Some(count) = loop_count {
        let repeat = match count {
            0 => gif::Repeat::Infinite,
            n => gif::Repeat::Finite(u16::try_from(n).unwrap_or(u16::MAX)),
        };
        encoder.set_repeat(repeat).map_err(fail)?;
    }
    for frame in frames {
        if frame.image.dimensions() != (width, height) {
            return Err(EngineError::Internal(format!(
                "animation frame is {}x{}, not {width}x{height}",
                frame.image.width(),
                frame.image.height()
            )));
        }
        let mut rgba = frame.image.into_raw();
        let mut out = gif::Frame::from_rgba_speed(w, h, &mut rgba, GIF_QUANT_SPEED);
        // GIF delays are in 10 ms units.
        out.delay = u16::try_from(frame.delay_ms.saturating_add(5) / 10).unwrap_or(u16::MAX);
        out.dispose = gif::DisposalMethod::Background;
        encoder.write_frame(&out).map_err(fail)?;
    }
    encoder.into_inner().map_err(fail)
}
