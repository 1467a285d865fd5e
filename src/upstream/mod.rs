//! The upstream side: connect, TLS (STARTTLS or implicit, always verified),
//! EHLO, AUTH with the pod's mounted credential, then commands and replies.
//!
//! Order of a new connection: TCP connect → (implicit TLS handshake) → 220
//! greeting → EHLO → (STARTTLS: required when `tls: starttls`; anything the
//! server sent after its 220 is discarded; handshake; EHLO again, and only
//! these capabilities count) → AUTH. AUTH is only ever written on a verified
//! TLS stream, or with `tls: none` + `insecure: true`.

mod auth;
pub mod caps;
pub mod limit;
pub mod pool;
mod scrub;
mod stream;
pub mod tls;
pub mod warm;
mod xoauth2;

use std::io;
use std::pin::Pin as StdPin;
use std::task::Poll;
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::credential::Credential;
use crate::policy::{Mechanism, Pin, TlsMode, UpstreamPolicy};
use crate::smtp::reply::{self, Reply, ReplyError};
pub use caps::Capabilities;
use stream::Stream;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect to upstream failed: {0}")]
    Connect(io::ErrorKind),
    #[error("upstream timed out during {0}")]
    Timeout(&'static str),
    #[error("upstream TLS failed: {0}")]
    Tls(String),
    #[error("upstream does not offer STARTTLS")]
    StartTlsNotOffered,
    #[error("upstream refused STARTTLS: {0}")]
    StartTlsRefused(String),
    #[error("upstream greeting refused: {0}")]
    Greeting(String),
    #[error("upstream refused EHLO: {0}")]
    Ehlo(String),
    #[error("upstream offers no usable AUTH mechanism")]
    AuthNotOffered,
    #[error("upstream rejected the pod credential: {0}")]
    AuthRejected(String),
    #[error("no OAuth2 token for the upstream: {0}")]
    Token(String),
    #[error("upstream I/O: {0}")]
    Io(io::ErrorKind),
    #[error("upstream closed the connection")]
    Closed,
    #[error("upstream reply: {0}")]
    Protocol(#[from] ReplyError),
    #[error("upstream connection limit reached (upstream.max_connections)")]
    Busy,
    #[error("{0}")]
    Unpinned(String),
    /// A dead pooled connection's envelope, replayed on a new one, was
    /// answered differently there (the last reply's line).
    #[error("replayed envelope refused: {0}")]
    ReplayRefused(String),
}

impl UpstreamError {
    /// Errors caused by TLS policy: the client gets `451 4.7.0`.
    pub fn is_tls(&self) -> bool {
        matches!(
            self,
            UpstreamError::Tls(_)
                | UpstreamError::StartTlsNotOffered
                | UpstreamError::StartTlsRefused(_)
        )
    }

    /// The cap on upstream connections stayed reached for the whole wait.
    pub fn is_busy(&self) -> bool {
        matches!(self, UpstreamError::Busy)
    }

    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            UpstreamError::AuthNotOffered
                | UpstreamError::AuthRejected(_)
                | UpstreamError::Token(_)
        )
    }
}

/// Everything needed to open upstream connections for one policy.
pub struct Connector {
    policy: UpstreamPolicy,
    mechanism: Mechanism,
    tls: TlsConnector,
    server_name: ServerName<'static>,
}

impl Connector {
    pub fn new(
        policy: &UpstreamPolicy,
        mechanism: Mechanism,
    ) -> Result<Connector, tls::TlsConfigError> {
        let config = tls::client_config(policy.ca_file.as_deref())?;
        let server_name = ServerName::try_from(policy.server_name.clone())
            .map_err(|e| tls::TlsConfigError::Rustls(rustls::Error::General(e.to_string())))?;
        Ok(Connector {
            policy: policy.clone(),
            mechanism,
            tls: TlsConnector::from(config),
            server_name,
        })
    }

    pub fn address(&self) -> &str {
        &self.policy.address
    }

    /// Opens, secures and authenticates a new connection with `cred`, in
    /// `slot` (its place under the cap, freed when the connection drops).
    pub async fn connect(
        &self,
        cred: &Credential,
        slot: limit::Slot,
    ) -> Result<Connection, UpstreamError> {
        let started = Instant::now();
        let p = &self.policy;
        let tcp = tokio::time::timeout(
            p.connect_timeout,
            TcpStream::connect((p.host.as_str(), p.port)),
        )
        .await
        .map_err(|_| UpstreamError::Timeout("connect"))?
        .map_err(|e| UpstreamError::Connect(e.kind()))?;
        let _ = tcp.set_nodelay(true);
        let mut conn = Connection {
            stream: Stream::Plain(tcp),
            buf: Vec::with_capacity(4096),
            reply: Box::default(),
            caps: Capabilities::default(),
            pin: cred.pin(),
            user: cred.upstream_user().map(str::to_string),
            token_epoch: None,
            reply_timeout: p.reply_timeout,
            scrub: Box::default(),
            timer: None,
            tls: false,
            clean: true,
            reused: false,
            slot,
        };
        // Handshake and greeting share the connect timeout.
        let setup = async {
            if p.tls == TlsMode::Implicit {
                conn.start_tls(&self.tls, &self.server_name).await?;
            }
            let greeting = conn.read_reply().await?;
            if greeting.code != 220 {
                return Err(UpstreamError::Greeting(greeting.last_line()));
            }
            conn.ehlo(&p.ehlo_name).await?;
            if p.tls == TlsMode::StartTls {
                if !conn.caps.starttls {
                    return Err(UpstreamError::StartTlsNotOffered);
                }
                let reply = conn.command(b"STARTTLS\r\n").await?;
                if reply.code != 220 {
                    return Err(UpstreamError::StartTlsRefused(reply.last_line()));
                }
                // Anything pipelined after the 220 came before TLS: discard it.
                conn.buf.clear();
                conn.start_tls(&self.tls, &self.server_name).await?;
                conn.caps = Capabilities::default();
                conn.ehlo(&p.ehlo_name).await?;
            }
            Ok(())
        };
        tokio::time::timeout(p.connect_timeout, setup)
            .await
            .map_err(|_| UpstreamError::Timeout("TLS handshake or greeting"))??;
        let may_auth = conn.tls || (p.tls == TlsMode::None && p.insecure);
        if !may_auth {
            // Unreachable by construction; kept as the last line of defence.
            return Err(UpstreamError::Tls(
                "refusing to authenticate without TLS".into(),
            ));
        }
        // A token being fetched is waited for at most `connect_timeout`.
        conn.authenticate(cred, self.mechanism, p.connect_timeout)
            .await?;
        metrics::histogram!("smtpbind_upstream_connect_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(conn)
    }
}

/// One authenticated upstream SMTP connection.
pub struct Connection {
    stream: Stream,
    buf: Vec<u8>,
    /// The last reply read, its strings reused by the next.
    reply: Box<Reply>,
    caps: Capabilities,
    pin: Pin,
    /// XOAUTH2's `user=`: with the pin, the key this connection is pooled under.
    user: Option<String>,
    /// XOAUTH2: the token source and its epoch when this connection
    /// authenticated; after a gap without a token it is not reused.
    token_epoch: Option<(std::sync::Arc<crate::identity::TokenSource>, u64)>,
    reply_timeout: Duration,
    /// The secrets this connection sent or may send, taken out of every
    /// reply before anything reads it.
    scrub: Box<scrub::Scrub>,
    /// The reply deadline's timer, armed at the first reply and moved only
    /// when it fires early or must fire earlier: not one timer registered
    /// and cancelled per read.
    timer: Option<StdPin<Box<tokio::time::Sleep>>>,
    tls: bool,
    /// No transaction open: safe to hand to another session.
    clean: bool,
    /// Taken from the pool and not used since.
    reused: bool,
    /// Its place under `upstream.max_connections`.
    slot: limit::Slot,
}

impl Connection {
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Pin of the credential this connection authenticated with.
    pub fn pin(&self) -> Pin {
        self.pin
    }

    /// XOAUTH2 `user=` this connection authenticated as.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// True (once) when this connection came from the pool and has not been
    /// used since: a failure of its first command may be a server-side idle
    /// close, worth one retry on a new connection.
    pub fn take_reused(&mut self) -> bool {
        std::mem::take(&mut self.reused)
    }

    pub fn mark_reused(&mut self) {
        self.reused = true;
    }

    /// A session holds it (true) or it waits in the pool (false).
    pub fn set_in_use(&mut self, in_use: bool) {
        self.slot.set_in_use(in_use);
    }

    pub fn is_clean(&self) -> bool {
        self.clean
    }

    pub fn set_clean(&mut self, clean: bool) {
        self.clean = clean;
    }

    async fn start_tls(
        &mut self,
        connector: &TlsConnector,
        name: &ServerName<'static>,
    ) -> Result<(), UpstreamError> {
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(UpstreamError::Tls("TLS already active".into()));
        };
        let tls = connector
            .connect(name.clone(), tcp)
            .await
            .map_err(|e| UpstreamError::Tls(e.to_string()))?;
        self.stream = Stream::Tls(Box::new(tls));
        self.tls = true;
        Ok(())
    }

    async fn ehlo(&mut self, name: &str) -> Result<(), UpstreamError> {
        let reply = self.command(format!("EHLO {name}\r\n").as_bytes()).await?;
        if reply.code != 250 {
            return Err(UpstreamError::Ehlo(reply.last_line()));
        }
        self.caps = Capabilities::from_ehlo(&reply);
        Ok(())
    }

    /// Writes `bytes` and flushes.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), UpstreamError> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| UpstreamError::Io(e.kind()))?;
        self.stream
            .flush()
            .await
            .map_err(|e| UpstreamError::Io(e.kind()))
    }

    /// Writes without flushing (for streaming DATA; call [`Connection::flush`]).
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), UpstreamError> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| UpstreamError::Io(e.kind()))
    }

    pub async fn flush(&mut self) -> Result<(), UpstreamError> {
        self.stream
            .flush()
            .await
            .map_err(|e| UpstreamError::Io(e.kind()))
    }

    /// Sends one command and waits for its reply.
    pub async fn command(&mut self, line: &[u8]) -> Result<Reply, UpstreamError> {
        self.send(line).await?;
        self.read_reply().await
    }

    /// [`Connection::command`], the reply lent (see [`Connection::reply`]).
    pub async fn command_ref(&mut self, line: &[u8]) -> Result<&Reply, UpstreamError> {
        self.send(line).await?;
        self.reply().await
    }

    /// Reads the next reply, bounded by size and the reply timeout (one
    /// deadline for the whole reply).
    pub async fn read_reply(&mut self) -> Result<Reply, UpstreamError> {
        self.reply().await.cloned()
    }

    /// [`Connection::read_reply`], the reply lent: it is parsed into the
    /// connection's own [`Reply`], whose strings every reply reuses (no
    /// allocation per reply on the message path).
    pub async fn reply(&mut self) -> Result<&Reply, UpstreamError> {
        if !self.reply.is_small() {
            // The last one was long (an EHLO reply): not kept.
            *self.reply = Reply::default();
        }
        let until = tokio::time::Instant::now() + self.reply_timeout;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
        // Armed earlier than `until` is fine (moved when it fires), later is not.
        if timer.deadline() > until {
            timer.as_mut().reset(until);
        }
        loop {
            if let Some(used) = reply::parse_into(&self.buf, &mut self.reply)? {
                self.buf.drain(..used);
                if !self.scrub.is_empty() {
                    for line in &mut self.reply.lines {
                        self.scrub.apply(line);
                    }
                }
                return Ok(&self.reply);
            }
            // Read straight into the buffer's spare room (no zeroed chunk).
            self.buf.reserve(4096);
            let read = tokio::select! {
                biased;
                read = self.stream.read_buf(&mut self.buf) => read,
                () = timer.as_mut() => {
                    if tokio::time::Instant::now() < until {
                        timer.as_mut().reset(until);
                        continue;
                    }
                    return Err(UpstreamError::Timeout("reply"));
                }
            };
            let n = read.map_err(|e| UpstreamError::Io(e.kind()))?;
            if n == 0 {
                return Err(UpstreamError::Closed);
            }
        }
    }

    /// A reply that has already arrived, without waiting: what is buffered,
    /// plus one read only if the socket has bytes ready. `None`: not yet.
    pub async fn try_read_reply(&mut self) -> Result<Option<Reply>, UpstreamError> {
        loop {
            if let Some((reply, used)) = reply::parse(&self.buf)? {
                self.buf.drain(..used);
                return Ok(Some(reply));
            }
            self.buf.reserve(4096);
            // One poll of the read: ready bytes or nothing.
            match poll_once(self.stream.read_buf(&mut self.buf)).await {
                None => return Ok(None),
                Some(Ok(0)) => return Err(UpstreamError::Closed),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(UpstreamError::Io(e.kind())),
            }
        }
    }

    /// True when an idle connection was closed or spoke unprompted (e.g. a
    /// `421` idle timeout): it must not be reused. Polls the socket once
    /// without waiting.
    pub async fn is_stale(&mut self) -> bool {
        if !self.buf.is_empty() || self.token_gap() {
            return true;
        }
        let mut chunk = [0u8; 512];
        // Nothing to read means alive; EOF, an error or unsolicited bytes
        // all mean the connection must not be reused.
        poll_once(self.stream.read(&mut chunk)).await.is_some()
    }

    /// Best-effort QUIT and close.
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            if self.stream.write_all(b"QUIT\r\n").await.is_ok() {
                let _ = self.stream.flush().await;
                let _ = self.read_reply().await;
            }
            let _ = self.stream.shutdown().await;
        })
        .await;
    }
}

/// Polls `fut` once and returns its output if it is ready now, without
/// waiting. Not `tokio::time::timeout(Duration::ZERO, ..)`: the timer driver
/// rounds a deadline up to its next millisecond tick, so that "zero" wait
/// cost up to a millisecond each time — on every checkout from the pool,
/// i.e. every message of a reused session (bench/README.md).
async fn poll_once<F: std::future::Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
        Poll::Ready(out) => Poll::Ready(Some(out)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::poll_once;

    #[tokio::test]
    async fn poll_once_gives_a_ready_output_and_never_waits() {
        assert_eq!(poll_once(async { 7 }).await, Some(7));
        // A future that is never ready: one poll, then None (a waiting
        // implementation would hang here).
        assert_eq!(poll_once(std::future::pending::<u8>()).await, None);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u8>(1);
        assert_eq!(poll_once(rx.recv()).await, None);
        tx.send(3).await.unwrap();
        assert_eq!(poll_once(rx.recv()).await, Some(Some(3)));
    }
}
