//! `overlay`: another image (a watermark, a badge, a frame) composited onto
//! the picture, in the base's own colour type and depth.
//!
//! The overlay is decoded once per request (by the engine, under the same
//! limits as the input), resized once when `scale` asks for it, and then
//! drawn onto every frame of an animation the same way. Compositing is
//! Porter-Duff "source over" in straight alpha on unit floats, so an opaque
//! base stays opaque (its alpha channel is not added) and a translucent one
//! keeps its transparency where the overlay does not cover it.

use fast_image_resize::Resizer;
use image::{DynamicImage, Pixel, RgbaImage};

use crate::proto::{Gravity, Limits};

use super::error::EngineError;
use super::geometry;
use super::pixel::{map_buffer, read_rgba, to_colour, write_rgba, Buf, Sample};

/// Where and how one overlay is drawn (the op's fields, checked).
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    pub gravity: Gravity,
    pub x: i32,
    pub y: i32,
    pub opacity: f32,
    pub tile: bool,
}

/// The overlay as it will be drawn on a base `base_width` wide: resized to
/// `scale` x that width (aspect ratio kept, at least one pixel), or as is.
/// The resized size is checked against the pixel limit before anything is
/// allocated: a tall, thin overlay scaled to a wide base could otherwise
/// ask for billions of pixels.
pub fn sized(
    overlay: RgbaImage,
    scale: Option<f32>,
    base_width: u32,
    limits: &Limits,
    resizer: &mut Resizer,
) -> Result<RgbaImage, EngineError> {
    let Some(scale) = scale else {
        return Ok(overlay);
    };
    let (ow, oh) = overlay.dimensions();
    let w = (f64::from(base_width) * f64::from(scale)).round().max(1.0);
    let h = (f64::from(oh) * w / f64::from(ow.max(1))).round().max(1.0);
    if w * h > limits.max_pixels as f64 || h > f64::from(u32::MAX) {
        return Err(EngineError::TooLarge(format!(
            "overlay scaled to {w} x {h} pixels is over the limit of {} pixels",
            limits.max_pixels
        )));
    }
    let src = DynamicImage::ImageRgba8(overlay);
    Ok(geometry::resize(&src, w as u32, h as u32, resizer)?.into_rgba8())
}

/// Draws `overlay` (already sized) onto `base` as `at` says.
pub fn composite(
    base: DynamicImage,
    overlay: &RgbaImage,
    at: &Placement,
) -> Result<DynamicImage, EngineError> {
    if !at.opacity.is_finite() || !(0.0..=1.0).contains(&at.opacity) {
        return Err(EngineError::BadParameter(format!(
            "overlay opacity must be from 0 to 1, not {}",
            at.opacity
        )));
    }
    if matches!(at.gravity, Gravity::Smart | Gravity::Focal { .. }) {
        return Err(EngineError::BadParameter(
            "overlay gravity must be a position (centre or a compass point)".to_string(),
        ));
    }
    let origin = origin((base.width(), base.height()), overlay.dimensions(), at);
    // A colour overlay needs colour channels; depth and alpha are kept.
    let base = to_colour(base);
    Ok(map_buffer!(
        base, draw, overlay, origin, at.tile, at.opacity
    ))
}

/// The top-left corner (which may lie outside the base) of the overlay;
/// with `tile`, of the one copy of the grid that all others line up with.
fn origin(base: (u32, u32), over: (u32, u32), at: &Placement) -> (i64, i64) {
    let (bw, bh) = (i64::from(base.0), i64::from(base.1));
    let (ow, oh) = (i64::from(over.0), i64::from(over.1));
    // Offsets move inwards from the edges the gravity names: right from a
    // west edge, left from an east one, right (down) from the centre.
    let along = |len: i64, size: i64, offset: i64, edge: Edge| match edge {
        Edge::Start => offset,
        Edge::Middle => (len - size) / 2 + offset,
        Edge::End => len - size - offset,
    };
    let (ex, ey) = edges(at.gravity);
    (
        along(bw, ow, i64::from(at.x), ex),
        along(bh, oh, i64::from(at.y), ey),
    )
}

#[derive(Clone, Copy)]
enum Edge {
    Start,
    Middle,
    End,
}

/// Which edge each axis of a gravity names.
fn edges(gravity: Gravity) -> (Edge, Edge) {
    use Edge::{End, Middle, Start};
    match gravity {
        Gravity::North => (Middle, Start),
        Gravity::South => (Middle, End),
        Gravity::East => (End, Middle),
        Gravity::West => (Start, Middle),
        Gravity::NorthEast => (End, Start),
        Gravity::NorthWest => (Start, Start),
        Gravity::SouthEast => (End, End),
        Gravity::SouthWest => (Start, End),
        Gravity::Centre | Gravity::Smart | Gravity::Focal { .. } => (Middle, Middle),
    }
}

/// Source-over of `over` placed at `origin` onto `buf`, clipped to it;
/// with `tile` repeated in a grid through `origin` over the whole base (each
/// base pixel reads the overlay pixel at its offset modulo the overlay's
/// size, so the work is one pass over the base however small the tile).
fn draw<P>(
    mut buf: Buf<P>,
    over: &RgbaImage,
    origin: (i64, i64),
    tile: bool,
    opacity: f32,
) -> Result<Buf<P>, EngineError>
where
    P: Pixel,
    P::Subpixel: Sample,
{
    let n = usize::from(P::CHANNEL_COUNT);
    let (bw, bh) = (i64::from(buf.width()), i64::from(buf.height()));
    let (ow, oh) = (i64::from(over.width()), i64::from(over.height()));
    if ow == 0 || oh == 0 || opacity <= 0.0 {
        return Ok(buf);
    }
    let (ox, oy) = origin;
    // The part of the base the overlay covers.
    let ((x0, x1), (y0, y1)) = if tile {
        ((0, bw), (0, bh))
    } else {
        (
            (ox.max(0), (ox + ow).min(bw)),
            (oy.max(0), (oy + oh).min(bh)),
        )
    };
    let row_len = bw as usize * n;
    let samples: &mut [P::Subpixel] = &mut buf;
    for y in y0..y1 {
        let row = &mut samples[(y as usize * row_len)..((y as usize + 1) * row_len)];
        let src_y = (y - oy).rem_euclid(oh) as u32;
        for x in x0..x1 {
            let s = over.get_pixel((x - ox).rem_euclid(ow) as u32, src_y).0;
            let sa = f32::from(s[3]) / 255.0 * opacity;
            if sa <= 0.0 {
                continue;
            }
            let px = &mut row[(x as usize * n)..(x as usize * n + n)];
            let d = read_rgba(px, n);
            let out_a = sa + d[3] * (1.0 - sa);
            let mix = |sc: u8, dc: f32| {
                let sc = f32::from(sc) / 255.0;
                (sc * sa + dc * d[3] * (1.0 - sa)) / out_a
            };
            write_rgba(
                px,
                n,
                [mix(s[0], d[0]), mix(s[1], d[1]), mix(s[2], d[2]), out_a],
            );
        }
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage, Rgba};

    fn at(gravity: Gravity, x: i32, y: i32) -> Placement {
        Placement {
            gravity,
            x,
            y,
            opacity: 1.0,
            tile: false,
        }
    }

    #[test]
    fn gravity_and_offsets_place_the_overlay_inwards() {
        let base = (100, 50);
        let over = (10, 4);
        assert_eq!(origin(base, over, &at(Gravity::NorthWest, 0, 0)), (0, 0));
        assert_eq!(origin(base, over, &at(Gravity::SouthEast, 5, 2)), (85, 44));
        assert_eq!(origin(base, over, &at(Gravity::Centre, 3, -1)), (48, 22));
        assert_eq!(origin(base, over, &at(Gravity::North, 0, 7)), (45, 7));
    }

    #[test]
    fn tiles_cover_the_whole_base() {
        let base = DynamicImage::ImageRgb8(RgbImage::new(5, 3));
        // A 2x1 tile, white then transparent, placed one pixel in.
        let mut over = RgbaImage::from_pixel(2, 1, Rgba([255, 255, 255, 255]));
        over.put_pixel(1, 0, Rgba([0, 0, 0, 0]));
        let mut t = at(Gravity::NorthWest, 1, 0);
        t.tile = true;
        let out = composite(base, &over, &t).expect("composites").into_rgb8();
        for y in 0..3 {
            let row: Vec<u8> = (0..5).map(|x| out.get_pixel(x, y).0[0]).collect();
            assert_eq!(row, [0, 255, 0, 255, 0], "row {y}");
        }
    }

    #[test]
    fn source_over_in_the_base_colour_type() {
        let base = DynamicImage::ImageRgb8(RgbImage::from_pixel(4, 4, Rgb([0, 0, 0])));
        let mut over = RgbaImage::from_pixel(2, 2, Rgba([255, 255, 255, 255]));
        over.put_pixel(1, 1, Rgba([255, 0, 0, 0]));
        let mut t = at(Gravity::NorthWest, 0, 0);
        t.opacity = 0.5;
        let out = composite(base, &over, &t).expect("composites");
        let DynamicImage::ImageRgb8(out) = out else {
            panic!("an opaque RGB base stays RGB8");
        };
        assert_eq!(out.get_pixel(0, 0).0, [128, 128, 128]);
        // A transparent overlay pixel and the uncovered base are untouched.
        assert_eq!(out.get_pixel(1, 1).0, [0, 0, 0]);
        assert_eq!(out.get_pixel(3, 3).0, [0, 0, 0]);
    }

    #[test]
    fn a_transparent_base_keeps_its_alpha_outside_the_overlay() {
        let base = DynamicImage::ImageRgba8(RgbaImage::from_pixel(4, 1, Rgba([0, 0, 0, 0])));
        let over = RgbaImage::from_pixel(1, 1, Rgba([0, 255, 0, 255]));
        let out = composite(base, &over, &at(Gravity::West, 0, 0))
            .expect("composites")
            .into_rgba8();
        assert_eq!(out.get_pixel(0, 0).0, [0, 255, 0, 255]);
        assert_eq!(out.get_pixel(2, 0).0, [0, 0, 0, 0]);
    }

    #[test]
    fn positions_only() {
        let base = DynamicImage::ImageRgb8(RgbImage::new(2, 2));
        let over = RgbaImage::new(1, 1);
        assert!(composite(base, &over, &at(Gravity::Smart, 0, 0)).is_err());
    }
}
