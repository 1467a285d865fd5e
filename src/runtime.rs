//! The state shared by the listener, the sessions and the process wiring:
//! the [`Runtime`] built from one policy (replaced whole on reload), the
//! process [`Phase`], and the watch [`Channels`] each session takes one
//! snapshot of. Its own module so that `server` and `session` both depend
//! on it and not on each other.

use std::sync::Arc;

use tokio::sync::watch;

use crate::credential::CredentialState;
use crate::policy::Policy;
use crate::upstream::pool::Pool;
use crate::upstream::Connector;

/// Everything built from one policy. Replaced whole on reload; a session
/// keeps the snapshot it started with.
pub struct Runtime {
    pub policy: Policy,
    pub connector: Connector,
    pub pool: Pool,
}

impl Runtime {
    pub fn new(
        policy: Policy,
        current_pin: Option<crate::policy::Pin>,
    ) -> Result<Runtime, crate::Error> {
        let connector = Connector::new(&policy.upstream, policy.credential.mechanism)?;
        let pool = Pool::for_policy(&policy);
        pool.set_current(current_pin);
        Ok(Runtime {
            policy,
            connector,
            pool,
        })
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
