//! Encoding. Output carries none of the input's metadata (EXIF, XMP,
//! comments) unless asked: the encoders below are given bare pixels, which
//! strips GPS tags and other private data and keeps responses small. What
//! a request keeps ([`Embed`]) is written by the format's own container:
//! the ICC profile with `icc=keep` (JPEG APP2, PNG iCCP, WebP ICCP), since
//! the pixels are then still in its space, and the EXIF and XMP `keep=`
//! chose (JPEG APP1, PNG eXIf and iTXt, WebP EXIF and XMP; see
//! `metadata.rs`). AVIF and GIF output carry none of them.
//!
//! An animation written as GIF or WebP keeps every frame, its delay and its
//! loop count. Written as JPEG or PNG it becomes its first frame only (APNG
//! output is not offered: browsers that show APNG also show animated WebP).
//!
//! Encoders: JPEG by libjpeg-turbo (`libjpeg.rs`; baseline or progressive),
//! PNG by `image`, GIF by the `gif` crate with a Wu palette per animation
//! (quantette; see [`encode_gif_fast`]), WebP by
//! libwebp (lossy or lossless, stills and animations; see `webp.rs`), AVIF
//! by rav1e (stills; see `avif.rs`).

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{DynamicImage, GrayImage, ImageEncoder, RgbImage, RgbaImage};

use crate::proto::{ImageMeta, OutputFormat, OutputSpec, PngCompression};

use super::colour::Kept;
use super::decode::{AnimFrame, Content};
use super::error::EngineError;
use super::lzw;
use super::metadata::Metadata;
use super::webp;
use super::Tuning;

/// NeuQuant speed for GIF palettes: 10 is the gif crate's recommended
/// balance; 1 (image's default) is several times slower for little gain.
const GIF_QUANT_SPEED: i32 = 10;

/// Largest side each output format can store.
fn max_side(format: OutputFormat) -> u32 {
    match format {
        // libjpeg's JPEG_MAX_DIMENSION (the format's 16-bit fields allow
        // 65535, libjpeg refuses past 65500).
        OutputFormat::Jpeg => 65500,
        OutputFormat::Gif => u32::from(u16::MAX),
        OutputFormat::Webp => 16383,
        OutputFormat::Png => i32::MAX as u32,
        OutputFormat::Avif => super::avif::MAX_SIDE,
    }
}

/// What a request keeps of its input in the output.
pub struct Embed<'a> {
    /// The profile `icc=keep` kept (see the engine's `keep_profile`).
    pub kept: Option<&'a Kept>,
    /// The EXIF and XMP `keep=` chose.
    pub meta: &'a Metadata,
}

/// A JPEG APP marker holds at most this many bytes after its length.
const APP_PAYLOAD: usize = 65_533;

/// `meta` as JPEG APP1 payloads: EXIF after its `Exif\0\0` tag, XMP after
/// its namespace. A block too large for one marker is left out (EXIF
/// cannot be split; extended XMP is not written).
fn app1_payloads(meta: &Metadata) -> Vec<Vec<u8>> {
    let tagged = |tag: &[u8], block: &Option<Vec<u8>>| {
        let block = block.as_ref()?;
        (tag.len() + block.len() <= APP_PAYLOAD).then(|| [tag, block.as_slice()].concat())
    };
    [
        tagged(b"Exif\0\0", &meta.exif),
        tagged(b"http://ns.adobe.com/xap/1.0/\0", &meta.xmp),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// `bytes` (a WebP) with the profile and metadata to embed, through
/// libwebp's mux; as it was when there are none.
fn webp_with(bytes: Vec<u8>, icc: Option<&[u8]>, meta: &Metadata) -> Result<Vec<u8>, EngineError> {
    let chunks: Vec<(&std::ffi::CStr, &[u8])> = [
        icc.map(|b| (c"ICCP", b)),
        meta.exif.as_deref().map(|b| (c"EXIF", b)),
        meta.xmp.as_deref().map(|b| (c"XMP ", b)),
    ]
    .into_iter()
    .flatten()
    .collect();
    if chunks.is_empty() {
        return Ok(bytes);
    }
    webp::with_chunks(&bytes, &chunks).map_err(|e| EngineError::encoding(e, OutputFormat::Webp))
}

/// `png` with `xmp` as an uncompressed `iTXt` chunk keyed
/// `XML:com.adobe.xmp` (where XMP's spec puts it), right after `IHDR`:
/// readers that stop at the first `IDAT` (image's, Pillow's on open) see
/// only the chunks before it.
fn png_with_xmp(png: Vec<u8>, xmp: &[u8]) -> Result<Vec<u8>, EngineError> {
    // The signature, then IHDR: length, type, 13 bytes, CRC.
    const AFTER_IHDR: usize = 8 + 4 + 4 + 13 + 4;
    let mut body = b"iTXtXML:com.adobe.xmp\0\0\0\0\0".to_vec();
    body.extend_from_slice(xmp);
    let length = u32::try_from(body.len() - 4)
        .map_err(|_| EngineError::BadParameter("the XMP packet is too large".to_string()))?;
    if png.get(12..16) != Some(b"IHDR") || png.len() < AFTER_IHDR {
        return Err(EngineError::Internal(
            "the PNG encoder's output does not start with IHDR".to_string(),
        ));
    }
    let mut out = Vec::with_capacity(png.len() + body.len() + 8);
    out.extend_from_slice(&png[..AFTER_IHDR]);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    out.extend_from_slice(&png[AFTER_IHDR..]);
    Ok(out)
}

/// Encodes `content` as `format` with the knobs of `spec`, embedding what
/// `embed` keeps. See the module docs for animations.
pub fn encode(
    content: Content,
    format: OutputFormat,
    spec: &OutputSpec,
    tuning: &Tuning,
    embed: Embed<'_>,
) -> Result<(Vec<u8>, ImageMeta), EngineError> {
    let Embed { kept, meta: keep } = embed;
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
            let bytes =
                gif_encoder(tuning)(anim.frames, width, height, anim.loop_count, spec.colors)?;
            return Ok((bytes, meta(format, width, height, frames)));
        }
        (Content::Animation(anim), OutputFormat::Webp) => {
            let bytes = webp::encode_animation(
                &anim.frames,
                width,
                height,
                anim.loop_count,
                webp_settings(spec),
            )
            .map_err(|e| EngineError::encoding(e, format))?;
            let icc = kept.filter(|k| !k.grey).map(|k| k.bytes.as_slice());
            let bytes = webp_with(bytes, icc, keep)?;
            let frames = webp::frame_count(&bytes);
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
    // A kept RGB profile describes RGB pixels only: a picture made grey
    // (the grayscale op) is written as RGB. A grey profile stays only on
    // grey pixels; the engine keeps none when an op may add colour, so
    // colour pixels under one do not reach here (were they to, they go
    // out untagged rather than mislabelled).
    let (image, icc) = match kept {
        Some(k) if !k.grey => (super::pixel::to_colour(frames), Some(k.bytes.as_slice())),
        Some(k) if !frames.color().has_color() => (frames, Some(k.bytes.as_slice())),
        _ => (frames, None),
    };
    let bytes = match format {
        OutputFormat::Jpeg => encode_jpeg(
            image,
            quality,
            spec.progressive,
            tuning.libjpeg_encode,
            (icc, keep),
        )?,
        OutputFormat::Png => encode_png(image, spec.compression, icc, keep)?,
        OutputFormat::Webp => webp_with(encode_webp(image, webp_settings(spec))?, icc, keep)?,
        OutputFormat::Avif => super::avif::encode(image, quality, spec.effort)?,
        OutputFormat::Gif => gif_encoder(tuning)(
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

type GifEncoder = fn(Vec<AnimFrame>, u32, u32, Option<u32>, u16) -> Result<Vec<u8>, EngineError>;

fn gif_encoder(tuning: &Tuning) -> GifEncoder {
    if tuning.fast_gif {
        encode_gif_fast
    } else {
        encode_gif
    }
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
/// JPEG output: libjpeg-turbo with `turbo` ([`Tuning::libjpeg_encode`]),
/// else the pure-Rust `jpeg-encoder` (kept for the benchmark's comparison).
fn encode_jpeg(
    image: DynamicImage,
    quality: u8,
    progressive: bool,
    turbo: bool,
    (icc, meta): (Option<&[u8]>, &Metadata),
) -> Result<Vec<u8>, EngineError> {
    let quality = quality.clamp(1, 100);
    let app1 = app1_payloads(meta);
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
    if turbo {
        let grey = matches!(color, jpeg_encoder::ColorType::Luma);
        return super::libjpeg::encode(
            &pixels,
            (u32::from(w), u32::from(h)),
            grey,
            quality,
            progressive,
            (icc, &app1),
        )
        .ok_or_else(|| EngineError::Internal("the JPEG encoder failed".to_string()));
    }
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality);
    encoder.set_progressive(progressive);
    for payload in app1 {
        encoder.add_app_segment(1, payload).map_err(fail)?;
    }
    if let Some(icc) = icc {
        encoder.add_icc_profile(icc).map_err(fail)?;
    }
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
fn encode_png(
    image: DynamicImage,
    compression: PngCompression,
    icc: Option<&[u8]>,
    meta: &Metadata,
) -> Result<Vec<u8>, EngineError> {
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
    let mut encoder = PngEncoder::new_with_quality(&mut out, level, FilterType::Adaptive);
    if let Some(icc) = icc {
        encoder
            .set_icc_profile(icc.to_vec())
            .map_err(|e| EngineError::Internal(format!("png: {e}")))?;
    }
    if let Some(exif) = &meta.exif {
        encoder
            .set_exif_metadata(exif.clone())
            .map_err(|e| EngineError::Internal(format!("png: {e}")))?;
    }
    image
        .write_with_encoder(encoder)
        .map_err(|e| EngineError::encoding(e, OutputFormat::Png))?;
    match &meta.xmp {
        Some(xmp) => png_with_xmp(out, xmp),
        None => Ok(out),
    }
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

/// Pixels at or above this alpha are opaque in a GIF; the others share
/// the one transparent palette entry.
const GIF_OPAQUE: u8 = 128;

/// Most pixels the GIF palette is computed from; larger animations are
/// sampled evenly (a palette needs the colour distribution, not every
/// pixel), which bounds the quantiser's time and memory.
const GIF_PALETTE_SAMPLE: usize = 256 << 10;

/// The colour table of the fast GIF path: 5 bits per channel, the
/// resolution of the Wu histogram, so a table entry per histogram cell.
fn gif_cell(p: &[u8]) -> usize {
    (usize::from(p[0] >> 3) << 10) | (usize::from(p[1] >> 3) << 5) | usize::from(p[2] >> 3)
}

/// A GIF of full-canvas frames sharing one global palette of at most
/// `colors` entries (the fast path, [`Tuning::fast_gif`]).
///
/// The palette: when every opaque pixel of the animation fits in `colors`
/// distinct colours (flat art, or a source whose palette survived the ops)
/// those exact colours, so nothing is lost; otherwise Wu's quantiser
/// (quantette) over a 32x32x32 colour histogram of all frames. Wu's boxes
/// double as the colour map, so mapping a pixel is one table lookup (no
/// nearest-colour search), and the palette is computed once instead of
/// once per frame; the frames are compressed by `lzw.rs`. Together about
/// 15x cheaper than per-frame NeuQuant on the bench animation; the engine
/// tests compare the two by PSNR.
fn encode_gif_fast(
    frames: Vec<AnimFrame>,
    width: u32,
    height: u32,
    loop_count: Option<u32>,
    colors: u16,
) -> Result<Vec<u8>, EngineError> {
    use quantette::color_map::IndexedColorMap as _;
    use quantette::deps::palette::Srgb;

    let fail = |e: gif::EncodingError| EngineError::encoding(e, OutputFormat::Gif);
    let (w, h) = gif_size(width, height)?;
    check_frames(&frames, width, height)?;
    let total: usize = frames.iter().map(|f| f.image.as_raw().len() / 4).sum();
    let step = total.div_ceil(GIF_PALETTE_SAMPLE).max(1);
    let opaque_pixels = || {
        frames
            .iter()
            .flat_map(|f| f.image.as_raw().chunks_exact(4))
            .filter(|p| p[3] >= GIF_OPAQUE)
    };
    let transparent = frames
        .iter()
        .any(|f| f.image.as_raw().chunks_exact(4).any(|p| p[3] < GIF_OPAQUE));
    // An opaque animation is written as changes: after the first frame,
    // each frame covers only the rectangle that changed, and inside it a
    // transparent index stands for "as before" (frames are kept, not
    // cleared). One palette entry is given up for that index. A translucent
    // animation keeps full frames: a pixel that turns transparent cannot be
    // written over a kept frame. An animation whose colours fill the whole
    // palette exactly keeps its exact (lossless) palette and full frames.
    let full = usize::from(colors.clamp(2, 256)) - usize::from(transparent);

    // The palette (RGB triplets), and for Wu a palette index per colour
    // cell (`gif_cell`): a pixel's index is then one table lookup.
    let exact = exact_palette(opaque_pixels(), full);
    let deltas = !transparent
        && frames.len() > 1
        && colors > 2
        && exact
            .as_ref()
            .is_none_or(|(palette, _)| palette.len() / 3 < full);
    // Wu's palette leaves the entry deltas need.
    let max_colors = full - usize::from(deltas && exact.is_none());
    let (mut palette, cells) = match &exact {
        Some((palette, _)) => (palette.clone(), Vec::new()),
        None => {
            let sample: Vec<Srgb<u8>> = opaque_pixels()
                .step_by(step)
                .map(|p| Srgb::new(p[0], p[1], p[2]))
                .collect();
            let size = quantette::PaletteSize::try_from(u16::try_from(max_colors).unwrap_or(255))
                .map_err(|_| EngineError::Internal("bad GIF palette size".to_string()))?;
            let wu = quantette::wu::WuU8x3::run_slice(
                &sample,
                quantette::wu::BinnerU8x3::<32, 32, 32>::new(),
            )
            .map_err(|e| EngineError::Internal(format!("GIF palette failed: {e:?}")))?;
            let map = wu.color_map(size);
            let palette = map
                .palette()
                .iter()
                .flat_map(|c| [c.red, c.green, c.blue])
                .collect();
            // The map answers per histogram cell, so the cell's own colour
            // stands for all of its pixels.
            let cells = (0..1usize << 15)
                .map(|cell| {
                    let channel = |shift: usize| ((cell >> shift) as u8 & 31) << 3;
                    map.palette_index(&Srgb::new(channel(10), channel(5), channel(0)))
                })
                .collect();
            (palette, cells)
        }
    };
    let index_of = |p: &[u8]| -> u8 {
        match &exact {
            Some((_, lookup)) => lookup.get(&[p[0], p[1], p[2]]).copied().unwrap_or(0),
            None => cells.get(gif_cell(p)).copied().unwrap_or(0),
        }
    };
    if palette.is_empty() {
        // Every pixel is transparent: one placeholder colour.
        palette.extend_from_slice(&[0, 0, 0]);
    }
    let clear_index = u8::try_from(palette.len() / 3).unwrap_or(u8::MAX);
    if transparent || deltas {
        palette.extend_from_slice(&[0, 0, 0]);
    }
    let mut encoder = gif::Encoder::new(Vec::new(), w, h, &palette).map_err(fail)?;
    set_repeat(&mut encoder, loop_count)?;
    let code_size = lzw::min_code_size(palette.len() / 3);
    // The indices on screen after the previous frame (delta mode only).
    let mut shown: Option<Vec<u8>> = None;
    for frame in &frames {
        let indices: Vec<u8> = frame
            .image
            .as_raw()
            .chunks_exact(4)
            .map(|p| {
                if p[3] < GIF_OPAQUE {
                    clear_index
                } else {
                    index_of(p)
                }
            })
            .collect();
        let (rect, data) = match &shown {
            Some(before) if deltas => changes(before, &indices, (w, h), clear_index),
            _ => ((0, 0, w, h), indices.clone()),
        };
        let out = gif::Frame {
            left: rect.0,
            top: rect.1,
            width: rect.2,
            height: rect.3,
            buffer: std::borrow::Cow::Owned(lzw::encode(&data, code_size)),
            transparent: (transparent || (deltas && shown.is_some())).then_some(clear_index),
            // GIF delays are in 10 ms units.
            delay: u16::try_from(frame.delay_ms.saturating_add(5) / 10).unwrap_or(u16::MAX),
            dispose: if deltas {
                gif::DisposalMethod::Keep
            } else {
                gif::DisposalMethod::Background
            },
            ..gif::Frame::default()
        };
        encoder.write_lzw_pre_encoded_frame(&out).map_err(fail)?;
        if deltas {
            shown = Some(indices);
        }
    }
    encoder.into_inner().map_err(fail)
}

/// What a kept frame must add to `before` to show `after` (both full
/// canvases of `w` x `h` palette indices): the rectangle (left, top, width,
/// height) around every changed pixel, its unchanged pixels as `keep` (the
/// transparent index). Nothing changed: one transparent pixel, so the
/// frame and its delay stay.
fn changes(
    before: &[u8],
    after: &[u8],
    (w, h): (u16, u16),
    keep: u8,
) -> ((u16, u16, u16, u16), Vec<u8>) {
    let width = usize::from(w);
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for (y, (b, a)) in before
        .chunks_exact(width)
        .zip(after.chunks_exact(width))
        .enumerate()
        .take(usize::from(h))
    {
        if b == a {
            continue;
        }
        let first = b.iter().zip(a).position(|(p, q)| p != q).unwrap_or(0);
        let last = b.iter().zip(a).rposition(|(p, q)| p != q).unwrap_or(0);
        x0 = x0.min(first);
        x1 = x1.max(last);
        y0 = y0.min(y);
        y1 = y;
    }
    if x0 == usize::MAX {
        return ((0, 0, 1, 1), vec![keep]);
    }
    let mut data = Vec::with_capacity((x1 - x0 + 1) * (y1 - y0 + 1));
    for y in y0..=y1 {
        let row = y * width;
        data.extend((x0..=x1).map(|x| match after[row + x] {
            p if p == before[row + x] => keep,
            p => p,
        }));
    }
    let side = |v: usize| u16::try_from(v).unwrap_or(u16::MAX);
    (
        (side(x0), side(y0), side(x1 - x0 + 1), side(y1 - y0 + 1)),
        data,
    )
}

/// The distinct colours of `pixels` (RGBA, alpha ignored) as a palette and
/// a colour -> index table, or `None` as soon as there are more than `max`.
/// Photographs give up within a few hundred pixels, so the cost is paid in
/// full only when the exact palette is then used.
#[allow(clippy::type_complexity)]
fn exact_palette<'a>(
    pixels: impl Iterator<Item = &'a [u8]>,
    max: usize,
) -> Option<(Vec<u8>, std::collections::HashMap<[u8; 3], u8>)> {
    let mut lookup = std::collections::HashMap::new();
    let mut palette = Vec::new();
    let mut last: Option<[u8; 3]> = None;
    for p in pixels {
        let rgb = [p[0], p[1], p[2]];
        if last == Some(rgb) {
            continue;
        }
        last = Some(rgb);
        if !lookup.contains_key(&rgb) {
            if lookup.len() == max {
                return None;
            }
            lookup.insert(rgb, u8::try_from(lookup.len()).ok()?);
            palette.extend_from_slice(&rgb);
        }
    }
    Some((palette, lookup))
}

fn gif_size(width: u32, height: u32) -> Result<(u16, u16), EngineError> {
    match (u16::try_from(width), u16::try_from(height)) {
        (Ok(w), Ok(h)) => Ok((w, h)),
        _ => Err(EngineError::BadParameter(format!(
            "a {width}x{height} image is too large for gif"
        ))),
    }
}

fn check_frames(frames: &[AnimFrame], width: u32, height: u32) -> Result<(), EngineError> {
    match frames
        .iter()
        .find(|f| f.image.dimensions() != (width, height))
    {
        Some(f) => Err(EngineError::Internal(format!(
            "animation frame is {}x{}, not {width}x{height}",
            f.image.width(),
            f.image.height()
        ))),
        None => Ok(()),
    }
}

/// `loop_count`: `None` writes no NETSCAPE block (plays once), `Some(0)`
/// loops forever, `Some(n)` repeats n times.
fn set_repeat(
    encoder: &mut gif::Encoder<Vec<u8>>,
    loop_count: Option<u32>,
) -> Result<(), EngineError> {
    if let Some(count) = loop_count {
        let repeat = match count {
            0 => gif::Repeat::Infinite,
            n => gif::Repeat::Finite(u16::try_from(n).unwrap_or(u16::MAX)),
        };
        encoder
            .set_repeat(repeat)
            .map_err(|e| EngineError::encoding(e, OutputFormat::Gif))?;
    }
    Ok(())
}

/// A GIF of full-canvas frames, each with its own NeuQuant palette of at
/// most `colors` entries (the path before [`encode_gif_fast`], kept for the
/// benchmark's comparison).
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
    let (w, h) = gif_size(width, height)?;
    check_frames(&frames, width, height)?;
    let mut encoder = gif::Encoder::new(Vec::new(), w, h, &[]).map_err(fail)?;
    set_repeat(&mut encoder, loop_count)?;
    for frame in frames {
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
