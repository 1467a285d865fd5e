//! Issue 9, each finding of the attack on the released binary as a test
//! against the real binary and the recording upstream. Every test here
//! failed on the code before the typed envelope / content / admin fixes.
//! What reached the upstream is read back by smtp-proto (an independent
//! parser), not by our own.
//!
//! In-process (`support::inproc`) except the 1000-connections test, which
//! reads `/metrics` (one recorder per process) and holds the process's
//! descriptors: it stays on the real binary.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use support::inproc::InProc;
use support::*;

/// One transaction on an authenticated session; the final reply (or the
/// first refusal).
fn transaction(c: &mut Raw, mail: &str, rcpts: &[&str], content: &[u8]) -> String {
    let r = c.cmd(mail);
    if !r.starts_with("250") {
        return r;
    }
    for rcpt in rcpts {
        let r = c.cmd(rcpt);
        if !r.starts_with("250") {
            return r;
        }
    }
    let r = c.cmd("DATA");
    if !r.starts_with("354") {
        return r;
    }
    c.send(content);
    c.cmd(".")
}

fn parse_upstream(line: &str) -> smtp_proto::Request<String> {
    let wire = format!("{line}\r\n");
    smtp_proto::Request::parse(&mut wire.as_bytes().iter())
        .map(|r| r.into_owned())
        .expect("the upstream command parses")
}

#[test]
fn quoted_recipient_cannot_escape_the_domain_allow_list() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |p| {
        p.set("recipients.domains", yaml_list(&["example.net"]));
    });
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    let hostile = r#"RCPT TO:<"x@evil.example> NOTIFY=NEVER ORCPT=rfc822;z"@example.net>"#;
    let r = transaction(
        &mut c,
        "MAIL FROM:<billing@acme.example>",
        &[hostile],
        message("billing@acme.example", "hi").as_bytes(),
    );
    assert!(r.starts_with("250"), "{r}");
    let msgs = wait_messages(&up, 1);
    // The upstream got the same mailbox, re-quoted: a recipient at example.net.
    assert_eq!(
        msgs[0].rcpt_to,
        vec![r#""x@evil.example> NOTIFY=NEVER ORCPT=rfc822;z"@example.net"#]
    );
    let parsed = parse_upstream(&format!("RCPT TO:<{}>", msgs[0].rcpt_to[0]));
    let smtp_proto::Request::Rcpt { to } = parsed else {
        panic!("not a RCPT")
    };
    assert_eq!(
        to.address,
        "x@evil.example> NOTIFY=NEVER ORCPT=rfc822;z@example.net"
    );
    assert!(to.orcpt.is_none() && to.flags == 0, "no DSN parameter");
    // The plain address at the evil domain is refused.
    assert!(c.cmd("MAIL FROM:<billing@acme.example>").starts_with("250"));
    let r = c.cmd("RCPT TO:<x@evil.example>");
    assert!(r.starts_with("550 5.7.1"), "{r}");
    sidecar.assert_no_secrets();
}

#[test]
fn quoted_sender_cannot_smuggle_auth_or_envid() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |_| {});
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    let r = transaction(
        &mut c,
        r#"MAIL FROM:<"a> AUTH=victim+40globex.example ENVID=x"@acme.example>"#,
        &["RCPT TO:<customer@example.net>"],
        message("billing@acme.example", "one").as_bytes(),
    );
    assert!(r.starts_with("250"), "{r}");
    let r = transaction(
        &mut c,
        "MAIL FROM:<billing@acme.example> AUTH=<victim@globex.example> BODY=8BITMIME",
        &["RCPT TO:<customer@example.net>"],
        message("billing@acme.example", "two").as_bytes(),
    );
    assert!(r.starts_with("250"), "{r}");
    let msgs = wait_messages(&up, 2);
    for (m, address) in msgs.iter().zip([
        "a> AUTH=victim+40globex.example ENVID=x@acme.example",
        "billing@acme.example",
    ]) {
        let smtp_proto::Request::Mail { from } = parse_upstream(&m.mail_line) else {
            panic!("not a MAIL: {}", m.mail_line)
        };
        assert_eq!(from.address, address);
        assert!(from.auth.is_none() && from.env_id.is_none(), "{from:?}");
    }
    // Parameters smtpbind does not offer: 555 5.5.4, nothing upstream.
    let r = c.cmd("MAIL FROM:<billing@acme.example> ENVID=x");
    assert!(r.starts_with("555 5.5.4"), "{r}");
    let r = c.cmd("MAIL FROM:<billing@acme.example> RET=HDRS");
    assert!(r.starts_with("555 5.5.4"), "{r}");
    assert!(c.cmd("MAIL FROM:<billing@acme.example>").starts_with("250"));
    let r = c.cmd("RCPT TO:<customer@example.net> NOTIFY=NEVER");
    assert!(r.starts_with("555 5.5.4"), "{r}");
}

#[test]
fn control_characters_in_a_path_are_501_and_never_reach_the_upstream() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |_| {});
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    for bad in [
        &b"MAIL FROM:<\"a\x00b\"@acme.example>\r\n"[..],
        b"MAIL FROM:<\"a\tb\"@acme.example>\r\n",
        b"MAIL FROM:<a\x7f@acme.example>\r\n",
        b"MAIL FROM:<\"a\x1bb\"@acme.example>\r\n",
    ] {
        c.send(bad);
        let r = c.reply();
        assert!(r.starts_with("501 5.1.3"), "{bad:?}: {r}");
    }
    assert!(c.cmd("MAIL FROM:<billing@acme.example>").starts_with("250"));
    c.send(b"RCPT TO:<\"x\x00y\"@example.net>\r\n");
    let r = c.reply();
    assert!(r.starts_with("501 5.1.3"), "{r}");
    c.cmd("RSET");
    assert!(up.messages().is_empty());
}

#[test]
fn eight_bit_addresses_need_smtputf8_end_to_end() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |_| {});
    // Before any upstream connection SMTPUTF8 is not offered (not known to
    // hold end to end): an 8-bit path is 553 5.6.7, the parameter 555.
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    let r = c.cmd("MAIL FROM:<josé@acme.example>");
    assert!(r.starts_with("553 5.6.7"), "{r}");
    let r = c.cmd("MAIL FROM:<josé@acme.example> SMTPUTF8");
    assert!(r.starts_with("555 5.5.4"), "{r}");
    let r = transaction(
        &mut c,
        "MAIL FROM:<billing@acme.example>",
        &["RCPT TO:<customer@example.net>"],
        message("billing@acme.example", "ascii").as_bytes(),
    );
    assert!(r.starts_with("250"), "{r}");
    // Without SMTPUTF8 on MAIL, an 8-bit recipient is refused too.
    assert!(c.cmd("MAIL FROM:<billing@acme.example>").starts_with("250"));
    let r = c.cmd("RCPT TO:<用户@bücher.example>");
    assert!(r.starts_with("553 5.6.7"), "{r}");
    c.cmd("RSET");
    // The capture upstream offers SMTPUTF8: now the EHLO offers it and an
    // internationalized transaction is relayed, written by our serializer.
    let ehlo = c.cmd("EHLO client.test");
    assert!(ehlo.contains("SMTPUTF8"), "{ehlo}");
    let r = transaction(
        &mut c,
        "MAIL FROM:<josé@acme.example> SMTPUTF8",
        &["RCPT TO:<用户@bücher.example>"],
        "From: josé@acme.example\r\nSubject: ü\r\n\r\nhallo\r\n".as_bytes(),
    );
    assert!(r.starts_with("250"), "{r}");
    let msgs = wait_messages(&up, 2);
    assert_eq!(msgs[1].rcpt_to, vec!["用户@bücher.example"]);
    let smtp_proto::Request::Mail { from } = parse_upstream(&msgs[1].mail_line) else {
        panic!("not a MAIL")
    };
    assert_eq!(from.address, "josé@acme.example");
    assert_ne!(
        from.flags & smtp_proto::MAIL_SMTPUTF8,
        0,
        "SMTPUTF8 relayed"
    );
}

#[test]
fn nul_in_content_is_550_5_6_0_in_data_and_bdat() {
    let up = Upstream::start(|c| c.lenient_eod = true);
    for mode in ["reject", "normalize"] {
        let sidecar = InProc::start(&up, |p| {
            p.set("data.bare_lf", mode);
        });
        let mut c = Raw::authed(sidecar.smtp, KEY_A);
        for content in [
            &b"\x00From: x@evil.com\r\nFrom: billing@acme.example\r\n\r\nbody\r\n"[..],
            b"From: billing@acme.example\r\n\r\nbody\r\n\x00.\r\nMAIL FROM:<billing@acme.example>\r\n",
            b"From: billing@acme.example\r\n\r\nbo\x00dy\r\n",
        ] {
            let r = transaction(
                &mut c,
                "MAIL FROM:<billing@acme.example>",
                &["RCPT TO:<customer@example.net>"],
                content,
            );
            assert!(r.starts_with("550 5.6.0"), "{mode} {content:?}: {r}");
        }
        // BDAT: the NUL in the second chunk.
        assert!(c.cmd("MAIL FROM:<billing@acme.example>").starts_with("250"));
        assert!(c.cmd("RCPT TO:<customer@example.net>").starts_with("250"));
        let first = b"From: billing@acme.example\r\n\r\nhello ";
        c.send(format!("BDAT {}\r\n", first.len()).as_bytes());
        c.send(first);
        assert!(c.reply().starts_with("250"));
        c.send(b"BDAT 4 LAST\r\na\x00b\n");
        let r = c.reply();
        assert!(r.starts_with("550 5.6.0"), "{r}");
        assert!(c.cmd("NOOP").starts_with("250"), "session in sync");
        assert!(sidecar
            .reject_reasons(4)
            .iter()
            .all(|r| r == "malformed_content"));
    }
    assert!(
        up.messages().is_empty(),
        "no message end reached the upstream"
    );
}

#[test]
fn sender_and_resent_fields_are_checked_and_header_sections_must_be_fields() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |_| {});
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    let cases: &[(&str, &str)] = &[
        ("From: billing@acme.example\r\nSender: x@evil.example\r\n", "550 5.7.1"),
        ("Resent-From: x@evil.example\r\nFrom: billing@acme.example\r\n", "550 5.7.1"),
        ("From: billing@acme.example\r\nResent-Sender: <x@evil.example>\r\n", "550 5.7.1"),
        (
            "From: billing@acme.example\r\nResent-From: a@acme.example\r\nResent-From: x@evil.example\r\n",
            "550 5.7.1",
        ),
        ("From: billing@acme.example\r\nthis line is no field\r\n", "550 5.6.0"),
        ("From billing@acme.example Mon Jan 1 00:00:00 2026\r\nFrom: billing@acme.example\r\n", "550 5.6.0"),
        (" folded first\r\nFrom: billing@acme.example\r\n", "550 5.6.0"),
        // The same requests phrased for a parser to disagree: case, space
        // before the colon, folding, a second mailbox on a continuation line,
        // an encoded word, a second From spelled differently.
        ("FROM : billing@acme.example\r\nsender:\r\n x@evil.example\r\n", "550 5.7.1"),
        ("From: billing@acme.example,\r\n x@evil.example\r\n", "550 5.7.1"),
        ("From: =?utf-8?q?billing?= <x@evil.example>\r\n", "550 5.7.1"),
        ("RESENT-FROM: x@evil.example\r\nFrom: billing@acme.example\r\n", "550 5.7.1"),
        ("From: billing@acme.example\r\nfrom : x@evil.example\r\n", "550 5.7.1"),
        (
            "From: billing@acme.example\r\nSender: ops@acme.example\r\nResent-From: a@acme.example\r\nResent-Sender: b@acme.example\r\n",
            "250",
        ),
    ];
    for (headers, expected) in cases {
        let content = format!("{headers}Subject: t\r\n\r\nbody\r\n");
        let r = transaction(
            &mut c,
            "MAIL FROM:<billing@acme.example>",
            &["RCPT TO:<customer@example.net>"],
            content.as_bytes(),
        );
        assert!(r.starts_with(expected), "{headers:?}: {r}");
    }
    assert_eq!(
        wait_messages(&up, 1).len(),
        1,
        "only the all-allowed message"
    );
}

#[test]
fn a_key_typed_as_username_is_logged_only_as_a_hash() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |_| {});
    let (mut c, _) = Raw::connect(sidecar.smtp);
    c.cmd("EHLO x");
    let r = c.cmd(&format!("AUTH PLAIN {}", plain(KEY_B, "whatever")));
    assert!(r.starts_with("535 5.7.8"), "{r}");
    let r = c.cmd(&format!("AUTH PLAIN {}", plain("apikey", KEY_B)));
    assert!(r.starts_with("535 5.7.8"), "{r}");
    sidecar.reject_reasons(2);
    let events = sidecar.events("reject");
    let digest = hex::encode(&Sha256::digest(KEY_B.as_bytes())[..6]);
    assert_eq!(events[0]["presented_username_sha256"], digest.as_str());
    assert!(events[0].get("presented_username").is_none());
    // A username the policy knows is logged as typed.
    assert_eq!(events[1]["presented_username"], "apikey");
    assert!(!sidecar.output().join("\n").contains(KEY_B));
    sidecar.assert_no_secrets();
}

#[test]
fn auth_compares_against_the_credential_mounted_now() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |p| {
        p.set("credential.pins", yaml_list(&[&pin(KEY_A), &pin(KEY_B)]));
    });
    // Both sessions connect while key A is mounted.
    let (mut old_key, _) = Raw::connect(sidecar.smtp);
    let (mut new_key, _) = Raw::connect(sidecar.smtp);
    old_key.cmd("EHLO x");
    new_key.cmd("EHLO x");
    rotate_secret(&sidecar.secret_dir, "apikey", KEY_B);
    assert!(sidecar.wait_for(Duration::from_secs(5), |lines| lines
        .iter()
        .filter(|l| l.contains("\"event\":\"credential\""))
        .count()
        >= 2));
    let r = old_key.cmd(&format!("AUTH PLAIN {}", plain("apikey", KEY_A)));
    assert!(r.starts_with("535"), "the key no longer mounted: {r}");
    let r = new_key.cmd(&format!("AUTH PLAIN {}", plain("apikey", KEY_B)));
    assert!(r.starts_with("235"), "the key mounted now: {r}");
    let r = transaction(
        &mut new_key,
        "MAIL FROM:<billing@acme.example>",
        &["RCPT TO:<customer@example.net>"],
        message("billing@acme.example", "rotated").as_bytes(),
    );
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(wait_messages(&up, 1)[0].account, "tenant-b");
}

/// The admin port under abuse: 1,000 connections held open (idle, or
/// dripping a request's headers) while the kubelet's probes keep coming.
#[test]
fn admin_probes_answer_while_1000_connections_are_held() {
    let up = Upstream::default();
    let sidecar = Sidecar::start(&up, |_| {});
    let mut held = Vec::with_capacity(1000);
    for i in 0..1000 {
        let mut s = TcpStream::connect(sidecar.admin).expect("connect");
        if i % 2 == 1 {
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ");
        }
        held.push(s);
    }
    let mut latencies = Vec::new();
    for i in 0..30 {
        let path = if i % 2 == 0 { "/healthz" } else { "/readyz" };
        let start = Instant::now();
        let (status, _) = sidecar.http_get(path);
        latencies.push(start.elapsed());
        assert_eq!(status, 200, "probe {i} {path}");
        // The abuse goes on between probes: new idle connections.
        for _ in 0..10 {
            held.push(TcpStream::connect(sidecar.admin).expect("connect"));
        }
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() - 1];
    eprintln!("admin probes with 1000+ held connections: p50 {p50:?}, max {p99:?}");
    assert!(
        p99 < Duration::from_millis(500),
        "slowest probe {p99:?} (kubelet timeout 1 s)"
    );
    // Memory stays bounded: only the newest connections are kept open.
    let mut closed = 0;
    for s in held.iter_mut().take(900) {
        s.set_read_timeout(Some(Duration::from_millis(5))).ok();
        let mut b = [0u8; 1];
        match s.read(&mut b) {
            Ok(0) => closed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            _ => {}
        }
    }
    assert!(closed >= 850, "old held connections were closed: {closed}");
    let text = sidecar.http_get("/metrics").1;
    assert!(
        metric(
            &text,
            "smtpbind_admin_evicted_connections_total{tenant=\"acme\"}"
        ) >= 900.0
    );
}
