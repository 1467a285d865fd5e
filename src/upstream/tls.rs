//! rustls client configuration for the upstream: roots from `ca_file` or the
//! webpki roots, always verified. There is no option to skip verification.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("{path}: {message}")]
    CaFile { path: String, message: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Builds the client config used for every upstream connection.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let ca_err = |message: String| TlsConfigError::CaFile {
                path: path.display().to_string(),
                message,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| ca_err(format!("cannot read PEM: {e}")))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ca_err(format!("bad PEM: {e}")))?;
            if certs.is_empty() {
                return Err(ca_err("no certificate in file".into()));
            }
            let (added, _ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(ca_err("no usable CA certificate in file".into()));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
