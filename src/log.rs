//! JSON-lines logging on stdout: operational logs and audit events share one
//! format, `{"ts":…,"level":…,"event":…,"tenant":…, …}`, one object per line,
//! written whole under a lock so lines never interleave.
//!
//! Nothing secret is ever passed here: callers log usernames, short pins,
//! domains, counts and reply lines — never passwords, AUTH payloads or
//! message content (a test greps a whole run's output for every test secret).

use std::io::Write;
use std::sync::OnceLock;
use std::time::SystemTime;

use serde_json::{Map, Value};

static TENANT: OnceLock<String> = OnceLock::new();

/// Sets the tenant named on every line (once, at start).
pub fn set_tenant(tenant: &str) {
    let _ = TENANT.set(tenant.to_string());
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Builds the line for `event` with `fields` (a JSON object; other values are ignored).
pub fn line(level: Level, event: &str, fields: Value) -> String {
    let mut obj = Map::new();
    obj.insert(
        "ts".into(),
        Value::String(humantime::format_rfc3339_millis(SystemTime::now()).to_string()),
    );
    obj.insert("level".into(), Value::String(level.as_str().into()));
    obj.insert("event".into(), Value::String(event.into()));
    if let Some(t) = TENANT.get() {
        obj.insert("tenant".into(), Value::String(t.clone()));
    }
    if let Value::Object(extra) = fields {
        for (k, v) in extra {
            obj.entry(k).or_insert(v);
        }
    }
    Value::Object(obj).to_string()
}

/// Writes one line to stdout. A closed stdout is ignored (never a panic).
pub fn emit(level: Level, event: &str, fields: Value) {
    let mut text = line(level, event, fields);
    text.push('\n');
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    let _ = lock.write_all(text.as_bytes());
    let _ = lock.flush();
}

pub fn info(event: &str, fields: Value) {
    emit(Level::Info, event, fields);
}

pub fn warn(event: &str, fields: Value) {
    emit(Level::Warn, event, fields);
}

pub fn error(event: &str, fields: Value) {
    emit(Level::Error, event, fields);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_json_object_with_the_fixed_fields_first() {
        let l = line(
            Level::Warn,
            "reject",
            serde_json::json!({"reason": "bare_lf", "level": "spoofed"}),
        );
        let v: Value = serde_json::from_str(&l).expect("json");
        assert_eq!(v["event"], "reject");
        assert_eq!(v["level"], "warn", "fields cannot override the fixed keys");
        assert_eq!(v["reason"], "bare_lf");
        assert!(v["ts"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert!(!l.contains('\n'));
    }
}
