//! Rule 3: a container is the injected sidecar (or lock-down) only if it
//! equals, field by field, what `/mutate` injects for the pod's tenant,
//! after the API server's defaults ([`defaults`]) on both sides. Only
//! `resources` (and `resizePolicy`, which only says how a change of
//! `resources` is applied) may differ. The lock-down is recognised only as
//! the first init container, the sidecar only as an init container (a
//! native sidecar: `restartPolicy: Always` is part of its spec). Names, the
//! image and the `smtpbind.dev/status` annotation prove nothing: anything
//! else with the configured images or the injected names is an ordinary
//! container under every rule.
//!
//! The volumes an injected container mounts are part of what it is: each
//! must be, field for field, the volume `/mutate` adds (a lock-down whose
//! `/run` is a tenant's ConfigMap, or a sidecar whose Secret volume has
//! another mode, is not the injected one).
//!
//! Empty lists and objects compare equal to absent ones (the API server
//! stores neither).

use k8s_openapi::api::core::v1::{Container, PodSpec, Volume};
use serde_json::Value;

use super::Subject;
use crate::webhook::config::Tenant;
use crate::webhook::defaults::defaults;
use crate::webhook::pod::{Kind, View};
use crate::webhook::spec::{Spec, LOCKDOWN_NAME, SIDECAR_NAME};

/// Which of the pod's init containers are the injected ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Injected {
    /// `initContainers[0]` is the lock-down.
    pub lockdown: bool,
    /// The index in `initContainers` of the sidecar.
    pub sidecar: Option<usize>,
}

impl Injected {
    pub fn contains(&self, c: &View<'_>) -> bool {
        c.kind == Kind::Init && ((self.lockdown && c.index == 0) || self.sidecar == Some(c.index))
    }

    pub fn is_sidecar(&self, c: &View<'_>) -> bool {
        c.kind == Kind::Init && self.sidecar == Some(c.index)
    }
}

/// Rule 3: the injected sidecar and lock-down of `pod`, for `tenant`.
pub fn recognise(spec: &Spec, tenant: Option<&Tenant>, pod: &PodSpec) -> Injected {
    let Some(tenant) = tenant else {
        return Injected::default();
    };
    let init = pod.init_containers.as_deref().unwrap_or_default();
    let volumes = spec.volumes(tenant);
    let sidecar = canonical(&spec.sidecar_for(tenant));
    let lockdown = spec.lockdown_for(tenant).map(|c| canonical(&c));
    let is = |c: &Container, want: &Value| {
        canonical(c) == *want && mounts_injected_volumes(pod, c, &volumes)
    };
    Injected {
        lockdown: match (lockdown, init.first()) {
            (Some(want), Some(first)) => first.name == LOCKDOWN_NAME && is(first, &want),
            _ => false,
        },
        sidecar: init
            .iter()
            .position(|c| c.name == SIDECAR_NAME && is(c, &sidecar)),
    }
}

/// Every volume `c` mounts is, field for field, one `/mutate` adds.
fn mounts_injected_volumes(pod: &PodSpec, c: &Container, injected: &[Volume]) -> bool {
    let json = |v: &Volume| {
        let mut v = serde_json::to_value(v).unwrap_or(Value::Null);
        prune(&mut v);
        v
    };
    c.volume_mounts.iter().flatten().all(|m| {
        let want = injected.iter().find(|v| v.name == m.name);
        let have = pod.volumes.iter().flatten().find(|v| v.name == m.name);
        matches!((want, have), (Some(w), Some(h)) if json(w) == json(h))
    })
}

/// The first volume `c` mounts that is not the one `/mutate` adds.
fn foreign_volume(pod: &PodSpec, c: &Container, injected: &[Volume]) -> Option<String> {
    c.volume_mounts.iter().flatten().find_map(|m| {
        let single = Container {
            volume_mounts: Some(vec![m.clone()]),
            ..Container::default()
        };
        (!mounts_injected_volumes(pod, &single, injected)).then(|| m.name.clone())
    })
}

/// The container as compared: defaults applied, `resources` and
/// `resizePolicy` left out, empty values dropped.
pub fn canonical(c: &Container) -> Value {
    let mut c = c.clone();
    defaults(&mut c);
    c.resources = None;
    c.resize_policy = None;
    let mut v = serde_json::to_value(&c).unwrap_or(Value::Null);
    prune(&mut v);
    v
}

/// Drops nulls, empty arrays and empty objects, recursively.
fn prune(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for x in map.values_mut() {
                prune(x);
            }
            map.retain(|_, x| !is_empty(x));
        }
        Value::Array(items) => items.iter_mut().for_each(prune),
        _ => {}
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// The first field (in name order) in which `actual` differs from `expected`.
pub fn first_difference(actual: &Container, expected: &Container) -> Option<String> {
    let (Value::Object(a), Value::Object(e)) = (canonical(actual), canonical(expected)) else {
        return Some("the whole container".into());
    };
    let mut keys: Vec<&String> = a.keys().chain(e.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .find(|k| a.get(*k) != e.get(*k))
        .map(|k| format!("`{k}`"))
}

/// Why a container that looks like an injected one (its image or name) is
/// not: for messages. `None` when it is injected or looks like neither.
pub fn why_not(s: &Subject<'_>, c: &View<'_>) -> Option<String> {
    if s.is_injected(c) {
        return None;
    }
    let sidecar_image = s.config.sidecar.image.as_str();
    let lockdown_image = s.config.sidecar.lockdown_image.as_deref();
    let (what, expected) = if c.image == Some(sidecar_image) || c.name == SIDECAR_NAME {
        ("sidecar", s.tenant.map(|t| s.spec.sidecar_for(t)))
    } else if (lockdown_image.is_some() && c.image == lockdown_image) || c.name == LOCKDOWN_NAME {
        ("lock-down", s.tenant.and_then(|t| s.spec.lockdown_for(t)))
    } else {
        return None;
    };
    let because = match (c.kind, c.container, expected) {
        (_, _, None) if s.tenant.is_none() => "the pod has no tenant".to_string(),
        (_, _, None) => "the lock-down is not configured".to_string(),
        (Kind::Ephemeral, ..) => "it is an ephemeral container".to_string(),
        (Kind::App, ..) => "it is not an init container".to_string(),
        (Kind::Init, Some(actual), Some(expected)) => {
            let volumes = s.tenant.map(|t| s.spec.volumes(t)).unwrap_or_default();
            match first_difference(actual, &expected) {
                Some(field) => format!("its {field} differs from what /mutate injects"),
                None => match foreign_volume(s.pod, actual, &volumes) {
                    Some(v) => format!("its volume {v:?} is not the one /mutate adds"),
                    None if what == "lock-down" => "it is not the first init container".to_string(),
                    None => "it is not the one /mutate injects".to_string(),
                },
            }
        }
        (Kind::Init, None, Some(_)) => "it is not the one /mutate injects".to_string(),
    };
    Some(format!(
        "not the injected {what}: {because}; rule 3 recognises it only by its whole spec"
    ))
}
