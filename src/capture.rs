//! The capture upstream: a small recording SMTP server standing in for a
//! provider like SendGrid. It requires AUTH, offers STARTTLS (or implicit
//! TLS) with a generated certificate, and records for every accepted message
//! which account's credential authenticated the connection — the provider's
//! "activity log" that the 2021 incident polluted.
//!
//! Used by `smtpbind demo`, by `smtpbind capture` (pod simulation, kind
//! harness) and by the integration tests, which also use its fault switches
//! (no STARTTLS, bytes injected after the STARTTLS 220, a dropped handshake,
//! refused commands, a connection dropped mid-DATA) and its `lenient_eod`
//! mode, which ends data at any `<LF|CR>.<LF|CR>` like the receivers that
//! SMTP smuggling exploits, so that a smuggled message would show up here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::certs::Pki;
use crate::smtp::sasl;

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
    pub oauth: Option<crate::issuer::Tokens>,
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
}

/// One AUTH attempt seen by the capture upstream.
#[derive(Debug, Clone)]
pub struct AuthAttempt {
    pub account: Option<String>,
    pub tls: bool,
}

#[derive(Debug, Default)]
struct Record {
    messages: Vec<Captured>,
    auths: Vec<AuthAttempt>,
    connections: usize,
    /// Every byte received outside TLS, all connections.
    plaintext: Vec<u8>,
    seq: u64,
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
    pub fn plaintext_bytes(&self) -> Vec<u8> {
        lock(&self.record).plaintext.clone()
    }
}

fn lock(rec: &Mutex<Record>) -> std::sync::MutexGuard<'_, Record> {
    rec.lock().unwrap_or_else(|p| p.into_inner())
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Conn {
    config: Arc<CaptureConfig>,
    acceptor: TlsAcceptor,
    rec: Arc<Mutex<Record>>,
    buf: Vec<u8>,
    tls: bool,
    account: Option<Account>,
    mail_from: Option<String>,
    mail_line: String,
    rcpts: Vec<String>,
}

enum Next {
    Continue,
    StartTls,
    Data,
    Close,
}

impl Conn {
    fn new(config: Arc<CaptureConfig>, acceptor: TlsAcceptor, rec: Arc<Mutex<Record>>) -> Conn {
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
        }
    }

    async fn run(mut self, stream: Box<dyn Io>) {
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

    async fn read(&mut self, io: &mut Box<dyn Io>) -> bool {
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

    fn next_line(&mut self) -> Option<String> {
        let lf = self.buf.iter().position(|&b| b == b'\n')?;
        let line: Vec<u8> = self.buf.drain(..=lf).collect();
        let line = String::from_utf8_lossy(&line);
        Some(line.trim_end_matches(['\r', '\n']).to_string())
    }

    async fn command(&mut self, line: &str, io: &mut Box<dyn Io>) -> Next {
        let upper = line.to_ascii_uppercase();
        let verb = upper.split_whitespace().next().unwrap_or("");
        let f = &self.config.faults;
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
                if self.account.is_none() {
                    "530 5.7.0 authentication required\r\n".into()
                } else if let Some(r) = &f.mail_reply {
                    format!("{r}\r\n")
                } else {
                    self.mail_from = Some(between_brackets(line));
                    self.mail_line = line.to_string();
                    self.rcpts.clear();
                    "250 2.1.0 sender ok\r\n".into()
                }
            }
            "RCPT" => {
                if self.mail_from.is_none() {
                    "503 5.5.1 need MAIL\r\n".into()
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
            "RSET" => {
                self.mail_from = None;
                self.rcpts.clear();
                "250 2.0.0 ok\r\n".into()
            }
            "NOOP" => "250 2.0.0 ok\r\n".into(),
            "QUIT" => {
                let _ = io.write_all(b"221 2.0.0 bye\r\n").await;
                return Next::Close;
            }
            _ => "500 5.5.2 unknown command\r\n".into(),
        };
        if io.write_all(reply.as_bytes()).await.is_err() {
            return Next::Close;
        }
        Next::Continue
    }

    async fn auth(&mut self, line: &str, io: &mut Box<dyn Io>) -> Next {
        let mut parts = line.split_whitespace().skip(1);
        let mech = parts.next().unwrap_or("").to_ascii_uppercase();
        let initial = parts.next().map(str::to_string);
        let identity = match mech.as_str() {
            "PLAIN" => {
                let resp = match initial {
                    Some(r) => r,
                    None => match self.challenge("334 \r\n", io).await {
                        Some(r) => r,
                        None => return Next::Close,
                    },
                };
                sasl::decode_plain(&resp)
                    .ok()
                    .map(|i| (i.username, i.password.to_string()))
            }
            "LOGIN" => {
                let user = match self.challenge("334 VXNlcm5hbWU6\r\n", io).await {
                    Some(r) => r,
                    None => return Next::Close,
                };
                let pass = match self.challenge("334 UGFzc3dvcmQ6\r\n", io).await {
                    Some(r) => r,
                    None => return Next::Close,
                };
                match (
                    sasl::decode_login_field(&user),
                    sasl::decode_login_field(&pass),
                ) {
                    (Ok(u), Ok(p)) => Some((u.to_string(), p.to_string())),
                    _ => None,
                }
            }
            "XOAUTH2" if self.config.oauth.is_some() => {
                return self.xoauth2(initial, io).await;
            }
            _ => {
                let _ = io.write_all(b"504 5.5.4 mechanism not supported\r\n").await;
                return Next::Continue;
            }
        };
        let account = identity.and_then(|(u, p)| {
            self.config
                .accounts
                .iter()
                .find(|a| a.username == u && a.password == p)
                .cloned()
        });
        lock(&self.rec).auths.push(AuthAttempt {
            account: account.as_ref().map(|a| a.name.clone()),
            tls: self.tls,
        });
        let reply: &[u8] = if account.is_some() {
            self.account = account;
            b"235 2.7.0 authenticated\r\n"
        } else {
            b"535 5.7.8 bad credentials\r\n"
        };
        if io.write_all(reply).await.is_err() {
            return Next::Close;
        }
        Next::Continue
    }

    /// `AUTH XOAUTH2`: the bearer token must be live at the issuer (and,
    /// for a jwt_bearer token, issued for this `user=`). A refusal is the
    /// providers' error challenge, then `535` after the client's empty line.
    async fn xoauth2(&mut self, initial: Option<String>, io: &mut Box<dyn Io>) -> Next {
        let resp = match initial {
            Some(r) => r,
            None => match self.challenge("334 \r\n", io).await {
                Some(r) => r,
                None => return Next::Close,
            },
        };
        let account = match &self.config.oauth {
            Some(tokens) if !self.config.faults.reject_xoauth2 => tokens.check_xoauth2(&resp),
            _ => None,
        }
        .map(|(name, user)| Account {
            name,
            username: user,
            password: String::new(),
        });
        lock(&self.rec).auths.push(AuthAttempt {
            account: account.as_ref().map(|a| a.name.clone()),
            tls: self.tls,
        });
        if account.is_some() {
            self.account = account;
            return match io.write_all(b"235 2.7.0 Accepted\r\n").await {
                Ok(()) => Next::Continue,
                Err(_) => Next::Close,
            };
        }
        let error = crate::issuer::XOAUTH2_ERROR_CHALLENGE;
        if self
            .challenge(&format!("334 {error}\r\n"), io)
            .await
            .is_none()
        {
            return Next::Close;
        }
        match io
            .write_all(b"535 5.7.8 Username and Password not accepted\r\n")
            .await
        {
            Ok(()) => Next::Continue,
            Err(_) => Next::Close,
        }
    }

    async fn challenge(&mut self, prompt: &str, io: &mut Box<dyn Io>) -> Option<String> {
        io.write_all(prompt.as_bytes()).await.ok()?;
        loop {
            if let Some(line) = self.next_line() {
                return Some(line);
            }
            if !self.read(io).await {
                return None;
            }
        }
    }

    /// Receives one message; false when the connection should close.
    async fn data(&mut self, io: &mut Box<dyn Io>) -> bool {
        let mut data: Vec<u8> = std::mem::take(&mut self.buf);
        // Where to resume scanning for the end (the end sequence is at most
        // 5 bytes, so back up that far into what was already scanned).
        let mut scanned = 0usize;
        loop {
            if let Some(limit) = self.config.faults.drop_after_data_bytes {
                if data.len() >= limit {
                    return false;
                }
            }
            let from = scanned.saturating_sub(5);
            if let Some((body_end, rest_start)) =
                find_end(&data[from..], from == 0, self.config.lenient_eod)
            {
                self.buf = data.split_off(from + rest_start);
                data.truncate(from + body_end);
                break;
            }
            scanned = data.len();
            let mut chunk = [0u8; 16384];
            match io.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => {
                    if !self.tls {
                        lock(&self.rec).plaintext.extend_from_slice(&chunk[..n]);
                    }
                    data.extend_from_slice(&chunk[..n]);
                }
            }
        }
        let data = unstuff(&data, self.config.lenient_eod);
        let reply = if let Some(r) = &self.config.faults.eod_reply {
            format!("{r}\r\n")
        } else {
            let (queue_id, account) = {
                let mut rec = lock(&self.rec);
                rec.seq += 1;
                (format!("CAP{:06}", rec.seq), self.account.clone())
            };
            let Some(account) = account else { return false };
            let msg = Captured {
                account: account.name.clone(),
                username: account.username.clone(),
                mail_from: self.mail_from.clone().unwrap_or_default(),
                mail_line: self.mail_line.clone(),
                rcpt_to: self.rcpts.clone(),
                bytes: data.len(),
                data,
                queue_id: queue_id.clone(),
                tls: self.tls,
            };
            self.log(&msg);
            lock(&self.rec).messages.push(msg);
            format!("250 2.0.0 Ok: queued as {queue_id}\r\n")
        };
        self.mail_from = None;
        self.rcpts.clear();
        io.write_all(reply.as_bytes()).await.is_ok()
    }

    fn log(&self, msg: &Captured) {
        // The provider's activity log: no tenant label, it is the upstream's view.
        let line = json!({
            "ts": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            "event": "captured",
            "account": msg.account, "username": msg.username, "mail_from": msg.mail_from,
            "rcpt_to": msg.rcpt_to, "bytes": msg.bytes, "queue_id": msg.queue_id, "tls": msg.tls,
        })
        .to_string();
        println!("{line}");
        if let Some(dir) = &self.config.log_dir {
            use std::io::Write;
            let path = dir.join(format!("{}.jsonl", msg.account));
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                // One write per record: concurrent connections append to the
                // same file, and `writeln!` would write the line and its end
                // separately (two records could then share one line).
                let _ = f.write_all(format!("{line}\n").as_bytes());
            }
        }
    }
}

fn between_brackets(line: &str) -> String {
    match (line.find('<'), line.rfind('>')) {
        (Some(a), Some(b)) if b > a => line[a + 1..b].to_string(),
        _ => line.split(':').nth(1).unwrap_or("").trim().to_string(),
    }
}

fn is_break(b: u8) -> bool {
    b == b'\r' || b == b'\n'
}

/// Finds the end of data: returns (end of message content, start of what follows).
/// Strict: `CRLF.CRLF` (or `.CRLF` at the start). Lenient: any `<CR|LF>.<CR|LF>`.
/// `at_start`: `data` begins at the start of the message.
fn find_end(data: &[u8], at_start: bool, lenient: bool) -> Option<(usize, usize)> {
    if !lenient {
        if at_start && data.starts_with(b".\r\n") {
            return Some((0, 3));
        }
        let pos = data.windows(5).position(|w| w == b"\r\n.\r\n")?;
        return Some((pos + 2, pos + 5));
    }
    for i in 0..data.len() {
        if data[i] != b'.' {
            continue;
        }
        let at_line_start = if i == 0 {
            at_start
        } else {
            is_break(data[i - 1])
        };
        let next = data.get(i + 1).copied();
        if at_line_start && next.is_some_and(is_break) {
            let mut rest = i + 2;
            if next == Some(b'\r') && data.get(i + 2) == Some(&b'\n') {
                rest = i + 3;
            }
            return Some((i, rest));
        }
    }
    None
}

/// Removes dot-stuffing (lines split on CRLF, or on any break when lenient).
fn unstuff(data: &[u8], lenient: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut at_start = true;
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        if at_start && b == b'.' {
            i += 1;
            at_start = false;
            continue;
        }
        out.push(b);
        at_start = if lenient {
            is_break(b)
        } else {
            b == b'\n' && i > 0 && data[i - 1] == b'\r'
        };
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_and_lenient_end_of_data() {
        assert_eq!(find_end(b"a\r\n.\r\nMAIL", true, false), Some((3, 6)));
        assert_eq!(find_end(b"a\n.\nMAIL", true, false), None);
        assert_eq!(find_end(b"a\n.\nMAIL", true, true), Some((2, 4)));
        assert_eq!(find_end(b"a\r.\rMAIL", true, true), Some((2, 4)));
        assert_eq!(find_end(b".\r\n", true, false), Some((0, 3)));
        assert_eq!(find_end(b".\r\n", false, false), None);
    }

    #[test]
    fn unstuffing() {
        assert_eq!(unstuff(b"..a\r\n..b\r\n", false), b".a\r\n.b\r\n");
    }
}
