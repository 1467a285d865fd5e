//! What lives as long as the process, across every policy reload and
//! credential rotation: built once at start by `app` and carried
//! explicitly, never reached through a global. The upstream connection
//! limiter is carried the same way, from one snapshot's pool to the next
//! (`Runtime::succeed`).

use std::sync::{Arc, Mutex};

use crate::identity::TokenSources;
use crate::log;
use crate::policy::RatePolicy;
use crate::rate::RateLimiter;

#[derive(Default)]
pub struct Process {
    /// `limits.rate`: the pod's one token bucket, for the rate in force.
    rate: Mutex<Option<Arc<RateLimiter>>>,
    /// XOAUTH2 token sources, shared across reloads that keep the credential.
    pub tokens: TokenSources,
    /// The tenant named on every line and where lines go: fixed at start
    /// (a reload cannot rename the tenant, see `app`).
    pub log: log::Context,
}

impl Process {
    /// The state of a process whose lines go through `log`.
    pub fn new(log: log::Context) -> Process {
        Process {
            rate: Mutex::default(),
            tokens: TokenSources::new(log.clone()),
            log,
        }
    }

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

    #[test]
    fn each_process_writes_its_own_tenant_to_its_own_sink() {
        let lines_a = Arc::new(Mutex::new(Vec::new()));
        let lines_b = Arc::new(Mutex::new(Vec::new()));
        let a = Process::new(log::Context::new("acme", log::Sink::Lines(lines_a.clone())));
        let b = Process::new(log::Context::new(
            "other",
            log::Sink::Lines(lines_b.clone()),
        ));
        a.log.info("one", serde_json::json!({ "n": 1 }));
        b.log.warn("two", serde_json::json!({ "n": 2 }));
        a.log.error("three", serde_json::json!({}));
        let read = |l: &Arc<Mutex<Vec<String>>>| -> Vec<serde_json::Value> {
            l.lock()
                .expect("lines")
                .iter()
                .map(|t| serde_json::from_str(t).expect("one JSON object per line"))
                .collect()
        };
        let (a_lines, b_lines) = (read(&lines_a), read(&lines_b));
        assert_eq!(a_lines.len(), 2);
        assert_eq!(b_lines.len(), 1);
        assert!(a_lines.iter().all(|v| v["tenant"] == "acme"));
        assert_eq!(a_lines[0]["event"], "one");
        assert_eq!(a_lines[1]["level"], "error");
        assert_eq!(b_lines[0]["tenant"], "other");
        assert_eq!(b_lines[0]["n"], 2);
        assert_eq!(
            a.tokens.log().tenant(),
            Some("acme"),
            "token sources log as the process"
        );
    }
}
