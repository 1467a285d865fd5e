//! The webhook's serving certificate: `tls.crt` and `tls.key` of a
//! `kubernetes.io/tls` Secret mount, reloaded when the kubelet swaps it.
//!
//! Every TLS handshake asks [`Reloading`] for the current pair, so a swap
//! takes effect for the next connection while connections (and requests) in
//! flight keep the pair they started with. A broken or mismatched pair is
//! refused with an error event and the last good one stays in use.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

use crate::log;

/// How often the directory is re-read when no inotify event arrives.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read ({kind})")]
    Io {
        path: PathBuf,
        kind: std::io::ErrorKind,
    },
    #[error("{path}: no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no usable PEM private key")]
    NoKey { path: PathBuf },
    #[error("{dir}: tls.key does not belong to tls.crt, or is not usable ({error})")]
    Pair { dir: PathBuf, error: rustls::Error },
    #[error("TLS server configuration: {0}")]
    Config(rustls::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and checks the pair in `dir` (through `..data`, as mounted).
pub fn load_pair(dir: &Path) -> Result<CertifiedKey, TlsError> {
    let crt = dir.join("tls.crt");
    let key = dir.join("tls.key");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e: rustls_pki_types::pem::Error| match e {
            rustls_pki_types::pem::Error::Io(e) => TlsError::Io {
                path,
                kind: e.kind(),
            },
            _ => TlsError::NoCertificate { path },
        }
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&crt)
        .map_err(io(&crt))?
        .collect::<Result<_, _>>()
        .map_err(io(&crt))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: crt });
    }
    let private = PrivateKeyDer::from_pem_file(&key).map_err(|e| match e {
        rustls_pki_types::pem::Error::Io(e) => TlsError::Io {
            path: key.clone(),
            kind: e.kind(),
        },
        _ => TlsError::NoKey { path: key.clone() },
    })?;
    CertifiedKey::from_der(chain, private, &provider()).map_err(|error| TlsError::Pair {
        dir: dir.to_path_buf(),
        error,
    })
}

/// The current pair, swapped on reload; rustls asks it at every handshake.
#[derive(Debug)]
pub struct Reloading {
    current: RwLock<Arc<CertifiedKey>>,
}

impl Reloading {
    pub fn new(pair: CertifiedKey) -> Arc<Reloading> {
        Arc::new(Reloading {
            current: RwLock::new(Arc::new(pair)),
        })
    }

    fn set(&self, pair: CertifiedKey) {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        *current = Arc::new(pair);
    }

    /// A rustls server configuration that serves the current pair.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        Some(current.clone())
    }
}

/// What identifies the pair on disk without keeping it: the files' bytes' hash.
fn fingerprint(dir: &Path) -> Option<crate::policy::Pin> {
    let mut bytes = std::fs::read(dir.join("tls.crt")).ok()?;
    bytes.extend(std::fs::read(dir.join("tls.key")).ok()?);
    let pin = crate::policy::Pin::of(&bytes);
    zeroize::Zeroize::zeroize(&mut bytes);
    Some(pin)
}

/// Reloads the pair in `dir` into `target` whenever the files change
/// (inotify on the directory, and polling). Runs until dropped.
pub async fn watch(dir: PathBuf, target: Arc<Reloading>) {
    let wake = Arc::new(tokio::sync::Notify::new());
    let relevant = |p: &Path| {
        crate::watch::is_kubelet_entry(p)
            || p.file_name()
                .is_some_and(|n| n == "tls.crt" || n == "tls.key")
    };
    let _watcher = crate::watch::inotify(&[&dir], relevant, wake.clone());
    let mut seen = fingerprint(&dir);
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = wake.notified() => {
                // Let the kubelet's swap (several events) settle.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let now = fingerprint(&dir);
        if now.is_none() || now == seen {
            continue;
        }
        seen = now;
        let (result, detail) = match load_pair(&dir) {
            Ok(pair) => {
                target.set(pair);
                (
                    "ok",
                    json!({ "result": "ok", "dir": dir.display().to_string() }),
                )
            }
            Err(e) => (
                "error",
                json!({ "result": "error", "error": e.to_string(), "message": "the last good certificate stays in use" }),
            ),
        };
        metrics::counter!("smtpbind_webhook_certificate_reloads_total", "result" => result)
            .increment(1);
        let level = if result == "ok" {
            log::Level::Info
        } else {
            log::Level::Error
        };
        log::emit(level, "certificate", detail);
    }
}
