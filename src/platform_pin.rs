//! Contract §8 rule 7: the key goes only where the platform says.
//!
//! The policy is a ConfigMap the tenant can often edit, so it may narrow
//! what the pod sends but never redirect the credential. The platform (the
//! admission webhook, or the chart) starts the sidecar with
//!
//! - `SMTPBIND_UPSTREAM_PIN=host:port[/server_name]`: the provider's
//!   address and the name its certificate must carry (default: the host);
//! - `SMTPBIND_UPSTREAM_CA=PATH`: the only `upstream.ca_file` the policy may
//!   name — a path the platform mounts, never inside the tenant's ConfigMap
//!   (a tenant CA plus a pod `hostAliases` entry would otherwise redirect
//!   the key as surely as another address). Default
//!   [`DEFAULT_UPSTREAM_CA`]: a key `ca.crt` of the credential Secret, which
//!   the platform writes with the key (so a webhook-injected sidecar can
//!   trust a private CA without another volume);
//! - `SMTPBIND_TOKEN_URL_PIN=URL` and `SMTPBIND_TOKEN_CA=PATH` (optional):
//!   the same for XOAUTH2, where the client secret (or a signed assertion)
//!   goes to `credential.oauth2.token_url`. Under an upstream pin an
//!   `xoauth2` policy without a token URL pin is refused: fail closed.
//!
//! While the policy in force breaks a pin the process is not ready, new
//! sessions get `421 4.3.0` and the credential is not even loaded (no
//! token is fetched, nothing is sent upstream). [`PlatformPins::check`] is
//! the pure decision; `app` applies it at start and at every reload.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::policy::{Mechanism, Policy, TlsMode};

pub const ENV_UPSTREAM_PIN: &str = "SMTPBIND_UPSTREAM_PIN";
pub const ENV_UPSTREAM_CA: &str = "SMTPBIND_UPSTREAM_CA";
pub const ENV_TOKEN_URL_PIN: &str = "SMTPBIND_TOKEN_URL_PIN";
pub const ENV_TOKEN_CA: &str = "SMTPBIND_TOKEN_CA";
/// `SMTPBIND_UPSTREAM_CA` when unset: `ca.crt` in the credential Secret's
/// mount (contract §8: the sidecar mounts it at `/var/run/secrets/smtpbind`).
pub const DEFAULT_UPSTREAM_CA: &str = "/var/run/secrets/smtpbind/ca.crt";

/// Longest value accepted in any of the variables.
const MAX_VALUE: usize = 2048;

/// A platform variable that does not parse: `smtpbind run` exits 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}=`{value}`: {reason}")]
pub struct PinError {
    pub var: &'static str,
    pub value: String,
    pub reason: String,
}

/// `SMTPBIND_UPSTREAM_PIN`: where the credential may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamPin {
    pub host: String,
    pub port: u16,
    /// The name the certificate must carry (default: `host`).
    pub server_name: String,
}

impl UpstreamPin {
    /// `host:port[/server_name]`, the host as in `upstream.address`.
    pub fn parse(value: &str) -> Result<UpstreamPin, PinError> {
        let err = |reason: String| PinError {
            var: ENV_UPSTREAM_PIN,
            value: value.chars().take(200).collect(),
            reason,
        };
        if value.len() > MAX_VALUE {
            return Err(err(format!("longer than {MAX_VALUE} bytes")));
        }
        let (address, server_name) = match value.split_once('/') {
            Some((a, s)) => (a, Some(s)),
            None => (value, None),
        };
        let (host, port) = crate::policy::parse_host_port(address)
            .map_err(|m| err(format!("expected host:port[/server_name]: {m}")))?;
        let server_name = match server_name {
            None => host.clone(),
            Some(s) if rustls_pki_types::ServerName::try_from(s).is_ok() && !s.is_empty() => {
                s.to_string()
            }
            Some(s) => {
                return Err(err(format!(
                    "server_name `{s}` is not a valid DNS name or IP address"
                )))
            }
        };
        Ok(UpstreamPin {
            host,
            port,
            server_name,
        })
    }

    fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for UpstreamPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.address(), self.server_name)
    }
}

/// Every pin the platform set for this sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformPins {
    pub upstream: UpstreamPin,
    /// The one `upstream.ca_file` allowed (`SMTPBIND_UPSTREAM_CA`, else
    /// [`DEFAULT_UPSTREAM_CA`]).
    pub upstream_ca: PathBuf,
    pub token_url: Option<String>,
    pub token_ca: Option<PathBuf>,
}

/// Why the policy in force may not use the credential (one line each).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("upstream.address `{policy}` is not the platform's {pinned} ({ENV_UPSTREAM_PIN}); put the policy back to it")]
    Address { policy: String, pinned: String },
    #[error("upstream.server_name `{policy}` is not the platform's `{pinned}` ({ENV_UPSTREAM_PIN}); remove it or set it back")]
    ServerName { policy: String, pinned: String },
    #[error("upstream.tls: none would send the credential in plain text; the platform pinned the upstream ({ENV_UPSTREAM_PIN}): use starttls or implicit")]
    PlainText,
    #[error("upstream.insecure: true is refused under the platform's pin ({ENV_UPSTREAM_PIN})")]
    Insecure,
    #[error("upstream.ca_file `{policy}` is not the platform's CA ({ENV_UPSTREAM_CA}={pinned}); remove it or name that file")]
    CaFile { policy: String, pinned: String },
    #[error("credential.oauth2.token_url `{policy}` is not the platform's ({ENV_TOKEN_URL_PIN}); set it back")]
    TokenUrl { policy: String },
    #[error("credential.oauth2.token_url is not pinned: with {ENV_UPSTREAM_PIN} the platform must also set {ENV_TOKEN_URL_PIN} for xoauth2")]
    TokenUrlUnpinned,
    #[error("credential.oauth2.ca_file `{policy}` is not the platform's CA ({ENV_TOKEN_CA}{}); remove it", .pinned.as_deref().map(|p| format!("={p}")).unwrap_or_else(|| " is not set".into()))]
    TokenCaFile {
        policy: String,
        pinned: Option<String>,
    },
}

/// DNS names compare case-insensitively (a trailing dot aside); IP
/// addresses by value (`::1` is `0:0::1`).
fn same_host(a: &str, b: &str) -> bool {
    match (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
        (Ok(x), Ok(y)) => x == y,
        (Err(_), Err(_)) => a
            .trim_end_matches('.')
            .eq_ignore_ascii_case(b.trim_end_matches('.')),
        _ => false,
    }
}

impl PlatformPins {
    /// Reads the variables through `var` (the process environment in
    /// production). `Ok(None)`: no upstream pin, nothing is checked.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<PlatformPins>, PinError> {
        let path = |name: &'static str| -> Result<Option<String>, PinError> {
            match var(name) {
                None => Ok(None),
                Some(v) if v.is_empty() || v.len() > MAX_VALUE => Err(PinError {
                    var: name,
                    value: v.chars().take(200).collect(),
                    reason: format!("must be 1-{MAX_VALUE} bytes"),
                }),
                Some(v) => Ok(Some(v)),
            }
        };
        let (ca, token_url, token_ca) = (
            path(ENV_UPSTREAM_CA)?,
            path(ENV_TOKEN_URL_PIN)?,
            path(ENV_TOKEN_CA)?,
        );
        let Some(pin) = var(ENV_UPSTREAM_PIN) else {
            // A CA or token pin alone means the platform believes the key is
            // pinned when it is not: refuse to start rather than run unpinned.
            let set = [
                (ENV_UPSTREAM_CA, &ca),
                (ENV_TOKEN_URL_PIN, &token_url),
                (ENV_TOKEN_CA, &token_ca),
            ];
            if let Some((name, Some(v))) = set.into_iter().find(|(_, v)| v.is_some()) {
                return Err(PinError {
                    var: name,
                    value: v.chars().take(200).collect(),
                    reason: format!("only applies with {ENV_UPSTREAM_PIN}, which is not set"),
                });
            }
            return Ok(None);
        };
        if let Some(url) = &token_url {
            if !url.starts_with("https://") {
                return Err(PinError {
                    var: ENV_TOKEN_URL_PIN,
                    value: url.chars().take(200).collect(),
                    reason: "must be an https:// URL".into(),
                });
            }
        }
        Ok(Some(PlatformPins {
            upstream: UpstreamPin::parse(&pin)?,
            upstream_ca: PathBuf::from(ca.unwrap_or_else(|| DEFAULT_UPSTREAM_CA.to_string())),
            token_url,
            token_ca: token_ca.map(PathBuf::from),
        }))
    }

    pub fn from_env() -> Result<Option<PlatformPins>, PinError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Whether `policy` sends the credential only where the platform
    /// pinned it; the first violation otherwise.
    pub fn check(&self, policy: &Policy) -> Result<(), Violation> {
        let up = &policy.upstream;
        let pin = &self.upstream;
        if up.tls == TlsMode::None {
            return Err(Violation::PlainText);
        }
        if up.insecure {
            return Err(Violation::Insecure);
        }
        if !same_host(&up.host, &pin.host) || up.port != pin.port {
            return Err(Violation::Address {
                policy: up.address.clone(),
                pinned: pin.address(),
            });
        }
        if !same_host(&up.server_name, &pin.server_name) {
            return Err(Violation::ServerName {
                policy: up.server_name.clone(),
                pinned: pin.server_name.clone(),
            });
        }
        if let Some(ca) = &up.ca_file {
            if *ca != self.upstream_ca {
                return Err(Violation::CaFile {
                    policy: ca.display().to_string(),
                    pinned: self.upstream_ca.display().to_string(),
                });
            }
        }
        if policy.credential.mechanism == Mechanism::XOAuth2 {
            if let Some(oauth) = &policy.credential.oauth2 {
                match &self.token_url {
                    None => return Err(Violation::TokenUrlUnpinned),
                    Some(url) if *url != oauth.token_url => {
                        return Err(Violation::TokenUrl {
                            policy: oauth.token_url.clone(),
                        })
                    }
                    Some(_) => {}
                }
                if let Some(ca) = &oauth.ca_file {
                    if self.token_ca.as_ref() != Some(ca) {
                        return Err(Violation::TokenCaFile {
                            policy: ca.display().to_string(),
                            pinned: self.token_ca.as_ref().map(|p| p.display().to_string()),
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
