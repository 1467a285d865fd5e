//! End-to-end relay through the real binary with real clients (swaks, curl,
//! Python smtplib) to the recording upstream over verified STARTTLS.
//!
//! The tests with a raw client run in-process (`support::inproc`); the
//! swaks, curl and Python smtplib tests (a real client is the point) stay on
//! the real binary.

mod support;

use support::inproc::InProc;
use support::*;

const SWAKS_BASE: &[&str] = &[
    "--from",
    "billing@acme.example",
    "--to",
    "customer@example.net",
];

#[test]
fn the_incident_own_key_relays_other_tenants_key_is_refused_with_nothing_upstream() {
    let up = Upstream::default();
    let sidecar = Sidecar::start(&up, |_| {});

    // Tenant B's key, same host/port/TLS/username "apikey", presented to tenant A's pod.
    let mut args = SWAKS_BASE.to_vec();
    args.extend([
        "--auth",
        "LOGIN",
        "--auth-user",
        "apikey",
        "--auth-password",
        KEY_B,
    ]);
    let (ok, out) = swaks(sidecar.smtp, &args);
    assert!(!ok, "{out}");
    assert!(out.contains("535 5.7.8"), "{out}");
    assert_eq!(
        up.server.connections(),
        0,
        "no upstream connection for an unbound session"
    );
    assert!(up.messages().is_empty());

    // Tenant A's own key: relayed and recorded under tenant A's account.
    let mut args = SWAKS_BASE.to_vec();
    args.extend([
        "--auth",
        "LOGIN",
        "--auth-user",
        "apikey",
        "--auth-password",
        KEY_A,
    ]);
    let (ok, out) = swaks(sidecar.smtp, &args);
    assert!(ok, "{out}");
    assert!(out.contains("250 2.0.0 Ok: queued as CAP"), "{out}");
    let msgs = wait_messages(&up, 1);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].account, "tenant-a");
    assert!(msgs[0].tls);
    assert_eq!(msgs[0].rcpt_to, vec!["customer@example.net"]);
    assert!(up
        .server
        .auth_attempts()
        .iter()
        .all(|a| a.tls && a.account.as_deref() == Some("tenant-a")));

    let rejects = sidecar.events("reject");
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(rejects[0]["reason"], "identity_mismatch");
    sidecar.assert_no_secrets();
}

#[test]
fn swaks_pipelining_and_auth_plain_variants() {
    let up = Upstream::default();
    let sidecar = Sidecar::start(&up, |_| {});
    for auth in [
        vec!["--auth", "PLAIN", "--pipeline"],
        vec!["--auth", "LOGIN", "--pipeline"],
        // AUTH PLAIN without an initial response (334 then the response).
        vec!["--auth", "PLAIN", "--auth-plaintext"],
    ] {
        let mut args = SWAKS_BASE.to_vec();
        args.extend(auth.iter().copied());
        args.extend(["--auth-user", "apikey", "--auth-password", KEY_A]);
        let (ok, out) = swaks(sidecar.smtp, &args);
        assert!(ok, "{auth:?}: {out}");
        assert!(out.contains("queued as"), "{out}");
    }
    let msgs = wait_messages(&up, 3);
    assert_eq!(msgs.len(), 3);
    assert!(msgs.iter().all(|m| m.account == "tenant-a"));
}

#[test]
fn curl_auth_plain_relays() {
    let up = Upstream::default();
    let sidecar = Sidecar::start(&up, |_| {});
    let (ok, out) = curl(
        sidecar.smtp,
        KEY_A,
        "billing@acme.example",
        "customer@example.net",
        &message("billing@acme.example", "hello from curl"),
    );
    assert!(ok, "{out}");
    let msgs = wait_messages(&up, 1);
    assert_eq!(msgs.len(), 1);
    assert!(String::from_utf8_lossy(&msgs[0].data).contains("hello from curl"));
    // The other tenant's key over curl is refused.
    let (ok, out) = curl(
        sidecar.smtp,
        KEY_B,
        "billing@acme.example",
        "customer@example.net",
        &message("billing@acme.example", "x"),
    );
    assert!(!ok, "{out}");
    assert_eq!(up.messages().len(), 1);
}

#[test]
fn python_smtplib_sends_several_messages_in_one_session() {
    let up = Upstream::default();
    let sidecar = Sidecar::start(&up, |_| {});
    let script = format!(
        r#"
import smtplib
from email.message import EmailMessage
s = smtplib.SMTP("{{HOST}}", {{PORT}}, timeout=20)
s.ehlo("legacy-mailer")
s.login("apikey", "{KEY_A}")
for i in range(3):
    m = EmailMessage()
    m["From"] = '"Acme Billing" <billing@acme.example>'
    m["To"] = "customer{{}}@example.net".format(i)
    m["Subject"] = "invoice %d" % i
    m.set_content("line one\n.leading dot\n..two dots\n")
    s.send_message(m)
s.quit()
print("sent")
"#
    );
    let (ok, out) = python(sidecar.smtp, &script);
    assert!(ok, "{out}");
    let msgs = wait_messages(&up, 3);
    assert_eq!(msgs.len(), 3);
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m.rcpt_to, vec![format!("customer{i}@example.net")]);
        let body = String::from_utf8_lossy(&m.data);
        assert!(
            body.contains("\r\n.leading dot\r\n..two dots\r\n"),
            "dot-stuffing round trip: {body}"
        );
    }
    // One session, one upstream connection: no reconnect per message.
    assert_eq!(up.server.connections(), 1);
}

#[test]
fn mail_before_auth_is_530_and_auth_param_is_never_forwarded() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |_| {});
    let (mut c, _) = Raw::connect(sidecar.smtp);
    assert!(c.cmd("EHLO x").contains("AUTH PLAIN LOGIN"));
    assert!(c
        .cmd("MAIL FROM:<billing@acme.example>")
        .starts_with("530 5.7.0"));
    assert_eq!(up.server.connections(), 0);
    let r = c.cmd(&format!("AUTH PLAIN {}", plain("apikey", KEY_A)));
    assert!(r.starts_with("235"), "{r}");
    assert!(c
        .cmd("MAIL FROM:<billing@acme.example> AUTH=<billing@acme.example>")
        .starts_with("250"));
    assert!(c.cmd("RCPT TO:<customer@example.net>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(message("billing@acme.example", "hi").as_bytes());
    let r = c.cmd(".");
    assert!(r.starts_with("250"), "{r}");
    let msgs = wait_messages(&up, 1);
    assert_eq!(msgs[0].mail_line, "MAIL FROM:<billing@acme.example>");
    assert!(c.cmd("QUIT").starts_with("221"));
}

#[test]
fn pipelined_envelope_in_one_write_gets_replies_in_order() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |_| {});
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    // MAIL, three RCPT (one outside no policy, one malformed) and DATA in one write.
    c.send(
        b"MAIL FROM:<billing@acme.example>\r\nRCPT TO:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nRCPT TO:<bad address>\r\nDATA\r\n",
    );
    let replies: Vec<String> = (0..5).map(|_| c.reply()).collect();
    assert!(replies[0].starts_with("250"), "{replies:?}");
    assert!(replies[1].starts_with("250"), "{replies:?}");
    assert!(replies[2].starts_with("250"), "{replies:?}");
    assert!(
        replies[3].starts_with("553") || replies[3].starts_with("501"),
        "{replies:?}"
    );
    assert!(replies[4].starts_with("354"), "{replies:?}");
    c.send(
        format!(
            "{}.\r\nQUIT\r\n",
            message("billing@acme.example", "pipelined")
        )
        .as_bytes(),
    );
    assert!(c.reply().starts_with("250"));
    assert!(c.reply().starts_with("221"));
    let msgs = wait_messages(&up, 1);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].rcpt_to, vec!["a@example.net", "b@example.org"]);
}

#[test]
fn simple_verbs_and_unknown_commands() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |_| {});
    let (mut c, greeting) = Raw::connect(sidecar.smtp);
    assert!(greeting.starts_with("220 "), "{greeting}");
    assert!(
        c.cmd("MAIL FROM:<billing@acme.example>").starts_with("503"),
        "EHLO first"
    );
    let ehlo = c.cmd("EHLO x");
    for cap in [
        "CHUNKING",
        "PIPELINING",
        "SIZE 31457280",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "AUTH PLAIN LOGIN",
    ] {
        assert!(ehlo.contains(cap), "{ehlo}");
    }
    for absent in ["STARTTLS", "SMTPUTF8", "DSN"] {
        assert!(!ehlo.contains(absent), "{ehlo}");
    }
    assert!(c.cmd("HELO x").starts_with("250"));
    assert!(c.cmd("NOOP").starts_with("250"));
    assert!(c.cmd("RSET").starts_with("250"));
    assert!(c.cmd("VRFY someone").starts_with("252"));
    assert!(c.cmd("HELP").starts_with("214"));
    assert!(c.cmd("EXPN list").starts_with("502"));
    assert!(
        c.cmd("BDAT 0 LAST").starts_with("503"),
        "BDAT needs a transaction"
    );
    assert!(c.cmd("STARTTLS").starts_with("502"));
    assert!(c.cmd("FROBNICATE").starts_with("500"));
    assert!(c.cmd("AUTH CRAM-MD5").starts_with("504"));
    assert!(c.cmd("RCPT TO:<a@example.net>").starts_with("503"));
    assert!(c.cmd("DATA").starts_with("503"));
    assert!(c.cmd("AUTH PLAIN !!!notbase64").starts_with("501"));
    assert!(c.cmd("AUTH LOGIN").starts_with("334"));
    assert!(c.cmd("*").starts_with("501"), "cancelled");
    assert!(c.cmd("QUIT").starts_with("221"));
    assert!(c.closed());
    assert_eq!(up.server.connections(), 0);
}

#[test]
fn three_failed_auths_close_the_session() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |_| {});
    let (mut c, _) = Raw::connect(sidecar.smtp);
    c.cmd("EHLO x");
    for _ in 0..2 {
        assert!(c
            .cmd(&format!("AUTH PLAIN {}", plain("apikey", KEY_B)))
            .starts_with("535 5.7.8"));
    }
    let last = c.cmd(&format!("AUTH PLAIN {}", plain("apikey", KEY_B)));
    assert!(last.starts_with("535"), "{last}");
    let bye = c.reply();
    assert!(bye.starts_with("421 4.7.0"), "{bye}");
    assert!(c.closed());
    assert_eq!(sidecar.events("reject").len(), 3);
    sidecar.assert_no_secrets();
}

#[test]
fn auth_none_binds_any_local_client_but_still_enforces_senders() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |p| {
        p.set("client.auth", "none");
    });
    let (mut c, _) = Raw::connect(sidecar.smtp);
    let ehlo = c.cmd("EHLO x");
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    assert!(c
        .cmd("MAIL FROM:<ceo@globex.example>")
        .starts_with("550 5.7.1"));
    assert!(c.cmd("MAIL FROM:<billing@acme.example>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<x@example.net>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(message("billing@acme.example", "no auth").as_bytes());
    assert!(c.cmd(".").starts_with("250"));
    assert_eq!(wait_messages(&up, 1)[0].account, "tenant-a");
}

#[test]
fn upstream_reply_codes_pass_through_unchanged() {
    let up = Upstream::start(|c| {
        c.faults.rcpt_reply = Some("550 5.1.1 mailbox unavailable".into());
    });
    let sidecar = InProc::start(&up, |_| {});
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    assert!(c.cmd("MAIL FROM:<billing@acme.example>").starts_with("250"));
    let r = c.cmd("RCPT TO:<gone@example.net>");
    assert_eq!(r, "550 5.1.1 mailbox unavailable\r\n");
    assert!(
        c.cmd("DATA").starts_with("554 5.5.1"),
        "no valid recipients"
    );

    let up = Upstream::start(|c| {
        c.faults.eod_reply = Some("451 4.3.0 try later".into());
    });
    let sidecar = InProc::start(&up, |_| {});
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    c.cmd("MAIL FROM:<billing@acme.example>");
    c.cmd("RCPT TO:<a@example.net>");
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(message("billing@acme.example", "x").as_bytes());
    assert_eq!(c.cmd("."), "451 4.3.0 try later\r\n");
    assert!(
        sidecar.wait_for(std::time::Duration::from_secs(2), |_| !sidecar
            .events("message")
            .is_empty())
    );
    assert_eq!(sidecar.events("message")[0]["result"], "failed");
}

#[test]
fn pipelined_envelope_with_and_without_upstream_pipelining_and_a_refused_mail() {
    for no_pipelining in [false, true] {
        let up = Upstream::start(|c| {
            c.faults.no_pipelining = no_pipelining;
            c.faults.mail_reply = Some("451 4.7.1 sender rate limited".into());
        });
        let sidecar = InProc::start(&up, |_| {});
        let mut c = Raw::authed(sidecar.smtp, KEY_A);
        c.send(b"MAIL FROM:<billing@acme.example>\r\nRCPT TO:<a@example.net>\r\nDATA\r\nNOOP\r\n");
        let replies: Vec<String> = (0..4).map(|_| c.reply()).collect();
        if no_pipelining {
            // MAIL waits for the upstream: its refusal is MAIL's reply.
            assert_eq!(
                replies[0], "451 4.7.1 sender rate limited\r\n",
                "{no_pipelining}: {replies:?}"
            );
            assert!(
                replies[1].starts_with("503"),
                "{no_pipelining}: {replies:?}"
            );
            assert!(
                replies[2].starts_with("503"),
                "DATA without a transaction: {replies:?}"
            );
        } else {
            // Contract §4 "Round trips" (issue 22): MAIL answered locally,
            // the upstream's refusal answers the RCPT, so DATA finds no
            // valid recipient.
            assert!(replies[0].starts_with("250 2.1.0"), "{replies:?}");
            assert_eq!(
                replies[1], "451 4.7.1 sender rate limited\r\n",
                "{replies:?}"
            );
            assert!(replies[2].starts_with("554 5.5.1"), "{replies:?}");
        }
        assert!(replies[3].starts_with("250"), "{replies:?}");
        assert!(up.messages().is_empty());
    }
}
