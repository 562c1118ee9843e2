//! Embedded colour profiles: pixels come out in sRGB (the profile itself
//! is not copied unless `icc=keep` asks, and can), `info` names the
//! profile, an embedded sRGB profile changes no pixel, and `linear=true`
//! scales in light. The colours themselves are checked against LittleCMS
//! for every corpus file with a profile by tests/fidelity.rs; here, the
//! behaviour around it.

mod common;

use common::Server;

/// Whether a PNG has an `iCCP` chunk.
fn png_has_icc(png: &[u8]) -> bool {
    png.windows(4).any(|w| w == b"iCCP")
}

#[test]
fn info_names_the_embedded_profile() {
    let s = Server::start(&[]);
    for (file, want) in [
        ("valid/icc/png_iccp_display_p3_chrm.png", Some("Display P3")),
        ("valid/icc/prophoto_rgb_1x1.png", Some("ProPhoto RGB")),
        ("valid/icc/grey_dotgain30_icc.jpg", Some("Dot Gain 30%")),
        (
            "valid/icc/icc_rgb_to_gbr_channel_swap.jpg",
            Some("RGB-to-GBR"),
        ),
        // The header says 3144 bytes, 1000 are there: a profile, unnamed.
        ("valid/icc/crafted_truncated_icc_srgb.jpg", Some("unnamed")),
        (
            "valid/jpeg/photo_portrait_800x533_baseline.jpg",
            Some("sRGB IEC61966-2.1"),
        ),
        ("valid/icc/png_gama16_chrm_greyscale.png", None),
    ] {
        let info = s.post("/v1/info", &common::corpus_file(file)).json();
        assert_eq!(info["icc"].as_str(), want, "{file}: {info}");
    }
    s.stop();
}

#[test]
fn a_profile_is_applied_not_copied() {
    // The "RGB-to-GBR" profile rotates the channels: its picture's colour
    // names are right only once the profile is applied.
    let file = "valid/icc/icc_rgb_to_gbr_channel_swap.jpg";
    let s = Server::start(&[]);
    let r = s.post("/v1/convert?format=png", &common::corpus_file(file));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(!png_has_icc(&r.body), "the profile is not copied");
    let ours = image::load_from_memory(&r.body).expect("png").into_rgb8();
    let raw = image::load_from_memory(&common::corpus_file(file))
        .expect("jpeg")
        .into_rgb8();
    // The profile maps stored (r, g, b) to (b, r, g): the output is the
    // stored picture with its channels rotated, within rounding, and far
    // from the stored picture itself.
    let mad = |rotate: bool| {
        let total: u64 = ours
            .pixels()
            .zip(raw.pixels())
            .map(|(o, r)| {
                let want = if rotate { [r[2], r[0], r[1]] } else { r.0 };
                (0..3)
                    .map(|c| u64::from(o[c].abs_diff(want[c])))
                    .sum::<u64>()
            })
            .sum();
        total as f64 / f64::from(ours.width() * ours.height() * 3)
    };
    let (rotated, unchanged) = (mad(true), mad(false));
    assert!(
        rotated <= 2.0 && unchanged > 20.0,
        "mad against the rotated stored pixels {rotated}, against them as stored {unchanged}"
    );
    s.stop();
}

#[test]
fn an_embedded_srgb_profile_changes_no_pixel() {
    let dir = common::temp_dir();
    let (plain, tagged) = (dir.join("plain.png"), dir.join("tagged.png"));
    common::pillow(
        "import sys; from PIL import Image, ImageCms; \
         im = Image.open(sys.argv[1]).convert('RGB'); im.save(sys.argv[2]); \
         srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile('sRGB')).tobytes(); \
         im.save(sys.argv[3], icc_profile=srgb)",
        &[
            &common::corpus().join("valid/jpeg/photo_portrait_800x533_baseline.jpg"),
            &plain,
            &tagged,
        ],
    );
    let s = Server::start(&[]);
    let info = s
        .post("/v1/info", &std::fs::read(&tagged).expect("read"))
        .json();
    assert!(info["icc"].is_string(), "the profile is there: {info}");
    let [a, b] = [&plain, &tagged].map(|p| {
        let r = s.post("/v1/convert?format=png", &std::fs::read(p).expect("read"));
        assert_eq!(r.status, 200);
        image::load_from_memory(&r.body).expect("png").into_rgb8()
    });
    assert!(a == b, "an sRGB profile is the identity");
    s.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// One-pixel black and white columns, 64 x 64, as `format` (grey).
fn lines(format: image::ImageFormat) -> Vec<u8> {
    let img = image::GrayImage::from_fn(64, 64, |x, _| {
        image::Luma([if x % 2 == 0 { 0 } else { 255 }])
    });
    let mut out = Vec::new();
    let mut cursor = std::io::Cursor::new(&mut out);
    match format {
        image::ImageFormat::Jpeg => {
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut cursor, 100)
                .encode_image(&img)
                .expect("jpeg");
        }
        _ => image::DynamicImage::ImageLuma8(img)
            .write_to(&mut cursor, format)
            .expect("encode"),
    }
    out
}

/// The mean grey of the middle of a resized picture (PNG reply).
fn middle_grey(r: &common::Resp) -> f64 {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let img = image::load_from_memory(&r.body).expect("png").into_luma8();
    let (w, h) = img.dimensions();
    let mut sum = 0u64;
    let mut n = 0u64;
    for y in h / 4..h - h / 4 {
        for x in w / 4..w - w / 4 {
            sum += u64::from(img.get_pixel(x, y).0[0]);
            n += 1;
        }
    }
    sum as f64 / n as f64
}

#[test]
fn linear_resize_keeps_the_light_of_fine_lines() {
    // Half black, half white light: 0.5 linear is 188 in sRGB; the mean of
    // the stored values is 127.5.
    let s = Server::start(&[]);
    let png = lines(image::ImageFormat::Png);
    let jpeg = lines(image::ImageFormat::Jpeg);
    for op in ["resize?width=16", "thumbnail?width=16&height=16"] {
        let naive = middle_grey(&s.post(&format!("/v1/{op}&format=png"), &png));
        assert!((naive - 127.5).abs() <= 2.0, "{op}: {naive}");
        let linear = middle_grey(&s.post(&format!("/v1/{op}&linear=true&format=png"), &png));
        assert!((linear - 188.0).abs() <= 2.0, "{op} linear: {linear}");
        // A JPEG would be shrunk on load by the decoder's own (stored-value)
        // scaling; in linear light it is decoded in full instead.
        let linear = middle_grey(&s.post(&format!("/v1/{op}&linear=true&format=png"), &jpeg));
        assert!((linear - 188.0).abs() <= 6.0, "{op} linear JPEG: {linear}");
    }
    // Inside a pipeline, and over colour with alpha (premultiplied in light).
    let r = s.post(
        "/v1/pipeline?ops=resize(width=16,linear=true)&format=png",
        &png,
    );
    assert!((middle_grey(&r) - 188.0).abs() <= 2.0);
    let rgba = image::RgbaImage::from_fn(64, 64, |x, _| {
        if x % 2 == 0 {
            image::Rgba([0, 0, 0, 255])
        } else {
            image::Rgba([255, 255, 255, 255])
        }
    });
    let mut body = Vec::new();
    image::DynamicImage::ImageRgba8(rgba)
        .write_to(
            &mut std::io::Cursor::new(&mut body),
            image::ImageFormat::Png,
        )
        .expect("png");
    let r = s.post("/v1/resize?width=16&linear=true&format=png", &body);
    assert!((middle_grey(&r) - 188.0).abs() <= 2.0);
    // The two ways are two results: never one served for the other.
    let a = s.post("/v1/resize?width=16&format=png", &png);
    let b = s.post("/v1/resize?width=16&linear=true&format=png", &png);
    assert_ne!(a.header("etag"), b.header("etag"));
    let bad = s.post("/v1/resize?width=16&linear=maybe", &png);
    assert_eq!(bad.status, 400);
    assert_eq!(bad.error_code(), "bad_parameter");
    s.stop();

    // --linear-resize makes it the default; linear=false still opts out.
    let s = Server::start(&["--linear-resize"]);
    let by_default = middle_grey(&s.post("/v1/resize?width=16&format=png", &png));
    assert!((by_default - 188.0).abs() <= 2.0, "{by_default}");
    let opted_out = middle_grey(&s.post("/v1/resize?width=16&linear=false&format=png", &png));
    assert!((opted_out - 127.5).abs() <= 2.0, "{opted_out}");
    // A background job takes the default of the instance that runs it.
    let id = common::jobs::submit(&s, "resize?width=16&format=png", &png);
    common::jobs::wait_status(&s, &id, "done", std::time::Duration::from_secs(20));
    let job = middle_grey(&s.get(&format!("/v1/jobs/{id}/result")));
    assert!((job - 188.0).abs() <= 2.0, "job: {job}");
    s.stop();
}

/// The ICC profile a PNG, JPEG or WebP carries, read by `image`'s decoders.
fn icc_of(bytes: &[u8]) -> Option<Vec<u8>> {
    use image::ImageDecoder;
    let cursor = std::io::Cursor::new(bytes);
    let found = match image::guess_format(bytes).expect("a known format") {
        image::ImageFormat::Png => image::codecs::png::PngDecoder::new(cursor)
            .expect("png")
            .icc_profile(),
        image::ImageFormat::Jpeg => image::codecs::jpeg::JpegDecoder::new(cursor)
            .expect("jpeg")
            .icc_profile(),
        image::ImageFormat::WebP => image::codecs::webp::WebPDecoder::new(cursor)
            .expect("webp")
            .icc_profile(),
        other => panic!("no profile reader for {other:?}"),
    };
    found.expect("readable")
}

/// The stored pixels of an image, as `image` decodes them (it applies no
/// profile).
fn stored_rgb(bytes: &[u8]) -> image::RgbImage {
    image::load_from_memory(bytes).expect("decodes").into_rgb8()
}

fn mean_abs_diff(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

#[test]
fn icc_keep_embeds_the_profile_and_leaves_the_pixels_in_its_space() {
    let s = Server::start(&[]);
    // Display P3 PNG: kept exactly, pixels untouched, in PNG, JPEG and WebP.
    let p3 = common::corpus_file("valid/icc/png_iccp_display_p3_chrm.png");
    let profile = icc_of(&p3).expect("the source has a profile");
    let png = s.post("/v1/convert?format=png&icc=keep", &p3);
    assert_eq!(png.status, 200, "{}", String::from_utf8_lossy(&png.body));
    assert_eq!(icc_of(&png.body).as_ref(), Some(&profile));
    assert_eq!(
        stored_rgb(&png.body),
        stored_rgb(&p3),
        "pixels are left alone"
    );
    for format in ["jpeg", "webp"] {
        let r = s.post(&format!("/v1/convert?format={format}&icc=keep"), &p3);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(icc_of(&r.body).as_ref(), Some(&profile), "{format}");
    }
    // format=auto for a browser that takes AVIF: WebP, which carries it.
    let auto = s.post_with(
        "/v1/convert?format=auto&icc=keep",
        &p3,
        &[("accept", "image/avif,image/webp,*/*")],
    );
    assert_eq!(auto.header("content-type"), Some("image/webp"));
    assert_eq!(icc_of(&auto.body).as_ref(), Some(&profile));
    // Without icc=keep: no profile, and the pixels were converted.
    let converted = s.post("/v1/convert?format=png", &p3);
    assert_eq!(icc_of(&converted.body), None);
    assert_ne!(stored_rgb(&converted.body), stored_rgb(&p3));

    // A profile that swaps channels (RGB to GBR), in a JPEG: converted by
    // default, kept as stored with icc=keep; an animated-GIF-only output
    // cannot carry it and is converted just as without icc=keep.
    let swap = common::corpus_file("valid/icc/icc_rgb_to_gbr_channel_swap.jpg");
    let kept = s.post("/v1/convert?format=jpeg&icc=keep&quality=95", &swap);
    assert_eq!(kept.status, 200);
    assert!(icc_of(&swap).is_some());
    assert_eq!(icc_of(&kept.body), icc_of(&swap));
    let stored = stored_rgb(&swap);
    let d = mean_abs_diff(&stored_rgb(&kept.body), &stored);
    assert!(d < 3.0, "kept pixels drifted by {d}");
    let default = s.post("/v1/convert?format=jpeg&quality=95", &swap);
    assert_eq!(icc_of(&default.body), None);
    let d = mean_abs_diff(&stored_rgb(&default.body), &stored);
    assert!(d > 10.0, "the default converts ({d})");
    let gif_keep = s.post("/v1/convert?format=gif&icc=keep", &swap);
    let gif = s.post("/v1/convert?format=gif", &swap);
    assert_eq!(gif_keep.status, 200);
    assert_eq!(
        gif_keep.body, gif.body,
        "GIF output is converted either way"
    );

    // Made grey under an RGB profile: written as RGB, the profile kept.
    let grey = s.post("/v1/grayscale?format=png&icc=keep", &p3);
    assert_eq!(grey.status, 200);
    assert_eq!(icc_of(&grey.body).as_ref(), Some(&profile));
    let decoded = image::load_from_memory(&grey.body).expect("png");
    assert!(decoded.color().has_color(), "{:?}", decoded.color());

    // A grey profile stays on grey output, and is not kept when an op
    // brings in colour (sepia): those pixels are converted first.
    let dot = common::corpus_file("valid/icc/grey_dotgain30_icc.jpg");
    let kept = s.post("/v1/convert?format=png&icc=keep", &dot);
    assert_eq!(icc_of(&kept.body), icc_of(&dot));
    assert!(icc_of(&dot).is_some());
    let sepia = s.post("/v1/sepia?format=png&icc=keep", &dot);
    assert_eq!(sepia.status, 200);
    assert_eq!(icc_of(&sepia.body), None);

    let bad = s.post("/v1/convert?icc=maybe", &p3);
    assert_eq!(bad.status, 400);
    assert_eq!(bad.error_code(), "bad_parameter");
    s.stop();
}

/// `lines`, as RGB in a PNG that carries `icc`.
fn lines_with_profile(icc: &[u8]) -> Vec<u8> {
    use image::ImageEncoder;
    let img = image::DynamicImage::ImageLuma8(
        image::load_from_memory(&lines(image::ImageFormat::Png))
            .expect("png")
            .into_luma8(),
    )
    .into_rgb8();
    let mut out = Vec::new();
    let mut encoder = image::codecs::png::PngEncoder::new(&mut out);
    encoder
        .set_icc_profile(icc.to_vec())
        .expect("png takes a profile");
    encoder
        .write_image(img.as_raw(), 64, 64, image::ExtendedColorType::Rgb8)
        .expect("png");
    out
}

#[test]
fn icc_keep_yields_to_srgb_colours_and_to_a_foreign_curve() {
    let s = Server::start(&[]);
    let p3 = common::corpus_file("valid/icc/png_iccp_display_p3_chrm.png");
    let profile = icc_of(&p3).expect("the source has a profile");
    // A fill, a background, an overlay's pixels are sRGB colours: with
    // them the picture is converted, not left in P3. A right-angle
    // rotation paints nothing and keeps the profile.
    for path in [
        "/v1/pad?right=2&background=ff0000&format=png&icc=keep",
        "/v1/rotate?angle=30&format=png&icc=keep",
        "/v1/background?color=00ff00&format=png&icc=keep",
        "/v1/hue?degrees=90&format=png&icc=keep",
    ] {
        let r = s.post(path, &p3);
        assert_eq!(
            r.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(icc_of(&r.body), None, "{path}");
    }
    let turned = s.post("/v1/rotate?angle=90&format=png&icc=keep", &p3);
    assert_eq!(turned.status, 200);
    assert_eq!(icc_of(&turned.body).as_ref(), Some(&profile));

    // A grey profile cannot go into WebP (RGB only): converted there.
    let dot = common::corpus_file("valid/icc/grey_dotgain30_icc.jpg");
    let webp = s.post("/v1/convert?format=webp&icc=keep", &dot);
    assert_eq!(webp.status, 200);
    assert_eq!(icc_of(&webp.body), None);

    // linear=true on pixels kept in a profile with sRGB's curve (P3)
    // scales in light; under ProPhoto's gamma 1.8 it would decode the
    // wrong light, and scales the stored values instead, exactly as
    // linear=false does.
    let prophoto = icc_of(&common::corpus_file("valid/icc/prophoto_rgb_1x1.png"))
        .expect("the ProPhoto file has a profile");
    let resize = |png: &[u8], linear: bool| {
        s.post(
            &format!("/v1/resize?width=32&format=png&icc=keep&linear={linear}"),
            png,
        )
    };
    let in_p3 = lines_with_profile(&profile);
    let light = resize(&in_p3, true);
    assert_eq!(icc_of(&light.body).as_ref(), Some(&profile));
    let g = middle_grey(&light);
    assert!((g - 188.0).abs() <= 2.0, "P3, linear: {g}");
    let in_prophoto = lines_with_profile(&prophoto);
    let linear = resize(&in_prophoto, true);
    let stored = resize(&in_prophoto, false);
    assert_eq!(icc_of(&linear.body).as_ref(), Some(&prophoto));
    let g = middle_grey(&linear);
    assert!((g - 128.0).abs() <= 2.0, "ProPhoto, linear asked: {g}");
    assert_eq!(linear.body, stored.body);
    s.stop();
}
