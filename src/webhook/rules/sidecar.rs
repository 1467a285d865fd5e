//! Rule 1: a pod labelled `smtpbind.dev/mailer: "true"` runs the sidecar,
//! and with the lock-down configured a pod holding the sidecar runs the
//! lock-down as its first init container.

use super::{Refusal, Subject};
use crate::webhook::pod::{self, MAILER_LABEL, TENANT_LABEL};

const TITLE: &str = "sidecar required";

/// Rule 1.
pub fn sidecar_required(s: &Subject<'_>) -> Result<(), Refusal> {
    let mailer = pod::label(s.meta, MAILER_LABEL) == Some("true");
    if mailer && s.injected.sidecar.is_none() {
        let lookalike = s
            .views
            .iter()
            .find_map(|c| recognition_hint(s, c))
            .unwrap_or_default();
        return Err(Refusal::new(
            1,
            TITLE,
            format!(
                "the pod is labelled {MAILER_LABEL}=true but runs no smtpbind sidecar{}{lookalike}",
                s.tenant
                    .map(|t| format!(" of tenant {:?}", t.name))
                    .unwrap_or_default()
            ),
            "annotate the pod smtpbind.dev/inject=true (and drop any sidecar of its own) so /mutate injects it",
        ));
    }
    // The label the PodMonitor scrapes by: only a pod running its tenant's
    // injected sidecar may carry it, naming that tenant, or another pod could
    // publish metrics (a pin, a readiness) in a sidecar's name.
    if let Some(label) = pod::label(s.meta, TENANT_LABEL) {
        let own = s.tenant.map(|t| t.name.as_str());
        if s.injected.sidecar.is_none() || own != Some(label) {
            return Err(Refusal::new(
                1,
                TITLE,
                format!(
                    "the pod carries the label {TENANT_LABEL}={label:?}, which marks a pod running the smtpbind sidecar{}, but {}",
                    own.map(|t| format!(" of tenant {t:?}")).unwrap_or_default(),
                    if s.injected.sidecar.is_none() { "runs none" } else { "names another tenant" }
                ),
                format!("remove the label {TENANT_LABEL}: /mutate sets it on the pods it injects"),
            ));
        }
    }
    if s.lockdown_configured() && s.injected.sidecar.is_some() && !s.injected.lockdown {
        let first = s
            .views
            .first()
            .filter(|c| c.kind == pod::Kind::Init)
            .map(|c| format!("{}{}", c.who(), s.not_injected_because(c)))
            .unwrap_or_else(|| "no init container".into());
        return Err(Refusal::new(
            1,
            TITLE,
            format!(
                "the pod runs the sidecar but its first init container is not the egress lock-down: {first}"
            ),
            "let /mutate inject the sidecar and the lock-down (remove both and annotate the pod smtpbind.dev/inject=true)",
        ));
    }
    Ok(())
}

fn recognition_hint(s: &Subject<'_>, c: &pod::View<'_>) -> Option<String> {
    super::recognition::why_not(s, c).map(|why| format!("; {} is {why}", c.who()))
}
