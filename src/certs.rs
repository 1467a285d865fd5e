//! Generated certificates (rcgen) for the capture upstream of `demo`,
//! `capture` and the tests: a throwaway CA and a server certificate signed by
//! it. Nothing here is used on the relay's own path, which only verifies.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

/// A CA and one server certificate signed by it.
pub struct Pki {
    /// The CA certificate, PEM (what a client puts in `ca_file`).
    pub ca_pem: String,
    pub server_chain: Vec<CertificateDer<'static>>,
    /// The server certificate alone, PEM.
    server_pem: String,
    server_key: PrivatePkcs8KeyDer<'static>,
    server_key_pem: Zeroizing<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("TLS server configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

impl Pki {
    /// A new CA named `ca_name` and a server certificate for `hostnames`
    /// (DNS names or IP addresses).
    pub fn generate(ca_name: &str, hostnames: &[String]) -> Result<Pki, CertError> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params
            .distinguished_name
            .push(DnType::CommonName, ca_name);
        let ca = ca_params.self_signed(&ca_key)?;

        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(hostnames.to_vec())?;
        params.distinguished_name.push(
            DnType::CommonName,
            hostnames.first().map(String::as_str).unwrap_or("localhost"),
        );
        // What strict verifiers (Python 3.13's default context) ask for.
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &ca, &ca_key)?;
        Ok(Pki {
            ca_pem: ca.pem(),
            server_chain: vec![cert.der().clone(), ca.der().clone()],
            server_pem: cert.pem(),
            server_key: PrivatePkcs8KeyDer::from(key.serialize_der()),
            server_key_pem: Zeroizing::new(key.serialize_pem()),
        })
    }

    /// The server certificate, PEM (a `tls.crt`).
    pub fn server_cert_pem(&self) -> &str {
        &self.server_pem
    }

    /// The server's private key, PKCS#8 PEM (a `tls.key`).
    pub fn server_key_pem(&self) -> &Zeroizing<String> {
        &self.server_key_pem
    }

    /// A rustls server configuration presenting the server certificate.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, CertError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                self.server_chain.clone(),
                PrivateKeyDer::Pkcs8(self.server_key.clone_key()),
            )?;
        Ok(Arc::new(config))
    }
}
