//! The client itself: HTTP/1.1 to an address the guard has checked, under
//! one deadline; a source fetch reuses an idle connection to that very
//! address (see `conns`), a callback always opens a fresh one.

use std::net::{IpAddr, SocketAddr};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::conns::Place;
use super::error::FetchError;
use super::guard::{address_allowed, host_allowed, SourceConfig};
use super::tls;
use crate::budget::Hold;

/// A checked target: where to connect and what to ask for.
struct Target {
    host: String,
    port: u16,
    host_header: String,
    path: String,
    /// `https://`: TLS to the host, its certificate checked for `host`.
    tls: bool,
}

/// A fetched source: its bytes, its `Last-Modified` (passed on to
/// clients) and the lifetime its origin gave it.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Bytes,
    pub last_modified: Option<String>,
    /// How long the origin says this version stays current
    /// (`Cache-Control: s-maxage` or `max-age`); `None` when it says
    /// nothing, or `no-cache`, `no-store` or `private`.
    pub fresh_for: Option<std::time::Duration>,
}

/// The lifetime an origin gives its answer in `Cache-Control`.
fn freshness(headers: &hyper::HeaderMap) -> Option<std::time::Duration> {
    let mut max_age = None;
    let mut s_maxage = None;
    for value in headers.get_all(header::CACHE_CONTROL) {
        for directive in value.to_str().ok()?.split(',') {
            let directive = directive.trim().to_ascii_lowercase();
            let (name, arg) = directive
                .split_once('=')
                .map_or((directive.as_str(), None), |(n, a)| {
                    (n.trim(), Some(a.trim()))
                });
            let seconds = || arg.and_then(|a| a.trim_matches('"').parse::<u64>().ok());
            match name {
                "no-cache" | "no-store" | "private" => return None,
                "max-age" => max_age = seconds(),
                "s-maxage" => s_maxage = seconds(),
                _ => {}
            }
        }
    }
    s_maxage.or(max_age).map(std::time::Duration::from_secs)
}

/// Parses and checks one URL (the first one or a redirect's).
fn target_of(cfg: &SourceConfig, uri: &Uri) -> Result<Target, FetchError> {
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") if cfg.tls.is_some() => true,
        Some("https") => {
            return Err(FetchError::BadUrl(
                "https is not set up on this server; use http://".into(),
            ))
        }
        _ => {
            return Err(FetchError::BadUrl(format!(
                "url must be an absolute http:// or https:// address, got {uri}"
            )))
        }
    };
    let authority = uri
        .authority()
        .ok_or_else(|| FetchError::BadUrl("url has no host".into()))?;
    if authority.as_str().contains('@') {
        return Err(FetchError::BadUrl(
            "url may not carry credentials (user@host)".into(),
        ));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if host.is_empty() {
        return Err(FetchError::BadUrl("url has no host".into()));
    }
    if !host_allowed(cfg, &host) {
        return Err(FetchError::Forbidden(format!(
            "host {host} is not in --allowed-source-hosts"
        )));
    }
    Ok(Target {
        port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
        tls,
        host_header: authority.as_str().to_string(),
        path: uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
        host,
    })
}

/// Resolves `target` and returns the first address the guard accepts.
async fn resolve(cfg: &SourceConfig, target: &Target) -> Result<SocketAddr, FetchError> {
    let addrs: Vec<SocketAddr> = match target.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, target.port)],
        Err(_) => tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|e| FetchError::Failed(format!("cannot resolve {}: {e}", target.host)))?
            .collect(),
    };
    let mut refused = None;
    for addr in addrs {
        match address_allowed(cfg, addr.ip()) {
            Ok(()) => return Ok(addr),
            Err(why) => refused = Some(why),
        }
    }
    Err(match refused {
        Some(why) => FetchError::Forbidden(why),
        None => FetchError::Failed(format!("{} has no address", target.host)),
    })
}

/// The next URL of a redirect: absolute, or relative to `base`. A redirect
/// from `https` to plain `http` is refused: it would hand the rest of the
/// exchange to anyone on the path.
fn redirect_target(base: &Uri, location: &str) -> Result<Uri, FetchError> {
    let bad = || {
        FetchError::Failed(format!(
            "the source redirected to an invalid address {location:?}"
        ))
    };
    let secure = base.scheme_str() == Some("https");
    if let Ok(uri) = location.parse::<Uri>() {
        if uri.scheme().is_some() {
            if secure && uri.scheme_str() != Some("https") {
                return Err(FetchError::Failed(format!(
                    "the source redirected from https to {uri}; refused"
                )));
            }
            return Ok(uri);
        }
    }
    let authority = base.authority().map(|a| a.as_str()).unwrap_or("");
    let path = if location.starts_with('/') {
        location.to_string()
    } else {
        let dir = base.path().rsplit_once('/').map_or("", |(d, _)| d);
        format!("{dir}/{location}")
    };
    let scheme = if secure { "https" } else { "http" };
    format!("{scheme}://{authority}{path}")
        .parse()
        .map_err(|_| bad())
}

/// A fresh connection to the checked address (TLS for `https://`).
async fn connect(
    cfg: &SourceConfig,
    addr: SocketAddr,
    target: &Target,
) -> Result<SendRequest<Full<Bytes>>, FetchError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| FetchError::Failed(format!("cannot connect to {}: {e}", target.host)))?;
    let _ = stream.set_nodelay(true);
    match (&cfg.tls, target.tls) {
        (Some(tls), true) => {
            handshake(
                TokioIo::new(tls::connect(tls, &target.host, stream).await?),
                target,
            )
            .await
        }
        _ => handshake(TokioIo::new(stream), target).await,
    }
}

/// The request for `target`: a GET for an image (`body` `None`), or a
/// JSON POST for a job callback.
fn request_for(target: &Target, body: Option<Bytes>) -> Result<Request<Full<Bytes>>, FetchError> {
    let host = HeaderValue::from_str(&target.host_header)
        .map_err(|_| FetchError::BadUrl("url has an invalid host".into()))?;
    let builder = Request::builder()
        .uri(target.path.as_str())
        .header(header::HOST, host)
        .header(
            header::USER_AGENT,
            concat!("pixfork/", env!("CARGO_PKG_VERSION")),
        );
    match body {
        None => builder
            .method(Method::GET)
            .header(header::ACCEPT, "image/*")
            .body(Full::new(Bytes::new())),
        Some(json) => builder
            .method(Method::POST)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(json)),
    }
    .map_err(|e| FetchError::BadUrl(format!("url cannot be requested: {e}")))
}

/// One request over a fresh connection (job callbacks: never reused).
async fn send_once(
    cfg: &SourceConfig,
    addr: SocketAddr,
    target: &Target,
    body: Option<Bytes>,
) -> Result<hyper::Response<hyper::body::Incoming>, FetchError> {
    let mut sender = connect(cfg, addr, target).await?;
    sender
        .send_request(request_for(target, body)?)
        .await
        .map_err(|e| FetchError::Failed(format!("request to {} failed: {e}", target.host)))
}

/// A GET of `target` at `addr`, over an idle connection to that very
/// place when there is one (see `conns`), else a fresh one. Returns the
/// connection too, to be kept once the body is read.
async fn get(
    cfg: &SourceConfig,
    place: &Place,
    target: &Target,
) -> Result<
    (
        hyper::Response<hyper::body::Incoming>,
        SendRequest<Full<Bytes>>,
    ),
    FetchError,
> {
    if let Some(mut sender) = cfg.conns.take(place) {
        if sender.ready().await.is_ok() {
            if let Ok(resp) = sender.send_request(request_for(target, None)?).await {
                return Ok((resp, sender));
            }
        }
        // The origin closed it meanwhile: nothing was answered, so a GET
        // on a fresh connection is safe.
    }
    let mut sender = connect(cfg, place.addr, target).await?;
    let resp = sender
        .send_request(request_for(target, None)?)
        .await
        .map_err(|e| FetchError::Failed(format!("request to {} failed: {e}", target.host)))?;
    Ok((resp, sender))
}

/// The HTTP/1.1 handshake over an open connection (plain or TLS); the
/// connection is driven by a task of its own until the exchange ends.
async fn handshake<T>(
    io: T,
    target: &Target,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, FetchError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| {
            FetchError::Failed(format!("HTTP handshake with {} failed: {e}", target.host))
        })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("outgoing connection ended: {e}");
        }
    });
    Ok(sender)
}

/// Reads a response body, refusing it as soon as it passes `limit`. With a
/// `hold`, every byte is taken from the front's budget before it is kept,
/// so a source counts against `--max-inflight-bytes` like a request body.
async fn read_capped(
    resp: hyper::Response<hyper::body::Incoming>,
    limit: u64,
    mut hold: Option<&mut Hold>,
) -> Result<Bytes, FetchError> {
    let declared = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(FetchError::TooLarge { limit });
    }
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut body = resp.into_body();
    let mut buf = BytesMut::new();
    if let Some(n) = declared {
        let n = usize::try_from(n).unwrap_or(cap).min(cap);
        if let Some(h) = hold.as_deref_mut() {
            h.grow(n)?;
        }
        buf.reserve(n);
    }
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| FetchError::Failed(format!("reading the source failed: {e}")))?;
        if let Some(data) = frame.data_ref() {
            if buf.len() + data.len() > cap {
                return Err(FetchError::TooLarge { limit });
            }
            // Past what was declared (or with nothing declared): take the
            // budget for these bytes before keeping them.
            let held = hold.as_deref().map_or(0, Hold::bytes) as usize;
            let beyond = (buf.len() + data.len()).saturating_sub(held);
            if let Some(h) = hold.as_deref_mut() {
                h.grow(beyond)?;
            }
            buf.extend_from_slice(data);
        }
    }
    Ok(buf.freeze())
}

/// Fetches `url` under every rule of the module docs; the body's bytes are
/// taken from `hold`'s budget as they arrive.
pub async fn fetch(cfg: &SourceConfig, url: &str, hold: &mut Hold) -> Result<Fetched, FetchError> {
    if !cfg.enabled {
        return Err(FetchError::Forbidden(
            "URL sources are off on this server (start it with --allow-url-source)".into(),
        ));
    }
    let uri: Uri = url
        .parse()
        .map_err(|_| FetchError::BadUrl(format!("url is not a valid address: {url:?}")))?;
    match tokio::time::timeout(cfg.timeout, follow(cfg, uri, hold)).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Timeout(cfg.timeout)),
    }
}

/// Most of a callback receiver's answer that is read (and dropped).
const CALLBACK_ANSWER_CAP: u64 = 64 * 1024;

/// Checks a job's `callback_url` when the job is submitted, so a URL that
/// can never be delivered to is a 400 now rather than a silent loss later:
/// the same URL rules as sources, and a literal IP address must pass the
/// address guard. (A name is resolved, and checked, when the callback is
/// sent: its addresses may change meanwhile.)
pub fn check_callback_url(cfg: &SourceConfig, url: &str) -> Result<(), FetchError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| FetchError::BadUrl(format!("not a valid address: {url:?}")))?;
    let target = target_of(cfg, &uri)?;
    if let Ok(ip) = target.host.parse::<IpAddr>() {
        address_allowed(cfg, ip).map_err(FetchError::Forbidden)?;
    }
    Ok(())
}

/// POSTs `json` to `url` (a job callback) under the guard of the module
/// docs: the host list of `cfg`, every resolved address checked, one
/// deadline. Redirects are not followed (a POST that moved is the
/// receiver's mistake, and following it would re-send the body elsewhere).
/// Returns the receiver's status.
pub async fn post_json(
    cfg: &SourceConfig,
    url: &str,
    json: Bytes,
) -> Result<StatusCode, FetchError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| FetchError::BadUrl(format!("not a valid address: {url:?}")))?;
    let send = async {
        let target = target_of(cfg, &uri)?;
        let addr = resolve(cfg, &target).await?;
        let resp = send_once(cfg, addr, &target, Some(json)).await?;
        let status = resp.status();
        // Read the answer (bounded) so the exchange ends cleanly; what it
        // says does not matter.
        let _ = read_capped(resp, CALLBACK_ANSWER_CAP, None).await;
        Ok(status)
    };
    match tokio::time::timeout(cfg.timeout, send).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Timeout(cfg.timeout)),
    }
}

async fn follow(cfg: &SourceConfig, mut uri: Uri, hold: &mut Hold) -> Result<Fetched, FetchError> {
    let mut redirects = 0u32;
    loop {
        let target = target_of(cfg, &uri)?;
        let addr = resolve(cfg, &target).await?;
        let place = Place {
            tls: target.tls,
            host: target.host.clone(),
            addr,
        };
        let (resp, conn) = get(cfg, &place, &target).await?;
        let status = resp.status();
        if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
            let location = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    FetchError::Failed(format!("the source answered {status} without a Location"))
                })?;
            if redirects >= cfg.max_redirects {
                return Err(FetchError::Failed(format!(
                    "the source redirected more than {} times",
                    cfg.max_redirects
                )));
            }
            redirects += 1;
            uri = redirect_target(&uri, location)?;
            continue;
        }
        if !status.is_success() {
            return Err(FetchError::Failed(format!("the source answered {status}")));
        }
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let last_modified = header(header::LAST_MODIFIED);
        let fresh_for = freshness(resp.headers());
        let bytes = read_capped(resp, cfg.max_bytes, Some(hold)).await?;
        // Read to its end: the connection can serve the next fetch.
        cfg.conns.put(place, conn);
        return Ok(Fetched {
            bytes,
            last_modified,
            fresh_for,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        let cfg = SourceConfig::default();
        let t = |u: &str| target_of(&cfg, &u.parse::<Uri>().expect("uri"));
        // https needs the TLS settings (the master always builds them).
        assert!(matches!(
            t("https://example.com/a.jpg"),
            Err(FetchError::BadUrl(_))
        ));
        assert!(matches!(
            t("ftp://example.com/a.jpg"),
            Err(FetchError::BadUrl(_))
        ));
        assert!(matches!(
            t("http://u:p@example.com/"),
            Err(FetchError::BadUrl(_))
        ));
        let ok = t("http://Example.COM.:8080/a/b.png?x=1").expect("ok");
        assert_eq!(
            (ok.host.as_str(), ok.port, ok.path.as_str()),
            ("example.com", 8080, "/a/b.png?x=1")
        );
        let base: Uri = "http://h:1/dir/a.png".parse().expect("uri");
        assert_eq!(
            redirect_target(&base, "/x.png").expect("r").to_string(),
            "http://h:1/x.png"
        );
        assert_eq!(
            redirect_target(&base, "y.png").expect("r").to_string(),
            "http://h:1/dir/y.png"
        );
        assert_eq!(
            redirect_target(&base, "http://other/z")
                .expect("r")
                .to_string(),
            "http://other/z"
        );
    }

    #[test]
    fn origin_lifetimes_are_read_from_cache_control() {
        let h = |v: &str| {
            let mut m = hyper::HeaderMap::new();
            m.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_str(v).expect("value"),
            );
            freshness(&m)
        };
        let secs = |n| Some(std::time::Duration::from_secs(n));
        assert_eq!(h("public, max-age=600"), secs(600));
        assert_eq!(h("max-age=600, s-maxage=60"), secs(60));
        assert_eq!(h("Max-Age=\"30\""), secs(30));
        assert_eq!(h("max-age=600, no-cache"), None);
        assert_eq!(h("private, max-age=600"), None);
        assert_eq!(h("no-store"), None);
        assert_eq!(h("max-age=soon"), None);
        assert_eq!(freshness(&hyper::HeaderMap::new()), None);
    }
}
