//! EXIF and XMP: read from the input for `info` and `keep=`, and chosen
//! for the output.
//!
//! Why stripped by default: EXIF carries GPS positions, camera serial
//! numbers and thumbnails of the uncropped picture, none of which a
//! published thumbnail should leak. `keep=copyright` keeps only what says
//! who made the picture and under which terms (EXIF Artist and Copyright,
//! XMP `dc:creator`, `dc:rights` and the `xmpRights:` properties), so a
//! photographer's credit survives a resize. `keep=all` keeps EXIF and XMP
//! whole, with the orientation reset to 1 once the pixels are upright (a
//! viewer would otherwise turn them a second time).
//!
//! Read by `image`'s own readers (JPEG APP1, PNG `eXIf` and `iTXt`, WebP
//! `EXIF` and `XMP ` chunks, TIFF's XMP tag); AVIF, HEIC, JPEG XL and GIF
//! metadata is not read yet. Every walk over the client's bytes here is
//! bounds-checked and allocates at most the block it reads; XMP is parsed
//! by roxmltree, which refuses DTDs, so no entity can expand.

use std::io::Cursor;

use image::ImageDecoder;

use super::format::InputFormat;
use crate::proto::KeepMeta;

/// The metadata blocks of a picture, as stored. `exif` starts with its
/// TIFF header (`II*\0` or `MM\0*`), without JPEG's `Exif\0\0`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub exif: Option<Vec<u8>>,
    pub xmp: Option<Vec<u8>>,
}

/// The EXIF and XMP `input` carries; nothing for formats not read yet, or
/// when a block does not read (broken metadata never fails a request).
pub fn read(input: &[u8], format: InputFormat) -> Metadata {
    use image::codecs;
    let cursor = Cursor::new(input);
    let (exif, xmp) = match format {
        InputFormat::Jpeg => blocks(codecs::jpeg::JpegDecoder::new(cursor)),
        InputFormat::Png => blocks(codecs::png::PngDecoder::new(cursor)),
        InputFormat::Webp => blocks(codecs::webp::WebPDecoder::new(cursor)),
        InputFormat::Tiff => blocks(codecs::tiff::TiffDecoder::new(cursor)),
        _ => (None, None),
    };
    Metadata {
        exif: exif.and_then(tiff_header_first),
        xmp: xmp.filter(|x| !x.is_empty()),
    }
}

fn blocks<D: ImageDecoder, E>(decoder: Result<D, E>) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let Ok(mut decoder) = decoder else {
        return (None, None);
    };
    let exif = decoder.exif_metadata().ok().flatten();
    let xmp = decoder.xmp_metadata().ok().flatten();
    (exif, xmp)
}

/// `exif` from its TIFF header on: some writers keep JPEG's `Exif\0\0` in
/// PNG and WebP chunks. `None` when no TIFF header starts it.
fn tiff_header_first(exif: Vec<u8>) -> Option<Vec<u8>> {
    let exif = match exif.strip_prefix(b"Exif\0\0") {
        Some(rest) => rest.to_vec(),
        None => exif,
    };
    matches!(exif.get(..4), Some(b"II*\0" | b"MM\0*")).then_some(exif)
}

/// What goes into the output for `keep`. `upright`: the engine applied the
/// EXIF orientation to the pixels (autorotate), so the kept blocks must
/// say 1.
pub fn for_output(found: Metadata, keep: KeepMeta, upright: bool) -> Metadata {
    match keep {
        KeepMeta::None => Metadata::default(),
        KeepMeta::All => {
            let mut kept = found;
            if upright {
                if let Some(exif) = kept.exif.as_mut() {
                    reset_exif_orientation(exif);
                }
                if let Some(xmp) = kept.xmp.as_mut() {
                    reset_xmp_orientation(xmp);
                }
            }
            kept
        }
        KeepMeta::Copyright => Metadata {
            exif: found.exif.as_deref().and_then(copyright_exif),
            xmp: found.xmp.as_deref().and_then(rights_xmp),
        },
    }
}

/// Byte order and bounds-checked reads over a TIFF-structured block.
struct Tiff<'a> {
    data: &'a [u8],
    little: bool,
}

impl<'a> Tiff<'a> {
    fn new(data: &'a [u8]) -> Option<Tiff<'a>> {
        let little = match data.get(..4)? {
            b"II*\0" => true,
            b"MM\0*" => false,
            _ => return None,
        };
        Some(Tiff { data, little })
    }

    /// `N` bytes at `at`, most significant first whatever the block's
    /// byte order.
    fn bytes<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        let mut b: [u8; N] = self.data.get(at..at.checked_add(N)?)?.try_into().ok()?;
        if self.little {
            b.reverse();
        }
        Some(b)
    }

    fn u16(&self, at: usize) -> Option<u16> {
        self.bytes(at).map(u16::from_be_bytes)
    }

    fn u32(&self, at: usize) -> Option<u32> {
        self.bytes(at).map(u32::from_be_bytes)
    }

    /// The byte offsets of IFD0's 12-byte entries; an entry that runs
    /// past the end of the block is skipped.
    fn ifd0(&self) -> Option<impl Iterator<Item = usize>> {
        let start = usize::try_from(self.u32(4)?).ok()?;
        let count = usize::from(self.u16(start)?);
        let first = start.checked_add(2)?;
        let len = self.data.len();
        Some(
            (0..count)
                .map(move |i| first + 12 * i)
                .filter(move |e| e + 12 <= len),
        )
    }

    /// An ASCII (type 2) entry's bytes, at most its count, inline when
    /// they fit in four bytes.
    fn ascii(&self, entry: usize) -> Option<&'a [u8]> {
        if self.u16(entry + 2)? != 2 {
            return None;
        }
        let count = usize::try_from(self.u32(entry + 4)?).ok()?;
        let at = if count <= 4 {
            entry + 8
        } else {
            usize::try_from(self.u32(entry + 8)?).ok()?
        };
        self.data.get(at..at.checked_add(count)?)
    }
}

const ORIENTATION: u16 = 0x0112;
const ARTIST: u16 = 0x013B;
const COPYRIGHT: u16 = 0x8298;

/// Sets IFD0's orientation (a SHORT) to 1, in place.
fn reset_exif_orientation(exif: &mut [u8]) {
    let Some(tiff) = Tiff::new(exif) else { return };
    let little = tiff.little;
    let found = tiff.ifd0().and_then(|mut entries| {
        entries.find(|&e| {
            tiff.u16(e) == Some(ORIENTATION)
                && tiff.u16(e + 2) == Some(3)
                && tiff.u32(e + 4) == Some(1)
        })
    });
    if let Some(e) = found {
        let one = if little {
            1u16.to_le_bytes()
        } else {
            1u16.to_be_bytes()
        };
        exif[e + 8..e + 10].copy_from_slice(&one);
    }
}

/// A new EXIF block (little-endian, IFD0 only) holding the source's
/// Artist and Copyright, or `None` when it has neither.
fn copyright_exif(exif: &[u8]) -> Option<Vec<u8>> {
    let tiff = Tiff::new(exif)?;
    let mut kept: Vec<(u16, &[u8])> = Vec::new();
    for e in tiff.ifd0()? {
        let tag = tiff.u16(e)?;
        if tag == ARTIST || tag == COPYRIGHT {
            if let Some(value) = tiff.ascii(e).filter(|v| !v.is_empty()) {
                kept.push((tag, value));
            }
        }
    }
    if kept.is_empty() {
        return None;
    }
    kept.sort_by_key(|(tag, _)| *tag);
    kept.dedup_by_key(|(tag, _)| *tag);
    let count = u16::try_from(kept.len()).ok()?;
    // Header, entry count, the entries, the next-IFD link, then values.
    let mut data_at = 8 + 2 + 12 * kept.len() + 4;
    let mut out = Vec::new();
    out.extend_from_slice(b"II*\0");
    out.extend_from_slice(&8u32.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    let mut values = Vec::new();
    for (tag, value) in &kept {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&u32::try_from(value.len()).ok()?.to_le_bytes());
        if value.len() <= 4 {
            let mut inline = [0u8; 4];
            inline[..value.len()].copy_from_slice(value);
            out.extend_from_slice(&inline);
        } else {
            out.extend_from_slice(&u32::try_from(data_at).ok()?.to_le_bytes());
            values.extend_from_slice(value);
            if value.len() % 2 == 1 {
                values.push(0);
            }
            data_at += value.len().div_ceil(2) * 2;
        }
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&values);
    Some(out)
}

/// Sets `tiff:Orientation` (attribute or element form) to 1, in place.
fn reset_xmp_orientation(xmp: &mut [u8]) {
    for opener in [
        &b"tiff:Orientation=\""[..],
        b"tiff:Orientation='",
        b"<tiff:Orientation>",
    ] {
        let mut from = 0;
        while let Some(at) = find(&xmp[from..], opener) {
            let digits = from + at + opener.len();
            let end = xmp[digits..]
                .iter()
                .position(|b| !b.is_ascii_digit())
                .map_or(xmp.len(), |n| digits + n);
            if end > digits {
                xmp[digits] = b'1';
                // Any further digits become spaces, which XMP readers
                // trim from a simple value; the length is unchanged.
                for b in &mut xmp[digits + 1..end] {
                    *b = b' ';
                }
            }
            from = end.max(digits);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

const RDF: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#";
const DC: &str = "http://purl.org/dc/elements/1.1/";
const XMP_RIGHTS: &str = "http://ns.adobe.com/xap/1.0/rights/";
const XML: &str = "http://www.w3.org/XML/1998/namespace";

/// Whether a property of `ns` named `name` says who made the picture or
/// under which terms.
fn is_rights(ns: Option<&str>, name: &str) -> bool {
    match ns {
        Some(DC) => matches!(name, "rights" | "creator"),
        Some(XMP_RIGHTS) => true,
        _ => false,
    }
}

/// A new XMP packet with only the rights properties of `xmp`, or `None`
/// when it has none or does not parse.
fn rights_xmp(xmp: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(xmp).ok()?;
    let doc = roxmltree::Document::parse(text).ok()?;
    let mut attrs = String::new();
    let mut elements = String::new();
    let descriptions = doc
        .descendants()
        .filter(|n| n.tag_name().namespace() == Some(RDF) && n.tag_name().name() == "Description");
    for description in descriptions {
        for a in description.attributes() {
            if is_rights(a.namespace(), a.name()) {
                if let Some(prefix) = prefix(a.namespace()) {
                    attrs.push_str(&format!(" {prefix}:{}=\"{}\"", a.name(), escape(a.value())));
                }
            }
        }
        for child in description.children().filter(|n| n.is_element()) {
            if is_rights(child.tag_name().namespace(), child.tag_name().name()) {
                write_element(child, 0, &mut elements);
            }
        }
    }
    if attrs.is_empty() && elements.is_empty() {
        return None;
    }
    let packet = format!(
        "<?xpacket begin=\"\u{feff}\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>\
         <x:xmpmeta xmlns:x=\"adobe:ns:meta/\">\
         <rdf:RDF xmlns:rdf=\"{RDF}\">\
         <rdf:Description rdf:about=\"\" xmlns:dc=\"{DC}\" xmlns:xmpRights=\"{XMP_RIGHTS}\"{attrs}>\
         {elements}</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end=\"r\"?>"
    );
    Some(packet.into_bytes())
}

/// The prefix this module writes for a namespace it keeps.
fn prefix(ns: Option<&str>) -> Option<&'static str> {
    match ns? {
        RDF => Some("rdf"),
        DC => Some("dc"),
        XMP_RIGHTS => Some("xmpRights"),
        XML => Some("xml"),
        _ => None,
    }
}

/// Deepest element copied below a property (`dc:rights` is three deep:
/// the property, `rdf:Alt`, `rdf:li`); anything deeper is not a rights
/// statement and is dropped.
const MAX_DEPTH: usize = 8;

/// `node` and what it holds, with this module's prefixes; elements and
/// attributes of other namespaces are dropped.
fn write_element(node: roxmltree::Node<'_, '_>, depth: usize, out: &mut String) {
    let Some(p) = prefix(node.tag_name().namespace()) else {
        return;
    };
    if depth > MAX_DEPTH {
        return;
    }
    let name = node.tag_name().name();
    out.push_str(&format!("<{p}:{name}"));
    for a in node.attributes() {
        if let Some(ap) = prefix(a.namespace()) {
            out.push_str(&format!(" {ap}:{}=\"{}\"", a.name(), escape(a.value())));
        }
    }
    out.push('>');
    for child in node.children() {
        if child.is_element() {
            write_element(child, depth + 1, out);
        } else if let Some(text) = child.text() {
            out.push_str(&escape(text));
        }
    }
    out.push_str(&format!("</{p}:{name}>"));
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A big-endian EXIF block with orientation 6, Artist and Copyright,
    /// and a GPS-style tag that keep=copyright must drop.
    fn sample_exif() -> Vec<u8> {
        let artist = b"Ada Lovelace\0";
        let copyright = b"CC-BY 4.0\0";
        let mut e = Vec::new();
        e.extend_from_slice(b"MM\0*");
        e.extend_from_slice(&8u32.to_be_bytes());
        e.extend_from_slice(&4u16.to_be_bytes());
        let data = 8 + 2 + 4 * 12 + 4;
        let entry = |e: &mut Vec<u8>, tag: u16, ty: u16, count: u32, value: u32| {
            e.extend_from_slice(&tag.to_be_bytes());
            e.extend_from_slice(&ty.to_be_bytes());
            e.extend_from_slice(&count.to_be_bytes());
            e.extend_from_slice(&value.to_be_bytes());
        };
        entry(&mut e, 0x0112, 3, 1, 6 << 16);
        entry(&mut e, ARTIST, 2, artist.len() as u32, data as u32);
        entry(
            &mut e,
            COPYRIGHT,
            2,
            copyright.len() as u32,
            (data + artist.len()) as u32,
        );
        entry(&mut e, 0x8825, 4, 1, 0);
        e.extend_from_slice(&0u32.to_be_bytes());
        e.extend_from_slice(artist);
        e.extend_from_slice(copyright);
        e
    }

    #[test]
    fn orientation_is_reset_in_place() {
        let mut exif = sample_exif();
        assert_eq!(
            image::metadata::Orientation::from_exif_chunk(&exif),
            Some(image::metadata::Orientation::Rotate90)
        );
        reset_exif_orientation(&mut exif);
        assert_eq!(
            image::metadata::Orientation::from_exif_chunk(&exif),
            Some(image::metadata::Orientation::NoTransforms)
        );
        assert_eq!(exif.len(), sample_exif().len());
    }

    #[test]
    fn copyright_keeps_artist_and_copyright_only() {
        let kept = copyright_exif(&sample_exif()).expect("has both");
        let tiff = Tiff::new(&kept).expect("a TIFF header");
        let entries: Vec<usize> = tiff.ifd0().expect("an IFD").collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(tiff.ascii(entries[0]), Some(&b"Ada Lovelace\0"[..]));
        assert_eq!(tiff.ascii(entries[1]), Some(&b"CC-BY 4.0\0"[..]));
        assert_eq!(copyright_exif(b"II*\0\x08\0\0\0\0\0\0\0\0\0"), None);
    }

    #[test]
    fn hostile_exif_is_read_within_bounds() {
        // Offsets and counts pointing past the end.
        let mut exif = b"II*\0\xff\xff\xff\x7f".to_vec();
        reset_exif_orientation(&mut exif);
        assert_eq!(copyright_exif(&exif), None);
        let mut exif = b"II*\0\x08\0\0\0\xff\xff".to_vec();
        exif.extend_from_slice(&[0x3b, 0x01, 2, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        reset_exif_orientation(&mut exif);
        assert_eq!(copyright_exif(&exif), None);
    }

    #[test]
    fn xmp_rights_survive_and_nothing_else() {
        let xmp = r#"<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:d="http://purl.org/dc/elements/1.1/"
  xmlns:xmpRights="http://ns.adobe.com/xap/1.0/rights/" xmlns:exif="http://ns.adobe.com/exif/1.0/"
  xmlns:tiff="http://ns.adobe.com/tiff/1.0/"
  xmpRights:Marked="True" exif:GPSLatitude="51,30N" tiff:Orientation="6">
 <d:rights><rdf:Alt><rdf:li xml:lang="x-default">© Ada &amp; co</rdf:li></rdf:Alt></d:rights>
 <d:description><rdf:Alt><rdf:li xml:lang="x-default">secret</rdf:li></rdf:Alt></d:description>
</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>"#;
        let kept = String::from_utf8(rights_xmp(xmp.as_bytes()).expect("rights")).expect("utf8");
        let doc = roxmltree::Document::parse(&kept).expect("well-formed");
        let li = doc
            .descendants()
            .find(|n| n.tag_name().name() == "li")
            .expect("the rights statement");
        assert_eq!(li.text(), Some("© Ada & co"));
        assert_eq!(li.attribute((XML, "lang")), Some("x-default"));
        assert!(kept.contains("xmpRights:Marked=\"True\""));
        assert!(!kept.contains("secret") && !kept.contains("GPS") && !kept.contains("Orientation"));

        let mut all = xmp.as_bytes().to_vec();
        reset_xmp_orientation(&mut all);
        assert!(String::from_utf8_lossy(&all).contains("tiff:Orientation=\"1\""));
        assert_eq!(rights_xmp(b"<x>no rights</x>"), None);
        assert_eq!(
            rights_xmp(b"<!DOCTYPE x [<!ENTITY a \"b\">]><x>&a;</x>"),
            None
        );
    }
}
