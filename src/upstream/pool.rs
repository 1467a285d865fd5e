//! Reuse of authenticated upstream connections across client sessions.
//!
//! The key is the credential's pin — the sha256 of the secret itself —
//! and, for XOAUTH2, the mailbox (`user=`) it authenticated as: two
//! credentials with the same username (`apikey`) never share a connection.
//! A token refresh keeps the pooled connections; a gap without a usable
//! token drops them (`Connection::is_stale`). On rotation [`Pool::set_current`] closes every idle
//! connection of any other pin before a session can use the new credential;
//! connections are also dropped after any error (sessions simply don't check
//! them back in), when idle longer than the limit, or when the server closed
//! or spoke while idle.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Connection;
use crate::policy::{Pin, ReusePolicy};

struct Idle {
    since: Instant,
    conn: Connection,
}

struct Inner {
    /// Pin of the credential in force; only its connections are kept.
    current: Option<Pin>,
    idle: Vec<Idle>,
}

pub struct Pool {
    inner: Mutex<Inner>,
    max_idle: usize,
    idle_timeout: Duration,
    /// XOAUTH2 `user=` of the policy; connections of any other are never kept.
    user: Option<String>,
}

impl Pool {
    pub fn new(policy: ReusePolicy) -> Pool {
        Pool {
            inner: Mutex::new(Inner {
                current: None,
                idle: Vec::new(),
            }),
            max_idle: policy.max_idle,
            idle_timeout: policy.idle_timeout,
            user: None,
        }
    }

    /// The pool for a policy: keyed by pin and, with XOAUTH2, the `user`.
    pub fn for_policy(policy: &crate::policy::Policy) -> Pool {
        let mut pool = Pool::new(policy.upstream.reuse);
        pool.user = policy.credential.oauth2.as_ref().map(|o| o.user.clone());
        pool
    }

    fn same_key(&self, conn: &Connection, pin: Pin) -> bool {
        conn.pin() == pin && conn.user() == self.user.as_deref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-push; the
        // state is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A live idle connection authenticated with exactly `pin`, if any.
    pub async fn checkout(&self, pin: Pin) -> Option<Connection> {
        loop {
            let candidate = {
                let mut inner = self.lock();
                if inner.current != Some(pin) {
                    return None;
                }
                let now = Instant::now();
                let timeout = self.idle_timeout;
                inner.idle.retain(|i| now.duration_since(i.since) < timeout);
                let pos = inner
                    .idle
                    .iter()
                    .rposition(|i| self.same_key(&i.conn, pin))?;
                inner.idle.swap_remove(pos).conn
            };
            let mut conn = candidate;
            if self.same_key(&conn, pin) && conn.is_clean() && !conn.is_stale().await {
                conn.mark_reused();
                metrics::counter!("smtpbind_upstream_reuse_total", "result" => "hit").increment(1);
                return Some(conn);
            }
            // Stale: drop it and look for another.
        }
    }

    /// Offers a connection for reuse. It is kept only when clean and
    /// authenticated with the credential in force now; otherwise it is handed
    /// back for the caller to close.
    pub fn checkin(&self, conn: Connection) -> Option<Connection> {
        if self.max_idle == 0 || !conn.is_clean() {
            return Some(conn);
        }
        let mut inner = self.lock();
        if inner.current != Some(conn.pin())
            || !self.same_key(&conn, conn.pin())
            || inner.idle.len() >= self.max_idle
        {
            return Some(conn);
        }
        inner.idle.push(Idle {
            since: Instant::now(),
            conn,
        });
        None
    }

    /// Sets the credential in force and closes every idle connection
    /// authenticated with any other (all of them, for `None`). Called on
    /// rotation *before* the new credential is published to sessions.
    pub fn set_current(&self, pin: Option<Pin>) -> usize {
        let mut inner = self.lock();
        inner.current = pin;
        let before = inner.idle.len();
        inner.idle.retain(|i| Some(i.conn.pin()) == pin);
        before - inner.idle.len()
    }
}
