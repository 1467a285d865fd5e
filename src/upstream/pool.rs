//! Reuse of authenticated upstream connections across client sessions.
//!
//! The key is the credential's pin — the sha256 of the secret itself —
//! and, for XOAUTH2, the mailbox (`user=`) it authenticated as: two
//! credentials with the same username (`apikey`) never share a connection.
//! A token refresh keeps the pooled connections; a gap without a usable
//! token drops them (`Connection::is_stale`). A pool belongs to one published
//! snapshot (`crate::runtime`) and keeps the connections of that snapshot's
//! pin only ([`Pool::set_current`] at build; `None` when retired);
//! connections are also dropped after any error (sessions simply don't
//! check them back in), when idle longer than the limit, or when the server
//! closed or spoke while idle.
//!
//! [`Pool::acquire`] is how a session gets a connection: an idle one, else
//! room under the cap (`upstream.max_connections`, see [`super::limit`]) to
//! open one, else it waits — bounded — for one to be returned or closed.
//! When a session finds the pool empty (a cold burst), it is also told how
//! many connections to open ahead of the sessions likely to follow: up to
//! the recent peak of connections in use (see [`Pool::burst_size`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::limit::{Limiter, Slot};
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
    /// Connections being opened ahead of demand, not in the pool yet.
    warming: usize,
}

pub struct Pool {
    inner: Mutex<Inner>,
    max_idle: usize,
    idle_timeout: Duration,
    /// XOAUTH2 `user=` of the policy; connections of any other are never kept.
    user: Option<String>,
    limiter: Arc<Limiter>,
}

/// What [`Pool::acquire`] found.
pub enum Acquired {
    /// An idle connection authenticated with the session's credential.
    Pooled(Connection),
    /// Room under the cap to open a new connection. `warm`: how many more
    /// to open ahead of demand (a cold burst began); already counted as
    /// warming, each must end with [`Pool::warm_done`].
    Open { slot: Slot, warm: usize },
    /// The cap stayed reached for the whole wait.
    Busy,
}

impl Pool {
    pub fn new(policy: ReusePolicy, limiter: Arc<Limiter>) -> Pool {
        Pool {
            inner: Mutex::new(Inner {
                current: None,
                idle: Vec::new(),
                warming: 0,
            }),
            max_idle: policy.max_idle,
            idle_timeout: policy.idle_timeout,
            user: None,
            limiter,
        }
    }

    /// The pool for a policy: keyed by pin and, with XOAUTH2, the `user`.
    pub fn for_policy(policy: &crate::policy::Policy, limiter: Arc<Limiter>) -> Pool {
        let mut pool = Pool::new(policy.upstream.reuse, limiter);
        pool.user = policy.credential.oauth2.as_ref().map(|o| o.user.clone());
        pool
    }

    /// The process-wide connection count this pool's connections hold slots in.
    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.limiter
    }

    /// Whether connections are kept for reuse at all (`max_idle > 0`).
    pub fn keeps_idle(&self) -> bool {
        self.max_idle > 0
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
                conn.set_in_use(true);
                reuse_hits().increment(1);
                return Some(conn);
            }
            // Stale: drop it and look for another.
        }
    }

    /// A connection for a session with credential `pin`: an idle one, or a
    /// slot to open one (with the warm-up size when a cold burst begins).
    /// When the cap is reached, waits up to `wait` for a connection to be
    /// returned or closed. While connections opened ahead of demand are on
    /// their way, a session waits for one of them (they started earlier)
    /// rather than opening its own — until `wait` has passed.
    pub async fn acquire(&self, pin: Pin, wait: Duration) -> Acquired {
        // The common case, a warm pool: no waiter registered, no deadline.
        if let Some(conn) = self.checkout(pin).await {
            return Acquired::Pooled(conn);
        }
        let deadline = Instant::now() + wait;
        let mut waited = false;
        loop {
            let freed = self.limiter.freed();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(conn) = self.checkout(pin).await {
                if waited {
                    count_wait("pooled");
                }
                return Acquired::Pooled(conn);
            }
            let past = Instant::now() >= deadline;
            {
                let mut inner = self.lock();
                if inner.warming == 0 || past {
                    if let Some(slot) = self.limiter.try_reserve(true) {
                        let cold = inner.idle.is_empty() && inner.warming == 0;
                        let warm = if cold { self.burst_size() } else { 0 };
                        inner.warming += warm;
                        if waited {
                            count_wait("opened");
                        }
                        return Acquired::Open { slot, warm };
                    }
                }
            }
            if past {
                count_wait("timeout");
                return Acquired::Busy;
            }
            waited = true;
            // Woken by a returned or closed connection, or at the deadline
            // (then one last look before giving up).
            let _ = tokio::time::timeout_at(deadline, freed).await;
        }
    }

    /// Connections to open ahead of demand when a burst begins: up to the
    /// recent peak of connections in use at once, bounded by `max_idle` and
    /// the cap, minus those in use now (this session's included).
    fn burst_size(&self) -> usize {
        let (peak, in_use) = self.limiter.demand();
        let target = peak.min(self.max_idle).min(self.limiter.cap());
        target.saturating_sub(in_use)
    }

    /// Counts `n` connections being opened ahead of demand (start,
    /// rotation, reload); each must end with [`Pool::warm_done`].
    pub fn begin_warm(&self, n: usize) {
        self.lock().warming += n;
    }

    /// One connection opened ahead of demand is in the pool, or failed.
    pub fn warm_done(&self) {
        {
            let mut inner = self.lock();
            inner.warming = inner.warming.saturating_sub(1);
        }
        self.limiter.wake();
    }

    /// Offers a connection for reuse. It is kept only when clean and
    /// authenticated with the credential in force now; otherwise it is handed
    /// back for the caller to close.
    pub fn checkin(&self, mut conn: Connection) -> Option<Connection> {
        if self.max_idle == 0 || !conn.is_clean() {
            return Some(conn);
        }
        {
            let mut inner = self.lock();
            if inner.current != Some(conn.pin())
                || !self.same_key(&conn, conn.pin())
                || inner.idle.len() >= self.max_idle
            {
                return Some(conn);
            }
            conn.set_in_use(false);
            inner.idle.push(Idle {
                since: Instant::now(),
                conn,
            });
        }
        self.limiter.wake();
        None
    }

    /// Takes the idle connections that reached the idle timeout, for the
    /// caller to close (QUIT): nothing is kept open past it.
    pub fn expired(&self) -> Vec<Connection> {
        let mut inner = self.lock();
        let now = Instant::now();
        let timeout = self.idle_timeout;
        let (old, keep): (Vec<Idle>, Vec<Idle>) = std::mem::take(&mut inner.idle)
            .into_iter()
            .partition(|i| now.duration_since(i.since) >= timeout);
        inner.idle = keep;
        old.into_iter().map(|i| i.conn).collect()
    }

    /// Sets the credential in force and closes every idle connection
    /// authenticated with any other (all of them, for `None`). Called on
    /// rotation *before* the new credential is published to sessions.
    pub fn set_current(&self, pin: Option<Pin>) -> usize {
        let dropped = {
            let mut inner = self.lock();
            inner.current = pin;
            let before = inner.idle.len();
            inner.idle.retain(|i| Some(i.conn.pin()) == pin);
            before - inner.idle.len()
        };
        self.limiter.wake();
        dropped
    }
}

/// `smtpbind_upstream_reuse_total{result="hit"}`, looked up in the
/// recorder once: a hit is every message of a reused session, and a lookup
/// by name and labels registered (allocated) a handle each time. The
/// recorder is installed before any session.
fn reuse_hits() -> &'static metrics::Counter {
    static HITS: std::sync::OnceLock<metrics::Counter> = std::sync::OnceLock::new();
    HITS.get_or_init(|| metrics::counter!("smtpbind_upstream_reuse_total", "result" => "hit"))
}

fn count_wait(result: &'static str) {
    metrics::counter!("smtpbind_upstream_waits_total", "result" => result).increment(1);
}
