//! smtpbind: an SMTP sidecar that binds every session to the pod's one
//! mounted provider credential.
//!
//! The path of a message, top to bottom:
//!
//! ```text
//! server     listener, one permit per session (max_sessions)
//! runtime    what server and sessions share: the policy snapshot, phase, channels
//! session    per-client state machine: greeting, EHLO, AUTH → binding,
//!            MAIL/RCPT relayed, DATA decoded, checked and streamed
//! policy     YAML model, validation with file:line:col, matchers
//! credential the mounted Secret, pin check, rotation
//! identity   §9: what the upstream AUTH is made of — XOAUTH2 tokens
//!            (refresh timer, single flight, token endpoint over rustls,
//!            RS256 assertion) or the derived SES password
//! rate       §10: the per-pod token bucket taken at MAIL
//! upstream   connect, STARTTLS / implicit TLS (rustls), AUTH (PLAIN, LOGIN,
//!            XOAUTH2), pool keyed by pin (and the XOAUTH2 user)
//! smtp       I/O-free protocol pieces: framing, commands, replies, DATA codec,
//!            header From, SASL
//! admin      /healthz /readyz /metrics (hyper)
//! audit, log JSON-lines audit events and logs on stdout
//! telemetry  Prometheus metrics; the info series (credential, policy, ready,
//!            certificate expiry) rendered from the state in force per scrape
//! app        process wiring: watchers, signals, drain
//! demo       tooling, not the product: the one-command local demo and its
//!            stand-ins — demo::capture (the recording upstream of `demo`,
//!            `capture` and the tests) and demo::issuer (the OAuth token
//!            endpoint of `demo --xoauth2` and the tests)
//! watch      inotify + polling of kubelet-mounted files (shared)
//! tls_mount  a serving pair from a kubernetes.io/tls mount, reloaded on swap
//!            (shared by the webhook and client_tls); tls_validity reads
//!            a certificate's notBefore/notAfter
//! client_tls TLS toward the mailer: STARTTLS / implicit TLS, the client stream
//! tls_init   `smtpbind tls-init`: pod-local CA and serving pair
//! webhook    `smtpbind webhook`: Kubernetes admission (inject, validate):
//!            the rules of §8 in webhook/rules, one function per rule
//! platform_pin  rule 7: the upstream (and token URL, CAs) the platform pinned;
//!            a policy that names another is not ready
//! reconcile  `smtpbind reconcile`: provider activity exports joined with the audit (§13)
//! ```
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod audit;
pub mod certs;
pub mod client_tls;
pub mod credential;
pub mod demo;
pub mod identity;
pub mod log;
pub mod platform_pin;
pub mod policy;
pub mod process;
pub mod rate;
pub mod reconcile;
pub mod runtime;
pub mod server;
pub mod session;
pub mod smtp;
pub mod telemetry;
pub mod tls_init;
pub mod tls_mount;
pub mod tls_validity;
pub mod upstream;
pub mod watch;
pub mod webhook;

pub use app::{build, run, App, Bound, RunOptions};

/// Errors at the process boundary; `exit_code` maps them to the contract's
/// exit codes (1 invalid input, 2 runtime failure).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Policy(#[from] policy::PolicyErrors),
    #[error("{0}")]
    Credential(#[from] credential::CredentialError),
    #[error("{0}")]
    Tls(#[from] upstream::tls::TlsConfigError),
    #[error("client.tls: {0}")]
    ClientTls(#[from] tls_mount::TlsError),
    #[error("tls-init: {0}")]
    TlsInit(#[from] tls_init::TlsInitError),
    #[error("{0}")]
    Usage(String),
    #[error("cannot bind {addr}: {error}")]
    Bind { addr: String, error: std::io::Error },
    #[error("{0}")]
    Runtime(String),
    #[error("{0}")]
    Webhook(#[from] webhook::WebhookError),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Policy(_)
            | Error::Credential(_)
            | Error::Tls(_)
            | Error::ClientTls(_)
            | Error::TlsInit(_)
            | Error::Usage(_) => 1,
            Error::Bind { .. } | Error::Runtime(_) => 2,
            Error::Webhook(e) => e.exit_code(),
        }
    }
}
