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
//! * `upstream.chunking` — `auto` (BDAT upstream when offered, default) or `off`;
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

mod client;
mod client_tls;
mod credential;
mod identity;
mod locate;
mod matchers;
mod model;
mod pin;
mod raw;
mod upstream;
mod validate;
mod yaml_error;

pub use matchers::{DomainMatcher, SenderMatcher};
pub use model::*;
pub use pin::Pin;
pub(crate) use upstream::parse_host_port;

use std::fmt;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::policy::locate::Locator;
use crate::policy::raw::RawPolicy;
use crate::policy::validate::Validator;
use crate::policy::yaml_error::{one_line, yaml_error};

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
mod tests;
