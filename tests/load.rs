//! Nothing lost under load: 32 concurrent clients × 50 messages through a
//! TLS upstream, with a credential rotation and a policy reload in the
//! middle. Every message acknowledged with 250 is recorded upstream exactly
//! once, every recorded message was acknowledged, and no message whose
//! transaction began after the rotation was seen went out with the old key.

mod support;

use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use support::*;

const CLIENTS: usize = 32;
const PER_CLIENT: usize = 50;
const APP_PASSWORD: &str = "load-app-password";

struct Ack {
    mail_sent: Instant,
    queue_id: String,
}

#[test]
fn thirty_two_clients_fifty_messages_with_rotation_and_reload() {
    let up = Upstream::default();
    let hash = smtpbind::policy::Pin::of(APP_PASSWORD.as_bytes()).to_string();
    let sidecar = Sidecar::start(&up, |p| {
        // Both keys are pinned (a planned rotation), but after the swap below
        // A's key is no longer mounted and must not be used for any
        // transaction that begins after the swap was detected.
        p.set("credential.pins", yaml_list(&[&pin(KEY_A), &pin(KEY_B)]));
        p.set(
            "client.accept",
            serde_yaml::from_str::<serde_yaml::Value>(&format!(
                "[{{username: app, password: \"{hash}\"}}]"
            ))
            .expect("yaml"),
        );
    });
    let acks = Arc::new(Mutex::new(Vec::<Ack>::new()));
    let refusals = Arc::new(Mutex::new(Vec::<String>::new()));
    let start = Arc::new(Barrier::new(CLIENTS + 1));
    let mut clients = Vec::new();
    for t in 0..CLIENTS {
        let (acks, refusals, start, addr) =
            (acks.clone(), refusals.clone(), start.clone(), sidecar.smtp);
        clients.push(std::thread::spawn(move || {
            start.wait();
            let (mut c, _) = Raw::connect(addr);
            c.cmd("EHLO load");
            assert!(c
                .cmd(&format!("AUTH PLAIN {}", plain("app", APP_PASSWORD)))
                .starts_with("235"));
            for n in 0..PER_CLIENT {
                let mail_sent = Instant::now();
                let r = c.cmd("MAIL FROM:<billing@acme.example>");
                if !r.starts_with("250") {
                    refusals.lock().expect("lock").push(r);
                    continue;
                }
                assert!(c.cmd("RCPT TO:<customer@example.net>").starts_with("250"));
                assert!(c.cmd("DATA").starts_with("354"));
                c.send(
                    message("billing@acme.example", &format!("client {t} message {n}")).as_bytes(),
                );
                let r = c.cmd(".");
                if r.starts_with("250") {
                    let queue_id = r.split_whitespace().last().unwrap_or("").to_string();
                    acks.lock().expect("lock").push(Ack {
                        mail_sent,
                        queue_id,
                    });
                } else {
                    refusals.lock().expect("lock").push(r);
                }
            }
            assert!(c.cmd("QUIT").starts_with("221"));
        }));
    }
    start.wait();
    let began = Instant::now();
    // Wait until about a third of the messages went through, then rotate and reload.
    while acks.lock().expect("lock").len() < CLIENTS * PER_CLIENT / 3
        && began.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    rotate_secret(&sidecar.secret_dir, "apikey", KEY_B);
    assert!(sidecar.wait_for(Duration::from_secs(2), |_| sidecar
        .events("credential")
        .len()
        >= 2));
    let detected = Instant::now();
    let policy = std::fs::read_to_string(&sidecar.policy_path).expect("policy");
    std::fs::write(
        &sidecar.policy_path,
        policy.replace("header_from: enforce", "header_from: ignore"),
    )
    .expect("write");
    for c in clients {
        c.join().expect("client");
    }
    let elapsed = began.elapsed();
    assert!(sidecar.wait_for(Duration::from_secs(3), |_| !sidecar
        .events("policy")
        .is_empty()));
    assert_eq!(sidecar.events("policy")[0]["result"], "ok");

    let acks = acks.lock().expect("lock");
    let refusals = refusals.lock().expect("lock");
    assert!(
        refusals.is_empty(),
        "no refusals expected: {:?}",
        &refusals[..refusals.len().min(5)]
    );
    assert_eq!(acks.len(), CLIENTS * PER_CLIENT);
    let msgs = wait_messages(&up, acks.len());
    assert_eq!(
        msgs.len(),
        acks.len(),
        "every recorded message was acknowledged and vice versa"
    );
    let mut ids: Vec<&str> = msgs.iter().map(|m| m.queue_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), msgs.len(), "no message recorded twice");
    let mut old_key_after_rotation = 0;
    for ack in acks.iter() {
        let m = msgs
            .iter()
            .find(|m| m.queue_id == ack.queue_id)
            .expect("acknowledged message recorded");
        if ack.mail_sent > detected && m.account != "tenant-b" {
            old_key_after_rotation += 1;
        }
    }
    assert_eq!(
        old_key_after_rotation, 0,
        "messages begun after the rotation used the old key"
    );
    let a = msgs.iter().filter(|m| m.account == "tenant-a").count();
    eprintln!(
        "{} messages in {:?} ({:.0} msg/s, debug build); {} before the rotation under tenant-a, {} under tenant-b",
        msgs.len(),
        elapsed,
        msgs.len() as f64 / elapsed.as_secs_f64(),
        a,
        msgs.len() - a
    );
    sidecar.assert_no_secrets();
}
