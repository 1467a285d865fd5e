//! `/mutate`: the RFC 6902 patch that injects smtpbind into a pod annotated
//! `smtpbind.dev/inject: "true"`.
//!
//! A pod is already injected only when it runs the exact sidecar (and, when
//! configured, the exact lock-down first) of its tenant — rule 3, never the
//! `smtpbind.dev/status` annotation. Otherwise the patch, in order:
//! 1. `SMTP_HOST` / `SMTP_PORT` in every app init container and container
//!    that does not set them, and (rule 5, with the lock-down) the
//!    hardening of each: `capabilities.drop` gains `NET_RAW`, `SETUID`,
//!    `SETGID` (unless it drops `ALL`), `allowPrivilegeEscalation: false`
//!    where unset — never overriding an explicit value (the indices are
//!    those of the pod as submitted, so these come before the insertions);
//! 2. the sidecar inserted first among init containers, then the lock-down
//!    inserted before it (the lock-down runs first, then smtpbind starts,
//!    then the app's own init containers);
//! 3. the Secret, ConfigMap (and lock-down scratch) volumes, mounted only by
//!    the sidecar (and the lock-down);
//! 4. the annotation `smtpbind.dev/status: injected` and the label
//!    `smtpbind.dev/tenant: <tenant>`.
//!
//! An already injected pod gets only the hardening and the label it lacks.
//! Before answering, the patch is applied to the pod and the result put
//! through `/validate`'s rules: a pod they would refuse is refused here,
//! with the same message (an explicit `allowPrivilegeEscalation: true`,
//! `runAsUser: 65532`, a privileged container, ...), so every patch
//! `/mutate` returns yields a pod `/validate` admits.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, PodSpec};
use serde::Serialize;
use serde_json::{json, Value};

use super::config::{Config, Tenant};
use super::pod::{self, Owner, INJECT_ANNOTATION, STATUS_ANNOTATION, TENANT_LABEL};
use super::rules::lockdown::REQUIRED_DROPS;
use super::rules::recognition;
use super::spec::{Spec, LOCKDOWN_NAME, SIDECAR_NAME};
use super::validate;

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
    let Some(pod_spec) = pod.spec.as_ref() else {
        return Mutation::Refuse("smtpbind: the pod has no spec".into());
    };
    let found = recognition::recognise(spec, Some(tenant), pod_spec);
    let complete = found.sidecar.is_some() && (spec.lockdown.is_none() || found.lockdown);
    let mut ops = Vec::new();
    let lists = [
        (
            "initContainers",
            pod_spec.init_containers.as_deref().unwrap_or_default(),
        ),
        ("containers", pod_spec.containers.as_slice()),
    ];
    for (field, list) in lists {
        for (i, c) in list.iter().enumerate() {
            let injected = field == "initContainers"
                && ((found.lockdown && i == 0) || found.sidecar == Some(i));
            if injected {
                continue;
            }
            if !complete {
                env_ops(&mut ops, field, i, c, &spec.mailer_env);
            }
            if spec.lockdown.is_some() {
                harden_ops(&mut ops, field, i, c);
            }
        }
    }
    if !complete {
        if let Err(why) = inject_ops(&mut ops, spec, tenant, pod_spec) {
            return Mutation::Refuse(why);
        }
        let status = ["metadata", "annotations"];
        match meta.annotations {
            None => add(&mut ops, &status, &json!({ STATUS_ANNOTATION: "injected" })),
            Some(_) => add(
                &mut ops,
                &["metadata", "annotations", STATUS_ANNOTATION],
                &"injected",
            ),
        }
    }
    if pod::label(meta, TENANT_LABEL) != Some(tenant.name.as_str()) {
        match meta.labels {
            None => add(
                &mut ops,
                &["metadata", "labels"],
                &json!({ TENANT_LABEL: tenant.name }),
            ),
            Some(_) => add(
                &mut ops,
                &["metadata", "labels", TENANT_LABEL],
                &tenant.name,
            ),
        }
    }
    if ops.is_empty() {
        return Mutation::Unchanged("already_injected");
    }
    let patch = Patch(ops);
    match verify(config, spec, namespace, pod, &patch) {
        Ok(()) => Mutation::Patch(patch),
        Err(why) => Mutation::Refuse(why),
    }
}

/// The sidecar, the lock-down and their volumes.
fn inject_ops(
    ops: &mut Vec<PatchOperation>,
    spec: &Spec,
    tenant: &Tenant,
    pod_spec: &PodSpec,
) -> Result<(), String> {
    let views = pod::containers(pod_spec);
    if let Some(c) = views
        .iter()
        .find(|c| c.name == SIDECAR_NAME || c.name == LOCKDOWN_NAME)
    {
        return Err(format!(
            "smtpbind: cannot inject: {} already uses the name of a container smtpbind injects \
             (it is not the injected one: rule 3 recognises the sidecar and the lock-down only by \
             their whole spec); fix: remove it, /mutate injects the sidecar itself",
            c.who()
        ));
    }
    let volumes = spec.volumes(tenant);
    if let Some(v) = pod_spec
        .volumes
        .iter()
        .flatten()
        .find(|v| volumes.iter().any(|n| n.name == v.name))
    {
        return Err(format!(
            "smtpbind: cannot inject: the pod already has a volume named {:?}; fix: rename it",
            v.name
        ));
    }
    let sidecar = spec.sidecar_for(tenant);
    let lockdown = spec.lockdown_for(tenant);
    let injected: Vec<&Container> = lockdown.iter().chain([&sidecar]).collect();
    let index = ["spec", "initContainers", "0"];
    if pod_spec.init_containers.as_ref().is_none_or(Vec::is_empty) {
        add(ops, &["spec", "initContainers"], &injected);
    } else {
        add(ops, &index, &sidecar);
        if let Some(lockdown) = &lockdown {
            add(ops, &index, lockdown);
        }
    }
    if pod_spec.volumes.is_none() {
        add(ops, &["spec", "volumes"], &volumes);
    } else {
        for v in &volumes {
            add(ops, &["spec", "volumes", "-"], v);
        }
    }
    Ok(())
}

fn env_ops(ops: &mut Vec<PatchOperation>, field: &str, i: usize, c: &Container, env: &[EnvVar]) {
    let set = |name: &str| c.env.iter().flatten().any(|e| e.name == name);
    let missing: Vec<&EnvVar> = env.iter().filter(|e| !set(&e.name)).collect();
    let index = i.to_string();
    if missing.is_empty() {
        return;
    }
    if c.env.is_none() {
        add(ops, &["spec", field, &index, "env"], &missing);
    } else {
        for e in missing {
            add(ops, &["spec", field, &index, "env", "-"], e);
        }
    }
}

/// Rule 5's hardening of one container: only where a value is unset.
fn harden_ops(ops: &mut Vec<PatchOperation>, field: &str, i: usize, c: &Container) {
    let index = i.to_string();
    let sc_path = ["spec", field, &index, "securityContext"];
    let Some(sc) = &c.security_context else {
        add(
            ops,
            &sc_path,
            &json!({
                "allowPrivilegeEscalation": false,
                "capabilities": { "drop": REQUIRED_DROPS },
            }),
        );
        return;
    };
    let sc_path = ["spec", field, &index, "securityContext"];
    let at = |tail: &[&'static str]| -> Vec<&str> {
        sc_path
            .iter()
            .copied()
            .chain(tail.iter().copied())
            .collect()
    };
    if sc.allow_privilege_escalation.is_none() {
        add(ops, &at(&["allowPrivilegeEscalation"]), &false);
    }
    match sc.capabilities.as_ref().map(|c| c.drop.as_deref()) {
        None => add(
            ops,
            &at(&["capabilities"]),
            &json!({ "drop": REQUIRED_DROPS }),
        ),
        Some(None) => add(ops, &at(&["capabilities", "drop"]), &REQUIRED_DROPS),
        Some(Some(drops)) if drops.iter().any(|d| d == "ALL") => {}
        Some(Some(drops)) => {
            for d in REQUIRED_DROPS
                .iter()
                .filter(|d| !drops.iter().any(|x| x == *d))
            {
                add(ops, &at(&["capabilities", "drop", "-"]), d);
            }
        }
    }
}

/// The patched pod must pass `/validate`; its refusal is the answer.
fn verify(
    config: &Config,
    spec: &Spec,
    namespace: &str,
    pod: &Pod,
    patch: &Patch,
) -> Result<(), String> {
    let internal = |e: String| format!("smtpbind: cannot inject: {e}");
    let mut doc = serde_json::to_value(pod).map_err(|e| internal(e.to_string()))?;
    json_patch::patch(&mut doc, patch).map_err(|e| internal(e.to_string()))?;
    let patched: Pod = serde_json::from_value(doc).map_err(|e| internal(e.to_string()))?;
    validate::validate(config, spec, namespace, &patched)
}

fn add(ops: &mut Vec<PatchOperation>, path: &[&str], value: &impl Serialize) {
    ops.push(PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(path.iter().copied()),
        // Serializing k8s-openapi types and plain values into JSON cannot fail.
        value: serde_json::to_value(value).unwrap_or(Value::Null),
    }));
}
