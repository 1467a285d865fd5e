//! Operations (contract §5–7): exact metrics and audit events after a
//! scripted sequence, credential rotation the kubelet way under continuous
//! sending, policy reload, readiness, and drain on SIGTERM.
//!
//! In-process (`support::inproc`): the audit events of the scripted sequence
//! and the rotation under continuous sending (events from the app's own log
//! sink). On the real binary: everything read from `/metrics` (one recorder per
//! process), SIGTERM and the exit code, and the worker count of the process.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::inproc::InProc;
use support::*;

const APP_PASSWORD: &str = "app-password-7c1d";

fn app_accept() -> serde_yaml::Value {
    let hash = smtpbind::policy::Pin::of(APP_PASSWORD.as_bytes()).to_string();
    serde_yaml::from_str(&format!("[{{username: app, password: \"{hash}\"}}]")).expect("yaml")
}

/// The scripted sequence used by the metrics and audit tests.
fn scripted_sequence(smtp: std::net::SocketAddr) {
    // Session 1: two messages with the mounted key.
    let mut c = Raw::authed(smtp, KEY_A);
    for i in 0..2 {
        assert!(c.cmd("MAIL FROM:<billing@acme.example>").starts_with("250"));
        assert!(c.cmd("RCPT TO:<customer@example.net>").starts_with("250"));
        assert!(c.cmd("DATA").starts_with("354"));
        c.send(message("billing@acme.example", &format!("message {i}")).as_bytes());
        assert!(c.cmd(".").starts_with("250"));
    }
    assert!(c.cmd("QUIT").starts_with("221"));
    // Session 2: the other tenant's key.
    let (mut c, _) = Raw::connect(smtp);
    c.cmd("EHLO x");
    assert!(c
        .cmd(&format!("AUTH PLAIN {}", plain("apikey", KEY_B)))
        .starts_with("535"));
    assert!(c.cmd("QUIT").starts_with("221"));
    // Session 3: one refusal of each envelope kind.
    let (mut c, _) = Raw::connect(smtp);
    c.cmd("EHLO x");
    assert!(c.cmd("MAIL FROM:<billing@acme.example>").starts_with("530"));
    assert!(c
        .cmd(&format!("AUTH PLAIN {}", plain("apikey", KEY_A)))
        .starts_with("235"));
    assert!(c.cmd("MAIL FROM:<ceo@globex.example>").starts_with("550"));
    assert!(c.cmd("MAIL FROM:<billing@acme.example>").starts_with("250"));
    assert!(c
        .cmd("RCPT TO:<someone@elsewhere.example>")
        .starts_with("550"));
    assert!(c.cmd("RCPT TO:<customer@example.net>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(message("ceo@globex.example", "spoofed").as_bytes());
    assert!(c.cmd(".").starts_with("550 5.7.1"));
    assert!(c.cmd("QUIT").starts_with("221"));
}

#[test]
fn metrics_after_a_scripted_sequence_are_exact() {
    let up = Upstream::default();
    let sidecar = Sidecar::start(&up, |p| {
        p.set("recipients.domains", yaml_list(&["example.net"]));
    });
    scripted_sequence(sidecar.smtp);
    assert!(sidecar.wait_for(Duration::from_secs(3), |_| metric(
        &sidecar.http_get("/metrics").1,
        "smtpbind_sessions_total{tenant=\"acme\",result=\"quit\"}"
    ) == 3.0));
    let (code, m) = sidecar.http_get("/metrics");
    assert_eq!(code, 200);
    let bytes: usize = up.messages().iter().map(|m| m.bytes).sum();
    let expect = [
        (
            "smtpbind_sessions_total{tenant=\"acme\",result=\"quit\"}",
            3.0,
        ),
        (
            "smtpbind_messages_total{tenant=\"acme\",result=\"relayed\"}",
            2.0,
        ),
        (
            "smtpbind_messages_total{tenant=\"acme\",result=\"rejected\"}",
            1.0,
        ),
        (
            "smtpbind_messages_total{tenant=\"acme\",result=\"failed\"}",
            0.0,
        ),
        (
            "smtpbind_rejections_total{tenant=\"acme\",reason=\"identity_mismatch\"}",
            1.0,
        ),
        (
            "smtpbind_rejections_total{tenant=\"acme\",reason=\"auth_required\"}",
            1.0,
        ),
        (
            "smtpbind_rejections_total{tenant=\"acme\",reason=\"sender_not_allowed\"}",
            1.0,
        ),
        (
            "smtpbind_rejections_total{tenant=\"acme\",reason=\"recipient_not_allowed\"}",
            1.0,
        ),
        (
            "smtpbind_rejections_total{tenant=\"acme\",reason=\"header_from_mismatch\"}",
            1.0,
        ),
        (
            "smtpbind_message_bytes_total{tenant=\"acme\"}",
            bytes as f64,
        ),
        ("smtpbind_active_sessions{tenant=\"acme\"}", 0.0),
        (
            "smtpbind_credential_reloads_total{tenant=\"acme\",result=\"ok\"}",
            1.0,
        ),
        (
            "smtpbind_upstream_connect_seconds_count{tenant=\"acme\"}",
            1.0,
        ),
        (
            "smtpbind_upstream_auth_failures_total{tenant=\"acme\"}",
            0.0,
        ),
        (
            &format!(
                "smtpbind_build_info{{tenant=\"acme\",version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            ),
            1.0,
        ),
    ];
    for (series, value) in expect {
        assert_eq!(metric(&m, series), value, "{series}\n{m}");
    }
    assert!(bytes > 0);
    for line in m.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        assert!(line.starts_with("smtpbind_"), "{line}");
        assert!(
            line.contains("tenant=\"acme\""),
            "every series carries tenant: {line}"
        );
    }
}

#[test]
fn audit_events_of_a_scripted_sequence() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |p| {
        p.set("recipients.domains", yaml_list(&["example.net"]));
    });
    scripted_sequence(sidecar.smtp);
    assert!(
        sidecar.wait_for(Duration::from_secs(3), |_| sidecar.events("message").len()
            == 3)
    );
    // Every stdout line is one JSON object with the fixed fields.
    for line in sidecar
        .output()
        .iter()
        .filter(|l| !l.starts_with("stderr: "))
    {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for key in ["ts", "level", "event", "tenant"] {
            assert!(v.get(key).is_some(), "{key} missing: {line}");
        }
    }
    let reasons: Vec<String> = sidecar
        .events("reject")
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        reasons,
        [
            "identity_mismatch",
            "auth_required",
            "sender_not_allowed",
            "recipient_not_allowed",
            "header_from_mismatch"
        ]
    );
    let messages = sidecar.events("message");
    let results: Vec<&str> = messages
        .iter()
        .map(|e| e["result"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(results, ["relayed", "relayed", "rejected"]);
    let captured = up.messages();
    for (event, cap) in messages.iter().zip(&captured) {
        assert_eq!(event["tenant"], "acme");
        assert_eq!(event["client_identity"], "apikey");
        assert_eq!(event["credential"].as_str().map(str::len), Some(12));
        assert_eq!(event["sender_domain"], "acme.example");
        assert_eq!(event["recipients"], 1);
        assert_eq!(event["bytes"], cap.bytes);
        assert!(event["upstream"]
            .as_str()
            .is_some_and(|u| u.starts_with("127.0.0.1:")));
        assert!(
            event["reply"]
                .as_str()
                .is_some_and(|r| r.contains(&cap.queue_id)),
            "{event}"
        );
        assert!(event["session"].as_str().is_some());
    }
    assert_eq!(messages[2]["reason"], "header_from_mismatch");
    sidecar.assert_no_secrets();
}

#[test]
fn rotation_the_kubelet_way_under_continuous_sending() {
    let up = Upstream::default();
    let sidecar = InProc::start(&up, |p| {
        p.set("credential.pins", yaml_list(&[&pin(KEY_A), &pin(KEY_B)]));
        p.set("client.accept", app_accept());
    });
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<(Instant, String)>::new()));
    let mut senders = Vec::new();
    for t in 0..3 {
        let (stop, acked, addr) = (stop.clone(), acked.clone(), sidecar.smtp);
        senders.push(std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                let r = send_one(
                    addr,
                    "app",
                    APP_PASSWORD,
                    "billing@acme.example",
                    &format!("t{t} n{n}"),
                );
                assert!(r.starts_with("250"), "every message accepted: {r}");
                acked.lock().expect("lock").push((started, r));
                n += 1;
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(500));
    rotate_secret(&sidecar.secret_dir, "apikey", KEY_B);
    let swapped = Instant::now();
    assert!(
        sidecar.wait_for(Duration::from_secs(2), |_| sidecar
            .events("credential")
            .len()
            >= 2),
        "detected within 2 s"
    );
    let detected = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    for s in senders {
        s.join().expect("sender");
    }
    eprintln!("rotation detected after {:?}", detected - swapped);
    let acked = acked.lock().expect("lock").clone();
    let msgs = wait_messages(&up, acked.len());
    assert_eq!(msgs.len(), acked.len(), "none lost, none duplicated");
    for (_, reply) in &acked {
        let id = reply.split_whitespace().last().unwrap_or("");
        assert_eq!(
            msgs.iter().filter(|m| m.queue_id == id).count(),
            1,
            "{reply}"
        );
    }
    // Every message whose session started after the new credential was seen
    // went out under tenant B's account.
    let after: Vec<&String> = acked
        .iter()
        .filter(|(t, _)| *t > detected)
        .map(|(_, r)| r)
        .collect();
    assert!(!after.is_empty());
    for reply in after {
        let id = reply.split_whitespace().last().unwrap_or("");
        let m = msgs.iter().find(|m| m.queue_id == id).expect("recorded");
        assert_eq!(m.account, "tenant-b", "{reply}");
    }
    assert!(msgs.iter().any(|m| m.account == "tenant-a"));
    // Once B appears, A comes back only for a transaction already under way
    // when the swap happened (it finishes on the connection it started on,
    // with three senders in flight); a session started after the swap was
    // detected never gets an old connection.
    let first_b = msgs
        .iter()
        .position(|m| m.account == "tenant-b")
        .expect("some B");
    for m in msgs[first_b..].iter().filter(|m| m.account == "tenant-a") {
        let (started, _) = acked
            .iter()
            .find(|(_, r)| r.split_whitespace().last() == Some(m.queue_id.as_str()))
            .expect("acked");
        assert!(
            *started < detected,
            "an A message from a session started after the swap: {}",
            m.queue_id
        );
    }
    sidecar.assert_no_secrets();
}

#[test]
fn unpinned_rotation_makes_the_pod_unready_until_a_pinned_credential_is_back() {
    let up = Upstream::default();
    let sidecar = Sidecar::start(&up, |p| {
        p.set("client.accept", app_accept());
    });
    assert_eq!(sidecar.http_get("/readyz").0, 200);
    rotate_secret(&sidecar.secret_dir, "apikey", KEY_B); // not pinned
    assert!(
        sidecar.wait_for(Duration::from_secs(2), |_| sidecar.http_get("/readyz").0
            == 503)
    );
    let (_, body) = sidecar.http_get("/readyz");
    assert!(body.contains("matches none of the policy's pins"), "{body}");
    let (_, greeting) = Raw::connect(sidecar.smtp);
    assert!(greeting.starts_with("421 4.3.0"), "{greeting}");
    let before = up.server.connections();
    rotate_secret(&sidecar.secret_dir, "apikey", KEY_A);
    assert!(
        sidecar.wait_for(Duration::from_secs(2), |_| sidecar.http_get("/readyz").0
            == 200)
    );
    let r = send_one(
        sidecar.smtp,
        "app",
        APP_PASSWORD,
        "billing@acme.example",
        "back",
    );
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(up.messages().len(), 1);
    assert!(up.server.connections() >= before);
    let (_, m) = sidecar.http_get("/metrics");
    assert_eq!(
        metric(
            &m,
            "smtpbind_credential_reloads_total{tenant=\"acme\",result=\"error\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "smtpbind_rejections_total{tenant=\"acme\",reason=\"credential_not_pinned\"}"
        ),
        1.0
    );
}

#[test]
fn invalid_policy_edit_keeps_the_last_good_one_then_a_valid_edit_applies() {
    let up = Upstream::default();
    let sidecar = Sidecar::start(&up, |_| {});
    let good = std::fs::read_to_string(&sidecar.policy_path).expect("policy");
    std::fs::write(
        &sidecar.policy_path,
        good.replace("header_from: enforce", "header_from: enforse"),
    )
    .expect("write");
    assert!(sidecar.wait_for(Duration::from_secs(3), |_| !sidecar
        .events("policy")
        .is_empty()));
    let ev = &sidecar.events("policy")[0];
    assert_eq!(ev["result"], "error");
    assert!(
        ev["error"]
            .as_str()
            .is_some_and(|e| e.contains("header_from")),
        "{ev}"
    );
    assert_eq!(sidecar.http_get("/readyz").0, 200);
    let r = send_one(
        sidecar.smtp,
        "apikey",
        KEY_A,
        "billing@acme.example",
        "still works",
    );
    assert!(r.starts_with("250"), "{r}");
    assert!(
        send_one(sidecar.smtp, "apikey", KEY_A, "news@acme-news.example", "x").starts_with("550")
    );

    std::fs::write(
        &sidecar.policy_path,
        good.replace(
            "- '*@acme.example'",
            "- '*@acme.example'\n- '*@acme-news.example'",
        ),
    )
    .expect("write");
    assert!(
        sidecar.wait_for(Duration::from_secs(3), |_| sidecar.events("policy").len()
            >= 2),
        "{:?}",
        sidecar.output()
    );
    assert_eq!(sidecar.events("policy")[1]["result"], "ok");
    let r = send_one(
        sidecar.smtp,
        "apikey",
        KEY_A,
        "news@acme-news.example",
        "new sender",
    );
    assert!(r.starts_with("250"), "{r}");
    let (_, m) = sidecar.http_get("/metrics");
    assert_eq!(
        metric(
            &m,
            "smtpbind_policy_reloads_total{tenant=\"acme\",result=\"error\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "smtpbind_policy_reloads_total{tenant=\"acme\",result=\"ok\"}"
        ),
        1.0
    );
}

/// Starts a 4 MiB DATA, pausing half-way for `pause`; returns the client.
fn start_large_data(sidecar: &Sidecar) -> Raw {
    let mut c = Raw::authed(sidecar.smtp, KEY_A);
    assert!(c.cmd("MAIL FROM:<billing@acme.example>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<customer@example.net>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"From: billing@acme.example\r\nSubject: big\r\n\r\n");
    let line = "y".repeat(1022) + "\r\n";
    for _ in 0..2048 {
        c.send(line.as_bytes());
    }
    c
}

#[test]
fn sigterm_during_a_large_data_lets_it_finish_then_exits_0() {
    let up = Upstream::default();
    let mut sidecar = Sidecar::start(&up, |_| {});
    let mut c = start_large_data(&sidecar);
    sidecar.signal("TERM");
    assert!(
        sidecar.wait_for(Duration::from_secs(2), |_| sidecar.http_get("/readyz").0
            == 503)
    );
    let (_, body) = sidecar.http_get("/readyz");
    assert!(body.contains("shutting down"), "{body}");
    // Listener closed (right after readiness turns, on the runtime's next
    // turn): new clients are refused.
    assert!(
        sidecar.wait_for(Duration::from_secs(2), |_| std::net::TcpStream::connect(
            sidecar.smtp
        )
        .is_err()),
        "the listener still accepts after SIGTERM"
    );
    let line = "z".repeat(1022) + "\r\n";
    for _ in 0..2048 {
        c.send(line.as_bytes());
    }
    let r = c.cmd(".");
    assert!(r.starts_with("250"), "a message in flight completes: {r}");
    assert_eq!(wait_messages(&up, 1).len(), 1);
    // After the transaction the session is closed with 421 and the process exits 0.
    let next = c.cmd("MAIL FROM:<billing@acme.example>");
    assert!(next.starts_with("421 4.3.0") || next.is_empty(), "{next}");
    let status = wait_exit(&mut sidecar, Duration::from_secs(10));
    assert_eq!(status, Some(0));
}

#[test]
fn sigterm_with_a_stalled_data_refuses_it_after_the_drain_and_nothing_is_lost() {
    let up = Upstream::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let _ = dir;
    let mut sidecar = Sidecar::start(&up, |p| {
        p.set("shutdown.drain", "1s");
    });
    let mut c = start_large_data(&sidecar);
    let idle = Raw::authed(sidecar.smtp, KEY_A);
    sidecar.signal("TERM");
    let r = c.reply();
    assert!(
        r.starts_with("421 4.3.0"),
        "stalled DATA is refused with 4xx after the drain: {r}"
    );
    let mut idle = idle;
    let r = idle.reply();
    assert!(
        r.starts_with("421 4.3.0"),
        "idle session closed at once: {r}"
    );
    assert_eq!(wait_exit(&mut sidecar, Duration::from_secs(10)), Some(0));
    assert!(
        up.messages().is_empty(),
        "never acknowledged, never delivered"
    );
}

fn wait_exit(sidecar: &mut Sidecar, timeout: Duration) -> Option<i32> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(Some(status)) = sidecar.child.try_wait() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Worker threads: `SMTPBIND_WORKER_THREADS`, else the CPUs the process may
/// use capped at 2 (a CPU-limited pod, like `taskset -c 0` here, gets the
/// current-thread runtime). Every configuration relays a message.
#[test]
fn worker_threads_follow_the_cpus_available_and_the_override() {
    let up = Upstream::default();
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    let start = |wrap: &dyn Fn(std::process::Command) -> std::process::Command| {
        let sidecar = Sidecar::start_wrapped(up.addr(), &up.server.ca_pem, |_| {}, wrap);
        let workers = sidecar.events("listening")[0]["workers"]
            .as_u64()
            .expect("workers");
        let reply = send_one(sidecar.smtp, "apikey", KEY_A, "app@acme.example", "workers");
        assert!(reply.starts_with("250 "), "{workers} workers: {reply}");
        workers
    };
    let env = |value: &'static str| {
        move |mut cmd: std::process::Command| {
            cmd.env("SMTPBIND_WORKER_THREADS", value);
            cmd
        }
    };
    let default = start(&|mut cmd| {
        cmd.env_remove("SMTPBIND_WORKER_THREADS");
        cmd
    });
    assert_eq!(default, available.min(2) as u64);
    assert_eq!(start(&env("1")), 1);
    assert_eq!(start(&env("3")), 3);
    assert_eq!(start(&env("nonsense")), available.min(2) as u64);
    // one CPU allowed: the current-thread runtime
    let pinned = start(&|cmd| {
        let mut taskset = std::process::Command::new("taskset");
        taskset
            .args(["-c", "0"])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        taskset.env_remove("SMTPBIND_WORKER_THREADS");
        taskset
    });
    assert_eq!(pinned, 1);
    assert_eq!(wait_messages(&up, 5).len(), 5);
}

/// The `smtpbind_credential_info` / `smtpbind_policy_info` / `smtpbind_ready`
/// series of a sidecar (contract §12), one line each.
fn info_series(sidecar: &Sidecar) -> Vec<String> {
    let (_, m) = sidecar.http_get("/metrics");
    m.lines()
        .filter(|l| {
            l.starts_with("smtpbind_credential_info{")
                || l.starts_with("smtpbind_credential_pinned{")
                || l.starts_with("smtpbind_policy_info{")
                || l.starts_with("smtpbind_ready{")
        })
        .map(str::to_string)
        .collect()
}

fn short_sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(bytes)[..6])
}

#[test]
fn info_metrics_follow_a_rotation_and_a_reload() {
    let up = Upstream::default();
    let sidecar = Sidecar::start(&up, |p| {
        p.set("credential.pins", yaml_list(&[&pin(KEY_A), &pin(KEY_B)]));
    });
    let first = std::fs::read(&sidecar.policy_path).expect("policy");
    let pin_a = &pin(KEY_A)["sha256:".len()..][..12];
    let pin_b = &pin(KEY_B)["sha256:".len()..][..12];
    assert_eq!(
        info_series(&sidecar),
        [
            "smtpbind_ready{tenant=\"acme\"} 1".to_string(),
            "smtpbind_credential_pinned{tenant=\"acme\"} 1".to_string(),
            format!("smtpbind_credential_info{{pin=\"{pin_a}\",tenant=\"acme\"}} 1"),
            format!(
                "smtpbind_policy_info{{sha256=\"{}\",tenant=\"acme\"}} 1",
                short_sha(&first)
            ),
        ]
    );

    // Rotation to the other pinned key: the series names the new pin only.
    rotate_secret(&sidecar.secret_dir, "apikey", KEY_B);
    let rotated = format!("smtpbind_credential_info{{pin=\"{pin_b}\",tenant=\"acme\"}} 1");
    assert!(
        sidecar.wait_for(Duration::from_secs(3), |_| info_series(&sidecar)
            .contains(&rotated)),
        "{:?}",
        info_series(&sidecar)
    );
    assert!(!info_series(&sidecar).iter().any(|l| l.contains(pin_a)));

    // A reload: the policy's sha follows the file in force; a rejected edit
    // leaves it where it was.
    let bad = String::from_utf8(first.clone())
        .expect("utf-8")
        .replace("header_from: enforce", "header_from: enforse");
    std::fs::write(&sidecar.policy_path, &bad).expect("write");
    assert!(sidecar.wait_for(Duration::from_secs(3), |_| !sidecar
        .events("policy")
        .is_empty()));
    let kept = format!(
        "smtpbind_policy_info{{sha256=\"{}\",tenant=\"acme\"}} 1",
        short_sha(&first)
    );
    assert!(info_series(&sidecar).contains(&kept));
    let good = bad.replace("header_from: enforse", "header_from: ignore");
    std::fs::write(&sidecar.policy_path, &good).expect("write");
    let reloaded = format!(
        "smtpbind_policy_info{{sha256=\"{}\",tenant=\"acme\"}} 1",
        short_sha(good.as_bytes())
    );
    assert!(
        sidecar.wait_for(Duration::from_secs(3), |_| info_series(&sidecar)
            .contains(&reloaded)),
        "{:?}",
        info_series(&sidecar)
    );
    assert_eq!(
        info_series(&sidecar).len(),
        4,
        "{:?}",
        info_series(&sidecar)
    );

    // Not pinned: not ready, and no credential series (none is in force).
    rotate_secret(&sidecar.secret_dir, "apikey", "unpinned-key");
    assert!(
        sidecar.wait_for(Duration::from_secs(3), |_| info_series(&sidecar)
            .contains(&"smtpbind_ready{tenant=\"acme\"} 0".to_string())),
        "{:?}",
        info_series(&sidecar)
    );
    assert!(!info_series(&sidecar)
        .iter()
        .any(|l| l.starts_with("smtpbind_credential_info")));
    assert!(info_series(&sidecar)
        .contains(&"smtpbind_credential_pinned{tenant=\"acme\"} 0".to_string()));
}
