//! TLS toward the local mailer (contract §11): the serving pair from a
//! `kubernetes.io/tls` mount reloaded on the kubelet's swap (`crate::tls_mount`,
//! shared with the webhook), a rustls server configuration (TLS 1.2 and
//! 1.3 only), and the plain-or-TLS client stream ([`stream`]).

pub mod stream;

use std::sync::Arc;
use std::time::Duration;

use crate::policy::{ClientTlsPolicy, StartTlsMode};
use crate::tls_mount::{self, Reloading, Reports, TlsError};

pub use stream::ClientStream;

/// TLS toward the mailer, for the process's lifetime.
pub struct ClientTls {
    pub policy: ClientTlsPolicy,
    acceptor: tokio_rustls::TlsAcceptor,
    pair: Arc<Reloading>,
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
    pub fn new(policy: ClientTlsPolicy) -> Result<ClientTls, TlsError> {
        let pair = Reloading::new(tls_mount::load_pair(&policy.cert_dir)?);
        let config = rustls::ServerConfig::builder_with_provider(tls_mount::provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(pair.clone());
        Ok(ClientTls {
            policy,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            pair,
        })
    }

    /// When the serving pair in use expires (Unix seconds).
    pub fn not_after(&self) -> Option<i64> {
        self.pair.not_after()
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

    /// Re-reads the pair whenever the mount changes, until the task is dropped:
    /// a `client_tls` event (through `log`) and
    /// `smtpbind_client_tls_reloads_total{result}`.
    pub async fn watch(self: Arc<Self>, log: crate::log::Context) {
        let reports = Reports {
            event: "client_tls",
            metric: "smtpbind_client_tls_reloads_total",
            poll: Duration::from_secs(1),
            log,
        };
        tls_mount::watch(self.policy.cert_dir.clone(), self.pair.clone(), reports).await;
    }
}

/// Kept for callers that only want to check a mount (`smtpbind check`).
pub use tls_mount::load_pair;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starttls_modes_follow_the_policy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = crate::certs::Pki::generate("ca", &["localhost".to_string()]).expect("pki");
        std::fs::write(dir.path().join("tls.crt"), pki.server_cert_pem()).expect("crt");
        std::fs::write(dir.path().join("tls.key"), pki.server_key_pem().as_bytes()).expect("key");
        let tls = ClientTls::new(ClientTlsPolicy {
            cert_dir: dir.path().to_path_buf(),
            starttls: StartTlsMode::Offer,
            implicit_listen: None,
        })
        .expect("tls");
        assert!(tls.offers_starttls() && !tls.requires_starttls());
    }
}
