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
//! zune-jpeg stays the reference decoder: anything libjpeg refuses, warns
//! about, or would convert differently (CMYK/YCCK, whose Adobe inversion
//! conventions differ) falls back to it, so the verdict on a damaged file
//! and the pixels of an odd one are the same as before this path existed.
//! libjpeg's warnings ("corrupt JPEG data", "premature end of data") mean it
//! patched over damage; counting them is what lets us fall back instead of
//! serving a half-grey picture.
//!
//! libjpeg reports a fatal error through a callback that must not return;
//! `mozjpeg` unwinds out of it, so every call here runs under
//! `catch_unwind` and an error is just "fall back".

use std::cell::Cell;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use image::{DynamicImage, GrayImage, RgbImage};
use mozjpeg::{ColorSpace, Compress, Decompress};
use mozjpeg_sys::{jpeg_common_struct, jpeg_error_mgr, jpeg_std_error};

use super::error::EngineError;
use super::limits::check_canvas;
use crate::proto::Limits;

thread_local! {
    /// Warnings libjpeg emitted during the current decode on this thread.
    static WARNINGS: Cell<u32> = const { Cell::new(0) };
}

/// libjpeg's `emit_message`: level -1 is a warning about corrupt data.
/// (Higher levels are trace messages, off by default.)
unsafe extern "C-unwind" fn count_warning(_cinfo: &mut jpeg_common_struct, level: c_int) {
    if level < 0 {
        WARNINGS.with(|w| w.set(w.get().saturating_add(1)));
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
    err.emit_message = Some(count_warning);
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

/// Decodes `input` at 1/`denominator` scale (1, 2, 4 or 8) as RGB8, or L8
/// for a greyscale JPEG; `coarse` picks the fast integer inverse DCT.
/// `Ok(None)` when libjpeg refused the data, warned about it, or the colour
/// space is one left to zune-jpeg: the caller decodes with zune-jpeg
/// instead. `Err` when the size libjpeg itself reads from the header (or
/// will output) is over `limits`: checked here, before any scanline is
/// allocated, whatever another decoder's header parse said.
pub fn decode(
    input: &[u8],
    denominator: u32,
    coarse: bool,
    limits: &Limits,
) -> Result<Option<DynamicImage>, EngineError> {
    WARNINGS.with(|w| w.set(0));
    let result = catch_unwind(AssertUnwindSafe(|| {
        decode_inner(input, denominator, coarse, limits)
    }));
    let warned = WARNINGS.with(Cell::get) > 0;
    match result {
        Ok(Err(e)) => Err(e),
        Ok(Ok(Some(image))) if !warned => Ok(Some(image)),
        _ => Ok(None),
    }
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
    denominator: u32,
    coarse: bool,
    limits: &Limits,
) -> Result<Option<DynamicImage>, EngineError> {
    let Ok(mut dec) = Decompress::with_err(error_manager()).from_mem(input) else {
        return Ok(None);
    };
    let (w, h) = dims(dec.width(), dec.height())?;
    check_canvas(w, h, limits)?;
    let grey = match dec.color_space() {
        ColorSpace::JCS_GRAYSCALE => true,
        ColorSpace::JCS_YCbCr | ColorSpace::JCS_RGB => false,
        // CMYK, YCCK and anything exotic: zune-jpeg's conversion.
        _ => return Ok(None),
    };
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
    Ok(if grey {
        GrayImage::from_raw(w, h, pixels).map(DynamicImage::ImageLuma8)
    } else {
        RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8)
    })
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
        started.write_scanlines(pixels).ok()?;
        started.finish().ok()
    }))
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let jpeg = encode(&[128u8; 64 * 48 * 3], (64, 48), false, 90, false).expect("encode");
        let fits = Limits::default();
        let image = decode(&jpeg, 1, false, &fits)
            .expect("within the limits")
            .expect("libjpeg decodes it");
        assert_eq!((image.width(), image.height()), (64, 48));
        // 64x48 = 3072 pixels: refused by libjpeg's own header read, with
        // no other decoder in front of it.
        let tight = Limits {
            max_pixels: 3000,
            ..Limits::default()
        };
        assert!(matches!(
            decode(&jpeg, 1, false, &tight),
            Err(EngineError::TooLarge(_))
        ));
    }
}
