//! Query parameters -> a typed [`Task`].
//!
//! Every operation is described once, in [`OPS`]: its parameters, their
//! types, ranges and defaults. The parser reads those descriptions, and so
//! do `GET /v1/ops` and `GET /openapi.json` ([`describe_param`]), so a
//! parameter cannot be accepted by one part of the service and documented
//! differently by another. Bad input stops here with a 400 that names the
//! parameter (`sigma`, or `ops[2].sigma` inside a pipeline); a worker never
//! sees it.
//!
//! # Pipelines
//!
//! `POST /v1/pipeline?ops=resize(width=400),blur(sigma=2)&format=webp` runs
//! up to [`MAX_PIPELINE_OPS`] ops in order. Grammar of the `ops` value:
//!
//! ```text
//! ops    = op *( "," op )
//! op     = name [ "(" [ param *( "," param ) ] ")" ]
//! param  = key "=" value          ; value: no "(", ")", "," or "="
//! ```
//!
//! Op and parameter names are those of the single-op routes; output
//! parameters (`format`, `quality`, ...) stay top-level query parameters.

use std::collections::HashMap;

use serde_json::{json, Value as Json};

use crate::front::error::{bad, ApiError};
use crate::proto::{
    Color, Fit, Gravity, Limits, Op, OutputFormat, OutputSpec, PngCompression, Task,
};

/// Most ops one pipeline may chain.
pub const MAX_PIPELINE_OPS: usize = 16;

/// The route name of pipelines, `/v1/pipeline`.
pub const PIPELINE: &str = "pipeline";

/// The type and range of one parameter.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A whole number in `min..=max`.
    UInt { min: u64, max: u64 },
    /// A signed whole number in `min..=max`.
    Int { min: i64, max: i64 },
    /// A number between `min` and `max`, each bound exclusive when flagged.
    Float {
        min: f64,
        max: f64,
        exclusive_min: bool,
        exclusive_max: bool,
    },
    /// `true|false|1|0|yes|no`.
    Bool,
    /// One of the listed words.
    Choice(&'static [&'static str]),
    /// `rrggbb`, `rrggbbaa` (hex, no `#`) or one of [`COLOR_NAMES`].
    Color,
}

/// Colour names accepted besides hex.
pub const COLOR_NAMES: &[(&str, Color)] = &[
    ("white", Color::WHITE),
    ("black", Color::BLACK),
    ("transparent", Color::TRANSPARENT),
    ("red", Color::rgba(255, 0, 0, 255)),
    ("green", Color::rgba(0, 128, 0, 255)),
    ("blue", Color::rgba(0, 0, 255, 255)),
    ("grey", Color::rgba(128, 128, 128, 255)),
    ("gray", Color::rgba(128, 128, 128, 255)),
];

/// One documented parameter of an operation.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    /// The default, as it would be written in a query string.
    pub default: Option<&'static str>,
    pub help: &'static str,
}

/// One operation as the HTTP API exposes it.
pub struct OpSpec {
    pub name: &'static str,
    pub help: &'static str,
    pub params: &'static [ParamSpec],
    build: fn(&Values) -> Result<Op, ApiError>,
    /// Test-only operations exist only in `test-ops` builds and are never
    /// listed by `/v1/ops` or `/openapi.json`.
    pub test_only: bool,
    /// `extract` is `crop`, `extend` is `pad`: same parameters, same op.
    pub alias_of: Option<&'static str>,
    /// A query string for the docs and the README's curl examples.
    pub example: &'static str,
}

const fn p(
    name: &'static str,
    kind: Kind,
    required: bool,
    default: Option<&'static str>,
    help: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        kind,
        required,
        default,
        help,
    }
}

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
    "smart",
];

const GRAVITY: ParamSpec = p(
    "gravity",
    Kind::Choice(GRAVITIES),
    false,
    Some("centre"),
    "which part a cover-crop keeps; smart: the part with the most detail (luma entropy)",
);

/// Output parameters accepted by every image-producing operation (top-level
/// query parameters of a pipeline).
pub const OUTPUT_PARAMS: &[ParamSpec] = &[
    p(
        "format",
        Kind::Choice(&["jpeg", "jpg", "png", "gif", "webp", "auto"]),
        false,
        None,
        "output format; default: the input's family (animated input stays an animated GIF); \
         auto: WebP when the request's Accept lists image/webp, else the default (the response then has Vary: Accept)",
    ),
    p(
        "quality",
        Kind::UInt { min: 1, max: 100 },
        false,
        Some("80"),
        "JPEG and lossy WebP quality",
    ),
    p(
        "progressive",
        Kind::Bool,
        false,
        Some("false"),
        "progressive JPEG",
    ),
    p(
        "compression",
        Kind::Choice(&["fast", "default", "best"]),
        false,
        Some("fast"),
        "PNG deflate effort",
    ),
    p(
        "colors",
        Kind::UInt { min: 2, max: 256 },
        false,
        Some("256"),
        "most colours of a GIF palette (per frame)",
    ),
    p(
        "lossless",
        Kind::Bool,
        false,
        Some("false"),
        "lossless WebP instead of lossy",
    ),
    p(
        "autorotate",
        Kind::Bool,
        false,
        Some("true"),
        "apply the EXIF orientation first; false keeps the stored pixels",
    ),
];

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

fn build_crop(v: &Values) -> Result<Op, ApiError> {
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

fn build_pad(v: &Values) -> Result<Op, ApiError> {
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
    build: fn(&Values) -> Result<Op, ApiError>,
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

/// Every operation of the API.
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
            p(
                "enlarge",
                Kind::Bool,
                false,
                Some("false"),
                "allow scaling up",
            ),
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
                gravity: gravity_of(v.choice("gravity")),
                enlarge: v.bool("enlarge").unwrap_or(false),
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
                gravity: gravity_of(v.choice("gravity")),
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
        "info",
        "describe the image as JSON (not allowed in a pipeline)",
        &[],
        |_| Ok(Op::Info),
        "",
    ),
    OpSpec {
        name: "__sleep",
        help: "test only: sleep in the worker",
        params: &[p(
            "ms",
            Kind::UInt {
                min: 0,
                max: 600_000,
            },
            true,
            None,
            "milliseconds",
        )],
        build: |v| {
            Ok(Op::TestSleep {
                ms: v.u64("ms").unwrap_or(0),
            })
        },
        test_only: true,
        alias_of: None,
        example: "",
    },
    OpSpec {
        name: "__panic",
        help: "test only: panic in the engine",
        params: &[],
        build: |_| Ok(Op::TestPanic),
        test_only: true,
        alias_of: None,
        example: "",
    },
    OpSpec {
        name: "__abort",
        help: "test only: abort the worker",
        params: &[],
        build: |_| Ok(Op::TestAbort),
        test_only: true,
        alias_of: None,
        example: "",
    },
    OpSpec {
        name: "__segv",
        help: "test only: crash the worker with SIGSEGV",
        params: &[],
        build: |_| Ok(Op::TestSegv),
        test_only: true,
        alias_of: None,
        example: "",
    },
    OpSpec {
        name: "__open",
        help: "test only: open a file in the worker (forbidden by the sandbox)",
        params: &[],
        build: |_| Ok(Op::TestOpenFile),
        test_only: true,
        alias_of: None,
        example: "",
    },
    OpSpec {
        name: "__socket",
        help: "test only: open a socket in the worker (forbidden by the sandbox)",
        params: &[],
        build: |_| Ok(Op::TestSocket),
        test_only: true,
        alias_of: None,
        example: "",
    },
];

/// Looks up an operation that this build serves.
pub fn find_op(name: &str) -> Option<&'static OpSpec> {
    OPS.iter()
        .find(|o| o.name == name)
        .filter(|o| !o.test_only || cfg!(feature = "test-ops"))
}

/// The operations listed by `/v1/ops` and `/openapi.json`: never test ops.
pub fn public_ops() -> impl Iterator<Item = &'static OpSpec> {
    OPS.iter().filter(|o| !o.test_only)
}

/// A parsed parameter value.
#[derive(Debug, Clone, Copy)]
enum Value {
    U(u64),
    I(i64),
    F(f64),
    B(bool),
    S(&'static str),
    C(Color),
}

/// Parsed values of one operation's parameters.
pub struct Values(HashMap<&'static str, Value>);

impl Values {
    fn u64(&self, k: &str) -> Option<u64> {
        match self.0.get(k) {
            Some(Value::U(n)) => Some(*n),
            _ => None,
        }
    }
    fn u32(&self, k: &str) -> Option<u32> {
        self.u64(k).and_then(|n| u32::try_from(n).ok())
    }
    fn u8(&self, k: &str) -> Option<u8> {
        self.u64(k).and_then(|n| u8::try_from(n).ok())
    }
    fn f32(&self, k: &str) -> Option<f32> {
        match self.0.get(k) {
            Some(Value::F(n)) => Some(*n as f32),
            Some(Value::I(n)) => Some(*n as f32),
            _ => None,
        }
    }
    fn bool(&self, k: &str) -> Option<bool> {
        match self.0.get(k) {
            Some(Value::B(b)) => Some(*b),
            _ => None,
        }
    }
    fn choice(&self, k: &str) -> Option<&'static str> {
        match self.0.get(k) {
            Some(Value::S(s)) => Some(s),
            _ => None,
        }
    }
    fn color(&self, k: &str) -> Option<Color> {
        match self.0.get(k) {
            Some(Value::C(c)) => Some(*c),
            _ => None,
        }
    }
}

/// `rrggbb`, `rrggbbaa` or a name of [`COLOR_NAMES`].
pub fn parse_color(raw: &str) -> Option<Color> {
    let lower = raw.to_ascii_lowercase();
    if let Some((_, c)) = COLOR_NAMES.iter().find(|(n, _)| *n == lower) {
        return Some(*c);
    }
    if !(lower.len() == 6 || lower.len() == 8) || !lower.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(&lower[i..i + 2], 16).ok();
    let a = if lower.len() == 8 { byte(6)? } else { 255 };
    Some(Color::rgba(byte(0)?, byte(2)?, byte(4)?, a))
}

/// Parses `raw` as `spec` says; errors name the parameter as `label`
/// (`sigma`, or `ops[1].sigma` inside a pipeline).
fn parse_value(spec: &ParamSpec, raw: &str, label: &str) -> Result<Value, ApiError> {
    let name = label;
    match spec.kind {
        Kind::UInt { min, max } => {
            let n: u64 = raw.parse().map_err(|_| {
                bad(
                    name,
                    format!("{name} must be a whole number from {min} to {max}, got {raw:?}"),
                )
            })?;
            if n < min || n > max {
                return Err(bad(
                    name,
                    format!("{name} must be from {min} to {max}, got {n}"),
                ));
            }
            Ok(Value::U(n))
        }
        Kind::Int { min, max } => {
            let n: i64 = raw.parse().map_err(|_| {
                bad(
                    name,
                    format!("{name} must be a whole number from {min} to {max}, got {raw:?}"),
                )
            })?;
            if n < min || n > max {
                return Err(bad(
                    name,
                    format!("{name} must be from {min} to {max}, got {n}"),
                ));
            }
            Ok(Value::I(n))
        }
        Kind::Float {
            min,
            max,
            exclusive_min,
            exclusive_max,
        } => {
            let n: f64 = raw
                .parse()
                .ok()
                .filter(|n: &f64| n.is_finite())
                .ok_or_else(|| bad(name, format!("{name} must be a number, got {raw:?}")))?;
            let low_ok = if exclusive_min { n > min } else { n >= min };
            let high_ok = if exclusive_max { n < max } else { n <= max };
            if !low_ok || !high_ok {
                let low = if exclusive_min { "above" } else { "from" };
                let high = if exclusive_max { "below" } else { "at most" };
                return Err(bad(
                    name,
                    format!("{name} must be {low} {min} and {high} {max}, got {n}"),
                ));
            }
            Ok(Value::F(n))
        }
        Kind::Bool => match raw {
            "true" | "1" | "yes" => Ok(Value::B(true)),
            "false" | "0" | "no" => Ok(Value::B(false)),
            _ => Err(bad(
                name,
                format!("{name} must be true or false, got {raw:?}"),
            )),
        },
        Kind::Choice(words) => words
            .iter()
            .find(|w| **w == raw)
            .map(|w| Value::S(w))
            .ok_or_else(|| {
                bad(
                    name,
                    format!("{name} must be one of {}, got {raw:?}", words.join(", ")),
                )
            }),
        Kind::Color => parse_color(raw).map(Value::C).ok_or_else(|| {
            bad(
                name,
                format!(
                    "{name} must be a colour as rrggbb or rrggbbaa hex (no #) or one of {}, got {raw:?}",
                    COLOR_NAMES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                ),
            )
        }),
    }
}

fn output_format(word: &str) -> Option<OutputFormat> {
    match word {
        "jpeg" | "jpg" => Some(OutputFormat::Jpeg),
        "png" => Some(OutputFormat::Png),
        "gif" => Some(OutputFormat::Gif),
        "webp" => Some(OutputFormat::Webp),
        _ => None,
    }
}

/// A request's parameters, parsed and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub task: Task,
    /// `format=auto`: the front picks WebP or the default from `Accept`,
    /// and the response carries `Vary: Accept`.
    pub auto_format: bool,
    /// `url=`: fetch the image from there instead of reading the body.
    pub url: Option<String>,
    /// `callback_url=`: where a background job POSTs its status when it
    /// ends. Only the job routes accept it.
    pub callback_url: Option<String>,
}

/// Parses `/v1/{op}?{query}` (or `/v1/pipeline?ops=...`) into a task
/// carrying `limits`. `url` is only extracted here; whether URL sources are
/// allowed is the front's decision.
pub fn parse_request(
    op_name: &str,
    query: Option<&str>,
    limits: Limits,
) -> Result<Parsed, ApiError> {
    let pipeline = op_name == PIPELINE;
    let spec = if pipeline {
        None
    } else {
        Some(find_op(op_name).ok_or_else(|| ApiError::UnknownOp(op_name.to_string()))?)
    };
    let op_params: &[ParamSpec] = spec.map_or(&[], |s| s.params);
    let mut values = HashMap::new();
    let mut ops_raw: Option<String> = None;
    let mut url: Option<String> = None;
    let mut callback_url: Option<String> = None;
    for (key, raw) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let special = match key.as_ref() {
            "url" => Some(&mut url),
            CALLBACK_PARAM => Some(&mut callback_url),
            "ops" if pipeline => Some(&mut ops_raw),
            _ => None,
        };
        if let Some(slot) = special {
            if slot.replace(raw.to_string()).is_some() {
                return Err(bad(&key, format!("{key} is given more than once")));
            }
            continue;
        }
        let param = op_params
            .iter()
            .chain(OUTPUT_PARAMS.iter())
            .find(|p| p.name == key)
            .ok_or_else(|| ApiError::UnknownParameter(key.to_string()))?;
        let value = parse_value(param, &raw, param.name)?;
        if values.insert(param.name, value).is_some() {
            return Err(bad(
                param.name,
                format!("{} is given more than once", param.name),
            ));
        }
    }
    let values = Values(values);
    let ops = match spec {
        Some(spec) => vec![build(spec, values_for(spec, &values)?, None)?],
        None => {
            let raw = ops_raw.ok_or_else(|| {
                bad(
                    "ops",
                    "ops is required: a list such as resize(width=400),blur(sigma=2)",
                )
            })?;
            parse_pipeline(&raw)?
        }
    };
    let (output, auto_format) = output_spec(&values);
    Ok(Parsed {
        task: Task {
            ops,
            output,
            limits,
        },
        auto_format,
        url,
        callback_url,
    })
}

/// The query parameter of a job's webhook.
pub const CALLBACK_PARAM: &str = "callback_url";

/// [`parse_request`] for background jobs, which have no `Accept` header and
/// no URL sources (`format=auto` means the default format). Returns the
/// task and the job's `callback_url`, if any.
pub fn parse_job(
    op_name: &str,
    query: Option<&str>,
    limits: Limits,
) -> Result<(Task, Option<String>), ApiError> {
    let parsed = parse_request(op_name, query, limits)?;
    if parsed.url.is_some() {
        return Err(bad(
            "url",
            "url= is not supported here; send the image as the body",
        ));
    }
    Ok((parsed.task, parsed.callback_url))
}

/// [`parse_job`] for callers that run the task in place (the in-process
/// benchmark), where a callback means nothing and is refused.
pub fn parse_task(op_name: &str, query: Option<&str>, limits: Limits) -> Result<Task, ApiError> {
    match parse_job(op_name, query, limits)? {
        (task, None) => Ok(task),
        (_, Some(_)) => Err(callback_not_here()),
    }
}

/// The error for `callback_url` outside the job routes.
pub fn callback_not_here() -> ApiError {
    bad(
        CALLBACK_PARAM,
        "callback_url goes with background jobs (POST /v1/jobs/{op}); a synchronous request answers directly",
    )
}

/// The op's own values (required ones checked), without output parameters.
fn values_for(spec: &OpSpec, all: &Values) -> Result<Values, ApiError> {
    let mut own = HashMap::new();
    for param in spec.params {
        match all.0.get(param.name) {
            Some(v) => {
                own.insert(param.name, *v);
            }
            None if param.required => {
                return Err(bad(
                    param.name,
                    format!("{} is required for {}", param.name, spec.name),
                ))
            }
            None => {}
        }
    }
    Ok(Values(own))
}

/// Runs the op's builder; inside a pipeline the parameter an error names
/// is prefixed with the op's position (`ops[2].width`).
fn build(spec: &OpSpec, values: Values, label: Option<&str>) -> Result<Op, ApiError> {
    (spec.build)(&values).map_err(|e| match (e, label) {
        (ApiError::BadParameter { param, message }, Some(label)) => ApiError::BadParameter {
            param: format!("{label}.{param}"),
            message: format!("{label}: {message}"),
        },
        (e, _) => e,
    })
}

fn output_spec(values: &Values) -> (OutputSpec, bool) {
    let mut output = OutputSpec::default();
    let mut auto = false;
    match values.choice("format") {
        Some("auto") => auto = true,
        Some(word) => output.format = output_format(word),
        None => {}
    }
    if let Some(q) = values.u8("quality") {
        output.quality = q;
    }
    if let Some(b) = values.bool("progressive") {
        output.progressive = b;
    }
    output.compression = match values.choice("compression") {
        Some("default") => PngCompression::Default,
        Some("best") => PngCompression::Best,
        _ => PngCompression::Fast,
    };
    if let Some(c) = values.u64("colors").and_then(|c| u16::try_from(c).ok()) {
        output.colors = c;
    }
    if let Some(b) = values.bool("lossless") {
        output.lossless = b;
    }
    if let Some(b) = values.bool("autorotate") {
        output.autorotate = b;
    }
    (output, auto)
}

/// Splits `a(b,c),d` at top-level commas, checking the parentheses.
fn split_ops(raw: &str) -> Result<Vec<&str>, ApiError> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0u32, 0usize);
    for (i, ch) in raw.char_indices() {
        match ch {
            '(' if depth == 0 => depth = 1,
            '(' => return Err(bad("ops", "ops: parentheses cannot nest")),
            ')' if depth == 1 => depth = 0,
            ')' => return Err(bad("ops", format!("ops: unexpected ')' at position {i}"))),
            ',' if depth == 0 => {
                items.push(&raw[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(bad("ops", "ops: a '(' is not closed"));
    }
    items.push(&raw[start..]);
    Ok(items)
}

/// Parses a pipeline's `ops` value; see the module docs for the grammar.
pub fn parse_pipeline(raw: &str) -> Result<Vec<Op>, ApiError> {
    if raw.trim().is_empty() {
        return Err(bad("ops", "ops needs at least one operation"));
    }
    let items = split_ops(raw)?;
    if items.len() > MAX_PIPELINE_OPS {
        return Err(bad(
            "ops",
            format!(
                "a pipeline has at most {MAX_PIPELINE_OPS} operations, got {}",
                items.len()
            ),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_pipeline_op(i, item.trim()))
        .collect()
}

fn parse_pipeline_op(index: usize, item: &str) -> Result<Op, ApiError> {
    let label = format!("ops[{index}]");
    let (name, args) = match item.split_once('(') {
        Some((name, rest)) => match rest.strip_suffix(')') {
            Some(args) => (name.trim(), args),
            None => {
                return Err(bad(
                    &label,
                    format!("{label}: text after the closing parenthesis in {item:?}"),
                ))
            }
        },
        None => (item, ""),
    };
    if name.is_empty() {
        return Err(bad(
            &label,
            format!("{label}: an operation name is missing"),
        ));
    }
    if name == "info" || name == PIPELINE {
        return Err(bad(
            &label,
            format!("{label}: {name} cannot be part of a pipeline"),
        ));
    }
    let spec =
        find_op(name).ok_or_else(|| bad(&label, format!("{label}: unknown operation {name:?}")))?;
    let mut values = HashMap::new();
    for arg in args.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        let Some((key, raw)) = arg.split_once('=') else {
            return Err(bad(
                &label,
                format!("{label}: expected key=value, got {arg:?}"),
            ));
        };
        let key = key.trim();
        let Some(param) = spec.params.iter().find(|p| p.name == key) else {
            let hint = if OUTPUT_PARAMS.iter().any(|p| p.name == key) {
                " (output parameters go in the query string, not inside an op)"
            } else {
                ""
            };
            return Err(ApiError::BadParameter {
                param: format!("{label}.{key}"),
                message: format!("{label}: {name} has no parameter {key:?}{hint}"),
            });
        };
        let full = format!("{label}.{}", param.name);
        let value = parse_value(param, raw.trim(), &full)?;
        if values.insert(param.name, value).is_some() {
            return Err(bad(&full, format!("{full} is given more than once")));
        }
    }
    let values = Values(values);
    for param in spec.params {
        if param.required && !values.0.contains_key(param.name) {
            let full = format!("{label}.{}", param.name);
            return Err(bad(&full, format!("{full} is required for {name}")));
        }
    }
    build(spec, values, Some(&label))
}

/// One parameter as JSON for `/v1/ops`: `type` is `integer`, `number`,
/// `boolean`, `string` (with `enum`) or `color`.
pub fn describe_param(p: &ParamSpec) -> Json {
    let mut v = json!({
        "name": p.name,
        "required": p.required,
        "help": p.help,
    });
    if let Some(d) = p.default {
        v["default"] = json!(d);
    }
    match p.kind {
        Kind::UInt { min, max } => {
            v["type"] = json!("integer");
            v["minimum"] = json!(min);
            v["maximum"] = json!(max);
        }
        Kind::Int { min, max } => {
            v["type"] = json!("integer");
            v["minimum"] = json!(min);
            v["maximum"] = json!(max);
        }
        Kind::Float {
            min,
            max,
            exclusive_min,
            exclusive_max,
        } => {
            v["type"] = json!("number");
            v["minimum"] = json!(min);
            v["maximum"] = json!(max);
            v["exclusive_minimum"] = json!(exclusive_min);
            v["exclusive_maximum"] = json!(exclusive_max);
        }
        Kind::Bool => v["type"] = json!("boolean"),
        Kind::Choice(words) => {
            v["type"] = json!("string");
            v["enum"] = json!(words);
        }
        Kind::Color => {
            v["type"] = json!("color");
            v["pattern"] = json!(COLOR_PATTERN);
        }
    }
    v
}

/// What `Kind::Color` accepts, as a regular expression (for OpenAPI).
pub const COLOR_PATTERN: &str =
    "^([0-9a-fA-F]{6}|[0-9a-fA-F]{8}|white|black|transparent|red|green|blue|grey|gray)$";

/// The body of `GET /v1/ops`.
pub fn ops_listing() -> Json {
    let ops: Vec<Json> = public_ops()
        .map(|o| {
            json!({
                "name": o.name,
                "help": o.help,
                "alias_of": o.alias_of,
                "route": format!("/v1/{}", o.name),
                "params": o.params.iter().map(describe_param).collect::<Vec<_>>(),
                "example": o.example,
            })
        })
        .collect();
    json!({
        "ops": ops,
        "output_params": OUTPUT_PARAMS.iter().map(describe_param).collect::<Vec<_>>(),
        "pipeline": {
            "route": "/v1/pipeline",
            "param": "ops",
            "max_ops": MAX_PIPELINE_OPS,
            "grammar": "op(key=value,...),op,... — names as in /v1/{op}; values may not contain ( ) , =; info is not allowed",
            "example": "/v1/pipeline?ops=resize(width=400),blur(sigma=2)&format=webp",
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(op: &str, q: &str) -> Result<Task, ApiError> {
        parse_task(op, Some(q), Limits::default())
    }

    fn param_of(e: ApiError) -> String {
        match e {
            ApiError::BadParameter { param, .. } => param,
            ApiError::UnknownParameter(p) => p,
            other => panic!("expected a parameter error, got {other:?}"),
        }
    }

    #[test]
    fn resize_parses() {
        let t = task("resize", "width=400&format=webp&quality=90").expect("ok");
        assert_eq!(
            t.ops,
            vec![Op::Resize {
                width: Some(400),
                height: None,
                fit: Fit::Contain,
                gravity: Gravity::Centre,
                enlarge: false
            }]
        );
        assert_eq!(t.output.format, Some(OutputFormat::Webp));
        assert_eq!(t.output.quality, 90);
        let t = task("resize", "width=4&height=5&fit=cover&gravity=smart").expect("ok");
        assert!(matches!(
            t.ops[0],
            Op::Resize {
                fit: Fit::Cover,
                gravity: Gravity::Smart,
                ..
            }
        ));
    }

    #[test]
    fn bad_values_name_the_parameter() {
        assert_eq!(param_of(task("resize", "width=-5").unwrap_err()), "width");
        assert_eq!(param_of(task("resize", "width=0").unwrap_err()), "width");
        assert_eq!(param_of(task("resize", "").unwrap_err()), "width");
        assert_eq!(
            param_of(task("resize", "width=1&fit=squash").unwrap_err()),
            "fit"
        );
        assert_eq!(param_of(task("blur", "sigma=0").unwrap_err()), "sigma");
        assert_eq!(param_of(task("blur", "sigma=1000").unwrap_err()), "sigma");
        assert_eq!(param_of(task("blur", "sigma=nan").unwrap_err()), "sigma");
        assert_eq!(param_of(task("blur", "").unwrap_err()), "sigma");
        assert_eq!(param_of(task("rotate", "angle=360").unwrap_err()), "angle");
        assert_eq!(param_of(task("rotate", "angle=-400").unwrap_err()), "angle");
        assert_eq!(
            param_of(task("rotate", "angle=30&background=%23fff").unwrap_err()),
            "background"
        );
        assert_eq!(param_of(task("crop", "width=10").unwrap_err()), "height");
        assert_eq!(param_of(task("pad", "top=-1").unwrap_err()), "top");
        assert_eq!(
            param_of(task("brightness", "value=101").unwrap_err()),
            "value"
        );
        assert_eq!(
            param_of(task("saturation", "factor=-1").unwrap_err()),
            "factor"
        );
        assert_eq!(
            param_of(task("threshold", "value=256").unwrap_err()),
            "value"
        );
        assert_eq!(
            param_of(task("resize", "width=1&quality=0").unwrap_err()),
            "quality"
        );
        assert_eq!(
            param_of(task("resize", "width=1&format=bmp").unwrap_err()),
            "format"
        );
        assert_eq!(
            param_of(task("resize", "width=1&colors=1").unwrap_err()),
            "colors"
        );
        assert_eq!(
            param_of(task("resize", "width=1&widht=3").unwrap_err()),
            "widht"
        );
        assert_eq!(
            param_of(task("resize", "width=1&width=2").unwrap_err()),
            "width"
        );
    }

    #[test]
    fn colours_parse() {
        assert_eq!(parse_color("ff8000"), Some(Color::rgba(255, 128, 0, 255)));
        assert_eq!(parse_color("FF800080"), Some(Color::rgba(255, 128, 0, 128)));
        assert_eq!(parse_color("white"), Some(Color::WHITE));
        assert_eq!(parse_color("transparent"), Some(Color::TRANSPARENT));
        assert_eq!(parse_color("#ffffff"), None);
        assert_eq!(parse_color("fff"), None);
        assert_eq!(parse_color("gggggg"), None);
    }

    #[test]
    fn aliases_build_the_same_op() {
        assert_eq!(
            task("extract", "x=1&y=2&width=3&height=4").expect("ok").ops,
            task("crop", "x=1&y=2&width=3&height=4").expect("ok").ops
        );
        assert_eq!(
            task("extend", "top=5&background=white").expect("ok").ops,
            task("pad", "top=5&background=white").expect("ok").ops
        );
    }

    #[test]
    fn pipelines_parse_with_the_same_table() {
        let t = task(
            "pipeline",
            "ops=resize(width=400),blur(sigma=2),grayscale,flip()&format=png",
        )
        .expect("ok");
        assert_eq!(t.ops.len(), 4);
        assert_eq!(t.ops[0], task("resize", "width=400").expect("ok").ops[0]);
        assert_eq!(t.ops[1], Op::Blur { sigma: 2.0 });
        assert_eq!(t.ops[2], Op::Grayscale);
        assert_eq!(t.ops[3], Op::Flip);
        assert_eq!(t.output.format, Some(OutputFormat::Png));
        // URL-encoded whole value.
        let t = task("pipeline", "ops=resize%28width%3D10%29%2Cflop").expect("ok");
        assert_eq!(t.ops.len(), 2);

        let named = |q: &str| param_of(task("pipeline", q).unwrap_err());
        assert_eq!(named("ops=resize(width=1),blur(sigma=0)"), "ops[1].sigma");
        assert_eq!(named("ops=flip,flop,blur(sigma=500)"), "ops[2].sigma");
        assert_eq!(named("ops=flip,resize()"), "ops[1].width");
        assert_eq!(named("ops=flip,crop(width=3)"), "ops[1].height");
        assert_eq!(named("ops=flip,blur(radius=3)"), "ops[1].radius");
        assert_eq!(named("ops=resize(width=3,format=png)"), "ops[0].format");
        assert_eq!(named("ops=flip,explode"), "ops[1]");
        assert_eq!(named("ops=info"), "ops[0]");
        assert_eq!(named("ops=blur(sigma)"), "ops[0]");
        assert_eq!(named("ops=blur(sigma=1)x"), "ops[0]");
        assert_eq!(named("ops=blur((sigma=1))"), "ops");
        assert_eq!(named("ops=blur(sigma=1"), "ops");
        assert_eq!(named("ops="), "ops");
        assert_eq!(named("format=png"), "ops");
        assert_eq!(named("ops=flip&width=3"), "width");
        let seventeen = vec!["flip"; 17].join(",");
        assert_eq!(named(&format!("ops={seventeen}")), "ops");
        let sixteen = vec!["flip"; 16].join(",");
        assert_eq!(
            task("pipeline", &format!("ops={sixteen}"))
                .expect("16")
                .ops
                .len(),
            16
        );
    }

    #[test]
    fn auto_format_and_url_are_reported() {
        let p = parse_request(
            "resize",
            Some("width=3&format=auto&url=http%3A%2F%2Fx%2Fa.png"),
            Limits::default(),
        )
        .expect("ok");
        assert!(p.auto_format);
        assert_eq!(p.task.output.format, None);
        assert_eq!(p.url.as_deref(), Some("http://x/a.png"));
        assert_eq!(
            param_of(task("resize", "width=3&url=http://x/").unwrap_err()),
            "url"
        );
    }

    #[test]
    fn unknown_op_is_404() {
        let e = task("explode", "").unwrap_err();
        assert_eq!(e.status(), hyper::StatusCode::NOT_FOUND);
    }

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

    #[test]
    fn every_public_op_is_listed_with_its_params() {
        let listing = ops_listing();
        let ops = listing["ops"].as_array().expect("ops array");
        for spec in public_ops() {
            let entry = ops
                .iter()
                .find(|o| o["name"] == spec.name)
                .unwrap_or_else(|| panic!("{} missing", spec.name));
            let names: Vec<&str> = entry["params"]
                .as_array()
                .expect("params")
                .iter()
                .filter_map(|p| p["name"].as_str())
                .collect();
            let expected: Vec<&str> = spec.params.iter().map(|p| p.name).collect();
            assert_eq!(names, expected, "{}", spec.name);
        }
        assert_eq!(ops.len(), public_ops().count());
    }
}
