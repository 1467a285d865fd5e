//! How many upstream connections this process holds: the cap
//! (`upstream.max_connections`, e.g. Microsoft 365's 3 per mailbox) and the
//! recent demand that burst warm-up follows.
//!
//! Every upstream connection — being opened, in a session's hands or idle in
//! the pool — holds one [`Slot`]; dropping the connection frees it. A slot is
//! *in use* while a session holds its connection (or is opening it); the
//! highest number in use at once is remembered as the recent peak
//! ([`Peak`]). The [`Limiter`] outlives policy reloads (the new runtime takes
//! the old one's), so connections still held by sessions of the previous
//! policy count against the cap too.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::Notify;

/// The peak is remembered for one to two of these.
pub const PEAK_WINDOW: Duration = Duration::from_secs(300);

/// The highest number of connections in use at once over the last 5 to 10
/// minutes: two windows of [`PEAK_WINDOW`], the current one and the one
/// before. A window without any use forgets the one before it.
#[derive(Debug, Clone, Copy)]
pub struct Peak {
    started: Instant,
    current: usize,
    previous: usize,
}

impl Peak {
    pub fn new(now: Instant) -> Peak {
        Peak {
            started: now,
            current: 0,
            previous: 0,
        }
    }

    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed >= PEAK_WINDOW {
            self.previous = if elapsed < 2 * PEAK_WINDOW {
                self.current
            } else {
                0
            };
            self.current = 0;
            self.started = now;
        }
    }

    /// Records `in_use` connections in use at `now`.
    pub fn note(&mut self, now: Instant, in_use: usize) {
        self.roll(now);
        self.current = self.current.max(in_use);
    }

    /// The peak of the current and the previous window.
    pub fn recent(&mut self, now: Instant) -> usize {
        self.roll(now);
        self.current.max(self.previous)
    }
}

#[derive(Debug)]
struct State {
    /// `usize::MAX`: no cap.
    cap: usize,
    open: usize,
    in_use: usize,
    peak: Peak,
}

/// The process's count of upstream connections, shared by every policy
/// snapshot.
#[derive(Debug)]
pub struct Limiter {
    state: Mutex<State>,
    /// Signalled when a slot or an idle connection may have become free.
    freed: Notify,
}

impl Limiter {
    pub fn new(cap: Option<usize>) -> Arc<Limiter> {
        Arc::new(Limiter {
            state: Mutex::new(State {
                cap: cap.unwrap_or(usize::MAX),
                open: 0,
                in_use: 0,
                peak: Peak::new(Instant::now()),
            }),
            freed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Counters only: consistent even if a holder panicked.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A policy reload changed the cap.
    pub fn set_cap(&self, cap: Option<usize>) {
        self.lock().cap = cap.unwrap_or(usize::MAX);
        self.freed.notify_waiters();
    }

    /// A slot for a new connection, unless the cap is reached. `in_use`:
    /// for a session (counted as demand), not for warm-up.
    pub fn try_reserve(self: &Arc<Self>, in_use: bool) -> Option<Slot> {
        let mut s = self.lock();
        if s.open >= s.cap {
            return None;
        }
        s.open += 1;
        if in_use {
            s.in_use += 1;
            let n = s.in_use;
            s.peak.note(Instant::now(), n);
        }
        publish(&s);
        Some(Slot {
            limiter: self.clone(),
            in_use,
        })
    }

    /// The recent peak of connections in use, and how many are in use now.
    pub fn demand(&self) -> (usize, usize) {
        let mut s = self.lock();
        let in_use = s.in_use;
        (s.peak.recent(Instant::now()), in_use)
    }

    /// The cap (`usize::MAX` when none).
    pub fn cap(&self) -> usize {
        self.lock().cap
    }

    /// Wakes every session waiting for a connection.
    pub fn wake(&self) {
        self.freed.notify_waiters();
    }

    /// A future that completes at the next [`Limiter::wake`]; enable it
    /// before looking for a connection so no wake-up is lost.
    pub fn freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.freed.notified()
    }
}

fn publish(s: &State) {
    metrics::gauge!("smtpbind_upstream_connections").set(s.open as f64);
}

/// One upstream connection's place under the cap; freed on drop.
#[derive(Debug)]
pub struct Slot {
    limiter: Arc<Limiter>,
    in_use: bool,
}

impl Slot {
    /// A session takes (true) or gives back (false) the connection.
    pub fn set_in_use(&mut self, in_use: bool) {
        if self.in_use == in_use {
            return;
        }
        self.in_use = in_use;
        let mut s = self.limiter.lock();
        if in_use {
            s.in_use += 1;
            let n = s.in_use;
            s.peak.note(Instant::now(), n);
        } else {
            s.in_use = s.in_use.saturating_sub(1);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        {
            let mut s = self.limiter.lock();
            s.open = s.open.saturating_sub(1);
            if self.in_use {
                s.in_use = s.in_use.saturating_sub(1);
            }
            publish(&s);
        }
        self.limiter.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_counts_open_connections_and_frees_on_drop() {
        let l = Limiter::new(Some(2));
        let a = l.try_reserve(true).expect("first");
        let b = l.try_reserve(false).expect("second");
        assert!(l.try_reserve(true).is_none(), "cap reached");
        drop(a);
        let c = l.try_reserve(true).expect("freed by drop");
        assert_eq!(l.demand(), (1, 1), "b was warm-up, not demand");
        drop((b, c));
        assert!(Limiter::new(None).try_reserve(true).is_some());
    }

    #[test]
    fn in_use_follows_the_sessions_and_sets_the_peak() {
        let l = Limiter::new(None);
        let mut slots: Vec<Slot> = (0..3)
            .map(|_| l.try_reserve(false).expect("slot"))
            .collect();
        for s in &mut slots {
            s.set_in_use(true);
        }
        assert_eq!(l.demand(), (3, 3));
        for s in &mut slots {
            s.set_in_use(false);
        }
        assert_eq!(l.demand(), (3, 0), "the peak stays");
        slots[0].set_in_use(true);
        drop(slots);
        assert_eq!(
            l.demand(),
            (3, 0),
            "a dropped in-use slot is no longer in use"
        );
    }

    #[test]
    fn the_peak_is_kept_for_one_to_two_windows() {
        let t0 = Instant::now();
        let mut p = Peak::new(t0);
        p.note(t0, 8);
        assert_eq!(p.recent(t0 + PEAK_WINDOW / 2), 8);
        // Next window: the previous one's peak still counts.
        p.note(t0 + PEAK_WINDOW + Duration::from_secs(1), 2);
        assert_eq!(p.recent(t0 + PEAK_WINDOW + Duration::from_secs(2)), 8);
        // Two windows later it is gone.
        assert_eq!(p.recent(t0 + 2 * PEAK_WINDOW + Duration::from_secs(2)), 2);
        assert_eq!(p.recent(t0 + 5 * PEAK_WINDOW), 0);
    }
}
