//! BDAT/CHUNKING from the client, relayed as DATA (re-stuffed) to an
//! upstream without CHUNKING (the capture's default; tests/chunking.rs
//! covers BDAT upstream), with the same policy as DATA — including SMTP smuggling
//! attempts across chunks, against a smuggling-vulnerable upstream.
//!
//! In-process (`support::inproc`): the app built and served in this test's
//! process; the client is a raw socket, so the binary is not the point.

mod support;

use support::inproc::InProc;
use support::*;

fn bdat_session(sidecar: &InProc) -> Raw {
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    assert!(c.cmd("MAIL FROM:<billing@acme.example>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<a@example.net>").starts_with("250"));
    c
}

fn chunk(c: &mut Raw, bytes: &[u8], last: bool) -> String {
    let cmd = format!(
        "BDAT {}{}\r\n",
        bytes.len(),
        if last { " LAST" } else { "" }
    );
    c.send(cmd.as_bytes());
    c.send(bytes);
    c.reply()
}

const HEADERS: &[u8] =
    b"From: billing@acme.example\r\nTo: a@example.net\r\nSubject: chunks\r\n\r\n";

#[test]
fn chunks_are_relayed_as_one_message() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |_| {});
    let mut c = bdat_session(&sidecar);
    assert!(chunk(&mut c, HEADERS, false).starts_with("250 2.0.0 "));
    assert!(chunk(&mut c, b"first line\r", false).starts_with("250"));
    assert!(chunk(&mut c, b"\n.leading dot\r\n", false).starts_with("250"));
    let r = chunk(&mut c, b"", true);
    assert!(r.starts_with("250 2.0.0 Ok: queued"), "{r}");
    let msgs = wait_messages(&up, 1);
    assert_eq!(msgs.len(), 1);
    let mut expect = HEADERS.to_vec();
    expect.extend_from_slice(b"first line\r\n.leading dot\r\n");
    assert_eq!(
        msgs[0].data, expect,
        "CR|LF split across chunks is one CRLF; dots survive"
    );
}

#[test]
fn pipelined_bdat_in_one_write() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |_| {});
    let mut c = bdat_session(&sidecar);
    let mut w = format!("BDAT {}\r\n", HEADERS.len()).into_bytes();
    w.extend_from_slice(HEADERS);
    w.extend_from_slice(b"BDAT 6 LAST\r\nhello\nNOOP\r\n");
    c.send(&w);
    assert!(c.reply().starts_with("250"));
    // "hello\n" has a bare LF: refused with the policy's default, reject.
    assert!(c.reply().starts_with("550 5.6.11"));
    assert!(c.reply().starts_with("250"), "NOOP after the chunk");
    assert!(up.messages().is_empty());
}

#[test]
fn smuggling_inside_a_chunk_stays_content_of_one_message() {
    let up = Upstream::start(|c| c.lenient_eod = true);
    let sidecar = InProc::start(&up, |_| {});
    let mut c = bdat_session(&sidecar);
    let mut body = HEADERS.to_vec();
    body.extend_from_slice(b"legit\r\n.\r\nMAIL FROM:<billing@acme.example>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nSMUGGLED\r\n");
    let r = chunk(&mut c, &body, true);
    assert!(r.starts_with("250"), "{r}");
    let msgs = wait_messages(&up, 1);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].rcpt_to, vec!["a@example.net"]);
    assert_eq!(
        msgs[0].data, body,
        "the upstream got the chunk's bytes as content, dot-stuffed on the wire"
    );
}

#[test]
fn bare_line_endings_across_chunks_reject_and_normalize() {
    for (mode, variant) in [
        ("reject", &b"\n.\n"[..]),
        ("reject", b"\r.\r"),
        ("reject", b"\r\n.\n"),
        ("normalize", b"\n.\n"),
        ("normalize", b"\r.\r"),
    ] {
        let up = Upstream::start(|c| c.lenient_eod = true);
        let sidecar = InProc::start(&up, |p| {
            p.set("data.bare_lf", mode);
        });
        let mut c = bdat_session(&sidecar);
        assert!(chunk(&mut c, HEADERS, false).starts_with("250"));
        // The variant split across two chunks.
        let mut first = b"legit".to_vec();
        first.extend_from_slice(&variant[..1]);
        let mut second = variant[1..].to_vec();
        second.extend_from_slice(
            b"MAIL FROM:<x@acme.example>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\n",
        );
        let r1 = chunk(&mut c, &first, false);
        let r2 = if r1.starts_with("250") {
            chunk(&mut c, &second, true)
        } else {
            r1.clone()
        };
        if mode == "reject" {
            assert!(
                r1.starts_with("550 5.6.11") || r2.starts_with("550 5.6.11"),
                "{variant:?}: {r1} {r2}"
            );
            assert!(up.messages().is_empty());
            // The transaction is over: more chunks are refused.
            assert!(chunk(&mut c, b"x", true).starts_with("503"));
        } else {
            assert!(r2.starts_with("250"), "{variant:?}: {r2}");
            let msgs = wait_messages(&up, 1);
            assert_eq!(msgs.len(), 1);
            assert_eq!(msgs[0].rcpt_to, vec!["a@example.net"]);
            let flat = msgs[0].data.replace_crlf();
            assert!(
                !flat.contains(&b'\n') && !flat.contains(&b'\r'),
                "{variant:?}: only CRLF"
            );
        }
    }
}

#[test]
fn header_from_and_size_apply_to_bdat() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |p| {
        p.set("limits.max_message_bytes", 2048);
    });
    let mut c = bdat_session(&sidecar);
    let r = chunk(&mut c, b"From: ceo@globex.example\r\n\r\nhi\r\n", true);
    assert!(r.starts_with("550 5.7.1"), "{r}");
    let mut c = bdat_session(&sidecar);
    assert!(chunk(&mut c, HEADERS, false).starts_with("250"));
    let big = "x".repeat(998) + "\r\n";
    let r = chunk(&mut c, big.repeat(3).as_bytes(), false);
    assert!(r.starts_with("552 5.3.4"), "{r}");
    assert!(up.messages().is_empty());
    let reasons: Vec<String> = sidecar
        .events("reject")
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(reasons, ["header_from_mismatch", "message_too_large"]);
}

#[test]
fn rset_mid_bdat_drops_the_upstream_message() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |p| {
        p.set("header_from", "ignore");
    });
    let mut c = bdat_session(&sidecar);
    assert!(chunk(&mut c, HEADERS, false).starts_with("250"));
    assert!(chunk(&mut c, b"partial body\r\n", false).starts_with("250"));
    assert!(c.cmd("DATA").starts_with("503"), "DATA during BDAT");
    assert!(c.cmd("RSET").starts_with("250"));
    // A fresh transaction still works, on a new upstream connection.
    assert!(c.cmd("MAIL FROM:<billing@acme.example>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<a@example.net>").starts_with("250"));
    let mut msg = HEADERS.to_vec();
    msg.extend_from_slice(b"complete\r\n");
    assert!(chunk(&mut c, &msg, true).starts_with("250"));
    let msgs = wait_messages(&up, 1);
    assert_eq!(msgs.len(), 1);
    assert!(String::from_utf8_lossy(&msgs[0].data).contains("complete"));
    assert!(!String::from_utf8_lossy(&msgs[0].data).contains("partial"));
}

trait ReplaceCrlf {
    fn replace_crlf(&self) -> Vec<u8>;
}

impl ReplaceCrlf for Vec<u8> {
    /// The bytes with every CRLF removed (what is left must have no CR/LF).
    fn replace_crlf(&self) -> Vec<u8> {
        String::from_utf8_lossy(self)
            .replace("\r\n", "")
            .into_bytes()
    }
}

/// Issue 19 item 7: a refused first chunk is skipped only up to the
/// largest message the policy accepts; a larger one gets its refusal and
/// the session is closed instead of reading without end.
#[test]
fn a_refused_first_chunk_is_skipped_with_a_cap() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |p| {
        p.set("limits.max_message_bytes", 4096);
    });
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    // No MAIL: refused; a small chunk is skipped and the session goes on.
    c.send(b"BDAT 10\r\n0123456789");
    assert!(c.reply().starts_with("503"), "refused without MAIL");
    assert!(
        c.cmd("NOOP").starts_with("250"),
        "resynchronised after the chunk"
    );
    // A chunk larger than any acceptable message: refused, then closed
    // (not read for ever).
    c.send(b"BDAT 1000000000\r\n");
    c.send(&[b'x'; 1024]);
    let r = c.reply();
    assert!(r.starts_with("503"), "{r}");
    assert!(
        c.closed(),
        "the session must end instead of skipping without a bound"
    );
}

/// A RCPT between two BDAT chunks is a sequence error, answered 503 as
/// DATA is there, and never reaches the upstream: the message is on its
/// way (buffered, or upstream as DATA or BDAT chunks). Before, it went
/// upstream mid-message: into the DATA stream (its reply then waited for
/// until `reply_timeout`, the message lost) or, to a BDAT upstream, as a
/// recipient added after the message had started.
#[test]
fn rcpt_between_chunks_is_refused() {
    for chunking in [false, true] {
        let up = Upstream::start(|c| c.chunking = chunking);
        let sidecar = InProc::start(&up, |_| {});
        let mut c = bdat_session(&sidecar);
        assert!(chunk(&mut c, HEADERS, false).starts_with("250"));
        let r = c.cmd("RCPT TO:<b@example.net>");
        assert!(r.starts_with("503 5.5.1 BDAT"), "chunking {chunking}: {r}");
        let r = chunk(&mut c, b"body\r\n", true);
        assert!(
            r.starts_with("250 2.0.0 Ok: queued"),
            "chunking {chunking}: {r}"
        );
        let msgs = wait_messages(&up, 1);
        assert_eq!(msgs[0].rcpt_to, vec!["a@example.net"]);
        let mut expect = HEADERS.to_vec();
        expect.extend_from_slice(b"body\r\n");
        assert_eq!(msgs[0].data, expect, "chunking {chunking}");
    }
}
