//! JPEG through libjpeg-turbo (the `mozjpeg` crate): decoding with
//! shrink-on-load, and encoding.
//!
//! Why a second JPEG decoder next to `image`'s zune-jpeg:
//!
//! - **Shrink-on-load.** libjpeg can run its inverse DCT at 1/2, 1/4 or 1/8
//!   of the size, so a thumbnail of a 4 MP photo never materialises the
//!   4 MP: measured on the 2560x1600 bench photo, 1/4 scale costs 9-10 ms
//!   against 28 ms for a full zune-jpeg decode (plus the bigger resize that
//!   follows it). zune-jpeg has no scaled decoding.
//! - **SIMD.** Built with `nasm` present, libjpeg-turbo's AVX2 kernels make
//!   even a full-size decode about 25 % faster than zune-jpeg. (Without
//!   nasm the C fallback is used: the build still works, full-size decodes
//!   are slower; the scripts install nasm.)
//!
//! zune-jpeg stays the fallback decoder: anything libjpeg refuses, or
//! would convert differently (CMYK/YCCK, whose Adobe inversion conventions
//! differ) goes to it, so the verdict on an odd file is the same as before
//! this path existed.
//!
//! libjpeg's warnings say how it got past damage, and they are not all
//! alike ([`Verdict`]): skipping junk bytes before a restart marker loses
//! nothing (every block was decoded from the data, and the picture is the
//! one Pillow, itself on libjpeg, shows), while "premature end of data
//! segment", a lost restart marker or a bad Huffman code mean libjpeg filled
//! blocks with grey it made up. A 200 must never carry pixels a decoder did
//! not produce, and zune-jpeg patches the same damage with the same grey,
//! so such a file is refused (422) rather than handed to it.
//!
//! Arithmetic-coded JPEGs (SOF9-11), which zune-jpeg cannot read at all,
//! are decoded here too (`mozjpeg-sys`' `arith_dec`).
//!
//! libjpeg reports a fatal error through a callback that must not return;
//! `mozjpeg` unwinds out of it, so every call here runs under
//! `catch_unwind` and an error is just "fall back".

use std::cell::Cell;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use image::metadata::Orientation;
use image::{DynamicImage, GrayImage, RgbImage};
use mozjpeg::{ColorSpace, Compress, Decompress, Marker};
use mozjpeg_sys::{
    jpeg_common_struct, jpeg_error_mgr, jpeg_std_error, JERR_BAD_CROP_SPEC, JWRN_ADOBE_XFORM,
    JWRN_EXTRANEOUS_DATA, JWRN_HIT_MARKER, JWRN_HUFF_BAD_CODE, JWRN_JFIF_MAJOR, JWRN_JPEG_EOF,
    JWRN_MUST_RESYNC, J_MESSAGE_CODE,
};

use super::error::EngineError;
use super::limits::check_canvas;
use crate::proto::Limits;

/// What libjpeg's warnings during one decode say about its pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// No warning, or only ones that lose no pixel data (junk skipped
    /// before a marker, a bad ICC chunk, an unknown JFIF revision or Adobe
    /// transform code): the pixels are what the data says.
    Clean,
    /// A warning this module does not know the effect of: zune-jpeg decides.
    Unknown,
    /// Blocks were filled in for data that was missing or unreadable; says
    /// which damage libjpeg met first.
    Invented(&'static str),
}

thread_local! {
    /// The verdict of the current decode on this thread.
    static VERDICT: Cell<Verdict> = const { Cell::new(Verdict::Clean) };
}

/// mozjpeg-sys' Rust constants were generated without arithmetic coding;
/// with `arith_dec`, libjpeg's message list (jerror.h) has
/// JERR_NO_ARITH_TABLE and JWRN_ARITH_BAD_CODE right after
/// JERR_BAD_CROP_SPEC, which moves every later code two places. These are
/// the codes of the library as built; a unit test checks them against
/// libjpeg's own message table.
const JWRN_ARITH_BAD_CODE: J_MESSAGE_CODE = JERR_BAD_CROP_SPEC + 2;
const JWRN_BOGUS_ICC: J_MESSAGE_CODE = mozjpeg_sys::JWRN_BOGUS_ICC + 2;

/// What a warning code says about the pixels, if anything.
fn classify(code: J_MESSAGE_CODE) -> Option<Verdict> {
    let invented = |what| Some(Verdict::Invented(what));
    match code {
        JWRN_EXTRANEOUS_DATA | JWRN_JFIF_MAJOR | JWRN_ADOBE_XFORM | JWRN_BOGUS_ICC => None,
        JWRN_HIT_MARKER => invented("a segment of picture data ends early"),
        JWRN_JPEG_EOF => invented("the file ends inside the picture data"),
        JWRN_MUST_RESYNC => invented("a restart marker is missing or out of order"),
        JWRN_HUFF_BAD_CODE => invented("bad Huffman code"),
        JWRN_ARITH_BAD_CODE => invented("bad arithmetic code"),
        _ => Some(Verdict::Unknown),
    }
}

/// libjpeg's `emit_message`: level -1 is a warning about corrupt data
/// (higher levels are trace messages, off by default). Keeps the worst
/// verdict so far; the first invented-pixels warning wins.
unsafe extern "C-unwind" fn note_warning(cinfo: &mut jpeg_common_struct, level: c_int) {
    if level >= 0 || cinfo.err.is_null() {
        return;
    }
    // SAFETY: `err` is the error manager this decode was set up with
    // (checked non-null above); libjpeg keeps it alive as long as `cinfo`
    // and sets `msg_code` before calling this.
    let code = unsafe { (*cinfo.err).msg_code };
    if let Some(verdict) = classify(code) {
        VERDICT.with(|v| match (v.get(), verdict) {
            (Verdict::Invented(_), _) => {}
            (_, Verdict::Invented(_)) | (Verdict::Clean, _) => v.set(verdict),
            _ => {}
        });
    }
}

/// libjpeg's `error_exit`: must not return, so it unwinds to the
/// `catch_unwind` in [`decode`]. `resume_unwind` skips the panic hook: this
/// is an expected outcome, not a bug to report.
unsafe extern "C-unwind" fn fail(_cinfo: &mut jpeg_common_struct) {
    std::panic::resume_unwind(Box::new("libjpeg error"));
}

fn error_manager() -> jpeg_error_mgr {
    // SAFETY: jpeg_error_mgr is a plain C struct of integers, pointers and
    // nullable function pointers, for which all-zero bytes are valid;
    // jpeg_std_error then fills in every field (it only writes to the
    // struct it is given and returns the same pointer).
    let mut err: jpeg_error_mgr = unsafe { std::mem::zeroed() };
    // SAFETY: `err` is a valid, exclusively borrowed jpeg_error_mgr.
    unsafe { jpeg_std_error(&mut err) };
    err.error_exit = Some(fail);
    err.emit_message = Some(note_warning);
    err
}

/// The scale denominator (1, 2, 4 or 8) for a decode that must still be at
/// least `need` pixels: the largest one whose output (rounded down, to be
/// safe of libjpeg's rounding up) covers `need` in both directions.
pub fn shrink_factor(size: (u32, u32), need: (u32, u32)) -> u32 {
    [8, 4, 2]
        .into_iter()
        .find(|d| size.0 / d >= need.0.max(1) && size.1 / d >= need.1.max(1))
        .unwrap_or(1)
}

/// A JPEG as libjpeg decoded it.
pub struct Picture {
    /// RGB8, or L8 for a greyscale JPEG; possibly scaled down by the plan.
    pub image: DynamicImage,
    /// The size stored in the file, before any scaling.
    pub stored: (u32, u32),
    /// From the file's EXIF (APP1) block; `NoTransforms` when absent.
    pub orientation: Orientation,
}

/// Given the stored size and the EXIF orientation, the scale denominator
/// (1, 2, 4 or 8) the caller allows and whether the fast integer inverse
/// DCT will do.
pub type Plan<'a> = &'a dyn Fn(u32, u32, Orientation) -> (u32, bool);

/// Decodes `input` as RGB8, or L8 for a greyscale JPEG, at the scale
/// `plan` picks once the header is read.
///
/// `Ok(None)` when libjpeg refused the data, warned in a way whose effect
/// is unknown, or the colour space is one left to zune-jpeg: the caller
/// decodes with zune-jpeg instead. `Err` when the size libjpeg itself reads
/// from the header (or will output) is over `limits` (checked before any
/// scanline is allocated, whatever another decoder's header parse said), or
/// when libjpeg had to invent pixels for damaged data.
pub fn decode(
    input: &[u8],
    limits: &Limits,
    plan: Plan<'_>,
) -> Result<Option<Picture>, EngineError> {
    VERDICT.with(|v| v.set(Verdict::Clean));
    let result = catch_unwind(AssertUnwindSafe(|| decode_inner(input, limits, plan)));
    match (result, VERDICT.with(Cell::get)) {
        (Ok(Err(e)), _) => Err(e),
        (_, Verdict::Invented(what)) => Err(EngineError::Corrupt(format!(
            "damaged JPEG data ({what}): the missing pixels would have to be made up"
        ))),
        (Ok(Ok(Some(picture))), Verdict::Clean) => Ok(Some(picture)),
        _ => Ok(None),
    }
}

/// The EXIF orientation in the first APP1 block that is EXIF (XMP lives in
/// APP1 blocks too).
fn exif_orientation<R>(dec: &Decompress<R>) -> Orientation {
    dec.markers()
        .filter(|m| m.marker == Marker::APP(1))
        .find_map(|m| m.data.strip_prefix(b"Exif\0\0"))
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms)
}

/// `usize` dimensions from libjpeg as `u32`, or an over-limit error.
fn dims(w: usize, h: usize) -> Result<(u32, u32), EngineError> {
    match (u32::try_from(w), u32::try_from(h)) {
        (Ok(w), Ok(h)) => Ok((w, h)),
        _ => Err(EngineError::TooLarge(format!(
            "JPEG declares {w}x{h} pixels"
        ))),
    }
}

fn decode_inner(
    input: &[u8],
    limits: &Limits,
    plan: Plan<'_>,
) -> Result<Option<Picture>, EngineError> {
    /// Only EXIF is read, for its orientation.
    const SAVED: &[Marker] = &[Marker::APP(1)];
    let Ok(mut dec) = Decompress::with_markers(SAVED)
        .with_err(error_manager())
        .from_mem(input)
    else {
        return Ok(None);
    };
    let stored = dims(dec.width(), dec.height())?;
    let (w, h) = stored;
    check_canvas(w, h, limits)?;
    let grey = match dec.color_space() {
        ColorSpace::JCS_GRAYSCALE => true,
        ColorSpace::JCS_YCbCr | ColorSpace::JCS_RGB => false,
        // CMYK, YCCK and anything exotic: zune-jpeg's conversion.
        _ => return Ok(None),
    };
    let orientation = exif_orientation(&dec);
    let (denominator, coarse) = plan(w, h, orientation);
    let Ok(numerator) = u8::try_from(8 / denominator.clamp(1, 8)) else {
        return Ok(None);
    };
    dec.scale(numerator);
    if coarse {
        dec.dct_method(mozjpeg::DctMethod::IntegerFast);
    }
    let Ok(mut started) = (if grey { dec.grayscale() } else { dec.rgb() }) else {
        return Ok(None);
    };
    // The output size, as libjpeg will allocate it: checked again, since
    // it is what read_scanlines sizes its buffer by.
    let (w, h) = dims(started.width(), started.height())?;
    check_canvas(w, h, limits)?;
    let Ok(pixels) = started.read_scanlines::<u8>() else {
        return Ok(None);
    };
    if started.finish().is_err() {
        return Ok(None);
    }
    let image = if grey {
        GrayImage::from_raw(w, h, pixels).map(DynamicImage::ImageLuma8)
    } else {
        RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8)
    };
    Ok(image.map(|image| Picture {
        image,
        stored,
        orientation,
    }))
}

/// Encodes `pixels` (RGB8, or L8 when `grey`) as a JPEG with libjpeg-turbo,
/// or `None` if libjpeg failed (the caller reports an encoder error).
///
/// libjpeg-turbo's plain (v6) defaults, not mozjpeg's trellis search, and
/// 4:2:0 chroma. The standard Huffman tables are kept: optimising them per
/// image is a second pass over the coefficients that doubled the encode
/// time of the 1.3 MP bench photo (7 ms to 14 ms) for files about 5 %
/// smaller. Against the pure-Rust encoder used before: 7 ms instead of
/// 23 ms.
pub fn encode(
    pixels: &[u8],
    (width, height): (u32, u32),
    grey: bool,
    quality: u8,
    progressive: bool,
    (icc, app1): (Option<&[u8]>, &[Vec<u8>]),
) -> Option<Vec<u8>> {
    catch_unwind(AssertUnwindSafe(|| {
        let space = if grey {
            ColorSpace::JCS_GRAYSCALE
        } else {
            ColorSpace::JCS_RGB
        };
        let mut comp = Compress::new_err(Box::new(error_manager()), space);
        comp.set_fastest_defaults();
        comp.set_size(usize::try_from(width).ok()?, usize::try_from(height).ok()?);
        comp.set_quality(f32::from(quality.clamp(1, 100)));
        comp.set_optimize_coding(false);
        if progressive {
            comp.set_progressive_mode();
        }
        let estimate = pixels.len() / 8 + 4096;
        let mut started = comp.start_compress(Vec::with_capacity(estimate)).ok()?;
        // Before any scan, as the markers must be: EXIF and XMP, then
        // the profile.
        for payload in app1 {
            started.write_marker(Marker::APP(1), payload);
        }
        if let Some(icc) = icc {
            for marker in icc_markers(icc)? {
                started.write_marker(Marker::APP(2), &marker);
            }
        }
        started.write_scanlines(pixels).ok()?;
        started.finish().ok()
    }))
    .ok()
    .flatten()
}

/// Bytes of profile one APP2 marker holds: 65,533 less the 14 of the
/// `ICC_PROFILE\0` tag, the sequence number and the count.
const ICC_PER_MARKER: usize = 65_519;

/// `icc` as the payloads of the ICC spec's APP2 markers. Not mozjpeg's
/// `write_icc_profile`: it numbers the markers from 0, where the spec
/// (and libjpeg's and zune-jpeg's readers, which drop such a profile)
/// count from 1. `None` when the profile needs more than 255 markers.
fn icc_markers(icc: &[u8]) -> Option<Vec<Vec<u8>>> {
    let count = u8::try_from(icc.len().div_ceil(ICC_PER_MARKER)).ok()?;
    let markers = (1..=count)
        .zip(icc.chunks(ICC_PER_MARKER))
        .map(|(seq, chunk)| {
            let mut marker = Vec::with_capacity(chunk.len() + 14);
            marker.extend_from_slice(b"ICC_PROFILE\0");
            marker.extend([seq, count]);
            marker.extend_from_slice(chunk);
            marker
        })
        .collect();
    Some(markers)
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;

    /// The whole picture, at full size and exact.
    const FULL: Plan<'static> = &|_, _, _| (1, false);

    #[test]
    fn the_factor_keeps_at_least_the_target() {
        assert_eq!(shrink_factor((2560, 1600), (400, 250)), 4);
        assert_eq!(shrink_factor((2560, 1600), (320, 200)), 8);
        assert_eq!(shrink_factor((2560, 1600), (321, 200)), 4);
        assert_eq!(shrink_factor((2560, 1600), (1280, 800)), 2);
        assert_eq!(shrink_factor((2560, 1600), (1281, 800)), 1);
        assert_eq!(shrink_factor((100, 100), (0, 0)), 8);
        // Rounding down: 1001/2 = 500 covers 500, not 501.
        assert_eq!(shrink_factor((1001, 1001), (501, 501)), 1);
    }

    #[test]
    fn libjpeg_checks_its_own_dimensions() {
        let jpeg = encode(
            &[128u8; 64 * 48 * 3],
            (64, 48),
            false,
            90,
            false,
            (None, &[]),
        )
        .expect("encode");
        let fits = Limits::default();
        let picture = decode(&jpeg, &fits, FULL)
            .expect("within the limits")
            .expect("libjpeg decodes it");
        assert_eq!((picture.image.width(), picture.image.height()), (64, 48));
        // 64x48 = 3072 pixels: refused by libjpeg's own header read, with
        // no other decoder in front of it.
        let tight = Limits {
            max_pixels: 3000,
            ..Limits::default()
        };
        assert!(matches!(
            decode(&jpeg, &tight, FULL),
            Err(EngineError::TooLarge(_))
        ));
    }

    /// The message libjpeg's own table holds for `code`.
    fn message(code: J_MESSAGE_CODE) -> String {
        let err = error_manager();
        let index = usize::try_from(code).expect("a message code");
        assert!(code <= err.last_jpeg_message, "code {code} is in the table");
        // SAFETY: jpeg_std_error set `jpeg_message_table` to libjpeg's
        // static table of `last_jpeg_message + 1` NUL-terminated strings,
        // and `index` was checked to be within it.
        let text = unsafe { CStr::from_ptr(*err.jpeg_message_table.add(index)) };
        text.to_string_lossy().into_owned()
    }

    #[test]
    fn message_codes_match_libjpegs_table() {
        for (code, text) in [
            (JWRN_EXTRANEOUS_DATA, "extraneous bytes before marker"),
            (JWRN_HIT_MARKER, "premature end of data segment"),
            (JWRN_HUFF_BAD_CODE, "bad Huffman code"),
            (JWRN_JPEG_EOF, "Premature end of JPEG file"),
            (JWRN_MUST_RESYNC, "instead of RST"),
            (JWRN_JFIF_MAJOR, "unknown JFIF revision"),
            (JWRN_ADOBE_XFORM, "Unknown Adobe color transform"),
            (JWRN_ARITH_BAD_CODE, "bad arithmetic code"),
            (JWRN_BOGUS_ICC, "bad ICC marker"),
        ] {
            let found = message(code);
            assert!(found.contains(text), "code {code}: {found:?}, not {text:?}");
        }
    }
}
