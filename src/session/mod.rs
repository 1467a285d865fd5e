//! One client session: the per-connection state machine.
//!
//! A message's path, top to bottom: the listener hands a socket here; the
//! ingest loop answers every pipelined command of a read in order (one
//! handler per verb); AUTH binds the session to an identity allowed by the
//! policy (`binding`); MAIL takes an upstream connection — from the pool,
//! keyed by the credential's pin, or newly authenticated with the mounted
//! credential — and the envelope is relayed command by command; DATA is
//! decoded, policy-checked (bare line endings, size, header From) and
//! streamed to the upstream, whose final reply is what the client sees.
//!
//! No upstream connection exists before the session is bound, and a message
//! the policy refuses mid-stream is aborted by dropping the upstream
//! connection, so the upstream never receives that message's end.

pub mod binding;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::audit::{self, MessageEvent, MessageResult, Reason, SessionInfo};
use crate::credential::{Credential, CredentialState};
use crate::policy::{BareLf, ClientAuth, HeaderFrom};
use crate::server::{Phase, Runtime};
use crate::smtp::command::{self, Command, CommandError, Mechanism};
use crate::smtp::data::{BareLineEndings, DataDecoder, DotStuffer, Feed, LineEndingFilter};
use crate::smtp::header::{header_from_addresses, Gate, HeaderGate};
use crate::smtp::line::{Line, LineBuffer, COMMAND_READ};
use crate::smtp::reply::{local, Reply};
use crate::smtp::{sasl, MAX_AUTH_LINE, MAX_COMMAND_LINE};
use crate::upstream::{Connection, UpstreamError};

/// Bad commands tolerated before the session is closed.
const MAX_ERRORS: u32 = 10;
/// Failed AUTH attempts tolerated before the session is closed.
const MAX_AUTH_FAILURES: u32 = 3;
/// The header section of a message is buffered (to check From) up to this size.
const MAX_HEADER_BYTES: usize = 128 * 1024;
/// Read size from the client.
const READ_CHUNK: usize = 16 * 1024;
/// Message bytes are written to the upstream in batches of this size.
const WIRE_BATCH: usize = 64 * 1024;

/// How a session ended: the `result` label of `smtpbind_sessions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The client said QUIT.
    Quit,
    /// The client closed the connection without QUIT.
    Closed,
    /// smtpbind refused the session (not ready, too many AUTH failures or errors).
    Rejected,
    /// Command or data timeout.
    Timeout,
    /// Closed by shutdown.
    Shutdown,
    /// I/O error on the client connection.
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Quit => "quit",
            Outcome::Closed => "closed",
            Outcome::Rejected => "rejected",
            Outcome::Timeout => "timeout",
            Outcome::Shutdown => "shutdown",
            Outcome::Error => "error",
        }
    }
}

/// What a handler tells the ingest loop.
enum Flow {
    Continue,
    End(Outcome),
}

/// An open transaction.
struct Transaction {
    sender_domain: String,
    /// RCPTs that passed local policy (the `max_per_message` count).
    recipients: usize,
    /// RCPTs the upstream accepted.
    accepted: usize,
}

/// A reply owed to the client, in order: ready now, or the reply to a
/// command pipelined to the upstream and not read yet.
enum Slot {
    Ready(Reply),
    Mail,
    Rcpt,
}

/// The message being received, by DATA or BDAT: its policy state and its
/// stream to the upstream.
struct Inbound {
    mode: BareLineEndings,
    max: u64,
    /// Buffers the header section until From is checked (`header_from: enforce`).
    gate: Option<HeaderGate>,
    stuffer: DotStuffer,
    wire: Vec<u8>,
    size: u64,
    refusal: Option<Refusal>,
    /// DATA was sent upstream: it is (or is about to be) receiving this
    /// message, so an abort must drop the connection, never send an end.
    upstream_open: bool,
    /// DATA was sent ahead (while the client sends its first bytes) and its
    /// reply is not read yet.
    data_reply_pending: bool,
}

/// Why a message was not relayed (decided while streaming DATA).
enum Refusal {
    Policy(Reason, Reply),
    /// The upstream refused DATA; its reply goes to the client.
    Upstream(Reply),
    /// The upstream connection broke.
    UpstreamLost,
}

pub struct Session {
    io: TcpStream,
    rt: Arc<Runtime>,
    credentials: watch::Receiver<CredentialState>,
    phase: watch::Receiver<Phase>,
    /// The credential this session's upstream work uses (refreshed at MAIL).
    cred: Option<Arc<Credential>>,
    info: SessionInfo,
    inbuf: LineBuffer,
    out: Vec<u8>,
    greeted: bool,
    bound: bool,
    auth_failures: u32,
    errors: u32,
    upstream: Option<Connection>,
    tx: Option<Transaction>,
    /// Replies owed while commands are pipelined to the upstream.
    slots: std::collections::VecDeque<Slot>,
    /// A message arriving in BDAT chunks.
    bdat: Option<(Inbound, LineEndingFilter)>,
}

impl Session {
    pub fn new(
        io: TcpStream,
        peer: String,
        rt: Arc<Runtime>,
        credentials: watch::Receiver<CredentialState>,
        phase: watch::Receiver<Phase>,
        id: String,
    ) -> Self {
        let info = SessionInfo {
            session: id,
            peer,
            client_identity: None,
            credential: None,
            upstream: rt.connector.address().to_string(),
        };
        Session {
            io,
            rt,
            credentials,
            phase,
            cred: None,
            info,
            inbuf: LineBuffer::new(),
            out: Vec::with_capacity(1024),
            greeted: false,
            bound: false,
            auth_failures: 0,
            errors: 0,
            upstream: None,
            tx: None,
            slots: std::collections::VecDeque::new(),
            bdat: None,
        }
    }

    /// Runs the session to its end and returns how it ended.
    pub async fn run(mut self) -> Outcome {
        let outcome = self.serve().await;
        let _ = self.flush().await;
        if let Some(conn) = self.upstream.take() {
            if let Some(conn) = self.rt.pool.checkin(conn) {
                tokio::spawn(conn.quit());
            }
        }
        let _ = self.io.shutdown().await;
        metrics::counter!("smtpbind_sessions_total", "result" => outcome.as_str()).increment(1);
        outcome
    }

    async fn serve(&mut self) -> Outcome {
        let state = self.credentials.borrow().clone();
        match state {
            CredentialState::Ready(cred) => {
                self.info.credential = Some(cred.pin().short());
                self.cred = Some(cred);
            }
            CredentialState::NotReady(_) => {
                audit::reject(
                    &self.info,
                    Reason::CredentialNotPinned,
                    &local::not_ready().last_line(),
                    json!({}),
                );
                self.reply(local::not_ready());
                return Outcome::Rejected;
            }
        }
        if self.rt.policy.client.auth == ClientAuth::None {
            self.bound = true;
        }
        self.reply(local::greeting(&self.rt.policy.upstream.ehlo_name));
        // A whole command must arrive within `command_timeout`: the deadline
        // starts when the session waits for a command and is not extended by
        // partial bytes, so a client dripping a byte a second is cut off too.
        let mut deadline: Option<Instant> = None;
        loop {
            // Answer every complete command already buffered, in order.
            loop {
                let line = self.inbuf.next_line(MAX_COMMAND_LINE);
                if !matches!(line, Line::NeedMore) {
                    deadline = None;
                }
                let flow = match line {
                    Line::Ok(line) => self.handle(&line).await,
                    Line::TooLong => self.bad_command(local::line_too_long()),
                    Line::Flood => {
                        self.reply(local::line_too_long());
                        Flow::End(Outcome::Rejected)
                    }
                    Line::NeedMore => break,
                };
                if let Flow::End(outcome) = flow {
                    return outcome;
                }
            }
            if self.flush().await.is_err() {
                return Outcome::Error;
            }
            if let Some(outcome) = self.shutdown_check() {
                return outcome;
            }
            let timeout = self.rt.policy.limits.command_timeout;
            let until = *deadline.get_or_insert_with(|| Instant::now() + timeout);
            match self.read_more(until, true, COMMAND_READ).await {
                Ok(()) => {}
                Err(outcome) => return outcome,
            }
        }
    }

    /// Between commands: during drain a session without an open transaction
    /// is closed; once the drain deadline passed every session is.
    fn shutdown_check(&mut self) -> Option<Outcome> {
        let phase = *self.phase.borrow();
        let close = match phase {
            Phase::Running => false,
            Phase::Draining => self.tx.is_none(),
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
    async fn read_more(
        &mut self,
        until: Instant,
        watch_phase: bool,
        room: usize,
    ) -> Result<(), Outcome> {
        let deadline = tokio::time::sleep_until(until);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                // Wait for readability without a buffer: an idle session
                // holds no read buffer, only its small state.
                ready = self.io.readable() => {
                    if ready.is_err() {
                        return Err(Outcome::Error);
                    }
                    match self.io.try_read_buf(self.inbuf.read_target(room)) {
                        Ok(0) => return Err(Outcome::Closed),
                        Ok(_) => return Ok(()),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            self.inbuf.trim();
                            continue;
                        }
                        Err(_) => return Err(Outcome::Error),
                    }
                }
                _ = &mut deadline => {
                    self.reply(local::timeout());
                    return Err(Outcome::Timeout);
                }
                changed = self.phase.changed(), if watch_phase => {
                    if changed.is_err() {
                        return Err(Outcome::Shutdown);
                    }
                    if let Some(outcome) = self.shutdown_check() {
                        return Err(outcome);
                    }
                }
            }
        }
    }

    /// Queues a reply for the client, after any still owed by the upstream.
    fn reply(&mut self, reply: Reply) {
        if self.slots.is_empty() {
            reply.write_to(&mut self.out);
        } else {
            self.slots.push_back(Slot::Ready(reply));
        }
    }

    /// Reads the upstream's replies to every pipelined command, in order,
    /// applies them to the transaction and queues them for the client.
    async fn settle(&mut self) {
        if self.slots.is_empty() {
            return;
        }
        let mut failed: Option<UpstreamError> = None;
        if let Some(conn) = self.upstream.as_mut() {
            if let Err(e) = conn.flush().await {
                failed = Some(e);
            }
        }
        while let Some(slot) = self.slots.pop_front() {
            let kind = match slot {
                Slot::Ready(reply) => {
                    reply.write_to(&mut self.out);
                    continue;
                }
                kind => kind,
            };
            let result = match (failed.is_some(), self.upstream.as_mut()) {
                (false, Some(conn)) => conn.read_reply().await,
                _ => Err(UpstreamError::Closed),
            };
            match result {
                Ok(reply) => {
                    match kind {
                        Slot::Mail if !reply.is_positive() => {
                            self.tx = None;
                            if let Some(conn) = self.upstream.as_mut() {
                                conn.set_clean(true);
                            }
                        }
                        Slot::Rcpt if reply.is_positive() => {
                            if let Some(tx) = self.tx.as_mut() {
                                tx.accepted += 1;
                            }
                        }
                        _ => {}
                    }
                    reply.write_to(&mut self.out);
                }
                Err(e) => {
                    if failed.is_none() {
                        self.log_upstream_error(&e);
                        failed = Some(e);
                    }
                    self.upstream = None;
                    self.tx = None;
                    local::upstream_failed().write_to(&mut self.out);
                }
            }
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.settle().await;
        if !self.out.is_empty() {
            self.io.write_all(&self.out).await?;
            self.io.flush().await?;
            self.out.clear();
        }
        Ok(())
    }

    /// A step refused by policy: audited (and counted by reason), answered,
    /// and the session goes on.
    fn refuse(&mut self, reason: Reason, reply: Reply, extra: serde_json::Value) -> Flow {
        audit::reject(&self.info, reason, &reply.last_line(), extra);
        self.reply(reply);
        Flow::Continue
    }

    fn bad_command(&mut self, reply: Reply) -> Flow {
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            self.reply(local::too_many_errors());
            return Flow::End(Outcome::Rejected);
        }
        self.reply(reply);
        Flow::Continue
    }

    async fn handle(&mut self, line: &[u8]) -> Flow {
        let cmd = match command::parse(line) {
            Ok(cmd) => cmd,
            Err(e) => {
                let reply = match e {
                    CommandError::Unknown => local::unknown_command(),
                    CommandError::Syntax(s) => local::syntax(s),
                    CommandError::BadSender => local::bad_sender_address(),
                    CommandError::BadRecipient => local::bad_recipient_address(),
                    CommandError::Parameter(p) => local::parameter(&p),
                };
                return self.bad_command(reply);
            }
        };
        // MAIL and RCPT may be pipelined to the upstream; every other
        // command sees the transaction as the upstream answered it.
        if !matches!(cmd, Command::Mail { .. } | Command::Rcpt { .. }) {
            self.settle().await;
        }
        match cmd {
            Command::Ehlo(_) => self.ehlo(true).await,
            Command::Helo(_) => self.ehlo(false).await,
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial).await,
            Command::Mail {
                address,
                size,
                eight_bit,
            } => self.mail(&address, size, eight_bit).await,
            Command::Rcpt { address } => self.rcpt(&address).await,
            Command::Data => self.data().await,
            Command::Rset => {
                self.reset_transaction().await;
                self.reply(local::ok());
                Flow::Continue
            }
            Command::Noop => {
                self.reply(local::ok());
                Flow::Continue
            }
            Command::Quit => {
                self.reset_transaction().await;
                self.reply(local::bye());
                Flow::End(Outcome::Quit)
            }
            Command::Vrfy => {
                self.reply(local::vrfy());
                Flow::Continue
            }
            Command::Help => {
                self.reply(local::help());
                Flow::Continue
            }
            Command::StartTls => self.bad_command(local::starttls_not_offered()),
            Command::Bdat { size, last } => self.bdat(size, last).await,
            Command::NotImplemented => self.bad_command(local::not_implemented()),
        }
    }

    async fn ehlo(&mut self, extended: bool) -> Flow {
        self.reset_transaction().await;
        self.greeted = true;
        let name = self.rt.policy.upstream.ehlo_name.clone();
        if !extended {
            self.reply(Reply::new(250, name));
            return Flow::Continue;
        }
        let mut lines = vec![
            name,
            "PIPELINING".to_string(),
            format!("SIZE {}", self.rt.policy.limits.max_message_bytes),
            "8BITMIME".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
            "CHUNKING".to_string(),
        ];
        if self.rt.policy.client.auth == ClientAuth::Required {
            lines.push("AUTH PLAIN LOGIN".to_string());
        }
        lines.push("HELP".to_string());
        self.reply(Reply { code: 250, lines });
        Flow::Continue
    }

    // ---- AUTH ----------------------------------------------------------

    async fn auth(&mut self, mechanism: Mechanism, initial: Option<String>) -> Flow {
        if self.rt.policy.client.auth == ClientAuth::None {
            return self.bad_command(local::auth_not_offered());
        }
        if !self.greeted {
            return self.bad_command(local::need_ehlo());
        }
        if self.bound {
            return self.bad_command(local::already_authenticated());
        }
        if self.tx.is_some() {
            return self.bad_command(local::nested_mail());
        }
        let identity = match mechanism {
            Mechanism::Plain => {
                let response = match initial {
                    Some(r) => zeroize::Zeroizing::new(r),
                    None => match self.auth_continue("").await {
                        Ok(r) => r,
                        Err(flow) => return flow,
                    },
                };
                sasl::decode_plain(&response)
            }
            Mechanism::Login => {
                let user = match initial {
                    Some(r) => zeroize::Zeroizing::new(r),
                    None => match self.auth_continue(sasl::LOGIN_USERNAME_CHALLENGE).await {
                        Ok(r) => r,
                        Err(flow) => return flow,
                    },
                };
                match sasl::decode_login_field(&user) {
                    Ok(username) => {
                        match self.auth_continue(sasl::LOGIN_PASSWORD_CHALLENGE).await {
                            Ok(pass) => {
                                sasl::decode_login_field(&pass).map(|password| sasl::Identity {
                                    username: username.to_string(),
                                    password,
                                })
                            }
                            Err(flow) => return flow,
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            Mechanism::Other => return self.bad_command(local::auth_mechanism()),
        };
        let identity = match identity {
            Ok(identity) => identity,
            Err(sasl::SaslError::Cancelled) => {
                self.reply(local::auth_cancelled());
                return Flow::Continue;
            }
            Err(sasl::SaslError::Authzid) => return self.auth_failed(None),
            Err(_) => return self.bad_command(local::auth_malformed()),
        };
        let Some(cred) = self.cred.clone() else {
            self.reply(local::not_ready());
            return Flow::End(Outcome::Rejected);
        };
        let accept = &self.rt.policy.client.accept;
        if binding::identity_allowed(
            accept,
            &cred,
            &identity.username,
            identity.password.as_bytes(),
        ) {
            self.bound = true;
            self.info.client_identity = Some(identity.username.clone());
            self.reply(local::auth_ok());
            Flow::Continue
        } else {
            self.auth_failed(Some(&identity.username))
        }
    }

    fn auth_failed(&mut self, username: Option<&str>) -> Flow {
        self.auth_failures += 1;
        let reply = local::auth_failed();
        audit::reject(
            &self.info,
            Reason::IdentityMismatch,
            &reply.last_line(),
            json!({ "presented_username": username }),
        );
        self.reply(reply);
        if self.auth_failures >= MAX_AUTH_FAILURES {
            self.reply(local::too_many_errors());
            return Flow::End(Outcome::Rejected);
        }
        Flow::Continue
    }

    /// Sends a `334` challenge and reads one response line (up to 12288 octets).
    async fn auth_continue(&mut self, challenge: &str) -> Result<zeroize::Zeroizing<String>, Flow> {
        self.reply(Reply::new(334, challenge));
        if self.flush().await.is_err() {
            return Err(Flow::End(Outcome::Error));
        }
        let until = Instant::now() + self.rt.policy.limits.command_timeout;
        loop {
            match self.inbuf.next_line(MAX_AUTH_LINE) {
                Line::Ok(line) => {
                    let line = zeroize::Zeroizing::new(line);
                    return match std::str::from_utf8(&line) {
                        Ok(s) => Ok(zeroize::Zeroizing::new(s.to_string())),
                        Err(_) => Err(self.bad_command(local::auth_malformed())),
                    };
                }
                Line::TooLong => return Err(self.bad_command(local::line_too_long())),
                Line::Flood => {
                    self.reply(local::line_too_long());
                    return Err(Flow::End(Outcome::Rejected));
                }
                Line::NeedMore => {
                    if let Err(outcome) = self.read_more(until, false, COMMAND_READ).await {
                        return Err(Flow::End(outcome));
                    }
                }
            }
        }
    }

    // ---- Envelope ------------------------------------------------------

    async fn mail(&mut self, address: &str, size: Option<u64>, eight_bit: bool) -> Flow {
        if !self.greeted {
            return self.bad_command(local::need_ehlo());
        }
        if !self.bound {
            return self.refuse(Reason::AuthRequired, local::auth_required(), json!({}));
        }
        if self.tx.is_some() {
            return self.bad_command(local::nested_mail());
        }
        let sender_domain = domain_of(address);
        if !self.rt.policy.senders.allows(address) {
            return self.refuse(
                Reason::SenderNotAllowed,
                local::sender_not_allowed(),
                json!({ "sender_domain": sender_domain }),
            );
        }
        let max = self.rt.policy.limits.max_message_bytes;
        if size.is_some_and(|s| s > max) {
            return self.refuse(
                Reason::MessageTooLarge,
                local::message_too_large(),
                json!({ "size": size }),
            );
        }
        // Credential in force now (a rotation since the last message means a
        // new upstream connection with the new credential).
        if let Err(flow) = self.refresh_credential() {
            return flow;
        }
        // A pooled connection the server closed while idle is only found out
        // when the first command fails: then retry once on a new connection.
        for attempt in 0..2 {
            let conn = match self.upstream_connection().await {
                Ok(conn) => conn,
                Err(reply) => {
                    self.reply(reply);
                    return Flow::Continue;
                }
            };
            if eight_bit && !conn.capabilities().eight_bit_mime {
                self.reply(local::eight_bit_unsupported());
                return Flow::Continue;
            }
            let mut line = format!("MAIL FROM:<{address}>");
            if let (Some(s), Some(_)) = (size, conn.capabilities().size) {
                line.push_str(&format!(" SIZE={s}"));
            }
            if eight_bit {
                line.push_str(" BODY=8BITMIME");
            }
            line.push_str("\r\n");
            let reused = conn.take_reused();
            conn.set_clean(false);
            if conn.capabilities().pipelining && !reused {
                // Answered at the next settle (before the client's output is
                // flushed, or before a command that needs the outcome).
                if let Err(e) = conn.write(line.as_bytes()).await {
                    self.upstream_lost(&e);
                    return Flow::Continue;
                }
                self.slots.push_back(Slot::Mail);
                self.tx = Some(Transaction {
                    sender_domain,
                    recipients: 0,
                    accepted: 0,
                });
                return Flow::Continue;
            }
            match conn.command(line.as_bytes()).await {
                Ok(reply) => {
                    if reply.is_positive() {
                        self.tx = Some(Transaction {
                            sender_domain,
                            recipients: 0,
                            accepted: 0,
                        });
                    } else {
                        conn.set_clean(true);
                    }
                    self.reply(reply);
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

    fn refresh_credential(&mut self) -> Result<(), Flow> {
        let state = self.credentials.borrow().clone();
        match state {
            CredentialState::Ready(cred) => {
                let changed = self.cred.as_ref().map(|c| c.pin()) != Some(cred.pin());
                if changed {
                    // Never reuse a connection authenticated with another credential.
                    self.upstream = None;
                    self.info.credential = Some(cred.pin().short());
                    self.cred = Some(cred);
                }
                Ok(())
            }
            CredentialState::NotReady(_) => {
                self.upstream = None;
                let reply = local::not_ready();
                audit::reject(
                    &self.info,
                    Reason::CredentialNotPinned,
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
    async fn upstream_connection(&mut self) -> Result<&mut Connection, Reply> {
        if self.upstream.is_none() {
            let Some(cred) = self.cred.clone() else {
                return Err(local::not_ready());
            };
            let conn = match self.rt.pool.checkout(cred.pin()).await {
                Some(conn) => conn,
                None => match self.rt.connector.connect(&cred).await {
                    Ok(conn) => conn,
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
                },
            };
            self.upstream = Some(conn);
        }
        self.upstream
            .as_mut()
            .ok_or_else(local::upstream_unavailable)
    }

    /// The upstream broke: drop it, forget the transaction, tell the client 4xx.
    fn upstream_lost(&mut self, e: &UpstreamError) {
        self.log_upstream_error(e);
        self.upstream = None;
        self.tx = None;
        self.reply(local::upstream_failed());
    }

    async fn rcpt(&mut self, address: &str) -> Flow {
        let max = self.rt.policy.recipients.max_per_message;
        let Some(tx) = self.tx.as_mut() else {
            return self.bad_command(local::need_mail());
        };
        if tx.recipients >= max {
            return self.refuse(
                Reason::TooManyRecipients,
                local::too_many_recipients(),
                json!({ "max": max }),
            );
        }
        if !self.rt.policy.recipients.domains.allows_address(address) {
            return self.refuse(
                Reason::RecipientNotAllowed,
                local::recipient_not_allowed(),
                json!({ "recipient_domain": domain_of(address) }),
            );
        }
        tx.recipients += 1;
        let Some(conn) = self.upstream.as_mut() else {
            self.tx = None;
            self.reply(local::upstream_failed());
            return Flow::Continue;
        };
        if conn.capabilities().pipelining {
            let line = format!("RCPT TO:<{address}>\r\n");
            if let Err(e) = conn.write(line.as_bytes()).await {
                self.upstream_lost(&e);
                return Flow::Continue;
            }
            self.slots.push_back(Slot::Rcpt);
            return Flow::Continue;
        }
        match conn
            .command(format!("RCPT TO:<{address}>\r\n").as_bytes())
            .await
        {
            Ok(reply) => {
                if reply.is_positive() {
                    if let Some(tx) = self.tx.as_mut() {
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
    async fn reset_transaction(&mut self) {
        self.tx = None;
        if let Some((msg, _)) = self.bdat.take() {
            if msg.upstream_open {
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
    }

    // ---- DATA ----------------------------------------------------------

    /// Checks that a transaction can take a message (DATA or the first BDAT).
    fn ready_for_message(&mut self) -> Result<(), Flow> {
        let Some(tx) = self.tx.as_ref() else {
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

    fn new_inbound(&self) -> Inbound {
        let policy = &self.rt.policy;
        Inbound {
            mode: match policy.data.bare_lf {
                BareLf::Reject => BareLineEndings::Reject,
                BareLf::Normalize => BareLineEndings::Normalize,
            },
            max: policy.limits.max_message_bytes,
            gate: (policy.header_from == HeaderFrom::Enforce)
                .then(|| HeaderGate::new(MAX_HEADER_BYTES)),
            stuffer: DotStuffer::new(),
            wire: Vec::with_capacity(READ_CHUNK + READ_CHUNK / 8),
            size: 0,
            refusal: None,
            upstream_open: false,
            data_reply_pending: false,
        }
    }

    /// The client vanished, stalled or shutdown cut in mid-message: the
    /// upstream must not receive an end for it.
    fn abandon_message(&mut self, msg: &Inbound, outcome: Outcome) -> Flow {
        let reply = match outcome {
            Outcome::Shutdown => {
                self.reply(local::shutting_down());
                local::shutting_down().last_line()
            }
            Outcome::Timeout => local::timeout().last_line(),
            _ => "(client closed the connection mid-message)".to_string(),
        };
        if msg.upstream_open {
            self.upstream = None;
        }
        self.bdat = None;
        if let Some(tx) = self.tx.take() {
            audit::message(
                &self.info,
                &MessageEvent {
                    result: MessageResult::Failed,
                    sender_domain: &tx.sender_domain,
                    recipients: tx.accepted,
                    bytes: msg.size,
                    reply: &reply,
                    reason: None,
                },
            );
        }
        Flow::End(outcome)
    }

    async fn data(&mut self) -> Flow {
        if self.bdat.is_some() {
            return self.bad_command(local::bdat_in_progress());
        }
        if let Err(flow) = self.ready_for_message() {
            return flow;
        }
        let mut msg = self.new_inbound();
        self.early_data(&mut msg).await;
        self.reply(local::start_data());
        if self.flush().await.is_err() {
            return Flow::End(Outcome::Error);
        }
        let mut decoder = DataDecoder::new(msg.mode);
        let mut content = Vec::with_capacity(READ_CHUNK);
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
        self.finish_message(msg).await
    }

    /// BDAT (RFC 3030): chunks of exactly `size` octets, no dot-stuffing, no
    /// end marker. Relayed as DATA to the upstream (re-stuffed), with the
    /// same policy as DATA: line endings, size, header From.
    async fn bdat(&mut self, size: usize, last: bool) -> Flow {
        if self.bdat.is_none() {
            if let Err(flow) = self.ready_for_message() {
                // The chunk's octets still follow the command: skip them.
                return match self.skip_octets(size).await {
                    Ok(()) => flow,
                    Err(outcome) => Flow::End(outcome),
                };
            }
            let mut msg = self.new_inbound();
            self.early_data(&mut msg).await;
            let filter = LineEndingFilter::new(msg.mode);
            self.bdat = Some((msg, filter));
        }
        let Some((mut msg, mut filter)) = self.bdat.take() else {
            return Flow::Continue;
        };
        let data_timeout = self.rt.policy.limits.data_timeout;
        let mut remaining = size;
        let mut content = Vec::with_capacity(READ_CHUNK);
        while remaining > 0 {
            if !self.inbuf.has_pending() {
                if let Err(outcome) = self.read_data(data_timeout).await {
                    return self.abandon_message(&msg, outcome);
                }
            }
            let take = remaining.min(self.inbuf.pending().len());
            filter.feed(&self.inbuf.pending()[..take], &mut content);
            self.inbuf.consume(take);
            remaining -= take;
            if remaining == 0 && last {
                filter.finish(&mut content);
            }
            let ended = remaining == 0 && last;
            self.accept_content(&mut msg, &mut content, filter.saw_bare_line_ending(), ended)
                .await;
            if let Some(flow) = self.cut_off_runaway(&msg) {
                return flow;
            }
        }
        if size == 0 && last {
            filter.finish(&mut content);
            self.accept_content(&mut msg, &mut content, filter.saw_bare_line_ending(), true)
                .await;
        }
        if last {
            return self.finish_message(msg).await;
        }
        if msg.refusal.is_some() {
            // RFC 3030: a failed chunk fails the transaction.
            return self.finish_message(msg).await;
        }
        self.reply(Reply::new(250, format!("2.0.0 {size} octets received")));
        self.bdat = Some((msg, filter));
        Flow::Continue
    }

    /// Reads and drops `n` octets (a BDAT chunk that cannot be accepted).
    async fn skip_octets(&mut self, mut n: usize) -> Result<(), Outcome> {
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

    /// A client that keeps sending long after the size limit is cut off.
    fn cut_off_runaway(&mut self, msg: &Inbound) -> Option<Flow> {
        if msg.size <= msg.max.saturating_mul(2).saturating_add(1 << 20) {
            return None;
        }
        let reply = local::message_too_large();
        if msg.upstream_open {
            self.upstream = None;
        }
        self.bdat = None;
        if let Some(tx) = self.tx.take() {
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
    async fn accept_content(
        &mut self,
        msg: &mut Inbound,
        content: &mut Vec<u8>,
        saw_bare: bool,
        ended: bool,
    ) {
        msg.size += content.len() as u64;
        if msg.refusal.is_none() {
            if msg.mode == BareLineEndings::Reject && saw_bare {
                msg.refusal = Some(Refusal::Policy(Reason::BareLf, local::bare_line_ending()));
            } else if msg.size > msg.max {
                msg.refusal = Some(Refusal::Policy(
                    Reason::MessageTooLarge,
                    local::message_too_large(),
                ));
            }
        }
        if msg.refusal.is_some() {
            content.clear();
            return;
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
                        msg.refusal = Some(Refusal::Policy(
                            Reason::MessageTooLarge,
                            local::headers_too_large(),
                        ));
                        None
                    }
                    Gate::Complete => {
                        if self.header_from_allowed(g.headers()) {
                            msg.gate.take().map(HeaderGate::into_buffer)
                        } else {
                            msg.refusal = Some(Refusal::Policy(
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
        if !msg.upstream_open {
            match self.upstream_data().await {
                Ok(()) => msg.upstream_open = true,
                Err(r) => {
                    msg.refusal = Some(r);
                    return;
                }
            }
        }
        if msg.data_reply_pending {
            msg.data_reply_pending = false;
            let reply = match self.upstream.as_mut() {
                Some(conn) => conn.read_reply().await,
                None => Err(UpstreamError::Closed),
            };
            match reply {
                Ok(r) if r.code == 354 => {}
                Ok(r) => {
                    // Refused DATA: the upstream is not receiving a message.
                    msg.upstream_open = false;
                    msg.refusal = Some(Refusal::Upstream(r));
                    return;
                }
                Err(e) => {
                    self.log_upstream_error(&e);
                    self.upstream = None;
                    msg.refusal = Some(Refusal::UpstreamLost);
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
                msg.refusal = Some(r);
            }
            wire.clear();
            msg.wire = wire;
        }
        if content.capacity() == 0 {
            *content = bytes;
            content.clear();
        }
    }

    fn header_from_allowed(&self, headers: &[u8]) -> bool {
        match header_from_addresses(headers) {
            Ok(addresses) => {
                !addresses.is_empty() && addresses.iter().all(|a| self.rt.policy.senders.allows(a))
            }
            Err(_) => false,
        }
    }

    /// Sends DATA upstream without waiting for its 354, which is read when
    /// the first message bytes are forwarded: the upstream's round trip
    /// overlaps the client sending its message.
    async fn early_data(&mut self, msg: &mut Inbound) {
        let Some(conn) = self.upstream.as_mut() else {
            return;
        };
        match conn.send(b"DATA\r\n").await {
            Ok(()) => {
                msg.upstream_open = true;
                msg.data_reply_pending = true;
            }
            Err(e) => {
                self.log_upstream_error(&e);
                self.upstream = None;
                msg.refusal = Some(Refusal::UpstreamLost);
            }
        }
    }

    /// Sends DATA upstream and expects 354.
    async fn upstream_data(&mut self) -> Result<(), Refusal> {
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

    async fn upstream_write(&mut self, wire: &[u8]) -> Result<(), Refusal> {
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

    fn log_upstream_error(&self, e: &UpstreamError) {
        crate::log::warn(
            "upstream_error",
            json!({ "session": self.info.session, "upstream": self.info.upstream, "error": e.to_string() }),
        );
    }

    async fn read_data(&mut self, timeout: Duration) -> Result<(), Outcome> {
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

    /// End of data: either the upstream gets the end of the message and its
    /// final reply goes to the client, or the message is refused and the
    /// upstream connection (if it was receiving) is dropped mid-message.
    async fn finish_message(&mut self, mut msg: Inbound) -> Flow {
        if msg.refusal.is_none() && (msg.data_reply_pending || !msg.upstream_open) {
            // Nothing was forwarded yet (cannot happen with the gate's
            // contract, kept as a guard): open the upstream's DATA first.
            let mut empty = Vec::new();
            self.accept_content(&mut msg, &mut empty, false, true).await;
        }
        let Inbound {
            refusal,
            upstream_open,
            mut stuffer,
            size,
            wire: pending,
            ..
        } = msg;
        let Some(tx) = self.tx.take() else {
            return Flow::Continue;
        };
        let (result, reply, reason) = match refusal {
            Some(Refusal::Policy(reason, reply)) => {
                if upstream_open {
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
            Some(Refusal::Upstream(reply)) => (MessageResult::Failed, reply, None),
            Some(Refusal::UpstreamLost) => {
                self.upstream = None;
                (MessageResult::Failed, local::upstream_failed(), None)
            }
            None => {
                let mut wire = pending;
                stuffer.finish(&mut wire);
                match self.upstream.as_mut() {
                    Some(conn) => {
                        let sent = match conn.write(&wire).await {
                            Ok(()) => conn.flush().await,
                            Err(e) => Err(e),
                        };
                        match sent {
                            Ok(()) => match conn.read_reply().await {
                                Ok(reply) => {
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
        // Whatever happened, the upstream transaction is over or gone.
        self.reset_transaction().await;
        audit::message(
            &self.info,
            &MessageEvent {
                result,
                sender_domain: &tx.sender_domain,
                recipients: tx.accepted,
                bytes: size,
                reply: &reply.last_line(),
                reason,
            },
        );
        self.reply(reply);
        Flow::Continue
    }
}

/// The domain of an address (lowercased), `""` for the null sender.
fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
        .unwrap_or_default()
}
