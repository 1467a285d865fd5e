//! `smtpbind reconcile` end to end (contract §13), with the real binary:
//! two tenants' sidecars in front of the capture upstream playing each
//! provider in turn (its 250 reply and its per-account activity export in
//! that provider's shape), the incident's buggy mailer (tenant B's key at
//! tenant A's sidecar: refused), and one message sent around the sidecars
//! straight to the provider with tenant B's key. Reconcile must report
//! that message unbound under B and nothing foreign; fed a doctored audit
//! in which one of A's messages is attributed to B's pin, it must report
//! that message foreign. Exit codes checked; bad input is exit 2 with
//! file and line.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use smtpbind::demo::capture::ExportShape;
use support::*;

/// One message through `addr` authenticated with `password`; the final reply.
fn send(
    addr: std::net::SocketAddr,
    password: &str,
    from: &str,
    message_id: Option<&str>,
) -> String {
    let (mut c, greeting) = Raw::connect(addr);
    assert!(greeting.starts_with("220"), "{greeting}");
    c.cmd("EHLO mailer.test");
    let r = c.cmd(&format!("AUTH PLAIN {}", plain("apikey", password)));
    if !r.starts_with("235") {
        return r;
    }
    assert!(c.cmd(&format!("MAIL FROM:<{from}>")).starts_with("250"));
    assert!(c.cmd("RCPT TO:<customer@example.net>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<second@example.net>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    let mid = message_id.map_or(String::new(), |m| format!("Message-ID: {m}\r\n"));
    c.send(
        format!(
            "From: {from}\r\nTo: customer@example.net\r\n{mid}Subject: invoice\r\n\r\nhello\r\n"
        )
        .as_bytes(),
    );
    let r = c.cmd(".");
    c.cmd("QUIT");
    r
}

/// Sends one message straight to the provider (no sidecar) with `password`,
/// as a mailer holding an escaped key would: Python smtplib, STARTTLS.
fn send_around(up: &Upstream, password: &str) {
    let script = format!(
        r#"
import smtplib, ssl
s = smtplib.SMTP('{{HOST}}', {{PORT}}, timeout=20)
s.ehlo(); s.starttls(context=ssl._create_unverified_context()); s.ehlo()
s.login('apikey', '{password}')
s.sendmail('leak@bravo.example', ['victim@example.net'],
  'From: leak@bravo.example\r\nTo: victim@example.net\r\nMessage-ID: <around@bravo.example>\r\nSubject: around\r\n\r\nhi\r\n')
s.quit()
"#
    );
    let (ok, out) = python(up.addr(), &script);
    assert!(ok, "python smtplib: {out}");
}

fn reconcile(args: &[&str]) -> Output {
    Command::new(bin())
        .arg("reconcile")
        .args(args)
        .output()
        .expect("run reconcile")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

/// The audit lines (stdout JSON lines) a sidecar wrote, once its `n` message events are out.
fn audit_lines(s: &Sidecar, n: usize) -> Vec<String> {
    let start = std::time::Instant::now();
    while s.events("message").len() < n && start.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    s.output()
        .into_iter()
        .filter(|l| l.starts_with('{'))
        .collect()
}

fn write_gz(path: &Path, lines: &[String]) {
    let f = std::fs::File::create(path).expect("create");
    let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    for l in lines {
        writeln!(gz, "{l}").expect("write");
    }
    gz.finish().expect("gz");
}

struct Run {
    _up: Upstream,
    dir: tempfile::TempDir,
    events_a: PathBuf,
    events_b: PathBuf,
    audit_a: Vec<String>,
    audit_b: Vec<String>,
    around_id: String,
}

fn fleet(shape: ExportShape) -> Run {
    let dir = tempfile::tempdir().expect("tmp");
    let logs = dir.path().join("provider");
    let logs2 = logs.clone();
    let up = Upstream::start(move |c| {
        c.export = Some(shape);
        c.log_dir = Some(logs2);
    });
    let a = Sidecar::start(&up, |_| {});
    let b_secret = dir.path().join("b-secret");
    write_secret(&b_secret, "apikey", KEY_B);
    let b = Sidecar::start(&up, |p| {
        p.set("tenant", "bravo")
            .set("credential.secret_dir", b_secret.display().to_string())
            .set("credential.pins", yaml_list(&[&pin(KEY_B)]))
            .set("senders", yaml_list(&["*@bravo.example"]))
            // No header gate: the Message-ID is read by the scan alone.
            .set("header_from", "ignore");
    });

    // Tenant A's mailer: one message with a Message-ID, one without.
    let r = send(
        a.smtp,
        KEY_A,
        "billing@acme.example",
        Some("<inv-1@acme.example>"),
    );
    assert!(r.starts_with("250"), "{r}");
    let r = send(a.smtp, KEY_A, "billing@acme.example", None);
    assert!(r.starts_with("250"), "{r}");
    // Tenant B's mailer through its own sidecar.
    let r = send(
        b.smtp,
        KEY_B,
        "news@bravo.example",
        Some("<b-1@bravo.example>"),
    );
    assert!(r.starts_with("250"), "{r}");
    // The incident's buggy mailer: tenant B's key at tenant A's sidecar.
    let r = send(
        a.smtp,
        KEY_B,
        "news@bravo.example",
        Some("<leak@bravo.example>"),
    );
    assert!(
        r.starts_with("535"),
        "B's key at A's sidecar must be refused: {r}"
    );
    // And one message around the sidecars, with B's key.
    send_around(&up, KEY_B);

    let captured = wait_messages(&up, 4);
    assert_eq!(captured.len(), 4, "{captured:?}");
    assert_eq!(
        captured.iter().filter(|m| m.account == "tenant-a").count(),
        2,
        "nothing of B's went out under A"
    );
    let around_id = captured
        .iter()
        .find(|m| m.mail_from == "leak@bravo.example")
        .expect("the message sent around")
        .queue_id
        .clone();

    let audit_a = audit_lines(&a, 2);
    let audit_b = audit_lines(&b, 1);
    // The audit carries the provider's id from its 250 and the Message-ID.
    let relayed: Vec<Value> = a
        .events("message")
        .into_iter()
        .filter(|v| v["result"] == "relayed")
        .collect();
    assert_eq!(relayed.len(), 2, "{relayed:?}");
    for (v, m) in relayed
        .iter()
        .zip(captured.iter().filter(|m| m.account == "tenant-a"))
    {
        assert_eq!(v["upstream_id"], m.queue_id.as_str(), "{v}");
    }
    assert_eq!(relayed[0]["message_id"], "<inv-1@acme.example>");
    assert_eq!(relayed[1]["message_id"], Value::Null);
    let relayed_b: Vec<Value> = b
        .events("message")
        .into_iter()
        .filter(|v| v["result"] == "relayed")
        .collect();
    assert_eq!(relayed_b.len(), 1, "{relayed_b:?}");
    assert_eq!(relayed_b[0]["message_id"], "<b-1@bravo.example>");
    a.assert_no_secrets();
    b.assert_no_secrets();

    Run {
        events_a: shape.file(&logs, "tenant-a"),
        events_b: shape.file(&logs, "tenant-b"),
        _up: up,
        dir,
        audit_a,
        audit_b,
        around_id,
    }
}

fn check_provider(shape: ExportShape, provider: &str) {
    let run = fleet(shape);
    let audit_a = run.dir.path().join("audit-a.jsonl");
    std::fs::write(&audit_a, run.audit_a.join("\n") + "\n").expect("write");
    let audit_b = run.dir.path().join("audit-b.jsonl.gz");
    write_gz(&audit_b, &run.audit_b);
    let (pa, pb) = (pin(KEY_A), pin(KEY_B));
    let ea = format!("tenant-a={}", run.events_a.display());
    let eb = format!("tenant-b={}", run.events_b.display());
    let aa = format!("tenant-a={pa}");
    let ab = format!("tenant-b={pb}");
    let (audit_a_s, audit_b_s) = (audit_a.display().to_string(), audit_b.display().to_string());
    let args = |audit: &str, format: &str| -> Vec<String> {
        [
            "--provider",
            provider,
            "--events",
            &ea,
            "--events",
            &eb,
            "--audit",
            audit,
            &audit_b_s,
            "--account",
            &aa,
            "--account",
            &ab,
            "--format",
            format,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };

    // The real audit: the message sent around the sidecars is unbound under
    // B; nothing is foreign (the sidecars refused B's key at A).
    let a: Vec<String> = args(&audit_a_s, "json");
    let out = reconcile(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v = json_of(&out);
    let acct = |name: &str| -> (u64, u64, u64, u64, u64) {
        let a = &v["accounts"][name];
        let n = |k: &str| a[k].as_u64().unwrap_or_else(|| panic!("{k} in {a}"));
        (
            n("provider"),
            n("matched"),
            n("foreign"),
            n("unbound"),
            n("audit_only"),
        )
    };
    assert_eq!(acct("tenant-a"), (2, 2, 0, 0, 0), "{v}");
    assert_eq!(acct("tenant-b"), (2, 1, 0, 1, 0), "{v}");
    let examples = v["accounts"]["tenant-b"]["examples"]
        .as_array()
        .expect("examples");
    let expected_id = match shape {
        ExportShape::M365 => "around@bravo.example".to_string(),
        _ => run.around_id.clone(),
    };
    assert!(
        examples
            .iter()
            .any(|e| e["kind"] == "unbound" && e["id"] == expected_id.as_str()),
        "{v}"
    );
    let keys: Vec<&String> = v["accounts"]["tenant-a"]
        .as_object()
        .expect("obj")
        .keys()
        .collect();
    assert_eq!(
        keys,
        [
            "provider",
            "matched",
            "foreign",
            "unbound",
            "audit_only",
            "examples"
        ]
    );

    // Text for people: the same verdict.
    let t = args(&audit_a_s, "text");
    let out = reconcile(&t.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        report.contains("account tenant-b: 2 provider messages: 1 matched, 0 foreign, 1 unbound"),
        "{report}"
    );
    assert!(
        report.contains("result: FAIL (0 foreign, 1 unbound)"),
        "{report}"
    );
    assert_no_secrets(&report);

    // Tenant A alone is clean: exit 0 (B's audit lines belong to no given account).
    let out = reconcile(&[
        "--provider",
        provider,
        "--events",
        &ea,
        "--audit",
        &audit_a_s,
        &audit_b_s,
        "--account",
        &aa,
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json_of(&out)["accounts"]["tenant-a"]["matched"], 2);

    // A doctored audit: one of A's messages attributed to B's pin.
    let short_a = &pa["sha256:".len().."sha256:".len() + 12];
    let short_b = &pb["sha256:".len().."sha256:".len() + 12];
    let mut doctored_once = false;
    let doctored: Vec<String> = run
        .audit_a
        .iter()
        .map(|l| {
            if !doctored_once
                && l.contains("\"event\":\"message\"")
                && l.contains("\"result\":\"relayed\"")
            {
                doctored_once = true;
                l.replace(short_a, short_b)
            } else {
                l.clone()
            }
        })
        .collect();
    assert!(doctored_once);
    let doctored_path = run.dir.path().join("doctored.jsonl");
    std::fs::write(&doctored_path, doctored.join("\n") + "\n").expect("write");
    let d = args(&doctored_path.display().to_string(), "json");
    let out = reconcile(&d.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v = json_of(&out);
    let a = &v["accounts"]["tenant-a"];
    assert_eq!(
        (
            a["provider"].as_u64(),
            a["matched"].as_u64(),
            a["foreign"].as_u64()
        ),
        (Some(2), Some(1), Some(1)),
        "{v}"
    );
    let foreign = a["examples"]
        .as_array()
        .expect("examples")
        .iter()
        .find(|e| e["kind"] == "foreign")
        .unwrap_or_else(|| panic!("a foreign example: {v}"));
    assert_eq!(foreign["credential"], short_b);
    assert_eq!(foreign["credential_account"], "tenant-b");
    assert!(foreign["audit"]
        .as_str()
        .expect("audit")
        .starts_with(&doctored_path.display().to_string()));

    // The audit from stdin.
    let out = Command::new(bin())
        .args([
            "reconcile",
            "--provider",
            provider,
            "--events",
            &ea,
            "--audit",
            "-",
            "--account",
            &aa,
        ])
        .stdin(std::fs::File::open(&audit_a).expect("open"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn sendgrid_event_webhook() {
    check_provider(ExportShape::Sendgrid, "sendgrid");
}

#[test]
fn ses_event_records() {
    check_provider(ExportShape::Ses, "ses");
}

#[test]
fn microsoft_365_message_trace() {
    check_provider(ExportShape::M365, "m365");
}

#[test]
fn bad_input_is_exit_2_with_file_and_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = |name: &str, body: &str| -> String {
        let path = dir.path().join(name);
        std::fs::write(&path, body).expect("write");
        path.display().to_string()
    };
    let audit = p("audit.jsonl", "{\"event\":\"message\",\"result\":\"relayed\",\"credential\":\"abc\",\"upstream_id\":\"Q1\"}\n");
    let acct = format!("a={}", pin(KEY_A));
    let run = |provider: &str, events: &str, audit: &str| -> Output {
        reconcile(&[
            "--provider",
            provider,
            "--events",
            &format!("a={events}"),
            "--audit",
            audit,
            "--account",
            &acct,
        ])
    };

    let truncated = p(
        "sg.json",
        "[{\"event\":\"processed\",\"sg_message_id\":\"Q1.x\"},\n{\"event\":\"deliv",
    );
    let out = run("sendgrid", &truncated, &audit);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{truncated}:2:")), "{err}");

    let csv = p(
        "trace.csv",
        "Received,SenderAddress,Subject\n2026-12-07,a@b,x\n",
    );
    let out = run("m365", &csv, &audit);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{csv}:1: no MessageId column")),
        "{err}"
    );

    let out = run("mailgun", &csv, &audit);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown provider \"mailgun\""),
        "{}",
        text(&out)
    );

    let bad_audit = p("bad-audit.jsonl", "{\"event\":\"message\"}\nnot json\n");
    let ses = p("ses.jsonl", "{\"mail\":{\"messageId\":\"Q1\"}}\n");
    let out = run("ses", &ses, &bad_audit);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("{bad_audit}:2: not an audit line")),
        "{}",
        text(&out)
    );

    let out = run(
        "ses",
        &dir.path().join("missing.jsonl").display().to_string(),
        &audit,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing.jsonl"),
        "{}",
        text(&out)
    );

    // Arguments clap refuses are bad input too (2, not 1).
    let out = reconcile(&["--provider", "ses"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // An account with events but no pin.
    let out = reconcile(&[
        "--provider",
        "ses",
        "--events",
        &format!("b={ses}"),
        "--audit",
        &audit,
        "--account",
        &acct,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // Valid input, nothing wrong: 0 (Q1 is audited under `abc`, no account's pin: not A's audit-only).
    let out = run("ses", &p("empty.jsonl", ""), &audit);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}
