//! What the injector and the validator read of a Pod: its containers of
//! every kind through one view, the sidecar and lock-down recognition, and
//! the tenant a pod belongs to.

use k8s_openapi::api::core::v1::{
    Container, EnvFromSource, EnvVar, PodSpec, SecurityContext, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::config::{Config, Tenant};
use super::spec::{Spec, LOCKDOWN_NAME};

pub const INJECT_ANNOTATION: &str = "smtpbind.dev/inject";
pub const STATUS_ANNOTATION: &str = "smtpbind.dev/status";
pub const TENANT_ANNOTATION: &str = "smtpbind.dev/tenant";
pub const MAILER_LABEL: &str = "smtpbind.dev/mailer";

/// Where a container is declared in the pod spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Init,
    App,
    Ephemeral,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Init => "init container",
            Kind::App => "container",
            Kind::Ephemeral => "ephemeral container",
        }
    }
}

/// One container of any kind, as far as the rules need it.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub kind: Kind,
    pub name: &'a str,
    pub image: Option<&'a str>,
    pub command: Option<&'a Vec<String>>,
    pub restart_policy: Option<&'a str>,
    pub env: &'a [EnvVar],
    pub env_from: &'a [EnvFromSource],
    pub volume_mounts: &'a [VolumeMount],
    pub security_context: Option<&'a SecurityContext>,
}

fn view(kind: Kind, c: &Container) -> View<'_> {
    View {
        kind,
        name: &c.name,
        image: c.image.as_deref(),
        command: c.command.as_ref(),
        restart_policy: c.restart_policy.as_deref(),
        env: c.env.as_deref().unwrap_or_default(),
        env_from: c.env_from.as_deref().unwrap_or_default(),
        volume_mounts: c.volume_mounts.as_deref().unwrap_or_default(),
        security_context: c.security_context.as_ref(),
    }
}

/// Every container of `spec`: init, app, then ephemeral ones.
pub fn containers(spec: &PodSpec) -> Vec<View<'_>> {
    let mut all: Vec<View<'_>> = Vec::new();
    all.extend(
        spec.init_containers
            .iter()
            .flatten()
            .map(|c| view(Kind::Init, c)),
    );
    all.extend(spec.containers.iter().map(|c| view(Kind::App, c)));
    all.extend(spec.ephemeral_containers.iter().flatten().map(|c| View {
        kind: Kind::Ephemeral,
        name: &c.name,
        image: c.image.as_deref(),
        command: c.command.as_ref(),
        restart_policy: None,
        env: c.env.as_deref().unwrap_or_default(),
        env_from: c.env_from.as_deref().unwrap_or_default(),
        volume_mounts: c.volume_mounts.as_deref().unwrap_or_default(),
        security_context: c.security_context.as_ref(),
    }));
    all
}

/// The smtpbind sidecar: the configured image run with its own entrypoint
/// (no `command`), as an init container with `restartPolicy: Always` or an
/// app container. Never recognised by its name alone.
pub fn is_sidecar(c: &View<'_>, config: &Config) -> bool {
    let placed = match c.kind {
        Kind::Init => c.restart_policy == Some("Always"),
        Kind::App => true,
        Kind::Ephemeral => false,
    };
    placed && c.image == Some(config.sidecar.image.as_str()) && c.command.is_none()
}

/// The lock-down init container the injector adds: its name, the configured
/// lock-down image and the chart's command, run to completion.
pub fn is_lockdown(c: &View<'_>, config: &Config, spec: &Spec) -> bool {
    c.kind == Kind::Init
        && c.restart_policy.is_none()
        && c.name == LOCKDOWN_NAME
        && config.sidecar.lockdown_image.is_some()
        && c.image == config.sidecar.lockdown_image.as_deref()
        && c.command == spec.lockdown_command()
}

pub fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

pub fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

/// The tenant of a pod in `namespace`.
#[derive(Debug)]
pub enum Owner<'a> {
    /// No tenant names this namespace: the webhook leaves the pod alone.
    Unmanaged,
    Tenant(&'a Tenant),
    /// Why the pod cannot belong to a tenant here.
    Refused(String),
}

/// The tenant whose `namespaces` hold `namespace`; `smtpbind.dev/tenant`
/// chooses when several do, and a tenant it names must be one of them.
pub fn owner<'a>(config: &'a Config, namespace: &str, meta: &ObjectMeta) -> Owner<'a> {
    let candidates = config.tenants_in(namespace);
    if candidates.is_empty() {
        return Owner::Unmanaged;
    }
    match annotation(meta, TENANT_ANNOTATION) {
        Some(name) => match candidates.iter().find(|t| t.name == name) {
            Some(t) => Owner::Tenant(t),
            None => Owner::Refused(format!(
                "smtpbind: tenant {name:?} (annotation {TENANT_ANNOTATION}) is not allowed in namespace {namespace:?}"
            )),
        },
        None => match candidates.as_slice() {
            [one] => Owner::Tenant(one),
            several => Owner::Refused(format!(
                "smtpbind: namespace {namespace:?} belongs to tenants {}; choose one with the annotation {TENANT_ANNOTATION}",
                several.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
            )),
        },
    }
}
