//! TIFF variants `image`'s own TIFF decoder refuses, read through the tiff
//! crate (engine/tiffdec.rs) and compared with Pillow's decode: 1/2/4-bit
//! grey (white or black as zero, bits stored lowest first), signed 8- and
//! 16-bit grey, 32-bit integer grey, and a BigTIFF; and `info`'s `pages`
//! and `page=` for a multi-page file. The files are Pillow's own test images
//! (scripts/pillow-images.sh); the multi-page TIFF is written by Pillow
//! here.

mod common;

use std::path::PathBuf;

use common::Server;

const FILES: &[&str] = &[
    "tiff_gray_2_4_bpp/hopper2.tif",
    "tiff_gray_2_4_bpp/hopper2I.tif",
    "tiff_gray_2_4_bpp/hopper2IR.tif",
    "tiff_gray_2_4_bpp/hopper2R.tif",
    "tiff_gray_2_4_bpp/hopper4.tif",
    "tiff_gray_2_4_bpp/hopper4I.tif",
    "tiff_gray_2_4_bpp/hopper4IR.tif",
    "tiff_gray_2_4_bpp/hopper4R.tif",
    "hopper_gray_4bpp.tif",
    "8bit.s.tif",
    "16bit.s.tif",
    "16_bit_binary_pgm.tiff",
    "hopper_bigtiff.tif",
];

#[test]
fn tiff_variants_decode_as_pillow_does() {
    let files: Vec<PathBuf> = FILES.iter().map(|f| common::pillow_image_path(f)).collect();
    let dir = common::temp_dir();
    let s = Server::start(&[]);
    common::assert_decodes_as_pillow(&s, &dir, &files);
    // The header-only answer reads them too.
    let info = s.post("/v1/info", &common::pillow_image(FILES[0])).json();
    assert_eq!(
        (
            info["format"].as_str(),
            info["width"].as_u64(),
            info["pages"].as_u64()
        ),
        (Some("tiff"), Some(128), Some(1)),
        "{info}"
    );
    s.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_pages_of_a_tiff_are_counted_and_read() {
    let dir = common::temp_dir();
    let path = dir.join("three.tif");
    common::pillow(
        "import sys; from PIL import Image; \
         pages = [Image.new('RGB', (40 + 10 * i, 30), (80 * i, 60, 200)) for i in range(3)]; \
         pages[0].save(sys.argv[1], save_all=True, append_images=pages[1:])",
        &[&path],
    );
    let s = Server::start(&[]);
    let info = s
        .post("/v1/info", &std::fs::read(&path).expect("read"))
        .json();
    assert_eq!(
        (info["pages"].as_u64(), info["width"].as_u64()),
        (Some(3), Some(40)),
        "the first page is the picture: {info}"
    );
    // page= picks one; the three pages differ in width and colour.
    let tiff = std::fs::read(&path).expect("read");
    for page in 0..3u32 {
        let r = s.post(&format!("/v1/convert?format=png&page={page}"), &tiff);
        assert_eq!(
            r.status,
            200,
            "page {page}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let img = image::load_from_memory(&r.body).expect("png").into_rgb8();
        assert_eq!(img.width(), 40 + 10 * page, "page {page}");
        let red = u8::try_from(80 * page).expect("a level");
        assert_eq!(img.get_pixel(5, 5).0, [red, 60, 200], "page {page}");
    }
    for (path, bytes) in [
        ("/v1/convert?format=png&page=3", tiff.clone()),
        (
            "/v1/convert?format=png&page=1",
            common::corpus_file("valid/jpeg/photo_portrait_800x533_baseline.jpg"),
        ),
    ] {
        let r = s.post(path, &bytes);
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (400, "bad_parameter"),
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let jpeg = s
        .post(
            "/v1/info",
            &common::corpus_file("valid/jpeg/photo_portrait_800x533_baseline.jpg"),
        )
        .json();
    assert_eq!(jpeg["pages"].as_u64(), Some(1), "{jpeg}");
    // A page walk is bounded by --max-frames.
    let capped = Server::start(&["--max-frames", "2"]);
    let info = capped
        .post("/v1/info", &std::fs::read(&path).expect("read"))
        .json();
    assert_eq!(info["pages"].as_u64(), Some(2), "{info}");
    capped.stop();
    s.stop();
    let _ = std::fs::remove_dir_all(dir);
}
