//! The state shared by the listener, the sessions and the process wiring.
//!
//! A [`Runtime`] is one whole, immutable publication: the policy, the
//! connector built from it, the pool that holds connections of exactly one
//! credential pin, and the credential state as sessions may use it (rule 7
//! already applied). The process publishes each next value with one
//! `send_replace` on one watch channel; a session takes one snapshot at
//! connect and swaps it only at a transaction boundary (AUTH, MAIL), so a
//! policy and a credential of two different publications never meet.
//! Its own module so that `server` and `session` both depend on it and not
//! on each other.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use crate::credential::CredentialState;
use crate::policy::{Pin, Policy};
use crate::process::Process;
use crate::rate::RateLimiter;
use crate::upstream::limit::Limiter;
use crate::upstream::pool::Pool;
use crate::upstream::Connector;

/// One publication: everything a session needs, built together.
pub struct Runtime {
    pub policy: Arc<Policy>,
    pub connector: Arc<Connector>,
    /// Keeps connections of [`Runtime::credential`]'s pin only, fixed at build.
    pub pool: Pool,
    /// The credential as sessions of this snapshot use it: `NotReady` when
    /// the policy is refused by the platform's pin (rule 7).
    pub credential: CredentialState,
    /// `limits.rate`: the process's bucket for this policy's rate.
    pub rate: Option<Arc<RateLimiter>>,
    /// What lives as long as the process (rate buckets, token sources).
    pub process: Arc<Process>,
    /// What the last upstream EHLO said of SMTPUTF8 (learned per policy;
    /// until a connection was made it is not offered).
    upstream_smtputf8: AtomicBool,
    /// Rule 7: why this policy may not use the credential (it breaks the
    /// platform's pin); no session or warm-up of this snapshot connects.
    refused: Option<String>,
}

impl Runtime {
    /// The first publication of the process.
    pub fn new(
        policy: Policy,
        credential: CredentialState,
        refused: Option<String>,
        process: Arc<Process>,
    ) -> Result<Runtime, crate::Error> {
        let limiter = Limiter::new(policy.upstream.max_connections);
        Runtime::build(policy, credential, refused, limiter, process)
    }

    /// The publication of a reloaded policy: the process's count of upstream
    /// connections (and the demand it remembers) carries over, so
    /// connections still held by sessions of `previous` count against the cap.
    pub fn succeed(
        policy: Policy,
        credential: CredentialState,
        refused: Option<String>,
        previous: &Runtime,
    ) -> Result<Runtime, crate::Error> {
        let limiter = previous.pool.limiter().clone();
        limiter.set_cap(policy.upstream.max_connections);
        Runtime::build(
            policy,
            credential,
            refused,
            limiter,
            previous.process.clone(),
        )
    }

    /// The publication of a rotated credential under the same policy: the
    /// policy, connector and what was learned of the upstream are kept; the
    /// pool is new (it keeps only `credential`'s connections).
    pub fn rotate(&self, credential: CredentialState) -> Runtime {
        let pool = Pool::for_policy(&self.policy, self.pool.limiter().clone());
        let credential = gated(credential, self.refused.as_deref());
        pool.set_current(pin_of(&credential));
        Runtime {
            policy: self.policy.clone(),
            connector: self.connector.clone(),
            pool,
            credential,
            rate: self.rate.clone(),
            process: self.process.clone(),
            upstream_smtputf8: AtomicBool::new(self.upstream_offers_smtputf8()),
            refused: self.refused.clone(),
        }
    }

    fn build(
        policy: Policy,
        credential: CredentialState,
        refused: Option<String>,
        limiter: Arc<Limiter>,
        process: Arc<Process>,
    ) -> Result<Runtime, crate::Error> {
        let connector = Connector::new(&policy.upstream, policy.credential.mechanism)?;
        let pool = Pool::for_policy(&policy, limiter);
        let credential = gated(credential, refused.as_deref());
        pool.set_current(pin_of(&credential));
        let rate = process.rate_limiter(policy.limits.rate);
        Ok(Runtime {
            policy: Arc::new(policy),
            connector: Arc::new(connector),
            pool,
            credential,
            rate,
            process,
            upstream_smtputf8: AtomicBool::new(false),
            refused,
        })
    }

    /// Closes the idle connections of a snapshot no longer in force (the
    /// sessions still holding it keep theirs until their next boundary).
    pub fn retire(&self) {
        self.pool.set_current(None);
    }

    pub fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }

    /// The pin of the credential of this snapshot, if it has a usable one.
    pub fn pin(&self) -> Option<Pin> {
        pin_of(&self.credential)
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

/// `state` as a session may use it: not ready while the policy is refused (rule 7).
fn gated(state: CredentialState, refused: Option<&str>) -> CredentialState {
    match refused {
        Some(reason) => {
            CredentialState::NotReady(crate::audit::Reason::UpstreamNotPinned, reason.to_string())
        }
        None => state,
    }
}

fn pin_of(state: &CredentialState) -> Option<Pin> {
    state.ready().map(|c| c.pin())
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

/// Shared channels the listener hands to each session: the one channel
/// of whole snapshots and the process phase.
#[derive(Clone)]
pub struct Channels {
    pub runtime: watch::Receiver<Arc<Runtime>>,
    pub phase: watch::Receiver<Phase>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::Credential;

    fn policy(upstream: std::net::SocketAddr) -> Policy {
        let text = format!(
            "version: 1\ntenant: acme\nupstream:\n  address: \"{upstream}\"\n  tls: none\n  insecure: true\n\
             credential:\n  secret_dir: /nonexistent\n  mechanism: none\n  pins: [\"{}\"]\n\
             client:\n  auth: none\nsenders: [\"*@acme.example\"]\n",
            crate::policy::Pin::of(b"p")
        );
        match crate::policy::parse(&text, std::path::Path::new("p.yaml")) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    #[tokio::test]
    async fn a_refused_runtime_gates_the_credential_and_never_connects() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let cred = Arc::new(Credential::from_parts("u", "p"));
        let ready = CredentialState::Ready(cred.clone());
        let addr = listener.local_addr().expect("addr");
        let open =
            Runtime::new(policy(addr), ready.clone(), None, Default::default()).expect("runtime");
        assert!(matches!(open.credential, CredentialState::Ready(_)));
        let reason = "upstream pin: upstream.address is not the platform's".to_string();
        let rt = Runtime::new(
            policy(addr),
            ready.clone(),
            Some(reason),
            Default::default(),
        )
        .expect("runtime");
        for rt in [&rt, &rt.rotate(ready)] {
            match &rt.credential {
                CredentialState::NotReady(_, r) => assert!(r.starts_with("upstream pin: ")),
                CredentialState::Ready(_) => panic!("a refused runtime let the credential through"),
            }
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
