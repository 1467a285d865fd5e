//! `/validate`: the three rules of contract §8 for pods in a namespace any
//! tenant names. The first broken rule refuses the pod with a message that
//! names the rule and the offending container or volume.
//!
//! 1. A pod labelled `smtpbind.dev/mailer: "true"` runs the sidecar.
//! 2. A tenant's credential Secret is referenced (volume, projected volume,
//!    `env.valueFrom`, `envFrom`) only by the sidecar of a pod of that
//!    tenant; another tenant's Secret not at all.
//! 3. With the egress lock-down: no `hostNetwork`, and no container but the
//!    sidecar and the injected lock-down is privileged, adds `NET_ADMIN` or
//!    `NET_RAW` (or `ALL`), or runs as smtpbind's UID 65532.

use k8s_openapi::api::core::v1::{Pod, PodSpec, Volume};

use super::config::{Config, Tenant};
use super::pod::{self, Owner, View, MAILER_LABEL};
use super::spec::Spec;

/// smtpbind's UID: the one the lock-down rules let through.
pub const SIDECAR_UID: i64 = 65532;

/// `Ok(())` to admit, else the refusal message.
pub fn validate(config: &Config, spec: &Spec, namespace: &str, pod: &Pod) -> Result<(), String> {
    let own = match pod::owner(config, namespace, &pod.metadata) {
        Owner::Unmanaged => return Ok(()),
        Owner::Tenant(t) => Some(t),
        Owner::Refused(why) => {
            if pod::annotation(&pod.metadata, pod::TENANT_ANNOTATION).is_some() {
                return Err(why);
            }
            // Several tenants share the namespace and none was chosen: the pod
            // belongs to none of them, so it may hold no tenant's Secret.
            None
        }
    };
    let Some(spec_) = pod.spec.as_ref() else {
        return Ok(());
    };
    let views = pod::containers(spec_);
    if pod::label(&pod.metadata, MAILER_LABEL) == Some("true")
        && !views.iter().any(|c| pod::is_sidecar(c, config))
    {
        return Err(format!(
            "smtpbind rule 1 (mailer without sidecar): the pod is labelled {MAILER_LABEL}=true \
             but runs no smtpbind sidecar (image {:?}); annotate it smtpbind.dev/inject=true",
            config.sidecar.image
        ));
    }
    credential_rule(config, own, spec_, &views)?;
    if config.sidecar.lockdown_image.is_some() {
        lockdown_rule(config, spec, spec_, &views)?;
    }
    Ok(())
}

/// The tenant whose credential Secret `name` is, when it is one.
fn secret_owner<'a>(config: &'a Config, own: Option<&'a Tenant>, name: &str) -> Option<&'a Tenant> {
    // The pod's own tenant first: tenants in different namespaces may use the same name.
    own.filter(|t| t.credential_secret == name)
        .or_else(|| config.tenants.iter().find(|t| t.credential_secret == name))
}

const RULE2: &str = "smtpbind rule 2 (credential Secret)";

fn credential_rule(
    config: &Config,
    own: Option<&Tenant>,
    spec: &PodSpec,
    views: &[View<'_>],
) -> Result<(), String> {
    let foreign = |owner: &Tenant| own.is_none_or(|o| o.name != owner.name);
    let refuse_foreign = |owner: &Tenant, what: String| {
        format!(
            "{RULE2}: {what} references Secret {:?} of tenant {:?}; a pod of {} may not reference it",
            owner.credential_secret,
            owner.name,
            own.map_or("no tenant".to_string(), |t| format!("tenant {:?}", t.name))
        )
    };
    for volume in spec.volumes.iter().flatten() {
        for secret in volume_secrets(volume) {
            let Some(owner) = secret_owner(config, own, secret) else {
                continue;
            };
            if foreign(owner) {
                return Err(refuse_foreign(owner, format!("volume {:?}", volume.name)));
            }
            for c in views {
                if c.volume_mounts.iter().any(|m| m.name == volume.name)
                    && !pod::is_sidecar(c, config)
                {
                    return Err(format!(
                        "{RULE2}: {} {:?} mounts volume {:?} holding Secret {secret:?}; only the smtpbind sidecar may",
                        c.kind.as_str(), c.name, volume.name
                    ));
                }
            }
        }
    }
    for c in views {
        let from_env = c.env.iter().filter_map(|e| {
            let r = e.value_from.as_ref()?.secret_key_ref.as_ref()?;
            Some((format!("env {:?}", e.name), r.name.as_str()))
        });
        let from_env_from = c
            .env_from
            .iter()
            .filter_map(|e| Some(("envFrom".to_string(), e.secret_ref.as_ref()?.name.as_str())));
        for (what, secret) in from_env.chain(from_env_from) {
            let Some(owner) = secret_owner(config, own, secret) else {
                continue;
            };
            let what = format!("{} {:?} {what}", c.kind.as_str(), c.name);
            if foreign(owner) {
                return Err(refuse_foreign(owner, what));
            }
            if !pod::is_sidecar(c, config) {
                return Err(format!(
                    "{RULE2}: {what} reads Secret {secret:?}; only the smtpbind sidecar may"
                ));
            }
        }
    }
    Ok(())
}

/// The Secrets a volume reads: `secret` and `projected` sources.
fn volume_secrets(volume: &Volume) -> Vec<&str> {
    let direct = volume
        .secret
        .iter()
        .filter_map(|s| s.secret_name.as_deref());
    let projected = volume
        .projected
        .iter()
        .flat_map(|p| p.sources.iter().flatten())
        .filter_map(|s| s.secret.as_ref().map(|s| s.name.as_str()));
    direct.chain(projected).collect()
}

const RULE3: &str = "smtpbind rule 3 (egress lock-down)";

fn lockdown_rule(
    config: &Config,
    spec: &Spec,
    pod_spec: &PodSpec,
    views: &[View<'_>],
) -> Result<(), String> {
    if pod_spec.host_network == Some(true) {
        return Err(format!(
            "{RULE3}: the pod uses hostNetwork, where the lock-down cannot apply"
        ));
    }
    let pod_uid = pod_spec
        .security_context
        .as_ref()
        .and_then(|s| s.run_as_user);
    for c in views {
        if pod::is_sidecar(c, config) || pod::is_lockdown(c, config, spec) {
            continue;
        }
        let who = format!("{} {:?}", c.kind.as_str(), c.name);
        let sc = c.security_context;
        if sc.and_then(|s| s.privileged) == Some(true) {
            return Err(format!("{RULE3}: {who} is privileged"));
        }
        let added = sc
            .and_then(|s| s.capabilities.as_ref())
            .and_then(|caps| caps.add.as_ref())
            .into_iter()
            .flatten();
        for cap in added {
            let bare = cap.to_ascii_uppercase();
            let bare = bare.strip_prefix("CAP_").unwrap_or(&bare);
            if matches!(bare, "NET_ADMIN" | "NET_RAW" | "ALL") {
                return Err(format!("{RULE3}: {who} adds capability {cap}"));
            }
        }
        if sc.and_then(|s| s.run_as_user).or(pod_uid) == Some(SIDECAR_UID) {
            return Err(format!(
                "{RULE3}: {who} runs as UID {SIDECAR_UID}, smtpbind's, which the lock-down lets through"
            ));
        }
    }
    Ok(())
}
