//! Reading the upstream's replies to the pipelined envelope, in order
//! ([`crate::smtp::pipeline`] decides what the client sees), and replaying
//! the envelope on a new connection when a pooled one is found dead.

use super::stage::Written;
use super::Session;
use crate::smtp::pipeline::{Answer, Sent, Slot};
use crate::smtp::reply::local;
use crate::upstream::UpstreamError;

/// Why the envelope's connection cannot go on.
enum Lost {
    /// It failed (closed, reset, timed out).
    Error(UpstreamError),
    /// It is gone already (a write failed, or an earlier reply).
    Gone,
    /// It answered `421`: the server is closing it (e.g. its idle timeout).
    Closing,
}

impl Session {
    /// Reads the upstream's replies to every pipelined command, in order,
    /// applies them to the transaction and queues them for the client.
    pub(super) async fn settle(&mut self) {
        if self.pipe.is_empty() {
            return;
        }
        if let Some(conn) = self.upstream.as_mut() {
            if let Err(e) = conn.flush().await {
                self.log_upstream_error(&e);
                self.upstream = None;
            }
        }
        while let Some(slot) = self.pipe.pop() {
            let sent = match slot {
                Slot::Ready(reply) => {
                    reply.write_to(&mut self.out);
                    continue;
                }
                Slot::Upstream(sent) => sent,
            };
            let replayable = self.stage.tx().is_some_and(|tx| tx.replayable);
            let out = &mut self.out;
            let pipe = &mut self.pipe;
            let result = match self.upstream.as_mut() {
                Some(conn) => match conn.reply().await {
                    Ok(reply) if reply.code == 421 && replayable => Err(Lost::Closing),
                    Ok(reply) => {
                        let effect = pipe.answer(sent, reply);
                        match effect.answer {
                            Answer::Forward => reply.write_to(out),
                            Answer::MailRefusal => {
                                if let Some(refusal) = pipe.mail_refusal() {
                                    refusal.write_to(out);
                                }
                            }
                            Answer::Silent => {}
                        }
                        if effect.mail_refused {
                            // No transaction upstream: nothing to reset.
                            conn.set_clean(true);
                        }
                        Ok(effect)
                    }
                    Err(e) => Err(Lost::Error(e)),
                },
                None => Err(Lost::Gone),
            };
            match result {
                Ok(effect) => {
                    let owed = self.pipe.owed_upstream();
                    if let Some(tx) = self.stage.tx_mut() {
                        if effect.accepted {
                            tx.accepted += 1;
                        } else if sent == Sent::Rcpt && effect.answer == Answer::Forward {
                            // Refused: never replayed (the client was told so).
                            let at = tx.envelope.len().saturating_sub(owed + 1);
                            if at > 0 && at < tx.envelope.len() {
                                tx.envelope.remove(at);
                            }
                        }
                        if effect.mail_refused {
                            tx.replayable = false;
                        }
                    }
                }
                Err(lost) => {
                    match lost {
                        Lost::Error(e) => self.log_upstream_error(&e),
                        Lost::Closing => self.log_upstream_error(&UpstreamError::Closed),
                        Lost::Gone => {}
                    }
                    self.upstream = None;
                    if replayable {
                        self.pipe.unpop(sent);
                        if self.replay().await {
                            continue;
                        }
                        // The replay failed: this slot is answered below.
                        self.pipe.pop();
                    }
                    self.stage.end_transaction();
                    // MAIL was answered already; a RCPT gets the failure.
                    if sent == Sent::Rcpt {
                        local::upstream_failed().write_to(&mut self.out);
                    }
                }
            }
        }
        self.release_upstream();
    }

    /// The pooled connection holding this envelope is dead: a new one gets
    /// the whole envelope (MAIL and the RCPTs not refused). The replies to
    /// commands the client has its answer for must all be positive again;
    /// those still owed are left for [`Session::settle`] to read.
    async fn replay(&mut self) -> bool {
        let Some(tx) = self.stage.tx_mut() else {
            return false;
        };
        tx.replayable = false;
        metrics::counter!("smtpbind_upstream_replays_total").increment(1);
        let answered = tx.envelope.len().saturating_sub(self.pipe.owed_upstream());
        if self.upstream_connection().await.is_err() {
            self.upstream = None;
            return false;
        }
        let (Some(tx), Some(conn)) = (self.stage.tx(), self.upstream.as_mut()) else {
            return false;
        };
        if !conn.capabilities().pipelining {
            self.upstream = None;
            return false;
        }
        // The new connection is this transaction's from here on.
        let _ = conn.take_reused();
        conn.set_clean(false);
        let result = async {
            for line in &tx.envelope {
                conn.write(line.as_bytes()).await?;
            }
            if tx.written == Written::Data {
                // Its reply is read with the first message bytes.
                conn.write(b"DATA\r\n").await?;
            }
            conn.flush().await?;
            for _ in 0..answered {
                let r = conn.reply().await?;
                if !r.is_positive() {
                    // The upstream answers differently now: the client's
                    // earlier answers no longer hold, the transaction fails.
                    return Err(UpstreamError::ReplayRefused(r.last_line()));
                }
            }
            Ok(())
        }
        .await;
        let ok = match result {
            Ok(()) => true,
            Err(e) => {
                self.log_upstream_error(&e);
                false
            }
        };
        if !ok {
            self.upstream = None;
        }
        ok
    }
}
