//! TLS toward the local mailer (contract §11): the serving pair from a
//! `kubernetes.io/tls` mount (`tls.crt`, `tls.key`), the rustls server
//! configuration (TLS 1.2+), and its reload when the kubelet swaps the mount.
//!
//! The configuration is built once; its certificate resolver hands out the
//! pair currently in force, so a swap reaches new handshakes without touching
//! sessions already running. A pair that does not load (unreadable, not PEM,
//! a key that does not match the certificate) is refused with an error event
//! and the last good pair stays. Key files as the kubelet writes them
//! (mode 0644) are accepted: the mount's permissions are the platform's call.

pub mod stream;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::log;
use crate::policy::{ClientTlsPolicy, StartTlsMode};
use crate::watch::DirWatch;

pub use stream::ClientStream;

/// Largest `tls.crt` / `tls.key` read.
const MAX_PEM_BYTES: u64 = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    #[error("{path}: cannot read ({kind})")]
    Io {
        path: PathBuf,
        kind: std::io::ErrorKind,
    },
    #[error("{path}: larger than {MAX_PEM_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path}: no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no usable PEM private key")]
    BadKey { path: PathBuf },
    #[error("{dir}: tls.key does not match the certificate in tls.crt, or tls.crt is not a usable certificate ({reason})")]
    Mismatch { dir: PathBuf, reason: String },
    #[error("TLS server configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The pair currently in force, for every new handshake.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl Current {
    fn get(&self) -> Arc<CertifiedKey> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, key: Arc<CertifiedKey>) {
        match self.0.write() {
            Ok(mut g) => *g = key,
            Err(poisoned) => *poisoned.into_inner() = key,
        }
    }
}

impl ResolvesServerCert for Current {
    /// One pair whatever the SNI: in transparent mode the mailer asks for
    /// the provider's name, which `tls-init --name` put in the certificate.
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// TLS toward the mailer, for the process's lifetime.
pub struct ClientTls {
    pub policy: ClientTlsPolicy,
    acceptor: tokio_rustls::TlsAcceptor,
    current: Arc<Current>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("policy", &self.policy)
            .finish()
    }
}

impl ClientTls {
    /// Loads the pair from `cert_dir` (an error at start: fail closed).
    pub fn new(policy: ClientTlsPolicy) -> Result<ClientTls, ClientTlsError> {
        let (key, _) = load_pair(&policy.cert_dir)?;
        let current = Arc::new(Current(RwLock::new(key)));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        Ok(ClientTls {
            policy,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            current,
        })
    }

    pub fn acceptor(&self) -> &tokio_rustls::TlsAcceptor {
        &self.acceptor
    }

    /// STARTTLS is advertised on the plain listener.
    pub fn offers_starttls(&self) -> bool {
        self.policy.starttls != StartTlsMode::Off
    }

    /// Before STARTTLS only EHLO, HELO, STARTTLS, NOOP, RSET and QUIT are answered.
    pub fn requires_starttls(&self) -> bool {
        self.policy.starttls == StartTlsMode::Require
    }

    /// Re-reads the pair whenever the mount changes, until the task is dropped.
    pub async fn watch(self: Arc<Self>) {
        let dir = self.policy.cert_dir.clone();
        let mut last = pair_fingerprint(&dir);
        let mut files = DirWatch::new(&[&dir], |name| name == "tls.crt" || name == "tls.key");
        loop {
            files.next().await;
            let fp = pair_fingerprint(&dir);
            if fp != last {
                last = fp;
                self.reload();
            }
        }
    }

    /// Loads the mounted pair; on success it serves every new handshake,
    /// otherwise an error event and the last good pair stays.
    pub fn reload(&self) {
        let dir = self.policy.cert_dir.display().to_string();
        match load_pair(&self.policy.cert_dir) {
            Ok((key, summary)) => {
                self.current.set(key);
                metrics::counter!("smtpbind_client_tls_reloads_total", "result" => "ok")
                    .increment(1);
                log::info(
                    "client_tls",
                    json!({ "result": "ok", "cert_dir": dir, "certificate": summary }),
                );
            }
            Err(e) => {
                metrics::counter!("smtpbind_client_tls_reloads_total", "result" => "error")
                    .increment(1);
                log::error(
                    "client_tls",
                    json!({ "result": "error", "cert_dir": dir, "error": e.to_string(),
                            "message": "the last good certificate stays in use" }),
                );
            }
        }
    }
}

/// Reads a file of the mount (through `..data` when present), bounded.
fn read_bounded(path: &Path) -> Result<Zeroizing<Vec<u8>>, ClientTlsError> {
    use std::io::Read;
    let io = |e: std::io::Error| ClientTlsError::Io {
        path: path.to_path_buf(),
        kind: e.kind(),
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(ClientTlsError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

/// What changed in the mount, without keeping the key: sha256 of both files.
fn pair_fingerprint(dir: &Path) -> Option<[u8; 32]> {
    let crt = read_bounded(&dir.join("tls.crt")).ok()?;
    let key = read_bounded(&dir.join("tls.key")).ok()?;
    let mut h = Sha256::new();
    h.update((crt.len() as u64).to_be_bytes());
    h.update(&crt[..]);
    h.update(&key[..]);
    Some(h.finalize().into())
}

/// Loads and checks `tls.crt` + `tls.key` from `dir`. The summary (the
/// certificate's sha256, first 12 hex) is what logs show of it.
pub fn load_pair(dir: &Path) -> Result<(Arc<CertifiedKey>, String), ClientTlsError> {
    let crt_path = dir.join("tls.crt");
    let key_path = dir.join("tls.key");
    let crt = read_bounded(&crt_path)?;
    let key = read_bounded(&key_path)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&crt)
        .collect::<Result<_, _>>()
        .map_err(|_| ClientTlsError::NoCertificate {
            path: crt_path.clone(),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(ClientTlsError::NoCertificate { path: crt_path });
    };
    let summary = hex::encode(&Sha256::digest(leaf.as_ref())[..6]);
    let key = PrivateKeyDer::from_pem_slice(&key).map_err(|_| ClientTlsError::BadKey {
        path: key_path.clone(),
    })?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|_| ClientTlsError::BadKey { path: key_path })?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| ClientTlsError::Mismatch {
            dir: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok((Arc::new(certified), summary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::Pki;

    fn write_pair(dir: &Path, pki: &Pki) {
        std::fs::write(dir.join("tls.crt"), pki.server_cert_pem()).expect("crt");
        std::fs::write(dir.join("tls.key"), pki.server_key_pem().as_bytes()).expect("key");
    }

    fn pki() -> Pki {
        Pki::generate("test CA", &["localhost".to_string()]).expect("pki")
    }

    #[test]
    fn loads_a_pair_and_refuses_broken_or_mismatched_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (pki(), pki());
        write_pair(dir.path(), &a);
        load_pair(dir.path()).expect("good pair");

        std::fs::write(dir.path().join("tls.key"), b.server_key_pem().as_bytes()).expect("key");
        let err = load_pair(dir.path()).expect_err("mismatch");
        assert!(matches!(err, ClientTlsError::Mismatch { .. }), "{err}");

        std::fs::write(dir.path().join("tls.key"), "not a key").expect("key");
        assert!(matches!(
            load_pair(dir.path()),
            Err(ClientTlsError::BadKey { .. })
        ));
        std::fs::write(dir.path().join("tls.crt"), "").expect("crt");
        assert!(matches!(
            load_pair(dir.path()),
            Err(ClientTlsError::NoCertificate { .. })
        ));
        std::fs::remove_file(dir.path().join("tls.crt")).expect("rm");
        assert!(matches!(
            load_pair(dir.path()),
            Err(ClientTlsError::Io { .. })
        ));
    }

    #[test]
    fn a_failed_reload_keeps_the_last_good_pair() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (pki(), pki());
        write_pair(dir.path(), &a);
        let tls = ClientTls::new(ClientTlsPolicy {
            cert_dir: dir.path().to_path_buf(),
            starttls: StartTlsMode::Offer,
            implicit_listen: None,
        })
        .expect("tls");
        let first = tls.current.get().cert[0].clone();
        std::fs::write(dir.path().join("tls.crt"), b.server_cert_pem()).expect("crt");
        tls.reload();
        assert_eq!(tls.current.get().cert[0], first, "mismatched pair refused");
        write_pair(dir.path(), &b);
        tls.reload();
        assert_ne!(tls.current.get().cert[0], first, "good pair taken");
    }
}
