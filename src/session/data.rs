//! The DATA and BDAT verbs: framing of the client's message (end marker or
//! chunk sizes); the content goes through the message pipeline.

use std::time::Duration;

use tokio::time::Instant;

use super::message::{Inbound, Refusal, Upstream};
use super::stage::{Chunked, Written};
use super::{spare, Flow, Outcome, Session, READ_CHUNK};
use crate::runtime::Phase;
use crate::smtp::data::{DataDecoder, Feed, LineEndingFilter};
use crate::smtp::reply::{local, Reply};

impl Session {
    pub(super) async fn data(&mut self) -> Flow {
        if self.stage.chunks_open() {
            self.settle().await;
            return self.bad_command(local::bdat_in_progress());
        }
        // A client that pipelined its envelope: DATA goes upstream behind
        // the RCPTs still owed, one round trip for all (§4).
        let pipelined = self.pipeline_data().await;
        self.settle().await;
        if let Err(flow) = self.ready_for_message() {
            if pipelined {
                self.refuse_pipelined_data().await;
            }
            return flow;
        }
        let mut msg = self.new_inbound();
        if pipelined && self.upstream.is_some() {
            // Its 354 is read with the first message bytes, as for
            // `early_data` (a replay wrote it again on the new connection).
            msg.upstream = Upstream::DataSent;
        } else {
            self.early_data(&mut msg).await;
        }
        self.reply_static(local::START_DATA);
        if self.flush().await.is_err() {
            return Flow::End(Outcome::Error);
        }
        let mut decoder = DataDecoder::new(msg.mode);
        let mut content = std::mem::take(&mut self.spare.content);
        let data_timeout = self.rt.policy.limits.data_timeout;
        loop {
            if !self.inbuf.has_pending() {
                if let Err(outcome) = self.read_data(data_timeout).await {
                    return self.abandon_message(&msg, outcome);
                }
            }
            let ended = match decoder.feed(self.inbuf.pending(), &mut content) {
                Feed::Ended { consumed } => {
                    self.inbuf.consume(consumed);
                    true
                }
                Feed::More => {
                    let n = self.inbuf.pending().len();
                    self.inbuf.consume(n);
                    false
                }
            };
            self.accept_content(
                &mut msg,
                &mut content,
                decoder.saw_bare_line_ending(),
                ended,
            )
            .await;
            if ended {
                break;
            }
            if let Some(flow) = self.cut_off_runaway(&msg) {
                return flow;
            }
        }
        spare::keep(&mut self.spare.content, content);
        self.finish_message(msg).await
    }

    /// BDAT (RFC 3030): chunks of exactly `size` octets, no dot-stuffing, no
    /// end marker. Relayed as BDAT when the upstream offers CHUNKING and
    /// PIPELINING, otherwise as DATA (re-stuffed), with the same policy as
    /// DATA: line endings, size, header From.
    pub(super) async fn bdat(&mut self, size: usize, last: bool) -> Flow {
        let mut chunked = match self.stage.take_chunks() {
            Some(chunked) => chunked,
            None => {
                if let Err(flow) = self.ready_for_message() {
                    // The chunk's octets still follow the command: skip
                    // them, up to the largest message the policy accepts.
                    // Past that the refusal is sent and the session closed
                    // (the stream cannot be resynchronised without reading
                    // them all).
                    let max = self.rt.policy.limits.max_message_bytes;
                    if u64::try_from(size).map_or(true, |s| s > max) {
                        return Flow::End(Outcome::Rejected);
                    }
                    return match self.skip_octets(size).await {
                        Ok(()) => flow,
                        Err(outcome) => Flow::End(outcome),
                    };
                }
                let mut msg = self.new_inbound();
                self.early_data(&mut msg).await;
                let filter = LineEndingFilter::new(msg.mode);
                Box::new(Chunked { msg, filter })
            }
        };
        let data_timeout = self.rt.policy.limits.data_timeout;
        let mut remaining = size;
        let mut content = std::mem::take(&mut self.spare.content);
        while remaining > 0 {
            if !self.inbuf.has_pending() {
                if let Err(outcome) = self.read_data(data_timeout).await {
                    return self.abandon_message(&chunked.msg, outcome);
                }
            }
            let take = remaining.min(self.inbuf.pending().len());
            chunked
                .filter
                .feed(&self.inbuf.pending()[..take], &mut content);
            self.inbuf.consume(take);
            remaining -= take;
            if remaining == 0 && last {
                chunked.filter.finish(&mut content);
            }
            let ended = remaining == 0 && last;
            self.accept_content(
                &mut chunked.msg,
                &mut content,
                chunked.filter.saw_bare_line_ending(),
                ended,
            )
            .await;
            if let Some(flow) = self.cut_off_runaway(&chunked.msg) {
                return flow;
            }
        }
        if size == 0 && last {
            chunked.filter.finish(&mut content);
            self.accept_content(
                &mut chunked.msg,
                &mut content,
                chunked.filter.saw_bare_line_ending(),
                true,
            )
            .await;
        }
        spare::keep(&mut self.spare.content, content);
        if last {
            return self.finish_message(chunked.msg).await;
        }
        if chunked.msg.upstream.refused() {
            // RFC 3030: a failed chunk fails the transaction.
            return self.finish_message(chunked.msg).await;
        }
        self.reply(Reply::new(250, format!("2.0.0 {size} octets received")));
        self.stage.keep_chunks(chunked);
        Flow::Continue
    }

    /// Reads and drops `n` octets (a BDAT chunk that cannot be accepted).
    pub(super) async fn skip_octets(&mut self, mut n: usize) -> Result<(), Outcome> {
        let data_timeout = self.rt.policy.limits.data_timeout;
        while n > 0 {
            if !self.inbuf.has_pending() {
                self.read_data(data_timeout).await?;
            }
            let take = n.min(self.inbuf.pending().len());
            self.inbuf.consume(take);
            n -= take;
        }
        Ok(())
    }

    /// Writes DATA upstream (not flushed: [`Session::settle`] does) when the
    /// client pipelined it behind RCPTs whose replies are still owed, so
    /// that the upstream reads MAIL, RCPT and DATA in one round trip. Only
    /// to a PIPELINING upstream taking DATA (not BDAT), and only when the
    /// upstream has a transaction to put it in (a RCPT went out, MAIL was
    /// not refused). A failed write leaves the connection to `settle`,
    /// which replays the envelope, DATA included, or fails it.
    async fn pipeline_data(&mut self) -> bool {
        if self.pipe.owed_upstream() == 0 || self.pipe.mail_refusal().is_some() {
            return false;
        }
        let chunking = self.upstream_chunking();
        let (Some(tx), Some(conn)) = (self.stage.tx_mut(), self.upstream.as_mut()) else {
            return false;
        };
        if tx.written == Written::MailHeld || !conn.capabilities().pipelining || chunking {
            return false;
        }
        tx.written = Written::Data;
        if let Err(e) = conn.write(b"DATA\r\n").await {
            self.log_upstream_error(&e);
            self.upstream = None;
        }
        true
    }

    /// The upstream's reply to a pipelined DATA when the client's DATA is
    /// refused (no recipient accepted, the transaction lost): read and
    /// dropped. A 354 there means the upstream would take a message for no
    /// recipient the client was told of: the connection is dropped, so
    /// nothing is ever ended on it.
    async fn refuse_pipelined_data(&mut self) {
        if let Some(tx) = self.stage.tx_mut() {
            // Answered here: a replay must not write it again.
            tx.written = Written::Envelope;
        }
        let Some(conn) = self.upstream.as_mut() else {
            return;
        };
        match conn.reply().await {
            Ok(r) if r.code != 354 => {}
            Ok(_) => self.upstream = None,
            Err(e) => {
                self.log_upstream_error(&e);
                self.upstream = None;
            }
        }
        // The transaction stays open (the client may add a recipient or
        // RSET): the connection stays with it.
    }

    /// Sends DATA upstream without waiting for its 354, which is read when
    /// the first message bytes are forwarded: the upstream's round trip
    /// overlaps the client sending its message.
    pub(super) async fn early_data(&mut self, msg: &mut Inbound) {
        if msg.upstream.chunked() {
            // BDAT upstream: no DATA, no 354 to wait for.
            return;
        }
        let Some(conn) = self.upstream.as_mut() else {
            return;
        };
        match conn.send(b"DATA\r\n").await {
            Ok(()) => {
                msg.upstream = Upstream::DataSent;
            }
            Err(e) => {
                self.lose_upstream_mid_message(msg, &e);
            }
        }
    }

    /// Sends DATA upstream and expects 354.
    pub(super) async fn upstream_data(&mut self) -> Result<(), Refusal> {
        let Some(conn) = self.upstream.as_mut() else {
            return Err(Refusal::UpstreamLost);
        };
        match conn.command(b"DATA\r\n").await {
            Ok(r) if r.code == 354 => Ok(()),
            Ok(r) => Err(Refusal::Upstream(r)),
            Err(e) => {
                self.log_upstream_error(&e);
                self.upstream = None;
                Err(Refusal::UpstreamLost)
            }
        }
    }

    pub(super) async fn upstream_write(&mut self, wire: &[u8]) -> Result<(), Refusal> {
        let Some(conn) = self.upstream.as_mut() else {
            return Err(Refusal::UpstreamLost);
        };
        if let Err(e) = conn.write(wire).await {
            self.log_upstream_error(&e);
            self.upstream = None;
            return Err(Refusal::UpstreamLost);
        }
        Ok(())
    }

    pub(super) async fn read_data(&mut self, timeout: Duration) -> Result<(), Outcome> {
        // During DATA, shutdown only interrupts once the drain deadline passed.
        let mut phase = self.phase.clone();
        // DATA: `data_timeout` of inactivity per read (RFC 5321 §4.5.3.2.5).
        let read = self.read_more(Instant::now() + timeout, false, READ_CHUNK);
        tokio::pin!(read);
        loop {
            tokio::select! {
                r = &mut read => return r,
                changed = phase.changed() => {
                    if changed.is_err() || *phase.borrow() == Phase::Closing {
                        return Err(Outcome::Shutdown);
                    }
                }
            }
        }
    }
}
