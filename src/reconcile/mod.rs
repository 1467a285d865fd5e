//! `smtpbind reconcile` (contract §13): prove, per provider account, that
//! every message the provider recorded was sent by a sidecar holding one
//! of that account's pins — by joining the provider's own activity export
//! (SendGrid Event Webhook payloads, SES event records, Microsoft 365
//! message trace CSV) with the sidecars' audit lines. It reads files only;
//! it calls no provider API.
//!
//! ```text
//! input        a file, `-` (stdin), gzip or not
//! events       the JSON stream shared by SendGrid and SES; ParseError
//! sendgrid     sg_message_id → the `queued as` id
//! ses          mail.messageId (SNS envelopes unwrapped)
//! m365         MessageId column → the Message-ID header
//! audit_index  relayed messages by key: the only thing held in memory
//! join         matched / foreign / unbound / audit-only, counted per message
//! report       text and JSON
//! ```
//!
//! Memory is the audit index (≈ 120–170 bytes per relayed message,
//! bench/reconcile.sh) plus the
//! distinct unbound ids; the events are streamed, one at a time.

use std::io::Write;

pub mod audit_index;
pub mod events;
pub mod input;
pub mod join;
pub mod m365;
pub mod report;
pub mod sendgrid;
pub mod ses;

use audit_index::AuditIndex;
pub use events::{EventStats, ParseError};
use join::{Account, Join};

/// Whose export format the `--events` files are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Sendgrid,
    Ses,
    M365,
}

impl Provider {
    pub fn parse(s: &str) -> Result<Provider, ReconcileError> {
        match s {
            "sendgrid" => Ok(Provider::Sendgrid),
            "ses" => Ok(Provider::Ses),
            "m365" => Ok(Provider::M365),
            other => Err(ReconcileError::Usage(format!(
                "--provider: unknown provider {other:?} (sendgrid, ses or m365)"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Sendgrid => "sendgrid",
            Provider::Ses => "ses",
            Provider::M365 => "m365",
        }
    }

    /// Parses one export, calling `on_id` with each event's key.
    pub fn read_events(
        self,
        r: &mut dyn std::io::BufRead,
        on_id: &mut events::OnId<'_>,
    ) -> Result<EventStats, ParseError> {
        match self {
            Provider::Sendgrid => sendgrid::read(r, on_id),
            Provider::Ses => ses::read(r, on_id),
            Provider::M365 => m365::read(r, on_id),
        }
    }
}

/// Bad input: exit 2.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("{0}")]
    Usage(String),
    #[error("{file}: {error}")]
    Open { file: String, error: std::io::Error },
    #[error("{file}:{at}")]
    Input { file: String, at: ParseError },
}

/// The command's arguments, as given.
#[derive(Debug, Clone)]
pub struct Options {
    pub provider: String,
    /// `ACCOUNT=FILE`, repeatable (several files per account allowed).
    pub events: Vec<String>,
    pub audit: Vec<String>,
    /// `ACCOUNT=sha256:PIN`, repeatable (two pins during a rotation).
    pub accounts: Vec<String>,
    /// `text` or `json`.
    pub format: String,
}

/// The outcome: true when nothing was foreign or unbound (exit 0, else 1).
pub struct Outcome {
    pub clean: bool,
}

fn split_pair<'a>(flag: &str, s: &'a str) -> Result<(&'a str, &'a str), ReconcileError> {
    match s.split_once('=') {
        Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok((a, b)),
        _ => Err(ReconcileError::Usage(format!(
            "{flag}: expected ACCOUNT=VALUE, got {s:?}"
        ))),
    }
}

/// The accounts, with their pins (short form) and exports, checked.
fn accounts(opts: &Options) -> Result<Vec<Account>, ReconcileError> {
    let mut accounts: Vec<Account> = Vec::new();
    for a in &opts.accounts {
        let (name, pin) = split_pair("--account", a)?;
        let pin = crate::policy::Pin::parse(pin)
            .map_err(|e| ReconcileError::Usage(format!("--account {name}: {e}")))?;
        let short = pin.short();
        if let Some(other) = accounts
            .iter()
            .find(|x| x.name != name && x.pins.contains(&short))
        {
            return Err(ReconcileError::Usage(format!(
                "--account {name}: that pin is also account {}'s",
                other.name
            )));
        }
        match accounts.iter_mut().find(|x| x.name == name) {
            Some(acct) => acct.pins.push(short),
            None => accounts.push(Account {
                name: name.to_string(),
                pins: vec![short],
                events: Vec::new(),
            }),
        }
    }
    for e in &opts.events {
        let (name, file) = split_pair("--events", e)?;
        let Some(acct) = accounts.iter_mut().find(|x| x.name == name) else {
            return Err(ReconcileError::Usage(format!(
                "--events {name}={file}: no --account {name}=sha256:PIN says which credentials are that account's"
            )));
        };
        acct.events.push(file.to_string());
    }
    if accounts.is_empty() {
        return Err(ReconcileError::Usage("no --account given".into()));
    }
    if let Some(a) = accounts.iter().find(|a| a.events.is_empty()) {
        return Err(ReconcileError::Usage(format!(
            "account {}: no --events {}=FILE (its provider export)",
            a.name, a.name
        )));
    }
    if accounts.len() > usize::from(u16::MAX - 1) {
        return Err(ReconcileError::Usage("too many accounts".into()));
    }
    let stdin_uses = opts.audit.iter().filter(|f| *f == "-").count()
        + accounts
            .iter()
            .flat_map(|a| &a.events)
            .filter(|f| *f == "-")
            .count();
    if stdin_uses > 1 {
        return Err(ReconcileError::Usage(
            "`-` (stdin) can be given only once".into(),
        ));
    }
    Ok(accounts)
}

/// Reads every audit input into the index.
fn index_audit(provider: Provider, files: &[String]) -> Result<AuditIndex, ReconcileError> {
    let mut index = AuditIndex::new(provider);
    let mut buf = Vec::new();
    for name in files {
        let mut r = input::open(name).map_err(|error| ReconcileError::Open {
            file: name.clone(),
            error,
        })?;
        let f = index.add_file(name);
        let mut line = 0u64;
        loop {
            line += 1;
            let at = |message: String| ReconcileError::Input {
                file: name.clone(),
                at: ParseError {
                    line,
                    column: 0,
                    message,
                },
            };
            match input::next_line(&mut r, &mut buf) {
                Ok(true) => {}
                Ok(false) => break,
                Err(input::LineError::TooLong) => {
                    return Err(at(format!("line longer than {} bytes", input::MAX_LINE)))
                }
                Err(input::LineError::Io(e)) => return Err(at(format!("read error: {e}"))),
            }
            index.add_line(f, line, &buf).map_err(at)?;
        }
    }
    Ok(index)
}

/// Runs the command, writing the report to `out`.
pub fn run(opts: &Options, out: &mut dyn Write) -> Result<Outcome, ReconcileError> {
    let provider = Provider::parse(&opts.provider)?;
    let json = match opts.format.as_str() {
        "text" => false,
        "json" => true,
        other => {
            return Err(ReconcileError::Usage(format!(
                "--format: {other:?} is not text or json"
            )))
        }
    };
    if opts.audit.is_empty() {
        return Err(ReconcileError::Usage("no --audit FILE given".into()));
    }
    let accounts = accounts(opts)?;
    let mut index = index_audit(provider, &opts.audit)?;
    let mut notes = report::Notes {
        provider: provider.as_str(),
        audit_lines: index.lines,
        audit_relayed: index.relayed,
        audit_duplicates: index.duplicates,
        ..Default::default()
    };
    let mut join = Join::new(&mut index, &accounts);
    for (a, acct) in accounts.iter().enumerate() {
        for file in &acct.events {
            let mut r = input::open(file).map_err(|error| ReconcileError::Open {
                file: file.clone(),
                error,
            })?;
            let stats = provider
                .read_events(&mut r, &mut |key, line| {
                    join.event(a, key, || match line {
                        Some(l) => format!("{file}:{l}"),
                        None => file.clone(),
                    })
                })
                .map_err(|at| ReconcileError::Input {
                    file: file.clone(),
                    at,
                })?;
            notes.events += stats.events;
            notes.events_without_id += stats.without_id;
        }
    }
    notes.unbound_overflow = join.unbound_overflow;
    let tallies = join.finish();
    let clean = tallies.iter().all(|t| t.foreign == 0 && t.unbound == 0);
    let written = if json {
        writeln!(out, "{}", report::json(&accounts, &tallies))
    } else {
        write!(out, "{}", report::text(&accounts, &tallies, &notes))
    };
    written.map_err(|error| ReconcileError::Open {
        file: "stdout".into(),
        error,
    })?;
    Ok(Outcome { clean })
}
