//! The image engine: decode, transform and encode one image under limits.
//!
//! It runs only inside worker processes, single-threaded, as a pure function
//! of `(Task, bytes)` ([`run`]). Hostile input is the normal case here: the
//! format is sniffed from the bytes, the canvas and frame budget are checked
//! from the header before any pixel buffer exists, and every failure comes
//! back as a typed [`WorkError`] rather than a panic. (A panic is still caught
//! by the worker, but it costs a process restart, so it is treated as a bug.)
//!
//! Pipeline, timed stage by stage into [`Timing`]:
//!
//! 1. **decode** (`decode.rs`): sniff the format (`sniff.rs`), check the
//!    limits (`limits.rs`), decode every frame (GIF, animated WebP and APNG
//!    stay animations);
//! 2. **ops** (`ops.rs`, with `geometry.rs`, `effects.rs`, `smart.rs`,
//!    `overlay.rs`, `alpha.rs` and the generic pixel plumbing of
//!    `pixel.rs`): apply the EXIF orientation (unless `autorotate=false`),
//!    then each op in order, to every frame;
//! 3. **encode** (`encode.rs`): write the requested format (or the input's
//!    family; an animation without an explicit format becomes an animated
//!    GIF), without metadata (the colour profile only with `icc=keep`).
//!
//! # Test ops
//!
//! `TestSleep`, `TestPanic`, `TestAbort` and `TestSegv` exist for the
//! crash-isolation tests and only work with the `test-ops` feature (without
//! it any of them is a `BadParameter` error). They run first, before
//! decoding, so they work with any body, even an empty one. If the request
//! has nothing but test ops, decoding is skipped and the product is an
//! [`ImageInfo`] with format `"none"` and zero sizes (only `bytes` is
//! filled), so a sleep request with an empty body still succeeds. Otherwise
//! the remaining real ops run as usual.

mod alpha;
mod avif;
mod colour;
mod decode;
mod effects;
mod encode;
mod error;
mod format;
mod geometry;
mod heif;
mod jxl;
mod libjpeg;
mod limits;
mod lzw;
mod metadata;
mod ops;
mod overlay;
mod pixel;
mod smart;
mod sniff;
mod svg;
mod tiffdec;
mod webp;

#[cfg(test)]
mod tests;

use std::time::Instant;

use image::metadata::Orientation;
use image::{ColorType, DynamicImage};

use crate::proto::{ImageInfo, ImageMeta, KeepMeta, Op, OutputFormat, Task, Timing, WorkError};

use decode::{AnimFrame, Animation, Content, Decoded};
use error::EngineError;
use format::InputFormat;

/// Builds what the decoders keep between requests (libheif's codec
/// registry, the SVG font database) so that no request pays for it and
/// nothing is read from disk once the sandbox is on.
pub fn prepare() {
    heif::prepare();
    svg::prepare();
}

/// What a successful [`run`] produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Product {
    /// An encoded image (the reply payload) and its description.
    Image { bytes: Vec<u8>, meta: ImageMeta },
    /// The answer of the `info` op.
    Info(ImageInfo),
}

/// Runs a task on raw input bytes.
///
/// Never panics on bad input (a panic is a bug; the caller catches it). The
/// [`Timing`] is filled with the microseconds each stage took, also when the
/// task fails (stages not reached stay 0), so slow failures show up in
/// `Server-Timing` too.
///
/// `Op::Info` must be the only (non-test) op; it answers with
/// [`Product::Info`] describing the stored image (dimensions before EXIF
/// orientation). It still decodes every frame, so that `info` never vouches
/// for a file the other ops would reject as damaged.
///
/// An animated input written with an explicit `jpeg` or `png` output format
/// keeps its first frame only; with no format or `gif` it stays an animated
/// GIF, with `webp` an animated WebP, with its delays and loop count.
pub fn run(task: &Task, input: &[u8]) -> (Result<Product, WorkError>, Timing) {
    run_tuned(task, input, &[], &Tuning::default())
}

/// [`run`] with the images of the task's `overlay` ops, one per op in op
/// order (what the worker split off the request's payload).
pub fn run_with_overlays(
    task: &Task,
    input: &[u8],
    overlays: &[&[u8]],
) -> (Result<Product, WorkError>, Timing) {
    run_tuned(task, input, overlays, &Tuning::default())
}

/// Switches for the engine's fast paths. Production always runs with
/// every one on ([`Tuning::default`], what [`run`] uses); they exist so that
/// the benchmark can measure each fast path against the code it replaced,
/// in the same run and on the same inputs (`bench/inproc.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Decode JPEGs with libjpeg-turbo (off: zune-jpeg, as `image` does).
    pub libjpeg: bool,
    /// With libjpeg: decode at 1/2, 1/4 or 1/8 scale when the first op is
    /// a downscale that needs no more.
    pub shrink_on_load: bool,
    /// Encode JPEGs with libjpeg-turbo (off: the pure-Rust jpeg-encoder).
    pub libjpeg_encode: bool,
    /// Gaussian blur (for `blur` and `sharpen`) by a SIMD exact gaussian,
    /// on a shrunk copy for large sigma (off: `image`'s box blur).
    pub fast_blur: bool,
    /// GIF output: one palette per animation and a lookup-table mapping
    /// (off: a NeuQuant palette per frame).
    pub fast_gif: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            libjpeg: true,
            shrink_on_load: true,
            libjpeg_encode: true,
            fast_blur: true,
            fast_gif: true,
        }
    }
}

/// [`run`] with chosen fast paths (for the benchmark).
pub fn run_tuned(
    task: &Task,
    input: &[u8],
    overlays: &[&[u8]],
    tuning: &Tuning,
) -> (Result<Product, WorkError>, Timing) {
    let mut timing = Timing::default();
    let result = run_task(task, input, overlays, tuning, &mut timing).map_err(WorkError::from);
    (result, timing)
}

/// For shrink-on-load: the least stored size the first op needs of a
/// stored `w` x `h` source with `orientation` (applied first when
/// `autorotate` is on, so the op plans on the upright size). A resize needs
/// its output size; a fast blur the 1/[`effects::blur_scale`] copy it would
/// shrink the picture to anyway.
fn first_op_need(
    op: Option<&&Op>,
    autorotate: bool,
    tuning: &Tuning,
) -> Option<impl Fn(u32, u32, Orientation) -> Option<decode::Wanted>> {
    /// What the closure below plans for.
    enum First {
        Resize {
            width: Option<u32>,
            height: Option<u32>,
            fit: crate::proto::Fit,
            enlarge: bool,
        },
        Blur(f32),
    }
    let first = match op? {
        // Shrink-on-load averages stored values (the DCT's own scaling),
        // which a scale in linear light must not: it decodes in full.
        Op::Resize {
            linear: Some(true), ..
        }
        | Op::Thumbnail {
            linear: Some(true), ..
        } => return None,
        Op::Resize {
            width,
            height,
            fit,
            enlarge,
            ..
        } => First::Resize {
            width: *width,
            height: *height,
            fit: *fit,
            enlarge: *enlarge,
        },
        Op::Thumbnail { width, height, .. } => First::Resize {
            width: Some(*width),
            height: Some(*height),
            fit: crate::proto::Fit::Cover,
            enlarge: false,
        },
        Op::Blur { sigma } if tuning.fast_blur => First::Blur(*sigma),
        _ => return None,
    };
    Some(move |w, h, orientation| match first {
        First::Blur(sigma) => {
            // Blur is the same upright or not; the size check is symmetric.
            // At most 1/2: the blur repeats the outermost decoded pixels
            // outwards, and at 1/d each is the mean of d source columns,
            // so a one-pixel line along a border (a frame) would fade by up
            // to (d-1)/2d of its contrast; at 1/2 that is a quarter, at 1/8
            // nearly half (78 levels in the engine test).
            let k = effects::blur_scale(sigma, (w, h)).min(2);
            Some(decode::Wanted {
                least: (w / k, h / k),
                coarse: k >= 2,
            })
        }
        First::Resize {
            width,
            height,
            fit,
            enlarge,
        } => {
            let orientation = if autorotate {
                orientation
            } else {
                Orientation::NoTransforms
            };
            let (uw, uh) = upright_size(w, h, orientation);
            let upright_need = geometry::plan_resize(uw, uh, width, height, fit, enlarge)
                .ok()?
                .scaled;
            // Back to stored axes: the same swap, undone.
            Some(decode::Wanted {
                least: upright_size(upright_need.0, upright_need.1, orientation),
                coarse: false,
            })
        }
    })
}

fn run_task(
    task: &Task,
    input: &[u8],
    overlays: &[&[u8]],
    tuning: &Tuning,
    timing: &mut Timing,
) -> Result<Product, EngineError> {
    let (test_ops, ops): (Vec<&Op>, Vec<&Op>) = task.ops.iter().partition(|op| is_test_op(op));
    if !test_ops.is_empty() {
        run_test_ops(&test_ops)?;
        if ops.is_empty() {
            return Ok(Product::Info(empty_info(input.len())));
        }
    }

    if ops.iter().any(|op| matches!(op, Op::Info)) {
        if ops.len() != 1 {
            return Err(EngineError::BadParameter(
                "info cannot be combined with other operations".to_string(),
            ));
        }
        let started = Instant::now();
        let decoded = decode_input(input, &task.limits, None, tuning, 0);
        timing.decode_us = micros_since(started);
        let decoded = decoded?;
        let mut info = info_of(&decoded, input.len());
        let found = metadata::read(input, decoded.format);
        info.exif = found.exif.is_some();
        info.xmp = found.xmp.is_some();
        if decoded.format == InputFormat::Tiff {
            info.pages = tiffdec::page_count(input, task.limits.max_frames.max(1));
        }
        return Ok(Product::Info(info));
    }

    let need = first_op_need(ops.first(), task.output.autorotate, tuning);
    let need_fn = need.as_ref().map(|f| f as decode::Need<'_>);
    let started = Instant::now();
    let decoded = decode_input(input, &task.limits, need_fn, tuning, task.output.page);
    timing.decode_us = micros_since(started);
    let mut decoded = decoded?;
    let kept = keep_profile(task, &ops, &decoded);
    if kept.is_none() {
        colour::to_srgb(&mut decoded);
    }
    // `linear=true` decodes stored values with sRGB's curve; on pixels
    // left in a kept profile with another curve (ProPhoto's gamma 1.8)
    // that would be wrong light, so such a scale runs on the stored values.
    let relaxed: Vec<Op>;
    let ops = match &kept {
        Some(k) if !k.srgb_curve && ops.iter().any(|op| is_linear(op)) => {
            relaxed = ops.iter().map(|op| without_linear(op)).collect();
            relaxed.iter().collect()
        }
        _ => ops,
    };
    let overlays = decode_overlays(&ops, overlays, &task.limits, tuning)?;
    timing.decode_us = micros_since(started);
    if !task.output.autorotate {
        decoded.orientation = Orientation::NoTransforms;
    }
    let input_format = decoded.format;
    // The upright size of the source, which the first op plans from even
    // when the decoder shrank the picture on load.
    let source = upright_size(decoded.width, decoded.height, decoded.orientation);

    let started = Instant::now();
    let content = orient(decoded.content, decoded.orientation);
    let content = ops::apply(content, &ops, overlays, &task.limits, source, tuning);
    timing.ops_us = micros_since(started);
    let content = content?;

    let format = task.output.format.unwrap_or(match &content {
        Content::Animation(_) => OutputFormat::Gif,
        // A HEIC with alpha would lose it in the JPEG of its family.
        Content::Still(img) if input_format == InputFormat::Heif && img.color().has_alpha() => {
            OutputFormat::Png
        }
        Content::Still(_) => input_format.default_output(),
    });
    let started = Instant::now();
    let meta = match task.output.keep_meta {
        KeepMeta::None => metadata::Metadata::default(),
        keep => metadata::for_output(
            metadata::read(input, input_format),
            keep,
            task.output.autorotate,
        ),
    };
    let embed = encode::Embed {
        kept: kept.as_ref(),
        meta: &meta,
    };
    let encoded = encode::encode(content, format, &task.output, tuning, embed);
    timing.encode_us = micros_since(started);
    let (bytes, meta) = encoded?;
    Ok(Product::Image { bytes, meta })
}

/// With `icc=keep`: the profile to embed, when the output can carry it
/// (JPEG, PNG, WebP; a grey profile not WebP, which holds RGB only; the
/// format is known here as the encoder will choose it), the profile
/// describes the pixels ([`colour::keepable`]), and no op paints colours
/// given in sRGB (a fill, a background, an overlay, sepia's tone, hue's
/// sRGB-primaries matrix): those would land unconverted among pixels in
/// another space. `None`: the pixels are converted to sRGB as by default.
fn keep_profile(task: &Task, ops: &[&Op], decoded: &Decoded) -> Option<colour::Kept> {
    if !task.output.keep_icc {
        return None;
    }
    let format = task.output.format.unwrap_or(match &decoded.content {
        Content::Animation(_) => OutputFormat::Gif,
        Content::Still(_) => decoded.format.default_output(),
    });
    if !matches!(
        format,
        OutputFormat::Jpeg | OutputFormat::Png | OutputFormat::Webp
    ) {
        return None;
    }
    if ops.iter().any(|op| paints_srgb(op)) {
        return None;
    }
    let kept = colour::keepable(decoded)?;
    if kept.grey && format == OutputFormat::Webp {
        return None;
    }
    Some(kept)
}

/// Whether `op` brings in colours defined in sRGB. A rotation by a right
/// angle moves pixels only; any other angle fills its corners.
fn paints_srgb(op: &Op) -> bool {
    match op {
        Op::Sepia | Op::Hue { .. } | Op::Background { .. } | Op::Pad { .. } => true,
        Op::Overlay { .. } => true,
        Op::Rotate { angle, .. } => angle.rem_euclid(90.0) != 0.0,
        _ => false,
    }
}

fn is_linear(op: &Op) -> bool {
    matches!(
        op,
        Op::Resize {
            linear: Some(true),
            ..
        } | Op::Thumbnail {
            linear: Some(true),
            ..
        }
    )
}

/// `op` with a resize's or thumbnail's `linear` turned off.
fn without_linear(op: &Op) -> Op {
    let mut op = op.clone();
    if let Op::Resize { linear, .. } | Op::Thumbnail { linear, .. } = &mut op {
        *linear = Some(false);
    }
    op
}

/// Decodes the image of each `overlay` op (one per op, in op order) under
/// the request's limits, upright, as RGBA8; an animated overlay gives its
/// first frame. Its failures name the overlay, so a client can tell a bad
/// watermark from a bad input.
fn decode_overlays(
    ops: &[&Op],
    images: &[&[u8]],
    limits: &crate::proto::Limits,
    tuning: &Tuning,
) -> Result<Vec<image::RgbaImage>, EngineError> {
    let wanted = ops
        .iter()
        .filter(|op| matches!(op, Op::Overlay { .. }))
        .count();
    if wanted != images.len() {
        return Err(EngineError::Internal(format!(
            "{} overlay images for {wanted} overlay ops",
            images.len()
        )));
    }
    let named = |e: EngineError| {
        let say = |m: String| format!("overlay image: {m}");
        match e {
            EngineError::BadParameter(m) => EngineError::BadParameter(say(m)),
            EngineError::Unsupported(m) => EngineError::Unsupported(say(m)),
            EngineError::Corrupt(m) => EngineError::Corrupt(say(m)),
            EngineError::TooLarge(m) => EngineError::TooLarge(say(m)),
            EngineError::Internal(m) => EngineError::Internal(say(m)),
        }
    };
    // All overlays of a request together get one frame's pixel budget
    // (every frame counted), so four animated overlays cannot each hold
    // as much as the input may.
    let mut budget = limits.max_pixels;
    images
        .iter()
        .map(|bytes| {
            let own = crate::proto::Limits {
                max_pixels: budget,
                max_frames: limits.max_frames,
                max_total_pixels: budget,
            };
            let decoded = decode_input(bytes, &own, None, tuning, 0).map_err(|e| match e {
                EngineError::TooLarge(m) => EngineError::TooLarge(format!(
                    "{m} (the overlays of one request share --max-pixels, all frames counted)"
                )),
                other => other,
            });
            let mut decoded = decoded.map_err(named)?;
            colour::to_srgb(&mut decoded);
            let held: u64 = match &decoded.content {
                Content::Still(i) => u64::from(i.width()) * u64::from(i.height()),
                Content::Animation(a) => a
                    .frames
                    .iter()
                    .map(|f| u64::from(f.image.width()) * u64::from(f.image.height()))
                    .sum(),
            };
            budget = budget.saturating_sub(held);
            let orientation = decoded.orientation;
            Ok(match orient(decoded.content, orientation) {
                Content::Still(image) => image.into_rgba8(),
                Content::Animation(mut a) => {
                    if a.frames.is_empty() {
                        return Err(named(EngineError::Corrupt("no frames".to_string())));
                    }
                    a.frames.swap_remove(0).image
                }
            })
        })
        .collect()
}

/// Sniffs the format and hands the bytes to its decoder: the HEIF family,
/// JPEG XL and SVG have modules of their own (built on `decode`'s types),
/// the rest go through `decode`.
fn decode_input(
    input: &[u8],
    limits: &crate::proto::Limits,
    need: Option<decode::Need<'_>>,
    tuning: &Tuning,
    page: u32,
) -> Result<Decoded, EngineError> {
    if page > 0 {
        return match sniff::detect(input)? {
            InputFormat::Tiff => tiffdec::decode(input, limits, page),
            other => Err(EngineError::BadParameter(format!(
                "page {page} does not exist: a {} input has one page (page= reads multi-page TIFF)",
                other.label()
            ))),
        };
    }
    match sniff::detect(input)? {
        format @ (InputFormat::Avif | InputFormat::Heif) => heif::decode(input, format, limits),
        InputFormat::Jxl => jxl::decode(input, limits),
        InputFormat::Svg => svg::decode(input, limits, need),
        // What `image`'s TIFF decoder refuses, the tiff crate may read.
        InputFormat::Tiff => match decode::decode(input, limits, need, tuning) {
            Err(EngineError::Unsupported(first)) => {
                tiffdec::decode(input, limits, 0).map_err(|e| match e {
                    EngineError::Unsupported(_) => EngineError::Unsupported(first),
                    other => other,
                })
            }
            other => other,
        },
        _ => decode::decode(input, limits, need, tuning),
    }
}

/// `w` x `h` as shown after `orientation` (sides swapped by a quarter turn).
fn upright_size(w: u32, h: u32, orientation: Orientation) -> (u32, u32) {
    match orientation {
        Orientation::Rotate90
        | Orientation::Rotate270
        | Orientation::Rotate90FlipH
        | Orientation::Rotate270FlipH => (h, w),
        _ => (w, h),
    }
}

fn micros_since(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Applies the EXIF orientation so that every op sees the picture upright,
/// as a viewer would show it (the output carries no EXIF to do it later).
fn orient(content: Content, orientation: Orientation) -> Content {
    if orientation == Orientation::NoTransforms {
        return content;
    }
    match content {
        Content::Still(mut image) => {
            image.apply_orientation(orientation);
            Content::Still(image)
        }
        Content::Animation(Animation { frames, loop_count }) => Content::Animation(Animation {
            frames: frames
                .into_iter()
                .map(|frame| {
                    let mut image = DynamicImage::ImageRgba8(frame.image);
                    image.apply_orientation(orientation);
                    AnimFrame {
                        image: image.into_rgba8(),
                        delay_ms: frame.delay_ms,
                    }
                })
                .collect(),
            loop_count,
        }),
    }
}

fn is_test_op(op: &Op) -> bool {
    op.is_test()
}

/// The master's pid, as an exploited decoder would find it in the worker's
/// memory (`--parent-pid`), for the `__kill_master` test op: read before
/// the sandbox, since `getppid` is one of the calls it refuses.
#[cfg(feature = "test-ops")]
static TEST_PARENT: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Records the master's pid for the `__kill_master` test op.
#[cfg(feature = "test-ops")]
pub fn set_test_parent(pid: i32) {
    TEST_PARENT.store(pid, std::sync::atomic::Ordering::Relaxed);
}

/// Executes the test ops in order (feature `test-ops`).
#[cfg(feature = "test-ops")]
fn run_test_ops(test_ops: &[&Op]) -> Result<(), EngineError> {
    for op in test_ops {
        match op {
            Op::TestSleep { ms } => std::thread::sleep(std::time::Duration::from_millis(*ms)),
            Op::TestPanic => panic!("test panic"),
            Op::TestAbort => std::process::abort(),
            Op::TestSegv => {
                use nix::sys::signal::{raise, Signal};
                // Rust's runtime has its own SIGSEGV handler (stack-overflow
                // detection); for a fault outside a guard page it restores
                // the default action and returns. The second raise then
                // kills the process with SIGSEGV as a real crash would.
                let _ = raise(Signal::SIGSEGV);
                let _ = raise(Signal::SIGSEGV);
                std::process::abort();
            }
            // Both must fail under the worker's sandbox (the kernel kills
            // the process); without it they succeed and the request is 200.
            Op::TestOpenFile => {
                let opened = std::fs::File::open("/proc/self/status");
                tracing::warn!("test op __open: {:?}", opened.map(|_| ()));
            }
            Op::TestSocket => {
                let bound = std::net::UdpSocket::bind("127.0.0.1:0");
                tracing::warn!("test op __socket: {:?}", bound.map(|_| ()));
            }
            // What an exploited decoder would try against the master: every
            // way of signalling another process. Under the sandbox the
            // first one kills this worker; without it, the master dies.
            Op::TestKillMaster => {
                use nix::libc;
                let parent = TEST_PARENT.load(std::sync::atomic::Ordering::Relaxed);
                // SAFETY: raw system calls with plain integer arguments; no
                // memory is passed or returned.
                let tg = unsafe { libc::syscall(libc::SYS_tgkill, parent, parent, libc::SIGKILL) };
                // SAFETY: as above.
                let t = unsafe { libc::syscall(libc::SYS_tkill, parent, libc::SIGKILL) };
                let k = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(parent),
                    nix::sys::signal::Signal::SIGKILL,
                );
                tracing::warn!("test op __kill_master: tgkill {tg}, tkill {t}, kill {k:?}");
            }
            _ => {}
        }
    }
    Ok(())
}

/// Without the `test-ops` feature the test ops are refused.
#[cfg(not(feature = "test-ops"))]
fn run_test_ops(_test_ops: &[&Op]) -> Result<(), EngineError> {
    Err(EngineError::BadParameter(
        "test ops are disabled in this build".to_string(),
    ))
}

/// The product of a request made only of test ops: nothing was decoded.
fn empty_info(bytes: usize) -> ImageInfo {
    ImageInfo {
        format: "none".to_string(),
        width: 0,
        height: 0,
        frames: 0,
        has_alpha: false,
        delays_ms: Vec::new(),
        loop_count: None,
        color_type: "none".to_string(),
        bit_depth: 0,
        orientation: 1,
        pages: 0,
        icc: None,
        exif: false,
        xmp: false,
        bytes: bytes as u64,
    }
}

fn info_of(decoded: &Decoded, bytes: usize) -> ImageInfo {
    let (delays_ms, loop_count) = match &decoded.content {
        Content::Animation(anim) => (
            anim.frames.iter().map(|f| f.delay_ms).collect(),
            anim.loop_count,
        ),
        Content::Still(_) => (Vec::new(), None),
    };
    let ct = decoded.color_type;
    let channels = u16::from(ct.channel_count()).max(1);
    ImageInfo {
        format: decoded.format.name().to_string(),
        width: decoded.width,
        height: decoded.height,
        frames: decoded.content.frame_count(),
        has_alpha: ct.has_alpha(),
        delays_ms,
        loop_count,
        color_type: color_type_name(ct),
        bit_depth: u8::try_from(ct.bits_per_pixel() / channels).unwrap_or(u8::MAX),
        orientation: decoded.orientation.to_exif(),
        pages: 1,
        icc: decoded
            .icc
            .as_deref()
            .map(|icc| colour::description(icc).unwrap_or_else(|| "unnamed".to_string())),
        // Filled in by the info request, which reads the metadata.
        exif: false,
        xmp: false,
        bytes: bytes as u64,
    }
}

fn color_type_name(ct: ColorType) -> String {
    match ct {
        ColorType::L8 => "l8".to_string(),
        ColorType::La8 => "la8".to_string(),
        ColorType::Rgb8 => "rgb8".to_string(),
        ColorType::Rgba8 => "rgba8".to_string(),
        ColorType::L16 => "l16".to_string(),
        ColorType::La16 => "la16".to_string(),
        ColorType::Rgb16 => "rgb16".to_string(),
        ColorType::Rgba16 => "rgba16".to_string(),
        ColorType::Rgb32F => "rgb32f".to_string(),
        ColorType::Rgba32F => "rgba32f".to_string(),
        other => format!("{other:?}").to_lowercase(),
    }
}
