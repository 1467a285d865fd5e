//! Rule 4: every pod in a tenant namespace, and every init, app and
//! ephemeral container of it that is not injected (rule 3), passes the
//! Kubernetes Pod Security Standards **baseline** profile as published for
//! **Kubernetes v1.33** (kubernetes.io/docs/concepts/security/
//! pod-security-standards, "Baseline"), control by control:
//!
//! | control | fields | allowed |
//! |---|---|---|
//! | HostProcess | pod and container `securityContext.windowsOptions.hostProcess` | unset, false |
//! | Host Namespaces | `hostNetwork`, `hostPID`, `hostIPC` | unset, false |
//! | Privileged Containers | container `securityContext.privileged` | unset, false |
//! | Capabilities | container `securityContext.capabilities.add` | unset or AUDIT_WRITE, CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, MKNOD, NET_BIND_SERVICE, SETFCAP, SETGID, SETPCAP, SETUID, SYS_CHROOT |
//! | HostPath Volumes | `volumes[*].hostPath` | unset |
//! | Host Ports | container `ports[*].hostPort` | unset, 0 |
//! | AppArmor | pod and container `appArmorProfile.type`; annotations `container.apparmor.security.beta.kubernetes.io/*` | unset, RuntimeDefault, Localhost; `runtime/default`, `localhost/*` |
//! | SELinux | pod and container `seLinuxOptions.type`; `.user`, `.role` | unset, "", container_t, container_init_t, container_kvm_t, container_engine_t; unset, "" |
//! | /proc Mount Type | container `securityContext.procMount` | unset, Default |
//! | Seccomp | pod and container `seccompProfile.type` | unset, RuntimeDefault, Localhost |
//! | Sysctls | pod `securityContext.sysctls[*].name` | kernel.shm_rmid_forced, net.ipv4.ip_local_port_range, net.ipv4.ip_local_reserved_ports, net.ipv4.ip_unprivileged_port_start, net.ipv4.tcp_syncookies, net.ipv4.ping_group_range, net.ipv4.tcp_keepalive_time, net.ipv4.tcp_fin_timeout, net.ipv4.tcp_keepalive_intvl, net.ipv4.tcp_keepalive_probes, net.ipv4.tcp_rmem, net.ipv4.tcp_wmem |
//!
//! The pod-level controls apply to every pod (the injected containers
//! inherit them too); the container-level ones to every container but the
//! injected two (the lock-down needs `NET_ADMIN`). Capability names are
//! compared exactly, as the Pod Security admission does: `net_admin` or
//! `CAP_NET_ADMIN` are not in the list, so they are refused.
//!
//! smtpbind adds two controls: no `shareProcessNamespace: true` (another
//! container could read the secret through `/proc/<pid>/root`), and no
//! ephemeral container whose `targetContainerName` is the sidecar or the
//! lock-down (by name, as rule 6: it would share their process namespace).

use k8s_openapi::api::core::v1::{PodSecurityContext, SecurityContext};

use super::{Refusal, Subject};
use crate::webhook::pod::View;
use crate::webhook::spec::{LOCKDOWN_NAME, SIDECAR_NAME};

pub const ALLOWED_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

pub const ALLOWED_SYSCTLS: [&str; 12] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

pub const ALLOWED_SELINUX_TYPES: [&str; 4] = [
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

const APPARMOR_ANNOTATION: &str = "container.apparmor.security.beta.kubernetes.io/";

/// Rule 4.
pub fn baseline(s: &Subject<'_>) -> Result<(), Refusal> {
    pod_level(s)?;
    for c in s.ordinary() {
        container_level(s, c)?;
    }
    Ok(())
}

fn refuse(title: &'static str, what: String, fix: impl Into<String>) -> Result<(), Refusal> {
    Err(Refusal::new(4, title, what, fix))
}

fn pod_level(s: &Subject<'_>) -> Result<(), Refusal> {
    let p = s.pod;
    for (field, set) in [
        ("hostNetwork", p.host_network),
        ("hostPID", p.host_pid),
        ("hostIPC", p.host_ipc),
    ] {
        if set == Some(true) {
            return refuse(
                "baseline: host namespaces",
                format!("the pod sets {field}: true, sharing the node's namespace"),
                format!("remove spec.{field}"),
            );
        }
    }
    if p.share_process_namespace == Some(true) {
        return refuse(
            "no shared process namespace",
            "the pod sets shareProcessNamespace: true: its containers could reach the sidecar's files through /proc".into(),
            "remove spec.shareProcessNamespace",
        );
    }
    for v in p.volumes.iter().flatten() {
        if let Some(h) = &v.host_path {
            return refuse(
                "baseline: hostPath volumes",
                format!("volume {:?} is a hostPath volume ({:?})", v.name, h.path),
                "use an emptyDir, a ConfigMap/Secret or a PersistentVolumeClaim instead",
            );
        }
    }
    if let Some(sc) = &p.security_context {
        pod_security_context(sc)?;
    }
    for (key, value) in s.meta.annotations.iter().flatten() {
        if key.starts_with(APPARMOR_ANNOTATION)
            && value != "runtime/default"
            && !value.starts_with("localhost/")
        {
            return refuse(
                "baseline: AppArmor",
                format!("annotation {key}={value:?} overrides the runtime's AppArmor profile"),
                "remove the annotation or set it to runtime/default or localhost/<profile>",
            );
        }
    }
    for c in &s.views {
        if let Some(target) = c
            .target
            .filter(|t| *t == SIDECAR_NAME || *t == LOCKDOWN_NAME)
        {
            return refuse(
                "no ephemeral container into the sidecar",
                format!("{} targets container {target:?} (targetContainerName), joining its process namespace", c.who()),
                "target the application's container instead",
            );
        }
    }
    Ok(())
}

fn pod_security_context(sc: &PodSecurityContext) -> Result<(), Refusal> {
    let at = "the pod's securityContext";
    if sc.windows_options.as_ref().and_then(|w| w.host_process) == Some(true) {
        return refuse(
            "baseline: HostProcess",
            format!("{at} sets windowsOptions.hostProcess: true"),
            "remove spec.securityContext.windowsOptions.hostProcess",
        );
    }
    for sysctl in sc.sysctls.iter().flatten() {
        if !ALLOWED_SYSCTLS.contains(&sysctl.name.as_str()) {
            return refuse(
                "baseline: sysctls",
                format!(
                    "{at} sets sysctl {:?}, not one of the baseline's safe sysctls",
                    sysctl.name
                ),
                "remove it from spec.securityContext.sysctls",
            );
        }
    }
    seccomp(at, sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()))?;
    apparmor(at, sc.app_armor_profile.as_ref().map(|p| p.type_.as_str()))?;
    selinux(at, sc.se_linux_options.as_ref())
}

fn container_level(s: &Subject<'_>, c: &View<'_>) -> Result<(), Refusal> {
    let who = format!("{}{}", c.who(), s.not_injected_because(c));
    for port in c.ports {
        if port.host_port.is_some_and(|p| p != 0) {
            return refuse(
                "baseline: host ports",
                format!(
                    "{who} binds hostPort {:?}",
                    port.host_port.unwrap_or_default()
                ),
                format!("remove hostPort from {}.ports", c.path()),
            );
        }
    }
    let Some(sc) = c.security_context else {
        return Ok(());
    };
    container_security_context(&who, &c.path(), sc)
}

fn container_security_context(who: &str, path: &str, sc: &SecurityContext) -> Result<(), Refusal> {
    if sc.windows_options.as_ref().and_then(|w| w.host_process) == Some(true) {
        return refuse(
            "baseline: HostProcess",
            format!("{who} sets securityContext.windowsOptions.hostProcess: true"),
            format!("remove {path}.securityContext.windowsOptions.hostProcess"),
        );
    }
    if sc.privileged == Some(true) {
        return refuse(
            "baseline: privileged containers",
            format!("{who} is privileged"),
            format!("remove {path}.securityContext.privileged"),
        );
    }
    for cap in sc.capabilities.iter().flat_map(|c| c.add.iter().flatten()) {
        if !ALLOWED_CAPABILITIES.contains(&cap.as_str()) {
            return refuse(
                "baseline: capabilities",
                format!("{who} adds capability {cap:?}, beyond the baseline's list"),
                format!("remove it from {path}.securityContext.capabilities.add"),
            );
        }
    }
    if sc.proc_mount.as_deref().is_some_and(|m| m != "Default") {
        return refuse(
            "baseline: /proc mount type",
            format!(
                "{who} sets securityContext.procMount: {:?}",
                sc.proc_mount.as_deref().unwrap_or_default()
            ),
            format!("remove {path}.securityContext.procMount"),
        );
    }
    seccomp(who, sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()))?;
    apparmor(who, sc.app_armor_profile.as_ref().map(|p| p.type_.as_str()))?;
    selinux(who, sc.se_linux_options.as_ref())
}

fn seccomp(who: &str, profile: Option<&str>) -> Result<(), Refusal> {
    match profile {
        None | Some("RuntimeDefault" | "Localhost") => Ok(()),
        Some(other) => refuse(
            "baseline: seccomp",
            format!("{who} sets seccompProfile.type: {other:?}"),
            "use RuntimeDefault or Localhost, or leave seccompProfile unset",
        ),
    }
}

fn apparmor(who: &str, profile: Option<&str>) -> Result<(), Refusal> {
    match profile {
        None | Some("RuntimeDefault" | "Localhost") => Ok(()),
        Some(other) => refuse(
            "baseline: AppArmor",
            format!("{who} sets appArmorProfile.type: {other:?}"),
            "use RuntimeDefault or Localhost, or leave appArmorProfile unset",
        ),
    }
}

fn selinux(
    who: &str,
    options: Option<&k8s_openapi::api::core::v1::SELinuxOptions>,
) -> Result<(), Refusal> {
    let Some(o) = options else {
        return Ok(());
    };
    if let Some(t) = o.type_.as_deref().filter(|t| !t.is_empty()) {
        if !ALLOWED_SELINUX_TYPES.contains(&t) {
            return refuse(
                "baseline: SELinux",
                format!("{who} sets seLinuxOptions.type: {t:?}"),
                "use container_t, container_init_t, container_kvm_t or container_engine_t, or leave it unset",
            );
        }
    }
    for (field, value) in [("user", &o.user), ("role", &o.role)] {
        if value.as_deref().is_some_and(|v| !v.is_empty()) {
            return refuse(
                "baseline: SELinux",
                format!("{who} sets a custom seLinuxOptions.{field}"),
                format!("remove seLinuxOptions.{field}"),
            );
        }
    }
    Ok(())
}
