//! Rules 3 and 4 one field at a time, on pods as the API server stores
//! them (defaults applied): the golden `validate-injected-pod-as-stored`
//! pod is the base every case changes.

use serde_json::{json, Value};
use smtpbind::webhook::Endpoint;

use super::{answer, dir, webhook};

/// The stored injected pod's review (lock-down at initContainers[0],
/// sidecar at [1], the mailer hardened).
pub fn stored_review() -> Value {
    let path = dir().join("golden/validate-injected-pod-as-stored.request.json");
    serde_json::from_slice(&std::fs::read(path).expect("golden request")).expect("json")
}

/// `/validate`'s verdict for the base pod changed by `change`:
/// `None` when allowed, else the refusal message.
pub fn verdict(change: impl FnOnce(&mut Value)) -> Option<String> {
    let mut review = stored_review();
    change(&mut review["request"]["object"]);
    let body = serde_json::to_vec(&review).expect("json");
    let got = answer(&webhook(), Endpoint::Validate, &body);
    let response = &got["review"]["response"];
    if response["allowed"] == true {
        None
    } else {
        Some(
            response["status"]["message"]
                .as_str()
                .unwrap_or("no message")
                .to_string(),
        )
    }
}

fn mailer(pod: &mut Value) -> &mut Value {
    &mut pod["spec"]["containers"][0]
}

fn mailer_sc(pod: &mut Value) -> &mut Value {
    &mut mailer(pod)["securityContext"]
}

fn pod_sc(pod: &mut Value) -> &mut Value {
    &mut pod["spec"]["securityContext"]
}

type Change = Box<dyn Fn(&mut Value)>;

/// One baseline control: a pod it admits, pods it refuses.
struct Control {
    title: &'static str,
    allowed: Vec<Change>,
    refused: Vec<Change>,
}

fn controls() -> Vec<Control> {
    fn c(f: impl Fn(&mut Value) + 'static) -> Change {
        Box::new(f)
    }
    vec![
        Control {
            title: "baseline: HostProcess",
            allowed: vec![
                c(|p| *pod_sc(p) = json!({"windowsOptions": {"hostProcess": false}})),
                c(|p| mailer_sc(p)["windowsOptions"] = json!({"hostProcess": false})),
            ],
            refused: vec![
                c(|p| *pod_sc(p) = json!({"windowsOptions": {"hostProcess": true}})),
                c(|p| mailer_sc(p)["windowsOptions"] = json!({"hostProcess": true})),
            ],
        },
        Control {
            title: "baseline: host namespaces",
            allowed: vec![c(|p| {
                p["spec"]["hostNetwork"] = json!(false);
                p["spec"]["hostPID"] = json!(false);
                p["spec"]["hostIPC"] = json!(false);
            })],
            refused: vec![
                c(|p| p["spec"]["hostNetwork"] = json!(true)),
                c(|p| p["spec"]["hostPID"] = json!(true)),
                c(|p| p["spec"]["hostIPC"] = json!(true)),
            ],
        },
        Control {
            title: "baseline: privileged containers",
            allowed: vec![c(|p| mailer_sc(p)["privileged"] = json!(false))],
            refused: vec![c(|p| mailer_sc(p)["privileged"] = json!(true))],
        },
        Control {
            title: "baseline: capabilities",
            allowed: vec![
                c(|p| mailer_sc(p)["capabilities"]["add"] = json!(["NET_BIND_SERVICE", "CHOWN"])),
                c(|p| mailer_sc(p)["capabilities"]["add"] = json!(["KILL", "SYS_CHROOT"])),
            ],
            refused: vec![
                c(|p| mailer_sc(p)["capabilities"]["add"] = json!(["SYS_ADMIN"])),
                c(|p| mailer_sc(p)["capabilities"]["add"] = json!(["NET_ADMIN"])),
                c(|p| mailer_sc(p)["capabilities"]["add"] = json!(["net_bind_service"])),
                c(|p| mailer_sc(p)["capabilities"]["add"] = json!(["CAP_SYS_PTRACE"])),
            ],
        },
        Control {
            title: "baseline: hostPath volumes",
            allowed: vec![c(|p| {
                push(p, "volumes", json!({"name": "tmp", "emptyDir": {}}))
            })],
            refused: vec![
                c(|p| {
                    push(
                        p,
                        "volumes",
                        json!({"name": "root", "hostPath": {"path": "/"}}),
                    )
                }),
                c(|p| {
                    push(
                        p,
                        "volumes",
                        json!({"name": "pods", "hostPath": {"path": "/var/lib/kubelet/pods", "type": "Directory"}}),
                    )
                }),
            ],
        },
        Control {
            title: "baseline: host ports",
            allowed: vec![c(|p| {
                mailer(p)["ports"] =
                    json!([{"containerPort": 8080, "hostPort": 0, "protocol": "TCP"}])
            })],
            refused: vec![c(|p| {
                mailer(p)["ports"] =
                    json!([{"containerPort": 8080, "hostPort": 8080, "protocol": "TCP"}])
            })],
        },
        Control {
            title: "baseline: AppArmor",
            allowed: vec![
                c(|p| {
                    annotate(
                        p,
                        "container.apparmor.security.beta.kubernetes.io/mailer",
                        "runtime/default",
                    )
                }),
                c(|p| {
                    annotate(
                        p,
                        "container.apparmor.security.beta.kubernetes.io/mailer",
                        "localhost/mine",
                    )
                }),
                c(|p| *pod_sc(p) = json!({"appArmorProfile": {"type": "RuntimeDefault"}})),
                c(|p| {
                    mailer_sc(p)["appArmorProfile"] =
                        json!({"type": "Localhost", "localhostProfile": "mine"})
                }),
            ],
            refused: vec![
                c(|p| {
                    annotate(
                        p,
                        "container.apparmor.security.beta.kubernetes.io/mailer",
                        "unconfined",
                    )
                }),
                c(|p| {
                    annotate(
                        p,
                        "container.apparmor.security.beta.kubernetes.io/smtpbind",
                        "unconfined",
                    )
                }),
                c(|p| *pod_sc(p) = json!({"appArmorProfile": {"type": "Unconfined"}})),
                c(|p| mailer_sc(p)["appArmorProfile"] = json!({"type": "Unconfined"})),
            ],
        },
        Control {
            title: "baseline: SELinux",
            allowed: vec![
                c(|p| {
                    *pod_sc(p) =
                        json!({"seLinuxOptions": {"type": "container_t", "level": "s0:c1,c2"}})
                }),
                c(|p| mailer_sc(p)["seLinuxOptions"] = json!({"type": "container_init_t"})),
            ],
            refused: vec![
                c(|p| *pod_sc(p) = json!({"seLinuxOptions": {"type": "spc_t"}})),
                c(|p| mailer_sc(p)["seLinuxOptions"] = json!({"user": "system_u"})),
                c(|p| mailer_sc(p)["seLinuxOptions"] = json!({"role": "system_r"})),
            ],
        },
        Control {
            title: "baseline: /proc mount type",
            allowed: vec![c(|p| mailer_sc(p)["procMount"] = json!("Default"))],
            refused: vec![c(|p| mailer_sc(p)["procMount"] = json!("Unmasked"))],
        },
        Control {
            title: "baseline: seccomp",
            allowed: vec![
                c(|p| *pod_sc(p) = json!({"seccompProfile": {"type": "RuntimeDefault"}})),
                c(|p| {
                    mailer_sc(p)["seccompProfile"] =
                        json!({"type": "Localhost", "localhostProfile": "p.json"})
                }),
            ],
            refused: vec![
                c(|p| *pod_sc(p) = json!({"seccompProfile": {"type": "Unconfined"}})),
                c(|p| mailer_sc(p)["seccompProfile"] = json!({"type": "Unconfined"})),
            ],
        },
        Control {
            title: "baseline: sysctls",
            allowed: vec![c(|p| {
                *pod_sc(p) = json!({"sysctls": [
                    {"name": "net.ipv4.tcp_syncookies", "value": "1"},
                    {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]})
            })],
            refused: vec![
                c(|p| *pod_sc(p) = json!({"sysctls": [{"name": "kernel.msgmax", "value": "1"}]})),
                c(|p| {
                    *pod_sc(p) = json!({"sysctls": [{"name": "net.ipv4.ip_forward", "value": "1"}]})
                }),
            ],
        },
        Control {
            title: "no shared process namespace",
            allowed: vec![c(|p| p["spec"]["shareProcessNamespace"] = json!(false))],
            refused: vec![c(|p| p["spec"]["shareProcessNamespace"] = json!(true))],
        },
        Control {
            title: "no ephemeral container into the sidecar",
            allowed: vec![c(|p| ephemeral(p, "mailer"))],
            refused: vec![
                c(|p| ephemeral(p, "smtpbind")),
                c(|p| ephemeral(p, "smtpbind-egress-lockdown")),
            ],
        },
    ]
}

fn push(p: &mut Value, list: &str, item: Value) {
    p["spec"][list].as_array_mut().expect("list").push(item);
}

fn annotate(p: &mut Value, key: &str, value: &str) {
    p["metadata"]["annotations"][key] = json!(value);
}

fn ephemeral(p: &mut Value, target: &str) {
    p["spec"]["ephemeralContainers"] = json!([{
        "name": "debugger", "image": "busybox:1.36", "targetContainerName": target,
        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
    }]);
}

#[test]
fn the_stored_injected_pod_is_admitted() {
    assert_eq!(verdict(|_| {}), None);
}

#[test]
fn baseline_table_one_admitted_and_one_refused_pod_per_control() {
    let mut failures = Vec::new();
    for control in controls() {
        for (i, allow) in control.allowed.iter().enumerate() {
            if let Some(why) = verdict(|p| allow(p)) {
                failures.push(format!("{} allowed[{i}] was refused: {why}", control.title));
            }
        }
        for (i, refuse) in control.refused.iter().enumerate() {
            let want = format!("smtpbind rule 4 ({}):", control.title);
            match verdict(|p| refuse(p)) {
                Some(why) if why.starts_with(&want) && why.contains("; fix: ") => {}
                other => failures.push(format!("{} refused[{i}]: {other:?}", control.title)),
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// One field of the sidecar (`initContainers[1]`) or the lock-down
/// (`[0]`) changed: it is no longer recognised.
fn changes() -> Vec<(&'static str, usize, Change)> {
    fn c(f: impl Fn(&mut Value) + 'static) -> Change {
        Box::new(f)
    }
    let mut out: Vec<(&'static str, usize, Change)> = Vec::new();
    for index in [0, 1] {
        out.extend([
            (
                "env added",
                index,
                c(move |x| x["env"].as_array_mut().expect("env").push(json!({"name": "PATH", "value": "/tmp"}))),
            ),
            ("env value", index, c(|x| x["env"][0]["value"] = json!("0"))),
            ("args", index, c(|x| x["args"] = json!(["run", "--policy", "/tmp/p.yaml"]))),
            ("command", index, c(|x| x["command"] = json!(["/bin/sh", "-c", "cat /var/run/secrets/smtpbind/password"]))),
            (
                "mount added",
                index,
                c(|x| {
                    x["volumeMounts"].as_array_mut().expect("mounts").push(
                        json!({"name": "smtpbind-policy", "mountPath": "/usr/local/bin/smtpbind", "subPath": "policy.yaml"}),
                    )
                }),
            ),
            ("mount read-write", index, c(|x| x["volumeMounts"][0]["readOnly"] = json!(false))),
            ("privileged", index, c(|x| x["securityContext"]["privileged"] = json!(true))),
            ("runAsUser", index, c(|x| x["securityContext"]["runAsUser"] = json!(1000))),
            ("capability added", index, c(|x| x["securityContext"]["capabilities"]["add"] = json!(["SYS_ADMIN"]))),
            ("image", index, c(|x| x["image"] = json!("registry.example/smtpbind:0.0.9"))),
            ("name", index, c(|x| x["name"] = json!("smtpbind-2"))),
            ("imagePullPolicy", index, c(|x| x["imagePullPolicy"] = json!("Never"))),
            ("terminationMessagePath", index, c(|x| x["terminationMessagePath"] = json!("/var/run/secrets/smtpbind/password"))),
            ("workingDir", index, c(|x| x["workingDir"] = json!("/var/run/secrets/smtpbind"))),
            ("stdin", index, c(|x| x["stdin"] = json!(true))),
        ]);
    }
    out.extend([
        (
            "probe timeout",
            1,
            c(|x| x["readinessProbe"]["timeoutSeconds"] = json!(30)) as Change,
        ),
        (
            "probe removed",
            1,
            c(|x| {
                x.as_object_mut()
                    .expect("container")
                    .remove("livenessProbe");
            }),
        ),
        (
            "port protocol",
            1,
            c(|x| x["ports"][0]["protocol"] = json!("UDP")),
        ),
        (
            "restartPolicy",
            1,
            c(|x| {
                x.as_object_mut()
                    .expect("container")
                    .remove("restartPolicy");
            }),
        ),
    ]);
    out
}

#[test]
fn changing_any_single_field_of_an_injected_container_makes_it_ordinary() {
    let mut failures = Vec::new();
    for (what, index, change) in changes() {
        let part = if index == 0 { "lock-down" } else { "sidecar" };
        // Labelled a mailer: the pod no longer runs the sidecar, or its first
        // init container is no longer the lock-down.
        match verdict(|p| change(&mut p["spec"]["initContainers"][index])) {
            Some(why) if why.starts_with("smtpbind rule 1 (sidecar required):") => {}
            other => failures.push(format!("{part} {what}: {other:?}")),
        }
        // Not labelled: the changed sidecar is an ordinary container that
        // mounts the Secret (rule 2); a changed lock-down still leaves the
        // sidecar without the lock-down first (rule 1).
        let want = if index == 0 {
            "smtpbind rule 1"
        } else {
            "smtpbind rule 2"
        };
        match verdict(|p| {
            if let Some(labels) = p["metadata"]["labels"].as_object_mut() {
                labels.remove("smtpbind.dev/mailer");
                // the label /mutate sets marks a sidecar pod too (rule 1)
                labels.remove("smtpbind.dev/tenant");
            }
            change(&mut p["spec"]["initContainers"][index]);
        }) {
            Some(why)
                if why.starts_with(want)
                    && why.contains("rule 3 recognises it only by its whole spec") => {}
            Some(why) if why.starts_with(want) && index == 0 => {}
            other => failures.push(format!("{part} {what} (no mailer label): {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn the_lockdown_moved_from_the_first_place_is_ordinary() {
    let why = verdict(|p| {
        let init = p["spec"]["initContainers"].as_array_mut().expect("init");
        init.swap(0, 1);
    })
    .expect("refused");
    assert!(
        why.starts_with("smtpbind rule 1 (sidecar required): the pod runs the sidecar but its first init container is not the egress lock-down: init container \"smtpbind\""),
        "{why}"
    );
    // Another init container first: the lock-down behind it is ordinary too,
    // and rule 4 refuses its NET_ADMIN once rule 1 is satisfied otherwise.
    let why = verdict(|p| {
        let init = p["spec"]["initContainers"].as_array_mut().expect("init");
        init.insert(0, json!({"name": "first", "image": "busybox:1.36",
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}));
    })
    .expect("refused");
    assert!(why.starts_with("smtpbind rule 1"), "{why}");
}

#[test]
fn resources_may_differ_and_defaults_may_be_absent() {
    assert_eq!(
        verdict(|p| {
            for i in [0, 1] {
                p["spec"]["initContainers"][i]["resources"] =
                    json!({"limits": {"cpu": "2", "memory": "1Gi"}});
            }
        }),
        None
    );
    // As submitted (before the API server's defaults): the same containers.
    assert_eq!(
        verdict(|p| {
            for i in [0, 1] {
                let c = p["spec"]["initContainers"][i].as_object_mut().expect("c");
                c.remove("terminationMessagePath");
                c.remove("terminationMessagePolicy");
                c.remove("imagePullPolicy");
            }
        }),
        None
    );
}

#[test]
fn every_volume_type_with_a_secret_reference_counts() {
    let volumes = [
        json!({"name": "v", "secret": {"secretName": "beta-smtp"}}),
        json!({"name": "v", "projected": {"sources": [{"secret": {"name": "beta-smtp"}}]}}),
        json!({"name": "v", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "beta-smtp"}}}),
        json!({"name": "v", "flexVolume": {"driver": "d", "secretRef": {"name": "beta-smtp"}}}),
        json!({"name": "v", "cephfs": {"monitors": ["m"], "secretRef": {"name": "beta-smtp"}}}),
        json!({"name": "v", "rbd": {"monitors": ["m"], "image": "i", "secretRef": {"name": "beta-smtp"}}}),
        json!({"name": "v", "iscsi": {"targetPortal": "t", "iqn": "q", "lun": 0, "secretRef": {"name": "beta-smtp"}}}),
        json!({"name": "v", "azureFile": {"secretName": "beta-smtp", "shareName": "s"}}),
        json!({"name": "v", "scaleIO": {"gateway": "g", "system": "s", "secretRef": {"name": "beta-smtp"}}}),
        json!({"name": "v", "storageos": {"volumeName": "v", "secretRef": {"name": "beta-smtp"}}}),
    ];
    for v in volumes {
        // Another tenant's Secret: refused even unmounted.
        let why = verdict(|p| push(p, "volumes", v.clone())).expect("refused");
        assert!(
            why.starts_with("smtpbind rule 2 (credential Secret): volume \"v\" (")
                && why.contains("Secret \"beta-smtp\" of tenant \"beta\""),
            "{v}: {why}"
        );
        // The tenant's own Secret mounted into the mailer: refused.
        let mut own = v.clone();
        let text = serde_json::to_string(&own)
            .expect("json")
            .replace("beta-smtp", "acme-smtp");
        own = serde_json::from_str(&text).expect("json");
        let why = verdict(|p| {
            push(p, "volumes", own.clone());
            p["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "v", "mountPath": "/v"}]);
        })
        .expect("refused");
        assert!(
            why.starts_with(
                "smtpbind rule 2 (credential Secret): container \"mailer\" mounts volume \"v\""
            ),
            "{own}: {why}"
        );
    }
}

#[test]
fn the_volumes_behind_the_injected_mounts_are_part_of_the_spec() {
    let volume = |p: &mut Value, name: &str| -> usize {
        p["spec"]["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .position(|v| v["name"] == name)
            .expect("volume")
    };
    // The lock-down's /run a tenant's ConfigMap: not the lock-down.
    let why = verdict(|p| {
        let i = volume(p, "smtpbind-lockdown-run");
        p["spec"]["volumes"][i] =
            json!({"name": "smtpbind-lockdown-run", "configMap": {"name": "tenant-run"}});
    })
    .expect("refused");
    assert!(
        why.starts_with("smtpbind rule 1 (sidecar required): the pod runs the sidecar but its first init container is not the egress lock-down")
            && why.contains("its volume \"smtpbind-lockdown-run\" is not the one /mutate adds"),
        "{why}"
    );
    // The sidecar's Secret volume with another mode: not the sidecar.
    let why = verdict(|p| {
        let i = volume(p, "smtpbind-credential");
        p["spec"]["volumes"][i]["secret"]["defaultMode"] = json!(511);
    })
    .expect("refused");
    assert!(
        why.starts_with("smtpbind rule 1 (sidecar required): the pod is labelled smtpbind.dev/mailer=true but runs no smtpbind sidecar")
            && why.contains("its volume \"smtpbind-credential\" is not the one /mutate adds"),
        "{why}"
    );
}

#[test]
fn the_tenant_label_is_only_for_pods_running_their_tenants_sidecar() {
    // An ordinary pod labelled as a sidecar pod (the PodMonitor would scrape
    // whatever it serves on a port named `metrics` in a sidecar's name).
    let plain = verdict(|p| {
        let labels = p["metadata"]["labels"].as_object_mut().expect("labels");
        labels.remove("smtpbind.dev/mailer");
        labels.insert("smtpbind.dev/tenant".into(), "acme".into());
        let init = p["spec"]["initContainers"].as_array_mut().expect("init");
        init.retain(|c| c["name"] != "smtpbind" && c["name"] != "smtpbind-egress-lockdown");
        let volumes = p["spec"]["volumes"].as_array_mut().expect("volumes");
        volumes.retain(|v| v["secret"]["secretName"] != "acme-smtp");
    });
    let why = plain.expect("refused");
    assert!(
        why.starts_with("smtpbind rule 1") && why.contains("runs none"),
        "{why}"
    );
    // The injected pod naming another tenant.
    let other = verdict(|p| {
        p["metadata"]["labels"]["smtpbind.dev/tenant"] = "beta".into();
    });
    let why = other.expect("refused");
    assert!(
        why.starts_with("smtpbind rule 1") && why.contains("names another tenant"),
        "{why}"
    );
    // As /mutate leaves it: admitted.
    assert_eq!(verdict(|_| {}), None);
}
