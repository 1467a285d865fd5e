//! Contract §8 rule 7 end to end: the key goes only where the platform says.
//!
//! The real binary is started as the webhook starts it, with
//! `SMTPBIND_UPSTREAM_PIN` (and `SMTPBIND_UPSTREAM_CA`) naming the provider —
//! a capture upstream over verified STARTTLS. A second capture upstream is
//! the tenant's "collector", which holds tenant A's account so that any AUTH
//! it received would be recorded. The policy file is then rewritten, as a
//! tenant editing its ConfigMap would, to redirect the key; the sidecar must
//! go not ready with the reason, answer new sessions `421`, send nothing to
//! the collector, and relay again once the policy is put back.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use smtpbind::demo::capture::CaptureTls;
use support::*;

/// The provider, the sidecar pinned to it, and the tenant's collectors.
struct Scene {
    provider: Upstream,
    /// The tenant's own server with STARTTLS and a certificate from its own CA.
    collector_tls: Upstream,
    /// The tenant's own server in plain text (for `tls: none`).
    collector_plain: Upstream,
    sidecar: Sidecar,
    /// The policy as the platform rendered it.
    good: String,
    /// The tenant's CA, "shipped in its own ConfigMap".
    tenant_ca: PathBuf,
    _dir: tempfile::TempDir,
}

fn pin_of(addr: SocketAddr) -> String {
    format!("{addr}/localhost")
}

fn scene() -> Scene {
    let provider = Upstream::default();
    let collector_tls = Upstream::default();
    let collector_plain = Upstream::start(|c| c.tls = CaptureTls::None);
    let dir = tempfile::tempdir().expect("tempdir");
    // The platform's CA for the provider: a path the platform mounts.
    let platform_ca = dir.path().join("platform-ca.pem");
    std::fs::write(&platform_ca, &provider.server.ca_pem).expect("ca");
    let tenant_ca = dir.path().join("tenant-ca.pem");
    std::fs::write(&tenant_ca, &collector_tls.server.ca_pem).expect("ca");
    let pin = pin_of(provider.addr());
    let ca_env = platform_ca.display().to_string();
    let sidecar = Sidecar::start_wrapped(
        provider.addr(),
        &provider.server.ca_pem,
        |p| {
            p.set("upstream.ca_file", platform_ca.display().to_string());
        },
        |mut cmd: Command| {
            cmd.env("SMTPBIND_UPSTREAM_PIN", &pin)
                .env("SMTPBIND_UPSTREAM_CA", &ca_env);
            cmd
        },
    );
    let good = std::fs::read_to_string(&sidecar.policy_path).expect("policy");
    Scene {
        provider,
        collector_tls,
        collector_plain,
        sidecar,
        good,
        tenant_ca,
        _dir: dir,
    }
}

impl Scene {
    /// Rewrites the policy with `edit` applied to the platform's one.
    fn rewrite(&self, edit: impl FnOnce(&mut PolicySpec)) {
        let mut spec = PolicySpec(serde_yaml::from_str(&self.good).expect("yaml"));
        edit(&mut spec);
        std::fs::write(&self.sidecar.policy_path, spec.yaml()).expect("policy");
    }

    fn put_back(&self) {
        std::fs::write(&self.sidecar.policy_path, &self.good).expect("policy");
    }

    fn wait_ready(&self, code: u16) -> (u16, String) {
        self.sidecar.wait_for(Duration::from_secs(5), |_| {
            self.sidecar.http_get("/readyz").0 == code
        });
        self.sidecar.http_get("/readyz")
    }

    fn collectors_saw_nothing(&self, what: &str) {
        for (name, c) in [
            ("tls", &self.collector_tls),
            ("plain", &self.collector_plain),
        ] {
            assert_eq!(
                c.server.connections(),
                0,
                "{what}: collector {name} was reached"
            );
            assert!(
                c.server.auth_attempts().is_empty(),
                "{what}: AUTH at collector {name}"
            );
            assert!(c.messages().is_empty(), "{what}: mail at collector {name}");
        }
    }

    /// A message through swaks, as the app would send it.
    fn swaks_send(&self, body: &str) -> (bool, String) {
        swaks_plain(
            self.sidecar.smtp,
            "billing@acme.example",
            "customer@example.net",
            KEY_A,
            &["--body", body, "--header", "From: billing@acme.example"],
        )
    }

    /// Rewrites the policy, checks the refusal, puts it back, checks relay.
    fn attack(&self, name: &str, reason: &str, edit: impl FnOnce(&mut PolicySpec)) {
        let relayed = self.provider.messages().len();
        self.rewrite(edit);
        let (code, body) = self.wait_ready(503);
        assert_eq!(code, 503, "{name}: still ready: {body}");
        assert!(
            body.starts_with("not ready: upstream pin: "),
            "{name}: {body}"
        );
        assert!(body.contains(reason), "{name}: {body}");
        assert_eq!(
            body.trim_end().lines().count(),
            1,
            "{name}: one line: {body}"
        );

        let (ok, out) = self.swaks_send(name);
        assert!(!ok, "{name}: {out}");
        assert!(out.contains("421 4.3.0"), "{name}: {out}");
        let (_, greeting) = Raw::connect(self.sidecar.smtp);
        assert!(greeting.starts_with("421 4.3.0"), "{name}: {greeting}");

        self.collectors_saw_nothing(name);
        let plaintext =
            String::from_utf8_lossy(&self.provider.server.plaintext_bytes()).to_string();
        assert!(
            !plaintext.contains("AUTH"),
            "{name}: AUTH in plain text to the provider"
        );
        assert_eq!(self.provider.messages().len(), relayed, "{name}: relayed");

        self.put_back();
        let (code, body) = self.wait_ready(200);
        assert_eq!(code, 200, "{name}: not ready after put back: {body}");
        let (ok, out) = self.swaks_send(name);
        assert!(ok, "{name}: after put back: {out}");
        let msgs = wait_messages(&self.provider, relayed + 1);
        assert_eq!(msgs.len(), relayed + 1, "{name}");
        assert_eq!(msgs[relayed].account, "tenant-a");
        assert!(msgs[relayed].tls);
    }
}

#[test]
fn a_policy_edit_that_redirects_the_key_makes_the_pod_unready_until_it_is_put_back() {
    let s = scene();
    assert_eq!(s.wait_ready(200).0, 200);
    let (ok, out) = s.swaks_send("first");
    assert!(ok, "{out}");
    assert_eq!(wait_messages(&s.provider, 1).len(), 1);

    // The tenant's own server, verified with the tenant's own CA.
    let (collector, tenant_ca) = (s.collector_tls.addr(), s.tenant_ca.display().to_string());
    s.attack("collector address", "upstream.address", |p| {
        p.set("upstream.address", collector.to_string())
            .set("upstream.ca_file", tenant_ca.clone());
    });
    // The attack: the collector, in plain text.
    let plain = s.collector_plain.addr();
    s.attack("collector in plain text", "tls: none", |p| {
        p.set("upstream.address", plain.to_string())
            .set("upstream.tls", "none")
            .set("upstream.insecure", true)
            .set("upstream.ca_file", serde_yaml::Value::Null);
    });
    // `tls: none` + `insecure: true` at the pinned address: AUTH in clear.
    s.attack("plain text to the provider", "tls: none", |p| {
        p.set("upstream.tls", "none")
            .set("upstream.insecure", true)
            .set("upstream.ca_file", serde_yaml::Value::Null);
    });
    // The pinned address with the tenant's CA (plus a hostAliases entry in a
    // real pod, this redirects the key as surely as another address).
    s.attack("tenant CA", "upstream.ca_file", |p| {
        p.set("upstream.ca_file", tenant_ca.clone());
    });
    s.attack("another server_name", "upstream.server_name", |p| {
        p.set("upstream.server_name", "collector.attacker.example");
    });

    let refusals = s.sidecar.events("upstream_pin");
    assert_eq!(refusals.len(), 5, "{refusals:?}");
    assert!(refusals.iter().all(|e| e["result"] == "refused"));
    let (_, m) = s.sidecar.http_get("/metrics");
    assert!(
        metric(
            &m,
            "smtpbind_rejections_total{tenant=\"acme\",reason=\"upstream_not_pinned\"}"
        ) >= 10.0,
        "{m}"
    );
    s.sidecar.assert_no_secrets();
}

#[test]
fn a_policy_that_breaks_the_pin_at_start_is_not_ready_and_nothing_leaves() {
    let provider = Upstream::default();
    let collector = Upstream::start(|c| c.tls = CaptureTls::None);
    let pin = pin_of(provider.addr());
    let sidecar = Sidecar::start_wrapped(
        collector.addr(),
        &provider.server.ca_pem,
        |p| {
            p.set("upstream.tls", "none")
                .set("upstream.insecure", true)
                .set("upstream.ca_file", serde_yaml::Value::Null)
                .set("upstream.reuse.prewarm", 1);
        },
        |mut cmd: Command| {
            cmd.env("SMTPBIND_UPSTREAM_PIN", &pin);
            cmd
        },
    );
    let (code, body) = sidecar.http_get("/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("tls: none"), "{body}");
    let r = send_one(sidecar.smtp, "apikey", KEY_A, "billing@acme.example", "x");
    assert!(r.starts_with("421 4.3.0"), "{r}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        collector.server.connections(),
        0,
        "prewarm or session reached the collector"
    );
    assert!(collector.server.auth_attempts().is_empty());
    let listening = sidecar.events("listening");
    assert_eq!(
        listening[0]["upstream_pin"],
        format!("{}/localhost", provider.addr())
    );
}

#[test]
fn a_pin_that_does_not_parse_exits_1_with_the_variable_named() {
    let up = Upstream::default();
    let dir = tempfile::tempdir().expect("tempdir");
    // A valid policy: only the environment is wrong.
    let sidecar = Sidecar::start(&up, |_| {});
    let policy = dir.path().join("policy.yaml");
    std::fs::copy(&sidecar.policy_path, &policy).expect("copy");
    drop(sidecar);
    for (var, value, says) in [
        (
            "SMTPBIND_UPSTREAM_PIN",
            "smtp.sendgrid.net",
            "expected host:port[/server_name]",
        ),
        ("SMTPBIND_UPSTREAM_PIN", "", "expected host:port"),
        (
            "SMTPBIND_UPSTREAM_PIN",
            "smtp.sendgrid.net:587/bad name",
            "server_name",
        ),
        (
            "SMTPBIND_UPSTREAM_CA",
            "/etc/ca.pem",
            "only applies with SMTPBIND_UPSTREAM_PIN",
        ),
    ] {
        let out = Sidecar::command(&policy, &[])
            .env(var, value)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{var}={value}: {stderr}");
        assert!(stderr.contains(&format!("{var}=`")), "{stderr}");
        assert!(stderr.contains(says), "{var}={value}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
}

/// XOAUTH2 (client credentials): the client secret goes to the token
/// endpoint, so under a pin `token_url` (and its CA) are pinned too. The
/// tenant's own token endpoint — a second issuer that would accept the same
/// client — never receives a request, not even when the policy is reloaded.
#[test]
fn a_policy_edit_that_moves_the_token_endpoint_sends_the_client_secret_nowhere() {
    use support::idp::*;
    let idp = Idp::start(Duration::from_secs(60));
    let rogue = Idp::start(Duration::from_secs(60));
    let tokens = idp.tokens().clone();
    let provider = Upstream::start(move |c| c.oauth = Some(tokens));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    };
    let (platform_ca, idp_ca) = (
        file("platform-ca.pem", &provider.server.ca_pem),
        file("idp-ca.pem", &idp.issuer.ca_pem),
    );
    let rogue_ca = file("rogue-ca.pem", &rogue.issuer.ca_pem);
    let secrets = dir.path().join("secret");
    write_secret(&secrets, CLIENT_ID, KEY_M);
    let configure = |p: &mut PolicySpec| {
        p.set("upstream.ca_file", platform_ca.clone())
            .set("credential.secret_dir", secrets.display().to_string())
            .set("credential.pins", yaml_list(&[&pin(KEY_M)]))
            .set("client.accept", app_accept_digest());
        xoauth2_policy(p, "client_credentials", idp.url(), idp_ca.clone());
    };
    let pinned = |token_url: Option<String>| {
        let (pin, ca, idp_ca) = (pin_of(provider.addr()), platform_ca.clone(), idp_ca.clone());
        move |mut cmd: Command| {
            cmd.env("SMTPBIND_UPSTREAM_PIN", pin)
                .env("SMTPBIND_UPSTREAM_CA", ca)
                .env("SMTPBIND_TOKEN_CA", idp_ca);
            if let Some(url) = token_url {
                cmd.env("SMTPBIND_TOKEN_URL_PIN", url);
            }
            cmd
        }
    };
    let send =
        |s: &Sidecar, body: &str| send_one(s.smtp, "app", KEY_P, "billing@acme.example", body);
    let wait = |s: &Sidecar, code: u16| {
        s.wait_for(Duration::from_secs(5), |_| s.http_get("/readyz").0 == code);
        s.http_get("/readyz")
    };

    // Without SMTPBIND_TOKEN_URL_PIN the xoauth2 policy is refused: fail closed.
    let unpinned = Sidecar::start_wrapped(
        provider.addr(),
        &provider.server.ca_pem,
        configure,
        pinned(None),
    );
    let (code, body) = wait(&unpinned, 503);
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("SMTPBIND_TOKEN_URL_PIN"), "{body}");
    drop(unpinned);
    assert_eq!(
        idp.tokens().grants(),
        0,
        "a token was fetched while refused"
    );

    let s = Sidecar::start_wrapped(
        provider.addr(),
        &provider.server.ca_pem,
        configure,
        pinned(Some(idp.url())),
    );
    assert_eq!(wait(&s, 200).0, 200, "{:?}", s.output());
    let r = send(&s, "first");
    assert!(r.starts_with("250"), "{r}");

    let good = std::fs::read_to_string(&s.policy_path).expect("policy");
    let mut spec = PolicySpec(serde_yaml::from_str(&good).expect("yaml"));
    spec.set("credential.oauth2.token_url", rogue.url())
        .set("credential.oauth2.ca_file", rogue_ca);
    std::fs::write(&s.policy_path, spec.yaml()).expect("policy");
    let (code, body) = wait(&s, 503);
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("credential.oauth2.token_url"), "{body}");
    let r = send(&s, "redirected");
    assert!(r.starts_with("421 4.3.0"), "{r}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        (rogue.tokens().grants(), rogue.tokens().refusals()),
        (0, 0),
        "the tenant's token endpoint received a request"
    );

    std::fs::write(&s.policy_path, &good).expect("policy");
    assert_eq!(wait(&s, 200).0, 200);
    let r = send(&s, "back");
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(provider.messages().len(), 2);
    let out = s.output().join("\n");
    idp.assert_absent(&out);
    assert!(!out.contains(KEY_M) && !out.contains(KEY_P));
}
