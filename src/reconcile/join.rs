//! The join: every provider event is looked up in the audit index and
//! counted once per message — matched (audited under one of the account's
//! pins), foreign (audited under another credential: the incident) or
//! unbound (no audit record: sent around the sidecars); afterwards every
//! relayed audit entry no account's events named is audit-only under the
//! account its pin belongs to. Messages are counted, not events: the
//! index marks the entries already counted; unbound ids are remembered in
//! a set (bounded by [`MAX_UNBOUND_TRACKED`]: these are the anomalies).

use std::collections::HashSet;

use super::audit_index::AuditIndex;

/// Distinct unbound ids remembered (over all accounts); past it, each
/// further event of an unknown id counts (the report says so).
pub const MAX_UNBOUND_TRACKED: usize = 1_000_000;
/// Examples kept per kind and account.
pub const MAX_EXAMPLES: usize = 5;

/// One `--account`: its name, its pins' 12-hex short forms, and its exports.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub pins: Vec<String>,
    pub events: Vec<String>,
}

/// One example of a finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Example {
    Foreign {
        id: String,
        credential: String,
        /// The account that credential belongs to, if any was given.
        credential_account: Option<String>,
        tenant: String,
        audit: String,
        /// The audit gives this message more than one credential.
        conflict: bool,
    },
    Unbound {
        id: String,
        events: String,
    },
    AuditOnly {
        id: Option<String>,
        credential: String,
        tenant: String,
        audit: String,
    },
}

/// Per account.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub provider: u64,
    pub matched: u64,
    pub foreign: u64,
    pub unbound: u64,
    pub audit_only: u64,
    pub examples: Vec<Example>,
    /// Foreign / audit-only examples waiting for their ids (entry indexes).
    foreign_entries: Vec<u32>,
    audit_only_entries: Vec<u32>,
    unbound_examples: usize,
}

pub struct Join<'a> {
    pub index: &'a mut AuditIndex,
    pub accounts: &'a [Account],
    pub tallies: Vec<Tally>,
    unbound_seen: HashSet<(u16, Box<str>)>,
    /// The unbound set was full: some unbound events may count twice.
    pub unbound_overflow: bool,
}

impl<'a> Join<'a> {
    pub fn new(index: &'a mut AuditIndex, accounts: &'a [Account]) -> Self {
        Join {
            index,
            accounts,
            tallies: vec![Tally::default(); accounts.len()],
            unbound_seen: HashSet::new(),
            unbound_overflow: false,
        }
    }

    /// The account (index) holding a credential's short pin.
    fn owner(&self, credential: &str) -> Option<usize> {
        self.accounts
            .iter()
            .position(|a| a.pins.iter().any(|p| p == credential))
    }

    /// One provider event of `account` naming `key`; `place` says where it
    /// was read (for an unbound example).
    pub fn event(&mut self, account: usize, key: &str, place: impl FnOnce() -> String) {
        // `run` refuses more than u16::MAX - 1 accounts.
        let tag = u16::try_from(account + 1).unwrap_or(u16::MAX);
        let found = (!key.is_empty()).then(|| self.index.lookup(key)).flatten();
        let Some(i) = found else {
            if !key.is_empty() {
                if self.unbound_seen.len() < MAX_UNBOUND_TRACKED {
                    if !self.unbound_seen.insert((tag, key.into())) {
                        return;
                    }
                } else if self.unbound_seen.contains(&(tag, key.into())) {
                    return;
                } else {
                    self.unbound_overflow = true;
                }
            }
            let t = &mut self.tallies[account];
            t.provider += 1;
            t.unbound += 1;
            if t.unbound_examples < MAX_EXAMPLES {
                t.unbound_examples += 1;
                t.examples.push(Example::Unbound {
                    id: key.to_string(),
                    events: place(),
                });
            }
            return;
        };
        let Some(entry) = self.index.entries.get(i as usize).copied() else {
            return;
        };
        if entry.seen_by == tag {
            return;
        }
        if entry.seen_by == 0 {
            if let Some(e) = self.index.entries.get_mut(i as usize) {
                e.seen_by = tag;
            }
        }
        let ours = !entry.conflict
            && self.accounts[account]
                .pins
                .iter()
                .any(|p| p == self.index.credential(&entry));
        let t = &mut self.tallies[account];
        t.provider += 1;
        if ours {
            t.matched += 1;
        } else {
            t.foreign += 1;
            if t.foreign_entries.len() < MAX_EXAMPLES {
                t.foreign_entries.push(i);
            }
        }
    }

    /// Audit-only entries, then the examples' ids: the final tallies.
    pub fn finish(mut self) -> Vec<Tally> {
        for (i, e) in self.index.entries.iter().enumerate() {
            if e.seen_by != 0 {
                continue;
            }
            if let Some(owner) = self.owner(self.index.credential(e)) {
                let t = &mut self.tallies[owner];
                t.audit_only += 1;
                if t.audit_only_entries.len() < MAX_EXAMPLES {
                    t.audit_only_entries
                        .push(u32::try_from(i).unwrap_or(u32::MAX));
                }
            }
        }
        let wanted: Vec<u32> = self
            .tallies
            .iter()
            .flat_map(|t| t.foreign_entries.iter().chain(&t.audit_only_entries))
            .copied()
            .collect();
        let ids = self.index.keys_of_entries(&wanted);
        let mut tallies = std::mem::take(&mut self.tallies);
        for t in &mut tallies {
            for &i in &t.foreign_entries {
                let Some(e) = self.index.entries.get(i as usize) else {
                    continue;
                };
                let credential = self.index.credential(e).to_string();
                t.examples.push(Example::Foreign {
                    id: ids.get(&i).cloned().unwrap_or_default(),
                    credential_account: self
                        .owner(&credential)
                        .map(|o| self.accounts[o].name.clone()),
                    credential,
                    tenant: self.index.tenant(e).to_string(),
                    audit: self.index.place(e),
                    conflict: e.conflict,
                });
            }
            for &i in &t.audit_only_entries {
                let Some(e) = self.index.entries.get(i as usize) else {
                    continue;
                };
                t.examples.push(Example::AuditOnly {
                    id: ids.get(&i).cloned(),
                    credential: self.index.credential(e).to_string(),
                    tenant: self.index.tenant(e).to_string(),
                    audit: self.index.place(e),
                });
            }
        }
        tallies
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::Provider;

    fn audit(lines: &[(&str, &str)]) -> AuditIndex {
        let mut ix = AuditIndex::new(Provider::Sendgrid);
        let f = ix.add_file("audit");
        for (n, (cred, id)) in lines.iter().enumerate() {
            let l = format!(
                r#"{{"event":"message","result":"relayed","tenant":"t-{cred}","credential":"{cred}","upstream_id":"{id}"}}"#
            );
            ix.add_line(f, n as u64 + 1, l.as_bytes()).expect("line");
        }
        ix
    }

    fn accounts() -> Vec<Account> {
        vec![
            Account {
                name: "A".into(),
                pins: vec!["aaa".into()],
                events: vec![],
            },
            Account {
                name: "B".into(),
                pins: vec!["bbb".into(), "bb2".into()],
                events: vec![],
            },
        ]
    }

    #[test]
    fn matched_foreign_unbound_and_audit_only() {
        let mut ix = audit(&[
            ("aaa", "a1"),
            ("aaa", "a2"),
            ("bbb", "b1"),
            ("bb2", "b2"),
            ("zzz", "z1"),
        ]);
        let accts = accounts();
        let mut j = Join::new(&mut ix, &accts);
        for k in ["a1", "a1", "a1", "b1"] {
            j.event(0, k, || "ev".into());
        }
        for k in ["b2", "x9", "x9", "a2"] {
            j.event(1, k, || "evB".into());
        }
        let t = j.finish();
        // A: a1 matched (3 events, 1 message), b1 foreign (B's pin); a2 was
        // seen by B's export, so it is not audit-only for A.
        assert_eq!(
            (
                t[0].provider,
                t[0].matched,
                t[0].foreign,
                t[0].unbound,
                t[0].audit_only
            ),
            (2, 1, 1, 0, 0)
        );
        assert!(t[0].examples.contains(&Example::Foreign {
            id: "b1".into(),
            credential: "bbb".into(),
            credential_account: Some("B".into()),
            tenant: "t-bbb".into(),
            audit: "audit:3".into(),
            conflict: false,
        }));
        // B: b2 matched (second pin), x9 unbound once, a2 foreign.
        assert_eq!(
            (
                t[1].provider,
                t[1].matched,
                t[1].foreign,
                t[1].unbound,
                t[1].audit_only
            ),
            (3, 1, 1, 1, 0)
        );
        assert!(t[1].examples.contains(&Example::Unbound {
            id: "x9".into(),
            events: "evB".into()
        }));
        // z1 (no account's pin) is nobody's audit-only.
    }

    #[test]
    fn an_unseen_relayed_message_is_audit_only_for_its_pins_account() {
        let mut ix = audit(&[("aaa", "a1"), ("bbb", "b1")]);
        let accts = accounts();
        let mut j = Join::new(&mut ix, &accts);
        j.event(0, "a1", String::new);
        let t = j.finish();
        assert_eq!(t[0].audit_only, 0);
        assert_eq!(t[1].audit_only, 1);
        assert_eq!(
            t[1].examples,
            [Example::AuditOnly {
                id: Some("b1".into()),
                credential: "bbb".into(),
                tenant: "t-bbb".into(),
                audit: "audit:2".into()
            }]
        );
    }

    #[test]
    fn a_conflicting_audit_is_never_matched() {
        let mut ix = audit(&[("aaa", "a1"), ("bbb", "a1")]);
        let accts = accounts();
        let mut j = Join::new(&mut ix, &accts);
        j.event(0, "a1", String::new);
        let t = j.finish();
        assert_eq!((t[0].matched, t[0].foreign), (0, 1));
    }

    #[test]
    fn rows_without_an_id_are_each_unbound() {
        let mut ix = audit(&[]);
        let accts = accounts();
        let mut j = Join::new(&mut ix, &accts);
        j.event(0, "", || "trace.csv:2".into());
        j.event(0, "", || "trace.csv:3".into());
        let t = j.finish();
        assert_eq!(t[0].unbound, 2);
    }
}
