//! The `tenants` list of the webhook's configuration ([`super::config`]):
//! each tenant's names, namespaces, `upstream` (rule 7) and
//! `lockdown_ports`, and the check that two tenants sharing a namespace do
//! not share a Secret or a ConfigMap.

use serde::Deserialize;

use super::config::{Tenant, Upstream, DEFAULT_LOCKDOWN_PORTS};
use crate::policy::Located;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenant {
    name: Option<String>,
    namespaces: Option<Vec<String>>,
    credential_secret: Option<String>,
    policy_config_map: Option<String>,
    client_tls_secret: Option<String>,
    upstream: Option<RawUpstream>,
    lockdown_ports: Option<Vec<i64>>,
    token_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    address: Option<String>,
    server_name: Option<String>,
}

pub(super) fn tenant(v: &mut Located<'_>, i: usize, raw: RawTenant, lockdown: bool) -> Tenant {
    let at = |k: &str| format!("tenants[{i}].{k}");
    let mut name_of = |key: &str, value: Option<String>, max: usize| -> String {
        let value = value.unwrap_or_default();
        if !is_dns_name(&value, max) {
            v.err(
                key,
                format!(
                    "{} a Kubernetes name (1-{max} characters of a-z, 0-9, `-`{}, \
                     starting and ending with a letter or digit)",
                    if value.is_empty() {
                        "required"
                    } else {
                        "must be"
                    },
                    if max > 63 { ", `.`" } else { "" }
                ),
            );
        }
        value
    };
    let name = name_of(&at("name"), raw.name, 63);
    let credential_secret = name_of(&at("credential_secret"), raw.credential_secret, 253);
    let policy_config_map = name_of(&at("policy_config_map"), raw.policy_config_map, 253);
    let client_tls_secret = raw
        .client_tls_secret
        .map(|s| name_of(&at("client_tls_secret"), Some(s), 253));
    let mut namespaces = Vec::new();
    match raw.namespaces {
        None => v.err(
            &at("namespaces"),
            "required: the namespaces this tenant's pods live in",
        ),
        Some(list) if list.is_empty() => {
            v.err(&at("namespaces"), "must list at least one namespace")
        }
        Some(list) => {
            for (j, ns) in list.into_iter().enumerate() {
                let key = format!("tenants[{i}].namespaces[{j}]");
                if !is_dns_name(&ns, 63) {
                    v.err(
                        &key,
                        "not a namespace name (1-63 characters of a-z, 0-9, `-`)",
                    );
                } else if matches!(
                    ns.as_str(),
                    "kube-system" | "kube-public" | "kube-node-lease"
                ) {
                    v.err(
                        &key,
                        format!("`{ns}` is a system namespace: the webhook never sees its pods"),
                    );
                } else if namespaces.contains(&ns) {
                    v.err(&key, format!("`{ns}` is listed twice"));
                } else {
                    namespaces.push(ns);
                }
            }
        }
    }
    let upstream = upstream(v, i, raw.upstream);
    let lockdown_ports = lockdown_ports(v, i, raw.lockdown_ports, lockdown);
    let token_url = raw.token_url;
    if let Some(url) = &token_url {
        // Rule 7 for XOAUTH2: where the client secret goes. Only a URL
        // without spaces or controls over https: it becomes an env value.
        if !url.starts_with("https://")
            || url.len() > 2048
            || url.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            v.err(
                &at("token_url"),
                "must be the https:// URL of the tenant's token endpoint (rule 7: the only place its client secret may go)",
            );
        }
    }
    Tenant {
        name,
        namespaces,
        credential_secret,
        policy_config_map,
        client_tls_secret,
        upstream,
        lockdown_ports,
        token_url,
    }
}

fn upstream(v: &mut Located<'_>, i: usize, raw: Option<RawUpstream>) -> Upstream {
    let key = format!("tenants[{i}].upstream");
    let Some(raw) = raw else {
        v.err(
            &key,
            "required: `address` (host:port) and optional `server_name`: the only upstream \
             this tenant's credential may be sent to (rule 7)",
        );
        return Upstream {
            address: String::new(),
            server_name: None,
        };
    };
    let address = raw.address.unwrap_or_default();
    if let Err(why) = check_address(&address) {
        v.err(&format!("{key}.address"), why);
    }
    let server_name = raw.server_name;
    if let Some(name) = &server_name {
        if !is_dns_name(&name.to_ascii_lowercase(), 253) {
            v.err(
                &format!("{key}.server_name"),
                "must be a DNS name (the name the upstream's certificate is checked against)",
            );
        }
    }
    Upstream {
        address,
        server_name,
    }
}

/// `host:port`: a DNS name, an IPv4 address or a bracketed IPv6 address, and
/// a port 1-65535; nothing that could smuggle a `/server_name` or spaces.
pub(super) fn check_address(address: &str) -> Result<(), &'static str> {
    const FORMAT: &str = "must be host:port (e.g. `smtp.example.net:587`, `[2001:db8::1]:465`)";
    let (host, port) = address.rsplit_once(':').ok_or(FORMAT)?;
    let port_ok = !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p));
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            host.parse::<std::net::Ipv4Addr>().is_ok()
                || is_dns_name(&host.to_ascii_lowercase(), 253)
        }
    };
    if port_ok && host_ok {
        Ok(())
    } else {
        Err(FORMAT)
    }
}

fn lockdown_ports(
    v: &mut Located<'_>,
    i: usize,
    raw: Option<Vec<i64>>,
    lockdown: bool,
) -> Vec<u16> {
    let key = format!("tenants[{i}].lockdown_ports");
    let Some(list) = raw else {
        return DEFAULT_LOCKDOWN_PORTS.to_vec();
    };
    if !lockdown {
        v.err(
            &key,
            "set but `sidecar.egress_lockdown` is not true: no lock-down would apply them",
        );
    }
    if list.is_empty() {
        v.err(
            &key,
            "must list at least one port (omit it for 25, 465, 587, 2525)",
        );
    }
    let mut ports = Vec::new();
    for (j, p) in list.into_iter().enumerate() {
        match u16::try_from(p) {
            Ok(port) if port > 0 && !ports.contains(&port) => ports.push(port),
            Ok(port) if port > 0 => {
                v.err(&format!("{key}[{j}]"), format!("{port} is listed twice"))
            }
            _ => v.err(&format!("{key}[{j}]"), "must be a port, 1-65535"),
        }
    }
    ports
}

/// Two tenants sharing a namespace and a Secret or ConfigMap: refused.
pub(super) fn shared_references(v: &mut Located<'_>, tenants: &[Tenant]) {
    for (j, b) in tenants.iter().enumerate() {
        for a in &tenants[..j] {
            let Some(ns) = a.namespaces.iter().find(|n| b.namespaces.contains(n)) else {
                continue;
            };
            for (key, x, y, what) in [
                (
                    "credential_secret",
                    &a.credential_secret,
                    &b.credential_secret,
                    "Secret",
                ),
                (
                    "policy_config_map",
                    &a.policy_config_map,
                    &b.policy_config_map,
                    "ConfigMap",
                ),
            ] {
                if !x.is_empty() && x == y {
                    v.err(
                        &format!("tenants[{j}].{key}"),
                        format!(
                            "tenants `{}` and `{}` share namespace `{ns}` and the {what} `{x}`: \
                             each tenant there needs its own",
                            a.name, b.name
                        ),
                    );
                }
            }
        }
    }
}

/// An RFC 1123 label (`max` 63) or subdomain (`max` 253: labels joined by `.`).
pub(super) fn is_dns_name(s: &str, max: usize) -> bool {
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    !s.is_empty()
        && s.len() <= max
        && if max > 63 {
            s.split('.').all(label)
        } else {
            label(s)
        }
}
