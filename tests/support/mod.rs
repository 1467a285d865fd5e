//! Test support: a recording upstream (the capture server, real TLS with a
//! generated CA), the real `smtpbind` binary started on port 0 with a policy
//! written per test, and small clients (raw TCP, swaks, curl, Python smtplib).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod idp;
pub mod inproc;

use smtpbind::demo::capture::{Account, CaptureConfig, CaptureServer, Captured};

/// Tenant A's provider key (mounted in the sidecar under test).
pub const KEY_A: &str = "SG.tenantA-9f3c1e7d-secret-key";
/// Tenant B's provider key: same provider, same username `apikey`.
pub const KEY_B: &str = "SG.tenantB-4b2a8c6e-secret-key";
/// Every secret the tests use: none may appear in any output.
pub const SECRETS: &[&str] = &[KEY_A, KEY_B];

pub fn accounts() -> Vec<Account> {
    vec![
        Account {
            name: "tenant-a".into(),
            username: "apikey".into(),
            password: KEY_A.into(),
        },
        Account {
            name: "tenant-b".into(),
            username: "apikey".into(),
            password: KEY_B.into(),
        },
    ]
}

/// The capture upstream on its own runtime.
pub struct Upstream {
    pub server: CaptureServer,
    rt: tokio::runtime::Runtime,
}

impl Upstream {
    pub fn start(configure: impl FnOnce(&mut CaptureConfig)) -> Upstream {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let mut config = CaptureConfig::new(accounts());
        configure(&mut config);
        let server = rt
            .block_on(CaptureServer::start(config))
            .expect("capture upstream");
        Upstream { server, rt }
    }

    pub fn default() -> Upstream {
        Self::start(|_| {})
    }

    pub fn messages(&self) -> Vec<Captured> {
        self.server.messages()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }
}

/// A policy as a YAML tree, edited by dotted path.
pub struct PolicySpec(pub serde_yaml::Value);

impl PolicySpec {
    pub fn set(&mut self, dotted: &str, value: impl Into<serde_yaml::Value>) -> &mut Self {
        let mut node = &mut self.0;
        let parts: Vec<&str> = dotted.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let map = node.as_mapping_mut().expect("mapping");
            let key = serde_yaml::Value::String(part.to_string());
            if i + 1 == parts.len() {
                map.insert(key, value.into());
                return self;
            }
            if !map.contains_key(&key) {
                map.insert(key.clone(), serde_yaml::Value::Mapping(Default::default()));
            }
            node = map.get_mut(&key).expect("just inserted");
        }
        self
    }

    pub fn yaml(&self) -> String {
        serde_yaml::to_string(&self.0).expect("yaml")
    }
}

pub fn yaml_list(items: &[&str]) -> serde_yaml::Value {
    serde_yaml::Value::Sequence(
        items
            .iter()
            .map(|s| serde_yaml::Value::String(s.to_string()))
            .collect(),
    )
}

/// Starts `cmd` (an `smtpbind` serving command), collects its stdout lines
/// and its stderr lines (prefixed `stderr: `), and waits for its
/// `listening` event, returned as text.
pub fn spawn_listening(cmd: &mut Command) -> (Child, Arc<Mutex<Vec<String>>>, String) {
    spawn_listening_gated(cmd, Arc::new(AtomicBool::new(false)))
}

/// [`spawn_listening`] whose stdout reader stops reading while `paused`
/// is set (a stalled log reader: the process's stdout pipe fills up).
pub fn spawn_listening_gated(
    cmd: &mut Command,
    paused: Arc<AtomicBool>,
) -> (Child, Arc<Mutex<Vec<String>>>, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn smtpbind");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = lines.clone();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        loop {
            while paused.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = line.trim_end_matches(['\r', '\n']).to_string();
            if line.contains("\"event\":\"listening\"") {
                let _ = tx.send(line.clone());
            }
            sink.lock().expect("lines").push(line);
        }
    });
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().expect("lines").push(format!("stderr: {line}"));
        }
    });
    let listening = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| {
            panic!("smtpbind did not start: {:?}", lines.lock().expect("lines"));
        });
    (child, lines, listening)
}

/// Writes a Secret directory the way the kubelet lays it out.
pub fn write_secret(dir: &Path, username: &str, password: &str) {
    smtpbind::demo::write_kubelet_secret(dir, username, password).expect("secret dir");
}

pub fn pin(password: &str) -> String {
    smtpbind::policy::Pin::of(password.as_bytes()).to_string()
}

/// The files of a sidecar for tenant A in front of `upstream` (see
/// [`Sidecar::start`]): its directory, policy file and Secret directory.
pub fn tenant_a(
    upstream: SocketAddr,
    ca_pem: &str,
    configure: impl FnOnce(&mut PolicySpec),
) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_dir = dir.path().join("secret");
    write_secret(&secret_dir, "apikey", KEY_A);
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).expect("ca");
    let mut spec = PolicySpec(serde_yaml::Value::Mapping(Default::default()));
    spec.set("version", 1)
        .set("tenant", "acme")
        .set("upstream.address", upstream.to_string())
        .set("upstream.tls", "starttls")
        .set("upstream.ca_file", ca.display().to_string())
        .set("upstream.server_name", "localhost")
        .set("upstream.connect_timeout", "3s")
        .set("upstream.reply_timeout", "5s")
        // No connection ahead of demand, so "nothing reached the
        // upstream" means exactly that (tests/hardening.rs tests prewarm).
        .set("upstream.reuse.prewarm", 0)
        .set("credential.secret_dir", secret_dir.display().to_string())
        .set("credential.pins", yaml_list(&[&pin(KEY_A)]))
        .set("client.auth", "required")
        .set(
            "client.accept",
            serde_yaml::from_str::<serde_yaml::Value>("[{username: apikey, password: mounted}]")
                .expect("yaml"),
        )
        .set("senders", yaml_list(&["*@acme.example", "<>"]))
        .set("header_from", "enforce");
    configure(&mut spec);
    let policy_path = dir.path().join("policy.yaml");
    std::fs::write(&policy_path, spec.yaml()).expect("policy");
    (dir, policy_path, secret_dir)
}

/// The real binary, started on port 0.
pub struct Sidecar {
    pub child: Child,
    pub smtp: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub policy_path: PathBuf,
    pub secret_dir: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
    /// While set, the process's stdout is not read (see [`spawn_listening_gated`]).
    pub stdout_paused: Arc<AtomicBool>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_smtpbind")
}

impl Sidecar {
    /// A sidecar for tenant A in front of `upstream`: mounted key A, pinned,
    /// `accept: apikey/mounted`, senders `*@acme.example`.
    pub fn start(upstream: &Upstream, configure: impl FnOnce(&mut PolicySpec)) -> Sidecar {
        Self::start_with_ca(upstream.addr(), &upstream.server.ca_pem, configure)
    }

    pub fn start_with_ca(
        upstream: SocketAddr,
        ca_pem: &str,
        configure: impl FnOnce(&mut PolicySpec),
    ) -> Sidecar {
        Self::start_wrapped(upstream, ca_pem, configure, |cmd| cmd)
    }

    /// [`Sidecar::start_with_ca`] with the command changed by `wrap` before
    /// it starts (environment, a wrapper program such as `taskset`).
    pub fn start_wrapped(
        upstream: SocketAddr,
        ca_pem: &str,
        configure: impl FnOnce(&mut PolicySpec),
        wrap: impl FnOnce(Command) -> Command,
    ) -> Sidecar {
        let (dir, policy_path, secret_dir) = tenant_a(upstream, ca_pem, configure);
        let cmd = wrap(Self::command(&policy_path, &[]));
        Self::spawn_command(dir, policy_path, secret_dir, cmd)
    }

    /// `smtpbind run` with the policy, on port 0, plus `extra` arguments.
    pub fn command(policy_path: &Path, extra: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.args(["run", "--policy"])
            .arg(policy_path)
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .args(extra);
        cmd
    }

    pub fn spawn(
        dir: tempfile::TempDir,
        policy_path: PathBuf,
        secret_dir: PathBuf,
        extra: &[&str],
    ) -> Sidecar {
        let cmd = Self::command(&policy_path, extra);
        Self::spawn_command(dir, policy_path, secret_dir, cmd)
    }

    /// Starts `cmd` (e.g. [`Sidecar::command`] with a changed environment or
    /// wrapped in another program) and waits for its `listening` event.
    pub fn spawn_command(
        dir: tempfile::TempDir,
        policy_path: PathBuf,
        secret_dir: PathBuf,
        mut cmd: Command,
    ) -> Sidecar {
        let stdout_paused = Arc::new(AtomicBool::new(false));
        let (child, lines, listening) = spawn_listening_gated(&mut cmd, stdout_paused.clone());
        let v: serde_json::Value = serde_json::from_str(&listening).expect("json");
        let smtp = v["addr"].as_str().expect("addr").parse().expect("addr");
        let admin = v["admin"].as_str().expect("admin").parse().expect("admin");
        Sidecar {
            child,
            smtp,
            admin,
            dir,
            policy_path,
            secret_dir,
            lines,
            stdout_paused,
        }
    }

    /// Everything the process printed so far (stdout lines, and stderr lines prefixed).
    pub fn output(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    /// Parsed stdout events named `event`. Logs are written by a thread of
    /// their own, so this first waits until the output has been still for
    /// 50 ms (at most 2 s).
    pub fn events(&self, event: &str) -> Vec<serde_json::Value> {
        let start = Instant::now();
        let mut seen = self.output().len();
        let mut still_since = Instant::now();
        while start.elapsed() < Duration::from_secs(2)
            && still_since.elapsed() < Duration::from_millis(50)
        {
            std::thread::sleep(Duration::from_millis(10));
            let now = self.output().len();
            if now != seen {
                seen = now;
                still_since = Instant::now();
            }
        }
        self.output()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["event"] == event)
            .collect()
    }

    /// The `reason` of every reject event, once there are at least `n` (the
    /// events are read from the process's stdout by a thread).
    pub fn reject_reasons(&self, n: usize) -> Vec<String> {
        self.wait_for(Duration::from_secs(5), |_| self.events("reject").len() >= n);
        reasons(&self.events("reject"))
    }

    /// Waits until `pred` holds for the output, up to `timeout`.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&[String]) -> bool) -> bool {
        poll_until(timeout, || pred(&self.output()))
    }

    pub fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.admin, path)
    }

    /// Peak resident set size of the process (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.child.id(), "VmHWM:")
    }

    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.child.id(), "VmRSS:")
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status();
    }

    /// Asserts that an `upstream_error` line with a `[redacted]` part is
    /// logged within 5 s (an upstream refusal that quoted a secret, scrubbed).
    pub fn assert_scrubbed_upstream_error(&self) {
        assert!(
            self.wait_for(Duration::from_secs(5), |l| l
                .iter()
                .any(|l| l.contains("upstream_error") && l.contains("[redacted]"))),
            "the echoed refusal is logged, scrubbed: {:?}",
            self.output()
        );
    }

    /// Asserts that no test secret, raw or base64, appears in the output.
    pub fn assert_no_secrets(&self) {
        assert_no_secrets(&self.output().join("\n"));
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Keep everything the process printed for the whole-run secret scan
        // (tests/scan_secrets.py, run by tests/run.sh after cargo test).
        keep_for_scan("sidecar-output", "log", &self.output().join("\n"));
    }
}

/// Writes `text` to a new file in `$CARGO_TARGET_TMPDIR/<dir>/` for
/// tests/scan_secrets.py (outputs to scan, or secrets made at run time).
pub fn keep_for_scan(dir: &str, ext: &str, text: &str) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(dir);
    let _ = std::fs::create_dir_all(&dir);
    let name = format!(
        "{}-{}.{ext}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    );
    let _ = std::fs::write(dir.join(name), text);
}

pub fn assert_no_secrets(text: &str) {
    use base64::Engine;
    for secret in SECRETS {
        let b64 = base64::engine::general_purpose::STANDARD;
        let forms = [
            secret.to_string(),
            b64.encode(secret),
            b64.encode(format!("\0apikey\0{secret}")),
            b64.encode(format!("apikey\0apikey\0{secret}")),
        ];
        for form in forms {
            assert!(!text.contains(&form), "secret leaked in output: {form}");
        }
    }
}

pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("admin connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// A raw SMTP client for exact protocol tests.
pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Connects and returns the client with the greeting reply.
    pub fn connect(addr: SocketAddr) -> (Raw, String) {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        let mut raw = Raw {
            stream,
            buf: Vec::new(),
        };
        let greeting = raw.reply();
        (raw, greeting)
    }

    /// Connects, EHLOs and authenticates with `password` as `apikey` (AUTH PLAIN).
    pub fn authed(addr: SocketAddr, password: &str) -> Raw {
        let (mut raw, greeting) = Raw::connect(addr);
        assert!(greeting.starts_with("220"), "{greeting}");
        assert!(raw.cmd("EHLO client.test").starts_with("250"));
        let reply = raw.cmd(&format!("AUTH PLAIN {}", plain("apikey", password)));
        assert!(reply.starts_with("235"), "{reply}");
        raw
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// One complete reply (all lines), e.g. "250-a\r\n250 b\r\n"; "" on EOF.
    pub fn reply(&mut self) -> String {
        let mut out = String::new();
        loop {
            if take_reply(&mut self.buf, &mut out) {
                return out;
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return out,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// True when the server closed the connection (EOF or reset).
    pub fn closed(&mut self) -> bool {
        stream_closed(&mut self.stream)
    }
}

/// True when the peer closed `stream` (EOF or reset) before its read timeout;
/// whatever it still sent is read and dropped.
pub fn stream_closed(stream: &mut TcpStream) -> bool {
    let mut chunk = [0u8; 64];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

pub fn plain(user: &str, pass: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"))
}

/// A small RFC 5322 message from `from`.
pub fn message(from: &str, body: &str) -> String {
    format!("From: {from}\r\nTo: customer@example.net\r\nSubject: test\r\n\r\n{body}\r\n")
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run client")
}

/// swaks against the sidecar; returns (exit ok, transcript).
pub fn swaks(addr: SocketAddr, args: &[&str]) -> (bool, String) {
    let out = run(Command::new("swaks")
        .args(["--server", &addr.to_string(), "--timeout", "20"])
        .args(args));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// swaks from `from` to `to` with AUTH PLAIN as `apikey` / `password`, then
/// `extra` arguments (body, headers); returns (ok, output).
pub fn swaks_plain(
    addr: SocketAddr,
    from: &str,
    to: &str,
    password: &str,
    extra: &[&str],
) -> (bool, String) {
    let mut args = vec![
        "--from",
        from,
        "--to",
        to,
        "--auth",
        "PLAIN",
        "--auth-user",
        "apikey",
        "--auth-password",
        password,
    ];
    args.extend_from_slice(extra);
    swaks(addr, &args)
}

/// Python smtplib script with ADDR/PORT substituted; returns (ok, output).
pub fn python(addr: SocketAddr, script: &str) -> (bool, String) {
    let script = script
        .replace("{HOST}", &addr.ip().to_string())
        .replace("{PORT}", &addr.port().to_string());
    let out = run(Command::new("python3").args(["-c", &script]));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// curl smtp:// with AUTH PLAIN; returns (ok, output).
pub fn curl(
    addr: SocketAddr,
    password: &str,
    from: &str,
    rcpt: &str,
    body: &str,
) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("msg.eml");
    std::fs::write(&file, body).expect("write");
    let out = run(Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "--url",
            &format!("smtp://{addr}"),
        ])
        .args(["--mail-from", from, "--mail-rcpt", rcpt])
        .args([
            "--user",
            &format!("apikey:{password}"),
            "--login-options",
            "AUTH=PLAIN",
        ])
        .arg("-T")
        .arg(&file));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Waits until the upstream recorded `n` messages (or the timeout).
pub fn wait_messages(up: &Upstream, n: usize) -> Vec<Captured> {
    let start = Instant::now();
    loop {
        let m = up.messages();
        if m.len() >= n || start.elapsed() > Duration::from_secs(5) {
            return m;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Rotates a Secret directory exactly as the kubelet does: a new
/// timestamped directory, a `..data_tmp` symlink to it, renamed over `..data`.
pub fn rotate_secret(dir: &Path, username: &str, password: &str) {
    kubelet_swap(
        dir,
        &[
            ("username", username.as_bytes()),
            ("password", password.as_bytes()),
        ],
    );
}

/// Replaces the content of a kubelet-style volume at once (a Secret, a
/// ConfigMap, a `kubernetes.io/tls` mount): a new timestamped directory
/// holding `files`, a `..data_tmp` symlink to it renamed over `..data`, and a
/// `name -> ..data/name` link for each file that has none yet.
pub fn kubelet_swap(dir: &Path, files: &[(&str, &[u8])]) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(10);
    let name = format!(
        "..2026_03_03_00_00_00.{:09}",
        SEQ.fetch_add(1, Ordering::SeqCst)
    );
    let ts = dir.join(&name);
    std::fs::create_dir_all(&ts).expect("mkdir");
    for (file, bytes) in files {
        std::fs::write(ts.join(file), bytes).expect("write");
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&name, &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    for (file, _) in files {
        if std::fs::symlink_metadata(dir.join(file)).is_err() {
            std::os::unix::fs::symlink(format!("..data/{file}"), dir.join(file)).expect("link");
        }
    }
}

/// The value of one Prometheus series (exact label text), 0 if absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Sends one message in its own session with `password`; returns the final reply.
pub fn send_one(addr: SocketAddr, user: &str, password: &str, from: &str, body: &str) -> String {
    let (mut c, greeting) = Raw::connect(addr);
    if !greeting.starts_with("220") {
        return greeting;
    }
    c.cmd("EHLO x");
    let r = c.cmd(&format!("AUTH PLAIN {}", plain(user, password)));
    if !r.starts_with("235") {
        return r;
    }
    let r = c.cmd(&format!("MAIL FROM:<{from}>"));
    if !r.starts_with("250") {
        return r;
    }
    let r = c.cmd("RCPT TO:<customer@example.net>");
    if !r.starts_with("250") {
        return r;
    }
    let r = c.cmd("DATA");
    if !r.starts_with("354") {
        return r;
    }
    c.send(message(from, body).as_bytes());
    let r = c.cmd(".");
    c.cmd("QUIT");
    r
}

/// Moves the complete lines buffered in `buf` to `out` until the last line
/// of a reply (no `-` after the code): true once `out` holds a whole reply.
pub fn take_reply(buf: &mut Vec<u8>, out: &mut String) -> bool {
    while let Some(lf) = buf.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = buf.drain(..=lf).collect();
        let line = String::from_utf8_lossy(&line);
        out.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return true;
        }
    }
    false
}

/// Polls `pred` every 20 ms until it holds, up to `timeout`.
pub fn poll_until(timeout: Duration, pred: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if pred() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The `reason` of each reject event.
pub fn reasons(rejects: &[serde_json::Value]) -> Vec<String> {
    rejects
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or("?").to_string())
        .collect()
}
