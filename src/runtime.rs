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
        })
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
