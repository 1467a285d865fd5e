//! A serving certificate from a `kubernetes.io/tls` Secret mount (`tls.crt`,
//! `tls.key`), reloaded when the kubelet swaps it: the webhook's and the one
//! toward the mailer (`client_tls`).
//!
//! Every TLS handshake asks [`Reloading`] for the current pair, so a swap
//! takes effect for the next connection while connections in flight keep
//! the pair they started with. A broken or mismatched pair is refused with
//! an error event and the last good one stays in use. Key files as the
//! kubelet writes them (mode 0644) are accepted: the mount's permissions are
//! the platform's call.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

use crate::log;

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
    #[error("{path}: certificate {why}")]
    Validity { path: PathBuf, why: &'static str },
    #[error("TLS server configuration: {0}")]
    Config(rustls::Error),
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The directory `dir/..data` points to now (both files are read from it,
/// so a swap between the two reads cannot pair one version's certificate
/// with another's key), or `dir` itself without a kubelet layout.
fn resolved(dir: &Path) -> PathBuf {
    match std::fs::read_link(dir.join("..data")) {
        Ok(target) if target.is_absolute() => target,
        Ok(target) => dir.join(target),
        Err(_) => dir.to_path_buf(),
    }
}

/// Reads and checks the pair in `dir` (through `..data`, resolved once):
/// both files present, the key matching the certificate, the certificate
/// valid now (neither expired nor not yet valid).
pub fn load_pair(dir: &Path) -> Result<CertifiedKey, TlsError> {
    let mut attempts = 0;
    loop {
        match load_pair_from(dir, &resolved(dir)) {
            // The kubelet removed the directory just resolved: read anew.
            Err(TlsError::Io { kind, .. })
                if kind == std::io::ErrorKind::NotFound && attempts < 3 =>
            {
                attempts += 1;
            }
            result => return result,
        }
    }
}

fn load_pair_from(dir: &Path, from: &Path) -> Result<CertifiedKey, TlsError> {
    let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let read = |name: &str, shown: &Path| {
        std::fs::read(from.join(name)).map_err(|e| TlsError::Io {
            path: shown.to_path_buf(),
            kind: e.kind(),
        })
    };
    let crt_bytes = read("tls.crt", &crt)?;
    let key_bytes = zeroize::Zeroizing::new(read("tls.key", &key)?);
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
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&crt_bytes)
        .collect::<Result<_, _>>()
        .map_err(io(&crt))?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate { path: crt });
    };
    let validity = crate::tls_validity::validity(leaf).ok_or_else(|| TlsError::Validity {
        path: crt.clone(),
        why: "has no readable validity period",
    })?;
    validity
        .check(crate::tls_validity::now())
        .map_err(|why| TlsError::Validity {
            path: crt.clone(),
            why,
        })?;
    let private = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| match e {
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

    pub fn set(&self, pair: CertifiedKey) {
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        *current = Arc::new(pair);
    }

    /// The pair new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        current.clone()
    }

    /// When the certificate served now stops being valid (Unix seconds):
    /// what the certificate-expiry gauges are computed from at each scrape.
    pub fn not_after(&self) -> Option<i64> {
        let pair = self.current();
        let leaf = pair.cert.first()?;
        crate::tls_validity::validity(leaf).map(|v| v.not_after)
    }
}

/// One pair whatever the SNI (in transparent mode the mailer asks for the
/// provider's name, which `tls-init --name` put in the certificate).
impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// What identifies the pair on disk without keeping it: the files' bytes'
/// hash, a missing or unreadable file included (so a swap that leaves one
/// out is seen, refused and reported, not skipped in silence).
fn fingerprint(dir: &Path) -> crate::policy::Pin {
    let from = resolved(dir);
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    for name in ["tls.crt", "tls.key"] {
        match std::fs::read(from.join(name)) {
            Ok(b) => {
                bytes.extend_from_slice(&zeroize::Zeroizing::new(b));
                bytes.push(1);
            }
            Err(e) => bytes.extend_from_slice(format!("\0{name}: {:?}\0", e.kind()).as_bytes()),
        }
    }
    crate::policy::Pin::of(&bytes)
}

/// How a reload is reported: the event name, the counter (`result` label)
/// and how often the directory is polled when no inotify event arrives.
#[derive(Debug, Clone)]
pub struct Reports {
    pub event: &'static str,
    pub metric: &'static str,
    pub poll: Duration,
    /// The lines' context (the tenant of `smtpbind run`; none for tooling).
    pub log: log::Context,
}

/// Reloads the pair in `dir` into `target` whenever the files change
/// (inotify on the directory, and polling). Runs until dropped.
pub async fn watch(dir: PathBuf, target: Arc<Reloading>, reports: Reports) {
    let wake = Arc::new(tokio::sync::Notify::new());
    let relevant = |p: &Path| {
        crate::watch::is_kubelet_entry(p)
            || p.file_name()
                .is_some_and(|n| n == "tls.crt" || n == "tls.key")
    };
    let _watcher = crate::watch::inotify(&[&dir], relevant, wake.clone(), &reports.log);
    let mut seen = fingerprint(&dir);
    let mut tick = tokio::time::interval(reports.poll);
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
        if now == seen {
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
        metrics::counter!(reports.metric, "result" => result).increment(1);
        let level = if result == "ok" {
            log::Level::Info
        } else {
            log::Level::Error
        };
        reports.log.emit(level, reports.event, detail);
    }
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

    /// Kubelet-style swaps between two good pairs in a tight loop while the
    /// pair is read: never a certificate of one with the key of the other.
    #[test]
    fn swaps_during_reads_never_mix_two_pairs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (pki(), pki());
        for (name, p) in [("..a", &a), ("..b", &b)] {
            std::fs::create_dir(dir.path().join(name)).expect("mkdir");
            write_pair(&dir.path().join(name), p);
        }
        std::os::unix::fs::symlink("..a", dir.path().join("..data")).expect("link");
        for f in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{f}"), dir.path().join(f)).expect("link");
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let swapper = {
            let (stop, dir) = (stop.clone(), dir.path().to_path_buf());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let target = if n.is_multiple_of(2) { "..b" } else { "..a" };
                    let tmp = dir.join("..data_tmp");
                    let _ = std::fs::remove_file(&tmp);
                    std::os::unix::fs::symlink(target, &tmp).expect("link");
                    std::fs::rename(&tmp, dir.join("..data")).expect("swap");
                    n += 1;
                }
                n
            })
        };
        let mut mixed = 0;
        for _ in 0..400 {
            if let Err(TlsError::Pair { .. }) = load_pair(dir.path()) {
                mixed += 1;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let swaps = swapper.join().expect("swapper");
        assert!(swaps > 100, "{swaps} swaps");
        assert_eq!(
            mixed, 0,
            "{mixed} of 400 reads mixed two pairs ({swaps} swaps)"
        );
    }

    #[test]
    fn loads_a_pair_and_refuses_broken_or_mismatched_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (pki(), pki());
        write_pair(dir.path(), &a);
        load_pair(dir.path()).expect("good pair");
        std::fs::write(dir.path().join("tls.key"), b.server_key_pem().as_bytes()).expect("key");
        let err = load_pair(dir.path()).expect_err("mismatch");
        assert!(matches!(err, TlsError::Pair { .. }), "{err}");
        std::fs::write(dir.path().join("tls.key"), "not a key").expect("key");
        assert!(matches!(load_pair(dir.path()), Err(TlsError::NoKey { .. })));
        std::fs::write(dir.path().join("tls.crt"), "").expect("crt");
        assert!(matches!(
            load_pair(dir.path()),
            Err(TlsError::NoCertificate { .. })
        ));
        std::fs::remove_file(dir.path().join("tls.crt")).expect("rm");
        assert!(matches!(load_pair(dir.path()), Err(TlsError::Io { .. })));
    }
}
