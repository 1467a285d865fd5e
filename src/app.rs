//! Process wiring for `smtpbind run`: load the policy and the credential,
//! bind the listener and the admin endpoint, watch the mounted Secret and
//! the policy file, and drain on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::{Admin, Readiness};
use crate::client_tls::ClientTls;
use crate::credential::{Credential, CredentialState};
use crate::platform_pin::PlatformPins;
use crate::policy::{self, Pin, Policy};
use crate::process::Process;
use crate::runtime::{Channels, Phase, Runtime};
use crate::server;
use crate::{log, telemetry, Error};

/// How often the mounted Secret and the policy file are re-read when no
/// inotify event arrives. inotify watches the *directories* (a watch on a
/// file breaks when the kubelet swaps the `..data` symlink); polling covers
/// file systems without inotify.
const POLL_INTERVAL: Duration = Duration::from_millis(1000);

/// The inotify watch of `smtpbind run`: wakes `wake` when the policy file,
/// the credential files or the kubelet's `..` entries change.
fn inotify(
    dirs: &[&Path],
    policy_file: &Path,
    wake: Arc<tokio::sync::Notify>,
    log: &log::Context,
) -> Option<notify::RecommendedWatcher> {
    let policy_name = policy_file.file_name().map(|n| n.to_os_string());
    // Only changes to the files we read count: not other files that share the directory.
    let relevant = move |path: &Path| match path.file_name() {
        Some(name) => {
            Some(name) == policy_name.as_deref()
                || name == "username"
                || name == "password"
                || crate::watch::is_kubelet_entry(path)
        }
        None => true,
    };
    crate::watch::inotify(dirs, relevant, wake, log)
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub policy_path: PathBuf,
    pub listen: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub drain: Option<Duration>,
    /// Rule 7 (contract §8): where the platform lets the credential go
    /// (`SMTPBIND_UPSTREAM_PIN` and friends); `None`: not pinned.
    pub pins: Option<Arc<PlatformPins>>,
    /// Where the process's lines go: stdout, or (an app served in-process
    /// by the tests) a list of its own.
    pub log_sink: log::Sink,
}

/// Addresses actually bound (port 0 resolved), reported once listening.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub smtp: SocketAddr,
    pub admin: SocketAddr,
}

/// Rule 7: a policy that would send the credential anywhere but where the
/// platform pinned it leaves the pod without a credential — before it is
/// loaded, so not even a token request leaves. Logged once per load.
fn pin_refusal(
    policy: &Policy,
    pins: Option<&PlatformPins>,
    log: &log::Context,
) -> Option<CredentialState> {
    let reason = refusal(policy, pins)?;
    log.error(
        "upstream_pin",
        json!({ "result": "refused", "reason": reason }),
    );
    Some(CredentialState::NotReady(
        crate::audit::Reason::UpstreamNotPinned,
        reason,
    ))
}

/// The one-line reason `policy` breaks the platform's pins, if it does.
fn refusal(policy: &Policy, pins: Option<&PlatformPins>) -> Option<String> {
    let violation = pins?.check(policy).err()?;
    Some(format!("upstream pin: {violation}"))
}

fn load_credential(
    policy: &Policy,
    pins: Option<&PlatformPins>,
    process: &Process,
) -> CredentialState {
    if let Some(refused) = pin_refusal(policy, pins, &process.log) {
        return refused;
    }
    let result = Credential::load_for(&policy.credential, Some(&process.tokens));
    let state = CredentialState::from_load(result);
    match &state {
        CredentialState::Ready(c) => {
            metrics::counter!("smtpbind_credential_reloads_total", "result" => "ok").increment(1);
            process.log.info(
                "credential",
                json!({ "result": "ok", "credential": c.pin().short(), "username": c.username() }),
            );
        }
        CredentialState::NotReady(reason, text) => {
            metrics::counter!("smtpbind_credential_reloads_total", "result" => "error")
                .increment(1);
            process.log.error(
                "credential",
                json!({ "result": "error", "reason": reason, "error": text }),
            );
        }
    }
    state
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).await.map_err(|error| Error::Bind {
        addr: addr.to_string(),
        error,
    })
}

/// Runs until `shutdown` resolves, then drains and returns:
/// [`build`], then [`App::serve`].
pub async fn run(opts: RunOptions, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    build(opts).await?.serve(shutdown).await
}

/// A process built and bound, not serving yet: what [`build`] returns.
/// Its listeners accept (the kernel queues clients) from the moment it
/// exists; sessions start with [`App::serve`].
pub struct App {
    /// The addresses bound (port 0 resolved).
    pub bound: Bound,
    opts: RunOptions,
    log: log::Context,
    policy: Policy,
    policy_text: String,
    cred_fingerprint: Option<(Pin, Pin)>,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    info: Arc<telemetry::Info>,
    drain: Duration,
    runtime_tx: watch::Sender<Arc<Runtime>>,
    runtime_rx: watch::Receiver<Arc<Runtime>>,
    phase_tx: watch::Sender<Phase>,
    phase_rx: watch::Receiver<Phase>,
    client_tls: Option<Arc<ClientTls>>,
    listeners: Vec<server::Listener>,
    admin_listener: TcpListener,
}

/// Parses the policy, loads the credential, publishes the first snapshot
/// and binds the SMTP and admin listeners: every start-up failure (exit
/// codes 1 and 2) happens here, before anything is served.
pub async fn build(opts: RunOptions) -> Result<App, Error> {
    // The text the policy was loaded from is the watcher's baseline, so an
    // edit made right after start is never mistaken for the original.
    let policy_text = policy::read(&opts.policy_path)?;
    let policy = policy::parse(&policy_text, &opts.policy_path)?;
    let metrics = telemetry::install(&policy.tenant);
    let info = Arc::new(telemetry::Info::new(&policy.tenant));
    info.set_policy(policy_text.as_bytes());
    let drain = opts.drain.unwrap_or(policy.shutdown.drain);

    // The process-lifetime state (log context, rate bucket, token
    // sources), built once; the tenant cannot change without a restart.
    let log = log::Context::new(&policy.tenant, opts.log_sink.clone());
    let process = Arc::new(Process::new(log.clone()));
    let cred_state = load_credential(&policy, opts.pins.as_deref(), &process);
    let cred_fingerprint = secret_fingerprint(&policy.credential.secret_dir);
    let refused = refusal(&policy, opts.pins.as_deref());
    let runtime = Arc::new(Runtime::new(policy.clone(), cred_state, refused, process)?);
    tokio::spawn(crate::upstream::warm::reaper(Arc::downgrade(&runtime)));
    let (runtime_tx, runtime_rx) = watch::channel(runtime);
    let (phase_tx, phase_rx) = watch::channel(Phase::Running);

    if let Some(listen) = opts.listen {
        policy::check_listen(listen, policy.listen_insecure_ok)
            .map_err(|e| Error::Usage(format!("--listen: {e}")))?;
    }
    // TLS toward the mailer: the pair must load at start (fail closed).
    let client_tls = match &policy.client.tls {
        Some(t) => Some(Arc::new(ClientTls::new(t.clone())?)),
        None => None,
    };
    let listeners = server::bind(
        opts.listen.unwrap_or(policy.listen),
        policy.client.tls.as_ref().and_then(|t| t.implicit_listen),
        client_tls.is_some(),
        &log,
    )
    .await?;
    let admin_listener = bind(opts.admin.unwrap_or(policy.admin)).await?;
    let bound = Bound {
        smtp: listeners
            .first()
            .ok_or_else(|| Error::Runtime("no SMTP listener".into()))?
            .socket
            .local_addr()
            .map_err(|e| Error::Runtime(e.to_string()))?,
        admin: admin_listener
            .local_addr()
            .map_err(|e| Error::Runtime(e.to_string()))?,
    };

    Ok(App {
        bound,
        opts,
        log,
        policy,
        policy_text,
        cred_fingerprint,
        metrics,
        info,
        drain,
        runtime_tx,
        runtime_rx,
        phase_tx,
        phase_rx,
        client_tls,
        listeners,
        admin_listener,
    })
}

impl App {
    /// Serves until `shutdown` resolves, then drains and returns.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let readiness = Arc::new(Readiness::default());
        let admin = Admin {
            readiness: readiness.clone(),
            credentials: {
                let rx = self.runtime_rx.clone();
                Arc::new(move || rx.borrow().credential.clone())
            },
            metrics: self.metrics,
            info: self.info.clone(),
            client_tls: self.client_tls.clone(),
            log: self.log.clone(),
        };
        let mut admin_stop = self.phase_rx.clone();
        let admin_task = tokio::spawn(admin.serve(self.admin_listener, async move {
            let _ = admin_stop.wait_for(|p| *p == Phase::Closing).await;
        }));

        let watcher = tokio::spawn(watch_files(
            self.opts.policy_path.clone(),
            self.policy_text.into_bytes(),
            self.runtime_tx,
            (
                self.policy.credential.secret_dir.clone(),
                self.cred_fingerprint,
            ),
            self.opts.pins.clone(),
            self.info,
        ));

        let channels_runtime = self.runtime_rx.clone();
        let channels = Channels {
            runtime: self.runtime_rx,
            phase: self.phase_rx,
        };
        let addrs = server::addresses(&self.listeners);
        let tls_watch = self
            .client_tls
            .clone()
            .map(|t| tokio::spawn(t.watch(self.log.clone())));
        let server = tokio::spawn(server::serve(
            self.listeners,
            self.client_tls,
            channels,
            self.drain,
        ));
        readiness.set_listener_bound();
        prewarm(&channels_runtime.borrow());
        self.log.info(
            "listening",
            json!({
                "addr": self.bound.smtp.to_string(),
                "listeners": addrs,
                "admin": self.bound.admin.to_string(),
                "upstream": self.policy.upstream.address,
                "upstream_pin": self.opts.pins.as_ref().map(|p| p.upstream.to_string()),
                "version": env!("CARGO_PKG_VERSION"),
                "workers": tokio::runtime::Handle::current().metrics().num_workers(),
            }),
        );

        shutdown.await;
        readiness.set_shutting_down();
        let _ = self.phase_tx.send(Phase::Draining);
        self.log.info(
            "shutdown",
            json!({ "drain_seconds": self.drain.as_secs_f64() }),
        );
        let closing = async {
            tokio::time::sleep(self.drain).await;
            let _ = self.phase_tx.send(Phase::Closing);
            std::future::pending::<()>().await
        };
        tokio::select! {
            _ = closing => {}
            _ = server => {}
        }
        let _ = self.phase_tx.send(Phase::Closing);
        watcher.abort();
        if let Some(t) = tls_watch {
            t.abort();
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), admin_task).await;
        self.log.info("stopped", json!({}));
        Ok(())
    }
}

/// Watches the mounted Secret and the policy file. A changed credential is
/// pin-checked and published with the policy in force as one new snapshot;
/// a changed policy is validated and published with the credential
/// re-read for it; an invalid one is refused and the last good one stays.
async fn watch_files(
    policy_path: PathBuf,
    policy_loaded: Vec<u8>,
    runtime_tx: watch::Sender<Arc<Runtime>>,
    (mut secret_dir, mut cred_fingerprint): (PathBuf, Option<(Pin, Pin)>),
    pins: Option<Arc<PlatformPins>>,
    info: Arc<telemetry::Info>,
) {
    let log = runtime_tx.borrow().process.log.clone();
    let mut policy_bytes = Some(policy_loaded);
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let wake = Arc::new(tokio::sync::Notify::new());
    let policy_dir = policy_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut _watcher = inotify(
        &[&policy_dir, &secret_dir],
        &policy_path,
        wake.clone(),
        &log,
    );
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = wake.notified() => {
                // Let a burst of events (a kubelet swap is several) settle.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // Policy file.
        let bytes = std::fs::read(&policy_path).ok();
        if bytes.is_some() && bytes != policy_bytes {
            policy_bytes = bytes;
            reload_policy(&policy_path, &runtime_tx, pins.as_deref(), &info);
            let dir = runtime_tx.borrow().policy.credential.secret_dir.clone();
            if dir != secret_dir {
                secret_dir = dir;
                cred_fingerprint = None;
                _watcher = inotify(
                    &[&policy_dir, &secret_dir],
                    &policy_path,
                    wake.clone(),
                    &log,
                );
            }
        }
        // Credential: compare the files' identity, reload on any change.
        let fp = secret_fingerprint(&secret_dir);
        if fp != cred_fingerprint {
            cred_fingerprint = fp;
            let (policy, process) = {
                let rt = runtime_tx.borrow();
                (rt.policy.clone(), rt.process.clone())
            };
            let state = load_credential(&policy, pins.as_deref(), &process);
            let next = runtime_tx.borrow().rotate(state);
            publish(&runtime_tx, next);
        }
    }
}

/// Publishes `next` whole — policy, connector, pool and credential in one
/// `send_replace` — and retires the snapshot it replaces.
fn publish(runtime_tx: &watch::Sender<Arc<Runtime>>, next: Runtime) {
    let next = Arc::new(next);
    tokio::spawn(crate::upstream::warm::reaper(Arc::downgrade(&next)));
    let previous = runtime_tx.send_replace(next.clone());
    previous.retire();
    prewarm(&next);
}

/// One upstream connection opened ahead of the first session, for the
/// credential of `rt` (see `upstream::warm`).
fn prewarm(rt: &Arc<Runtime>) {
    if let CredentialState::Ready(cred) = &rt.credential {
        tokio::spawn(crate::upstream::warm::prewarm(rt.clone(), cred.clone()));
    }
}

/// What identifies the mounted credential's content without keeping it:
/// the pin of the password and the username's length and hash.
fn secret_fingerprint(dir: &Path) -> Option<(Pin, Pin)> {
    let cred = Credential::read(dir).ok()?;
    Some((cred.pin(), Pin::of(cred.username().as_bytes())))
}

fn reload_policy(
    path: &Path,
    runtime_tx: &watch::Sender<Arc<Runtime>>,
    pins: Option<&PlatformPins>,
    info: &telemetry::Info,
) {
    let log = runtime_tx.borrow().process.log.clone();
    // The text parsed is the text hashed for `smtpbind_policy_info`.
    let text = policy::read(path);
    let parsed = text.and_then(|t| policy::parse(&t, path).map(|p| (p, t)));
    let result = parsed.map_err(Error::from).and_then(|(new, text)| {
        let old = &runtime_tx.borrow().policy;
        if new.tenant != old.tenant {
            return Err(Error::Usage(format!(
                "{}: tenant cannot change without a restart ({} → {})",
                path.display(),
                old.tenant,
                new.tenant
            )));
        }
        if new.listen != old.listen || new.admin != old.admin || new.limits.max_sessions != old.limits.max_sessions || new.client.tls != old.client.tls {
            log.warn(
                "policy",
                json!({ "result": "partial", "message": "listen, admin, max_sessions and client.tls take effect at the next restart" }),
            );
        }
        // Re-check the credential against the new pins, and the policy
        // against the platform's (rule 7: a tenant editing its ConfigMap).
        let state = pin_refusal(&new, pins, &log).unwrap_or_else(|| {
            let process = runtime_tx.borrow().process.clone();
            CredentialState::from_load(Credential::load_for(&new.credential, Some(&process.tokens)))
        });
        let refused = refusal(&new, pins);
        let rt = Runtime::succeed(new, state, refused, &runtime_tx.borrow())?;
        Ok((rt, text))
    });
    match result {
        Ok((rt, text)) => {
            info.set_policy(text.as_bytes());
            publish(runtime_tx, rt);
            metrics::counter!("smtpbind_policy_reloads_total", "result" => "ok").increment(1);
            log.info(
                "policy",
                json!({ "result": "ok", "file": path.display().to_string() }),
            );
        }
        Err(e) => {
            metrics::counter!("smtpbind_policy_reloads_total", "result" => "error").increment(1);
            log.error(
                "policy",
                json!({ "result": "error", "file": path.display().to_string(), "error": e.to_string() }),
            );
        }
    }
}
