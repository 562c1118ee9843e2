//! AVIF output: ravif over rav1e, pure Rust, single-threaded (built
//! without its thread pool, as the sandbox wants).
//!
//! `quality` (1-100) is ravif's quality scale, which tracks JPEG's;
//! `effort` (0-9, as sharp names it) maps to rav1e's speed presets 10..1:
//! more effort, smaller files, more time. 8-bit 4:4:4 YCbCr; alpha, when the
//! picture has any, is its own AV1 image at the same quality. Stills only:
//! an animation written as AVIF keeps its first frame.

use image::DynamicImage;
use ravif::{BitDepth, Encoder, Img, RGB8, RGBA8};

use crate::proto::OutputFormat;

use super::error::EngineError;

/// The largest side rav1e takes (AV1's frame size fields allow 65536).
pub const MAX_SIDE: u32 = 65536;

pub fn encode(image: DynamicImage, quality: u8, effort: u8) -> Result<Vec<u8>, EngineError> {
    let speed = 10u8.saturating_sub(effort.min(9)).max(1);
    let encoder = Encoder::new()
        .with_quality(f32::from(quality.clamp(1, 100)))
        .with_alpha_quality(f32::from(quality.clamp(1, 100)))
        .with_speed(speed)
        .with_bit_depth(BitDepth::Eight)
        // One thread, named: left at "all cores", ravif asks
        // available_parallelism(), which reads cgroup files the sandbox
        // refuses to open.
        .with_num_threads(Some(1));
    let (w, h) = (image.width() as usize, image.height() as usize);
    let fail = |e: ravif::Error| EngineError::encoding(e, OutputFormat::Avif);
    let encoded = if image.color().has_alpha() {
        let rgba = image.into_rgba8();
        let pixels: Vec<RGBA8> = rgba
            .as_raw()
            .chunks_exact(4)
            .map(|p| RGBA8::new(p[0], p[1], p[2], p[3]))
            .collect();
        encoder
            .encode_rgba(Img::new(pixels.as_slice(), w, h))
            .map_err(fail)?
    } else {
        let rgb = image.into_rgb8();
        let pixels: Vec<RGB8> = rgb
            .as_raw()
            .chunks_exact(3)
            .map(|p| RGB8::new(p[0], p[1], p[2]))
            .collect();
        encoder
            .encode_rgb(Img::new(pixels.as_slice(), w, h))
            .map_err(fail)?
    };
    Ok(encoded.avif_file)
}
