//! Generic pixel plumbing shared by the ops.
//!
//! The ops work on every colour type `image` decodes (8-bit, 16-bit, float;
//! grey or colour; with or without alpha), so a 16-bit PNG stays 16-bit and
//! a grey JPEG stays grey where the op allows. Rather than writing each op
//! ten times, an op is written once over a raw buffer of [`Sample`]s with a
//! channel count, and [`map_buffer!`] dispatches a `DynamicImage` to it.
//!
//! Channel layouts follow `image`: 1 = luma, 2 = luma + alpha, 3 = RGB,
//! 4 = RGBA. Values are handled as `f32` in `0.0..=1.0` ("unit" values).

use image::{DynamicImage, ImageBuffer, Pixel};

use crate::proto::Color;

/// A channel type of an image buffer, converted to and from unit floats.
pub trait Sample: image::Primitive + 'static {
    fn to_unit(self) -> f32;
    fn from_unit(v: f32) -> Self;
}

impl Sample for u8 {
    fn to_unit(self) -> f32 {
        f32::from(self) / 255.0
    }
    fn from_unit(v: f32) -> u8 {
        // `as` saturates for floats; NaN becomes 0.
        (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8
    }
}

impl Sample for u16 {
    fn to_unit(self) -> f32 {
        f32::from(self) / 65535.0
    }
    fn from_unit(v: f32) -> u16 {
        (v.clamp(0.0, 1.0) * 65535.0 + 0.5) as u16
    }
}

impl Sample for f32 {
    fn to_unit(self) -> f32 {
        self
    }
    fn from_unit(v: f32) -> f32 {
        // Float images may hold values above 1 (HDR); only NaN is repaired.
        if v.is_nan() {
            0.0
        } else {
            v
        }
    }
}

/// An image buffer of pixel type `P`.
pub type Buf<P> = ImageBuffer<P, Vec<<P as Pixel>::Subpixel>>;

/// Whether a pixel of `channels` channels carries alpha.
pub fn has_alpha(channels: usize) -> bool {
    channels == 2 || channels == 4
}

/// Reads one pixel of `channels` channels as unit RGBA.
pub fn read_rgba<S: Sample>(px: &[S], channels: usize) -> [f32; 4] {
    match channels {
        1 => {
            let l = px[0].to_unit();
            [l, l, l, 1.0]
        }
        2 => {
            let l = px[0].to_unit();
            [l, l, l, px[1].to_unit()]
        }
        3 => [px[0].to_unit(), px[1].to_unit(), px[2].to_unit(), 1.0],
        _ => [
            px[0].to_unit(),
            px[1].to_unit(),
            px[2].to_unit(),
            px[3].to_unit(),
        ],
    }
}

/// Rec. 601 luma of unit RGB, as `image`'s own grayscale uses.
pub fn luma(c: [f32; 4]) -> f32 {
    0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}

/// Writes unit RGBA into one pixel of `channels` channels (grey pixels take
/// the luma; alpha is dropped when there is no alpha channel).
pub fn write_rgba<S: Sample>(px: &mut [S], channels: usize, c: [f32; 4]) {
    match channels {
        1 => px[0] = S::from_unit(luma(c)),
        2 => {
            px[0] = S::from_unit(luma(c));
            px[1] = S::from_unit(c[3]);
        }
        3 => {
            for i in 0..3 {
                px[i] = S::from_unit(c[i]);
            }
        }
        _ => {
            for i in 0..4 {
                px[i] = S::from_unit(c[i]);
            }
        }
    }
}

/// One pixel of type `P` holding `color`.
pub fn pixel_of<P>(color: Color) -> P
where
    P: Pixel,
    P::Subpixel: Sample,
{
    let channels = usize::from(P::CHANNEL_COUNT);
    let mut raw = [P::Subpixel::from_unit(0.0); 4];
    write_rgba(&mut raw[..channels], channels, color.unit());
    *P::from_slice(&raw[..channels])
}

/// Calls `$f(buffer, args...)` on the typed buffer inside a `DynamicImage`
/// and wraps the buffer it returns (`Result<Buf<P>, _>`) in the same variant.
/// Colour types `image` may add later go through RGBA8.
macro_rules! map_buffer {
    ($image:expr, $f:ident $(, $arg:expr)*) => {
        match $image {
            DynamicImage::ImageLuma8(b) => DynamicImage::ImageLuma8($f(b $(, $arg)*)?),
            DynamicImage::ImageLumaA8(b) => DynamicImage::ImageLumaA8($f(b $(, $arg)*)?),
            DynamicImage::ImageRgb8(b) => DynamicImage::ImageRgb8($f(b $(, $arg)*)?),
            DynamicImage::ImageRgba8(b) => DynamicImage::ImageRgba8($f(b $(, $arg)*)?),
            DynamicImage::ImageLuma16(b) => DynamicImage::ImageLuma16($f(b $(, $arg)*)?),
            DynamicImage::ImageLumaA16(b) => DynamicImage::ImageLumaA16($f(b $(, $arg)*)?),
            DynamicImage::ImageRgb16(b) => DynamicImage::ImageRgb16($f(b $(, $arg)*)?),
            DynamicImage::ImageRgba16(b) => DynamicImage::ImageRgba16($f(b $(, $arg)*)?),
            DynamicImage::ImageRgb32F(b) => DynamicImage::ImageRgb32F($f(b $(, $arg)*)?),
            DynamicImage::ImageRgba32F(b) => DynamicImage::ImageRgba32F($f(b $(, $arg)*)?),
            other => DynamicImage::ImageRgba8($f(other.into_rgba8() $(, $arg)*)?),
        }
    };
}
pub(crate) use map_buffer;

/// The same picture in a colour type that can hold `color`: grey becomes
/// colour for a non-grey colour, and an alpha channel is added for a
/// translucent one. Depth is kept.
pub fn able_to_hold(image: DynamicImage, color: Color) -> DynamicImage {
    let needs_colour = !(color.r == color.g && color.g == color.b);
    let needs_alpha = color.a < 255;
    let image = if needs_colour {
        to_colour(image)
    } else {
        image
    };
    if needs_alpha {
        with_alpha(image)
    } else {
        image
    }
}

/// Grey images become RGB(A) of the same depth; others are unchanged.
pub fn to_colour(image: DynamicImage) -> DynamicImage {
    match image {
        DynamicImage::ImageLuma8(_) => DynamicImage::ImageRgb8(image.into_rgb8()),
        DynamicImage::ImageLumaA8(_) => DynamicImage::ImageRgba8(image.into_rgba8()),
        DynamicImage::ImageLuma16(_) => DynamicImage::ImageRgb16(image.into_rgb16()),
        DynamicImage::ImageLumaA16(_) => DynamicImage::ImageRgba16(image.into_rgba16()),
        other => other,
    }
}

/// Adds an (opaque) alpha channel of the same depth when there is none.
pub fn with_alpha(image: DynamicImage) -> DynamicImage {
    match image {
        DynamicImage::ImageLuma8(_) => DynamicImage::ImageLumaA8(image.into_luma_alpha8()),
        DynamicImage::ImageRgb8(_) => DynamicImage::ImageRgba8(image.into_rgba8()),
        DynamicImage::ImageLuma16(_) => DynamicImage::ImageLumaA16(image.into_luma_alpha16()),
        DynamicImage::ImageRgb16(_) => DynamicImage::ImageRgba16(image.into_rgba16()),
        DynamicImage::ImageRgb32F(_) => DynamicImage::ImageRgba32F(image.into_rgba32f()),
        other => other,
    }
}

/// Drops the alpha channel (callers know every pixel is opaque).
pub fn without_alpha(image: DynamicImage) -> DynamicImage {
    match image {
        DynamicImage::ImageLumaA8(_) => DynamicImage::ImageLuma8(image.into_luma8()),
        DynamicImage::ImageRgba8(_) => DynamicImage::ImageRgb8(image.into_rgb8()),
        DynamicImage::ImageLumaA16(_) => DynamicImage::ImageLuma16(image.into_luma16()),
        DynamicImage::ImageRgba16(_) => DynamicImage::ImageRgb16(image.into_rgb16()),
        DynamicImage::ImageRgba32F(_) => DynamicImage::ImageRgb32F(image.into_rgb32f()),
        other => other,
    }
}
