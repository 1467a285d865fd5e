//! One client session: the per-connection state machine.
//!
//! A message's path, top to bottom: the listener hands a socket here; the
//! ingest loop answers every pipelined command of a read in order (one
//! handler per verb); AUTH binds the session to an identity allowed by the
//! policy (`binding`); MAIL takes an upstream connection — from the pool,
//! keyed by the credential's pin, or newly authenticated with the mounted
//! credential — and the envelope is relayed: to an upstream with
//! PIPELINING, MAIL is answered locally and written with the first RCPT, and
//! the replies are matched in order by `smtp::pipeline` (`settle`, which also
//! replays the envelope when a pooled connection is found dead); a DATA the
//! client pipelined behind its RCPTs is written behind them upstream; DATA is
//! decoded, policy-checked (bare line endings, size, header From) and
//! streamed to the upstream (as DATA, or as BDAT chunks when it offers
//! CHUNKING and PIPELINING), whose final reply is what the client sees.
//!
//! Where a session stands — greeted, bound, its transaction, a BDAT message
//! between chunks — is one value (`stage`): a transaction exists only in a
//! bound session, a BDAT message only inside a transaction.
//!
//! No upstream connection exists before the session is bound, and a message
//! the policy refuses mid-stream is aborted by dropping the upstream
//! connection, so the upstream never receives that message's end.

mod auth;
pub mod binding;
mod chunks;
mod data;
mod ehlo;
mod envelope;
mod message;
mod read;
mod settle;
mod spare;
mod stage;
mod starttls;

use std::pin::Pin;
use std::sync::Arc;

use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::audit::{self, Reason, SessionInfo};
use crate::client_tls::{ClientStream, ClientTls};
use crate::credential::{Credential, CredentialState};
use crate::runtime::{Phase, Runtime};
use crate::smtp::command::{self, Command, CommandError};
use crate::smtp::line::{Line, LineBuffer, COMMAND_READ};
use crate::smtp::pipeline::Pipeline;
use crate::smtp::reply::{local, Reply};
use crate::smtp::MAX_COMMAND_LINE;
use crate::upstream::{Connection, UpstreamError};
use stage::{Mail, Stage, Transaction};

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

/// An AUTH command line may carry an initial response (a secret): it is
/// wiped from the reused line buffer once handled, not left there until the
/// next command overwrites it.
fn forget_secret(line: &mut Vec<u8>) {
    if line
        .get(..4)
        .is_some_and(|v| v.eq_ignore_ascii_case(b"AUTH"))
    {
        zeroize::Zeroize::zeroize(line);
    }
}

/// What a handler tells the ingest loop.
enum Flow {
    Continue,
    End(Outcome),
}

/// Where a session came from: TLS toward the mailer when the policy has
/// `client.tls`, and whether the listener is the implicit-TLS one.
#[derive(Clone, Default)]
pub struct Entry {
    pub tls: Option<Arc<ClientTls>>,
    pub implicit: bool,
}

pub struct Session {
    io: ClientStream,
    entry: Entry,
    /// The snapshot in force for this session: taken at connect, swapped
    /// only at a transaction boundary (AUTH, MAIL; see [`Session::take_snapshot`]).
    rt: Arc<Runtime>,
    snapshots: watch::Receiver<Arc<Runtime>>,
    phase: watch::Receiver<Phase>,
    /// The credential this session's upstream work uses (refreshed at MAIL).
    cred: Option<Arc<Credential>>,
    info: SessionInfo,
    inbuf: LineBuffer,
    /// The command line being handled: one buffer for the session, at most
    /// [`MAX_COMMAND_LINE`] bytes, reused by every command.
    line: Vec<u8>,
    /// The MAIL or RCPT command written upstream (one buffer, reused).
    upline: String,
    /// Buffers kept from one message to the next (bounded).
    spare: spare::Spare,
    out: Vec<u8>,
    /// Greeting, binding, the transaction and a BDAT message, as one value.
    stage: Stage,
    /// The last EHLO reply offered SMTPUTF8 (the upstream is known to).
    smtputf8_offered: bool,
    auth_failures: u32,
    errors: u32,
    upstream: Option<Connection>,
    /// Replies owed while commands are pipelined to the upstream.
    pipe: Pipeline,
    /// The read deadline's timer, armed once per session and moved only
    /// when it must fire earlier or when it fired early (see
    /// [`Session::read_more`]): no timer registered and cancelled per read.
    timer: Pin<Box<tokio::time::Sleep>>,
    /// Completes when the process phase changes: one waiter per session,
    /// made again only after a change, not one per read.
    phase_change: read::PhaseChange,
}

impl Session {
    pub fn new(
        io: TcpStream,
        peer: String,
        rt: Arc<Runtime>,
        snapshots: watch::Receiver<Arc<Runtime>>,
        mut phase: watch::Receiver<Phase>,
        id: String,
        entry: Entry,
    ) -> Self {
        let info = SessionInfo {
            session: id,
            peer,
            client_identity: None,
            credential: None,
            upstream: rt.connector.address().to_string(),
            client_sni: None,
            log: rt.process.log.clone(),
        };
        Session {
            io: ClientStream::Plain(io),
            entry,
            rt,
            snapshots,
            cred: None,
            info,
            inbuf: LineBuffer::new(),
            line: Vec::new(),
            upline: String::new(),
            spare: spare::Spare::default(),
            out: Vec::with_capacity(1024),
            stage: Stage::Connected,
            smtputf8_offered: false,
            auth_failures: 0,
            errors: 0,
            upstream: None,
            pipe: Pipeline::default(),
            timer: Box::pin(tokio::time::sleep_until(Instant::now() + read::FAR)),
            phase_change: read::next_phase_change(&mut phase),
            phase,
        }
    }

    /// Swaps to the snapshot published last, whole (policy, connector,
    /// pool and credential of one publication), at a transaction boundary
    /// only: never while a transaction or a pipelined upstream reply is
    /// open. The upstream connection of the old snapshot goes back to its
    /// pool (which closes it once that snapshot is retired).
    pub(super) fn take_snapshot(&mut self) {
        if !self.between_transactions() {
            return;
        }
        let next = self.snapshots.borrow_and_update().clone();
        if Arc::ptr_eq(&next, &self.rt) {
            return;
        }
        if let Some(conn) = self.upstream.take() {
            if let Some(conn) = self.rt.pool.checkin(conn) {
                tokio::spawn(conn.quit());
            }
        }
        self.info.upstream = next.connector.address().to_string();
        self.rt = next;
    }

    /// Runs the session to its end and returns how it ended.
    ///
    /// An `async move` block rather than an `async fn`: an `async fn`'s
    /// future keeps its by-value `self` twice (the argument and the local
    /// it is moved into), ~1 KiB more per session.
    #[allow(clippy::manual_async_fn)]
    pub fn run(mut self) -> impl std::future::Future<Output = Outcome> + Send + 'static {
        async move {
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
    }

    async fn serve(&mut self) -> Outcome {
        if self.entry.implicit {
            if let Err(outcome) = self.handshake().await {
                return outcome;
            }
        }
        let state = self.rt.credential.clone();
        match state {
            // XOAUTH2: pinned is not enough, a usable token must be held (§9).
            CredentialState::Ready(cred) if cred.usable().is_ok() => {
                self.info.credential = Some(cred.pin().short());
                self.cred = Some(cred);
            }
            state => {
                audit::reject(
                    &self.info,
                    state.not_ready_reason(),
                    &local::not_ready().last_line(),
                    json!({}),
                );
                self.reply(local::not_ready());
                return Outcome::Rejected;
            }
        }
        self.reply(local::greeting(&self.rt.policy.upstream.ehlo_name));
        // A whole command must arrive within `command_timeout`: the deadline
        // starts when the session waits for a command and is not extended by
        // partial bytes, so a client dripping a byte a second is cut off too.
        let mut deadline: Option<Instant> = None;
        loop {
            // Answer every complete command already buffered, in order.
            loop {
                // The session's line buffer, lent to the handler (it may
                // read more input itself) and given back after it.
                let mut line = std::mem::take(&mut self.line);
                let next = self.inbuf.next_line(MAX_COMMAND_LINE, &mut line);
                if !matches!(next, Line::NeedMore) {
                    deadline = None;
                }
                let flow = match next {
                    Line::Ok => {
                        let flow = self.handle(&line).await;
                        forget_secret(&mut line);
                        flow
                    }
                    Line::TooLong => self.bad_command(local::line_too_long()),
                    Line::Flood => {
                        self.reply(local::line_too_long());
                        Flow::End(Outcome::Rejected)
                    }
                    Line::NeedMore => Flow::Continue,
                };
                self.line = line;
                if let Flow::End(outcome) = flow {
                    return outcome;
                }
                if matches!(next, Line::NeedMore) {
                    break;
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

    fn greeted(&self) -> bool {
        self.stage.greeted()
    }

    fn bound(&self) -> bool {
        self.stage.bound()
    }

    /// No transaction open (no BDAT message either) and no upstream reply
    /// owed: the snapshot may be swapped and the connection given back.
    fn between_transactions(&self) -> bool {
        self.stage.tx().is_none() && self.pipe.is_empty()
    }

    /// Queues a reply for the client, after any still owed by the upstream.
    fn reply(&mut self, reply: Reply) {
        self.pipe.reply(reply, &mut self.out);
    }

    /// [`Session::reply`] for a one-line reply of static text (built only
    /// if it must wait behind replies owed).
    fn reply_static(&mut self, (code, text): (u16, &'static str)) {
        if self.pipe.is_empty() {
            Reply::write_one(&mut self.out, code, text);
        } else {
            self.pipe.reply(Reply::new(code, text), &mut self.out);
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.settle().await;
        if !self.out.is_empty() {
            self.io.write_all(&self.out).await?;
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
                    CommandError::Sender(e) => local::envelope(&e, true),
                    CommandError::Recipient(e) => local::envelope(&e, false),
                };
                return self.bad_command(reply);
            }
        };
        // `starttls: require`: before TLS only these are answered (§11).
        if self.tls_first()
            && !matches!(
                cmd,
                Command::Ehlo(_)
                    | Command::Helo(_)
                    | Command::StartTls
                    | Command::Noop
                    | Command::Rset
                    | Command::Quit
            )
        {
            return self.bad_command(local::starttls_first());
        }
        // MAIL, RCPT and DATA may be pipelined to the upstream; every other
        // command sees the transaction as the upstream answered it.
        if !matches!(cmd, Command::Mail(_) | Command::Rcpt(_) | Command::Data) {
            self.settle().await;
        }
        match cmd {
            Command::Ehlo(_) => self.ehlo(true).await,
            Command::Helo(_) => self.ehlo(false).await,
            Command::Auth { mechanism, initial } => self.auth(mechanism, initial).await,
            Command::Mail(mail) => self.mail(mail).await,
            Command::Rcpt(rcpt) => self.rcpt(rcpt).await,
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
            Command::StartTls => self.starttls().await,
            Command::Bdat { size, last } => self.bdat(size, last).await,
            Command::NotImplemented => self.bad_command(local::not_implemented()),
        }
    }

    pub(super) fn log_upstream_error(&self, e: &UpstreamError) {
        self.info.log.warn(
            "upstream_error",
            json!({ "session": self.info.session, "upstream": self.info.upstream, "error": e.to_string() }),
        );
    }
}
