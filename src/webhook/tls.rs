//! The webhook's serving certificate: `tls.crt` and `tls.key` of a
//! `kubernetes.io/tls` Secret mount, reloaded when the kubelet swaps it
//! (the shared machinery is [`crate::tls_mount`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use crate::tls_mount::{load_pair, Reloading, TlsError};
use crate::tls_mount::{provider, Reports};

impl Reloading {
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

/// Reloads the pair in `dir` into `target` whenever the files change. Runs until dropped.
pub async fn watch(dir: PathBuf, target: Arc<Reloading>) {
    let reports = Reports {
        event: "certificate",
        metric: "smtpbind_webhook_certificate_reloads_total",
        poll: Duration::from_secs(2),
        log: crate::log::Context::default(),
    };
    crate::tls_mount::watch(dir, target, reports).await;
}
