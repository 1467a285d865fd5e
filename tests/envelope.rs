//! Envelope and content policy through the real binary: the `senders`
//! allow-list, recipient domains and count, the header From check, bare line
//! endings, and the audit events a scripted session leaves behind.
//!
//! In-process (`support::inproc`): the audit events are read from the
//! app's own log sink; the Python/swaks test (real clients are the point)
//! stays on the real binary.

mod support;

use std::time::Duration;

use support::inproc::InProc;
use support::*;

const FROM: &str = "billing@acme.example";
const SENDER_550: &str = "550 5.7.1 sender not allowed for this tenant\r\n";
const RCPT_550: &str = "550 5.7.1 recipient domain not allowed for this tenant\r\n";
const RCPT_452: &str = "452 4.5.3 too many recipients\r\n";
const HEADER_FROM_550: &str = "550 5.7.1 header From not allowed for this tenant\r\n";
const BARE_550: &str = "550 5.6.11 bare CR or LF not allowed, use CRLF\r\n";

/// MAIL FROM `env_from`, one RCPT, DATA, `data` and the final dot; every
/// step before the end of data must succeed. Returns the final reply.
fn relay(c: &mut Raw, env_from: &str, rcpt: &str, data: &str) -> String {
    let r = c.cmd(&format!("MAIL FROM:<{env_from}>"));
    assert!(r.starts_with("250"), "MAIL {env_from}: {r}");
    let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
    assert!(r.starts_with("250"), "RCPT {rcpt}: {r}");
    let r = c.cmd("DATA");
    assert!(r.starts_with("354"), "DATA: {r}");
    c.send(data.as_bytes());
    c.cmd(".")
}

/// A message with the given header block (CRLF-joined lines) and a subject.
fn with_headers(headers: &[&str], subject: &str) -> String {
    let mut s = String::new();
    for h in headers {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str(&format!(
        "To: customer@example.net\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n"
    ));
    s
}

fn subjects(up: &Upstream) -> Vec<String> {
    up.messages()
        .iter()
        .map(|m| {
            let text = String::from_utf8_lossy(&m.data).to_string();
            text.lines()
                .find_map(|l| {
                    l.strip_prefix("Subject: ")
                        .map(|s| s.trim_end().to_string())
                })
                .unwrap_or_default()
        })
        .collect()
}

// ---- senders -------------------------------------------------------------------

#[test]
fn senders_allow_list_domain_wildcard_exact_address_and_case() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |p| {
        p.set(
            "senders",
            yaml_list(&["*@acme.example", "billing@acme-mail.example"]),
        );
    });
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    for refused in [
        "ceo@globex.example",
        "",
        "someone@mail.acme.example",
        "someone@acme.example.evil.test",
        "someone@notacme.example",
        "support@acme-mail.example",
        "billing@sub.acme-mail.example",
    ] {
        assert_eq!(
            c.cmd(&format!("MAIL FROM:<{refused}>")),
            SENDER_550,
            "<{refused}>"
        );
    }
    // Refused senders are decided locally: no upstream connection at all.
    assert_eq!(up.server.connections(), 0);

    for allowed in [
        "anyone@acme.example",
        "Someone@ACME.Example",
        "billing@acme-mail.example",
        "billing@ACME-Mail.EXAMPLE",
    ] {
        let r = c.cmd(&format!("MAIL FROM:<{allowed}>"));
        assert!(r.starts_with("250"), "<{allowed}>: {r}");
        assert!(c.cmd("RSET").starts_with("250"));
    }
    // The exact-address pattern relays end to end, header From included.
    let r = relay(
        &mut c,
        "billing@acme-mail.example",
        "customer@example.net",
        &with_headers(&["From: Billing <billing@acme-mail.example>"], "exact"),
    );
    assert!(r.starts_with("250"), "{r}");
    let msgs = wait_messages(&up, 1);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].mail_from, "billing@acme-mail.example");
    sidecar.assert_no_secrets();
}

#[test]
fn null_sender_only_when_listed() {
    let up = Upstream::default();
    let without = InProc::start(&up, |p| {
        p.set("senders", yaml_list(&["*@acme.example"]));
    });
    let mut c = Raw::authed(without.smtp, KEY_A);
    assert_eq!(c.cmd("MAIL FROM:<>"), SENDER_550);
    assert_eq!(up.server.connections(), 0);

    // The default test policy lists "<>": a bounce relays with an empty reverse-path.
    let with = InProc::start(&up, |_| {});
    let mut c = Raw::authed(with.smtp, KEY_A);
    let r = relay(
        &mut c,
        "",
        "customer@example.net",
        &with_headers(&["From: MAILER-DAEMON@acme.example"], "bounce"),
    );
    assert!(r.starts_with("250"), "{r}");
    let msgs = wait_messages(&up, 1);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].mail_from, "");
    assert_eq!(msgs[0].mail_line, "MAIL FROM:<>");
}

// ---- recipients ----------------------------------------------------------------

#[test]
fn recipient_domains_exact_and_subdomain_rules() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |p| {
        p.set(
            "recipients.domains",
            yaml_list(&["example.net", "*.example.org"]),
        );
    });
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    assert!(c.cmd(&format!("MAIL FROM:<{FROM}>")).starts_with("250"));
    let cases = [
        ("a@example.net", true),
        ("b@sub.example.net", false),
        ("c@EXAMPLE.NET", true),
        ("d@example.org", false),
        ("e@eu.example.org", true),
        ("f@badexample.org", false),
        ("g@x.eu.EXAMPLE.org", true),
        ("h@example.net.evil.test", false),
        ("i@other.test", false),
        ("j@example.org.evil.test", false),
    ];
    for (rcpt, allowed) in cases {
        let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
        if allowed {
            assert!(r.starts_with("250"), "{rcpt}: {r}");
        } else {
            assert_eq!(r, RCPT_550, "{rcpt}");
        }
    }
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(with_headers(&[&format!("From: {FROM}")], "domains").as_bytes());
    let r = c.cmd(".");
    assert!(r.starts_with("250"), "{r}");
    let msgs = wait_messages(&up, 1);
    assert_eq!(msgs.len(), 1);
    let expected: Vec<&str> = cases
        .iter()
        .filter(|(_, ok)| *ok)
        .map(|(r, _)| *r)
        .collect();
    assert_eq!(
        msgs[0].rcpt_to, expected,
        "only the allowed recipients reach the upstream"
    );
    assert_eq!(sidecar.reject_reasons(6), ["recipient_not_allowed"; 6]);
}

#[test]
fn max_per_message_third_rcpt_is_452_and_the_message_goes_to_the_first_two() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |p| {
        p.set("recipients.max_per_message", 2);
    });
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    assert!(c.cmd(&format!("MAIL FROM:<{FROM}>")).starts_with("250"));
    assert!(c.cmd("RCPT TO:<one@example.net>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<two@example.net>").starts_with("250"));
    assert_eq!(c.cmd("RCPT TO:<three@example.net>"), RCPT_452);
    assert_eq!(c.cmd("RCPT TO:<four@example.net>"), RCPT_452);
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(with_headers(&[&format!("From: {FROM}")], "two recipients").as_bytes());
    assert!(c.cmd(".").starts_with("250"));

    // The count is per transaction: the next one may again have two.
    assert!(c.cmd(&format!("MAIL FROM:<{FROM}>")).starts_with("250"));
    assert!(c.cmd("RCPT TO:<five@example.net>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<six@example.net>").starts_with("250"));
    assert_eq!(c.cmd("RCPT TO:<seven@example.net>"), RCPT_452);
    assert!(c.cmd("RSET").starts_with("250"));

    let msgs = wait_messages(&up, 1);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].rcpt_to, vec!["one@example.net", "two@example.net"]);
    assert_eq!(sidecar.reject_reasons(3), ["too_many_recipients"; 3]);
}

// ---- header From -----------------------------------------------------------------

#[test]
fn header_from_enforce_accepts_allowed_variants_and_refuses_mismatches_after_the_dot() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |_| {});
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    let rcpt = "customer@example.net";

    let allowed: &[(&str, &[&str])] = &[
        (
            "quoted comma",
            &["From: \"Acme, Billing Dept.\" <billing@acme.example>"],
        ),
        (
            "folded",
            &["From: \"Acme Billing\"", " <billing@acme.example>"],
        ),
        (
            "encoded word",
            &["From: =?UTF-8?B?QWNtZSDDhHJnZXI=?= <billing@acme.example>"],
        ),
        ("bare address upper domain", &["From: billing@ACME.Example"]),
        (
            "lower-case name and comment",
            &["from: billing@acme.example (Billing)"],
        ),
        (
            "two allowed mailboxes",
            &["From: Billing <billing@acme.example>, Ops <ops@acme.example>"],
        ),
        (
            "after other headers",
            &[
                "Message-ID: <1@acme.example>",
                "Reply-To: x@elsewhere.example",
                "From: billing@acme.example",
            ],
        ),
    ];
    for (subject, headers) in allowed {
        let r = relay(&mut c, FROM, rcpt, &with_headers(headers, subject));
        assert!(r.starts_with("250"), "{subject}: {r}");
    }

    let refused: &[(&str, &[&str])] = &[
        ("bad-mismatch", &["From: ceo@globex.example"]),
        (
            "bad-display-name-spoof",
            &["From: \"billing@acme.example\" <ceo@globex.example>"],
        ),
        (
            "bad-one-of-two",
            &["From: billing@acme.example, ceo@globex.example"],
        ),
        (
            "bad-folded-second",
            &["From: billing@acme.example,", " ceo@globex.example"],
        ),
        ("bad-missing", &["Sender: billing@acme.example"]),
        (
            "bad-two-from",
            &["From: billing@acme.example", "From: ceo@globex.example"],
        ),
        (
            "bad-two-from-both-allowed",
            &["From: billing@acme.example", "From: ops@acme.example"],
        ),
        ("bad-space-before-colon", &["From : ceo@globex.example"]),
        ("bad-subdomain", &["From: billing@mail.acme.example"]),
    ];
    for (subject, headers) in refused {
        let r = relay(&mut c, FROM, rcpt, &with_headers(headers, subject));
        assert_eq!(r, HEADER_FROM_550, "{subject}");
        // The session goes on: the next good message relays.
        let good = format!("good after {subject}");
        let r = relay(
            &mut c,
            FROM,
            rcpt,
            &with_headers(&[&format!("From: {FROM}")], &good),
        );
        assert!(r.starts_with("250"), "{good}: {r}");
    }
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 bye\r\n");

    let mut expected: Vec<String> = allowed.iter().map(|(s, _)| s.to_string()).collect();
    expected.extend(refused.iter().map(|(s, _)| format!("good after {s}")));
    let msgs = wait_messages(&up, expected.len());
    assert_eq!(
        subjects(&up),
        expected,
        "exactly the allowed messages, in order"
    );
    // The header block reaches the upstream byte for byte (folding kept).
    let folded = String::from_utf8_lossy(&msgs[1].data).to_string();
    assert!(
        folded.starts_with("From: \"Acme Billing\"\r\n <billing@acme.example>\r\n"),
        "{folded}"
    );

    assert_eq!(
        sidecar.reject_reasons(refused.len()),
        vec!["header_from_mismatch"; refused.len()]
    );
}

#[test]
fn header_from_ignore_relays_a_mismatched_from_but_still_checks_mail_from() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |p| {
        p.set("header_from", "ignore");
    });
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    let r = relay(
        &mut c,
        FROM,
        "customer@example.net",
        &with_headers(&["From: ceo@globex.example"], "ignored"),
    );
    assert!(r.starts_with("250"), "{r}");
    let r = relay(
        &mut c,
        FROM,
        "customer@example.net",
        "Subject: no from at all\r\n\r\nbody\r\n",
    );
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(c.cmd("MAIL FROM:<ceo@globex.example>"), SENDER_550);
    let msgs = wait_messages(&up, 2);
    assert_eq!(msgs.len(), 2);
    assert!(String::from_utf8_lossy(&msgs[0].data).starts_with("From: ceo@globex.example\r\n"));
}

#[test]
fn header_from_with_python_email_and_swaks() {
    // Real clients building their own headers.
    let up = Upstream::default();
    let sidecar = Sidecar::start(&up, |_| {});
    let script = format!(
        r#"
import smtplib
from email.message import EmailMessage
from email.headerregistry import Address
s = smtplib.SMTP("{{HOST}}", {{PORT}}, timeout=20)
s.login("apikey", "{KEY_A}")
m = EmailMessage()
m["From"] = Address("Ärger, Acme", "billing", "acme.example")
m["To"] = "customer@example.net"
m["Subject"] = "python good"
m.set_content("hello")
print(s.send_message(m))
m2 = EmailMessage()
m2["From"] = Address("Acme Billing", "ceo", "globex.example")
m2["To"] = "customer@example.net"
m2["Subject"] = "python bad"
m2.set_content("hello")
try:
    s.send_message(m2, from_addr="billing@acme.example")
    print("UNEXPECTED: accepted")
except smtplib.SMTPDataError as e:
    print("refused", e.smtp_code, e.smtp_error.decode())
s.quit()
"#
    );
    let (ok, out) = python(sidecar.smtp, &script);
    assert!(ok, "{out}");
    assert!(
        out.contains("refused 550 5.7.1 header From not allowed"),
        "{out}"
    );
    assert!(!out.contains("UNEXPECTED"), "{out}");

    let (ok, out) = swaks(
        sidecar.smtp,
        &[
            "--from",
            FROM,
            "--to",
            "customer@example.net",
            "--auth",
            "LOGIN",
            "--auth-user",
            "apikey",
            "--auth-password",
            KEY_A,
            "--header",
            "From: \"Spoof\" <ceo@globex.example>",
            "--header",
            "Subject: swaks bad",
        ],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("550 5.7.1"), "{out}");
    assert_eq!(subjects(&up), ["python good"]);
}

// ---- bare line endings -----------------------------------------------------------

#[test]
fn bare_lf_reject_refuses_the_message_and_the_session_continues() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |_| {});
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    let head = format!("From: {FROM}\r\nTo: customer@example.net\r\n");
    let rcpt = "customer@example.net";

    let bad = [
        format!("{head}Subject: bad-lf-body\r\n\r\nline one\nline two\r\n"),
        format!("{head}Subject: bad-cr-body\r\n\r\nline one\rline two\r\n"),
        format!("From: {FROM}\nSubject: bad-lf-header\r\n\r\nbody\r\n"),
        // A would-be smuggled end of data and command: it is content up to
        // the real end, and only one reply comes back.
        format!("{head}Subject: bad-smuggle\r\n\r\nbody\r\n\n.\r\nRSET\r\nMAIL FROM:<{FROM}>\r\n"),
    ];
    for data in &bad {
        assert_eq!(relay(&mut c, FROM, rcpt, data), BARE_550, "{data:?}");
        assert_eq!(c.cmd("NOOP"), "250 2.0.0 ok\r\n", "in step after {data:?}");
        let r = relay(
            &mut c,
            FROM,
            rcpt,
            &format!("{head}Subject: good\r\n\r\nfine\r\n"),
        );
        assert!(r.starts_with("250"), "{r}");
    }
    let msgs = wait_messages(&up, bad.len());
    assert_eq!(subjects(&up), vec!["good"; bad.len()]);
    for m in &msgs {
        assert_eq!(
            m.data,
            format!("{head}Subject: good\r\n\r\nfine\r\n").into_bytes()
        );
    }
    assert_eq!(
        sidecar.reject_reasons(bad.len()),
        vec!["bare_lf"; bad.len()]
    );
}

#[test]
fn bare_lf_normalize_records_crlf_only_with_correct_content() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |p| {
        p.set("data.bare_lf", "normalize");
    });
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    let head = format!("From: {FROM}\r\nTo: customer@example.net\r\nSubject: normalize\r\n\r\n");
    let sent = format!(
        "{head}line one\nline two\rline three\r\n..leading dot\r\nx\n.\r\nnot the end\r\ny\r.\rz\r\nend\r\n"
    );
    let expected = format!(
        "{head}line one\r\nline two\r\nline three\r\n.leading dot\r\nx\r\n.\r\nnot the end\r\ny\r\n.\r\nz\r\nend\r\n"
    );
    let r = relay(&mut c, FROM, "customer@example.net", &sent);
    assert!(r.starts_with("250"), "{r}");
    // The session is in sync: one reply for the message, then NOOP.
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 ok\r\n");
    let msgs = wait_messages(&up, 1);
    assert_eq!(
        msgs.len(),
        1,
        "normalisation never splits one message into two"
    );
    assert_eq!(String::from_utf8_lossy(&msgs[0].data), expected);
    let data = &msgs[0].data;
    for (i, b) in data.iter().enumerate() {
        if *b == b'\n' {
            assert_eq!(data.get(i.wrapping_sub(1)), Some(&b'\r'), "bare LF at {i}");
        }
        if *b == b'\r' {
            assert_eq!(data.get(i + 1), Some(&b'\n'), "bare CR at {i}");
        }
    }
}

// ---- audit -----------------------------------------------------------------------

#[test]
fn audit_events_of_a_scripted_session() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |p| {
        p.set("recipients.domains", yaml_list(&["example.net"]));
        p.set("recipients.max_per_message", 1);
    });
    let (mut c, _) = Raw::connect(sidecar.smtp);
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    // 1. MAIL before AUTH.
    assert!(c
        .cmd(&format!("MAIL FROM:<{FROM}>"))
        .starts_with("530 5.7.0"));
    // 2. The other tenant's key.
    assert!(c
        .cmd(&format!("AUTH PLAIN {}", plain("apikey", KEY_B)))
        .starts_with("535 5.7.8"));
    assert!(c
        .cmd(&format!("AUTH PLAIN {}", plain("apikey", KEY_A)))
        .starts_with("235"));
    // 3. Sender outside the list; 4. declared size over the limit.
    assert_eq!(c.cmd("MAIL FROM:<ceo@globex.example>"), SENDER_550);
    assert!(c
        .cmd(&format!("MAIL FROM:<{FROM}> SIZE=40000000"))
        .starts_with("552 5.3.4"));
    // 5. Recipient domain; 6. too many recipients; 7. header From.
    assert!(c.cmd(&format!("MAIL FROM:<{FROM}>")).starts_with("250"));
    assert_eq!(c.cmd("RCPT TO:<someone@blocked.test>"), RCPT_550);
    assert!(c.cmd("RCPT TO:<customer@example.net>").starts_with("250"));
    assert_eq!(c.cmd("RCPT TO:<second@example.net>"), RCPT_452);
    assert!(c.cmd("DATA").starts_with("354"));
    let spoof = with_headers(&["From: ceo@globex.example"], "spoof");
    c.send(spoof.as_bytes());
    assert_eq!(c.cmd("."), HEADER_FROM_550);
    // 8. Bare LF.
    let bare = format!("From: {FROM}\r\nSubject: bare\r\n\r\na\nb\r\n");
    assert_eq!(relay(&mut c, FROM, "customer@example.net", &bare), BARE_550);
    // 9. A relayed message.
    let good = with_headers(&[&format!("From: {FROM}")], "audited");
    let final_reply = relay(&mut c, FROM, "customer@example.net", &good);
    assert!(
        final_reply.starts_with("250 2.0.0 Ok: queued as CAP"),
        "{final_reply}"
    );
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 bye\r\n");

    let msgs = wait_messages(&up, 1);
    assert_eq!(msgs.len(), 1);
    assert!(
        sidecar.wait_for(Duration::from_secs(5), |_| sidecar.events("message").len()
            >= 3)
    );
    assert_eq!(sidecar.reject_reasons(8).len(), 8);

    let rejects = sidecar.events("reject");
    let reasons: Vec<&str> = rejects
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        reasons,
        [
            "auth_required",
            "identity_mismatch",
            "sender_not_allowed",
            "message_too_large",
            "recipient_not_allowed",
            "too_many_recipients",
            "header_from_mismatch",
            "bare_lf",
        ]
    );
    let replies: Vec<&str> = rejects
        .iter()
        .map(|e| e["reply"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        replies,
        [
            "530 5.7.0 authentication required",
            "535 5.7.8 authentication credentials invalid",
            "550 5.7.1 sender not allowed for this tenant",
            "552 5.3.4 message too large",
            "550 5.7.1 recipient domain not allowed for this tenant",
            "452 4.5.3 too many recipients",
            "550 5.7.1 header From not allowed for this tenant",
            "550 5.6.11 bare CR or LF not allowed, use CRLF",
        ]
    );
    let short_pin = pin(KEY_A).trim_start_matches("sha256:")[..12].to_string();
    let session = rejects[0]["session"].clone();
    assert!(session.is_string());
    for (i, e) in rejects.iter().enumerate() {
        assert_eq!(e["tenant"], "acme", "{e}");
        assert_eq!(e["session"], session, "one session: {e}");
        assert_eq!(e["credential"], short_pin.as_str(), "{e}");
        assert_eq!(e["upstream"], up.addr().to_string(), "{e}");
        let identity = if i < 2 {
            serde_json::Value::Null
        } else {
            serde_json::json!("apikey")
        };
        assert_eq!(e["client_identity"], identity, "{e}");
    }
    assert_eq!(rejects[2]["sender_domain"], "globex.example");
    assert_eq!(rejects[4]["recipient_domain"], "blocked.test");

    let messages = sidecar.events("message");
    assert_eq!(messages.len(), 3, "{messages:?}");
    let results: Vec<(&str, &serde_json::Value)> = messages
        .iter()
        .map(|e| (e["result"].as_str().unwrap_or("?"), &e["reason"]))
        .collect();
    assert_eq!(
        results,
        [
            ("rejected", &serde_json::json!("header_from_mismatch")),
            ("rejected", &serde_json::json!("bare_lf")),
            ("relayed", &serde_json::Value::Null),
        ]
    );
    for e in &messages {
        assert_eq!(e["sender_domain"], "acme.example", "{e}");
        assert_eq!(e["recipients"], 1, "{e}");
        assert_eq!(e["session"], session, "{e}");
        assert_eq!(e["client_identity"], "apikey", "{e}");
        assert_eq!(e["credential"], short_pin.as_str(), "{e}");
        assert_eq!(e["tenant"], "acme", "{e}");
    }
    assert_eq!(messages[0]["bytes"], spoof.len());
    assert_eq!(
        messages[0]["reply"],
        "550 5.7.1 header From not allowed for this tenant"
    );
    assert_eq!(messages[2]["bytes"], good.len());
    assert_eq!(messages[2]["bytes"], msgs[0].bytes);
    assert_eq!(
        messages[2]["reply"],
        format!("250 2.0.0 Ok: queued as {}", msgs[0].queue_id)
    );
    assert_eq!(
        final_reply.trim_end(),
        messages[2]["reply"].as_str().unwrap_or("?")
    );

    // No message content in the log.
    let all = sidecar.output().join("\n");
    assert!(
        !all.contains("body of audited") && !all.contains("body of spoof"),
        "message content logged"
    );
    sidecar.assert_no_secrets();
}
