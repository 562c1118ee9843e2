//! The table: every operation of the API, its parameters (types, ranges,
//! defaults, help) and how its values become a [`proto::Op`](Op). The
//! output parameters every op takes are in `output.rs`.
//!
//! Adding an operation means one [`OpSpec`] row here (plus its `Op`
//! variant and the engine code that runs it): the parser, `/v1/ops`,
//! `/openapi.json` and the playground all read this table.

use super::error::{bad, ParamError};
use super::spec::{p, Kind, OpSpec, ParamSpec, Values};
use super::test_ops::TEST_OPS;
use crate::proto::{Color, Fit, Gravity, Op, OverlaySource};

/// Largest width/height a client may ask for. The pixel limit still applies.
const MAX_SIDE: u64 = 65_535;

const SIDE: Kind = Kind::UInt {
    min: 1,
    max: MAX_SIDE,
};
const COORD: Kind = Kind::UInt {
    min: 0,
    max: MAX_SIDE,
};
const BYTE: Kind = Kind::UInt { min: 0, max: 255 };

const fn float(min: f64, max: f64) -> Kind {
    Kind::Float {
        min,
        max,
        exclusive_min: false,
        exclusive_max: false,
    }
}

const FITS: &[&str] = &["contain", "cover", "fill", "inside", "outside"];
const GRAVITIES: &[&str] = &[
    "centre",
    "center",
    "north",
    "south",
    "east",
    "west",
    "northeast",
    "northwest",
    "southeast",
    "southwest",
    // Crop-only: keep these two last (see POSITIONS).
    "smart",
    "focal",
];

const GRAVITY: ParamSpec = p(
    "gravity",
    Kind::Choice(GRAVITIES),
    false,
    Some("centre"),
    "which part a cover-crop keeps; smart: the part with the most detail (luma entropy); \
     focal: the point fx, fy as near the centre as the bounds allow",
);

const FOCAL_X: ParamSpec = p(
    "fx",
    float(0.0, 1.0),
    false,
    Some("0.5"),
    "with gravity=focal: the point to keep, as a fraction of the width from the left edge",
);

const LINEAR: ParamSpec = p(
    "linear",
    Kind::Bool,
    false,
    None,
    "scale in linear light rather than on the stored sRGB values: fine light and dark detail \
     (lines, text, stars) keeps its brightness; slower. Left out: the server's default \
     (--linear-resize, off unless the operator set it)",
);

const FOCAL_Y: ParamSpec = p(
    "fy",
    float(0.0, 1.0),
    false,
    Some("0.5"),
    "with gravity=focal: the point to keep, as a fraction of the height from the top edge",
);

/// The gravity of a cover-crop, with the focal point when it is `focal`;
/// `fx`/`fy` without `gravity=focal` are refused (they would do nothing).
fn gravity_with_focus(v: &Values) -> Result<Gravity, ParamError> {
    let fraction = |k: &str| v.f32(k).map(|f| (f64::from(f) * 10_000.0).round() as u16);
    match (v.choice("gravity"), fraction("fx"), fraction("fy")) {
        (Some("focal"), x, y) => Ok(Gravity::Focal {
            x: x.unwrap_or(5_000),
            y: y.unwrap_or(5_000),
        }),
        (_, Some(_), _) => Err(bad("fx", "fx goes with gravity=focal")),
        (_, _, Some(_)) => Err(bad("fy", "fy goes with gravity=focal")),
        (word, None, None) => Ok(gravity_of(word)),
    }
}

/// The gravities that name a position (an overlay's): all but the last
/// two of [`GRAVITIES`], since a crop's `smart` and `focal` have no meaning
/// there.
const POSITIONS: &[&str] = GRAVITIES.split_at(GRAVITIES.len() - 2).0;

/// An overlay's offset from its edges, in pixels (negative: outwards).
const OFFSET: Kind = Kind::Int {
    min: -(MAX_SIDE as i64),
    max: MAX_SIDE as i64,
};

fn build_overlay(v: &Values) -> Result<Op, ParamError> {
    let image = match (v.text("image"), v.text("image_url")) {
        (Some(name), None) => OverlaySource::Named(name.to_string()),
        (None, Some(url)) => OverlaySource::Url(url.to_string()),
        (Some(_), Some(_)) => {
            return Err(bad("image_url", "give image or image_url, not both"));
        }
        (None, None) => {
            return Err(bad(
                "image",
                "overlay needs image=NAME (registered with --overlay) or image_url=",
            ));
        }
    };
    Ok(Op::Overlay {
        image,
        gravity: gravity_of(v.choice("gravity")),
        x: v.i32("x").unwrap_or(0),
        y: v.i32("y").unwrap_or(0),
        opacity: v.f32("opacity").unwrap_or(1.0),
        scale: v.f32("scale"),
        tile: v.bool("tile").unwrap_or(false),
    })
}

/// Multiplies the sizes of every resize and thumbnail in `ops` by `dpr`
/// (rounded), refusing a side past the largest a request may ask for.
pub(super) fn apply_dpr(ops: &mut [Op], dpr: f32) -> Result<(), ParamError> {
    if dpr == 1.0 {
        return Ok(());
    }
    let scale = |side: u32| -> Result<u32, ParamError> {
        let scaled = (f64::from(side) * f64::from(dpr)).round();
        if scaled > MAX_SIDE as f64 {
            return Err(bad(
                "dpr",
                format!("{side} x dpr {dpr} = {scaled} pixels; at most {MAX_SIDE}"),
            ));
        }
        Ok(scaled as u32)
    };
    for op in ops {
        match op {
            Op::Resize { width, height, .. } => {
                *width = width.map(scale).transpose()?;
                *height = height.map(scale).transpose()?;
            }
            Op::Thumbnail { width, height, .. } => {
                *width = scale(*width)?;
                *height = scale(*height)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Gives every resize and thumbnail in `ops` that left `linear` out the
/// server's default (`--linear-resize`). Called by whoever runs a parsed
/// task, before the task is named (cache key, ETag) or sent, so that the
/// name says which way it was scaled and a changed default never serves a
/// result made the other way.
pub fn resolve_linear(ops: &mut [Op], default: bool) {
    for op in ops {
        if let Op::Resize { linear, .. } | Op::Thumbnail { linear, .. } = op {
            linear.get_or_insert(default);
        }
    }
}

fn fit_of(word: Option<&str>) -> Fit {
    match word {
        Some("cover") => Fit::Cover,
        Some("fill") => Fit::Fill,
        Some("inside") => Fit::Inside,
        Some("outside") => Fit::Outside,
        _ => Fit::Contain,
    }
}

fn gravity_of(word: Option<&str>) -> Gravity {
    match word {
        Some("north") => Gravity::North,
        Some("south") => Gravity::South,
        Some("east") => Gravity::East,
        Some("west") => Gravity::West,
        Some("northeast") => Gravity::NorthEast,
        Some("northwest") => Gravity::NorthWest,
        Some("southeast") => Gravity::SouthEast,
        Some("southwest") => Gravity::SouthWest,
        Some("smart") => Gravity::Smart,
        _ => Gravity::Centre,
    }
}

const CROP_PARAMS: &[ParamSpec] = &[
    p("x", COORD, false, Some("0"), "left edge"),
    p("y", COORD, false, Some("0"), "top edge"),
    p("width", SIDE, true, None, "rectangle width"),
    p("height", SIDE, true, None, "rectangle height"),
];

fn build_crop(v: &Values) -> Result<Op, ParamError> {
    Ok(Op::Crop {
        x: v.u32("x").unwrap_or(0),
        y: v.u32("y").unwrap_or(0),
        width: v.u32("width").unwrap_or(1),
        height: v.u32("height").unwrap_or(1),
    })
}

const PAD_PARAMS: &[ParamSpec] = &[
    p("top", COORD, false, Some("0"), "pixels added above"),
    p(
        "right",
        COORD,
        false,
        Some("0"),
        "pixels added on the right",
    ),
    p("bottom", COORD, false, Some("0"), "pixels added below"),
    p("left", COORD, false, Some("0"), "pixels added on the left"),
    p(
        "background",
        Kind::Color,
        false,
        Some("black"),
        "colour of the new pixels",
    ),
];

fn build_pad(v: &Values) -> Result<Op, ParamError> {
    Ok(Op::Pad {
        top: v.u32("top").unwrap_or(0),
        right: v.u32("right").unwrap_or(0),
        bottom: v.u32("bottom").unwrap_or(0),
        left: v.u32("left").unwrap_or(0),
        background: v.color("background").unwrap_or(Color::BLACK),
    })
}

/// Shorthand for a real (non-test) op.
const fn op(
    name: &'static str,
    help: &'static str,
    params: &'static [ParamSpec],
    build: fn(&Values) -> Result<Op, ParamError>,
    example: &'static str,
) -> OpSpec {
    OpSpec {
        name,
        help,
        params,
        build,
        test_only: false,
        alias_of: None,
        example,
    }
}

/// Every operation of the API (the test-only ones are in `test_ops.rs`).
pub static OPS: &[OpSpec] = &[
    op(
        "resize",
        "scale to a box: fit=contain keeps the aspect ratio inside it, cover fills it and crops at gravity, \
         fill stretches, inside never enlarges, outside covers it without cropping",
        &[
            p("width", SIDE, false, None, "target width in pixels (width, height or both)"),
            p("height", SIDE, false, None, "target height in pixels"),
            p(
                "fit",
                Kind::Choice(FITS),
                false,
                Some("contain"),
                "how the image meets a width x height box (with one side every fit is contain)",
            ),
            GRAVITY,
            FOCAL_X,
            FOCAL_Y,
            p(
                "enlarge",
                Kind::Bool,
                false,
                Some("false"),
                "allow scaling up",
            ),
            LINEAR,
        ],
        |v| {
            let width = v.u32("width");
            let height = v.u32("height");
            if width.is_none() && height.is_none() {
                return Err(bad("width", "resize needs width, height or both"));
            }
            Ok(Op::Resize {
                width,
                height,
                fit: fit_of(v.choice("fit")),
                gravity: gravity_with_focus(v)?,
                enlarge: v.bool("enlarge").unwrap_or(false),
                linear: v.bool("linear"),
            })
        },
        "width=400",
    ),
    op(
        "thumbnail",
        "cover-crop to exactly width x height (a missing side equals the other); never enlarges",
        &[
            p("width", SIDE, false, None, "thumbnail width (width, height or both)"),
            p("height", SIDE, false, None, "thumbnail height"),
            GRAVITY,
            FOCAL_X,
            FOCAL_Y,
            LINEAR,
        ],
        |v| {
            let (width, height) = match (v.u32("width"), v.u32("height")) {
                (Some(w), Some(h)) => (w, h),
                (Some(w), None) => (w, w),
                (None, Some(h)) => (h, h),
                (None, None) => return Err(bad("width", "thumbnail needs width, height or both")),
            };
            Ok(Op::Thumbnail {
                width,
                height,
                gravity: gravity_with_focus(v)?,
                linear: v.bool("linear"),
            })
        },
        "width=200&height=200",
    ),
    op(
        "crop",
        "cut a rectangle (clipped to the image)",
        CROP_PARAMS,
        build_crop,
        "x=10&y=10&width=200&height=100",
    ),
    OpSpec {
        name: "extract",
        help: "alias of crop",
        params: CROP_PARAMS,
        build: build_crop,
        test_only: false,
        alias_of: Some("crop"),
        example: "x=10&y=10&width=200&height=100",
    },
    op(
        "rotate",
        "rotate clockwise; multiples of 90 are exact, other angles grow the canvas and fill the corners",
        &[
            p(
                "angle",
                Kind::Float {
                    min: -360.0,
                    max: 360.0,
                    exclusive_min: true,
                    exclusive_max: true,
                },
                true,
                None,
                "degrees clockwise (negative: anticlockwise)",
            ),
            p(
                "background",
                Kind::Color,
                false,
                Some("black"),
                "colour of the uncovered corners",
            ),
        ],
        |v| {
            Ok(Op::Rotate {
                angle: v.f32("angle").unwrap_or(0.0),
                background: v.color("background").unwrap_or(Color::BLACK),
            })
        },
        "angle=90",
    ),
    op("flip", "mirror top to bottom", &[], |_| Ok(Op::Flip), ""),
    op("flop", "mirror left to right", &[], |_| Ok(Op::Flop), ""),
    op(
        "pad",
        "add borders of a colour",
        PAD_PARAMS,
        build_pad,
        "top=20&bottom=20&background=white",
    ),
    OpSpec {
        name: "extend",
        help: "alias of pad",
        params: PAD_PARAMS,
        build: build_pad,
        test_only: false,
        alias_of: Some("pad"),
        example: "left=10&right=10&background=ff000080",
    },
    op(
        "trim",
        "cut away borders of the top-left pixel's colour",
        &[p(
            "threshold",
            BYTE,
            false,
            Some("10"),
            "largest channel difference (0-255) still counted as border",
        )],
        |v| {
            Ok(Op::Trim {
                threshold: v.u8("threshold").unwrap_or(10),
            })
        },
        "threshold=10",
    ),
    op(
        "blur",
        "gaussian blur",
        &[p(
            "sigma",
            Kind::Float {
                min: 0.0,
                max: 100.0,
                exclusive_min: true,
                exclusive_max: false,
            },
            true,
            None,
            "standard deviation in pixels",
        )],
        |v| {
            Ok(Op::Blur {
                sigma: v.f32("sigma").unwrap_or(1.0),
            })
        },
        "sigma=3",
    ),
    op(
        "sharpen",
        "unsharp mask: adds amount x (image - blurred image) where the difference exceeds threshold",
        &[
            p(
                "sigma",
                Kind::Float {
                    min: 0.0,
                    max: 50.0,
                    exclusive_min: true,
                    exclusive_max: false,
                },
                false,
                Some("1"),
                "radius of the blur, in pixels",
            ),
            p("amount", float(0.0, 10.0), false, Some("1"), "strength"),
            p(
                "threshold",
                BYTE,
                false,
                Some("0"),
                "smallest difference (0-255) that is sharpened",
            ),
        ],
        |v| {
            Ok(Op::Sharpen {
                sigma: v.f32("sigma").unwrap_or(1.0),
                amount: v.f32("amount").unwrap_or(1.0),
                threshold: v.u8("threshold").unwrap_or(0),
            })
        },
        "sigma=2&amount=1.5",
    ),
    op(
        "pixelate",
        "replace size x size blocks by their mean colour",
        &[p(
            "size",
            Kind::UInt { min: 1, max: 4096 },
            false,
            Some("8"),
            "block size in pixels",
        )],
        |v| {
            Ok(Op::Pixelate {
                size: v.u32("size").unwrap_or(8),
            })
        },
        "size=12",
    ),
    op(
        "grayscale",
        "convert to shades of grey (alpha is kept)",
        &[],
        |_| Ok(Op::Grayscale),
        "",
    ),
    op(
        "invert",
        "negate the colours (alpha is kept)",
        &[],
        |_| Ok(Op::Invert),
        "",
    ),
    op(
        "brightness",
        "add value% of full scale to every colour channel",
        &[p(
            "value",
            float(-100.0, 100.0),
            true,
            None,
            "-100 (black) to 100 (white); 0 changes nothing",
        )],
        |v| {
            Ok(Op::Brightness {
                value: v.f32("value").unwrap_or(0.0),
            })
        },
        "value=20",
    ),
    op(
        "contrast",
        "scale the distance from mid-grey by 1 + value/100",
        &[p(
            "value",
            float(-100.0, 100.0),
            true,
            None,
            "-100 (flat grey) to 100 (double); 0 changes nothing",
        )],
        |v| {
            Ok(Op::Contrast {
                value: v.f32("value").unwrap_or(0.0),
            })
        },
        "value=30",
    ),
    op(
        "hue",
        "rotate the hues (CSS hue-rotate)",
        &[p(
            "degrees",
            float(-360.0, 360.0),
            true,
            None,
            "angle of the hue rotation",
        )],
        |v| {
            Ok(Op::Hue {
                degrees: v.f32("degrees").unwrap_or(0.0),
            })
        },
        "degrees=90",
    ),
    op(
        "saturation",
        "multiply the saturation (CSS saturate)",
        &[p(
            "factor",
            float(0.0, 10.0),
            true,
            None,
            "0 grey, 1 unchanged, 2 twice as vivid",
        )],
        |v| {
            Ok(Op::Saturation {
                factor: v.f32("factor").unwrap_or(1.0),
            })
        },
        "factor=1.5",
    ),
    op("sepia", "sepia tone (CSS sepia)", &[], |_| Ok(Op::Sepia), ""),
    op(
        "threshold",
        "black and white: luma at or above value becomes white (alpha is kept)",
        &[p("value", BYTE, false, Some("128"), "cut-off luma, 0-255")],
        |v| {
            Ok(Op::Threshold {
                value: v.u8("value").unwrap_or(128),
            })
        },
        "value=100",
    ),
    op(
        "background",
        "flatten transparency onto a colour",
        &[p(
            "color",
            Kind::Color,
            false,
            Some("white"),
            "colour under the image",
        )],
        |v| {
            Ok(Op::Background {
                color: v.color("color").unwrap_or(Color::WHITE),
            })
        },
        "color=ffcc00",
    ),
    op(
        "convert",
        "change the format only (use with format=)",
        &[],
        |_| Ok(Op::Convert),
        "format=webp",
    ),
    op(
        "overlay",
        "composite another image onto this one (a watermark): a registered one (image=NAME, see \
         --overlay) or, with URL sources on, image_url=; on every frame of an animation",
        &[
            p(
                "image",
                Kind::Name,
                false,
                None,
                "name of an overlay the server registered at start (--overlay NAME=FILE); \
                 this or image_url",
            ),
            p(
                "image_url",
                Kind::Url,
                false,
                None,
                "URL of the overlay image (only when the server takes URL sources; fetched \
                 under the same rules as url=)",
            ),
            p(
                "gravity",
                Kind::Choice(POSITIONS),
                false,
                Some("centre"),
                "where the overlay sits",
            ),
            p(
                "x",
                OFFSET,
                false,
                Some("0"),
                "pixels inwards from the edge gravity names (rightwards for centre, north, south)",
            ),
            p(
                "y",
                OFFSET,
                false,
                Some("0"),
                "pixels inwards from the edge gravity names (downwards for centre, east, west)",
            ),
            p(
                "opacity",
                float(0.0, 1.0),
                false,
                Some("1"),
                "multiplies the overlay's alpha: 0 invisible, 1 as it is",
            ),
            p(
                "scale",
                Kind::Float {
                    min: 0.0,
                    max: 1.0,
                    exclusive_min: true,
                    exclusive_max: false,
                },
                false,
                None,
                "resize the overlay to this fraction of the image's width first (aspect kept); \
                 default: its own size",
            ),
            p(
                "tile",
                Kind::Bool,
                false,
                Some("false"),
                "repeat the overlay over the whole image, in a grid through its position",
            ),
        ],
        build_overlay,
        "image=logo&gravity=southeast&x=16&y=16&opacity=0.6&scale=0.2",
    ),
    op(
        "info",
        "describe the image as JSON (not allowed in a pipeline)",
        &[],
        |_| Ok(Op::Info),
        "",
    ),
];

/// Looks up an operation that this build serves.
pub fn find_op(name: &str) -> Option<&'static OpSpec> {
    OPS.iter()
        .chain(TEST_OPS.iter())
        .find(|o| o.name == name)
        .filter(|o| !o.test_only || cfg!(feature = "test-ops"))
}

/// The operations listed by `/v1/ops` and `/openapi.json`: never test ops.
pub fn public_ops() -> impl Iterator<Item = &'static OpSpec> {
    OPS.iter().filter(|o| !o.test_only)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::output::OUTPUT_PARAMS;
    use crate::catalogue::spec::parse_value;

    #[test]
    fn test_ops_exist_only_with_the_feature() {
        assert_eq!(find_op("__panic").is_some(), cfg!(feature = "test-ops"));
        assert!(public_ops().all(|o| !o.name.starts_with("__")));
    }

    #[test]
    fn defaults_in_specs_parse_with_their_own_kind() {
        for op in OPS {
            for p in op.params.iter().chain(OUTPUT_PARAMS) {
                if let Some(d) = p.default {
                    assert!(
                        parse_value(p, d, p.name).is_ok(),
                        "{}.{} default {d:?}",
                        op.name,
                        p.name
                    );
                }
            }
        }
    }
}
