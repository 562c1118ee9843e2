//! SVG input, rasterised by resvg (usvg parses, tiny-skia paints).
//!
//! An SVG is a document that can point outside itself, so the options
//! below close every door: no resources directory, an `<image>` whose
//! `href` is a path or URL resolves to nothing (only `data:` images inside
//! the document are drawn), text uses the one font built into the worker
//! (DejaVu Sans, loaded before the sandbox), and no system fonts are read.
//! The XML parser bounds entity expansion and usvg bounds element nesting
//! (1024 levels); both failures are a 422. The declared size (times the
//! scale a first resize asks for) is checked against `--max-pixels` before
//! the canvas is allocated. All of it runs inside the sandboxed worker, so
//! a bug that tried to open a file would kill only that worker.

use std::sync::{Arc, OnceLock};

use image::metadata::Orientation;
use image::{DynamicImage, RgbaImage};
use resvg::tiny_skia::{Pixmap, Transform};
use resvg::usvg::{self, fontdb, ImageHrefResolver};

use crate::proto::Limits;

use super::decode::{Content, Decoded, Need};
use super::error::{clip, EngineError};
use super::format::InputFormat;
use super::limits::check_canvas;

/// The fallback font, built into the binary so that text renders the same
/// everywhere and no font file is ever opened at request time.
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const FONT_FAMILY: &str = "DejaVu Sans";

/// Builds the font database once (at worker start, before the sandbox).
pub fn prepare() {
    let _ = fonts();
}

fn fonts() -> Arc<fontdb::Database> {
    static DB: OnceLock<Arc<fontdb::Database>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = fontdb::Database::new();
        db.load_font_data(FONT.to_vec());
        db.set_serif_family(FONT_FAMILY);
        db.set_sans_serif_family(FONT_FAMILY);
        db.set_monospace_family(FONT_FAMILY);
        db.set_cursive_family(FONT_FAMILY);
        db.set_fantasy_family(FONT_FAMILY);
        Arc::new(db)
    })
    .clone()
}

/// Parses and rasterises the document: at its own size, or scaled up or
/// down so that the first op (a resize) gets at least what it needs.
pub fn decode(
    input: &[u8],
    limits: &Limits,
    need: Option<Need<'_>>,
) -> Result<Decoded, EngineError> {
    let options = usvg::Options {
        resources_dir: None,
        font_family: FONT_FAMILY.to_string(),
        fontdb: fonts(),
        image_href_resolver: ImageHrefResolver {
            resolve_data: ImageHrefResolver::default_data_resolver(),
            resolve_string: Box::new(|_, _| None),
        },
        ..usvg::Options::default()
    };
    let tree = usvg::Tree::from_data(input, &options).map_err(|e| match e {
        usvg::Error::ElementsLimitReached => {
            EngineError::TooLarge("SVG nests elements deeper than the renderer allows".to_string())
        }
        other => EngineError::Corrupt(clip(format!("SVG could not be parsed: {other}"))),
    })?;
    let size = tree.size();
    let natural = (size.width().ceil(), size.height().ceil());
    if !(natural.0 >= 1.0 && natural.1 >= 1.0 && natural.0 < 1e9 && natural.1 < 1e9) {
        return Err(EngineError::TooLarge(format!(
            "SVG declares a {}x{} canvas",
            size.width(),
            size.height()
        )));
    }
    let (w, h) = (natural.0 as u32, natural.1 as u32);
    check_canvas(w, h, limits)?;
    let scale = need
        .and_then(|need| need(w, h, Orientation::NoTransforms))
        .filter(|wanted| !wanted.coarse)
        .map_or(1.0, |wanted| {
            let sx = f64::from(wanted.least.0) / f64::from(w);
            let sy = f64::from(wanted.least.1) / f64::from(h);
            sx.max(sy)
        });
    let (out_w, out_h) = (
        ((f64::from(w) * scale).round() as u32).max(1),
        ((f64::from(h) * scale).round() as u32).max(1),
    );
    check_canvas(out_w, out_h, limits)?;
    let mut pixmap = Pixmap::new(out_w, out_h)
        .ok_or_else(|| EngineError::TooLarge(format!("SVG canvas {out_w}x{out_h}")))?;
    let transform =
        Transform::from_scale(out_w as f32 / size.width(), out_h as f32 / size.height());
    resvg::render(&tree, transform, &mut pixmap.as_mut());
    // tiny-skia keeps premultiplied alpha; the engine works straight.
    let mut pixels = pixmap.take();
    for px in pixels.chunks_exact_mut(4) {
        let a = u32::from(px[3]);
        if a != 0 && a != 255 {
            for c in &mut px[..3] {
                *c = u8::try_from((u32::from(*c) * 255 + a / 2) / a).unwrap_or(255);
            }
        }
    }
    let image = RgbaImage::from_raw(out_w, out_h, pixels)
        .ok_or_else(|| EngineError::Internal("SVG pixel buffer size".to_string()))?;
    Ok(Decoded {
        format: InputFormat::Svg,
        width: out_w,
        height: out_h,
        color_type: image::ColorType::Rgba8,
        orientation: Orientation::NoTransforms,
        icc: None,
        content: Content::Still(DynamicImage::ImageRgba8(image)),
    })
}
