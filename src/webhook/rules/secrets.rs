//! Rule 2: a tenant's credential Secret is referenced only by the injected
//! sidecar of a pod of that tenant — by no other container through a
//! volume it mounts, `env.valueFrom.secretKeyRef` or `envFrom` — and
//! another tenant's Secret not at all. Every volume type with a Secret
//! reference counts: `secret`, `projected` sources, CSI
//! `nodePublishSecretRef`, `flexVolume`, `cephfs`, `rbd`, `iscsi`,
//! `azureFile`, `scaleIO` and `storageos` `secretRef`s.

use k8s_openapi::api::core::v1::{LocalObjectReference, Volume};

use super::{Refusal, Subject};
use crate::webhook::config::Tenant;
use crate::webhook::pod::View;

const TITLE: &str = "credential Secret";

/// Rule 2.
pub fn secret_references(s: &Subject<'_>) -> Result<(), Refusal> {
    let own = s.tenant;
    let foreign = |owner: &Tenant| own.is_none_or(|o| o.name != owner.name);
    let refuse_foreign = |owner: &Tenant, what: String| {
        Refusal::new(
            2,
            TITLE,
            format!(
                "{what} references Secret {:?} of tenant {:?}; a pod of {} may not reference it",
                owner.credential_secret,
                owner.name,
                own.map_or("no tenant".to_string(), |t| format!("tenant {:?}", t.name))
            ),
            "remove the reference; each tenant's pods reach only their own credential, and only through the injected sidecar",
        )
    };
    for volume in s.pod.volumes.iter().flatten() {
        for (field, secret) in volume_secrets(volume) {
            let Some(owner) = secret_owner(s, secret) else {
                continue;
            };
            let what = format!("volume {:?} ({field})", volume.name);
            if foreign(owner) {
                return Err(refuse_foreign(owner, what));
            }
            for c in &s.views {
                if c.volume_mounts.iter().any(|m| m.name == volume.name) && !s.is_sidecar(c) {
                    return Err(only_the_sidecar(
                        s,
                        c,
                        format!("mounts {what} holding Secret {secret:?}"),
                    ));
                }
            }
        }
    }
    for c in &s.views {
        let from_env = c.env.iter().filter_map(|e| {
            let r = e.value_from.as_ref()?.secret_key_ref.as_ref()?;
            Some((format!("env {:?}", e.name), r.name.as_str()))
        });
        let from_env_from = c
            .env_from
            .iter()
            .filter_map(|e| Some(("envFrom".to_string(), e.secret_ref.as_ref()?.name.as_str())));
        for (what, secret) in from_env.chain(from_env_from) {
            let Some(owner) = secret_owner(s, secret) else {
                continue;
            };
            if foreign(owner) {
                return Err(refuse_foreign(owner, format!("{} {what}", c.who())));
            }
            if !s.is_sidecar(c) {
                return Err(only_the_sidecar(
                    s,
                    c,
                    format!("reads Secret {secret:?} through {what}"),
                ));
            }
        }
    }
    Ok(())
}

fn only_the_sidecar(s: &Subject<'_>, c: &View<'_>, what: String) -> Refusal {
    Refusal::new(
        2,
        TITLE,
        format!(
            "{} {what}{}; only the injected smtpbind sidecar may",
            c.who(),
            s.not_injected_because(c)
        ),
        "remove the reference and send mail through the sidecar (SMTP_HOST:SMTP_PORT)",
    )
}

/// The tenant whose credential Secret `name` is, when it is one; the
/// pod's own tenant first (tenants in different namespaces may use the
/// same name).
fn secret_owner<'a>(s: &Subject<'a>, name: &str) -> Option<&'a Tenant> {
    s.tenant
        .filter(|t| t.credential_secret == name)
        .or_else(|| {
            s.config
                .tenants
                .iter()
                .find(|t| t.credential_secret == name)
        })
}

/// Every Secret a volume reads, with the field that names it.
pub fn volume_secrets(v: &Volume) -> Vec<(&'static str, &str)> {
    let direct = [
        (
            "secret",
            v.secret.as_ref().and_then(|s| s.secret_name.as_deref()),
        ),
        (
            "csi nodePublishSecretRef",
            local(
                v.csi
                    .as_ref()
                    .and_then(|c| c.node_publish_secret_ref.as_ref()),
            ),
        ),
        (
            "flexVolume secretRef",
            local(v.flex_volume.as_ref().and_then(|c| c.secret_ref.as_ref())),
        ),
        (
            "cephfs secretRef",
            local(v.cephfs.as_ref().and_then(|c| c.secret_ref.as_ref())),
        ),
        (
            "rbd secretRef",
            local(v.rbd.as_ref().and_then(|c| c.secret_ref.as_ref())),
        ),
        (
            "iscsi secretRef",
            local(v.iscsi.as_ref().and_then(|c| c.secret_ref.as_ref())),
        ),
        (
            "azureFile secretName",
            v.azure_file.as_ref().map(|c| c.secret_name.as_str()),
        ),
        (
            "scaleIO secretRef",
            local(v.scale_io.as_ref().map(|c| &c.secret_ref)),
        ),
        (
            "storageos secretRef",
            local(v.storageos.as_ref().and_then(|c| c.secret_ref.as_ref())),
        ),
    ];
    let projected = v
        .projected
        .iter()
        .flat_map(|p| p.sources.iter().flatten())
        .map(|s| {
            (
                "projected secret",
                s.secret.as_ref().map(|s| s.name.as_str()),
            )
        });
    direct
        .into_iter()
        .chain(projected)
        .filter_map(|(field, name)| Some((field, name?)))
        .collect()
}

fn local(r: Option<&LocalObjectReference>) -> Option<&str> {
    r.map(|r| r.name.as_str())
}
