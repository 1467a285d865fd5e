//! Contract §9 end to end: the real binary against the capture upstream
//! (which checks every `AUTH XOAUTH2` token against the test identity
//! provider, a real HTTPS token endpoint) — both OAuth flows, refresh under
//! load, the endpoint down and back, a token the provider rejects once,
//! and SES with the derived password.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::idp::*;
use support::*;

const FROM: &str = "billing@acme.example";

/// A sidecar whose mounted Secret is `(username, password)` and whose
/// mechanism is set by `configure`; the app presents `app` / [`KEY_P`].
fn sidecar_with_secret(
    up: &Upstream,
    username: &str,
    password: &str,
    configure: impl FnOnce(&mut PolicySpec),
) -> (Sidecar, tempfile::TempDir) {
    let secrets = tempfile::tempdir().expect("tempdir");
    write_secret(secrets.path(), username, password);
    let accept = format!("[{{username: app, password: \"{}\"}}]", pin(KEY_P));
    let dir = secrets.path().display().to_string();
    let sidecar = Sidecar::start(up, |p| {
        p.set("credential.secret_dir", dir)
            .set("credential.pins", yaml_list(&[&pin(password)]))
            .set(
                "client.accept",
                serde_yaml::from_str::<serde_yaml::Value>(&accept).expect("yaml"),
            );
        configure(p);
    });
    (sidecar, secrets)
}

/// One XOAUTH2 setup: the identity provider (tokens living `lifetime`), the
/// capture upstream checking its tokens (`faults` applied), and a ready
/// sidecar with the flow's Secret (client id + secret, or the JSON key).
/// `configure` runs last (it may override any key).
struct OAuth {
    s: Sidecar,
    up: Upstream,
    idp: Idp,
    _ca: tempfile::NamedTempFile,
    _secrets: tempfile::TempDir,
}

fn oauth_setup(
    lifetime: Duration,
    flow: &str,
    faults: impl FnOnce(&mut smtpbind::demo::capture::Faults) + Send + 'static,
    configure: impl FnOnce(&mut PolicySpec),
) -> OAuth {
    let idp = Idp::start(lifetime);
    let tokens = idp.tokens().clone();
    let up = Upstream::start(move |c| {
        c.oauth = Some(tokens);
        faults(&mut c.faults);
    });
    let ca = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(ca.path(), &idp.issuer.ca_pem).expect("ca");
    let (username, password) = match flow {
        "jwt_bearer" => ("ignored", idp.sa_json.clone()),
        _ => (CLIENT_ID, KEY_M.to_string()),
    };
    let (s, secrets) = sidecar_with_secret(&up, username, &password, |p| {
        xoauth2_policy(p, flow, idp.url(), ca.path().display().to_string());
        configure(p);
    });
    OAuth {
        s,
        up,
        idp,
        _ca: ca,
        _secrets: secrets,
    }
}

fn wait_ready(s: &Sidecar, want: u16, within: Duration) -> (u16, String) {
    let start = Instant::now();
    loop {
        let (code, body) = s.http_get("/readyz");
        if code == want || start.elapsed() > within {
            return (code, body);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn send(s: &Sidecar, body: &str) -> String {
    send_one(s.smtp, "app", KEY_P, FROM, body)
}

fn series(name: &str, labels: &str) -> String {
    format!("{name}{{tenant=\"acme\"{labels}}}")
}

fn check_no_leaks(s: &Sidecar, idp: &Idp) {
    let out = s.output().join("\n");
    s.assert_no_secrets();
    idp.assert_absent(&out);
    for secret in [KEY_M, KEY_P] {
        assert!(!out.contains(secret), "secret in output");
    }
}

#[test]
fn client_credentials_under_load_refreshes_ahead_and_loses_nothing() {
    // Tokens live 4 s: refreshed every 2 s (refresh_before clamped to half).
    let o = oauth_setup(Duration::from_secs(4), "client_credentials", |_| {}, |_| {});
    let (s, up, idp) = (&o.s, &o.up, &o.idp);
    assert_eq!(wait_ready(s, 200, Duration::from_secs(5)).0, 200);

    let run_for = Duration::from_secs(30);
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let (stop, sent, failed, addr) = (stop.clone(), sent.clone(), failed.clone(), s.smtp);
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let r = send_one(addr, "app", KEY_P, FROM, &format!("client {i} message {n}"));
                    if r.starts_with("250") {
                        sent.fetch_add(1, Ordering::Relaxed);
                    } else {
                        eprintln!("client {i}: {r}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    n += 1;
                }
            })
        })
        .collect();
    // Readiness must hold the whole time: a token is always held.
    let start = Instant::now();
    let mut not_ready = 0;
    while start.elapsed() < run_for {
        if s.http_get("/readyz").0 != 200 {
            not_ready += 1;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client");
    }
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let grants = idp.tokens().grants();
    let messages = wait_messages(up, sent as usize);
    eprintln!(
        "load: {sent} messages relayed, {failed} failed, {grants} tokens fetched in {:?}",
        run_for
    );
    assert_eq!(failed, 0);
    assert_eq!(not_ready, 0, "readiness dropped during the load");
    assert_eq!(messages.len() as u64, sent, "every 250 recorded once");
    assert!(sent > 200, "{sent}");
    assert!(messages
        .iter()
        .all(|m| m.account == M365_ACCOUNT && m.username == MAILBOX));
    // Refreshed ahead of expiry (every ~2 s), never once per message.
    assert!(
        (12..=20).contains(&grants),
        "{grants} token fetches in 30 s"
    );
    assert!(grants * 10 < sent);
    // Every AUTH the provider saw carried a live token.
    let auths = up.server.auth_attempts();
    assert!(auths
        .iter()
        .all(|a| a.account.as_deref() == Some(M365_ACCOUNT) && a.tls));
    let m = s.http_get("/metrics").1;
    let ok = metric(
        &m,
        &series("smtpbind_oauth_token_refreshes_total", ",result=\"ok\""),
    );
    assert_eq!(ok as u64, grants, "{m}");
    let left = metric(&m, &series("smtpbind_oauth_token_expiry_seconds", ""));
    assert!(left > 0.0 && left <= 4.0, "{left}");
    check_no_leaks(s, idp);
}

#[test]
fn jwt_bearer_signs_an_assertion_and_sends_as_the_mailbox() {
    let o = oauth_setup(Duration::from_secs(60), "jwt_bearer", |_| {}, |_| {});
    let (s, up, idp) = (&o.s, &o.up, &o.idp);
    assert_eq!(wait_ready(s, 200, Duration::from_secs(5)).0, 200);
    for i in 0..3 {
        assert!(send(s, &format!("google {i}")).starts_with("250"));
    }
    let messages = wait_messages(up, 3);
    assert_eq!(messages.len(), 3);
    assert!(messages
        .iter()
        .all(|m| m.account == GOOGLE_ACCOUNT && m.username == MAILBOX));
    assert_eq!(idp.tokens().grants(), 1);

    // `check --credentials`: the pin and the key, no network.
    let out = std::process::Command::new(bin())
        .args(["check", "--credentials"])
        .arg(&s.policy_path)
        .output()
        .expect("check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_no_leaks(s, idp);
}

#[test]
fn check_credentials_refuses_a_broken_service_account_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = r#"{"client_email":"a@b.iam.gserviceaccount.com","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}"#;
    write_secret(&dir.path().join("secret"), "ignored", broken);
    let policy = format!(
        "version: 1\ntenant: acme\nupstream:\n  address: smtp.gmail.com:587\n\
         credential:\n  secret_dir: {}\n  mechanism: xoauth2\n  pins: [ \"{}\" ]\n  oauth2:\n\
         \x20   flow: jwt_bearer\n    token_url: https://oauth2.googleapis.com/token\n\
         \x20   scope: https://mail.google.com/\n    user: {MAILBOX}\n\
         client:\n  accept:\n    - {{ username: app, password: \"{}\" }}\nsenders: [ \"*@acme.example\" ]\n",
        dir.path().join("secret").display(),
        pin(broken),
        pin(KEY_P)
    );
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, policy).expect("policy");
    let out = std::process::Command::new(bin())
        .args(["check", "--credentials"])
        .arg(&path)
        .output()
        .expect("check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("service account key"), "{stderr}");
    assert!(!stderr.contains("AAAA"), "{stderr}");
}

#[test]
fn token_endpoint_down_means_not_ready_421_and_nothing_relayed_then_recovery() {
    let o = oauth_setup(Duration::from_secs(3), "client_credentials", |_| {}, |_| {});
    let (s, up, idp) = (&o.s, &o.up, &o.idp);
    assert_eq!(wait_ready(s, 200, Duration::from_secs(5)).0, 200);
    assert!(send(s, "before").starts_with("250"));
    // A session bound before the outage, with a pooled upstream connection.
    let (mut held, _) = Raw::connect(s.smtp);
    held.cmd("EHLO x");
    assert!(held
        .cmd(&format!("AUTH PLAIN {}", plain("app", KEY_P)))
        .starts_with("235"));

    idp.issuer.set_down(true);
    let (code, reason) = wait_ready(s, 503, Duration::from_secs(5));
    assert_eq!(code, 503, "still ready with the endpoint down");
    assert!(
        reason.contains("OAuth2 token") && reason.contains("503"),
        "{reason}"
    );
    let relayed = up.messages().len();
    // New sessions: 421 4.3.0 at once.
    let (_c, greeting) = Raw::connect(s.smtp);
    assert!(greeting.starts_with("421 4.3.0"), "{greeting}");
    // The session bound before: its MAIL is refused too, nothing goes out.
    let r = held.cmd(&format!("MAIL FROM:<{FROM}>"));
    assert!(r.starts_with("421 4.3.0"), "{r}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        up.messages().len(),
        relayed,
        "relayed without a valid token"
    );
    let m = s.http_get("/metrics").1;
    assert_eq!(
        metric(&m, &series("smtpbind_oauth_token_expiry_seconds", "")),
        0.0
    );
    // Both refusals are counted as what they are: pinned, but no token.
    assert_eq!(
        metric(
            &m,
            &series("smtpbind_rejections_total", ",reason=\"token_unavailable\"")
        ),
        2.0
    );
    assert!(
        metric(
            &m,
            &series("smtpbind_oauth_token_refreshes_total", ",result=\"error\"")
        ) >= 1.0
    );

    idp.issuer.set_down(false);
    let (code, _) = wait_ready(s, 200, Duration::from_secs(10));
    assert_eq!(code, 200, "did not recover by itself");
    assert!(send(s, "after").starts_with("250"));
    assert_eq!(wait_messages(up, relayed + 1).len(), relayed + 1);
    check_no_leaks(s, idp);
}

#[test]
fn a_token_the_provider_rejects_is_refreshed_once_and_retried() {
    let o = oauth_setup(
        Duration::from_secs(60),
        "client_credentials",
        |_| {},
        |p| {
            p.set("upstream.reuse.max_idle", 0);
        },
    );
    let (s, up, idp) = (&o.s, &o.up, &o.idp);
    assert_eq!(wait_ready(s, 200, Duration::from_secs(5)).0, 200);
    assert!(send(s, "first").starts_with("250"));
    assert_eq!(idp.tokens().grants(), 1);
    // The provider revokes the token the sidecar holds.
    idp.tokens().revoke_all();
    assert!(send(s, "second").starts_with("250"));
    assert_eq!(idp.tokens().grants(), 2, "one refresh after the refusal");
    let auths: Vec<_> = up
        .server
        .auth_attempts()
        .iter()
        .map(|a| a.account.clone())
        .collect();
    assert_eq!(
        auths,
        vec![
            Some(M365_ACCOUNT.to_string()),
            None,
            Some(M365_ACCOUNT.to_string())
        ]
    );
    assert_eq!(wait_messages(up, 2).len(), 2);
    let m = s.http_get("/metrics").1;
    assert_eq!(
        metric(&m, &series("smtpbind_upstream_auth_failures_total", "")),
        1.0
    );
    check_no_leaks(s, idp);
}

#[test]
fn ses_relays_with_the_derived_password() {
    const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
    const KEY_S: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let derived = ses_python(KEY_S, "eu-west-1");
    assert_eq!(
        smtpbind::identity::ses::smtp_password(KEY_S, "eu-west-1").expose(),
        derived
    );
    let account_password = derived.clone();
    let up = Upstream::start(move |c| {
        c.accounts.push(smtpbind::demo::capture::Account {
            name: "ses-acme".into(),
            username: AKID.into(),
            password: account_password,
        })
    });
    let (s, _secrets) = sidecar_with_secret(&up, AKID, KEY_S, |p| {
        p.set("credential.mechanism", "ses")
            .set("credential.ses.region", "eu-west-1");
    });
    assert!(send(&s, "via ses").starts_with("250"));
    let m = wait_messages(&up, 1);
    assert_eq!(
        (m[0].account.as_str(), m[0].username.as_str()),
        ("ses-acme", AKID)
    );
    let out = s.output().join("\n");
    assert!(!out.contains(KEY_S) && !out.contains(&derived));
}

/// The SES SMTP password by AWS's published algorithm, computed by
/// Python's hmac (independently of the Rust code under test).
fn ses_python(secret: &str, region: &str) -> String {
    let script = r#"
import base64, hashlib, hmac, sys
def sign(key, msg): return hmac.new(key, msg.encode(), hashlib.sha256).digest()
secret, region = sys.argv[1], sys.argv[2]
sig = sign(("AWS4" + secret).encode(), "11111111")
for part in (region, "ses", "aws4_request", "SendRawEmail"):
    sig = sign(sig, part)
print(base64.b64encode(bytes([0x04]) + sig).decode())
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, secret, region])
        .output()
        .expect("python3");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

#[test]
fn ses_vector_published_and_recomputed_in_python() {
    let key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let published = "BLBM/9hSUELfq8Gw+rU1YcBjkOxGbhT2XG763xVLGWL9";
    assert_eq!(ses_python(key, "us-east-1"), published);
    assert_eq!(
        smtpbind::identity::ses::smtp_password(key, "us-east-1").expose(),
        published
    );
    for region in ["eu-west-1", "ap-southeast-2", "us-gov-west-1"] {
        assert_eq!(
            smtpbind::identity::ses::smtp_password(key, region).expose(),
            ses_python(key, region),
            "{region}"
        );
    }
}

/// Contract §10: over a measured window the MAILs that go on stay within
/// the bucket's bound (`burst + rate * window`); every message is either
/// 250 and recorded once upstream, or 451 4.7.0 and not recorded at all.
#[test]
fn rate_is_held_within_the_bucket_bound() {
    let up = Upstream::default();
    let s = Sidecar::start(&up, |p| {
        p.set("limits.rate.messages_per_second", 10)
            .set("limits.rate.burst", 5)
            .set("limits.rate.max_wait", "200ms");
    });
    let window = Duration::from_secs(5);
    let start = Instant::now();
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let addr = s.smtp;
            std::thread::spawn(move || {
                let mut outcomes = Vec::new();
                let mut n = 0;
                while start.elapsed() < window {
                    let id = format!("rate-{i}-{n}");
                    let r = send_one(addr, "apikey", KEY_A, FROM, &id);
                    outcomes.push((id, r));
                    n += 1;
                }
                outcomes
            })
        })
        .collect();
    let outcomes: Vec<(String, String)> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("client"))
        .collect();
    let elapsed = start.elapsed().as_secs_f64();
    let accepted: Vec<&String> = outcomes
        .iter()
        .filter(|(_, r)| r.starts_with("250"))
        .map(|(id, _)| id)
        .collect();
    let refused = outcomes
        .iter()
        .filter(|(_, r)| r.starts_with("451 4.7.0"))
        .count();
    assert_eq!(
        accepted.len() + refused,
        outcomes.len(),
        "other replies: {outcomes:?}"
    );
    let bound = 5.0 + 10.0 * elapsed;
    eprintln!(
        "rate: {} accepted, {refused} refused in {elapsed:.2} s ({:.2}/s; bound {bound:.1})",
        accepted.len(),
        accepted.len() as f64 / elapsed
    );
    assert!(
        accepted.len() as f64 <= bound + 1.0,
        "{} > {bound}",
        accepted.len()
    );
    assert!(
        accepted.len() as f64 >= 10.0 * elapsed * 0.8,
        "{}",
        accepted.len()
    );
    assert!(refused > 0);
    let recorded = wait_messages(&up, accepted.len());
    std::thread::sleep(Duration::from_millis(200));
    let recorded = if up.messages().len() > recorded.len() {
        up.messages()
    } else {
        recorded
    };
    let mut ids: Vec<String> = recorded
        .iter()
        .map(|m| {
            let body = String::from_utf8_lossy(&m.data).to_string();
            body.lines()
                .find(|l| l.starts_with("rate-"))
                .unwrap_or("?")
                .to_string()
        })
        .collect();
    ids.sort();
    let mut want: Vec<String> = accepted.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(
        ids, want,
        "recorded upstream != answered 250 (each exactly once)"
    );
    let m = s.http_get("/metrics").1;
    assert_eq!(
        metric(
            &m,
            &series("smtpbind_rate_limited_total", ",result=\"refused\"")
        ) as usize,
        refused
    );
    assert!(
        metric(
            &m,
            &series("smtpbind_rate_limited_total", ",result=\"delayed\"")
        ) > 0.0
    );
}

#[test]
fn a_provider_that_keeps_refusing_gets_one_retry_then_454() {
    let o = oauth_setup(
        Duration::from_secs(60),
        "client_credentials",
        |f| f.reject_xoauth2 = true,
        |_| {},
    );
    let (s, up, idp) = (&o.s, &o.up, &o.idp);
    assert_eq!(wait_ready(s, 200, Duration::from_secs(5)).0, 200);
    let r = send(s, "refused");
    assert!(r.starts_with("454 4.7.0"), "{r}");
    // The first token, then exactly one refresh and one retry.
    assert_eq!(idp.tokens().grants(), 2);
    let auths = up.server.auth_attempts();
    assert_eq!(auths.len(), 2);
    assert!(auths.iter().all(|a| a.account.is_none()));
    assert!(up.messages().is_empty());
    let m = s.http_get("/metrics").1;
    assert_eq!(
        metric(&m, &series("smtpbind_upstream_auth_failures_total", "")),
        2.0
    );
    check_no_leaks(s, idp);
}

#[test]
fn demo_xoauth2_shows_the_path_in_one_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let mut cmd = std::process::Command::new(bin());
    cmd.args([
        "demo",
        "--xoauth2",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--dir",
    ])
    .arg(&path);
    let s = Sidecar::spawn_command(
        dir,
        path.join("acme-m365-policy.yaml"),
        path.join("secrets"),
        cmd,
    );
    assert_eq!(wait_ready(&s, 200, Duration::from_secs(5)).0, 200);
    let app_password = std::fs::read_to_string(path.join("app-password")).expect("app password");
    let r = send_one(s.smtp, "app", &app_password, FROM, "demo");
    assert!(r.starts_with("250"), "{r}");
    let log = path.join("upstream-activity").join("acme-m365.jsonl");
    let start = Instant::now();
    while !log.exists() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let line = std::fs::read_to_string(&log).expect("activity log");
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect("json");
    assert_eq!(
        (v["account"].as_str(), v["username"].as_str()),
        (Some("acme-m365"), Some(FROM))
    );
    let secret = std::fs::read_to_string(path.join("secrets/acme-m365/password")).expect("secret");
    let out = s.output().join("\n");
    assert!(!out.contains(&secret) && !out.contains(&app_password));
}

#[test]
fn an_untrusted_token_endpoint_leaves_the_process_running_and_not_ready() {
    // A CA that did not sign the token endpoint's certificate.
    let other_ca = tempfile::NamedTempFile::new().expect("tmp");
    let pki = smtpbind::certs::Pki::generate("another CA", &["localhost".into()]).expect("pki");
    std::fs::write(other_ca.path(), pki.ca_pem).expect("ca");
    let o = oauth_setup(
        Duration::from_secs(60),
        "client_credentials",
        |_| {},
        |p| {
            p.set(
                "credential.oauth2.ca_file",
                other_ca.path().display().to_string(),
            );
        },
    );
    let (s, up, idp) = (&o.s, &o.up, &o.idp);
    let start = Instant::now();
    let (code, reason) = loop {
        let (code, reason) = s.http_get("/readyz");
        if reason.contains("TLS") || start.elapsed() > Duration::from_secs(3) {
            break (code, reason);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, 503);
    assert!(
        reason.contains("TLS") && reason.contains("certificate"),
        "{reason}"
    );
    let (_c, greeting) = Raw::connect(s.smtp);
    assert!(greeting.starts_with("421 4.3.0"), "{greeting}");
    assert_eq!(idp.tokens().grants(), 0);
    assert!(s.http_get("/healthz").0 == 200, "the process keeps running");
    assert!(up.messages().is_empty());
}

#[test]
fn a_policy_reload_keeps_the_token_in_hand() {
    let o = oauth_setup(
        Duration::from_secs(60),
        "client_credentials",
        |_| {},
        |_| {},
    );
    let (s, idp) = (&o.s, &o.idp);
    assert_eq!(wait_ready(s, 200, Duration::from_secs(5)).0, 200);
    assert!(send(s, "before").starts_with("250"));
    // The reload must not need the token endpoint: it is down from here on.
    idp.issuer.set_down(true);
    let mut text = std::fs::read_to_string(&s.policy_path).expect("policy");
    text.push_str("\n# edited by the operator\n");
    std::fs::write(&s.policy_path, text).expect("policy");
    assert!(
        s.wait_for(Duration::from_secs(5), |lines| lines.iter().any(|l| l
            .contains("\"event\":\"policy\"")
            && l.contains("\"result\":\"ok\"")))
    );
    assert_eq!(s.http_get("/readyz").0, 200);
    assert!(send(s, "after").starts_with("250"));
    assert_eq!(idp.tokens().grants(), 1, "the reload fetched a new token");
}

/// Issue 19, item 1: the provider refuses the token in hand while the token
/// endpoint is healthy but slow (2 s). 20 sessions started during that one
/// refresh all wait for it and relay; `/readyz` stays 200 throughout and the
/// refresh is counted once.
#[test]
fn a_provider_refusal_during_a_slow_refresh_is_not_an_outage() {
    let o = oauth_setup(
        Duration::from_secs(300),
        "client_credentials",
        |_| {},
        |p| {
            p.set("upstream.reuse.max_idle", 0)
                .set("upstream.connect_timeout", "10s");
        },
    );
    let (s, up, idp) = (&o.s, &o.up, &o.idp);
    assert_eq!(wait_ready(s, 200, Duration::from_secs(5)).0, 200);
    assert!(send(s, "first").starts_with("250"));
    let ok = series("smtpbind_oauth_token_refreshes_total", ",result=\"ok\"");
    let before = metric(&s.http_get("/metrics").1, &ok);
    idp.issuer.set_delay(Duration::from_secs(2));
    idp.tokens().revoke_all();

    // Probe /readyz every 20 ms from the refusal until the sessions end.
    let stop = Arc::new(AtomicBool::new(false));
    let admin = s.admin;
    let prober = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut probes, mut not_ready) = (0u32, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                let (code, body) = http_get(admin, "/readyz");
                probes += 1;
                if code != 200 {
                    not_ready.push(body);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (probes, not_ready)
        })
    };
    let smtp = s.smtp;
    let started = Instant::now();
    // The session that meets the refusal and starts the refresh.
    let first = std::thread::spawn(move || send_one(smtp, "app", KEY_P, FROM, "refused once"));
    std::thread::sleep(Duration::from_millis(300));
    let during: Vec<_> = (0..20)
        .map(|i| {
            std::thread::spawn(move || {
                let r = send_one(smtp, "app", KEY_P, FROM, &format!("during {i}"));
                (r, started.elapsed())
            })
        })
        .collect();
    let first = first.join().expect("first");
    let results: Vec<_> = during
        .into_iter()
        .map(|h| h.join().expect("session"))
        .collect();
    stop.store(true, Ordering::SeqCst);
    let (probes, not_ready) = prober.join().expect("prober");
    let refused: Vec<_> = results
        .iter()
        .filter(|(r, _)| !r.starts_with("250"))
        .collect();
    let slowest = results.iter().map(|(_, t)| *t).max().unwrap_or_default();
    eprintln!(
        "issue 19 item 1: first {first:?}; 20 sessions during the refresh: {} refused, \
         slowest done {slowest:?} after the refusal; /readyz probes {probes}, non-200 {}",
        refused.len(),
        not_ready.len()
    );
    assert!(first.starts_with("250"), "{first}");
    assert!(refused.is_empty(), "{refused:?}");
    assert!(not_ready.is_empty(), "/readyz flapped: {not_ready:?}");
    assert_eq!(wait_messages(up, 22).len(), 22);
    let after = metric(&s.http_get("/metrics").1, &ok);
    assert_eq!(after - before, 1.0, "the refresh counted once");
    assert_eq!(idp.tokens().grants(), 2, "one token request for all");
    check_no_leaks(s, idp);
}

/// Issue 19, item 4 (fault injection: the capture upstream's `echo_auth`
/// refuses every AUTH and quotes the received XOAUTH2 payload in its 535).
/// The sidecar logs the refusal with every token and payload scrubbed.
#[test]
fn an_upstream_echoing_the_xoauth2_payload_leaks_nothing() {
    let o = oauth_setup(
        Duration::from_secs(60),
        "client_credentials",
        |f| f.echo_auth = true,
        |_| {},
    );
    let (s, up, idp) = (&o.s, &o.up, &o.idp);
    assert_eq!(wait_ready(s, 200, Duration::from_secs(5)).0, 200);
    let r = send(s, "refused");
    assert!(r.starts_with("454 4.7.0"), "{r}");
    assert!(up.messages().is_empty());
    s.assert_scrubbed_upstream_error();
    check_no_leaks(s, idp);
}

/// Issue 19, item 4 (fault injection: `echo_auth` refuses every AUTH and
/// quotes the PLAIN payload in its 535): the SES derived password and the
/// secret access key reach no log line, raw or in any base64 form.
#[test]
fn an_upstream_echoing_the_ses_payload_leaks_nothing() {
    const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
    const KEY_S: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    let derived = ses_python(KEY_S, "eu-west-1");
    let up = Upstream::start(|c| c.faults.echo_auth = true);
    let (s, _secrets) = sidecar_with_secret(&up, AKID, KEY_S, |p| {
        p.set("credential.mechanism", "ses")
            .set("credential.ses.region", "eu-west-1");
    });
    let r = send(&s, "refused");
    assert!(r.starts_with("454"), "{r}");
    s.assert_scrubbed_upstream_error();
    let out = s.output().join("\n");
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    for secret in [KEY_S, derived.as_str()] {
        assert!(!out.contains(secret), "a secret in the output");
        assert!(
            !out.contains(&b64.encode(secret)),
            "a base64 secret in the output"
        );
        let plain = b64.encode(format!("\0{AKID}\0{secret}"));
        assert!(
            !out.contains(plain.trim_end_matches('=')),
            "a PLAIN payload in the output"
        );
    }
}
