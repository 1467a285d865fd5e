//! `upstream.max_connections` (issue 12; Microsoft 365 allows 3 concurrent
//! connections per mailbox): never more upstream connections open at once
//! than the cap, sessions give their connection back after each
//! transaction, and a session that cannot get one within
//! `upstream.connect_timeout` gets a transient reply with nothing relayed.
//!
//! The upstream is the capture server; between it and the sidecar a TCP
//! relay counts the connections open at each moment (the capture itself
//! only counts connections made).

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

#[derive(Default)]
struct Counts {
    open: AtomicUsize,
    max: AtomicUsize,
}

/// A byte relay to `to` that records how many connections are open at once
/// (from accept until both directions closed).
fn counting_relay(to: SocketAddr) -> (SocketAddr, Arc<Counts>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
    let addr = listener.local_addr().expect("addr");
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let now = c.open.fetch_add(1, Ordering::SeqCst) + 1;
            c.max.fetch_max(now, Ordering::SeqCst);
            let c = c.clone();
            std::thread::spawn(move || {
                if let Ok(server) = TcpStream::connect(to) {
                    let (c2s, s2c) = (
                        pipe(
                            client.try_clone().expect("clone"),
                            server.try_clone().expect("clone"),
                        ),
                        pipe(server, client),
                    );
                    let _ = (c2s.join(), s2c.join());
                }
                c.open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, counts)
}

fn pipe(mut from: TcpStream, mut to: TcpStream) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    })
}

fn capped(up: &Upstream, cap: u32, connect_timeout: &str) -> (Sidecar, Arc<Counts>) {
    let (relay, counts) = counting_relay(up.addr());
    let timeout = connect_timeout.to_string();
    let sidecar = Sidecar::start_with_ca(relay, &up.server.ca_pem, |p| {
        p.set("upstream.max_connections", cap)
            .set("upstream.connect_timeout", timeout);
    });
    (sidecar, counts)
}

fn metrics(sidecar: &Sidecar) -> String {
    sidecar.http_get("/metrics").1
}

#[test]
fn eight_clients_under_a_cap_of_three_never_see_more_than_three_connections() {
    let up = Upstream::default();
    let (sidecar, counts) = capped(&up, 3, "10s");
    let addr = sidecar.smtp;
    let clients: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Raw::authed(addr, KEY_A);
                let r = c.cmd("MAIL FROM:<billing@acme.example>");
                assert!(r.starts_with("250"), "{r}");
                assert!(c
                    .cmd(&format!("RCPT TO:<c{i}@example.net>"))
                    .starts_with("250"));
                assert!(c.cmd("DATA").starts_with("354"));
                c.send(message("billing@acme.example", "capped").as_bytes());
                // Hold the upstream connection a while, so that the others
                // really compete for it.
                std::thread::sleep(Duration::from_millis(300));
                let r = c.cmd(".");
                c.cmd("QUIT");
                r
            })
        })
        .collect();
    for t in clients {
        let r = t.join().expect("client");
        assert!(r.starts_with("250"), "{r}");
    }
    let got = wait_messages(&up, 8);
    assert_eq!(got.len(), 8, "every message arrived");
    let mut rcpts: Vec<String> = got.iter().flat_map(|m| m.rcpt_to.clone()).collect();
    rcpts.sort();
    rcpts.dedup();
    assert_eq!(rcpts.len(), 8, "each exactly once");
    assert_eq!(
        counts.max.load(Ordering::SeqCst),
        3,
        "at most 3 at once, and 3 used"
    );
    assert!(up.server.connections() <= 3, "{}", up.server.connections());
    let text = metrics(&sidecar);
    let waited = metric(
        &text,
        "smtpbind_upstream_waits_total{tenant=\"acme\",result=\"pooled\"}",
    ) + metric(
        &text,
        "smtpbind_upstream_waits_total{tenant=\"acme\",result=\"opened\"}",
    );
    assert!(waited >= 1.0, "sessions waited for a connection:\n{text}");
    assert_eq!(
        metric(
            &text,
            "smtpbind_upstream_waits_total{tenant=\"acme\",result=\"timeout\"}"
        ),
        0.0
    );
}

#[test]
fn a_session_gives_its_connection_back_after_each_message() {
    // Cap 1: a client that stays connected after its message must not keep
    // the only connection from another client.
    let up = Upstream::default();
    let (sidecar, counts) = capped(&up, 1, "2s");
    let mut a = Raw::authed(sidecar.smtp, KEY_A);
    assert!(send_on(&mut a, "a1").starts_with("250"));
    let started = Instant::now();
    let r = send_one(sidecar.smtp, "apikey", KEY_A, "billing@acme.example", "b1");
    assert!(r.starts_with("250"), "{r}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "no wait for the cap"
    );
    // An RSET ends a transaction too.
    assert!(a.cmd("MAIL FROM:<billing@acme.example>").starts_with("250"));
    assert!(a.cmd("RSET").starts_with("250"));
    let r = send_one(sidecar.smtp, "apikey", KEY_A, "billing@acme.example", "b2");
    assert!(r.starts_with("250"), "{r}");
    assert!(send_on(&mut a, "a2").starts_with("250"));
    assert_eq!(wait_messages(&up, 4).len(), 4);
    assert_eq!(up.server.connections(), 1, "one connection, shared in turn");
    assert_eq!(counts.max.load(Ordering::SeqCst), 1);
}

#[test]
fn a_session_that_waits_past_the_bound_gets_a_transient_reply_and_nothing_is_relayed() {
    let up = Upstream::default();
    let (sidecar, _counts) = capped(&up, 1, "1s");
    // A holds the only connection in an open transaction.
    let mut a = Raw::authed(sidecar.smtp, KEY_A);
    assert!(a.cmd("MAIL FROM:<billing@acme.example>").starts_with("250"));
    assert!(a.cmd("RCPT TO:<for-a@example.net>").starts_with("250"));
    // B waits for it up to connect_timeout (1s), then is told to retry.
    let mut b = Raw::authed(sidecar.smtp, KEY_A);
    let started = Instant::now();
    let r = b.cmd("MAIL FROM:<billing@acme.example>");
    let waited = started.elapsed();
    assert!(r.starts_with("451 4.4.5"), "{r}");
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    // B's session goes on; its RCPT has no transaction.
    assert!(b.cmd("RCPT TO:<for-b@example.net>").starts_with("503"));
    // A's message goes through; nothing of B's reached the upstream.
    assert!(a.cmd("DATA").starts_with("354"));
    a.send(message("billing@acme.example", "a").as_bytes());
    assert!(a.cmd(".").starts_with("250"));
    let got = wait_messages(&up, 1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_to, vec!["for-a@example.net".to_string()]);
    // Now that A's transaction ended, B's retry gets the connection.
    assert!(send_on(&mut b, "b retry").starts_with("250"));
    assert_eq!(wait_messages(&up, 2).len(), 2);
    assert_eq!(sidecar.reject_reasons(1), vec!["upstream_busy".to_string()]);
    let text = metrics(&sidecar);
    assert_eq!(
        metric(
            &text,
            "smtpbind_upstream_waits_total{tenant=\"acme\",result=\"timeout\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "smtpbind_rejections_total{tenant=\"acme\",reason=\"upstream_busy\"}"
        ),
        1.0
    );
    sidecar.assert_no_secrets();
}

#[test]
fn the_cap_is_validated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policy.yaml");
    std::fs::write(
        &path,
        "version: 1\ntenant: t\nupstream:\n  address: smtp.example.net:587\n  max_connections: 0\n\
         credential:\n  secret_dir: /nonexistent\n  pins: [\"sha256:1111111111111111111111111111111111111111111111111111111111111111\"]\n\
         client:\n  auth: none\nsenders: [\"*@t.example\"]\n",
    )
    .expect("write");
    let out = std::process::Command::new(bin())
        .arg("check")
        .arg(&path)
        .output()
        .expect("check");
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(":5:3: upstream.max_connections: 0 is out of range"),
        "{err}"
    );
}

/// One message on an open, authenticated session.
fn send_on(c: &mut Raw, body: &str) -> String {
    let r = c.cmd("MAIL FROM:<billing@acme.example>");
    if !r.starts_with("250") {
        return r;
    }
    assert!(c
        .cmd(&format!("RCPT TO:<{}@example.net>", body.replace(' ', "-")))
        .starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(message("billing@acme.example", body).as_bytes());
    c.cmd(".")
}
