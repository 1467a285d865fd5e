//! The policy file: parsing, validation and the validated [`Policy`].
//!
//! A policy is YAML with `version: 1` (product contract §3). [`parse`] and
//! [`load`] are the only ways to build a [`Policy`]; they either return a
//! fully validated policy with every default applied, or *all* the problems
//! found, each as `FILE:LINE:COL: KEY: MESSAGE` (a YAML syntax or type error
//! stops deserialization, so that one comes alone).
//!
//! Unknown keys are errors everywhere. Besides the keys of the contract, the
//! file may set:
//!
//! * `listen_insecure_ok: true` — allow a non-loopback `listen` address;
//! * `upstream.reply_timeout` — wait for any single upstream reply (default `120s`);
//! * `upstream.reuse.max_idle` (default `16`, `0` = no reuse),
//!   `upstream.reuse.idle_timeout` (default `30s`) and
//!   `upstream.reuse.prewarm` (connections opened ahead of demand, default `1`);
//! * `upstream.max_connections` — cap on upstream connections open at once
//!   (`1..=4096`; default: no cap);
//! * `shutdown.drain` — how long transactions may finish after SIGTERM (default `20s`).
//!
//! The keys of §9 (`credential.oauth2`, `credential.ses`) and §10
//! (`limits.rate`) are validated in `identity.rs`.
//!
//! Durations are an integer followed by `ms`, `s` or `m` (`500ms`, `10s`,
//! `5m`), greater than zero and at most 24 hours. Error messages never contain
//! a password (an `accept[].password` value is never echoed) nor the content
//! of any file other than the policy's own keys.

mod client_tls;
mod identity;
mod locate;
mod matchers;
mod model;
mod pin;
mod raw;

pub use matchers::{DomainMatcher, SenderMatcher};
pub use model::*;
pub use pin::Pin;

use std::fmt;
use std::io::Read;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::policy::locate::{Locator, Pos};
use crate::policy::raw::{
    RawBareLf, RawClientAuth, RawHeaderFrom, RawMechanism, RawPolicy, RawTls,
};

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {key}: {message}", file = .file.display())]
pub struct PolicyError {
    pub file: PathBuf,
    /// 1-based; 0 when the file could not be read at all.
    pub line: usize,
    /// 1-based; 0 when the file could not be read at all.
    pub col: usize,
    /// Dotted key path, e.g. `upstream.tls` or `client.accept[0].password`.
    pub key: String,
    pub message: String,
}

/// Every problem found in a policy file (never empty when returned as an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    /// One error per line, in file order where known.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

/// Largest policy file [`load`] reads.
const MAX_POLICY_BYTES: u64 = 1024 * 1024;

const DEFAULT_LISTEN: &str = "127.0.0.1:2525";
const DEFAULT_ADMIN: &str = "0.0.0.0:9525";
const ONE_GIB: i64 = 1024 * 1024 * 1024;
const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Reads and validates the policy at `path`.
///
/// A read failure is one error at line 0, column 0 naming only the kind of
/// I/O error (never any of the file's bytes).
pub fn load(path: &Path) -> Result<Policy, PolicyErrors> {
    parse(&read(path)?, path)
}

/// Reads a policy file's text (bounded, UTF-8) without parsing it.
pub fn read(path: &Path) -> Result<String, PolicyErrors> {
    let fail = |message: String| {
        PolicyErrors(vec![PolicyError {
            file: path.to_path_buf(),
            line: 0,
            col: 0,
            key: "(file)".to_string(),
            message,
        }])
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_POLICY_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| fail(format!("cannot read policy file: {}", e.kind())))?;
    if bytes.len() as u64 > MAX_POLICY_BYTES {
        return Err(fail(format!(
            "policy file is larger than {MAX_POLICY_BYTES} bytes"
        )));
    }
    let text =
        String::from_utf8(bytes).map_err(|_| fail("policy file is not valid UTF-8".to_string()))?;
    // Editors on some systems write a byte-order mark; YAML allows it.
    Ok(text
        .strip_prefix('\u{feff}')
        .map(str::to_string)
        .unwrap_or(text))
}

/// Parses and validates policy `text`; `file` is only used to name it in errors.
pub fn parse(text: &str, file: &Path) -> Result<Policy, PolicyErrors> {
    let raw: RawPolicy = match serde_yaml::from_str::<Option<RawPolicy>>(text) {
        Ok(raw) => raw.unwrap_or_default(),
        Err(e) => return Err(PolicyErrors(vec![yaml_error(&e, text, file)])),
    };
    let mut v = Validator {
        file,
        locator: Locator::new(text),
        errors: Vec::new(),
    };
    let policy = v.policy(raw);
    if v.errors.is_empty() {
        Ok(policy)
    } else {
        v.errors.sort_by_key(|e| (e.line, e.col));
        Err(PolicyErrors(v.errors))
    }
}

/// The located errors of a YAML file other than a policy (the webhook's
/// configuration): the same `FILE:LINE:COL: KEY: MESSAGE` as a policy's.
pub(crate) struct Located<'a> {
    file: &'a Path,
    locator: Locator,
    errors: Vec<PolicyError>,
}

impl<'a> Located<'a> {
    /// Deserializes `text` as `T` (a syntax, type or unknown-key error comes
    /// alone, as for policies) and returns it with a collector of semantic errors.
    pub(crate) fn parse<T: serde::de::DeserializeOwned + Default>(
        text: &str,
        file: &'a Path,
    ) -> Result<(T, Located<'a>), PolicyErrors> {
        let raw = match serde_yaml::from_str::<Option<T>>(text) {
            Ok(raw) => raw.unwrap_or_default(),
            Err(e) => return Err(PolicyErrors(vec![yaml_error(&e, text, file)])),
        };
        let located = Located {
            file,
            locator: Locator::new(text),
            errors: Vec::new(),
        };
        Ok((raw, located))
    }

    /// Records a problem with the key at dotted path `key`.
    pub(crate) fn err(&mut self, key: &str, message: impl Into<String>) {
        self.errors
            .push(error_at(self.file, &self.locator, key, &message.into()));
    }

    /// `value` when no problem was recorded, else every problem in file order.
    pub(crate) fn finish<T>(mut self, value: T) -> Result<T, PolicyErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            self.errors.sort_by_key(|e| (e.line, e.col));
            Err(PolicyErrors(self.errors))
        }
    }
}

fn error_at(file: &Path, locator: &Locator, key: &str, message: &str) -> PolicyError {
    let pos = locator.locate_key(key);
    PolicyError {
        file: file.to_path_buf(),
        line: pos.line,
        col: pos.col,
        key: one_line(key),
        message: one_line(message),
    }
}

/// Parses a duration: an integer followed by `ms`, `s` or `m` (`500ms`,
/// `10s`, `5m`), greater than zero and at most 24 hours.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const FORMAT: &str =
        "expected an integer followed by `ms`, `s` or `m` (e.g. `500ms`, `10s`, `5m`)";
    let digits = s.chars().take_while(|c| c.is_ascii_digit()).count();
    let (number, unit) = s.split_at(digits);
    if number.is_empty() {
        return Err(FORMAT.to_string());
    }
    let per_unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "" => return Err(format!("missing unit; {FORMAT}")),
        _ => return Err(format!("unknown unit; {FORMAT}")),
    };
    let too_long = || "must be at most 24h".to_string();
    let n: u64 = number.parse().map_err(|_| too_long())?;
    let ms = n.checked_mul(per_unit_ms).ok_or_else(too_long)?;
    let d = Duration::from_millis(ms);
    if d.is_zero() {
        return Err("must be greater than 0".to_string());
    }
    if d > MAX_DURATION {
        return Err(too_long());
    }
    Ok(d)
}

/// Checks the rule for the SMTP listener (also for a `--listen` override):
/// a non-loopback address requires `listen_insecure_ok: true`.
pub fn check_listen(listen: SocketAddr, listen_insecure_ok: bool) -> Result<(), String> {
    if listen.ip().is_loopback() || listen_insecure_ok {
        Ok(())
    } else {
        Err(format!(
            "{listen} is not a loopback address; clients talk plain text to it, \
             so it requires `listen_insecure_ok: true`"
        ))
    }
}

/// The error for a policy that serde_yaml could not deserialize: its
/// location, the key it names (for an unknown key, the unknown key's full
/// path) and its message without any quoted string value.
fn yaml_error(err: &serde_yaml::Error, text: &str, file: &Path) -> PolicyError {
    let locator = Locator::new(text);
    let at = err.location().map(|l| Pos {
        line: l.line(),
        col: l.column(),
    });
    let full = strip_locations(&err.to_string());
    let (path, msg) = split_serde_path(&full);
    let join = |field: &str| match path {
        Some(p) => format!("{p}.{field}"),
        None => field.to_string(),
    };
    let backticked = |prefix: &str| {
        msg.strip_prefix(prefix)
            .and_then(|rest| rest.split_once('`'))
            // An empty key (`"": 1`, `{!}`) is shown as `""`.
            .map(|(field, _)| match field {
                "" => "\"\"".to_string(),
                f => f.to_string(),
            })
    };
    let (key, pos) = if let Some(field) = backticked("unknown field `") {
        let key = join(&field);
        let pos = at.unwrap_or_else(|| locator.locate_key(&key));
        (key, pos)
    } else if let Some(field) = backticked("duplicate field `") {
        let key = join(&field);
        let pos = locator.locate_duplicate(&key);
        (key, pos)
    } else if let Some(field) = backticked("missing field `") {
        let key = join(&field);
        let pos = at.unwrap_or_else(|| locator.locate_key(&key));
        (key, pos)
    } else if let Some(p) = path {
        let pos = at.unwrap_or_else(|| locator.locate_key(p));
        (p.to_string(), pos)
    } else {
        let pos = at.unwrap_or(Pos { line: 1, col: 1 });
        let key = at
            .and_then(|a| locator.key_at(a))
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| "(document)".to_string());
        (key, pos)
    };
    PolicyError {
        file: file.to_path_buf(),
        line: pos.line,
        col: pos.col,
        key: one_line(&key),
        message: one_line(&redact_strings(msg)),
    }
}

/// Keeps an error on its one line: a key or value from the file may hold
/// any character (a quoted `"\n"`, an escape sequence), so control
/// characters are shown escaped (`\n`, `\u{1b}`).
fn one_line(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Removes every ` at line N column M` from a serde_yaml message.
fn strip_locations(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find(" at line ") {
        out.push_str(&rest[..i]);
        let after = &rest[i + " at line ".len()..];
        let line_digits = after.chars().take_while(|c| c.is_ascii_digit()).count();
        let tail = &after[line_digits..];
        match tail.strip_prefix(" column ") {
            Some(col) if line_digits > 0 => {
                let col_digits = col.chars().take_while(|c| c.is_ascii_digit()).count();
                rest = &col[col_digits..];
            }
            _ => {
                out.push_str(" at line ");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Splits serde_yaml's `path: message` into its path (a dotted key path
/// without spaces) and message.
fn split_serde_path(msg: &str) -> (Option<&str>, &str) {
    if let Some((p, m)) = msg.split_once(": ") {
        let path_like = !p.is_empty()
            && p.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '[' | ']' | '?')
            });
        if path_like {
            return (Some(p), m);
        }
    }
    (None, msg)
}

/// Replaces `string "..."` in a serde message by `string`: the value could
/// be anything, including a password file mistaken for a policy.
fn redact_strings(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find("string \"") {
        out.push_str(&rest[..i + "string".len()]);
        let quoted = &rest[i + "string \"".len()..];
        let mut end = quoted.len();
        let mut escaped = false;
        for (j, c) in quoted.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                end = j + 1;
                break;
            }
        }
        rest = &quoted[end..];
    }
    out.push_str(rest);
    out
}

/// `host:port` with a port in 1..=65535; the host is a DNS name, an IPv4
/// address or a bracketed IPv6 address (returned without brackets).
fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or("missing `]` after an IPv6 address; expected `[addr]:port`")?;
        let port = after
            .strip_prefix(':')
            .ok_or("expected `:port` after `]`")?;
        if h.parse::<Ipv6Addr>().is_err() {
            return Err("`[...]` must contain an IPv6 address".to_string());
        }
        (h, port)
    } else {
        let (h, port) = s.rsplit_once(':').ok_or("expected `host:port`")?;
        if h.contains(':') {
            return Err("an IPv6 address must be written in brackets: `[addr]:port`".to_string());
        }
        if h.is_empty() {
            return Err("empty host; expected `host:port`".to_string());
        }
        if rustls_pki_types::ServerName::try_from(h).is_err() {
            return Err(format!("`{h}` is not a valid DNS name or IP address"));
        }
        (h, port)
    };
    let port_ok = !port.is_empty() && port.chars().all(|c| c.is_ascii_digit());
    match port.parse::<u16>() {
        Ok(p) if port_ok && p != 0 => Ok((host.to_string(), p)),
        _ => Err("port must be a number from 1 to 65535".to_string()),
    }
}

struct Validator<'a> {
    file: &'a Path,
    locator: Locator,
    errors: Vec<PolicyError>,
}

impl Validator<'_> {
    fn err(&mut self, key: &str, message: impl Into<String>) {
        self.errors
            .push(error_at(self.file, &self.locator, key, &message.into()));
    }

    fn duration(&mut self, key: &str, value: Option<String>, default: Duration) -> Duration {
        let Some(s) = value else { return default };
        match parse_duration(&s) {
            Ok(d) => d,
            Err(m) => {
                self.err(key, m);
                default
            }
        }
    }

    fn int(&mut self, key: &str, value: Option<i64>, min: i64, max: i64, default: i64) -> i64 {
        match value {
            None => default,
            Some(n) if (min..=max).contains(&n) => n,
            Some(n) => {
                self.err(key, format!("{n} is out of range; must be {min}..={max}"));
                default
            }
        }
    }

    fn socket_addr(&mut self, key: &str, value: Option<String>, default: &str) -> SocketAddr {
        let fallback = SocketAddr::from(([127, 0, 0, 1], 0));
        let s = value.unwrap_or_else(|| default.to_string());
        match s.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                self.err(
                    key,
                    format!("`{s}` is not an `ip:port` socket address (IPv6: `\"[addr]:port\"`)"),
                );
                fallback
            }
        }
    }

    fn policy(&mut self, raw: RawPolicy) -> Policy {
        match raw.version {
            Some(1) => {}
            Some(n) => self.err("version", format!("unsupported version {n}; must be 1")),
            None => self.err("version", "required; must be 1"),
        }

        let tenant = raw.tenant.unwrap_or_default();
        let tenant_ok = !tenant.is_empty()
            && tenant.len() <= 63
            && tenant.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
            });
        if !tenant_ok {
            self.err(
                "tenant",
                "required: 1-63 characters of lowercase a-z, 0-9, `.`, `_`, `-`",
            );
        }

        let listen = self.socket_addr("listen", raw.listen, DEFAULT_LISTEN);
        let listen_insecure_ok = raw.listen_insecure_ok.unwrap_or(false);
        if let Err(m) = check_listen(listen, listen_insecure_ok) {
            self.err("listen", m);
        }
        let admin = self.socket_addr("admin", raw.admin, DEFAULT_ADMIN);

        let upstream = self.upstream(raw.upstream.unwrap_or_default(), &tenant);
        let credential = self.credential(raw.credential.unwrap_or_default());
        if credential.mechanism == Mechanism::None
            && !(upstream.tls == TlsMode::None && upstream.insecure)
        {
            self.err(
                "credential.mechanism",
                "none (no upstream AUTH) is only allowed with upstream.tls: none and upstream.insecure: true",
            );
        }
        let client = self.client(raw.client.unwrap_or_default());
        if let Some(tls) = &client.tls {
            self.client_tls_listen(tls, listen, listen_insecure_ok);
        }
        self.no_mounted_password(credential.mechanism, &client);

        let senders = match raw.senders {
            None => {
                self.err("senders", "required: a non-empty list of sender patterns");
                SenderMatcher::deny_all()
            }
            Some(list) => {
                if list.is_empty() {
                    self.err("senders", "must list at least one sender pattern");
                }
                match SenderMatcher::parse(&list) {
                    Ok(m) => m,
                    Err((i, m)) => {
                        self.err(&format!("senders[{i}]"), m);
                        SenderMatcher::deny_all()
                    }
                }
            }
        };

        let header_from = match raw.header_from {
            None | Some(RawHeaderFrom::Enforce) => HeaderFrom::Enforce,
            Some(RawHeaderFrom::Ignore) => HeaderFrom::Ignore,
        };

        let rr = raw.recipients.unwrap_or_default();
        let max_per_message = self.int(
            "recipients.max_per_message",
            rr.max_per_message,
            1,
            1000,
            100,
        );
        let domains = match DomainMatcher::parse(&rr.domains.unwrap_or_default()) {
            Ok(m) => m,
            Err((i, m)) => {
                self.err(&format!("recipients.domains[{i}]"), m);
                DomainMatcher::any()
            }
        };

        let rl = raw.limits.unwrap_or_default();
        let limits = Limits {
            max_message_bytes: self.int(
                "limits.max_message_bytes",
                rl.max_message_bytes,
                1024,
                ONE_GIB,
                31_457_280,
            ) as u64,
            max_sessions: self.int("limits.max_sessions", rl.max_sessions, 1, 100_000, 128)
                as usize,
            command_timeout: self.duration(
                "limits.command_timeout",
                rl.command_timeout,
                Duration::from_secs(300),
            ),
            data_timeout: self.duration(
                "limits.data_timeout",
                rl.data_timeout,
                Duration::from_secs(600),
            ),
            rate: self.rate(rl.rate),
        };

        let bare_lf = match raw.data.and_then(|d| d.bare_lf) {
            None | Some(RawBareLf::Reject) => BareLf::Reject,
            Some(RawBareLf::Normalize) => BareLf::Normalize,
        };

        let drain = self.duration(
            "shutdown.drain",
            raw.shutdown.and_then(|s| s.drain),
            Duration::from_secs(20),
        );

        Policy {
            tenant,
            listen,
            listen_insecure_ok,
            admin,
            upstream,
            credential,
            client,
            senders,
            header_from,
            recipients: RecipientPolicy {
                max_per_message: max_per_message as usize,
                domains,
            },
            limits,
            data: DataPolicy { bare_lf },
            shutdown: ShutdownPolicy { drain },
        }
    }

    fn upstream(&mut self, ru: raw::RawUpstream, tenant: &str) -> UpstreamPolicy {
        let (address, host, port) = match ru.address {
            None => {
                self.err("upstream.address", "required: the provider's `host:port`");
                (String::new(), String::new(), 0)
            }
            Some(a) => match parse_host_port(&a) {
                Ok((h, p)) => (a, h, p),
                Err(m) => {
                    self.err("upstream.address", m);
                    (a, String::new(), 0)
                }
            },
        };

        let tls = match ru.tls {
            None | Some(RawTls::Starttls) => TlsMode::StartTls,
            Some(RawTls::Implicit) => TlsMode::Implicit,
            Some(RawTls::None) => TlsMode::None,
        };
        let insecure = ru.insecure.unwrap_or(false);
        match (tls, insecure) {
            (TlsMode::None, false) => self.err(
                "upstream.tls",
                "`tls: none` sends the credential in plain text and requires `insecure: true` (tests only)",
            ),
            (TlsMode::StartTls | TlsMode::Implicit, true) => self.err(
                "upstream.insecure",
                "insecure only applies to tls: none; TLS is always verified",
            ),
            _ => {}
        }

        let ca_file = ru.ca_file.map(PathBuf::from);
        if let Some(path) = &ca_file {
            if let Err(m) = check_readable_file(path) {
                self.err("upstream.ca_file", m);
            }
        }

        let server_name = match ru.server_name {
            None => host.clone(),
            Some(s) => {
                if rustls_pki_types::ServerName::try_from(s.as_str()).is_err() {
                    self.err(
                        "upstream.server_name",
                        format!("`{s}` is not a valid DNS name or IP address"),
                    );
                }
                s
            }
        };

        let ehlo_name = match ru.ehlo_name {
            None => format!("smtpbind-{tenant}"),
            Some(s) => {
                let ok = !s.is_empty() && s.len() <= 255 && s.chars().all(|c| c.is_ascii_graphic());
                if !ok {
                    self.err(
                        "upstream.ehlo_name",
                        "must be 1-255 printable ASCII characters without spaces",
                    );
                }
                s
            }
        };

        let connect_timeout = self.duration(
            "upstream.connect_timeout",
            ru.connect_timeout,
            Duration::from_secs(10),
        );
        let reply_timeout = self.duration(
            "upstream.reply_timeout",
            ru.reply_timeout,
            Duration::from_secs(120),
        );
        let rr = ru.reuse.unwrap_or_default();
        let max_idle = self.int("upstream.reuse.max_idle", rr.max_idle, 0, 1024, 16);
        let reuse = ReusePolicy {
            max_idle: max_idle as usize,
            prewarm: self.int(
                "upstream.reuse.prewarm",
                rr.prewarm,
                0,
                max_idle,
                1.min(max_idle),
            ) as usize,
            idle_timeout: self.duration(
                "upstream.reuse.idle_timeout",
                rr.idle_timeout,
                Duration::from_secs(30),
            ),
        };

        UpstreamPolicy {
            address,
            host,
            port,
            tls,
            insecure,
            ca_file,
            server_name,
            ehlo_name,
            connect_timeout,
            reply_timeout,
            reuse,
            max_connections: match self.int(
                "upstream.max_connections",
                ru.max_connections,
                1,
                4096,
                0,
            ) {
                0 => None,
                n => Some(n as usize),
            },
        }
    }

    fn credential(&mut self, rc: raw::RawCredential) -> CredentialPolicy {
        let secret_dir = match rc.secret_dir {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => {
                self.err(
                    "credential.secret_dir",
                    "required: the directory of the mounted basic-auth Secret",
                );
                PathBuf::new()
            }
        };
        let mechanism = match rc.mechanism {
            None | Some(RawMechanism::Auto) => Mechanism::Auto,
            Some(RawMechanism::Plain) => Mechanism::Plain,
            Some(RawMechanism::Login) => Mechanism::Login,
            Some(RawMechanism::Xoauth2) => Mechanism::XOAuth2,
            Some(RawMechanism::Ses) => Mechanism::Ses,
            Some(RawMechanism::None) => Mechanism::None,
        };
        let mut pins: Vec<Pin> = Vec::new();
        match rc.pins {
            None => self.err(
                "credential.pins",
                "required: at least one `sha256:<64 hex>` pin of the password file",
            ),
            Some(list) if list.is_empty() => self.err(
                "credential.pins",
                "must list at least one `sha256:<64 hex>` pin of the password file",
            ),
            Some(list) => {
                let mut seen: Vec<(Pin, usize)> = Vec::new();
                for (i, s) in list.iter().enumerate() {
                    match Pin::parse(s) {
                        Ok(pin) => {
                            if let Some((_, first)) = seen.iter().find(|(p, _)| *p == pin) {
                                let first = *first;
                                self.err(
                                    &format!("credential.pins[{i}]"),
                                    format!("duplicate of credential.pins[{first}]"),
                                );
                            } else {
                                seen.push((pin, i));
                                pins.push(pin);
                            }
                        }
                        Err(m) => self.err(
                            &format!("credential.pins[{i}]"),
                            format!("invalid pin: {m}"),
                        ),
                    }
                }
            }
        }
        let oauth2 = self.oauth2(mechanism, rc.oauth2);
        let ses = self.ses(mechanism, rc.ses);
        CredentialPolicy {
            secret_dir,
            mechanism,
            pins,
            oauth2,
            ses,
        }
    }

    fn client(&mut self, rc: raw::RawClient) -> ClientPolicy {
        let auth = match rc.auth {
            None | Some(RawClientAuth::Required) => ClientAuth::Required,
            Some(RawClientAuth::None) => ClientAuth::None,
        };
        let mut accept = Vec::new();
        let list = rc.accept.unwrap_or_default();
        if auth == ClientAuth::Required && list.is_empty() {
            self.err(
                "client.accept",
                "with `auth: required`, list at least one identity (`username` + `password`)",
            );
        }
        for (i, a) in list.into_iter().enumerate() {
            let username = match a.username {
                Some(u) if !u.is_empty() => u,
                _ => {
                    self.err(
                        &format!("client.accept[{i}].username"),
                        "required, non-empty",
                    );
                    String::new()
                }
            };
            let key = format!("client.accept[{i}].password");
            let password = match a.password.as_deref() {
                None => {
                    self.err(&key, "required: `mounted`, `any` or `sha256:<64 hex>`");
                    PasswordMatch::Any
                }
                Some("mounted") => PasswordMatch::Mounted,
                Some("any") => PasswordMatch::Any,
                Some(s) if s.starts_with("sha256:") => match Pin::parse(s) {
                    Ok(p) => PasswordMatch::Sha256(*p.as_bytes()),
                    Err(m) => {
                        self.err(&key, format!("invalid digest: {m}"));
                        PasswordMatch::Any
                    }
                },
                Some(_) => {
                    self.err(
                        &key,
                        "must be `mounted`, `any` or `sha256:<64 hex>` \
                         (a plain-text password is not accepted; the value is not shown)",
                    );
                    PasswordMatch::Any
                }
            };
            accept.push(AcceptRule { username, password });
        }
        let tls = rc.tls.map(|t| self.client_tls(t));
        ClientPolicy { auth, accept, tls }
    }
}

/// Checks that `path` is a regular file this process can open for reading.
/// The error names the path and the kind of failure, never the content.
fn check_readable_file(path: &Path) -> Result<(), String> {
    if path.as_os_str().is_empty() {
        return Err("empty path".to_string());
    }
    let shown = path.display();
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read `{shown}`: {}", e.kind()))?;
    if !meta.is_file() {
        return Err(format!("`{shown}` is not a regular file"));
    }
    std::fs::File::open(path).map_err(|e| format!("cannot read `{shown}`: {}", e.kind()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN_HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const PIN: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const PIN2: &str = "sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

    /// A readable file that exists in every build of this module.
    const READABLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");

    /// The full example of contract §3, with a real pin and a readable CA file.
    fn contract_example() -> String {
        format!(
            r#"version: 1
tenant: acme                          # required; appears in every log line and metric
listen: 127.0.0.1:2525                # default; a non-loopback address requires `listen_insecure_ok: true`
admin: 0.0.0.0:9525                   # default; /metrics /healthz /readyz
upstream:
  address: smtp.sendgrid.net:587      # host:port
  tls: starttls                       # starttls | implicit | none
  insecure: false                     # must be true for `tls: none` (tests, benchmarks)
  ca_file: {READABLE}       # optional; default: the webpki roots
  server_name: smtp.sendgrid.net      # optional; default: host of `address`
  ehlo_name: acme-mailer              # optional
  connect_timeout: 10s
credential:
  secret_dir: /var/run/secrets/smtpbind   # a kubernetes.io/basic-auth Secret: files `username`, `password`
  mechanism: auto                     # auto | plain | login  (auto: PLAIN if offered, else LOGIN)
  pins: [ "{PIN}" ]      # sha256 of the `password` file's bytes; list allows rotation
client:
  auth: required                      # required | none (none: any local client is this tenant)
  accept:                             # identities the app in this pod may present
    - username: apikey
      password: mounted               # mounted | sha256:<hex> | any
senders: [ "*@acme.example", "billing@acme-mail.example" ]   # MAIL FROM allow-list; "<>" allows bounces
header_from: enforce                  # enforce | ignore: the RFC 5322 From: domain must match `senders`
recipients:
  max_per_message: 100
  domains: []                         # optional allow-list of recipient domains
limits:
  max_message_bytes: 31457280
  max_sessions: 128
  command_timeout: 300s
  data_timeout: 600s
data:
  bare_lf: reject                     # reject | normalize
"#
        )
    }

    /// A minimal valid policy; line numbers are relied on by the tests.
    fn base() -> String {
        format!(
            r#"version: 1
tenant: acme
upstream:
  address: smtp.example.com:587
  tls: starttls
credential:
  secret_dir: /var/run/secrets/smtpbind
  pins: [ "{PIN}" ]
client:
  accept:
    - username: apikey
      password: mounted
senders: [ "*@acme.example" ]
"#
        )
    }

    /// `base()` with each `(from, to)` replaced once (`from` must occur).
    fn edit(pairs: &[(&str, &str)]) -> String {
        let mut s = base();
        for (from, to) in pairs {
            assert!(s.contains(from), "{from:?} not in base");
            s = s.replacen(from, to, 1);
        }
        s
    }

    fn parse_str(text: &str) -> Result<Policy, PolicyErrors> {
        parse(text, Path::new("p.yaml"))
    }

    fn ok(text: &str) -> Policy {
        match parse_str(text) {
            Ok(p) => p,
            Err(e) => panic!("unexpected errors:\n{e}\n--- in:\n{text}"),
        }
    }

    fn errs(text: &str) -> Vec<PolicyError> {
        match parse_str(text) {
            Ok(_) => panic!("expected errors in:\n{text}"),
            Err(e) => e.0,
        }
    }

    /// Exactly one error; returns (line, col, key, message).
    fn err1(text: &str) -> (usize, usize, String, String) {
        let e = errs(text);
        assert_eq!(
            e.len(),
            1,
            "expected one error, got:\n{}",
            PolicyErrors(e.clone())
        );
        let e = e.into_iter().next().unwrap();
        (e.line, e.col, e.key, e.message)
    }

    #[track_caller]
    fn assert_err(text: &str, line: usize, col: usize, key: &str, msg_part: &str) {
        let (l, c, k, m) = err1(text);
        assert_eq!(
            (l, c, k.as_str()),
            (line, col, key),
            "message: {m}\n--- in:\n{text}"
        );
        assert!(m.contains(msg_part), "{m:?} does not contain {msg_part:?}");
    }

    #[test]
    fn contract_example_parses_to_expected_values() {
        let p = ok(&contract_example());
        assert_eq!(p.tenant, "acme");
        assert_eq!(p.listen, "127.0.0.1:2525".parse::<SocketAddr>().unwrap());
        assert!(!p.listen_insecure_ok);
        assert_eq!(p.admin, "0.0.0.0:9525".parse::<SocketAddr>().unwrap());
        let u = &p.upstream;
        assert_eq!(u.address, "smtp.sendgrid.net:587");
        assert_eq!((u.host.as_str(), u.port), ("smtp.sendgrid.net", 587));
        assert_eq!(u.tls, TlsMode::StartTls);
        assert!(!u.insecure);
        assert_eq!(u.ca_file.as_deref(), Some(Path::new(READABLE)));
        assert_eq!(u.server_name, "smtp.sendgrid.net");
        assert_eq!(u.ehlo_name, "acme-mailer");
        assert_eq!(u.connect_timeout, Duration::from_secs(10));
        assert_eq!(u.reply_timeout, Duration::from_secs(120));
        assert_eq!(u.reuse.max_idle, 16);
        assert_eq!(u.reuse.idle_timeout, Duration::from_secs(30));
        let c = &p.credential;
        assert_eq!(c.secret_dir, Path::new("/var/run/secrets/smtpbind"));
        assert_eq!(c.mechanism, Mechanism::Auto);
        assert_eq!(c.pins, vec![Pin::of(b"test")]);
        assert_eq!(p.client.auth, ClientAuth::Required);
        assert_eq!(p.client.accept.len(), 1);
        assert_eq!(p.client.accept[0].username, "apikey");
        assert_eq!(p.client.accept[0].password, PasswordMatch::Mounted);
        assert!(p.senders.allows("x@acme.example"));
        assert!(p.senders.allows("billing@acme-mail.example"));
        assert!(!p.senders.allows("other@acme-mail.example"));
        assert!(!p.senders.allows(""));
        assert_eq!(p.header_from, HeaderFrom::Enforce);
        assert_eq!(p.recipients.max_per_message, 100);
        assert!(p.recipients.domains.is_any());
        assert_eq!(p.limits.max_message_bytes, 31_457_280);
        assert_eq!(p.limits.max_sessions, 128);
        assert_eq!(p.limits.command_timeout, Duration::from_secs(300));
        assert_eq!(p.limits.data_timeout, Duration::from_secs(600));
        assert_eq!(p.data.bare_lf, BareLf::Reject);
        assert_eq!(p.shutdown.drain, Duration::from_secs(20));
    }

    #[test]
    fn defaults_apply_to_a_minimal_policy() {
        let p = ok(&base());
        assert_eq!(p.listen, "127.0.0.1:2525".parse::<SocketAddr>().unwrap());
        assert_eq!(p.admin, "0.0.0.0:9525".parse::<SocketAddr>().unwrap());
        assert_eq!(p.upstream.tls, TlsMode::StartTls);
        assert!(!p.upstream.insecure);
        assert_eq!(p.upstream.ca_file, None);
        assert_eq!(p.upstream.server_name, "smtp.example.com");
        assert_eq!(p.upstream.ehlo_name, "smtpbind-acme");
        assert_eq!(p.upstream.connect_timeout, Duration::from_secs(10));
        assert_eq!(p.upstream.reply_timeout, Duration::from_secs(120));
        assert_eq!(p.upstream.reuse.max_idle, 16);
        assert_eq!(p.upstream.reuse.idle_timeout, Duration::from_secs(30));
        assert_eq!(p.credential.mechanism, Mechanism::Auto);
        assert_eq!(p.client.auth, ClientAuth::Required);
        assert_eq!(p.header_from, HeaderFrom::Enforce);
        assert_eq!(p.recipients.max_per_message, 100);
        assert!(p.recipients.domains.is_any());
        assert_eq!(p.limits.max_message_bytes, 31_457_280);
        assert_eq!(p.limits.max_sessions, 128);
        assert_eq!(p.limits.command_timeout, Duration::from_secs(300));
        assert_eq!(p.limits.data_timeout, Duration::from_secs(600));
        assert_eq!(p.data.bare_lf, BareLf::Reject);
        assert_eq!(p.shutdown.drain, Duration::from_secs(20));
    }

    #[test]
    fn extra_keys_parse() {
        let p = ok(&format!(
            "{}listen: 0.0.0.0:2525\nlisten_insecure_ok: true\nshutdown:\n  drain: 1m\n",
            edit(&[(
                "  tls: starttls\n",
                "  tls: none\n  insecure: true\n  reply_timeout: 500ms\n  reuse: {max_idle: 0, idle_timeout: 5s}\n"
            )])
        ));
        assert!(p.listen_insecure_ok);
        assert_eq!(p.listen.port(), 2525);
        assert_eq!(p.upstream.tls, TlsMode::None);
        assert!(p.upstream.insecure);
        assert_eq!(p.upstream.reply_timeout, Duration::from_millis(500));
        assert_eq!(p.upstream.reuse.max_idle, 0);
        assert_eq!(p.upstream.reuse.idle_timeout, Duration::from_secs(5));
        assert_eq!(p.shutdown.drain, Duration::from_secs(60));
    }

    #[test]
    fn version_must_be_1() {
        assert_err(
            &edit(&[("version: 1", "version: 2")]),
            1,
            1,
            "version",
            "must be 1",
        );
        assert_err(&edit(&[("version: 1\n", "")]), 1, 1, "version", "required");
    }

    #[test]
    fn tenant_rules() {
        assert_err(
            &edit(&[("tenant: acme", "tenant: Acme")]),
            2,
            1,
            "tenant",
            "1-63",
        );
        assert_err(
            &edit(&[("tenant: acme", "tenant: a/b")]),
            2,
            1,
            "tenant",
            "1-63",
        );
        assert_err(
            &edit(&[("tenant: acme", "tenant: \"\"")]),
            2,
            1,
            "tenant",
            "1-63",
        );
        let long = format!("tenant: {}", "a".repeat(64));
        assert_err(&edit(&[("tenant: acme", &long)]), 2, 1, "tenant", "1-63");
        let max = format!("tenant: {}", "a".repeat(63));
        ok(&edit(&[("tenant: acme", &max)]));
        ok(&edit(&[("tenant: acme", "tenant: a.b_c-1")]));
        assert_err(&edit(&[("tenant: acme\n", "")]), 1, 1, "tenant", "required");
    }

    #[test]
    fn listen_and_admin_rules() {
        let t = format!("{}listen: nope\n", base());
        assert_err(&t, 14, 1, "listen", "socket address");
        let t = format!("{}admin: 1.2.3.4\n", base());
        assert_err(&t, 14, 1, "admin", "socket address");
        let t = format!("{}listen: 0.0.0.0:2525\n", base());
        assert_err(&t, 14, 1, "listen", "listen_insecure_ok: true");
        let t = format!(
            "{}listen: 0.0.0.0:2525\nlisten_insecure_ok: false\n",
            base()
        );
        assert_err(&t, 14, 1, "listen", "listen_insecure_ok: true");
        ok(&format!(
            "{}listen: \"[::1]:2525\"\nadmin: 127.0.0.1:0\n",
            base()
        ));
        assert!(check_listen("10.0.0.1:25".parse().unwrap(), false).is_err());
        assert!(check_listen("10.0.0.1:25".parse().unwrap(), true).is_ok());
        assert!(check_listen("127.0.0.2:25".parse().unwrap(), false).is_ok());
    }

    #[test]
    fn upstream_address_rules() {
        let a = |v: &str| edit(&[("smtp.example.com:587", v)]);
        assert_err(
            &edit(&[("  address: smtp.example.com:587\n", "")]),
            3,
            1,
            "upstream.address",
            "required",
        );
        assert_err(
            &a("smtp.example.com"),
            4,
            3,
            "upstream.address",
            "host:port",
        );
        assert_err(
            &a("smtp.example.com:0"),
            4,
            3,
            "upstream.address",
            "1 to 65535",
        );
        assert_err(
            &a("smtp.example.com:65536"),
            4,
            3,
            "upstream.address",
            "1 to 65535",
        );
        assert_err(
            &a("smtp.example.com:+25"),
            4,
            3,
            "upstream.address",
            "1 to 65535",
        );
        assert_err(&a(":25"), 4, 3, "upstream.address", "empty host");
        assert_err(&a("::1:25"), 4, 3, "upstream.address", "brackets");
        assert_err(&a("\"[::1]25\""), 4, 3, "upstream.address", "`:port`");
        assert_err(&a("\"[nope]:25\""), 4, 3, "upstream.address", "IPv6");
        assert_err(
            &a("bad_host!:25"),
            4,
            3,
            "upstream.address",
            "not a valid DNS name",
        );
        let p = ok(&a("\"[::1]:2525\""));
        assert_eq!((p.upstream.host.as_str(), p.upstream.port), ("::1", 2525));
        assert_eq!(p.upstream.server_name, "::1");
        let p = ok(&a("192.0.2.1:65535"));
        assert_eq!(
            (p.upstream.host.as_str(), p.upstream.port),
            ("192.0.2.1", 65535)
        );
        // no upstream section at all
        let t = edit(&[(
            "upstream:\n  address: smtp.example.com:587\n  tls: starttls\n",
            "",
        )]);
        assert_err(&t, 1, 1, "upstream.address", "required");
    }

    #[test]
    fn tls_and_insecure_rules() {
        assert_err(
            &edit(&[("tls: starttls", "tls: none")]),
            5,
            3,
            "upstream.tls",
            "insecure: true",
        );
        assert_err(
            &edit(&[("tls: starttls", "tls: none\n  insecure: false")]),
            5,
            3,
            "upstream.tls",
            "insecure: true",
        );
        ok(&edit(&[("tls: starttls", "tls: none\n  insecure: true")]));
        let msg = "insecure only applies to tls: none; TLS is always verified";
        assert_err(
            &edit(&[("tls: starttls", "tls: starttls\n  insecure: true")]),
            6,
            3,
            "upstream.insecure",
            msg,
        );
        assert_err(
            &edit(&[("tls: starttls", "tls: implicit\n  insecure: true")]),
            6,
            3,
            "upstream.insecure",
            msg,
        );
        assert_err(
            &edit(&[("  tls: starttls", "  insecure: true")]),
            5,
            3,
            "upstream.insecure",
            msg,
        );
        assert_eq!(
            ok(&edit(&[("tls: starttls", "tls: implicit")]))
                .upstream
                .tls,
            TlsMode::Implicit
        );
        // enum values are case-sensitive; serde reports the unknown variant at the value
        assert_err(
            &edit(&[("tls: starttls", "tls: STARTTLS")]),
            5,
            8,
            "upstream.tls",
            "unknown variant `STARTTLS`",
        );
    }

    #[test]
    fn ca_file_rules() {
        let with = |p: &str| {
            edit(&[(
                "  tls: starttls\n",
                &format!("  tls: starttls\n  ca_file: {p}\n"),
            )])
        };
        let (l, c, k, m) = err1(&with("/nonexistent/smtpbind/ca.pem"));
        assert_eq!((l, c, k.as_str()), (6, 3, "upstream.ca_file"));
        assert!(
            m.contains("/nonexistent/smtpbind/ca.pem") && m.contains("not found"),
            "{m}"
        );
        assert_err(&with("/"), 6, 3, "upstream.ca_file", "not a regular file");
        assert_err(&with("\"\""), 6, 3, "upstream.ca_file", "empty path");
        ok(&with(READABLE));
    }

    #[test]
    fn server_name_and_ehlo_name_rules() {
        let with = |k: &str, v: &str| {
            edit(&[(
                "  tls: starttls\n",
                &format!("  tls: starttls\n  {k}: {v}\n"),
            )])
        };
        assert_err(
            &with("server_name", "\"bad name\""),
            6,
            3,
            "upstream.server_name",
            "valid DNS name",
        );
        assert_err(
            &with("server_name", "\"\""),
            6,
            3,
            "upstream.server_name",
            "valid DNS name",
        );
        assert_eq!(
            ok(&with("server_name", "192.0.2.7")).upstream.server_name,
            "192.0.2.7"
        );
        assert_eq!(
            ok(&with("server_name", "mx.example.net"))
                .upstream
                .server_name,
            "mx.example.net"
        );
        assert_err(
            &with("ehlo_name", "\"a b\""),
            6,
            3,
            "upstream.ehlo_name",
            "printable",
        );
        assert_err(
            &with("ehlo_name", "\"a\\r\\nQUIT\""),
            6,
            3,
            "upstream.ehlo_name",
            "printable",
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1440m"), Ok(Duration::from_secs(86_400)));
        assert_eq!(
            parse_duration("86400000ms"),
            Ok(Duration::from_secs(86_400))
        );
        for bad in [
            "",
            "s",
            "10",
            "10S",
            "10h",
            "10 s",
            " 10s",
            "-1s",
            "1.5s",
            "+1s",
            "0s",
            "0ms",
            "1441m",
            "86401s",
            "99999999999999999999999s",
            "18446744073709551615m",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert!(parse_duration("0s").unwrap_err().contains("greater than 0"));
        assert!(parse_duration("1441m").unwrap_err().contains("24h"));
        assert!(parse_duration("10").unwrap_err().contains("missing unit"));

        let up = |k: &str, v: &str| {
            edit(&[(
                "  tls: starttls\n",
                &format!("  tls: starttls\n  {k}: {v}\n"),
            )])
        };
        assert_err(
            &up("connect_timeout", "10"),
            6,
            3,
            "upstream.connect_timeout",
            "missing unit",
        );
        assert_err(
            &up("connect_timeout", "0s"),
            6,
            3,
            "upstream.connect_timeout",
            "greater than 0",
        );
        assert_err(
            &up("reply_timeout", "25h"),
            6,
            3,
            "upstream.reply_timeout",
            "unknown unit",
        );
        assert_err(
            &up("reuse", "\n    idle_timeout: 1441m"),
            7,
            5,
            "upstream.reuse.idle_timeout",
            "24h",
        );
        let tail = |s: &str| format!("{}{s}", base());
        assert_err(
            &tail("limits:\n  command_timeout: 5 m\n"),
            15,
            3,
            "limits.command_timeout",
            "unknown unit",
        );
        assert_err(
            &tail("limits:\n  data_timeout: 0m\n"),
            15,
            3,
            "limits.data_timeout",
            "greater than 0",
        );
        assert_err(
            &tail("shutdown:\n  drain: 1.5s\n"),
            15,
            3,
            "shutdown.drain",
            "unknown unit",
        );
    }

    #[test]
    fn credential_rules() {
        assert_err(
            &edit(&[("  secret_dir: /var/run/secrets/smtpbind\n", "")]),
            6,
            1,
            "credential.secret_dir",
            "required",
        );
        assert_err(
            &edit(&[("secret_dir: /var/run/secrets/smtpbind", "secret_dir: \"\"")]),
            7,
            3,
            "credential.secret_dir",
            "required",
        );
        assert_err(
            &edit(&[("  pins:", "  mechanism: cram-md5\n  pins:")]),
            8,
            14,
            "credential.mechanism",
            "unknown variant `cram-md5`",
        );
        for (m, want) in [
            ("plain", Mechanism::Plain),
            ("login", Mechanism::Login),
            ("auto", Mechanism::Auto),
        ] {
            let p = ok(&edit(&[("  pins:", &format!("  mechanism: {m}\n  pins:"))]));
            assert_eq!(p.credential.mechanism, want);
        }
        // no credential section: both required keys, at 1:1
        let e = errs(&edit(&[(
            &format!(
                "credential:\n  secret_dir: /var/run/secrets/smtpbind\n  pins: [ \"{PIN}\" ]\n"
            ),
            "",
        )]));
        let got: Vec<_> = e.iter().map(|e| (e.line, e.col, e.key.as_str())).collect();
        assert_eq!(
            got,
            vec![(1, 1, "credential.secret_dir"), (1, 1, "credential.pins")]
        );
    }

    #[test]
    fn pin_rules() {
        let pins = |v: &str| edit(&[(&format!("pins: [ \"{PIN}\" ]"), &format!("pins: {v}"))]);
        assert_err(&pins("[]"), 8, 3, "credential.pins", "at least one");
        assert_err(
            &pins("[ \"sha256:abc\" ]"),
            8,
            11,
            "credential.pins[0]",
            "64 hex",
        );
        assert_err(
            &pins("[ \"md5:abc\" ]"),
            8,
            11,
            "credential.pins[0]",
            "sha256:",
        );
        let dup = format!(
            "[ \"{PIN}\", \"{PIN2}\", \"sha256:{}\" ]",
            PIN_HEX.to_uppercase()
        );
        let col = 11 + PIN.len() + 4 + PIN2.len() + 4;
        assert_err(
            &pins(&dup),
            8,
            col,
            "credential.pins[2]",
            "duplicate of credential.pins[0]",
        );
        let block = format!("\n    - {PIN}\n    - sha256:zz\n");
        assert_err(&pins(&block), 10, 7, "credential.pins[1]", "64 hex");
        assert_err(
            &edit(&[(&format!("  pins: [ \"{PIN}\" ]\n"), "")]),
            6,
            1,
            "credential.pins",
            "required",
        );
        let p = ok(&pins(&format!("[ {PIN}, {PIN2} ]")));
        assert_eq!(p.credential.pins.len(), 2);
        assert_eq!(p.credential.pins[1].to_string(), PIN2);
    }

    #[test]
    fn client_rules() {
        let accept = "  accept:\n    - username: apikey\n      password: mounted\n";
        assert_err(
            &edit(&[(accept, "  accept: []\n")]),
            10,
            3,
            "client.accept",
            "at least one identity",
        );
        assert_err(
            &edit(&[(accept, "  auth: required\n")]),
            9,
            1,
            "client.accept",
            "at least one identity",
        );
        // no client section: auth defaults to required
        assert_err(
            &edit(&[(&format!("client:\n{accept}"), "")]),
            1,
            1,
            "client.accept",
            "at least one identity",
        );
        let p = ok(&edit(&[(accept, "  auth: none\n")]));
        assert_eq!(p.client.auth, ClientAuth::None);
        assert!(p.client.accept.is_empty());
        assert_err(
            &edit(&[(accept, "  auth: optional\n")]),
            10,
            9,
            "client.auth",
            "unknown variant `optional`",
        );
    }

    #[test]
    fn accept_rules() {
        assert_err(
            &edit(&[("username: apikey", "username: \"\"")]),
            11,
            7,
            "client.accept[0].username",
            "non-empty",
        );
        assert_err(
            &edit(&[("- username: apikey\n      ", "- ")]),
            11,
            7,
            "client.accept[0].username",
            "required",
        );
        assert_err(
            &edit(&[("\n      password: mounted", "")]),
            11,
            7,
            "client.accept[0].password",
            "required",
        );
        let (l, c, k, m) = err1(&edit(&[("password: mounted", "password: hunter2")]));
        assert_eq!((l, c, k.as_str()), (12, 7, "client.accept[0].password"));
        assert!(!m.contains("hunter2"), "{m}");
        assert!(m.contains("not shown"), "{m}");
        let (_, _, _, m) = err1(&edit(&[(
            "password: mounted",
            "password: sha256:hunter2hunter2",
        )]));
        assert!(!m.contains("hunter2"), "{m}");
        let second = "password: mounted\n    - username: other\n      password: Mounted";
        assert_err(
            &edit(&[("password: mounted", second)]),
            14,
            7,
            "client.accept[1].password",
            "not shown",
        );
        let p = ok(&edit(&[(
            "password: mounted",
            &format!("password: {PIN}\n    - username: b\n      password: any"),
        )]));
        assert_eq!(
            p.client.accept[0].password,
            PasswordMatch::Sha256(*Pin::of(b"test").as_bytes())
        );
        assert_eq!(p.client.accept[1].username, "b");
        assert_eq!(p.client.accept[1].password, PasswordMatch::Any);
    }

    #[test]
    fn sender_rules() {
        assert_err(
            &edit(&[("senders: [ \"*@acme.example\" ]\n", "")]),
            1,
            1,
            "senders",
            "required",
        );
        assert_err(
            &edit(&[("senders: [ \"*@acme.example\" ]", "senders: []")]),
            13,
            1,
            "senders",
            "at least one",
        );
        assert_err(
            &edit(&[(
                "senders: [ \"*@acme.example\" ]",
                "senders: [ \"*@acme.example\", \"acme.example\" ]",
            )]),
            13,
            30,
            "senders[1]",
            "exactly one `@`",
        );
        assert_err(
            &edit(&[(
                "senders: [ \"*@acme.example\" ]",
                "senders:\n  - \"<>\"\n  - \"*@*\"",
            )]),
            15,
            5,
            "senders[1]",
            "leading label",
        );
        let p = ok(&edit(&[(
            "senders: [ \"*@acme.example\" ]",
            "senders: [ \"<>\", \"*@*.acme.example\" ]",
        )]));
        assert!(p.senders.allows(""));
        assert!(p.senders.allows("a@eu.acme.example"));
        assert!(!p.senders.allows("a@acme.example"));
    }

    #[test]
    fn header_from_and_data_enums() {
        let t = format!(
            "{}header_from: ignore\ndata:\n  bare_lf: normalize\n",
            base()
        );
        let p = ok(&t);
        assert_eq!(p.header_from, HeaderFrom::Ignore);
        assert_eq!(p.data.bare_lf, BareLf::Normalize);
        assert_err(
            &format!("{}header_from: Enforce\n", base()),
            14,
            14,
            "header_from",
            "unknown variant `Enforce`",
        );
        assert_err(
            &format!("{}data:\n  bare_lf: strip\n", base()),
            15,
            12,
            "data.bare_lf",
            "unknown variant `strip`",
        );
    }

    #[test]
    fn recipient_rules() {
        let t = |s: &str| format!("{}recipients:\n{s}", base());
        assert_err(
            &t("  max_per_message: 0\n"),
            15,
            3,
            "recipients.max_per_message",
            "1..=1000",
        );
        assert_err(
            &t("  max_per_message: 1001\n"),
            15,
            3,
            "recipients.max_per_message",
            "1..=1000",
        );
        assert_eq!(
            ok(&t("  max_per_message: 1000\n"))
                .recipients
                .max_per_message,
            1000
        );
        assert_err(
            &t("  domains: [ example.com, \"a.*.example\" ]\n"),
            15,
            27,
            "recipients.domains[1]",
            "*.example.com",
        );
        assert_err(
            &t("  domains:\n    - \"*\"\n"),
            16,
            7,
            "recipients.domains[0]",
            "*.example.com",
        );
        let p = ok(&t("  domains: [ example.com, \"*.corp.example\" ]\n"));
        assert!(p.recipients.domains.allows_address("a@example.com"));
        assert!(p.recipients.domains.allows_address("a@x.corp.example"));
        assert!(!p.recipients.domains.allows_address("a@other.example"));
    }

    #[test]
    fn limit_rules() {
        let t = |s: &str| format!("{}limits:\n{s}", base());
        assert_err(
            &t("  max_message_bytes: 1023\n"),
            15,
            3,
            "limits.max_message_bytes",
            "1024..=1073741824",
        );
        assert_err(
            &t("  max_message_bytes: 1073741825\n"),
            15,
            3,
            "limits.max_message_bytes",
            "1024..=1073741824",
        );
        assert_eq!(
            ok(&t("  max_message_bytes: 1073741824\n"))
                .limits
                .max_message_bytes,
            1 << 30
        );
        assert_eq!(
            ok(&t("  max_message_bytes: 1024\n"))
                .limits
                .max_message_bytes,
            1024
        );
        assert_err(
            &t("  max_sessions: 0\n"),
            15,
            3,
            "limits.max_sessions",
            "1..=100000",
        );
        assert_err(
            &t("  max_sessions: 100001\n"),
            15,
            3,
            "limits.max_sessions",
            "1..=100000",
        );
        assert_err(
            &t("  max_sessions: -1\n"),
            15,
            3,
            "limits.max_sessions",
            "1..=100000",
        );
        assert_eq!(
            ok(&t("  max_sessions: 100000\n")).limits.max_sessions,
            100_000
        );
    }

    #[test]
    fn reuse_rules() {
        let t = |s: &str| {
            edit(&[(
                "  tls: starttls\n",
                &format!("  tls: starttls\n  reuse:\n{s}"),
            )])
        };
        assert_err(
            &t("    max_idle: 1025\n"),
            7,
            5,
            "upstream.reuse.max_idle",
            "0..=1024",
        );
        assert_err(
            &t("    max_idle: -1\n"),
            7,
            5,
            "upstream.reuse.max_idle",
            "0..=1024",
        );
        assert_eq!(ok(&t("    max_idle: 1024\n")).upstream.reuse.max_idle, 1024);
        assert_eq!(ok(&t("    max_idle: 0\n")).upstream.reuse.max_idle, 0);
    }

    #[test]
    fn unknown_keys_name_their_full_path() {
        assert_err(
            &format!("{}tenat: acme\n", base()),
            14,
            1,
            "tenat",
            "unknown field `tenat`",
        );
        assert_err(
            &edit(&[("tls: starttls", "tlz: starttls")]),
            5,
            3,
            "upstream.tlz",
            "unknown field `tlz`",
        );
        assert_err(
            &edit(&[("password: mounted", "pasword: mounted")]),
            12,
            7,
            "client.accept[0].pasword",
            "unknown field `pasword`",
        );
        assert_err(
            &edit(&[(
                "  tls: starttls\n",
                "  tls: starttls\n  reuse: { max_idle: 1, maxidle: 2 }\n",
            )]),
            6,
            25,
            "upstream.reuse.maxidle",
            "unknown field `maxidle`",
        );
        let (_, _, _, m) = err1(&edit(&[("tls: starttls", "tlz: starttls")]));
        assert!(m.contains("expected one of"), "{m}");
        assert!(!m.contains(" at line "), "{m}");
    }

    /// Found by fuzzing (`fuzz/`, target `policy`): an empty key was shown
    /// as an empty KEY field, and a control character in a key or value
    /// (a quoted `"\n"`) split one error over several lines.
    #[test]
    fn errors_have_a_key_and_stay_on_one_line() {
        let (_, _, k, m) = err1("\"\": 1\n");
        assert_eq!(k, "\"\"", "{m}");
        assert!(m.contains("unknown field ``"), "{m}");
        let (_, _, k, _) = err1("{!\n");
        assert_eq!(k, "\"\"");
        let (_, _, k, _) = err1(":\n");
        assert_eq!(k, "(document)");
        let (_, _, k, m) = err1("\"a\\nb\\u001b\": 1\n");
        assert_eq!(k, "a\\nb\\u{1b}", "{m}");
        assert!(!m.contains('\n') && !m.contains('\u{1b}'), "{m:?}");
        let (_, _, k, m) = err1(&edit(&[(
            "  tls: starttls\n",
            "  tls: starttls\n  server_name: \"a\\nb\"\n",
        )]));
        assert_eq!(k, "upstream.server_name");
        assert!(m.contains("`a\\nb`"), "{m:?}");
        for text in ["\"\": 1\n", "{!\n", ":\n", "\"\\n\": 1\n", "\"a\\rb\": x\n"] {
            for e in errs(text) {
                let shown = e.to_string();
                assert!(!e.key.is_empty(), "{shown:?}");
                assert!(!shown.chars().any(char::is_control), "{shown:?}");
            }
        }
    }

    #[test]
    fn yaml_errors_have_location_and_key() {
        // duplicate key: the second occurrence
        assert_err(
            &edit(&[("tls: starttls", "tls: starttls\n  tls: none")]),
            6,
            3,
            "upstream.tls",
            "duplicate field `tls`",
        );
        // wrong type
        assert_err(
            &edit(&[("tenant: acme", "tenant: [acme]")]),
            2,
            9,
            "tenant",
            "invalid type: sequence",
        );
        assert_err(
            &format!("{}listen_insecure_ok: yes\n", base()),
            14,
            21,
            "listen_insecure_ok",
            "expected a boolean",
        );
        // syntax error: a tab in indentation
        let (l, c, k, m) = err1(&edit(&[("  tls: starttls", "\ttls: starttls")]));
        assert_eq!((l, c), (5, 1), "{m}");
        assert_eq!(k, "upstream.address");
        assert!(!m.contains(" at line "), "{m}");
        // a multi-document file
        let (l, c, k, _) = err1(&format!("{}---\nversion: 1\n", base()));
        assert_eq!((l, c, k.as_str()), (1, 1, "(document)"));
    }

    #[test]
    fn string_values_are_not_echoed_from_serde() {
        // e.g. a password file given as the policy by mistake
        let (l, c, k, m) = err1("hunter2\n");
        assert_eq!((l, c, k.as_str()), (1, 1, "(document)"));
        assert!(!m.contains("hunter2"), "{m}");
        let (_, _, k, m) = err1(&edit(&[("client:", "client: \"s3cr\\\"et\"\nx:")]));
        assert_eq!(k, "client");
        assert!(!m.contains("s3cr") && !m.contains("et\""), "{m}");
        assert_eq!(
            redact_strings("invalid type: string \"a\\\"b\", expected x"),
            "invalid type: string, expected x"
        );
    }

    #[test]
    fn all_semantic_errors_are_reported_in_file_order() {
        let t = edit(&[
            ("version: 1", "version: 3"),
            ("tls: starttls", "tls: none"),
            (&format!("[ \"{PIN}\" ]"), "[]"),
            ("password: mounted", "password: letmein"),
        ]);
        let e = errs(&t);
        let got: Vec<_> = e.iter().map(|e| (e.line, e.col, e.key.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (1, 1, "version"),
                (5, 3, "upstream.tls"),
                (8, 3, "credential.pins"),
                (12, 7, "client.accept[0].password"),
            ]
        );
        let shown = PolicyErrors(e).to_string();
        assert_eq!(shown.lines().count(), 4);
        assert!(shown.starts_with("p.yaml:1:1: version: "), "{shown}");
        assert!(!shown.contains("letmein"));
    }

    #[test]
    fn empty_document_lists_every_required_key() {
        for text in ["", "# nothing\n", "~\n"] {
            let e = errs(text);
            let keys: Vec<_> = e.iter().map(|e| e.key.as_str()).collect();
            assert_eq!(
                keys,
                vec![
                    "version",
                    "tenant",
                    "upstream.address",
                    "credential.secret_dir",
                    "credential.pins",
                    "client.accept",
                    "senders"
                ],
                "{text:?}"
            );
            assert!(e.iter().all(|e| (e.line, e.col) == (1, 1)));
        }
    }

    #[test]
    fn error_display_format() {
        let e = PolicyError {
            file: PathBuf::from("/etc/smtpbind/policy.yaml"),
            line: 7,
            col: 3,
            key: "upstream.tls".into(),
            message: "boom".into(),
        };
        assert_eq!(
            e.to_string(),
            "/etc/smtpbind/policy.yaml:7:3: upstream.tls: boom"
        );
    }

    #[test]
    fn load_reports_read_errors_without_content() {
        let e = load(Path::new("/nonexistent/smtpbind/policy.yaml")).unwrap_err();
        assert_eq!(e.0.len(), 1);
        let e = &e.0[0];
        assert_eq!((e.line, e.col), (0, 0));
        assert!(e.message.contains("not found"), "{}", e.message);
        let e = load(Path::new("/")).unwrap_err();
        assert_eq!((e.0[0].line, e.0[0].col), (0, 0));
        // a non-policy file: the error never quotes its content
        let e = load(Path::new(READABLE)).unwrap_err();
        assert!(!e.to_string().contains("smtpbind\""), "{e}");
    }

    /// The example policies shipped in `policies/` must all parse.
    #[test]
    fn example_policies_parse() {
        let src = Path::new(file!());
        let src = if src.is_absolute() {
            src.to_path_buf()
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(src)
        };
        let mut dir = src.clone();
        for _ in 0..3 {
            dir.pop();
        }
        let dir = dir.join("policies");
        for name in ["sendgrid.yaml", "ses.yaml", "mailgun.yaml"] {
            let path = dir.join(name);
            if let Err(e) = load(&path) {
                panic!("{e}");
            }
        }
        let entries = std::fs::read_dir(&dir).unwrap();
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                if let Err(e) = load(&path) {
                    panic!("{e}");
                }
            }
        }
    }
}
