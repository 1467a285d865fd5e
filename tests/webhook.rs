//! The admission webhook's golden files: every `tests/webhook/golden/*.request.json`
//! is reviewed by the endpoint its name starts with, and the answer must be
//! `*.response.json` (the response's JSON Patch shown decoded). Regenerate
//! after a reviewed change with `UPDATE_GOLDEN=1 cargo test --test webhook`.
//!
//! Every patch is also applied with a real RFC 6902 implementation (the
//! json-patch crate; tests/helm applies them again with Python's jsonpatch
//! and validates the pods with kubernetes-validate --strict), and the
//! patched pod must be admitted by /validate and left unchanged by a second
//! /mutate.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::{json, Value};
use smtpbind::webhook::{Endpoint, Webhook};

#[path = "webhook/props.rs"]
mod props;
#[path = "support/proptest_runner.rs"]
mod proptest_runner;
#[path = "webhook/rules.rs"]
mod rules;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webhook")
}

fn webhook() -> Webhook {
    Webhook::load(&dir().join("config.yaml")).expect("tests/webhook/config.yaml")
}

fn endpoint(name: &str) -> Endpoint {
    if name.starts_with("mutate-") {
        Endpoint::Mutate
    } else {
        assert!(
            name.starts_with("validate-"),
            "{name}: name must start with mutate- or validate-"
        );
        Endpoint::Validate
    }
}

/// The answer as the golden files show it: HTTP status, and the review with
/// its patch decoded (or the 400 reason).
fn answer(webhook: &Webhook, endpoint: Endpoint, body: &[u8]) -> Value {
    match webhook.review(endpoint, body) {
        Err(e) => json!({ "http": 400, "reason": e.0 }),
        Ok(answer) => {
            let mut review: Value = serde_json::from_slice(&answer.body).expect("response JSON");
            if let Some(patch) = review["response"]["patch"].as_str() {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(patch)
                    .expect("base64 patch");
                review["response"]["patch"] = serde_json::from_slice(&bytes).expect("patch JSON");
            }
            json!({ "http": 200, "result": answer.result, "review": review })
        }
    }
}

fn cases() -> Vec<(String, Vec<u8>)> {
    let mut cases: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir().join("golden"))
        .expect("golden dir")
        .filter_map(|e| {
            let path = e.expect("entry").path();
            let name = path
                .file_name()?
                .to_str()?
                .strip_suffix(".request.json")?
                .to_string();
            Some((name, std::fs::read(&path).expect("read request")))
        })
        .collect();
    cases.sort();
    cases
}

#[test]
fn golden_files() {
    let webhook = webhook();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    let cases = cases();
    assert!(cases.len() >= 40, "only {} golden requests", cases.len());
    for (name, body) in &cases {
        let got = answer(&webhook, endpoint(name), body);
        let path = dir().join("golden").join(format!("{name}.response.json"));
        let text = serde_json::to_string_pretty(&got).expect("json") + "\n";
        if update {
            std::fs::write(&path, &text).expect("write golden");
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(want) if want == text => {}
            Ok(want) => failures.push(format!("{name}: got\n{text}\nwant\n{want}")),
            Err(_) => failures.push(format!("{name}: no {}", path.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_answer_echoes_the_uid() {
    let webhook = webhook();
    for (name, body) in cases() {
        let got = answer(&webhook, endpoint(&name), &body);
        if got["http"] == 200 {
            let request: Value = serde_json::from_slice(&body).expect("request");
            assert_eq!(
                got["review"]["response"]["uid"], request["request"]["uid"],
                "{name}"
            );
            assert_eq!(got["review"]["apiVersion"], "admission.k8s.io/v1", "{name}");
            assert_eq!(got["review"]["kind"], "AdmissionReview", "{name}");
        }
    }
}

/// The patch applied with json-patch, for every case that gets one.
fn patched() -> Vec<(String, Value, Value)> {
    let webhook = webhook();
    let mut out = Vec::new();
    for (name, body) in cases() {
        let got = answer(&webhook, endpoint(&name), &body);
        let Some(ops) = got["review"]["response"].get("patch") else {
            continue;
        };
        assert_eq!(
            got["review"]["response"]["patchType"], "JSONPatch",
            "{name}"
        );
        let patch: json_patch::Patch = serde_json::from_value(ops.clone()).expect("RFC 6902 patch");
        let request: Value = serde_json::from_slice(&body).expect("request");
        let mut pod = request["request"]["object"].clone();
        json_patch::patch(&mut pod, &patch)
            .unwrap_or_else(|e| panic!("{name}: patch does not apply: {e}"));
        out.push((name, request, pod));
    }
    assert!(out.len() >= 3, "only {} patched cases", out.len());
    out
}

fn with_object(request: &Value, pod: &Value, operation: &str) -> Vec<u8> {
    let mut review = request.clone();
    review["request"]["object"] = pod.clone();
    review["request"]["operation"] = json!(operation);
    serde_json::to_vec(&review).expect("json")
}

#[test]
fn patched_pods_have_the_injected_shape() {
    for (name, _, pod) in patched() {
        let init = pod["spec"]["initContainers"]
            .as_array()
            .expect("initContainers");
        assert_eq!(
            init[0]["name"], "smtpbind-egress-lockdown",
            "{name}: lock-down first"
        );
        assert_eq!(init[1]["name"], "smtpbind", "{name}: then the sidecar");
        assert_eq!(init[1]["restartPolicy"], "Always", "{name}: native sidecar");
        assert_eq!(init[1]["securityContext"]["runAsUser"], 65532, "{name}");
        assert_eq!(
            pod["metadata"]["annotations"]["smtpbind.dev/status"], "injected",
            "{name}"
        );
        let app = init[2..]
            .iter()
            .chain(pod["spec"]["containers"].as_array().expect("containers"));
        for c in app {
            let env = c["env"].as_array().expect("env");
            for var in ["SMTP_HOST", "SMTP_PORT"] {
                let n = env.iter().filter(|e| e["name"] == var).count();
                assert_eq!(n, 1, "{name}: {} sets {var} once", c["name"]);
            }
            let mounts = c["volumeMounts"].as_array().cloned().unwrap_or_default();
            assert!(
                mounts
                    .iter()
                    .all(|m| !m["name"].as_str().unwrap_or("").starts_with("smtpbind-")),
                "{name}: {} mounts an injected volume",
                c["name"]
            );
        }
    }
}

#[test]
fn patched_pods_pass_validation_and_are_not_patched_again() {
    let webhook = webhook();
    for (name, request, pod) in patched() {
        for op in ["CREATE", "UPDATE"] {
            let got = answer(
                &webhook,
                Endpoint::Validate,
                &with_object(&request, &pod, op),
            );
            assert_eq!(
                got["review"]["response"]["allowed"], true,
                "{name} {op}: {got}"
            );
        }
        let again = answer(
            &webhook,
            Endpoint::Mutate,
            &with_object(&request, &pod, "CREATE"),
        );
        assert_eq!(again["result"], "unchanged", "{name}: {again}");
        assert!(again["review"]["response"].get("patch").is_none(), "{name}");
    }
}

#[test]
fn the_same_pod_without_its_status_annotation_is_not_injected_twice() {
    let webhook = webhook();
    for (name, request, mut pod) in patched() {
        if let Some(a) = pod["metadata"]["annotations"].as_object_mut() {
            a.remove("smtpbind.dev/status");
        }
        let again = answer(
            &webhook,
            Endpoint::Mutate,
            &with_object(&request, &pod, "CREATE"),
        );
        assert_eq!(
            again["result"], "unchanged",
            "{name}: recognised by the sidecar itself"
        );
    }
}
