//! `GET /v1/ops`: the table as JSON, for people, scripts and the
//! playground page.

use serde_json::{json, Value as Json};

use super::ops::public_ops;
use super::output::OUTPUT_PARAMS;
use super::parse::MAX_PIPELINE_OPS;
use super::spec::describe_param;

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
