//! SMTP smuggling: every non-CRLF end-of-data variant, followed by a second
//! transaction inside the same DATA. The upstream here is deliberately
//! vulnerable (`lenient_eod`: it ends data at any `<CR|LF>.<CR|LF>`), so a
//! smuggled message would be recorded. It must never be.
//!
//! In-process (`support::inproc`): raw sockets against the app built and
//! served in this test's process; the binary is not the point.

mod support;

use support::inproc::InProc;
use support::*;

const VARIANTS: &[(&str, &[u8])] = &[
    ("LF.LF", b"\n.\n"),
    ("LF.CRLF", b"\n.\r\n"),
    ("CR.CR", b"\r.\r"),
    ("CRLF.CR", b"\r\n.\r"),
    ("CRLF.LF", b"\r\n.\n"),
    ("CR.CRLF", b"\r.\r\n"),
    ("LF.CR", b"\n.\r"),
    ("CRLF.NUL.CRLF", b"\r\n\x00.\r\n"),
    ("CRLF.CR.CRLF", b"\r\n.\r\r\n"),
];

fn smuggled_payload(variant: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(
        b"From: billing@acme.example\r\nTo: a@example.net\r\nSubject: legit\r\n\r\nlegit body",
    );
    p.extend_from_slice(variant);
    p.extend_from_slice(
        b"MAIL FROM:<billing@acme.example>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nFrom: billing@acme.example\r\nSubject: smuggled\r\n\r\nSMUGGLED\r\n",
    );
    p.extend_from_slice(b"\r\n.\r\n");
    p
}

fn send(sidecar: &InProc, payload: &[u8], split_at: Option<usize>) -> String {
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    assert!(c.cmd("MAIL FROM:<billing@acme.example>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<a@example.net>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    match split_at {
        Some(at) => {
            c.send(&payload[..at]);
            std::thread::sleep(std::time::Duration::from_millis(30));
            c.send(&payload[at..]);
        }
        None => c.send(payload),
    }
    let reply = c.reply();
    // The session is still in sync: the next command is answered as a command.
    assert!(
        c.cmd("NOOP").starts_with("250"),
        "session out of sync after {reply}"
    );
    reply
}

#[test]
fn reject_mode_refuses_every_variant_and_the_upstream_gets_nothing() {
    let up = Upstream::start(|c| c.lenient_eod = true);
    let sidecar = InProc::start(&up, |p| {
        p.set("data.bare_lf", "reject");
    });
    for (name, variant) in VARIANTS {
        let payload = smuggled_payload(variant);
        let reply = send(&sidecar, &payload, None);
        if name.contains("NUL") {
            // No bare line ending, but a NUL (a receiver that strips it
            // reads CRLF.CRLF): refused as content, 550 5.6.0.
            assert!(reply.starts_with("550 5.6.0"), "{name}: {reply}");
        } else {
            assert!(reply.starts_with("550 5.6.11"), "{name}: {reply}");
        }
    }
    let msgs = up.messages();
    assert!(msgs
        .iter()
        .all(|m| !m.rcpt_to.contains(&"victim@example.net".to_string())));
    assert_eq!(msgs.len(), 0, "every variant refused, nothing recorded");
    assert!(sidecar
        .events("reject")
        .iter()
        .all(|e| e["reason"] == "bare_lf" || e["reason"] == "malformed_content"));
}

#[test]
fn normalize_mode_delivers_exactly_one_message_per_data() {
    normalize_delivers_one_message(false);
}

/// The same through BDAT upstream (a provider offering CHUNKING): the
/// smuggled text reaches it as content of the one approved message, with
/// CRLF line endings only, in raw chunks no end-of-data parser reads.
#[test]
fn normalize_mode_delivers_exactly_one_message_per_data_over_bdat_upstream() {
    normalize_delivers_one_message(true);
}

fn normalize_delivers_one_message(chunking: bool) {
    let up = Upstream::start(|c| {
        c.lenient_eod = true;
        c.chunking = chunking;
    });
    let sidecar = InProc::start(&up, |p| {
        p.set("data.bare_lf", "normalize");
    });
    let variants = VARIANTS.iter().filter(|(name, _)| !name.contains("NUL"));
    for (i, (name, variant)) in variants.enumerate() {
        let payload = smuggled_payload(variant);
        let reply = send(&sidecar, &payload, None);
        assert!(reply.starts_with("250"), "{name}: {reply}");
        let msgs = wait_messages(&up, i + 1);
        assert_eq!(msgs.len(), i + 1, "{name}: exactly one message per DATA");
        let last = &msgs[i];
        assert_eq!(last.rcpt_to, vec!["a@example.net"], "{name}");
        assert_eq!(last.verb, if chunking { "BDAT" } else { "DATA" }, "{name}");
        let data = String::from_utf8_lossy(&last.data);
        assert!(
            data.contains("SMUGGLED"),
            "{name}: the smuggled text stays content of the one message"
        );
        assert!(
            !data.replace("\r\n", "").contains(['\r', '\n']),
            "{name}: only CRLF line endings: {data:?}"
        );
    }
    assert!(up
        .messages()
        .iter()
        .all(|m| !m.rcpt_to.contains(&"victim@example.net".to_string())));
}

#[test]
fn variants_split_across_reads_behave_the_same() {
    let up = Upstream::start(|c| c.lenient_eod = true);
    let sidecar = InProc::start(&up, |p| {
        p.set("data.bare_lf", "normalize");
    });
    let mut sent = 0;
    for (name, variant) in VARIANTS.iter().take(5) {
        let payload = smuggled_payload(variant);
        let at = payload
            .windows(variant.len())
            .position(|w| w == *variant)
            .expect("variant")
            + 1;
        let reply = send(&sidecar, &payload, Some(at));
        assert!(reply.starts_with("250"), "{name}: {reply}");
        sent += 1;
    }
    let msgs = wait_messages(&up, sent);
    assert_eq!(msgs.len(), sent);
    assert!(msgs.iter().all(|m| m.rcpt_to == vec!["a@example.net"]));
}

#[test]
fn a_dot_line_inside_the_message_is_stuffed_for_the_upstream() {
    let up = Upstream::start(|c| c.lenient_eod = true);
    let sidecar = InProc::start(&up, |_| {});
    // A properly stuffed ".." line must reach the upstream stuffed again.
    let payload = b"From: billing@acme.example\r\n\r\nbefore\r\n..\r\nafter\r\n.\r\n";
    let reply = send(&sidecar, payload, None);
    assert!(reply.starts_with("250"), "{reply}");
    let msgs = wait_messages(&up, 1);
    assert_eq!(msgs.len(), 1);
    assert!(String::from_utf8_lossy(&msgs[0].data).ends_with("before\r\n.\r\nafter\r\n"));
}

/// The attacker's phrasing with pipelining: MAIL, RCPT, DATA and the
/// payload (a smuggling variant with a second transaction inside) in one
/// write, before any 354, then a second real transaction to a recipient
/// the policy refuses. DATA goes upstream behind the RCPT (issue 22), the
/// content only after the upstream's 354: the upstream records exactly
/// one message per approved transaction, to the approved recipient, and
/// hears no MAIL for the refused one.
#[test]
fn everything_pipelined_in_one_write_delivers_only_what_was_approved() {
    let up = Upstream::start(|c| c.lenient_eod = true);
    let sidecar = InProc::start(&up, |p| {
        p.set("data.bare_lf", "normalize")
            .set("recipients.domains", yaml_list(&["example.net"]));
    });
    let variants: Vec<_> = VARIANTS
        .iter()
        .filter(|(name, _)| !name.contains("NUL"))
        .collect();
    for (name, variant) in &variants {
        let mut c = Raw::authed(sidecar.smtp, KEY_A);
        let mut w =
            b"MAIL FROM:<billing@acme.example>\r\nRCPT TO:<a@example.net>\r\nDATA\r\n".to_vec();
        w.extend_from_slice(&smuggled_payload(variant));
        w.extend_from_slice(
            b"MAIL FROM:<billing@acme.example>\r\nRCPT TO:<victim@example.net.evil.test>\r\nRSET\r\n",
        );
        c.send(&w);
        let replies: Vec<String> = (0..7).map(|_| c.reply()).collect();
        let codes: Vec<&str> = replies.iter().map(|r| r.get(..3).unwrap_or("")).collect();
        assert_eq!(
            codes,
            ["250", "250", "354", "250", "250", "550", "250"],
            "{name}: {replies:?}"
        );
        assert!(c.cmd("QUIT").starts_with("221"));
    }
    let msgs = wait_messages(&up, variants.len());
    std::thread::sleep(std::time::Duration::from_millis(200));
    let msgs_now = up.messages();
    assert_eq!(
        msgs_now.len(),
        variants.len(),
        "one message per approved DATA"
    );
    for m in &msgs {
        assert_eq!(m.rcpt_to, vec!["a@example.net"]);
        assert_eq!(m.verb, "DATA");
        assert!(String::from_utf8_lossy(&m.data).contains("SMUGGLED"));
    }
    assert_eq!(
        up.server.mail_commands(),
        variants.len(),
        "no MAIL upstream for the transaction whose only RCPT was refused"
    );
}
