//! Byte-level checks that run before (or beside) the real decoders.
//!
//! * [`detect`]: the format comes from the magic bytes only. File names and
//!   content types are client-controlled and routinely wrong (an HTML error
//!   page saved as `.jpg`), so they are never consulted.
//! * [`jpeg_is_complete`]: zune-jpeg fills a truncated scan with grey and
//!   reports success, so completeness has to be checked by hand.
//! * [`gif_loop_count`]: `image` folds "no NETSCAPE block" (play once) and
//!   "loop forever" into the same value, so the block is read directly.

use image::ImageFormat;

use super::error::EngineError;
pub use super::format::InputFormat;

/// Identifies the format from the magic bytes.
///
/// Anything we do not decode, including empty and unrecognisable input, is
/// `Unsupported`.
pub fn detect(data: &[u8]) -> Result<InputFormat, EngineError> {
    if let Some(format) = heif_brand(data) {
        return Ok(format);
    }
    if is_jxl(data) {
        return Ok(InputFormat::Jxl);
    }
    // BigTIFF (version 43 instead of 42), which `image` does not sniff
    // but its TIFF decoder reads.
    if matches!(data.get(0..4), Some(b"II\x2b\0" | b"MM\0\x2b")) {
        return Ok(InputFormat::Tiff);
    }
    match image::guess_format(data) {
        Ok(ImageFormat::Jpeg) => Ok(InputFormat::Jpeg),
        Ok(ImageFormat::Png) => Ok(InputFormat::Png),
        Ok(ImageFormat::Gif) => Ok(InputFormat::Gif),
        Ok(ImageFormat::WebP) => Ok(InputFormat::Webp),
        Ok(ImageFormat::Bmp) => Ok(InputFormat::Bmp),
        Ok(ImageFormat::Tiff) => Ok(InputFormat::Tiff),
        Ok(ImageFormat::Ico) => Ok(InputFormat::Ico),
        Ok(ImageFormat::Avif) => Ok(InputFormat::Avif),
        Ok(other) => Err(EngineError::Unsupported(format!(
            "unsupported image format ({})",
            other.extensions_str().first().copied().unwrap_or("unknown")
        ))),
        Err(_) if is_svg(data) => Ok(InputFormat::Svg),
        Err(_) => Err(EngineError::Unsupported(
            "unsupported or unrecognised image format".to_string(),
        )),
    }
}

/// The HEIF family member an ISO-BMFF `ftyp` box names: AVIF when its
/// major or a compatible brand is `avif`/`avis`, HEIF for the HEVC brands
/// (`heic`, `heix`, `hevc`, `heim`, `heis`, `hevx`) and the generic `mif1`
/// and `msf1`. `image::guess_format` only knows the exact `ftypavif`.
fn heif_brand(data: &[u8]) -> Option<InputFormat> {
    if data.len() < 12 || &data[4..8] != b"ftyp" {
        return None;
    }
    let box_len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
    let end = box_len.clamp(12, 128).min(data.len());
    // Major brand at 8..12, minor version at 12..16, compatible brands after.
    let brands =
        || std::iter::once(&data[8..12]).chain(data.get(16..end).unwrap_or(&[]).chunks_exact(4));
    if brands().any(|b| b == b"avif" || b == b"avis") {
        return Some(InputFormat::Avif);
    }
    const HEIF: [&[u8]; 8] = [
        b"heic", b"heix", b"hevc", b"heim", b"heis", b"hevx", b"mif1", b"msf1",
    ];
    brands()
        .any(|b| HEIF.contains(&b))
        .then_some(InputFormat::Heif)
}

/// Whether the bytes look like an SVG document: an `<svg` root after an
/// optional BOM, XML declaration, comments and doctype.
fn is_svg(data: &[u8]) -> bool {
    let head = &data[..data.len().min(4096)];
    let Ok(text) = std::str::from_utf8(head).or_else(|e| {
        // A 4 KiB cut may split a character; what precedes it is enough.
        std::str::from_utf8(&head[..e.valid_up_to()])
    }) else {
        return false;
    };
    let mut rest = text.trim_start_matches('\u{feff}').trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("<?") {
            match after.find("?>") {
                Some(end) => rest = after[end + 2..].trim_start(),
                None => return false,
            }
        } else if let Some(after) = rest.strip_prefix("<!--") {
            match after.find("-->") {
                Some(end) => rest = after[end + 3..].trim_start(),
                None => return false,
            }
        } else if rest.starts_with("<!DOCTYPE") || rest.starts_with("<!doctype") {
            // The doctype may hold an internal subset with '>' inside it.
            let Some(svg) = rest.find("<svg") else {
                return false;
            };
            rest = &rest[svg..];
        } else {
            return rest.starts_with("<svg")
                && rest[4..].starts_with(|c: char| c.is_whitespace() || c == '>' || c == '/');
        }
    }
}

/// A JPEG XL bare codestream (`FF 0A`) or container (`JXL ` signature box).
fn is_jxl(data: &[u8]) -> bool {
    data.starts_with(&[0xff, 0x0a])
        || data.starts_with(&[
            0, 0, 0, 0x0c, b'J', b'X', b'L', b' ', 0x0d, 0x0a, 0x87, 0x0a,
        ])
}

/// Width and height from a PNG's IHDR chunk, which must come first.
///
/// Read by hand so that a header declaring billions of pixels gets the
/// pixel-limit message before the png crate sizes any buffer from it.
pub fn png_dimensions(data: &[u8]) -> Option<(u32, u32)> {
    if data.get(12..16)? != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes(data.get(16..20)?.try_into().ok()?);
    let h = u32::from_be_bytes(data.get(20..24)?.try_into().ok()?);
    Some((w, h))
}

/// Whether the first image of a TIFF is tiled with separate colour planes
/// (PlanarConfiguration 2, more than one sample per pixel).
///
/// tiff 0.11 panics on such files (legal, but rare) instead of returning an
/// error; they are refused up front as unsupported. Unparseable headers
/// answer `false` and are left to the decoder's own error reporting.
pub fn tiff_is_tiled_planar(data: &[u8]) -> bool {
    tiled_planar(data).unwrap_or(false)
}

/// The header of a classic or Big TIFF, for reading its IFD chain by
/// offsets (no decoder involved).
struct TiffHeader<'a> {
    data: &'a [u8],
    le: bool,
    big: bool,
}

impl<'a> TiffHeader<'a> {
    fn parse(data: &'a [u8]) -> Option<Self> {
        let le = match data.get(0..2)? {
            b"II" => true,
            b"MM" => false,
            _ => return None,
        };
        let mut header = TiffHeader {
            data,
            le,
            big: false,
        };
        header.big = match header.int(2, 2)? {
            42 => false,
            43 => true,
            _ => return None,
        };
        Some(header)
    }

    /// The `n`-byte unsigned integer at `at`, in the file's byte order.
    fn int(&self, at: usize, n: usize) -> Option<u64> {
        let bytes = self.data.get(at..at.checked_add(n)?)?;
        let fold = |v: u64, b: &u8| (v << 8) | u64::from(*b);
        Some(if self.le {
            bytes.iter().rev().fold(0, fold)
        } else {
            bytes.iter().fold(0, fold)
        })
    }

    /// Offset size: 8 bytes in a BigTIFF, 4 in a classic one.
    fn offset_len(&self) -> usize {
        if self.big {
            8
        } else {
            4
        }
    }

    fn first_ifd(&self) -> Option<usize> {
        usize::try_from(self.int(if self.big { 8 } else { 4 }, self.offset_len())?).ok()
    }

    /// The entry count of the IFD at `at` and where its first entry is.
    /// Classic TIFF: 2-byte count, 12-byte entries with a 4-byte value
    /// field; BigTIFF: 8-byte count, 20-byte entries, 8-byte value field.
    fn entries(&self, at: usize) -> Option<(usize, usize)> {
        let count_len = if self.big { 8 } else { 2 };
        let count = usize::try_from(self.int(at, count_len)?).ok()?;
        Some((count, at.checked_add(count_len)?))
    }

    fn entry_len(&self) -> usize {
        if self.big {
            20
        } else {
            12
        }
    }

    /// The offset of the IFD after the one at `at` (0: none).
    fn next_ifd(&self, at: usize) -> Option<usize> {
        let (count, first) = self.entries(at)?;
        let end = first.checked_add(count.checked_mul(self.entry_len())?)?;
        usize::try_from(self.int(end, self.offset_len())?).ok()
    }
}

/// The number of pages (IFDs) of a TIFF, counted up to `max` by walking
/// the chain's offsets only: building each page's directory would read
/// its strip tables, which a crafted file can make large and share between
/// many IFDs. A revisited or unreadable offset ends the walk; at least 1.
pub fn tiff_page_count(data: &[u8], max: u32) -> u32 {
    let Some(tiff) = TiffHeader::parse(data) else {
        return 1;
    };
    let mut seen = std::collections::HashSet::new();
    let mut pages = 0u32;
    let mut next = tiff.first_ifd();
    while let Some(at) = next {
        if at == 0 || pages >= max || !seen.insert(at) || tiff.entries(at).is_none() {
            break;
        }
        pages += 1;
        next = tiff.next_ifd(at);
    }
    pages.max(1)
}

fn tiled_planar(data: &[u8]) -> Option<bool> {
    let tiff = TiffHeader::parse(data)?;
    let (count, first) = tiff.entries(tiff.first_ifd()?)?;
    let (mut tiled, mut planar, mut samples) = (false, 1, 1);
    for i in 0..count.min(4096) {
        let entry = first + i * tiff.entry_len();
        let tag = tiff.int(entry, 2)?;
        let kind = tiff.int(entry + 2, 2)?;
        let value_at = entry + if tiff.big { 12 } else { 8 };
        // Only inline SHORT and LONG values matter for these tags.
        let value = match kind {
            3 => tiff.int(value_at, 2),
            4 => tiff.int(value_at, 4),
            16 => tiff.int(value_at, 8),
            _ => None,
        };
        match (tag, value) {
            (277, Some(v)) => samples = v,
            (284, Some(v)) => planar = v,
            (322, _) => tiled = true,
            _ => {}
        }
    }
    Some(tiled && planar == 2 && samples > 1)
}

/// Whether a JPEG stream reaches its end-of-image marker.
///
/// Walks the marker segments and entropy-coded scans from SOI to EOI. If the
/// structure is not what the walker expects (garbage between segments, which
/// lenient decoders tolerate), it falls back to "an EOI marker follows the
/// last SOS marker". Trailing bytes after EOI are allowed either way.
pub fn jpeg_is_complete(data: &[u8]) -> bool {
    match walk_jpeg(data) {
        Some(complete) => complete,
        None => eoi_after_last_sos(data),
    }
}

/// `Some(true)`: EOI reached; `Some(false)`: the data ends first; `None`:
/// unexpected structure.
fn walk_jpeg(data: &[u8]) -> Option<bool> {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let len = data.len();
    let mut pos = 2;
    loop {
        if pos >= len {
            return Some(false);
        }
        if data[pos] != 0xFF {
            return None;
        }
        // Any number of 0xFF fill bytes may precede a marker.
        while pos < len && data[pos] == 0xFF {
            pos += 1;
        }
        if pos >= len {
            return Some(false);
        }
        let marker = data[pos];
        pos += 1;
        match marker {
            0xD9 => return Some(true),
            // Standalone markers: no length field.
            0x01 | 0xD0..=0xD7 => continue,
            0x00 | 0xD8 => return None,
            _ => {
                if pos + 2 > len {
                    return Some(false);
                }
                let seg_len = usize::from(u16::from_be_bytes([data[pos], data[pos + 1]]));
                if seg_len < 2 {
                    return None;
                }
                pos += seg_len;
                if pos > len {
                    return Some(false);
                }
                if marker == 0xDA {
                    pos = match skip_entropy_coded(data, pos) {
                        Some(next) => next,
                        None => return Some(false),
                    };
                }
            }
        }
    }
}

/// Skips entropy-coded scan data; returns the position of the next marker's
/// 0xFF, or `None` if the data ends inside the scan.
fn skip_entropy_coded(data: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let ff = pos + data.get(pos..)?.iter().position(|&b| b == 0xFF)?;
        match data.get(ff + 1)? {
            // Stuffed zero byte and restart markers belong to the scan.
            0x00 | 0xD0..=0xD7 => pos = ff + 2,
            // A fill byte: the marker proper starts at the next 0xFF.
            0xFF => pos = ff + 1,
            _ => return Some(ff),
        }
    }
}

fn eoi_after_last_sos(data: &[u8]) -> bool {
    let Some(sos) = data.windows(2).rposition(|w| w == [0xFF, 0xDA]) else {
        return false;
    };
    data[sos + 2..].windows(2).any(|w| w == [0xFF, 0xD9])
}

/// The loop count of a GIF's NETSCAPE2.0 (or ANIMEXTS1.0) application
/// extension: `Some(0)` loops forever, `Some(n)` repeats n times, `None` when
/// the block is absent (the animation plays once).
///
/// Walks the GIF block structure rather than searching for the byte pattern,
/// so LZW data that happens to contain it cannot fool it.
pub fn gif_loop_count(data: &[u8]) -> Option<u32> {
    let flags = *data.get(10)?;
    let mut pos = 13;
    if flags & 0x80 != 0 {
        pos += 3 * (1usize << ((flags & 0x07) + 1));
    }
    loop {
        match *data.get(pos)? {
            // Extension: label, then sub-blocks.
            0x21 => {
                let label = *data.get(pos + 1)?;
                pos += 2;
                if label == 0xFF {
                    let id_len = usize::from(*data.get(pos)?);
                    let id = data.get(pos + 1..pos + 1 + id_len)?;
                    if id == b"NETSCAPE2.0" || id == b"ANIMEXTS1.0" {
                        let sub = pos + 1 + id_len;
                        let size = *data.get(sub)?;
                        if size >= 3 && *data.get(sub + 1)? == 1 {
                            let lo = *data.get(sub + 2)?;
                            let hi = *data.get(sub + 3)?;
                            return Some(u32::from(u16::from_le_bytes([lo, hi])));
                        }
                    }
                }
                pos = skip_sub_blocks(data, pos)?;
            }
            // Image descriptor: 10 bytes, optional local colour table, LZW
            // minimum code size, then sub-blocks.
            0x2C => {
                let local = *data.get(pos + 9)?;
                pos += 10;
                if local & 0x80 != 0 {
                    pos += 3 * (1usize << ((local & 0x07) + 1));
                }
                pos = skip_sub_blocks(data, pos + 1)?;
            }
            // Trailer or garbage: no loop block seen.
            _ => return None,
        }
    }
}

fn skip_sub_blocks(data: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let n = usize::from(*data.get(pos)?);
        pos += 1;
        if n == 0 {
            return Some(pos);
        }
        pos += n;
    }
}

/// A copy of `data` with a header flaw mended that `image`'s decoders
/// refuse but Pillow reads past, or `None` when there is none to mend:
/// an ICO directory that misstates its images' sizes, a GIF without any
/// colour table, a BMP whose planes field is not 1.
pub fn mended(data: &[u8]) -> Option<Vec<u8>> {
    match detect(data).ok()? {
        InputFormat::Ico => ico_with_true_sizes(data),
        InputFormat::Gif => gif_with_grey_table(data),
        InputFormat::Bmp => bmp_with_one_plane(data),
        _ => None,
    }
}

/// A BMP whose info header's planes field (always 1 by the format) says
/// otherwise, with it set to 1: the field means nothing for a BMP, and
/// Pillow ignores it.
fn bmp_with_one_plane(data: &[u8]) -> Option<Vec<u8>> {
    // 14-byte file header, then the info header: size (4), width and
    // height (4 each, or 2 each in the 12-byte OS/2 header), planes (2).
    let header = u32::from_le_bytes(data.get(14..18)?.try_into().ok()?);
    let at = if header == 12 { 22 } else { 26 };
    if data.get(at..at + 2)? == [1, 0] {
        return None;
    }
    let mut fixed = data.to_vec();
    fixed[at] = 1;
    fixed[at + 1] = 0;
    Some(fixed)
}

/// An ICO whose directory states sizes its images do not have (a writer
/// that put the BMP's doubled height in the entry, say), with each entry's
/// width and height set to what its PNG header or BMP info header says;
/// `None` when every entry is already right or the file cannot be read
/// this far. `image`'s decoder refuses such a file outright, while Pillow
/// and Windows show the image at the size it has.
fn ico_with_true_sizes(data: &[u8]) -> Option<Vec<u8>> {
    if data.get(0..4)? != [0, 0, 1, 0] {
        return None;
    }
    let count = usize::from(u16::from_le_bytes([*data.get(4)?, *data.get(5)?]));
    let mut fixed = data.to_vec();
    let mut changed = false;
    for i in 0..count {
        let entry = 6 + 16 * i;
        let field = |at: usize| -> Option<usize> {
            let b = data.get(entry + at..entry + at + 4)?;
            usize::try_from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok()
        };
        let offset = field(12)?;
        let image = data.get(offset..)?;
        let (w, h) = if image.starts_with(b"\x89PNG") {
            let be = |at: usize| -> Option<u32> {
                let b = image.get(at..at + 4)?;
                Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            };
            (be(16)?, be(20)?)
        } else {
            let le = |at: usize| -> Option<i32> {
                let b = image.get(at..at + 4)?;
                Some(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            };
            // A BMP in an ICO stores twice its height (pixels, then mask).
            (le(4)?.unsigned_abs(), le(8)?.unsigned_abs() / 2)
        };
        // The directory's one-byte sides: 0 stands for 256.
        let side = |v: u32| match v {
            256 => Some(0u8),
            1..=255 => u8::try_from(v).ok(),
            _ => None,
        };
        let (sw, sh) = (side(w)?, side(h)?);
        if fixed[entry] != sw || fixed[entry + 1] != sh {
            fixed[entry] = sw;
            fixed[entry + 1] = sh;
            changed = true;
        }
    }
    changed.then_some(fixed)
}

/// A GIF without a global colour table, given one: 256 greys (index i
/// shows as grey level i), which is how Pillow shows a frame that has no
/// colour table at all. `None` when the file has a global table already or
/// is too short to hold a screen descriptor. Frames with a local table of
/// their own are unaffected.
fn gif_with_grey_table(data: &[u8]) -> Option<Vec<u8>> {
    let packed = *data.get(10)?;
    if !data.starts_with(b"GIF8") || data.len() < 13 || packed & 0x80 != 0 {
        return None;
    }
    let mut fixed = Vec::with_capacity(data.len() + 768);
    fixed.extend_from_slice(&data[..10]);
    // Global table present, 256 entries (2^(7+1)); colour resolution and
    // sort flag kept.
    fixed.push(packed | 0x87);
    fixed.extend_from_slice(&data[11..13]);
    fixed.extend((0..=255u8).flat_map(|v| [v, v, v]));
    fixed.extend_from_slice(&data[13..]);
    Some(fixed)
}

#[cfg(test)]
mod tests {
    use super::is_svg;

    #[test]
    fn sniffs_svg_roots_only() {
        assert!(is_svg(b"<svg xmlns='http://www.w3.org/2000/svg'/>"));
        assert!(is_svg(
            b"\xef\xbb\xbf<?xml version='1.0'?>\n<!-- c -->\n<svg>"
        ));
        assert!(is_svg(b"<!DOCTYPE svg [<!ENTITY a 'b'>]>\n<svg width='1'>"));
        assert!(!is_svg(b"<html><svg></svg></html>"));
        assert!(!is_svg(b"<svgfoo>"));
        assert!(!is_svg(b"\x89PNG\r\n"));
    }
}
