//! `/validate`: the rules of contract §8 ([`super::rules`]) for pods in a
//! namespace any tenant names; the first broken rule refuses the pod with a
//! message that names the rule, the container or volume, and the fix.
//! CREATE and UPDATE of `pods` and `pods/ephemeralcontainers` are validated
//! as the new pod; CONNECT of `pods/exec` and `pods/attach` by rule 6.

use k8s_openapi::api::core::v1::Pod;

use super::config::Config;
use super::pod::{self, Owner};
use super::rules::{self, Subject};
use super::spec::Spec;

pub use super::rules::lockdown::SIDECAR_UID;

/// `Ok(())` to admit, else the refusal message.
pub fn validate(config: &Config, spec: &Spec, namespace: &str, pod: &Pod) -> Result<(), String> {
    let tenant = match pod::owner(config, namespace, &pod.metadata) {
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
    let Some(pod_spec) = pod.spec.as_ref() else {
        return Ok(());
    };
    let subject = Subject::new(config, spec, tenant, &pod.metadata, pod_spec);
    rules::check_pod(&subject).map_err(|r| r.to_string())
}

/// CONNECT `pods/exec` / `pods/attach` (rule 6) in `namespace`.
pub fn validate_connect(
    config: &Config,
    namespace: &str,
    subresource: &str,
    pod: &str,
    container: Option<&str>,
) -> Result<(), String> {
    if config.tenants_in(namespace).is_empty() {
        return Ok(());
    }
    rules::exec::no_exec_into_injected(subresource, pod, container).map_err(|r| r.to_string())
}
