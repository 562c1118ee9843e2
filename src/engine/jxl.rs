//! JPEG XL input through jxl-oxide (pure Rust), single-threaded.
//!
//! The decoder's allocations are capped by an allocation tracker sized
//! from `--max-pixels` before it reads the stream, and the header's size is
//! checked against the limits before any frame is rendered. Frames come out
//! with the file's orientation applied; XYB-coded (lossy) images are
//! rendered to sRGB, ICC-tagged ones in the colours they were stored in.

use image::metadata::Orientation;
use image::{ColorType, DynamicImage, ImageBuffer, Luma, LumaA, Rgb, Rgba};
use jxl_oxide::{
    AllocTracker, EnumColourEncoding, JxlImage, JxlThreadPool, PixelFormat, RenderingIntent,
};

use crate::proto::Limits;

use super::decode::{finish_animation, AnimFrame, Content, Decoded};
use super::error::{clip, EngineError};
use super::format::InputFormat;
use super::limits::{check_canvas, FrameBudget};

/// Bytes of decoder memory allowed per allowed pixel: jxl-oxide keeps f32
/// planes per channel (16 B for RGBA) plus group buffers.
const BYTES_PER_PIXEL: u64 = 48;

pub fn decode(input: &[u8], limits: &Limits) -> Result<Decoded, EngineError> {
    let format = InputFormat::Jxl;
    let budget =
        usize::try_from(limits.max_pixels.saturating_mul(BYTES_PER_PIXEL)).unwrap_or(usize::MAX);
    let mut image = JxlImage::builder()
        .pool(JxlThreadPool::none())
        .alloc_tracker(AllocTracker::with_limit(budget))
        .read(input)
        .map_err(|e| error(&*e))?;
    let (width, height) = (image.width(), image.height());
    check_canvas(width, height, limits)?;
    let pixel_format = image.pixel_format();
    if pixel_format.has_black() {
        return Err(EngineError::Unsupported(
            "CMYK JPEG XL images are not supported".to_string(),
        ));
    }
    // An image described by an enumerated colour encoding is rendered to
    // sRGB by jxl-oxide itself; one described by an ICC profile is
    // rendered in that profile's space and converted by `colour.rs`, like
    // every other input with a profile.
    let icc = image.original_icc().map(<[u8]>::to_vec);
    if !pixel_format.is_grayscale() && icc.is_none() {
        image.request_color_encoding(EnumColourEncoding::srgb(RenderingIntent::Relative));
    }
    let pixel_format = image.pixel_format();
    let deep = image.image_header().metadata.bit_depth.bits_per_sample() > 8;
    let keyframes = image.num_loaded_keyframes();
    if keyframes == 0 {
        return Err(EngineError::Corrupt(
            "JPEG XL image has no frames".to_string(),
        ));
    }
    if keyframes == 1 {
        let picture = render(&image, 0, pixel_format, deep)?;
        return Ok(Decoded {
            format,
            width,
            height,
            color_type: picture.color(),
            orientation: Orientation::NoTransforms,
            icc,
            content: Content::Still(picture),
        });
    }
    // An animation: tick length from the animation header.
    let animation = image.image_header().metadata.animation.as_ref();
    let (num, den) = animation.map_or((1000, 1), |a| {
        (
            u64::from(a.tps_numerator.max(1)),
            u64::from(a.tps_denominator.max(1)),
        )
    });
    let loops = animation.map_or(0, |a| a.num_loops);
    let mut budget = FrameBudget::new(width, height, limits);
    let mut frames = Vec::with_capacity(keyframes.min(1024));
    for index in 0..keyframes {
        budget.admit()?;
        let ticks = image
            .frame_header(index)
            .map_or(0, |header| u64::from(header.duration));
        let picture = render(&image, index, pixel_format, false)?.into_rgba8();
        frames.push(AnimFrame {
            image: picture,
            delay_ms: u32::try_from(ticks * 1000 * den / num).unwrap_or(u32::MAX),
        });
    }
    let mut decoded = finish_animation(
        format,
        (width, height),
        ColorType::Rgba8,
        Orientation::NoTransforms,
        frames,
        Some(loops),
    );
    decoded.icc = icc;
    Ok(decoded)
}

/// Renders one keyframe as an `image` buffer of the stream's layout.
fn render(
    image: &JxlImage,
    index: usize,
    pixel_format: PixelFormat,
    deep: bool,
) -> Result<DynamicImage, EngineError> {
    let rendered = image.render_frame(index).map_err(|e| error(&*e))?;
    let mut stream = rendered.stream();
    let (w, h, channels) = (stream.width(), stream.height(), stream.channels());
    let expected = match pixel_format {
        PixelFormat::Gray => 1,
        PixelFormat::Graya => 2,
        PixelFormat::Rgb => 3,
        _ => 4,
    };
    if channels != expected {
        return Err(EngineError::Unsupported(format!(
            "JPEG XL image with {channels} channels is not supported"
        )));
    }
    let len = w as usize * h as usize * channels as usize;
    let short = || EngineError::Internal("JPEG XL pixel buffer size".to_string());
    if deep {
        let mut buf = vec![0u16; len];
        stream.write_to_buffer(&mut buf);
        return match channels {
            1 => ImageBuffer::<Luma<u16>, _>::from_raw(w, h, buf).map(DynamicImage::ImageLuma16),
            2 => ImageBuffer::<LumaA<u16>, _>::from_raw(w, h, buf).map(DynamicImage::ImageLumaA16),
            3 => ImageBuffer::<Rgb<u16>, _>::from_raw(w, h, buf).map(DynamicImage::ImageRgb16),
            _ => ImageBuffer::<Rgba<u16>, _>::from_raw(w, h, buf).map(DynamicImage::ImageRgba16),
        }
        .ok_or_else(short);
    }
    let mut buf = vec![0u8; len];
    stream.write_to_buffer(&mut buf);
    match channels {
        1 => ImageBuffer::<Luma<u8>, _>::from_raw(w, h, buf).map(DynamicImage::ImageLuma8),
        2 => ImageBuffer::<LumaA<u8>, _>::from_raw(w, h, buf).map(DynamicImage::ImageLumaA8),
        3 => ImageBuffer::<Rgb<u8>, _>::from_raw(w, h, buf).map(DynamicImage::ImageRgb8),
        _ => ImageBuffer::<Rgba<u8>, _>::from_raw(w, h, buf).map(DynamicImage::ImageRgba8),
    }
    .ok_or_else(short)
}

/// jxl-oxide's errors: allocation refusals are limits, the rest damage.
fn error(e: &(dyn std::error::Error + Send + Sync + 'static)) -> EngineError {
    let text = e.to_string();
    if text.contains("alloc") || text.contains("memory") {
        EngineError::TooLarge(
            "JPEG XL image needs more memory than the decoder limits allow".to_string(),
        )
    } else {
        EngineError::Corrupt(clip(format!("JPEG XL data could not be decoded: {text}")))
    }
}
