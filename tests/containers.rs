//! The same picture comes out the same whatever its container: a WebP
//! carrying an EXIF orientation is turned upright as the JPEG with the
//! same EXIF is, whether its EXIF chunk starts with the TIFF header (as
//! the WebP spec says) or keeps JPEG's `Exif\0\0` prefix (as some writers
//! do, and browsers and Pillow honour). Expected pixels are the stored
//! picture with the orientation applied here, by `image`.

mod common;

use common::Server;
use image::metadata::Orientation;
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};

/// A small picture no flip or turn leaves unchanged.
fn stored() -> RgbImage {
    RgbImage::from_fn(24, 16, |x, y| {
        Rgb([
            (x * 10) as u8,
            (y * 15) as u8,
            if x < 4 && y < 3 { 255 } else { 0 },
        ])
    })
}

/// Big-endian EXIF holding only an orientation, with or without the
/// `Exif\0\0` prefix.
fn exif(orientation: u16, prefixed: bool) -> Vec<u8> {
    let mut e = Vec::new();
    if prefixed {
        e.extend_from_slice(b"Exif\0\0");
    }
    e.extend_from_slice(b"MM\0*");
    e.extend_from_slice(&8u32.to_be_bytes());
    e.extend_from_slice(&1u16.to_be_bytes());
    e.extend_from_slice(&0x0112u16.to_be_bytes());
    e.extend_from_slice(&3u16.to_be_bytes());
    e.extend_from_slice(&1u32.to_be_bytes());
    e.extend_from_slice(&orientation.to_be_bytes());
    e.extend_from_slice(&[0, 0]);
    e.extend_from_slice(&0u32.to_be_bytes());
    e
}

/// A lossless WebP of `img` in the extended format, with an EXIF chunk.
fn webp_with_exif(img: &RgbImage, exif: &[u8]) -> Vec<u8> {
    let mut simple = Vec::new();
    DynamicImage::ImageRgb8(img.clone())
        .write_to(&mut std::io::Cursor::new(&mut simple), ImageFormat::WebP)
        .expect("webp");
    assert_eq!(&simple[8..12], b"WEBP");
    let image_chunk = &simple[12..];
    let (w, h) = img.dimensions();
    let mut body = b"WEBP".to_vec();
    body.extend_from_slice(b"VP8X");
    body.extend_from_slice(&10u32.to_le_bytes());
    body.extend_from_slice(&[0x08, 0, 0, 0]); // flags: EXIF present
    body.extend_from_slice(&(w - 1).to_le_bytes()[..3]);
    body.extend_from_slice(&(h - 1).to_le_bytes()[..3]);
    body.extend_from_slice(image_chunk);
    body.extend_from_slice(b"EXIF");
    body.extend_from_slice(&(exif.len() as u32).to_le_bytes());
    body.extend_from_slice(exif);
    if exif.len() % 2 == 1 {
        body.push(0);
    }
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

#[test]
fn webp_exif_orientation_is_applied_with_or_without_the_exif_prefix() {
    let s = Server::start(&[]);
    let picture = stored();
    for o in 1..=8u16 {
        let orientation = Orientation::from_exif(o as u8).expect("orientation");
        let mut upright = DynamicImage::ImageRgb8(picture.clone());
        upright.apply_orientation(orientation);
        let upright = upright.into_rgb8();
        for prefixed in [false, true] {
            let webp = webp_with_exif(&picture, &exif(o, prefixed));
            let info = s.post("/v1/info", &webp);
            assert_eq!(info.status, 200, "{}", String::from_utf8_lossy(&info.body));
            assert_eq!(
                info.json()["orientation"],
                o,
                "orientation {o}, prefixed {prefixed}"
            );
            let r = s.post("/v1/convert?format=png", &webp);
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            let out = image::load_from_memory(&r.body).expect("png").into_rgb8();
            assert_eq!(out, upright, "orientation {o}, prefixed {prefixed}");
            // autorotate=false keeps the stored pixels.
            let r = s.post("/v1/convert?format=png&autorotate=false", &webp);
            let kept = image::load_from_memory(&r.body).expect("png").into_rgb8();
            assert_eq!(
                kept, picture,
                "orientation {o}, prefixed {prefixed}, not rotated"
            );
        }
    }
    s.stop();
}
