//! One capture connection: greeting, STARTTLS, the command loop.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use super::{lock, Account, CaptureConfig, CaptureTls, Record};

pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub(super) struct Conn {
    pub(super) config: Arc<CaptureConfig>,
    pub(super) acceptor: TlsAcceptor,
    pub(super) rec: Arc<Mutex<Record>>,
    pub(super) buf: Vec<u8>,
    pub(super) tls: bool,
    pub(super) account: Option<Account>,
    pub(super) mail_from: Option<String>,
    pub(super) mail_line: String,
    pub(super) rcpts: Vec<String>,
    /// BDAT: the content received so far in this transaction.
    pub(super) chunked: Vec<u8>,
    /// BDAT: chunks received in this transaction.
    pub(super) chunks: usize,
    /// BDAT: a chunk was refused; the rest of the transaction is discarded.
    pub(super) chunk_failed: bool,
    /// When the last command arrived (the `stale_after` fault).
    pub(super) last_command: std::time::Instant,
    /// RCPTs received on this connection (the `close_at_rcpt` fault).
    pub(super) rcpt_count: usize,
    /// Replies held back (the `hold_envelope_replies` fault).
    pub(super) held: String,
}

pub(super) enum Next {
    Continue,
    StartTls,
    Data,
    Close,
}

impl Conn {
    pub(super) fn new(
        config: Arc<CaptureConfig>,
        acceptor: TlsAcceptor,
        rec: Arc<Mutex<Record>>,
    ) -> Conn {
        Conn {
            config,
            acceptor,
            rec,
            buf: Vec::new(),
            tls: false,
            account: None,
            mail_from: None,
            mail_line: String::new(),
            rcpts: Vec::new(),
            chunked: Vec::new(),
            chunks: 0,
            chunk_failed: false,
            last_command: std::time::Instant::now(),
            rcpt_count: 0,
            held: String::new(),
        }
    }

    pub(super) async fn run(mut self, stream: Box<dyn Io>) {
        let mut io: Box<dyn Io> = stream;
        if self.config.tls == CaptureTls::Implicit {
            match self.acceptor.accept(io).await {
                Ok(tls) => {
                    io = Box::new(tls);
                    self.tls = true;
                }
                Err(_) => return,
            }
        }
        let greeting = format!("220 {} ESMTP capture\r\n", self.config.hostname);
        if io.write_all(greeting.as_bytes()).await.is_err() {
            return;
        }
        loop {
            let next = match self.next_line() {
                Some(line) => self.command(&line, &mut io).await,
                None => match self.config.faults.idle_close {
                    Some(idle) => match tokio::time::timeout(idle, self.read(&mut io)).await {
                        Ok(true) => Next::Continue,
                        Ok(false) => Next::Close,
                        Err(_) => {
                            let _ = io.write_all(b"421 4.4.2 idle timeout\r\n").await;
                            let _ = io.shutdown().await;
                            Next::Close
                        }
                    },
                    None => {
                        if self.read(&mut io).await {
                            Next::Continue
                        } else {
                            Next::Close
                        }
                    }
                },
            };
            match next {
                Next::Continue => {}
                Next::Close => return,
                Next::StartTls => {
                    if self.config.faults.drop_handshake {
                        return;
                    }
                    self.buf.clear();
                    match self.acceptor.accept(io).await {
                        Ok(tls) => {
                            io = Box::new(tls);
                            self.tls = true;
                            self.account = None;
                        }
                        Err(_) => return,
                    }
                }
                Next::Data => {
                    if !self.data(&mut io).await {
                        return;
                    }
                }
            }
        }
    }

    pub(super) async fn read(&mut self, io: &mut Box<dyn Io>) -> bool {
        let mut chunk = [0u8; 16384];
        match io.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                if !self.tls {
                    lock(&self.rec).plaintext.extend_from_slice(&chunk[..n]);
                }
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    pub(super) fn next_line(&mut self) -> Option<String> {
        let lf = self.buf.iter().position(|&b| b == b'\n')?;
        let line: Vec<u8> = self.buf.drain(..=lf).collect();
        let line = String::from_utf8_lossy(&line);
        Some(line.trim_end_matches(['\r', '\n']).to_string())
    }

    async fn command(&mut self, line: &str, io: &mut Box<dyn Io>) -> Next {
        let upper = line.to_ascii_uppercase();
        let verb = upper.split_whitespace().next().unwrap_or("");
        let f = &self.config.faults;
        if f.stale_after
            .is_some_and(|idle| self.last_command.elapsed() >= idle)
        {
            let _ = io.write_all(b"421 4.4.2 idle timeout\r\n").await;
            let _ = io.shutdown().await;
            return Next::Close;
        }
        self.last_command = std::time::Instant::now();
        let envelope = matches!(verb, "MAIL" | "RCPT");
        if !envelope && !self.held.is_empty() {
            let held = std::mem::take(&mut self.held);
            if io.write_all(held.as_bytes()).await.is_err() {
                return Next::Close;
            }
        }
        let reply: String = match verb {
            "EHLO" => {
                let mut caps = vec![
                    self.config.hostname.clone(),
                    "8BITMIME".into(),
                    "SIZE 52428800".into(),
                    "SMTPUTF8".into(),
                ];
                if !f.no_pipelining {
                    caps.push("PIPELINING".into());
                }
                if self.config.chunking {
                    caps.push("CHUNKING".into());
                }
                if self.config.tls == CaptureTls::StartTls && !self.tls && !f.no_starttls {
                    caps.push("STARTTLS".into());
                }
                let xoauth2 = if self.config.oauth.is_some() {
                    " XOAUTH2"
                } else {
                    ""
                };
                caps.push(format!(
                    "AUTH {}{xoauth2}",
                    f.only_mechanism
                        .clone()
                        .unwrap_or_else(|| "PLAIN LOGIN".into())
                ));
                let n = caps.len();
                caps.iter()
                    .enumerate()
                    .map(|(i, c)| format!("250{}{}\r\n", if i + 1 == n { ' ' } else { '-' }, c))
                    .collect()
            }
            "HELO" => format!("250 {}\r\n", self.config.hostname),
            "STARTTLS" => {
                if self.tls || f.no_starttls || self.config.tls != CaptureTls::StartTls {
                    "502 5.5.1 STARTTLS not available\r\n".into()
                } else {
                    let mut out = b"220 2.0.0 ready to start TLS\r\n".to_vec();
                    if let Some(extra) = &f.starttls_inject {
                        out.extend_from_slice(extra);
                    }
                    if io.write_all(&out).await.is_err() {
                        return Next::Close;
                    }
                    let _ = io.flush().await;
                    return Next::StartTls;
                }
            }
            "AUTH" => return self.auth(line, io).await,
            "MAIL" => {
                lock(&self.rec).mail_commands += 1;
                if self.account.is_none() {
                    "530 5.7.0 authentication required\r\n".into()
                } else if let Some(r) = &f.mail_reply {
                    format!("{r}\r\n")
                } else {
                    self.mail_from = Some(between_brackets(line));
                    self.mail_line = line.to_string();
                    self.rcpts.clear();
                    self.end_chunks();
                    "250 2.1.0 sender ok\r\n".into()
                }
            }
            "RCPT" => {
                self.rcpt_count += 1;
                if f.close_at_rcpt == Some(self.rcpt_count) {
                    return Next::Close;
                }
                if self.mail_from.is_none() {
                    "503 5.5.1 need MAIL\r\n".into()
                } else if let Some((_, r)) = f
                    .refuse_rcpt
                    .as_ref()
                    .filter(|(a, _)| a.eq_ignore_ascii_case(&between_brackets(line)))
                {
                    format!("{r}\r\n")
                } else if let Some(r) = &f.rcpt_reply {
                    format!("{r}\r\n")
                } else {
                    self.rcpts.push(between_brackets(line));
                    "250 2.1.5 recipient ok\r\n".into()
                }
            }
            "DATA" => {
                if self.rcpts.is_empty() {
                    "503 5.5.1 need RCPT\r\n".into()
                } else if let Some(r) = &f.data_reply {
                    format!("{r}\r\n")
                } else {
                    if io.write_all(b"354 go ahead\r\n").await.is_err() {
                        return Next::Close;
                    }
                    return Next::Data;
                }
            }
            "BDAT" => return self.bdat(line, io).await,
            "RSET" => {
                self.mail_from = None;
                self.rcpts.clear();
                self.end_chunks();
                "250 2.0.0 ok\r\n".into()
            }
            "NOOP" => "250 2.0.0 ok\r\n".into(),
            "QUIT" => {
                let _ = io.write_all(b"221 2.0.0 bye\r\n").await;
                return Next::Close;
            }
            _ => "500 5.5.2 unknown command\r\n".into(),
        };
        if envelope && self.config.faults.hold_envelope_replies {
            self.held.push_str(&reply);
            return Next::Continue;
        }
        if io.write_all(reply.as_bytes()).await.is_err() {
            return Next::Close;
        }
        Next::Continue
    }
}

fn between_brackets(line: &str) -> String {
    match (line.find('<'), line.rfind('>')) {
        (Some(a), Some(b)) if b > a => line[a + 1..b].to_string(),
        _ => line.split(':').nth(1).unwrap_or("").trim().to_string(),
    }
}
