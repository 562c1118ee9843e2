//! Encoding. Output never carries the input's metadata (EXIF, ICC, XMP,
//! comments): the encoders below are given bare pixels, which strips GPS
//! tags and other private data and keeps responses small.
//!
//! An animation written as GIF or WebP keeps every frame, its delay and its
//! loop count. Written as JPEG or PNG it becomes its first frame only (APNG
//! output is not offered: browsers that show APNG also show animated WebP).
//!
//! Encoders: JPEG by `jpeg-encoder` (pure Rust, baseline or progressive),
//! PNG by `image`, GIF by the `gif` crate with NeuQuant palettes, WebP by
//! libwebp (lossy or lossless, stills and animations; see `webp.rs`).

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{DynamicImage, GrayImage, RgbImage, RgbaImage};

use crate::proto::{ImageMeta, OutputFormat, OutputSpec, PngCompression};

use super::decode::{AnimFrame, Content};
use super::error::EngineError;
use super::webp;

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

/// Encodes `content` as `format` with the knobs of `spec`. See the module
/// docs for animations.
pub fn encode(
    content: Content,
    format: OutputFormat,
    spec: &OutputSpec,
) -> Result<(Vec<u8>, ImageMeta), EngineError> {
    let quality = spec.quality;
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
            let bytes = encode_gif(anim.frames, width, height, anim.loop_count, spec.colors)?;
            return Ok((bytes, meta(format, width, height, frames)));
        }
        (Content::Animation(anim), OutputFormat::Webp) => {
            let frames = u32::try_from(anim.frames.len()).unwrap_or(u32::MAX);
            let bytes = webp::encode_animation(
                &anim.frames,
                width,
                height,
                anim.loop_count,
                webp_settings(spec),
            )
            .map_err(|e| EngineError::encoding(e, format))?;
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
        OutputFormat::Jpeg => encode_jpeg(image, quality, spec.progressive)?,
        OutputFormat::Png => encode_png(image, spec.compression)?,
        OutputFormat::Webp => encode_webp(image, webp_settings(spec))?,
        OutputFormat::Gif => encode_gif(
            vec![AnimFrame {
                image: image.into_rgba8(),
                delay_ms: 0,
            }],
            width,
            height,
            None,
            spec.colors,
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

fn webp_settings(spec: &OutputSpec) -> webp::Settings {
    webp::Settings {
        quality: spec.quality,
        lossless: spec.lossless,
    }
}

/// JPEG at `quality`, baseline or progressive, 4:2:0. JPEG has no alpha, so
/// translucent pixels are composited onto white (what a browser shows them
/// on by default) instead of revealing whatever colour the transparent
/// pixels happen to hold.
fn encode_jpeg(
    image: DynamicImage,
    quality: u8,
    progressive: bool,
) -> Result<Vec<u8>, EngineError> {
    let quality = quality.clamp(1, 100);
    let fail = |e: jpeg_encoder::EncodingError| EngineError::encoding(e, OutputFormat::Jpeg);
    let (w, h) = match (u16::try_from(image.width()), u16::try_from(image.height())) {
        (Ok(w), Ok(h)) => (w, h),
        _ => {
            return Err(EngineError::BadParameter(format!(
                "a {}x{} image is too large for jpeg",
                image.width(),
                image.height()
            )))
        }
    };
    let (pixels, color) = match (image.color().has_color(), image.color().has_alpha()) {
        (true, true) => (
            flatten_rgba(&image.into_rgba8()).into_raw(),
            jpeg_encoder::ColorType::Rgb,
        ),
        (true, false) => (image.into_rgb8().into_raw(), jpeg_encoder::ColorType::Rgb),
        (false, true) => (
            flatten_luma_alpha(&image.into_luma_alpha8()).into_raw(),
            jpeg_encoder::ColorType::Luma,
        ),
        (false, false) => (image.into_luma8().into_raw(), jpeg_encoder::ColorType::Luma),
    };
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality);
    encoder.set_progressive(progressive);
    encoder.encode(&pixels, w, h, color).map_err(fail)?;
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

/// PNG with adaptive filters; `fast` deflate (the default) gives most of
/// PNG's size win at a fraction of the `best` level's time. 16-bit images
/// stay 16-bit; float images (from TIFF) become 16-bit, PNG's deepest
/// integer format.
fn encode_png(image: DynamicImage, compression: PngCompression) -> Result<Vec<u8>, EngineError> {
    let image = match image {
        DynamicImage::ImageRgb32F(_) => DynamicImage::ImageRgb16(image.into_rgb16()),
        DynamicImage::ImageRgba32F(_) => DynamicImage::ImageRgba16(image.into_rgba16()),
        other => other,
    };
    let mut out = Vec::new();
    let level = match compression {
        PngCompression::Fast => CompressionType::Fast,
        PngCompression::Default => CompressionType::Default,
        PngCompression::Best => CompressionType::Best,
    };
    let encoder = PngEncoder::new_with_quality(&mut out, level, FilterType::Adaptive);
    image
        .write_with_encoder(encoder)
        .map_err(|e| EngineError::encoding(e, OutputFormat::Png))?;
    Ok(out)
}

/// A still WebP through libwebp, lossy at `quality` or lossless, from 8-bit
/// RGB(A) (alpha only when the image has it, so opaque images carry none).
fn encode_webp(image: DynamicImage, settings: webp::Settings) -> Result<Vec<u8>, EngineError> {
    let (w, h) = (image.width(), image.height());
    let alpha = image.color().has_alpha();
    let pixels = if alpha {
        image.into_rgba8().into_raw()
    } else {
        image.into_rgb8().into_raw()
    };
    webp::encode_still(&pixels, w, h, alpha, settings)
        .map_err(|e| EngineError::encoding(e, OutputFormat::Webp))
}

/// A GIF of full-canvas frames, each with its own NeuQuant palette of at
/// most `colors` entries.
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
    colors: u16,
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
        let mut out = if colors >= 256 {
            gif::Frame::from_rgba_speed(w, h, &mut rgba, GIF_QUANT_SPEED)
        } else {
            quantised_frame(w, h, &rgba, colors)
        };
        // GIF delays are in 10 ms units.
        out.delay = u16::try_from(frame.delay_ms.saturating_add(5) / 10).unwrap_or(u16::MAX);
        out.dispose = gif::DisposalMethod::Background;
        encoder.write_frame(&out).map_err(fail)?;
    }
    encoder.into_inner().map_err(fail)
}

/// A GIF frame with a palette of at most `colors` (2..=255) entries.
/// Pixels under half opacity share one transparent entry, as the gif
/// crate's own conversion does with fully transparent ones.
fn quantised_frame(w: u16, h: u16, rgba: &[u8], colors: u16) -> gif::Frame<'static> {
    let colors = usize::from(colors.clamp(2, 255));
    let transparent = rgba.chunks_exact(4).any(|p| p[3] < 128);
    let opaque_colors = if transparent { colors - 1 } else { colors }.max(1);
    let quant = color_quant::NeuQuant::new(GIF_QUANT_SPEED, opaque_colors, rgba);
    let mut palette = quant.color_map_rgb();
    let clear_index = u8::try_from(palette.len() / 3).unwrap_or(u8::MAX);
    let indices: Vec<u8> = rgba
        .chunks_exact(4)
        .map(|p| {
            if transparent && p[3] < 128 {
                clear_index
            } else {
                u8::try_from(quant.index_of(p)).unwrap_or(0)
            }
        })
        .collect();
    let mut frame = gif::Frame {
        width: w,
        height: h,
        buffer: std::borrow::Cow::Owned(indices),
        ..gif::Frame::default()
    };
    if transparent {
        palette.extend_from_slice(&[0, 0, 0]);
        frame.transparent = Some(clear_index);
    }
    frame.palette = Some(palette);
    frame
}
