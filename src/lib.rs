//! smtpbind: an SMTP sidecar that binds every session to the pod's one
//! mounted provider credential.
//!
//! **The product** (`smtpbind run`), the path of a message top to bottom.
//! Internal modules are `pub(crate)`; the crate's public surface is what
//! `main.rs`, the tests and `fuzz/` need.
//!
//! ```text
//! app        (crate) build → App { bound } → serve(shutdown): load, bind,
//!            publish snapshots, watch the Secret and the policy, drain
//! process    (crate) what lives as long as the process: the log context
//!            (tenant, sink), the rate bucket, the XOAUTH2 token sources
//!            (no globals)
//! runtime    (crate) one whole snapshot — policy, connector, pool with its
//!            pin, credential (rule 7 applied) — published with one
//!            send_replace; a session swaps it only at AUTH and MAIL
//! server     (crate) listener, one permit per session (max_sessions)
//! session    (crate) per-client state machine: greeting, EHLO, AUTH →
//!            binding, MAIL/RCPT relayed, DATA decoded, checked and streamed
//! policy     YAML model, validation with file:line:col, matchers; its
//!            YAML-with-positions reader (Located) also serves webhook::config
//! credential the mounted Secret, pin check
//! identity   §9: what the upstream AUTH is made of — XOAUTH2 tokens
//!            (refresh timer, single flight, token endpoint over rustls,
//!            RS256 assertion) or the derived SES password
//! rate       (crate) §10: the per-pod token bucket taken at MAIL
//! upstream   connect, STARTTLS / implicit TLS (rustls), AUTH (PLAIN, LOGIN,
//!            XOAUTH2), pool keyed by pin (and the XOAUTH2 user)
//! smtp       I/O-free protocol pieces: framing, commands, replies, DATA
//!            codec, header From, SASL, the pipelined-reply order (pipeline)
//!            (public: the fuzz targets)
//! admin      (crate) /healthz /readyz /metrics (hyper)
//! audit, log JSON-lines audit events and logs on stdout (audit: crate);
//!            log::Context carries the tenant and the sink (stdout, or
//!            lines in memory for an app served in-process by the tests)
//! telemetry  (crate) Prometheus metrics; the info series rendered per scrape
//! client_tls TLS toward the mailer: STARTTLS / implicit TLS, the client stream
//! platform_pin  rule 7: the upstream (and token URL, CAs) the platform
//!            pinned; a policy that names another is not ready
//! watch, tls_mount, tls_validity  (crate) shared plumbing: inotify + polling
//!            of kubelet mounts, a serving pair reloaded on swap, a
//!            certificate's validity
//! ```
//!
//! **Tooling** (other subcommands, not in a message's path):
//!
//! ```text
//! webhook    `smtpbind webhook`: Kubernetes admission (inject, validate):
//!            the rules of §8 in webhook/rules, one function per rule
//! reconcile  `smtpbind reconcile`: provider activity exports joined with
//!            the audit (§13)
//! tls_init   `smtpbind tls-init`: pod-local CA and serving pair; certs:
//!            generated certificates (tls-init, demo, tests)
//! demo       the one-command local demo and its stand-ins —
//!            demo::capture (the recording upstream of `demo`, `capture`
//!            and the tests) and demo::issuer (the OAuth token endpoint)
//! ```
#![forbid(unsafe_code)]

pub(crate) mod admin;
pub(crate) mod app;
pub(crate) mod audit;
pub mod certs;
pub mod client_tls;
pub mod credential;
pub mod demo;
pub mod identity;
pub mod log;
pub mod platform_pin;
pub mod policy;
pub(crate) mod process;
pub(crate) mod rate;
pub mod reconcile;
pub(crate) mod runtime;
pub(crate) mod server;
pub(crate) mod session;
pub mod smtp;
pub(crate) mod telemetry;
pub mod tls_init;
pub(crate) mod tls_mount;
pub(crate) mod tls_validity;
pub mod upstream;
pub(crate) mod watch;
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
