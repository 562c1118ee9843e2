//! Geometry ops: resize with fit and gravity, crop, rotate, pad, trim.
//!
//! Sizes are planned in integers first ([`plan_resize`]) so that the result
//! size is exact and testable without pixels, and so the output-size limit
//! can refuse an enlarging op before its buffer exists.

use std::sync::OnceLock;

use fast_image_resize::{FilterType, PixelComponentMapper, ResizeAlg, ResizeOptions, Resizer};
use image::{ColorType, DynamicImage, ImageBuffer, Pixel};

use crate::proto::{Color, Fit, Gravity};

use super::error::EngineError;
use super::pixel::{able_to_hold, map_buffer, pixel_of, read_rgba, write_rgba, Buf, Sample};
use super::smart;

/// What a resize does: scale to `scaled`, then (cover) cut a `crop` box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResizePlan {
    pub scaled: (u32, u32),
    pub crop: Option<(u32, u32)>,
}

/// round(a * b / c) in integers, at least 1.
fn scale(a: u64, b: u64, c: u64) -> u32 {
    u32::try_from((a * b + c / 2) / c.max(1))
        .unwrap_or(u32::MAX)
        .max(1)
}

/// The size a contain-resize produces, keeping the aspect ratio.
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

/// Plans a resize of a `src_w` x `src_h` image. See [`Fit`] for the modes;
/// with one side only, every fit behaves as `Contain`.
///
/// Without `enlarge` nothing is scaled up: `fill` and `cover` then keep the
/// box's aspect ratio at the largest size the source allows (a 100x100
/// thumbnail of a 60x80 image is 60x60), `outside` keeps the source size.
pub fn plan_resize(
    src_w: u32,
    src_h: u32,
    width: Option<u32>,
    height: Option<u32>,
    fit: Fit,
    enlarge: bool,
) -> Result<ResizePlan, EngineError> {
    let (tw, th) = match (width, height, fit) {
        (Some(tw), Some(th), Fit::Cover | Fit::Fill | Fit::Outside) if tw > 0 && th > 0 => (tw, th),
        _ => {
            let enlarge = enlarge && fit != Fit::Inside;
            let scaled = resize_target(src_w, src_h, width, height, enlarge)?;
            return Ok(ResizePlan { scaled, crop: None });
        }
    };
    let (sw, sh) = (u64::from(src_w.max(1)), u64::from(src_h.max(1)));
    let (tw64, th64) = (u64::from(tw), u64::from(th));
    // The box is relatively wider than the image: width decides the cover scale.
    let width_rules = tw64 * sh >= th64 * sw;
    let cover_scaled = if width_rules {
        (tw, scale(sh, tw64, sw).max(th))
    } else {
        (scale(sw, th64, sh).max(tw), th)
    };
    let enlarges = |(w, h): (u32, u32)| w > src_w || h > src_h;
    // The box shrunk to the largest size of its aspect ratio inside the source.
    let box_in_source = || {
        if width_rules {
            (src_w, scale(th64, sw, tw64).min(src_h))
        } else {
            (scale(tw64, sh, th64).min(src_w), src_h)
        }
    };
    Ok(match fit {
        Fit::Fill => {
            let scaled = if !enlarge && enlarges((tw, th)) {
                // Inside the source: the largest box of the same aspect.
                let f = (sw as f64 / tw64 as f64).min(sh as f64 / th64 as f64);
                (
                    ((tw64 as f64 * f).round() as u32).clamp(1, src_w.max(1)),
                    ((th64 as f64 * f).round() as u32).clamp(1, src_h.max(1)),
                )
            } else {
                (tw, th)
            };
            ResizePlan { scaled, crop: None }
        }
        Fit::Outside => {
            let scaled = if !enlarge && enlarges(cover_scaled) {
                (src_w, src_h)
            } else {
                cover_scaled
            };
            ResizePlan { scaled, crop: None }
        }
        // Cover (Contain and Inside returned above).
        _ => {
            if !enlarge && enlarges(cover_scaled) {
                ResizePlan {
                    scaled: (src_w, src_h),
                    crop: Some(box_in_source()),
                }
            } else {
                ResizePlan {
                    scaled: cover_scaled,
                    crop: Some((tw, th)),
                }
            }
        }
    })
}

/// Top-left corner of a `cw` x `ch` box placed in `image` by `gravity`.
pub fn place(image: &DynamicImage, cw: u32, ch: u32, gravity: Gravity) -> (u32, u32) {
    let (sx, sy) = (
        image.width().saturating_sub(cw),
        image.height().saturating_sub(ch),
    );
    let (cx, cy) = (sx / 2, sy / 2);
    match gravity {
        Gravity::Centre => (cx, cy),
        Gravity::North => (cx, 0),
        Gravity::South => (cx, sy),
        Gravity::East => (sx, cy),
        Gravity::West => (0, cy),
        Gravity::NorthEast => (sx, 0),
        Gravity::NorthWest => (0, 0),
        Gravity::SouthEast => (sx, sy),
        Gravity::SouthWest => (0, sy),
        Gravity::Smart => smart::best_window(image, cw, ch),
        Gravity::Focal { x, y } => (
            focal_start(image.width(), cw, x),
            focal_start(image.height(), ch, y),
        ),
    }
}

/// Start of a `window`-long span of a `len`-long side that centres the
/// point at `at` ten-thousandths of the side, moved inside the bounds.
fn focal_start(len: u32, window: u32, at: u16) -> u32 {
    let point = u64::from(len) * u64::from(at.min(10_000)) / 10_000;
    let start = point.saturating_sub(u64::from(window) / 2);
    let max = u64::from(len.saturating_sub(window));
    u32::try_from(start.min(max)).unwrap_or(0)
}

/// Lanczos3 convolution with SIMD (fast_image_resize), into a new image of
/// the same colour type. Alpha is premultiplied during the filter (the
/// crate's default) so transparent pixels do not bleed their colour.
pub fn resize(
    image: &DynamicImage,
    width: u32,
    height: u32,
    resizer: &mut Resizer,
) -> Result<DynamicImage, EngineError> {
    if (width, height) == (image.width(), image.height()) {
        return Ok(image.clone());
    }
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

/// The sRGB transfer function as lookup tables (stored values to linear
/// light and back, 8 and 16 bits), filled once per worker on first use:
/// about 200,000 evaluations, a few milliseconds, kept for every later
/// request instead of a `powf` per sample.
fn srgb_tables() -> &'static PixelComponentMapper {
    static TABLES: OnceLock<PixelComponentMapper> = OnceLock::new();
    TABLES.get_or_init(fast_image_resize::create_srgb_mapper)
}

/// [`resize`] in linear light (`linear=true`): the stored sRGB values are
/// decoded to light, scaled, and encoded again. A filter that averages
/// stored values darkens what mixes light and dark (one-pixel black and
/// white lines at half size come out 128, where their light averages to
/// 188); averaging light does not.
///
/// Light goes through 16 bits even for an 8-bit image: 8 linear bits
/// would band the shadows, where the sRGB curve spends most of its codes.
/// Alpha is not a colour and is not mapped; the resizer premultiplies by
/// it in linear light, as it does for stored values.
pub fn resize_linear(
    image: &DynamicImage,
    width: u32,
    height: u32,
    resizer: &mut Resizer,
) -> Result<DynamicImage, EngineError> {
    if (width, height) == (image.width(), image.height()) {
        return Ok(image.clone());
    }
    let tables = srgb_tables();
    let mapped = |e: fast_image_resize::MappingError| {
        EngineError::Internal(format!("linear-light conversion failed: {e}"))
    };
    // The 16-bit layout with the same channels; a float image goes
    // through RGBA16 and comes back as float.
    let (source, wide, back) = match image.color() {
        ColorType::L8 | ColorType::L16 => (None, ColorType::L16, image.color()),
        ColorType::La8 | ColorType::La16 => (None, ColorType::La16, image.color()),
        ColorType::Rgb8 | ColorType::Rgb16 => (None, ColorType::Rgb16, image.color()),
        ColorType::Rgba8 | ColorType::Rgba16 => (None, ColorType::Rgba16, image.color()),
        _ => (
            Some(DynamicImage::ImageRgba16(image.to_rgba16())),
            ColorType::Rgba16,
            ColorType::Rgba16,
        ),
    };
    let source = source.as_ref().unwrap_or(image);
    let mut light = DynamicImage::new(source.width(), source.height(), wide);
    tables.forward_map(source, &mut light).map_err(mapped)?;
    let scaled = resize(&light, width, height, resizer)?;
    drop(light);
    let mut out = DynamicImage::new(width, height, back);
    tables.backward_map(&scaled, &mut out).map_err(mapped)?;
    Ok(match image.color() {
        ColorType::Rgb32F => DynamicImage::ImageRgb32F(out.to_rgb32f()),
        ColorType::Rgba32F => DynamicImage::ImageRgba32F(out.to_rgba32f()),
        _ => out,
    })
}

/// Cuts the requested rectangle, clipped to the image.
pub fn crop(
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

/// An angle as a clockwise turn in `0.0..360.0`.
pub fn normalise_angle(angle: f32) -> f32 {
    let a = angle.rem_euclid(360.0);
    if a >= 360.0 {
        0.0
    } else {
        a
    }
}

/// The canvas a rotation by `angle` degrees (not a multiple of 90) needs to
/// hold the whole `w` x `h` image.
pub fn rotated_size(w: u32, h: u32, angle: f32) -> (u32, u32) {
    let (s, c) = f64::from(angle).to_radians().sin_cos();
    let (w, h) = (f64::from(w), f64::from(h));
    // The epsilon keeps float noise from adding a whole pixel.
    let nw = (w * c.abs() + h * s.abs() - 1e-6).ceil().max(1.0);
    let nh = (w * s.abs() + h * c.abs() - 1e-6).ceil().max(1.0);
    (nw as u32, nh as u32)
}

/// Rotates clockwise by any angle with bilinear sampling, into a canvas of
/// [`rotated_size`] whose uncovered corners are `background`. Samples are
/// blended with premultiplied alpha, so a transparent background does not
/// darken the edges.
pub fn rotate_any(
    image: DynamicImage,
    angle: f32,
    background: Color,
) -> Result<DynamicImage, EngineError> {
    let image = able_to_hold(image, background);
    Ok(map_buffer!(image, rotate_buf, angle, background))
}

fn rotate_buf<P>(buf: Buf<P>, angle: f32, background: Color) -> Result<Buf<P>, EngineError>
where
    P: Pixel,
    P::Subpixel: Sample,
{
    let n = usize::from(P::CHANNEL_COUNT);
    let (w, h) = buf.dimensions();
    let (nw, nh) = rotated_size(w, h, angle);
    let (s, c) = angle.to_radians().sin_cos();
    let bg = background.unit();
    let bg_pre = [bg[0] * bg[3], bg[1] * bg[3], bg[2] * bg[3], bg[3]];
    let raw: &[P::Subpixel] = &buf;
    let (wi, hi) = (w as i64, h as i64);
    // Premultiplied unit RGBA of source pixel (x, y), background outside.
    let tap = |x: i64, y: i64| -> [f32; 4] {
        if x < 0 || y < 0 || x >= wi || y >= hi {
            return bg_pre;
        }
        let i = (y as usize * w as usize + x as usize) * n;
        let p = read_rgba(&raw[i..i + n], n);
        [p[0] * p[3], p[1] * p[3], p[2] * p[3], p[3]]
    };
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let (ncx, ncy) = (nw as f32 / 2.0, nh as f32 / 2.0);
    let mut out: Buf<P> = ImageBuffer::new(nw, nh);
    let dst: &mut [P::Subpixel] = &mut out;
    for (i, px) in dst.chunks_exact_mut(n).enumerate() {
        let (x, y) = ((i % nw as usize) as f32, (i / nw as usize) as f32);
        let (dx, dy) = (x + 0.5 - ncx, y + 0.5 - ncy);
        // Inverse of the clockwise rotation (y points down).
        let sx = dx * c + dy * s + cx - 0.5;
        let sy = -dx * s + dy * c + cy - 0.5;
        let (x0, y0) = (sx.floor(), sy.floor());
        let (fx, fy) = (sx - x0, sy - y0);
        let (x0, y0) = (x0 as i64, y0 as i64);
        let (a, b, cc, d) = (
            tap(x0, y0),
            tap(x0 + 1, y0),
            tap(x0, y0 + 1),
            tap(x0 + 1, y0 + 1),
        );
        let mut v = [0f32; 4];
        for k in 0..4 {
            let top = a[k] + (b[k] - a[k]) * fx;
            let bottom = cc[k] + (d[k] - cc[k]) * fx;
            v[k] = top + (bottom - top) * fy;
        }
        let alpha = v[3];
        let straight = if alpha > 0.0 {
            [v[0] / alpha, v[1] / alpha, v[2] / alpha, alpha]
        } else {
            [0.0; 4]
        };
        write_rgba(px, n, straight);
    }
    Ok(out)
}

/// Borders of the given widths filled with `background`.
pub fn pad(
    image: DynamicImage,
    (top, right, bottom, left): (u32, u32, u32, u32),
    background: Color,
) -> Result<DynamicImage, EngineError> {
    if top == 0 && right == 0 && bottom == 0 && left == 0 {
        return Ok(image);
    }
    let image = able_to_hold(image, background);
    Ok(map_buffer!(
        image, pad_buf, top, right, bottom, left, background
    ))
}

fn pad_buf<P>(
    buf: Buf<P>,
    top: u32,
    right: u32,
    bottom: u32,
    left: u32,
    background: Color,
) -> Result<Buf<P>, EngineError>
where
    P: Pixel,
    P::Subpixel: Sample,
{
    let (w, h) = buf.dimensions();
    let grow = |a: u32, b: u32, c: u32| {
        a.checked_add(b)
            .and_then(|v| v.checked_add(c))
            .ok_or_else(|| EngineError::TooLarge("padded image is too large".to_string()))
    };
    let (nw, nh) = (grow(w, left, right)?, grow(h, top, bottom)?);
    let mut out: Buf<P> = ImageBuffer::from_pixel(nw, nh, pixel_of::<P>(background));
    image::imageops::replace(&mut out, &buf, i64::from(left), i64::from(top));
    Ok(out)
}

/// The smallest rectangle `(x, y, w, h)` holding every pixel that differs
/// from the top-left pixel by more than `threshold` (0..=255) in any
/// channel; `None` when the image is uniform.
pub fn trim_box(image: &DynamicImage, threshold: u8) -> Option<(u32, u32, u32, u32)> {
    let t = f32::from(threshold) / 255.0 + 1e-4;
    match image {
        DynamicImage::ImageLuma8(b) => trim_box_buf(b, t),
        DynamicImage::ImageLumaA8(b) => trim_box_buf(b, t),
        DynamicImage::ImageRgb8(b) => trim_box_buf(b, t),
        DynamicImage::ImageRgba8(b) => trim_box_buf(b, t),
        DynamicImage::ImageLuma16(b) => trim_box_buf(b, t),
        DynamicImage::ImageLumaA16(b) => trim_box_buf(b, t),
        DynamicImage::ImageRgb16(b) => trim_box_buf(b, t),
        DynamicImage::ImageRgba16(b) => trim_box_buf(b, t),
        DynamicImage::ImageRgb32F(b) => trim_box_buf(b, t),
        DynamicImage::ImageRgba32F(b) => trim_box_buf(b, t),
        other => trim_box_buf(&other.to_rgba8(), t),
    }
}

fn trim_box_buf<P>(buf: &Buf<P>, t: f32) -> Option<(u32, u32, u32, u32)>
where
    P: Pixel,
    P::Subpixel: Sample,
{
    let n = usize::from(P::CHANNEL_COUNT);
    let (w, h) = (buf.width() as usize, buf.height() as usize);
    let raw: &[P::Subpixel] = buf;
    if raw.len() < n {
        return None;
    }
    let reference = read_rgba(&raw[..n], n);
    let differs = |x: usize, y: usize| {
        let i = (y * w + x) * n;
        let p = read_rgba(&raw[i..i + n], n);
        // Fully transparent pixels match each other whatever colour they hold.
        if p[3] == 0.0 && reference[3] == 0.0 {
            return false;
        }
        p.iter().zip(reference).any(|(a, b)| (a - b).abs() > t)
    };
    let row_has = |y: usize| (0..w).any(|x| differs(x, y));
    let col_has = |x: usize, y0: usize, y1: usize| (y0..y1).any(|y| differs(x, y));
    let top = (0..h).find(|&y| row_has(y))?;
    let bottom = (top..h).rev().find(|&y| row_has(y)).unwrap_or(top);
    let left = (0..w).find(|&x| col_has(x, top, bottom + 1)).unwrap_or(0);
    let right = (left..w)
        .rev()
        .find(|&x| col_has(x, top, bottom + 1))
        .unwrap_or(left);
    Some((
        left as u32,
        top as u32,
        (right - left + 1) as u32,
        (bottom - top + 1) as u32,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(w: u32, h: u32, tw: u32, th: u32, fit: Fit, enlarge: bool) -> ResizePlan {
        plan_resize(w, h, Some(tw), Some(th), fit, enlarge).expect("plan")
    }

    #[test]
    fn fits_plan_exact_sizes() {
        // 800x533 into 400x400.
        let p = plan(800, 533, 400, 400, Fit::Contain, false);
        assert_eq!(
            p,
            ResizePlan {
                scaled: (400, 267),
                crop: None
            }
        );
        let p = plan(800, 533, 400, 400, Fit::Cover, false);
        assert_eq!(
            p,
            ResizePlan {
                scaled: (600, 400),
                crop: Some((400, 400))
            }
        );
        let p = plan(800, 533, 400, 400, Fit::Fill, false);
        assert_eq!(
            p,
            ResizePlan {
                scaled: (400, 400),
                crop: None
            }
        );
        let p = plan(800, 533, 400, 400, Fit::Outside, false);
        assert_eq!(
            p,
            ResizePlan {
                scaled: (600, 400),
                crop: None
            }
        );
        let p = plan(800, 533, 400, 400, Fit::Inside, true);
        assert_eq!(
            p,
            ResizePlan {
                scaled: (400, 267),
                crop: None
            }
        );
        // Enlarging only when asked; inside never.
        assert_eq!(plan(100, 50, 400, 400, Fit::Inside, true).scaled, (100, 50));
        assert_eq!(
            plan(100, 50, 400, 400, Fit::Contain, true).scaled,
            (400, 200)
        );
        assert_eq!(
            plan(100, 50, 400, 400, Fit::Outside, false).scaled,
            (100, 50)
        );
        assert_eq!(
            plan(100, 50, 400, 400, Fit::Outside, true).scaled,
            (800, 400)
        );
        // Cover without enlarge: the box's aspect at the source's scale.
        let p = plan(60, 80, 100, 100, Fit::Cover, false);
        assert_eq!(
            p,
            ResizePlan {
                scaled: (60, 80),
                crop: Some((60, 60))
            }
        );
        let p = plan(60, 80, 100, 100, Fit::Cover, true);
        assert_eq!(
            p,
            ResizePlan {
                scaled: (100, 133),
                crop: Some((100, 100))
            }
        );
        // Fill without enlarge shrinks the box into the source.
        assert_eq!(plan(100, 100, 200, 100, Fit::Fill, false).scaled, (100, 50));
        // One side: every fit is contain.
        let p = plan_resize(800, 533, Some(400), None, Fit::Cover, false).expect("plan");
        assert_eq!(
            p,
            ResizePlan {
                scaled: (400, 267),
                crop: None
            }
        );
    }

    #[test]
    fn gravity_places_the_box() {
        let img = DynamicImage::new_rgb8(100, 50);
        assert_eq!(place(&img, 50, 50, Gravity::Centre), (25, 0));
        assert_eq!(place(&img, 50, 50, Gravity::East), (50, 0));
        assert_eq!(place(&img, 50, 50, Gravity::West), (0, 0));
        assert_eq!(place(&img, 50, 20, Gravity::SouthEast), (50, 30));
        assert_eq!(place(&img, 50, 20, Gravity::North), (25, 0));
        // The focal point is centred where the bounds allow.
        let focal = |x, y| Gravity::Focal { x, y };
        assert_eq!(place(&img, 50, 20, focal(5_000, 5_000)), (25, 15));
        assert_eq!(place(&img, 50, 20, focal(0, 0)), (0, 0));
        assert_eq!(place(&img, 50, 20, focal(10_000, 10_000)), (50, 30));
        assert_eq!(place(&img, 50, 20, focal(2_000, 8_000)), (0, 30));
        assert_eq!(place(&img, 50, 20, focal(6_000, 4_000)), (35, 10));
    }

    #[test]
    fn rotation_canvas_holds_the_image() {
        assert_eq!(rotated_size(100, 50, 45.0), (107, 107));
        assert_eq!(rotated_size(100, 50, 30.0), (112, 94));
        let out = rotate_any(DynamicImage::new_rgb8(100, 50), 30.0, Color::WHITE).expect("rotate");
        assert_eq!((out.width(), out.height()), (112, 94));
        // Opaque white corners, colour kept as RGB.
        let rgb = out.as_rgb8().expect("rgb stays rgb");
        assert_eq!(rgb.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(rgb.get_pixel(56, 47).0, [0, 0, 0]);
        // A transparent background adds alpha.
        let out =
            rotate_any(DynamicImage::new_rgb8(10, 10), 10.0, Color::TRANSPARENT).expect("rotate");
        assert!(out.color().has_alpha());
    }

    #[test]
    fn trim_finds_the_content() {
        let mut img = image::RgbImage::from_pixel(50, 40, image::Rgb([250, 250, 250]));
        for y in 10..20 {
            for x in 5..30 {
                img.put_pixel(x, y, image::Rgb([10, 20, 30]));
            }
        }
        img.put_pixel(0, 39, image::Rgb([245, 250, 250]));
        let d = DynamicImage::ImageRgb8(img);
        assert_eq!(trim_box(&d, 10), Some((5, 10, 25, 10)));
        assert_eq!(trim_box(&d, 0), Some((0, 10, 30, 30)));
        let flat = DynamicImage::new_rgb8(5, 5);
        assert_eq!(trim_box(&flat, 0), None);
    }

    #[test]
    fn pad_grows_with_background() {
        let img = DynamicImage::new_luma8(10, 10);
        let out = pad(img, (1, 2, 3, 4), Color::rgba(255, 0, 0, 255)).expect("pad");
        assert_eq!((out.width(), out.height()), (16, 14));
        let rgb = out.to_rgb8();
        assert_eq!(rgb.get_pixel(0, 0).0, [255, 0, 0]);
        assert_eq!(rgb.get_pixel(4, 1).0, [0, 0, 0]);
    }
}
