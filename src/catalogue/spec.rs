//! The vocabulary of the table: what a parameter is ([`ParamSpec`], its
//! [`Kind`]), what an operation is ([`OpSpec`]), how one raw value is
//! checked against its kind, and how a parameter is described in
//! `/v1/ops` and OpenAPI. The table itself is in `ops.rs`.

use std::collections::HashMap;

use serde_json::{json, Value as Json};

use super::error::{bad, ParamError};
use crate::proto::{Color, Op};

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
    /// A name the operator registered (an overlay): 1 to 64 of
    /// `A-Z a-z 0-9 - _ .`.
    Name,
    /// An `http://` or `https://` URL of at most [`MAX_URL_LEN`] bytes
    /// (where it may be fetched from is the front's decision).
    Url,
}

/// Longest URL a parameter may hold.
pub const MAX_URL_LEN: usize = 2048;

/// What `Kind::Name` accepts, as a regular expression (for OpenAPI).
pub const NAME_PATTERN: &str = "^[A-Za-z0-9._-]{1,64}$";

/// Whether `raw` is a registrable name (see [`Kind::Name`]).
pub fn is_name(raw: &str) -> bool {
    (1..=64).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
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
    pub(super) build: fn(&Values) -> Result<Op, ParamError>,
    /// Test-only operations exist only in `test-ops` builds and are never
    /// listed by `/v1/ops` or `/openapi.json`.
    pub test_only: bool,
    /// `extract` is `crop`, `extend` is `pad`: same parameters, same op.
    pub alias_of: Option<&'static str>,
    /// A query string for the docs and the README's curl examples.
    pub example: &'static str,
}

pub(super) const fn p(
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

/// A parsed parameter value.
#[derive(Debug, Clone)]
pub(super) enum Value {
    U(u64),
    I(i64),
    F(f64),
    B(bool),
    S(&'static str),
    C(Color),
    /// A name or a URL, as given.
    T(String),
}

/// Parsed values of one operation's parameters.
pub struct Values(pub(super) HashMap<&'static str, Value>);

impl Values {
    pub fn u64(&self, k: &str) -> Option<u64> {
        match self.0.get(k) {
            Some(Value::U(n)) => Some(*n),
            _ => None,
        }
    }
    pub fn u32(&self, k: &str) -> Option<u32> {
        self.u64(k).and_then(|n| u32::try_from(n).ok())
    }
    pub fn u8(&self, k: &str) -> Option<u8> {
        self.u64(k).and_then(|n| u8::try_from(n).ok())
    }
    pub fn f32(&self, k: &str) -> Option<f32> {
        match self.0.get(k) {
            Some(Value::F(n)) => Some(*n as f32),
            Some(Value::I(n)) => Some(*n as f32),
            _ => None,
        }
    }
    pub fn bool(&self, k: &str) -> Option<bool> {
        match self.0.get(k) {
            Some(Value::B(b)) => Some(*b),
            _ => None,
        }
    }
    pub fn choice(&self, k: &str) -> Option<&'static str> {
        match self.0.get(k) {
            Some(Value::S(s)) => Some(s),
            _ => None,
        }
    }
    pub fn text(&self, k: &str) -> Option<&str> {
        match self.0.get(k) {
            Some(Value::T(t)) => Some(t),
            _ => None,
        }
    }
    pub fn i32(&self, k: &str) -> Option<i32> {
        match self.0.get(k) {
            Some(Value::I(n)) => i32::try_from(*n).ok(),
            _ => None,
        }
    }
    pub fn color(&self, k: &str) -> Option<Color> {
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
pub(super) fn parse_value(spec: &ParamSpec, raw: &str, label: &str) -> Result<Value, ParamError> {
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
        Kind::Name if is_name(raw) => Ok(Value::T(raw.to_string())),
        Kind::Name => Err(bad(
            name,
            format!("{name} must be a name of 1 to 64 letters, digits, '-', '_' or '.', got {raw:?}"),
        )),
        Kind::Url => {
            let scheme_ok = raw.starts_with("http://") || raw.starts_with("https://");
            if scheme_ok && raw.len() <= MAX_URL_LEN {
                Ok(Value::T(raw.to_string()))
            } else {
                Err(bad(
                    name,
                    format!("{name} must be an http:// or https:// URL of at most {MAX_URL_LEN} bytes"),
                ))
            }
        }
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
        Kind::Name => {
            v["type"] = json!("name");
            v["pattern"] = json!(NAME_PATTERN);
        }
        Kind::Url => {
            v["type"] = json!("url");
            v["max_length"] = json!(MAX_URL_LEN);
        }
    }
    v
}

/// What `Kind::Color` accepts, as a regular expression (for OpenAPI).
pub const COLOR_PATTERN: &str =
    "^([0-9a-fA-F]{6}|[0-9a-fA-F]{8}|white|black|transparent|red|green|blue|grey|gray)$";

#[cfg(test)]
mod tests {
    use super::*;

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
}
