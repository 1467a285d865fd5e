//! TLS toward the mailer (contract §11, issue 13): STARTTLS and the
//! implicit-TLS listener against the real binary, with real clients
//! (swaks, curl, Python smtplib) verifying the pod-local CA written by
//! `smtpbind tls-init`; the RFC 3207 restart; `starttls: require`; bounded
//! and broken handshakes; certificate rotation under load.
//!
//! The session-level tests (STARTTLS and implicit TLS with a rustls client,
//! the RFC 3207 restart, `require`, bounded and broken handshakes) run
//! in-process (`support::inproc`). On the real binary: the real clients,
//! a pair missing at start (exit code), and the rotation tests that read
//! `/metrics` (one recorder per process).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use support::inproc::InProc;
use support::*;

/// A `kubernetes.io/tls`-style directory written by `smtpbind tls-init`.
fn tls_init(dir: &Path, names: &[&str]) {
    let mut cmd = std::process::Command::new(bin());
    cmd.arg("tls-init").arg("--dir").arg(dir).arg("--force");
    for n in names {
        cmd.args(["--name", n]);
    }
    let out = cmd.output().expect("tls-init");
    assert!(out.status.success(), "{out:?}");
}

struct Tls {
    dir: tempfile::TempDir,
}

impl Tls {
    fn new() -> Tls {
        let dir = tempfile::tempdir().expect("tempdir");
        tls_init(dir.path(), &["smtp.provider.test"]);
        Tls { dir }
    }
    fn cert_dir(&self) -> String {
        self.dir.path().display().to_string()
    }
    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }
}

/// `client.tls` with the pair in `tls`, `starttls: MODE` and an implicit
/// listener on port 0, then `configure`.
fn tls_policy(
    tls: &Tls,
    mode: &str,
    configure: impl FnOnce(&mut PolicySpec),
) -> impl FnOnce(&mut PolicySpec) {
    let (dir, mode) = (tls.cert_dir(), mode.to_string());
    move |p| {
        p.set("client.tls.cert_dir", dir)
            .set("client.tls.starttls", mode)
            .set("client.tls.implicit_listen", "127.0.0.1:0");
        configure(p);
    }
}

/// The real binary with [`tls_policy`].
fn sidecar(
    up: &Upstream,
    tls: &Tls,
    mode: &str,
    configure: impl FnOnce(&mut PolicySpec),
) -> Sidecar {
    Sidecar::start(up, tls_policy(tls, mode, configure))
}

/// The app in-process with [`tls_policy`].
fn in_process(
    up: &Upstream,
    tls: &Tls,
    mode: &str,
    configure: impl FnOnce(&mut PolicySpec),
) -> InProc {
    InProc::start(up, tls_policy(tls, mode, configure))
}

/// The implicit-TLS listener's address, from the `listening` event
/// (`listening`: the events of that name).
fn implicit_addr(listening: &[serde_json::Value]) -> SocketAddr {
    let ev = &listening[0];
    let l = ev["listeners"]
        .as_array()
        .expect("listeners")
        .iter()
        .find(|l| {
            l["tls"] == "implicit" && l["listen"].as_str().is_some_and(|a| a.starts_with("127."))
        })
        .expect("an implicit listener");
    l["listen"]
        .as_str()
        .expect("listen")
        .parse()
        .expect("listen")
}

fn client_config(cas: &[&Path]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        let pem = std::fs::read(ca).expect("ca");
        for cert in rustls_pemfile_certs(&pem) {
            roots.add(cert).expect("root");
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .expect("pem")
}

/// A line-level SMTP client over any stream; reads one byte at a time so
/// that nothing after a reply is consumed (the STARTTLS tests need that).
struct Client<S: Read + Write> {
    s: S,
}

impl<S: Read + Write> Client<S> {
    fn reply(&mut self) -> String {
        let mut out = String::new();
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        loop {
            match self.s.read(&mut b) {
                Ok(1) => line.push(b[0]),
                _ => return out + &String::from_utf8_lossy(&line),
            }
            if b[0] == b'\n' {
                let text = String::from_utf8_lossy(&line).to_string();
                out.push_str(&text);
                line.clear();
                if text.as_bytes().get(3) != Some(&b'-') {
                    return out;
                }
            }
        }
    }
    fn cmd(&mut self, line: &str) -> String {
        self.s
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("write");
        self.s.flush().expect("flush");
        self.reply()
    }
    fn send_message(&mut self, from: &str, rcpt: &str) -> String {
        for (c, want) in [
            (format!("MAIL FROM:<{from}>"), "250"),
            (format!("RCPT TO:<{rcpt}>"), "250"),
            ("DATA".to_string(), "354"),
        ] {
            let r = self.cmd(&c);
            if !r.starts_with(want) {
                return r;
            }
        }
        self.s
            .write_all(message(from, "hello").as_bytes())
            .expect("write");
        self.cmd(".")
    }
}

type TlsClient = Client<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>;

fn connect(addr: SocketAddr) -> Client<TcpStream> {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    Client { s }
}

/// TLS on `tcp` with SNI `name`; completes the handshake (panics if it fails).
fn tls_on(tcp: TcpStream, cas: &[&Path], name: &str) -> TlsClient {
    let conn = rustls::ClientConnection::new(
        client_config(cas),
        ServerName::try_from(name.to_string()).expect("name"),
    )
    .expect("client");
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).expect("handshake");
    }
    Client { s }
}

/// EHLO, STARTTLS, TLS, EHLO again: the client ready for AUTH.
fn starttls(addr: SocketAddr, ca: &Path) -> TlsClient {
    let mut c = connect(addr);
    assert!(c.reply().starts_with("220"));
    let ehlo = c.cmd("EHLO client.test");
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(c.cmd("STARTTLS").starts_with("220 2.0.0"));
    let mut t = tls_on(c.s, &[ca], "localhost");
    let ehlo = t.cmd("EHLO client.test");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    t
}

/// [`starttls`], then AUTH as tenant A.
fn authed(addr: SocketAddr, ca: &Path) -> TlsClient {
    let mut t = starttls(addr, ca);
    let r = t.cmd(&format!("AUTH PLAIN {}", plain("apikey", KEY_A)));
    assert!(r.starts_with("235"), "{r}");
    t
}

#[test]
fn starttls_and_implicit_tls_relay_under_the_pod_account_with_sni_logged() {
    let up = Upstream::default();
    let tls = Tls::new();
    let sc = in_process(&up, &tls, "offer", |_| {});
    let ehlo = {
        let mut c = connect(sc.smtp);
        c.reply();
        c.cmd("EHLO x")
    };
    assert!(
        ehlo.contains("STARTTLS") && ehlo.contains("AUTH PLAIN LOGIN"),
        "offer: {ehlo}"
    );

    let mut t = authed(sc.smtp, &tls.ca());
    let r = t.send_message("billing@acme.example", "one@example.net");
    assert!(r.starts_with("250"), "{r}");

    let tcp = TcpStream::connect(implicit_addr(&sc.events("listening"))).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let mut i = tls_on(tcp, &[&tls.ca()], "smtp.provider.test");
    assert!(i.reply().starts_with("220"));
    let ehlo = i.cmd("EHLO x");
    assert!(
        !ehlo.contains("STARTTLS") && ehlo.contains("AUTH"),
        "{ehlo}"
    );
    assert!(i
        .cmd(&format!("AUTH PLAIN {}", plain("apikey", KEY_A)))
        .starts_with("235"));
    let r = i.send_message("billing@acme.example", "two@example.net");
    assert!(r.starts_with("250"), "{r}");

    let msgs = wait_messages(&up, 2);
    assert_eq!(msgs.len(), 2);
    assert!(msgs.iter().all(|m| m.account == "tenant-a" && m.tls));
    let events = sc.events("message");
    let sni: Vec<&serde_json::Value> = events.iter().map(|e| &e["client_sni"]).collect();
    assert_eq!(
        sni,
        [
            &serde_json::json!("localhost"),
            &serde_json::json!("smtp.provider.test")
        ]
    );
    sc.assert_no_secrets();
}

/// A sidecar with `starttls: MODE` and a plain session to it after EHLO
/// (and the EHLO reply).
fn greeted(mode: &str) -> (Upstream, Tls, InProc, Client<TcpStream>, String) {
    let up = Upstream::default();
    let tls = Tls::new();
    let sc = in_process(&up, &tls, mode, |_| {});
    let mut c = connect(sc.smtp);
    c.reply();
    let ehlo = c.cmd("EHLO client.test");
    (up, tls, sc, c, ehlo)
}

#[test]
fn bytes_pipelined_after_starttls_are_discarded_and_the_session_restarts() {
    let (up, tls, _sc, mut c, _) = greeted("offer");
    // Bound in plain text first: the binding must not survive the restart.
    assert!(c
        .cmd(&format!("AUTH PLAIN {}", plain("apikey", KEY_A)))
        .starts_with("235"));
    // One packet: STARTTLS plus commands an attacker injected after it.
    c.s.write_all(
        b"STARTTLS\r\nRSET\r\nMAIL FROM:<billing@acme.example>\r\nRCPT TO:<x@example.net>\r\n",
    )
    .expect("write");
    assert_eq!(c.reply(), "220 2.0.0 ready to start TLS\r\n");
    // Had RSET or MAIL run, their plain-text replies would break the handshake.
    let mut t = tls_on(c.s, &[&tls.ca()], "localhost");
    // No EHLO yet over TLS: the pre-TLS EHLO is forgotten, the injected MAIL never ran.
    assert!(t
        .cmd("MAIL FROM:<billing@acme.example>")
        .starts_with("503 5.5.1"));
    t.cmd("EHLO again");
    // The pre-TLS AUTH is forgotten too.
    assert!(t.cmd("MAIL FROM:<billing@acme.example>").starts_with("530"));
    assert!(t
        .cmd("STARTTLS")
        .starts_with("503 5.5.1 TLS already active"));
    assert!(t.cmd("QUIT").starts_with("221"));
    std::thread::sleep(Duration::from_millis(200));
    assert!(up.messages().is_empty());
    assert_eq!(up.server.connections(), 0, "no MAIL ran");
}

#[test]
fn require_answers_only_the_allowed_verbs_before_tls_and_sends_nothing_upstream() {
    let (up, tls, sc, mut c, ehlo) = greeted("require");
    assert!(
        ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    for cmd in [
        format!("AUTH PLAIN {}", plain("apikey", KEY_A)),
        "MAIL FROM:<billing@acme.example>".to_string(),
        "RCPT TO:<x@example.net>".to_string(),
        "DATA".to_string(),
        "VRFY x".to_string(),
    ] {
        let r = c.cmd(&cmd);
        assert!(r.starts_with("530 5.7.0"), "{cmd}: {r}");
    }
    for cmd in ["NOOP", "RSET", "HELO x"] {
        assert!(c.cmd(cmd).starts_with("250"), "{cmd}");
    }
    assert!(c.cmd("QUIT").starts_with("221"));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(up.server.connections(), 0, "nothing upstream before TLS");

    let mut t = authed(sc.smtp, &tls.ca());
    assert!(t
        .send_message("billing@acme.example", "x@example.net")
        .starts_with("250"));
    assert_eq!(wait_messages(&up, 1).len(), 1);
    sc.assert_no_secrets();
}

/// True when the server closes `s` within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).expect("timeout");
    let start = Instant::now();
    stream_closed(s) && start.elapsed() <= within + Duration::from_millis(500)
}

#[test]
fn stalled_and_garbage_handshakes_end_the_session_and_the_sidecar_goes_on() {
    let up = Upstream::default();
    let tls = Tls::new();
    let sc = in_process(&up, &tls, "offer", |p| {
        p.set("limits.command_timeout", "1s");
    });
    let after_starttls = || {
        let mut c = connect(sc.smtp);
        c.reply();
        c.cmd("EHLO x");
        assert!(c.cmd("STARTTLS").starts_with("220"));
        c.s
    };
    // Never sends a ClientHello: cut off by command_timeout.
    let mut s = after_starttls();
    assert!(
        closed_within(&mut s, Duration::from_secs(4)),
        "stalled STARTTLS handshake"
    );
    let mut s = TcpStream::connect(implicit_addr(&sc.events("listening"))).expect("connect");
    assert!(
        closed_within(&mut s, Duration::from_secs(4)),
        "stalled implicit handshake"
    );
    // Half a ClientHello, then nothing.
    let mut s = TcpStream::connect(implicit_addr(&sc.events("listening"))).expect("connect");
    s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .expect("write");
    assert!(
        closed_within(&mut s, Duration::from_secs(4)),
        "partial ClientHello"
    );
    // Garbage instead of a ClientHello.
    let mut s = after_starttls();
    s.write_all(b"MAIL FROM:<billing@acme.example>\r\nthis is not TLS\r\n\r\n")
        .expect("write");
    assert!(
        closed_within(&mut s, Duration::from_secs(4)),
        "garbage after STARTTLS"
    );
    let mut s = TcpStream::connect(implicit_addr(&sc.events("listening"))).expect("connect");
    s.write_all(b"EHLO x\r\n").expect("write");
    assert!(
        closed_within(&mut s, Duration::from_secs(4)),
        "plain text on the implicit listener"
    );

    let warnings = sc.events("client_tls_handshake");
    assert!(warnings.len() >= 5, "{warnings:?}");
    let mut t = authed(sc.smtp, &tls.ca());
    assert!(t
        .send_message("billing@acme.example", "x@example.net")
        .starts_with("250"));
    assert_eq!(up.messages().len(), 1);
    assert!(up.messages().iter().all(|m| m.rcpt_to == ["x@example.net"]));
}

/// A cert_dir laid out as the kubelet mounts a `kubernetes.io/tls` Secret,
/// with key files mode 0644 as the kubelet writes them.
fn kubelet_tls_dir(dir: &Path, from: &Path, seq: u32) {
    use std::os::unix::fs::PermissionsExt;
    let name = format!("..2026_11_30_00_00_00.{seq:09}");
    let ts = dir.join(&name);
    std::fs::create_dir_all(&ts).expect("mkdir");
    // A file missing from `from` is missing from the swapped version too.
    for f in ["tls.crt", "tls.key"]
        .into_iter()
        .filter(|f| from.join(f).exists())
    {
        std::fs::copy(from.join(f), ts.join(f)).expect("copy");
        std::fs::set_permissions(ts.join(f), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&name, &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    for f in ["tls.crt", "tls.key"] {
        if std::fs::symlink_metadata(dir.join(f)).is_err() {
            std::os::unix::fs::symlink(format!("..data/{f}"), dir.join(f)).expect("link");
        }
    }
}

/// A sidecar serving client TLS from a kubelet-style mount (`mount`) that
/// holds pair `a` as its first revision; `b` is a second pair to swap in.
struct Mounted {
    up: Upstream,
    a: Tls,
    b: Tls,
    mount: tempfile::TempDir,
    sc: Sidecar,
}

impl Mounted {
    fn start() -> Mounted {
        let up = Upstream::default();
        let (a, b) = (Tls::new(), Tls::new());
        let mount = tempfile::tempdir().expect("tempdir");
        kubelet_tls_dir(mount.path(), a.dir.path(), 1);
        let sc = Sidecar::start(&up, |p| {
            p.set("client.tls.cert_dir", mount.path().display().to_string());
        });
        Mounted {
            up,
            a,
            b,
            mount,
            sc,
        }
    }
}

fn served_cert(addr: SocketAddr, cas: &[&Path]) -> Vec<u8> {
    let mut c = connect(addr);
    c.reply();
    c.cmd("EHLO x");
    c.cmd("STARTTLS");
    let t = tls_on(c.s, cas, "localhost");
    t.s.conn.peer_certificates().expect("certs")[0].to_vec()
}

#[test]
fn certificate_rotation_under_load_fails_no_session_and_a_bad_pair_is_refused() {
    let Mounted {
        up,
        a,
        b,
        mount,
        sc,
    } = Mounted::start();
    let (ca_a, ca_b) = (a.ca(), b.ca());
    let cert_a = served_cert(sc.smtp, &[&ca_a]);

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (stop, addr, cas) = (stop.clone(), sc.smtp, [ca_a.clone(), ca_b.clone()]);
            std::thread::spawn(move || {
                let mut results = Vec::new();
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) || n < 3 {
                    let mut c = connect(addr);
                    c.reply();
                    c.cmd("EHLO x");
                    c.cmd("STARTTLS");
                    let mut t = tls_on(c.s, &[&cas[0], &cas[1]], "localhost");
                    t.cmd("EHLO x");
                    t.cmd(&format!("AUTH PLAIN {}", plain("apikey", KEY_A)));
                    results.push(
                        t.send_message("billing@acme.example", &format!("w{w}-{n}@example.net")),
                    );
                    t.cmd("QUIT");
                    n += 1;
                }
                results
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    kubelet_tls_dir(mount.path(), b.dir.path(), 2);
    assert!(
        sc.wait_for(Duration::from_secs(5), |l| l.iter().any(|l| l
            .contains("\"event\":\"client_tls\"")
            && l.contains("\"result\":\"ok\""))),
        "the swapped pair is loaded"
    );
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let results: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker"))
        .collect();
    assert!(results.len() >= 12);
    assert!(results.iter().all(|r| r.starts_with("250")), "{results:?}");
    assert_eq!(wait_messages(&up, results.len()).len(), results.len());
    let cert_b = served_cert(sc.smtp, &[&ca_b]);
    assert_ne!(cert_a, cert_b);

    // A mismatched pair (B's certificate, A's key) is refused; B stays.
    let broken = tempfile::tempdir().expect("tempdir");
    std::fs::copy(b.dir.path().join("tls.crt"), broken.path().join("tls.crt")).expect("copy");
    std::fs::copy(a.dir.path().join("tls.key"), broken.path().join("tls.key")).expect("copy");
    kubelet_tls_dir(mount.path(), broken.path(), 3);
    assert!(
        sc.wait_for(Duration::from_secs(5), |l| l.iter().any(|l| l
            .contains("\"event\":\"client_tls\"")
            && l.contains("\"result\":\"error\""))),
        "the broken pair is refused with an error event"
    );
    assert_eq!(served_cert(sc.smtp, &[&ca_b]), cert_b);
    let (_, metrics) = sc.http_get("/metrics");
    assert_eq!(
        metric(
            &metrics,
            "smtpbind_client_tls_reloads_total{tenant=\"acme\",result=\"error\"}"
        ),
        1.0,
        "{metrics}"
    );
}

#[test]
fn a_missing_pair_fails_start_and_check_credentials() {
    let up = Upstream::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("none");
    let mut spec = PolicySpec(serde_yaml::Value::Mapping(Default::default()));
    let secret = dir.path().join("secret");
    write_secret(&secret, "apikey", KEY_A);
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &up.server.ca_pem).expect("ca");
    spec.set("version", 1)
        .set("tenant", "acme")
        .set("upstream.address", up.addr().to_string())
        .set("upstream.ca_file", ca.display().to_string())
        .set("credential.secret_dir", secret.display().to_string())
        .set("credential.pins", yaml_list(&[&pin(KEY_A)]))
        .set("client.auth", "none")
        .set("client.tls.cert_dir", empty.display().to_string())
        .set("senders", yaml_list(&["*@acme.example"]));
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, spec.yaml()).expect("policy");
    let out = Sidecar::command(&path, &[]).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let check = std::process::Command::new(bin())
        .args(["check", "--credentials"])
        .arg(&path)
        .output()
        .expect("check");
    assert_eq!(check.status.code(), Some(1), "{check:?}");
    assert!(String::from_utf8_lossy(&check.stderr).contains("client.tls.cert_dir: "));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("client.tls:"),
        "{out:?}"
    );
}

#[test]
fn real_clients_verify_the_pod_local_ca() {
    let up = Upstream::default();
    let tls = Tls::new();
    let sc = sidecar(&up, &tls, "require", |_| {});
    let implicit = implicit_addr(&sc.events("listening"));
    let ca = tls.ca().display().to_string();
    for (addr, mode, rcpt) in [
        (sc.smtp, "--tls", "swaks-starttls@example.net"),
        (implicit, "--tls-on-connect", "swaks-smtps@example.net"),
    ] {
        let (ok, out) = swaks(
            addr,
            &[
                mode,
                "--tls-verify",
                "--tls-ca-path",
                &ca,
                "--auth",
                "PLAIN",
            ]
            .into_iter()
            .chain(["--auth-user", "apikey", "--auth-password", KEY_A])
            .chain(["--from", "billing@acme.example", "--to", rcpt])
            .collect::<Vec<_>>(),
        );
        assert!(ok, "swaks {mode}: {out}");
    }

    let body = message("billing@acme.example", "curl");
    let file = tls.dir.path().join("msg.eml");
    std::fs::write(&file, body).expect("msg");
    for (url, rcpt) in [
        (format!("smtp://{}", sc.smtp), "curl-starttls@example.net"),
        (format!("smtps://{implicit}"), "curl-smtps@example.net"),
    ] {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "20",
                "--ssl-reqd",
                "--cacert",
                &ca,
                "--url",
                &url,
            ])
            .args(["--mail-from", "billing@acme.example", "--mail-rcpt", rcpt])
            .args([
                "--user",
                &format!("apikey:{KEY_A}"),
                "--login-options",
                "AUTH=PLAIN",
                "-T",
            ])
            .arg(&file)
            .output()
            .expect("curl");
        assert!(out.status.success(), "curl {url}: {out:?}");
    }

    let script = format!(
        r#"
import smtplib, ssl
ctx = ssl.create_default_context(cafile={ca:?})
s = smtplib.SMTP("{{HOST}}", {{PORT}}, timeout=20)
s.starttls(context=ctx)
s.login("apikey", open({key:?}).read())
s.sendmail("billing@acme.example", ["py-starttls@example.net"], "From: billing@acme.example\r\nSubject: t\r\n\r\nhi\r\n")
s.quit()
s = smtplib.SMTP_SSL("localhost", {port}, context=ctx, timeout=20)
s.login("apikey", open({key:?}).read())
s.sendmail("billing@acme.example", ["py-smtps@example.net"], "From: billing@acme.example\r\nSubject: t\r\n\r\nhi\r\n")
s.quit()
"#,
        key = sc.secret_dir.join("password").display().to_string(),
        port = implicit.port(),
    );
    let (ok, out) = python(sc.smtp, &script);
    assert!(ok, "python: {out}");

    let msgs = wait_messages(&up, 6);
    let mut rcpts: Vec<String> = msgs.iter().flat_map(|m| m.rcpt_to.clone()).collect();
    rcpts.sort();
    assert_eq!(
        rcpts,
        [
            "curl-smtps@example.net",
            "curl-starttls@example.net",
            "py-smtps@example.net",
            "py-starttls@example.net",
            "swaks-smtps@example.net",
            "swaks-starttls@example.net"
        ]
    );
    assert!(msgs.iter().all(|m| m.account == "tenant-a"));
    sc.assert_no_secrets();
}

/// A self-signed pair for localhost valid from `not_before` to `not_after`
/// (year, month, day), written to `dir`.
fn dated_pair(dir: &Path, not_before: (i32, u8, u8), not_after: (i32, u8, u8)) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let cert = params.self_signed(&key).expect("cert");
    std::fs::write(dir.join("tls.crt"), cert.pem()).expect("crt");
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).expect("key");
}

/// Contract §11 (issue 19 item 3): a swap that leaves a file out, pairs a
/// key with another certificate, or brings an expired or not yet valid
/// certificate is refused with an error event and a `result="error"`
/// reload count each; the last good pair keeps being served.
#[test]
fn broken_swaps_are_refused_loudly_and_the_last_good_pair_stays() {
    let Mounted {
        up: _up,
        a,
        b,
        mount,
        sc,
    } = Mounted::start();
    let ca_a = a.ca();
    let cert_a = served_cert(sc.smtp, &[&ca_a]);
    let errors = || {
        sc.output()
            .iter()
            .filter(|l| {
                l.contains("\"event\":\"client_tls\"") && l.contains("\"result\":\"error\"")
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    let cases: Vec<(&str, tempfile::TempDir)> = vec![
        ("tls.key: cannot read", {
            let d = tempfile::tempdir().expect("tempdir");
            std::fs::copy(b.dir.path().join("tls.crt"), d.path().join("tls.crt")).expect("copy");
            d
        }),
        ("tls.key does not belong to tls.crt", {
            let d = tempfile::tempdir().expect("tempdir");
            std::fs::copy(b.dir.path().join("tls.crt"), d.path().join("tls.crt")).expect("copy");
            std::fs::copy(a.dir.path().join("tls.key"), d.path().join("tls.key")).expect("copy");
            d
        }),
        ("certificate expired", {
            let d = tempfile::tempdir().expect("tempdir");
            dated_pair(d.path(), (2020, 1, 1), (2021, 1, 1));
            d
        }),
        ("certificate not yet valid", {
            let d = tempfile::tempdir().expect("tempdir");
            dated_pair(d.path(), (2090, 1, 1), (2091, 1, 1));
            d
        }),
    ];
    for (n, (why, dir)) in cases.iter().enumerate() {
        kubelet_tls_dir(mount.path(), dir.path(), 2 + n as u32);
        assert!(
            sc.wait_for(Duration::from_secs(5), |_| errors().len() > n),
            "{why}: no error event"
        );
        let last = errors().pop().unwrap_or_default();
        assert!(last.contains(why), "{why}: {last}");
        assert_eq!(
            served_cert(sc.smtp, &[&ca_a]),
            cert_a,
            "{why}: not the last good pair"
        );
        let (_, metrics) = sc.http_get("/metrics");
        assert_eq!(
            metric(
                &metrics,
                "smtpbind_client_tls_reloads_total{tenant=\"acme\",result=\"error\"}"
            ),
            (n + 1) as f64,
            "{why}"
        );
    }
    // A good pair again is loaded.
    kubelet_tls_dir(mount.path(), b.dir.path(), 9);
    assert!(sc.wait_for(Duration::from_secs(5), |l| l.iter().any(|l| l
        .contains("\"event\":\"client_tls\"")
        && l.contains("\"result\":\"ok\""))));
    sc.assert_no_secrets();
}
