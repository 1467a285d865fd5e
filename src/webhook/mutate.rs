//! `/mutate`: the RFC 6902 patch that injects smtpbind into a pod annotated
//! `smtpbind.dev/inject: "true"`.
//!
//! The patch, in the order it is applied:
//! 1. `SMTP_HOST` / `SMTP_PORT` in every app init container and container
//!    that does not set them (by the indices of the pod as submitted);
//! 2. the smtpbind native sidecar inserted first among init containers, then
//!    the lock-down init container inserted before it (so the lock-down runs
//!    first, then smtpbind starts, then the app's own init containers);
//! 3. the Secret, ConfigMap (and lock-down scratch) volumes, mounted only by
//!    the sidecar (and the lock-down);
//! 4. the annotation `smtpbind.dev/status: injected`.
//!
//! A pod already injected, or one that already runs the sidecar, gets no patch.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};
use serde::Serialize;
use serde_json::Value;

use super::config::Config;
use super::pod::{self, Owner, INJECT_ANNOTATION, STATUS_ANNOTATION};
use super::spec::Spec;

/// What `/mutate` decides for one pod.
#[derive(Debug)]
pub enum Mutation {
    /// Admit unchanged; the reason is for the log and the metrics.
    Unchanged(&'static str),
    Patch(Patch),
    Refuse(String),
}

/// The decision for `pod`, created in `namespace`.
pub fn mutate(config: &Config, spec: &Spec, namespace: &str, pod: &Pod) -> Mutation {
    let meta = &pod.metadata;
    if pod::annotation(meta, INJECT_ANNOTATION) != Some("true") {
        return Mutation::Unchanged("not_annotated");
    }
    let tenant = match pod::owner(config, namespace, meta) {
        Owner::Unmanaged => return Mutation::Unchanged("no_tenant"),
        Owner::Refused(why) => return Mutation::Refuse(why),
        Owner::Tenant(t) => t,
    };
    if pod::annotation(meta, STATUS_ANNOTATION) == Some("injected") {
        return Mutation::Unchanged("already_injected");
    }
    let Some(pod_spec) = pod.spec.as_ref() else {
        return Mutation::Refuse("smtpbind: the pod has no spec".into());
    };
    let views = pod::containers(pod_spec);
    if views.iter().any(|c| pod::is_sidecar(c, config)) {
        return Mutation::Unchanged("already_injected");
    }
    let sidecar = spec.sidecar_for(tenant);
    let injected: Vec<&Container> = spec.lockdown.iter().chain([&sidecar]).collect();
    if let Some(c) = views
        .iter()
        .find(|c| injected.iter().any(|i| i.name == c.name))
    {
        return Mutation::Refuse(format!(
            "smtpbind: cannot inject: {} {:?} already uses the name of a container smtpbind injects",
            c.kind.as_str(),
            c.name
        ));
    }
    let volumes = spec.volumes(tenant);
    let existing = pod_spec.volumes.iter().flatten();
    if let Some(v) = existing
        .clone()
        .find(|v| volumes.iter().any(|n| n.name == v.name))
    {
        return Mutation::Refuse(format!(
            "smtpbind: cannot inject: the pod already has a volume named {:?}",
            v.name
        ));
    }

    let mut ops = Vec::new();
    for (field, list) in [
        (
            "initContainers",
            pod_spec.init_containers.as_deref().unwrap_or_default(),
        ),
        ("containers", pod_spec.containers.as_slice()),
    ] {
        for (i, c) in list.iter().enumerate() {
            env_ops(&mut ops, field, i, c, &spec.mailer_env);
        }
    }
    let index = ["spec", "initContainers", "0"];
    if pod_spec.init_containers.as_ref().is_none_or(Vec::is_empty) {
        add(&mut ops, &["spec", "initContainers"], &injected);
    } else {
        add(&mut ops, &index, &sidecar);
        if let Some(lockdown) = &spec.lockdown {
            add(&mut ops, &index, lockdown);
        }
    }
    if pod_spec.volumes.is_none() {
        add(&mut ops, &["spec", "volumes"], &volumes);
    } else {
        for v in &volumes {
            add(&mut ops, &["spec", "volumes", "-"], v);
        }
    }
    if meta.annotations.is_none() {
        add(
            &mut ops,
            &["metadata", "annotations"],
            &serde_json::json!({ STATUS_ANNOTATION: "injected" }),
        );
    } else {
        add(
            &mut ops,
            &["metadata", "annotations", STATUS_ANNOTATION],
            &"injected",
        );
    }
    Mutation::Patch(Patch(ops))
}

fn env_ops(ops: &mut Vec<PatchOperation>, field: &str, i: usize, c: &Container, env: &[EnvVar]) {
    let set = |name: &str| c.env.iter().flatten().any(|e| e.name == name);
    let missing: Vec<&EnvVar> = env.iter().filter(|e| !set(&e.name)).collect();
    let index = i.to_string();
    if c.env.is_none() {
        add(ops, &["spec", field, &index, "env"], &missing);
    } else {
        for e in missing {
            add(ops, &["spec", field, &index, "env", "-"], e);
        }
    }
}

fn add(ops: &mut Vec<PatchOperation>, path: &[&str], value: &impl Serialize) {
    ops.push(PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(path.iter().copied()),
        // Serializing k8s-openapi types and plain values into JSON cannot fail.
        value: serde_json::to_value(value).unwrap_or(Value::Null),
    }));
}
