//! Issue 19: no crash, no flap, no silent refusal — the real binary under a
//! broken world (a stalled log reader, a kubelet swap between two reads).

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use support::*;

const FROM: &str = "billing@acme.example";

fn send(s: &Sidecar, body: &str) -> String {
    send_one(s.smtp, "apikey", KEY_A, FROM, body)
}

/// Contract §6: a reader that stops reading the sidecar's stdout. The
/// process stays responsive (probes answer at once), refuses new
/// transactions `451 4.3.0` and is not ready while the log takes no more,
/// then recovers when it drains — and every relayed message has its line.
#[test]
fn a_stalled_log_reader_refuses_mail_keeps_probes_and_recovers() {
    let up = Upstream::start(|_| {});
    let s = Sidecar::start(&up, |_| {});
    assert!(send(&s, "before").starts_with("250"));
    s.stdout_paused.store(true, Ordering::SeqCst);

    // Fill the pipe: send until the sidecar refuses (or give up).
    let start = Instant::now();
    let (mut relayed, mut refused) = (1usize, None);
    while start.elapsed() < Duration::from_secs(40) {
        let r = send(&s, "filling the log");
        if r.starts_with("250") {
            relayed += 1;
        } else {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.expect("never refused while stdout took nothing");
    assert!(refused.starts_with("451 4.3.0"), "{refused}");

    // Liveness answers, readiness says why, mail keeps being refused.
    let probe = Instant::now();
    let (code, _) = s.http_get("/healthz");
    assert_eq!(code, 200);
    assert!(
        probe.elapsed() < Duration::from_secs(1),
        "{:?}",
        probe.elapsed()
    );
    let (code, body) = s.http_get("/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("log: stdout takes no more"), "{body}");
    let r = send(&s, "while stalled");
    assert!(r.starts_with("451 4.3.0"), "{r}");
    eprintln!(
        "issue 19 item 5: {relayed} relayed before the first 451 ({:?} after the reader stopped)",
        start.elapsed()
    );

    // The reader reads again: ready, mail flows, every message logged.
    s.stdout_paused.store(false, Ordering::SeqCst);
    let until = Instant::now() + Duration::from_secs(10);
    while s.http_get("/readyz").0 != 200 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(s.http_get("/readyz").0, 200, "did not recover");
    assert!(send(&s, "after").starts_with("250"));
    relayed += 1;
    assert_eq!(wait_messages(&up, relayed).len(), relayed);
    s.wait_for(Duration::from_secs(5), |_| {
        s.events("message").len() >= relayed
    });
    assert_eq!(
        s.events("message").len(),
        relayed,
        "a message without its line"
    );
    assert!(s.events("log_dropped").is_empty());
    let reasons = s.reject_reasons(2);
    assert!(reasons.iter().all(|r| r == "log_stalled"), "{reasons:?}");
}

/// Issue 19, item 4 (fault injection: the capture upstream's `echo_auth`
/// refuses every AUTH and quotes the received PLAIN payload in its 535):
/// neither the mounted password nor any base64 form of it is logged.
#[test]
fn an_upstream_echoing_the_plain_payload_leaks_nothing() {
    let up = Upstream::start(|c| c.faults.echo_auth = true);
    let s = Sidecar::start(&up, |_| {});
    let r = send(&s, "refused");
    assert!(r.starts_with('4'), "{r}");
    assert!(
        s.wait_for(Duration::from_secs(5), |l| l
            .iter()
            .any(|l| l.contains("upstream_error") && l.contains("[redacted]"))),
        "the echoed refusal is logged, scrubbed: {:?}",
        s.output()
    );
    s.assert_no_secrets();
    assert!(up.messages().is_empty());
}
