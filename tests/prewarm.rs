//! Upstream connections ahead of demand (issue 12, cold bursts): once the
//! credential is ready one authenticated connection waits in the pool, so
//! the first message of a fresh sidecar does not pay the upstream handshake,
//! and the first client's EHLO already knows what the upstream offers.
//!
//! The test without a recent peak runs in-process on a paused clock
//! (`inproc::paused`: its idle timeout and waits are virtual); the others
//! read `/metrics` (one recorder per process) and stay on the real binary.

mod support;

use std::time::{Duration, Instant};

use support::inproc::{self, Served};
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

/// `n` sessions at once, each holding its transaction open (after RCPT)
/// until all `n` have one, so that `n` upstream connections are in use at
/// the same moment; then each sends its message. Returns the final replies.
fn overlapping_messages(addr: std::net::SocketAddr, n: usize, body: &str) -> Vec<String> {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let barrier = barrier.clone();
            let body = format!("{body} {i}");
            std::thread::spawn(move || {
                let mut c = Raw::authed(addr, KEY_A);
                assert!(c.cmd("MAIL FROM:<billing@acme.example>").starts_with("250"));
                assert!(c.cmd("RCPT TO:<customer@example.net>").starts_with("250"));
                barrier.wait();
                assert!(c.cmd("DATA").starts_with("354"));
                c.send(message("billing@acme.example", &body).as_bytes());
                let r = c.cmd(".");
                c.cmd("QUIT");
                r
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect()
}

fn gauge(sidecar: &Sidecar, series: &str) -> f64 {
    metric(&sidecar.http_get("/metrics").1, series)
}

#[test]
fn a_cold_burst_opens_connections_for_the_recent_concurrency() {
    let up = Upstream::default();
    let sidecar = Sidecar::start(&up, |p| {
        p.set("upstream.reuse.idle_timeout", "1500ms");
    });
    let open = "smtpbind_upstream_connections{tenant=\"acme\"}";
    // Four sessions in a transaction at once: the recent peak is 4. Each
    // opened its own connection (nothing was warm: prewarm 0, and no peak yet).
    for r in overlapping_messages(sidecar.smtp, 4, "first") {
        assert!(r.starts_with("250"), "{r}");
    }
    assert_eq!(up.server.connections(), 4);
    assert_eq!(gauge(&sidecar, open), 4.0, "four idle in the pool");
    // No keep-alive: past the idle timeout every one of them is closed.
    let start = Instant::now();
    while gauge(&sidecar, open) > 0.0 && start.elapsed() < Duration::from_secs(6) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(gauge(&sidecar, open), 0.0, "idle connections closed");
    assert_eq!(up.server.connections(), 4, "and none reopened meanwhile");

    // A cold burst: the first session finds the pool empty, opens its own
    // connection and three more ahead of the sessions likely to follow.
    let r = send_one(
        sidecar.smtp,
        "apikey",
        KEY_A,
        "billing@acme.example",
        "cold",
    );
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(wait_connections(&up, 8), 8, "4 + 1 + 3 ahead of demand");
    let start = Instant::now();
    while up.server.auth_attempts().len() < 8 && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let attempts = up.server.auth_attempts();
    assert_eq!(attempts.len(), 8);
    assert!(attempts
        .iter()
        .all(|a| a.account.as_deref() == Some("tenant-a") && a.tls));
    // The rest of the burst finds them ready: no further connection.
    for r in overlapping_messages(sidecar.smtp, 3, "burst") {
        assert!(r.starts_with("250"), "{r}");
    }
    assert_eq!(up.server.connections(), 8);
    assert_eq!(wait_messages(&up, 8).len(), 8);
    let text = sidecar.http_get("/metrics").1;
    assert_eq!(
        metric(
            &text,
            "smtpbind_upstream_burst_warmups_total{tenant=\"acme\"}"
        ),
        1.0
    );
    sidecar.assert_no_secrets();
}

#[test]
fn without_a_recent_peak_a_burst_opens_nothing_ahead() {
    // One session at a time: the peak is 1, so a cold start of the next
    // session opens no extra connection (no demand to follow).
    inproc::paused(|| async {
        let app = Served::start(|p| {
            p.set("upstream.reuse.idle_timeout", "500ms");
        })
        .await;
        for i in 0..2 {
            let r = inproc::send_one(
                app.smtp,
                "apikey",
                KEY_A,
                "billing@acme.example",
                &format!("alone {i}"),
            )
            .await;
            assert!(r.starts_with("250"), "{r}");
            tokio::time::sleep(Duration::from_millis(1200)).await;
        }
        assert_eq!(
            app.capture().connections(),
            2,
            "one per cold session, none ahead"
        );
    });
}
