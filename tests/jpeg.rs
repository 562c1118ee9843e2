//! JPEG variants and damage, judged against Pillow (which decodes with
//! libjpeg-turbo 3): arithmetic-coded JPEGs decode to Pillow's pixels;
//! junk bytes before a restart marker lose nothing and decode to Pillow's
//! pixels; damage that makes libjpeg fill blocks with grey it made up (an
//! interval cut short, a restart marker lost, bad Huffman codes) is a 422,
//! never a 200 with invented pixels — through the full-size path and the
//! shrink-on-load path alike.
//!
//! The inputs are made here: Pillow writes the restart-marker JPEGs (and
//! the PPM/PGM sources), cjpeg (libjpeg-turbo-progs, installed by
//! scripts/test.sh) the arithmetic-coded ones; Pillow's own
//! `hopper_bad_exif.jpg` comes from scripts/pillow-images.sh.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Server;

/// The corpus photo the inputs are made from.
const PHOTO: &str = "valid/jpeg/photo_portrait_800x533_baseline.jpg";

/// `cjpeg -arithmetic` (plus `extra`) of a PPM/PGM file.
fn cjpeg_arithmetic(source: &Path, dest: &Path, extra: &[&str]) {
    common::run_tool(
        Command::new("cjpeg")
            .arg("-arithmetic")
            .args(extra)
            .arg("-outfile")
            .arg(dest)
            .arg(source),
        "cjpeg (scripts/test.sh installs libjpeg-turbo-progs)",
    );
}

/// Expects a 422 `corrupt_image` for `bytes`, full size and thumbnailed
/// (libjpeg's shrink-on-load decode meets the same damage).
fn assert_refused(s: &Server, what: &str, bytes: &[u8]) {
    for path in ["/v1/convert?format=png", "/v1/thumbnail?width=100"] {
        let r = s.post(path, bytes);
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (422, "corrupt_image"),
            "{what} via {path}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
}

#[test]
fn arithmetic_coded_jpegs_decode_as_pillow_does() {
    let dir = common::temp_dir();
    let photo = common::corpus().join(PHOTO);
    let (ppm, pgm) = (dir.join("photo.ppm"), dir.join("photo.pgm"));
    common::pillow(
        "import sys; from PIL import Image; im = Image.open(sys.argv[1]); \
         im.convert('RGB').save(sys.argv[2]); im.convert('L').save(sys.argv[3])",
        &[&photo, &ppm, &pgm],
    );
    let files: Vec<PathBuf> = [
        ("colour.jpg", &ppm, &[][..]),
        ("grey.jpg", &pgm, &[][..]),
        ("progressive.jpg", &ppm, &["-progressive"][..]),
        ("restarts.jpg", &ppm, &["-restart", "1"][..]),
    ]
    .into_iter()
    .map(|(name, source, extra)| {
        let dest = dir.join(name);
        cjpeg_arithmetic(source, &dest, extra);
        dest
    })
    .collect();

    let s = Server::start(&[]);
    common::assert_decodes_as_pillow(&s, &dir, &files);
    // The header-only answer and the shrink-on-load path read it too.
    let colour = std::fs::read(&files[0]).expect("read");
    let info = s.post("/v1/info", &colour).json();
    assert_eq!(
        (info["width"].as_u64(), info["height"].as_u64()),
        (Some(800), Some(533))
    );
    let thumb = s.post("/v1/thumbnail?width=200", &colour);
    assert_eq!(
        thumb.status,
        200,
        "{}",
        String::from_utf8_lossy(&thumb.body)
    );
    assert_eq!(common::decode_dims(&thumb.body).0, 200);
    s.stop();
    let _ = std::fs::remove_dir_all(dir);
}

/// A JPEG of the corpus photo with a restart marker after every MCU row,
/// written by Pillow, and the offsets of its first two markers (RST0, RST1).
fn with_restart_markers(dir: &Path) -> (Vec<u8>, usize, usize) {
    let path = dir.join("restarts.jpg");
    common::pillow(
        "import sys; from PIL import Image; \
         Image.open(sys.argv[1]).save(sys.argv[2], quality=90, restart_marker_rows=1)",
        &[&common::corpus().join(PHOTO), &path],
    );
    let jpeg = std::fs::read(&path).expect("read");
    let find = |marker: u8, from: usize| {
        jpeg[from..]
            .windows(2)
            .position(|w| w == [0xff, marker])
            .map(|p| p + from)
            .expect("the marker is in the file")
    };
    let scan = find(0xda, 2);
    let rst0 = find(0xd0, scan);
    let rst1 = find(0xd1, rst0 + 2);
    (jpeg, rst0, rst1)
}

#[test]
fn junk_before_a_restart_marker_loses_no_pixel() {
    let dir = common::temp_dir();
    let (jpeg, rst0, _) = with_restart_markers(&dir);
    // 30 bytes no decoder needs between the first interval and its marker
    // (libjpeg: "30 extraneous bytes before marker 0xd0"): every block is
    // still decoded from the data, as Pillow shows.
    let mut junk = jpeg[..rst0].to_vec();
    junk.extend(std::iter::repeat_n([0x12u8, 0x34, 0x56], 10).flatten());
    junk.extend_from_slice(&jpeg[rst0..]);
    let files = [dir.join("clean.jpg"), dir.join("junk.jpg")];
    std::fs::write(&files[0], &jpeg).expect("write");
    std::fs::write(&files[1], &junk).expect("write");

    let s = Server::start(&[]);
    common::assert_decodes_as_pillow(&s, &dir, &files);
    s.stop();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn damage_libjpeg_would_patch_with_grey_is_a_422() {
    let dir = common::temp_dir();
    let (jpeg, rst0, rst1) = with_restart_markers(&dir);
    // The second interval loses half its data: libjpeg meets RST1 before
    // the interval's last block ("premature end of data segment") and
    // fills the rest of it with grey; Pillow and zune-jpeg show that grey.
    let middle = (rst0 + rst1) / 2;
    let cut = [&jpeg[..middle], &jpeg[rst1..]].concat();
    // RST1 becomes RST5: libjpeg resynchronises and skips blocks.
    let mut resync = jpeg.clone();
    resync[rst1 + 1] = 0xd5;

    let s = Server::start(&[]);
    assert_refused(&s, "an interval cut short", &cut);
    assert_refused(&s, "a restart marker out of order", &resync);
    // Pillow's own damaged file: its bad Huffman codes and lost intervals
    // left rows 152-499 flat grey in the 200 this used to answer.
    assert_refused(
        &s,
        "hopper_bad_exif.jpg",
        &common::pillow_image("hopper_bad_exif.jpg"),
    );
    // The undamaged original still decodes.
    assert_eq!(s.post("/v1/convert?format=png", &jpeg).status, 200);
    s.stop();
    let _ = std::fs::remove_dir_all(dir);
}
