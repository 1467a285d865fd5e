//! `smtpbind webhook` as the API server meets it: the real binary serving
//! HTTPS from a kubelet-style `--tls-dir`, called by curl and Python with
//! the CA; the certificate rotated under a stream of requests; bodies over
//! 3 MiB and garbage answered 400 while it keeps serving; held-open
//! connections that do not starve the probes; start-up failures.

mod support;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn golden(name: &str) -> PathBuf {
    repo().join("tests/webhook/golden").join(name)
}

/// A CA that signs serving pairs for `localhost`.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "smtpbind webhook test CA");
        let cert = params.self_signed(&key).expect("ca");
        Ca { cert, key }
    }

    /// (tls.crt, tls.key) PEM for localhost and 127.0.0.1.
    fn pair(&self) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("sign");
        (cert.pem(), key.serialize_pem())
    }
}

/// Writes a pair the way the kubelet updates a Secret volume.
fn mount_pair(dir: &Path, (crt, key): &(String, String)) {
    support::kubelet_swap(
        dir,
        &[("tls.crt", crt.as_bytes()), ("tls.key", key.as_bytes())],
    );
}

struct Webhook {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    ca: Ca,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Webhook {
    fn start() -> Webhook {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::new();
        std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).expect("ca");
        mount_pair(&dir.path().join("tls"), &ca.pair());
        let (child, lines, listening) =
            support::spawn_listening(&mut command(&dir.path().join("tls")));
        let v: Value = serde_json::from_str(&listening).expect("json");
        let addr = v["webhook"].as_str().expect("addr").parse().expect("addr");
        Webhook {
            child,
            addr,
            dir,
            ca,
            lines,
        }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    /// curl with the CA: (HTTP status, body).
    fn curl(&self, args: &[&str], path: &str) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "20", "--cacert"])
            .arg(self.ca_file())
            .args(["-w", "\n%{http_code}"])
            .args(args)
            .arg(self.url(path))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if !out.status.success() {
            eprintln!("curl {path}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    fn post_file(&self, path: &str, file: &Path) -> (u16, String) {
        let data = format!("@{}", file.display());
        self.curl(
            &[
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &data,
            ],
            path,
        )
    }

    fn output(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }

    fn wait_output(&self, needle: &str) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if self.output().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(tls_dir: &Path) -> Command {
    let mut cmd = Command::new(support::bin());
    cmd.args(["webhook", "--config"])
        .arg(repo().join("tests/webhook/config.yaml"))
        .args(["--listen", "127.0.0.1:0", "--lame-duck", "2s", "--tls-dir"])
        .arg(tls_dir);
    cmd
}

/// The golden answer's review, with the patch base64 as on the wire.
fn golden_review(name: &str) -> Value {
    let text = std::fs::read_to_string(golden(&format!("{name}.response.json"))).expect("golden");
    let mut want: Value = serde_json::from_str(&text).expect("json");
    let mut review = want["review"].take();
    if let Some(patch) = review["response"].get("patch").cloned() {
        let bytes = serde_json::to_vec(&patch).expect("json");
        review["response"]["patch"] = base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .into();
    }
    review
}

#[test]
fn serves_the_golden_answers_over_tls_to_curl_and_python() {
    let w = Webhook::start();
    for name in [
        "mutate-inject",
        "mutate-skip-no-annotation",
        "validate-rule2-envfrom",
        "validate-injected-pod",
        "validate-rule6-exec-into-the-sidecar",
        "validate-rule4-ephemeral-container-targets-the-sidecar",
    ] {
        let endpoint = if name.starts_with("mutate") {
            "/mutate"
        } else {
            "/validate"
        };
        let (code, body) = w.post_file(endpoint, &golden(&format!("{name}.request.json")));
        assert_eq!(code, 200, "{name}: {body}");
        let got: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(got, golden_review(name), "{name}");
    }
    assert_eq!(w.curl(&[], "/healthz").0, 200);
    assert_eq!(w.curl(&[], "/readyz").0, 200);
    let (code, metrics) = w.curl(&[], "/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics
            .contains(r#"smtpbind_webhook_requests_total{endpoint="mutate",result="patched"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"smtpbind_webhook_requests_total{endpoint="validate",result="refused"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("smtpbind_webhook_request_duration_seconds_bucket"),
        "{metrics}"
    );
    assert_eq!(w.curl(&[], "/mutate").0, 405);
    assert_eq!(w.curl(&[], "/nope").0, 404);

    let script = r#"
import json, ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[1])
body = open(sys.argv[3], "rb").read()
req = urllib.request.Request(sys.argv[2], data=body, headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, context=ctx, timeout=20) as r:
    assert r.status == 200, r.status
    print(r.read().decode())
"#;
    let out = succeed(
        Command::new("python3")
            .args(["-c", script])
            .arg(w.ca_file())
            .arg(w.url("/validate"))
            .arg(golden("validate-rule4-host-network.request.json")),
    );
    let got: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(got, golden_review("validate-rule4-host-network"));
    assert_eq!(got["response"]["status"]["code"], 403);
    support::assert_no_secrets(&w.output());
}

#[test]
fn certificate_rotation_under_a_stream_of_requests_fails_none() {
    let w = Webhook::start();
    // Python: one keep-alive connection and one new connection per request,
    // until told to stop; counts failures and the distinct leaf certificates seen.
    let script = r#"
import hashlib, http.client, os, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[1])
port = int(sys.argv[2]); body = open(sys.argv[3], "rb").read(); stop = sys.argv[4]
seen, ok, failed = set(), 0, []
keep = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
deadline = time.time() + 60  # never outlive the test
while not os.path.exists(stop) and time.time() < deadline:
    for conn in (keep, http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)):
        try:
            conn.request("POST", "/validate", body, {"Content-Type": "application/json"})
            r = conn.getresponse(); data = r.read()
            if r.status != 200 or b'"allowed":true' not in data:
                failed.append(r.status)
            else:
                ok += 1
            seen.add(hashlib.sha256(conn.sock.getpeercert(binary_form=True)).hexdigest())
        except Exception as e:
            failed.append(repr(e))
        if conn is not keep:
            conn.close()
print(ok, len(seen), failed)
sys.exit(1 if failed else 0)
"#;
    let stop = w.dir.path().join("stop");
    let client = Command::new("python3")
        .args(["-c", script])
        .arg(w.ca_file())
        .arg(w.addr.port().to_string())
        .arg(golden("validate-injected-pod.request.json"))
        .arg(&stop)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    // Whatever happens below, the client stops (a panic must not leave it looping).
    struct Stop(PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = std::fs::write(&self.0, "");
        }
    }
    let stop_guard = Stop(stop.clone());
    let tls = w.dir.path().join("tls");
    for i in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        let pair = w.ca.pair();
        mount_pair(&tls, &pair);
        let start = Instant::now();
        while count(&w.output(), "\"result\":\"ok\"") <= i
            && start.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            count(&w.output(), "\"result\":\"ok\""),
            i + 1,
            "reload {i}: {}",
            w.output()
        );
        assert_eq!(
            served_leaf(&w),
            pair.0.trim(),
            "reload {i}: a new handshake gets the new pair"
        );
    }
    std::thread::sleep(Duration::from_millis(700));
    drop(stop_guard);
    let out = client.wait_with_output().expect("client");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fields: Vec<&str> = text.split_whitespace().collect();
    let ok: u32 = fields[0].parse().expect("count");
    let certs: u32 = fields[1].parse().expect("certs");
    assert!(ok >= 10, "only {ok} requests");
    assert!(certs >= 2, "{text}: the stream never saw a new certificate");

    // A broken pair is refused; the last good one stays in use.
    let (crt, _) = w.ca.pair();
    let (_, other_key) = w.ca.pair();
    mount_pair(&tls, &(crt, other_key));
    assert!(
        w.wait_output("the last good certificate stays in use"),
        "{}",
        w.output()
    );
    assert_eq!(w.curl(&[], "/readyz").0, 200);
}

/// The leaf certificate a new TLS handshake gets (PEM), by openssl s_client.
fn served_leaf(w: &Webhook) -> String {
    let script = format!(
        "openssl s_client -connect 127.0.0.1:{} -servername localhost </dev/null 2>/dev/null | openssl x509",
        w.addr.port()
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn count(text: &str, needle: &str) -> usize {
    text.lines()
        .filter(|l| l.contains("\"event\":\"certificate\"") && l.contains(needle))
        .count()
}

#[test]
fn oversized_and_garbage_bodies_are_400_and_it_keeps_serving() {
    let w = Webhook::start();
    let dir = w.dir.path();
    // just over 3 MiB, announced by Content-Length
    let big = dir.join("big.json");
    std::fs::write(&big, vec![b' '; 3 * 1024 * 1024 + 1]).expect("write");
    let (code, body) = w.post_file("/mutate", &big);
    assert_eq!((code, body.trim()), (400, "body larger than 3 MiB"));
    // 4 MiB chunked (no Content-Length)
    let (code, body) = w.curl(
        &[
            "-X",
            "POST",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &format!("@{}", big.display()),
        ],
        "/validate",
    );
    assert_eq!((code, body.trim()), (400, "body larger than 3 MiB"));
    for (name, bytes) in [
        (
            "garbage",
            b"\x00\x01\x02 SG.tenantA-9f3c1e7d-secret-key" as &[u8],
        ),
        ("empty", b""),
        ("other-json", b"{\"kind\":\"Pod\",\"apiVersion\":\"v1\"}"),
    ] {
        let f = dir.join(name);
        std::fs::write(&f, bytes).expect("write");
        let (code, body) = w.post_file("/mutate", &f);
        assert_eq!(code, 400, "{name}: {body}");
        assert!(body.starts_with("not an AdmissionReview"), "{name}: {body}");
    }
    // A valid review just under the bound (a pod with a 3 MiB - 4 KiB annotation) is served.
    let mut review: Value =
        serde_json::from_slice(&std::fs::read(golden("mutate-inject.request.json")).expect("read"))
            .expect("json");
    review["request"]["object"]["metadata"]["annotations"]["padding"] =
        "x".repeat(3 * 1024 * 1024 - 4096).into();
    let near = dir.join("near.json");
    std::fs::write(&near, serde_json::to_vec(&review).expect("json")).expect("write");
    let (code, body) = w.post_file("/mutate", &near);
    assert_eq!(code, 200, "{}", &body[..body.len().min(300)]);
    assert!(body.contains("\"patchType\":\"JSONPatch\""));
    let (code, _) = w.post_file("/mutate", &golden("mutate-inject.request.json"));
    assert_eq!(code, 200);
    let (_, metrics) = w.curl(&[], "/metrics");
    assert!(
        metrics.contains(
            r#"smtpbind_webhook_requests_total{endpoint="mutate",result="bad_request"} 4"#
        ),
        "{metrics}"
    );
    support::assert_no_secrets(&w.output());
}

#[test]
fn held_open_connections_do_not_starve_the_probes() {
    let w = Webhook::start();
    // More idle TCP connections than the cap, none of them saying anything.
    let held: Vec<TcpStream> = (0..600)
        .filter_map(|_| TcpStream::connect(w.addr).ok())
        .collect();
    assert!(held.len() >= 550, "{}", held.len());
    let start = Instant::now();
    let (code, _) = w.curl(&[], "/healthz");
    assert_eq!(code, 200);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let (code, _) = w.post_file("/validate", &golden("validate-injected-pod.request.json"));
    assert_eq!(code, 200);
    drop(held);
}

#[test]
fn refuses_to_start_without_a_certificate_or_with_a_bad_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = command(dir.path()).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--tls-dir") && err.contains("tls.crt"),
        "{err}"
    );

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "version: 1\nsidecar:\n  image: x\ntenants:\n  - name: a\n    namespace: [x]\n",
    )
    .expect("write");
    let out = Command::new(support::bin())
        .args(["webhook", "--config"])
        .arg(&bad)
        .args(["--tls-dir"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:6:5: tenants[0].namespace: unknown field",
            bad.display()
        )),
        "{err}"
    );

    let out = Command::new(support::bin())
        .args(["check"])
        .arg(&bad)
        .output()
        .expect("check");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(":6:5: tenants[0].namespace: unknown field")
    );
    succeed(
        Command::new(support::bin())
            .args(["check"])
            .arg(repo().join("tests/webhook/config.yaml")),
    );

    // Two tenants sharing a namespace and a Secret (or a ConfigMap): refused
    // by `check` and at start, located at the second tenant's key.
    let golden = std::fs::read_to_string(repo().join("tests/webhook/config.yaml")).expect("read");
    let shared = dir.path().join("shared.yaml");
    std::fs::write(
        &shared,
        golden
            .replace(
                "credential_secret: beta-smtp",
                "credential_secret: acme-smtp",
            )
            .replace(
                "policy_config_map: beta-smtpbind",
                "policy_config_map: acme-smtpbind",
            ),
    )
    .expect("write");
    let line = |key: &str| {
        golden
            .lines()
            .position(|l| l.contains(key))
            .map(|i| i + 1)
            .expect("key")
    };
    for args in [vec!["check"], vec!["webhook", "--config"]] {
        let out = Command::new(support::bin())
            .args(&args)
            .arg(&shared)
            .args(["--tls-dir"].iter().take(args.len() - 1))
            .args([dir.path()].iter().take(args.len() - 1))
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        for (key, what) in [
            ("credential_secret: beta-smtp", "credential_secret: tenants `acme` and `beta` share namespace `shared` and the Secret `acme-smtp`"),
            ("policy_config_map: beta-smtpbind", "policy_config_map: tenants `acme` and `beta` share namespace `shared` and the ConfigMap `acme-smtpbind`"),
        ] {
            let want = format!("{}:{}:5: tenants[1].{what}", shared.display(), line(key));
            assert!(err.contains(&want), "{args:?}: want {want}\n{err}");
        }
    }
}

/// Runs `cmd`, which must exit 0 (else the test fails with its stderr).
fn succeed(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{:?}: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn sigterm_turns_it_not_ready_serves_the_lame_duck_period_then_exits_0() {
    let mut w = Webhook::start();
    let pid = w.child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let start = Instant::now();
    assert!(w.wait_output("\"event\":\"shutdown\""), "{}", w.output());
    // still answering admission requests, but not ready
    assert_eq!(w.curl(&[], "/readyz").0, 503);
    let (code, _) = w.post_file("/validate", &golden("validate-injected-pod.request.json"));
    assert_eq!(code, 200);
    loop {
        if let Some(status) = w.child.try_wait().expect("wait") {
            assert_eq!(status.code(), Some(0));
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
}
