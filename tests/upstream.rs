//! The upstream side: TLS is mandatory and verified, credentials never go
//! out in clear, failures become 4xx (never 250), and connections are
//! reused only under the same credential pin.
//!
//! In-process (`support::inproc`) except the swaks test (a real client is
//! the point) and the test that reads `/metrics` (one recorder per
//! process), which stay on the real binary.

mod support;

use std::time::{Duration, Instant};

use smtpbind::demo::capture::CaptureTls;
use support::inproc::InProc;
use support::*;

/// Opens a transaction and returns the reply to MAIL (where the upstream is opened).
fn try_mail(smtp: std::net::SocketAddr) -> String {
    let mut c = Raw::authed(smtp, KEY_A);
    c.cmd("MAIL FROM:<billing@acme.example>")
}

fn assert_no_credential_in_clear(up: &Upstream) {
    let clear = String::from_utf8_lossy(&up.server.plaintext_bytes()).to_string();
    assert!(
        !clear.to_ascii_uppercase().contains("AUTH"),
        "AUTH in clear: {clear}"
    );
    assert_no_secrets(&clear);
    assert!(up.server.auth_attempts().is_empty());
}

#[test]
fn upstream_without_starttls_is_451_and_no_auth_byte_in_clear() {
    let up = Upstream::start(|c| c.faults.no_starttls = true);
    let sidecar = InProc::start(&up, |_| {});
    let r = try_mail(sidecar.smtp);
    assert!(r.starts_with("451 4.7.0"), "{r}");
    assert_no_credential_in_clear(&up);
    assert!(up.messages().is_empty());
}

#[test]
fn untrusted_certificate_is_451() {
    let up = Upstream::default();
    let other_ca =
        smtpbind::certs::Pki::generate("some other CA", &["localhost".into()]).expect("pki");
    let sidecar = InProc::start_with_ca(up.addr(), &other_ca.ca_pem, |_| {});
    let r = try_mail(sidecar.smtp);
    assert!(r.starts_with("451 4.7.0"), "{r}");
    assert_no_credential_in_clear(&up);
}

#[test]
fn wrong_server_name_is_451() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |p| {
        p.set("upstream.server_name", "smtp.sendgrid.net");
    });
    assert!(try_mail(sidecar.smtp).starts_with("451 4.7.0"));
    assert_no_credential_in_clear(&up);
}

#[test]
fn dropped_tls_handshake_is_451() {
    let up = Upstream::start(|c| c.faults.drop_handshake = true);
    let sidecar = InProc::start(&up, |_| {});
    assert!(try_mail(sidecar.smtp).starts_with("451 4.7.0"));
    assert_no_credential_in_clear(&up);
}

#[test]
fn bytes_injected_after_starttls_220_are_discarded() {
    // A MITM-style reply pipelined with the 220: if it were read after the
    // handshake it would answer our EHLO with a capability list without TLS.
    let up = Upstream::start(|c| {
        c.faults.starttls_inject = Some(b"250-evil\r\n250 AUTH PLAIN\r\n".to_vec());
    });
    let sidecar = InProc::start(&up, |_| {});
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    assert!(c.cmd("MAIL FROM:<billing@acme.example>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<a@example.net>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(message("billing@acme.example", "after injection").as_bytes());
    let r = c.cmd(".");
    assert!(r.starts_with("250 2.0.0 Ok: queued"), "{r}");
    assert_eq!(up.messages().len(), 1);
    assert_no_secrets(&String::from_utf8_lossy(&up.server.plaintext_bytes()));
}

#[test]
fn implicit_tls_and_login_only_upstream() {
    let up = Upstream::start(|c| {
        c.tls = CaptureTls::Implicit;
        c.faults.only_mechanism = Some("LOGIN".into());
    });
    let sidecar = Sidecar::start(&up, |p| {
        p.set("upstream.tls", "implicit");
    });
    let (ok, out) = swaks_plain(
        sidecar.smtp,
        "billing@acme.example",
        "a@example.net",
        KEY_A,
        &[],
    );
    assert!(ok, "{out}");
    let msgs = wait_messages(&up, 1);
    assert_eq!(msgs[0].account, "tenant-a");
    assert!(msgs[0].tls);
    assert!(
        up.server.plaintext_bytes().is_empty(),
        "implicit TLS: nothing in clear"
    );
}

#[test]
fn tls_none_only_with_insecure_for_tests() {
    let up = Upstream::start(|c| c.tls = CaptureTls::None);
    let sidecar = InProc::start(&up, |p| {
        p.set("upstream.tls", "none").set("upstream.insecure", true);
    });
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    assert!(c.cmd("MAIL FROM:<billing@acme.example>").starts_with("250"));
}

#[test]
fn upstream_rejecting_the_pod_credential_is_454_and_counted() {
    let up = Upstream::start(|c| c.accounts.retain(|a| a.name != "tenant-a"));
    let sidecar = Sidecar::start(&up, |_| {});
    let r = try_mail(sidecar.smtp);
    assert!(r.starts_with("454 4.7.0"), "{r}");
    // Only the mounted credential was tried, once, over TLS; never another one.
    let attempts = up.server.auth_attempts();
    assert_eq!(attempts.len(), 1);
    assert!(attempts[0].tls && attempts[0].account.is_none());
    let (_, metrics) = sidecar.http_get("/metrics");
    assert!(
        metrics.contains("smtpbind_upstream_auth_failures_total{tenant=\"acme\"} 1"),
        "{metrics}"
    );
}

#[test]
fn upstream_refusing_connections_is_4xx_within_connect_timeout() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let sidecar = InProc::start_with_ca(port, "", |p| {
        p.set("upstream.ca_file", serde_yaml::Value::Null);
        p.set("upstream.connect_timeout", "2s");
    });
    let started = Instant::now();
    let r = try_mail(sidecar.smtp);
    assert!(r.starts_with("451 4.4.1"), "{r}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn upstream_dying_mid_data_never_yields_250() {
    let up = Upstream::start(|c| c.faults.drop_after_data_bytes = Some(20_000));
    let sidecar = InProc::start(&up, |_| {});
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    assert!(c.cmd("MAIL FROM:<billing@acme.example>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<a@example.net>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    let body = "x".repeat(998) + "\r\n";
    c.send(b"From: billing@acme.example\r\n\r\n");
    for _ in 0..200 {
        c.send(body.as_bytes());
    }
    let r = c.cmd(".");
    assert!(
        r.starts_with('4') || r.is_empty(),
        "must be 4xx or a dropped connection, got {r}"
    );
    assert!(up.messages().is_empty());
    // The session goes on with a fresh upstream connection.
    let r2 = c.cmd("MAIL FROM:<billing@acme.example>");
    assert!(
        !r2.starts_with("250") || up.server.connections() == 2,
        "{r2}"
    );
}

#[test]
fn data_refused_by_upstream_is_passed_through() {
    let up = Upstream::start(|c| c.faults.data_reply = Some("554 5.7.1 policy rejection".into()));
    let sidecar = InProc::start(&up, |_| {});
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    c.cmd("MAIL FROM:<billing@acme.example>");
    c.cmd("RCPT TO:<a@example.net>");
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(message("billing@acme.example", "x").as_bytes());
    assert_eq!(c.cmd("."), "554 5.7.1 policy rejection\r\n");
    assert!(c.cmd("RSET").starts_with("250"));
}

#[test]
fn connections_are_reused_across_sessions_under_the_same_pin_only() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |p| {
        p.set("credential.pins", yaml_list(&[&pin(KEY_A), &pin(KEY_B)]));
        p.set(
            "client.accept",
            serde_yaml::from_str::<serde_yaml::Value>("[{username: apikey, password: any}]")
                .expect("yaml"),
        );
    });
    let send_one = |n: usize| {
        let mut c = Raw::authed(sidecar.smtp, KEY_A);
        assert!(c.cmd("MAIL FROM:<billing@acme.example>").starts_with("250"));
        assert!(c.cmd("RCPT TO:<a@example.net>").starts_with("250"));
        assert!(c.cmd("DATA").starts_with("354"));
        c.send(message("billing@acme.example", &format!("n={n}")).as_bytes());
        assert!(c.cmd(".").starts_with("250"));
        assert!(c.cmd("QUIT").starts_with("221"));
    };
    send_one(1);
    send_one(2);
    assert_eq!(
        up.server.connections(),
        1,
        "second session reused the authenticated connection"
    );

    // Rotate the mounted Secret the kubelet way to tenant B's key (pinned too).
    let new_dir = sidecar.secret_dir.join("..2026_02_02_00_00_00.000000002");
    std::fs::create_dir(&new_dir).expect("mkdir");
    std::fs::write(new_dir.join("username"), "apikey").expect("w");
    std::fs::write(new_dir.join("password"), KEY_B).expect("w");
    let tmp = sidecar.secret_dir.join("..data_tmp");
    std::os::unix::fs::symlink("..2026_02_02_00_00_00.000000002", &tmp).expect("link");
    std::fs::rename(&tmp, sidecar.secret_dir.join("..data")).expect("swap");
    assert!(sidecar.wait_for(Duration::from_secs(3), |_| sidecar
        .events("credential")
        .len()
        >= 2));

    send_one(3);
    let msgs = wait_messages(&up, 3);
    assert_eq!(
        msgs.iter().map(|m| m.account.as_str()).collect::<Vec<_>>(),
        vec!["tenant-a", "tenant-a", "tenant-b"]
    );
    assert_eq!(
        up.server.connections(),
        2,
        "a new connection for the new credential"
    );
    sidecar.assert_no_secrets();
}

#[test]
fn a_pooled_connection_the_upstream_closed_while_idle_is_not_used() {
    let up = Upstream::start(|c| c.faults.idle_close = Some(Duration::from_millis(200)));
    let sidecar = InProc::start(&up, |_| {});
    let first = send_one(sidecar.smtp, "apikey", KEY_A, "billing@acme.example", "one");
    assert!(first.starts_with("250"), "{first}");
    std::thread::sleep(Duration::from_millis(600));
    let second = send_one(sidecar.smtp, "apikey", KEY_A, "billing@acme.example", "two");
    assert!(second.starts_with("250"), "{second}");
    assert_eq!(
        up.server.connections(),
        2,
        "the closed idle connection was replaced"
    );
    assert_eq!(wait_messages(&up, 2).len(), 2);
}
