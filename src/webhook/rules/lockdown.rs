//! Rule 5: with the lock-down configured, nothing but the sidecar may
//! become smtpbind's UID (the lock-down lets it through) or send raw
//! packets (past the lock-down's rules). Every container that is not
//! injected (init, app and ephemeral):
//!
//! - drops `ALL`, or each of `NET_RAW`, `SETUID` and `SETGID`;
//! - adds none of them back (nor `ALL`): an added capability survives a
//!   dropped one;
//! - sets `allowPrivilegeEscalation: false` (no setuid binary regains them);
//! - does not run as UID 65532, by its own `runAsUser` or the pod's.
//!
//! Capability names are compared exactly as Kubernetes documents them
//! (`NET_RAW`, not `net_raw` or `CAP_NET_RAW`): a spelling the check does
//! not recognise as a drop does not count as one. `/mutate` makes a
//! container that sets none of these conform ([`crate::webhook::mutate`]).
//! An application that must change its UID itself cannot run behind the
//! lock-down.

use super::{Refusal, Subject};

/// smtpbind's UID: the one the lock-down lets through.
pub const SIDECAR_UID: i64 = 65532;
/// The drops that take away what a container needs to pass the lock-down.
pub const REQUIRED_DROPS: [&str; 3] = ["NET_RAW", "SETUID", "SETGID"];

const TITLE: &str = "hardened behind the lock-down";

/// Rule 5.
pub fn nothing_else_becomes_smtpbind(s: &Subject<'_>) -> Result<(), Refusal> {
    let pod_uid = s.pod.security_context.as_ref().and_then(|p| p.run_as_user);
    for c in s.ordinary() {
        let who = format!("{}{}", c.who(), s.not_injected_because(c));
        let path = c.path();
        let sc = c.security_context;
        let caps = sc.and_then(|s| s.capabilities.as_ref());
        let drops: Vec<&str> = caps
            .and_then(|c| c.drop.as_ref())
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        if !drops.contains(&"ALL") {
            if let Some(missing) = REQUIRED_DROPS.iter().find(|d| !drops.contains(d)) {
                return Err(Refusal::new(
                    5,
                    TITLE,
                    format!(
                        "{who} keeps capability {missing} (securityContext.capabilities.drop has neither ALL nor {})",
                        REQUIRED_DROPS.join(", ")
                    ),
                    format!(
                        "add {} (or ALL) to {path}.securityContext.capabilities.drop, or leave securityContext unset and let /mutate add them",
                        REQUIRED_DROPS.join(", ")
                    ),
                ));
            }
        }
        let added = caps.and_then(|c| c.add.as_ref()).into_iter().flatten();
        for cap in added {
            if cap == "ALL" || REQUIRED_DROPS.contains(&cap.as_str()) {
                return Err(Refusal::new(
                    5,
                    TITLE,
                    format!("{who} adds capability {cap} (securityContext.capabilities.add)"),
                    format!("remove {cap} from {path}.securityContext.capabilities.add"),
                ));
            }
        }
        if sc.and_then(|s| s.allow_privilege_escalation) != Some(false) {
            let set = match sc.and_then(|s| s.allow_privilege_escalation) {
                Some(_) => "sets securityContext.allowPrivilegeEscalation: true",
                None => "does not set securityContext.allowPrivilegeEscalation: false",
            };
            return Err(Refusal::new(
                5,
                TITLE,
                format!("{who} {set}"),
                format!("set {path}.securityContext.allowPrivilegeEscalation: false (/mutate sets it when unset)"),
            ));
        }
        let own = sc.and_then(|s| s.run_as_user);
        if own.or(pod_uid) == Some(SIDECAR_UID) {
            let field = if own.is_some() {
                format!("{path}.securityContext.runAsUser")
            } else {
                "spec.securityContext.runAsUser".to_string()
            };
            return Err(Refusal::new(
                5,
                TITLE,
                format!("{who} runs as UID {SIDECAR_UID} ({field}), smtpbind's, which the lock-down lets through"),
                format!("set {field} to another UID"),
            ));
        }
    }
    Ok(())
}
