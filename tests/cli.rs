//! The `smtpbind` command line as a subprocess: `check` (with exact
//! `FILE:LINE:COL: KEY:` errors), `fingerprint`, `check --credentials`,
//! `run` refusing bad input, `--help`, and a sidecar whose mounted
//! credential is not pinned.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// Runs `smtpbind ARGS` and waits at most `limit` (a `run` that does not
/// refuse its input would otherwise serve forever); panics on overrun.
fn smtpbind_within(args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.env_remove("SMTPBIND_POLICY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn smtpbind");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "smtpbind {args:?} still running after {limit:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn smtpbind(args: &[&str]) -> Output {
    smtpbind_within(args, &[], Duration::from_secs(20))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

const GOOD_PIN: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// A valid policy; the line numbers in the comments are what the error
/// tests rely on.
fn base_policy(secret_dir: &str, pin: &str) -> String {
    format!(
        r#"version: 1
tenant: acme
upstream:
  address: smtp.example.com:587
  tls: starttls
  connect_timeout: 10s
credential:
  secret_dir: {secret_dir}
  pins:
    - "{pin}"
client:
  accept:
    - username: apikey
      password: mounted
senders: [ "*@acme.example" ]
limits:
  command_timeout: 300s
"#
    )
    // line 1 version, 3 upstream, 5 tls, 6 connect_timeout, 9 pins,
    // 10 the pin, 13 username, 14 password, 16 limits, 17 command_timeout
}

/// `base_policy` with `from` replaced by `to` (exactly once).
fn edited(from: &str, to: &str) -> String {
    let base = base_policy("/var/run/secrets/smtpbind", GOOD_PIN);
    assert_eq!(base.matches(from).count(), 1, "{from:?}");
    base.replacen(from, to, 1)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

// ---- check ---------------------------------------------------------------------

#[test]
fn check_accepts_every_example_policy() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(policies_dir())
        .expect("policies/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    // All at once, as `smtpbind check policies/*.yaml`.
    let args: Vec<&str> = std::iter::once("check")
        .chain(names.iter().map(String::as_str))
        .collect();
    let out = smtpbind(&args);
    assert_eq!(code(&out), Some(0), "stderr: {}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    // And each on its own.
    for name in &names {
        let out = smtpbind(&["check", name]);
        assert_eq!(code(&out), Some(0), "{name}: {}", stderr(&out));
        assert!(
            stdout(&out).starts_with(&format!("{name}: ok (tenant ")),
            "{}",
            stdout(&out)
        );
    }
    // The base policy of these tests is valid too (the error tests edit it).
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(
        dir.path(),
        "base.yaml",
        &edited("tenant: acme", "tenant: acme"),
    );
    let out = smtpbind(&["check", f.to_str().expect("utf8")]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
}

#[test]
fn check_reports_bad_policies_with_exact_file_line_col_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The flow-sequence item sits after `  pins: [ "<71 chars>", ` on line 9.
    let flow_col = "  pins: [ ".len() + GOOD_PIN.len() + 2 + ", ".len() + 1;
    let flow_at = format!("9:{flow_col}: credential.pins[1]:");
    let cases: Vec<(&str, String, &str, &str)> = vec![
        // (file, text, "LINE:COL: KEY:", part of the message)
        (
            "unknown-nested.yaml",
            edited("  tls: starttls\n", "  tsl: starttls\n"),
            "5:3: upstream.tsl:",
            "unknown field `tsl`",
        ),
        (
            "unknown-in-list-item.yaml",
            edited("      password: mounted", "      pasword: mounted"),
            "14:7: client.accept[0].pasword:",
            "unknown field `pasword`",
        ),
        (
            "unknown-top.yaml",
            edited("senders: [", "sender: ["),
            "15:1: sender:",
            "unknown field `sender`",
        ),
        (
            "bad-duration.yaml",
            edited("  command_timeout: 300s", "  command_timeout: 5h"),
            "17:3: limits.command_timeout:",
            "unit",
        ),
        (
            "bad-duration-no-unit.yaml",
            edited("  connect_timeout: 10s", "  connect_timeout: 10"),
            "6:3: upstream.connect_timeout:",
            "missing unit",
        ),
        (
            "tls-none.yaml",
            edited("  tls: starttls", "  tls: none"),
            "5:3: upstream.tls:",
            "insecure: true",
        ),
        (
            "listen.yaml",
            edited("tenant: acme\n", "tenant: acme\nlisten: 0.0.0.0:2525\n"),
            "3:1: listen:",
            "listen_insecure_ok: true",
        ),
        (
            "pin-short.yaml",
            edited(&format!("    - \"{GOOD_PIN}\""), "    - \"sha256:abc\""),
            "10:7: credential.pins[0]:",
            "found 3 characters",
        ),
        (
            "pin-flow.yaml",
            edited(
                &format!("  pins:\n    - \"{GOOD_PIN}\""),
                &format!("  pins: [ \"{GOOD_PIN}\", \"sha256:{}\" ]", "g".repeat(64)),
            ),
            &flow_at,
            "non-hex character at position 1",
        ),
        (
            "pin-prefix.yaml",
            edited(
                &format!("    - \"{GOOD_PIN}\""),
                &format!("    - \"{}\"", &GOOD_PIN[7..]),
            ),
            "10:7: credential.pins[0]:",
            "sha256:",
        ),
    ];
    for (name, text, at, msg) in &cases {
        let path = write(dir.path(), name, text);
        let shown = path.display().to_string();
        let out = smtpbind(&["check", &shown]);
        assert_eq!(
            code(&out),
            Some(1),
            "{name}: stdout {} stderr {}",
            stdout(&out),
            stderr(&out)
        );
        let err = stderr(&out);
        let prefix = format!("{shown}:{at}");
        assert!(
            err.starts_with(&prefix),
            "{name}: expected {prefix:?}, got:\n{err}"
        );
        assert!(err.contains(msg), "{name}: {err}");
        assert_eq!(err.lines().count(), 1, "{name}: exactly one error: {err}");
        assert!(!stdout(&out).contains("ok"), "{name}: {}", stdout(&out));
    }

    // Several errors in one file: all reported, in file order, exit 1.
    let text = edited("  tls: starttls\n", "  tls: none\n")
        .replace("  command_timeout: 300s", "  command_timeout: soon")
        .replace(&format!("    - \"{GOOD_PIN}\""), "    - \"sha256:00\"");
    let path = write(dir.path(), "three.yaml", &text);
    let shown = path.display().to_string();
    let out = smtpbind(&["check", &shown]);
    assert_eq!(code(&out), Some(1));
    let err = stderr(&out);
    let heads: Vec<String> = err
        .lines()
        .map(|l| l.splitn(5, ": ").take(2).collect::<Vec<_>>().join(": "))
        .collect();
    assert_eq!(
        heads,
        [
            format!("{shown}:5:3: upstream.tls"),
            format!("{shown}:10:7: credential.pins[0]"),
            format!("{shown}:17:3: limits.command_timeout"),
        ],
        "{err}"
    );

    // A good file and a bad file: exit 1, the good one still reported ok.
    let good = write(
        dir.path(),
        "good.yaml",
        &edited("tenant: acme", "tenant: acme"),
    );
    let out = smtpbind(&["check", good.to_str().expect("utf8"), &shown]);
    assert_eq!(code(&out), Some(1));
    assert!(
        stdout(&out).contains("good.yaml: ok (tenant acme)"),
        "{}",
        stdout(&out)
    );

    // A missing file.
    let missing = dir.path().join("missing.yaml");
    let out = smtpbind(&["check", missing.to_str().expect("utf8")]);
    assert_eq!(code(&out), Some(1));
    assert!(
        stderr(&out).starts_with(&format!("{}:", missing.display())),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_never_echoes_a_plain_text_password_from_the_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = edited(
        "      password: mounted",
        &format!("      password: {KEY_A}"),
    );
    let path = write(dir.path(), "plaintext.yaml", &text);
    let out = smtpbind(&["check", path.to_str().expect("utf8")]);
    assert_eq!(code(&out), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "{}:14:7: client.accept[0].password:",
            path.display()
        )),
        "{err}"
    );
    assert_no_secrets(&format!("{}{}", stdout(&out), err));
}

// ---- fingerprint ---------------------------------------------------------------

#[test]
fn fingerprint_prints_the_sha256_of_the_file_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Exact bytes: a trailing newline is part of the pin.
    for (name, bytes) in [
        ("key", KEY_A.as_bytes().to_vec()),
        ("key-nl", format!("{KEY_A}\n").into_bytes()),
        ("binary", (0u8..=255).collect()),
    ] {
        let path = write_bytes(dir.path(), name, &bytes);
        let shown = path.to_str().expect("utf8");
        let out = smtpbind(&["fingerprint", shown]);
        assert_eq!(code(&out), Some(0), "{}", stderr(&out));
        let sum = Command::new("sha256sum")
            .arg(&path)
            .output()
            .expect("sha256sum");
        let hex = String::from_utf8_lossy(&sum.stdout)
            .split_whitespace()
            .next()
            .expect("hex")
            .to_string();
        assert_eq!(hex.len(), 64);
        assert_eq!(stdout(&out), format!("sha256:{hex}\n"), "{name}");
        if name == "key" {
            assert_eq!(stdout(&out).trim_end(), pin(KEY_A));
        }
        assert_no_secrets(&format!("{}{}", stdout(&out), stderr(&out)));
    }
    let out = smtpbind(&[
        "fingerprint",
        dir.path().join("nope").to_str().expect("utf8"),
    ]);
    assert_eq!(code(&out), Some(1));
    // stdout carries at most the JSON `fatal` log line, never a pin.
    assert!(!stdout(&out).contains("sha256:"), "{}", stdout(&out));
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
}

fn write_bytes(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write");
    path
}

// ---- check --credentials --------------------------------------------------------

#[test]
fn check_credentials_verifies_the_mounted_password_against_the_pins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret");
    write_secret(&secret, "apikey", KEY_A);
    let secret_s = secret.to_str().expect("utf8");

    let pinned = write(
        dir.path(),
        "pinned.yaml",
        &base_policy(secret_s, &pin(KEY_A)),
    );
    let out = smtpbind(&["check", "--credentials", pinned.to_str().expect("utf8")]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let short = &pin(KEY_A)[7..19];
    assert!(
        stdout(&out).contains(&format!("ok (tenant acme, credential {short})")),
        "{}",
        stdout(&out)
    );

    // Rotation: two pins, the mounted one second.
    let two = base_policy(secret_s, &pin(KEY_B)).replace(
        &format!("    - \"{}\"\n", pin(KEY_B)),
        &format!("    - \"{}\"\n    - \"{}\"\n", pin(KEY_B), pin(KEY_A)),
    );
    let two = write(dir.path(), "two.yaml", &two);
    let out = smtpbind(&["check", "--credentials", two.to_str().expect("utf8")]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));

    // The mounted password is not pinned.
    let unpinned = write(
        dir.path(),
        "unpinned.yaml",
        &base_policy(secret_s, &pin(KEY_B)),
    );
    let shown = unpinned.display().to_string();
    let out = smtpbind(&["check", "--credentials", &shown]);
    assert_eq!(code(&out), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("{shown}: credential.secret_dir:")),
        "{err}"
    );
    assert!(err.contains("matches none of the policy's pins"), "{err}");
    assert_no_secrets(&format!("{}{}", stdout(&out), err));
    // Without --credentials the same policy is valid.
    assert_eq!(code(&smtpbind(&["check", &shown])), Some(0));

    // No Secret mounted at all.
    let nodir = write(
        dir.path(),
        "nodir.yaml",
        &base_policy(
            dir.path().join("absent").to_str().expect("utf8"),
            &pin(KEY_A),
        ),
    );
    let out = smtpbind(&["check", "--credentials", nodir.to_str().expect("utf8")]);
    assert_eq!(code(&out), Some(1));
    assert!(
        stderr(&out).contains("credential.secret_dir"),
        "{}",
        stderr(&out)
    );
}

// ---- run ------------------------------------------------------------------------

#[test]
fn run_refuses_an_invalid_policy_and_a_non_loopback_listen_override() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret");
    write_secret(&secret, "apikey", KEY_A);
    let secret_s = secret.to_str().expect("utf8");
    let short = Duration::from_secs(15);

    let bad = write(
        dir.path(),
        "bad.yaml",
        &edited("  tls: starttls", "  tls: none"),
    );
    let bad_s = bad.display().to_string();
    let out = smtpbind_within(
        &[
            "run",
            "--policy",
            &bad_s,
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ],
        &[],
        short,
    );
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("{bad_s}:5:3: upstream.tls:")),
        "{}",
        stderr(&out)
    );
    // SMTPBIND_POLICY stands in for --policy.
    let out = smtpbind_within(
        &["run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"],
        &[("SMTPBIND_POLICY", &bad_s)],
        short,
    );
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("upstream.tls"), "{}", stderr(&out));

    let good = write(dir.path(), "good.yaml", &base_policy(secret_s, &pin(KEY_A)));
    let good_s = good.display().to_string();
    let out = smtpbind_within(
        &[
            "run",
            "--policy",
            &good_s,
            "--listen",
            "0.0.0.0:0",
            "--admin",
            "127.0.0.1:0",
        ],
        &[],
        short,
    );
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("--listen"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("listen_insecure_ok"),
        "{}",
        stderr(&out)
    );
    assert_no_secrets(&format!("{}{}", stdout(&out), stderr(&out)));

    // With `listen_insecure_ok: true` the same override is allowed and serves.
    let ok = write(
        dir.path(),
        "insecure-ok.yaml",
        &base_policy(secret_s, &pin(KEY_A))
            .replace("tenant: acme\n", "tenant: acme\nlisten_insecure_ok: true\n"),
    );
    let mut child = Command::new(bin())
        .args([
            "run",
            "--policy",
            ok.to_str().expect("utf8"),
            "--listen",
            "0.0.0.0:0",
            "--admin",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let lines = BufReader::new(child.stdout.take().expect("stdout"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.lines().map_while(Result::ok) {
            if line.contains("\"event\":\"listening\"") {
                let _ = tx.send(line);
            }
        }
    });
    let listening = rx.recv_timeout(Duration::from_secs(15));
    let _ = child.kill();
    let _ = child.wait();
    let listening = listening.expect("run with listen_insecure_ok serves on 0.0.0.0");
    assert!(listening.contains("\"addr\":\"0.0.0.0:"), "{listening}");
}

/// Contract §2: exit 1 for invalid input — policy, credential, *arguments*.
/// clap's own usage errors exit 2 (its default), which the contract reserves
/// for runtime failures.
#[test]
fn argument_errors_exit_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = write(
        dir.path(),
        "good.yaml",
        &edited("tenant: acme", "tenant: acme"),
    );
    let good_s = good.display().to_string();
    for args in [
        vec!["run"],
        vec!["run", "--policy", &good_s, "--listen", "notanaddr"],
        vec!["fingerprint"],
        vec!["check"],
        vec!["frobnicate"],
    ] {
        let out = smtpbind_within(&args, &[], Duration::from_secs(15));
        assert_eq!(code(&out), Some(1), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn help_works_for_every_subcommand() {
    let out = smtpbind(&["--help"]);
    assert_eq!(code(&out), Some(0));
    let top = stdout(&out);
    for sub in ["run", "check", "fingerprint", "demo"] {
        assert!(
            top.lines().any(|l| l.trim_start().starts_with(sub)),
            "{sub} missing in:\n{top}"
        );
    }
    for (sub, must) in [
        (
            "run",
            &["--policy", "--listen", "--admin", "SMTPBIND_POLICY"][..],
        ),
        ("check", &["--credentials", "<FILES>"][..]),
        ("fingerprint", &["<FILE>"][..]),
        ("demo", &["--listen", "--admin"][..]),
    ] {
        for form in [vec![sub, "--help"], vec!["help", sub]] {
            let out = smtpbind(&form);
            assert_eq!(code(&out), Some(0), "{form:?}: {}", stderr(&out));
            let text = stdout(&out);
            assert!(
                text.contains(&format!("Usage: smtpbind {sub}")),
                "{form:?}:\n{text}"
            );
            for m in must {
                assert!(text.contains(m), "{form:?} lacks {m}:\n{text}");
            }
        }
    }
}

// ---- an unpinned mounted credential ------------------------------------------------

#[test]
fn sidecar_with_unpinned_credential_is_not_ready_and_refuses_sessions_with_nothing_upstream() {
    let up = Upstream::default();
    let sidecar = Sidecar::start(&up, |p| {
        // The mounted password is KEY_A; pin another one.
        p.set("credential.pins", yaml_list(&[&pin(KEY_B)]));
    });
    let (code, body) = sidecar.http_get("/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.starts_with("not ready: "), "{body}");
    assert!(body.contains("matches none of the policy's pins"), "{body}");
    assert_eq!(
        body.trim_end().lines().count(),
        1,
        "one-line reason: {body}"
    );
    assert_eq!(sidecar.http_get("/healthz").0, 200);

    let (mut c, greeting) = Raw::connect(sidecar.smtp);
    assert_eq!(
        greeting,
        "421 4.3.0 credential not ready, try again later\r\n"
    );
    assert!(c.closed());

    // A real client with the right key gets nowhere either.
    let (ok, out) = swaks_plain(
        sidecar.smtp,
        "billing@acme.example",
        "customer@example.net",
        KEY_A,
        &[],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("421 4.3.0"), "{out}");

    assert_eq!(
        up.server.connections(),
        0,
        "the upstream never sees a connection"
    );
    assert!(up.messages().is_empty());
    assert!(
        sidecar.wait_for(Duration::from_secs(5), |_| sidecar.events("reject").len()
            >= 2)
    );
    let rejects = sidecar.events("reject");
    assert!(
        rejects
            .iter()
            .all(|e| e["reason"] == "credential_not_pinned"),
        "{rejects:?}"
    );
    sidecar.assert_no_secrets();
}
