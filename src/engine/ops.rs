//! The pixel operations, applied in request order to every frame.
//!
//! Each op works on a `DynamicImage` so stills keep their colour type (16-bit
//! stays 16-bit, grey stays grey). Animation frames are RGBA8 canvases; they
//! are wrapped as `DynamicImage::ImageRgba8` and converted back afterwards, so
//! every frame of an animation goes through exactly the same code as a still.

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::DynamicImage;

use crate::proto::{Limits, Op};

use super::decode::{AnimFrame, Animation, Content};
use super::error::EngineError;
use super::limits::check_output;

/// Applies `ops` (no `Info`, no test ops) to every frame of `content`.
pub fn apply(content: Content, ops: &[&Op], limits: &Limits) -> Result<Content, EngineError> {
    let mut resizer = Resizer::new();
    match content {
        Content::Still(mut image) => {
            for op in ops {
                image = apply_op(image, op, 1, limits, &mut resizer)?;
            }
            Ok(Content::Still(image))
        }
        Content::Animation(Animation {
            mut frames,
            loop_count,
        }) => {
            let count = frames.len() as u64;
            for op in ops {
                frames = frames
                    .into_iter()
                    .map(|frame| {
                        let image = DynamicImage::ImageRgba8(frame.image);
                        let image = apply_op(image, op, count, limits, &mut resizer)?;
                        Ok(AnimFrame {
                            image: image.into_rgba8(),
                            delay_ms: frame.delay_ms,
                        })
                    })
                    .collect::<Result<Vec<_>, EngineError>>()?;
            }
            Ok(Content::Animation(Animation { frames, loop_count }))
        }
    }
}

/// One op on one picture. `frames` is the frame count of the whole image,
/// for the output-size check of resizes.
fn apply_op(
    image: DynamicImage,
    op: &Op,
    frames: u64,
    limits: &Limits,
    resizer: &mut Resizer,
) -> Result<DynamicImage, EngineError> {
    match *op {
        Op::Resize {
            width,
            height,
            enlarge,
        } => {
            let (w, h) = resize_target(image.width(), image.height(), width, height, enlarge)?;
            if (w, h) == (image.width(), image.height()) {
                return Ok(image);
            }
            check_output(w, h, frames, limits)?;
            resize(&image, w, h, resizer)
        }
        Op::Blur { sigma } => blur(&image, sigma),
        Op::Grayscale => Ok(image.grayscale()),
        Op::Rotate { angle } => match angle {
            90 => Ok(image.rotate90()),
            180 => Ok(image.rotate180()),
            270 => Ok(image.rotate270()),
            other => Err(EngineError::BadParameter(format!(
                "rotate angle must be 90, 180 or 270, not {other}"
            ))),
        },
        Op::Flip => Ok(image.flipv()),
        Op::Flop => Ok(image.fliph()),
        Op::Crop {
            x,
            y,
            width,
            height,
        } => crop(image, x, y, width, height),
        Op::Convert => Ok(image),
        Op::Info
        | Op::TestSleep { .. }
        | Op::TestPanic
        | Op::TestAbort
        | Op::TestSegv
        | Op::TestOpenFile
        | Op::TestSocket => Err(EngineError::Internal(format!(
            "op {} cannot be applied to pixels",
            op.name()
        ))),
    }
}

/// The size a resize produces, keeping the aspect ratio.
///
/// One side given: the other follows, rounded. Both: the largest size that
/// fits inside the box. Never a 0-pixel side (a 940x2 strip scaled down must
/// stay at least 1 pixel tall). Without `enlarge` a target larger than the
/// source keeps the source size: upscaling only adds blur and bytes.
pub fn resize_target(
    src_w: u32,
    src_h: u32,
    width: Option<u32>,
    height: Option<u32>,
    enlarge: bool,
) -> Result<(u32, u32), EngineError> {
    if width == Some(0) || height == Some(0) {
        return Err(EngineError::BadParameter(
            "resize width and height must be at least 1".to_string(),
        ));
    }
    let (sw, sh) = (u64::from(src_w.max(1)), u64::from(src_h.max(1)));
    // round(a * b / c) in integers.
    let scale = |a: u64, b: u64, c: u64| -> u32 {
        u32::try_from((a * b + c / 2) / c)
            .unwrap_or(u32::MAX)
            .max(1)
    };
    let (w, h) = match (width, height) {
        (Some(tw), None) => (tw, scale(sh, u64::from(tw), sw)),
        (None, Some(th)) => (scale(sw, u64::from(th), sh), th),
        (Some(tw), Some(th)) => {
            let (tw64, th64) = (u64::from(tw), u64::from(th));
            // Width is the limiting side iff tw/sw <= th/sh.
            if tw64 * sh <= th64 * sw {
                (tw, scale(sh, tw64, sw).min(th))
            } else {
                (scale(sw, th64, sh).min(tw), th)
            }
        }
        (None, None) => {
            return Err(EngineError::BadParameter(
                "resize needs a width, a height or both".to_string(),
            ))
        }
    };
    if !enlarge && (w > src_w || h > src_h) {
        return Ok((src_w, src_h));
    }
    Ok((w, h))
}

/// Lanczos3 convolution with SIMD (fast_image_resize), into a new image of
/// the same colour type. Alpha is premultiplied during the filter (the
/// crate's default) so transparent pixels do not bleed their colour.
fn resize(
    image: &DynamicImage,
    width: u32,
    height: u32,
    resizer: &mut Resizer,
) -> Result<DynamicImage, EngineError> {
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    let mut dst = DynamicImage::new(width, height, image.color());
    match resizer.resize(image, &mut dst, &options) {
        Ok(()) => Ok(dst),
        // A colour type fast_image_resize does not know: go through RGBA8.
        Err(fast_image_resize::ResizeError::ImageError(_))
        | Err(fast_image_resize::ResizeError::PixelTypesAreDifferent) => {
            let src = DynamicImage::ImageRgba8(image.to_rgba8());
            let mut dst = DynamicImage::new(width, height, src.color());
            resizer
                .resize(&src, &mut dst, &options)
                .map_err(|e| EngineError::Internal(format!("resize failed: {e}")))?;
            Ok(dst)
        }
        Err(e) => Err(EngineError::Internal(format!("resize failed: {e}"))),
    }
}

/// Box-blur approximation of a gaussian (`fast_blur`): its cost does not grow
/// with sigma, so a large sigma cannot be used to burn CPU.
fn blur(image: &DynamicImage, sigma: f32) -> Result<DynamicImage, EngineError> {
    if !sigma.is_finite() || sigma <= 0.0 {
        return Err(EngineError::BadParameter(format!(
            "blur sigma must be a positive number, not {sigma}"
        )));
    }
    // Beyond the image size more blur changes nothing visible, and the
    // crate's window set-up is linear in the radius (and panics on absurd
    // radii), so clamp.
    let cap = image.width().max(image.height()).max(1) as f32;
    Ok(image.fast_blur(sigma.min(cap)))
}

/// Cuts the requested rectangle, clipped to the image.
fn crop(
    image: DynamicImage,
    x: u32,
    y: u32,
    width: u32,
    height: u32,
) -> Result<DynamicImage, EngineError> {
    let (w, h) = (image.width(), image.height());
    if x >= w || y >= h {
        return Err(EngineError::BadParameter(format!(
            "crop origin ({x},{y}) is outside the {w}x{h} image"
        )));
    }
    if width == 0 || height == 0 {
        return Err(EngineError::BadParameter(
            "crop width and height must be at least 1".to_string(),
        ));
    }
    let cw = width.min(w - x);
    let ch = height.min(h - y);
    if (x, y, cw, ch) == (0, 0, w, h) {
        return Ok(image);
    }
    Ok(image.crop_imm(x, y, cw, ch))
}
