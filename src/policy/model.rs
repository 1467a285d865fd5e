//! The validated policy: what the rest of smtpbind reads. Built only by
//! [`super::parse`] / [`super::load`], so every value here has passed validation.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::matchers::{DomainMatcher, SenderMatcher};
use super::pin::Pin;

#[derive(Debug, Clone)]
pub struct Policy {
    pub tenant: String,
    pub listen: SocketAddr,
    /// `listen_insecure_ok`: a non-loopback `listen` address is allowed. The
    /// policy's own `listen` was checked against it; a `--listen` override must be too.
    pub listen_insecure_ok: bool,
    pub admin: SocketAddr,
    pub upstream: UpstreamPolicy,
    pub credential: CredentialPolicy,
    pub client: ClientPolicy,
    pub senders: SenderMatcher,
    pub header_from: HeaderFrom,
    pub recipients: RecipientPolicy,
    pub limits: Limits,
    pub data: DataPolicy,
    pub shutdown: ShutdownPolicy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    StartTls,
    Implicit,
    None,
}

#[derive(Debug, Clone)]
pub struct UpstreamPolicy {
    /// `host:port` as written.
    pub address: String,
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    /// Only ever true together with `TlsMode::None`.
    pub insecure: bool,
    pub ca_file: Option<PathBuf>,
    /// SNI and certificate name; defaults to `host`.
    pub server_name: String,
    /// Name sent in EHLO; defaults to `smtpbind-<tenant>`.
    pub ehlo_name: String,
    pub connect_timeout: Duration,
    /// How long to wait for any single upstream reply (default 120s).
    pub reply_timeout: Duration,
    pub reuse: ReusePolicy,
    /// `upstream.chunking`: BDAT upstream when offered (`Auto`) or never.
    pub chunking: Chunking,
    /// Upstream connections open at once, this process (`None`: no cap).
    pub max_connections: Option<usize>,
}

/// Whether messages go upstream as BDAT (RFC 3030) when the upstream's
/// EHLO offers CHUNKING and PIPELINING.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunking {
    Auto,
    Off,
}

/// Reuse of authenticated upstream connections across client sessions.
#[derive(Debug, Clone, Copy)]
pub struct ReusePolicy {
    /// Idle connections kept per credential; 0 disables reuse (default 16).
    pub max_idle: usize,
    /// An idle connection older than this is closed (default 30s).
    pub idle_timeout: Duration,
    /// Connections opened ahead of demand when a credential becomes ready
    /// (start, rotation, reload); default 1, at most `max_idle`.
    pub prewarm: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Auto,
    Plain,
    Login,
    /// `AUTH XOAUTH2` with an OAuth 2.0 access token (contract §9).
    XOAuth2,
    /// AUTH with the SES SMTP password derived from an IAM secret key (§9).
    Ses,
    /// Do not authenticate upstream. Valid only with `tls: none` and
    /// `insecure: true` (benchmarks and tests); the credential is still
    /// mounted and pin-checked.
    None,
}

#[derive(Debug, Clone)]
pub struct CredentialPolicy {
    pub secret_dir: PathBuf,
    pub mechanism: Mechanism,
    pub pins: Vec<Pin>,
    /// Present exactly when `mechanism` is `XOAuth2`.
    pub oauth2: Option<OAuth2Policy>,
    /// Present exactly when `mechanism` is `Ses`.
    pub ses: Option<SesPolicy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuth2Flow {
    /// RFC 6749 §4.4 (Microsoft 365 app-only): username = client id, password = client secret.
    ClientCredentials,
    /// RFC 7523 (Google service account): password = the JSON key; an RS256 assertion.
    JwtBearer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2Policy {
    pub flow: OAuth2Flow,
    /// `https://host[:port]/path`, validated.
    pub token_url: String,
    pub scope: String,
    /// The mailbox: XOAUTH2 `user=` and jwt_bearer's `sub`.
    pub user: String,
    pub ca_file: Option<PathBuf>,
    /// Refresh this long before the token expires (clamped to half its lifetime).
    pub refresh_before: Duration,
}

#[derive(Debug, Clone)]
pub struct SesPolicy {
    /// AWS region the SMTP password is derived for, e.g. `eu-west-1`.
    pub region: String,
}

/// `limits.rate` (contract §10): a token bucket per pod, counted at MAIL.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatePolicy {
    pub messages_per_second: f64,
    pub burst: u32,
    pub max_wait: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Required,
    None,
}

#[derive(Debug, Clone)]
pub struct ClientPolicy {
    pub auth: ClientAuth,
    /// Non-empty when `auth` is `Required`.
    pub accept: Vec<AcceptRule>,
    /// `client.tls`: TLS toward the mailer; `None`: plain text only.
    pub tls: Option<ClientTlsPolicy>,
}

/// `client.tls` (contract §11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsPolicy {
    /// A `kubernetes.io/tls` mount: `tls.crt`, `tls.key`, reloaded on swap.
    pub cert_dir: PathBuf,
    pub starttls: StartTlsMode,
    /// Second listener, TLS from the first byte (SMTPS).
    pub implicit_listen: Option<SocketAddr>,
}

/// STARTTLS on the plain listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartTlsMode {
    /// Not advertised, answered `502`.
    Off,
    /// Advertised; plain text stays allowed.
    Offer,
    /// Advertised; before TLS only EHLO, HELO, STARTTLS, NOOP, RSET and QUIT are answered.
    Require,
}

#[derive(Debug, Clone)]
pub struct AcceptRule {
    pub username: String,
    pub password: PasswordMatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordMatch {
    /// Must equal the mounted credential's password (constant-time compare).
    Mounted,
    /// sha256 of the presented password must equal this.
    Sha256([u8; 32]),
    /// Any password (the username alone identifies the client).
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderFrom {
    Enforce,
    Ignore,
}

#[derive(Debug, Clone)]
pub struct RecipientPolicy {
    pub max_per_message: usize,
    /// Empty matcher = any domain.
    pub domains: DomainMatcher,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_message_bytes: u64,
    pub max_sessions: usize,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    pub rate: Option<RatePolicy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareLf {
    Reject,
    Normalize,
}

#[derive(Debug, Clone, Copy)]
pub struct DataPolicy {
    pub bare_lf: BareLf,
}

#[derive(Debug, Clone, Copy)]
pub struct ShutdownPolicy {
    /// How long sessions in a transaction may finish after SIGTERM (default 20s).
    pub drain: Duration,
}
