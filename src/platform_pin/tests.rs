use std::collections::HashMap;
use std::path::Path;

use super::*;

const PIN: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
/// A readable file (policies check that a `ca_file` can be read).
const CA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
const OTHER_CA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock");

fn policy(upstream: &str, credential_extra: &str) -> Policy {
    let text = format!(
        "version: 1\ntenant: acme\nupstream:\n{upstream}credential:\n  secret_dir: /var/run/secrets/smtpbind\n  pins: [\"{PIN}\"]\n{credential_extra}client:\n  auth: none\nsenders: [\"*@acme.example\"]\n"
    );
    match crate::policy::parse(&text, Path::new("policy.yaml")) {
        Ok(p) => p,
        Err(e) => panic!("{e}\n{text}"),
    }
}

fn sendgrid(extra: &str) -> Policy {
    policy(
        &format!("  address: smtp.sendgrid.net:587\n  tls: starttls\n{extra}"),
        "",
    )
}

fn pins(vars: &[(&str, &str)]) -> Result<Option<PlatformPins>, PinError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    PlatformPins::from_vars(|name| map.get(name).cloned())
}

fn pinned(value: &str) -> PlatformPins {
    match pins(&[(ENV_UPSTREAM_PIN, value), (ENV_UPSTREAM_CA, CA)]) {
        Ok(Some(p)) => p,
        other => panic!("{other:?}"),
    }
}

#[test]
fn pin_parses_host_port_and_optional_server_name() {
    let p = UpstreamPin::parse("smtp.sendgrid.net:587").expect("pin");
    assert_eq!((p.host.as_str(), p.port), ("smtp.sendgrid.net", 587));
    assert_eq!(p.server_name, "smtp.sendgrid.net");
    let p = UpstreamPin::parse("10.0.0.7:2587/capture.smtp.svc").expect("pin");
    assert_eq!((p.host.as_str(), p.port), ("10.0.0.7", 2587));
    assert_eq!(p.server_name, "capture.smtp.svc");
    let p = UpstreamPin::parse("[::1]:25").expect("pin");
    assert_eq!(p.host, "::1");
    assert_eq!(p.to_string(), "[::1]:25/::1");
}

#[test]
fn pin_that_does_not_parse_names_the_variable_and_why() {
    for bad in [
        "",
        "smtp.sendgrid.net",
        "smtp.sendgrid.net:0",
        "smtp.sendgrid.net:587/",
        "smtp.sendgrid.net:587/bad name",
        "::1:25",
        "smtp sendgrid:587",
    ] {
        let e = UpstreamPin::parse(bad).expect_err(bad);
        assert_eq!(e.var, ENV_UPSTREAM_PIN);
        assert!(e.to_string().starts_with("SMTPBIND_UPSTREAM_PIN=`"), "{e}");
    }
    let long = format!("{}:587", "a".repeat(5000));
    let e = UpstreamPin::parse(&long).expect_err("long");
    assert!(e.to_string().len() < 400, "bounded: {e}");
}

#[test]
fn variables_without_the_upstream_pin_refuse_to_start_and_none_means_unpinned() {
    assert_eq!(pins(&[]), Ok(None));
    for var in [ENV_UPSTREAM_CA, ENV_TOKEN_URL_PIN, ENV_TOKEN_CA] {
        let e = pins(&[(var, "https://x/y")]).expect_err(var);
        assert_eq!(e.var, var);
        assert!(e.reason.contains(ENV_UPSTREAM_PIN), "{e}");
    }
    assert_eq!(
        pins(&[(ENV_UPSTREAM_PIN, "a.example:587"), (ENV_UPSTREAM_CA, "")])
            .expect_err("empty")
            .var,
        ENV_UPSTREAM_CA
    );
    assert_eq!(
        pins(&[
            (ENV_UPSTREAM_PIN, "a.example:587"),
            (ENV_TOKEN_URL_PIN, "http://idp/token")
        ])
        .expect_err("http")
        .var,
        ENV_TOKEN_URL_PIN
    );
}

#[test]
fn the_pinned_upstream_passes() {
    let p = pinned("smtp.sendgrid.net:587");
    assert_eq!(p.check(&sendgrid("")), Ok(()));
    // Narrowing is the tenant's: ehlo_name, timeouts, implicit TLS on the pinned port.
    assert_eq!(
        p.check(&sendgrid("  ehlo_name: acme\n  connect_timeout: 3s\n")),
        Ok(())
    );
    // Names compare as DNS names: case and a trailing dot do not matter.
    assert_eq!(
        p.check(&policy(
            "  address: SMTP.SendGrid.net.:587\n  server_name: smtp.sendgrid.NET\n",
            ""
        )),
        Ok(())
    );
    // The platform's CA, named by the platform's path.
    assert_eq!(p.check(&sendgrid(&format!("  ca_file: {CA}\n"))), Ok(()));
    // IP addresses by value.
    let p = pinned("[::1]:2587/localhost");
    assert_eq!(
        p.check(&policy(
            "  address: '[0:0::1]:2587'\n  server_name: localhost\n",
            ""
        )),
        Ok(())
    );
}

#[test]
fn another_address_or_port_is_refused() {
    let p = pinned("smtp.sendgrid.net:587");
    for (address, what) in [
        ("collector.attacker.example:587", "host"),
        ("smtp.sendgrid.net:2525", "port"),
        ("smtp.sendgrid.net.attacker.example:587", "suffix"),
        ("203.0.113.9:587", "an IP for the name"),
    ] {
        let v = p
            .check(&policy(
                &format!("  address: {address}\n  server_name: smtp.sendgrid.net\n"),
                "",
            ))
            .expect_err(what);
        assert!(matches!(v, Violation::Address { .. }), "{what}: {v}");
        let line = v.to_string();
        assert!(line.contains(address) && !line.contains('\n'), "{line}");
        assert!(line.contains("SMTPBIND_UPSTREAM_PIN"), "{line}");
    }
}

#[test]
fn another_server_name_is_refused_and_the_default_is_the_host() {
    let p = pinned("10.0.0.7:587/smtp.sendgrid.net");
    // The policy's effective server_name defaults to its host: 10.0.0.7.
    let v = p
        .check(&policy("  address: 10.0.0.7:587\n", ""))
        .expect_err("default name");
    assert!(matches!(v, Violation::ServerName { .. }), "{v}");
    let v = p
        .check(&policy(
            "  address: 10.0.0.7:587\n  server_name: collector.attacker.example\n",
            "",
        ))
        .expect_err("other name");
    assert!(v.to_string().contains("collector.attacker.example"), "{v}");
    assert_eq!(
        p.check(&policy(
            "  address: 10.0.0.7:587\n  server_name: smtp.sendgrid.net\n",
            ""
        )),
        Ok(())
    );
}

#[test]
fn plain_text_and_insecure_are_refused_even_at_the_pinned_address() {
    let p = pinned("smtp.sendgrid.net:587");
    let plain = policy(
        "  address: smtp.sendgrid.net:587\n  tls: none\n  insecure: true\n",
        "",
    );
    assert_eq!(p.check(&plain), Err(Violation::PlainText));
    assert!(Violation::PlainText.to_string().contains("tls: none"));
    // `insecure: true` is only valid with `tls: none`; the check refuses it on its own too.
    let mut insecure = sendgrid("");
    insecure.upstream.insecure = true;
    assert_eq!(p.check(&insecure), Err(Violation::Insecure));
}

#[test]
fn a_tenant_ca_file_is_refused_unless_it_is_the_platform_s() {
    let p = pinned("smtp.sendgrid.net:587");
    let v = p
        .check(&sendgrid(&format!("  ca_file: {OTHER_CA}\n")))
        .expect_err("tenant CA");
    assert!(matches!(v, Violation::CaFile { .. }), "{v}");
    assert!(
        v.to_string()
            .contains(&format!("SMTPBIND_UPSTREAM_CA={CA}")),
        "{v}"
    );
    // No platform CA set: only `ca.crt` of the credential Secret.
    let bare = match pins(&[(ENV_UPSTREAM_PIN, "smtp.sendgrid.net:587")]) {
        Ok(Some(p)) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(bare.upstream_ca, Path::new(DEFAULT_UPSTREAM_CA));
    let v = bare
        .check(&sendgrid(&format!("  ca_file: {CA}\n")))
        .expect_err("not the Secret's CA");
    assert!(v.to_string().contains(DEFAULT_UPSTREAM_CA), "{v}");
    let mut secret_ca = sendgrid("");
    secret_ca.upstream.ca_file = Some(DEFAULT_UPSTREAM_CA.into());
    assert_eq!(bare.check(&secret_ca), Ok(()));
    // Nor the policy's own directory (the tenant's ConfigMap).
    secret_ca.upstream.ca_file = Some("/etc/smtpbind/policy/ca.pem".into());
    assert!(bare.check(&secret_ca).is_err());
    assert_eq!(bare.check(&sendgrid("")), Ok(()));
}

fn xoauth2(token_url: &str, ca: Option<&str>) -> Policy {
    let ca = ca
        .map(|c| format!("    ca_file: {c}\n"))
        .unwrap_or_default();
    policy(
        "  address: smtp.office365.com:587\n",
        &format!(
            "  mechanism: xoauth2\n  oauth2:\n    flow: client_credentials\n    token_url: {token_url}\n    scope: https://outlook.office365.com/.default\n    user: billing@acme.example\n{ca}"
        ),
    )
}

#[test]
fn the_token_url_is_pinned_too_and_unpinned_xoauth2_fails_closed() {
    const MS: &str = "https://login.microsoftonline.com/dir/oauth2/v2.0/token";
    let up = (ENV_UPSTREAM_PIN, "smtp.office365.com:587");
    let only_upstream = match pins(&[up]) {
        Ok(Some(p)) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        only_upstream.check(&xoauth2(MS, None)),
        Err(Violation::TokenUrlUnpinned)
    );
    let p = match pins(&[up, (ENV_TOKEN_URL_PIN, MS), (ENV_TOKEN_CA, CA)]) {
        Ok(Some(p)) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(p.check(&xoauth2(MS, None)), Ok(()));
    assert_eq!(p.check(&xoauth2(MS, Some(CA))), Ok(()));
    let v = p
        .check(&xoauth2("https://idp.attacker.example/token", None))
        .expect_err("other token url");
    assert!(v.to_string().contains("idp.attacker.example"), "{v}");
    let v = p
        .check(&xoauth2(MS, Some(OTHER_CA)))
        .expect_err("tenant IdP CA");
    assert!(matches!(v, Violation::TokenCaFile { .. }), "{v}");
    // Other mechanisms never reach a token endpoint.
    assert_eq!(
        only_upstream.check(&policy("  address: smtp.office365.com:587\n", "")),
        Ok(())
    );
}
