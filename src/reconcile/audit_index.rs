//! The audit side of the join — the only thing `reconcile` holds in memory:
//! one small entry per relayed message (its credential, tenant and where
//! it was read), found by the provider's key. Everything else in the audit
//! (rejects, failed messages, other events) is read and dropped.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;

use super::Provider;

/// One relayed message of the audit.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// Interned `credential` (the pin's first 12 hex digits).
    pub credential: u32,
    /// Interned `tenant`.
    pub tenant: u32,
    /// Index into [`AuditIndex::files`], and the 1-based line there.
    pub file: u32,
    pub line: u32,
    /// The provider account whose events named it (index + 1; 0: none yet).
    pub seen_by: u16,
    /// Another audit line gave the same key a different credential.
    pub conflict: bool,
    /// It has a key (an audit line without one can never be matched).
    pub keyed: bool,
}

/// Strings seen many times (credentials, tenants), stored once.
#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Interner {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        // Distinct credentials and tenants: a few per fleet (saturates, never wraps).
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }

    fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", |s| s)
    }
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow)]
    result: Option<Cow<'a, str>>,
    #[serde(borrow)]
    credential: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tenant: Option<Cow<'a, str>>,
    #[serde(borrow)]
    upstream_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message_id: Option<Cow<'a, str>>,
}

/// The index: key → entry.
#[derive(Debug)]
pub struct AuditIndex {
    provider: Provider,
    keys: HashMap<Box<str>, u32>,
    pub entries: Vec<Entry>,
    credentials: Interner,
    tenants: Interner,
    /// Audit inputs, in the order given.
    pub files: Vec<String>,
    /// Lines read, and relayed messages among them.
    pub lines: u64,
    pub relayed: u64,
    /// The same message audited twice (same key, same credential).
    pub duplicates: u64,
}

impl AuditIndex {
    pub fn new(provider: Provider) -> Self {
        AuditIndex {
            provider,
            keys: HashMap::new(),
            entries: Vec::new(),
            credentials: Interner::default(),
            tenants: Interner::default(),
            files: Vec::new(),
            lines: 0,
            relayed: 0,
            duplicates: 0,
        }
    }

    /// Starts reading another audit input; its index for [`Self::add_line`].
    pub fn add_file(&mut self, name: &str) -> u32 {
        self.files.push(name.to_string());
        u32::try_from(self.files.len() - 1).unwrap_or(u32::MAX)
    }

    /// One audit line (`line` is 1-based). Err: why it is not an audit line.
    pub fn add_line(&mut self, file: u32, line: u64, text: &[u8]) -> Result<(), String> {
        self.lines += 1;
        if text.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        // The object may follow a prefix a log pipeline added: `kubectl logs
        // --timestamps`, a CRI log file's `<time> stdout F `.
        let Some(open) = text.iter().position(|&b| b == b'{') else {
            return Err("not an audit line (a JSON object per line)".into());
        };
        let l: Line<'_> = serde_json::from_slice(&text[open..]).map_err(|e| {
            let t = e.to_string();
            let t = t
                .rfind(" at line ")
                .map_or(t.as_str(), |i| &t[..i])
                .to_string();
            format!("not an audit line (a JSON object per line): {t}")
        })?;
        if l.event.as_deref() != Some("message") || l.result.as_deref() != Some("relayed") {
            return Ok(());
        }
        self.relayed += 1;
        let credential = self.credentials.id(l.credential.as_deref().unwrap_or(""));
        let tenant = self.tenants.id(l.tenant.as_deref().unwrap_or(""));
        let mut entry = Entry {
            credential,
            tenant,
            file,
            line: u32::try_from(line).unwrap_or(u32::MAX),
            seen_by: 0,
            conflict: false,
            keyed: false,
        };
        let keys = self.keys_of(&l);
        entry.keyed = !keys.is_empty();
        let Ok(index) = u32::try_from(self.entries.len()) else {
            return Err("more than 4 294 967 295 relayed messages in one run".into());
        };
        let mut fresh = !entry.keyed;
        for key in keys {
            match self.keys.get(key) {
                Some(&i) => {
                    if let Some(known) = self.entries.get_mut(i as usize) {
                        if known.credential == credential {
                            self.duplicates += 1;
                        } else {
                            known.conflict = true;
                        }
                    }
                }
                None => {
                    self.keys.insert(key.into(), index);
                    fresh = true;
                }
            }
        }
        if fresh {
            self.entries.push(entry);
        }
        Ok(())
    }

    /// The keys a provider's events can name this message by.
    fn keys_of<'l>(&self, l: &'l Line<'_>) -> Vec<&'l str> {
        let nonempty = |s: Option<&'l str>| s.filter(|s| !s.is_empty());
        let mut keys = Vec::with_capacity(2);
        match self.provider {
            Provider::Sendgrid | Provider::Ses => {
                keys.extend(nonempty(l.upstream_id.as_deref()));
            }
            Provider::M365 => {
                // The Message-ID header; and the id Microsoft 365's 250
                // names, which is the Message-ID it kept or assigned.
                let normalized = |s: Option<&'l str>| nonempty(s.map(super::m365::key));
                keys.extend(normalized(l.message_id.as_deref()));
                if let Some(up) = normalized(l.upstream_id.as_deref()) {
                    if !keys.contains(&up) {
                        keys.push(up);
                    }
                }
            }
        }
        keys
    }

    /// The entry a provider key names.
    pub fn lookup(&self, key: &str) -> Option<u32> {
        self.keys.get(key).copied()
    }

    pub fn credential(&self, e: &Entry) -> &str {
        self.credentials.name(e.credential)
    }

    pub fn tenant(&self, e: &Entry) -> &str {
        self.tenants.name(e.tenant)
    }

    /// `file:line` of an entry.
    pub fn place(&self, e: &Entry) -> String {
        let file = self.files.get(e.file as usize).map_or("?", String::as_str);
        format!("{file}:{}", e.line)
    }

    /// The key of each of `wanted` entries (one pass over the index; for
    /// the few entries a report shows).
    pub fn keys_of_entries(&self, wanted: &[u32]) -> HashMap<u32, String> {
        let mut out = HashMap::new();
        if wanted.is_empty() {
            return out;
        }
        for (k, &i) in &self.keys {
            if wanted.contains(&i) && !out.contains_key(&i) {
                out.insert(i, k.to_string());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(cred: &str, up: &str, mid: &str, result: &str) -> String {
        format!(
            r#"{{"ts":"t","level":"info","event":"message","tenant":"acme","session":"s","credential":"{cred}","result":"{result}","reply":"250 x","upstream_id":{up},"message_id":{mid}}}"#
        )
    }

    #[test]
    fn only_relayed_messages_are_indexed_by_the_providers_key() {
        let mut ix = AuditIndex::new(Provider::Sendgrid);
        let f = ix.add_file("a.jsonl");
        ix.add_line(
            f,
            1,
            line("aaa", "\"Q1\"", "\"<m1@h>\"", "relayed").as_bytes(),
        )
        .expect("ok");
        ix.add_line(f, 2, line("aaa", "null", "\"<m2@h>\"", "failed").as_bytes())
            .expect("ok");
        ix.add_line(f, 3, br#"{"event":"reject","reason":"identity_mismatch"}"#)
            .expect("ok");
        ix.add_line(f, 4, b"").expect("blank");
        ix.add_line(f, 5, line("aaa", "null", "null", "relayed").as_bytes())
            .expect("ok");
        assert_eq!(ix.relayed, 2);
        assert_eq!(ix.entries.len(), 2);
        let e = ix.entries[ix.lookup("Q1").expect("Q1") as usize];
        assert_eq!(ix.credential(&e), "aaa");
        assert_eq!(ix.tenant(&e), "acme");
        assert_eq!(ix.place(&e), "a.jsonl:1");
        assert!(ix.lookup("<m1@h>").is_none());
        assert!(!ix.entries[1].keyed);

        let mut ix = AuditIndex::new(Provider::M365);
        let f = ix.add_file("-");
        ix.add_line(
            f,
            1,
            line("aaa", "\"<m1@h>\"", "\"<m1@h>\"", "relayed").as_bytes(),
        )
        .expect("ok");
        ix.add_line(
            f,
            2,
            line("aaa", "\"<up@h>\"", "\"<own@h>\"", "relayed").as_bytes(),
        )
        .expect("ok");
        assert_eq!(ix.lookup("m1@h"), Some(0));
        assert_eq!(ix.lookup("own@h"), Some(1));
        assert_eq!(ix.lookup("up@h"), Some(1));
    }

    #[test]
    fn the_same_key_under_two_credentials_is_a_conflict() {
        let mut ix = AuditIndex::new(Provider::Ses);
        let f = ix.add_file("a");
        for (n, cred) in [(1, "aaa"), (2, "aaa"), (3, "bbb")] {
            ix.add_line(f, n, line(cred, "\"S1\"", "null", "relayed").as_bytes())
                .expect("ok");
        }
        assert_eq!(ix.entries.len(), 1);
        assert_eq!(ix.duplicates, 1);
        assert!(ix.entries[0].conflict);
    }

    #[test]
    fn a_log_pipelines_prefix_is_skipped() {
        let mut ix = AuditIndex::new(Provider::Ses);
        let f = ix.add_file("a");
        let l = line("aaa", "\"S1\"", "null", "relayed");
        ix.add_line(
            f,
            1,
            format!("2026-12-07T01:00:00.123456789Z stdout F {l}").as_bytes(),
        )
        .expect("CRI");
        ix.add_line(f, 2, format!("2026-12-07T01:00:00.123Z {l}").as_bytes())
            .expect("kubectl --timestamps");
        assert_eq!(ix.relayed, 2);
        assert_eq!(ix.duplicates, 1);
    }

    #[test]
    fn a_line_that_is_not_json_is_an_error() {
        let mut ix = AuditIndex::new(Provider::Ses);
        let f = ix.add_file("a");
        for bad in [&b"{\"event\":"[..], b"hello", b"[1,2]", b"\"x\""] {
            let e = ix.add_line(f, 1, bad).unwrap_err();
            assert!(e.contains("not an audit line"), "{e}");
        }
    }
}
