//! The app served in-process (issue 23 item 2): the same policy the
//! [`Sidecar`](super::Sidecar) harness writes, built with `smtpbind::build`
//! on port 0 and served with `App::serve` on a runtime of its own, no
//! binary spawned and no stdout scraped. Its log lines go to a
//! `log::Sink::Lines` of its own (the app's `log::Context`), so events are
//! read per app even when tests run in parallel in one process.
//!
//! What stays on the real binary: start-up failures and exit codes, signals,
//! stdout itself (a stalled pipe), memory of the process, and anything read
//! from `/metrics` — the Prometheus recorder is one per process (the
//! `metrics` crate's global), so two apps in one test binary would share it.
//!
//! [`paused`] runs a test on a `current_thread` runtime whose clock starts
//! paused: the capture upstream, the app and the test's own client
//! ([`AsyncRaw`]) all run in it, so the clock only jumps when every task
//! waits, and a timeout cannot fire while a reply is in flight.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{keep_for_scan, tenant_a, PolicySpec, Upstream};
use smtpbind::demo::capture::{CaptureConfig, CaptureServer};

/// Every line one app wrote, shared with its `log::Sink::Lines`.
#[derive(Clone, Default)]
pub struct Lines(pub Arc<Mutex<Vec<String>>>);

impl Lines {
    pub fn sink(&self) -> smtpbind::log::Sink {
        smtpbind::log::Sink::Lines(self.0.clone())
    }

    pub fn all(&self) -> Vec<String> {
        self.0.lock().expect("lines").clone()
    }

    /// Parsed events named `event` (lines are written synchronously, but
    /// some after the reply that ends a step: wait until none came for
    /// 50 ms, at most 2 s, as the sidecar harness does).
    pub fn events(&self, event: &str) -> Vec<serde_json::Value> {
        let start = std::time::Instant::now();
        let mut seen = self.all().len();
        let mut still_since = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(2)
            && still_since.elapsed() < Duration::from_millis(50)
        {
            std::thread::sleep(Duration::from_millis(10));
            let now = self.all().len();
            if now != seen {
                seen = now;
                still_since = std::time::Instant::now();
            }
        }
        self.parsed(event)
    }

    /// Parsed events named `event`, as they are now.
    pub fn parsed(&self, event: &str) -> Vec<serde_json::Value> {
        self.all()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["event"] == event)
            .collect()
    }
}

/// `RunOptions` for the policy at `policy_path`, on port 0, lines to `lines`.
/// The drain is 100 ms: the app stops when the test drops it (a session a
/// failed test left open must not hold the drop for the policy's 20 s);
/// SIGTERM and the drain are tested on the real binary.
pub fn options(policy_path: PathBuf, lines: &Lines) -> smtpbind::RunOptions {
    smtpbind::RunOptions {
        policy_path,
        listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        admin: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        drain: Some(Duration::from_millis(100)),
        pins: None,
        log_sink: lines.sink(),
    }
}

/// The app for tenant A, served on a runtime (two workers, as the binary
/// has on this machine) and a thread of its own until dropped.
pub struct InProc {
    pub smtp: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub policy_path: PathBuf,
    pub secret_dir: PathBuf,
    pub lines: Lines,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<std::thread::JoinHandle<()>>,
}

impl InProc {
    /// As [`Sidecar::start`](super::Sidecar::start): mounted key A, pinned,
    /// `accept: apikey/mounted`, senders `*@acme.example`.
    pub fn start(upstream: &Upstream, configure: impl FnOnce(&mut PolicySpec)) -> InProc {
        Self::start_with_ca(upstream.addr(), &upstream.server.ca_pem, configure)
    }

    pub fn start_with_ca(
        upstream: SocketAddr,
        ca_pem: &str,
        configure: impl FnOnce(&mut PolicySpec),
    ) -> InProc {
        let (dir, policy_path, secret_dir) = tenant_a(upstream, ca_pem, configure);
        Self::spawn(dir, policy_path, secret_dir)
    }

    /// Builds and serves the policy already written at `policy_path`.
    pub fn spawn(dir: tempfile::TempDir, policy_path: PathBuf, secret_dir: PathBuf) -> InProc {
        let lines = Lines::default();
        let opts = options(policy_path.clone(), &lines);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let served = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let app = match smtpbind::build(opts).await {
                    Ok(app) => app,
                    Err(e) => {
                        let _ = bound_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = bound_tx.send(Ok(app.bound));
                app.serve(async {
                    let _ = stopped.await;
                })
                .await
                .expect("serve");
            });
        });
        let bound = bound_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the app was built")
            .unwrap_or_else(|e| panic!("smtpbind::build: {e}"));
        InProc {
            smtp: bound.smtp,
            admin: bound.admin,
            dir,
            policy_path,
            secret_dir,
            lines,
            stop: Some(stop),
            served: Some(served),
        }
    }

    /// Every line the app wrote so far.
    pub fn output(&self) -> Vec<String> {
        self.lines.all()
    }

    /// Parsed events named `event` (see [`Lines::events`]).
    pub fn events(&self, event: &str) -> Vec<serde_json::Value> {
        self.lines.events(event)
    }

    /// The `reason` of every reject event, once there are at least `n`.
    pub fn reject_reasons(&self, n: usize) -> Vec<String> {
        self.wait_for(Duration::from_secs(5), |_| {
            self.lines.parsed("reject").len() >= n
        });
        super::reasons(&self.events("reject"))
    }

    /// Waits until `pred` holds for the output, up to `timeout`.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&[String]) -> bool) -> bool {
        super::poll_until(timeout, || pred(&self.output()))
    }

    pub fn http_get(&self, path: &str) -> (u16, String) {
        super::http_get(self.admin, path)
    }

    /// Asserts that no test secret, raw or base64, appears in the output.
    pub fn assert_no_secrets(&self) {
        super::assert_no_secrets(&self.output().join("\n"));
    }
}

impl Drop for InProc {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            // A test that panicked mid-session leaves it to drain: bounded.
            let _ = served.join();
        }
        keep_for_scan("sidecar-output", "log", &self.output().join("\n"));
    }
}

/// Runs `test` on a `current_thread` runtime whose clock starts paused
/// (see the module's opening comment).
pub fn paused<F: Future<Output = ()>>(test: impl FnOnce() -> F) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime")
        .block_on(test());
}

/// The capture upstream and the app, both served on the caller's runtime
/// (the paused one of [`paused`]); stopped when dropped.
pub struct Served {
    upstream: Option<CaptureServer>,
    pub smtp: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub lines: Lines,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Served {
    /// The capture upstream (default accounts) and tenant A's app in front
    /// of it, on the current runtime.
    pub async fn start(configure: impl FnOnce(&mut PolicySpec)) -> Served {
        Self::start_with(|_| {}, configure).await
    }

    /// [`Served::start`] with the capture upstream configured by `upstream`.
    pub async fn start_with(
        upstream: impl FnOnce(&mut CaptureConfig),
        configure: impl FnOnce(&mut PolicySpec),
    ) -> Served {
        let mut config = CaptureConfig::new(super::accounts());
        upstream(&mut config);
        let server = CaptureServer::start(config)
            .await
            .expect("capture upstream");
        let mut served = Self::start_upstream(server.addr, &server.ca_pem, configure).await;
        served.upstream = Some(server);
        served
    }

    /// Tenant A's app in front of an upstream of the test's own at `addr`
    /// (served on the current runtime too), with `ca_pem` as its CA.
    pub async fn start_upstream(
        addr: SocketAddr,
        ca_pem: &str,
        configure: impl FnOnce(&mut PolicySpec),
    ) -> Served {
        let (dir, policy_path, _secret) = tenant_a(addr, ca_pem, configure);
        let lines = Lines::default();
        let opts = options(policy_path, &lines);
        let app = smtpbind::build(opts).await.expect("build");
        let (smtp, admin) = (app.bound.smtp, app.bound.admin);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = app
                .serve(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Served {
            upstream: None,
            smtp,
            admin,
            dir,
            lines,
            stop: Some(stop),
        }
    }

    /// The capture upstream ([`Served::start`] and [`Served::start_with`]).
    pub fn capture(&self) -> &CaptureServer {
        self.upstream.as_ref().expect("a capture upstream")
    }

    /// Waits (on the paused clock) until the upstream recorded `n` messages, at most 5 s.
    pub async fn messages(&self, n: usize) -> Vec<smtpbind::demo::capture::Captured> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let m = self.capture().messages();
            if m.len() >= n || tokio::time::Instant::now() >= deadline {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The `reason` of every reject event so far.
    pub fn reject_reasons(&self) -> Vec<String> {
        self.lines
            .parsed("reject")
            .iter()
            .map(|e| e["reason"].as_str().unwrap_or("?").to_string())
            .collect()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        keep_for_scan("sidecar-output", "log", &self.lines.all().join("\n"));
    }
}

/// The raw SMTP client of [`Raw`](super::Raw) on tokio, for [`paused`]
/// tests: it runs in the same runtime as the app it talks to.
pub struct AsyncRaw {
    pub stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl AsyncRaw {
    /// Connects and returns the client with the greeting reply.
    pub async fn connect(addr: SocketAddr) -> (AsyncRaw, String) {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // On the paused clock a write held back by Nagle (until the peer's
        // delayed ACK, a kernel timer) would let the clock run meanwhile.
        stream.set_nodelay(true).expect("nodelay");
        let mut raw = AsyncRaw {
            stream,
            buf: Vec::new(),
        };
        let greeting = raw.reply().await;
        (raw, greeting)
    }

    /// Connects, EHLOs and authenticates with `password` as `apikey` (AUTH PLAIN).
    pub async fn authed(addr: SocketAddr, password: &str) -> AsyncRaw {
        let (mut raw, greeting) = AsyncRaw::connect(addr).await;
        assert!(greeting.starts_with("220"), "{greeting}");
        assert!(raw.cmd("EHLO client.test").await.starts_with("250"));
        let reply = raw
            .cmd(&format!("AUTH PLAIN {}", super::plain("apikey", password)))
            .await;
        assert!(reply.starts_with("235"), "{reply}");
        raw
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// One complete reply (all lines); "" on EOF or reset. No timeout of its
    /// own: on the paused clock the session's timers are what end a wait.
    pub async fn reply(&mut self) -> String {
        let mut out = String::new();
        loop {
            if super::take_reply(&mut self.buf, &mut out) {
                return out;
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return out,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    pub async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// True when the server closed the connection (EOF or reset) within
    /// `within` (paused clock); what it still sent is read and dropped.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let mut chunk = [0u8; 64];
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
            }
        }
    }
}

/// [`send_one`](super::send_one) on [`AsyncRaw`]: one message in its own
/// session with `password`; returns the final reply (or the first refusal).
pub async fn send_one(
    addr: SocketAddr,
    user: &str,
    password: &str,
    from: &str,
    body: &str,
) -> String {
    let (mut c, greeting) = AsyncRaw::connect(addr).await;
    if !greeting.starts_with("220") {
        return greeting;
    }
    c.cmd("EHLO x").await;
    let r = c
        .cmd(&format!("AUTH PLAIN {}", super::plain(user, password)))
        .await;
    if !r.starts_with("235") {
        return r;
    }
    for (line, code) in [
        (format!("MAIL FROM:<{from}>"), "250"),
        ("RCPT TO:<customer@example.net>".to_string(), "250"),
        ("DATA".to_string(), "354"),
    ] {
        let r = c.cmd(&line).await;
        if !r.starts_with(code) {
            return r;
        }
    }
    c.send(super::message(from, body).as_bytes()).await;
    let r = c.cmd(".").await;
    c.cmd("QUIT").await;
    r
}
