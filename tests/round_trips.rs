//! One round trip less to the provider (contract §4, "Round trips"): MAIL
//! is answered locally once the policy allowed it and goes upstream with
//! the first RCPT; the upstream's refusal of MAIL answers that RCPT and
//! every later one; a pooled connection found dead under the pipelined
//! envelope is replaced and the envelope replayed before DATA, with
//! exactly one message recorded upstream.
//!
//! The real binary against the capture upstream. Fault injection (the
//! capture's `mail_reply`, `stale_after` and `close_at_rcpt` switches)
//! stands in for a provider refusing a sender and for connections dying.
//!
//! In-process (`support::inproc`) except the replay test, which reads
//! `/metrics` (one Prometheus recorder per process): it stays on the binary.

mod support;

use std::time::Duration;

use support::inproc::InProc;
use support::*;

const FROM: &str = "billing@acme.example";

/// MAIL and two RCPTs, one command at a time (smtplib's way): the replies.
fn envelope_one_by_one(c: &mut Raw) -> [String; 3] {
    [
        c.cmd(&format!("MAIL FROM:<{FROM}>")),
        c.cmd("RCPT TO:<a@example.net>"),
        c.cmd("RCPT TO:<b@example.net>"),
    ]
}

/// Session `n`'s content after its 354, the 250 for it, and QUIT.
fn send_content_and_quit(c: &mut Raw, n: usize) {
    c.send(message(FROM, &format!("n={n}")).as_bytes());
    let r = c.cmd(".");
    assert!(r.starts_with("250"), "session {n}: {r}");
    assert!(c.cmd("QUIT").starts_with("221"));
}

/// Two sessions' messages recorded once each, the second (replayed) with
/// both recipients, on two connections (the dead one replaced).
fn replayed_once(up: &Upstream) {
    let msgs = wait_messages(up, 2);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(up.messages().len(), 2, "the replayed message once");
    assert_eq!(msgs[1].rcpt_to, vec!["a@example.net", "b@example.net"]);
    assert!(String::from_utf8_lossy(&msgs[1].data).contains("n=1"));
    assert_eq!(up.server.connections(), 2);
}

fn refused_mail_answers_every_rcpt(refusal: &str) {
    let up = Upstream::start(|c| c.faults.mail_reply = Some(refusal.to_string()));
    let sidecar = InProc::start(&up, |_| {});
    let want = format!("{refusal}\r\n");

    // One command at a time: seen at the first RCPT and the later ones.
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    let [mail, first, second] = envelope_one_by_one(&mut c);
    assert!(
        mail.starts_with("250 2.1.0"),
        "MAIL answered locally: {mail}"
    );
    assert_eq!(first, want);
    assert_eq!(second, want);
    assert_eq!(c.cmd("DATA"), "554 5.5.1 no valid recipients\r\n");
    assert!(c.cmd("RSET").starts_with("250"));

    // Pipelined by the client: the same answers, in order.
    c.send(
        format!("MAIL FROM:<{FROM}>\r\nRCPT TO:<a@example.net>\r\nRCPT TO:<b@example.net>\r\n")
            .as_bytes(),
    );
    assert!(c.reply().starts_with("250 2.1.0"));
    assert_eq!(c.reply(), want);
    assert_eq!(c.reply(), want);
    assert!(c.cmd("QUIT").starts_with("221"));
    assert!(up.messages().is_empty());
    assert_eq!(up.server.mail_commands(), 2, "one MAIL per transaction");
}

#[test]
fn an_upstream_4xx_to_mail_answers_the_first_rcpt_and_every_later_one() {
    refused_mail_answers_every_rcpt("451 4.7.1 sender rate limited, try later");
}

#[test]
fn an_upstream_5xx_to_mail_answers_the_first_rcpt_and_every_later_one() {
    refused_mail_answers_every_rcpt("550 5.7.1 sender identity not verified");
}

#[test]
fn a_mail_the_policy_refuses_is_550_with_nothing_sent() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |_| {});
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    assert_eq!(
        c.cmd("MAIL FROM:<ceo@globex.example>"),
        "550 5.7.1 sender not allowed for this tenant\r\n"
    );
    // RCPT after it has no transaction: refused locally, nothing sent.
    assert!(c.cmd("RCPT TO:<a@example.net>").starts_with("503"));
    assert!(c.cmd("QUIT").starts_with("221"));
    assert_eq!(up.server.mail_commands(), 0, "nothing went upstream");
    // The same session shape with an allowed sender: one MAIL upstream.
    let r = send_one(sidecar.smtp, "apikey", KEY_A, FROM, "ok");
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(up.server.mail_commands(), 1);
}

#[test]
fn a_pooled_connection_closed_while_idle_is_replaced_under_the_envelope() {
    // The provider's idle timeout is only noticed at the next command.
    let up = Upstream::start(|c| c.faults.stale_after = Some(Duration::from_millis(300)));
    let sidecar = InProc::start(&up, |_| {});
    let first = send_one(sidecar.smtp, "apikey", KEY_A, FROM, "one");
    assert!(first.starts_with("250"), "{first}");
    std::thread::sleep(Duration::from_millis(600));
    let second = send_one(sidecar.smtp, "apikey", KEY_A, FROM, "two");
    assert!(second.starts_with("250"), "{second}");
    let msgs = wait_messages(&up, 2);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(up.messages().len(), 2, "exactly one message per session");
    assert!(String::from_utf8_lossy(&msgs[1].data).contains("two"));
    assert_eq!(up.server.connections(), 2, "the stale one was replaced");
}

#[test]
fn a_pooled_connection_dying_under_the_pipelined_envelope_is_replayed() {
    // Dies when the 4th RCPT of the connection arrives: the second
    // session's second recipient, after its first was answered 250.
    let up = Upstream::start(|c| c.faults.close_at_rcpt = Some(4));
    let sidecar = Sidecar::start(&up, |_| {});
    for n in 0..2 {
        let mut c = Raw::authed(sidecar.smtp, KEY_A);
        for r in envelope_one_by_one(&mut c) {
            assert!(r.starts_with("250"), "session {n}: {r}");
        }
        assert!(c.cmd("DATA").starts_with("354"));
        send_content_and_quit(&mut c, n);
    }
    replayed_once(&up);
    assert!(sidecar.wait_for(Duration::from_secs(2), |_| {
        let (_, body) = sidecar.http_get("/metrics");
        metric(&body, "smtpbind_upstream_replays_total{tenant=\"acme\"}") == 1.0
    }));
}

/// MAIL, two RCPTs and DATA in one write (nodemailer's and Postfix's way).
fn pipelined_envelope_and_data(c: &mut Raw) -> [String; 4] {
    c.send(
        format!(
            "MAIL FROM:<{FROM}>\r\nRCPT TO:<a@example.net>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
        )
        .as_bytes(),
    );
    [c.reply(), c.reply(), c.reply(), c.reply()]
}

/// A provider with PIPELINING but not CHUNKING (SendGrid's shape): the
/// message goes upstream by DATA.
fn pipelining_only(c: &mut smtpbind::demo::capture::CaptureConfig) {
    c.chunking = false;
}

#[test]
fn a_pipelined_data_goes_upstream_behind_the_envelope() {
    // Fault injection: the upstream answers MAIL and RCPT only once the
    // next command arrives. A relay that waits for those replies before
    // writing DATA never gets them (it times out with 451).
    let up = Upstream::start(|c| {
        pipelining_only(c);
        c.faults.hold_envelope_replies = true;
    });
    let sidecar = InProc::start(&up, |_| {});
    for n in 0..2 {
        let mut c = Raw::authed(sidecar.smtp, KEY_A);
        let [mail, a, b, data] = pipelined_envelope_and_data(&mut c);
        assert!(mail.starts_with("250 2.1.0"), "session {n}: {mail}");
        assert!(a.starts_with("250 2.1.5"), "session {n}: {a}");
        assert!(b.starts_with("250 2.1.5"), "session {n}: {b}");
        assert!(data.starts_with("354"), "session {n}: {data}");
        send_content_and_quit(&mut c, n);
    }
    let msgs = wait_messages(&up, 2);
    assert_eq!(msgs[1].rcpt_to, vec!["a@example.net", "b@example.net"]);
    assert!(String::from_utf8_lossy(&msgs[1].data).contains("n=1"));
    assert_eq!(up.server.connections(), 1, "the second rode the pooled one");
}

#[test]
fn a_pipelined_data_with_every_rcpt_refused_upstream_keeps_the_connection_in_step() {
    // The upstream refuses every recipient, then DATA (503): the client
    // gets the RCPT refusals and 554; the DATA reply is read, so RSET's
    // reply is RSET's and the connection goes back to the pool.
    let up = Upstream::start(|c| {
        pipelining_only(c);
        c.faults.rcpt_reply = Some("550 5.1.1 no such user".into());
    });
    let sidecar = InProc::start(&up, |_| {});
    for n in 0..2 {
        let mut c = Raw::authed(sidecar.smtp, KEY_A);
        let [mail, a, b, data] = pipelined_envelope_and_data(&mut c);
        assert!(mail.starts_with("250 2.1.0"), "session {n}: {mail}");
        assert_eq!(a, "550 5.1.1 no such user\r\n", "session {n}");
        assert_eq!(b, "550 5.1.1 no such user\r\n", "session {n}");
        assert_eq!(data, "554 5.5.1 no valid recipients\r\n", "session {n}");
        assert!(c.cmd("RSET").starts_with("250"));
        assert!(c.cmd("QUIT").starts_with("221"));
    }
    assert!(up.messages().is_empty());
    assert_eq!(up.server.mail_commands(), 2);
    assert_eq!(
        up.server.connections(),
        1,
        "RSET read its own reply: the connection stayed in step and pooled"
    );
}

#[test]
fn a_pooled_connection_dying_under_a_pipelined_envelope_and_data_is_replayed_with_data() {
    // Dies at the connection's 3rd RCPT: the second session's second
    // recipient, with DATA written behind it. The replacement gets MAIL,
    // both RCPTs and DATA again; the provider records the message once.
    let up = Upstream::start(|c| {
        pipelining_only(c);
        c.faults.close_at_rcpt = Some(4);
    });
    let sidecar = InProc::start(&up, |_| {});
    for n in 0..2 {
        let mut c = Raw::authed(sidecar.smtp, KEY_A);
        for r in pipelined_envelope_and_data(&mut c) {
            assert!(
                r.starts_with("250") || r.starts_with("354"),
                "session {n}: {r}"
            );
        }
        send_content_and_quit(&mut c, n);
    }
    replayed_once(&up);
}

#[test]
fn a_recipient_added_after_a_refused_pipelined_data_is_replayed_without_that_data() {
    // Session 1 leaves the connection in the pool (its 1st RCPT). Session 2
    // pipelines MAIL, a RCPT the provider refuses (2nd) and DATA: 554, and
    // the provider's answer to that DATA is read. The client then adds a
    // recipient (3rd RCPT), at which the connection dies: the replay gives
    // the new connection MAIL and that RCPT — not the DATA already answered,
    // which would reach the provider as a line of the message.
    let up = Upstream::start(|c| {
        pipelining_only(c);
        c.faults.refuse_rcpt = Some(("gone@example.net".into(), "550 5.1.1 no such user".into()));
        c.faults.close_at_rcpt = Some(3);
    });
    let sidecar = InProc::start(&up, |_| {});
    let r = send_one(sidecar.smtp, "apikey", KEY_A, FROM, "first");
    assert!(r.starts_with("250"), "{r}");

    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    c.send(format!("MAIL FROM:<{FROM}>\r\nRCPT TO:<gone@example.net>\r\nDATA\r\n").as_bytes());
    assert!(c.reply().starts_with("250 2.1.0"));
    assert_eq!(c.reply(), "550 5.1.1 no such user\r\n");
    assert_eq!(c.reply(), "554 5.5.1 no valid recipients\r\n");
    let r = c.cmd("RCPT TO:<a@example.net>");
    assert!(r.starts_with("250 2.1.5"), "{r}");
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(message(FROM, "second").as_bytes());
    let r = c.cmd(".");
    assert!(r.starts_with("250"), "{r}");
    assert!(c.cmd("QUIT").starts_with("221"));

    let msgs = wait_messages(&up, 2);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(up.messages().len(), 2);
    assert_eq!(msgs[1].rcpt_to, vec!["a@example.net"]);
    let data = String::from_utf8_lossy(&msgs[1].data).to_string();
    assert!(data.contains("second"), "{data}");
    assert!(
        !data.starts_with("DATA"),
        "a stale DATA became the message's first line: {data}"
    );
    assert_eq!(up.server.connections(), 2, "the dead one was replaced");
}
