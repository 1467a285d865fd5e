//! One snapshot (issue 23): a session never sees a policy and a credential
//! of two different publications. Two generations alternate under load —
//! generation A sends to upstream A and pins only key A, generation B sends
//! to upstream B and pins only key B — and each flip is a kubelet rotation
//! of the Secret racing a rewrite of the policy file. The only pairs ever
//! published whole are (A, key A) and (B, key B); a message upstream A
//! received under key B (or the reverse) can only come from a session that
//! paired the policy of one publication with the credential of another.
//! For every message the upstream recorded, the credential that
//! authenticated the connection (the pool's pin), the audit line's
//! credential (the session's) and the upstream it went to (the policy's)
//! are compared.

mod support;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

const CLIENTS: usize = 8;
const FLIPS: usize = 8;
const APP_PASSWORD: &str = "snapshot-app-password";

/// The policy of one generation: its upstream, its CA and its one pin.
fn generation(base: &str, up: &Upstream, ca: &std::path::Path, key: &str) -> String {
    let mut spec = PolicySpec(serde_yaml::from_str(base).expect("policy yaml"));
    spec.set("upstream.address", up.addr().to_string())
        .set("upstream.ca_file", ca.display().to_string())
        .set("credential.pins", yaml_list(&[&pin(key)]));
    spec.yaml()
}

/// Replaces the policy file at once (a rename), as a ConfigMap update does.
fn write_policy(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write policy");
    std::fs::rename(&tmp, path).expect("rename policy");
}

/// One client: sessions sending messages back to back until `stop`;
/// a refusal (not ready while a flip settles) ends the session and a new
/// one is opened. Returns how many messages were acknowledged.
fn client(addr: std::net::SocketAddr, n: usize, stop: Arc<AtomicBool>) -> usize {
    let mut acked = 0;
    while !stop.load(Ordering::Relaxed) {
        let (mut c, greeting) = Raw::connect(addr);
        if !greeting.starts_with("220") {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        c.cmd("EHLO snapshot");
        if !c
            .cmd(&format!("AUTH PLAIN {}", plain("app", APP_PASSWORD)))
            .starts_with("235")
        {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let mut m = 0;
        while !stop.load(Ordering::Relaxed) {
            if !c.cmd("MAIL FROM:<billing@acme.example>").starts_with("250") {
                break;
            }
            if !c.cmd("RCPT TO:<customer@example.net>").starts_with("250") {
                break;
            }
            if !c.cmd("DATA").starts_with("354") {
                break;
            }
            let body = message("billing@acme.example", &format!("client {n} message {m}"));
            if c.stream.write_all(body.as_bytes()).is_err() {
                break;
            }
            m += 1;
            if c.cmd(".").starts_with("250") {
                acked += 1;
            } else {
                break;
            }
        }
        let _ = c.stream.write_all(b"QUIT\r\n");
    }
    acked
}

#[test]
fn rotation_and_reload_racing_never_pair_two_publications() {
    let (up_a, up_b) = (Upstream::default(), Upstream::default());
    let hash = smtpbind::policy::Pin::of(APP_PASSWORD.as_bytes()).to_string();
    let sidecar = Sidecar::start(&up_a, |p| {
        p.set(
            "client.accept",
            serde_yaml::from_str::<serde_yaml::Value>(&format!(
                "[{{username: app, password: \"{hash}\"}}]"
            ))
            .expect("yaml"),
        );
    });
    let base = std::fs::read_to_string(&sidecar.policy_path).expect("policy");
    let (ca_a, ca_b) = (
        sidecar.dir.path().join("ca.pem"),
        sidecar.dir.path().join("ca-b.pem"),
    );
    std::fs::write(&ca_b, &up_b.server.ca_pem).expect("ca b");
    let gens = [
        (generation(&base, &up_a, &ca_a, KEY_A), KEY_A),
        (generation(&base, &up_b, &ca_b, KEY_B), KEY_B),
    ];

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let (stop, addr) = (stop.clone(), sidecar.smtp);
            std::thread::spawn(move || client(addr, n, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for flip in 1..=FLIPS {
        let (policy, key) = &gens[flip % 2];
        // The two halves of a flip land in either order and apart.
        if flip % 3 == 0 {
            write_policy(&sidecar.policy_path, policy);
            std::thread::sleep(Duration::from_millis(3 * flip as u64));
            rotate_secret(&sidecar.secret_dir, "apikey", key);
        } else {
            rotate_secret(&sidecar.secret_dir, "apikey", key);
            std::thread::sleep(Duration::from_millis(3 * flip as u64));
            write_policy(&sidecar.policy_path, policy);
        }
        let began = Instant::now();
        while sidecar.events("policy").len() < flip && began.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(400));
    }
    stop.store(true, Ordering::Relaxed);
    let acked: usize = clients.into_iter().map(|c| c.join().expect("client")).sum();
    assert!(acked > 0, "no message went through");
    std::thread::sleep(Duration::from_millis(300));

    let short = |key: &str| smtpbind::policy::Pin::of(key.as_bytes()).short();
    let audit = sidecar.events("message");
    let mut checked = 0;
    for (up, account, key) in [(&up_a, "tenant-a", KEY_A), (&up_b, "tenant-b", KEY_B)] {
        for m in up.messages() {
            assert_eq!(
                m.account,
                account,
                "upstream {} received a message under the other generation's key",
                up.addr()
            );
            // Both upstreams number their queue ids alike: the audit line
            // of a message is the one naming its upstream and its id.
            let line = audit
                .iter()
                .find(|e| {
                    e["upstream_id"].as_str() == Some(m.queue_id.as_str())
                        && e["upstream"].as_str() == Some(up.addr().to_string().as_str())
                })
                .unwrap_or_else(|| panic!("no audit line for {} at {}", m.queue_id, up.addr()));
            assert_eq!(
                line["credential"].as_str(),
                Some(short(key).as_str()),
                "{line}"
            );
            checked += 1;
        }
    }
    assert_eq!(
        checked, acked,
        "every acknowledged message recorded and checked"
    );
    assert!(
        !up_a.messages().is_empty() && !up_b.messages().is_empty(),
        "both generations relayed"
    );
    sidecar.assert_no_secrets();
}
