//! The image catalogue: every op on a photo, a transparent PNG and an
//! animated GIF through the real server, each result checked against an
//! independent reference; EXIF orientations; `format=auto`; pipelines;
//! parameter errors that never reach a worker; `/v1/ops` and `/openapi.json`.

mod common;

use std::io::Cursor;

use common::{corpus_file, Resp, Server};
use image::{DynamicImage, GenericImageView, RgbaImage};

const PHOTO: &str = "valid/jpeg/photo_portrait_800x533_baseline.jpg";
const PNG_ALPHA: &str = "valid/png/palette_trns_300x225.png";
const ANIM: &str = "valid/gif/anim_210x210_20frames_varied_delays.gif";
/// A palette PNG with transparency: the overlay of the op examples.
const LOGO: &str = "valid/png/palette_trns_300x225.png";

/// Every public op of the catalogue (aliases included).
const ALL_OPS: &[&str] = &[
    "resize",
    "thumbnail",
    "crop",
    "extract",
    "rotate",
    "flip",
    "flop",
    "pad",
    "extend",
    "trim",
    "blur",
    "sharpen",
    "pixelate",
    "grayscale",
    "invert",
    "brightness",
    "contrast",
    "hue",
    "saturation",
    "sepia",
    "threshold",
    "background",
    "convert",
    "overlay",
    "info",
];

fn decode(bytes: &[u8]) -> DynamicImage {
    image::load_from_memory(bytes).unwrap_or_else(|e| panic!("output does not decode: {e}"))
}

fn ok(r: Resp, what: &str) -> Resp {
    assert_eq!(
        r.status,
        200,
        "{what}: {}",
        String::from_utf8_lossy(&r.body[..r.body.len().min(300)])
    );
    r
}

/// Peak signal-to-noise ratio of two same-sized images, in dB, over
/// alpha-premultiplied RGB and alpha (the colour of a transparent pixel is
/// meaningless, so it must not count).
fn psnr(a: &RgbaImage, b: &RgbaImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let mut se = 0f64;
    let mut n = 0f64;
    let pre = |p: &image::Rgba<u8>, i: usize| {
        if i == 3 {
            f64::from(p[3])
        } else {
            f64::from(p[i]) * f64::from(p[3]) / 255.0
        }
    };
    for (p, q) in a.pixels().zip(b.pixels()) {
        for i in 0..4 {
            let d = pre(p, i) - pre(q, i);
            se += d * d;
            n += 1.0;
        }
    }
    if se == 0.0 {
        return f64::INFINITY;
    }
    10.0 * (255.0f64 * 255.0 / (se / n)).log10()
}

/// Mean absolute difference between horizontal neighbours: a detail measure.
/// Mean horizontal change of what is seen: the picture over white (the
/// colour held by fully transparent pixels is no detail).
fn detail(img: &RgbaImage) -> f64 {
    let (w, h) = img.dimensions();
    let seen = |x: u32, y: u32, i: usize| {
        let p = img.get_pixel(x, y);
        let a = f64::from(p[3]) / 255.0;
        f64::from(p[i]) * a + 255.0 * (1.0 - a)
    };
    let mut sum = 0f64;
    for y in 0..h {
        for x in 1..w {
            sum += (0..3)
                .map(|i| (seen(x, y, i) - seen(x - 1, y, i)).abs())
                .sum::<f64>();
        }
    }
    sum / f64::from(w * h)
}

fn max_diff(a: &RgbaImage, b: &RgbaImage) -> u8 {
    assert_eq!(a.dimensions(), b.dimensions());
    a.as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

/// The canvas a rotation by `deg` needs (the formula documented for rotate).
fn rotated_size(w: u32, h: u32, deg: f64) -> (u32, u32) {
    let (s, c) = deg.to_radians().sin_cos();
    let (w, h) = (f64::from(w), f64::from(h));
    (
        (w * c.abs() + h * s.abs() - 1e-6).ceil() as u32,
        (w * s.abs() + h * c.abs() - 1e-6).ceil() as u32,
    )
}

fn round_div(a: u32, b: u32, c: u32) -> u32 {
    ((u64::from(a) * u64::from(b) + u64::from(c) / 2) / u64::from(c)) as u32
}

/// (query, expected size) of every op for a `w` x `h` input.
fn size_cases(w: u32, h: u32) -> Vec<(String, (u32, u32))> {
    let outside = if 100 * h >= 100 * w {
        (100, round_div(h, 100, w))
    } else {
        (round_div(w, 100, h), 100)
    };
    vec![
        ("resize?width=100".into(), (100, round_div(h, 100, w))),
        ("resize?width=100&height=100&fit=cover".into(), (100, 100)),
        (
            "resize?width=100&height=100&fit=cover&gravity=smart".into(),
            (100, 100),
        ),
        ("resize?width=100&height=50&fit=fill".into(), (100, 50)),
        ("resize?width=100&height=100&fit=outside".into(), outside),
        (
            "resize?width=5000&height=5000&fit=inside&enlarge=true".into(),
            (w, h),
        ),
        ("thumbnail?width=64".into(), (64, 64)),
        (
            "thumbnail?width=80&height=40&gravity=north".into(),
            (80, 40),
        ),
        ("crop?x=10&y=10&width=50&height=40".into(), (50, 40)),
        ("extract?x=10&y=10&width=50&height=40".into(), (50, 40)),
        ("rotate?angle=90".into(), (h, w)),
        ("rotate?angle=-90".into(), (h, w)),
        ("rotate?angle=180".into(), (w, h)),
        (
            "rotate?angle=30&background=white".into(),
            rotated_size(w, h, 30.0),
        ),
        ("flip".into(), (w, h)),
        ("flop".into(), (w, h)),
        ("pad?top=5&right=6&bottom=7&left=8".into(), (w + 14, h + 12)),
        (
            "extend?top=5&right=6&bottom=7&left=8&background=ff000080".into(),
            (w + 14, h + 12),
        ),
        ("blur?sigma=2".into(), (w, h)),
        ("sharpen?sigma=1.5&amount=2".into(), (w, h)),
        ("pixelate?size=10".into(), (w, h)),
        ("grayscale".into(), (w, h)),
        ("invert".into(), (w, h)),
        ("brightness?value=20".into(), (w, h)),
        ("contrast?value=30".into(), (w, h)),
        ("hue?degrees=90".into(), (w, h)),
        ("saturation?factor=0.5".into(), (w, h)),
        ("sepia".into(), (w, h)),
        ("threshold?value=128".into(), (w, h)),
        ("background?color=00ff00".into(), (w, h)),
        ("convert".into(), (w, h)),
    ]
}

/// Every op on a still: output size, then content against a reference made
/// here from the decoded input (every result is asked for as PNG, lossless).
fn check_still(s: &Server, input: &[u8], label: &str) {
    let base = decode(input).to_rgba8();
    let (w, h) = base.dimensions();
    let run = |q: &str, body: &[u8]| -> RgbaImage {
        let sep = if q.contains('?') { '&' } else { '?' };
        let path = format!("/v1/{q}{sep}format=png");
        let r = ok(s.post(&path, body), &format!("{label} {q}"));
        assert_eq!(r.header("content-type"), Some("image/png"), "{label} {q}");
        decode(&r.body).to_rgba8()
    };
    let png = |img: &RgbaImage| -> Vec<u8> {
        let mut out = Vec::new();
        DynamicImage::ImageRgba8(img.clone())
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .expect("png");
        out
    };

    // Sizes of every op.
    for (q, dims) in size_cases(w, h) {
        let out = run(&q, input);
        assert_eq!(out.dimensions(), dims, "{label} {q}");
    }
    // The server decodes like this test does: exactly for lossless inputs;
    // for JPEG within a few levels, since the standard leaves IDCT rounding
    // and chroma upsampling to the decoder (the server's libjpeg-turbo and
    // this test's zune-jpeg differ by up to 3).
    let same = run("convert", input);
    let tolerance = if input.starts_with(&[0xFF, 0xD8]) {
        4
    } else {
        0
    };
    assert!(
        max_diff(&same, &base) <= tolerance,
        "{label}: convert is lossless (max difference {})",
        max_diff(&same, &base)
    );
    // From here on the references start from the server's own decode, so
    // every op below is checked exactly.
    let base = same;

    // resize vs an independent downscale (image's own Lanczos3).
    let out = run("resize?width=100", input);
    let reference = image::imageops::resize(
        &base,
        out.width(),
        out.height(),
        image::imageops::FilterType::Lanczos3,
    );
    let p = psnr(&out, &reference);
    assert!(p > 30.0, "{label}: resize PSNR {p:.1} dB");
    // Cover with gravity: the crop of the full cover-scaled image.
    let cover = run(
        "resize?width=100&height=100&fit=cover&gravity=northwest",
        input,
    );
    let scaled = run(
        &format!(
            "resize?{}",
            if w >= h {
                format!("height=100&width={}", round_div(w, 100, h))
            } else {
                format!("width=100&height={}", round_div(h, 100, w))
            }
        ),
        input,
    );
    let corner = image::imageops::crop_imm(&scaled, 0, 0, 100, 100).to_image();
    assert_eq!(
        max_diff(&cover, &corner),
        0,
        "{label}: cover = scale + crop"
    );

    // Mirrors and rotations are exact.
    let flipped = run("flip", input);
    assert_eq!(flipped, image::imageops::flip_vertical(&base), "{label}");
    assert_eq!(run("flip", &png(&flipped)), base, "{label}: flip twice");
    let flopped = run("flop", input);
    assert_eq!(run("flop", &png(&flopped)), base, "{label}: flop twice");
    let mut turned = base.clone();
    for _ in 0..4 {
        turned = run("rotate?angle=90", &png(&turned));
    }
    assert_eq!(turned, base, "{label}: rotate(90) four times");
    assert_eq!(
        run("rotate?angle=90", input),
        image::imageops::rotate90(&base),
        "{label}: rotate 90 is clockwise"
    );
    // Any angle: the centre keeps its colour, the corners get the background.
    let r30 = run("rotate?angle=30&background=ff0000", input);
    assert_eq!(r30.get_pixel(0, 0).0, [255, 0, 0, 255], "{label} corner");
    let c = r30.get_pixel(r30.width() / 2, r30.height() / 2);
    let c0 = base.get_pixel(w / 2, h / 2);
    assert!(
        (0..3).all(|i| c[i].abs_diff(c0[i]) < 40),
        "{label} centre {c:?} vs {c0:?}"
    );

    // Crop and its alias: the exact rectangle.
    let crop = image::imageops::crop_imm(&base, 10, 10, 50, 40).to_image();
    assert_eq!(run("crop?x=10&y=10&width=50&height=40", input), crop);
    assert_eq!(run("extract?x=10&y=10&width=50&height=40", input), crop);

    // Pad: borders of the colour, the image inside; trim takes them off.
    let padded = run("pad?top=5&right=6&bottom=7&left=8&background=0000ff", input);
    assert_eq!(padded.get_pixel(0, 0).0, [0, 0, 255, 255]);
    let inner = image::imageops::crop_imm(&padded, 8, 5, w, h).to_image();
    assert_eq!(inner, base, "{label}: pad keeps the image");
    let trimmed = run("trim?threshold=0", &png(&padded));
    assert!(
        trimmed.width() <= w && trimmed.height() <= h,
        "{label}: trim {:?}",
        trimmed.dimensions()
    );

    // Colour ops against their formulas.
    let gray = run("grayscale", input);
    assert!(
        gray.pixels().all(|p| p[0] == p[1] && p[1] == p[2]),
        "{label}"
    );
    let inv = run("invert", input);
    assert!(inv
        .pixels()
        .zip(base.pixels())
        .all(|(a, b)| (0..3).all(|i| a[i] == 255 - b[i]) && a[3] == b[3]));
    assert_eq!(run("invert", &png(&inv)), base, "{label}: invert twice");
    let bright = run("brightness?value=20", input);
    assert!(bright
        .pixels()
        .zip(base.pixels())
        .all(|(a, b)| (0..3).all(|i| a[i].abs_diff(b[i].saturating_add(51)) <= 1)));
    let flat = run("contrast?value=-100", input);
    assert!(flat
        .pixels()
        .all(|p| (0..3).all(|i| p[i].abs_diff(128) <= 1)));
    let same_hue = run("hue?degrees=360", input);
    assert!(max_diff(&same_hue, &base) <= 1, "{label}: hue 360");
    let desat = run("saturation?factor=0", input);
    assert!(desat
        .pixels()
        .all(|p| p[0].abs_diff(p[1]) <= 1 && p[1].abs_diff(p[2]) <= 1));
    let sepia = run("sepia", input);
    for (a, b) in sepia.pixels().zip(base.pixels()).step_by(97) {
        let f = |r: f64, g: f64, bl: f64| {
            (r * f64::from(b[0]) + g * f64::from(b[1]) + bl * f64::from(b[2])).min(255.0)
        };
        let want = [
            f(0.393, 0.769, 0.189),
            f(0.349, 0.686, 0.168),
            f(0.272, 0.534, 0.131),
        ];
        assert!(
            (0..3).all(|i| (f64::from(a[i]) - want[i]).abs() <= 1.5),
            "{label}: sepia {a:?} from {b:?}"
        );
    }
    let bw = run("threshold?value=128", input);
    for (a, b) in bw.pixels().zip(base.pixels()) {
        assert!(a[0] == a[1] && a[1] == a[2] && (a[0] == 0 || a[0] == 255));
        let l = 0.299 * f64::from(b[0]) + 0.587 * f64::from(b[1]) + 0.114 * f64::from(b[2]);
        if (l - 128.0).abs() > 1.0 {
            assert_eq!(a[0] == 255, l >= 128.0, "{label}: threshold of {b:?}");
        }
    }
    let pix = run("pixelate?size=10", input);
    for by in (0..h).step_by(10) {
        for bx in (0..w).step_by(10) {
            let first = pix.get_pixel(bx, by);
            for y in by..(by + 10).min(h) {
                for x in bx..(bx + 10).min(w) {
                    assert_eq!(pix.get_pixel(x, y), first, "{label}: block at {bx},{by}");
                }
            }
        }
    }
    let blurred = run("blur?sigma=2", input);
    assert!(detail(&blurred) < detail(&base) * 0.8, "{label}: blur");
    let sharp = run("sharpen?sigma=1.5&amount=2", input);
    assert!(detail(&sharp) > detail(&base) * 1.1, "{label}: sharpen");
}

/// Every op on the animated GIF: frames, delays and loop kept, sizes right.
fn check_animation(s: &Server, input: &[u8]) {
    let frames = common::gif_frames(input);
    let delays: Vec<u32> = frames.iter().map(|f| f.1).collect();
    let (w, h) = frames[0].0.dimensions();
    let before = ok(s.post("/v1/info", input), "info").json();
    for (q, dims) in size_cases(w, h) {
        let r = ok(s.post(&format!("/v1/{q}"), input), &format!("gif {q}"));
        assert_eq!(r.header("content-type"), Some("image/gif"), "{q}");
        assert_eq!(r.header("x-image-frames"), Some("20"), "{q}");
        let out = common::gif_frames(&r.body);
        assert_eq!(out.len(), 20, "{q}: frame count");
        assert_eq!(
            out.iter().map(|f| f.1).collect::<Vec<_>>(),
            delays,
            "{q}: delays"
        );
        assert!(
            out.iter().all(|f| f.0.dimensions() == dims),
            "{q}: every frame {dims:?}"
        );
        let after = ok(s.post("/v1/info", &r.body), "info").json();
        assert_eq!(after["loop_count"], before["loop_count"], "{q}: loop");
    }
    // trim on an animation: one box for every frame.
    let r = ok(
        s.post("/v1/pad?top=9&left=9&background=white", input),
        "pad",
    );
    let r = ok(s.post("/v1/trim", &r.body), "trim");
    let out = common::gif_frames(&r.body);
    assert_eq!(out.len(), 20);
    let first = out[0].0.dimensions();
    assert!(out.iter().all(|f| f.0.dimensions() == first));
    // Animated WebP keeps the animation too.
    let r = ok(s.post("/v1/flop?format=webp", input), "webp");
    assert_eq!(r.header("content-type"), Some("image/webp"));
    let info = ok(s.post("/v1/info", &r.body), "info").json();
    assert_eq!(info["frames"], 20);
    assert_eq!(info["delays_ms"], before["delays_ms"]);
    // Grayscale per frame: grey within GIF palette error.
    let r = ok(s.post("/v1/grayscale", input), "grayscale");
    for (f, _) in common::gif_frames(&r.body) {
        assert!(f
            .pixels()
            .all(|p| p[3] == 0 || (p[0].abs_diff(p[1]) <= 8 && p[1].abs_diff(p[2]) <= 8)));
    }
}

#[test]
fn every_op_on_a_photo_a_transparent_png_and_an_animation() {
    let s = Server::start(&[]);
    check_still(&s, &corpus_file(PHOTO), "photo");
    let png = corpus_file(PNG_ALPHA);
    check_still(&s, &png, "png");
    // background: alpha gone, transparent pixels become the colour.
    let base = decode(&png).to_rgba8();
    let r = ok(s.post("/v1/background?color=00ff00", &png), "background");
    let out = decode(&r.body);
    assert!(!out.color().has_alpha(), "background removes alpha");
    let out = out.to_rgba8();
    let (x, y) = base
        .enumerate_pixels()
        .find(|(_, _, p)| p[3] == 0)
        .map(|(x, y, _)| (x, y))
        .expect("a transparent pixel");
    assert_eq!(out.get_pixel(x, y).0, [0, 255, 0, 255]);
    check_animation(&s, &corpus_file(ANIM));
    assert!(s.stop().success());
}

#[test]
fn exif_orientations_come_out_upright() {
    let s = Server::start(&[]);
    let probe = |n: u32, extra: &str| -> RgbaImage {
        let input = corpus_file(&format!(
            "valid/exif_orientation/landscape_orientation_{n}.jpg"
        ));
        let r = ok(
            s.post(&format!("/v1/resize?width=90&format=png{extra}"), &input),
            "orientation",
        );
        decode(&r.body).to_rgba8()
    };
    let upright = probe(1, "");
    assert_eq!(upright.dimensions(), (90, 60));
    for n in 2..=8 {
        let out = probe(n, "");
        assert_eq!(out.dimensions(), (90, 60), "orientation {n}");
        let diff: f64 = out
            .as_raw()
            .iter()
            .zip(upright.as_raw())
            .map(|(a, b)| f64::from(a.abs_diff(*b)))
            .sum::<f64>()
            / out.as_raw().len() as f64;
        assert!(diff < 6.0, "orientation {n}: mean difference {diff:.1}");
        // Stored pixels: 5-8 are stored portrait.
        let raw = probe(n, "&autorotate=false");
        let want = if n >= 5 { (90, 135) } else { (90, 60) };
        assert_eq!(raw.dimensions(), want, "orientation {n} autorotate=false");
        if n != 1 {
            let d = max_diff(
                &image::imageops::resize(&raw, 90, 60, image::imageops::FilterType::Triangle),
                &upright,
            );
            assert!(d > 50, "orientation {n}: autorotate=false must differ");
        }
    }
    assert!(s.stop().success());
}

#[test]
fn format_auto_follows_accept_and_varies() {
    let s = Server::start(&[]);
    let photo = corpus_file(PHOTO);
    let chrome = "image/avif,image/webp,image/apng,image/*,*/*;q=0.8";
    let r = ok(
        s.post_with(
            "/v1/resize?width=100&format=auto",
            &photo,
            &[("accept", chrome)],
        ),
        "auto avif",
    );
    assert_eq!(r.header("content-type"), Some("image/avif"));
    assert_eq!(r.header("vary"), Some("Accept"));
    let info = ok(s.post("/v1/info", &r.body), "avif reads back").json();
    assert_eq!(
        (info["width"].as_u64(), info["height"].as_u64()),
        (Some(100), Some(67))
    );
    let r = ok(
        s.post_with(
            "/v1/resize?width=100&format=auto",
            &photo,
            &[("accept", "image/avif;q=0,image/webp,*/*")],
        ),
        "auto webp",
    );
    assert_eq!(r.header("content-type"), Some("image/webp"));
    assert_eq!(r.header("vary"), Some("Accept"));
    assert_eq!(decode(&r.body).dimensions(), (100, 67));
    for accept in ["image/*,*/*", "image/webp;q=0"] {
        let r = ok(
            s.post_with(
                "/v1/resize?width=100&format=auto",
                &photo,
                &[("accept", accept)],
            ),
            "auto jpeg",
        );
        assert_eq!(r.header("content-type"), Some("image/jpeg"), "{accept}");
        assert_eq!(r.header("vary"), Some("Accept"));
    }
    let r = ok(s.post("/v1/resize?width=100&format=auto", &photo), "auto");
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    assert_eq!(r.header("vary"), Some("Accept"));
    // The input's family for PNG, and no Vary when the format is explicit.
    let png = corpus_file(PNG_ALPHA);
    let r = ok(s.post("/v1/flip?format=auto", &png), "auto png");
    assert_eq!(r.header("content-type"), Some("image/png"));
    let r = ok(
        s.post_with("/v1/flip?format=png", &png, &[("accept", chrome)]),
        "png",
    );
    assert_eq!(r.header("vary"), None);
    // Encoder knobs: progressive JPEG, lossy vs lossless WebP, GIF colours.
    let base = ok(s.post("/v1/convert?format=jpeg", &photo), "jpeg").body;
    let prog = ok(
        s.post("/v1/convert?format=jpeg&progressive=true", &photo),
        "p",
    )
    .body;
    assert!(has_marker(&prog, 0xC2) && !has_marker(&base, 0xC2), "SOF2");
    assert_eq!(decode(&prog).dimensions(), (800, 533));
    let lossy = ok(
        s.post("/v1/convert?format=webp&quality=50", &photo),
        "lossy",
    )
    .body;
    let lossless = ok(
        s.post("/v1/convert?format=webp&lossless=true", &photo),
        "ll",
    )
    .body;
    assert!(lossy.len() * 3 < lossless.len(), "lossy WebP is smaller");
    let few = ok(s.post("/v1/convert?format=gif&colors=4", &photo), "gif").body;
    let distinct: std::collections::HashSet<[u8; 4]> =
        decode(&few).to_rgba8().pixels().map(|p| p.0).collect();
    assert!(distinct.len() <= 4, "{} colours", distinct.len());
    let best = ok(
        s.post("/v1/convert?format=png&compression=best", &png),
        "png",
    )
    .body;
    assert!(decode(&best).to_rgba8() == decode(&png).to_rgba8());
    assert!(s.stop().success());
}

/// Whether a JPEG has a start-of-frame marker `0xFF kind`.
fn has_marker(jpeg: &[u8], kind: u8) -> bool {
    jpeg.windows(2).any(|w| w == [0xFF, kind])
}

#[test]
fn pipelines_equal_single_requests() {
    let s = Server::start(&[]);
    let photo = corpus_file(PHOTO);
    let r = ok(
        s.post(
            "/v1/pipeline?ops=resize(width=300),blur(sigma=2),rotate(angle=90)&format=png",
            &photo,
        ),
        "pipeline",
    );
    let piped = decode(&r.body).to_rgba8();
    let step1 = ok(s.post("/v1/resize?width=300&format=png", &photo), "1").body;
    let step2 = ok(s.post("/v1/blur?sigma=2&format=png", &step1), "2").body;
    let step3 = ok(s.post("/v1/rotate?angle=90&format=png", &step2), "3").body;
    assert_eq!(
        piped,
        decode(&step3).to_rgba8(),
        "pipeline = three requests"
    );
    // URL-encoded ops, and on an animation.
    let r = ok(
        s.post(
            "/v1/pipeline?ops=thumbnail%28width%3D50%29%2Cgrayscale",
            &corpus_file(ANIM),
        ),
        "anim pipeline",
    );
    assert_eq!(common::gif_frames(&r.body).len(), 20);
    // Errors name the op and parameter.
    let sixteen = vec!["flip"; 16].join(",");
    ok(s.post(&format!("/v1/pipeline?ops={sixteen}"), &photo), "16");
    for (q, param) in [
        (format!("ops={}", vec!["flip"; 17].join(",")), "ops"),
        (
            "ops=resize(width=10),blur(sigma=500)".to_string(),
            "ops[1].sigma",
        ),
        ("ops=flip,flop,resize(width=-3)".to_string(), "ops[2].width"),
        ("ops=flip,explode".to_string(), "ops[1]"),
        ("ops=info".to_string(), "ops[0]"),
        (
            "ops=resize(width=10,format=png)".to_string(),
            "ops[0].format",
        ),
        ("format=png".to_string(), "ops"),
    ] {
        let r = s.post(&format!("/v1/pipeline?{q}"), &photo);
        assert_eq!(r.status, 400, "{q}");
        assert_eq!(r.json()["error"]["param"], param, "{q}");
    }
    assert!(s.stop().success());
}

#[test]
fn bad_parameters_are_400s_that_never_reach_a_worker() {
    let s = Server::start(&[]);
    let photo = corpus_file(PHOTO);
    // Warm both workers so the counters exist.
    ok(s.post("/v1/flip", &photo), "warm");
    let before = s.requests_served();
    let cases: &[(&str, u16, &str)] = &[
        ("/v1/resize?width=-5", 400, "width"),
        ("/v1/resize?width=10&fit=squash", 400, "fit"),
        ("/v1/blur?sigma=1000", 400, "sigma"),
        ("/v1/blur?sigma=0", 400, "sigma"),
        ("/v1/sharpen?amount=-1", 400, "amount"),
        ("/v1/rotate?angle=400", 400, "angle"),
        (
            "/v1/rotate?angle=30&background=%23ffffff",
            400,
            "background",
        ),
        ("/v1/pad?top=1&background=purple", 400, "background"),
        ("/v1/pixelate?size=0", 400, "size"),
        ("/v1/brightness?value=200", 400, "value"),
        ("/v1/hue", 400, "degrees"),
        ("/v1/threshold?value=256", 400, "value"),
        ("/v1/thumbnail", 400, "width"),
        ("/v1/convert?format=bmp", 400, "format"),
        ("/v1/convert?colors=1", 400, "colors"),
        ("/v1/flip?autorotate=maybe", 400, "autorotate"),
        ("/v1/flip?bogus=1", 400, "bogus"),
        ("/v1/pipeline?ops=flip,blur(sigma=-1)", 400, "ops[1].sigma"),
        ("/v1/pipeline?ops=explode", 400, "ops[0]"),
    ];
    for (path, status, param) in cases {
        let r = s.post(path, &photo);
        assert_eq!(r.status, *status, "{path}");
        assert!(
            r.error_code() == "bad_parameter" || r.error_code() == "unknown_parameter",
            "{path}"
        );
        assert_eq!(r.json()["error"]["param"], *param, "{path}");
    }
    let long = format!("/v1/pipeline?ops={}", vec!["flip"; 17].join(","));
    let r = s.post(&long, &photo);
    assert_eq!(
        (r.status, r.json()["error"]["param"].clone()),
        (400, "ops".into())
    );
    let r = s.post("/v1/explode", &photo);
    assert_eq!((r.status, r.error_code().as_str()), (404, "unknown_op"));
    assert_eq!(
        s.requests_served(),
        before,
        "no bad request reached a worker"
    );
    assert!(s.stop().success());
}

#[test]
fn ops_listing_and_openapi_describe_every_op() {
    // The overlay op's example names a registered overlay.
    let logo = format!("logo={}", common::corpus().join(LOGO).display());
    let s = Server::start(&["--overlay", &logo]);
    let r = ok(s.get("/v1/ops"), "/v1/ops");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let listing = r.json();
    let ops = listing["ops"].as_array().expect("ops");
    let names: Vec<&str> = ops.iter().filter_map(|o| o["name"].as_str()).collect();
    for op in ALL_OPS {
        assert!(names.contains(op), "{op} listed");
    }
    assert_eq!(names.len(), ALL_OPS.len(), "{names:?}");
    assert!(names.iter().all(|n| !n.starts_with("__")), "no test ops");
    assert_eq!(listing["pipeline"]["max_ops"], 16);

    let api = ok(s.get("/openapi.json"), "openapi").json();
    assert_eq!(api["openapi"], "3.0.3");
    let paths = api["paths"].as_object().expect("paths");
    let output: Vec<&str> = listing["output_params"]
        .as_array()
        .expect("output params")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    let photo = corpus_file(PHOTO);
    for op in ops {
        let name = op["name"].as_str().unwrap_or("");
        let route = &paths[&format!("/v1/{name}")]["post"];
        let documented: Vec<&str> = route["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has parameters"))
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        let mut expected: Vec<&str> = op["params"]
            .as_array()
            .expect("params")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        expected.extend(&output);
        assert_eq!(documented, expected, "{name}");
        assert!(route["responses"]["400"].is_object(), "{name} 400");
        // The documented example works against the real server.
        let example = op["example"].as_str().unwrap_or("");
        ok(s.post(&format!("/v1/{name}?{example}"), &photo), name);
        // Every documented default parses as a value of its parameter.
        for p in op["params"].as_array().expect("params") {
            if let Some(d) = p["default"].as_str() {
                let q = format!(
                    "/v1/{name}?{}={d}&{example}",
                    p["name"].as_str().unwrap_or("")
                );
                let r = s.post(&q, &photo);
                assert!(
                    r.status == 200 || r.json()["error"]["code"] == "bad_parameter",
                    "{q}: {}",
                    r.status
                );
            }
        }
    }
    for route in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/pipeline",
        "/v1/ops",
        "/openapi.json",
        "/v1/jobs/{op}",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/result",
    ] {
        assert!(paths.contains_key(route), "{route} documented");
    }
    let error = &api["components"]["schemas"]["Error"]["properties"]["error"];
    assert_eq!(error["required"], serde_json::json!(["code", "message"]));
    assert_eq!(
        paths["/v1/jobs/{op}"]["post"]["responses"]["202"]["content"]["application/json"]["schema"]
            ["$ref"],
        "#/components/schemas/JobAccepted"
    );
    assert!(s.stop().success());
}

#[test]
fn focal_gravity_keeps_the_given_point() {
    // 400 x 100, black, with a white 10 x 10 square centred at (305, 50).
    let mut img = RgbaImage::from_pixel(400, 100, image::Rgba([0, 0, 0, 255]));
    for y in 45..55 {
        for x in 300..310 {
            img.put_pixel(x, y, image::Rgba([255, 255, 255, 255]));
        }
    }
    let mut png = Vec::new();
    DynamicImage::ImageRgba8(img)
        .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("png");
    let s = Server::start(&[]);
    let white =
        |r: Resp, x: u32, y: u32| decode(&ok(r, "focal").body).to_rgba8().get_pixel(x, y)[0] > 200;
    for route in [
        "thumbnail?width=100&height=100",
        "resize?width=100&height=100&fit=cover",
    ] {
        // fx = 305 / 400: the square lands in the middle of the crop.
        let r = s.post(&format!("/v1/{route}&gravity=focal&fx=0.7625&fy=0.5"), &png);
        assert!(white(r, 50, 50), "{route}: the point is centred");
        let r = s.post(&format!("/v1/{route}&gravity=focal&fx=0.7625&fy=0.5"), &png);
        assert!(!white(r, 5, 50), "{route}: and only it");
        // Centre gravity crops 150..250: no square.
        let r = s.post(&format!("/v1/{route}&gravity=centre"), &png);
        assert!(!white(r, 50, 50), "{route}: centre misses it");
        // A point at the right edge: the crop stops at the edge.
        let r = s.post(&format!("/v1/{route}&gravity=focal&fx=1&fy=0"), &png);
        assert!(white(r, 5, 50), "{route}: the crop is 300..400");
    }
    let r = s.post("/v1/thumbnail?width=100&fx=0.5", &png);
    assert_eq!(
        (r.status, r.json()["error"]["param"].as_str()),
        (400, Some("fx"))
    );
    let r = s.post("/v1/thumbnail?width=100&gravity=focal&fy=1.5", &png);
    assert_eq!(
        (r.status, r.json()["error"]["param"].as_str()),
        (400, Some("fy"))
    );
    assert!(s.stop().success());
}
