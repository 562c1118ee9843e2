//! `GET /openapi.json`: an OpenAPI 3.0 description of the whole HTTP API.
//!
//! Generated at request time from the same [`OPS`](crate::catalogue::OPS)
//! table the parser reads, so every route's query parameters, types, ranges
//! and defaults are exactly what the service accepts: the document cannot
//! drift from the code. Test ops never appear.

use serde_json::{json, Map, Value as Json};

use crate::catalogue::{
    public_ops, Kind, ParamSpec, COLOR_PATTERN, MAX_PIPELINE_OPS, MAX_URL_LEN, NAME_PATTERN,
    OUTPUT_PARAMS,
};

/// JSON Schema (OpenAPI 3.0 dialect) of one query parameter's value.
fn schema_of(p: &ParamSpec) -> Json {
    let mut s = match p.kind {
        Kind::UInt { min, max } => json!({"type": "integer", "minimum": min, "maximum": max}),
        Kind::Int { min, max } => json!({"type": "integer", "minimum": min, "maximum": max}),
        Kind::Float {
            min,
            max,
            exclusive_min,
            exclusive_max,
        } => json!({
            "type": "number",
            "minimum": min,
            "maximum": max,
            "exclusiveMinimum": exclusive_min,
            "exclusiveMaximum": exclusive_max,
        }),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::Choice(words) => json!({"type": "string", "enum": words}),
        Kind::Color => json!({"type": "string", "pattern": COLOR_PATTERN}),
        Kind::Name => json!({"type": "string", "pattern": NAME_PATTERN}),
        Kind::Url => json!({
            "type": "string",
            "format": "uri",
            "pattern": "^https?://",
            "maxLength": MAX_URL_LEN,
        }),
    };
    if let Some(d) = p.default {
        s["default"] = match p.kind {
            Kind::UInt { .. } | Kind::Int { .. } => d
                .parse::<i64>()
                .map(Json::from)
                .unwrap_or_else(|_| json!(d)),
            Kind::Float { .. } => d
                .parse::<f64>()
                .map(Json::from)
                .unwrap_or_else(|_| json!(d)),
            Kind::Bool => json!(d == "true"),
            _ => json!(d),
        };
    }
    s
}

fn query_param(p: &ParamSpec) -> Json {
    json!({
        "name": p.name,
        "in": "query",
        "required": p.required,
        "description": p.help,
        "schema": schema_of(p),
    })
}

fn error_responses(codes: &[&str]) -> Map<String, Json> {
    codes
        .iter()
        .map(|c| {
            (
                (*c).to_string(),
                json!({"$ref": "#/components/responses/Error"}),
            )
        })
        .collect()
}

/// Errors any image route can answer (parameters, body, limits, pool).
const IMAGE_ERRORS: &[&str] = &[
    "400", "401", "403", "404", "408", "413", "415", "422", "500", "502", "503", "504",
];

fn image_body() -> Json {
    json!({
        "required": true,
        "description": "the image bytes (JPEG, PNG, GIF, WebP, BMP, TIFF, ICO, AVIF, HEIC/HEIF, JPEG XL, SVG); the format is sniffed",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    })
}

fn image_ok() -> Json {
    let binary = json!({"schema": {"type": "string", "format": "binary"}});
    json!({
        "description": "the transformed image",
        "headers": {
            "X-Image-Width": {"schema": {"type": "integer"}},
            "X-Image-Height": {"schema": {"type": "integer"}},
            "X-Image-Frames": {"schema": {"type": "integer"}},
            "Vary": {"description": "Accept, when format=auto", "schema": {"type": "string"}},
        },
        "content": {
            "image/jpeg": binary,
            "image/png": binary,
            "image/gif": binary,
            "image/webp": binary,
            "image/avif": binary,
        },
    })
}

fn url_param() -> Json {
    json!({
        "name": "url",
        "in": "query",
        "required": true,
        "description": "http:// or https:// address of the image (only with --allow-url-source; private addresses refused unless allowed)",
        "schema": {"type": "string", "format": "uri"},
    })
}

/// The POST (body) operation of one image route, and its GET (URL source)
/// operation when this server has URL sources on.
fn image_route(id: &str, summary: &str, params: Vec<Json>, info: bool, url_sources: bool) -> Json {
    let mut ok = Map::new();
    ok.insert(
        "200".to_string(),
        if info {
            json!({"description": "what the image is", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ImageInfo"}}}})
        } else {
            image_ok()
        },
    );
    ok.extend(error_responses(IMAGE_ERRORS));
    let mut get_params = params.clone();
    get_params.push(url_param());
    let mut route = json!({
        "post": {
            "operationId": id,
            "summary": summary,
            "parameters": params,
            "requestBody": image_body(),
            "responses": ok,
        },
    });
    if url_sources {
        route["get"] = json!({
            "operationId": format!("{id}_from_url"),
            "summary": format!("{summary} (image fetched from url=)"),
            "parameters": get_params,
            "responses": ok,
        });
    }
    route
}

fn simple_get(id: &str, summary: &str, content_type: &str, schema: Json) -> Json {
    json!({"get": {
        "operationId": id,
        "summary": summary,
        "responses": {"200": {"description": "OK", "content": {content_type: {"schema": schema}}}},
    }})
}

fn job_id_param() -> Json {
    json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}})
}

/// The whole document for this server: the `GET /v1/{op}?url=` routes
/// only when `url_sources` (`--allow-url-source`) is on, so the document
/// lists exactly the methods each route answers.
pub fn document(url_sources: bool) -> Json {
    let mut paths = Map::new();
    paths.insert(
        "/healthz".into(),
        simple_get(
            "healthz",
            "liveness: 200 while the front process lives",
            "application/json",
            json!({"type": "object", "properties": {"status": {"type": "string"}}}),
        ),
    );
    let mut readyz = simple_get(
        "readyz",
        "readiness: every worker slot; 503 while none is ready",
        "application/json",
        json!({"type": "object"}),
    );
    readyz["get"]["responses"]["503"] = json!({"description": "no worker is ready"});
    paths.insert("/readyz".into(), readyz);
    paths.insert(
        "/metrics".into(),
        simple_get(
            "metrics",
            "Prometheus metrics",
            "application/openmetrics-text",
            json!({"type": "string"}),
        ),
    );
    paths.insert(
        "/v1/ops".into(),
        simple_get(
            "list_ops",
            "every operation with its parameters, types, ranges and defaults",
            "application/json",
            json!({"type": "object"}),
        ),
    );
    paths.insert(
        "/openapi.json".into(),
        simple_get(
            "openapi",
            "this document",
            "application/json",
            json!({"type": "object"}),
        ),
    );
    let output: Vec<Json> = OUTPUT_PARAMS.iter().map(query_param).collect();
    for op in public_ops() {
        let info = op.name == "info";
        let mut params: Vec<Json> = op.params.iter().map(query_param).collect();
        params.extend(output.iter().cloned());
        let summary = match op.alias_of {
            Some(of) => format!("{} (alias of {of})", op.help),
            None => op.help.to_string(),
        };
        paths.insert(
            format!("/v1/{}", op.name),
            image_route(op.name, &summary, params, info, url_sources),
        );
    }
    let mut pipeline_params = vec![json!({
        "name": "ops",
        "in": "query",
        "required": true,
        "description": format!(
            "up to {MAX_PIPELINE_OPS} ops: op(key=value,...),op,... with the names and parameters of /v1/{{op}}; values may not contain ( ) , =; info is not allowed"
        ),
        "schema": {"type": "string"},
        "example": "resize(width=400),blur(sigma=2)",
    })];
    pipeline_params.extend(output.iter().cloned());
    paths.insert(
        "/v1/pipeline".into(),
        image_route(
            "pipeline",
            "run several operations in order",
            pipeline_params,
            false,
            url_sources,
        ),
    );
    let mut preset_params = vec![json!({
        "name": "name",
        "in": "path",
        "required": true,
        "description": "a preset the server was started with (--preset, --preset-file); GET /v1/presets lists them",
        "schema": {"type": "string", "pattern": "^[a-z0-9_-]{1,64}$"},
    })];
    preset_params.extend(output.iter().cloned());
    paths.insert(
        "/v1/preset/{name}".into(),
        image_route(
            "preset",
            "run a named pipeline of this server",
            preset_params,
            false,
            url_sources,
        ),
    );
    paths.insert(
        "/v1/overlays".into(),
        simple_get(
            "list_overlays",
            "the overlays of this server (--overlay): name and bytes, for overlay?image=NAME",
            "application/json",
            json!({"type": "object"}),
        ),
    );
    paths.insert(
        "/v1/presets".into(),
        simple_get(
            "list_presets",
            "the presets of this server: name and ops",
            "application/json",
            json!({"type": "object"}),
        ),
    );

    let op_names: Vec<&str> = public_ops()
        .map(|o| o.name)
        .chain(std::iter::once("pipeline"))
        .collect();
    let mut accepted = Map::new();
    accepted.insert(
        "202".into(),
        json!({
            "description": "stored; poll status_url",
            "headers": {"Location": {"schema": {"type": "string"}}},
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobAccepted"}}},
        }),
    );
    accepted.extend(error_responses(&["400", "404", "413", "503"]));
    paths.insert(
        "/v1/jobs/{op}".into(),
        json!({"post": {
            "operationId": "submit_job",
            "summary": "run an operation in the background; query parameters as for /v1/{op}",
            "parameters": [
                {"name": "op", "in": "path", "required": true, "schema": {"type": "string", "enum": op_names}},
                {"name": "callback_url", "in": "query", "required": false,
                 "description": "http:// URL POSTed the job's status JSON when it ends (public addresses only, unless the operator allows private networks)",
                 "schema": {"type": "string", "format": "uri"}},
            ],
            "requestBody": image_body(),
            "responses": accepted,
        }}),
    );
    let mut job_get = Map::new();
    job_get.insert(
        "200".into(),
        json!({"description": "the job", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}}),
    );
    job_get.extend(error_responses(&["404", "410", "503"]));
    let mut job_delete = Map::new();
    job_delete.insert("204".into(), json!({"description": "cancelled or removed"}));
    job_delete.extend(error_responses(&["404", "409", "410", "503"]));
    paths.insert(
        "/v1/jobs/{id}".into(),
        json!({
            "get": {"operationId": "get_job", "summary": "status of a job", "parameters": [job_id_param()], "responses": job_get},
            "delete": {"operationId": "delete_job", "summary": "cancel a queued job or remove a finished one", "parameters": [job_id_param()], "responses": job_delete},
        }),
    );
    let mut result = Map::new();
    // The image, or for an `info` job its JSON description.
    let mut done = image_ok();
    done["content"]["application/json"] =
        json!({"schema": {"$ref": "#/components/schemas/ImageInfo"}});
    result.insert("200".into(), done);
    result.extend(error_responses(&[
        "404", "409", "410", "413", "415", "422", "500", "502", "503", "504",
    ]));
    paths.insert(
        "/v1/jobs/{id}/result".into(),
        json!({"get": {"operationId": "job_result", "summary": "the result of a done job", "parameters": [job_id_param()], "responses": result}}),
    );
    paths.insert(
        "/v1/jobs".into(),
        simple_get(
            "job_counts",
            "job counts by status",
            "application/json",
            json!({"type": "object"}),
        ),
    );

    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "pixfork",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Image processing over pre-forked, crash-isolated workers. Send the image as the raw body.",
        },
        "paths": paths,
        "components": {
            "responses": {
                "Error": {
                    "description": "an error; `param` names the offending parameter",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": {"type": "string", "enum": super::error::ERROR_CODES},
                            "message": {"type": "string"},
                            "param": {"type": "string"},
                        },
                    }},
                },
                "ImageInfo": {
                    "type": "object",
                    "properties": {
                        "format": {"type": "string"},
                        "width": {"type": "integer"},
                        "height": {"type": "integer"},
                        "frames": {"type": "integer"},
                        "has_alpha": {"type": "boolean"},
                        "delays_ms": {"type": "array", "items": {"type": "integer"}},
                        "loop_count": {"type": "integer", "nullable": true},
                        "color_type": {"type": "string"},
                        "bit_depth": {"type": "integer"},
                        "orientation": {"type": "integer", "minimum": 1, "maximum": 8},
                        "pages": {"type": "integer", "minimum": 0, "description": "pages of a multi-page TIFF; 1 otherwise"},
                        "icc": {"type": "string", "nullable": true, "description": "the embedded ICC profile's description; null without one"},
                        "exif": {"type": "boolean", "description": "the input carries EXIF"},
                        "xmp": {"type": "boolean", "description": "the input carries an XMP packet"},
                        "bytes": {"type": "integer"},
                    },
                },
                "JobAccepted": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "status": {"type": "string", "enum": ["queued"]},
                        "status_url": {"type": "string"},
                        "result_url": {"type": "string"},
                    },
                },
                "Job": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "op": {"type": "string"},
                        "status": {"type": "string", "enum": ["queued", "running", "done", "failed"]},
                        "attempts": {"type": "integer"},
                        "created_at": {"type": "string", "format": "date-time"},
                        "started_at": {"type": "string", "format": "date-time"},
                        "finished_at": {"type": "string", "format": "date-time"},
                        "instance": {"type": "string"},
                        "error": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}}},
                        "status_url": {"type": "string"},
                        "result_url": {"type": "string"},
                    },
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_has_a_route_with_its_parameters() {
        let doc = document(true);
        assert!(doc["paths"]["/v1/resize"]["get"].is_object());
        assert!(document(false)["paths"]["/v1/resize"]["get"].is_null());
        let paths = doc["paths"].as_object().expect("paths");
        for op in public_ops() {
            let route = &paths[&format!("/v1/{}", op.name)];
            let params = route["post"]["parameters"].as_array().expect("parameters");
            for p in op.params.iter().chain(OUTPUT_PARAMS) {
                assert!(
                    params.iter().any(|q| q["name"] == p.name),
                    "{}: {} missing",
                    op.name,
                    p.name
                );
            }
        }
        for route in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/v1/pipeline",
            "/v1/ops",
            "/openapi.json",
            "/v1/jobs/{op}",
            "/v1/jobs/{id}",
            "/v1/jobs/{id}/result",
        ] {
            assert!(paths.contains_key(route), "{route}");
        }
        assert!(!paths.keys().any(|k| k.contains("__")), "no test ops");
        assert_eq!(doc["openapi"], "3.0.3");
    }
}
