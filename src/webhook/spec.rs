//! The containers and volumes the webhook injects, from one source of truth
//! shared with the Helm chart.
//!
//! `injected.json` is the chart's own rendering of its named templates
//! (`smtpbind.egressLockdown`, `smtpbind.sidecar`, `smtpbind.volumes`,
//! `smtpbind.mailerEnv` in helm/smtpbind/templates/_helpers.tpl) with the
//! chart's default values and the lock-down enabled, written by
//! `tests/helm/gen_injected.py`. tests/helm/test_chart.py fails when the
//! file is not what the chart renders today, and compares a pod patched by
//! the webhook with the pod the chart renders. The webhook only replaces
//! what its configuration decides: the two images, their pull policy, the
//! Secret and the ConfigMap, and per tenant the sidecar's
//! `SMTPBIND_UPSTREAM_PIN` (rule 7) and the lock-down's
//! `SMTPBIND_LOCKDOWN_PORTS` (each set, or replaced when the chart's
//! template already carries the name, as the last entry otherwise).

use k8s_openapi::api::core::v1::{Container, EnvVar, Volume, VolumeMount};
use serde::Deserialize;

use super::config::{Sidecar, Tenant};
use super::WebhookError;

const INJECTED: &str = include_str!("injected.json");

/// Names the chart gives the injected parts (see `injected.json`).
pub const SIDECAR_NAME: &str = "smtpbind";
pub const LOCKDOWN_NAME: &str = "smtpbind-egress-lockdown";
pub const POLICY_VOLUME: &str = "smtpbind-policy";
pub const CREDENTIAL_VOLUME: &str = "smtpbind-credential";
/// The sidecar's pin of its tenant's upstream (contract §8 rule 7).
pub const UPSTREAM_PIN_ENV: &str = "SMTPBIND_UPSTREAM_PIN";
/// Rule 7 for XOAUTH2: the token endpoint the client secret may go to.
pub const TOKEN_URL_PIN_ENV: &str = "SMTPBIND_TOKEN_URL_PIN";
/// The lock-down's comma-separated ports.
pub const LOCKDOWN_PORTS_ENV: &str = "SMTPBIND_LOCKDOWN_PORTS";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Injected {
    #[serde(rename = "_generated")]
    _generated: String,
    lockdown: Container,
    lockdown_transparent: Container,
    sidecar: Container,
    client_tls_volume: Volume,
    client_tls_mount: VolumeMount,
    volumes: Vec<Volume>,
    mailer_env: Vec<EnvVar>,
}

/// What one configuration injects, built once at start.
#[derive(Debug, Clone)]
pub struct Spec {
    pub sidecar: Container,
    /// The lock-down init container, when the configuration enables it.
    pub lockdown: Option<Container>,
    volumes: Vec<Volume>,
    pub mailer_env: Vec<EnvVar>,
    client_tls_volume: Volume,
    client_tls_mount: VolumeMount,
}

impl Spec {
    pub fn new(config: &Sidecar) -> Result<Spec, WebhookError> {
        let injected: Injected = serde_json::from_str(INJECTED)
            .map_err(|e| WebhookError::Spec(format!("injected.json: {e}")))?;
        let mut sidecar = injected.sidecar;
        sidecar.image = Some(config.image.clone());
        sidecar.image_pull_policy = Some(config.image_pull_policy.clone());
        let lockdown = config.lockdown_image.as_ref().map(|image| {
            // `transparent`: the chart's transparent lock-down (SMTP ports
            // redirected to the sidecar instead of refused).
            let mut c = if config.transparent {
                injected.lockdown_transparent.clone()
            } else {
                injected.lockdown.clone()
            };
            c.image = Some(image.clone());
            c.image_pull_policy = Some(config.image_pull_policy.clone());
            c
        });
        // The lock-down's scratch volume only when the lock-down is injected.
        let lockdown_volumes: Vec<String> = injected
            .lockdown
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.name.clone())
            .collect();
        let volumes = injected
            .volumes
            .into_iter()
            .filter(|v| lockdown.is_some() || !lockdown_volumes.contains(&v.name))
            .collect();
        Ok(Spec {
            sidecar,
            lockdown,
            volumes,
            mailer_env: injected.mailer_env,
            client_tls_volume: injected.client_tls_volume,
            client_tls_mount: injected.client_tls_mount,
        })
    }

    /// The volumes for `tenant`: its Secret and its policy ConfigMap.
    pub fn volumes(&self, tenant: &Tenant) -> Vec<Volume> {
        let mut volumes = self.volumes.clone();
        for v in &mut volumes {
            if let Some(secret) = v.secret.as_mut() {
                if v.name == CREDENTIAL_VOLUME {
                    secret.secret_name = Some(tenant.credential_secret.clone());
                }
            }
            if let Some(cm) = v.config_map.as_mut() {
                if v.name == POLICY_VOLUME {
                    cm.name = tenant.policy_config_map.clone();
                }
            }
        }
        if let Some(name) = &tenant.client_tls_secret {
            let mut v = self.client_tls_volume.clone();
            if let Some(secret) = v.secret.as_mut() {
                secret.secret_name = Some(name.clone());
            }
            volumes.push(v);
        }
        volumes
    }

    /// The sidecar for `tenant`: with its `client_tls_secret`, the serving
    /// pair toward the mailer is mounted where the chart mounts it (the
    /// tenant's policy sets `client.tls.cert_dir` to that directory).
    /// Its `SMTPBIND_UPSTREAM_PIN` is the tenant's `upstream`.
    pub fn sidecar_for(&self, tenant: &Tenant) -> Container {
        let mut sidecar = self.sidecar.clone();
        if tenant.client_tls_secret.is_some() {
            sidecar
                .volume_mounts
                .get_or_insert_with(Vec::new)
                .push(self.client_tls_mount.clone());
        }
        set_env(&mut sidecar, UPSTREAM_PIN_ENV, tenant.upstream.pin());
        if let Some(url) = &tenant.token_url {
            set_env(&mut sidecar, TOKEN_URL_PIN_ENV, url.clone());
        }
        sidecar
    }

    /// The lock-down for `tenant` (when configured): its ports.
    pub fn lockdown_for(&self, tenant: &Tenant) -> Option<Container> {
        let mut lockdown = self.lockdown.clone()?;
        let ports: Vec<String> = tenant.lockdown_ports.iter().map(u16::to_string).collect();
        set_env(&mut lockdown, LOCKDOWN_PORTS_ENV, ports.join(","));
        Some(lockdown)
    }
}

/// Sets `name` in `c`'s env: replaces the entry of that name, else appends it.
fn set_env(c: &mut Container, name: &str, value: String) {
    let env = c.env.get_or_insert_with(Vec::new);
    match env.iter_mut().find(|e| e.name == name) {
        Some(e) => {
            e.value = Some(value);
            e.value_from = None;
        }
        None => env.push(EnvVar {
            name: name.to_string(),
            value: Some(value),
            value_from: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sidecar(lockdown: bool) -> Sidecar {
        Sidecar {
            image: "reg/smtpbind:1".into(),
            image_pull_policy: "Always".into(),
            lockdown_image: lockdown.then(|| "reg/lockdown:1".into()),
            transparent: false,
        }
    }

    fn upstream() -> crate::webhook::config::Upstream {
        crate::webhook::config::Upstream {
            address: "smtp.example.net:587".into(),
            server_name: None,
        }
    }

    fn env<'a>(c: &'a Container, name: &str) -> Vec<&'a str> {
        c.env
            .iter()
            .flatten()
            .filter(|e| e.name == name)
            .filter_map(|e| e.value.as_deref())
            .collect()
    }

    #[test]
    fn the_pin_and_the_ports_are_set_once_whether_or_not_the_chart_renders_them() {
        let mut spec = Spec::new(&sidecar(true)).expect("spec");
        let tenant = Tenant {
            name: "ses".into(),
            namespaces: vec!["shop".into()],
            credential_secret: "ses-smtp".into(),
            policy_config_map: "ses-policy".into(),
            client_tls_secret: None,
            upstream: crate::webhook::config::Upstream {
                address: "email-smtp.eu-west-1.amazonaws.com:587".into(),
                server_name: Some("email-smtp.eu-west-1.amazonaws.com".into()),
            },
            lockdown_ports: vec![25, 465, 587, 2525, 2465, 2587],
            token_url: None,
        };
        for round in 0..2 {
            let sidecar = spec.sidecar_for(&tenant);
            assert_eq!(
                env(&sidecar, UPSTREAM_PIN_ENV),
                ["email-smtp.eu-west-1.amazonaws.com:587/email-smtp.eu-west-1.amazonaws.com"],
                "round {round}"
            );
            let lockdown = spec.lockdown_for(&tenant).expect("lockdown");
            assert_eq!(
                env(&lockdown, LOCKDOWN_PORTS_ENV),
                ["25,465,587,2525,2465,2587"],
                "round {round}"
            );
            // The chart may render the pin itself: it is replaced, not doubled.
            set_env(&mut spec.sidecar, UPSTREAM_PIN_ENV, "chart:25".into());
        }
        assert!(Spec::new(&sidecar(false))
            .expect("spec")
            .lockdown_for(&tenant)
            .is_none());
    }

    fn redirect(spec: &Spec) -> Option<String> {
        let lockdown = spec.lockdown.as_ref()?;
        let env = lockdown.env.as_ref()?;
        env.iter()
            .find(|e| e.name == "SMTPBIND_REDIRECT")
            .and_then(|e| e.value.clone())
    }

    #[test]
    fn a_tenants_client_tls_pair_is_mounted_only_into_its_sidecar() {
        let spec = Spec::new(&sidecar(false)).expect("spec");
        let tenant = Tenant {
            name: "acme".into(),
            namespaces: vec!["shop".into()],
            credential_secret: "acme-smtp".into(),
            policy_config_map: "acme-policy".into(),
            client_tls_secret: Some("acme-client-tls".into()),
            upstream: upstream(),
            lockdown_ports: vec![25, 587],
            token_url: None,
        };
        let volumes = spec.volumes(&tenant);
        let tls = volumes
            .iter()
            .find(|v| v.name == "smtpbind-client-tls")
            .expect("the pair's volume");
        let secret = tls.secret.as_ref().expect("a Secret volume");
        assert_eq!(secret.secret_name.as_deref(), Some("acme-client-tls"));
        let keys: Vec<&str> = secret
            .items
            .iter()
            .flatten()
            .map(|i| i.key.as_str())
            .collect();
        assert_eq!(keys, ["tls.crt", "tls.key"]);
        let mounts = spec.sidecar_for(&tenant).volume_mounts.unwrap_or_default();
        let mount = mounts
            .iter()
            .find(|m| m.name == "smtpbind-client-tls")
            .expect("mounted into the sidecar");
        assert_eq!(mount.mount_path, "/var/run/secrets/smtpbind-client-tls");
        assert_eq!(mount.read_only, Some(true));
        let without = Tenant {
            client_tls_secret: None,
            ..tenant
        };
        assert!(spec
            .volumes(&without)
            .iter()
            .all(|v| v.name != "smtpbind-client-tls"));
        let mut want = spec.sidecar.clone();
        set_env(&mut want, UPSTREAM_PIN_ENV, "smtp.example.net:587".into());
        assert_eq!(spec.sidecar_for(&without), want);
        // An XOAUTH2 tenant: the token endpoint is pinned too (rule 7), or a
        // pinned sidecar refuses its xoauth2 policy and stays not ready.
        let xoauth2 = Tenant {
            token_url: Some("https://login.example/t/oauth2/v2.0/token".into()),
            ..without
        };
        set_env(
            &mut want,
            TOKEN_URL_PIN_ENV,
            "https://login.example/t/oauth2/v2.0/token".into(),
        );
        assert_eq!(spec.sidecar_for(&xoauth2), want);
    }

    #[test]
    fn transparent_injects_the_charts_redirecting_lockdown() {
        let plain = Spec::new(&sidecar(true)).expect("spec");
        assert_eq!(redirect(&plain), None);
        let transparent = Spec::new(&Sidecar {
            transparent: true,
            ..sidecar(true)
        })
        .expect("spec");
        assert_eq!(redirect(&transparent).as_deref(), Some("1"));
        let lockdown = transparent.lockdown.as_ref().expect("lockdown");
        assert_eq!(lockdown.name, LOCKDOWN_NAME);
        assert_eq!(lockdown.image.as_deref(), Some("reg/lockdown:1"));
        assert_eq!(
            transparent.lockdown.as_ref().map(|c| &c.command),
            plain.lockdown.as_ref().map(|c| &c.command)
        );
    }

    #[test]
    fn the_embedded_spec_is_the_charts_shape() {
        let spec = Spec::new(&sidecar(true)).expect("spec");
        assert_eq!(spec.sidecar.name, SIDECAR_NAME);
        assert_eq!(spec.sidecar.restart_policy.as_deref(), Some("Always"));
        assert_eq!(spec.sidecar.image.as_deref(), Some("reg/smtpbind:1"));
        let lockdown = spec.lockdown.as_ref().expect("lockdown");
        assert_eq!(lockdown.name, LOCKDOWN_NAME);
        assert_eq!(lockdown.image.as_deref(), Some("reg/lockdown:1"));
        assert!(lockdown.command.is_some());
        let names: Vec<String> = spec.mailer_env.iter().map(|e| e.name.clone()).collect();
        assert_eq!(names, ["SMTP_HOST", "SMTP_PORT"]);
        let tenant = Tenant {
            name: "acme".into(),
            namespaces: vec!["shop".into()],
            credential_secret: "acme-smtp".into(),
            policy_config_map: "acme-policy".into(),
            client_tls_secret: None,
            upstream: upstream(),
            lockdown_ports: vec![25, 465, 587, 2525, 2465, 2587],
            token_url: None,
        };
        let volumes = spec.volumes(&tenant);
        assert_eq!(volumes.len(), 3);
        let without = Spec::new(&sidecar(false)).expect("spec").volumes(&tenant);
        assert_eq!(without.len(), 2);
        let secret = volumes
            .iter()
            .find(|v| v.name == CREDENTIAL_VOLUME)
            .and_then(|v| v.secret.as_ref());
        assert_eq!(
            secret.and_then(|s| s.secret_name.as_deref()),
            Some("acme-smtp")
        );
    }
}
