//! Property: for generated pods (containers of every kind, look-alikes of
//! the injected ones, securityContexts, annotations, volumes), whenever
//! `/mutate` returns a patch, the patched pod — with the API server's
//! defaults applied, as the validating webhook sees it — is admitted by
//! `/validate`; otherwise `/mutate` refused with a reason, or left the pod
//! unchanged. And `/mutate` answers "unchanged" for an annotated pod of a
//! tenant only when the pod runs that tenant's exact sidecar: never for the
//! status annotation.

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use smtpbind::webhook::defaults::defaults;
use smtpbind::webhook::Endpoint;

use super::{answer, dir, webhook};

use crate::proptest_runner::config;

fn golden_pod(name: &str) -> Value {
    let path = dir().join(format!("golden/{name}.request.json"));
    let review: Value =
        serde_json::from_slice(&std::fs::read(path).expect("golden request")).expect("json");
    review["request"]["object"].clone()
}

/// The injected (lock-down, sidecar) of tenant acme and of tenant beta.
fn injected() -> [(Value, Value); 2] {
    let a = golden_pod("validate-injected-pod-as-stored");
    let b = golden_pod("validate-injected-pod-of-the-ses-tenant");
    [
        (
            a["spec"]["initContainers"][0].clone(),
            a["spec"]["initContainers"][1].clone(),
        ),
        (
            b["spec"]["initContainers"][0].clone(),
            b["spec"]["initContainers"][1].clone(),
        ),
    ]
}

const CAPS: [&str; 8] = [
    "ALL",
    "NET_RAW",
    "SETUID",
    "SETGID",
    "NET_ADMIN",
    "CHOWN",
    "SYS_ADMIN",
    "NET_BIND_SERVICE",
];

fn cap_list() -> impl Strategy<Value = Option<Vec<&'static str>>> {
    proptest::option::weighted(0.4, proptest::sample::subsequence(CAPS.to_vec(), 0..3))
}

fn security_context() -> impl Strategy<Value = Option<Value>> {
    let set = (
        prop_oneof![3 => Just(None), 1 => Just(Some(true)), 2 => Just(Some(false))],
        prop_oneof![8 => Just(None), 1 => Just(Some(true)), 1 => Just(Some(false))],
        proptest::option::weighted(0.5, (cap_list(), cap_list())),
        proptest::option::weighted(0.3, prop_oneof![Just(0i64), Just(1000), Just(65532)]),
        proptest::option::weighted(0.2, prop_oneof![Just("RuntimeDefault"), Just("Unconfined")]),
    )
        .prop_map(|(ape, privileged, caps, uid, seccomp)| {
            let mut sc = Map::new();
            if let Some(v) = ape {
                sc.insert("allowPrivilegeEscalation".into(), json!(v));
            }
            if let Some(v) = privileged {
                sc.insert("privileged".into(), json!(v));
            }
            if let Some((drop, add)) = caps {
                let mut c = Map::new();
                if let Some(d) = drop {
                    c.insert("drop".into(), json!(d));
                }
                if let Some(a) = add {
                    c.insert("add".into(), json!(a));
                }
                sc.insert("capabilities".into(), Value::Object(c));
            }
            if let Some(u) = uid {
                sc.insert("runAsUser".into(), json!(u));
            }
            if let Some(s) = seccomp {
                sc.insert("seccompProfile".into(), json!({"type": s}));
            }
            Value::Object(sc)
        });
    prop_oneof![3 => Just(None), 4 => set.prop_map(Some)]
}

/// What a generated container is.
#[derive(Debug, Clone)]
enum Part {
    Ordinary {
        name: &'static str,
        image: &'static str,
        sc: Option<Value>,
        smtp_host: bool,
        secret_env: bool,
        mount: Option<&'static str>,
    },
    /// An exact copy of tenant `0`'s sidecar (`true`) or lock-down.
    Exact(usize, bool),
    /// That copy with one field changed.
    LookAlike(usize, bool, usize),
}

fn part() -> impl Strategy<Value = Part> {
    let ordinary = (
        prop_oneof![
            60 => Just("mailer"),
            20 => Just("relay"),
            1 => Just("smtpbind"),
            1 => Just("smtpbind-egress-lockdown"),
        ],
        prop_oneof![
            6 => Just("registry.example/legacy-mailer:2.3"),
            1 => Just("registry.example/smtpbind:0.1.0"),
            1 => Just("registry.example/smtpbind-egress-lockdown:0.1.0"),
            2 => Just("busybox"),
        ],
        security_context(),
        any::<bool>(),
        prop::bool::weighted(0.05),
        prop_oneof![
            8 => Just(None),
            2 => Just(Some("scratch")),
            1 => Just(Some("creds")),
            1 => Just(Some("smtpbind-credential")),
        ],
    )
        .prop_map(
            |(name, image, sc, smtp_host, secret_env, mount)| Part::Ordinary {
                name,
                image,
                sc,
                smtp_host,
                secret_env,
                mount,
            },
        );
    prop_oneof![
        60 => ordinary,
        1 => (0..2usize, any::<bool>()).prop_map(|(t, s)| Part::Exact(t, s)),
        1 => (0..2usize, any::<bool>(), 0..6usize).prop_map(|(t, s, f)| Part::LookAlike(t, s, f)),
    ]
}

fn render(part: &Part, i: usize, injected: &[(Value, Value); 2]) -> Value {
    match part {
        Part::Ordinary {
            name,
            image,
            sc,
            smtp_host,
            secret_env,
            mount,
        } => {
            let mut c = json!({"name": if *name == "mailer" || *name == "relay" { format!("{name}-{i}") } else { name.to_string() }, "image": image});
            let mut env = Vec::new();
            if *smtp_host {
                env.push(json!({"name": "SMTP_HOST", "value": "mail.internal"}));
            }
            if *secret_env {
                env.push(json!({"name": "PW", "valueFrom": {"secretKeyRef": {"name": "acme-smtp", "key": "password"}}}));
            }
            if !env.is_empty() {
                c["env"] = json!(env);
            }
            if let Some(m) = mount {
                c["volumeMounts"] = json!([{"name": m, "mountPath": "/m"}]);
            }
            if let Some(sc) = sc {
                c["securityContext"] = sc.clone();
            }
            c
        }
        Part::Exact(t, sidecar) => pick(injected, *t, *sidecar),
        Part::LookAlike(t, sidecar, field) => {
            let mut c = pick(injected, *t, *sidecar);
            match field {
                0 => c["env"]
                    .as_array_mut()
                    .into_iter()
                    .for_each(|e| e.push(json!({"name": "PATH", "value": "/tmp"}))),
                1 => c["args"] = json!(["run", "--policy", "/tmp/p"]),
                2 => c["securityContext"]["privileged"] = json!(true),
                3 => c["image"] = json!("registry.example/other:1"),
                4 => c["volumeMounts"].as_array_mut().into_iter().for_each(|m| {
                    m.push(json!({"name": "scratch", "mountPath": "/usr/local/bin"}))
                }),
                _ => c["resources"] = json!({"limits": {"cpu": "1"}}),
            }
            c
        }
    }
}

fn pick(injected: &[(Value, Value); 2], tenant: usize, sidecar: bool) -> Value {
    let (lockdown, side) = &injected[tenant];
    if sidecar {
        side.clone()
    } else {
        lockdown.clone()
    }
}

#[derive(Debug, Clone)]
struct Generated {
    namespace: &'static str,
    inject: Option<&'static str>,
    status: bool,
    tenant: Option<&'static str>,
    mailer: bool,
    init: Vec<Part>,
    app: Vec<Part>,
    volumes: Vec<&'static str>,
    host_pid: bool,
    share: bool,
    pod_uid: Option<i64>,
}

fn generated() -> impl Strategy<Value = Generated> {
    (
        (
            prop_oneof![5 => Just("shop-acme"), 4 => Just("shop-beta"), 1 => Just("shared"), 1 => Just("web")],
            prop_oneof![8 => Just(Some("true")), 1 => Just(Some("false")), 1 => Just(None)],
            any::<bool>(),
            prop_oneof![24 => Just(None), 2 => Just(Some("acme")), 2 => Just(Some("beta")), 1 => Just(Some("zeta"))],
            any::<bool>(),
        ),
        (
            proptest::collection::vec(part(), 0..3),
            proptest::collection::vec(part(), 1..3),
            proptest::collection::vec(
                prop_oneof![
                    6 => Just("scratch"),
                    2 => Just("creds"),
                    1 => Just("beta-creds"),
                    1 => Just("hostpath"),
                    1 => Just("smtpbind-credential"),
                ],
                0..3,
            ),
            prop::bool::weighted(0.05),
            prop::bool::weighted(0.05),
            proptest::option::weighted(0.2, prop_oneof![Just(1000i64), Just(65532)]),
        ),
    )
        .prop_map(
            |((namespace, inject, status, tenant, mailer), (init, app, volumes, host_pid, share, pod_uid))| Generated {
                namespace,
                inject,
                status,
                tenant,
                mailer,
                init,
                app,
                volumes,
                host_pid,
                share,
                pod_uid,
            },
        )
}

fn pod(g: &Generated, injected: &[(Value, Value); 2]) -> Value {
    let mut annotations = Map::new();
    if let Some(v) = g.inject {
        annotations.insert("smtpbind.dev/inject".into(), json!(v));
    }
    if g.status {
        annotations.insert("smtpbind.dev/status".into(), json!("injected"));
    }
    if let Some(t) = g.tenant {
        annotations.insert("smtpbind.dev/tenant".into(), json!(t));
    }
    let mut labels = Map::new();
    labels.insert("app".into(), json!("mailer"));
    if g.mailer {
        labels.insert("smtpbind.dev/mailer".into(), json!("true"));
    }
    let mut names = g.volumes.clone();
    names.sort();
    names.dedup();
    let volumes: Vec<Value> = names
        .iter()
        .map(|v| match *v {
            "creds" => json!({"name": "creds", "secret": {"secretName": "acme-smtp"}}),
            "beta-creds" => json!({"name": "beta-creds", "secret": {"secretName": "beta-smtp"}}),
            "hostpath" => json!({"name": "hostpath", "hostPath": {"path": "/"}}),
            "smtpbind-credential" => {
                json!({"name": "smtpbind-credential", "secret": {"secretName": "acme-smtp"}})
            }
            other => json!({"name": other, "emptyDir": {}}),
        })
        .collect();
    let mut spec = json!({
        "containers": g.app.iter().enumerate().map(|(i, p)| render(p, i, injected)).collect::<Vec<_>>(),
    });
    if !g.init.is_empty() {
        spec["initContainers"] = json!(g
            .init
            .iter()
            .enumerate()
            .map(|(i, p)| render(p, 10 + i, injected))
            .collect::<Vec<_>>());
    }
    if !volumes.is_empty() {
        spec["volumes"] = json!(volumes);
    }
    if g.host_pid {
        spec["hostPID"] = json!(true);
    }
    if g.share {
        spec["shareProcessNamespace"] = json!(true);
    }
    if let Some(uid) = g.pod_uid {
        spec["securityContext"] = json!({"runAsUser": uid});
    }
    let mut meta = json!({"name": "p", "namespace": g.namespace, "labels": labels});
    if !annotations.is_empty() {
        meta["annotations"] = Value::Object(annotations);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
}

fn review(namespace: &str, pod: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace, "operation": "CREATE",
            "userInfo": {"username": "tenant"}, "object": pod, "dryRun": false,
        }
    }))
    .expect("json")
}

/// The API server's defaults on every container of `pod`.
fn with_defaults(pod: &mut Value) {
    for list in ["initContainers", "containers"] {
        for c in pod["spec"][list].as_array_mut().into_iter().flatten() {
            let mut typed: k8s_openapi::api::core::v1::Container =
                serde_json::from_value(c.clone()).expect("container");
            defaults(&mut typed);
            *c = serde_json::to_value(&typed).expect("json");
        }
    }
}

/// Whether tenant `t`'s exact sidecar is among the init containers.
fn has_exact_sidecar(pod: &Value, sidecar: &Value) -> bool {
    pod["spec"]["initContainers"]
        .as_array()
        .is_some_and(|init| init.iter().any(|c| c == sidecar))
}

proptest! {
    #![proptest_config(config(400))]

    #[test]
    fn every_patch_mutate_returns_yields_a_pod_validate_admits(g in generated()) {
        let injected = injected();
        let webhook = webhook();
        let pod = pod(&g, &injected);
        let got = answer(&webhook, Endpoint::Mutate, &review(g.namespace, &pod));
        let response = &got["review"]["response"];
        match got["result"].as_str() {
            Some("patched") => {
                let patch: json_patch::Patch =
                    serde_json::from_value(response["patch"].clone()).expect("RFC 6902");
                let mut patched = pod.clone();
                json_patch::patch(&mut patched, &patch).expect("the patch applies");
                with_defaults(&mut patched);
                let again = answer(&webhook, Endpoint::Validate, &review(g.namespace, &patched));
                prop_assert_eq!(
                    &again["review"]["response"]["allowed"], &json!(true),
                    "patched pod refused: {}\npod: {}", again, patched
                );
            }
            Some("refused") => {
                let message = response["status"]["message"].as_str().unwrap_or_default();
                prop_assert!(message.starts_with("smtpbind"), "{}", message);
                prop_assert_eq!(&response["status"]["code"], &json!(403));
            }
            Some("unchanged") => {
                // Annotated, in a tenant's namespace: unchanged only when it
                // already runs the exact sidecar, whatever its annotations say.
                let tenant = match (g.namespace, g.tenant) {
                    ("shop-acme", None | Some("acme")) | ("shared", Some("acme")) => Some(0),
                    ("shop-beta", None | Some("beta")) | ("shared", Some("beta")) => Some(1),
                    _ => None,
                };
                if let (Some(t), Some("true")) = (tenant, g.inject) {
                    prop_assert!(
                        has_exact_sidecar(&pod, &injected[t].1),
                        "unchanged without the sidecar: {}", pod
                    );
                }
            }
            other => prop_assert!(false, "unexpected result {:?}: {}", other, got),
        }
    }

    #[test]
    fn a_pod_breaking_no_rule_is_always_patched(
        namespace in proptest::sample::select(vec!["shop-acme", "shop-beta"]),
        app in proptest::collection::vec(
            (any::<bool>(), prop_oneof![
                Just(None),
                Just(Some(json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}))),
                Just(Some(json!({"runAsNonRoot": true}))),
                Just(Some(json!({"capabilities": {"drop": ["NET_ADMIN"], "add": ["NET_BIND_SERVICE"]}}))),
            ]),
            1..4,
        ),
        status in any::<bool>(),
    ) {
        let mut annotations = json!({"smtpbind.dev/inject": "true"});
        if status {
            annotations["smtpbind.dev/status"] = json!("injected");
        }
        let containers: Vec<Value> = app.iter().enumerate().map(|(i, (smtp, sc))| {
            let mut c = json!({"name": format!("app-{i}"), "image": "registry.example/app:1"});
            if *smtp {
                c["env"] = json!([{"name": "SMTP_PORT", "value": "25"}]);
            }
            if let Some(sc) = sc {
                c["securityContext"] = sc.clone();
            }
            c
        }).collect();
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": namespace, "annotations": annotations,
                         "labels": {"smtpbind.dev/mailer": "true"}},
            "spec": {"containers": containers}});
        let got = answer(&webhook(), Endpoint::Mutate, &review(namespace, &pod));
        prop_assert_eq!(&got["result"], &json!("patched"), "{}", got);
    }
}
