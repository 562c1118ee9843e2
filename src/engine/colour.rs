//! Embedded colour profiles: pixels are converted to sRGB right after
//! decoding, before any op, unless the request keeps the profile
//! (`icc=keep`, see [`keepable`] and the engine's `keep_profile` for when
//! it can).
//!
//! Why by default: pixfork copies no profile into its output unless asked
//! (`icc=keep`, see [`keepable`]), and a browser shows an untagged picture
//! as sRGB. A Display P3 photo from a
//! phone, an Adobe RGB or ProPhoto export would otherwise lose saturation
//! or shift hue the moment its profile is stripped. Converting first also
//! means every op (blur, resize, overlay) mixes colours of one space.
//!
//! moxcms (pure Rust; `image` already builds on it) parses the profile,
//! with its own caps on profile, LUT and curve sizes, and runs the
//! transform, relative colorimetric (the intent libvips uses by default;
//! for matrix/TRC profiles, the usual camera and display ones, all
//! intents agree). RGB profiles apply to RGB(A) pixels and grey profiles
//! to grey ones, at 8 or 16 bits; a profile that does not parse, or whose
//! colour space does not match the pixels (a CMYK profile: the CMYK JPEG
//! decoder has already turned its inks into RGB), is ignored, as browsers
//! do, rather than failing the request. A profile that maps every colour
//! to itself (an embedded sRGB profile, the most common case) is detected
//! on a small probe and the pixels are left alone.

use image::{DynamicImage, ImageBuffer, Pixel};
use moxcms::{
    ColorProfile, DataColorSpace, Layout, RenderingIntent, TransformExecutor, TransformOptions,
};

use super::decode::{Content, Decoded};

/// Converts `decoded`'s pixels from its embedded profile to sRGB, if it
/// has one that applies (see the module doc); the profile is kept in
/// `decoded.icc` for `info`.
pub fn to_srgb(decoded: &mut Decoded) {
    let Some(source) = decoded.icc.as_deref().and_then(parse) else {
        return;
    };
    match &mut decoded.content {
        Content::Still(image) => convert_image(image, &source),
        Content::Animation(animation) => {
            let Some(transform) = Transform8::new(&source, Layout::Rgba) else {
                return;
            };
            for frame in &mut animation.frames {
                transform.apply(frame.image.as_mut());
            }
        }
    }
}

/// An embedded profile kept for the output (`icc=keep`).
pub struct Kept {
    pub bytes: Vec<u8>,
    /// A grey profile (the output must stay grey); else an RGB one (grey
    /// output is written as RGB, the only layout such a profile describes).
    pub grey: bool,
    /// The profile's tone curves are sRGB's (within 1 % of full scale in
    /// light), as for Display P3, sRGB itself, and near enough Adobe RGB's
    /// gamma 2.2: `linear=true` decodes stored values with sRGB's curve,
    /// which is right for such pixels only.
    pub srgb_curve: bool,
}

/// The profile `icc=keep` can keep for `decoded`: one that parses and
/// describes the decoded pixels (an RGB profile for colour pixels, a grey
/// one for grey pixels). Any other (CMYK, whose inks the decoder has
/// already turned into RGB; one that does not parse) is not kept, and
/// the pixels are treated as without `icc=keep`.
pub fn keepable(decoded: &Decoded) -> Option<Kept> {
    let bytes = decoded.icc.as_ref()?;
    let profile = parse(bytes)?;
    let colour = match &decoded.content {
        Content::Still(image) => image.color().has_color(),
        Content::Animation(_) => true,
    };
    let grey = match profile.color_space {
        DataColorSpace::Rgb if colour => false,
        DataColorSpace::Gray if !colour => true,
        _ => return None,
    };
    Some(Kept {
        bytes: bytes.clone(),
        grey,
        srgb_curve: has_srgb_curve(&profile, grey),
    })
}

/// Whether every tone curve of `profile` (grey's, or red's, green's and
/// blue's) takes stored values to light as sRGB's does, within 0.01 on a
/// 33-step ramp. A curve that is missing or cannot be evaluated is not.
fn has_srgb_curve(profile: &ColorProfile, grey: bool) -> bool {
    let Ok(srgb) = ColorProfile::new_srgb()
        .red_trc
        .as_ref()
        .ok_or(())
        .and_then(|c| c.make_linear_evaluator().map_err(drop))
    else {
        return false;
    };
    let curves = if grey {
        vec![&profile.gray_trc]
    } else {
        vec![&profile.red_trc, &profile.green_trc, &profile.blue_trc]
    };
    curves.into_iter().all(|curve| {
        let Some(Ok(eval)) = curve.as_ref().map(|c| c.make_linear_evaluator()) else {
            return false;
        };
        (0..=32).all(|i| {
            let v = i as f32 / 32.0;
            (eval.evaluate_value(v) - srgb.evaluate_value(v)).abs() <= 0.01
        })
    })
}

/// The profile, or `None` when it does not parse.
fn parse(icc: &[u8]) -> Option<ColorProfile> {
    ColorProfile::new_from_slice(icc).ok()
}

/// sRGB for RGB data, or grey with sRGB's tone curve for grey data.
fn destination(grey: bool) -> ColorProfile {
    let srgb = ColorProfile::new_srgb();
    if !grey {
        return srgb;
    }
    let mut profile = ColorProfile::new_gray_with_gamma(2.2);
    profile.gray_trc = srgb.red_trc;
    profile
}

fn options() -> TransformOptions {
    TransformOptions {
        rendering_intent: RenderingIntent::RelativeColorimetric,
        ..TransformOptions::default()
    }
}

/// Whether `source`'s colour space is the one `layout`'s pixels are in.
fn applies(source: &ColorProfile, layout: Layout) -> bool {
    match layout {
        Layout::Rgb | Layout::Rgba => source.color_space == DataColorSpace::Rgb,
        Layout::Gray | Layout::GrayAlpha => source.color_space == DataColorSpace::Gray,
        _ => false,
    }
}

fn convert_image(image: &mut DynamicImage, source: &ColorProfile) {
    match image {
        DynamicImage::ImageRgb8(i) => convert8(i, source, Layout::Rgb),
        DynamicImage::ImageRgba8(i) => convert8(i, source, Layout::Rgba),
        DynamicImage::ImageLuma8(i) => convert8(i, source, Layout::Gray),
        DynamicImage::ImageLumaA8(i) => convert8(i, source, Layout::GrayAlpha),
        DynamicImage::ImageRgb16(i) => convert16(i, source, Layout::Rgb),
        DynamicImage::ImageRgba16(i) => convert16(i, source, Layout::Rgba),
        DynamicImage::ImageLuma16(i) => convert16(i, source, Layout::Gray),
        DynamicImage::ImageLumaA16(i) => convert16(i, source, Layout::GrayAlpha),
        // Float pixels (a float TIFF) are left as they are.
        _ => {}
    }
}

fn convert8<P: Pixel<Subpixel = u8>>(
    image: &mut ImageBuffer<P, Vec<u8>>,
    source: &ColorProfile,
    layout: Layout,
) {
    if let Some(transform) = Transform8::new(source, layout) {
        transform.apply(image.as_mut());
    }
}

fn convert16<P: Pixel<Subpixel = u16>>(
    image: &mut ImageBuffer<P, Vec<u16>>,
    source: &ColorProfile,
    layout: Layout,
) {
    if !applies(source, layout) {
        return;
    }
    let grey = matches!(layout, Layout::Gray | Layout::GrayAlpha);
    let Ok(transform) =
        source.create_transform_16bit(layout, &destination(grey), layout, options())
    else {
        return;
    };
    // The same identity check as at 8 bits, on the probe widened to 16:
    // within one 8-bit level everywhere, the pixels are left alone.
    let probe: Vec<u16> = probe(layout)
        .into_iter()
        .map(|v| u16::from(v) * 257)
        .collect();
    let mut out = vec![0; probe.len()];
    let identity = transform.transform(&probe, &mut out).is_ok()
        && probe.iter().zip(&out).all(|(a, b)| a.abs_diff(*b) <= 257);
    if !identity {
        in_place(&*transform, image.as_mut(), layout);
    }
}

/// Runs `transform` over `samples` in place, a slice of whole pixels at a
/// time through a small scratch buffer (moxcms transforms from one buffer
/// into another; a full copy would double the memory a big picture holds).
/// A slice moxcms refuses is left as it was.
fn in_place<V: Copy + Default>(
    transform: &(dyn TransformExecutor<V> + Send + Sync),
    samples: &mut [V],
    layout: Layout,
) {
    const PIXELS: usize = 4096;
    let mut scratch = Vec::new();
    for chunk in samples.chunks_mut(PIXELS * layout.channels()) {
        scratch.clear();
        scratch.extend_from_slice(chunk);
        if transform.transform(&scratch, chunk).is_err() {
            chunk.copy_from_slice(&scratch);
        }
    }
}

/// An 8-bit transform to sRGB that is known not to be the identity.
struct Transform8 {
    executor: std::sync::Arc<moxcms::Transform8BitExecutor>,
    layout: Layout,
}

impl Transform8 {
    /// `None` when the profile does not apply to `layout`'s pixels, the
    /// transform cannot be built, or it changes no colour by more than a
    /// level (checked on a 6x6x6 grid of colours, or 16 greys).
    fn new(source: &ColorProfile, layout: Layout) -> Option<Transform8> {
        if !applies(source, layout) {
            return None;
        }
        let grey = matches!(layout, Layout::Gray | Layout::GrayAlpha);
        let executor = source
            .create_transform_8bit(layout, &destination(grey), layout, options())
            .ok()?;
        let transform = Transform8 { executor, layout };
        let probe = probe(layout);
        let mut out = vec![0; probe.len()];
        transform.executor.transform(&probe, &mut out).ok()?;
        let identity = probe.iter().zip(&out).all(|(a, b)| a.abs_diff(*b) <= 1);
        (!identity).then_some(transform)
    }

    fn apply(&self, samples: &mut [u8]) {
        in_place(&*self.executor, samples, self.layout);
    }
}

/// Colours spread over the whole cube (or the grey ramp), in `layout`.
fn probe(layout: Layout) -> Vec<u8> {
    let steps: Vec<u8> = (0..=5).map(|i| i * 51).collect();
    let mut out = Vec::new();
    match layout {
        Layout::Gray => out.extend((0..16).map(|i| i * 17)),
        Layout::GrayAlpha => out.extend((0..16).flat_map(|i| [i * 17, 255])),
        _ => {
            for &r in &steps {
                for &g in &steps {
                    for &b in &steps {
                        out.extend([r, g, b]);
                        if layout == Layout::Rgba {
                            out.push(255);
                        }
                    }
                }
            }
        }
    }
    out
}

/// The profile's description (its `desc` tag), for `info`.
pub fn description(icc: &[u8]) -> Option<String> {
    let profile = parse(icc)?;
    let text = match profile.description? {
        moxcms::ProfileText::PlainString(s) => s,
        moxcms::ProfileText::Localizable(strings) => strings.into_iter().next()?.value,
        moxcms::ProfileText::Description(d) => d.ascii_string,
    };
    let text = text.trim_matches(char::from(0)).trim().to_string();
    (!text.is_empty()).then_some(text)
}
