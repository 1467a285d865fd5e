//! The message pipeline shared by DATA and BDAT: decoded content is checked
//! (line endings, size, header From) and streamed to the upstream; a refused
//! message is aborted by dropping the upstream connection, never ended.

use serde_json::json;

use super::spare;
use super::{Flow, Outcome, Session, MAX_HEADER_BYTES, WIRE_BATCH};
use crate::audit::{self, MessageEvent, MessageResult, Reason};
use crate::policy::{BareLf, HeaderFrom};
use crate::smtp::data::{BareLineEndings, DotStuffer};
use crate::smtp::header::{
    for_each_sender_address, header_section_wellformed, Gate, HeaderGate, MessageIdScan,
};
use crate::smtp::reply::{local, Reply};
use crate::smtp::upstream_id::upstream_id;
use crate::upstream::UpstreamError;

/// The message being received, by DATA or BDAT: its policy state and its
/// stream to the upstream.
pub(super) struct Inbound {
    pub(super) mode: BareLineEndings,
    pub(super) max: u64,
    /// Buffers the header section until From is checked (`header_from: enforce`).
    pub(super) gate: Option<HeaderGate>,
    /// The Message-ID header, for the audit event (§13).
    pub(super) message_id: MessageIdScan,
    pub(super) stuffer: DotStuffer,
    pub(super) wire: Vec<u8>,
    pub(super) size: u64,
    /// Where the upstream stands with this message, or why it is refused
    /// (issue 23 item 3: one value for what were four flags and a refusal).
    pub(super) upstream: Upstream,
}

/// The upstream's side of one message.
pub(super) enum Upstream {
    /// DATA upstream, not sent.
    DataIdle,
    /// DATA sent ahead while the client sends its first bytes; its 354 is
    /// not read yet.
    DataSent,
    /// The upstream answered 354 and is receiving this message.
    DataOpen,
    /// BDAT upstream (raw chunks, see `chunks`): `open` once a chunk went
    /// out, `owed` chunk replies not read yet.
    Chunks { open: bool, owed: usize },
    /// Refused: the message is still read to its end, then answered as
    /// the refusal says, and nothing more of it goes upstream. The flag:
    /// the upstream was receiving it (open), so the connection is dropped,
    /// never ended.
    Refused(Refusal, bool),
}

impl Upstream {
    /// The upstream is (or is about to be) receiving this message: an
    /// abort must drop the connection, never send an end.
    pub(super) fn open(&self) -> bool {
        match *self {
            Upstream::DataIdle => false,
            Upstream::DataSent | Upstream::DataOpen => true,
            Upstream::Chunks { open, .. } | Upstream::Refused(_, open) => open,
        }
    }

    pub(super) fn chunked(&self) -> bool {
        matches!(self, Upstream::Chunks { .. })
    }

    pub(super) fn refused(&self) -> bool {
        matches!(self, Upstream::Refused(..))
    }

    /// The message is refused from here on (the first refusal stands).
    pub(super) fn refuse(&mut self, why: Refusal) {
        if !self.refused() {
            let open = self.open();
            *self = Upstream::Refused(why, open);
        }
    }
}

/// Why a message was not relayed (decided while streaming DATA).
pub(super) enum Refusal {
    Policy(Reason, Reply),
    /// The upstream refused DATA; its reply goes to the client.
    Upstream(Reply),
    /// The upstream connection broke.
    UpstreamLost,
}

impl Session {
    /// Checks that a transaction can take a message (DATA or the first BDAT).
    pub(super) fn ready_for_message(&mut self) -> Result<(), Flow> {
        let Some(tx) = self.stage.tx() else {
            return Err(self.bad_command(local::need_mail()));
        };
        if tx.accepted == 0 {
            let reply = if tx.recipients == 0 {
                local::need_rcpt()
            } else {
                local::no_valid_recipients()
            };
            return Err(self.bad_command(reply));
        }
        Ok(())
    }

    /// A message's state; its buffers are the session's, kept from the
    /// last message (see `spare`).
    pub(super) fn new_inbound(&mut self) -> Inbound {
        let chunked = self.upstream_chunking();
        let policy = &self.rt.policy;
        let gate_buf = std::mem::take(&mut self.spare.gate);
        Inbound {
            mode: match policy.data.bare_lf {
                BareLf::Reject => BareLineEndings::Reject,
                BareLf::Normalize => BareLineEndings::Normalize,
            },
            max: policy.limits.max_message_bytes,
            gate: (policy.header_from == HeaderFrom::Enforce)
                .then(|| HeaderGate::with_buffer(MAX_HEADER_BYTES, gate_buf)),
            message_id: MessageIdScan::with_buffer(
                MAX_HEADER_BYTES,
                std::mem::take(&mut self.spare.message_id),
            ),
            stuffer: DotStuffer::new(),
            wire: std::mem::take(&mut self.spare.wire),
            size: 0,
            upstream: if chunked {
                Upstream::Chunks {
                    open: false,
                    owed: 0,
                }
            } else {
                Upstream::DataIdle
            },
        }
    }

    /// The client vanished, stalled or shutdown cut in mid-message: the
    /// upstream must not receive an end for it.
    pub(super) fn abandon_message(&mut self, msg: &Inbound, outcome: Outcome) -> Flow {
        let reply = match outcome {
            Outcome::Shutdown => {
                self.reply(local::shutting_down());
                local::shutting_down().last_line()
            }
            Outcome::Timeout => local::timeout().last_line(),
            _ => "(client closed the connection mid-message)".to_string(),
        };
        if msg.upstream.open() {
            self.upstream = None;
        }
        if let Some(tx) = self.stage.end_transaction() {
            audit::message(
                &self.info,
                &MessageEvent {
                    result: MessageResult::Failed,
                    sender_domain: &tx.sender_domain,
                    recipients: tx.accepted,
                    bytes: msg.size,
                    reply: &reply,
                    upstream_id: None,
                    message_id: msg.message_id.message_id(),
                    reason: None,
                },
            );
        }
        Flow::End(outcome)
    }

    /// A client that keeps sending long after the size limit is cut off.
    pub(super) fn cut_off_runaway(&mut self, msg: &Inbound) -> Option<Flow> {
        if msg.size <= msg.max.saturating_mul(2).saturating_add(1 << 20) {
            return None;
        }
        let reply = local::message_too_large();
        if msg.upstream.open() {
            self.upstream = None;
        }
        if let Some(tx) = self.stage.end_transaction() {
            // The refusal decided while streaming is audited here, once:
            // finish_message is never reached for this message.
            audit::reject(
                &self.info,
                Reason::MessageTooLarge,
                &reply.last_line(),
                json!({ "sender_domain": tx.sender_domain, "disconnected": true }),
            );
            audit::message(
                &self.info,
                &MessageEvent {
                    result: MessageResult::Rejected,
                    sender_domain: &tx.sender_domain,
                    recipients: tx.accepted,
                    bytes: msg.size,
                    reply: &reply.last_line(),
                    upstream_id: None,
                    message_id: msg.message_id.message_id(),
                    reason: Some(Reason::MessageTooLarge),
                },
            );
        }
        self.reply(reply);
        Some(Flow::End(Outcome::Rejected))
    }

    /// Takes decoded message content: size and line-ending policy, the
    /// header gate (From), then the stream to the upstream. `content` is
    /// consumed (cleared).
    pub(super) async fn accept_content(
        &mut self,
        msg: &mut Inbound,
        content: &mut Vec<u8>,
        saw_bare: bool,
        ended: bool,
    ) {
        msg.size += content.len() as u64;
        if !msg.upstream.refused() {
            if memchr::memchr(0, content).is_some() {
                // No BINARYMIME: a NUL is never relayed (receivers that strip
                // it would read another message or another header).
                msg.upstream.refuse(Refusal::Policy(
                    Reason::MalformedContent,
                    local::malformed_content(),
                ));
            } else if msg.mode == BareLineEndings::Reject && saw_bare {
                msg.upstream
                    .refuse(Refusal::Policy(Reason::BareLf, local::bare_line_ending()));
            } else if msg.size > msg.max {
                msg.upstream.refuse(Refusal::Policy(
                    Reason::MessageTooLarge,
                    local::message_too_large(),
                ));
            }
        }
        if msg.upstream.refused() {
            content.clear();
            return;
        }
        if !msg.message_id.done() {
            msg.message_id.push(content);
        }
        let forward = match msg.gate.as_mut() {
            Some(g) => {
                let mut state = g.push(content);
                if ended && matches!(state, Gate::NeedMore) {
                    state = g.finish();
                }
                content.clear();
                match state {
                    Gate::NeedMore => None,
                    Gate::TooLarge => {
                        msg.upstream.refuse(Refusal::Policy(
                            Reason::MessageTooLarge,
                            local::headers_too_large(),
                        ));
                        None
                    }
                    Gate::Complete => {
                        if !header_section_wellformed(g.headers()) {
                            msg.upstream.refuse(Refusal::Policy(
                                Reason::MalformedContent,
                                local::malformed_content(),
                            ));
                            None
                        } else if self.header_from_allowed(g.headers()) {
                            msg.gate.take().map(HeaderGate::into_buffer)
                        } else {
                            msg.upstream.refuse(Refusal::Policy(
                                Reason::HeaderFromMismatch,
                                local::header_from_mismatch(),
                            ));
                            None
                        }
                    }
                }
            }
            None => Some(std::mem::take(content)),
        };
        // Without a gate every call forwards (an empty message too), so the
        // upstream's DATA is always opened by the end of the message.
        let Some(bytes) = forward else { return };
        if msg.upstream.chunked() {
            // BDAT upstream: raw content, a chunk once WIRE_BATCH is pending.
            msg.wire.extend_from_slice(&bytes);
            if msg.wire.len() >= WIRE_BATCH {
                self.send_chunk(msg).await;
            }
            self.give_back(content, bytes);
            return;
        }
        if matches!(msg.upstream, Upstream::DataIdle) {
            match self.upstream_data().await {
                Ok(()) => msg.upstream = Upstream::DataOpen,
                Err(r) => {
                    msg.upstream.refuse(r);
                    return;
                }
            }
        }
        if matches!(msg.upstream, Upstream::DataSent) {
            msg.upstream = Upstream::DataOpen;
            let reply = match self.upstream.as_mut() {
                // Copied only when it is not the expected 354.
                Some(conn) => conn
                    .reply()
                    .await
                    .map(|r| (r.code != 354).then(|| r.clone())),
                None => Err(UpstreamError::Closed),
            };
            match reply {
                Ok(None) => {}
                Ok(Some(r)) => {
                    // Refused DATA: the upstream is not receiving a message.
                    msg.upstream = Upstream::Refused(Refusal::Upstream(r), false);
                    return;
                }
                Err(e) => {
                    self.lose_upstream_mid_message(msg, &e);
                    return;
                }
            }
        }
        // Batched: written once WIRE_BATCH bytes are pending, and the rest
        // together with the end of data in finish_message (one send).
        msg.stuffer.encode(&bytes, &mut msg.wire);
        if msg.wire.len() >= WIRE_BATCH {
            let mut wire = std::mem::take(&mut msg.wire);
            if let Err(r) = self.upstream_write(&wire).await {
                msg.upstream.refuse(r);
            }
            wire.clear();
            msg.wire = wire;
        }
        self.give_back(content, bytes);
    }

    /// Forwarded bytes were `content`'s own buffer (taken) or the header
    /// gate's: either way the buffer is kept for reuse.
    fn give_back(&mut self, content: &mut Vec<u8>, mut bytes: Vec<u8>) {
        if content.capacity() == 0 {
            bytes.clear();
            *content = bytes;
        } else {
            spare::keep(&mut self.spare.gate, bytes);
        }
    }

    /// The upstream broke while this message was on its way: drop the
    /// connection (never reused) and fail the message.
    pub(super) fn lose_upstream_mid_message(&mut self, msg: &mut Inbound, e: &UpstreamError) {
        self.log_upstream_error(e);
        self.upstream = None;
        msg.upstream.refuse(Refusal::UpstreamLost);
    }

    /// `header_from: enforce`: every address of From, Sender, Resent-From
    /// and Resent-Sender is an allowed sender.
    pub(super) fn header_from_allowed(&mut self, headers: &[u8]) -> bool {
        let senders = &self.rt.policy.senders;
        let mut all = true;
        let mut scratch = std::mem::take(&mut self.spare.address);
        let read = for_each_sender_address(headers, &mut scratch, |a| {
            all = all && senders.allows(a);
        });
        spare::keep_string(&mut self.spare.address, scratch);
        match read {
            Ok(n) => n > 0 && all,
            Err(_) => false,
        }
    }

    /// End of data: either the upstream gets the end of the message and its
    /// final reply goes to the client, or the message is refused and the
    /// upstream connection (if it was receiving) is dropped mid-message.
    pub(super) async fn finish_message(&mut self, mut msg: Inbound) -> Flow {
        let unopened = match msg.upstream {
            Upstream::Chunks { .. } => msg.gate.is_some(),
            Upstream::DataIdle | Upstream::DataSent => true,
            Upstream::DataOpen | Upstream::Refused(..) => false,
        };
        if unopened {
            // Nothing was forwarded yet (cannot happen with the gate's
            // contract, kept as a guard): open the upstream's DATA first.
            let mut empty = Vec::new();
            self.accept_content(&mut msg, &mut empty, false, true).await;
        }
        let Inbound {
            upstream,
            mut stuffer,
            size,
            mut wire,
            message_id,
            ..
        } = msg;
        let Some(tx) = self.stage.end_transaction() else {
            return Flow::Continue;
        };
        let (result, reply, reason) = match upstream {
            Upstream::Refused(Refusal::Policy(reason, reply), open) => {
                if open {
                    // Abort: the upstream never sees this message's end.
                    self.upstream = None;
                }
                audit::reject(
                    &self.info,
                    reason,
                    &reply.last_line(),
                    json!({ "sender_domain": tx.sender_domain }),
                );
                (MessageResult::Rejected, reply, Some(reason))
            }
            Upstream::Refused(Refusal::Upstream(reply), _) => (MessageResult::Failed, reply, None),
            Upstream::Refused(Refusal::UpstreamLost, _) => {
                self.upstream = None;
                (MessageResult::Failed, local::upstream_failed(), None)
            }
            Upstream::Chunks { owed, .. } => {
                let (result, reply) = self.finish_chunks(owed, &wire).await;
                (result, reply, None)
            }
            Upstream::DataIdle | Upstream::DataSent | Upstream::DataOpen => {
                stuffer.finish(&mut wire);
                match self.upstream.as_mut() {
                    Some(conn) => {
                        let sent = match conn.write(&wire).await {
                            Ok(()) => conn.flush().await,
                            Err(e) => Err(e),
                        };
                        match sent {
                            Ok(()) => match conn.reply().await {
                                Ok(r) => {
                                    // Copied into the session's kept reply.
                                    let mut reply = std::mem::take(&mut self.spare.reply);
                                    reply.copy_from(r);
                                    conn.set_clean(true);
                                    let result = if reply.code == 250 {
                                        MessageResult::Relayed
                                    } else {
                                        MessageResult::Failed
                                    };
                                    (result, reply, None)
                                }
                                Err(e) => {
                                    self.log_upstream_error(&e);
                                    self.upstream = None;
                                    (MessageResult::Failed, local::upstream_failed(), None)
                                }
                            },
                            Err(e) => {
                                self.log_upstream_error(&e);
                                self.upstream = None;
                                (MessageResult::Failed, local::upstream_failed(), None)
                            }
                        }
                    }
                    None => (MessageResult::Failed, local::upstream_failed(), None),
                }
            }
        };
        spare::keep(&mut self.spare.wire, wire);
        // Whatever happened, the upstream transaction is over or gone.
        self.reset_transaction().await;
        let mut line = std::mem::take(&mut self.spare.audit_reply);
        reply.write_last_line(&mut line);
        audit::message(
            &self.info,
            &MessageEvent {
                result,
                sender_domain: &tx.sender_domain,
                recipients: tx.accepted,
                bytes: size,
                reply: &line,
                upstream_id: (result == MessageResult::Relayed)
                    .then(|| upstream_id(&line))
                    .flatten(),
                message_id: message_id.message_id(),
                reason,
            },
        );
        spare::keep(&mut self.spare.message_id, message_id.into_buffer());
        spare::keep_string(&mut self.spare.audit_reply, line);
        spare::keep_string(&mut self.spare.sender_domain, tx.sender_domain);
        spare::keep_envelope(&mut self.spare.envelope, tx.envelope);
        self.pipe.reply_ref(&reply, &mut self.out);
        spare::keep_reply(&mut self.spare.reply, reply);
        Flow::Continue
    }
}
