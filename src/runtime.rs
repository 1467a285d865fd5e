//! The state shared by the listener, the sessions and the process wiring:
//! the [`Runtime`] built from one policy (replaced whole on reload), the
//! process [`Phase`], and the watch [`Channels`] each session takes one
//! snapshot of. Its own module so that `server` and `session` both depend
//! on it and not on each other.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use crate::credential::CredentialState;
use crate::policy::Policy;
use crate::upstream::limit::Limiter;
use crate::upstream::pool::Pool;
use crate::upstream::Connector;

/// Everything built from one policy. Replaced whole on reload; a session
/// keeps the snapshot it started with.
pub struct Runtime {
    pub policy: Policy,
    pub connector: Connector,
    pub pool: Pool,
    /// What the last upstream EHLO said of SMTPUTF8 (learned per policy
    /// snapshot; until a connection was made it is not offered).
    upstream_smtputf8: AtomicBool,
    /// Rule 7: why this policy may not use the credential (it breaks the
    /// platform's pin). Tied to the runtime, not only to the credential
    /// state, so that no session or warm-up holding this snapshot ever
    /// connects, whatever order the watch channels are updated in.
    refused: Option<String>,
}

impl Runtime {
    pub fn new(
        policy: Policy,
        current_pin: Option<crate::policy::Pin>,
    ) -> Result<Runtime, crate::Error> {
        let limiter = Limiter::new(policy.upstream.max_connections);
        Runtime::with_limiter(policy, current_pin, limiter)
    }

    /// The runtime of a reloaded policy: the process's count of upstream
    /// connections (and the demand it remembers) carries over, so
    /// connections still held by sessions of `previous` count against the cap.
    pub fn succeed(
        policy: Policy,
        current_pin: Option<crate::policy::Pin>,
        previous: &Runtime,
    ) -> Result<Runtime, crate::Error> {
        let limiter = previous.pool.limiter().clone();
        limiter.set_cap(policy.upstream.max_connections);
        Runtime::with_limiter(policy, current_pin, limiter)
    }

    fn with_limiter(
        policy: Policy,
        current_pin: Option<crate::policy::Pin>,
        limiter: Arc<Limiter>,
    ) -> Result<Runtime, crate::Error> {
        let connector = Connector::new(&policy.upstream, policy.credential.mechanism)?;
        let pool = Pool::for_policy(&policy, limiter);
        pool.set_current(current_pin);
        Ok(Runtime {
            policy,
            connector,
            pool,
            upstream_smtputf8: AtomicBool::new(false),
            refused: None,
        })
    }

    /// Marks this runtime's policy as refused by the platform's pin.
    pub fn refuse(&mut self, reason: String) {
        self.refused = Some(reason);
    }

    pub fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }

    /// `state` as a session of this runtime may use it: not ready while the
    /// policy is refused (rule 7).
    pub fn gate(&self, state: CredentialState) -> CredentialState {
        match &self.refused {
            Some(reason) => {
                CredentialState::NotReady(crate::audit::Reason::UpstreamNotPinned, reason.clone())
            }
            None => state,
        }
    }

    /// Records what a freshly connected upstream offered.
    pub fn learn_upstream(&self, caps: &crate::upstream::Capabilities) {
        self.upstream_smtputf8
            .store(caps.smtputf8, Ordering::Relaxed);
    }

    /// Whether the upstream offered SMTPUTF8 at its last EHLO.
    pub fn upstream_offers_smtputf8(&self) -> bool {
        self.upstream_smtputf8.load(Ordering::Relaxed)
    }
}

/// Process lifecycle, published to sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// SIGTERM: not ready, listener closed, transactions may finish.
    Draining,
    /// Drain deadline passed: every session closes now.
    Closing,
}

/// Shared channels the listener hands to each session.
#[derive(Clone)]
pub struct Channels {
    pub runtime: watch::Receiver<Arc<Runtime>>,
    pub credentials: watch::Receiver<CredentialState>,
    pub phase: watch::Receiver<Phase>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::Credential;

    fn runtime(upstream: std::net::SocketAddr) -> Runtime {
        let text = format!(
            "version: 1\ntenant: acme\nupstream:\n  address: \"{upstream}\"\n  tls: none\n  insecure: true\n\
             credential:\n  secret_dir: /nonexistent\n  mechanism: none\n  pins: [\"{}\"]\n\
             client:\n  auth: none\nsenders: [\"*@acme.example\"]\n",
            crate::policy::Pin::of(b"p")
        );
        let policy = match crate::policy::parse(&text, std::path::Path::new("p.yaml")) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        Runtime::new(policy, None).expect("runtime")
    }

    #[tokio::test]
    async fn a_refused_runtime_gates_the_credential_and_never_connects() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let mut rt = runtime(listener.local_addr().expect("addr"));
        let cred = Arc::new(Credential::from_parts("u", "p"));
        let ready = CredentialState::Ready(cred.clone());
        assert!(matches!(rt.gate(ready.clone()), CredentialState::Ready(_)));
        rt.refuse("upstream pin: upstream.address is not the platform's".into());
        match rt.gate(ready) {
            CredentialState::NotReady(_, r) => assert!(r.starts_with("upstream pin: ")),
            CredentialState::Ready(_) => panic!("a refused runtime let the credential through"),
        }
        let rt = Arc::new(rt);
        let err = crate::upstream::warm::acquire(&rt, &cred).await.err();
        assert!(
            matches!(err, Some(crate::upstream::UpstreamError::Unpinned(_))),
            "{err:?}"
        );
        crate::upstream::warm::prewarm(rt.clone(), cred).await;
        let accepted =
            tokio::time::timeout(std::time::Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "the refused runtime connected upstream");
    }
}
