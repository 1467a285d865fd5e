//! BDAT upstream (RFC 3030): against a capture upstream offering CHUNKING
//! and PIPELINING (as Gmail and Microsoft 365 do), the message — sent by the
//! client with DATA or BDAT — reaches the upstream as BDAT chunks with the
//! exact bytes; a refused chunk fails the message and the connection; a
//! refusal decided mid-stream never lets the upstream see a LAST.
//!
//! In-process (`support::inproc`) except the Python smtplib test (a real
//! client is the point): it stays on the binary.

mod support;

use support::inproc::InProc;
use support::*;

const HEADERS: &str = "From: billing@acme.example\r\nTo: a@example.net\r\nSubject: chunks\r\n\r\n";

fn chunking_upstream() -> Upstream {
    Upstream::start(|c| c.chunking = true)
}

fn transaction(c: &mut Raw) {
    let r = c.cmd("MAIL FROM:<billing@acme.example>");
    assert!(r.starts_with("250"), "{r}");
    let r = c.cmd("RCPT TO:<a@example.net>");
    assert!(r.starts_with("250"), "{r}");
}

/// DATA from the client: `wire` is what the client sends after the 354
/// (dot-stuffed, without the end marker).
fn send_data(c: &mut Raw, wire: &[u8]) -> String {
    transaction(c);
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(wire);
    c.cmd(".")
}

fn chunk(c: &mut Raw, bytes: &[u8], last: bool) -> String {
    let head = format!(
        "BDAT {}{}\r\n",
        bytes.len(),
        if last { " LAST" } else { "" }
    );
    c.send(head.as_bytes());
    c.send(bytes);
    c.reply()
}

/// A message of about `kib` KiB: lines of 78 octets, some starting with a dot.
fn big_body(kib: usize) -> String {
    let mut body = HEADERS.to_string();
    let mut i = 0;
    while body.len() < kib * 1024 {
        if i % 50 == 0 {
            body.push_str(".a line that starts with a dot\r\n");
        }
        body.push_str(&format!("{i:08} {}\r\n", "y".repeat(68)));
        i += 1;
    }
    body
}

/// Dot-stuffs `content` for DATA (no end marker).
fn stuff(content: &str) -> String {
    content
        .split_inclusive("\r\n")
        .map(|l| {
            if l.starts_with('.') {
                format!(".{l}")
            } else {
                l.to_string()
            }
        })
        .collect()
}

#[test]
fn data_client_goes_upstream_as_bdat_with_the_exact_bytes() {
    let log = tempfile::tempdir().expect("tempdir");
    let log_dir = log.path().to_path_buf();
    let up = Upstream::start(|c| {
        c.chunking = true;
        c.log_dir = Some(log_dir);
    });
    let sidecar = InProc::start(&up, |_| {});
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    // A stuffed leading dot, a line that is a single dot (sent as ".."), 8-bit.
    let content = format!("{HEADERS}first\r\n.leading dot\r\n.\r\n..two\r\ncaf\u{e9}\r\n");
    let r = send_data(&mut c, stuff(&content).as_bytes());
    assert!(r.starts_with("250 2.0.0 Ok: queued"), "{r}");
    // A second message on the same session reuses the upstream connection.
    let r = send_data(&mut c, stuff(&content).as_bytes());
    assert!(r.starts_with("250"), "{r}");
    let msgs = wait_messages(&up, 2);
    assert_eq!(msgs.len(), 2);
    for m in &msgs {
        assert_eq!(m.verb, "BDAT");
        assert_eq!(m.chunks, 1, "a small message is one BDAT LAST");
        assert_eq!(m.data, content.as_bytes(), "raw, unstuffed content");
    }
    assert_eq!(up.server.connections(), 1);
    let activity = std::fs::read_to_string(log.path().join("tenant-a.jsonl")).expect("log");
    assert_eq!(
        activity.matches("\"verb\":\"BDAT\"").count(),
        2,
        "{activity}"
    );
}

#[test]
fn python_smtplib_message_goes_upstream_as_bdat() {
    let up = chunking_upstream();
    let sidecar = Sidecar::start(&up, |_| {});
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("{{HOST}}", {{PORT}}, timeout=20)
s.ehlo("legacy-mailer")
s.login("apikey", "{KEY_A}")
msg = "From: billing@acme.example\r\nTo: a@example.net\r\nSubject: x\r\n\r\nline\r\n.\r\n.dot\r\n"
s.sendmail("billing@acme.example", ["a@example.net"], msg)
s.quit()
print("sent")
"#
    );
    let (ok, out) = python(sidecar.smtp, &script);
    assert!(ok, "{out}");
    let msgs = wait_messages(&up, 1);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].verb, "BDAT");
    assert_eq!(
        String::from_utf8_lossy(&msgs[0].data),
        "From: billing@acme.example\r\nTo: a@example.net\r\nSubject: x\r\n\r\nline\r\n.\r\n.dot\r\n"
    );
}

#[test]
fn bdat_client_goes_upstream_as_bdat() {
    let up = chunking_upstream();
    let sidecar = InProc::start(&up, |_| {});
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    transaction(&mut c);
    assert!(chunk(&mut c, HEADERS.as_bytes(), false).starts_with("250"));
    assert!(chunk(&mut c, b"body\r\n.\r\n", false).starts_with("250"));
    let r = chunk(&mut c, b".end\r\n", true);
    assert!(r.starts_with("250 2.0.0 Ok: queued"), "{r}");
    let msgs = wait_messages(&up, 1);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].verb, "BDAT");
    assert_eq!(
        msgs[0].data,
        format!("{HEADERS}body\r\n.\r\n.end\r\n").as_bytes()
    );
}

#[test]
fn a_message_bigger_than_the_batch_goes_in_pipelined_chunks() {
    let up = chunking_upstream();
    let sidecar = InProc::start(&up, |_| {});
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    let content = big_body(600);
    let r = send_data(&mut c, stuff(&content).as_bytes());
    assert!(r.starts_with("250 2.0.0 Ok: queued"), "{r}");
    let msgs = wait_messages(&up, 1);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].verb, "BDAT");
    // 64 KiB batches: at least 600/80 chunks, the last one LAST.
    assert!(msgs[0].chunks >= 8, "chunks: {}", msgs[0].chunks);
    assert!(msgs[0].data == content.as_bytes(), "exact bytes");
    assert_eq!(up.server.connections(), 1);
}

#[test]
fn a_refused_chunk_fails_the_message_and_the_connection() {
    for n in [1usize, 3] {
        let up = Upstream::start(|c| {
            c.chunking = true;
            c.faults.bdat_reply = Some((n, "452 4.3.1 Insufficient system storage".into()));
        });
        let sidecar = InProc::start(&up, |_| {});
        let mut c = Raw::authed(sidecar.smtp, KEY_A);
        let r = send_data(&mut c, stuff(&big_body(600)).as_bytes());
        assert!(r.starts_with("452 4.3.1"), "chunk {n}: {r}");
        assert!(up.messages().is_empty());
        // The failed connection is not reused: the next message opens another.
        transaction(&mut c);
        assert_eq!(up.server.connections(), 2, "chunk {n}");
    }
    // A refused LAST: the client gets that reply, never 250.
    let up = Upstream::start(|c| {
        c.chunking = true;
        c.faults.eod_reply = Some("554 5.7.1 Message rejected".into());
    });
    let sidecar = InProc::start(&up, |_| {});
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    let r = send_data(&mut c, stuff(&big_body(200)).as_bytes());
    assert!(r.starts_with("554 5.7.1"), "{r}");
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    transaction(&mut c);
    assert!(chunk(&mut c, HEADERS.as_bytes(), true).starts_with("554 5.7.1"));
}

#[test]
fn a_refusal_decided_mid_stream_never_reaches_the_upstream() {
    let up = chunking_upstream();
    let sidecar = InProc::start(&up, |_| {});
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    // A NUL after 300 KiB: chunks were already sent upstream.
    let mut content = big_body(300);
    content.push_str("nul \0 here\r\n");
    let r = send_data(&mut c, stuff(&content).as_bytes());
    assert!(r.starts_with("550 5.6.0"), "{r}");
    // Over the size limit after several chunks (BDAT from the client).
    let sidecar2 = InProc::start(&up, |p| {
        p.set("limits.max_message_bytes", 200 * 1024);
    });
    let mut c2 = Raw::authed(sidecar2.smtp, KEY_A);
    transaction(&mut c2);
    let body = big_body(300);
    let (a, b) = body.as_bytes().split_at(150 * 1024);
    assert!(chunk(&mut c2, a, false).starts_with("250"));
    let r = chunk(&mut c2, b, true);
    assert!(r.starts_with("552"), "{r}");
    // Header From refused: nothing is sent upstream at all.
    let mut c3 = Raw::authed(sidecar.smtp, KEY_A);
    let r = send_data(&mut c3, b"From: ceo@globex.example\r\n\r\nhi\r\n");
    assert!(r.starts_with("550 5.7.1"), "{r}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(up.messages().is_empty(), "the upstream never got a LAST");
    // The session goes on with a clean message.
    let r = send_data(&mut c, stuff(&big_body(100)).as_bytes());
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(wait_messages(&up, 1).len(), 1);
}

#[test]
fn chunking_off_or_no_pipelining_uses_data() {
    let up = chunking_upstream();
    let sidecar = InProc::start(&up, |p| {
        p.set("upstream.chunking", "off");
    });
    let content = format!("{HEADERS}x\r\n.\r\n");
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    assert!(send_data(&mut c, stuff(&content).as_bytes()).starts_with("250"));
    let legacy = Upstream::start(|c| {
        c.chunking = true;
        c.faults.no_pipelining = true;
    });
    let sidecar = InProc::start(&legacy, |_| {});
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    assert!(send_data(&mut c, stuff(&content).as_bytes()).starts_with("250"));
    for up in [&up, &legacy] {
        let msgs = wait_messages(up, 1);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].verb, "DATA");
        assert_eq!(msgs[0].data, content.as_bytes());
    }
}
