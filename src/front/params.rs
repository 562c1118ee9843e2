//! Query parameters -> a typed [`Task`].
//!
//! Every operation is described once, in [`OPS`]: its parameters, their
//! types, ranges and defaults. The parser reads those descriptions, so a
//! parameter cannot be accepted by one part of the service and documented
//! differently by another. Bad input stops here with a 400 that names the
//! parameter; a worker never sees it.

use std::collections::HashMap;

use crate::front::error::{bad, ApiError};
use crate::proto::{Limits, Op, OutputFormat, OutputSpec, Task};

/// The type and range of one parameter.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// An integer in `min..=max`.
    UInt { min: u64, max: u64 },
    /// A number in `min..=max` (`min` exclusive when `exclusive_min`).
    Float {
        min: f64,
        max: f64,
        exclusive_min: bool,
    },
    /// `true|false|1|0`.
    Bool,
    /// One of the listed words.
    Choice(&'static [&'static str]),
}

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
    /// Test-only operations exist only in `test-ops` builds.
    test_only: bool,
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

/// Output parameters accepted by every image-producing operation.
pub const OUTPUT_PARAMS: &[ParamSpec] = &[
    p(
        "format",
        Kind::Choice(&["jpeg", "jpg", "png", "gif", "webp"]),
        false,
        None,
        "output format; default: the input's family (animated input stays an animated GIF)",
    ),
    p(
        "quality",
        Kind::UInt { min: 1, max: 100 },
        false,
        Some("80"),
        "JPEG quality",
    ),
];

/// Every operation of the API.
pub static OPS: &[OpSpec] = &[
    OpSpec {
        name: "resize",
        help: "scale keeping the aspect ratio; with width and height, fit inside the box",
        params: &[
            p("width", SIDE, false, None, "target width in pixels"),
            p("height", SIDE, false, None, "target height in pixels"),
            p(
                "enlarge",
                Kind::Bool,
                false,
                Some("false"),
                "allow scaling up",
            ),
        ],
        build: |v| {
            let width = v.u32("width");
            let height = v.u32("height");
            if width.is_none() && height.is_none() {
                return Err(bad("width", "resize needs width, height or both"));
            }
            Ok(Op::Resize {
                width,
                height,
                enlarge: v.bool("enlarge").unwrap_or(false),
            })
        },
        test_only: false,
    },
    OpSpec {
        name: "blur",
        help: "gaussian blur",
        params: &[p(
            "sigma",
            Kind::Float {
                min: 0.0,
                max: 100.0,
                exclusive_min: true,
            },
            true,
            None,
            "standard deviation in pixels",
        )],
        build: |v| {
            Ok(Op::Blur {
                sigma: v.f32("sigma").unwrap_or(1.0),
            })
        },
        test_only: false,
    },
    OpSpec {
        name: "grayscale",
        help: "convert to shades of grey (alpha is kept)",
        params: &[],
        build: |_| Ok(Op::Grayscale),
        test_only: false,
    },
    OpSpec {
        name: "rotate",
        help: "rotate clockwise",
        params: &[p(
            "angle",
            Kind::Choice(&["90", "180", "270"]),
            true,
            None,
            "degrees clockwise",
        )],
        build: |v| {
            let angle = v.choice("angle").and_then(|a| a.parse().ok()).unwrap_or(90);
            Ok(Op::Rotate { angle })
        },
        test_only: false,
    },
    OpSpec {
        name: "flip",
        help: "mirror top to bottom",
        params: &[],
        build: |_| Ok(Op::Flip),
        test_only: false,
    },
    OpSpec {
        name: "flop",
        help: "mirror left to right",
        params: &[],
        build: |_| Ok(Op::Flop),
        test_only: false,
    },
    OpSpec {
        name: "crop",
        help: "cut a rectangle (clipped to the image)",
        params: &[
            p("x", COORD, false, Some("0"), "left edge"),
            p("y", COORD, false, Some("0"), "top edge"),
            p("width", SIDE, true, None, "rectangle width"),
            p("height", SIDE, true, None, "rectangle height"),
        ],
        build: |v| {
            Ok(Op::Crop {
                x: v.u32("x").unwrap_or(0),
                y: v.u32("y").unwrap_or(0),
                width: v.u32("width").unwrap_or(1),
                height: v.u32("height").unwrap_or(1),
            })
        },
        test_only: false,
    },
    OpSpec {
        name: "convert",
        help: "change the format only (use with format=)",
        params: &[],
        build: |_| Ok(Op::Convert),
        test_only: false,
    },
    OpSpec {
        name: "info",
        help: "describe the image as JSON",
        params: &[],
        build: |_| Ok(Op::Info),
        test_only: false,
    },
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
    },
    OpSpec {
        name: "__panic",
        help: "test only: panic in the engine",
        params: &[],
        build: |_| Ok(Op::TestPanic),
        test_only: true,
    },
    OpSpec {
        name: "__abort",
        help: "test only: abort the worker",
        params: &[],
        build: |_| Ok(Op::TestAbort),
        test_only: true,
    },
    OpSpec {
        name: "__segv",
        help: "test only: crash the worker with SIGSEGV",
        params: &[],
        build: |_| Ok(Op::TestSegv),
        test_only: true,
    },
    OpSpec {
        name: "__open",
        help: "test only: open a file in the worker (forbidden by the sandbox)",
        params: &[],
        build: |_| Ok(Op::TestOpenFile),
        test_only: true,
    },
    OpSpec {
        name: "__socket",
        help: "test only: open a socket in the worker (forbidden by the sandbox)",
        params: &[],
        build: |_| Ok(Op::TestSocket),
        test_only: true,
    },
];

/// Looks up an operation that this build serves.
pub fn find_op(name: &str) -> Option<&'static OpSpec> {
    OPS.iter()
        .find(|o| o.name == name)
        .filter(|o| !o.test_only || cfg!(feature = "test-ops"))
}

/// A parsed parameter value.
#[derive(Debug, Clone, Copy)]
enum Value {
    U(u64),
    F(f64),
    B(bool),
    S(&'static str),
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
    fn f32(&self, k: &str) -> Option<f32> {
        match self.0.get(k) {
            Some(Value::F(n)) => Some(*n as f32),
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
}

fn parse_value(spec: &ParamSpec, raw: &str) -> Result<Value, ApiError> {
    let name = spec.name;
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
        Kind::Float {
            min,
            max,
            exclusive_min,
        } => {
            let n: f64 = raw
                .parse()
                .ok()
                .filter(|n: &f64| n.is_finite())
                .ok_or_else(|| bad(name, format!("{name} must be a number, got {raw:?}")))?;
            let low_ok = if exclusive_min { n > min } else { n >= min };
            if !low_ok || n > max {
                let low = if exclusive_min { "above" } else { "from" };
                return Err(bad(
                    name,
                    format!("{name} must be {low} {min} and at most {max}, got {n}"),
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

/// Parses `/v1/{op}?{query}` into a task carrying `limits`.
pub fn parse_task(op_name: &str, query: Option<&str>, limits: Limits) -> Result<Task, ApiError> {
    let spec = find_op(op_name).ok_or_else(|| ApiError::UnknownOp(op_name.to_string()))?;
    let mut values = HashMap::new();
    let mut output = OutputSpec::default();
    for (key, raw) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let param = spec
            .params
            .iter()
            .chain(OUTPUT_PARAMS.iter())
            .find(|p| p.name == key)
            .ok_or_else(|| ApiError::UnknownParameter(key.to_string()))?;
        let value = parse_value(param, &raw)?;
        if values.insert(param.name, value).is_some() {
            return Err(bad(
                param.name,
                format!("{} is given more than once", param.name),
            ));
        }
    }
    for param in spec.params {
        if param.required && !values.contains_key(param.name) {
            return Err(bad(
                param.name,
                format!("{} is required for {}", param.name, spec.name),
            ));
        }
    }
    let values = Values(values);
    if let Some(word) = values.choice("format") {
        output.format = output_format(word);
    }
    if let Some(q) = values.u64("quality") {
        output.quality = q as u8;
    }
    let op = (spec.build)(&values)?;
    Ok(Task {
        ops: vec![op],
        output,
        limits,
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
                enlarge: false
            }]
        );
        assert_eq!(t.output.format, Some(OutputFormat::Webp));
        assert_eq!(t.output.quality, 90);
    }

    #[test]
    fn bad_values_name_the_parameter() {
        assert_eq!(param_of(task("resize", "width=-5").unwrap_err()), "width");
        assert_eq!(param_of(task("resize", "width=0").unwrap_err()), "width");
        assert_eq!(param_of(task("resize", "").unwrap_err()), "width");
        assert_eq!(param_of(task("blur", "sigma=0").unwrap_err()), "sigma");
        assert_eq!(param_of(task("blur", "sigma=1000").unwrap_err()), "sigma");
        assert_eq!(param_of(task("blur", "sigma=nan").unwrap_err()), "sigma");
        assert_eq!(param_of(task("blur", "").unwrap_err()), "sigma");
        assert_eq!(param_of(task("rotate", "angle=45").unwrap_err()), "angle");
        assert_eq!(param_of(task("crop", "width=10").unwrap_err()), "height");
        assert_eq!(
            param_of(task("resize", "width=1&quality=0").unwrap_err()),
            "quality"
        );
        assert_eq!(
            param_of(task("resize", "width=1&format=bmp").unwrap_err()),
            "format"
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
    fn unknown_op_is_404() {
        let e = task("explode", "").unwrap_err();
        assert_eq!(e.status(), hyper::StatusCode::NOT_FOUND);
    }

    #[test]
    fn test_ops_exist_only_with_the_feature() {
        assert_eq!(find_op("__panic").is_some(), cfg!(feature = "test-ops"));
    }

    #[test]
    fn defaults_in_specs_parse_with_their_own_kind() {
        for op in OPS {
            for p in op.params.iter().chain(OUTPUT_PARAMS) {
                if let Some(d) = p.default {
                    assert!(
                        parse_value(p, d).is_ok(),
                        "{}.{} default {d:?}",
                        op.name,
                        p.name
                    );
                }
            }
        }
    }
}
