//! What the injector and the validator read of a Pod: its containers of
//! every kind through one view, and the tenant a pod belongs to (which
//! containers are injected is rule 3's, [`super::rules::recognition`]).

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvFromSource, EnvVar, PodSpec, SecurityContext, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::config::{Config, Tenant};

pub const INJECT_ANNOTATION: &str = "smtpbind.dev/inject";
pub const STATUS_ANNOTATION: &str = "smtpbind.dev/status";
pub const TENANT_ANNOTATION: &str = "smtpbind.dev/tenant";
pub const MAILER_LABEL: &str = "smtpbind.dev/mailer";
/// The label /mutate sets on an injected pod: its tenant's name.
pub const TENANT_LABEL: &str = "smtpbind.dev/tenant";

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
    /// Its index in its own list (`initContainers`, `containers`, ...).
    pub index: usize,
    pub name: &'a str,
    pub image: Option<&'a str>,
    pub env: &'a [EnvVar],
    pub env_from: &'a [EnvFromSource],
    pub volume_mounts: &'a [VolumeMount],
    pub ports: &'a [ContainerPort],
    pub security_context: Option<&'a SecurityContext>,
    /// An ephemeral container's `targetContainerName`.
    pub target: Option<&'a str>,
    /// The whole container (init and app containers; rule 3 compares it).
    pub container: Option<&'a Container>,
}

impl View<'_> {
    /// `init container "x"`, `container "x"`, ... for messages.
    pub fn who(&self) -> String {
        format!("{} {:?}", self.kind.as_str(), self.name)
    }

    /// Its place in the pod spec, for messages: `spec.initContainers[0]`.
    pub fn path(&self) -> String {
        let list = match self.kind {
            Kind::Init => "initContainers",
            Kind::App => "containers",
            Kind::Ephemeral => "ephemeralContainers",
        };
        format!("spec.{list}[{}]", self.index)
    }
}

fn view(kind: Kind, index: usize, c: &Container) -> View<'_> {
    View {
        kind,
        index,
        name: &c.name,
        image: c.image.as_deref(),
        env: c.env.as_deref().unwrap_or_default(),
        env_from: c.env_from.as_deref().unwrap_or_default(),
        volume_mounts: c.volume_mounts.as_deref().unwrap_or_default(),
        ports: c.ports.as_deref().unwrap_or_default(),
        security_context: c.security_context.as_ref(),
        target: None,
        container: Some(c),
    }
}

/// Every container of `spec`: init, app, then ephemeral ones.
pub fn containers(spec: &PodSpec) -> Vec<View<'_>> {
    let mut all: Vec<View<'_>> = Vec::new();
    all.extend(
        spec.init_containers
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, c)| view(Kind::Init, i, c)),
    );
    all.extend(
        spec.containers
            .iter()
            .enumerate()
            .map(|(i, c)| view(Kind::App, i, c)),
    );
    all.extend(
        spec.ephemeral_containers
            .iter()
            .flatten()
            .enumerate()
            .map(|(index, c)| View {
                kind: Kind::Ephemeral,
                index,
                name: &c.name,
                image: c.image.as_deref(),
                env: c.env.as_deref().unwrap_or_default(),
                env_from: c.env_from.as_deref().unwrap_or_default(),
                volume_mounts: c.volume_mounts.as_deref().unwrap_or_default(),
                ports: c.ports.as_deref().unwrap_or_default(),
                security_context: c.security_context.as_ref(),
                target: c.target_container_name.as_deref(),
                container: None,
            }),
    );
    all
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
