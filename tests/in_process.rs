//! The session level in-process (issue 23): `smtpbind::build` on port 0 and
//! `App::serve` with a shutdown future, in this test's own runtime — no
//! binary spawned, no stdout scraped; the bound address comes from `build`.
//! The upstream is the real capture server over verified STARTTLS.

mod support;

use std::time::Duration;

use support::*;

/// Builds the app for tenant A in front of `up`, serves it on a runtime of
/// its own until the returned sender fires, and returns the bound address.
fn serve(
    up: &Upstream,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
    tempfile::TempDir,
) {
    let (dir, policy_path, _secret) = tenant_a(up.addr(), &up.server.ca_pem, |_| {});
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let opts = smtpbind::RunOptions {
        policy_path,
        listen: Some("127.0.0.1:0".parse().expect("addr")),
        admin: Some("127.0.0.1:0".parse().expect("addr")),
        drain: Some(Duration::from_millis(100)),
        pins: None,
        log_sink: smtpbind::log::Sink::default(),
    };
    let app = rt.block_on(smtpbind::build(opts)).expect("build");
    let addr = app.bound.smtp;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = std::thread::spawn(move || {
        rt.block_on(app.serve(async {
            let _ = stopped.await;
        }))
        .expect("serve");
    });
    (addr, stop, served, dir)
}

#[test]
fn own_key_relays_other_tenants_key_is_refused_and_serve_returns_on_shutdown() {
    let up = Upstream::default();
    let (addr, stop, served, _dir) = serve(&up);

    let (mut c, greeting) = Raw::connect(addr);
    assert!(greeting.starts_with("220"), "{greeting}");
    assert!(c.cmd("EHLO in-process").starts_with("250"));
    let r = c.cmd(&format!("AUTH PLAIN {}", plain("apikey", KEY_B)));
    assert!(r.starts_with("535 5.7.8"), "{r}");
    assert_eq!(
        up.server.connections(),
        0,
        "nothing upstream for an unbound session"
    );

    let reply = send_one(addr, "apikey", KEY_A, "billing@acme.example", "in-process");
    assert!(reply.starts_with("250 2.0.0 Ok: queued as CAP"), "{reply}");
    let msgs = wait_messages(&up, 1);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].account, "tenant-a");
    assert!(msgs[0].tls);

    stop.send(()).expect("stop");
    served.join().expect("serve returned");
}

/// Two apps in one process (as tests run in parallel): each app's lines go
/// to its own sink through its own `log::Context`, so a test reads the
/// events of its app only, each naming the policy's tenant.
#[test]
fn two_apps_in_one_process_write_their_lines_to_their_own_sinks() {
    let up = Upstream::default();
    let a = support::inproc::InProc::start(&up, |_| {});
    let b = support::inproc::InProc::start(&up, |p| {
        p.set("tenant", "globex");
    });
    let (mut c, _) = Raw::connect(a.smtp);
    c.cmd("EHLO a");
    let r = c.cmd(&format!("AUTH PLAIN {}", plain("apikey", KEY_B)));
    assert!(r.starts_with("535"), "{r}");
    assert_eq!(a.reject_reasons(1), ["identity_mismatch"]);
    assert!(b.events("reject").is_empty(), "{:?}", b.output());
    for (app, tenant) in [(&a, "acme"), (&b, "globex")] {
        let listening = app.events("listening");
        assert_eq!(listening.len(), 1, "{:?}", app.output());
        assert_eq!(listening[0]["addr"], app.smtp.to_string());
        for line in app.output() {
            let v: serde_json::Value = serde_json::from_str(&line).expect("json");
            assert_eq!(v["tenant"], tenant, "{line}");
        }
    }
}
