//! Rule 6: no CONNECT `pods/exec` or `pods/attach` into the sidecar or the
//! lock-down.
//!
//! The webhook cannot see the pod on a CONNECT (the request's object is
//! the `PodExecOptions`/`PodAttachOptions`, and the webhook has no API
//! access to fetch the pod — deliberately: it needs no credentials at
//! all). So it decides by the **names** of the injected containers:
//! `smtpbind` and `smtpbind-egress-lockdown`. `/mutate` refuses a pod that
//! already uses either name, so in an injected pod those names are the
//! injected containers; in a pod that merely reuses a name (possible only
//! without injection) exec into it is refused too, which errs on the safe
//! side. A request without a container name is refused (fail closed): the
//! API server would pick one itself, and it may be the sidecar.

use super::Refusal;
use crate::webhook::spec::{LOCKDOWN_NAME, SIDECAR_NAME};

const TITLE: &str = "no way into the sidecar";

/// Rule 6 for `subresource` (`exec` or `attach`) into `container` of pod `pod`.
pub fn no_exec_into_injected(
    subresource: &str,
    pod: &str,
    container: Option<&str>,
) -> Result<(), Refusal> {
    match container.filter(|c| !c.is_empty()) {
        None => Err(Refusal::new(
            6,
            TITLE,
            format!("pods/{subresource} into pod {pod:?} names no container"),
            "name the container (kubectl -c NAME); the sidecar and the lock-down cannot be entered",
        )),
        Some(c) if c == SIDECAR_NAME || c == LOCKDOWN_NAME => Err(Refusal::new(
            6,
            TITLE,
            format!(
                "pods/{subresource} into container {c:?} of pod {pod:?}: the sidecar and the \
                 lock-down, which smtpbind injects, cannot be entered (by name: the webhook cannot see the pod)"
            ),
            "exec into the application's container instead; read the sidecar's state from its /metrics and logs",
        )),
        Some(_) => Ok(()),
    }
}
