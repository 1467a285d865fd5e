//! The policy file exactly as written: serde structs that mirror the YAML.
//!
//! Every struct denies unknown fields (a typo must not silently weaken a
//! policy) and every key is optional here, so that a missing required key is
//! reported by validation together with all other errors instead of stopping
//! deserialization at the first one. Durations, addresses and pins stay
//! strings; [`super::parse`] validates them and applies the defaults noted
//! on each field.

use serde::Deserialize;

/// The top level of a policy file (`version: 1`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    /// Required; must be `1`.
    pub version: Option<i64>,
    /// Required; 1–63 characters of `[a-z0-9._-]`.
    pub tenant: Option<String>,
    /// SMTP listener for the local mailer. Default `127.0.0.1:2525`.
    pub listen: Option<String>,
    /// Extra key: must be `true` to allow a non-loopback `listen` address
    /// (the client side is plain text). Default `false`.
    pub listen_insecure_ok: Option<bool>,
    /// Admin HTTP listener (`/metrics`, `/healthz`, `/readyz`). Default `0.0.0.0:9525`.
    pub admin: Option<String>,
    /// Required.
    pub upstream: Option<RawUpstream>,
    /// Required.
    pub credential: Option<RawCredential>,
    pub client: Option<RawClient>,
    /// Required, non-empty: the `MAIL FROM` allow-list.
    pub senders: Option<Vec<String>>,
    /// Default `enforce`.
    pub header_from: Option<RawHeaderFrom>,
    pub recipients: Option<RawRecipients>,
    pub limits: Option<RawLimits>,
    pub data: Option<RawData>,
    /// Extra section: graceful shutdown.
    pub shutdown: Option<RawShutdown>,
}

/// `upstream:` — the provider's SMTP server.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    /// Required; `host:port` (host: DNS name, IPv4 or `[IPv6]`).
    pub address: Option<String>,
    /// Default `starttls`.
    pub tls: Option<RawTls>,
    /// Default `false`; must be `true` for `tls: none` and only then.
    pub insecure: Option<bool>,
    /// Optional PEM bundle of trust anchors (must exist and be readable; a
    /// relative path is relative to the working directory); default: the webpki roots.
    pub ca_file: Option<String>,
    /// SNI / certificate name; default: the host of `address`.
    pub server_name: Option<String>,
    /// Name sent in EHLO; default `smtpbind-<tenant>`.
    pub ehlo_name: Option<String>,
    /// Default `10s`.
    pub connect_timeout: Option<String>,
    /// Extra key: how long to wait for any single upstream reply. Default `120s`.
    pub reply_timeout: Option<String>,
    /// Extra section: reuse of authenticated upstream connections.
    pub reuse: Option<RawReuse>,
    /// Extra key: relay messages as BDAT when the upstream offers CHUNKING
    /// and PIPELINING (`auto`, the default) or always as DATA (`off`).
    pub chunking: Option<RawChunking>,
    /// Extra key: cap on upstream connections open at once, 1..=4096. Default: none.
    pub max_connections: Option<i64>,
}

/// `upstream.reuse:` (extra section).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReuse {
    /// Idle authenticated connections kept per credential, 0..=1024;
    /// `0` disables reuse. Default `4`.
    pub max_idle: Option<i64>,
    /// An idle connection older than this is closed. Default `30s`.
    pub idle_timeout: Option<String>,
    /// Connections opened ahead of demand once the credential is ready,
    /// 0..=max_idle. Default `1`.
    pub prewarm: Option<i64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawChunking {
    Auto,
    Off,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawTls {
    Starttls,
    Implicit,
    None,
}

/// `credential:` — the mounted provider credential.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCredential {
    /// Required: directory of a `kubernetes.io/basic-auth` Secret (`username`, `password`).
    pub secret_dir: Option<String>,
    /// Default `auto` (PLAIN if offered, else LOGIN).
    pub mechanism: Option<RawMechanism>,
    /// Required, non-empty, no duplicates: `sha256:<64 hex>` of the password file's bytes.
    pub pins: Option<Vec<String>>,
    /// Required with `mechanism: xoauth2`, refused otherwise.
    pub oauth2: Option<RawOAuth2>,
    /// Required with `mechanism: ses`, refused otherwise.
    pub ses: Option<RawSes>,
}

/// `credential.oauth2:` (contract §9).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOAuth2 {
    /// Required: `client_credentials` | `jwt_bearer`.
    pub flow: Option<RawOAuth2Flow>,
    /// Required: `https://…`.
    pub token_url: Option<String>,
    /// Required, non-empty.
    pub scope: Option<String>,
    /// Required: the mailbox (`user=` of XOAUTH2, `sub` of the assertion).
    pub user: Option<String>,
    /// Optional PEM trust anchors for the token endpoint; default the webpki roots.
    pub ca_file: Option<String>,
    /// Default `300s`.
    pub refresh_before: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawOAuth2Flow {
    ClientCredentials,
    JwtBearer,
}

/// `credential.ses:` (contract §9).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSes {
    /// Required, e.g. `eu-west-1`.
    pub region: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawMechanism {
    Auto,
    Plain,
    Login,
    Xoauth2,
    Ses,
    /// No upstream AUTH: only with `tls: none` + `insecure: true`, for
    /// benchmarks against servers like Postfix's smtp-sink.
    None,
}

/// `client:` — how the local mailer identifies itself.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClient {
    /// Default `required`.
    pub auth: Option<RawClientAuth>,
    /// Required and non-empty with `auth: required`.
    pub accept: Option<Vec<RawAccept>>,
    /// Optional: TLS toward the mailer (contract §11). Default: none.
    pub tls: Option<RawClientTls>,
}

/// `client.tls:` — STARTTLS and implicit TLS toward the local mailer.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClientTls {
    /// Required: a `kubernetes.io/tls` Secret mount (`tls.crt`, `tls.key`).
    pub cert_dir: Option<String>,
    /// Default `offer`.
    pub starttls: Option<RawStartTls>,
    /// Optional second listener, TLS from the first byte (SMTPS).
    pub implicit_listen: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawStartTls {
    Offer,
    Require,
    Off,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawClientAuth {
    Required,
    None,
}

/// One `client.accept` entry.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccept {
    /// Required, non-empty.
    pub username: Option<String>,
    /// Required: `mounted` | `any` | `sha256:<64 hex>`. Never echoed in errors.
    pub password: Option<String>,
}

impl std::fmt::Debug for RawAccept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawAccept")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawHeaderFrom {
    Enforce,
    Ignore,
}

/// `recipients:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRecipients {
    /// 1..=1000. Default `100`.
    pub max_per_message: Option<i64>,
    /// `example.com` / `*.example.com`; default `[]` (any domain).
    pub domains: Option<Vec<String>>,
}

/// `limits:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    /// 1024..=1 GiB. Default `31457280` (30 MiB).
    pub max_message_bytes: Option<i64>,
    /// 1..=100000. Default `128`.
    pub max_sessions: Option<i64>,
    /// Default `300s`.
    pub command_timeout: Option<String>,
    /// Default `600s`.
    pub data_timeout: Option<String>,
    /// Optional sending rate (contract §10).
    pub rate: Option<RawRate>,
}

/// `limits.rate:` (contract §10).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRate {
    /// Required, > 0 and at most 100000 (a decimal allows e.g. 0.5).
    pub messages_per_second: Option<f64>,
    /// Default: `messages_per_second` rounded up (at least 1), at most 100000.
    pub burst: Option<i64>,
    /// Default `5s`.
    pub max_wait: Option<String>,
}

/// `data:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawData {
    /// Default `reject`.
    pub bare_lf: Option<RawBareLf>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawBareLf {
    Reject,
    Normalize,
}

/// `shutdown:` (extra section).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawShutdown {
    /// How long sessions in a transaction may finish after SIGTERM. Default `20s`.
    pub drain: Option<String>,
}
