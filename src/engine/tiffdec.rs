//! TIFF beyond what `image`'s TIFF decoder hands on: pages, and sample
//! layouts it refuses although the `tiff` crate underneath reads them.
//!
//! `image` wraps the `tiff` crate but only for the colour types it has
//! (8/16-bit grey, RGB, RGBA, CMYK, float): 1-, 2- and 4-bit grey (fax
//! scans, old scanners) and signed samples are a 415 through it (12-bit
//! grey too, but `tiff` refuses to read that itself). This module asks `tiff` directly
//! and widens those to 8 or 16 bits the way Pillow shows them. It also
//! counts the pages (IFDs) of a file, which `image` never looks past.
//!
//! Limits come first, as everywhere: each page's size is checked against
//! `--max-pixels` before its pixels are read, `tiff`'s own decoding buffer
//! is capped by the same budget, and the page walk stops at `--max-frames`
//! (`tiff` itself refuses a cycle in the IFD chain).

use std::io::Cursor;

use ::tiff::decoder::{Decoder, DecodingResult, Limits as TiffLimits};
use ::tiff::ColorType as TiffColor;
use image::metadata::Orientation;
use image::{DynamicImage, GrayImage, ImageBuffer, Luma};

use crate::proto::Limits;

use super::decode::{Content, Decoded};
use super::error::{clip, EngineError};
use super::format::InputFormat;
use super::limits::check_canvas;
use super::sniff;

/// The number of pages, counted up to `max` (a file with more says `max`);
/// see [`sniff::tiff_page_count`].
pub fn page_count(input: &[u8], max: u32) -> u32 {
    sniff::tiff_page_count(input, max)
}

fn error(e: ::tiff::TiffError) -> EngineError {
    match e {
        ::tiff::TiffError::UnsupportedError(u) => {
            EngineError::Unsupported(clip(format!("unsupported TIFF variant: {u}")))
        }
        ::tiff::TiffError::LimitsExceeded => {
            EngineError::TooLarge("TIFF page is larger than the limits allow".to_string())
        }
        other => EngineError::Corrupt(clip(format!("corrupt TIFF data: {other}"))),
    }
}

/// Decodes page `page` (0-based; `page=`): the layouts `image` refuses
/// (see the module doc), and for a page after the first, which `image`
/// cannot reach, the common ones too (8/16-bit grey, RGB, RGBA). Any other
/// layout is an `Unsupported` error; a page the file does not have is a
/// bad parameter.
pub fn decode(input: &[u8], limits: &Limits, page: u32) -> Result<Decoded, EngineError> {
    let mut decoder = Decoder::new(Cursor::new(input)).map_err(error)?;
    if page > 0 {
        // The walk to the page is bounded like the page count.
        let pages = page_count(input, limits.max_frames.max(1));
        let index = usize::try_from(page).unwrap_or(usize::MAX);
        if page >= pages {
            return Err(EngineError::BadParameter(format!(
                "page {page} does not exist: the file has {pages} page{} (0-based, counted up to --max-frames)",
                if pages == 1 { "" } else { "s" }
            )));
        }
        // The page exists in the chain but its directory does not read.
        decoder.seek_to_image(index).map_err(error)?;
    }
    let (width, height) = decoder.dimensions().map_err(error)?;
    check_canvas(width, height, limits)?;
    // 8 bytes a pixel covers every layout read here (at most 16-bit grey,
    // plus tiff's own row padding).
    let budget = usize::try_from(limits.max_pixels.saturating_mul(8)).unwrap_or(usize::MAX);
    let mut caps = TiffLimits::default();
    caps.decoding_buffer_size = budget;
    caps.intermediate_buffer_size = budget;
    decoder = decoder.with_limits(caps);
    let color = decoder.colortype().map_err(error)?;
    // Refused before any pixel is decompressed: only these layouts are
    // widened below (signedness is known once the samples are read).
    let readable = matches!(
        color,
        TiffColor::Gray(1 | 2 | 4 | 8 | 16 | 32) | TiffColor::RGB(8 | 16) | TiffColor::RGBA(8 | 16)
    );
    if !readable {
        return Err(EngineError::Unsupported(format!(
            "unsupported TIFF variant: {color:?} samples are not supported"
        )));
    }
    // The page's own Orientation tag, as `image`'s TIFF decoder reads it.
    let orientation = decoder
        .find_tag_unsigned::<u8>(::tiff::tags::Tag::Orientation)
        .ok()
        .flatten()
        .and_then(Orientation::from_exif)
        .unwrap_or(Orientation::NoTransforms);
    // Separate colour planes: `read_image` gives only the first, and tiff
    // 0.11 panics on tiled ones; the layouts read here are interleaved.
    let planar = decoder
        .find_tag_unsigned::<u16>(::tiff::tags::Tag::PlanarConfiguration)
        .ok()
        .flatten();
    if planar == Some(2) && color.num_samples() > 1 {
        return Err(EngineError::Unsupported(
            "TIFF with separate colour planes is not supported".to_string(),
        ));
    }
    // FillOrder 2: the bits of each byte are stored lowest first, which
    // `tiff` does not undo. It applies to the stored bytes, before any
    // decompression, so only uncompressed data can be mended afterwards.
    let tag = |decoder: &mut Decoder<_>, tag| decoder.find_tag_unsigned::<u16>(tag).ok().flatten();
    let reversed = tag(&mut decoder, ::tiff::tags::Tag::FillOrder) == Some(2);
    let compression = tag(&mut decoder, ::tiff::tags::Tag::Compression).unwrap_or(1);
    if reversed && compression != 1 {
        return Err(EngineError::Unsupported(format!(
            "TIFF with bits stored lowest first (FillOrder 2) and compression {compression} is not supported"
        )));
    }
    let mut data = decoder.read_image().map_err(error)?;
    if let (true, TiffColor::Gray(1 | 2 | 4), DecodingResult::U8(bytes)) =
        (reversed, color, &mut data)
    {
        bytes.iter_mut().for_each(|b| *b = b.reverse_bits());
    }
    let icc = decoder
        .get_tag_u8_vec(::tiff::tags::Tag::IccProfile)
        .ok()
        .filter(|p| !p.is_empty());
    let picture = widen(color, data, (width, height))?;
    Ok(Decoded {
        format: InputFormat::Tiff,
        width,
        height,
        color_type: picture.color(),
        orientation,
        icc,
        content: Content::Still(picture),
    })
}

/// The picture as an `image` buffer, from `tiff`'s samples.
fn widen(
    color: TiffColor,
    data: DecodingResult,
    (width, height): (u32, u32),
) -> Result<DynamicImage, EngineError> {
    let unsupported = || {
        EngineError::Unsupported(format!(
            "unsupported TIFF variant: {color:?} samples are not supported"
        ))
    };
    let short = || EngineError::Corrupt("TIFF data ends early".to_string());
    let (w, h) = (width as usize, height as usize);
    let image = match (color, data) {
        (TiffColor::Gray(8), DecodingResult::U8(p)) => {
            GrayImage::from_raw(width, height, p).map(DynamicImage::ImageLuma8)
        }
        (TiffColor::Gray(16), DecodingResult::U16(p)) => {
            ImageBuffer::from_raw(width, height, p).map(DynamicImage::ImageLuma16)
        }
        (TiffColor::RGB(8), DecodingResult::U8(p)) => {
            ImageBuffer::from_raw(width, height, p).map(DynamicImage::ImageRgb8)
        }
        (TiffColor::RGBA(8), DecodingResult::U8(p)) => {
            ImageBuffer::from_raw(width, height, p).map(DynamicImage::ImageRgba8)
        }
        (TiffColor::RGB(16), DecodingResult::U16(p)) => {
            ImageBuffer::from_raw(width, height, p).map(DynamicImage::ImageRgb16)
        }
        (TiffColor::RGBA(16), DecodingResult::U16(p)) => {
            ImageBuffer::from_raw(width, height, p).map(DynamicImage::ImageRgba16)
        }
        // Packed rows, each starting on a byte: spread each sample over
        // 0-255 (1 bit: 0/255, 2 bits: x85, 4 bits: x17).
        (TiffColor::Gray(bits @ (1 | 2 | 4)), DecodingResult::U8(packed)) => {
            let per_byte = 8 / usize::from(bits);
            let row_bytes = w.div_ceil(per_byte);
            if packed.len() < row_bytes * h {
                return Err(short());
            }
            let max = (1u16 << bits) - 1;
            let mask = u8::try_from(max).map_err(|_| unsupported())?;
            let mut pixels = Vec::with_capacity(w * h);
            for row in packed.chunks_exact(row_bytes).take(h) {
                pixels.extend((0..w).map(|x| {
                    let byte = row[x / per_byte];
                    let shift = 8 - usize::from(bits) * (x % per_byte + 1);
                    let v = u16::from((byte >> shift) & mask);
                    u8::try_from(v * 255 / max).unwrap_or(u8::MAX)
                }));
            }
            GrayImage::from_raw(width, height, pixels).map(DynamicImage::ImageLuma8)
        }
        // Signed grey: Pillow shows the two's complement bytes as stored
        // in 8 bits, and clamps negative values to 0 in 16.
        (TiffColor::Gray(8), DecodingResult::I8(samples)) => {
            let pixels = samples.into_iter().map(|v| v.to_le_bytes()[0]).collect();
            GrayImage::from_raw(width, height, pixels).map(DynamicImage::ImageLuma8)
        }
        (TiffColor::Gray(16), DecodingResult::I16(samples)) => {
            let pixels = samples
                .into_iter()
                .map(|v| u16::try_from(v.max(0)).unwrap_or(0))
                .collect();
            ImageBuffer::<Luma<u16>, _>::from_raw(width, height, pixels)
                .map(DynamicImage::ImageLuma16)
        }
        // 32-bit integer grey: clamped to 16 bits, as Pillow's 8-bit view
        // of its 32-bit mode divides by 256.
        (TiffColor::Gray(32), DecodingResult::I32(samples)) => {
            let pixels = samples
                .into_iter()
                .map(|v| u16::try_from(v.clamp(0, 65535)).unwrap_or(0))
                .collect();
            ImageBuffer::<Luma<u16>, _>::from_raw(width, height, pixels)
                .map(DynamicImage::ImageLuma16)
        }
        _ => return Err(unsupported()),
    };
    image.ok_or_else(short)
}

#[cfg(test)]
mod tests {
    use super::page_count;

    /// A classic little-endian TIFF of empty IFDs at the given offsets,
    /// each pointing at `next[i]`.
    fn chain(next: &[u32]) -> Vec<u8> {
        let mut out = b"II*\0".to_vec();
        out.extend_from_slice(&8u32.to_le_bytes());
        for &n in next {
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(&n.to_le_bytes());
        }
        out
    }

    #[test]
    fn pages_are_counted_by_offsets_and_cycles_end_the_walk() {
        // IFDs at 8, 14, 20; the last ends the chain.
        assert_eq!(page_count(&chain(&[14, 20, 0]), 100), 3);
        assert_eq!(page_count(&chain(&[14, 20, 0]), 2), 2, "capped");
        // The second IFD points back at the first.
        assert_eq!(page_count(&chain(&[14, 8]), 100), 2);
        // An offset past the end ends the walk after what was read.
        assert_eq!(page_count(&chain(&[999]), 100), 1);
        assert_eq!(page_count(b"not a tiff", 100), 1);
    }
}
