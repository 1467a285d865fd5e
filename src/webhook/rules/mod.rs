//! The rules of contract §8, one function per rule, each free of I/O.
//!
//! ```text
//! recognition  rule 3: which containers are the injected sidecar and
//!              lock-down (whole spec after the API server's defaults)
//! sidecar      rule 1: a mailer runs the sidecar, after the lock-down
//! secrets      rule 2: the tenant's Secret only in the sidecar
//! baseline     rule 4: Pod Security Standards baseline (v1.33) + no shared
//!              process namespace, no ephemeral container into the sidecar
//! lockdown     rule 5: with the lock-down, nothing else may become smtpbind
//!              or send raw packets
//! exec         rule 6: no exec/attach into the sidecar or the lock-down
//! ```
//!
//! Rule 7 (the key goes only to the tenant's `upstream`) is carried by the
//! sidecar's `SMTPBIND_UPSTREAM_PIN` ([`super::spec::Spec::sidecar_for`]):
//! since the sidecar is recognised only by its whole spec (rule 3), a pod
//! whose sidecar lacks or changes the pin has no sidecar at all, and the
//! sidecar itself refuses to send the key anywhere else.

pub mod baseline;
pub mod exec;
pub mod lockdown;
pub mod recognition;
pub mod secrets;
pub mod sidecar;

use std::fmt;

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::config::{Config, Tenant};
use super::pod::{self, View};
use super::spec::Spec;
use recognition::Injected;

/// Why a pod (or an exec) is refused: the rule, what breaks it, the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rule: u8,
    /// The rule's (or the baseline control's) short name.
    pub title: &'static str,
    /// What breaks it, naming the container or volume.
    pub what: String,
    pub fix: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "smtpbind rule {} ({}): {}; fix: {}",
            self.rule, self.title, self.what, self.fix
        )
    }
}

impl Refusal {
    pub fn new(rule: u8, title: &'static str, what: String, fix: impl Into<String>) -> Refusal {
        Refusal {
            rule,
            title,
            what,
            fix: fix.into(),
        }
    }
}

/// One pod as every rule sees it.
#[derive(Debug)]
pub struct Subject<'a> {
    pub config: &'a Config,
    pub spec: &'a Spec,
    /// The pod's tenant; `None` in a namespace several tenants share when
    /// the pod chose none (then nothing in it is injected).
    pub tenant: Option<&'a Tenant>,
    pub meta: &'a ObjectMeta,
    pub pod: &'a PodSpec,
    pub views: Vec<View<'a>>,
    pub injected: Injected,
}

impl<'a> Subject<'a> {
    pub fn new(
        config: &'a Config,
        spec: &'a Spec,
        tenant: Option<&'a Tenant>,
        meta: &'a ObjectMeta,
        pod: &'a PodSpec,
    ) -> Subject<'a> {
        Subject {
            config,
            spec,
            tenant,
            meta,
            pod,
            views: pod::containers(pod),
            injected: recognition::recognise(spec, tenant, pod),
        }
    }

    /// Whether `c` is the injected sidecar or lock-down (rule 3).
    pub fn is_injected(&self, c: &View<'_>) -> bool {
        self.injected.contains(c)
    }

    /// Whether `c` is the injected sidecar.
    pub fn is_sidecar(&self, c: &View<'_>) -> bool {
        self.injected.is_sidecar(c)
    }

    /// Every container that is not injected: ordinary under every rule.
    pub fn ordinary(&self) -> impl Iterator<Item = &View<'a>> {
        self.views.iter().filter(|c| !self.is_injected(c))
    }

    /// ` (why it is not the injected sidecar / lock-down)` for a container
    /// that looks like one, else empty: appended to messages.
    pub fn not_injected_because(&self, c: &View<'_>) -> String {
        recognition::why_not(self, c)
            .map(|why| format!(" ({why})"))
            .unwrap_or_default()
    }

    pub fn lockdown_configured(&self) -> bool {
        self.spec.lockdown.is_some()
    }
}

/// `/validate` for a pod of `tenant` (or of none): every rule, first
/// refusal wins, in rule order.
pub fn check_pod(subject: &Subject<'_>) -> Result<(), Refusal> {
    sidecar::sidecar_required(subject)?;
    secrets::secret_references(subject)?;
    baseline::baseline(subject)?;
    if subject.lockdown_configured() {
        lockdown::nothing_else_becomes_smtpbind(subject)?;
    }
    Ok(())
}
