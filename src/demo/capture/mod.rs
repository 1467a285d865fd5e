//! The capture upstream: a small recording SMTP server standing in for a
//! provider like SendGrid. It requires AUTH, offers STARTTLS (or implicit
//! TLS) with a generated certificate, PIPELINING (and, when asked, CHUNKING
//! like Gmail and Microsoft 365), and records for every accepted message
//! which account's credential authenticated the connection — the provider's
//! "activity log" that the 2021 incident polluted.
//!
//! Used by `smtpbind demo`, by `smtpbind capture` (pod simulation, kind
//! harness) and by the integration tests, which also use its fault switches
//! (no STARTTLS, bytes injected after the STARTTLS 220, a dropped handshake,
//! refused commands or BDAT chunks, a connection dropped mid-DATA) and its `lenient_eod`
//! mode, which ends data at any `<LF|CR>.<LF|CR>` like the receivers that
//! SMTP smuggling exploits, so that a smuggled message would show up here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::certs::Pki;

mod auth;
mod chunking;
mod export;
mod message;
mod session;

pub use export::ExportShape;
use session::Conn;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureTls {
    StartTls,
    Implicit,
    None,
}

#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub username: String,
    pub password: String,
}

/// Fault injection for tests (each off by default).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Do not advertise STARTTLS (and refuse it).
    pub no_starttls: bool,
    /// Bytes sent in the same write right after `220 ready` to STARTTLS.
    pub starttls_inject: Option<Vec<u8>>,
    /// Close the connection instead of doing the TLS handshake.
    pub drop_handshake: bool,
    /// Replace the reply to MAIL / RCPT / DATA / end of data.
    pub mail_reply: Option<String>,
    pub rcpt_reply: Option<String>,
    /// Refuse one recipient (the address, compared case-insensitively) with
    /// the given reply; the others are accepted.
    pub refuse_rcpt: Option<(String, String)>,
    pub data_reply: Option<String>,
    pub eod_reply: Option<String>,
    /// Close the connection after this many bytes of message data.
    pub drop_after_data_bytes: Option<usize>,
    /// Do not advertise PIPELINING.
    pub no_pipelining: bool,
    /// Advertise only this AUTH mechanism ("PLAIN" or "LOGIN").
    pub only_mechanism: Option<String>,
    /// Close a connection that sent nothing for this long (like providers'
    /// idle timeouts), after a `421`.
    pub idle_close: Option<std::time::Duration>,
    /// Refuse every `AUTH XOAUTH2`, however valid its token.
    pub reject_xoauth2: bool,
    /// Refuse every AUTH (any mechanism), echoing the client's SASL
    /// responses in the `535` text (a provider that quotes what it got).
    pub echo_auth: bool,
    /// Replace the reply to the n-th BDAT chunk of a transaction (1-based):
    /// a refusal fails the transaction, later chunks are discarded.
    pub bdat_reply: Option<(usize, String)>,
    /// A command arriving after the connection sat idle this long is
    /// answered `421` and the connection closed: a provider whose idle
    /// timeout is only noticed at the next command (nothing is sent while
    /// idle, so a pool's liveness check cannot see it).
    pub stale_after: Option<std::time::Duration>,
    /// Close the connection, without a reply, when the n-th RCPT of the
    /// connection (1-based, counted across its transactions) arrives: a
    /// connection that dies under a pipelined envelope.
    pub close_at_rcpt: Option<usize>,
    /// Hold the replies to MAIL and RCPT back until another command
    /// arrives (DATA, BDAT, RSET, …), then write them ahead of its reply: a
    /// client that waits for them before writing DATA never gets them, so a
    /// test sees whether DATA was pipelined behind the envelope.
    pub hold_envelope_replies: bool,
}

#[derive(Debug, Clone)]
pub struct CaptureConfig {
    pub listen: SocketAddr,
    pub tls: CaptureTls,
    /// Name in the certificate and greeting.
    pub hostname: String,
    pub accounts: Vec<Account>,
    pub faults: Faults,
    /// End data at any `<CR|LF>.<CR|LF>` (a smuggling-vulnerable receiver).
    pub lenient_eod: bool,
    /// Append one JSON line per message to `<dir>/<account>.jsonl`.
    pub log_dir: Option<PathBuf>,
    /// Offer `AUTH XOAUTH2` and check its tokens against this issuer.
    pub oauth: Option<crate::demo::issuer::Tokens>,
    /// Offer CHUNKING (RFC 3030, BDAT) like Gmail and Microsoft 365; off by
    /// default: the capture stands in for SendGrid, which does not.
    pub chunking: bool,
    /// Play this provider (§13): its 250 reply's shape, and its activity
    /// export written to `log_dir` (see `export`).
    pub export: Option<ExportShape>,
}

impl CaptureConfig {
    pub fn new(accounts: Vec<Account>) -> Self {
        CaptureConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: CaptureTls::StartTls,
            hostname: "localhost".into(),
            accounts,
            faults: Faults::default(),
            lenient_eod: false,
            log_dir: None,
            oauth: None,
            chunking: false,
            export: None,
        }
    }
}

/// One accepted message, as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Captured {
    pub account: String,
    pub username: String,
    pub mail_from: String,
    /// The MAIL command line exactly as received (to check forwarded parameters).
    #[serde(skip)]
    pub mail_line: String,
    pub rcpt_to: Vec<String>,
    #[serde(skip)]
    pub data: Vec<u8>,
    pub bytes: usize,
    pub queue_id: String,
    pub tls: bool,
    /// The verb that carried the content: `DATA` or `BDAT`.
    pub verb: &'static str,
    /// BDAT chunks the message came in (0 for DATA).
    pub chunks: usize,
}

/// One AUTH attempt seen by the capture upstream.
#[derive(Debug, Clone)]
pub struct AuthAttempt {
    pub account: Option<String>,
    pub tls: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Record {
    pub(crate) messages: Vec<Captured>,
    pub(crate) auths: Vec<AuthAttempt>,
    pub(crate) connections: usize,
    /// MAIL commands received, all connections.
    pub(crate) mail_commands: usize,
    /// Every byte received outside TLS, all connections.
    pub(crate) plaintext: Vec<u8>,
    pub(crate) seq: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{0}")]
    Cert(#[from] crate::certs::CertError),
    #[error("cannot bind {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("log dir {0}: {1}")]
    LogDir(PathBuf, std::io::Error),
}

/// A running capture upstream.
pub struct CaptureServer {
    pub addr: SocketAddr,
    /// CA certificate (PEM) that verifies this server's certificate.
    pub ca_pem: String,
    record: Arc<Mutex<Record>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CaptureServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CaptureServer {
    pub async fn start(config: CaptureConfig) -> Result<CaptureServer, CaptureError> {
        let mut names = vec![config.hostname.clone()];
        if config.hostname != "localhost" {
            names.push("localhost".into());
        }
        names.push("127.0.0.1".into());
        let pki = Pki::generate("smtpbind capture CA", &names)?;
        let acceptor = TlsAcceptor::from(pki.server_config()?);
        if let Some(dir) = &config.log_dir {
            std::fs::create_dir_all(dir).map_err(|e| CaptureError::LogDir(dir.clone(), e))?;
        }
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|error| CaptureError::Bind {
                    addr: config.listen,
                    error,
                })?;
        let addr = listener.local_addr().map_err(|error| CaptureError::Bind {
            addr: config.listen,
            error,
        })?;
        let record = Arc::new(Mutex::new(Record::default()));
        let config = Arc::new(config);
        let rec = record.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                // Replies go out as written (two in a row are not held back
                // by Nagle for the peer's delayed ACK), as the sidecar's own
                // sockets do; tests on a paused clock rely on it.
                let _ = stream.set_nodelay(true);
                let (config, acceptor, rec) = (config.clone(), acceptor.clone(), rec.clone());
                tokio::spawn(async move {
                    lock(&rec).connections += 1;
                    let conn = Conn::new(config, acceptor, rec);
                    conn.run(Box::new(stream)).await;
                });
            }
        });
        Ok(CaptureServer {
            addr,
            ca_pem: pki.ca_pem,
            record,
            task,
        })
    }

    pub fn messages(&self) -> Vec<Captured> {
        lock(&self.record).messages.clone()
    }

    pub fn auth_attempts(&self) -> Vec<AuthAttempt> {
        lock(&self.record).auths.clone()
    }

    pub fn connections(&self) -> usize {
        lock(&self.record).connections
    }

    /// Every byte any client sent outside TLS.
    /// MAIL commands received (refused or not), all connections.
    pub fn mail_commands(&self) -> usize {
        lock(&self.record).mail_commands
    }

    pub fn plaintext_bytes(&self) -> Vec<u8> {
        lock(&self.record).plaintext.clone()
    }
}

pub(crate) fn lock(rec: &Mutex<Record>) -> std::sync::MutexGuard<'_, Record> {
    rec.lock().unwrap_or_else(|p| p.into_inner())
}
