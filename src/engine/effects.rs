//! Colour and filter ops: blur, sharpen, pixelate and the per-pixel colour
//! transforms.
//!
//! Per-pixel transforms are written once as a function of unit RGBA
//! ([`map_colors`]); ones that keep grey pixels grey (brightness, invert,
//! hue...) leave grey images grey, the others (sepia) turn them to colour
//! first. Alpha is never changed except by `background`. The colour matrices
//! are those of the CSS Filter Effects spec, so results match what a browser
//! shows for `filter: sepia()` / `hue-rotate()` / `saturate()`.

use image::{DynamicImage, Pixel};

use crate::proto::Color;

use super::alpha;
use super::error::EngineError;
use super::pixel::{
    able_to_hold, has_alpha, luma, map_buffer, read_rgba, to_colour, without_alpha, write_rgba,
    Buf, Sample,
};

/// [`blur_to`] at the picture's own size.
#[cfg(test)]
pub fn blur(image: &DynamicImage, sigma: f32, fast: bool) -> Result<DynamicImage, EngineError> {
    blur_to(image, sigma, fast, (image.width(), image.height()))
}

/// Gaussian blur of `sigma` (validated, clamped to the image size) of a
/// picture of `size`, which `image` may be smaller than: see below.
///
/// With `fast` (production), a cost that does not grow with sigma, so a
/// large sigma cannot be used to burn CPU:
///
/// - sigma below [`EXACT_BELOW`]: an exact separable gaussian (libblur,
///   fixed point, SIMD); its kernel has at most 13 taps there.
/// - larger: the same exact gaussian on a copy shrunk k times (k a power
///   of two, sigma / k between 1 and 2, see [`blur_scale`]), scaled back
///   up bilinearly (fast_image_resize). A blurred image has no detail
///   finer than about sigma, so the shrunk copy loses nothing that the blur
///   would keep; the shrink's and the bilinear filter's own blur (variances
///   (k²-1)/12 and k²/6) is taken off the small blur's sigma so the total
///   is sigma. Edge pixels are repeated outwards first, so borders follow
///   the exact path's clamped edges. The work is that of a 13-tap blur at
///   1/k² of the pixels plus two resizes, about the same at any sigma;
///   libblur's own O(1) approximations (7-21 ms on the 1.3 MP bench photo)
///   and its exact 19-tap gaussian at sigma 3 (11 ms) were slower. The
///   engine tests bound the error against an exact f64 gaussian (mean
///   under 1.2 levels of 255, max under 12).
///
/// Colour types neither crate handles (grey + alpha, float) take `image`'s
/// box blur, as `fast` off does for everything.
///
/// A JPEG may arrive decoded at 1/2 (shrink-on-load, when [`blur_scale`]
/// is 2 or more): the small decode stands in for the first halving of the
/// shrunk copy, so the full-size pixels are never made. On the 1.3 MP
/// bench photo that takes the decode from 17.5 to 14.8 ms and, with the
/// one-axis-at-a-time scale-up, the blur from 11 to 6.5 ms. The result is
/// `size` again. Its cost is at the borders: the outermost decoded pixels,
/// repeated outwards, are each the mean of two source columns, so a
/// one-pixel line along a border (a frame) weighs less than in the exact
/// blur (10 levels off at worst in the engine test, whose crop starts with
/// a nearly black column; under 7 away from the borders).
pub fn blur_to(
    image: &DynamicImage,
    sigma: f32,
    fast: bool,
    size: (u32, u32),
) -> Result<DynamicImage, EngineError> {
    if !sigma.is_finite() || sigma <= 0.0 {
        return Err(EngineError::BadParameter(format!(
            "blur sigma must be a positive number, not {sigma}"
        )));
    }
    // Beyond the image size more blur changes nothing visible, and the
    // blurs' window set-up is linear in the radius.
    let sigma = sigma.min(size.0.max(size.1).max(1) as f32);
    // Colour weighed by alpha, so invisible pixels do not bleed.
    alpha::premultiplied(image, |image| blur_straight(image, sigma, fast, size))
}

/// [`blur_to`] of every channel alike (after any premultiplying).
fn blur_straight(
    image: &DynamicImage,
    sigma: f32,
    fast: bool,
    size: (u32, u32),
) -> Result<DynamicImage, EngineError> {
    let loaded = (image.width(), image.height());
    if fast {
        if let Some(out) = blur_fast(image, sigma, size)? {
            return Ok(out);
        }
    }
    if loaded != size {
        // Only the fast path asks for a small decode, and only for the
        // colour types it handles (8-bit JPEG output is RGB or grey).
        return Err(EngineError::Internal(format!(
            "blur got a {loaded:?} picture for a {size:?} source"
        )));
    }
    Ok(image.fast_blur(sigma))
}

/// Below this sigma the exact gaussian runs at full size.
const EXACT_BELOW: f32 = 2.0;

/// The shrunk copy keeps at least this many pixels per side.
const MIN_SHRUNK_SIDE: u32 = 8;

/// The factor (a power of two) the fast blur of `sigma` shrinks a `w` x `h`
/// picture by before blurring; 1 for an exact full-size blur. The engine
/// asks the JPEG decoder for a picture up to 2 times smaller.
pub fn blur_scale(sigma: f32, (w, h): (u32, u32)) -> u32 {
    let sigma = sigma.min(w.max(h).max(1) as f32);
    let mut k = 1u32;
    while sigma / k as f32 >= EXACT_BELOW
        && w / (2 * k) >= MIN_SHRUNK_SIDE
        && h / (2 * k) >= MIN_SHRUNK_SIDE
    {
        k *= 2;
    }
    k
}

/// See [`blur_to`]; `None` for a colour type this path lacks.
fn blur_fast(
    image: &DynamicImage,
    sigma: f32,
    (w, h): (u32, u32),
) -> Result<Option<DynamicImage>, EngineError> {
    let loaded = (image.width(), image.height());
    // How much smaller the decoder made it: libjpeg's 1/d scale rounds up.
    let Some(d) = [1u32, 2, 4, 8]
        .into_iter()
        .find(|d| loaded == (w.div_ceil(*d), h.div_ceil(*d)))
    else {
        return Err(EngineError::Internal(format!(
            "blur got a {loaded:?} picture for a {:?} source",
            (w, h)
        )));
    };
    let k = blur_scale(sigma, (w, h));
    if k == 1 && d == 1 {
        return exact_gaussian(image, sigma);
    }
    if k < d {
        return Err(EngineError::Internal(format!(
            "blur at 1/{k} got a picture decoded at 1/{d}"
        )));
    }
    let kf = k as f32;
    let own = (kf * kf - 1.0) / 12.0 + kf * kf / 6.0;
    let small_sigma = (sigma * sigma - own).max(0.25).sqrt() / kf;
    // Edge pixels repeated outwards by 3 sigma first (a multiple of k, and
    // both sides made multiples of what is left to shrink), so that near
    // the borders the result is the clamped-edge gaussian of the exact
    // path: the resizes alone would weigh border pixels differently (up to
    // 80 levels off there in the tests).
    let pad = round_up(((3.0 * sigma).ceil() as u32).min(w.max(h)), k);
    let (pad_loaded, rest) = (pad / d, k / d);
    let padded_size = (
        round_up(loaded.0 + 2 * pad_loaded, rest),
        round_up(loaded.1 + 2 * pad_loaded, rest),
    );
    let Some(padded) = pad_edges(image, pad_loaded, padded_size) else {
        return Ok(None);
    };
    let mut resizer = fast_image_resize::Resizer::new();
    let mut resize = |src: &DynamicImage, to: (u32, u32), filter, crop: (f64, f64, f64, f64)| {
        let mut dst = DynamicImage::new(to.0, to.1, src.color());
        // Straight (not premultiplied) alpha, as the small blur sees it:
        // every channel is blurred alike, as on the exact path.
        let (left, top, width, height) = crop;
        let options = fast_image_resize::ResizeOptions::new()
            .resize_alg(fast_image_resize::ResizeAlg::Convolution(filter))
            .use_alpha(false)
            .crop(left, top, width, height);
        resizer
            .resize(src, &mut dst, &options)
            .map(|()| dst)
            .map_err(|e| EngineError::Internal(format!("blur resize failed: {e}")))
    };
    let whole = |img: &DynamicImage| (0.0, 0.0, f64::from(img.width()), f64::from(img.height()));
    let small = if rest > 1 {
        let to = (padded_size.0 / rest, padded_size.1 / rest);
        resize(
            &padded,
            to,
            fast_image_resize::FilterType::Box,
            whole(&padded),
        )?
    } else {
        padded
    };
    let Some(blurred) = exact_gaussian(&small, small_sigma)? else {
        return Ok(None);
    };
    // Back to full size, the padding cut off on the way: one axis at a
    // time, widths first while the picture is still short (fast_image_resize
    // doing both at once takes the costlier order: 4.6 ms against 3.2 on
    // the bench photo).
    let (at, kf) = (f64::from(pad / k), f64::from(k));
    let bilinear = fast_image_resize::FilterType::Bilinear;
    let rows = f64::from(blurred.height());
    let wide = resize(
        &blurred,
        (w, blurred.height()),
        bilinear,
        (at, 0.0, f64::from(w) / kf, rows),
    )?;
    resize(
        &wide,
        (w, h),
        bilinear,
        (0.0, at, f64::from(w), f64::from(h) / kf),
    )
    .map(Some)
}

fn round_up(v: u32, to: u32) -> u32 {
    v.div_ceil(to).saturating_mul(to)
}

/// `image` inside a `size` canvas at (`pad`, `pad`), the rest filled by
/// repeating its edge pixels; `None` for a colour type the blur lacks.
fn pad_edges(image: &DynamicImage, pad: u32, size: (u32, u32)) -> Option<DynamicImage> {
    fn grow<T: Copy>(
        src: &[T],
        (w, h): (u32, u32),
        ch: usize,
        pad: u32,
        (nw, nh): (u32, u32),
    ) -> Vec<T> {
        let (w, h, pad, nw, nh) = (
            w as usize,
            h as usize,
            pad as usize,
            nw as usize,
            nh as usize,
        );
        let mut out = Vec::with_capacity(nw * nh * ch);
        for y in 0..nh {
            let sy = y.saturating_sub(pad).min(h - 1);
            let row = &src[sy * w * ch..(sy + 1) * w * ch];
            let (first, last) = (&row[..ch], &row[(w - 1) * ch..]);
            for _ in 0..pad {
                out.extend_from_slice(first);
            }
            out.extend_from_slice(row);
            for _ in 0..nw - pad - w {
                out.extend_from_slice(last);
            }
        }
        out
    }
    let dims = (image.width(), image.height());
    if dims.0 == 0 || dims.1 == 0 {
        return None;
    }
    macro_rules! padded {
        ($buf:expr, $ch:expr, $wrap:path, $kind:ty) => {
            <$kind>::from_raw(size.0, size.1, grow($buf.as_raw(), dims, $ch, pad, size)).map($wrap)
        };
    }
    match image {
        DynamicImage::ImageLuma8(b) => padded!(b, 1, DynamicImage::ImageLuma8, image::GrayImage),
        DynamicImage::ImageRgb8(b) => padded!(b, 3, DynamicImage::ImageRgb8, image::RgbImage),
        DynamicImage::ImageRgba8(b) => padded!(b, 4, DynamicImage::ImageRgba8, image::RgbaImage),
        DynamicImage::ImageLuma16(b) => {
            padded!(b, 1, DynamicImage::ImageLuma16, Buf<image::Luma<u16>>)
        }
        DynamicImage::ImageRgb16(b) => {
            padded!(b, 3, DynamicImage::ImageRgb16, Buf<image::Rgb<u16>>)
        }
        DynamicImage::ImageRgba16(b) => {
            padded!(b, 4, DynamicImage::ImageRgba16, Buf<image::Rgba<u16>>)
        }
        _ => None,
    }
}

/// An exact separable gaussian through libblur (fixed point for 8-bit
/// samples), or `None` for a colour type it lacks.
fn exact_gaussian(image: &DynamicImage, sigma: f32) -> Result<Option<DynamicImage>, EngineError> {
    use libblur::FastBlurChannels as C;
    let (w, h) = (image.width(), image.height());
    let fail = |e: libblur::BlurError| EngineError::Internal(format!("blur failed: {e}"));
    let edges = libblur::EdgeMode2D::new(libblur::EdgeMode::Clamp);
    // The kernel reaches 3 sigma on each side (libblur's own choice is
    // shorter and cut visible steps into sharp edges at small sigma).
    let taps = 2 * (3.0 * sigma).ceil().max(1.0) as u32 + 1;
    let params = libblur::GaussianBlurParams::new(taps, f64::from(sigma));
    let one = libblur::ThreadingPolicy::Single;
    macro_rules! run {
        ($buf:expr, $channels:expr, $sample:ty, $blur:path, $mode:expr, $wrap:path, $kind:ty) => {{
            let mut data: Vec<$sample> = vec![0; $buf.as_raw().len()];
            let src = libblur::BlurImage::borrow($buf.as_raw(), w, h, $channels);
            let mut dst = libblur::BlurImageMut::borrow(&mut data, w, h, $channels);
            $blur(&src, &mut dst, params, edges, one, $mode).map_err(fail)?;
            <$kind>::from_raw(w, h, data).map($wrap)
        }};
    }
    let fixed = libblur::ConvolutionMode::FixedPoint;
    let exact = libblur::ConvolutionMode::Exact;
    Ok(match image {
        DynamicImage::ImageLuma8(b) => run!(
            b,
            C::Plane,
            u8,
            libblur::gaussian_blur,
            fixed,
            DynamicImage::ImageLuma8,
            image::GrayImage
        ),
        DynamicImage::ImageRgb8(b) => run!(
            b,
            C::Channels3,
            u8,
            libblur::gaussian_blur,
            fixed,
            DynamicImage::ImageRgb8,
            image::RgbImage
        ),
        DynamicImage::ImageRgba8(b) => run!(
            b,
            C::Channels4,
            u8,
            libblur::gaussian_blur,
            fixed,
            DynamicImage::ImageRgba8,
            image::RgbaImage
        ),
        DynamicImage::ImageLuma16(b) => run!(
            b,
            C::Plane,
            u16,
            libblur::gaussian_blur_u16,
            exact,
            DynamicImage::ImageLuma16,
            Buf<image::Luma<u16>>
        ),
        DynamicImage::ImageRgb16(b) => run!(
            b,
            C::Channels3,
            u16,
            libblur::gaussian_blur_u16,
            exact,
            DynamicImage::ImageRgb16,
            Buf<image::Rgb<u16>>
        ),
        DynamicImage::ImageRgba16(b) => run!(
            b,
            C::Channels4,
            u16,
            libblur::gaussian_blur_u16,
            exact,
            DynamicImage::ImageRgba16,
            Buf<image::Rgba<u16>>
        ),
        _ => None,
    })
}

/// Unsharp mask: `c + amount * (c - blur(c))` per colour channel, only where
/// `|c - blur(c)|` is above `threshold` (0..=255 scale) so flat areas and
/// noise are left alone. The blur is [`blur_to`]'s: with `fast`, the whole
/// op takes 13 ms on the 1.3 MP bench photo at sigma 1.5, where `image`'s
/// box blur and a generic per-pixel loop took 190 ms.
pub fn sharpen(
    image: DynamicImage,
    sigma: f32,
    amount: f32,
    threshold: u8,
    fast: bool,
) -> Result<DynamicImage, EngineError> {
    if !sigma.is_finite() || sigma <= 0.0 || !amount.is_finite() {
        return Err(EngineError::BadParameter(format!(
            "sharpen needs a positive sigma and a finite amount, not {sigma} and {amount}"
        )));
    }
    let threshold = f32::from(threshold);
    use DynamicImage as D;
    // A colour type added to `image` after this was written: as RGBA8.
    let image = match image {
        D::ImageLuma8(_)
        | D::ImageLumaA8(_)
        | D::ImageRgb8(_)
        | D::ImageRgba8(_)
        | D::ImageLuma16(_)
        | D::ImageLumaA16(_)
        | D::ImageRgb16(_)
        | D::ImageRgba16(_)
        | D::ImageRgb32F(_)
        | D::ImageRgba32F(_) => image,
        other => D::ImageRgba8(other.into_rgba8()),
    };
    let blurred = blur_to(&image, sigma, fast, (image.width(), image.height()))?;
    macro_rules! mask {
        ($(($variant8:ident, $n:literal)),* ; $($variant:ident),*) => {
            match (image, &blurred) {
                $((D::$variant8(mut b), D::$variant8(bl)) => {
                    unsharp_u8::<$n>(&mut b, bl.as_raw(), amount, threshold);
                    D::$variant8(b)
                })*
                $((D::$variant(b), D::$variant(bl)) => {
                    D::$variant(unsharp(b, bl.as_raw(), amount, threshold / 255.0))
                })*
                (image, _) => {
                    return Err(EngineError::Internal(format!(
                        "sharpen: the blur of a {:?} picture came back as {:?}",
                        image.color(),
                        blurred.color()
                    )))
                }
            }
        };
    }
    Ok(mask!(
        (ImageLuma8, 1),
        (ImageLumaA8, 2),
        (ImageRgb8, 3),
        (ImageRgba8, 4);
        ImageLuma16,
        ImageLumaA16,
        ImageRgb16,
        ImageRgba16,
        ImageRgb32F,
        ImageRgba32F
    ))
}

/// [`unsharp`] for 8-bit samples of `N` channels (the last one alpha, left
/// alone, for 2 and 4), on the 0..=255 scale. Branch-free, and for grey and
/// RGB one flat loop over every sample, so the compiler vectorises it: the
/// generic loop's data-dependent branch cost 33 ms on the 1.3 MP bench
/// photo.
fn unsharp_u8<const N: usize>(px: &mut [u8], blurred: &[u8], amount: f32, threshold: f32) {
    #[inline(always)]
    fn masked(c: u8, b: u8, amount: f32, threshold: f32) -> u8 {
        let (c, b) = (f32::from(c), f32::from(b));
        let diff = c - b;
        let sharpened = (c + amount * diff).clamp(0.0, 255.0) + 0.5;
        // `as` truncates (and saturates): `c` is whole, so it stays `c`.
        (if diff.abs() > threshold { sharpened } else { c }) as u8
    }
    if N == 2 || N == 4 {
        for (p, b) in px.chunks_exact_mut(N).zip(blurred.chunks_exact(N)) {
            for i in 0..N - 1 {
                p[i] = masked(p[i], b[i], amount, threshold);
            }
        }
    } else {
        for (p, b) in px.iter_mut().zip(blurred) {
            *p = masked(*p, *b, amount, threshold);
        }
    }
}

fn unsharp<P>(mut buf: Buf<P>, blurred: &[P::Subpixel], amount: f32, threshold: f32) -> Buf<P>
where
    P: Pixel,
    P::Subpixel: Sample,
{
    let n = usize::from(P::CHANNEL_COUNT);
    let colour = if has_alpha(n) { n - 1 } else { n };
    for (px, bl) in buf.chunks_exact_mut(n).zip(blurred.chunks_exact(n)) {
        for i in 0..colour {
            let (c, b) = (px[i].to_unit(), bl[i].to_unit());
            let diff = c - b;
            if diff.abs() > threshold {
                px[i] = P::Subpixel::from_unit(c + amount * diff);
            }
        }
    }
    buf
}

/// Replaces each `size` x `size` block (smaller at the right and bottom
/// edges) by its mean colour (premultiplied: see `alpha.rs`).
pub fn pixelate(image: DynamicImage, size: u32) -> Result<DynamicImage, EngineError> {
    if size == 0 {
        return Err(EngineError::BadParameter(
            "pixelate size must be at least 1".to_string(),
        ));
    }
    if size == 1 {
        return Ok(image);
    }
    // A block's mean weighs each pixel's colour by its alpha.
    if alpha::needs_premultiplying(&image) {
        return alpha::premultiplied_always(&image, |i| {
            Ok(map_buffer!(i.clone(), pixelate_buf, size))
        });
    }
    Ok(map_buffer!(image, pixelate_buf, size))
}

fn pixelate_buf<P>(mut buf: Buf<P>, size: u32) -> Result<Buf<P>, EngineError>
where
    P: Pixel,
    P::Subpixel: Sample,
{
    let n = usize::from(P::CHANNEL_COUNT);
    let (w, h) = (buf.width() as usize, buf.height() as usize);
    let size = size as usize;
    let raw: &mut [P::Subpixel] = &mut buf;
    for by in (0..h).step_by(size) {
        for bx in (0..w).step_by(size) {
            let (x_end, y_end) = ((bx + size).min(w), (by + size).min(h));
            let mut sum = [0f64; 4];
            for y in by..y_end {
                for px in raw[(y * w + bx) * n..(y * w + x_end) * n].chunks_exact(n) {
                    for (s, c) in sum.iter_mut().zip(px) {
                        *s += f64::from(c.to_unit());
                    }
                }
            }
            let count = ((x_end - bx) * (y_end - by)) as f64;
            let mean = sum.map(|s| (s / count) as f32);
            for y in by..y_end {
                for px in raw[(y * w + bx) * n..(y * w + x_end) * n].chunks_exact_mut(n) {
                    for (c, m) in px.iter_mut().zip(mean) {
                        *c = P::Subpixel::from_unit(m);
                    }
                }
            }
        }
    }
    Ok(buf)
}

/// Applies `f` to every pixel as unit RGBA. With `keeps_grey` (f maps grey
/// to grey) grey images stay grey; otherwise they become colour first.
pub fn map_colors<F>(
    image: DynamicImage,
    keeps_grey: bool,
    f: F,
) -> Result<DynamicImage, EngineError>
where
    F: Fn([f32; 4]) -> [f32; 4],
{
    let image = if keeps_grey { image } else { to_colour(image) };
    Ok(map_buffer!(image, map_pixels, &f))
}

fn map_pixels<P, F>(mut buf: Buf<P>, f: &F) -> Result<Buf<P>, EngineError>
where
    P: Pixel,
    P::Subpixel: Sample,
    F: Fn([f32; 4]) -> [f32; 4],
{
    let n = usize::from(P::CHANNEL_COUNT);
    for px in buf.chunks_exact_mut(n) {
        let c = read_rgba(px, n);
        write_rgba(px, n, f(c));
    }
    Ok(buf)
}

/// Applies a 3x3 colour matrix (rows produce r, g, b) to the colour channels.
fn matrix(m: [[f32; 3]; 3]) -> impl Fn([f32; 4]) -> [f32; 4] {
    move |c| {
        let row = |r: [f32; 3]| r[0] * c[0] + r[1] * c[1] + r[2] * c[2];
        [row(m[0]), row(m[1]), row(m[2]), c[3]]
    }
}

/// Negates the colour channels.
pub fn invert(image: DynamicImage) -> Result<DynamicImage, EngineError> {
    map_colors(image, true, |c| [1.0 - c[0], 1.0 - c[1], 1.0 - c[2], c[3]])
}

/// Adds `value` percent of full scale to every colour channel.
pub fn brightness(image: DynamicImage, value: f32) -> Result<DynamicImage, EngineError> {
    let d = value / 100.0;
    map_colors(image, true, move |c| [c[0] + d, c[1] + d, c[2] + d, c[3]])
}

/// Scales each channel's distance from mid-grey by `1 + value / 100`:
/// -100 gives flat grey, 0 no change, 100 doubles the contrast.
pub fn contrast(image: DynamicImage, value: f32) -> Result<DynamicImage, EngineError> {
    let k = 1.0 + value / 100.0;
    let f = move |v: f32| (v - 0.5) * k + 0.5;
    map_colors(image, true, move |c| [f(c[0]), f(c[1]), f(c[2]), c[3]])
}

/// CSS `hue-rotate(degrees)`: a luminance-preserving rotation of the hues.
pub fn hue(image: DynamicImage, degrees: f32) -> Result<DynamicImage, EngineError> {
    let (s, c) = degrees.to_radians().sin_cos();
    let m = [
        [
            0.213 + c * 0.787 - s * 0.213,
            0.715 - c * 0.715 - s * 0.715,
            0.072 - c * 0.072 + s * 0.928,
        ],
        [
            0.213 - c * 0.213 + s * 0.143,
            0.715 + c * 0.285 + s * 0.140,
            0.072 - c * 0.072 - s * 0.283,
        ],
        [
            0.213 - c * 0.213 - s * 0.787,
            0.715 - c * 0.715 + s * 0.715,
            0.072 + c * 0.928 + s * 0.072,
        ],
    ];
    map_colors(image, true, matrix(m))
}

/// CSS `saturate(factor)`: 0 is grey, 1 unchanged, above 1 more vivid.
pub fn saturation(image: DynamicImage, factor: f32) -> Result<DynamicImage, EngineError> {
    let s = factor;
    let m = [
        [0.213 + 0.787 * s, 0.715 - 0.715 * s, 0.072 - 0.072 * s],
        [0.213 - 0.213 * s, 0.715 + 0.285 * s, 0.072 - 0.072 * s],
        [0.213 - 0.213 * s, 0.715 - 0.715 * s, 0.072 + 0.928 * s],
    ];
    map_colors(image, true, matrix(m))
}

/// CSS `sepia(1)`.
pub fn sepia(image: DynamicImage) -> Result<DynamicImage, EngineError> {
    let m = [
        [0.393, 0.769, 0.189],
        [0.349, 0.686, 0.168],
        [0.272, 0.534, 0.131],
    ];
    map_colors(image, false, matrix(m))
}

/// Black and white: luma (0..=255 scale) at or above `value` becomes white.
pub fn threshold(image: DynamicImage, value: u8) -> Result<DynamicImage, EngineError> {
    let t = f32::from(value);
    map_colors(image, true, move |c| {
        // The small epsilon keeps a grey of exactly `value` above the line
        // despite float rounding in the luma weights.
        let v = if luma(c) * 255.0 + 1e-3 >= t {
            1.0
        } else {
            0.0
        };
        [v, v, v, c[3]]
    })
}

/// Composites the image over `color`. With an opaque colour the alpha
/// channel goes away; an image without alpha is returned unchanged.
pub fn background(image: DynamicImage, color: Color) -> Result<DynamicImage, EngineError> {
    if !image.color().has_alpha() {
        return Ok(image);
    }
    let image = able_to_hold(image, color);
    let bg = color.unit();
    let out = map_colors(image, true, move |c| {
        let a = c[3] + bg[3] * (1.0 - c[3]);
        if a <= 0.0 {
            return [0.0; 4];
        }
        let mix = |i: usize| (c[i] * c[3] + bg[i] * bg[3] * (1.0 - c[3])) / a;
        [mix(0), mix(1), mix(2), a]
    })?;
    Ok(if color.a == 255 {
        without_alpha(out)
    } else {
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, Rgb, RgbImage, Rgba, RgbaImage};

    fn rgb(pixels: &[[u8; 3]]) -> DynamicImage {
        let w = pixels.len() as u32;
        DynamicImage::ImageRgb8(RgbImage::from_fn(w, 1, |x, _| Rgb(pixels[x as usize])))
    }

    fn first(img: &DynamicImage) -> [u8; 4] {
        img.to_rgba8().get_pixel(0, 0).0
    }

    #[test]
    fn invert_brightness_contrast() {
        let img = rgb(&[[10, 100, 250]]);
        assert_eq!(first(&invert(img.clone()).expect("ok")), [245, 155, 5, 255]);
        assert_eq!(
            first(&brightness(img.clone(), 20.0).expect("ok")),
            [61, 151, 255, 255]
        );
        assert_eq!(
            first(&brightness(img.clone(), -100.0).expect("ok")),
            [0, 0, 0, 255]
        );
        assert_eq!(
            first(&contrast(img.clone(), -100.0).expect("ok")),
            [128, 128, 128, 255]
        );
        assert_eq!(
            first(&contrast(img.clone(), 0.0).expect("ok")),
            [10, 100, 250, 255]
        );
        // Grey stays grey (and 16-bit stays 16-bit).
        let grey = DynamicImage::ImageLuma16(image::ImageBuffer::from_pixel(2, 2, Luma([1000u16])));
        let out = invert(grey).expect("ok");
        assert_eq!(out.as_luma16().map(|b| b.get_pixel(0, 0).0), Some([64535]));
    }

    #[test]
    fn hue_saturation_sepia() {
        let img = rgb(&[[200, 40, 40]]);
        let same = first(&hue(img.clone(), 360.0).expect("ok"));
        assert!(same
            .iter()
            .zip([200, 40, 40, 255])
            .all(|(a, b)| a.abs_diff(b) <= 1));
        let turned = first(&hue(img.clone(), 120.0).expect("ok"));
        assert!(
            turned[1] > turned[0] && turned[1] > turned[2],
            "red turns green: {turned:?}"
        );
        let grey = first(&saturation(img.clone(), 0.0).expect("ok"));
        assert!(grey[0].abs_diff(grey[1]) <= 1 && grey[1].abs_diff(grey[2]) <= 1);
        let s = first(&sepia(rgb(&[[100, 100, 100]])).expect("ok"));
        assert_eq!(s, [135, 120, 94, 255]);
        // Sepia turns a grey image into colour.
        let g = DynamicImage::ImageLuma8(GrayImage::from_pixel(1, 1, Luma([100])));
        assert!(sepia(g).expect("ok").color().has_color());
    }

    #[test]
    fn threshold_and_background() {
        let img = rgb(&[[127, 127, 127], [128, 128, 128], [255, 0, 0]]);
        let out = threshold(img, 128).expect("ok").to_rgb8();
        let px: Vec<[u8; 3]> = out.pixels().map(|p| p.0).collect();
        assert_eq!(px, vec![[0, 0, 0], [255, 255, 255], [0, 0, 0]]);
        let rgba = DynamicImage::ImageRgba8(RgbaImage::from_fn(2, 1, |x, _| {
            if x == 0 {
                Rgba([255, 0, 0, 0])
            } else {
                Rgba([0, 0, 255, 128])
            }
        }));
        let flat = background(rgba.clone(), Color::rgba(0, 255, 0, 255)).expect("ok");
        assert!(!flat.color().has_alpha());
        let flat = flat.to_rgb8();
        assert_eq!(flat.get_pixel(0, 0).0, [0, 255, 0]);
        assert_eq!(flat.get_pixel(1, 0).0, [0, 127, 128]);
        // A translucent background keeps alpha.
        let half = background(rgba, Color::rgba(0, 0, 0, 128)).expect("ok");
        assert!(half.color().has_alpha());
    }

    #[test]
    fn sharpen_keeps_every_colour_type_and_steepens_an_edge() {
        let edge = DynamicImage::ImageLuma8(GrayImage::from_fn(24, 6, |x, _| {
            Luma([if x < 12 { 100 } else { 150 }])
        }));
        let kinds = [
            edge.clone(),
            DynamicImage::ImageLumaA8(edge.to_luma_alpha8()),
            DynamicImage::ImageRgb8(edge.to_rgb8()),
            DynamicImage::ImageRgba8(edge.to_rgba8()),
            DynamicImage::ImageLuma16(edge.to_luma16()),
            DynamicImage::ImageLumaA16(edge.to_luma_alpha16()),
            DynamicImage::ImageRgb16(edge.to_rgb16()),
            DynamicImage::ImageRgba16(edge.to_rgba16()),
            DynamicImage::ImageRgb32F(edge.to_rgb32f()),
            DynamicImage::ImageRgba32F(edge.to_rgba32f()),
        ];
        for img in kinds {
            let color = img.color();
            let out = sharpen(img, 1.5, 2.0, 0, true).expect("sharpen");
            assert_eq!(out.color(), color);
            let grey = out.to_luma8();
            assert!(
                grey.get_pixel(11, 3)[0] < 95 && grey.get_pixel(12, 3)[0] > 155,
                "{color:?}: {} / {}",
                grey.get_pixel(11, 3)[0],
                grey.get_pixel(12, 3)[0]
            );
            // Far from the edge the picture is flat and stays as it was.
            assert_eq!(grey.get_pixel(2, 3)[0], 100, "{color:?}");
        }
    }

    #[test]
    fn pixelate_blur_sharpen() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_fn(10, 4, |x, _| {
            Rgb([if x % 2 == 0 { 0 } else { 200 }, 0, 0])
        }));
        let out = pixelate(img.clone(), 4).expect("ok").to_rgb8();
        assert_eq!(out.get_pixel(0, 0).0, [100, 0, 0]);
        assert_eq!(out.get_pixel(3, 3).0, [100, 0, 0]);
        // The 2-pixel block at the right edge: mean of 0 and 200.
        assert_eq!(out.get_pixel(9, 0).0, [100, 0, 0]);
        assert!(pixelate(img.clone(), 0).is_err());
        let soft = blur(&img, 2.0, true).expect("ok").to_rgb8();
        assert!(soft.get_pixel(5, 1)[0].abs_diff(100) < 40);
        assert!(blur(&img, 0.0, true).is_err());
        let edge = DynamicImage::ImageLuma8(GrayImage::from_fn(20, 1, |x, _| {
            Luma([if x < 10 { 100 } else { 150 }])
        }));
        let sharp = sharpen(edge.clone(), 1.0, 2.0, 0, true)
            .expect("ok")
            .to_luma8();
        assert!(sharp.get_pixel(9, 0)[0] < 100 && sharp.get_pixel(10, 0)[0] > 150);
        // Above the threshold nothing changes.
        let same = sharpen(edge.clone(), 1.0, 2.0, 60, true).expect("ok");
        assert_eq!(same.to_luma8(), edge.to_luma8());
    }
}
