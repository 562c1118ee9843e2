//! The formats of MANIFEST-formats.tsv through the real server: AVIF,
//! HEIC/HEIF, JPEG XL and SVG decode to the sizes (and frame counts) the
//! corpus records; AVIF output decodes again to what was asked; the
//! crafted SVGs are refused with a 4xx or rendered without leaving the
//! document (a worker that tried to open a file or a socket would be killed
//! by its sandbox, and the request would be a 502).

mod common;

use common::{corpus_file, manifest_file, Server};

#[test]
fn every_new_format_decodes_to_its_recorded_size() {
    let s = Server::start(&[]);
    let mut checked = 0;
    for e in manifest_file("MANIFEST-formats.tsv") {
        if !["AVIF", "HEIC", "HEIF", "JXL", "SVG"].contains(&e.format.as_str()) {
            continue;
        }
        let r = s.post("/v1/info", &corpus_file(&e.path));
        match (e.valid, e.any) {
            (true, _) => {
                assert_eq!(
                    r.status,
                    200,
                    "{}: {}",
                    e.path,
                    String::from_utf8_lossy(&r.body)
                );
                let v = r.json();
                assert_eq!(v["width"].as_u64(), e.width.map(u64::from), "{}", e.path);
                assert_eq!(v["height"].as_u64(), e.height.map(u64::from), "{}", e.path);
                // HEIF's frame column counts top-level images; the primary
                // one is decoded (multi-image `page=` is not built yet).
                if !e.format.starts_with("HEI") {
                    assert_eq!(v["frames"].as_u64(), e.frames.map(u64::from), "{}", e.path);
                }
                checked += 1;
            }
            (false, false) => {
                assert!(
                    (400..500).contains(&r.status),
                    "{}: {} {}",
                    e.path,
                    r.status,
                    String::from_utf8_lossy(&r.body)
                );
                r.error_code();
            }
            _ => assert!(
                r.status == 200 || (400..500).contains(&r.status),
                "{}: {}",
                e.path,
                r.status
            ),
        }
    }
    assert!(checked >= 20, "only {checked} valid files checked");
    assert_eq!(s.total_restarts(), 0, "no worker may die on these files");
    assert!(s.stop().success());
}

#[test]
fn crafted_svgs_never_leave_the_document() {
    let s = Server::start(&[]);
    for name in [
        "valid/svg/crafted_external_file_passwd_image.svg",
        "valid/svg/crafted_external_http_image.svg",
    ] {
        let r = s.post("/v1/convert?format=png", &corpus_file(name));
        assert_eq!(
            r.status,
            200,
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.header("content-type"), Some("image/png"));
    }
    for (name, code) in [
        (
            "invalid/svg/crafted_billion_laughs_entity_expansion.svg",
            "corrupt_image",
        ),
        (
            "invalid/svg/crafted_deep_nesting_5000_groups.svg",
            "corrupt_image",
        ),
        (
            "invalid/svg/crafted_huge_declared_size_100000x100000.svg",
            "image_too_large",
        ),
    ] {
        let r = s.post("/v1/convert?format=png", &corpus_file(name));
        assert_eq!(r.error_code(), code, "{name}");
    }
    assert_eq!(s.total_restarts(), 0);
    assert!(s.stop().success());
}

#[test]
fn svg_is_rasterised_at_the_size_a_resize_asks_for() {
    let s = Server::start(&[]);
    let svg = corpus_file("valid/svg/shapes_rect_simple.svg");
    let r = s.post("/v1/resize?width=800&enlarge=true&format=png", &svg);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let img = image::load_from_memory(&r.body).expect("png").to_rgba8();
    assert_eq!(img.dimensions(), (800, 800));
    // Rendered at 800 px, an edge is one or two pixels of blend; a 200 px
    // render scaled 4x up would smear it over about eight.
    let row = img.height() / 2;
    let blended = (0..img.width())
        .filter(|&x| {
            let a = img.get_pixel(x, row)[3];
            a > 10 && a < 245
        })
        .count();
    assert!(
        blended <= 6,
        "{blended} half-transparent pixels across one row"
    );
    assert!(s.stop().success());
}

#[test]
fn avif_and_heic_convert_and_avif_output_reads_back() {
    let s = Server::start(&[]);
    let heic = corpus_file("valid/heic/iphone13pro_portrait_depth_hdrgainmap.heic");
    let r = s.post("/v1/thumbnail?width=400&height=300", &heic);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.header("content-type"),
        Some("image/jpeg"),
        "HEIC becomes JPEG"
    );
    let jpeg = image::load_from_memory(&r.body).expect("jpeg");
    assert_eq!((jpeg.width(), jpeg.height()), (400, 300));

    let avif = corpus_file("valid/avif/fox_8bit_yuv420.avif");
    let r = s.post("/v1/resize?width=300", &avif);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.header("content-type"),
        Some("image/avif"),
        "AVIF stays AVIF"
    );
    let back = s.post("/v1/info", &r.body);
    assert_eq!(back.status, 200);
    let v = back.json();
    assert_eq!(
        (v["format"].as_str(), v["width"].as_u64()),
        (Some("avif"), Some(300))
    );

    let png = corpus_file("valid/png/palette_trns_300x225.png");
    let r = s.post("/v1/convert?format=avif&quality=50&effort=9", &png);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = s.post("/v1/info", &r.body).json();
    assert_eq!(v["has_alpha"], true, "alpha survives AVIF: {v}");

    let r = s.post("/v1/convert?format=avif&effort=10", &png);
    assert_eq!(r.status, 400);
    assert!(s.stop().success());
}

/// A mostly static animation (a photo with a small square moving across
/// it) is written as changes: every frame after the first covers only what
/// changed. It decodes to exactly the input's frames, delays included, in
/// far fewer bytes than full frames take (about 13x fewer here; the full
/// frames were 270 KB).
#[test]
fn a_mostly_static_animation_is_written_as_changes() {
    let dir = common::temp_dir();
    let path = dir.join("moving.gif");
    common::pillow(
        "import sys; from PIL import Image, ImageDraw; \
         bg = Image.open(sys.argv[1]).convert('RGB').resize((240, 160)).quantize(200).convert('RGB'); \
         frames = [bg.copy() for _ in range(20)]; \
         [ImageDraw.Draw(f).rectangle([10 + 8 * i, 60, 30 + 8 * i, 80], fill=(255, 0, 0)) for i, f in enumerate(frames)]; \
         frames[0].save(sys.argv[2], save_all=True, append_images=frames[1:], duration=80, loop=0)",
        &[
            &common::corpus().join("valid/jpeg/photo_portrait_800x533_baseline.jpg"),
            &path,
        ],
    );
    let input = std::fs::read(&path).expect("read");
    let s = Server::start(&[]);
    let r = s.post("/v1/convert?format=gif", &input);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let (want, got) = (common::gif_frames(&input), common::gif_frames(&r.body));
    assert_eq!(got.len(), 20);
    for (i, ((a, da), (b, db))) in want.iter().zip(&got).enumerate() {
        assert_eq!(da, db, "frame {i} delay");
        assert!(a == b, "frame {i} shows the input's pixels");
    }
    // One frame on its own, as a still GIF: twenty full frames would take
    // about twenty times that.
    let first = common::gif_frames(&input).swap_remove(0).0;
    let mut still = Vec::new();
    image::DynamicImage::ImageRgba8(first)
        .write_to(
            &mut std::io::Cursor::new(&mut still),
            image::ImageFormat::Png,
        )
        .expect("png");
    let one = s.post("/v1/convert?format=gif", &still);
    assert_eq!(one.status, 200);
    assert!(
        r.body.len() * 4 < one.body.len() * 20,
        "{} bytes for 20 frames, {} for one",
        r.body.len(),
        one.body.len()
    );
    s.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// libwebp merges consecutive identical frames: the frame count a WebP
/// response reports is the file's, and the merged frames' time is kept.
#[test]
fn webp_frames_merged_by_libwebp_are_counted_as_the_file_has_them() {
    let dir = common::temp_dir();
    let path = dir.join("four.gif");
    // Four 100 ms frames that differ only outside the crop below, except
    // the last, which differs inside it too.
    common::pillow(
        "import sys; from PIL import Image; \
         frames = [Image.new('RGB', (50, 50), (255, 0, 0)) for _ in range(4)]; \
         [f.putpixel((i, 0), (0, 0, 255)) for i, f in enumerate(frames)]; \
         frames[3].putpixel((20, 20), (0, 255, 0)); \
         frames[0].save(sys.argv[1], save_all=True, append_images=frames[1:], duration=100, loop=0)",
        &[&path],
    );
    let s = Server::start(&[]);
    let r = s.post(
        "/v1/pipeline?ops=crop(x=10,y=10,width=20,height=20)&format=webp",
        &std::fs::read(&path).expect("read"),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let info = s.post("/v1/info", &r.body).json();
    assert_eq!(info["frames"].as_u64(), Some(2), "{info}");
    assert_eq!(info["delays_ms"], serde_json::json!([300, 100]), "{info}");
    assert_eq!(r.header("x-image-frames"), Some("2"));
    s.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// An ICO whose directory entry says 16x32 for a 16x16 image (the BMP's
/// doubled height copied into it) decodes at the size it has, and GIFs
/// whose frames have no colour table at all (no global one, no local one)
/// decode with Pillow's grey table, and a BMP whose planes field is not 1
/// decodes: to Pillow's pixels, instead of a 422.
#[test]
fn files_pillow_reads_leniently_decode_as_pillow_does() {
    let dir = common::temp_dir();
    let s = Server::start(&[]);
    common::assert_decodes_as_pillow(
        &s,
        &dir,
        &[
            "hopper_unexpected.ico",
            "no_palette.gif",
            "no_palette_after_rgb.gif",
            "bmp/b/badplanes.bmp",
        ]
        .map(common::pillow_image_path),
    );
    s.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// An opaque animation whose colours fill the whole palette (256 here)
/// keeps its exact palette: written as full frames, it decodes to exactly
/// its input (delta frames would have to give up a palette entry).
#[test]
fn an_animation_of_exactly_256_colours_stays_lossless_as_gif() {
    let dir = common::temp_dir();
    let path = dir.join("full.png");
    common::pillow(
        "import sys; from PIL import Image; \
         colours = [(i, 255 - i, (i * 7) % 256) for i in range(256)]; \
         frames = [Image.new('RGB', (16, 16)) for _ in range(2)]; \
         frames[0].putdata(colours); frames[1].putdata(colours[::-1]); \
         frames[0].save(sys.argv[1], save_all=True, append_images=frames[1:], duration=100, loop=0)",
        &[&path],
    );
    let s = Server::start(&[]);
    let r = s.post(
        "/v1/convert?format=gif",
        &std::fs::read(&path).expect("read"),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let got = common::gif_frames(&r.body);
    assert_eq!(got.len(), 2);
    let frames = image::codecs::png::PngDecoder::new(std::io::Cursor::new(
        std::fs::read(&path).expect("read"),
    ))
    .expect("png")
    .apng()
    .expect("apng");
    let want = image::AnimationDecoder::into_frames(frames)
        .collect_frames()
        .expect("frames");
    for (i, (a, (b, _))) in want.iter().zip(&got).enumerate() {
        assert!(a.buffer() == b, "frame {i} is exact");
    }
    s.stop();
    let _ = std::fs::remove_dir_all(dir);
}
