//! Embedded colour profiles: pixels come out in sRGB (the profile itself
//! is not copied), `info` names the profile, and an embedded sRGB profile
//! changes no pixel. The colours themselves are checked against LittleCMS
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
