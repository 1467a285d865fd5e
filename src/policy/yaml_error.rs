//! The located message of a policy (or webhook configuration) that
//! serde_yaml could not deserialize, without any string value of the file.

use std::path::Path;

use super::locate::{Locator, Pos};
use super::PolicyError;

/// The error for a policy that serde_yaml could not deserialize: its
/// location, the key it names (for an unknown key, the unknown key's full
/// path) and its message without any quoted string value.
pub(super) fn yaml_error(err: &serde_yaml::Error, text: &str, file: &Path) -> PolicyError {
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
pub(super) fn one_line(s: &str) -> String {
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
pub(super) fn redact_strings(msg: &str) -> String {
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
