//! The `smtpbind` command: a thin CLI over the library.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use smtpbind::client_tls::load_pair;
use smtpbind::credential::{fingerprint, Credential};
use smtpbind::{policy, Error, RunOptions};

#[derive(Parser)]
#[command(
    name = "smtpbind",
    version,
    about = "SMTP sidecar that binds every session to the pod's one mounted provider credential"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

fn duration(s: &str) -> Result<Duration, String> {
    policy::parse_duration(s)
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve: accept the local mailer on the policy's listen address and relay upstream.
    Run {
        /// Policy file (YAML, version 1).
        #[arg(long, env = "SMTPBIND_POLICY")]
        policy: PathBuf,
        /// Override the policy's `listen` address.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Override the policy's `admin` address.
        #[arg(long)]
        admin: Option<SocketAddr>,
        /// How long transactions may finish after SIGTERM (default: the policy's `shutdown.drain`, 20s).
        #[arg(long, value_parser = duration)]
        drain: Option<Duration>,
    },
    /// Validate policy files and webhook configurations; exit 1 with file:line:col errors.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also load each policy's mounted credential and verify its pin (and
        /// the client.tls pair, when the policy has one).
        #[arg(long)]
        credentials: bool,
    },
    /// Serve Kubernetes admission for Pods over HTTPS: /mutate injects the
    /// sidecar, /validate enforces the rules (see docs/kubernetes.md).
    Webhook {
        /// Webhook configuration (YAML, version 1).
        #[arg(long, env = "SMTPBIND_WEBHOOK_CONFIG")]
        config: PathBuf,
        #[arg(long, default_value = "0.0.0.0:8443")]
        listen: SocketAddr,
        /// Directory of a kubernetes.io/tls Secret mount: tls.crt, tls.key (reloaded on change).
        #[arg(long, default_value = "/etc/smtpbind/webhook-tls")]
        tls_dir: PathBuf,
        /// After SIGTERM, keep answering this long with /readyz 503, while the
        /// pod leaves the Service's endpoints.
        #[arg(long, value_parser = duration, default_value = "5s")]
        lame_duck: Duration,
    },
    /// Print the pin ("sha256:<64 hex>") of a password file's bytes.
    Fingerprint { file: PathBuf },
    /// One-command local demo: capture upstream + a sidecar for a demo tenant.
    Demo {
        /// Sidecar SMTP address.
        #[arg(long, default_value = "127.0.0.1:2525")]
        listen: SocketAddr,
        /// Sidecar admin address.
        #[arg(long, default_value = "127.0.0.1:9525")]
        admin: SocketAddr,
        /// Where the demo writes its secrets, policy, CA and the upstream's activity logs.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Show the XOAUTH2 path (Microsoft 365 client credentials) against a
        /// built-in token endpoint and the capture upstream.
        #[arg(long)]
        xoauth2: bool,
    },
    /// Write a pod-local CA (ca.crt) and a serving pair (tls.crt, tls.key)
    /// for localhost, 127.0.0.1, ::1 and each --name; no CA key is written.
    TlsInit {
        /// Directory to write into (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// Another name for the certificate, e.g. the provider's host for transparent mode.
        #[arg(long = "name")]
        names: Vec<String>,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Prove, per provider account, that every message the provider recorded
    /// came from a sidecar holding that account's pin: join the provider's
    /// activity export with the sidecars' audit lines (contract §13). Reads
    /// files only. Exit 0 clean, 1 on a foreign or unbound message, 2 on bad input.
    Reconcile {
        /// sendgrid | ses | m365: the format of the --events files.
        #[arg(long)]
        provider: String,
        /// ACCOUNT=FILE: one provider account's export (SendGrid Event Webhook
        /// JSON, SES event records, Microsoft 365 message trace CSV); `-` is stdin, gzip accepted.
        #[arg(long = "events", required = true, num_args = 1.., value_name = "ACCOUNT=FILE")]
        events: Vec<String>,
        /// The sidecars' audit (JSON lines); `-` is stdin, gzip accepted.
        #[arg(long, required = true, num_args = 1.., value_name = "FILE")]
        audit: Vec<String>,
        /// ACCOUNT=sha256:PIN: a credential of that account (repeat for a rotation's two pins).
        #[arg(long = "account", required = true, num_args = 1.., value_name = "ACCOUNT=sha256:PIN")]
        accounts: Vec<String>,
        /// text (for people) or json.
        #[arg(long, default_value = "text")]
        format: String,
    },
    /// Run the capture upstream alone (a recording SMTP server with STARTTLS
    /// and AUTH), for the pod simulation and the kind harness.
    Capture {
        #[arg(long, default_value = "127.0.0.1:2587")]
        listen: SocketAddr,
        /// starttls | implicit | none
        #[arg(long, default_value = "starttls")]
        tls: String,
        /// Name in the generated certificate.
        #[arg(long, default_value = "localhost")]
        hostname: String,
        /// Write the generated CA certificate (PEM) here.
        #[arg(long)]
        ca_out: Option<PathBuf>,
        /// NAME=SECRET_DIR: an account whose `username`/`password` files are in SECRET_DIR.
        #[arg(long = "account", required = true)]
        accounts: Vec<String>,
        /// Append one JSON line per accepted message to DIR/<account>.jsonl.
        #[arg(long)]
        log_dir: Option<PathBuf>,
        /// Offer CHUNKING (BDAT), as Gmail and Microsoft 365 do (default: not
        /// offered, as SendGrid and SES).
        #[arg(long)]
        chunking: bool,
        /// Do not offer PIPELINING (a legacy provider).
        #[arg(long)]
        no_pipelining: bool,
        /// Play a provider for `reconcile`: sendgrid | ses | m365 — its 250
        /// reply's shape, and its activity export per account in --log-dir.
        #[arg(long)]
        export: Option<String>,
    },
}

fn main() -> ExitCode {
    // Usage errors are invalid input: exit 1 (clap's default would be 2).
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // reconcile's bad input is exit 2 (§13): 1 means "found something".
            let bad_input = if std::env::args().nth(1).as_deref() == Some("reconcile") {
                2
            } else {
                1
            };
            return if e.use_stderr() {
                ExitCode::from(bad_input)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let serving = matches!(
        cli.command,
        Cmd::Run { .. } | Cmd::Demo { .. } | Cmd::Capture { .. } | Cmd::Webhook { .. }
    );
    let result = match cli.command {
        Cmd::Check { files, credentials } => return check(&files, credentials),
        Cmd::Reconcile {
            provider,
            events,
            audit,
            accounts,
            format,
        } => {
            return reconcile(&smtpbind::reconcile::Options {
                provider,
                events,
                audit,
                accounts,
                format,
            })
        }
        Cmd::Fingerprint { file } => match fingerprint(&file) {
            Ok(pin) => {
                println!("{pin}");
                Ok(())
            }
            Err(e) => Err(Error::from(e)),
        },
        Cmd::TlsInit { dir, names, force } => smtpbind::tls_init::run(&dir, &names, force)
            .map(|w| {
                println!(
                    "wrote {0}/ca.crt, {0}/tls.crt, {0}/tls.key for {1} (no CA key)",
                    w.dir.display(),
                    w.names.join(", ")
                );
            })
            .map_err(Error::from),
        Cmd::Run {
            policy,
            listen,
            admin,
            drain,
        } => smtpbind::platform_pin::PlatformPins::from_env()
            .map_err(|e| Error::Usage(e.to_string()))
            .and_then(|pins| Ok((pins, runtime()?)))
            .and_then(|(pins, rt)| {
                rt.block_on(smtpbind::run(
                    RunOptions {
                        policy_path: policy,
                        listen,
                        admin,
                        drain,
                        pins: pins.map(std::sync::Arc::new),
                        log_sink: smtpbind::log::Sink::Stdout,
                    },
                    shutdown_signal(&rt),
                ))
            }),
        Cmd::Webhook {
            config,
            listen,
            tls_dir,
            lame_duck,
        } => runtime().and_then(|rt| {
            let opts = smtpbind::webhook::Options {
                config,
                listen,
                tls_dir,
                lame_duck,
            };
            rt.block_on(smtpbind::webhook::run(opts, shutdown_signal(&rt)))
                .map_err(Error::from)
        }),
        Cmd::Demo {
            listen,
            admin,
            dir,
            xoauth2,
        } => runtime().and_then(|rt| {
            rt.block_on(async {
                if xoauth2 {
                    smtpbind::demo::run_xoauth2(listen, admin, dir, shutdown_signal(&rt)).await
                } else {
                    smtpbind::demo::run(listen, admin, dir, shutdown_signal(&rt)).await
                }
            })
        }),
        Cmd::Capture {
            listen,
            tls,
            hostname,
            ca_out,
            accounts,
            log_dir,
            chunking,
            no_pipelining,
            export,
        } => runtime().and_then(|rt| {
            rt.block_on(smtpbind::demo::capture_command(
                smtpbind::demo::CaptureArgs {
                    listen,
                    tls,
                    hostname,
                    ca_out,
                    accounts,
                    log_dir,
                    chunking,
                    no_pipelining,
                    export,
                },
                shutdown_signal(&rt),
            ))
        }),
    };
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if serving {
                smtpbind::log::error("fatal", serde_json::json!({ "error": e.to_string() }));
            }
            eprintln!("smtpbind: {e}");
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
        }
    };
    smtpbind::log::finish();
    code
}

/// The default number of workers is at most this (a sidecar serves one pod).
const DEFAULT_MAX_WORKERS: usize = 2;

/// Worker threads: `SMTPBIND_WORKER_THREADS` (1–64), else the CPUs this
/// process may use (`available_parallelism`: affinity and the cgroup CPU
/// quota, so a pod limited to 500m gets 1) capped at [`DEFAULT_MAX_WORKERS`].
/// One worker is a current-thread runtime: the least CPU per message, no
/// cross-thread wake-ups. Two let a session go on while the other worker is
/// preempted: on the 2-core benchmark machine ~1.15x the reused-session
/// throughput of one worker for ~5-10% more CPU per message (bench/run.sh).
fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    let workers = std::env::var("SMTPBIND_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| (1..=64).contains(n))
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(DEFAULT_MAX_WORKERS)
        });
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    builder
        .enable_all()
        .build()
        .map_err(|e| Error::Runtime(format!("tokio runtime: {e}")))
}

/// SIGTERM or SIGINT. The handlers are installed now, before the command
/// starts serving (and says so), so a signal sent as soon as it is listening
/// is never lost to the default action.
fn shutdown_signal(rt: &tokio::runtime::Runtime) -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let _context = rt.enter();
    let signals = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        match signals {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// `smtpbind reconcile`: the report on stdout; exit 0 clean, 1 on a
/// foreign or unbound message, 2 on bad input (the error on stderr).
fn reconcile(opts: &smtpbind::reconcile::Options) -> ExitCode {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = smtpbind::reconcile::run(opts, &mut out);
    let flushed = std::io::Write::flush(&mut out);
    match (result, flushed) {
        (Ok(o), Ok(())) if o.clean => ExitCode::SUCCESS,
        (Ok(_), Ok(())) => ExitCode::from(1),
        (Ok(_), Err(e)) => {
            eprintln!("smtpbind reconcile: stdout: {e}");
            ExitCode::from(2)
        }
        (Err(e), _) => {
            eprintln!("smtpbind reconcile: {e}");
            ExitCode::from(2)
        }
    }
}

/// `smtpbind check`: every error of every file, `file:line:col: key: message`.
fn check(files: &[PathBuf], credentials: bool) -> ExitCode {
    let mut failed = false;
    for file in files {
        if let Some(result) = smtpbind::webhook::check(file) {
            match result {
                Ok(summary) => println!("{}: ok ({summary})", file.display()),
                Err(errors) => {
                    failed = true;
                    eprintln!("{errors}");
                }
            }
            continue;
        }
        match policy::load(file) {
            Ok(p) => {
                if credentials {
                    let mut ok = true;
                    if let Some(Err(e)) = p.client.tls.as_ref().map(|t| load_pair(&t.cert_dir)) {
                        ok = false;
                        eprintln!("{}: client.tls.cert_dir: {e}", file.display());
                    }
                    // Pin, and for jwt_bearer the key parses (no network).
                    match Credential::load_for(&p.credential, None) {
                        Ok(c) if ok => println!(
                            "{}: ok (tenant {}, credential {})",
                            file.display(),
                            p.tenant,
                            c.pin().short()
                        ),
                        Ok(_) => {}
                        Err(e) => {
                            ok = false;
                            eprintln!("{}: credential.secret_dir: {e}", file.display());
                        }
                    }
                    failed |= !ok;
                } else {
                    println!("{}: ok (tenant {})", file.display(), p.tenant);
                }
            }
            Err(errors) => {
                failed = true;
                eprintln!("{errors}");
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
