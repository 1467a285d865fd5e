//! `limits.rate` (contract §10): one token bucket per process (per pod),
//! counted at MAIL FROM before anything of the transaction goes upstream.
//!
//! The bucket holds up to `burst` tokens and refills at
//! `messages_per_second`. A MAIL takes one: at once when one is there,
//! else it reserves the next one and waits for it — unless that wait would
//! exceed `max_wait`, then it is refused at once (`451 4.7.0`) and takes
//! nothing. Reservations queue in order, so over any window `T` at most
//! `burst + rate * T` MAILs go on. Each replica has its own bucket, held by
//! the process-lifetime [`crate::process::Process`] and carried in each
//! snapshot (`Runtime::rate`).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::policy::RatePolicy;

/// What a MAIL got from the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A token was there.
    Immediate,
    /// Waited this long for one, then went on.
    Delayed(Duration),
    /// The wait would have exceeded `max_wait`: answer `451 4.7.0`.
    Refused,
}

pub struct RateLimiter {
    policy: RatePolicy,
    /// Tokens (negative: reserved ahead) as of the instant.
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    pub fn new(policy: RatePolicy) -> RateLimiter {
        RateLimiter {
            policy,
            state: Mutex::new((f64::from(policy.burst), Instant::now())),
        }
    }

    /// The rate this bucket enforces.
    pub fn policy(&self) -> RatePolicy {
        self.policy
    }

    /// Decides without waiting: `Ok(wait)` with the token reserved, or
    /// `Err(())` when the wait would exceed `max_wait`.
    fn reserve(&self) -> Result<Duration, ()> {
        let rate = self.policy.messages_per_second;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(state.1).as_secs_f64();
        let tokens = (state.0 + elapsed * rate).min(f64::from(self.policy.burst));
        // Never panics: a wait too long for a Duration (a tiny rate) is
        // longer than any `max_wait`, so refused.
        let wait = if tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::try_from_secs_f64((1.0 - tokens) / rate).unwrap_or(Duration::MAX)
        };
        if wait > self.policy.max_wait {
            *state = (tokens, now);
            return Err(());
        }
        *state = (tokens - 1.0, now);
        Ok(wait)
    }

    /// Takes one token, waiting up to `max_wait`; counts
    /// `smtpbind_rate_limited_total{result}` for MAILs that waited or were refused.
    pub async fn acquire(&self) -> Admission {
        match self.reserve() {
            Ok(wait) if wait.is_zero() => Admission::Immediate,
            Ok(wait) => {
                tokio::time::sleep(wait).await;
                metrics::counter!("smtpbind_rate_limited_total", "result" => "delayed")
                    .increment(1);
                Admission::Delayed(wait)
            }
            Err(()) => {
                metrics::counter!("smtpbind_rate_limited_total", "result" => "refused")
                    .increment(1);
                Admission::Refused
            }
        }
    }
}

/// The reply to a MAIL over the rate.
pub fn refused_reply() -> crate::smtp::reply::Reply {
    crate::smtp::reply::Reply::new(451, "4.7.0 sending rate exceeded, try again later")
}

/// For the session's MAIL: `true` to go on, `false` to answer `451 4.7.0`.
pub async fn admit(limiter: Option<&RateLimiter>) -> bool {
    match limiter {
        None => true,
        Some(l) => l.acquire().await != Admission::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn policy(rate: f64, burst: u32, max_wait_ms: u64) -> RatePolicy {
        RatePolicy {
            messages_per_second: rate,
            burst,
            max_wait: Duration::from_millis(max_wait_ms),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn burst_then_rate_then_refusal() {
        let l = RateLimiter::new(policy(2.0, 3, 1000));
        for _ in 0..3 {
            assert_eq!(l.acquire().await, Admission::Immediate);
        }
        // Next token in 0.5 s, the one after in 1.0 s: both within max_wait.
        let start = Instant::now();
        assert!(matches!(l.acquire().await, Admission::Delayed(_)));
        assert_eq!(start.elapsed(), Duration::from_millis(500));
        // Reserve ahead: two waiters, the second would wait 1.0 s, the third 1.5 s.
        assert!(l.reserve().is_ok());
        assert!(l.reserve().is_ok());
        assert!(l.reserve().is_err());
    }

    /// Issue 19: `1e-20` passes `check`; the second MAIL used to panic
    /// (`Duration::from_secs_f64` overflow). Now it is refused.
    #[tokio::test(start_paused = true)]
    async fn the_extremes_check_allows_never_panic() {
        let l = RateLimiter::new(policy(1e-20, 1, 3_600_000));
        assert_eq!(l.acquire().await, Admission::Immediate);
        assert_eq!(l.acquire().await, Admission::Refused);
        let l = RateLimiter::new(policy(f64::MIN_POSITIVE, 1, 1));
        assert_eq!(l.acquire().await, Admission::Immediate);
        assert_eq!(l.acquire().await, Admission::Refused);
        let l = RateLimiter::new(policy(100_000.0, 100_000, 3_600_000));
        for _ in 0..100_001 {
            assert_ne!(l.acquire().await, Admission::Refused);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn bound_over_a_window() {
        let l = Arc::new(RateLimiter::new(policy(10.0, 5, 200)));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let l = l.clone();
            tasks.push(tokio::spawn(async move {
                let (mut admitted, mut refused) = (0u32, 0u32);
                while start.elapsed() < Duration::from_secs(10) {
                    if l.acquire().await == Admission::Refused {
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(7)).await;
                    } else {
                        admitted += 1;
                    }
                }
                (admitted, refused)
            }));
        }
        let (mut admitted, mut refused) = (0, 0);
        for t in tasks {
            let (a, r) = t.await.expect("task");
            admitted += a;
            refused += r;
        }
        // burst + rate * window, plus the waits that started before the end.
        assert!(admitted <= 5 + 100 + 2, "{admitted}");
        assert!(admitted >= 100, "{admitted}");
        assert!(refused > 0);
    }
}
