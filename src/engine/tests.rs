//! Engine tests against the shared corpus (`../shared/corpus`, described by
//! its MANIFEST.tsv) plus a few synthetic inputs.

use std::io::Cursor;
use std::time::{Duration, Instant};

use image::codecs::gif::GifDecoder;
use image::{AnimationDecoder, DynamicImage, GenericImageView, ImageFormat};

use super::decode::{AnimFrame, Animation, Content};
use super::*;
use crate::proto::{ErrorKind, Limits, OutputSpec};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus/");

fn read(path: &str) -> Vec<u8> {
    std::fs::read(format!("{CORPUS}{path}")).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn task(ops: Vec<Op>) -> Task {
    Task {
        ops,
        output: OutputSpec::default(),
        limits: Limits::default(),
    }
}

fn task_as(ops: Vec<Op>, format: OutputFormat) -> Task {
    let mut t = task(ops);
    t.output.format = Some(format);
    t
}

fn image_of(task: &Task, input: &[u8]) -> (Vec<u8>, ImageMeta) {
    match run(task, input).0 {
        Ok(Product::Image { bytes, meta }) => (bytes, meta),
        Ok(Product::Info(info)) => panic!("expected an image, got info {info:?}"),
        Err(e) => panic!("expected an image, got {e:?}"),
    }
}

fn info_of_bytes(input: &[u8]) -> ImageInfo {
    match run(&task(vec![Op::Info]), input).0 {
        Ok(Product::Info(info)) => info,
        other => panic!("expected info, got {other:?}"),
    }
}

fn error_of(task: &Task, input: &[u8]) -> WorkError {
    match run(task, input).0 {
        Err(e) => e,
        Ok(Product::Info(info)) => panic!("expected an error, got info {info:?}"),
        Ok(Product::Image { meta, .. }) => panic!("expected an error, got image {meta:?}"),
    }
}

fn resize_w(width: u32) -> Op {
    Op::Resize {
        width: Some(width),
        height: None,
        fit: crate::proto::Fit::Contain,
        gravity: crate::proto::Gravity::Centre,
        enlarge: false,
        linear: None,
    }
}

fn rot(angle: f32) -> Op {
    Op::Rotate {
        angle,
        background: crate::proto::Color::BLACK,
    }
}

fn decode_output(bytes: &[u8]) -> DynamicImage {
    image::load_from_memory(bytes).unwrap_or_else(|e| panic!("output does not decode: {e}"))
}

fn gif_frames(bytes: &[u8]) -> Vec<image::Frame> {
    let decoder = GifDecoder::new(Cursor::new(bytes)).expect("output GIF header");
    decoder
        .into_frames()
        .collect_frames()
        .expect("output GIF frames")
}

fn delay_ms(frame: &image::Frame) -> u32 {
    let (n, d) = frame.delay().numer_denom_ms();
    (n + d / 2) / d
}

/// Mean absolute difference per channel of two same-sized RGB images.
fn mean_abs_diff(a: &DynamicImage, b: &DynamicImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let (a, b) = (a.to_rgb8(), b.to_rgb8());
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

struct Entry {
    path: String,
    width: Option<u32>,
    height: Option<u32>,
    frames: Option<u32>,
    valid: bool,
    /// `any`: either answer is right (formats that landed after the corpus
    /// was written, checked by `tests/formats.rs`).
    either: bool,
}

fn manifest() -> Vec<Entry> {
    let text = std::fs::read_to_string(format!("{CORPUS}MANIFEST.tsv")).expect("MANIFEST.tsv");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            Entry {
                path: f[0].to_string(),
                width: f[2].parse().ok(),
                height: f[3].parse().ok(),
                frames: f[4].parse().ok(),
                valid: f[5] == "valid",
                // Listed invalid, read leniently as Pillow does (the list
                // and its reasons: `READ_LENIENTLY` in tests/corpus.rs).
                either: f[5] == "any" || f[0] == "invalid/bmp_bad/bmp_bad_planes.bmp",
            }
        })
        .collect()
}

/// Every valid file: `info` reports the manifest's stored size and frame
/// count, `resize(width=100)` gives a decodable image of the expected size
/// (animations keep their frames). Every invalid file: an error of a sensible
/// kind from both, never an image, never a panic.
#[test]
fn manifest_walk() {
    let entries = manifest();
    assert!(
        entries.len() > 100,
        "manifest looks short: {}",
        entries.len()
    );
    let mut failures = Vec::new();
    for entry in &entries {
        let input = read(&entry.path);
        let outcome = std::panic::catch_unwind(|| check_entry(entry, &input));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => failures.push(format!("{}: {msg}", entry.path)),
            Err(_) => failures.push(format!("{}: PANIC", entry.path)),
        }
    }
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
}

fn check_entry(entry: &Entry, input: &[u8]) -> Result<(), String> {
    if entry.either {
        // An image or a client error, never an internal one.
        for op in [Op::Info, resize_w(100)] {
            if let Err(e) = run(&task(vec![op]), input).0 {
                if e.kind == ErrorKind::Internal {
                    return Err(format!("internal error: {}", e.message));
                }
            }
        }
        return Ok(());
    }
    if entry.valid {
        check_valid(entry, input)
    } else {
        check_invalid(entry, input)
    }
}

fn check_valid(entry: &Entry, input: &[u8]) -> Result<(), String> {
    let info = match run(&task(vec![Op::Info]), input).0 {
        Ok(Product::Info(info)) => info,
        other => return Err(format!("info: {other:?}")),
    };
    let want = (
        entry.width.ok_or("no width")?,
        entry.height.ok_or("no height")?,
        entry.frames.ok_or("no frames")?,
    );
    if (info.width, info.height, info.frames) != want {
        return Err(format!(
            "info says {}x{}x{}, manifest {want:?}",
            info.width, info.height, info.frames
        ));
    }
    let (bytes, meta) = match run(&task(vec![resize_w(100)]), input).0 {
        Ok(Product::Image { bytes, meta }) => (bytes, meta),
        other => return Err(format!("resize: {other:?}")),
    };
    // Upright size: orientations 5..8 swap the stored sides.
    let (ow, oh) = if info.orientation >= 5 {
        (info.height, info.width)
    } else {
        (info.width, info.height)
    };
    let expect_w = ow.min(100);
    let expect_h = if ow <= 100 {
        oh
    } else {
        ((u64::from(oh) * 100 + u64::from(ow) / 2) / u64::from(ow)).max(1) as u32
    };
    if (meta.width, meta.height) != (expect_w, expect_h) {
        return Err(format!(
            "resize gave {}x{}, expected {expect_w}x{expect_h}",
            meta.width, meta.height
        ));
    }
    let decoded = image::load_from_memory(&bytes).map_err(|e| format!("output: {e}"))?;
    if decoded.dimensions() != (meta.width, meta.height) {
        return Err(format!("output decodes as {:?}", decoded.dimensions()));
    }
    if info.frames > 1 {
        if meta.format != OutputFormat::Gif {
            return Err(format!("animation came out as {:?}", meta.format));
        }
        let frames = gif_frames(&bytes);
        if frames.len() as u32 != info.frames || meta.frames != info.frames {
            return Err(format!(
                "animation has {} frames after resize (meta {}), expected {}",
                frames.len(),
                meta.frames,
                info.frames
            ));
        }
    } else if meta.frames != 1 {
        return Err(format!("still came out with {} frames", meta.frames));
    }
    Ok(())
}

fn check_invalid(entry: &Entry, input: &[u8]) -> Result<(), String> {
    let allowed: &[ErrorKind] = if entry.path.starts_with("invalid/limits/") {
        &[ErrorKind::TooLarge]
    } else if entry.path == "invalid/unsupported/tiff_ycbcr_jpeg_512x384.tif" {
        &[ErrorKind::Unsupported, ErrorKind::Corrupt]
    } else if entry.path.starts_with("invalid/unsupported/") {
        &[ErrorKind::Unsupported]
    } else {
        &[ErrorKind::Corrupt, ErrorKind::Unsupported]
    };
    for ops in [vec![resize_w(100)], vec![Op::Info]] {
        let name = ops[0].name();
        let started = Instant::now();
        match run(&task(ops), input).0 {
            Err(e) if allowed.contains(&e.kind) => {
                if e.message.is_empty() || e.message.len() > 220 || e.message.contains('\n') {
                    return Err(format!("{name}: unhelpful message {:?}", e.message));
                }
            }
            Err(e) => return Err(format!("{name}: wrong kind {e:?}, allowed {allowed:?}")),
            Ok(p) => return Err(format!("{name}: accepted: {p:?}")),
        }
        // Invalid input must be refused fast (no bomb gets decoded).
        if started.elapsed() > Duration::from_secs(2) {
            return Err(format!("{name}: took {:?}", started.elapsed()));
        }
    }
    Ok(())
}

const CAT: &str = "valid/jpeg/photo_cat_320x240_progressive.jpg";
const PALETTE_PNG: &str = "valid/png/palette_trns_300x225.png";
const ANIM_GIF: &str = "valid/gif/anim_210x210_20frames_varied_delays.gif";
const PORTRAIT: &str = "valid/jpeg/photo_portrait_800x533_baseline.jpg";
const LADYBIRD: &str = "valid/jpeg/photo_ladybird_2560x1600_baseline.jpg";

#[test]
fn flip_and_flop_twice_are_identity() {
    let input = read(PALETTE_PNG);
    let (plain, _) = image_of(&task(vec![Op::Convert]), &input);
    let plain = decode_output(&plain);
    for op in [Op::Flip, Op::Flop] {
        let (once, _) = image_of(&task(vec![op.clone()]), &input);
        let once = decode_output(&once);
        assert_ne!(
            once.to_rgba8(),
            plain.to_rgba8(),
            "{op:?} once changed nothing"
        );
        let (twice, _) = image_of(&task(vec![op.clone(), op.clone()]), &input);
        assert_eq!(
            decode_output(&twice).to_rgba8(),
            plain.to_rgba8(),
            "{op:?} twice"
        );
    }
    // Flip is the vertical mirror: the top row becomes the bottom row.
    let (flipped, _) = image_of(&task(vec![Op::Flip]), &input);
    let flipped = decode_output(&flipped).to_rgba8();
    let plain = plain.to_rgba8();
    let h = plain.height();
    for x in 0..plain.width() {
        assert_eq!(plain.get_pixel(x, 0), flipped.get_pixel(x, h - 1));
    }
}

#[test]
fn rotate_90_four_times_is_identity() {
    let input = read(PALETTE_PNG);
    let (plain, _) = image_of(&task(vec![Op::Convert]), &input);
    let plain = decode_output(&plain).to_rgba8();
    let (once, meta) = image_of(&task(vec![rot(90.0)]), &input);
    assert_eq!((meta.width, meta.height), (225, 300));
    // Clockwise: the top-left pixel moves to the top-right corner.
    let once = decode_output(&once).to_rgba8();
    assert_eq!(plain.get_pixel(0, 0), once.get_pixel(224, 0));
    let (four, meta) = image_of(&task(vec![rot(90.0); 4]), &input);
    assert_eq!((meta.width, meta.height), (300, 225));
    assert_eq!(decode_output(&four).to_rgba8(), plain);
    let (r180, _) = image_of(&task(vec![rot(180.0), rot(180.0)]), &input);
    assert_eq!(decode_output(&r180).to_rgba8(), plain);
    let (r270, _) = image_of(&task(vec![rot(270.0), rot(90.0)]), &input);
    assert_eq!(decode_output(&r270).to_rgba8(), plain);
}

#[test]
fn rotate_refuses_non_numbers() {
    let err = error_of(&task(vec![rot(f32::NAN)]), &read(CAT));
    assert_eq!(err.kind, ErrorKind::BadParameter);
}

#[test]
fn grayscale_has_equal_channels() {
    let input = read(CAT);
    let (bytes, meta) = image_of(&task_as(vec![Op::Grayscale], OutputFormat::Png), &input);
    assert_eq!((meta.width, meta.height), (320, 240));
    let out = decode_output(&bytes);
    assert!(
        !out.color().has_color(),
        "grayscale PNG should be stored as luma"
    );
    let rgb = out.to_rgb8();
    assert!(rgb.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
    // A JPEG of a grey image stays grey too.
    let (bytes, _) = image_of(&task(vec![Op::Grayscale]), &input);
    let rgb = decode_output(&bytes).to_rgb8();
    assert!(rgb.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
}

#[test]
fn grayscale_on_animation_frames_keeps_rgba_with_equal_channels() {
    let frame = |c: [u8; 4]| AnimFrame {
        image: image::RgbaImage::from_pixel(4, 3, image::Rgba(c)),
        delay_ms: 70,
    };
    let content = Content::Animation(Animation {
        frames: vec![frame([200, 10, 10, 255]), frame([10, 200, 30, 128])],
        loop_count: Some(0),
    });
    let out = ops::apply(
        content,
        &[&Op::Grayscale],
        Vec::new(),
        &Limits::default(),
        (4, 3),
        &Tuning::default(),
    )
    .expect("grayscale");
    let Content::Animation(anim) = out else {
        panic!("animation became a still")
    };
    assert_eq!(anim.frames.len(), 2);
    assert_eq!(anim.frames[1].image.get_pixel(0, 0)[3], 128, "alpha kept");
    for f in &anim.frames {
        assert_eq!(f.delay_ms, 70);
        assert!(f.image.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
    }
}

#[test]
fn crop_sizes_and_errors() {
    let input = read(CAT);
    let crop = |x, y, width, height| Op::Crop {
        x,
        y,
        width,
        height,
    };
    let (_, meta) = image_of(&task(vec![crop(10, 20, 100, 50)]), &input);
    assert_eq!((meta.width, meta.height), (100, 50));
    // Clipped to the image.
    let (bytes, meta) = image_of(&task(vec![crop(300, 200, 100, 100)]), &input);
    assert_eq!((meta.width, meta.height), (20, 40));
    assert_eq!(decode_output(&bytes).dimensions(), (20, 40));
    let err = error_of(&task(vec![crop(320, 0, 10, 10)]), &input);
    assert_eq!(err.kind, ErrorKind::BadParameter);
    assert_eq!(
        err.message,
        "crop origin (320,0) is outside the 320x240 image"
    );
    let err = error_of(&task(vec![crop(0, 0, 0, 10)]), &input);
    assert_eq!(err.kind, ErrorKind::BadParameter);
}

#[test]
fn crop_is_exact_on_lossless_output() {
    let input = read(PALETTE_PNG);
    let (plain, _) = image_of(&task(vec![Op::Convert]), &input);
    let plain = decode_output(&plain).to_rgba8();
    let (cut, _) = image_of(
        &task(vec![Op::Crop {
            x: 7,
            y: 11,
            width: 40,
            height: 30,
        }]),
        &input,
    );
    let cut = decode_output(&cut).to_rgba8();
    assert_eq!(cut.get_pixel(0, 0), plain.get_pixel(7, 11));
    assert_eq!(cut.get_pixel(39, 29), plain.get_pixel(46, 40));
}

#[test]
fn resize_target_keeps_aspect() {
    let t = geometry::resize_target;
    assert_eq!(t(320, 240, Some(100), None, false), Ok((100, 75)));
    assert_eq!(t(320, 240, None, Some(60), false), Ok((80, 60)));
    assert_eq!(t(320, 240, Some(100), Some(100), false), Ok((100, 75)));
    assert_eq!(t(320, 240, Some(200), Some(60), false), Ok((80, 60)));
    // No upscaling unless asked.
    assert_eq!(t(320, 240, Some(1000), None, false), Ok((320, 240)));
    assert_eq!(t(320, 240, Some(640), None, true), Ok((640, 480)));
    assert_eq!(t(320, 240, Some(640), Some(1000), true), Ok((640, 480)));
    // Never a zero side.
    assert_eq!(t(940, 2, Some(100), None, false), Ok((100, 1)));
    assert_eq!(t(940, 2, Some(50), Some(50), false), Ok((50, 1)));
    assert_eq!(t(2, 940, None, Some(10), false), Ok((1, 10)));
    assert_eq!(t(1, 1, Some(100), None, false), Ok((1, 1)));
    assert!(matches!(
        t(320, 240, None, None, false),
        Err(EngineError::BadParameter(_))
    ));
    assert!(matches!(
        t(320, 240, Some(0), None, false),
        Err(EngineError::BadParameter(_))
    ));
}

#[test]
fn resize_extreme_aspect_png() {
    let input = read("valid/png/edge_940x2_extreme_aspect.png");
    let (bytes, meta) = image_of(&task(vec![resize_w(100)]), &input);
    assert_eq!(
        (meta.width, meta.height, meta.format),
        (100, 1, OutputFormat::Png)
    );
    assert_eq!(decode_output(&bytes).dimensions(), (100, 1));
    let box_fit = Op::Resize {
        width: Some(30),
        height: Some(30),
        fit: crate::proto::Fit::Contain,
        gravity: crate::proto::Gravity::Centre,
        enlarge: false,
        linear: None,
    };
    let (_, meta) = image_of(&task(vec![box_fit]), &input);
    assert_eq!((meta.width, meta.height), (30, 1));
}

#[test]
fn resize_refuses_bad_parameters_and_huge_results() {
    let input = read(CAT);
    let none = Op::Resize {
        width: None,
        height: None,
        fit: crate::proto::Fit::Contain,
        gravity: crate::proto::Gravity::Centre,
        enlarge: false,
        linear: None,
    };
    assert_eq!(
        error_of(&task(vec![none]), &input).kind,
        ErrorKind::BadParameter
    );
    let huge = Op::Resize {
        width: Some(100_000),
        height: None,
        fit: crate::proto::Fit::Contain,
        gravity: crate::proto::Gravity::Centre,
        enlarge: true,
        linear: None,
    };
    assert_eq!(
        error_of(&task(vec![huge]), &input).kind,
        ErrorKind::TooLarge
    );
}

#[test]
fn resize_keeps_16_bit_png_depth_and_alpha() {
    let input = read("valid/png/pngsuite_basn6a16_rgba16.png");
    let (bytes, meta) = image_of(&task(vec![resize_w(16)]), &input);
    assert_eq!((meta.width, meta.height), (16, 16));
    assert_eq!(decode_output(&bytes).color(), image::ColorType::Rgba16);
}

/// Orientations 1..8 of the same photo all come out as the same upright
/// 1800x1200 picture.
#[test]
fn exif_orientation_is_applied() {
    let small = |n: u32| {
        let input = read(&format!(
            "valid/exif_orientation/landscape_orientation_{n}.jpg"
        ));
        let (bytes, meta) = image_of(&task_as(vec![resize_w(90)], OutputFormat::Png), &input);
        assert_eq!((meta.width, meta.height), (90, 60), "orientation {n}");
        decode_output(&bytes)
    };
    let reference = small(1);
    for n in 2..=8 {
        let diff = mean_abs_diff(&reference, &small(n));
        assert!(diff < 8.0, "orientation {n} differs from 1 by {diff:.1}");
    }
    // Full size, and `info` reports the stored (sideways) size.
    let input = read("valid/exif_orientation/landscape_orientation_6.jpg");
    let (bytes, meta) = image_of(&task(vec![Op::Convert]), &input);
    assert_eq!((meta.width, meta.height), (1800, 1200));
    assert_eq!(decode_output(&bytes).dimensions(), (1800, 1200));
    // Output is stripped: no EXIF left to rotate it a second time.
    assert!(!bytes.windows(6).any(|w| w == b"Exif\0\0"));
    let info = info_of_bytes(&input);
    assert_eq!((info.width, info.height, info.orientation), (1200, 1800, 6));
}

/// The CMYK (Adobe APP14) JPEG must come out looking like the RGB one, not
/// inverted or colour-shifted.
#[test]
fn cmyk_jpeg_keeps_its_colours() {
    let small = |path: &str| {
        let (bytes, _) = image_of(&task_as(vec![resize_w(80)], OutputFormat::Png), &read(path));
        decode_output(&bytes)
    };
    let rgb = small("valid/jpeg/photo_portrait_800x533_baseline.jpg");
    let cmyk = small("valid/jpeg/photo_portrait_800x533_cmyk.jpg");
    let diff = mean_abs_diff(&rgb, &cmyk);
    assert!(diff < 10.0, "CMYK output differs from RGB by {diff:.1}");
}

#[test]
fn broken_exif_does_not_fail() {
    let input = read("valid/jpeg/edge_broken_exif_tag_1x1.jpg");
    let (_, meta) = image_of(&task(vec![Op::Convert]), &input);
    assert_eq!((meta.width, meta.height), (1, 1));
    assert_eq!(info_of_bytes(&input).orientation, 1);
}

#[test]
fn truncated_jpegs_are_corrupt() {
    for path in [
        "invalid/truncated/jpeg_cut_mid_scan_50pct.jpg",
        "invalid/truncated/jpeg_real_world_truncated_360x216.jpg",
        "invalid/truncated/jpeg_progressive_cut_10pct.jpg",
    ] {
        let err = error_of(&task(vec![resize_w(100)]), &read(path));
        assert_eq!(err.kind, ErrorKind::Corrupt, "{path}: {err:?}");
        assert_eq!(
            err.message, "JPEG data ends early (no end-of-image marker)",
            "{path}"
        );
    }
}

#[test]
fn jpeg_completeness_walker() {
    let whole = read(CAT);
    assert!(sniff::jpeg_is_complete(&whole));
    let mut trailing = whole.clone();
    trailing.extend_from_slice(b"trailing bytes \xFF\xDA after EOI");
    assert!(sniff::jpeg_is_complete(&trailing));
    assert!(!sniff::jpeg_is_complete(&whole[..whole.len() - 2]));
    assert!(!sniff::jpeg_is_complete(&whole[..whole.len() / 2]));
    assert!(sniff::jpeg_is_complete(&[0xFF, 0xD8, 0xFF, 0xD9]));
    assert!(!sniff::jpeg_is_complete(&[0xFF, 0xD8, 0xFF]));
    // Unexpected structure falls back to "EOI after the last SOS".
    assert!(sniff::jpeg_is_complete(&[
        0xFF, 0xD8, 0x12, 0xFF, 0xDA, 0x00, 0x02, 0x55, 0xFF, 0xD9
    ]));
    assert!(!sniff::jpeg_is_complete(&[
        0xFF, 0xD8, 0x12, 0xFF, 0xDA, 0x00, 0x02, 0x55
    ]));
}

#[test]
fn gif_with_huge_screen_is_refused_fast() {
    let input = read("invalid/limits/gif_screen_65535x65535_one_pixel_frame.gif");
    let started = Instant::now();
    let err = error_of(&task(vec![resize_w(100)]), &input);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.kind, ErrorKind::TooLarge);
    assert_eq!(
        err.message,
        "image is 65535x65535 = 4294836225 pixels, over the limit of 50000000"
    );
}

#[test]
fn jpeg_of_99_megapixels_is_refused() {
    let input = read("invalid/limits/jpeg_9643x10328_99mp.jpg");
    let started = Instant::now();
    let err = error_of(&task(vec![resize_w(100)]), &input);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.kind, ErrorKind::TooLarge);
    assert!(err.message.contains("9643x10328"), "{}", err.message);
}

/// A PNG header declaring 1 x 300 000 000 (passes the crate's default
/// per-side limits) is refused by the pixel limit.
#[test]
fn tall_thin_png_is_refused() {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&1u32.to_be_bytes());
    ihdr.extend_from_slice(&300_000_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    // The decoder reads up to the first IDAT before reporting the header.
    for (kind, data) in [
        (&b"IDAT"[..], &b"\x78\x9c\x03\x00\x00\x00\x00\x01"[..]),
        (b"IEND", b""),
    ] {
        let mut chunk = kind.to_vec();
        chunk.extend_from_slice(data);
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        png.extend_from_slice(&chunk);
        png.extend_from_slice(&crc32(&chunk).to_be_bytes());
    }
    let err = error_of(&task(vec![resize_w(100)]), &png);
    assert_eq!(err.kind, ErrorKind::TooLarge, "{err:?}");
    assert_eq!(
        err.message,
        "image is 1x300000000 = 300000000 pixels, over the limit of 50000000"
    );
}

#[test]
fn animated_gif_keeps_frames_delays_and_loop_after_resize() {
    let input = read(ANIM_GIF);
    let info = info_of_bytes(&input);
    assert_eq!(info.frames, 20);
    assert_eq!(info.delays_ms.len(), 20);
    assert_eq!(info.loop_count, Some(0));
    let (bytes, meta) = image_of(&task(vec![resize_w(100)]), &input);
    assert_eq!(
        (meta.format, meta.width, meta.height, meta.frames),
        (OutputFormat::Gif, 100, 100, 20)
    );
    let frames = gif_frames(&bytes);
    assert_eq!(frames.len(), 20);
    let delays: Vec<u32> = frames.iter().map(delay_ms).collect();
    assert_eq!(delays, info.delays_ms);
    assert!(frames.iter().all(|f| f.buffer().dimensions() == (100, 100)));
    assert_eq!(sniff::gif_loop_count(&bytes), Some(0));
}

#[test]
fn gif_loop_counts_are_preserved() {
    let earth = read("valid/gif/anim_rotating_earth_400x400_44frames.gif");
    assert_eq!(sniff::gif_loop_count(&earth), Some(65535));
    let (bytes, meta) = image_of(&task(vec![Op::Flop]), &earth);
    assert_eq!(meta.frames, 44);
    assert_eq!(sniff::gif_loop_count(&bytes), Some(65535));
    // A still GIF has no loop block, and none is written.
    let still = read("valid/gif/static_alpha_256x256.gif");
    assert_eq!(sniff::gif_loop_count(&still), None);
    let (bytes, meta) = image_of(&task(vec![resize_w(64)]), &still);
    assert_eq!((meta.format, meta.frames), (OutputFormat::Gif, 1));
    assert_eq!(sniff::gif_loop_count(&bytes), None);
    assert_eq!(info_of_bytes(&still).loop_count, None);
}

#[test]
fn apng_and_animated_webp_become_animated_gifs_by_default() {
    let apng = read("valid/png/apng_ball_100x100_20frames.png");
    let info = info_of_bytes(&apng);
    assert_eq!((info.format.as_str(), info.frames), ("png", 20));
    assert_eq!(info.delays_ms.len(), 20);
    let (bytes, meta) = image_of(&task(vec![Op::Flop]), &apng);
    assert_eq!((meta.format, meta.frames), (OutputFormat::Gif, 20));
    assert_eq!(gif_frames(&bytes).len(), 20);

    let webp = read("valid/webp/anim_200x200_6frames.webp");
    let info = info_of_bytes(&webp);
    assert_eq!((info.format.as_str(), info.frames), ("webp", 6));
    assert!(info.loop_count.is_some());
    let (bytes, meta) = image_of(&task(vec![resize_w(50)]), &webp);
    assert_eq!(
        (meta.format, meta.frames, meta.width),
        (OutputFormat::Gif, 6, 50)
    );
    assert_eq!(gif_frames(&bytes).len(), 6);
}

#[test]
fn animation_to_still_format_keeps_first_frame() {
    let input = read(ANIM_GIF);
    for format in [OutputFormat::Png, OutputFormat::Jpeg] {
        let (bytes, meta) = image_of(&task_as(vec![resize_w(50)], format), &input);
        assert_eq!((meta.format, meta.frames, meta.width), (format, 1, 50));
        assert_eq!(decode_output(&bytes).dimensions(), (50, 50));
        let guessed = image::guess_format(&bytes).expect("format of output");
        let expected = match format {
            OutputFormat::Png => ImageFormat::Png,
            OutputFormat::Jpeg => ImageFormat::Jpeg,
            _ => ImageFormat::WebP,
        };
        assert_eq!(guessed, expected);
    }
}

#[test]
fn animation_limits_stop_decoding() {
    let input = read(ANIM_GIF);
    let mut t = task(vec![Op::Info]);
    t.limits.max_frames = 5;
    let err = error_of(&t, &input);
    assert_eq!(err.kind, ErrorKind::TooLarge);
    assert!(
        err.message.contains("more than 5 frames"),
        "{}",
        err.message
    );
    let mut t = task(vec![Op::Convert]);
    t.limits.max_total_pixels = 210 * 210 * 3;
    assert_eq!(error_of(&t, &input).kind, ErrorKind::TooLarge);
    let mut t = task(vec![Op::Convert]);
    t.limits.max_pixels = 210 * 209;
    assert_eq!(error_of(&t, &input).kind, ErrorKind::TooLarge);
}

#[test]
fn info_describes_the_file() {
    let info = info_of_bytes(&read(CAT));
    assert_eq!(
        info,
        ImageInfo {
            format: "jpeg".to_string(),
            width: 320,
            height: 240,
            frames: 1,
            has_alpha: false,
            delays_ms: vec![],
            loop_count: None,
            color_type: "rgb8".to_string(),
            bit_depth: 8,
            orientation: 1,
            pages: 1,
            icc: Some("sRGB IEC61966-2-1 black scaled".to_string()),
            // The photo carries a camera's EXIF block.
            exif: true,
            xmp: false,
            bytes: read(CAT).len() as u64,
        }
    );
    let info = info_of_bytes(&read("valid/png/pngsuite_basn2c16_rgb16.png"));
    assert_eq!((info.color_type.as_str(), info.bit_depth), ("rgb16", 16));
    let info = info_of_bytes(&read("valid/png/rgba_semitransparent_2140x1200.png"));
    assert_eq!((info.color_type.as_str(), info.has_alpha), ("rgba8", true));
    let info = info_of_bytes(&read("valid/jpeg/photo_portrait_800x533_grayscale.jpg"));
    assert_eq!((info.color_type.as_str(), info.bit_depth), ("l8", 8));
    let info = info_of_bytes(&read(
        "valid/gif/anim_generated_160x120_transparent_varied_delays.gif",
    ));
    assert_eq!(info.delays_ms, vec![100, 50, 250, 500, 80, 1000]);
    assert!(info.has_alpha);
    for (path, name) in [
        ("valid/bmp/bmp_rgb24_127x64.bmp", "bmp"),
        ("valid/tiff/tiff_rgb8_100x100.tif", "tiff"),
        ("valid/webp/lossy_100x100.webp", "webp"),
        ("valid/gif/static_alpha_256x256.gif", "gif"),
    ] {
        assert_eq!(info_of_bytes(&read(path)).format, name);
    }
}

#[test]
fn info_must_be_alone() {
    let err = error_of(&task(vec![Op::Info, Op::Flip]), &read(CAT));
    assert_eq!(err.kind, ErrorKind::BadParameter);
}

#[test]
fn output_formats_and_defaults() {
    // Default format follows the input family.
    for (path, format) in [
        (CAT, OutputFormat::Jpeg),
        (PALETTE_PNG, OutputFormat::Png),
        ("valid/bmp/bmp_rgba32_127x64.bmp", OutputFormat::Png),
        ("valid/tiff/tiff_rgb16_100x100.tif", OutputFormat::Png),
        ("valid/webp/lossy_alpha_100x100.webp", OutputFormat::Webp),
        ("valid/gif/static_alpha_256x256.gif", OutputFormat::Gif),
    ] {
        let (bytes, meta) = image_of(&task(vec![Op::Convert]), &read(path));
        assert_eq!(meta.format, format, "{path}");
        decode_output(&bytes);
    }
    // Every explicit format from a translucent PNG.
    let input = read("valid/png/rgba_semitransparent_2140x1200.png");
    for format in [
        OutputFormat::Jpeg,
        OutputFormat::Png,
        OutputFormat::Gif,
        OutputFormat::Webp,
    ] {
        let ops = vec![
            Op::Crop {
                x: 500,
                y: 300,
                width: 400,
                height: 300,
            },
            resize_w(200),
        ];
        let (bytes, meta) = image_of(&task_as(ops, format), &input);
        assert_eq!((meta.format, meta.width), (format, 200));
        assert_eq!(decode_output(&bytes).width(), 200);
    }
}

#[test]
fn jpeg_output_flattens_alpha_onto_white() {
    // Fully transparent pixels, whatever colour they hold, become white.
    let mut img = image::RgbaImage::from_pixel(16, 16, image::Rgba([0, 0, 0, 0]));
    img.put_pixel(0, 0, image::Rgba([255, 0, 0, 255]));
    let mut png = Vec::new();
    DynamicImage::ImageRgba8(img)
        .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
        .expect("test PNG");
    let (bytes, _) = image_of(&task_as(vec![Op::Convert], OutputFormat::Jpeg), &png);
    let out = decode_output(&bytes).to_rgb8();
    let p = out.get_pixel(15, 15);
    assert!(p.0.iter().all(|&c| c > 245), "{p:?}");
}

#[test]
fn blur_softens() {
    let input = read(PALETTE_PNG);
    let (plain, _) = image_of(&task(vec![Op::Convert]), &input);
    let (blurred, meta) = image_of(&task(vec![Op::Blur { sigma: 4.0 }]), &input);
    assert_eq!((meta.width, meta.height), (300, 225));
    // Edges of what is seen: the picture over white (the colour held by
    // fully transparent pixels is no edge).
    let edges = |img: &DynamicImage| {
        let seen: Vec<f32> = img
            .to_rgba8()
            .pixels()
            .map(|p| {
                let a = f32::from(p.0[3]) / 255.0;
                let l = 0.299 * f32::from(p.0[0])
                    + 0.587 * f32::from(p.0[1])
                    + 0.114 * f32::from(p.0[2]);
                l * a + 255.0 * (1.0 - a)
            })
            .collect();
        seen.windows(2)
            .map(|w| f64::from((w[0] - w[1]).abs()))
            .sum::<f64>()
    };
    assert!(edges(&decode_output(&blurred)) * 2.0 < edges(&decode_output(&plain)));
    // Huge sigmas are clamped, not a panic or a stall.
    let (_, meta) = image_of(&task(vec![Op::Blur { sigma: 1e30 }]), &input);
    assert_eq!(meta.width, 300);
    for sigma in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let err = error_of(&task(vec![Op::Blur { sigma }]), &input);
        assert_eq!(err.kind, ErrorKind::BadParameter, "sigma {sigma}");
    }
}

#[test]
fn unsupported_inputs() {
    let err = error_of(&task(vec![Op::Convert]), b"");
    assert_eq!(err.kind, ErrorKind::Unsupported);
    assert_eq!(err.message, "unsupported or unrecognised image format");
    // AVIF decodes now: the file once here as unsupported is a 300x400 image.
    let info = info_of_bytes(&read("invalid/unsupported/avif_300x400.avif"));
    assert_eq!(
        (info.format.as_str(), info.width, info.height),
        ("avif", 300, 400)
    );
    let err = error_of(
        &task(vec![Op::Convert]),
        &read("invalid/garbage/html_named_as.jpg"),
    );
    assert_eq!(err.kind, ErrorKind::Unsupported);
}

#[test]
fn timing_is_filled() {
    let input = read(CAT);
    let (result, timing) = run(&task(vec![resize_w(100)]), &input);
    assert!(result.is_ok());
    assert!(
        timing.decode_us > 0 && timing.ops_us > 0 && timing.encode_us > 0,
        "{timing:?}"
    );
}

/// Prints the stage timings of resize(width=400) on the 4 MP baseline JPEG
/// (run with `--nocapture` to see them).
#[test]
fn timing_resize_ladybird() {
    let input = read("valid/jpeg/photo_ladybird_2560x1600_baseline.jpg");
    let t = task(vec![resize_w(400)]);
    for round in 0..3 {
        let started = Instant::now();
        let (result, timing) = run(&t, &input);
        let total = started.elapsed();
        let meta = match result {
            Ok(Product::Image { meta, .. }) => meta,
            other => panic!("{other:?}"),
        };
        assert_eq!((meta.width, meta.height), (400, 250));
        println!(
            "ladybird resize(400) round {round}: decode {} us, ops {} us, encode {} us, total {} us",
            timing.decode_us,
            timing.ops_us,
            timing.encode_us,
            total.as_micros()
        );
    }
}

#[cfg(not(feature = "test-ops"))]
#[test]
fn test_ops_are_refused_without_the_feature() {
    for op in [
        Op::TestSleep { ms: 1 },
        Op::TestPanic,
        Op::TestAbort,
        Op::TestSegv,
    ] {
        let err = error_of(&task(vec![op]), b"");
        assert_eq!(err.kind, ErrorKind::BadParameter);
        assert_eq!(err.message, "test ops are disabled in this build");
    }
}

#[cfg(feature = "test-ops")]
#[test]
fn test_ops_run_before_decoding() {
    let started = Instant::now();
    match run(&task(vec![Op::TestSleep { ms: 30 }]), b"").0 {
        Ok(Product::Info(info)) => assert_eq!(info.format, "none"),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(30));
    // With real ops the task continues after the sleep.
    let (_, meta) = image_of(
        &task(vec![Op::TestSleep { ms: 1 }, resize_w(10)]),
        &read(CAT),
    );
    assert_eq!(meta.width, 10);
    let panicked = std::panic::catch_unwind(|| run(&task(vec![Op::TestPanic]), b""));
    assert!(panicked.is_err());
}

/// A minimal little-endian tiled TIFF, 8-bit, `samples` per pixel.
fn tiled_tiff(samples: u16, planar: u16) -> Vec<u8> {
    let (w, h, tile) = (40u32, 40u32, 16u32);
    let per_plane = w.div_ceil(tile) * h.div_ceil(tile);
    let (tiles, tile_bytes) = if planar == 2 {
        (per_plane * u32::from(samples), tile * tile)
    } else {
        (per_plane, tile * tile * u32::from(samples))
    };
    let entries = 11u32;
    let offsets_at = 8 + 2 + entries * 12 + 4;
    let counts_at = offsets_at + 4 * tiles;
    let data_at = counts_at + 4 * tiles;
    let entry = |tag: u16, kind: u16, count: u32, value: u32| {
        let mut e = Vec::new();
        e.extend_from_slice(&tag.to_le_bytes());
        e.extend_from_slice(&kind.to_le_bytes());
        e.extend_from_slice(&count.to_le_bytes());
        e.extend_from_slice(&value.to_le_bytes());
        e
    };
    let photometric = if samples == 1 { 1 } else { 2 };
    let mut out = b"II*\0".to_vec();
    out.extend_from_slice(&8u32.to_le_bytes());
    out.extend_from_slice(&(entries as u16).to_le_bytes());
    for e in [
        entry(256, 3, 1, w),
        entry(257, 3, 1, h),
        // One sample: the value is inline; more: 8,8,8 would need an array,
        // and tiff accepts a single value for all samples.
        entry(258, 3, 1, 8),
        entry(259, 3, 1, 1),
        entry(262, 3, 1, photometric),
        entry(277, 3, 1, u32::from(samples)),
        entry(284, 3, 1, u32::from(planar)),
        entry(322, 3, 1, tile),
        entry(323, 3, 1, tile),
        entry(324, 4, tiles, offsets_at),
        entry(325, 4, tiles, counts_at),
    ] {
        out.extend_from_slice(&e);
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    for i in 0..tiles {
        out.extend_from_slice(&(data_at + i * tile_bytes).to_le_bytes());
    }
    for _ in 0..tiles {
        out.extend_from_slice(&tile_bytes.to_le_bytes());
    }
    out.extend((0..tiles * tile_bytes).map(|i| (i * 7 % 256) as u8));
    out
}

/// tiff 0.11 panics on tiled planar RGB; the engine refuses it instead.
#[test]
fn tiled_planar_tiff_is_refused_not_a_panic() {
    let planar = tiled_tiff(3, 2);
    assert!(sniff::tiff_is_tiled_planar(&planar));
    let err = error_of(&task(vec![Op::Convert]), &planar);
    assert_eq!(err.kind, ErrorKind::Unsupported, "{err:?}");
    // The same layout with interleaved samples, or one sample, decodes.
    for (samples, planar) in [(3, 1), (1, 2)] {
        let input = tiled_tiff(samples, planar);
        assert!(!sniff::tiff_is_tiled_planar(&input));
        let (_, meta) = image_of(&task(vec![Op::Convert]), &input);
        assert_eq!((meta.width, meta.height), (40, 40));
    }
    assert!(!sniff::tiff_is_tiled_planar(&read(
        "valid/tiff/photo_street_374x499_planar.tiff"
    )));
}

/// An exact gaussian (f64, separable, kernel to 4 sigma, edges clamped):
/// the reference the fast blur is measured against.
fn exact_gaussian(img: &image::RgbImage, sigma: f64) -> Vec<f64> {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let r = (4.0 * sigma).ceil() as i64;
    let k: Vec<f64> = (-r..=r)
        .map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f64 = k.iter().sum();
    let k: Vec<f64> = k.iter().map(|v| v / sum).collect();
    let px = |x: i64, y: i64, c: usize| f64::from(img.get_pixel(x as u32, y as u32)[c]);
    let mut tmp = vec![0.0; (w * h * 3) as usize];
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                tmp[((y * w + x) * 3) as usize + c] = (-r..=r)
                    .map(|i| k[(i + r) as usize] * px((x + i).clamp(0, w - 1), y, c))
                    .sum();
            }
        }
    }
    let mut out = vec![0.0; tmp.len()];
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                out[((y * w + x) * 3) as usize + c] = (-r..=r)
                    .map(|i| {
                        let yy = (y + i).clamp(0, h - 1);
                        k[(i + r) as usize] * tmp[((yy * w + x) * 3) as usize + c]
                    })
                    .sum();
            }
        }
    }
    out
}

/// A `w` x `h` crop of the portrait photo at (300, 100), as RGB8.
fn portrait_crop(w: u32, h: u32) -> image::RgbImage {
    let photo = image::load_from_memory(&read(PORTRAIT))
        .expect("decode")
        .to_rgb8();
    image::imageops::crop_imm(&photo, 300, 100, w, h).to_image()
}

/// How far `out` is from `exact` (same layout, RGB), in 0-255 levels: the
/// mean absolute error, and the largest error inside and within `band`
/// pixels of a border (with `band` 0 everything is inside).
fn blur_errors(out: &image::RgbImage, exact: &[f64], band: u32) -> (f64, f64, f64) {
    let (w, h) = out.dimensions();
    let (mut sum, mut inside, mut border) = (0.0, 0.0f64, 0.0f64);
    for (i, (a, b)) in out.as_raw().iter().zip(exact).enumerate() {
        let d = (f64::from(*a) - b).abs();
        let (x, y) = ((i / 3) as u32 % w, (i / 3) as u32 / w);
        sum += d;
        if x < band || y < band || x + band >= w || y + band >= h {
            border = border.max(d);
        } else {
            inside = inside.max(d);
        }
    }
    (sum / out.as_raw().len() as f64, inside, border)
}

#[test]
fn fast_blur_stays_close_to_an_exact_gaussian() {
    let crop = portrait_crop(240, 180);
    let input = DynamicImage::ImageRgb8(crop.clone());
    // (sigma, largest mean and max abs error allowed, in 0-255 levels).
    // Below sigma 2 the error is libblur's fixed-point rounding; above, the
    // shrink and bilinear scale-up add theirs. Measured when written:
    // mean 0.34 / 0.31 / 0.85 / 0.82 / 0.59, max 5.0 / 1.2 / 2.6 / 8.6 / 3.5.
    for (sigma, mean_bound, max_bound) in [
        (0.8f32, 0.6, 6.0),
        (1.5, 0.6, 6.0),
        (3.0, 1.2, 12.0),
        (8.0, 1.2, 12.0),
        (25.0, 1.2, 12.0),
    ] {
        let fast = effects::blur(&input, sigma, true).expect("blur").to_rgb8();
        let exact = exact_gaussian(&crop, f64::from(sigma));
        let (mean, max, _) = blur_errors(&fast, &exact, 0);
        eprintln!("blur sigma {sigma}: mean abs error {mean:.3}, max {max:.2} levels vs exact");
        assert!(
            mean <= mean_bound,
            "sigma {sigma}: mean error {mean:.3} > {mean_bound}"
        );
        assert!(
            max <= max_bound,
            "sigma {sigma}: max error {max:.2} > {max_bound}"
        );
    }
}

#[test]
fn blur_on_a_shrunk_jpeg_decode_stays_close_to_an_exact_gaussian() {
    // A JPEG of odd size (libjpeg's 1/d decode rounds up, so the last
    // small pixel covers less than d source pixels).
    let crop = portrait_crop(241, 181);
    // 4:2:0, as most photos: the chroma is then decoded by a full 8x8
    // inverse DCT even at 1/2, the fast integer one on this path.
    let input = super::libjpeg::encode(
        crop.as_raw(),
        crop.dimensions(),
        false,
        95,
        false,
        (None, &[]),
    )
    .expect("encode");
    let reference = match decode::decode(&input, &Limits::default(), None, &Tuning::default())
        .expect("decode")
        .content
    {
        Content::Still(image) => image.to_rgb8(),
        Content::Animation(_) => panic!("a still"),
    };
    let whole = Tuning {
        shrink_on_load: false,
        ..Tuning::default()
    };
    // Every sigma from 2 up decodes at 1/2 (see `first_op_need`); 8 and 25
    // shrink the small decode 4 and 8 times more.
    // Bounds as for the full-size decode, except along the borders: there
    // clamp-to-edge repeats the outermost *decoded* pixel, which at 1/d is
    // the mean of d source columns, so a one-pixel line along the border
    // (this crop's first column is nearly black) weighs less than in the
    // exact blur. Measured when written: mean 0.65 / 0.97 / 0.79; max 2.7 /
    // 6.1 / 3.8 inside, 10.1 / 10.2 / 5.6 within 2 sigma of a border.
    for sigma in [3.0f32, 8.0, 25.0] {
        let t = task_as(vec![Op::Blur { sigma }], OutputFormat::Png);
        let blurred = |tuning: &Tuning| match run_tuned(&t, &input, &[], tuning).0 {
            Ok(Product::Image { bytes, .. }) => decode_output(&bytes).to_rgb8(),
            other => panic!("sigma {sigma}: {other:?}"),
        };
        let (small, full) = (blurred(&Tuning::default()), blurred(&whole));
        assert_eq!(small.dimensions(), crop.dimensions(), "sigma {sigma}");
        assert_ne!(small, full, "sigma {sigma}: the small decode was not used");
        let exact = exact_gaussian(&reference, f64::from(sigma));
        let band = (2.0 * sigma).ceil() as u32;
        let (mean, inside, border) = blur_errors(&small, &exact, band);
        eprintln!(
            "blur sigma {sigma} on a shrunk decode: mean abs error {mean:.3}, \
             max {inside:.2} inside, {border:.2} near a border"
        );
        assert!(mean <= 1.2, "sigma {sigma}: mean error {mean:.3}");
        assert!(
            inside <= 12.0,
            "sigma {sigma}: max error inside {inside:.2}"
        );
        assert!(
            border <= 24.0,
            "sigma {sigma}: max error at a border {border:.2}"
        );
    }
}

#[test]
fn shrink_on_load_gives_the_full_decode_size_and_nearly_its_pixels() {
    let input = read(LADYBIRD);
    let fast = Tuning::default();
    let full = Tuning {
        shrink_on_load: false,
        ..Tuning::default()
    };
    let reference = Tuning {
        libjpeg: false,
        shrink_on_load: false,
        ..Tuning::default()
    };
    for ops in [
        vec![Op::Resize {
            width: Some(400),
            height: None,
            fit: crate::proto::Fit::Contain,
            gravity: crate::proto::Gravity::Centre,
            enlarge: false,
            linear: None,
        }],
        vec![Op::Thumbnail {
            width: 150,
            height: 150,
            gravity: crate::proto::Gravity::Centre,
            linear: None,
        }],
        vec![Op::Resize {
            width: Some(333),
            height: Some(111),
            fit: crate::proto::Fit::Fill,
            gravity: crate::proto::Gravity::Centre,
            enlarge: false,
            linear: None,
        }],
    ] {
        let t = task_as(ops.clone(), OutputFormat::Png);
        let decode_png = |tuning: &Tuning| {
            let (result, timing) = run_tuned(&t, &input, &[], tuning);
            match result {
                Ok(Product::Image { bytes, .. }) => (
                    image::load_from_memory(&bytes).expect("png").to_rgb8(),
                    timing.decode_us,
                ),
                other => panic!("{ops:?}: {other:?}"),
            }
        };
        let (a, _) = decode_png(&fast);
        let (b, _) = decode_png(&full);
        let (c, _) = decode_png(&reference);
        assert_eq!(a.dimensions(), b.dimensions(), "{ops:?}");
        assert_eq!(a.dimensions(), c.dimensions(), "{ops:?}");
        let psnr = |x: &image::RgbImage, y: &image::RgbImage| {
            let mse = x
                .as_raw()
                .iter()
                .zip(y.as_raw())
                .map(|(p, q)| (f64::from(*p) - f64::from(*q)).powi(2))
                .sum::<f64>()
                / x.as_raw().len() as f64;
            10.0 * (255.0f64 * 255.0 / mse.max(1e-9)).log10()
        };
        let (shrunk, libjpeg) = (psnr(&a, &c), psnr(&b, &c));
        eprintln!("{ops:?}: PSNR vs zune full decode: shrink-on-load {shrunk:.1} dB, libjpeg full {libjpeg:.1} dB");
        assert!(shrunk > 36.0, "{ops:?}: shrink-on-load PSNR {shrunk:.1} dB");
        assert!(libjpeg > 40.0, "{ops:?}: libjpeg PSNR {libjpeg:.1} dB");
    }
}

#[test]
fn shrink_on_load_respects_the_exif_orientation() {
    // Orientation 6 (rotate 90): stored 1200x1800, shown 1800x1200.
    let input = read("valid/exif_orientation/landscape_orientation_6.jpg");
    let resize = |autorotate: bool| {
        let mut t = task(vec![Op::Resize {
            width: Some(150),
            height: None,
            fit: crate::proto::Fit::Contain,
            gravity: crate::proto::Gravity::Centre,
            enlarge: false,
            linear: None,
        }]);
        t.output.autorotate = autorotate;
        let (_, meta) = image_of(&t, &input);
        (meta.width, meta.height)
    };
    assert_eq!(resize(true), (150, 100));
    assert_eq!(resize(false), (150, 225));
}

/// PSNR (dB) of every frame of a GIF against the RGBA frames it was made
/// from, over the opaque pixels, averaged over the frames.
fn gif_psnr(gif_bytes: &[u8], reference: &[image::RgbaImage]) -> f64 {
    let frames = GifDecoder::new(Cursor::new(gif_bytes))
        .expect("gif")
        .into_frames()
        .collect_frames()
        .expect("frames");
    assert_eq!(frames.len(), reference.len());
    let mut total = 0.0;
    for (frame, want) in frames.iter().zip(reference) {
        let got = frame.buffer();
        let (mut se, mut n) = (0.0f64, 0usize);
        for (p, q) in got.pixels().zip(want.pixels()) {
            if q[3] >= 128 {
                for c in 0..3 {
                    se += (f64::from(p[c]) - f64::from(q[c])).powi(2);
                }
                n += 3;
            }
        }
        total += 10.0 * (255.0f64 * 255.0 / (se / n.max(1) as f64).max(1e-9)).log10();
    }
    total / reference.len() as f64
}

#[test]
fn the_fast_gif_palette_is_as_good_as_per_frame_neuquant() {
    // The resized frames are the reference both encoders quantise.
    let input = read(ANIM_GIF);
    let resized = task_as(
        vec![Op::Resize {
            width: Some(160),
            height: None,
            fit: crate::proto::Fit::Contain,
            gravity: crate::proto::Gravity::Centre,
            enlarge: false,
            linear: None,
        }],
        OutputFormat::Webp,
    );
    let mut frames = Vec::new();
    let decoded =
        decode::decode(&input, &Limits::default(), None, &Tuning::default()).expect("decode");
    let ops: Vec<&Op> = resized.ops.iter().collect();
    match ops::apply(
        decoded.content,
        &ops,
        Vec::new(),
        &Limits::default(),
        (210, 210),
        &Tuning::default(),
    )
    .expect("resize")
    {
        Content::Animation(anim) => frames.extend(anim.frames.into_iter().map(|f| f.image)),
        Content::Still(_) => panic!("still an animation"),
    }
    let gif_of = |tuning: &Tuning| {
        let mut t = resized.clone();
        t.output.format = Some(OutputFormat::Gif);
        match run_tuned(&t, &input, &[], tuning).0 {
            Ok(Product::Image { bytes, .. }) => bytes,
            other => panic!("{other:?}"),
        }
    };
    let fast = gif_psnr(&gif_of(&Tuning::default()), &frames);
    let neuquant = gif_psnr(
        &gif_of(&Tuning {
            fast_gif: false,
            ..Tuning::default()
        }),
        &frames,
    );
    eprintln!("GIF PSNR over opaque pixels: Wu global palette {fast:.2} dB, NeuQuant per frame {neuquant:.2} dB");
    assert!(fast > 28.0, "fast GIF palette PSNR {fast:.2} dB");
    assert!(
        fast > neuquant - 2.0,
        "{fast:.2} dB vs NeuQuant {neuquant:.2} dB"
    );
}

/// Found by schemathesis: a 65535-pixel-wide JPEG is legal in the format
/// but past libjpeg's 65500, and was a 500 from the encoder.
#[test]
fn jpeg_output_wider_than_libjpeg_allows_is_a_clear_400() {
    let input = read("valid/png/tiny_1x1.png");
    let wide = task_as(
        vec![Op::Pad {
            top: 0,
            right: 0,
            bottom: 0,
            left: 65534,
            background: crate::proto::Color::rgba(0, 0, 0, 255),
        }],
        OutputFormat::Jpeg,
    );
    let err = error_of(&wide, &input);
    assert_eq!(err.kind, ErrorKind::BadParameter, "{err:?}");
    assert!(
        err.message.contains("too large for jpeg"),
        "{}",
        err.message
    );
}

#[test]
fn linear_resize_averages_light_in_every_sample_layout() {
    // One-pixel black and white columns: half the light, 188 of 255 in
    // sRGB, whatever the channels and the depth; the alpha stays opaque.
    let lines = image::RgbaImage::from_fn(32, 8, |x, _| {
        let v = if x % 2 == 0 { 0 } else { 255 };
        image::Rgba([v, v, v, 255])
    });
    let base = DynamicImage::ImageRgba8(lines);
    let layouts = [
        DynamicImage::ImageLuma8(base.to_luma8()),
        DynamicImage::ImageLumaA8(base.to_luma_alpha8()),
        DynamicImage::ImageRgb8(base.to_rgb8()),
        base.clone(),
        DynamicImage::ImageRgb16(base.to_rgb16()),
        DynamicImage::ImageLumaA16(base.to_luma_alpha16()),
        DynamicImage::ImageRgba32F(base.to_rgba32f()),
    ];
    let mut resizer = fast_image_resize::Resizer::new();
    for image in layouts {
        let color = image.color();
        let out = geometry::resize_linear(&image, 8, 2, &mut resizer).expect("resize");
        assert_eq!(out.color(), color, "the layout is kept");
        assert_eq!((out.width(), out.height()), (8, 2));
        let px = out.to_rgba8().get_pixel(4, 1).0;
        assert!(px[0].abs_diff(188) <= 1, "{color:?}: {px:?}");
        assert_eq!(px[3], 255, "{color:?}: {px:?}");
        // Filtering the stored values gives the darker 128.
        let naive = geometry::resize(&image, 8, 2, &mut resizer).expect("resize");
        let px = naive.to_rgba8().get_pixel(4, 1).0;
        assert!(px[0].abs_diff(128) <= 1, "{color:?} naive: {px:?}");
    }
}
