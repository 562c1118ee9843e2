//! TLS for outbound requests: rustls (no OpenSSL), with the Mozilla root
//! certificates built in (`webpki-roots`) plus the operator's own CA
//! (`--source-ca`, PEM) for private origins.
//!
//! The crypto provider is `ring`, compiled from the sources its crate
//! vendors (a C compiler is enough). Certificate names are checked against
//! the URL's host, never against the address the guard picked, so a
//! checked IP cannot be used to dodge verification.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::error::FetchError;

/// Why the TLS settings could not be built: a boot error.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read --source-ca {path}: {reason}")]
    Ca { path: String, reason: String },
    #[error("--source-ca {0} holds no certificate")]
    Empty(String),
}

/// The client settings: the built-in roots plus the certificates of
/// `extra_ca`, if any.
pub fn client_config(extra_ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        let shown = path.display().to_string();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| TlsSetupError::Ca {
                path: shown.clone(),
                reason: e.to_string(),
            })?
            .collect::<Result<_, _>>()
            .map_err(|e| TlsSetupError::Ca {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(TlsSetupError::Empty(shown));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| TlsSetupError::Ca {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Ca {
            path: "(protocol versions)".into(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Runs the TLS handshake over `tcp`, verifying the certificate for `host`.
pub(super) async fn connect(
    config: &Arc<ClientConfig>,
    host: &str,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, FetchError> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| FetchError::BadUrl(format!("{host} is not a valid TLS server name")))?;
    TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| FetchError::Tls(format!("TLS with {host} failed: {e}")))
}
