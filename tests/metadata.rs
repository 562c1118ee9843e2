//! EXIF and XMP: stripped by default, `keep=copyright` keeps credits
//! only, `keep=all` keeps both blocks with the orientation reset once the
//! pixels are upright; `info` says whether the input carries them. The
//! inputs are made here, so each block's content is known.

mod common;

use common::Server;
use image::metadata::Orientation;
use image::ImageDecoder;

const ARTIST: &[u8] = b"Ada Lovelace\0";
const COPYRIGHT: &[u8] = b"CC-BY 4.0 Ada\0";
const SECRET: &str = "taken at the secret lab";

/// A big-endian EXIF block: orientation 6 (turn 90 degrees clockwise),
/// Artist, Copyright and a camera serial number (tag 0xA431), which only
/// keep=all may keep.
fn exif() -> Vec<u8> {
    let serial = b"SN-0042-PRIVATE\0";
    let entries: [(u16, u16, &[u8]); 4] = [
        (0x0112, 3, &[0, 6, 0, 0]),
        (0x013B, 2, ARTIST),
        (0x8298, 2, COPYRIGHT),
        (0xA431, 2, serial),
    ];
    let mut out = b"MM\0*".to_vec();
    out.extend_from_slice(&8u32.to_be_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_be_bytes());
    let mut data_at = 8 + 2 + 12 * entries.len() + 4;
    let mut data = Vec::new();
    for (tag, ty, value) in entries {
        out.extend_from_slice(&tag.to_be_bytes());
        out.extend_from_slice(&ty.to_be_bytes());
        let count = if ty == 3 { 1 } else { value.len() as u32 };
        out.extend_from_slice(&count.to_be_bytes());
        if ty == 3 {
            out.extend_from_slice(value);
        } else {
            out.extend_from_slice(&(data_at as u32).to_be_bytes());
            data.extend_from_slice(value);
            data_at += value.len();
        }
    }
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&data);
    out
}

fn xmp() -> Vec<u8> {
    format!(
        r#"<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"><dc:rights><rdf:Alt><rdf:li xml:lang="x-default">All rights reserved, Ada</rdf:li></rdf:Alt></dc:rights><dc:description><rdf:Alt><rdf:li xml:lang="x-default">{SECRET}</rdf:li></rdf:Alt></dc:description></rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>"#
    )
    .into_bytes()
}

/// A 32 x 16 JPEG (wider than tall, so a turn shows) with `exif()` and
/// `xmp()` in APP1 markers right after SOI.
fn tagged_jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(32, 16, |x, y| {
        image::Rgb([(x * 8) as u8, (y * 16) as u8, 90])
    });
    let mut plain = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut plain, 90)
        .encode_image(&img)
        .expect("jpeg");
    let mut out = plain[..2].to_vec();
    for payload in [
        [&b"Exif\0\0"[..], &exif()].concat(),
        [&b"http://ns.adobe.com/xap/1.0/\0"[..], &xmp()].concat(),
    ] {
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&payload);
    }
    out.extend_from_slice(&plain[2..]);
    out
}

/// The EXIF and XMP an output carries, read by `image`'s decoders.
fn blocks(bytes: &[u8]) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let cursor = std::io::Cursor::new(bytes);
    fn read(mut d: impl ImageDecoder) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        (
            d.exif_metadata().expect("exif reads"),
            d.xmp_metadata().expect("xmp reads"),
        )
    }
    match image::guess_format(bytes).expect("a known format") {
        image::ImageFormat::Jpeg => {
            read(image::codecs::jpeg::JpegDecoder::new(cursor).expect("jpeg"))
        }
        image::ImageFormat::Png => read(image::codecs::png::PngDecoder::new(cursor).expect("png")),
        image::ImageFormat::WebP => {
            read(image::codecs::webp::WebPDecoder::new(cursor).expect("webp"))
        }
        other => panic!("no metadata reader for {other:?}"),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn dimensions(bytes: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(bytes).expect("decodes");
    (img.width(), img.height())
}

#[test]
fn metadata_is_stripped_unless_kept_and_then_tells_the_truth() {
    let s = Server::start(&[]);
    let input = tagged_jpeg();
    // Sanity: the input is what the test says.
    let (exif_in, xmp_in) = blocks(&input);
    assert_eq!(exif_in.as_deref(), Some(exif().as_slice()));
    assert!(xmp_in.is_some());

    let info = s.post("/v1/info", &input);
    assert_eq!(info.status, 200);
    let v = info.json();
    assert_eq!(
        (v["exif"].as_bool(), v["xmp"].as_bool()),
        (Some(true), Some(true)),
        "{v}"
    );
    assert_eq!(v["orientation"], 6);
    let plain = s.post(
        "/v1/info",
        &common::corpus_file("valid/png/pngsuite_basn2c16_rgb16.png"),
    );
    assert_eq!(
        (
            plain.json()["exif"].as_bool(),
            plain.json()["xmp"].as_bool()
        ),
        (Some(false), Some(false))
    );

    for format in ["jpeg", "png", "webp"] {
        // Default: nothing kept, the pixels turned upright.
        let r = s.post(&format!("/v1/convert?format={format}"), &input);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(
            blocks(&r.body),
            (None, None),
            "{format}: stripped by default"
        );
        assert_eq!(dimensions(&r.body), (16, 32));

        // keep=all: both blocks, orientation 1 in each, as the pixels
        // are upright; the serial number and the secret stay.
        let r = s.post(&format!("/v1/convert?format={format}&keep=all"), &input);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(dimensions(&r.body), (16, 32));
        let (exif, xmp) = blocks(&r.body);
        let exif = exif.unwrap_or_else(|| panic!("{format}: keep=all keeps EXIF"));
        assert_eq!(
            Orientation::from_exif_chunk(&exif),
            Some(Orientation::NoTransforms),
            "{format}"
        );
        assert!(contains(&exif, b"SN-0042-PRIVATE"), "{format}");
        let xmp =
            String::from_utf8(xmp.unwrap_or_else(|| panic!("{format}: keeps XMP"))).expect("utf8");
        assert!(
            xmp.contains(SECRET) && xmp.contains("tiff:Orientation=\"1\""),
            "{format}: {xmp}"
        );
        // Read back by the server itself: what it wrote, it reads.
        let info = s.post("/v1/info", &r.body).json();
        assert_eq!(
            (
                info["exif"].as_bool(),
                info["xmp"].as_bool(),
                info["orientation"].as_u64()
            ),
            (Some(true), Some(true), Some(1)),
            "{format}"
        );

        // keep=copyright: a new EXIF with the credits only, and XMP with
        // the rights statement but not the description.
        let r = s.post(
            &format!("/v1/convert?format={format}&keep=copyright"),
            &input,
        );
        assert_eq!(r.status, 200);
        let (exif, xmp) = blocks(&r.body);
        let exif = exif.unwrap_or_else(|| panic!("{format}: copyright keeps EXIF"));
        assert!(
            contains(&exif, ARTIST) && contains(&exif, COPYRIGHT),
            "{format}"
        );
        assert!(
            !contains(&exif, b"SN-0042"),
            "{format}: the serial is dropped"
        );
        assert_eq!(
            Orientation::from_exif_chunk(&exif),
            None,
            "{format}: no orientation tag"
        );
        let xmp = String::from_utf8(xmp.unwrap_or_else(|| panic!("{format}: keeps rights")))
            .expect("utf8");
        assert!(xmp.contains("All rights reserved, Ada"), "{format}: {xmp}");
        assert!(
            !xmp.contains(SECRET) && !xmp.contains("Orientation"),
            "{format}: {xmp}"
        );
    }

    // Not turned: the kept orientation still describes the stored pixels.
    let r = s.post("/v1/convert?format=jpeg&keep=all&autorotate=false", &input);
    assert_eq!(dimensions(&r.body), (32, 16));
    let exif = blocks(&r.body).0.expect("kept");
    assert_eq!(
        Orientation::from_exif_chunk(&exif),
        Some(Orientation::Rotate90)
    );

    // Output that carries no metadata: served, without it.
    let r = s.post("/v1/convert?format=gif&keep=all", &input);
    assert_eq!(r.status, 200);
    assert!(!contains(&r.body, ARTIST));

    let bad = s.post("/v1/convert?keep=everything", &input);
    assert_eq!(bad.status, 400);
    assert_eq!(bad.error_code(), "bad_parameter");
    s.stop();
}
