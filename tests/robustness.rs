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
    s.assert_scrubbed_upstream_error();
    s.assert_no_secrets();
    assert!(up.messages().is_empty());
}

/// One generated policy: every numeric value within what `check` allows.
#[derive(Debug, Clone)]
struct Numbers {
    rate: Option<(f64, u32, u64)>,
    max_message_bytes: i64,
    max_sessions: i64,
    command_timeout_ms: u64,
    max_per_message: i64,
    max_idle: i64,
    prewarm: i64,
    max_connections: i64,
    connect_timeout_ms: u64,
    reply_timeout_ms: u64,
    idle_timeout_ms: u64,
}

const DAY_MS: u64 = 86_400_000;

impl Numbers {
    fn apply(&self, p: &mut PolicySpec) {
        let ms = |n: u64| format!("{n}ms");
        if let Some((mps, burst, wait)) = self.rate {
            p.set("limits.rate.messages_per_second", mps)
                .set("limits.rate.burst", burst)
                .set("limits.rate.max_wait", ms(wait));
        }
        p.set("limits.max_message_bytes", self.max_message_bytes)
            .set("limits.max_sessions", self.max_sessions)
            .set("limits.command_timeout", ms(self.command_timeout_ms))
            .set("limits.data_timeout", ms(DAY_MS))
            .set("recipients.max_per_message", self.max_per_message)
            .set("upstream.reuse.max_idle", self.max_idle)
            .set("upstream.reuse.prewarm", self.prewarm)
            .set("upstream.reuse.idle_timeout", ms(self.idle_timeout_ms))
            .set("upstream.max_connections", self.max_connections)
            .set("upstream.connect_timeout", ms(self.connect_timeout_ms))
            .set("upstream.reply_timeout", ms(self.reply_timeout_ms))
            .set("shutdown.drain", ms(DAY_MS));
    }
}

/// Starts the real binary with `n`, checks it accepts the policy, sends
/// three messages and requires a well-formed reply to each and a process
/// that is still running without a panic.
fn sessions_survive(up: &Upstream, n: &Numbers) -> Result<(), String> {
    let mut s = Sidecar::start(up, |p| n.apply(p));
    for i in 0..3 {
        let r = send(&s, &format!("numbers {i}"));
        let code = r.get(..3).and_then(|c| c.parse::<u16>().ok());
        // A command deadline of a few milliseconds may cut the session off
        // before the client's next command is read: its `421` is then lost
        // to the reset of a socket closed with unread input. A closed
        // connection is a right answer there; a panic or an exit is not.
        let cut_off = r.is_empty() && n.command_timeout_ms < 100;
        if !cut_off && !code.is_some_and(|c| (200..600).contains(&c)) {
            return Err(format!("message {i}: reply {r:?} for {n:?}"));
        }
    }
    let out = s.output().join("\n");
    if out.contains("panicked") {
        return Err(format!("panic for {n:?}: {out}"));
    }
    match s.child.try_wait() {
        Ok(None) => Ok(()),
        other => Err(format!("exited {other:?} for {n:?}")),
    }
}

fn numbers() -> impl proptest::strategy::Strategy<Value = Numbers> {
    use proptest::prelude::*;
    let duration = || prop_oneof![Just(1u64), Just(DAY_MS), 1u64..DAY_MS, 200u64..10_000];
    let rate = proptest::option::of((
        prop_oneof![
            Just(1e-20),
            Just(f64::MIN_POSITIVE),
            Just(100_000.0),
            1e-9..100_000.0f64
        ],
        prop_oneof![Just(1u32), Just(100_000u32), 1u32..100_000],
        prop_oneof![Just(1u64), Just(3_600_000u64), 1u64..3_600_000],
    ));
    (
        rate,
        prop_oneof![Just(1024i64), Just(1i64 << 30), 1024i64..(1 << 30)],
        prop_oneof![Just(1i64), Just(100_000i64), 1i64..100_000],
        duration(),
        prop_oneof![Just(1i64), Just(1000i64), 1i64..1000],
        prop_oneof![Just(0i64), Just(1024i64), 0i64..1024],
        // prewarm stays small: 1024 connections per case is a load test.
        0i64..3,
        prop_oneof![Just(1i64), Just(4096i64), 1i64..4096],
        (duration(), duration(), duration()),
    )
        .prop_map(
            |(rate, bytes, sessions, command, rcpts, idle, prewarm, conns, (c, r, i))| Numbers {
                rate,
                max_message_bytes: bytes,
                max_sessions: sessions,
                command_timeout_ms: command,
                max_per_message: rcpts,
                max_idle: idle,
                prewarm: prewarm.min(idle),
                max_connections: conns,
                connect_timeout_ms: c,
                reply_timeout_ms: r,
                idle_timeout_ms: i,
            },
        )
}

/// Contract §10 (issue 19 item 2): no value a policy can hold crashes the
/// process. The extremes `check` allows, then generated policies, each
/// with real sessions against the real binary.
#[test]
fn sessions_under_any_valid_numbers_never_panic() {
    use proptest::test_runner::{Config, RngAlgorithm, TestRunner};
    let up = Upstream::start(|_| {});
    let low = Numbers {
        rate: Some((1e-20, 1, 1)),
        max_message_bytes: 1024,
        max_sessions: 1,
        command_timeout_ms: 1,
        max_per_message: 1,
        max_idle: 0,
        prewarm: 0,
        max_connections: 1,
        connect_timeout_ms: 1,
        reply_timeout_ms: 1,
        idle_timeout_ms: 1,
    };
    let high = Numbers {
        rate: Some((100_000.0, 100_000, 3_600_000)),
        max_message_bytes: 1 << 30,
        max_sessions: 100_000,
        command_timeout_ms: DAY_MS,
        max_per_message: 1000,
        max_idle: 1024,
        prewarm: 1,
        max_connections: 4096,
        connect_timeout_ms: DAY_MS,
        reply_timeout_ms: DAY_MS,
        idle_timeout_ms: DAY_MS,
    };
    // The case: a tiny rate with ordinary timeouts (the second MAIL).
    let tiny_rate = Numbers {
        rate: Some((1e-20, 1, 5000)),
        command_timeout_ms: 10_000,
        connect_timeout_ms: 3000,
        reply_timeout_ms: 5000,
        idle_timeout_ms: 30_000,
        max_per_message: 10,
        ..high.clone()
    };
    for n in [&tiny_rate, &low, &high] {
        sessions_survive(&up, n).unwrap_or_else(|e| panic!("{e}"));
    }
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(8);
    let mut runner = TestRunner::new(Config {
        cases,
        rng_algorithm: RngAlgorithm::XorShift,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&numbers(), |n| {
            sessions_survive(&up, &n).map_err(proptest::test_runner::TestCaseError::fail)
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// CPU time (user + system) of process `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name's closing parenthesis; utime, stime are 14, 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12)
}

/// Issue 19 item 7: the admin accept loop out of descriptors (EMFILE: the
/// process runs with 64 of them and 120 connections are held against the
/// admin port). It backs off instead of spinning, and probes still answer.
#[test]
fn admin_accept_out_of_descriptors_backs_off_and_probes_answer() {
    let up = Upstream::start(|_| {});
    let s = Sidecar::start_wrapped(
        up.addr(),
        &up.server.ca_pem,
        |_| {},
        |cmd| {
            let mut wrapped = std::process::Command::new("prlimit");
            wrapped
                .arg("--nofile=64:64")
                .arg("--")
                .arg(cmd.get_program());
            wrapped.args(cmd.get_args());
            wrapped
        },
    );
    let held: Vec<_> = (0..120)
        .filter_map(|_| std::net::TcpStream::connect(s.admin).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let pid = s.child.id();
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_ticks(pid) - before;
    // Ticks are 1/100 s: a spinning loop uses ~300 in 3 s.
    eprintln!("issue 19 item 7: {used} CPU ticks in 3 s with 120 admin connections held at 64 descriptors");
    assert!(used < 60, "the accept loop spins: {used} ticks in 3 s");
    let start = Instant::now();
    let (code, _) = s.http_get("/healthz");
    assert_eq!(code, 200);
    eprintln!(
        "issue 19 item 7: /healthz answered in {:?}",
        start.elapsed()
    );
    let (_, m) = s.http_get("/metrics");
    let errors = metric(&m, "smtpbind_admin_accept_errors_total{tenant=\"acme\"}");
    eprintln!("issue 19 item 7: {errors} failed accepts counted");
    assert!(
        errors >= 1.0,
        "no accept failed: the test did not reach EMFILE"
    );
    drop(held);
}

/// Issue 19 item 7: a credential that is not there is not "not pinned":
/// the reason label (rejections metric, credential event) and the
/// readiness text send the operator to the right fix.
#[test]
fn a_missing_credential_is_named_missing_not_unpinned() {
    let up = Upstream::start(|_| {});
    let empty = tempfile::tempdir().expect("tempdir");
    let s = Sidecar::start(&up, |p| {
        p.set("credential.secret_dir", empty.path().display().to_string());
    });
    let (code, body) = s.http_get("/readyz");
    assert_eq!(code, 503);
    assert!(body.contains("credential_missing"), "{body}");
    let r = send(&s, "no credential");
    assert!(r.starts_with("421 4.3.0"), "{r}");
    let reasons = s.reject_reasons(1);
    assert_eq!(reasons, ["credential_missing"]);
    let (_, m) = s.http_get("/metrics");
    assert_eq!(
        metric(
            &m,
            "smtpbind_rejections_total{tenant=\"acme\",reason=\"credential_missing\"}"
        ),
        1.0,
        "{m}"
    );
    let events = s.events("credential");
    assert!(
        events.iter().any(|e| e["reason"] == "credential_missing"),
        "{events:?}"
    );
}
