//! The pixel operations, applied in request order to every frame.
//!
//! Each op works on a `DynamicImage` so stills keep their colour type (16-bit
//! stays 16-bit, grey stays grey where the op allows). Animation frames are
//! RGBA8 canvases; they are wrapped as `DynamicImage::ImageRgba8` and
//! converted back afterwards, so every frame of an animation goes through
//! exactly the same code as a still, and keeps its delay.
//!
//! Ops whose geometry depends on the content (`trim`, `gravity=smart`) must
//! give every frame of an animation the same size and position, or the
//! frames would no longer line up: `trim` cuts the union of every frame's
//! box, and a smart crop window is chosen on the first frame and reused.

use fast_image_resize::Resizer;
use image::{DynamicImage, RgbaImage};

use crate::proto::{Fit, Gravity, Limits, Op};

use super::decode::{AnimFrame, Animation, Content};
use super::effects;
use super::error::EngineError;
use super::geometry::{self, normalise_angle, plan_resize, rotated_size};
use super::limits::check_output;
use super::overlay::{self, Placement};
use super::Tuning;

/// State one op carries from frame to frame of an animation.
#[derive(Default)]
struct FrameCtx {
    /// Crop corner chosen (by gravity) on the first frame.
    anchor: Option<(u32, u32)>,
    /// `trim`: the union box over all frames, computed before the first.
    trim: Option<Option<(u32, u32, u32, u32)>>,
    /// The size a resize plans from, and a blur returns, when the picture
    /// was shrunk on load (the source's real upright size), so the result
    /// has exactly the size a full-size decode would give.
    source: Option<(u32, u32)>,
    /// `overlay`: its image sized for this picture (frames share a size).
    overlay: Option<RgbaImage>,
    tuning: Tuning,
}

/// Applies `ops` (no `Info`, no test ops) to every frame of `content`.
/// `overlays` are the decoded images of the `overlay` ops, in op order.
/// `source` is the upright size of the source image, which a still may
/// be smaller than when it was shrunk on load.
pub fn apply(
    content: Content,
    ops: &[&Op],
    overlays: Vec<RgbaImage>,
    limits: &Limits,
    source: (u32, u32),
    tuning: &Tuning,
) -> Result<Content, EngineError> {
    let mut resizer = Resizer::new();
    let tuning = *tuning;
    let mut overlays = overlays.into_iter();
    // The next overlay op's image, sized for a picture `width` wide.
    let mut sized_overlay = |op: &Op, width: u32, resizer: &mut Resizer| match op {
        Op::Overlay { scale, .. } => match overlays.next() {
            Some(image) => overlay::sized(image, *scale, width, limits, resizer).map(Some),
            None => Err(EngineError::Internal(
                "an overlay op without its image".to_string(),
            )),
        },
        _ => Ok(None),
    };
    match content {
        Content::Still(mut image) => {
            let shrunk = (image.width(), image.height()) != source;
            for (i, op) in ops.iter().enumerate() {
                let mut ctx = FrameCtx {
                    source: (i == 0 && shrunk).then_some(source),
                    overlay: sized_overlay(op, image.width(), &mut resizer)?,
                    tuning,
                    ..FrameCtx::default()
                };
                image = apply_op(image, op, 1, limits, &mut resizer, &mut ctx)?;
            }
            Ok(Content::Still(image))
        }
        Content::Animation(Animation {
            mut frames,
            loop_count,
        }) => {
            let count = frames.len() as u64;
            for op in ops {
                let width = frames.first().map_or(0, |f| f.image.width());
                let mut ctx = FrameCtx {
                    overlay: sized_overlay(op, width, &mut resizer)?,
                    tuning,
                    ..FrameCtx::default()
                };
                if let Op::Trim { threshold } = op {
                    ctx.trim = Some(union_trim_box(&frames, *threshold));
                }
                frames = frames
                    .into_iter()
                    .map(|frame| {
                        let image = DynamicImage::ImageRgba8(frame.image);
                        let image = apply_op(image, op, count, limits, &mut resizer, &mut ctx)?;
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

/// The smallest box holding every frame's content (frames are compared with
/// their own top-left pixel, as a still would be).
fn union_trim_box(frames: &[AnimFrame], threshold: u8) -> Option<(u32, u32, u32, u32)> {
    let mut union: Option<(u32, u32, u32, u32)> = None;
    for frame in frames {
        let image = DynamicImage::ImageRgba8(frame.image.clone());
        if let Some((x, y, w, h)) = geometry::trim_box(&image, threshold) {
            union = Some(match union {
                None => (x, y, x + w, y + h),
                Some((x0, y0, x1, y1)) => (x0.min(x), y0.min(y), x1.max(x + w), y1.max(y + h)),
            });
        }
    }
    union.map(|(x0, y0, x1, y1)| (x0, y0, x1 - x0, y1 - y0))
}

/// One op on one picture. `frames` is the frame count of the whole image,
/// for the output-size check of ops that grow the canvas.
fn apply_op(
    image: DynamicImage,
    op: &Op,
    frames: u64,
    limits: &Limits,
    resizer: &mut Resizer,
    ctx: &mut FrameCtx,
) -> Result<DynamicImage, EngineError> {
    match *op {
        Op::Resize {
            width,
            height,
            fit,
            gravity,
            enlarge,
            linear,
        } => resize(
            image,
            (width, height, fit, gravity, enlarge),
            linear.unwrap_or(false),
            frames,
            limits,
            resizer,
            ctx,
        ),
        Op::Thumbnail {
            width,
            height,
            gravity,
            linear,
        } => resize(
            image,
            (Some(width), Some(height), Fit::Cover, gravity, false),
            linear.unwrap_or(false),
            frames,
            limits,
            resizer,
            ctx,
        ),
        Op::Blur { sigma } => {
            let size = ctx.source.unwrap_or((image.width(), image.height()));
            effects::blur_to(&image, sigma, ctx.tuning.fast_blur, size)
        }
        Op::Sharpen {
            sigma,
            amount,
            threshold,
        } => effects::sharpen(image, sigma, amount, threshold, ctx.tuning.fast_blur),
        Op::Pixelate { size } => effects::pixelate(image, size),
        Op::Grayscale => Ok(image.grayscale()),
        Op::Invert => effects::invert(image),
        Op::Brightness { value } => effects::brightness(image, value),
        Op::Contrast { value } => effects::contrast(image, value),
        Op::Hue { degrees } => effects::hue(image, degrees),
        Op::Saturation { factor } => effects::saturation(image, factor),
        Op::Sepia => effects::sepia(image),
        Op::Threshold { value } => effects::threshold(image, value),
        Op::Background { color } => effects::background(image, color),
        Op::Rotate { angle, background } => {
            if !angle.is_finite() {
                return Err(EngineError::BadParameter(format!(
                    "rotate angle must be a number, not {angle}"
                )));
            }
            let a = normalise_angle(angle);
            if a == 0.0 {
                Ok(image)
            } else if a == 90.0 {
                Ok(image.rotate90())
            } else if a == 180.0 {
                Ok(image.rotate180())
            } else if a == 270.0 {
                Ok(image.rotate270())
            } else {
                let (w, h) = rotated_size(image.width(), image.height(), a);
                check_output(w, h, frames, limits)?;
                geometry::rotate_any(image, a, background)
            }
        }
        Op::Flip => Ok(image.flipv()),
        Op::Flop => Ok(image.fliph()),
        Op::Crop {
            x,
            y,
            width,
            height,
        } => geometry::crop(image, x, y, width, height),
        Op::Pad {
            top,
            right,
            bottom,
            left,
            background,
        } => {
            let grown = |a: u32, b: u32, c: u32| a.saturating_add(b).saturating_add(c);
            check_output(
                grown(image.width(), left, right),
                grown(image.height(), top, bottom),
                frames,
                limits,
            )?;
            geometry::pad(image, (top, right, bottom, left), background)
        }
        Op::Trim { threshold } => {
            let found = match ctx.trim {
                Some(b) => b,
                None => geometry::trim_box(&image, threshold),
            };
            match found {
                Some((x, y, w, h)) => geometry::crop(image, x, y, w, h),
                None => Ok(image),
            }
        }
        Op::Overlay {
            gravity,
            x,
            y,
            opacity,
            tile,
            ..
        } => match &ctx.overlay {
            Some(over) => overlay::composite(
                image,
                over,
                &Placement {
                    gravity,
                    x,
                    y,
                    opacity,
                    tile,
                },
            ),
            None => Err(EngineError::Internal(
                "an overlay op without its image".to_string(),
            )),
        },
        Op::Convert => Ok(image),
        Op::Info
        | Op::TestSleep { .. }
        | Op::TestPanic
        | Op::TestAbort
        | Op::TestSegv
        | Op::TestOpenFile
        | Op::TestSocket
        | Op::TestKillMaster => Err(EngineError::Internal(format!(
            "op {} cannot be applied to pixels",
            op.name()
        ))),
    }
}

/// `resize` and `thumbnail`: plan, check the output size, scale (in
/// linear light when `linear`), then cut the cover box at its gravity
/// (chosen once per animation).
fn resize(
    image: DynamicImage,
    (width, height, fit, gravity, enlarge): (Option<u32>, Option<u32>, Fit, Gravity, bool),
    linear: bool,
    frames: u64,
    limits: &Limits,
    resizer: &mut Resizer,
    ctx: &mut FrameCtx,
) -> Result<DynamicImage, EngineError> {
    let (sw, sh) = ctx.source.unwrap_or((image.width(), image.height()));
    let plan = plan_resize(sw, sh, width, height, fit, enlarge)?;
    let (w, h) = plan.scaled;
    check_output(w, h, frames, limits)?;
    let scaled = if (w, h) == (image.width(), image.height()) {
        image
    } else if linear {
        geometry::resize_linear(&image, w, h, resizer)?
    } else {
        geometry::resize(&image, w, h, resizer)?
    };
    let Some((cw, ch)) = plan.crop else {
        return Ok(scaled);
    };
    if (cw, ch) == (w, h) {
        return Ok(scaled);
    }
    let (x, y) = match ctx.anchor {
        Some(anchor) => anchor,
        None => {
            let anchor = geometry::place(&scaled, cw, ch, gravity);
            ctx.anchor = Some(anchor);
            anchor
        }
    };
    Ok(scaled.crop_imm(x, y, cw, ch))
}
