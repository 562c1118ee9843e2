//! The image routes: `POST /v1/{op}`, `POST /v1/pipeline`, and with URL
//! sources their `GET ?url=` twins. Parse, get the bytes, run them on a
//! worker, answer with the image (or the info JSON).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::app::{not_allowed, App, Resp, Trace};
use super::auth;
use super::body::{drain, drain_unless_waiting, read_body};
use super::caching::{self, digest, result_key, Digest, Grant};
use super::error::{self, ApiError};
use crate::cache::{self, Entry, Flight, SourceVersion};
use crate::catalogue::{self, Attachment};
use crate::net;
use crate::pool::{Done, Input};
use crate::proto::Outcome;

/// Where presets live: `/v1/preset/NAME`.
pub(super) const PRESET_PREFIX: &str = "preset/";

/// `POST /v1/{op}`, `POST /v1/pipeline` and `POST /v1/preset/NAME` (image
/// in the body), and with
/// `--allow-url-source` also `GET`/`HEAD` with `url=`: check who asks,
/// parse, get the image, answer from the ETag when the client has this
/// result already, else run it on a worker and answer with the image (or
/// the info JSON).
pub(super) async fn image_route(
    app: &App,
    req: Request<Incoming>,
    op_name: &str,
    id: &str,
    trace: &mut Trace,
) -> Result<Resp, ApiError> {
    let sources = &app.cfg.sources;
    let method = req.method().clone();
    let from_url = (method == Method::GET || method == Method::HEAD) && sources.enabled;
    if method != Method::POST && !from_url {
        let allow = if sources.enabled {
            "GET, HEAD, POST"
        } else {
            "POST"
        };
        return Err(not_allowed(&method, allow));
    }
    // Who may ask: a signed GET (with a signing key), else an API key (when
    // keys are set). Decided on the raw target, before anything is read.
    let (query, grant) = match authorize(app, &req, from_url) {
        Ok(v) => v,
        Err(e) => {
            drain_unless_waiting(req).await;
            return Err(e);
        }
    };
    let parsed = match op_name.strip_prefix(PRESET_PREFIX) {
        Some(name) => match app.cfg.presets.get(name) {
            Some(ops) => catalogue::parse_preset(ops, query.as_deref(), app.cfg.limits),
            None => Err(catalogue::ParamError::UnknownOp(format!(
                "preset/{name} (no such preset; GET /v1/presets lists them)"
            ))),
        },
        None => catalogue::parse_request(op_name, query.as_deref(), app.cfg.limits),
    }
    .map(|mut p| {
        catalogue::resolve_linear(&mut p.task.ops, app.cfg.linear_resize);
        p
    })
    .map_err(ApiError::from)
    .and_then(|p| match (&p.url, from_url) {
        (Some(_), false) if !sources.enabled => Err(error::bad(
            "url",
            "url= is not accepted: URL sources are off on this server (see --allow-url-source)",
        )),
        (Some(_), false) => Err(error::bad(
            "url",
            "url= goes with GET; a POST sends the image as its body",
        )),
        (None, true) => Err(error::bad("url", "a GET needs url=http(s)://...")),
        _ if p.callback_url.is_some() => Err(catalogue::callback_not_here().into()),
        _ => Ok(p),
    });
    let parsed = match parsed {
        Ok(p) => p,
        Err(e) => {
            // Read (a bounded amount of) the image the client is sending, so
            // it gets to read the 400 instead of a reset.
            drain(req.into_body()).await;
            return Err(e);
        }
    };
    // The overlays' images: registered ones are in memory; `image_url=`
    // ones are fetched below, after admission, like the source.
    let attachments = match overlay_attachments(app, &parsed.task) {
        Ok(a) => a,
        Err(e) => {
            drain(req.into_body()).await;
            return Err(e);
        }
    };
    let mut task = parsed.task;
    if parsed.auto_format {
        // AVIF output cannot carry a profile (see `icc` in the catalogue):
        // with icc=keep, WebP is the better answer for the same browser.
        if accepts(req.headers(), "image/avif") && !task.output.keep_icc {
            task.output.format = Some(crate::proto::OutputFormat::Avif);
        } else if accepts(req.headers(), "image/webp") {
            task.output.format = Some(crate::proto::OutputFormat::Webp);
        }
    }
    let cacheable = app.cache.enabled() && !task.ops.iter().any(|op| op.is_test());
    let known = |key: String, last_modified: Option<String>| Known {
        key,
        last_modified,
        cache_control: caching::cache_control(app.cfg.cache_control.as_ref(), grant),
        vary: parsed.auto_format,
    };
    // A URL source whose version its origin said is still fresh: the
    // result's name is known without fetching, so a revalidation or a cache
    // hit costs no trip to the origin (nor a queue place).
    let known_overlays = known_digests(&attachments);
    if let (Some(url), Some(overlays)) = (&parsed.url, &known_overlays) {
        if let Some(v) = app.cache.fresh_source(url) {
            let key = result_key(&v.digest, overlays, &task);
            let k = known(key, v.last_modified.filter(|_| overlays.is_empty()));
            if let Some(resp) = k
                .answer_without_work(app, &method, req.headers(), cacheable)
                .await?
            {
                return Ok(resp);
            }
        }
    }
    // Admission before the bytes: a full queue answers 503 now, without
    // reading the body or fetching the source first.
    if let Err(full) = app.pool.has_room() {
        if parsed.url.is_none() {
            drain_unless_waiting(req).await;
        }
        return Err(full.into());
    }
    let conditional = req.headers().clone();
    let mut hold = app.budget.hold();
    let (body, source, last_modified) = match &parsed.url {
        Some(url) => {
            let f = net::fetch(sources, url, &mut hold).await?;
            let source = hashed(&f.bytes).await;
            let version = SourceVersion {
                digest: source,
                last_modified: f.last_modified.clone(),
            };
            app.cache.remember_source(url, version, f.fresh_for);
            (f.bytes, source, f.last_modified)
        }
        None => {
            let body = read_body(req, app.cfg.max_body, app.cfg.body_timeout, &mut hold).await?;
            let source = hashed(&body).await;
            (body, source, None)
        }
    };
    // `image_url=` overlays, fetched under the same guard and byte budget.
    let mut overlays = Vec::with_capacity(attachments.len());
    let mut overlay_digests = Vec::with_capacity(attachments.len());
    for a in attachments {
        let (bytes, digest) = match a {
            Attachment::Ready { bytes, digest } => (bytes, digest),
            Attachment::Fetch(url) => {
                let f = net::fetch(sources, &url, &mut hold)
                    .await
                    .map_err(|e| match e {
                        net::FetchError::BadUrl(m) => {
                            error::bad("image_url", format!("image_url: {m}"))
                        }
                        other => other.into(),
                    })?;
                let digest = hashed(&f.bytes).await;
                (f.bytes, digest)
            }
        };
        overlay_digests.push(digest);
        overlays.push(bytes);
    }
    // The source's date says nothing of when an overlay changed.
    let last_modified = last_modified.filter(|_| overlays.is_empty());
    let k = known(result_key(&source, &overlay_digests, &task), last_modified);
    trace.bytes_in = body.len() as u64;
    if let Some(resp) = k
        .answer_without_work(app, &method, &conditional, cacheable)
        .await?
    {
        return Ok(resp);
    }
    if body.is_empty() && !is_test_only(&task) {
        return Err(ApiError::EmptyBody);
    }
    // A miss that another request is computing right now waits for that
    // one's result instead of running the op again.
    let mut leader = None;
    match cacheable.then(|| app.cache.join(&k.key)).flatten() {
        Some(Flight::Waiter(rx)) => {
            if let Some(entry) = cache::wait(rx).await {
                return Ok(k.hit(app, &entry));
            }
        }
        Some(Flight::Leader(l)) => leader = Some(l),
        None => {}
    }
    if cacheable {
        app.metrics.cache_misses.inc();
    }
    // The hold travels with the bytes: the budget is given back when the
    // pool is done with them, or at once if this client goes away.
    let input = Input {
        bytes: body,
        attachments: overlays,
        hold: Some(hold),
    };
    let done = app.pool.run(id, task, input).await?;
    trace.done = Some((done.slot, done.pid));
    let (entry, timing) = into_entry(done)?;
    let mut resp = entry_response(&entry);
    let cache_desc = if cacheable { ", cache;desc=miss" } else { "" };
    if let Ok(v) = HeaderValue::from_str(&format!("{timing}{cache_desc}")) {
        resp.headers_mut().insert("server-timing", v);
    }
    k.finish(&mut resp);
    if cacheable {
        let entry = Arc::new(entry);
        if let Some(l) = leader {
            l.done(entry.clone());
        }
        app.cache.put(k.key, entry);
    }
    Ok(resp)
}

/// A result whose name is known: what its caching headers say.
struct Known {
    key: String,
    last_modified: Option<String>,
    cache_control: HeaderValue,
    /// `format=auto` chose the format: `Vary: Accept`.
    vary: bool,
}

impl Known {
    /// The caching headers of every answer about this result.
    fn finish(&self, resp: &mut Resp) {
        let h = resp.headers_mut();
        h.insert(header::ETAG, caching::etag(&self.key));
        h.insert(header::CACHE_CONTROL, self.cache_control.clone());
        if let Some(v) = self
            .last_modified
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            h.insert(header::LAST_MODIFIED, v);
        }
        if self.vary {
            h.insert(header::VARY, HeaderValue::from_static("Accept"));
        }
    }

    /// `304` for a GET or HEAD that has this result already, or the
    /// result from the cache: answers that run nothing. A hit's bytes are
    /// taken from `--max-inflight-bytes` while they are read, like a body.
    async fn answer_without_work(
        &self,
        app: &App,
        method: &Method,
        headers: &HeaderMap,
        cacheable: bool,
    ) -> Result<Option<Resp>, ApiError> {
        if method != Method::POST && caching::not_modified(headers, &self.key) {
            let mut resp = Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = StatusCode::NOT_MODIFIED;
            self.finish(&mut resp);
            return Ok(Some(resp));
        }
        let Some(size) = cacheable.then(|| app.cache.size_of(&self.key)).flatten() else {
            return Ok(None);
        };
        let mut hold = app.budget.hold();
        hold.grow(usize::try_from(size).unwrap_or(usize::MAX))?;
        Ok(app
            .cache
            .get(&self.key)
            .await
            .map(|entry| self.hit(app, &entry)))
    }

    /// A response from the cache (or from a concurrent identical request).
    fn hit(&self, app: &App, entry: &Entry) -> Resp {
        app.metrics.cache_hits.inc();
        let mut resp = entry_response(entry);
        resp.headers_mut()
            .insert("server-timing", HeaderValue::from_static("cache;desc=hit"));
        self.finish(&mut resp);
        resp
    }
}

/// The digest of a body or a fetched source: on a blocking thread past
/// 256 KiB, so a 32 MiB image does not hold up the event loop for its hash.
async fn hashed(bytes: &Bytes) -> Digest {
    if bytes.len() < 256 << 10 {
        return digest(bytes);
    }
    let b = bytes.clone();
    match tokio::task::spawn_blocking(move || digest(&b)).await {
        Ok(d) => d,
        // The blocking pool is shutting down: hash here rather than answer
        // without a name.
        Err(_) => digest(bytes),
    }
}

/// Checks the signature (`GET` with a signing key) or the API key (when
/// keys are set). Returns the query to parse (a signed one without `sig`
/// and `expires`) and who was let in.
fn authorize(
    app: &App,
    req: &Request<Incoming>,
    from_url: bool,
) -> Result<(Option<String>, Grant), ApiError> {
    let raw_query = req.uri().query().map(str::to_string);
    if from_url {
        if let Some(signer) = &app.cfg.signer {
            let target = req
                .uri()
                .path_and_query()
                .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
            let (query, expires) = signer.verify(&target)?;
            return Ok((Some(query), Grant::Signed { expires }));
        }
    }
    if let Some(keys) = &app.cfg.api_keys {
        if !keys.allows(req.headers()) {
            return Err(auth::unauthorized());
        }
        return Ok((raw_query, Grant::Key));
    }
    Ok((raw_query, Grant::Open))
}

/// Whether `Accept` names `media` (`image/avif`, `image/webp`) with a
/// non-zero quality. Wildcards do not count: browsers that decode these
/// formats list them explicitly, and `*/*` from a script says nothing about
/// what it can show.
fn accepts(headers: &hyper::HeaderMap, media_type: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            if !media.eq_ignore_ascii_case(media_type) {
                return false;
            }
            // q=0 means "not acceptable".
            !parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            })
        })
}

/// What the task's overlay ops need: registered images by name, or URLs
/// to fetch (refused when URL sources are off, as `url=` is).
pub(super) fn overlay_attachments(
    app: &App,
    task: &crate::proto::Task,
) -> Result<Vec<Attachment>, ApiError> {
    let attachments = app.cfg.overlays.attachments(task)?;
    let fetches = attachments
        .iter()
        .any(|a| matches!(a, Attachment::Fetch(_)));
    if fetches && !app.cfg.sources.enabled {
        return Err(error::bad(
            "image_url",
            "image_url= is not accepted: URL sources are off on this server (see --allow-url-source); \
             use image=NAME of an overlay registered with --overlay",
        ));
    }
    Ok(attachments)
}

/// The overlays' digests when all of them are known without fetching
/// (registered ones are hashed once, at start).
fn known_digests(attachments: &[Attachment]) -> Option<Vec<Digest>> {
    attachments
        .iter()
        .map(|a| match a {
            Attachment::Ready { digest, .. } => Some(*digest),
            Attachment::Fetch(_) => None,
        })
        .collect()
}

/// Test ops need no image, so their requests may have empty bodies.
fn is_test_only(task: &crate::proto::Task) -> bool {
    task.ops.iter().all(|op| op.is_test())
}

/// The result of a finished request as a cache entry, with its
/// `Server-Timing` stages.
fn into_entry(done: Done) -> Result<(Entry, String), ApiError> {
    let t = done.timing;
    let timing = format!(
        "queue;dur={:.3}, decode;dur={:.3}, ops;dur={:.3}, encode;dur={:.3}, worker;dur={:.3}",
        done.queued.as_secs_f64() * 1000.0,
        t.decode_us as f64 / 1000.0,
        t.ops_us as f64 / 1000.0,
        t.encode_us as f64 / 1000.0,
        done.worker.as_secs_f64() * 1000.0,
    );
    let entry = match done.outcome {
        Outcome::Image(meta) => Entry {
            content_type: meta.format.mime().to_string(),
            headers: vec![
                ("x-image-width".into(), meta.width.to_string()),
                ("x-image-height".into(), meta.height.to_string()),
                ("x-image-frames".into(), meta.frames.to_string()),
            ],
            body: Bytes::from(done.payload),
        },
        Outcome::Info(info) => Entry {
            content_type: "application/json".into(),
            headers: Vec::new(),
            body: Bytes::from(serde_json::to_vec(&info).unwrap_or_default()),
        },
        Outcome::Error(e) => return Err(ApiError::Work(e)),
    };
    Ok((entry, timing))
}

/// A 200 carrying `entry`.
fn entry_response(entry: &Entry) -> Resp {
    let mut resp = Response::new(Full::new(entry.body.clone()));
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&entry.content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    for (name, value) in &entry.headers {
        if let (Ok(n), Ok(v)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            h.insert(n, v);
        }
    }
    resp
}

/// Has a worker describe every registered overlay before anything is
/// served, so a file that is not an image (or is over the limits) stops
/// the start with its name instead of failing every request that uses it.
/// The master itself never decodes it.
pub async fn check_overlays(
    pool: &crate::pool::Pool,
    overlays: &catalogue::Overlays,
    limits: crate::proto::Limits,
) -> Result<(), String> {
    for (name, bytes) in overlays.iter() {
        // Under the budget a request's overlays get: one frame's pixels,
        // every frame counted.
        let task = crate::proto::Task {
            ops: vec![crate::proto::Op::Info],
            output: Default::default(),
            limits: crate::proto::Limits {
                max_total_pixels: limits.max_pixels.min(limits.max_total_pixels),
                ..limits
            },
        };
        let refused = |why: String| format!("--overlay {name}: {why}");
        let done = pool
            .run("overlay-check", task, Input::from(bytes.clone()))
            .await
            .map_err(|e| refused(format!("could not be checked: {e}")))?;
        match done.outcome {
            Outcome::Info(_) => {}
            Outcome::Error(e) => {
                return Err(refused(format!(
                    "not an image the workers can use: {}",
                    e.message
                )))
            }
            Outcome::Image(_) => return Err(refused("unexpected answer to info".into())),
        }
    }
    Ok(())
}
