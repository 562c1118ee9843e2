//! Filters that mix neighbouring pixels (blur, sharpen, pixelate) weigh
//! colour by alpha: the colour of invisible pixels must not show. Checked
//! over HTTP on pictures made here, against what a correct filter gives.

mod common;

use common::Server;
use image::{DynamicImage, ImageFormat, Rgba, RgbaImage};

fn png(img: RgbaImage) -> Vec<u8> {
    let mut out = Vec::new();
    DynamicImage::ImageRgba8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), ImageFormat::Png)
        .expect("png");
    out
}

fn rgba(r: &common::Resp) -> RgbaImage {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    image::load_from_memory(&r.body).expect("png").into_rgba8()
}

/// A white disc of radius 20 on transparent black, 64 x 64.
fn disc() -> RgbaImage {
    RgbaImage::from_fn(64, 64, |x, y| {
        let (dx, dy) = (x as f32 - 31.5, y as f32 - 31.5);
        if dx * dx + dy * dy <= 400.0 {
            Rgba([255, 255, 255, 255])
        } else {
            Rgba([0, 0, 0, 0])
        }
    })
}

/// Opaque green on the left half, fully transparent red on the right.
fn green_beside_invisible_red() -> RgbaImage {
    RgbaImage::from_fn(64, 16, |x, _| {
        if x < 32 {
            Rgba([0, 255, 0, 255])
        } else {
            Rgba([255, 0, 0, 0])
        }
    })
}

#[test]
fn filters_do_not_show_the_colour_of_invisible_pixels() {
    let s = Server::start(&[]);
    for op in ["blur?sigma=3", "blur?sigma=12", "sharpen?sigma=2&amount=1"] {
        // A blurred white disc is white wherever it can be seen, and so
        // white everywhere over white: a straight-alpha blur mixes in the
        // black of the invisible pixels and greys its rim.
        let out = rgba(&s.post(&format!("/v1/{op}&format=png"), &png(disc())));
        for px in out.pixels() {
            if px.0[3] >= 8 {
                assert!(
                    px.0[..3].iter().all(|c| *c >= 245),
                    "{op}: rim pixel {:?}",
                    px.0
                );
            }
            let a = f32::from(px.0[3]) / 255.0;
            for c in &px.0[..3] {
                let over_white = f32::from(*c) * a + 255.0 * (1.0 - a);
                assert!(
                    over_white >= 250.0,
                    "{op}: {:?} over white is {over_white}",
                    px.0
                );
            }
        }
        // Every pixel that can be seen is green, never red.
        let out = rgba(&s.post(
            &format!("/v1/{op}&format=png"),
            &png(green_beside_invisible_red()),
        ));
        for (x, y, px) in out.enumerate_pixels() {
            if px.0[3] >= 8 {
                assert!(px.0[0] <= 3, "{op}: ({x}, {y}) is {:?}", px.0);
            }
        }
    }
    // A pixelate block straddling both halves is green (at half alpha).
    let out = rgba(&s.post(
        "/v1/pixelate?size=16&format=png",
        &png(green_beside_invisible_red()),
    ));
    let block = out.get_pixel(24, 0).0;
    assert_eq!(&block[..3], &[0, 255, 0], "{block:?}");
    let mixed = rgba(&s.post(
        "/v1/pixelate?size=64&format=png",
        &png(green_beside_invisible_red()),
    ));
    let px = mixed.get_pixel(0, 0).0;
    assert_eq!(&px[..3], &[0, 255, 0], "{px:?}");
    assert!(px[3].abs_diff(128) <= 1, "{px:?}");
    s.stop();
}
