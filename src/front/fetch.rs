//! Outgoing HTTP chosen by clients: URL sources (`GET /v1/{op}?url=http://...`
//! fetches the image itself) and job callbacks (`callback_url=`, POSTed the
//! job's status when it ends).
//!
//! Both make the service a client into whatever network it sits in (SSRF),
//! so every hop is guarded:
//!
//! - off unless `--allow-url-source`; `http://` only (no TLS stack is
//!   compiled in); no credentials in the URL;
//! - the host must match `--allowed-source-hosts` when that list is set;
//! - the name is resolved once per hop and every address is checked with
//!   [`forbidden_reason`] (loopback, private, link-local, CGNAT, multicast,
//!   reserved..., IPv4-mapped and NAT64/6to4 forms included). The connection
//!   goes to the checked address itself, never to a second resolution, so a
//!   DNS answer that changes between check and connect (rebinding) cannot
//!   slip through. `--allow-private-sources` lifts the address check, and
//!   `--allowed-private-networks` lifts it for the listed networks only;
//! - redirects are followed by hand (at most `--source-max-redirects`), each
//!   target checked exactly like the first URL;
//! - one deadline (`--source-timeout`) covers resolving, connecting,
//!   redirects and the body; the body is counted while it streams and cut at
//!   `--max-body`, so a huge or endless source costs at most that much.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Settings of URL sources, from the master's flags.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// `--allow-url-source`.
    pub enabled: bool,
    /// `--allowed-source-hosts`: exact names, or `*.example.com` for any
    /// subdomain. Empty: any host (whose addresses pass the check).
    pub allowed_hosts: Vec<String>,
    /// `--allow-private-sources`: no address check at all.
    pub allow_private: bool,
    /// `--allowed-private-networks`: networks exempt from the address check.
    pub private_networks: Vec<Network>,
    /// `--source-timeout`: the whole fetch, redirects included.
    pub timeout: Duration,
    /// `--source-max-redirects`.
    pub max_redirects: u32,
    /// The byte cap (`--max-body`).
    pub max_bytes: u64,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            enabled: false,
            allowed_hosts: Vec::new(),
            allow_private: false,
            private_networks: Vec::new(),
            timeout: Duration::from_secs(10),
            max_redirects: 3,
            max_bytes: 32 << 20,
        }
    }
}

/// An IP network (`10.0.0.0/8`, `::1/128`; a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `addr[/prefix]`.
    pub fn parse(s: &str) -> Result<Network, String> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("invalid network {s:?}: not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("invalid network {s:?}: prefix must be 0-{max}"))?,
            None => max,
        };
        Ok(Network { addr, prefix })
    }

    /// Whether `ip` is inside this network (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// A failed fetch, as the client sees it.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL itself is unusable: 400 naming `url`.
    #[error("{0}")]
    BadUrl(String),
    /// Off, a host not on the list, or an address the guard refuses: 403.
    #[error("{0}")]
    Forbidden(String),
    /// The source is larger than `--max-body`: 413.
    #[error("the source is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// Could not connect, bad status, too many redirects...: 502.
    #[error("{0}")]
    Failed(String),
    /// Past `--source-timeout`: 504.
    #[error("the source did not answer within {0:?}")]
    Timeout(Duration),
}

impl FetchError {
    pub fn status(&self) -> StatusCode {
        match self {
            FetchError::BadUrl(_) => StatusCode::BAD_REQUEST,
            FetchError::Forbidden(_) => StatusCode::FORBIDDEN,
            FetchError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            FetchError::Failed(_) => StatusCode::BAD_GATEWAY,
            FetchError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            FetchError::BadUrl(_) => "bad_parameter",
            FetchError::Forbidden(_) => "source_forbidden",
            FetchError::TooLarge { .. } => "source_too_large",
            FetchError::Failed(_) => "source_failed",
            FetchError::Timeout(_) => "source_timeout",
        }
    }
}

/// The IPv4 address an IPv6 address stands for (mapped `::ffff:a.b.c.d`,
/// compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4 `2002:ab:cd::`),
/// so that every spelling of a private IPv4 address is checked as one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] && !(s[6] == 0 && s[7] <= 1) {
        return Some(tail);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(tail);
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

/// `ip` with an embedded IPv4 address replaced by that address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Why an address may not be fetched from by default, or `None` for a
/// public unicast address.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() {
                Some("private (RFC 1918)")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if a == 100 && (b & 0xC0) == 64 {
                Some("carrier-grade NAT (100.64.0.0/10)")
            } else if v4.is_multicast() {
                Some("multicast")
            } else if v4.is_broadcast() {
                Some("broadcast")
            } else if a == 0 {
                Some("unspecified (0.0.0.0/8)")
            } else if a >= 240
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b & 0xFE) == 18)
                || v4.is_documentation()
            {
                Some("reserved")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if (first & 0xFE00) == 0xFC00 {
                Some("unique local (fc00::/7)")
            } else if (first & 0xFFC0) == 0xFE80 {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if first == 0x2001 && v6.segments()[1] == 0x0db8 {
                Some("reserved (documentation)")
            } else {
                None
            }
        }
    }
}

/// Whether the configuration lets us connect to `ip`.
fn address_allowed(cfg: &SourceConfig, ip: IpAddr) -> Result<(), String> {
    if cfg.allow_private || cfg.private_networks.iter().any(|n| n.contains(ip)) {
        return Ok(());
    }
    match forbidden_reason(ip) {
        Some(reason) => Err(format!(
            "{ip} is a {reason} address; sources must be public (see --allow-private-sources)"
        )),
        None => Ok(()),
    }
}

fn host_allowed(cfg: &SourceConfig, host: &str) -> bool {
    if cfg.allowed_hosts.is_empty() {
        return true;
    }
    cfg.allowed_hosts
        .iter()
        .any(|pattern| match pattern.strip_prefix("*.") {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
            None => host == pattern,
        })
}

/// A checked target: where to connect and what to ask for.
struct Target {
    host: String,
    port: u16,
    host_header: String,
    path: String,
}

/// Parses and checks one URL (the first one or a redirect's).
fn target_of(cfg: &SourceConfig, uri: &Uri) -> Result<Target, FetchError> {
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(FetchError::BadUrl(
                "https sources are not supported (no TLS client is built in); use http://".into(),
            ))
        }
        _ => {
            return Err(FetchError::BadUrl(format!(
                "url must be an absolute http:// address, got {uri}"
            )))
        }
    }
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
        port: authority.port_u16().unwrap_or(80),
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

/// The next URL of a redirect: absolute, or relative to `base`.
fn redirect_target(base: &Uri, location: &str) -> Result<Uri, FetchError> {
    let bad = || {
        FetchError::Failed(format!(
            "the source redirected to an invalid address {location:?}"
        ))
    };
    if let Ok(uri) = location.parse::<Uri>() {
        if uri.scheme().is_some() {
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
    format!("http://{authority}{path}")
        .parse()
        .map_err(|_| bad())
}

/// One request over a fresh connection to the checked address: a GET for
/// an image (`body` `None`), or a JSON POST for a job callback.
async fn send_once(
    addr: SocketAddr,
    target: &Target,
    body: Option<Bytes>,
) -> Result<hyper::Response<hyper::body::Incoming>, FetchError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| FetchError::Failed(format!("cannot connect to {}: {e}", target.host)))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| {
            FetchError::Failed(format!("HTTP handshake with {} failed: {e}", target.host))
        })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("outgoing connection ended: {e}");
        }
    });
    let host = HeaderValue::from_str(&target.host_header)
        .map_err(|_| FetchError::BadUrl("url has an invalid host".into()))?;
    let builder = Request::builder()
        .uri(target.path.as_str())
        .header(header::HOST, host)
        .header(
            header::USER_AGENT,
            concat!("pixfork/", env!("CARGO_PKG_VERSION")),
        );
    let req = match body {
        None => builder
            .method(Method::GET)
            .header(header::ACCEPT, "image/*")
            .body(Full::new(Bytes::new())),
        Some(json) => builder
            .method(Method::POST)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(json)),
    }
    .map_err(|e| FetchError::BadUrl(format!("url cannot be requested: {e}")))?;
    sender
        .send_request(req)
        .await
        .map_err(|e| FetchError::Failed(format!("request to {} failed: {e}", target.host)))
}

/// Reads a response body, refusing it as soon as it passes `limit`.
async fn read_capped(
    resp: hyper::Response<hyper::body::Incoming>,
    limit: u64,
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
    let mut buf = BytesMut::with_capacity(declared.map_or(64 * 1024, |n| n as usize).min(cap));
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| FetchError::Failed(format!("reading the source failed: {e}")))?;
        if let Some(data) = frame.data_ref() {
            if buf.len() + data.len() > cap {
                return Err(FetchError::TooLarge { limit });
            }
            buf.extend_from_slice(data);
        }
    }
    Ok(buf.freeze())
}

/// Fetches `url` under every rule of the module docs.
pub async fn fetch(cfg: &SourceConfig, url: &str) -> Result<Bytes, FetchError> {
    if !cfg.enabled {
        return Err(FetchError::Forbidden(
            "URL sources are off on this server (start it with --allow-url-source)".into(),
        ));
    }
    let uri: Uri = url
        .parse()
        .map_err(|_| FetchError::BadUrl(format!("url is not a valid address: {url:?}")))?;
    match tokio::time::timeout(cfg.timeout, follow(cfg, uri)).await {
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
        let resp = send_once(addr, &target, Some(json)).await?;
        let status = resp.status();
        // Read the answer (bounded) so the exchange ends cleanly; what it
        // says does not matter.
        let _ = read_capped(resp, CALLBACK_ANSWER_CAP).await;
        Ok(status)
    };
    match tokio::time::timeout(cfg.timeout, send).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Timeout(cfg.timeout)),
    }
}

async fn follow(cfg: &SourceConfig, mut uri: Uri) -> Result<Bytes, FetchError> {
    let mut redirects = 0u32;
    loop {
        let target = target_of(cfg, &uri)?;
        let addr = resolve(cfg, &target).await?;
        let resp = send_once(addr, &target, None).await?;
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
        return read_capped(resp, cfg.max_bytes).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn the_guard_refuses_every_non_public_form() {
        for bad in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.5.4",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "255.255.255.255",
            "0.0.0.0",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:c0a8:101::1",
        ] {
            assert!(forbidden_reason(ip(bad)).is_some(), "{bad} must be refused");
        }
        for good in [
            "8.8.8.8",
            "1.1.1.1",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(forbidden_reason(ip(good)), None, "{good} is public");
        }
    }

    #[test]
    fn allow_lists() {
        let mut cfg = SourceConfig::default();
        assert!(address_allowed(&cfg, ip("127.0.0.1")).is_err());
        cfg.private_networks = vec![Network::parse("127.0.0.1/32").expect("net")];
        assert!(address_allowed(&cfg, ip("127.0.0.1")).is_ok());
        assert!(address_allowed(&cfg, ip("::ffff:127.0.0.1")).is_ok());
        assert!(address_allowed(&cfg, ip("127.0.0.2")).is_err());
        cfg.private_networks = vec![Network::parse("10.0.0.0/8").expect("net")];
        assert!(address_allowed(&cfg, ip("10.200.0.1")).is_ok());
        assert!(address_allowed(&cfg, ip("11.0.0.1")).is_ok());
        assert!(address_allowed(&cfg, ip("192.168.0.1")).is_err());
        cfg.allow_private = true;
        assert!(address_allowed(&cfg, ip("192.168.0.1")).is_ok());
        assert!(Network::parse("10.0.0.0/33").is_err());
        assert!(Network::parse("nope").is_err());

        cfg.allowed_hosts = vec!["img.example.com".into(), "*.cdn.example".into()];
        assert!(host_allowed(&cfg, "img.example.com"));
        assert!(host_allowed(&cfg, "a.cdn.example"));
        assert!(!host_allowed(&cfg, "cdn.example"));
        assert!(!host_allowed(&cfg, "evilcdn.example"));
        assert!(!host_allowed(&cfg, "example.com"));
    }

    #[test]
    fn urls_are_checked() {
        let cfg = SourceConfig::default();
        let t = |u: &str| target_of(&cfg, &u.parse::<Uri>().expect("uri"));
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
}
