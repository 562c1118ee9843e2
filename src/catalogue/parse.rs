//! The parser: a request's query string (or a stored job's) becomes a
//! typed [`Task`], read against the table in `ops.rs`. Bad input stops
//! here with an error that names the parameter (`sigma`, or
//! `ops[2].sigma` inside a pipeline); a worker never sees it.
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

use super::error::{bad, ParamError};
use super::ops::{apply_dpr, find_op};
use super::output::{output_spec, OUTPUT_PARAMS};
use super::spec::{parse_value, OpSpec, ParamSpec, Values};
use crate::proto::{Limits, Op, OverlaySource, Task};

/// Most ops one pipeline may chain.
pub const MAX_PIPELINE_OPS: usize = 16;

/// The route name of pipelines, `/v1/pipeline`.
pub const PIPELINE: &str = "pipeline";

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

/// What a request runs, known from its path before its query is read.
enum Route<'a> {
    Op(&'static OpSpec),
    /// `/v1/pipeline`: the ops come in `ops=`.
    Pipeline,
    /// `/v1/preset/NAME`: the operator's pipeline.
    Preset(&'a [Op]),
}

/// Parses `/v1/{op}?{query}` (or `/v1/pipeline?ops=...`) into a task
/// carrying `limits`. `url` is only extracted here; whether URL sources are
/// allowed is the front's decision.
pub fn parse_request(
    op_name: &str,
    query: Option<&str>,
    limits: Limits,
) -> Result<Parsed, ParamError> {
    let route = if op_name == PIPELINE {
        Route::Pipeline
    } else {
        Route::Op(find_op(op_name).ok_or_else(|| ParamError::UnknownOp(op_name.to_string()))?)
    };
    parse_route(route, query, limits)
}

/// Parses the query of `/v1/preset/NAME`, whose ops are the preset's: the
/// query may add the output parameters, `dpr` and `url`.
pub fn parse_preset(ops: &[Op], query: Option<&str>, limits: Limits) -> Result<Parsed, ParamError> {
    parse_route(Route::Preset(ops), query, limits)
}

fn parse_route(
    route: Route<'_>,
    query: Option<&str>,
    limits: Limits,
) -> Result<Parsed, ParamError> {
    let pipeline = matches!(route, Route::Pipeline);
    let spec = match route {
        Route::Op(spec) => Some(spec),
        _ => None,
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
            .ok_or_else(|| ParamError::UnknownParameter(key.to_string()))?;
        let value = parse_value(param, &raw, param.name)?;
        if values.insert(param.name, value).is_some() {
            return Err(bad(
                param.name,
                format!("{} is given more than once", param.name),
            ));
        }
    }
    let values = Values(values);
    let mut ops = match route {
        Route::Op(spec) => vec![build(spec, values_for(spec, &values)?, None)?],
        Route::Pipeline => {
            let raw = ops_raw.ok_or_else(|| {
                bad(
                    "ops",
                    "ops is required: a list such as resize(width=400),blur(sigma=2)",
                )
            })?;
            parse_pipeline(&raw)?
        }
        Route::Preset(ops) => ops.to_vec(),
    };
    if let Some(dpr) = values.f32("dpr") {
        apply_dpr(&mut ops, dpr)?;
    }
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
) -> Result<(Task, Option<String>), ParamError> {
    let parsed = parse_request(op_name, query, limits)?;
    if parsed.url.is_some() {
        return Err(bad(
            "url",
            "url= is not supported here; send the image as the body",
        ));
    }
    let fetches = |op: &Op| {
        matches!(
            op,
            Op::Overlay {
                image: OverlaySource::Url(_),
                ..
            }
        )
    };
    if parsed.task.ops.iter().any(fetches) {
        return Err(bad(
            "image_url",
            "image_url= is not supported here; register the overlay with --overlay NAME=FILE and use image=NAME",
        ));
    }
    Ok((parsed.task, parsed.callback_url))
}

/// [`parse_job`] for callers that run the task in place (the in-process
/// benchmark), where a callback means nothing and is refused.
pub fn parse_task(op_name: &str, query: Option<&str>, limits: Limits) -> Result<Task, ParamError> {
    match parse_job(op_name, query, limits)? {
        (task, None) => Ok(task),
        (_, Some(_)) => Err(callback_not_here()),
    }
}

/// The error for `callback_url` outside the job routes.
pub fn callback_not_here() -> ParamError {
    bad(
        CALLBACK_PARAM,
        "callback_url goes with background jobs (POST /v1/jobs/{op}); a synchronous request answers directly",
    )
}

/// The op's own values (required ones checked), without output parameters.
fn values_for(spec: &OpSpec, all: &Values) -> Result<Values, ParamError> {
    let mut own = HashMap::new();
    for param in spec.params {
        match all.0.get(param.name) {
            Some(v) => {
                own.insert(param.name, v.clone());
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
fn build(spec: &OpSpec, values: Values, label: Option<&str>) -> Result<Op, ParamError> {
    (spec.build)(&values).map_err(|e| match (e, label) {
        (ParamError::BadParameter { param, message }, Some(label)) => ParamError::BadParameter {
            param: format!("{label}.{param}"),
            message: format!("{label}: {message}"),
        },
        (e, _) => e,
    })
}

/// Splits `a(b,c),d` at top-level commas, checking the parentheses.
fn split_ops(raw: &str) -> Result<Vec<&str>, ParamError> {
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
pub fn parse_pipeline(raw: &str) -> Result<Vec<Op>, ParamError> {
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

fn parse_pipeline_op(index: usize, item: &str) -> Result<Op, ParamError> {
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
            return Err(ParamError::BadParameter {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Fit, Gravity, OutputFormat};

    fn task(op: &str, q: &str) -> Result<Task, ParamError> {
        parse_task(op, Some(q), Limits::default())
    }

    fn param_of(e: ParamError) -> String {
        match e {
            ParamError::BadParameter { param, .. } => param,
            ParamError::UnknownParameter(p) => p,
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
                enlarge: false,
                linear: None,
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
        assert_eq!(e.status(), 404);
    }
}
