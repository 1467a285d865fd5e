//! Reading from the client: the read deadline (command or data timeout)
//! and the drain signal, waited on together with the socket's readiness.
//! Neither is made per read: the session owns one timer, armed once and
//! moved only when it fires early or must fire earlier, and one waiter for
//! the next phase change, made again only after a change.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{Outcome, Session};
use crate::runtime::Phase;
use crate::smtp::reply::local;

/// Where an unused read timer rests (re-armed before any read waits).
pub(super) const FAR: std::time::Duration = std::time::Duration::from_secs(86_400);

/// A pending wait for the next phase change (`false`: the sender is gone).
pub(super) type PhaseChange = Pin<Box<dyn Future<Output = bool> + Send>>;

pub(super) fn next_phase_change(phase: &mut watch::Receiver<Phase>) -> PhaseChange {
    // The session's own receiver has seen the current phase: the clone
    // waits for the next change only.
    phase.borrow_and_update();
    let mut rx = phase.clone();
    Box::pin(async move { rx.changed().await.is_ok() })
}

impl Session {
    /// Between commands: during drain a session without an open transaction
    /// is closed; once the drain deadline passed every session is.
    pub(super) fn shutdown_check(&mut self) -> Option<Outcome> {
        let phase = *self.phase.borrow();
        let close = match phase {
            Phase::Running => false,
            Phase::Draining => self.stage.tx().is_none(),
            Phase::Closing => true,
        };
        if close {
            self.reply(local::shutting_down());
            return Some(Outcome::Shutdown);
        }
        None
    }

    /// Reads more client bytes into the buffer; a `421` timeout at `until`.
    /// `watch_phase`: also return early when shutdown asks this session to close.
    /// `room`: how much to reserve for the read ([`COMMAND_READ`] between
    /// commands, [`READ_CHUNK`] while a message streams).
    pub(super) async fn read_more(
        &mut self,
        until: Instant,
        watch_phase: bool,
        room: usize,
    ) -> Result<(), Outcome> {
        // The timer may be armed earlier than `until` (it is then moved
        // when it fires), never later.
        if self.timer.deadline() > until {
            self.timer.as_mut().reset(until);
        }
        loop {
            // TLS may hold decrypted bytes the socket no longer signals.
            if self.io.is_tls() {
                if let Some(read) = self.try_read(room) {
                    return read;
                }
            }
            tokio::select! {
                // Wait for readability without a buffer: an idle session
                // holds no read buffer, only its small state.
                ready = self.io.readable() => {
                    if ready.is_err() {
                        return Err(Outcome::Error);
                    }
                    if let Some(read) = self.try_read(room) {
                        return read;
                    }
                }
                () = &mut self.timer => {
                    if Instant::now() < until {
                        // Armed for an earlier deadline that has since moved.
                        self.timer.as_mut().reset(until);
                        continue;
                    }
                    self.timer.as_mut().reset(Instant::now() + FAR);
                    self.reply(local::timeout());
                    return Err(Outcome::Timeout);
                }
                alive = &mut self.phase_change, if watch_phase => {
                    self.phase_change = next_phase_change(&mut self.phase);
                    if !alive {
                        return Err(Outcome::Shutdown);
                    }
                    if let Some(outcome) = self.shutdown_check() {
                        return Err(outcome);
                    }
                }
            }
        }
    }

    /// One read that does not wait; `None` when nothing was there (the
    /// buffer reserved for it is given back).
    fn try_read(&mut self, room: usize) -> Option<Result<(), Outcome>> {
        match self.io.try_read_buf(self.inbuf.read_target(room)) {
            Ok(0) => Some(Err(Outcome::Closed)),
            Ok(_) => Some(Ok(())),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                self.inbuf.trim();
                None
            }
            Err(_) => Some(Err(Outcome::Error)),
        }
    }
}
