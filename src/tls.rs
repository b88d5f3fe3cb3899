//! HTTPS: the rustls server configuration built from the operator's PEM
//! files at start-up. Each accepted connection is wrapped by
//! `futures_rustls` (rustls over futures' AsyncRead/AsyncWrite, which
//! glommio's streams implement) and served by the same HTTP/1.1 loop.

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the HTTPS configuration cannot be built from the PEM files.
#[derive(Debug)]
pub enum TlsError {
    Certificate {
        path: PathBuf,
        source: pem::Error,
    },
    /// The certificate file holds no PEM certificate.
    NoCertificate(PathBuf),
    Key {
        path: PathBuf,
        source: pem::Error,
    },
    /// The crypto provider refused the default protocol versions.
    Provider(rustls::Error),
    /// The certificate chain and the key do not make a configuration.
    Pair {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            TlsError::Certificate { path, source } => write!(f, "TLS certificate {}: {source}", path.display()),
            TlsError::NoCertificate(path) => write!(f, "TLS certificate {}: no PEM certificate in it", path.display()),
            TlsError::Key { path, source } => write!(f, "TLS private key {}: {source}", path.display()),
            TlsError::Provider(e) => write!(f, "TLS: {e}"),
            TlsError::Pair { cert, key, source } => {
                write!(f, "TLS certificate {} with key {}: {source}", cert.display(), key.display())
            }
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Certificate { source, .. } | TlsError::Key { source, .. } => Some(source),
            TlsError::Provider(e) | TlsError::Pair { source: e, .. } => Some(e),
            TlsError::NoCertificate(_) => None,
        }
    }
}

/// The server configuration for the certificate chain in `cert` and the
/// private key in `key` (PEM), offering HTTP/1.1 over ALPN.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let bad_cert = |source| TlsError::Certificate { path: cert.to_owned(), source };
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(cert).map_err(bad_cert)?.collect::<Result<_, _>>().map_err(bad_cert)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_owned()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key { path: key.to_owned(), source })?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Provider)?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|source| TlsError::Pair { cert: cert.to_owned(), key: key.to_owned(), source })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
