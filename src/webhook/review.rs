//! One AdmissionReview in, one out (no I/O: the golden tests call
//! [`Webhook::review`] directly and through the server).
//!
//! A body that is not an `admission.k8s.io/v1` AdmissionReview with a
//! request is a [`BadRequest`] (HTTP 400): its reason never quotes the body,
//! which may hold a pod's literal environment values. Any other kind than a
//! Pod, and operations the endpoint does not handle, are allowed unchanged.

use base64::Engine;
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use kube_core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube_core::response::Status;
use kube_core::DynamicObject;
use serde::Deserialize;
use serde_json::json;

use super::config::Config;
use super::mutate::{self, Mutation};
use super::spec::Spec;
use super::validate;
use crate::log;

/// The two admission endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Mutate,
    Validate,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Mutate => "mutate",
            Endpoint::Validate => "validate",
        }
    }
}

/// Why a body is answered with 400.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

/// A review's answer: the response body and the result label of the metrics.
#[derive(Debug)]
pub struct Answer {
    pub body: Vec<u8>,
    /// patched | unchanged | allowed | refused
    pub result: &'static str,
}

/// The configuration and what it injects, shared by every request.
#[derive(Debug)]
pub struct Webhook {
    pub config: Config,
    pub spec: Spec,
}

const API_VERSION: &str = "admission.k8s.io/v1";

impl Webhook {
    pub fn review(&self, endpoint: Endpoint, body: &[u8]) -> Result<Answer, BadRequest> {
        let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body).map_err(|e| {
            BadRequest(format!(
                "not an AdmissionReview: JSON {:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        if review.types.api_version != API_VERSION || review.types.kind != "AdmissionReview" {
            return Err(BadRequest(format!(
                "not an AdmissionReview of {API_VERSION} (admissionReviewVersions must be [v1])"
            )));
        }
        let request: AdmissionRequest<DynamicObject> = review
            .try_into()
            .map_err(|_| BadRequest("the AdmissionReview has no request".into()))?;
        if request.uid.is_empty() {
            return Err(BadRequest(
                "the AdmissionReview's request has no uid".into(),
            ));
        }
        let response = AdmissionResponse::from(&request);
        let (mut response, result) = self.decide(endpoint, &request, response)?;
        // kube-core serializes `patch` (Vec<u8>) as an array of numbers; the
        // API's field is `[]byte`, which is base64 in JSON: write it that way.
        let patch = response.patch.take();
        let mut review = serde_json::to_value(response.into_review())
            .map_err(|e| BadRequest(format!("cannot encode the response: {e}")))?;
        if let (Some(patch), Some(r)) = (
            patch,
            review.get_mut("response").and_then(|r| r.as_object_mut()),
        ) {
            let encoded = base64::engine::general_purpose::STANDARD.encode(patch);
            r.insert("patch".into(), serde_json::Value::String(encoded));
        }
        let body = serde_json::to_vec(&review)
            .map_err(|e| BadRequest(format!("cannot encode the response: {e}")))?;
        Ok(Answer { body, result })
    }

    fn decide(
        &self,
        endpoint: Endpoint,
        request: &AdmissionRequest<DynamicObject>,
        response: AdmissionResponse,
    ) -> Result<(AdmissionResponse, &'static str), BadRequest> {
        if endpoint == Endpoint::Validate && request.operation == Operation::Connect {
            return Ok(self.connect(request, response));
        }
        let is_pod = request.kind.group.is_empty() && request.kind.kind == "Pod";
        let handled = match endpoint {
            Endpoint::Mutate => request.operation == Operation::Create,
            // `pods/status` cannot change what the rules read; every other
            // subresource (`ephemeralcontainers`) is validated as the new pod.
            Endpoint::Validate => {
                matches!(request.operation, Operation::Create | Operation::Update)
                    && request.sub_resource.as_deref() != Some("status")
            }
        };
        if !is_pod || !handled {
            return Ok((response, "allowed"));
        }
        let pod = pod_of(request)?;
        let namespace = request
            .namespace
            .as_deref()
            .or(pod.metadata.namespace.as_deref())
            .unwrap_or_default();
        let name = pod
            .metadata
            .name
            .as_deref()
            .or(pod.metadata.generate_name.as_deref())
            .unwrap_or_default();
        let fields = |result: &str, reason: &str| {
            json!({
                "endpoint": endpoint.as_str(), "uid": request.uid, "namespace": namespace,
                "pod": name, "operation": format!("{:?}", request.operation),
                "dry_run": request.dry_run, "result": result, "reason": reason,
            })
        };
        let refuse = |response: AdmissionResponse, why: String| {
            log::info("admission", fields("refused", &why));
            let mut response = response.deny(&why);
            response.result = Status::failure(&why, "Forbidden").with_code(403);
            (response, "refused")
        };
        match endpoint {
            Endpoint::Mutate => match mutate::mutate(&self.config, &self.spec, namespace, &pod) {
                Mutation::Unchanged(reason) => {
                    log::info("admission", fields("unchanged", reason));
                    Ok((response, "unchanged"))
                }
                Mutation::Refuse(why) => Ok(refuse(response, why)),
                Mutation::Patch(patch) => {
                    let response = response
                        .with_patch(patch)
                        .map_err(|e| BadRequest(format!("cannot encode the patch: {e}")))?;
                    log::info("admission", fields("patched", "injected"));
                    Ok((response, "patched"))
                }
            },
            Endpoint::Validate => {
                match validate::validate(&self.config, &self.spec, namespace, &pod) {
                    Ok(()) => Ok((response, "allowed")),
                    Err(why) => Ok(refuse(response, why)),
                }
            }
        }
    }
}

impl Webhook {
    /// CONNECT `pods/exec` and `pods/attach` (rule 6); any other CONNECT is
    /// allowed (the webhook is registered for these two).
    fn connect(
        &self,
        request: &AdmissionRequest<DynamicObject>,
        response: AdmissionResponse,
    ) -> (AdmissionResponse, &'static str) {
        let sub = request.sub_resource.as_deref().unwrap_or_default();
        let pods = request.resource.group.is_empty() && request.resource.resource == "pods";
        if !pods || !matches!(sub, "exec" | "attach") {
            return (response, "allowed");
        }
        let namespace = request.namespace.as_deref().unwrap_or_default();
        let container = request
            .object
            .as_ref()
            .and_then(|o| o.data.get("container"))
            .and_then(|c| c.as_str());
        match validate::validate_connect(&self.config, namespace, sub, &request.name, container) {
            Ok(()) => (response, "allowed"),
            Err(why) => {
                log::info(
                    "admission",
                    json!({
                        "endpoint": "validate", "uid": request.uid, "namespace": namespace,
                        "pod": request.name, "operation": "Connect", "subresource": sub,
                        "result": "refused", "reason": why,
                    }),
                );
                let mut response = response.deny(&why);
                response.result = Status::failure(&why, "Forbidden").with_code(403);
                (response, "refused")
            }
        }
    }
}

/// The request's Pod (metadata and spec; the status is never read).
fn pod_of(request: &AdmissionRequest<DynamicObject>) -> Result<Pod, BadRequest> {
    let object = request
        .object
        .as_ref()
        .ok_or_else(|| BadRequest("the Pod request has no object".into()))?;
    let spec = match object.data.get("spec") {
        None => None,
        Some(spec) => Some(
            PodSpec::deserialize(spec)
                .map_err(|_| BadRequest("the Pod's spec is not a valid PodSpec".into()))?,
        ),
    };
    Ok(Pod {
        metadata: object.metadata.clone(),
        spec,
        status: None,
    })
}
