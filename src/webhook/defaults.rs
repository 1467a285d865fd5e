//! The API server's defaults for a container (Kubernetes `SetDefaults_*` of
//! core/v1, as of v1.33), as a pure function: what a container the webhook
//! injects looks like once stored, so rule 3 can compare it field by field
//! with what a pod brings (contract §8).
//!
//! Applied: `imagePullPolicy` (`Always` for a `:latest` or untagged image
//! without a digest, else `IfNotPresent`), `terminationMessagePath`
//! (`/dev/termination-log`), `terminationMessagePolicy` (`File`); for each
//! probe `timeoutSeconds` 1, `periodSeconds` 10, `successThreshold` 1,
//! `failureThreshold` 3 and an `httpGet`'s `path` `/` and `scheme` `HTTP`;
//! a lifecycle hook's `httpGet` likewise; each port's `protocol` `TCP`; an
//! env `fieldRef`'s `apiVersion` `v1`. Defaulting is idempotent: a stored
//! container is left as it is.

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, LifecycleHandler, Probe};

pub const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
pub const TERMINATION_MESSAGE_POLICY: &str = "File";

/// `c` with the API server's defaults applied where a field is unset.
pub fn defaults(c: &mut Container) {
    if c.image_pull_policy.as_deref().is_none_or(str::is_empty) {
        c.image_pull_policy = Some(pull_policy(c.image.as_deref().unwrap_or_default()).into());
    }
    if c.termination_message_path
        .as_deref()
        .is_none_or(str::is_empty)
    {
        c.termination_message_path = Some(TERMINATION_MESSAGE_PATH.into());
    }
    if c.termination_message_policy
        .as_deref()
        .is_none_or(str::is_empty)
    {
        c.termination_message_policy = Some(TERMINATION_MESSAGE_POLICY.into());
    }
    for probe in [
        c.liveness_probe.as_mut(),
        c.readiness_probe.as_mut(),
        c.startup_probe.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        probe_defaults(probe);
    }
    if let Some(lifecycle) = c.lifecycle.as_mut() {
        for hook in [lifecycle.post_start.as_mut(), lifecycle.pre_stop.as_mut()]
            .into_iter()
            .flatten()
        {
            hook_defaults(hook);
        }
    }
    for port in c.ports.iter_mut().flatten() {
        if port.protocol.as_deref().is_none_or(str::is_empty) {
            port.protocol = Some("TCP".into());
        }
    }
    for env in c.env.iter_mut().flatten() {
        if let Some(field) = env.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            if field.api_version.as_deref().is_none_or(str::is_empty) {
                field.api_version = Some("v1".into());
            }
        }
    }
}

/// Kubernetes' image pull policy default: `Always` for the `latest` tag or
/// no tag (and no digest), else `IfNotPresent`.
fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    // The tag follows the last `:` after the last `/` (a registry port is not a tag).
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn probe_defaults(p: &mut Probe) {
    p.timeout_seconds.get_or_insert(1);
    p.period_seconds.get_or_insert(10);
    p.success_threshold.get_or_insert(1);
    p.failure_threshold.get_or_insert(3);
    if let Some(get) = p.http_get.as_mut() {
        http_get_defaults(get);
    }
}

fn hook_defaults(h: &mut LifecycleHandler) {
    if let Some(get) = h.http_get.as_mut() {
        http_get_defaults(get);
    }
}

fn http_get_defaults(get: &mut HTTPGetAction) {
    if get.path.as_deref().is_none_or(str::is_empty) {
        get.path = Some("/".into());
    }
    if get.scheme.as_deref().is_none_or(str::is_empty) {
        get.scheme = Some("HTTP".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).expect("container")
    }

    #[test]
    fn fills_what_the_api_server_fills_and_is_idempotent() {
        let mut c = container(json!({
            "name": "x", "image": "reg:5000/app",
            "ports": [{"containerPort": 1}],
            "readinessProbe": {"httpGet": {"port": 1}},
            "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        }));
        defaults(&mut c);
        let want = container(json!({
            "name": "x", "image": "reg:5000/app", "imagePullPolicy": "Always",
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "ports": [{"containerPort": 1, "protocol": "TCP"}],
            "readinessProbe": {"httpGet": {"port": 1, "path": "/", "scheme": "HTTP"},
                               "timeoutSeconds": 1, "periodSeconds": 10,
                               "successThreshold": 1, "failureThreshold": 3},
            "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name",
                                                             "apiVersion": "v1"}}}],
        }));
        assert_eq!(c, want);
        defaults(&mut c);
        assert_eq!(c, want);
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(pull_policy("a:1.0"), "IfNotPresent");
        assert_eq!(pull_policy("a:latest"), "Always");
        assert_eq!(pull_policy("a"), "Always");
        assert_eq!(pull_policy("reg:5000/a"), "Always");
        assert_eq!(pull_policy("a@sha256:00"), "IfNotPresent");
    }
}
