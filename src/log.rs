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

/// Lines waiting for the writer thread. Bounded: if stdout stalls for
/// long, emitters wait (back-pressure) rather than drop audit events.
const QUEUE: usize = 8192;

struct Writer {
    tx: Option<std::sync::mpsc::SyncSender<String>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

static WRITER: std::sync::Mutex<Writer> = std::sync::Mutex::new(Writer {
    tx: None,
    thread: None,
});

fn writer() -> std::sync::MutexGuard<'static, Writer> {
    WRITER.lock().unwrap_or_else(|p| p.into_inner())
}

/// The writer thread: takes every line queued, writes them in one go.
fn write_loop(rx: std::sync::mpsc::Receiver<String>) {
    let stdout = std::io::stdout();
    let mut batch = String::new();
    while let Ok(first) = rx.recv() {
        batch.clear();
        batch.push_str(&first);
        while batch.len() < 64 * 1024 {
            match rx.try_recv() {
                Ok(more) => batch.push_str(&more),
                Err(_) => break,
            }
        }
        let mut lock = stdout.lock();
        let _ = lock.write_all(batch.as_bytes());
        let _ = lock.flush();
    }
}

/// Queues one line for stdout. Async workers never block on a slow stdout
/// pipe (unless 8192 lines are already waiting); a closed stdout is ignored.
pub fn emit(level: Level, event: &str, fields: Value) {
    let mut text = line(level, event, fields);
    text.push('\n');
    let tx = {
        let mut w = writer();
        if w.tx.is_none() && w.thread.is_none() {
            let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
            // If no thread can be started, lines are written directly.
            if let Ok(handle) = std::thread::Builder::new()
                .name("smtpbind-log".into())
                .spawn(move || write_loop(rx))
            {
                w.tx = Some(tx);
                w.thread = Some(handle);
            }
        }
        w.tx.clone()
    };
    match tx {
        Some(tx) => {
            if let Err(e) = tx.send(text) {
                write_direct(&e.0);
            }
        }
        None => write_direct(&text),
    }
}

fn write_direct(text: &str) {
    let mut lock = std::io::stdout().lock();
    let _ = lock.write_all(text.as_bytes());
    let _ = lock.flush();
}

/// Writes every queued line and stops the writer (call before exit).
pub fn finish() {
    let thread = {
        let mut w = writer();
        w.tx = None;
        w.thread.take()
    };
    if let Some(t) = thread {
        let _ = t.join();
    }
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
