//! `smtpbind webhook` (contract §8): Kubernetes admission for Pods, so the
//! sidecar is mandatory rather than polite.
//!
//! ```text
//! config    the configuration file (YAML, file:line:col errors): tenants,
//!           their upstream pin (rule 7) and lock-down ports
//! tenants   the config's tenants: upstream, lockdown_ports, sharing checks
//! spec      what is injected: one source of truth with the Helm chart
//! defaults  the API server's container defaults (pure), for rule 3
//! pod       container views of every kind, the pod's tenant
//! rules     rules 1-6 of §8, one function per rule (recognition, sidecar,
//!           secrets, baseline, lockdown, exec)
//! mutate    /mutate: the RFC 6902 patch that injects the sidecar and
//!           hardens the rest; checked against /validate before answering
//! validate  /validate: a pod through the rules; CONNECT exec/attach
//! review    AdmissionReview in, AdmissionReview out (400 for bad bodies)
//! tls       the serving certificate, reloaded on the kubelet's swap
//! server    HTTPS, bounds, probes and metrics
//! ```

pub mod config;
pub mod defaults;
pub mod mutate;
pub mod pod;
pub mod review;
pub mod rules;
pub mod server;
pub mod spec;
pub mod tenants;
pub mod tls;
pub mod validate;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde_json::json;

pub use review::{Endpoint, Webhook};

use crate::log;
use crate::policy::PolicyErrors;

/// Why `smtpbind webhook` cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    Config(#[from] PolicyErrors),
    #[error("the embedded sidecar spec is broken: {0}")]
    Spec(String),
    #[error("--tls-dir: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("cannot bind {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
}

impl WebhookError {
    /// 1 for invalid input (config, certificate), 2 for runtime failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            WebhookError::Config(_) | WebhookError::Tls(_) => 1,
            WebhookError::Spec(_) | WebhookError::Bind { .. } => 2,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    pub listen: SocketAddr,
    pub tls_dir: PathBuf,
    /// After SIGTERM, how long to keep answering (with `/readyz` 503).
    pub lame_duck: std::time::Duration,
}

impl Webhook {
    /// Loads the configuration and builds what it injects.
    pub fn load(path: &std::path::Path) -> Result<Webhook, WebhookError> {
        let config = config::load(path)?;
        let spec = spec::Spec::new(&config.sidecar)?;
        Ok(Webhook { config, spec })
    }
}

/// `smtpbind check` for a file that is a webhook configuration (a top-level
/// `tenants:` or `sidecar:` key): `None` when it is not one (a policy).
pub fn check(path: &std::path::Path) -> Option<Result<String, PolicyErrors>> {
    let text = crate::policy::read(path).ok()?;
    if !config::looks_like_config(&text) {
        return None;
    }
    Some(config::parse(&text, path).map(|c| {
        let names: Vec<&str> = c.tenants.iter().map(|t| t.name.as_str()).collect();
        format!("webhook configuration, tenants {}", names.join(", "))
    }))
}

/// Runs the webhook until `shutdown` resolves.
pub async fn run(opts: Options, shutdown: impl Future<Output = ()>) -> Result<(), WebhookError> {
    let webhook = Webhook::load(&opts.config)?;
    let pair = tls::load_pair(&opts.tls_dir)?;
    let certs = tls::Reloading::new(pair);
    let tls_config = certs.server_config()?;
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|error| WebhookError::Bind {
            addr: opts.listen,
            error,
        })?;
    let bound = listener.local_addr().unwrap_or(opts.listen);
    let shared = Arc::new(server::Shared {
        webhook,
        metrics: server::install_metrics(),
        shutting_down: AtomicBool::new(false),
        certs: Some(certs.clone()),
    });
    let watcher = tokio::spawn(tls::watch(opts.tls_dir.clone(), certs));
    log::info(
        "listening",
        json!({
            "webhook": bound.to_string(),
            "config": opts.config.display().to_string(),
            "tenants": shared.webhook.config.tenants.len(),
        }),
    );
    server::serve(listener, tls_config, shared, shutdown, opts.lame_duck).await;
    watcher.abort();
    log::info("stopped", json!({}));
    Ok(())
}
