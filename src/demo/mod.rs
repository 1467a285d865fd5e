//! `smtpbind demo`: the whole story on one machine. It starts the capture
//! upstream (STARTTLS with a generated certificate; two provider accounts,
//! `acme` and `globex`, that both log in as `apikey`), mounts acme's key the
//! way the kubelet does, runs a sidecar for tenant `acme`, and prints how to
//! send through it — with acme's key (relayed, logged under acme) and with
//! globex's key (refused with 535, nothing reaches the upstream).
//!
//! `smtpbind demo --xoauth2` shows contract §9 instead (xoauth2.rs): the
//! same capture upstream offering `AUTH XOAUTH2`, a built-in OAuth token
//! endpoint, and a sidecar that turns the mailer's password login into
//! XOAUTH2 with tokens it fetches and refreshes itself.
//!
//! `smtpbind capture` runs the same capture upstream on its own.

pub mod capture;
pub mod issuer;
mod xoauth2;
pub use xoauth2::run_xoauth2;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::app::RunOptions;
use crate::credential::Credential;
use crate::demo::capture::{Account, CaptureConfig, CaptureServer, CaptureTls};
use crate::policy::Pin;
use crate::{log, Error};

/// Writes a Secret directory laid out as the kubelet does: a timestamped
/// directory, `..data` pointing at it, and `username`/`password` links.
pub fn write_kubelet_secret(dir: &Path, username: &str, password: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let ts = "..2026_01_01_00_00_00.000000001";
    let data = dir.join(ts);
    std::fs::create_dir_all(&data)?;
    std::fs::write(data.join("username"), username)?;
    std::fs::write(data.join("password"), password)?;
    let link = |target: &str, name: &str| -> std::io::Result<()> {
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        std::os::unix::fs::symlink(target, path)
    };
    link(ts, "..data")?;
    link("..data/username", "username")?;
    link("..data/password", "password")
}

/// A demo provider key that differs on every run (never printed).
fn demo_key(account: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(account.as_bytes());
    let a = h.finish();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(a);
    format!("SG.{account}-demo.{a:016x}{:016x}", h.finish())
}

fn io_err(what: &str, e: std::io::Error) -> Error {
    Error::Runtime(format!("demo: {what}: {e}"))
}

/// Runs the demo until `shutdown` resolves.
pub async fn run(
    listen: SocketAddr,
    admin: SocketAddr,
    dir: Option<PathBuf>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let dir = dir.unwrap_or_else(|| std::env::temp_dir().join("smtpbind-demo"));
    let secrets = dir.join("secrets");
    let logs = dir.join("upstream-activity");
    let _ = std::fs::remove_dir_all(&logs);
    let mut accounts = Vec::new();
    for name in ["acme", "globex"] {
        let password = demo_key(name);
        write_kubelet_secret(&secrets.join(name), "apikey", &password)
            .map_err(|e| io_err("secret", e))?;
        accounts.push(Account {
            name: name.to_string(),
            username: "apikey".into(),
            password,
        });
    }
    let mut config = CaptureConfig::new(accounts);
    config.log_dir = Some(logs.clone());
    let upstream = CaptureServer::start(config)
        .await
        .map_err(|e| Error::Runtime(format!("demo: capture upstream: {e}")))?;
    let ca = dir.join("capture-ca.pem");
    std::fs::write(&ca, &upstream.ca_pem).map_err(|e| io_err("CA file", e))?;
    let acme = Credential::read(&secrets.join("acme"))?;
    let policy_path = dir.join("acme-policy.yaml");
    std::fs::write(
        &policy_path,
        demo_policy(upstream.addr, &ca, &secrets.join("acme"), acme.pin()),
    )
    .map_err(|e| io_err("policy", e))?;

    let d = dir.display();
    let swaks_common = format!(
        "swaks --server {listen} --from billing@acme.example --to customer@example.net --auth LOGIN --auth-user apikey"
    );
    let text = format!(
        r#"
smtpbind demo
=============
capture upstream  {up} (STARTTLS, AUTH; accounts acme and globex, both username "apikey")
sidecar           {listen} for tenant "acme" (policy {d}/acme-policy.yaml), admin http://{admin}/readyz

1. Send as acme's mailer, with acme's own key (relayed, logged under account acme):
   {swaks_common} --auth-password "$(cat {d}/secrets/acme/password)"
   or with curl (AUTH PLAIN):
   printf 'From: billing@acme.example\r\nTo: customer@example.net\r\nSubject: hi\r\n\r\nhello\r\n' > /tmp/msg.eml
   curl -sS --url smtp://{listen} --mail-from billing@acme.example --mail-rcpt customer@example.net \
        --user "apikey:$(cat {d}/secrets/acme/password)" --login-options AUTH=PLAIN -T /tmp/msg.eml

2. The incident: acme's pod presented globex's key (same host, port, TLS, username "apikey").
   smtpbind answers 535 5.7.8 and opens no upstream connection:
   {swaks_common} --auth-password "$(cat {d}/secrets/globex/password)"

3. See what the provider recorded, per account:
   cat {d}/upstream-activity/acme.jsonl       # your message, authenticated as acme
   cat {d}/upstream-activity/globex.jsonl     # stays absent: nothing went out as globex
   curl -s http://{admin}/metrics | grep smtpbind_

Press Ctrl-C to stop.
"#,
        up = upstream.addr,
    );
    eprintln!("{text}");
    log::info(
        "demo",
        json!({ "upstream": upstream.addr.to_string(), "dir": dir.display().to_string() }),
    );
    let result = serve_sidecar(policy_path, listen, admin, shutdown).await;
    drop(upstream);
    result
}

/// Runs the demo's sidecar until `shutdown`.
async fn serve_sidecar(
    policy_path: PathBuf,
    listen: SocketAddr,
    admin: SocketAddr,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    crate::app::run(
        RunOptions {
            policy_path,
            listen: Some(listen),
            admin: Some(admin),
            drain: Some(std::time::Duration::from_secs(2)),
            pins: None,
            log_sink: crate::log::Sink::Stdout,
        },
        shutdown,
    )
    .await
}

fn demo_policy(upstream: SocketAddr, ca: &Path, secret_dir: &Path, pin: Pin) -> String {
    format!(
        r#"# Generated by `smtpbind demo`.
version: 1
tenant: acme
listen: 127.0.0.1:2525
admin: 127.0.0.1:9525
upstream:
  address: {upstream}
  tls: starttls
  ca_file: {ca}
  server_name: localhost
credential:
  secret_dir: {secret_dir}
  mechanism: auto
  pins: [ "{pin}" ]
client:
  auth: required
  accept:
    - username: apikey
      password: mounted
senders: [ "*@acme.example" ]
header_from: enforce
"#,
        ca = ca.display(),
        secret_dir = secret_dir.display(),
    )
}

/// Arguments of `smtpbind capture`.
pub struct CaptureArgs {
    pub listen: SocketAddr,
    pub tls: String,
    pub hostname: String,
    pub ca_out: Option<PathBuf>,
    pub accounts: Vec<String>,
    pub log_dir: Option<PathBuf>,
    /// Offer CHUNKING (BDAT).
    pub chunking: bool,
    /// Do not offer PIPELINING.
    pub no_pipelining: bool,
    /// Play a provider for `reconcile`: sendgrid | ses | m365 (its 250
    /// reply and its activity export in --log-dir).
    pub export: Option<String>,
}

/// `smtpbind capture`: the capture upstream alone, until `shutdown`.
pub async fn capture_command(
    args: CaptureArgs,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let tls = match args.tls.as_str() {
        "starttls" => CaptureTls::StartTls,
        "implicit" => CaptureTls::Implicit,
        "none" => CaptureTls::None,
        other => {
            return Err(Error::Usage(format!(
                "--tls: expected starttls, implicit or none, got {other:?}"
            )))
        }
    };
    let mut accounts = Vec::new();
    for spec in &args.accounts {
        let Some((name, dir)) = spec.split_once('=') else {
            return Err(Error::Usage(format!(
                "--account {spec:?}: expected NAME=SECRET_DIR"
            )));
        };
        let cred = Credential::read(Path::new(dir))?;
        accounts.push(Account {
            name: name.to_string(),
            username: cred.username().to_string(),
            password: cred.password().to_string(),
        });
    }
    let mut config = CaptureConfig::new(accounts);
    config.listen = args.listen;
    config.tls = tls;
    config.hostname = args.hostname;
    config.log_dir = args.log_dir;
    config.chunking = args.chunking;
    config.faults.no_pipelining = args.no_pipelining;
    config.export = match args.export.as_deref() {
        None => None,
        Some(s) => Some(crate::demo::capture::ExportShape::parse(s).ok_or_else(|| {
            Error::Usage(format!(
                "--export: expected sendgrid, ses or m365, got {s:?}"
            ))
        })?),
    };
    let server = CaptureServer::start(config)
        .await
        .map_err(|e| Error::Runtime(format!("capture: {e}")))?;
    if let Some(path) = &args.ca_out {
        std::fs::write(path, &server.ca_pem)
            .map_err(|e| Error::Runtime(format!("{}: {e}", path.display())))?;
    }
    log::info(
        "listening",
        json!({ "addr": server.addr.to_string(), "role": "capture" }),
    );
    shutdown.await;
    Ok(())
}
