//! What lives as long as the process, across every policy reload and
//! credential rotation: built once at start by `app` and carried
//! explicitly, never reached through a global. The upstream connection
//! limiter is carried the same way, from one snapshot's pool to the next
//! (`Runtime::succeed`).

use std::sync::{Arc, Mutex};

use crate::identity::TokenSources;
use crate::policy::RatePolicy;
use crate::rate::RateLimiter;

#[derive(Default)]
pub struct Process {
    /// `limits.rate`: the pod's one token bucket, for the rate in force.
    rate: Mutex<Option<Arc<RateLimiter>>>,
    /// XOAUTH2 token sources, shared across reloads that keep the credential.
    pub tokens: TokenSources,
}

impl Process {
    /// The bucket for `policy`: kept across policy reloads while the rate is
    /// unchanged, replaced (full) when it changes; `None` without a rate.
    pub fn rate_limiter(&self, policy: Option<RatePolicy>) -> Option<Arc<RateLimiter>> {
        let policy = policy?;
        let mut current = self.rate.lock().unwrap_or_else(|p| p.into_inner());
        match &*current {
            Some(l) if l.policy() == policy => Some(l.clone()),
            _ => {
                let l = Arc::new(RateLimiter::new(policy));
                *current = Some(l.clone());
                Some(l)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn policy(rate: f64) -> RatePolicy {
        RatePolicy {
            messages_per_second: rate,
            burst: 3,
            max_wait: Duration::from_millis(10),
        }
    }

    #[test]
    fn one_bucket_per_rate_and_per_process() {
        let process = Process::default();
        let a = process.rate_limiter(Some(policy(3.0))).expect("bucket");
        let b = process.rate_limiter(Some(policy(3.0))).expect("bucket");
        assert!(Arc::ptr_eq(&a, &b));
        let c = process.rate_limiter(Some(policy(4.0))).expect("bucket");
        assert!(!Arc::ptr_eq(&a, &c));
        assert!(process.rate_limiter(None).is_none());
        let other = Process::default()
            .rate_limiter(Some(policy(4.0)))
            .expect("bucket");
        assert!(!Arc::ptr_eq(&c, &other), "two processes share nothing");
    }
}
