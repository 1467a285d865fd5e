//! MAIL, RCPT and RSET: the envelope, checked against the policy and
//! relayed to the session's upstream connection (pipelined when it offers
//! PIPELINING).

use serde_json::json;

use super::stage::Written;
use super::{Flow, Mail, Outcome, Session, Transaction};
use crate::audit::{self, Reason};
use crate::credential::CredentialState;
use crate::smtp::envelope::{Body, MailFrom, RcptTo, ReversePath};
use crate::smtp::pipeline::Sent;
use crate::smtp::reply::{local, Reply};
use crate::upstream::{Connection, UpstreamError};

impl Session {
    /// MAIL FROM: the typed path is checked against `senders` and the
    /// upstream command is written from it (never from the client's bytes).
    pub(super) async fn mail(&mut self, mail: MailFrom<'_>) -> Flow {
        if !self.greeted() {
            return self.bad_command(local::need_ehlo());
        }
        if !self.bound() {
            return self.refuse(Reason::AuthRequired, local::auth_required(), json!({}));
        }
        if self.stage.tx().is_some() {
            return self.bad_command(local::nested_mail());
        }
        // A transaction boundary: the snapshot in force now, whole.
        self.take_snapshot();
        if mail.smtputf8 && !self.smtputf8_offered {
            return self.bad_command(local::parameter("SMTPUTF8"));
        }
        if !mail.path.is_ascii() && !mail.smtputf8 {
            self.reply(local::non_ascii_address());
            return Flow::Continue;
        }
        // The last transaction's string, reused (see `finish_message`).
        let mut sender_domain = std::mem::take(&mut self.spare.sender_domain);
        let allowed = match &mail.path {
            ReversePath::Null => {
                sender_domain.clear();
                self.rt.policy.senders.allows_null()
            }
            ReversePath::Mailbox(m) => {
                m.write_domain_lower(&mut sender_domain);
                self.rt.policy.senders.allows_mailbox(&m.local, &m.domain)
            }
        };
        if !allowed {
            return self.refuse(
                Reason::SenderNotAllowed,
                local::sender_not_allowed(),
                json!({ "sender_domain": sender_domain }),
            );
        }
        let max = self.rt.policy.limits.max_message_bytes;
        if mail.size.is_some_and(|s| s > max) {
            return self.refuse(
                Reason::MessageTooLarge,
                local::message_too_large(),
                json!({ "size": mail.size }),
            );
        }
        // §6: no message without its audit line.
        if crate::log::congested().is_some() {
            return self.refuse(Reason::LogStalled, local::log_stalled(), json!({}));
        }
        // limits.rate (§10): counted here, before anything goes upstream.
        if !crate::rate::admit(self.rt.rate.as_deref()).await {
            self.reply(crate::rate::refused_reply());
            return Flow::Continue;
        }
        // Credential in force now (a rotation since the last message means a
        // new upstream connection with the new credential).
        if let Err(flow) = self.refresh_credential() {
            return flow;
        }
        // Without PIPELINING upstream, a pooled connection the server closed
        // while idle is only found out when MAIL fails: then retry once on a
        // new connection. With it, MAIL is answered here and goes upstream
        // with the first RCPT; a dead pooled connection is replaced there
        // (`settle`).
        for attempt in 0..2 {
            if let Err(reply) = self.upstream_connection().await {
                self.reply(reply);
                return Flow::Continue;
            }
            // The connection is borrowed apart from `upline` (written below).
            let Some(conn) = self.upstream.as_mut() else {
                self.reply(local::upstream_unavailable());
                return Flow::Continue;
            };
            if mail.body == Some(Body::EightBitMime) && !conn.capabilities().eight_bit_mime {
                self.reply(local::eight_bit_unsupported());
                self.release_upstream();
                return Flow::Continue;
            }
            if mail.smtputf8 && !conn.capabilities().smtputf8 {
                // Offered at EHLO from an earlier connection; this one lacks it.
                self.reply(local::non_ascii_address());
                self.release_upstream();
                return Flow::Continue;
            }
            let line = &mut self.upline;
            mail.write_command(conn.capabilities().size.is_some(), line);
            let reused = conn.take_reused();
            if conn.capabilities().pipelining {
                // §4 "Round trips": the policy allowed it, the upstream
                // hears it with the first RCPT and its refusal becomes the
                // answer to the RCPTs.
                let mut envelope = std::mem::take(&mut self.spare.envelope);
                envelope.clear();
                envelope.push(line.clone());
                self.pipe.new_transaction();
                self.stage.open(Transaction {
                    sender_domain,
                    envelope,
                    written: Written::MailHeld,
                    replayable: reused,
                    recipients: 0,
                    accepted: 0,
                    smtputf8: mail.smtputf8,
                });
                self.reply(local::sender_ok());
                return Flow::Continue;
            }
            conn.set_clean(false);
            match conn.command_ref(line.as_bytes()).await {
                Ok(reply) => {
                    let positive = reply.is_positive();
                    self.pipe.reply_ref(reply, &mut self.out);
                    if positive {
                        self.pipe.new_transaction();
                        self.stage.open(Transaction {
                            sender_domain,
                            envelope: Vec::new(),
                            written: Written::Envelope,
                            replayable: false,
                            recipients: 0,
                            accepted: 0,
                            smtputf8: mail.smtputf8,
                        });
                    } else {
                        conn.set_clean(true);
                    }
                    self.release_upstream();
                    return Flow::Continue;
                }
                Err(e) if reused && attempt == 0 => {
                    self.log_upstream_error(&e);
                    self.upstream = None;
                }
                Err(e) => {
                    self.upstream_lost(&e);
                    return Flow::Continue;
                }
            }
        }
        Flow::Continue
    }

    pub(super) fn refresh_credential(&mut self) -> Result<(), Flow> {
        let state = self.rt.credential.clone();
        match state {
            // XOAUTH2: nothing is relayed without a usable token, pooled
            // connections included (§9).
            CredentialState::Ready(cred) if cred.usable().is_ok() => {
                let changed = self.cred.as_ref().map(|c| c.pin()) != Some(cred.pin());
                if changed {
                    // Never reuse a connection authenticated with another credential.
                    self.upstream = None;
                    self.info.credential = Some(cred.pin().short());
                    self.cred = Some(cred);
                }
                Ok(())
            }
            state => {
                self.upstream = None;
                let reply = local::not_ready();
                audit::reject(
                    &self.info,
                    state.not_ready_reason(),
                    &reply.last_line(),
                    json!({}),
                );
                self.reply(reply);
                Err(Flow::End(Outcome::Rejected))
            }
        }
    }

    /// The session's upstream connection: the one it has, an idle one from
    /// the pool authenticated with this exact credential, or a new one.
    pub(super) async fn upstream_connection(&mut self) -> Result<&mut Connection, Reply> {
        if self.upstream.is_none() {
            let Some(cred) = self.cred.clone() else {
                return Err(local::not_ready());
            };
            match crate::upstream::warm::acquire(&self.rt, &cred).await {
                Ok(conn) => self.upstream = Some(conn),
                Err(e) if e.is_busy() => {
                    let reply = local::upstream_busy();
                    audit::reject(
                        &self.info,
                        Reason::UpstreamBusy,
                        &reply.last_line(),
                        json!({}),
                    );
                    return Err(reply);
                }
                Err(e) => {
                    self.log_upstream_error(&e);
                    return Err(if e.is_tls() {
                        local::tls_required()
                    } else if e.is_auth() {
                        local::upstream_auth_failed()
                    } else {
                        local::upstream_unavailable()
                    });
                }
            }
        }
        self.upstream
            .as_mut()
            .ok_or_else(local::upstream_unavailable)
    }

    /// Between transactions the session gives its upstream connection back
    /// to the pool (clean, authenticated with the credential in force —
    /// `Pool::checkin` decides), so that other sessions, and the cap
    /// (`upstream.max_connections`), can count on it. With reuse off it
    /// keeps it until the session ends.
    pub(super) fn release_upstream(&mut self) {
        if !self.between_transactions() {
            return;
        }
        if !self.rt.pool.keeps_idle() {
            return;
        }
        if let Some(conn) = self.upstream.take() {
            if let Some(conn) = self.rt.pool.checkin(conn) {
                tokio::spawn(conn.quit());
            }
        }
    }

    /// The upstream broke: drop it, forget the transaction, tell the client 4xx.
    pub(super) fn upstream_lost(&mut self, e: &UpstreamError) {
        self.log_upstream_error(e);
        self.upstream = None;
        self.stage.end_transaction();
        self.reply(local::upstream_failed());
    }

    /// RCPT TO: the typed mailbox is checked against `recipients` and the
    /// upstream command is written from it.
    pub(super) async fn rcpt(&mut self, rcpt: RcptTo<'_>) -> Flow {
        if self.stage.chunks_open() {
            // The message has started: no recipient joins it now.
            return self.bad_command(local::bdat_in_progress());
        }
        let max = self.rt.policy.recipients.max_per_message;
        let Some(tx) = self.stage.tx_mut() else {
            return self.bad_command(local::need_mail());
        };
        if tx.recipients >= max {
            return self.refuse(
                Reason::TooManyRecipients,
                local::too_many_recipients(),
                json!({ "max": max }),
            );
        }
        if !rcpt.mailbox.is_ascii() && !tx.smtputf8 {
            self.reply(local::non_ascii_address());
            return Flow::Continue;
        }
        if !self
            .rt
            .policy
            .recipients
            .domains
            .allows_domain(&rcpt.mailbox.domain)
        {
            return self.refuse(
                Reason::RecipientNotAllowed,
                local::recipient_not_allowed(),
                json!({ "recipient_domain": rcpt.mailbox.domain_lower() }),
            );
        }
        tx.recipients += 1;
        if let Some(refusal) = self.pipe.mail_refusal() {
            // The upstream refused MAIL: its refusal answers every RCPT.
            let refusal = refusal.clone();
            self.reply(refusal);
            return Flow::Continue;
        }
        let Some(conn) = self.upstream.as_mut() else {
            self.stage.end_transaction();
            self.reply(local::upstream_failed());
            return Flow::Continue;
        };
        let line = &mut self.upline;
        rcpt.write_command(line);
        if conn.capabilities().pipelining {
            let Some(tx) = self.stage.tx_mut() else {
                return Flow::Continue;
            };
            let sent = if tx.written == Written::MailHeld {
                tx.written = Written::Envelope;
                conn.set_clean(false);
                self.pipe.expect(Sent::Mail);
                // MAIL and the first RCPT in one write (one segment).
                let mut both = tx.envelope.first().cloned().unwrap_or_default();
                both.push_str(line);
                conn.write(both.as_bytes()).await
            } else {
                conn.write(line.as_bytes()).await
            };
            self.pipe.expect(Sent::Rcpt);
            tx.envelope.push(line.clone());
            if let Err(e) = sent {
                // Answered (or replayed) at the next settle.
                self.log_upstream_error(&e);
                self.upstream = None;
            }
            return Flow::Continue;
        }
        match conn.command(line.as_bytes()).await {
            Ok(reply) => {
                if reply.is_positive() {
                    if let Some(tx) = self.stage.tx_mut() {
                        tx.accepted += 1;
                    }
                }
                self.reply(reply);
            }
            Err(e) => self.upstream_lost(&e),
        }
        Flow::Continue
    }

    /// Ends any open transaction, upstream included (RSET, or drop the
    /// connection if RSET fails).
    pub(super) async fn reset_transaction(&mut self) {
        if let Mail::Chunks(_, chunked) = self.stage.take_mail() {
            if chunked.msg.upstream.open() {
                // Mid-DATA upstream: only dropping it keeps the message unsent.
                self.upstream = None;
            }
        }
        if let Some(conn) = self.upstream.as_mut() {
            if !conn.is_clean() {
                match conn.command(b"RSET\r\n").await {
                    Ok(r) if r.code == 250 => conn.set_clean(true),
                    _ => self.upstream = None,
                }
            }
        }
        self.release_upstream();
    }
}
