//! Upstream connections ahead of demand (issue 12, cold bursts): once the
//! credential is ready one authenticated connection waits in the pool, so
//! the first message of a fresh sidecar does not pay the upstream handshake,
//! and the first client's EHLO already knows what the upstream offers.

mod support;

use std::time::{Duration, Instant};

use support::*;

fn wait_connections(up: &Upstream, n: usize) -> usize {
    let start = Instant::now();
    while up.server.connections() < n && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    up.server.connections()
}

#[test]
fn a_ready_sidecar_opens_one_connection_and_the_first_message_reuses_it() {
    let up = Upstream::default();
    let sidecar = Sidecar::start(&up, |p| {
        p.set("upstream.reuse.prewarm", 1)
            .set("credential.pins", yaml_list(&[&pin(KEY_A), &pin(KEY_B)]));
    });
    assert_eq!(
        wait_connections(&up, 1),
        1,
        "one connection ahead of demand"
    );
    // Authenticated with the mounted credential, before any client.
    let start = Instant::now();
    while up.server.auth_attempts().is_empty() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let attempts = up.server.auth_attempts();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].account.as_deref(), Some("tenant-a"));
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    // The upstream offers SMTPUTF8, and the first EHLO already says so.
    assert!(c.cmd("EHLO again").contains("SMTPUTF8"));
    let r = send_message_on(&mut c);
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(
        up.server.connections(),
        1,
        "the message used the warm connection"
    );
    let text = sidecar.http_get("/metrics").1;
    assert_eq!(
        metric(
            &text,
            "smtpbind_upstream_reuse_total{tenant=\"acme\",result=\"hit\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "smtpbind_upstream_prewarm_total{tenant=\"acme\",result=\"ok\"}"
        ),
        1.0
    );

    // A rotation drops the old credential's connection and warms one with
    // the new credential: the next message goes out under tenant B's key.
    rotate_secret(&sidecar.secret_dir, "apikey", KEY_B);
    let start = Instant::now();
    while up.server.auth_attempts().len() < 2 && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let last = up.server.auth_attempts().last().cloned().expect("attempt");
    assert_eq!(last.account.as_deref(), Some("tenant-b"), "{last:?}");
    let r = send_one(
        sidecar.smtp,
        "apikey",
        KEY_B,
        "billing@acme.example",
        "after",
    );
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(wait_messages(&up, 2)[1].account, "tenant-b");
}

fn send_message_on(c: &mut Raw) -> String {
    assert!(c.cmd("MAIL FROM:<billing@acme.example>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<customer@example.net>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(message("billing@acme.example", "warm").as_bytes());
    c.cmd(".")
}
