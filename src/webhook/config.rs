//! The webhook's configuration file (contract §8): YAML, `version: 1`,
//! unknown keys are errors, and every problem is reported as
//! `FILE:LINE:COL: KEY: MESSAGE` by the policy's machinery
//! ([`crate::policy::Located`]).
//!
//! ```yaml
//! version: 1
//! sidecar:
//!   image: registry.example/smtpbind:0.1.0
//!   egress_lockdown: true
//!   lockdown_image: registry.example/smtpbind-egress-lockdown:0.1.0
//! tenants:
//!   - name: acme
//!     namespaces: [shop-acme]
//!     credential_secret: acme-smtp
//!     policy_config_map: acme-smtpbind
//!     upstream:                    # rule 7: where the key may go
//!       address: smtp.example.net:587
//!       server_name: smtp.example.net   # optional
//!     lockdown_ports: [25, 465, 587, 2525]   # optional, this default
//!     token_url: https://login.example/token # optional: xoauth2's pinned token endpoint
//! ```
//!
//! Extra optional key: `sidecar.image_pull_policy` (`Always`,
//! `IfNotPresent`, `Never`; default `IfNotPresent`, as the chart).
//!
//! Two tenants that share a namespace may not share a `credential_secret`
//! or a `policy_config_map`: a pod there could not be told apart from the
//! other tenant's, and /validate's rule 2 could not say whose Secret it is.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

use super::tenants::RawTenant;
use crate::policy::{self, Located, PolicyErrors};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    version: Option<i64>,
    sidecar: Option<RawSidecar>,
    tenants: Option<Vec<RawTenant>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSidecar {
    image: Option<String>,
    image_pull_policy: Option<String>,
    egress_lockdown: Option<bool>,
    lockdown_image: Option<String>,
    transparent: Option<bool>,
}

/// A validated webhook configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub sidecar: Sidecar,
    pub tenants: Vec<Tenant>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sidecar {
    /// The smtpbind image: what the injector injects and what the validator
    /// recognises the sidecar by.
    pub image: String,
    pub image_pull_policy: String,
    /// The lock-down init container's image when `egress_lockdown: true`.
    pub lockdown_image: Option<String>,
    /// Transparent mode (contract §11): the lock-down redirects the
    /// mailer's SMTP connections to the sidecar; needs `egress_lockdown`.
    pub transparent: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub name: String,
    pub namespaces: Vec<String>,
    pub credential_secret: String,
    pub policy_config_map: String,
    /// Optional kubernetes.io/tls Secret: TLS toward the mailer (§11),
    /// mounted only into the sidecar.
    pub client_tls_secret: Option<String>,
    /// Rule 7: the only upstream the sidecar may send this tenant's key to.
    pub upstream: Upstream,
    /// The ports the lock-down closes to everything but smtpbind.
    pub lockdown_ports: Vec<u16>,
    /// Rule 7 for XOAUTH2 (optional): the sidecar's `SMTPBIND_TOKEN_URL_PIN`,
    /// the only token endpoint its client secret may go to.
    pub token_url: Option<String>,
}

/// The upstream a tenant's credential is pinned to (contract §8 rule 7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `host:port` (`[v6]:port` for an IPv6 literal).
    pub address: String,
    pub server_name: Option<String>,
}

impl Upstream {
    /// The sidecar's `SMTPBIND_UPSTREAM_PIN`: `host:port[/server_name]`.
    pub fn pin(&self) -> String {
        match &self.server_name {
            Some(name) => format!("{}/{name}", self.address),
            None => self.address.clone(),
        }
    }
}

/// The lock-down's ports when a tenant names none: SMTP, submission,
/// submissions and smtpbind's own listener.
pub const DEFAULT_LOCKDOWN_PORTS: [u16; 4] = [25, 465, 587, 2525];

impl Config {
    /// The tenants whose `namespaces` hold `namespace`.
    pub fn tenants_in(&self, namespace: &str) -> Vec<&Tenant> {
        self.tenants
            .iter()
            .filter(|t| t.namespaces.iter().any(|n| n == namespace))
            .collect()
    }
}

/// Reads and validates the configuration at `path`.
pub fn load(path: &Path) -> Result<Config, PolicyErrors> {
    let text = policy::read(path).map_err(|mut errors| {
        for e in &mut errors.0 {
            e.message = e.message.replace("policy file", "webhook config file");
        }
        errors
    })?;
    parse(&text, path)
}

/// Whether `text` looks like a webhook configuration rather than a policy
/// (for `smtpbind check`, which accepts both): a top-level `tenants:` or
/// `sidecar:` key.
pub fn looks_like_config(text: &str) -> bool {
    text.lines()
        .any(|l| l.starts_with("tenants:") || l.starts_with("sidecar:"))
}

/// Parses and validates configuration `text`; `file` names it in errors.
pub fn parse(text: &str, file: &Path) -> Result<Config, PolicyErrors> {
    let (raw, mut v) = Located::parse::<RawConfig>(text, file)?;
    match raw.version {
        Some(1) => {}
        Some(n) => v.err("version", format!("unsupported version {n}; must be 1")),
        None => v.err("version", "required; must be 1"),
    }
    let sidecar = sidecar(&mut v, raw.sidecar);
    let mut tenants = Vec::new();
    let mut names = BTreeSet::new();
    match raw.tenants {
        None => v.err("tenants", "required: a non-empty list of tenants"),
        Some(list) if list.is_empty() => v.err("tenants", "must list at least one tenant"),
        Some(list) => {
            for (i, t) in list.into_iter().enumerate() {
                let tenant = super::tenants::tenant(&mut v, i, t, sidecar.lockdown_image.is_some());
                if !tenant.name.is_empty() && !names.insert(tenant.name.clone()) {
                    v.err(
                        &format!("tenants[{i}].name"),
                        format!("tenant `{}` is listed twice", tenant.name),
                    );
                }
                tenants.push(tenant);
            }
        }
    }
    super::tenants::shared_references(&mut v, &tenants);
    v.finish(Config { sidecar, tenants })
}

fn sidecar(v: &mut Located<'_>, raw: Option<RawSidecar>) -> Sidecar {
    let Some(raw) = raw else {
        v.err("sidecar", "required: `image` (and the lock-down settings)");
        return Sidecar {
            image: String::new(),
            image_pull_policy: "IfNotPresent".into(),
            lockdown_image: None,
            transparent: false,
        };
    };
    let image = required_image(v, "sidecar.image", raw.image);
    let image_pull_policy = raw
        .image_pull_policy
        .unwrap_or_else(|| "IfNotPresent".into());
    if !matches!(
        image_pull_policy.as_str(),
        "Always" | "IfNotPresent" | "Never"
    ) {
        v.err(
            "sidecar.image_pull_policy",
            "must be Always, IfNotPresent or Never",
        );
    }
    let lockdown_image = match (raw.egress_lockdown.unwrap_or(false), raw.lockdown_image) {
        (true, image) => Some(required_image(v, "sidecar.lockdown_image", image)),
        (false, Some(_)) => {
            v.err(
                "sidecar.lockdown_image",
                "set but `egress_lockdown` is not true: the lock-down would not be injected",
            );
            None
        }
        (false, None) => None,
    };
    let transparent = raw.transparent.unwrap_or(false);
    if transparent && lockdown_image.is_none() {
        v.err(
            "sidecar.transparent",
            "needs `egress_lockdown: true`: the lock-down init container does the redirection",
        );
    }
    if lockdown_image.as_deref() == Some(image.as_str()) && !image.is_empty() {
        v.err(
            "sidecar.lockdown_image",
            "must differ from `image`: the validator tells the two containers apart by image",
        );
    }
    Sidecar {
        image,
        image_pull_policy,
        lockdown_image,
        transparent,
    }
}

fn required_image(v: &mut Located<'_>, key: &str, image: Option<String>) -> String {
    match image {
        Some(i) if !i.is_empty() && !i.chars().any(|c| c.is_whitespace() || c.is_control()) => i,
        Some(_) => {
            v.err(key, "must be an image reference without spaces");
            String::new()
        }
        None => {
            v.err(key, "required: an image reference");
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::tenants::check_address;

    const GOOD: &str = "version: 1
sidecar:
  image: registry.example/smtpbind:0.1.0
  egress_lockdown: true
  lockdown_image: registry.example/smtpbind-egress-lockdown:0.1.0
tenants:
  - name: acme
    namespaces: [shop-acme, shared]
    credential_secret: acme-smtp
    policy_config_map: acme-smtpbind
    upstream: {address: \"smtp.example.net:587\"}
";

    fn errors(text: &str) -> Vec<String> {
        match parse(text, Path::new("w.yaml")) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn transparent_needs_the_lockdown() {
        let text = "version: 1\nsidecar:\n  image: reg/smtpbind:1\n  transparent: true\ntenants:\n  - name: acme\n    namespaces: [shop]\n    credential_secret: acme-smtp\n    policy_config_map: acme-policy\n    upstream: {address: \"smtp.example.net:587\"}\n";
        let e = parse(text, std::path::Path::new("w.yaml")).expect_err("refused");
        let e = e.to_string();
        assert!(
            e.contains("w.yaml:4:3: sidecar.transparent: needs `egress_lockdown: true`"),
            "{e}"
        );
        let ok = text.replace(
            "  transparent: true\n",
            "  transparent: true\n  egress_lockdown: true\n  lockdown_image: reg/lockdown:1\n",
        );
        let c = parse(&ok, std::path::Path::new("w.yaml")).expect("valid");
        assert!(c.sidecar.transparent);
    }

    #[test]
    fn parses_the_contract_example() {
        let c = parse(GOOD, Path::new("w.yaml")).expect("valid");
        assert_eq!(c.tenants[0].namespaces, ["shop-acme", "shared"]);
        assert_eq!(
            c.sidecar.lockdown_image.as_deref(),
            Some("registry.example/smtpbind-egress-lockdown:0.1.0")
        );
        assert_eq!(c.tenants_in("shared").len(), 1);
        assert_eq!(c.tenants_in("other").len(), 0);
        assert!(looks_like_config(GOOD));
    }

    #[test]
    fn unknown_keys_are_located() {
        let text = GOOD.replace("    credential_secret:", "    credentail_secret:");
        assert_eq!(
            errors(&text),
            ["w.yaml:9:5: tenants[0].credentail_secret: unknown field `credentail_secret`, expected one of `name`, `namespaces`, `credential_secret`, `policy_config_map`, `client_tls_secret`, `upstream`, `lockdown_ports`, `token_url`"]
        );
    }

    #[test]
    fn semantic_errors_are_all_located() {
        let text = "version: 2
sidecar:
  image: \"\"
  egress_lockdown: true
tenants:
  - name: Acme
    namespaces: [kube-system, ok, ok]
    credential_secret: acme-smtp
    upstream: {address: \"smtp.example.net:587\"}
  - name: b
    namespaces: [b]
    credential_secret: s
    policy_config_map: p
    upstream: {address: \"smtp.example.net:587\"}
  - name: b
    namespaces: [c]
    credential_secret: s
    policy_config_map: p
    upstream: {address: \"smtp.example.net:587\"}
";
        let e = errors(text);
        assert_eq!(e.len(), 8, "{e:#?}");
        assert!(e[0].starts_with("w.yaml:1:1: version: unsupported version 2"));
        // A missing key is located at its nearest parent.
        assert!(e[1].starts_with("w.yaml:2:1: sidecar.lockdown_image: required"));
        assert!(e[2].starts_with("w.yaml:3:3: sidecar.image: must be an image reference"));
        assert!(e[3].starts_with("w.yaml:6:5: tenants[0].name: must be a Kubernetes name"));
        assert!(e[4].starts_with("w.yaml:6:5: tenants[0].policy_config_map: required"));
        assert!(e[5].starts_with(
            "w.yaml:7:18: tenants[0].namespaces[0]: `kube-system` is a system namespace"
        ));
        assert!(e[6].starts_with("w.yaml:7:35: tenants[0].namespaces[2]: `ok` is listed twice"));
        assert!(e[7].starts_with("w.yaml:15:5: tenants[2].name: tenant `b` is listed twice"));
    }

    #[test]
    fn token_url_pins_an_xoauth2_tenants_token_endpoint() {
        let with = |url: &str| {
            GOOD.replace(
                "    upstream: {address: \"smtp.example.net:587\"}\n",
                &format!("    upstream: {{address: \"smtp.example.net:587\"}}\n    token_url: \"{url}\"\n"),
            )
        };
        let c = parse(&with("https://login.example/t/token"), Path::new("w.yaml")).expect("valid");
        assert_eq!(
            c.tenants[0].token_url.as_deref(),
            Some("https://login.example/t/token")
        );
        assert_eq!(
            parse(GOOD, Path::new("w.yaml")).expect("valid").tenants[0].token_url,
            None
        );
        for bad in ["http://login.example/token", "https://login.example/a b"] {
            let e = errors(&with(bad));
            assert_eq!(e.len(), 1, "{e:#?}");
            assert!(
                e[0].contains("tenants[0].token_url: must be the https:// URL"),
                "{e:#?}"
            );
        }
    }

    #[test]
    fn upstream_and_lockdown_ports_per_tenant() {
        let text = GOOD.replace(
            "    upstream: {address: \"smtp.example.net:587\"}\n",
            "    upstream:\n      address: \"email-smtp.eu-west-1.amazonaws.com:2587\"\n      server_name: email-smtp.eu-west-1.amazonaws.com\n    lockdown_ports: [25, 465, 587, 2525, 2465, 2587]\n",
        );
        let c = parse(&text, Path::new("w.yaml")).expect("valid");
        let t = &c.tenants[0];
        assert_eq!(
            t.upstream.pin(),
            "email-smtp.eu-west-1.amazonaws.com:2587/email-smtp.eu-west-1.amazonaws.com"
        );
        assert_eq!(t.lockdown_ports, [25, 465, 587, 2525, 2465, 2587]);
        let default = parse(GOOD, Path::new("w.yaml")).expect("valid");
        assert_eq!(default.tenants[0].lockdown_ports, DEFAULT_LOCKDOWN_PORTS);
        assert_eq!(default.tenants[0].upstream.pin(), "smtp.example.net:587");

        let missing = GOOD.replace("    upstream: {address: \"smtp.example.net:587\"}\n", "");
        assert_eq!(
            errors(&missing),
            ["w.yaml:7:5: tenants[0].upstream: required: `address` (host:port) and optional `server_name`: the only upstream this tenant's credential may be sent to (rule 7)"]
        );
        let bad = GOOD.replace(
            "    upstream: {address: \"smtp.example.net:587\"}\n",
            "    upstream: {address: \"smtp.example.net:587/evil\", server_name: \"a b\"}\n    lockdown_ports: [25, 25, 0, 70000]\n",
        );
        let e = errors(&bad);
        assert_eq!(e.len(), 5, "{e:#?}");
        assert!(
            e[0].starts_with("w.yaml:11:16: tenants[0].upstream.address: must be host:port"),
            "{e:#?}"
        );
        assert!(
            e[1].starts_with("w.yaml:11:54: tenants[0].upstream.server_name: must be a DNS name"),
            "{e:#?}"
        );
        assert!(
            e[2].starts_with("w.yaml:12:26: tenants[0].lockdown_ports[1]: 25 is listed twice"),
            "{e:#?}"
        );
        assert!(
            e[3].starts_with("w.yaml:12:30: tenants[0].lockdown_ports[2]: must be a port"),
            "{e:#?}"
        );
        assert!(
            e[4].starts_with("w.yaml:12:33: tenants[0].lockdown_ports[3]: must be a port"),
            "{e:#?}"
        );
        for ok in ["[2001:db8::1]:465", "192.0.2.1:25", "SMTP.Example.net:2587"] {
            assert_eq!(check_address(ok), Ok(()), "{ok}");
        }
        for bad in [
            "smtp.example.net",
            "smtp.example.net:0",
            ":25",
            "a b:25",
            "[::1:25",
            "h:25/x",
        ] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
        let no_lockdown = GOOD
            .replace("  egress_lockdown: true\n", "")
            .replace(
                "  lockdown_image: registry.example/smtpbind-egress-lockdown:0.1.0\n",
                "",
            )
            .replace("    upstream:", "    lockdown_ports: [25]\n    upstream:");
        assert_eq!(
            errors(&no_lockdown),
            ["w.yaml:9:5: tenants[0].lockdown_ports: set but `sidecar.egress_lockdown` is not true: no lock-down would apply them"]
        );
    }

    #[test]
    fn tenants_sharing_a_namespace_may_not_share_a_secret_or_config_map() {
        let two = |second: &str| {
            format!(
                "{GOOD}  - name: beta\n    namespaces: [{second}]\n    credential_secret: acme-smtp\n    policy_config_map: acme-smtpbind\n    upstream: {{address: \"smtp.example.net:587\"}}\n"
            )
        };
        assert_eq!(
            errors(&two("shared")),
            [
                "w.yaml:14:5: tenants[1].credential_secret: tenants `acme` and `beta` share namespace `shared` and the Secret `acme-smtp`: each tenant there needs its own",
                "w.yaml:15:5: tenants[1].policy_config_map: tenants `acme` and `beta` share namespace `shared` and the ConfigMap `acme-smtpbind`: each tenant there needs its own",
            ]
        );
        // The same names in namespaces of their own are two different objects.
        assert_eq!(errors(&two("shop-beta")), Vec::<String>::new());
    }
}
