//! Outbound HTTP, to addresses chosen by clients: URL sources (`GET /v1/{op}?url=http://...`
//! fetches the image itself) and job callbacks (`callback_url=`, POSTed the
//! job's status when it ends).
//!
//! Both make the service a client into whatever network it sits in (SSRF),
//! so every hop is guarded:
//!
//! - off unless `--allow-url-source`; `http://` or `https://` (rustls, the
//!   Mozilla roots plus `--source-ca`; see `tls`); no credentials in the
//!   URL; a redirect from https to http is refused;
//! - the host must match `--allowed-source-hosts` when that list is set;
//! - the name is resolved once per hop and every address is checked with
//!   [`forbidden_reason`] (loopback, private, link-local, CGNAT, multicast,
//!   reserved, site-local, local-use NAT64, Teredo..., IPv4-mapped and
//!   NAT64/6to4 forms included). The connection
//!   goes to the checked address itself, never to a second resolution, so a
//!   DNS answer that changes between check and connect (rebinding) cannot
//!   slip through. `--allow-private-sources` lifts the address check, and
//!   `--allowed-private-networks` lifts it for the listed networks only;
//! - redirects are followed by hand (at most `--source-max-redirects`), each
//!   target checked exactly like the first URL;
//! - one deadline (`--source-timeout`) covers resolving, connecting,
//!   redirects and the body; the body is counted while it streams and cut at
//!   `--max-body`, so a huge or endless source costs at most that much.

//!
//! # Pieces
//!
//! - `guard`: the rules ([`SourceConfig`], [`Network`]) and the address
//!   check ([`forbidden_reason`]); no I/O.
//! - `error`: [`FetchError`], each variant with its status and code.
//! - `conns`: idle connections to sources, filed by scheme, host and the
//!   checked address, bounded.
//! - `client`: resolving, connecting to the checked address, the capped
//!   streaming read, redirects by hand; [`fetch`] for sources and
//!   [`post_json`] for job callbacks.

mod client;
mod conns;
mod error;
mod guard;
mod tls;

pub use client::{check_callback_url, fetch, post_json, Fetched};
pub use error::FetchError;
pub use guard::{forbidden_reason, Network, SourceConfig};
pub use tls::{client_config, TlsSetupError};
